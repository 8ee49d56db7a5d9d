"""A partition hosted by this broker, with its behaviour; and the topic that holds it.

A ``Partition`` owns its log, its idempotent producers' state and the fetches
waiting on it. Every rule about a partition lives here, so that API handlers
and coordinators never touch a log:

- appends happen only as leader (``append_as_leader``), on the event loop:
  validate nothing more (the caller did), stamp, append, record producer
  state, wake the waiters, schedule the flush the log asks for;
- a consumer reads below the high watermark (read_committed: below the last
  stable offset, with the aborted transactions of what it read), a replica up
  to the log end;
- transaction markers are appended through one method (``append_marker``),
  here for a local coordinator and for WriteTxnMarkers alike;
- the leader epoch is checked where a request carries one;
- truncation rebuilds the producer state from what is left.

Only the leader role exists until replication arrives: a partition's
``leader`` is this broker's node id.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from odradek.config import TopicConfig
from odradek.metadata.topics import INTERNAL_TOPICS
from odradek.producers import ProducerStateTable
from odradek.protocol import errors
from odradek.storage.base import AppendInfo, PartitionLog, ReadResult


class Topic:
    """A topic this broker hosts some (on one broker: all) partitions of: its
    id, effective config and those partitions. ``partitions`` lists them by
    index; ``by_index`` finds one."""

    __slots__ = ("name", "topic_id", "partitions", "by_index", "config", "internal",
                 "bytes_in", "messages_in", "bytes_out")

    def __init__(self, name: str, topic_id: bytes, config: TopicConfig):
        self.name = name
        self.topic_id = topic_id
        self.partitions: list[Partition] = []
        self.by_index: dict[int, Partition] = {}
        self.config = config
        self.internal = name in INTERNAL_TOPICS
        # Counters (odradek.metrics): appended by this broker as leader, and sent by Fetch.
        self.bytes_in = 0
        self.messages_in = 0
        self.bytes_out = 0

    def host(self, partitions: list["Partition"]) -> None:
        for p in partitions:
            self.by_index[p.index] = p
        self.partitions = [self.by_index[i] for i in sorted(self.by_index)]

    def set_config(self, config: TopicConfig) -> None:
        self.config = config
        lc = config.log_config()
        for p in self.partitions:
            p.log.config = lc


class Partition:
    __slots__ = ("topic", "index", "log", "leader", "leader_epoch", "waiters", "producers",
                 "_schedule_flush")

    def __init__(self, topic: Topic, index: int, log: PartitionLog, leader: int, leader_epoch: int,
                 schedule_flush: Callable[["Partition"], None]):
        self.topic = topic
        self.index = index
        self.log = log
        self.leader = leader
        self.leader_epoch = leader_epoch
        self.waiters: set[asyncio.Future] = set()
        self.producers = ProducerStateTable()
        self._schedule_flush = schedule_flush

    def __repr__(self) -> str:
        return f"Partition({self.topic.name}-{self.index})"

    # -- what the APIs report --------------------------------------------------
    @property
    def high_watermark(self) -> int:
        return self.log.high_watermark

    @property
    def last_stable_offset(self) -> int:
        """Where read_committed consumers stop: the first offset of the earliest
        open transaction, or the high watermark (``odradek.txn_state``)."""
        return self.producers.txns.last_stable_offset(self.log.high_watermark)

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def config(self) -> TopicConfig:
        return self.topic.config

    @property
    def compacted(self) -> bool:
        return "compact" in self.log.config.cleanup_policy

    def check_leader_epoch(self, current: int) -> int:
        """The error for a request made at leader epoch ``current`` (-1: unchecked), or 0."""
        if current < 0 or current == self.leader_epoch:
            return 0
        if current < self.leader_epoch:
            return errors.FENCED_LEADER_EPOCH
        return errors.UNKNOWN_LEADER_EPOCH

    # -- appends ----------------------------------------------------------------
    def check_producer(self, first) -> tuple[int, int | None]:
        """(error code, offset of the duplicate) for an idempotent batch's header."""
        return self.producers.check(first)

    def append_as_leader(self, records: bytearray, now_ms: int, log_append_time: bool = False,
                         producer_batch=None) -> AppendInfo:
        """Append validated batches stamped with this leader's epoch; record the
        idempotent ``producer_batch`` header (checked already), wake the waiting
        fetches and schedule the flush the log asks for."""
        info = self.log.append(records, self.leader_epoch, now_ms, log_append_time)
        topic = self.topic
        topic.bytes_in += len(records)
        topic.messages_in += info.last_offset - info.base_offset + 1
        if producer_batch is not None:
            self.producers.record(producer_batch, info.base_offset)
        self.notify()
        if self.log.flush_due:
            self._schedule_flush(self)
        return info

    # -- reads ------------------------------------------------------------------
    def read_for_consumer(self, offset: int, max_bytes: int, min_one: bool = True) -> ReadResult:
        """Batches from ``offset`` below the high watermark. Raises OffsetOutOfRange."""
        return self.log.read(offset, max_bytes, self.log.high_watermark, min_one=min_one)

    def read_for_replica(self, offset: int, max_bytes: int, min_one: bool = True,
                         upto: int | None = None) -> ReadResult:
        """Batches from ``offset`` up to the log end (or ``upto``, if lower).
        Raises OffsetOutOfRange."""
        end = self.log.log_end_offset if upto is None else min(upto, self.log.log_end_offset)
        return self.log.read(offset, max_bytes, end, min_one=min_one)

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        return self.log.offset_for_timestamp(timestamp)

    def max_timestamp(self) -> tuple[int, int]:
        return self.log.max_timestamp()

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        return self.log.end_offset_for_epoch(epoch)

    # -- changes to what is kept --------------------------------------------------
    def delete_records_before(self, offset: int) -> int:
        """Move the log start to ``offset`` (at most the high watermark); return it."""
        return self.log.delete_records_before(offset)

    def truncate_to(self, offset: int) -> None:
        """Drop everything from ``offset`` on, and the producer state of it."""
        self.log.truncate_to(offset)
        self.producers.rebuild(self.log)

    # -- transactions ----------------------------------------------------------------
    def in_txn(self, producer_id: int) -> bool:
        """Whether ``producer_id`` has a transaction open here (its writes were verified)."""
        return self.producers.in_txn(producer_id)

    def append_marker(self, producer_id: int, producer_epoch: int, coordinator_epoch: int,
                      commit: bool, now_ms: int) -> int:
        """Append a commit or abort marker (a control batch, Kafka's EndTxnMarker)
        for ``producer_id`` as leader; 0 or the error. A marker that would end
        no open transaction and fence no older epoch (sent again after a
        coordinator restart) is answered without being appended again."""
        from odradek.protocol.records import CONTROL_ABORT, CONTROL_COMMIT, build_control_batch

        code = self.producers.check_marker(producer_id, producer_epoch, coordinator_epoch)
        if code:
            return code
        if not self.producers.marker_needed(producer_id, producer_epoch):
            return 0
        batch = build_control_batch(CONTROL_COMMIT if commit else CONTROL_ABORT, producer_id,
                                    producer_epoch, coordinator_epoch, now_ms)
        info = self.log.append(bytearray(batch), self.leader_epoch, now_ms)
        self.producers.record_marker(producer_id, producer_epoch, info.base_offset, commit, now_ms,
                                     coordinator_epoch)
        self.producers.txns.settle(self.log.high_watermark)
        self.notify()
        if self.log.flush_due:
            self._schedule_flush(self)
        return 0

    def describe_producers(self) -> list[dict]:
        """DescribeProducers: the producers this partition knows, with the
        first offset of each one's open transaction (-1: none)."""
        txns = self.producers.txns.ongoing
        return [{"producer_id": pid, "producer_epoch": e.epoch,
                 "last_sequence": e.batches[-1][1] if e.batches else -1,
                 "last_timestamp": e.last_timestamp, "coordinator_epoch": e.coordinator_epoch,
                 "current_txn_start_offset": txns.get(pid, -1)}
                for pid, e in sorted(self.producers.producers.items())]

    def read_committed(self, offset: int, max_bytes: int, min_one: bool = True):
        """read_committed: (batches from ``offset`` below the last stable offset,
        the aborted transactions overlapping them). Raises OffsetOutOfRange."""
        lso = self.last_stable_offset
        result = self.log.read(offset, max_bytes, lso, min_one=min_one)
        aborted = self.producers.txns.aborted_between(offset, lso) if result.size else []
        return result, aborted

    # -- waiting fetches ------------------------------------------------------------
    def add_waiter(self, fut: asyncio.Future) -> None:
        """Resolve ``fut`` at the next append (or deletion) of this partition."""
        self.waiters.add(fut)

    def discard_waiter(self, fut: asyncio.Future) -> None:
        self.waiters.discard(fut)

    def notify(self) -> None:
        """Wake the fetches waiting on this partition."""
        if self.waiters:
            for fut in self.waiters:
                if not fut.done():
                    fut.set_result(None)
            self.waiters.clear()
