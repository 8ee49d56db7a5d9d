"""The transaction coordinator: one shard per ``__transaction_state`` partition this broker leads.

Theory of operation
-------------------
:class:`TransactionCoordinator` follows the leadership of
``__transaction_state`` partitions exactly as the group coordinator follows
``__consumer_offsets``: the replica manager's hosting changes (its
``listeners``) and every routed request resynchronise the shards; a shard is
*loading* while every record of its partition is replayed into it
(COORDINATOR_LOAD_IN_PROGRESS), then *active*; it is dropped when the
partition is no longer led here (NOT_COORDINATOR). A transactional id lives
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
the live brokers, ``min.insync.replicas`` ``transaction.state.log.min.isr``
capped by the factor) on first use: FindCoordinator for a transactional id,
or InitProducerId. Records are appended as Kafka's coordinators append them,
acks=all (``odradek.coordinator.append_records``): refused while the ISR is
below ``min.insync.replicas``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from odradek.clock import now_ms
from odradek.coordinator import append_records, create_state_topic, not_hosted_error
from odradek.coordinator.runtime import Result, ShardRunner
from odradek.coordinator.transactions import records as rec
from odradek.coordinator.transactions.markers import MarkerWriter
from odradek.coordinator.transactions.shard import MarkerJob, TransactionShard, TxnConfig
from odradek.protocol import errors
from odradek.protocol.batch import HEADER_SIZE, iter_batches, read_header
from odradek.protocol.records import decode_batch

log = logging.getLogger("odradek.transactions")

TXN_TOPIC = "__transaction_state"
TXN_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "104857600"}
LOAD_READ_BYTES = 4 * 1024 * 1024
MARKER_RETRY_S = 0.1
# Errors after which a partition's marker is considered written: done, or
# nothing left to write to (a deleted topic), as Kafka's marker handler does.
MARKER_DONE = (0, errors.UNKNOWN_TOPIC_OR_PARTITION, errors.INVALID_PRODUCER_EPOCH)


class Hosted:
    __slots__ = ("index", "partition", "shard", "runner", "loading", "load_task", "timer", "timer_at",
                 "last_written")

    def __init__(self, index: int, partition, shard: TransactionShard):
        self.index = index
        self.partition = partition
        self.shard = shard
        self.runner: ShardRunner | None = None
        self.loading = True
        self.load_task: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: int | None = None
        self.last_written = -1  # offset of the last record this shard appended


class TransactionCoordinator:
    def __init__(self, broker, markers=None):
        self.broker = broker
        self.config = TxnConfig.from_broker(broker.config)
        self.markers = markers or MarkerWriter(broker)
        self.hosted: dict[int, Hosted] = {}
        self.sending: dict[tuple[int, str], asyncio.Task] = {}  # (partition, txn id) -> marker task
        self._create_task: asyncio.Task | None = None
        self._stopped = False
        # (txn id, producer id, epoch, topic, partition) -> a remote coordinator's verification
        self._remote: dict[tuple, int] = {}

    # -- routing ---------------------------------------------------------
    def partition_for(self, transactional_id: str) -> int:
        return rec.partition_for(transactional_id, self.config.num_partitions)

    def shard_for(self, transactional_id: str) -> tuple[Hosted | None, int]:
        """The active shard of ``transactional_id``, or (None, NOT_COORDINATOR /
        COORDINATOR_LOAD_IN_PROGRESS / COORDINATOR_NOT_AVAILABLE)."""
        if TXN_TOPIC not in self.broker.image:
            return None, errors.COORDINATOR_NOT_AVAILABLE
        index = self.partition_for(transactional_id)
        p, code = self.broker.replicas.partition_or_error(TXN_TOPIC, index)
        h = self.hosted.get(index)
        if code:
            if h is not None:
                self.unload(index)
            return None, not_hosted_error(self.broker, TXN_TOPIC, index)
        if h is None or h.partition is not p:
            h = self._host(index, p)
        if h.loading:
            return None, errors.COORDINATOR_LOAD_IN_PROGRESS
        return h, 0

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
        """KIP-890 verification of a transactional write to (topic, index): 0 or
        the error for the Produce. For a coordinator on another broker, the
        answer ``prepare_verify`` got from it, or ``unasked`` if it was not
        asked. A fenced producer's write is refused INVALID_PRODUCER_EPOCH, not
        the coordinator's PRODUCER_FENCED, as Kafka maps it for Produce (and
        as producers expect: librdkafka raises it as fatal, _FENCED)."""
        h, code = self.shard_for(transactional_id)
        if code == errors.NOT_COORDINATOR:
            code = self._remote.pop((transactional_id, producer_id, producer_epoch, topic, index), unasked)
        elif code == errors.COORDINATOR_NOT_AVAILABLE:
            return errors.INVALID_TXN_STATE  # no transaction was ever begun
        elif code:
            return errors.NOT_ENOUGH_REPLICAS  # retriable for producers, as Kafka answers
        else:
            code = h.shard.verify(transactional_id, producer_id, producer_epoch, (topic, index))
        return errors.INVALID_PRODUCER_EPOCH if code == errors.PRODUCER_FENCED else code

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
        if node < 0 or node == self.broker.config.node_id or not hasattr(self.markers, "peers"):
            return
        body = {"transactions": [{"transactional_id": transactional_id, "producer_id": h.producer_id,
                                  "producer_epoch": h.producer_epoch, "verify_only": True,
                                  "topics": [{"name": p.topic.name, "partitions": [p.index]}]}]}
        code = errors.NOT_ENOUGH_REPLICAS
        try:
            resp = await self.markers.peers.call(node, "AddPartitionsToTxn", 4, body)
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
        self.broker.replicas.listeners.append(self._on_hosting_changed)
        loads = self.sync_shards()
        if loads:
            started = time.monotonic()
            await asyncio.gather(*loads, return_exceptions=True)
            log.info("loaded %d transactional ids from %d partitions of %s in %.3fs",
                     sum(len(h.shard.txns) for h in self.hosted.values()), len(loads), TXN_TOPIC,
                     time.monotonic() - started)

    async def stop(self) -> None:
        self._stopped = True
        for index in list(self.hosted):
            self.unload(index)
        tasks = list(self.sending.values())
        if self._create_task is not None and not self._create_task.done():
            tasks.append(self._create_task)
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
        if TXN_TOPIC not in self.broker.image:
            if self._create_task is None or self._create_task.done():
                self._create_task = asyncio.get_running_loop().create_task(self._create_topic())
            if await asyncio.shield(self._create_task) is None:
                return False
        loads = self.sync_shards()
        if loads:
            await asyncio.shield(asyncio.gather(*loads, return_exceptions=True))
        return True

    async def _create_topic(self):
        return await create_state_topic(self.broker, TXN_TOPIC, self.config.num_partitions,
                                        self.config.replication_factor, TXN_TOPIC_CONFIGS, self.config.min_isr, log)

    # -- hosting ---------------------------------------------------------
    def sync_shards(self) -> list[asyncio.Task]:
        state = self.broker.image.get(TXN_TOPIC)
        count = len(state.partitions) if state is not None else 0
        if count:
            self.config.num_partitions = count
        started = []
        for index in range(count):
            p, code = self.broker.replicas.partition_or_error(TXN_TOPIC, index)
            h = self.hosted.get(index)
            if code:
                if h is not None:
                    self.unload(index)
            elif h is None or h.partition is not p:
                started.append(self._host(index, p).load_task)
        for index in [i for i in self.hosted if i >= count]:
            self.unload(index)
        return started

    def _on_hosting_changed(self, gained: list, lost: list) -> None:
        if not self._stopped and any(p.topic.name == TXN_TOPIC for p in gained + lost):
            self.sync_shards()

    def _host(self, index: int, partition) -> Hosted:
        if index in self.hosted:
            self.unload(index)
        h = Hosted(index, partition, TransactionShard(self.config, index))
        h.runner = ShardRunner(h.shard, lambda records, now: self._append(h, records, now))
        self.hosted[index] = h
        h.load_task = asyncio.get_running_loop().create_task(self._load(h))
        return h

    def unload(self, index: int) -> None:
        h = self.hosted.pop(index, None)
        if h is None:
            return
        if h.timer is not None:
            h.timer.cancel()
        if h.load_task is not None and not h.load_task.done():
            h.load_task.cancel()
        for key in [k for k in self.sending if k[0] == index]:
            self.sending.pop(key).cancel()
        if not self._stopped:
            log.info("%s-%d unloaded: its transactional ids are no longer coordinated here", TXN_TOPIC, index)

    async def _load(self, h: Hosted) -> None:
        try:
            p = h.partition
            offset, end = p.log_start_offset, p.log_end_offset
            while offset < end:
                chunk = p.read_for_replica(offset, LOAD_READ_BYTES, upto=end)
                if not chunk.size:
                    break
                buf = b"".join(chunk.chunks)
                progressed = False
                now = now_ms()
                for pos, bh in iter_batches(buf):
                    if bh.next_offset <= offset:
                        continue
                    if not bh.is_control:
                        for r in decode_batch(buf, pos)[1]:
                            if r.offset >= offset:
                                h.runner.load(r.key, r.value, now)
                    offset = bh.next_offset
                    progressed = True
                if not progressed:
                    break
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("loading %s-%d failed; its transactional ids start empty", TXN_TOPIC, h.index)
        if self.hosted.get(h.index) is not h:
            return
        h.loading = False
        self._after(h)

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

    def _append(self, h: Hosted, records: list, now: int) -> None:
        h.last_written = append_records(self.broker, TXN_TOPIC, h.index, records, now, h.partition,
                                        acks_all=True).last_offset

    async def committed(self, h: Hosted) -> int:
        """0 once everything ``h`` appended is committed (below the high
        watermark); NOT_COORDINATOR if leadership is lost first."""
        code = await h.partition.wait_replicated(h.last_written)
        return errors.NOT_COORDINATOR if code else 0

    def _after(self, h: Hosted) -> None:
        if self._stopped or self.hosted.get(h.index) is not h:
            return
        loop = asyncio.get_running_loop()
        for txn_id, job in h.shard.markers.items():
            task = self.sending.get((h.index, txn_id))
            if task is None or task.done():
                self.sending[(h.index, txn_id)] = loop.create_task(self._send(h, job))
        self._reschedule(h)

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
    def _reschedule(self, h: Hosted) -> None:
        deadline = h.shard.next_deadline()
        if deadline is None or (h.timer is not None and h.timer_at is not None and h.timer_at <= deadline):
            return
        if h.timer is not None:
            h.timer.cancel()
        delay = max(0.01, (deadline - now_ms() + 1) / 1000)  # a failed write is retried, not spun on
        h.timer = asyncio.get_running_loop().call_later(delay, self._on_timer, h)
        h.timer_at = deadline

    def _on_timer(self, h: Hosted) -> None:
        h.timer = None
        h.timer_at = None
        if self.hosted.get(h.index) is not h:
            return
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
