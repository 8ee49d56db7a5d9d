"""The group coordinator: one shard per ``__consumer_offsets`` partition this broker leads.

Theory of operation
-------------------
:class:`GroupCoordinator` hosts a :class:`~odradek.coordinator.shard.GroupShard`
(classic groups, KIP-848 consumer groups and their offsets) for every
partition of ``__consumer_offsets`` that this broker leads, and drives them
from the event loop. The hosting itself (the topic, following leadership,
loading, appends, timers) is a composed
:class:`~odradek.coordinator.hosting.ShardHosting`, shared with the
transaction coordinator; this module says what a load replays and what an
unload answers. A group lives in the shard of
``partition_for(group id)`` (Kafka's hash of the id, modulo the partitions).

A shard's life: it is created, in the *loading* state, when its partition is
found led here (at start, when the topic is created, or when a request finds
a led partition without a shard), and every record of the partition is
replayed into it, oldest first (transactional ones once committed), through
the same ``replay`` that applies new records. Then it is *active*. It is
dropped when the partition is no longer led here or the topic is deleted:
its parked JoinGroup/SyncGroup requests answer NOT_COORDINATOR.

:meth:`GroupCoordinator.shard_for` is where requests are routed, with the
replica manager's own lookup (``partition_or_error``, in
:meth:`ShardHosting.hosted_for <odradek.coordinator.hosting.ShardHosting.hosted_for>`): a group whose
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
``__consumer_offsets``, once the ISR has it). If leadership is lost first,
such responses carry NOT_COORDINATOR in every error code.

The topic itself is created (compacted, ``offsets.topic.num.partitions``
partitions) on first use: FindCoordinator, JoinGroup, SyncGroup,
OffsetCommit, and a ConsumerGroupHeartbeat joining.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from odradek.clock import now_ms
from odradek.coordinator import records as rec
from odradek.coordinator.config import ConsumerGroupConfig, GroupConfig
from odradek.coordinator.hosting import HostedShard, ShardHosting, read_log
from odradek.coordinator.runtime import Result
from odradek.coordinator.shard import GroupShard
from odradek.protocol import errors
from odradek.protocol.records import CONTROL_COMMIT, InvalidBatch, decode_control_key

log = logging.getLogger("odradek.groups")

OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "104857600"}


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


def not_coordinator(response):
    """``response`` with NOT_COORDINATOR in every error code (a write that
    leadership was lost before it was committed)."""
    if isinstance(response, dict):
        return {k: (errors.NOT_COORDINATOR if k == "error_code" else not_coordinator(v))
                for k, v in response.items()}
    if isinstance(response, list):
        return [not_coordinator(v) for v in response]
    return response


class GroupCoordinator:
    def __init__(self, broker):
        self.broker = broker
        self.config = GroupConfig.from_broker(broker.config)
        self.consumer_config = ConsumerGroupConfig.from_broker(broker.config)
        self.topics = BrokerTopics(broker)
        self.tokens = itertools.count(1)  # parked requests' tokens, unique across shards
        self.waiters: dict[int, asyncio.Future] = {}
        self._tasks: list[asyncio.Task] = []
        self.hosting = ShardHosting(
            broker, OFFSETS_TOPIC, self.config, OFFSETS_TOPIC_CONFIGS,
            factors=lambda: (broker.admin.offsets_replication_factor(),),
            build=lambda index: GroupShard(self.config, self.consumer_config, self.topics, self.tokens,
                                           partition=index),
            load=self._load_partition, loaded=self._loaded, unloaded=self._unloaded, tick=self._tick,
            noun="groups", size=lambda shard: len(shard.groups), log=log)

    @property
    def hosted(self) -> dict[int, HostedShard]:
        """The shards hosted here, by partition index."""
        return self.hosting.hosted

    # -- routing ---------------------------------------------------------
    def partition_for(self, group_id: str | None) -> int:
        return rec.partition_for(group_id or "", self.config.num_partitions)

    def shard_for(self, group_id: str | None) -> tuple[GroupShard | None, int]:
        """The shard serving ``group_id``, or (None, the error a request gets)."""
        h, code = self.hosting.hosted_for(self.partition_for(group_id))
        return (h.shard, 0) if h is not None else (None, code)

    def list_groups(self, states=None, types=None) -> tuple[int, list[dict]]:
        out = []
        for h in list(self.hosted.values()):
            if h.loading:
                return errors.COORDINATOR_LOAD_IN_PROGRESS, []
            out.extend(h.shard.list_groups(states, types))
        return 0, out

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
        out = {}
        for h in self.hosted.values():
            out.update(h.shard.durable_view())
        return dict(sorted(out.items()))

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        await self.hosting.start()
        interval = self.broker.config.get_int("offsets.retention.check.interval.ms", 600000)
        self._tasks.append(asyncio.get_running_loop().create_task(self._expiry_loop(interval / 1000)))

    async def stop(self) -> None:
        await self.hosting.stop()
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
        partitions led here; False if it cannot be."""
        return await self.hosting.ensure_topic()

    def sync_shards(self) -> list[asyncio.Task]:
        """Host a shard for every partition of ``__consumer_offsets`` led here
        and drop the others; return the loads started."""
        return self.hosting.sync_shards()

    def unload(self, index: int, answer: bool = True) -> None:
        """Stop hosting the shard of partition ``index``; its parked requests
        answer NOT_COORDINATOR (when ``answer``)."""
        self.hosting.unload(index, answer)

    # -- hosting callbacks ------------------------------------------------
    def _unloaded(self, h: HostedShard, answer: bool) -> None:
        if answer:
            self._deliver(h.shard.unload())

    def _loaded(self, h: HostedShard, count: int, seconds: float) -> None:
        self._deliver(h.shard.drain())
        self.hosting.reschedule(h)
        log.debug("loaded %d records, %d groups from %s-%d in %.3fs", count, len(h.shard.groups),
                  OFFSETS_TOPIC, h.index, seconds)

    async def _load_partition(self, hosted: HostedShard) -> int:
        """Replay the partition into the shard: transactional records once
        their commit marker is read, those of transactions still open as
        pending offsets."""
        pending_txn: dict[int, list] = {}
        count = 0
        async for h, records, now in read_log(hosted.partition):
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
                pending_txn.setdefault(h.producer_id, []).extend(records)
            else:
                for r in records:
                    count += hosted.runner.load(r.key, r.value, now)
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
        if completions:
            replicated = h.replicated()
            if replicated is None:
                self._deliver(completions)
            else:
                replicated.add_done_callback(lambda f: self._deliver(
                    completions if f.result() == 0 else [(t, not_coordinator(r)) for t, r in completions]))
        self.hosting.reschedule(h)
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
    def _tick(self, h: HostedShard) -> None:
        try:
            self.execute(h.shard, h.shard.tick)
        except Exception:
            log.exception("group coordinator timer failed")
            self.hosting.reschedule(h)

    async def _expiry_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(max(interval, 0.05))
            for h in self.hosting.active():
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
        for h in self.hosting.active():
            try:
                self.execute(h.shard, h.shard.topic_deleted, name)
            except Exception:
                log.exception("dropping offsets of deleted topic %s failed", name)

    def topic_exists(self, name: str | None, partition: int) -> bool:
        t = self.broker.image.get(name) if name is not None else None
        return t is not None and 0 <= partition < len(t.partitions)
