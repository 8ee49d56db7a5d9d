"""The group coordinator's runtime: the state machine wired to the log and the clock.

Theory of operation: :class:`GroupCoordinator` owns one
:class:`~odradek.coordinator.shard.GroupShard` (classic groups, KIP-848
consumer groups and their offsets; it reads the broker's topics through
:class:`BrokerTopics`) and drives it from the event loop. Every step (a
request, a timer tick, the periodic offset expiry, a topic deletion) goes
through :meth:`GroupCoordinator.execute`, which

1. calls the state machine with the current time,
2. appends the records it returned to ``__consumer_offsets`` (one batch per
   partition, through the partition's log, then wakes its fetchers),
3. replays each appended record into the state machine,
4. resolves the futures of parked JoinGroup/SyncGroup requests from the
   state machine's completions, and re-arms the one timer at the state
   machine's next deadline.

Steps 2-4 (but the futures and the timer) are
:class:`~odradek.coordinator.runtime.ShardRunner`'s, which the state-machine
tests use too.

All of this runs synchronously on the event loop (``log.append`` does not
block on fsync), so no other request can interleave between an operation and
its write, and a response that depends on a write is sent only after it.

At start the coordinator replays every record of every ``__consumer_offsets``
partition, oldest first, through the same ``replay``; requests for groups of
a partition still loading get COORDINATOR_LOAD_IN_PROGRESS. The topic itself
is created (compacted, ``offsets.topic.num.partitions`` partitions) on first
use.
"""

from __future__ import annotations

import asyncio
import logging
import time

from odradek.coordinator import records as rec
from odradek.coordinator.config import ConsumerGroupConfig, GroupConfig
from odradek.coordinator.runtime import Result, ShardRunner
from odradek.coordinator.shard import GroupShard
from odradek.protocol import errors
from odradek.protocol.batch import iter_batches
from odradek.protocol.records import CONTROL_COMMIT, InvalidBatch, build_batch, decode_batch, decode_control_key

log = logging.getLogger("odradek.groups")

OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "104857600"}
LOAD_READ_BYTES = 4 * 1024 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


class BrokerTopics:
    """The broker's topics as the consumer-group state machine sees them."""

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


class GroupCoordinator:
    def __init__(self, broker):
        self.broker = broker
        self.config = GroupConfig.from_broker(broker.config)
        self.consumer_config = ConsumerGroupConfig.from_broker(broker.config)
        self.topics = BrokerTopics(broker)
        self.loading: set[int] = set()  # __consumer_offsets partitions still being replayed
        self._new_shard()
        self.waiters: dict[int, asyncio.Future] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._tasks: list[asyncio.Task] = []
        self._create_task: asyncio.Task | None = None
        self._stopped = False

    def _new_shard(self) -> None:
        self.sm = GroupShard(self.config, self.consumer_config, self.topics)
        self.runner = ShardRunner(self.sm, self._write)

    # -- routing ---------------------------------------------------------
    def partition_for(self, group_id: str | None) -> int:
        return rec.partition_for(group_id or "", self.config.num_partitions)

    def shard_for(self, group_id: str | None) -> tuple[GroupShard | None, int]:
        """The shard serving ``group_id``, or (None, the error a request gets)."""
        if self.loading and self.partition_for(group_id) in self.loading:
            return None, errors.COORDINATOR_LOAD_IN_PROGRESS
        return self.sm, 0

    def list_groups(self, states=None, types=None) -> tuple[int, list[dict]]:
        if self.loading:
            return errors.COORDINATOR_LOAD_IN_PROGRESS, []
        return 0, self.sm.list_groups(states, types)

    def delete_groups(self, group_ids: list[str]) -> dict:
        """DeleteGroups over the shards: ``{"results": [{group_id, error_code}]}``."""
        out: dict[int, dict] = {}
        routed: dict[int, tuple[GroupShard, list[int]]] = {}
        for i, gid in enumerate(group_ids):
            shard, code = self.shard_for(gid)
            if code:
                out[i] = {"group_id": gid, "error_code": code}
            else:
                routed.setdefault(id(shard), (shard, []))[1].append(i)
        for shard, indexes in routed.values():
            res = self.execute(shard, shard.delete_groups, [group_ids[i] for i in indexes])
            out.update(zip(indexes, res.response["results"]))
        return {"results": [out[i] for i in range(len(group_ids))]}

    # -- inspection (tests, tools) --------------------------------------
    def group(self, group_id: str):
        """The group object of ``group_id`` in its shard, or None."""
        shard, _ = self.shard_for(group_id)
        return shard.groups.get(group_id) if shard is not None else None

    def durable_view(self) -> dict:
        """Every shard's durable view, merged (group ids are unique across shards)."""
        return self.sm.durable_view()

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        topic = self.broker.replicas.topic(OFFSETS_TOPIC)
        if topic is not None:
            self.config.num_partitions = len(topic.partitions)
            await self.load(topic)
        interval = self.broker.config.get_int("offsets.retention.check.interval.ms", 600000)
        self._tasks.append(asyncio.get_running_loop().create_task(self._expiry_loop(interval / 1000)))
        self._reschedule()

    async def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
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
        """Create ``__consumer_offsets`` if it does not exist; False if it cannot be.

        The creation runs as its own task, shielded from the request that asked
        for it: a client that disconnects mid-way must not leave the topic
        created in memory but missing from the broker's topic registry."""
        topic = self.broker.replicas.topic(OFFSETS_TOPIC)
        if topic is None:
            if self._create_task is None or self._create_task.done():
                self._create_task = asyncio.get_running_loop().create_task(self._create_topic())
            topic = await asyncio.shield(self._create_task)
            if topic is None:
                return False
        if len(topic.partitions) != self.config.num_partitions:
            self.config.num_partitions = len(topic.partitions)
        return True

    async def _create_topic(self):
        from odradek.topic_admin import TopicError

        topic = self.broker.replicas.topic(OFFSETS_TOPIC)
        if topic is not None:
            return topic
        try:
            return await self.broker.admin.create_topic(
                OFFSETS_TOPIC, self.config.num_partitions, 1, dict(OFFSETS_TOPIC_CONFIGS))
        except TopicError as e:
            topic = self.broker.replicas.topic(OFFSETS_TOPIC)
            if topic is None:
                log.error("cannot create %s: %s", OFFSETS_TOPIC, e)
            return topic

    # -- loading ---------------------------------------------------------
    async def load(self, topic) -> None:
        self.loading.update(range(len(topic.partitions)))
        started = time.monotonic()
        count = 0
        try:
            for p in topic.partitions:
                try:
                    count += await self._load_partition(p)
                except Exception:
                    log.exception("loading %s-%d failed; its groups start empty", OFFSETS_TOPIC, p.index)
                self.loading.discard(p.index)
        finally:
            self.loading.clear()
        log.info("loaded %d records, %d groups from %s in %.3fs", count, len(self.sm.groups),
                 OFFSETS_TOPIC, time.monotonic() - started)

    async def _load_partition(self, p) -> int:
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
                                    count += self._replay(r.key, r.value, now)
                        except InvalidBatch:
                            pass
                elif h.is_transactional:
                    pending_txn.setdefault(h.producer_id, []).extend(
                        r for r in records if r.offset >= offset)
                else:
                    for r in records:
                        if r.offset >= offset:
                            count += self._replay(r.key, r.value, now)
                offset = h.next_offset
                progressed = True
            if not progressed:
                break
            await asyncio.sleep(0)
        return count

    def _replay(self, key, value, now: int) -> int:
        return 1 if self.runner.load(key, value, now) else 0

    # -- executing operations -------------------------------------------
    def execute(self, shard: GroupShard, op, *args, **kwargs) -> Result:
        """Run ``op`` (an operation of ``shard``): append, replay, deliver, re-arm."""
        now = now_ms()
        res = op(now, *args, **kwargs)
        if res.wait is not None:
            self.waiters[res.wait] = asyncio.get_running_loop().create_future()
        self._deliver(self.runner.apply(res, now))
        self._reschedule()
        return res

    async def wait(self, res: Result) -> dict:
        """The response of ``res``: at once, or when its parked request completes."""
        if res.wait is None:
            return res.response
        fut = self.waiters[res.wait]  # made by execute; only this method removes it
        try:
            return await fut
        finally:
            self.waiters.pop(res.wait, None)

    def _write(self, records: list, now: int) -> None:
        by_partition: dict[int, list] = {}
        for k, v in records:
            by_partition.setdefault(self.partition_for(rec.decode_key(k).group), []).append((k, v))
        for part, kvs in by_partition.items():
            p, code = self.broker.replicas.partition_or_error(OFFSETS_TOPIC, part)
            if code:
                raise RuntimeError(f"{OFFSETS_TOPIC}-{part}: error {code}")
            p.append_as_leader(bytearray(build_batch([(k, v, (), now) for k, v in kvs])), now)

    def _deliver(self, completions) -> None:
        for token, response in completions:
            fut = self.waiters.get(token)
            if fut is not None and not fut.done():
                fut.set_result(response)

    # -- timers ----------------------------------------------------------
    def _reschedule(self) -> None:
        if self._stopped:
            return
        deadline = self.sm.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, (deadline - now_ms() + 1) / 1000)
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
        self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.execute(self.sm, self.sm.tick)
        except Exception:
            log.exception("group coordinator timer failed")
            self._reschedule()

    async def _expiry_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(max(interval, 0.05))
            try:
                self.execute(self.sm, self.sm.expire_offsets)
            except Exception:
                log.exception("offset expiry failed")

    # -- broker hooks ----------------------------------------------------
    def on_topic_deleted(self, name: str) -> None:
        if name == OFFSETS_TOPIC:
            log.warning("%s was deleted: committed offsets and groups are gone", OFFSETS_TOPIC)
            self._new_shard()
            return
        try:
            self.execute(self.sm, self.sm.topic_deleted, name)
        except Exception:
            log.exception("dropping offsets of deleted topic %s failed", name)

    def topic_exists(self, name: str | None, partition: int) -> bool:
        t = self.broker.image.get(name) if name is not None else None
        return t is not None and 0 <= partition < len(t.partitions)

