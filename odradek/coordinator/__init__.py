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
