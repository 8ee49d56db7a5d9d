"""The group coordinator: one shard per ``__consumer_offsets`` partition this broker leads.

Theory of operation
-------------------
:class:`GroupCoordinator` hosts a :class:`~odradek.coordinator.shard.GroupShard`
(classic groups, KIP-848 consumer groups and their offsets) for every
partition of ``__consumer_offsets`` that this broker leads, and drives them
from the event loop. A group lives in the shard of
``partition_for(group id)`` (Kafka's hash of the id, modulo the partitions).

A shard's life: it is created, in the *loading* state, when its partition is
found led here (at start, when the topic is created, or when a request finds
a led partition without a shard), and every record of the partition is
replayed into it, oldest first (transactional ones once committed), through
the same ``replay`` that applies new records. Then it is *active*. It is
dropped when the partition is no longer led here or the topic is deleted:
its parked JoinGroup/SyncGroup requests answer NOT_COORDINATOR.

:meth:`GroupCoordinator.shard_for` is where requests are routed, with the
replica manager's own lookup (``partition_or_error``): a group whose
partition this broker does not lead gets NOT_COORDINATOR, one whose shard
is loading COORDINATOR_LOAD_IN_PROGRESS, as Kafka's clients expect.
ListGroups spans the shards (COORDINATOR_LOAD_IN_PROGRESS while any loads),
as do DeleteGroups, the periodic offset expiry and a topic's deletion.

Every step of a shard (a request, its timer, the expiry, a topic deletion)
goes through :meth:`GroupCoordinator.execute`: the shard's
:class:`~odradek.coordinator.runtime.ShardRunner` runs the operation,
appends its records to the shard's partition (``append_as_leader``), replays
them and hands back completions; the coordinator resolves the futures of
parked requests from them and re-arms the shard's timer at its next
deadline. All of this runs synchronously on the event loop (appending does
not block on fsync), so no other request can interleave between an
operation and its write, and a response that depends on a write is sent only
after it is committed: once the partition's high watermark has passed it
(at once when the leader is alone in the ISR; on a replicated
``__consumer_offsets``, once the ISR has it): parked requests' through
their completions, the others' through :meth:`GroupCoordinator.answer`
(OffsetCommit must not be acknowledged before then: a failover would lose
it). If leadership is lost first, such responses carry NOT_COORDINATOR in
every error code.

The topic itself is created (compacted, ``offsets.topic.num.partitions``
partitions) on first use: FindCoordinator, JoinGroup, SyncGroup,
OffsetCommit, and a ConsumerGroupHeartbeat joining.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

from odradek.clock import now_ms
from odradek.coordinator import append_records, not_hosted_error, records as rec
from odradek.coordinator.config import ConsumerGroupConfig, GroupConfig, ShareGroupConfig
from odradek.coordinator.streams_groups import StreamsGroupConfig
from odradek.coordinator.runtime import Result, ShardRunner
from odradek.coordinator.shard import GroupShard
from odradek.protocol import errors
from odradek.protocol.batch import iter_batches
from odradek.protocol.records import CONTROL_COMMIT, InvalidBatch, decode_batch, decode_control_key

log = logging.getLogger("odradek.groups")

OFFSETS_TOPIC = "__consumer_offsets"
# How long a failed creation of a streams group's internal topic is told to
# its members before it is tried again (Kafka: twice the heartbeat interval).
INTERNAL_TOPIC_ERROR_TTL = 10.0
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "104857600"}
LOAD_READ_BYTES = 4 * 1024 * 1024


class BrokerTopics:
    """The broker's topics as the consumer groups see them."""

    def __init__(self, broker):
        self.broker = broker

    def get(self, name: str):
        t = self.broker.image.get(name)
        return None if t is None else (t.topic_id, len(t.partitions))

    def names(self):
        return [t.name for t in self.broker.image]

    def name_of(self, topic_id: bytes):
        t = self.broker.image.get(bytes(topic_id))
        return None if t is None else t.name


def with_error(response, code: int):
    """``response`` with ``code`` in every error code."""
    if isinstance(response, dict):
        return {k: (code if k == "error_code" else with_error(v, code)) for k, v in response.items()}
    if isinstance(response, list):
        return [with_error(v, code) for v in response]
    return response


def not_coordinator(response):
    """``response`` with NOT_COORDINATOR in every error code (a write that
    leadership was lost before it was committed)."""
    return with_error(response, errors.NOT_COORDINATOR)


class HostedShard:
    """A shard hosted here: its partition, runner, state and timer."""

    __slots__ = ("index", "partition", "shard", "runner", "loading", "load_task", "timer", "timer_at",
                 "last_written")

    def __init__(self, index: int, partition, shard: GroupShard):
        self.index = index
        self.partition = partition  # the Partition it was loaded from
        self.shard = shard
        self.runner: ShardRunner | None = None
        self.loading = True
        self.load_task: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: int | None = None
        self.last_written = -1  # offset of the last record this shard appended


class GroupCoordinator:
    def __init__(self, broker):
        self.broker = broker
        self.config = GroupConfig.from_broker(broker.config)
        self.consumer_config = ConsumerGroupConfig.from_broker(broker.config)
        self.share_config = ShareGroupConfig.from_broker(broker.config)
        self.streams_config = StreamsGroupConfig.from_broker(broker.config)
        self.topics = BrokerTopics(broker)
        self.hosted: dict[int, HostedShard] = {}
        self.tokens = itertools.count(1)  # parked requests' tokens, unique across shards
        self.waiters: dict[int, asyncio.Future] = {}
        self._tasks: list[asyncio.Task] = []
        self._create_task: asyncio.Task | None = None
        self._creating: set[str] = set()  # streams groups' internal topics being created
        self._creation_errors: dict[str, tuple[str, float]] = {}  # name -> (why it failed, until when told)
        self._stopped = False

    # -- routing ---------------------------------------------------------
    def partition_for(self, group_id: str | None) -> int:
        return rec.partition_for(group_id or "", self.config.num_partitions)

    def shard_for(self, group_id: str | None) -> tuple[GroupShard | None, int]:
        """The shard serving ``group_id``, or (None, the error a request gets)."""
        h, code = self._hosted_for(self.partition_for(group_id))
        return (h.shard, 0) if h is not None else (None, code)

    def _hosted_for(self, index: int) -> tuple[HostedShard | None, int]:
        """The active shard of partition ``index``, checking that this broker
        still leads it (and hosting it if it does and was not yet)."""
        p, code = self.broker.replicas.partition_or_error(OFFSETS_TOPIC, index)
        h = self.hosted.get(index)
        if code:
            if h is not None:
                self.unload(index)
            return None, not_hosted_error(self.broker, OFFSETS_TOPIC, index)
        if h is None or h.partition is not p:
            h = self._host(index, p)
        if h.loading:
            return None, errors.COORDINATOR_LOAD_IN_PROGRESS
        return h, 0

    def list_groups(self, states=None, types=None) -> tuple[int, list[dict]]:
        out = []
        for h in list(self.hosted.values()):
            if h.loading:
                return errors.COORDINATOR_LOAD_IN_PROGRESS, []
            out.extend(h.shard.list_groups(states, types))
        return 0, out

    async def delete_groups(self, group_ids: list[str]) -> dict:
        """DeleteGroups over the shards: ``{"results": [{group_id, error_code}]}``,
        once each shard's deletions are committed."""
        out: dict[int, dict] = {}
        routed: dict[int, tuple[GroupShard, list[int]]] = {}
        for i, gid in enumerate(group_ids):
            shard, code = self.shard_for(gid)
            if code:
                out[i] = {"group_id": gid, "error_code": code}
            else:
                routed.setdefault(id(shard), (shard, []))[1].append(i)
        written = [(shard, indexes, self.execute(shard, shard.delete_groups, [group_ids[i] for i in indexes]))
                   for shard, indexes in routed.values()]
        for shard, indexes, res in written:
            out.update(zip(indexes, (await self.answer(shard, res))["results"]))
        return {"results": [out[i] for i in range(len(group_ids))]}

    # -- inspection (tests, tools) --------------------------------------
    def group(self, group_id: str):
        """The group object of ``group_id`` in its shard, or None."""
        shard, _ = self.shard_for(group_id)
        return shard.groups.get(group_id) if shard is not None else None

    def durable_view(self) -> dict:
        """Every shard's durable view, merged (group ids are unique across shards)."""
        out = {}
        for h in self.hosted.values():
            out.update(h.shard.durable_view())
        return dict(sorted(out.items()))

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        started = time.monotonic()
        self.broker.replicas.listeners.append(self._on_hosting_changed)
        self.sync_shards()
        loads = [h.load_task for h in self.hosted.values() if h.loading]
        if loads:
            await asyncio.gather(*loads, return_exceptions=True)
            log.info("loaded %d groups from %d partitions of %s in %.3fs",
                     sum(len(h.shard.groups) for h in self.hosted.values()), len(loads), OFFSETS_TOPIC,
                     time.monotonic() - started)
        interval = self.broker.config.get_int("offsets.retention.check.interval.ms", 600000)
        self._tasks.append(asyncio.get_running_loop().create_task(self._expiry_loop(interval / 1000)))

    async def stop(self) -> None:
        self._stopped = True
        for index in list(self.hosted):
            self.unload(index, answer=False)
        if self._create_task is not None and not self._create_task.done():
            self._tasks.append(self._create_task)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        for fut in self.waiters.values():
            if not fut.done():
                fut.cancel()
        self.waiters.clear()

    async def ensure_topic(self) -> bool:
        """Create ``__consumer_offsets`` if it does not exist, and host its
        partitions led here; False if it cannot be.

        The creation runs as its own task, shielded from the request that asked
        for it: a client that disconnects mid-way must not leave the topic
        created in memory but missing from the broker's topic registry."""
        if OFFSETS_TOPIC not in self.broker.image:
            if self._create_task is None or self._create_task.done():
                self._create_task = asyncio.get_running_loop().create_task(self._create_topic())
            if await asyncio.shield(self._create_task) is None:
                return False
        loads = self.sync_shards()
        if loads:  # partitions new to this coordinator: a created topic's are empty
            await asyncio.shield(asyncio.gather(*loads, return_exceptions=True))
        return True

    async def _create_topic(self):
        from odradek.topic_admin import TopicError

        """``__consumer_offsets`` as the image has it once created (by this
        broker or another), or None if it cannot be."""
        state = self.broker.image.get(OFFSETS_TOPIC)
        if state is not None:
            return state
        try:
            return await self.broker.admin.create_topic(
                OFFSETS_TOPIC, self.config.num_partitions, self.broker.admin.offsets_replication_factor(),
                dict(OFFSETS_TOPIC_CONFIGS))
        except TopicError as e:
            state = self.broker.image.get(OFFSETS_TOPIC)
            if state is None:
                log.error("cannot create %s: %s", OFFSETS_TOPIC, e)
            return state

    def create_internal_topics(self, topics: list[tuple]) -> None:
        """Create a streams group's missing internal topics ((name,
        partitions, replication factor, configs)), each once at a time, in
        the background as Kafka's broker does: members are told
        MISSING_INTERNAL_TOPICS until the topics exist."""
        from odradek.topic_admin import TopicError

        admin = getattr(self.broker, "admin", None)
        if admin is None:
            return

        async def create(name, partitions, rf, configs):
            try:
                await admin.create_topic(name, partitions, rf, configs)
            except TopicError as e:
                if e.error_code != errors.TOPIC_ALREADY_EXISTS:
                    log.warning("cannot create internal topic %s: %s", name, e)
                    self._creation_errors[name] = (str(e), time.monotonic() + INTERNAL_TOPIC_ERROR_TTL)
            finally:
                self._creating.discard(name)

        now = time.monotonic()
        for name, partitions, rf, configs in topics:
            if name in self._creating or name in self.broker.image:
                continue
            failed = self._creation_errors.get(name)
            if failed is not None and failed[1] > now:
                continue  # it failed lately: told to the members for a while before trying again
            self._creating.add(name)
            task = asyncio.get_running_loop().create_task(create(name, partitions, rf, configs))
            self._tasks = [t for t in self._tasks if not t.done()]
            self._tasks.append(task)

    def internal_topic_errors(self, names: list[str]) -> list[tuple[str, str]]:
        """(name, why) of internal topics whose creation failed lately."""
        now = time.monotonic()
        out = []
        for name in names:
            found = self._creation_errors.get(name)
            if found is not None and found[1] > now:
                out.append((name, found[0]))
        return out

    # -- hosting shards ---------------------------------------------------
    def sync_shards(self) -> list[asyncio.Task]:
        """Host a shard for every partition of ``__consumer_offsets`` led here
        and drop those of partitions no longer led here (or gone); return the
        loads started."""
        state = self.broker.image.get(OFFSETS_TOPIC)  # all its partitions, led here or not
        count = len(state.partitions) if state is not None else 0
        if count:
            self.config.num_partitions = count
        started = []
        for index in range(count):
            p, code = self.broker.replicas.partition_or_error(OFFSETS_TOPIC, index)
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
        """The replica manager hosts or drops partitions: follow those of
        ``__consumer_offsets`` (leadership of a partition means its shard)."""
        if any(p.topic.name == OFFSETS_TOPIC for p in gained + lost) and not self._stopped:
            self.sync_shards()

    def _host(self, index: int, partition) -> HostedShard:
        """Start hosting (and loading) the shard of partition ``index``."""
        if index in self.hosted:
            self.unload(index)
        shard = GroupShard(self.config, self.consumer_config, self.topics, self.tokens, partition=index,
                           share_config=self.share_config, streams_config=self.streams_config,
                           group_configs=self.broker.image.group_configs)
        h = HostedShard(index, partition, shard)
        h.runner = ShardRunner(shard, lambda records, now, producer=None: self._append(h, records, now, producer))
        self.hosted[index] = h
        h.load_task = asyncio.get_running_loop().create_task(self._load(h))
        return h

    def unload(self, index: int, answer: bool = True) -> None:
        """Stop hosting the shard of partition ``index``; its parked requests
        answer NOT_COORDINATOR (when ``answer``)."""
        h = self.hosted.pop(index, None)
        if h is None:
            return
        if h.timer is not None:
            h.timer.cancel()
            h.timer = None
        if h.load_task is not None and not h.load_task.done():
            h.load_task.cancel()
        if answer:
            self._deliver(h.shard.unload())
        if not self._stopped:  # a broker stopping unloads every shard: not news
            log.info("%s-%d unloaded: its groups are no longer coordinated here", OFFSETS_TOPIC, index)

    async def _load(self, h: HostedShard) -> None:
        started = time.monotonic()
        try:
            count = await self._load_partition(h, h.partition)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("loading %s-%d failed; its groups start empty", OFFSETS_TOPIC, h.index)
            count = 0
        if self.hosted.get(h.index) is not h:
            return
        h.loading = False
        h.shard.share.drain_departures()  # what the log says happened before: nothing to release now
        self._deliver(h.shard.drain())
        self._reschedule(h)
        log.debug("loaded %d records, %d groups from %s-%d in %.3fs", count, len(h.shard.groups),
                  OFFSETS_TOPIC, h.index, time.monotonic() - started)

    async def _load_partition(self, hosted: HostedShard, p) -> int:
        offset = p.log_start_offset
        end = p.log_end_offset  # what was written before loading began
        pending_txn: dict[int, list] = {}
        count = 0
        while offset < end:
            chunk = p.read_for_replica(offset, LOAD_READ_BYTES, upto=end)
            if not chunk.size:
                break
            buf = b"".join(chunk.chunks)
            progressed = False
            now = now_ms()
            for pos, h in iter_batches(buf):
                if h.next_offset <= offset:
                    continue
                _, records = decode_batch(buf, pos)
                if h.is_control:
                    if h.is_transactional and records:
                        held = pending_txn.pop(h.producer_id, [])
                        try:
                            if decode_control_key(records[0].key).type == CONTROL_COMMIT:
                                for r in held:
                                    count += hosted.runner.load(r.key, r.value, now)
                        except InvalidBatch:
                            pass
                elif h.is_transactional:
                    pending_txn.setdefault(h.producer_id, []).extend(
                        r for r in records if r.offset >= offset)
                else:
                    for r in records:
                        if r.offset >= offset:
                            count += hosted.runner.load(r.key, r.value, now)
                offset = h.next_offset
                progressed = True
            if not progressed:
                break
            await asyncio.sleep(0)
        for pid, held in pending_txn.items():  # transactions still open: pending offsets
            for r in held:
                if r.key is not None:
                    try:
                        hosted.shard.replay_pending(pid, bytes(r.key), None if r.value is None else bytes(r.value), now_ms())
                    except rec.RecordFormatError:
                        pass
        return count


    # -- executing operations -------------------------------------------
    def execute(self, shard: GroupShard, op, *args, **kwargs) -> Result:
        """Run ``op`` (an operation of ``shard``): append, replay, deliver, re-arm."""
        h = self.hosted[shard.partition]
        assert h.shard is shard, "the shard was unloaded"
        now = now_ms()
        res = op(now, *args, **kwargs)
        if res.wait is not None:
            self.waiters[res.wait] = asyncio.get_running_loop().create_future()
        completions = h.runner.apply(res, now)
        self._share_departures(h)
        if completions:
            replicated = h.partition.replicated(h.last_written) if h.last_written >= 0 else None
            if replicated is None:
                self._deliver(completions)
            else:
                replicated.add_done_callback(lambda f: self._deliver(
                    completions if f.result() == 0 else [(t, not_coordinator(r)) for t, r in completions]))
        self._reschedule(h)
        return res

    def _share_departures(self, h: HostedShard) -> None:
        """Share group members removed (or groups deleted) by what was just
        replayed: this broker's share-partitions release what they hold."""
        share = getattr(self.broker, "share", None)
        for group_id, member_id in h.shard.share.drain_departures():
            if share is not None:
                share.member_left(group_id, member_id)

    async def wait(self, res: Result) -> dict:
        """The response of ``res``: at once, or when its parked request completes."""
        if res.wait is None:
            return res.response
        fut = self.waiters[res.wait]  # made by execute; only this method removes it
        try:
            return await fut
        finally:
            self.waiters.pop(res.wait, None)

    async def answer(self, shard: GroupShard, res: Result) -> dict:
        """The response of ``res``, an operation ``execute`` has just run on
        ``shard``, once what it wrote is committed (as Kafka answers its
        coordinators' writes): a parked request's when it completes; else at
        once if it wrote nothing, or when the high watermark passes its
        records, with the error of :meth:`settled` in every error code if
        that fails. Call it before awaiting anything else."""
        if res.wait is not None:
            return await self.wait(res)  # completions are delivered once committed
        if not res.records:
            return res.response
        code = await self.settled(shard)
        return with_error(res.response, code) if code else res.response

    async def settled(self, shard: GroupShard) -> int:
        """0 once every record ``shard`` has appended so far is committed (at
        once if it is); NOT_COORDINATOR if leadership is lost first,
        COORDINATOR_NOT_AVAILABLE if ``offsets.commit.timeout.ms`` passes first
        (a follower in the ISR not fetching; Kafka answers its timed-out
        coordinator writes so, the client finds the coordinator again and
        retries, and the records may still commit). A write's answer and a
        read of the shard's state (OffsetFetch) both wait on this, so no
        answer shows what a failover may yet lose, as Kafka's coordinators
        answer only from committed state. Call it before awaiting anything
        else."""
        h = self.hosted.get(shard.partition)
        if h is None or h.shard is not shard:
            return errors.NOT_COORDINATOR
        code = await h.partition.wait_replicated(h.last_written, self.config.commit_timeout_ms / 1000)
        if code is None:
            return errors.COORDINATOR_NOT_AVAILABLE
        return errors.NOT_COORDINATOR if code else 0

    def _append(self, h: HostedShard, records: list, now: int, producer: tuple | None = None) -> None:
        h.last_written = append_records(self.broker, OFFSETS_TOPIC, h.index, records, now,
                                        producer=producer).last_offset

    def complete_transaction(self, index: int, producer_id: int, commit: bool) -> None:
        """A marker of ``producer_id`` was written to partition ``index``: its
        shard materialises or drops that producer's transactional offsets (a
        shard still loading does so once loaded)."""
        h = self.hosted.get(index)
        if h is None:
            return  # not hosted here: the next load reads the marker from the log
        if h.loading:
            if h.load_task is not None:
                h.load_task.add_done_callback(
                    lambda _: self.complete_transaction(index, producer_id, commit))
            return
        h.shard.complete_transaction(now_ms(), producer_id, commit)

    def _deliver(self, completions) -> None:
        for token, response in completions:
            fut = self.waiters.get(token)
            if fut is not None and not fut.done():
                fut.set_result(response)

    # -- timers ----------------------------------------------------------
    def _reschedule(self, h: HostedShard) -> None:
        if self._stopped or h.loading or self.hosted.get(h.index) is not h:
            return
        deadline = h.shard.next_deadline()
        if deadline is None:
            return
        if h.timer is not None and h.timer_at is not None and h.timer_at <= deadline:
            return
        if h.timer is not None:
            h.timer.cancel()
        delay = max(0.0, (deadline - now_ms() + 1) / 1000)
        h.timer = asyncio.get_running_loop().call_later(delay, self._on_timer, h)
        h.timer_at = deadline

    def _on_timer(self, h: HostedShard) -> None:
        h.timer = None
        h.timer_at = None
        try:
            self.execute(h.shard, h.shard.tick)
        except Exception:
            log.exception("group coordinator timer failed")
            self._reschedule(h)

    def _active(self) -> list[HostedShard]:
        return [h for h in self.hosted.values() if not h.loading]

    async def _expiry_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(max(interval, 0.05))
            for h in self._active():
                try:
                    self.execute(h.shard, h.shard.expire_offsets)
                except Exception:
                    log.exception("offset expiry failed")

    # -- broker hooks ----------------------------------------------------
    def on_topic_deleted(self, name: str) -> None:
        if name == OFFSETS_TOPIC:
            log.warning("%s was deleted: committed offsets and groups are gone", OFFSETS_TOPIC)
            for index in list(self.hosted):
                self.unload(index)
            return
        for h in self._active():
            try:
                self.execute(h.shard, h.shard.topic_deleted, name)
            except Exception:
                log.exception("dropping offsets of deleted topic %s failed", name)

    def topic_exists(self, name: str | None, partition: int) -> bool:
        t = self.broker.image.get(name) if name is not None else None
        return t is not None and 0 <= partition < len(t.partitions)
