"""The transaction coordinator: one shard per ``__transaction_state`` partition this broker leads.

Theory of operation
-------------------
:class:`TransactionCoordinator` follows the leadership of
``__transaction_state`` partitions exactly as the group coordinator follows
``__consumer_offsets``, through the same composed
:class:`~odradek.coordinator.hosting.ShardHosting`: the replica manager's
hosting changes (its ``listeners``) and every routed request resynchronise
the shards; a shard is
*loading* while every record of its partition is replayed into it
(COORDINATOR_LOAD_IN_PROGRESS; control batches are skipped), then *active*;
it is dropped when the partition is no longer led here (NOT_COORDINATOR). A transactional id lives
in the shard of ``partition_for(id)`` (Kafka's hash).

Each shard is a :class:`~odradek.coordinator.transactions.shard.TransactionShard`
driven by the shared :class:`~odradek.coordinator.runtime.ShardRunner`:
every operation (a request, a timer tick, a completion) runs, its records
are appended to the partition (``append_as_leader``) and replayed, on the
event loop; the answer waits until they are committed (``committed``: the
partition's high watermark passed them, at once on a leader alone in its
ISR), and so do the markers of a Prepare state.

Markers: after each operation and after a load, every transaction of the
shard in a Prepare state (``shard.markers``) that has no marker task gets
one. The task writes the markers through the :class:`MarkerWriter
<odradek.coordinator.transactions.markers.MarkerWriter>`, retrying
partitions that answer a retriable error, and then runs ``shard.complete``,
which writes the Complete state. A Prepare state found at load (the broker
stopped between the Prepare record and the Complete one) is completed the
same way; markers already written are not appended twice.

The topic is created (compacted, ``transaction.state.log.num.partitions``,
replication factor ``transaction.state.log.replication.factor`` capped by
the live brokers) on first use: FindCoordinator for a transactional id, or
InitProducerId.
"""

from __future__ import annotations

import asyncio
import logging

from odradek.clock import now_ms
from odradek.coordinator.hosting import HostedShard as Hosted
from odradek.coordinator.hosting import ShardHosting, read_log
from odradek.coordinator.runtime import Result
from odradek.coordinator.transactions import records as rec
from odradek.coordinator.transactions.markers import MarkerWriter
from odradek.coordinator.transactions.shard import MarkerJob, TransactionShard, TxnConfig
from odradek.protocol import errors
from odradek.protocol.batch import HEADER_SIZE, read_header

log = logging.getLogger("odradek.transactions")

TXN_TOPIC = "__transaction_state"
TXN_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "104857600"}
MARKER_RETRY_S = 0.1
# Errors after which a partition's marker is considered written: done, or
# nothing left to write to (a deleted topic), as Kafka's marker handler does.
MARKER_DONE = (0, errors.UNKNOWN_TOPIC_OR_PARTITION, errors.INVALID_PRODUCER_EPOCH)


class TransactionCoordinator:
    def __init__(self, broker, markers=None):
        self.broker = broker
        self.config = TxnConfig.from_broker(broker.config)
        self.markers = markers or MarkerWriter(broker)
        self.sending: dict[tuple[int, str], asyncio.Task] = {}  # (partition, txn id) -> marker task
        self.hosting = ShardHosting(
            broker, TXN_TOPIC, self.config, TXN_TOPIC_CONFIGS, factors=self._factors,
            build=lambda index: TransactionShard(self.config, index), load=self._load,
            loaded=lambda h, count, seconds: self._after(h), unloaded=self._unloaded, tick=self._tick,
            noun="transactional ids", size=lambda shard: len(shard.txns), log=log, min_delay=0.01)
        # (txn id, producer id, epoch, topic, partition) -> a remote coordinator's verification
        self._remote: dict[tuple, int] = {}

    @property
    def hosted(self) -> dict[int, Hosted]:
        """The shards hosted here, by partition index."""
        return self.hosting.hosted

    # -- routing ---------------------------------------------------------
    def partition_for(self, transactional_id: str) -> int:
        return rec.partition_for(transactional_id, self.config.num_partitions)

    def shard_for(self, transactional_id: str) -> tuple[Hosted | None, int]:
        """The active shard of ``transactional_id``, or (None, NOT_COORDINATOR /
        COORDINATOR_LOAD_IN_PROGRESS / COORDINATOR_NOT_AVAILABLE)."""
        if TXN_TOPIC not in self.broker.image:
            return None, errors.COORDINATOR_NOT_AVAILABLE
        return self.hosting.hosted_for(self.partition_for(transactional_id))

    def coordinator_node(self, transactional_id: str, listener: str | None) -> dict | None:
        """The live broker leading ``transactional_id``'s partition, or None."""
        state = self.broker.image.get(TXN_TOPIC)
        index = self.partition_for(transactional_id)
        if state is None or index >= len(state.partitions):
            return None
        leader = state.partitions[index].leader
        if leader == self.broker.config.node_id:
            host, port = self.broker.endpoint(listener)
            return {"node_id": leader, "host": host, "port": port}
        info = self.broker.image.brokers.get(leader)
        endpoint = info.endpoint(listener) if info is not None else None
        return None if endpoint is None else {"node_id": leader, "host": endpoint[0], "port": endpoint[1]}

    def verify(self, transactional_id: str, producer_id: int, producer_epoch: int, topic: str,
               index: int, unasked: int = errors.NOT_ENOUGH_REPLICAS) -> int:
        """KIP-890 verification of a transactional write to (topic, index): 0 or the error.
        For a coordinator on another broker, the answer ``prepare_verify`` got
        from it, or ``unasked`` if it was not asked."""
        h, code = self.shard_for(transactional_id)
        if code == errors.NOT_COORDINATOR:
            return self._remote.pop((transactional_id, producer_id, producer_epoch, topic, index), unasked)
        if code == errors.COORDINATOR_NOT_AVAILABLE:
            return errors.INVALID_TXN_STATE  # no transaction was ever begun
        if code:
            return errors.NOT_ENOUGH_REPLICAS  # retriable for producers, as Kafka answers
        return h.shard.verify(transactional_id, producer_id, producer_epoch, (topic, index))

    async def prepare_verify(self, transactional_id: str | None, p, records) -> None:
        """Before a Produce to partition ``p``: if ``records`` start with a
        transactional batch of a producer with no transaction open at ``p``, and
        ``transactional_id``'s coordinator is another broker, ask it
        (AddPartitionsToTxn v4, verify only) and keep its answer for ``verify``."""
        if transactional_id is None or records is None or len(records) < HEADER_SIZE:
            return
        h = read_header(records)
        if not h.is_transactional or h.is_control or h.producer_id < 0 or p.in_txn(h.producer_id):
            return
        state = self.broker.image.get(TXN_TOPIC)
        index = self.partition_for(transactional_id)
        if state is None or index >= len(state.partitions):
            return
        node = state.partitions[index].leader
        if node < 0 or node == self.broker.config.node_id or not hasattr(self.markers, "call"):
            return
        body = {"transactions": [{"transactional_id": transactional_id, "producer_id": h.producer_id,
                                  "producer_epoch": h.producer_epoch, "verify_only": True,
                                  "topics": [{"name": p.topic.name, "partitions": [p.index]}]}]}
        code = errors.NOT_ENOUGH_REPLICAS
        try:
            resp = await self.markers.call(node, "AddPartitionsToTxn", 4, body)
            code = resp["error_code"] or \
                resp["results_by_transaction"][0]["topic_results"][0]["results_by_partition"][0][
                    "partition_error_code"]
        except (OSError, asyncio.TimeoutError, ValueError, ConnectionError, IndexError, KeyError) as e:
            log.info("verifying a write of %r with broker %d failed: %s", transactional_id, node, e)
        if code in (errors.NOT_COORDINATOR, errors.COORDINATOR_NOT_AVAILABLE, errors.COORDINATOR_LOAD_IN_PROGRESS):
            code = errors.NOT_ENOUGH_REPLICAS  # retriable for producers, as Kafka answers
        if len(self._remote) > 10000:
            self._remote.clear()  # answers never used (a request that failed before its check)
        self._remote[(transactional_id, h.producer_id, h.producer_epoch, p.topic.name, p.index)] = code

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        await self.hosting.start()

    async def stop(self) -> None:
        await self.hosting.stop()
        tasks = list(self.sending.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.sending.clear()
        close = getattr(self.markers, "close", None)
        if close is not None:
            close()

    async def ensure_topic(self) -> bool:
        """Create ``__transaction_state`` if it does not exist and host its
        partitions led here; False if it cannot be."""
        return await self.hosting.ensure_topic()

    def _factors(self) -> tuple:
        """The configured replication factor capped by the live brokers, then 1."""
        live = max(1, len(self.broker.image.brokers))
        return tuple(dict.fromkeys((max(1, min(self.config.replication_factor, live)), 1)))

    # -- hosting callbacks -------------------------------------------------
    def sync_shards(self) -> list[asyncio.Task]:
        return self.hosting.sync_shards()

    def unload(self, index: int) -> None:
        self.hosting.unload(index)

    def _unloaded(self, h: Hosted, answer: bool) -> None:
        for key in [k for k in self.sending if k[0] == h.index]:
            self.sending.pop(key).cancel()

    async def _load(self, h: Hosted) -> int:
        """Replay the partition into the shard; control batches are skipped."""
        count = 0
        async for bh, records, now in read_log(h.partition):
            if not bh.is_control:
                for r in records:
                    count += h.runner.load(r.key, r.value, now)
        return count

    # -- operations --------------------------------------------------------
    def execute(self, h: Hosted, op, *args, **kwargs) -> Result:
        """Run ``op`` (an operation of ``h``'s shard): append, replay, then send
        the markers now owed and re-arm the timer."""
        assert self.hosted.get(h.index) is h, "the shard was unloaded"
        now = now_ms()
        res = op(now, *args, **kwargs)
        h.runner.apply(res, now)
        self._after(h)
        return res

    async def committed(self, h: Hosted) -> int:
        """0 once everything ``h`` appended is committed (below the high
        watermark); NOT_COORDINATOR if leadership is lost first."""
        fut = h.replicated()
        if fut is None:
            return 0
        code = await asyncio.shield(fut)
        return errors.NOT_COORDINATOR if code else 0

    def _after(self, h: Hosted) -> None:
        if self.hosting.stopped or self.hosted.get(h.index) is not h:
            return
        loop = asyncio.get_running_loop()
        for txn_id, job in h.shard.markers.items():
            task = self.sending.get((h.index, txn_id))
            if task is None or task.done():
                self.sending[(h.index, txn_id)] = loop.create_task(self._send(h, job))
        self.hosting.reschedule(h)

    async def _send(self, h: Hosted, job: MarkerJob) -> None:
        """Write ``job``'s markers, retrying, then record the transaction Complete."""
        pending = set(job.partitions)
        coordinator_epoch = h.partition.leader_epoch
        try:
            if await self.committed(h):  # the Prepare state first, then its markers
                return
            while pending:
                results = await self.markers.write(job.producer_id, job.producer_epoch, coordinator_epoch,
                                                   job.commit, sorted(pending))
                if errors.TRANSACTION_COORDINATOR_FENCED in results.values():
                    log.warning("markers of %r: a newer coordinator wrote markers for this producer; "
                                "leaving the transaction to it", job.transactional_id)
                    return
                for tp, code in results.items():
                    if code in MARKER_DONE:
                        if code:
                            log.warning("marker for %s-%d of %r: error %d, considered written",
                                        tp[0], tp[1], job.transactional_id, code)
                        pending.discard(tp)
                if pending:
                    await asyncio.sleep(MARKER_RETRY_S)
                if self.hosted.get(h.index) is not h:
                    return
        finally:
            if self.sending.get((h.index, job.transactional_id)) is asyncio.current_task():
                del self.sending[(h.index, job.transactional_id)]
        if self.hosted.get(h.index) is h and h.shard.markers.get(job.transactional_id) == job:
            self.execute(h, h.shard.complete, job)

    # -- timers ----------------------------------------------------------
    def _tick(self, h: Hosted) -> None:
        try:
            self.execute(h, h.shard.tick)
        except Exception:
            log.exception("transaction coordinator timer failed")

    # -- inspection (tests, tools) --------------------------------------
    def durable_view(self) -> dict:
        out = {}
        for h in self.hosted.values():
            out.update(h.shard.durable_view())
        return dict(sorted(out.items()))
