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
led here again) reads its state from its share coordinator
(``odradek/coordinator/share_state.py``, ``__share_group_state``): this
broker's, or another broker's through ReadShareGroupState (``StateClient``);
until that coordinator answers, the share-partition is not started (None).
Its state is written there after every acknowledgement (answered once
written), every release (sessions ending, members leaving) and every
expiry, as a snapshot of its start offset and state batches (acquired
records as available), with the partition's leader epoch, so an older
leader's writes are fenced. Share sessions are not persisted, as in Kafka.

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
from odradek.protocol import errors
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
        self._remote: dict[tuple[str, bytes, int], int] = {}  # key -> broker of its coordinator
        self._pending: dict[tuple[str, bytes, int], asyncio.Task] = {}  # its last remote write
        self.client = StateClient(self)

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

    async def load(self, group_id: str, p) -> SharePartition | None:
        """:meth:`get`, reading the share-partition's persisted state from its
        share coordinator (this broker's, or another's through
        ReadShareGroupState) when it starts here, and writing the state of a
        new one. None while that coordinator is not available (being
        elected, loading, unreachable): the share-partition waits for it."""
        key = (group_id, p.topic.topic_id, p.index)
        if self._valid(key, p):
            return self.get(group_id, p)
        shard = node = stored = None
        if self.coordinator is not None:
            try:
                shard = await self.coordinator.shard_for(key)
            except Exception:
                log.exception("share-partition state of %s: its coordinator failed", key)
                return None
            if shard is not None:
                stored = shard.read(key)
            else:
                node = self.coordinator.node_of(key)
                if node is None or node == self.coordinator.broker.config.node_id:
                    return None  # no leader for its state yet
                code, stored = await self.client.read(node, key, p.leader_epoch)
                if code not in (0, errors.UNKNOWN_TOPIC_OR_PARTITION):
                    log.info("share-partition state of %s: broker %d answered %d; retried", key, node, code)
                    return None
        if self._valid(key, p):  # started meanwhile by another request
            return self.get(group_id, p)
        if stored is not None:
            start, batches = stored
            sp = SharePartition.restore(start, batches, self._partition_config(group_id))
        else:
            sp = SharePartition(self._start_offset(group_id, p), self._partition_config(group_id))
        self.states[key] = (sp, p)
        self._epochs[key] = p.leader_epoch
        self._shards.pop(key, None)
        self._remote.pop(key, None)
        if shard is not None:
            self._shards[key] = shard
        elif node is not None:
            self._remote[key] = node
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
        if entry is None or self.coordinator is None:
            return
        sp = entry[0]
        node = self._remote.get(key)
        if shard is None and node is not None:  # the coordinator is another broker: WriteShareGroupState
            self._pending[key] = asyncio.get_running_loop().create_task(
                self.client.write(node, key, p.leader_epoch, sp.start, sp.state_batches()))
            return
        if shard is None:
            return
        res = self.coordinator.execute(shard, shard.write, key, p.leader_epoch, sp.start, sp.state_batches())
        if res.response.get("error_code"):
            log.warning("share-partition state of %s not written (error %d): its coordinator moved",
                        key, res.response["error_code"])
            self._shards.pop(key, None)

    async def written(self, group_id: str, partitions) -> None:
        """Wait for the remote writes of the state of ``partitions`` ((topic id,
        index)) of ``group_id`` (acknowledgements are answered once written)."""
        tasks = [self._pending.get((group_id, tid, index)) for tid, index in partitions]
        tasks = [t for t in tasks if t is not None and not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=30)

    def _forget(self, group_id: str, topic_id: bytes | None = None) -> None:
        """Drop the group's share-partitions (of one topic, or all), in memory
        and in ``__share_group_state`` (those this broker's shards keep)."""
        keys = [k for k in self.states if k[0] == group_id and (topic_id is None or k[1] == topic_id)]
        for key in keys:
            sp_p = self.states.pop(key)
            self._epochs.pop(key, None)
            self._shards.pop(key, None)
            node = self._remote.pop(key, None)
            if node is not None:
                asyncio.get_running_loop().create_task(self.client.delete(node, key))
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
        for t in self._pending.values():
            t.cancel()
        self._pending.clear()
        self.client.close()


class StateClient:
    """Read/Write/DeleteShareGroupState to the share coordinator on another
    broker, one request at a time per broker, over its inter-broker listener."""

    def __init__(self, owner: SharePartitions, timeout_s: float = 10.0):
        self.owner = owner
        self.timeout = timeout_s
        self.peers: dict[int, object] = {}
        self.locks: dict[int, asyncio.Lock] = {}

    async def read(self, node: int, key, leader_epoch: int):
        """(error, (start, batches) or None)."""
        group_id, tid, index = key
        body = {"group_id": group_id, "topics": [{"topic_id": tid, "partitions": [
            {"partition": index, "leader_epoch": leader_epoch}]}]}
        try:
            resp = await self.call(node, "ReadShareGroupState", 0, body)
            r = resp["results"][0]["partitions"][0]
        except (OSError, asyncio.TimeoutError, ValueError, ConnectionError, IndexError, KeyError) as e:
            log.info("ReadShareGroupState to broker %d failed (%s)", node, e)
            return errors.NETWORK_EXCEPTION, None
        if r["error_code"]:
            return r["error_code"], None
        return 0, (r["start_offset"], [(b["first_offset"], b["last_offset"], b["delivery_state"],
                                        b["delivery_count"]) for b in r["state_batches"]])

    async def write(self, node: int, key, leader_epoch: int, start: int, batches) -> int:
        group_id, tid, index = key
        body = {"group_id": group_id, "topics": [{"topic_id": tid, "partitions": [{
            "partition": index, "state_epoch": 0, "leader_epoch": leader_epoch, "start_offset": start,
            "state_batches": [{"first_offset": f, "last_offset": la, "delivery_state": s, "delivery_count": c}
                              for f, la, s, c in batches]}]}]}
        try:
            resp = await self.call(node, "WriteShareGroupState", 0, body)
            code = resp["results"][0]["partitions"][0]["error_code"]
        except (OSError, asyncio.TimeoutError, ValueError, ConnectionError, IndexError, KeyError) as e:
            log.warning("share-partition state of %s not written to broker %d (%s)", key, node, e)
            return errors.NETWORK_EXCEPTION
        if code:
            log.warning("share-partition state of %s not written to broker %d (error %d)", key, node, code)
        return code

    async def delete(self, node: int, key) -> None:
        group_id, tid, index = key
        body = {"group_id": group_id, "topics": [{"topic_id": tid, "partitions": [{"partition": index}]}]}
        try:
            await self.call(node, "DeleteShareGroupState", 0, body)
        except (OSError, asyncio.TimeoutError, ValueError, ConnectionError) as e:
            log.info("DeleteShareGroupState to broker %d failed (%s)", node, e)

    async def call(self, node: int, api: str, version: int, body: dict) -> dict:
        lock = self.locks.setdefault(node, asyncio.Lock())
        async with lock:
            try:
                conn = await self._peer(node)
                return await conn.request(api, version, body, self.timeout)
            except BaseException:
                self.peers.pop(node, None)
                raise

    async def _peer(self, node: int):
        from odradek.replica.peer import PeerConnection

        conn = self.peers.get(node)
        if conn is not None and conn.connected:
            return conn
        broker = self.owner.coordinator.broker
        info = broker.image.brokers.get(node)
        endpoint = info.endpoint(getattr(broker, "inter_broker_listener", None)) if info else None
        if endpoint is None:
            raise ConnectionError(f"broker {node} has no endpoint")
        conn = PeerConnection(endpoint[0], endpoint[1], f"odradek-share-state-{broker.config.node_id}",
                              security=getattr(broker, "inter_broker_security", None))
        await conn.connect(self.timeout)
        self.peers[node] = conn
        return conn

    def close(self) -> None:
        for conn in self.peers.values():
            conn.close()
        self.peers.clear()
