"""A partition hosted by this broker, with its behaviour; and the topic that holds it.

A ``Partition`` owns its log, its idempotent producers' state and the fetches
waiting on it. Every rule about a partition lives here, so that API handlers
and coordinators never touch a log:

- a partition has the role the metadata image gives it (``apply_state``):
  leader when its leader is this broker, else follower (of leader -1: of
  nobody, offline);
- appends happen as leader (``append_as_leader``: stamp with this leader's
  epoch, append, record producer state, wake the waiters, schedule the flush
  the log asks for) or as follower (``append_as_follower``: the leader's
  batches as they are, offsets and epochs kept, their producers' state and
  transaction markers recorded as the leader recorded them);
- the leader tracks each follower's log end from its fetches and moves the
  high watermark to the lowest log end over the ISR (its "maximal" form while
  an expansion is being written); the high watermark only increases while
  this broker leads; acks=all waiters complete when it passes their offset;
- a consumer reads below the high watermark (read_committed: below the last
  stable offset, with the aborted transactions of what it read), a replica up
  to the log end;
- transaction markers are appended as leader through one method
  (``append_marker``), for a local coordinator and for WriteTxnMarkers alike;
- the leader epoch is checked where a request carries one;
- truncation rebuilds the producer state from what is left.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from odradek.config import TopicConfig
from odradek.metadata.topics import INTERNAL_TOPICS, PartitionState
from odradek.producers import ProducerStateTable, marker_in
from odradek.protocol import errors
from odradek.protocol.batch import iter_batches
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


class FollowerState:
    """What a leader knows of one follower, from its fetches: its log end, and
    when it was last caught up (Kafka's lastCaughtUpTimeMs)."""

    __slots__ = ("log_end_offset", "caught_up_ms", "last_fetch_ms", "leader_end_at_last_fetch")

    def __init__(self, caught_up_ms: int):
        self.log_end_offset = -1  # unknown until it fetches
        self.caught_up_ms = caught_up_ms
        self.last_fetch_ms = 0
        self.leader_end_at_last_fetch = -1


class Partition:
    __slots__ = ("topic", "index", "log", "leader", "leader_epoch", "waiters", "producers",
                 "pending_snapshot", "_schedule_flush", "node_id", "replicas", "isr", "state_revision",
                 "followers", "epoch_start_offset", "pending_isr", "_acks", "_isr_changes", "changes")

    def __init__(self, topic: Topic, index: int, log: PartitionLog, node_id: int,
                 schedule_flush: Callable[["Partition"], None]):
        """A partition with no role yet: ``apply_state`` gives it one."""
        self.topic = topic
        self.index = index
        self.log = log
        self.leader = -1
        self.leader_epoch = -1
        self.waiters: set[asyncio.Future] = set()
        self.changes = 0  # counts notify(): what a fetch reads here is the same while it stands still
        self.producers = ProducerStateTable()
        #: producer snapshot bytes taken at a segment roll, written by the flush
        #: the roll schedules (ReplicaManager.flush), after the rolled segment's fsync
        self.pending_snapshot: bytes | None = None
        self._schedule_flush = schedule_flush
        self.node_id = node_id
        self.replicas: list[int] = []
        self.isr: list[int] = []  # as the image has it
        self.state_revision = 0  # the partition key's mod revision the state came from
        self.followers: dict[int, FollowerState] = {}  # as leader
        self.epoch_start_offset = 0  # as leader: where this leader's epoch began
        self.pending_isr: list[int] | None = None  # as leader: an ISR change being written
        self._acks: list[tuple[int, asyncio.Future]] = []  # (offset, waiter), offsets ascending
        #: called with (partition, proposed ISR) when, as leader, the ISR should change
        self._isr_changes: Callable[["Partition", list[int]], None] | None = None

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
    def size_in_bytes(self) -> int:
        """Bytes of this partition's log on this broker (its segments)."""
        return self.log.size_in_bytes()

    @property
    def config(self) -> TopicConfig:
        return self.topic.config

    @property
    def compacted(self) -> bool:
        return "compact" in self.log.config.cleanup_policy

    @property
    def is_leader(self) -> bool:
        return self.leader == self.node_id

    @property
    def under_min_isr(self) -> bool:
        """Whether the ISR is smaller than the topic's ``min.insync.replicas``: an
        acks=all write (a client's, or a coordinator's) is then refused."""
        return len(self.isr) < self.config.get_int("min.insync.replicas")

    @property
    def maximal_isr(self) -> list[int]:
        """The ISR the high watermark is computed over: the image's, widened
        by an expansion being written (it may have committed already)."""
        if self.pending_isr is not None and len(self.pending_isr) > len(self.isr):
            return self.pending_isr
        return self.isr

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
        self._snapshot_if_rolled(info.base_offset)
        topic = self.topic
        topic.bytes_in += len(records)
        topic.messages_in += info.last_offset - info.base_offset + 1
        if producer_batch is not None:
            self.producers.record(producer_batch, info.base_offset)
        if len(self.isr) == 1 and self.pending_isr is None:  # alone in the ISR: committed at once
            self.log.set_high_watermark(info.last_offset + 1)
            if self._acks:
                self._complete_acks()
        self.notify()
        if self.log.flush_due:
            self._schedule_flush(self)
        return info

    def append_as_follower(self, records: bytearray, now_ms: int) -> AppendInfo:
        """Append batches fetched from the leader as they are (offsets and
        epochs kept), recording their producers' state. Raises InvalidBatch."""
        info = self.log.append_replicated(records, now_ms)
        self._snapshot_if_rolled(info.base_offset)
        for pos, h in iter_batches(records):
            if h.producer_id < 0:
                continue
            if h.is_control:  # a transaction marker: its type is in the batch's one record
                marker = marker_in(records, pos)
                if marker is not None:
                    a = self.producers.record_marker(h.producer_id, h.producer_epoch, h.base_offset,
                                                     marker[0], h.max_timestamp, marker[1])
                    if a is not None:
                        self.log.append_aborted(a)
            elif h.base_sequence >= 0 or h.is_transactional:
                self.producers.record(h, h.base_offset)
        self.notify()
        if self.log.flush_due:
            self._schedule_flush(self)
        return info

    def _snapshot_if_rolled(self, covered: int) -> None:
        """If the log just rolled a segment, take the producer snapshot as of
        its base offset (as Kafka does at a roll), for the flush the roll asks
        for to write. ``covered``: the offset the table is at now (every batch
        below it recorded, none above); a roll elsewhere (an append that failed
        after rolling) is left without one: snapshots are an optimisation only."""
        roll = self.log.pop_roll()
        if roll is None or roll[0] != covered:
            return
        data = self.producers.snapshot(self.log, offset=roll[0], anchor=roll[1])
        if data is not None:
            self.pending_snapshot = data

    def follow_high_watermark(self, leader_high_watermark: int) -> None:
        """As follower: the leader's high watermark, capped by this log's end."""
        before = self.log.high_watermark
        self.log.set_high_watermark(min(leader_high_watermark, self.log.log_end_offset))
        if self.log.high_watermark != before:
            self.notify()

    # -- roles --------------------------------------------------------------------
    def apply_state(self, s: PartitionState, now_ms: int) -> bool:
        """Take the state the image has for this partition; return True if this
        broker's role or the leader epoch changed (a new leadership)."""
        new_leadership = (s.leader, s.leader_epoch) != (self.leader, self.leader_epoch)
        was_leader = self.is_leader
        if s.revision != self.state_revision:
            # A pending ISR change was written before this state or lost to it
            # (it compared the revision it was decided on): it is over either way.
            self.pending_isr = None
        self.leader, self.leader_epoch = s.leader, s.leader_epoch
        self.replicas, self.isr, self.state_revision = list(s.replicas), list(s.isr), s.revision
        if new_leadership:
            if was_leader or not self.is_leader:
                self._fail_acks(errors.NOT_LEADER_OR_FOLLOWER)
            if self.is_leader:
                self._become_leader(now_ms)
            else:
                self.followers = {}
        elif self.is_leader and any(r not in self.replicas for r in self.followers):
            # Replicas a reassignment removed: no longer followers.
            self.followers = {r: f for r, f in self.followers.items() if r in self.replicas}
        if self.is_leader:
            self.advance_high_watermark()
        self.notify()
        return new_leadership

    def _become_leader(self, now_ms: int) -> None:
        """Followers' log ends are unknown until they fetch; those in the ISR
        count as caught up now (they get ``replica.lag.time.max.ms`` to fetch)."""
        self.followers = {r: FollowerState(now_ms if r in self.isr else 0)
                          for r in self.replicas if r != self.node_id}
        self.epoch_start_offset = self.log.log_end_offset
        if self.leader_epoch > self.log.latest_epoch:
            self.log.assign_epoch(self.leader_epoch)

    def on_follower_fetch(self, replica_id: int, fetch_offset: int, now_ms: int) -> None:
        """As leader: follower ``replica_id`` fetches from ``fetch_offset``, so
        it holds everything below it. Moves the high watermark, and asks for
        the follower to join the ISR once it has caught up.

        A fetch of an ISR member after which nothing moved (its log end and
        this log's end are those of its last fetch) only moves its clocks: the
        high watermark was computed on those log ends already (an ISR change
        computes it again, and nothing else moves it)."""
        f = self.followers.get(replica_id)
        end = self.log.log_end_offset
        offset = min(fetch_offset, end)
        if f is not None and offset == f.log_end_offset and end == f.leader_end_at_last_fetch \
                and replica_id in self.isr:
            if offset >= end:
                f.caught_up_ms = now_ms
            f.last_fetch_ms = now_ms
            return
        if replica_id not in self.replicas:  # not (or no longer: a reassignment moved it) a replica
            return
        if f is None:
            f = self.followers[replica_id] = FollowerState(0)
        if offset >= end:
            f.caught_up_ms = now_ms
        elif offset >= f.leader_end_at_last_fetch >= 0:
            f.caught_up_ms = max(f.caught_up_ms, f.last_fetch_ms)
        f.leader_end_at_last_fetch = end
        f.last_fetch_ms = now_ms
        f.log_end_offset = offset
        if (replica_id not in self.isr and self.pending_isr is None
                and offset >= self.log.high_watermark and offset >= self.epoch_start_offset):
            self.propose_isr(sorted(set(self.isr) | {replica_id}, key=self._replica_order))
        self.advance_high_watermark()

    def lagging_followers(self, now_ms: int, max_lag_ms: int) -> list[int]:
        """As leader: ISR members not caught up within ``max_lag_ms``."""
        return [r for r in self.isr if r != self.node_id
                and now_ms - self.followers.get(r, FollowerState(0)).caught_up_ms > max_lag_ms]

    def _replica_order(self, r: int) -> int:
        return self.replicas.index(r) if r in self.replicas else len(self.replicas)

    def propose_isr(self, isr: list[int]) -> None:
        """As leader: ask for the ISR to become ``isr`` (written, fenced, by the
        replica manager; the image then brings it back through ``apply_state``)."""
        if self._isr_changes is not None and self.pending_isr is None and isr != self.isr and isr:
            self.pending_isr = isr
            self._isr_changes(self, isr)

    def isr_change_failed(self) -> None:
        self.pending_isr = None
        if self.is_leader:
            self.advance_high_watermark()  # over the ISR without the expansion

    def advance_high_watermark(self) -> None:
        """As leader: the high watermark becomes the lowest log end over the
        (maximal) ISR, if that is higher; waiters are completed and woken."""
        hw = self.log.log_end_offset
        for r in self.maximal_isr:
            if r != self.node_id:
                f = self.followers.get(r)
                hw = min(hw, f.log_end_offset if f is not None else -1)
        if hw > self.log.high_watermark:
            self.log.set_high_watermark(hw)
            if self._acks:
                self._complete_acks()
            self.notify()

    # -- acks=all -----------------------------------------------------------------
    def replicated(self, offset: int) -> asyncio.Future | None:
        """As leader: None if the high watermark has passed ``offset`` already,
        else a future that resolves with 0 when it does, or with an error code
        (NOT_LEADER_OR_FOLLOWER when leadership is lost first)."""
        if self.log.high_watermark > offset:
            return None
        fut = asyncio.get_running_loop().create_future()
        self._acks.append((offset, fut))
        return fut

    def _complete_acks(self) -> None:
        hw = self.log.high_watermark
        acks = self._acks
        n = 0
        while n < len(acks) and acks[n][0] < hw:
            fut = acks[n][1]
            if not fut.done():
                fut.set_result(0)
            n += 1
        if n:
            del acks[:n]

    def _fail_acks(self, code: int) -> None:
        acks, self._acks = self._acks, []
        for _, fut in acks:
            if not fut.done():
                fut.set_result(code)

    def discard_ack(self, fut: asyncio.Future) -> None:
        self._acks = [(o, f) for o, f in self._acks if f is not fut]

    async def wait_replicated(self, offset: int, timeout_s: float | None = None) -> int | None:
        """As leader: 0 once the high watermark passes ``offset`` (at once if
        it has, or if ``offset`` is negative: nothing was written), the error
        code if leadership is lost first, None if ``timeout_s`` passes first
        (the wait is then taken off the partition). What a coordinator awaits
        before answering from what it wrote."""
        fut = self.replicated(offset) if offset >= 0 else None
        if fut is None:
            return 0
        if timeout_s is None:
            return await asyncio.shield(fut)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except asyncio.TimeoutError:
            self.discard_ack(fut)
            return None

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
        start = self.log.delete_records_before(offset)
        self.notify()
        return start

    def apply_retention(self, now_ms: int) -> int:
        """Delete the segments retention lets go; return how many."""
        deleted = self.log.apply_retention(now_ms)
        self._snapshot_if_rolled(self.log.log_end_offset)  # a roll by segment.ms
        if self.log.flush_due:  # the rolled segment, and the snapshot
            self._schedule_flush(self)
        if deleted:
            self.notify()  # the log start moved
        return deleted

    def truncate_to(self, offset: int) -> None:
        """Drop everything from ``offset`` on, and the producer state of it."""
        self.log.truncate_to(offset)
        self.rebuild_producers()
        self.notify()

    def reset_to(self, offset: int) -> None:
        """As follower: start the log afresh, empty, at ``offset`` (the leader's log start)."""
        self.log.reset_to(offset)
        self.rebuild_producers()
        self.notify()

    def rebuild_producers(self) -> None:
        """Rebuild the producer state from the log (snapshot and replay), and
        with it the ``.txnindex`` entries recovery or truncation dropped."""
        self.pending_snapshot = None  # of the log before truncation
        self.producers.rebuild(self.log)
        self.log.restore_aborted(self.producers.txns.aborted)

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

        if not self.is_leader:
            return errors.NOT_LEADER_OR_FOLLOWER
        code = self.producers.check_marker(producer_id, producer_epoch, coordinator_epoch)
        if code:
            return code
        if not self.producers.marker_needed(producer_id, producer_epoch):
            return 0
        batch = build_control_batch(CONTROL_COMMIT if commit else CONTROL_ABORT, producer_id,
                                    producer_epoch, coordinator_epoch, now_ms)
        info = self.append_as_leader(bytearray(batch), now_ms)  # high watermark, acks, waiters, flush
        a = self.producers.record_marker(producer_id, producer_epoch, info.base_offset, commit,
                                         now_ms, coordinator_epoch)
        if a is not None:
            self.log.append_aborted(a)
        self.producers.txns.settle(self.log.high_watermark)
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
        aborted = self.log.aborted_between(offset, lso) if result.size else []
        return result, aborted

    # -- waiting fetches ------------------------------------------------------------
    def add_waiter(self, fut: asyncio.Future) -> None:
        """Resolve ``fut`` at the next change to what a fetch reads here (an
        append, the high watermark or the log start moving, a new leader
        state, the partition going away: ``notify``). The notification also
        forgets ``fut``, so a fetch woken from several partitions tells those
        that changed from those still holding its future."""
        self.waiters.add(fut)

    def discard_waiter(self, fut: asyncio.Future) -> bool:
        """Forget ``fut``; False when a notification took it already (this
        partition changed since ``add_waiter``)."""
        if fut in self.waiters:
            self.waiters.discard(fut)
            return True
        return False

    def notify(self) -> None:
        """Wake the fetches waiting on this partition (and count the change:
        ``changes``, which follower sessions compare, odradek.apis.fetch)."""
        self.changes += 1
        if self.waiters:
            for fut in self.waiters:
                if not fut.done():
                    fut.set_result(None)
            self.waiters.clear()
