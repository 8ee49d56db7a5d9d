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
committed: replicated to the in-sync replicas of its ``__share_group_state``
partition), every release (sessions ending, members leaving) and every
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
# How long the group coordinator's requests to the share coordinators are
# retried while one is moving or loading, and how often.
RETRY_MS = 5000
RETRY_BACKOFF_S = 0.1
_RETRIABLE = (errors.COORDINATOR_NOT_AVAILABLE, errors.NOT_COORDINATOR, errors.COORDINATOR_LOAD_IN_PROGRESS)
# How long a member that left the group while its share session is open here
# keeps its records, for the acknowledgements it sends as it closes.
LEAVE_GRACE_S = 0.5


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
        self._state_epochs: dict[tuple[str, bytes, int], int] = {}  # the state epoch each was read in
        self._pending: dict[tuple[str, bytes, int], asyncio.Task] = {}  # its last write, until committed
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
        """The share-partition of ``group_id`` over partition ``p`` (led here).
        One that is new, or led here again, starts afresh without its stored
        state: requests go through :meth:`load`, which reads it first."""
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
        state_epoch = 0
        if self.coordinator is not None:
            pending = self._pending.get(key)
            if pending is not None and not pending.done():  # its last state, written before it is read
                await asyncio.wait([pending], timeout=30)
            try:
                shard = await self.coordinator.shard_for(key)
            except Exception:
                log.exception("share-partition state of %s: its coordinator failed", key)
                return None
            if shard is not None:
                stored = shard.read(key)
                state_epoch = shard.state_epoch(key)
            else:
                node = self.coordinator.node_of(key)
                if node is None or node == self.coordinator.broker.config.node_id:
                    return None  # no leader for its state yet
                code, stored, state_epoch = await self.client.read(node, key, p.leader_epoch)
                if code not in (0, errors.UNKNOWN_TOPIC_OR_PARTITION):
                    log.info("share-partition state of %s: broker %d answered %d; retried", key, node, code)
                    return None
        if self._valid(key, p):  # started meanwhile by another request
            return self.get(group_id, p)
        if stored is not None and stored[0] < 0:  # initialised without a start: share.auto.offset.reset
            stored = None
        self._state_epochs[key] = state_epoch
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
        state_epoch = self._state_epochs.get(key, 0)
        if shard is None and node is not None:  # the coordinator is another broker: WriteShareGroupState
            self._pending[key] = asyncio.get_running_loop().create_task(
                self._write_remote(node, key, p, state_epoch, sp.start, sp.state_batches()))
            return
        if shard is None:
            return
        res = self.coordinator.execute(shard, shard.write, key, p.leader_epoch, sp.start, sp.state_batches(),
                                       state_epoch)
        code = res.response.get("error_code")
        if not code:
            self._pending[key] = asyncio.get_running_loop().create_task(self.coordinator.committed(shard))
        elif code == errors.FENCED_STATE_EPOCH:
            self._fenced(key, p)
        elif code:
            log.warning("share-partition state of %s not written (error %d): its coordinator moved", key, code)
            self._shards.pop(key, None)

    async def _write_remote(self, node: int, key, p, state_epoch: int, start: int, batches) -> int:
        code = await self.client.write(node, key, p.leader_epoch, start, batches, state_epoch)
        if code == errors.FENCED_STATE_EPOCH:
            self._fenced(key, p)
        return code

    def _fenced(self, key, p) -> None:
        """The state of ``key`` was initialised again (AlterShareGroupOffsets)
        since it was read here: what is in memory is dropped, and read again
        at its next use."""
        entry = self.states.get(key)
        if entry is not None and entry[1] is p:
            log.info("share-partition %s initialised again by its group coordinator: read again", key)
            self._unload(key)
            p.notify()

    def _unload(self, key) -> None:
        self.states.pop(key, None)
        self._epochs.pop(key, None)
        self._shards.pop(key, None)
        self._remote.pop(key, None)
        self._state_epochs.pop(key, None)

    async def written(self, group_id: str, partitions) -> dict:
        """Wait for the writes of the state of ``partitions`` ((topic id,
        index)) of ``group_id`` to be committed by their share coordinator,
        here or elsewhere (acknowledgements are answered then): (topic id,
        index) -> the error of those that failed."""
        tasks = {(tid, index): self._pending.get((group_id, tid, index)) for tid, index in partitions}
        tasks = {k: t for k, t in tasks.items() if t is not None}
        waiting = [t for t in tasks.values() if not t.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=30)
        failed = {}
        for k, t in tasks.items():
            code = t.result() if t.done() and not t.cancelled() and t.exception() is None else errors.REQUEST_TIMED_OUT
            if code and code != errors.FENCED_STATE_EPOCH:
                failed[k] = code
        return failed

    def _forget(self, group_id: str, topic_id: bytes | None = None) -> None:
        """Drop the group's share-partitions (of one topic, or all), in memory
        and in ``__share_group_state`` (those this broker's shards keep)."""
        keys = [k for k in self.states if k[0] == group_id and (topic_id is None or k[1] == topic_id)]
        for key in keys:
            sp_p = self.states[key]
            node = self._remote.get(key)
            self._unload(key)
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
        """``s`` is closed (or replaced): its member's records are released.
        When no session of its group is left here, the group's share-partitions
        that hold no lock leave memory (their state is written): the next
        session reads them again from their share coordinator, so what an
        AlterShareGroupOffsets or DeleteShareGroupOffsets of the (then empty)
        group changed there is what it reads."""
        for (group_id, _, _), (sp, p) in list(self.states.items()):
            if group_id == s.group_id and sp.release_member(s.member_id):
                p.notify()
                self.persist(group_id, p)
        if self.coordinator is None or any(o.group_id == s.group_id for o in self.sessions.sessions.values()):
            return
        for key, (sp, p) in list(self.states.items()):
            if key[0] == s.group_id and sp.next_deadline() is None:
                self._unload(key)

    def member_left(self, group_id: str, member_id: str | None) -> None:
        """A member left the share group (None: the group was deleted): what
        it holds is released; a deleted group's share-partitions are dropped.
        A member whose share session is still open here keeps its records for
        ``LEAVE_GRACE_S`` more: a closing consumer sends its leave and its
        last acknowledgements at once, on two connections (librdkafka), and
        those acknowledgements are answered, not refused because the leave
        came first; its session's end releases the rest at once."""
        if member_id is None:
            self._forget(group_id)
            return
        if self.sessions.get(group_id, member_id) is not None:
            asyncio.get_running_loop().call_later(LEAVE_GRACE_S, self._release_member, group_id, member_id)
            return
        self._release_member(group_id, member_id)

    def _release_member(self, group_id: str, member_id: str) -> None:
        for key, (sp, p) in list(self.states.items()):
            if key[0] == group_id and sp.release_member(member_id):
                p.notify()
                self.persist(group_id, p)

    # -- share group offsets: the share coordinators, for the group coordinator --

    async def _route(self, key):
        """(this broker's shard, None) or (None, the broker) of the share
        coordinator of ``key``; (None, None) while it has none."""
        shard = await self.coordinator.shard_for(key)
        if shard is not None:
            return shard, None
        node = self.coordinator.node_of(key)
        return None, (node if node is not None and node != self.coordinator.broker.config.node_id else None)

    async def _retried(self, attempt, keys: list) -> dict:
        """``await attempt(keys)`` (key -> (error, ...)), again for the keys
        whose share coordinator is moving or loading, for a few seconds, as
        Kafka's persister retries."""
        out: dict = {}
        deadline = now_ms() + RETRY_MS
        while True:
            out.update(await attempt(keys))
            keys = [k for k in keys if out[k][0] in _RETRIABLE]
            if not keys or now_ms() >= deadline:
                return out
            await asyncio.sleep(RETRY_BACKOFF_S)

    async def summaries(self, group_id: str, keys: list) -> dict:
        """DescribeShareGroupOffsets: ReadShareGroupStateSummary of ``keys``
        from their share coordinators (one request per broker): key ->
        (error, {state_epoch, leader_epoch, start_offset, delivery_complete_count})."""
        return await self._retried(lambda ks: self._summaries(group_id, ks), keys)

    async def _summaries(self, group_id: str, keys: list) -> dict:
        out: dict = {}
        remote: dict[int, list] = {}
        for key in keys:
            if self.coordinator is None:  # in memory only
                entry = self.states.get(key)
                out[key] = (0, {"state_epoch": 0, "leader_epoch": -1, "start_offset": entry[0].start if entry else -1,
                                "delivery_complete_count": entry[0].completed() if entry else -1})
                continue
            shard, node = await self._route(key)
            if shard is not None:
                out[key] = (0, shard.summary(key))
            elif node is not None:
                remote.setdefault(node, []).append(key)
            else:
                out[key] = (errors.COORDINATOR_NOT_AVAILABLE, None)
        for answered in await asyncio.gather(*(self.client.summaries(node, group_id, ks)
                                               for node, ks in remote.items())):
            out.update(answered)
        return out

    async def initialize(self, group_id: str, key, start: int) -> int:
        """AlterShareGroupOffsets: the share-partition ``key`` starts again at
        ``start``, through InitializeShareGroupState (a new state epoch, which
        fences its leader's older writes) to its share coordinator; a copy in
        memory here is dropped, to be read again."""
        async def attempt(keys):
            return {key: (await self._initialize(group_id, key, start),)}
        return (await self._retried(attempt, [key]))[key][0]

    async def _initialize(self, group_id: str, key, start: int) -> int:
        if self.coordinator is None:
            code = 0
        else:
            shard, node = await self._route(key)
            if shard is not None:
                res = self.coordinator.execute(shard, shard.initialize, key, shard.state_epoch(key) + 1, start)
                code = res.response["error_code"]
            elif node is not None:
                code, summary = (await self.client.summaries(node, group_id, [key]))[key]
                if not code:
                    code = await self.client.initialize(node, key, summary["state_epoch"] + 1, start)
            else:
                code = errors.COORDINATOR_NOT_AVAILABLE
        if not code:
            entry = self.states.get(key)
            if entry is not None:
                self._unload(key)
                entry[1].notify()
            if self.coordinator is None and entry is not None:  # in memory only: the new start, here
                self.states[key] = (SharePartition(start, self._partition_config(group_id)), entry[1])
                self._epochs[key] = entry[1].leader_epoch
        return code

    async def delete_states(self, group_id: str, keys: list) -> None:
        """DeleteShareGroupOffsets: the share-partitions ``keys`` are forgotten,
        here and by their share coordinators (DeleteShareGroupState)."""
        for key in keys:
            entry = self.states.get(key)
            if entry is not None:
                self._unload(key)
                entry[1].notify()
            if self.coordinator is None:
                continue
            shard, node = await self._route(key)
            if shard is not None:
                self.coordinator.execute(shard, shard.delete, [key])
            elif node is not None:
                await self.client.delete(node, key)

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
        self._clients = None  # odradek.replica.peer.PeerClients, made at the first request

    async def read(self, node: int, key, leader_epoch: int):
        """(error, (start, batches) or None, state epoch)."""
        group_id, tid, index = key
        body = {"group_id": group_id, "topics": [{"topic_id": tid, "partitions": [
            {"partition": index, "leader_epoch": leader_epoch}]}]}
        try:
            resp = await self.call(node, "ReadShareGroupState", 0, body)
            r = resp["results"][0]["partitions"][0]
        except (OSError, asyncio.TimeoutError, ValueError, ConnectionError, IndexError, KeyError) as e:
            log.info("ReadShareGroupState to broker %d failed (%s)", node, e)
            return errors.NETWORK_EXCEPTION, None, 0
        if r["error_code"]:
            return r["error_code"], None, 0
        return 0, (r["start_offset"], [(b["first_offset"], b["last_offset"], b["delivery_state"],
                                        b["delivery_count"]) for b in r["state_batches"]]), r["state_epoch"]

    async def summaries(self, node: int, group_id: str, keys: list) -> dict:
        """ReadShareGroupStateSummary of ``keys`` (of one group) to ``node``:
        key -> (error, summary dict)."""
        topics: dict = {}
        for _, tid, index in keys:
            topics.setdefault(tid, []).append({"partition": index, "leader_epoch": -1})
        body = {"group_id": group_id, "topics": [{"topic_id": tid, "partitions": parts}
                                                  for tid, parts in topics.items()]}
        try:
            resp = await self.call(node, "ReadShareGroupStateSummary", 1, body)
        except (OSError, asyncio.TimeoutError, ValueError, ConnectionError) as e:
            log.info("ReadShareGroupStateSummary to broker %d failed (%s)", node, e)
            return {key: (errors.COORDINATOR_NOT_AVAILABLE, None) for key in keys}
        out = {}
        for t in resp["results"]:
            for r in t["partitions"]:
                out[(group_id, bytes(t["topic_id"]), r["partition"])] = (r["error_code"], {
                    name: r[name] for name in ("state_epoch", "leader_epoch", "start_offset",
                                               "delivery_complete_count")})
        return {key: out.get(key, (errors.COORDINATOR_NOT_AVAILABLE, None)) for key in keys}

    async def initialize(self, node: int, key, state_epoch: int, start: int) -> int:
        group_id, tid, index = key
        body = {"group_id": group_id, "topics": [{"topic_id": tid, "partitions": [
            {"partition": index, "state_epoch": state_epoch, "start_offset": start}]}]}
        try:
            resp = await self.call(node, "InitializeShareGroupState", 0, body)
            return resp["results"][0]["partitions"][0]["error_code"]
        except (OSError, asyncio.TimeoutError, ValueError, ConnectionError, IndexError, KeyError) as e:
            log.info("InitializeShareGroupState to broker %d failed (%s)", node, e)
            return errors.COORDINATOR_NOT_AVAILABLE

    async def write(self, node: int, key, leader_epoch: int, start: int, batches, state_epoch: int = 0) -> int:
        group_id, tid, index = key
        body = {"group_id": group_id, "topics": [{"topic_id": tid, "partitions": [{
            "partition": index, "state_epoch": state_epoch, "leader_epoch": leader_epoch, "start_offset": start,
            "state_batches": [{"first_offset": f, "last_offset": la, "delivery_state": s, "delivery_count": c}
                              for f, la, s, c in batches]}]}]}
        try:
            resp = await self.call(node, "WriteShareGroupState", 0, body)
            code = resp["results"][0]["partitions"][0]["error_code"]
        except (OSError, asyncio.TimeoutError, ValueError, ConnectionError, IndexError, KeyError) as e:
            log.warning("share-partition state of %s not written to broker %d (%s)", key, node, e)
            return errors.NETWORK_EXCEPTION
        if code and code != errors.FENCED_STATE_EPOCH:
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
        if self._clients is None:
            from odradek.replica.peer import PeerClients

            self._clients = PeerClients(self.owner.coordinator.broker, "odradek-share-state", self.timeout)
        return await self._clients.call(node, api, version, body)

    def close(self) -> None:
        if self._clients is not None:
            self._clients.close()
