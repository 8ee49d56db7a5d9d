"""The share-partitions this broker leads, their share sessions, and the
timer that expires acquisition locks. The part of share groups that lives
on the event loop (the state machines are ``partition.py`` and
``sessions.py``).

Theory of operation
-------------------
:class:`SharePartitions` keeps one
:class:`~odradek.share.partition.SharePartition` per (group, topic id,
partition) read by a share group on this broker, created at the first
ShareFetch naming it, with its start offset where the group's
``share.auto.offset.reset`` says (latest, Kafka's default: the high
watermark; earliest; by_duration), its lock duration the group's
``share.record.lock.duration.ms``, its delivery-count limit and window
the group's ``share.delivery.count.limit`` and
``share.partition.max.record.locks`` (group configs,
``odradek/metadata/group_configs.py``, over the broker's settings).

Durability: a share-partition starting here (first use, after a restart, or
led here again) reads its state from the share coordinator of this broker
(``odradek/coordinator/share_state.py``, ``__share_group_state``), and its
state is written there after every acknowledgement (before it is answered),
every release (sessions ending, members leaving) and every expiry, as a
snapshot of its start offset and state batches (acquired records as
available). When the state's partition of ``__share_group_state`` is led by
another broker (a cluster), the inter-broker APIs being not served, the
state is kept in memory only, and a leader change starts it afresh where
``share.auto.offset.reset`` says. Share sessions are not persisted, as in
Kafka.

Every change that makes records available again (a release, an expired
lock, a closed session) wakes the partition's waiting fetches
(``Partition.notify``), so a long-polling ShareFetch acquires them at once.
One timer, armed for the earliest lock deadline, expires locks.
"""

from __future__ import annotations

import asyncio
import logging

from odradek.clock import now_ms
from odradek.coordinator.config import ShareGroupConfig
from odradek.metadata.group_configs import (
    AUTO_OFFSET_RESET, DELIVERY_COUNT_LIMIT, ISOLATION_LEVEL, LOCK_DURATION, MAX_RECORD_LOCKS, GroupConfigCache,
    parse_duration_ms,
)
from odradek.share.partition import RELEASE, SharePartition, SharePartitionConfig
from odradek.share.sessions import ShareSession, ShareSessionCache

log = logging.getLogger("odradek.share")


class SharePartitions:
    def __init__(self, config: ShareGroupConfig | None = None, group_configs: GroupConfigCache | None = None):
        self.config = config or ShareGroupConfig()
        self.group_configs = group_configs if group_configs is not None else GroupConfigCache()
        self._partition_configs: dict[tuple, SharePartitionConfig] = {}
        self.sessions = ShareSessionCache(self.config.max_share_sessions)
        self.states: dict[tuple[str, bytes, int], tuple[SharePartition, object]] = {}
        self._epochs: dict[tuple[str, bytes, int], int] = {}  # the leader epoch each was created in
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        # The share coordinator (odradek/coordinator/share_state.py), once started,
        # and the shard keeping each share-partition's state (None: in memory only).
        self.coordinator = None
        self._shards: dict[tuple[str, bytes, int], object] = {}

    # -- the group's settings (group configs over broker settings) ---------
    def lock_duration_ms(self, group_id: str) -> int:
        value = self.group_configs.of(group_id).get(LOCK_DURATION)
        return int(value) if value is not None else self.config.record_lock_duration_ms

    def read_committed(self, group_id: str) -> bool:
        return self.group_configs.of(group_id).get(ISOLATION_LEVEL) == "read_committed"

    def _partition_config(self, group_id: str) -> SharePartitionConfig:
        overrides = self.group_configs.of(group_id)
        key = (self.lock_duration_ms(group_id),
               int(overrides.get(DELIVERY_COUNT_LIMIT, self.config.delivery_count_limit)),
               int(overrides.get(MAX_RECORD_LOCKS, self.config.max_record_locks)))
        cfg = self._partition_configs.get(key)
        if cfg is None:
            cfg = self._partition_configs[key] = SharePartitionConfig(*key)
        return cfg

    def _start_offset(self, group_id: str, p) -> int:
        """share.auto.offset.reset: latest (the high watermark), earliest (the
        log start), or by_duration (the first record at or after now minus it)."""
        reset = self.group_configs.of(group_id).get(AUTO_OFFSET_RESET, "latest")
        if reset == "earliest":
            return p.log_start_offset
        if reset.startswith("by_duration:"):
            found = p.offset_for_timestamp(now_ms() - parse_duration_ms(reset[len("by_duration:"):]))
            return found[0] if found is not None else p.high_watermark
        return p.high_watermark

    def get(self, group_id: str, p) -> SharePartition:
        """The share-partition of ``group_id`` over partition ``p`` (led here)."""
        key = (group_id, p.topic.topic_id, p.index)
        entry = self.states.get(key)
        if entry is None or entry[1] is not p or self._epochs.get(key) != p.leader_epoch:
            # New, or led here again after another leader served it: it starts afresh.
            sp = SharePartition(self._start_offset(group_id, p), self._partition_config(group_id))
            self.states[key] = (sp, p)
            self._epochs[key] = p.leader_epoch
            return sp
        sp = entry[0]
        sp.config = self._partition_config(group_id)
        if p.log_start_offset > sp.start:
            sp.log_start_moved(p.log_start_offset)
        return sp

    def _valid(self, key, p) -> bool:
        entry = self.states.get(key)
        return entry is not None and entry[1] is p and self._epochs.get(key) == p.leader_epoch

    async def load(self, group_id: str, p) -> SharePartition:
        """:meth:`get`, reading the share-partition's persisted state when it
        starts here (and persisting where a new one starts)."""
        key = (group_id, p.topic.topic_id, p.index)
        if self._valid(key, p):
            return self.get(group_id, p)
        shard = None
        if self.coordinator is not None:
            try:
                shard = await self.coordinator.shard_for(key)
            except Exception:  # the state stays in memory; the fetch goes on
                log.exception("share-partition state of %s: its coordinator is not available", key)
        if self._valid(key, p):  # started meanwhile by another request
            return self.get(group_id, p)
        stored = shard.read(key) if shard is not None else None
        if stored is not None:
            start, batches = stored
            sp = SharePartition.restore(start, batches, self._partition_config(group_id))
        else:
            sp = SharePartition(self._start_offset(group_id, p), self._partition_config(group_id))
        self.states[key] = (sp, p)
        self._epochs[key] = p.leader_epoch
        if shard is not None:
            self._shards[key] = shard
        else:
            self._shards.pop(key, None)
        sp = self.get(group_id, p)  # the log may have moved on
        if stored is None:
            self.persist(group_id, p)
        return sp

    def persist(self, group_id: str, p) -> None:
        """Write the share-partition's state to its coordinator (a snapshot in
        ``__share_group_state``), when it has one on this broker."""
        key = (group_id, p.topic.topic_id, p.index)
        shard = self._shards.get(key)
        entry = self.states.get(key)
        if shard is None or entry is None or self.coordinator is None:
            return
        sp = entry[0]
        res = self.coordinator.execute(shard, shard.write, key, p.leader_epoch, sp.start, sp.state_batches())
        if res.response.get("error_code"):
            log.warning("share-partition state of %s not written (error %d): its coordinator moved",
                        key, res.response["error_code"])
            self._shards.pop(key, None)

    def _forget(self, group_id: str, topic_id: bytes | None = None) -> None:
        """Drop the group's share-partitions (of one topic, or all), in memory
        and in ``__share_group_state`` (those this broker's shards keep)."""
        keys = [k for k in self.states if k[0] == group_id and (topic_id is None or k[1] == topic_id)]
        for key in keys:
            sp_p = self.states.pop(key)
            self._epochs.pop(key, None)
            self._shards.pop(key, None)
            sp_p[1].notify()
        if self.coordinator is None:
            return
        for h in list(self.coordinator.hosted.values()):
            if h.loading:
                continue
            gone = [k for k in h.shard.states if k[0] == group_id and (topic_id is None or k[1] == topic_id)]
            if gone:
                self.coordinator.execute(h.shard, h.shard.delete, gone)

    def stored(self, group_id: str) -> dict[tuple[bytes, int], SharePartition]:
        """The group's share-partitions, in memory or only in this broker's
        ``__share_group_state`` shards (topic id, partition) -> state."""
        out: dict = {}
        if self.coordinator is not None:
            for h in self.coordinator.hosted.values():
                if h.loading:
                    continue
                for key in h.shard.states:
                    if key[0] == group_id:
                        start, batches = h.shard.read(key)
                        out[(key[1], key[2])] = SharePartition.restore(start, batches, self._partition_config(group_id))
        for (g, tid, index), (sp, _) in self.states.items():
            if g == group_id:
                out[(tid, index)] = sp
        return out

    def find(self, group_id: str, p) -> SharePartition | None:
        key = (group_id, p.topic.topic_id, p.index)
        entry = self.states.get(key)
        ok = entry is not None and entry[1] is p and self._epochs.get(key) == p.leader_epoch
        return entry[0] if ok else None

    # -- changes that free records ---------------------------------------
    def acknowledge(self, group_id: str, member_id: str, p, batches, renew: bool = False) -> int:
        sp = self.find(group_id, p)
        if sp is None:
            from odradek.protocol import errors
            return errors.INVALID_RECORD_STATE
        now = now_ms()
        code = sp.acknowledge(member_id, batches, now, renew=renew)
        if not code and any(RELEASE in types for _, _, types in batches):
            p.notify()
        if not code and not renew:
            self.persist(group_id, p)
        if not code and renew:
            self.arm(now + sp.config.lock_duration_ms)
        return code

    def release_session(self, s: ShareSession) -> None:
        """``s`` is closed (or replaced): its member's records are released."""
        for (group_id, _, _), (sp, p) in list(self.states.items()):
            if group_id == s.group_id and sp.release_member(s.member_id):
                p.notify()
                self.persist(group_id, p)

    def member_left(self, group_id: str, member_id: str | None) -> None:
        """A member left the share group (None: the group was deleted): what
        it holds is released; a deleted group's share-partitions are dropped."""
        if member_id is None:
            self._forget(group_id)
            return
        for key, (sp, p) in list(self.states.items()):
            if key[0] != group_id:
                continue
            if member_id is None:
                continue
            if sp.release_member(member_id):
                p.notify()
                self.persist(group_id, p)

    # -- share group offsets -------------------------------------------------

    def set_start(self, group_id: str, p, offset: int) -> None:
        """AlterShareGroupOffsets: the share-partition starts again at ``offset``."""
        start = min(max(offset, p.log_start_offset), p.high_watermark)
        key = (group_id, p.topic.topic_id, p.index)
        self.states[key] = (SharePartition(start, self._partition_config(group_id)), p)
        self._epochs[key] = p.leader_epoch
        self.persist(group_id, p)
        p.notify()

    def forget_topic(self, group_id: str, topic_id: bytes) -> None:
        """DeleteShareGroupOffsets: the group's share-partitions of a topic are dropped."""
        self._forget(group_id, topic_id)

    def close_session(self, s: ShareSession) -> None:
        self.sessions.close(s)
        self.release_session(s)

    def connection_closed(self, connection) -> None:
        for s in self.sessions.of_connection(connection):
            self.close_session(s)

    def expire(self) -> None:
        now = now_ms()
        for (group_id, _, _), (sp, p) in list(self.states.items()):
            if sp.expire(now):
                p.notify()
                self.persist(group_id, p)

    # -- the lock timer ----------------------------------------------------
    def arm(self, when: int | None = None) -> None:
        """Arm the timer for a lock deadline ``when`` (after acquiring or
        renewing), or for the earliest of all (``when`` None)."""
        if when is None:
            deadlines = [d for d in (sp.next_deadline() for sp, _ in self.states.values()) if d is not None]
            if not deadlines:
                return
            when = min(deadlines)
        if self._timer is not None and self._timer_at is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = when
        self._timer = loop.call_later(max(0, when - now_ms()) / 1000 + 0.001, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self.expire()
        self.arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
