"""The replica manager: every partition this broker hosts, and the one lookup
every API makes.

``partition_or_error(topic, index)`` is where a request's (topic name or id,
partition) becomes a Partition or a Kafka error code; API handlers and
coordinators call it and nothing below it. The manager hosts what the
metadata image assigns to this broker: ``reconcile`` opens the logs of
partitions whose replicas name it, follows changes of leader, epoch and
config, and closes and deletes the logs of topics that are gone and of
partitions whose replicas no longer name it (a reassignment moved them
away). It also runs the flushes partitions ask for, off the event loop.

Invariants: a partition is reachable through the lookup only once its log is
open and the image holds it; its log is closed only after it is no longer
reachable. Reconciliations run one at a time, in revision order. Blocking
work (opening, recovering, deleting, flushing logs) runs on the broker's
background threads (``odradek.background``, ``background.threads``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable

from odradek.clock import now_ms
from odradek.background import BackgroundPool
from odradek.config import BrokerConfig, TopicConfig
from odradek.metadata.image import MetadataImage, Progress
from odradek.metadata.store import Compare, MetadataStore, StoreUnavailable
from odradek.metadata.topics import PartitionState, TopicState, update_partition_txn
from odradek.metrics import LATENCY_BUCKETS, Histogram
from odradek.producers import write_snapshot
from odradek.protocol import errors
from odradek.replica.partition import Partition, Topic
from odradek.replica.throttle import (FOLLOWER_RATE, FOLLOWER_REPLICAS, LEADER_RATE, LEADER_REPLICAS,
                                     ReplicationQuota)
from odradek.storage.base import LogStore

log = logging.getLogger("odradek.replicas")


def _flush(plog, snapshot: bytes | None) -> float:
    """Blocking: fsync ``plog``, then write ``snapshot`` (producer state taken
    at a roll) if any; return the seconds the fsync took."""
    t0 = time.perf_counter()
    plog.flush()
    took = time.perf_counter() - t0
    write_snapshot(plog, snapshot)  # a failure is logged: the next rebuild replays more
    return took


class ReplicaManager:
    def __init__(self, config: BrokerConfig, image: MetadataImage, background: BackgroundPool | None = None):
        self.config = config
        #: the broker's background threads, where blocking work runs
        self.background = background if background is not None else BackgroundPool()
        self.node_id = config.node_id
        self.image = image
        self.store: LogStore | None = None
        self.topics: dict[str, Topic] = {}
        self.topics_by_id: dict[bytes, Topic] = {}
        #: (topic id, partition) -> (topic name, why its log could not be opened here)
        self.failed: dict[tuple[bytes, int], tuple[str, OSError]] = {}
        #: called after each reconcile with (partitions now hosted or with a new
        #: leadership, partitions no longer hosted)
        self.listeners: list[Callable[[list[Partition], list[Partition]], None]] = []
        #: where ISR changes are written, and the compare that fences them (this
        #: broker's registration epoch); set by the broker once registered
        self.metadata: MetadataStore | None = None
        self.fence: Callable[[], Compare] | None = None
        self.fetchers = None  # odradek.replica.fetcher.FetcherManager, once started
        self._isr_writes: set[asyncio.Task] = set()
        self.reconciled = Progress()  # the image revision the hosted partitions follow
        self._lock = asyncio.Lock()
        self._flushes: set[asyncio.Task] = set()
        self._flushing: dict[Partition, asyncio.Future] = {}  # partition -> its flush in progress, done when over
        self.flush_time = Histogram(LATENCY_BUCKETS)  # seconds per partition flush (fsync), odradek.metrics
        self.isr_shrinks = 0  # ISR changes written as leader that took replicas out (Kafka's IsrShrinksPerSec)
        self.isr_expands = 0  # ... and that added replicas (IsrExpandsPerSec)
        #: replication throttles (KIP-73): what this broker sends as leader, and fetches as follower
        self.leader_throttle = ReplicationQuota(config, self.node_id, LEADER_RATE, LEADER_REPLICAS)
        self.follower_throttle = ReplicationQuota(config, self.node_id, FOLLOWER_RATE, FOLLOWER_REPLICAS)

    # -- lookups -------------------------------------------------------------------
    def topic(self, name_or_id: str | bytes | None) -> Topic | None:
        if isinstance(name_or_id, (bytes, bytearray)):
            return self.topics_by_id.get(bytes(name_or_id))
        return self.topics.get(name_or_id)

    def partition_or_error(self, topic: str | bytes | None, index: int, *,
                           leader_required: bool = True,
                           current_leader_epoch: int = -1) -> tuple[Partition | None, int]:
        """(partition, 0), or (None, the error code a request gets): an unknown
        topic id is UNKNOWN_TOPIC_ID, an unknown name or partition
        UNKNOWN_TOPIC_OR_PARTITION, a partition this broker does not host or
        does not lead (with ``leader_required``) NOT_LEADER_OR_FOLLOWER, and a
        request's leader epoch other than the partition's FENCED_LEADER_EPOCH
        (older) or UNKNOWN_LEADER_EPOCH (newer)."""
        t = self.topic(topic)
        p = t.by_index.get(index) if t is not None else None
        if p is None:
            state = self.image.get(topic)
            if state is not None and 0 <= index < len(state.partitions):
                return None, errors.NOT_LEADER_OR_FOLLOWER
            if state is None and isinstance(topic, (bytes, bytearray)):
                return None, errors.UNKNOWN_TOPIC_ID
            return None, errors.UNKNOWN_TOPIC_OR_PARTITION
        if leader_required and p.leader != self.node_id:
            return None, errors.NOT_LEADER_OR_FOLLOWER
        code = p.check_leader_epoch(current_leader_epoch)
        return (None, code) if code else (p, 0)

    def leader_throttled(self, replica_id: int, now_ms: int) -> Callable[[Partition], bool] | None:
        """Which partitions a Fetch of follower ``replica_id`` gets no records
        of now (KIP-73, ``odradek.replica.throttle``): those the leader
        throttle lists with this follower out of their ISR, while the rate
        is over its bound; None when the rate is within it."""
        throttle = self.leader_throttle
        if not throttle.exceeded(now_ms):
            return None
        return lambda p: throttle.listed(p) and replica_id not in p.isr

    def sent_to_follower(self, sent: list[tuple[Partition, int]], now_ms: int) -> None:
        """(partition, bytes of records) a follower's Fetch carried: the
        listed partitions' count against the leader throttle."""
        throttle = self.leader_throttle
        throttle.record(sum(size for p, size in sent if throttle.listed(p)), now_ms)

    def all_partitions(self) -> Iterable[Partition]:
        for t in list(self.topics.values()):
            yield from t.partitions

    # -- hosting: following the image -------------------------------------------------
    def mine(self, state: TopicState) -> list[int]:
        """Indexes of the partitions of ``state`` this broker hosts."""
        return [i for i, p in enumerate(state.partitions) if self.node_id in p.replicas]

    def open_partitions(self, topic: Topic, indexes: list[int], state: TopicState) -> list[Partition]:
        """Open the logs of ``indexes`` of ``topic`` (blocking: recovery reads
        the logs and may fsync). A log that cannot be opened is recorded in
        ``failed`` and its partition is not hosted (a new log's half-created
        files are removed; an existing log is left as it is)."""
        lc = topic.config.log_config()
        opened: list[Partition] = []
        for i in indexes:
            s = state.partitions[i]
            existed = self.store.has_log(topic.name, i)
            try:
                log_ = self.store.open_log(topic.name, i, lc)
            except OSError as e:
                # A new log's half-created files go (delete_log needs no new file
                # descriptors); an existing log's data stays for the next start.
                if not existed:
                    try:
                        self.store.delete_log(topic.name, i)
                    except OSError:  # left for the next start's clean-up
                        pass
                self.failed[(topic.topic_id, i)] = (topic.name, e)
                log.error("cannot open the log of %s-%d: %s", topic.name, i, e)
                continue
            p = Partition(topic, i, log_, self.node_id, self.schedule_flush)
            p._isr_changes = self.write_isr
            p.rebuild_producers()
            opened.append(p)
        return opened

    def refresh_configs(self) -> None:
        """Resolve every hosted topic's config again: the broker settings its
        defaults come from (dynamic broker configs) have changed."""
        for t in self.topics.values():
            t.set_config(TopicConfig(self.config, t.config.overrides))

    async def reconcile(self, names: Iterable[str] | None = None) -> None:
        """Host what the image assigns to this broker, for the topics ``names``
        (default: all, and the topics hosted now), and note the image's
        revision as followed."""
        async with self._lock:
            revision = self.image.revision
            wanted = set(self.topics) | set(self.image.topics) if names is None else set(names)
            gained: list[Partition] = []
            lost: list[Partition] = []
            for name in sorted(wanted):
                try:
                    await self._reconcile_topic(name, gained, lost)
                except Exception:  # one topic's trouble stops neither the others nor the waiters
                    log.exception("hosting the partitions of %s failed", name)
            self.reconciled.advance(revision)
        if gained or lost:
            if self.fetchers is not None:
                self.fetchers.follow(gained, lost)
            for listener in self.listeners:
                listener(gained, lost)

    async def _reconcile_topic(self, name: str, gained: list, lost: list) -> None:
        state = self.image.get(name)
        hosted = self.topics.get(name)
        if hosted is not None and (state is None or state.topic_id != hosted.topic_id):
            self.remove(name)
            lost.extend(hosted.partitions)
            if self.fetchers is not None:
                # Their fetches stop before the logs close: a fetcher that built a
                # request from a closed log died, and the follower left every ISR
                # of that leader.
                self.fetchers.follow([], hosted.partitions)
            await self.discard(hosted)
            hosted = None
        if state is None or (hosted is None and self._failed_of(name, state.topic_id)):
            stale = self._failed_of(name, None if state is None else state.topic_id)
            if stale:  # logs of a deleted topic that could not be opened: their files go too
                for key in stale:
                    del self.failed[key]
                await self.background.run(self._delete_logs_quietly, name, [i for _, i in stale])
        if state is None:
            return
        indexes = self.mine(state)
        if hosted is None:
            if not indexes:
                return
            hosted = Topic(state.name, state.topic_id, TopicConfig(self.config, state.configs))
        elif hosted.config.overrides != state.configs:
            hosted.set_config(TopicConfig(self.config, state.configs))
        now = now_ms()
        dropped = [p for p in hosted.partitions if p.index not in indexes]
        for p in hosted.partitions:
            s = state.partitions[p.index] if p.index < len(state.partitions) else None
            if s is not None and s.revision != p.state_revision and p.apply_state(s, now) \
                    and p not in dropped:
                gained.append(p)
        if dropped:
            await self._drop(hosted, dropped, lost)
        new = [i for i in indexes if i not in hosted.by_index
               and (state.topic_id, i) not in self.failed]
        if new:
            opened = await self.background.run(self.open_partitions, hosted, new, state)
            now = now_ms()
            for p in opened:
                p.apply_state(state.partitions[p.index], now)
            hosted.host(opened)
            gained.extend(opened)
        if hosted.partitions and name not in self.topics:
            self.add(hosted)
        elif not hosted.partitions and self.topics.get(name) is hosted:
            self.remove(name)

    async def _drop(self, hosted: Topic, dropped: list[Partition], lost: list) -> None:
        """Stop hosting ``dropped`` partitions of ``hosted``, which the image no
        longer assigns to this broker (a reassignment moved them away): first
        unreachable (out of the lookup, their fetchers stopped), then their
        logs closed and deleted; the listeners learn of them with ``lost``."""
        for p in dropped:
            hosted.by_index.pop(p.index, None)
        hosted.host([])
        if self.fetchers is not None:
            self.fetchers.follow([], dropped)
        lost.extend(dropped)
        log.info("%s: no longer a replica here; deleting the log(s) of partition(s) %s",
                 hosted.name, [p.index for p in dropped])
        await self.discard(hosted, dropped)

    def _failed_of(self, name: str, keep_id: bytes | None) -> list[tuple[bytes, int]]:
        """Failed partitions of topic ``name`` with another id than ``keep_id``."""
        return [k for k, (n, _) in self.failed.items() if n == name and k[0] != keep_id]

    def _delete_logs_quietly(self, name: str, indexes: list[int]) -> None:
        for i in indexes:
            try:
                self.store.delete_log(name, i)
            except OSError as e:
                log.warning("cannot delete the log of %s-%d: %s", name, i, e)

    async def wait_reconciled(self, revision: int) -> None:
        """Return once the hosted partitions follow the image at ``revision``."""
        await self.reconciled.reached(revision)

    def add(self, topic: Topic) -> None:
        """Make ``topic``'s partitions reachable."""
        self.topics[topic.name] = topic
        self.topics_by_id[topic.topic_id] = topic

    def remove(self, name: str) -> Topic | None:
        """Make the topic unreachable (its logs stay open: see ``discard``)."""
        topic = self.topics.pop(name, None)
        if topic is not None:
            self.topics_by_id.pop(topic.topic_id, None)
        return topic

    async def discard(self, topic: Topic, partitions: list[Partition] | None = None) -> None:
        """Close (without a flush: their files are going) and delete the logs of
        ``partitions`` (default: all the topic's), waking their fetches."""
        parts = topic.partitions if partitions is None else partitions
        for p in parts:
            p.notify()
            p.log.abandon()
        store, name, indexes = self.store, topic.name, [p.index for p in parts]

        def delete_logs():
            for i in indexes:
                store.delete_log(name, i)

        await self.background.run(delete_logs)

    def delete_leftovers(self) -> None:
        """Delete the logs on disk that the image does not give this broker:
        leftovers of a deletion (blocking; at startup, after the first reconcile)."""
        for name, index in self.store.existing_logs():
            t = self.topics.get(name)
            if t is None or index not in t.by_index:
                self.store.delete_log(name, index)

    # -- the ISR, as leader ------------------------------------------------------------
    def write_isr(self, p: Partition, isr: list[int]) -> None:
        """Write ``p``'s new ISR (``p.pending_isr``), fenced by this broker's
        epoch and the state it was decided on; on failure the partition may ask again."""
        if self.metadata is None or self.fence is None:
            p.isr_change_failed()
            return
        joining = set(isr) - set(p.isr)
        if joining and not joining <= set(self.image.brokers) - self.image.shutting_down():
            # KIP-841: only registered brokers not shutting down join an ISR
            # (the controller takes a stopping broker out; it must stay out).
            p.isr_change_failed()
            return
        task = asyncio.get_running_loop().create_task(self._write_isr(p, isr))
        self._isr_writes.add(task)
        task.add_done_callback(self._isr_writes.discard)

    async def _write_isr(self, p: Partition, isr: list[int]) -> None:
        topic = self.image.get(p.topic.name)
        known = topic.partitions[p.index] if topic is not None and p.index < len(topic.partitions) else None
        if known is None or known.revision != p.state_revision:  # the state moved on: decide again from it
            p.isr_change_failed()
            return
        new = PartitionState(p.leader, p.leader_epoch, list(p.replicas), isr, list(known.elr),
                             adding=list(known.adding), removing=list(known.removing))
        try:
            done = await self.metadata.txn(*update_partition_txn(
                p.topic.name, p.index, new, p.state_revision, self.fence()))
        except (StoreUnavailable, OSError) as e:
            log.warning("%s-%d: ISR change to %s not written: %s", p.topic.name, p.index, isr, e)
            done = None
        if done is None or not done.succeeded:
            p.isr_change_failed()
        else:
            log.info("%s-%d: ISR %s -> %s", p.topic.name, p.index, known.isr, isr)
            old = set(known.isr)  # p.isr may already be the new one: the image moves on its own
            self.isr_shrinks += bool(old - set(isr))
            self.isr_expands += bool(set(isr) - old)

    def shrink_isrs(self, now: int) -> None:
        """As leader, drop from each ISR the followers not caught up within
        ``replica.lag.time.max.ms`` (Kafka's rule; the leader always stays)."""
        max_lag = self.config.get_int("replica.lag.time.max.ms", 30000)
        for t in list(self.topics.values()):
            for p in t.partitions:
                if p.is_leader and len(p.isr) > 1 and p.pending_isr is None:
                    lagging = p.lagging_followers(now, max_lag)
                    if lagging:
                        p.propose_isr([r for r in p.isr if r not in lagging])

    async def run_isr_checks(self) -> None:
        interval = self.config.get_int("replica.lag.time.max.ms", 30000) / 2000
        while True:
            await asyncio.sleep(interval)
            self.shrink_isrs(now_ms())

    # -- flushes ----------------------------------------------------------------------
    def schedule_flush(self, p: Partition) -> None:
        """Flush ``p`` soon, in a worker thread (a partition asks after an append)."""
        task = asyncio.get_running_loop().create_task(self.flush(p))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def flush(self, p: Partition) -> None:
        """fsync ``p``'s log off the loop, then write the producer snapshot its
        last segment roll took (``p.pending_snapshot``): after the rolled
        segment's fsync, so the snapshot does not outrun the log it describes.
        One flush of a partition at a time, each taking the snapshot when its
        turn comes: on several background threads, an older roll's snapshot
        written last would replace a newer one."""
        while (running := self._flushing.get(p)) is not None:
            await running
        done = asyncio.get_running_loop().create_future()
        self._flushing[p] = done
        try:
            snapshot, p.pending_snapshot = p.pending_snapshot, None
            # Timed in the worker, counted here on the loop (the only writer of flush_time).
            self.flush_time.observe(await self.background.run(_flush, p.log, snapshot))
        finally:
            del self._flushing[p]
            done.set_result(None)

    async def wait_for_flushes(self) -> None:
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
