"""Coordinators: state machines over records in internal topics."""

from odradek.protocol import errors


def not_hosted_error(broker, topic: str, index: int) -> int:
    """What a coordinator answers for a partition of ``topic`` it does not
    host: COORDINATOR_LOAD_IN_PROGRESS when the metadata image already names
    this broker its leader (the replica manager is about to host it, and the
    shard to load: a client asks here again), else NOT_COORDINATOR (a client
    finds the coordinator anew). One rule for every coordinator."""
    state = broker.image.get(topic)
    if state is not None and index < len(state.partitions) \
            and state.partitions[index].leader == broker.config.node_id:
        return errors.COORDINATOR_LOAD_IN_PROGRESS
    return errors.NOT_COORDINATOR


def append_records(broker, topic: str, index: int, records: list, now: int, partition=None,
                   producer: tuple | None = None, acks_all: bool = False):
    """Append a coordinator's ``records`` ((key, value) pairs) to partition
    ``index`` of its ``topic`` as one batch; a transactional batch of
    ``producer`` (producer id, epoch) for TxnOffsetCommit. ``partition``: the
    one the caller hosts, which must still be the one served. ``acks_all``:
    refused (``AppendRefused``) while the partition's ISR is below its
    ``min.insync.replicas``, as Kafka's transaction coordinator writes (its
    group and share coordinators write with acks=1, then wait for the high
    watermark, as every coordinator here does); the caller's operation then
    answers its failure."""
    from odradek.coordinator.runtime import AppendRefused
    from odradek.protocol.batch import iter_batches
    from odradek.protocol.records import build_batch

    p, code = broker.replicas.partition_or_error(topic, index)
    if code or (partition is not None and p is not partition):
        raise RuntimeError(f"{topic}-{index}: error {code}")
    if acks_all and p.under_min_isr:
        raise AppendRefused(f"{topic}-{index}: its ISR {p.isr} is below min.insync.replicas")
    entries = [(k, v, (), now) for k, v in records]
    if producer is None:
        return p.append_as_leader(bytearray(build_batch(entries)), now)
    # tracked by the partition as the producer's open transaction until its marker
    buf = bytearray(build_batch(entries, producer_id=producer[0], producer_epoch=producer[1], base_sequence=-1,
                                transactional=True))
    return p.append_as_leader(buf, now, producer_batch=next(iter_batches(buf))[1])


async def create_state_topic(broker, name: str, partitions: int, replication_factor: int, configs: dict,
                             min_isr: int, log):
    """A coordinator's internal topic as the image has it once created (by this
    broker or another), or None if it cannot be: ``replication_factor`` capped
    by the live brokers, then 1 if that is refused, with
    ``min.insync.replicas`` ``min_isr`` capped by the factor (Kafka sets its
    ``*.min.isr``; a smaller factor would make every write fail here)."""
    from odradek.topic_admin import TopicError

    state = broker.image.get(name)
    if state is not None:
        return state
    live = max(1, len(broker.image.brokers))
    rf = max(1, min(replication_factor, live))
    for factor in dict.fromkeys((rf, 1)):
        try:
            return await broker.admin.create_topic(
                name, partitions, factor, dict(configs, **{"min.insync.replicas": str(max(1, min(min_isr, factor)))}))
        except TopicError as e:
            state = broker.image.get(name)
            if state is not None:
                return state
            if e.error_code != errors.INVALID_REPLICATION_FACTOR:
                log.error("cannot create %s: %s", name, e)
                return None
            log.info("%s: replication factor %d refused (%s); trying 1", name, factor, e)
    return None


async def start_coordinators(broker) -> None:
    """Load the coordinators that exist; each registers itself on ``broker``."""
    try:
        from odradek.coordinator.group_coordinator import GroupCoordinator
    except ImportError:
        return
    broker.groups = GroupCoordinator(broker)
    await broker.groups.start()
    from odradek.coordinator.transactions.coordinator import TransactionCoordinator

    broker.transactions = TransactionCoordinator(broker)
    await broker.transactions.start()
    from odradek.coordinator.share_state import ShareCoordinator

    share = getattr(broker, "share", None)
    if share is not None:
        share.coordinator = ShareCoordinator(broker)
        await share.coordinator.start()
