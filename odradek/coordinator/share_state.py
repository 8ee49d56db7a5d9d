"""The share coordinator: share-partition state in ``__share_group_state``.

Theory of operation
-------------------
The state of a share-partition (its start offset and the state batches of
its in-flight window, ``odradek/share/partition.py``) is kept as Kafka's
share coordinator keeps it: records of ``__share_group_state`` in Kafka's
format, key ``ShareSnapshotKey`` (type 0: group id, topic id, partition)
and value ``ShareSnapshotValue`` (snapshot epoch, state epoch, leader epoch,
start offset, timestamps, state batches). Each write is a whole snapshot of
the share-partition (so the latest record of a key is its state), and the
topic is compacted: what it holds stays bounded by the number of
share-partitions. A deleted share-partition is a tombstone. ShareUpdate
records (type 1), which Kafka writes between snapshots, are read but not
written.

:class:`ShareStateShard` is the state machine of one partition of the topic
(a key lives in partition ``partition_for(group:topic id:partition)``, the
hash Kafka uses); it changes only by replaying records, and is driven by the
shared :class:`~odradek.coordinator.runtime.ShardRunner`.
:class:`ShareCoordinator` hosts one shard per partition this broker leads,
following leadership through the replica manager's hosting changes, as the
transaction coordinator does; it creates the topic on first use
(``share.coordinator.state.topic.num.partitions``, 50, replication factor
``share.coordinator.state.topic.replication.factor``, 3, capped by the live
brokers, ``min.insync.replicas`` ``share.coordinator.state.topic.min.isr``,
2, capped by the factor).

The share-partition leaders (``odradek/share/manager.py``) read a state
when they start a share-partition and write one after every change that
must survive them (acknowledgements, released or expired records, a new
start offset): directly when this broker leads the key's partition, else
through Read/Write/DeleteShareGroupState to the broker that does
(``odradek/apis/share_state.py``). A write from a leader epoch older than
the last writer's is fenced (FENCED_LEADER_EPOCH), and one from a leader
that read the state before the group coordinator initialised it again
(InitializeShareGroupState, a new state epoch) FENCED_STATE_EPOCH. Writers
are answered once their records are committed (:meth:`ShareCoordinator.committed`:
the high watermark passed them), as Kafka's coordinator runtime answers.
"""

from __future__ import annotations

import asyncio
import logging
import struct

from odradek.clock import now_ms
from odradek.coordinator import append_records, create_state_topic
from odradek.coordinator.records import RecordFormatError, java_string_hash
from odradek.coordinator.runtime import Result, ShardRunner
from odradek.protocol import errors
from odradek.protocol.batch import iter_batches
from odradek.protocol.records import decode_batch
from odradek.protocol.schema import DecodeError, codec

log = logging.getLogger("odradek.share")

STATE_TOPIC = "__share_group_state"
STATE_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "104857600"}
SNAPSHOT_KEY_TYPE = 0
UPDATE_KEY_TYPE = 1
LOAD_READ_BYTES = 4 * 1024 * 1024
_I16 = struct.Struct(">h")
_COMPLETE = (2, 4)  # Kafka's RecordState ACKNOWLEDGED and ARCHIVED


def coordinator_key(group_id: str, topic_id: bytes, partition: int) -> str:
    """Kafka's ``SharePartitionKey.asCoordinatorKey``: group:topic id:partition
    (the topic id as Kafka prints a Uuid: url-safe base64, no padding)."""
    import base64

    tid = base64.urlsafe_b64encode(bytes(topic_id)).decode().rstrip("=")
    return f"{group_id}:{tid}:{partition}"


def partition_for(group_id: str, topic_id: bytes, partition: int, partitions: int) -> int:
    h = java_string_hash(coordinator_key(group_id, topic_id, partition))
    h = 0 if h == -(1 << 31) else abs(h)
    return h % partitions


def snapshot_key(group_id: str, topic_id: bytes, partition: int) -> bytes:
    out = bytearray(_I16.pack(SNAPSHOT_KEY_TYPE))
    codec("ShareSnapshotKey", 0).encode({"group_id": group_id, "topic_id": bytes(topic_id),
                                          "partition": partition}, out)
    return bytes(out)


def snapshot_value(value: dict) -> bytes:
    out = bytearray(_I16.pack(0))
    codec("ShareSnapshotValue", 0).encode(value, out)
    return bytes(out)


def decode_key(data: bytes) -> tuple[int, tuple[str, bytes, int]]:
    if data is None or len(data) < 2:
        raise RecordFormatError("record too short for a version")
    kind = _I16.unpack_from(data, 0)[0]
    name = {SNAPSHOT_KEY_TYPE: "ShareSnapshotKey", UPDATE_KEY_TYPE: "ShareUpdateKey"}.get(kind)
    if name is None:
        raise RecordFormatError(f"unknown key version {kind}")
    try:
        d, _ = codec(name, 0).decode(data, 2)
    except DecodeError as e:
        raise RecordFormatError(str(e)) from None
    return kind, (d["group_id"], bytes(d["topic_id"]), d["partition"])


def decode_value(kind: int, data: bytes) -> dict:
    if len(data) < 2 or _I16.unpack_from(data, 0)[0] != 0:
        raise RecordFormatError("unknown share state value version")
    try:
        d, _ = codec("ShareSnapshotValue" if kind == SNAPSHOT_KEY_TYPE else "ShareUpdateValue", 0).decode(data, 2)
    except DecodeError as e:
        raise RecordFormatError(str(e)) from None
    return d


def _merge(old: list[dict], new: list[dict], start: int) -> list[dict]:
    """State batches ``new`` over ``old`` (split where they overlap), from ``start``."""
    out = []
    for b in old:
        pieces = [(b["first_offset"], b["last_offset"])]
        for n in new:
            cut = []
            for f, la in pieces:
                if la < n["first_offset"] or f > n["last_offset"]:
                    cut.append((f, la))
                    continue
                if f < n["first_offset"]:
                    cut.append((f, n["first_offset"] - 1))
                if la > n["last_offset"]:
                    cut.append((n["last_offset"] + 1, la))
            pieces = cut
        out.extend(dict(b, first_offset=f, last_offset=la) for f, la in pieces)
    out.extend(new)
    trimmed = [dict(b, first_offset=max(b["first_offset"], start)) for b in out if b["last_offset"] >= start]
    return sorted(trimmed, key=lambda b: b["first_offset"])


class ShareStateShard:
    """The share-partition states of one ``__share_group_state`` partition."""

    def __init__(self, index: int = 0):
        self.index = index
        self.states: dict[tuple[str, bytes, int], dict] = {}

    # -- operations --------------------------------------------------------
    def write(self, now: int, key: tuple[str, bytes, int], leader_epoch: int, start: int,
              batches: list[tuple[int, int, int, int]], state_epoch: int = 0) -> Result:
        """A new snapshot of ``key``; FENCED_LEADER_EPOCH from a leader older
        than the last one that wrote it, FENCED_STATE_EPOCH from one that read
        the state before it was initialised again (:meth:`initialize`)."""
        old = self.states.get(key)
        if old is not None and 0 <= leader_epoch < old["leader_epoch"]:
            return Result({"error_code": errors.FENCED_LEADER_EPOCH})
        if old is not None and state_epoch < old["state_epoch"]:
            return Result({"error_code": errors.FENCED_STATE_EPOCH})
        value = {
            "snapshot_epoch": 0 if old is None else old["snapshot_epoch"] + 1,
            "state_epoch": state_epoch,
            "leader_epoch": leader_epoch, "start_offset": start,
            "create_timestamp": now if old is None else old["create_timestamp"], "write_timestamp": now,
            "state_batches": [{"first_offset": f, "last_offset": la, "delivery_state": s, "delivery_count": c}
                              for f, la, s, c in batches],
        }
        res = Result({"error_code": 0}, records=[(snapshot_key(*key), snapshot_value(value))])
        res.failure = {"error_code": errors.COORDINATOR_NOT_AVAILABLE}
        return res

    def initialize(self, now: int, key: tuple[str, bytes, int], state_epoch: int, start: int) -> Result:
        """InitializeShareGroupState: ``key`` starts again at ``start`` (-1:
        where its leader's ``share.auto.offset.reset`` says) with nothing in
        flight, in a new ``state_epoch`` (FENCED_STATE_EPOCH unless above the
        current one), which fences the writes of a leader that read it before."""
        old = self.states.get(key)
        if old is not None and state_epoch <= old["state_epoch"]:
            return Result({"error_code": errors.FENCED_STATE_EPOCH})
        value = {
            "snapshot_epoch": 0 if old is None else old["snapshot_epoch"] + 1,
            "state_epoch": state_epoch, "leader_epoch": -1, "start_offset": start,
            "create_timestamp": now if old is None else old["create_timestamp"], "write_timestamp": now,
            "state_batches": [],
        }
        res = Result({"error_code": 0}, records=[(snapshot_key(*key), snapshot_value(value))])
        res.failure = {"error_code": errors.COORDINATOR_NOT_AVAILABLE}
        return res

    def summary(self, key: tuple[str, bytes, int]) -> dict:
        """ReadShareGroupStateSummary's answer for ``key``: its state epoch,
        leader epoch, start offset (-1 when it has none) and the number of
        offsets from the start whose delivery is complete (acknowledged or
        archived)."""
        v = self.states.get(key)
        if v is None:
            return {"state_epoch": 0, "leader_epoch": -1, "start_offset": -1, "delivery_complete_count": -1}
        start = v["start_offset"]
        done = sum(b["last_offset"] - max(b["first_offset"], start) + 1 for b in v["state_batches"]
                   if b["delivery_state"] in _COMPLETE and b["last_offset"] >= start)
        return {"state_epoch": v["state_epoch"], "leader_epoch": v["leader_epoch"], "start_offset": start,
                "delivery_complete_count": done}

    def state_epoch(self, key: tuple[str, bytes, int]) -> int:
        v = self.states.get(key)
        return 0 if v is None else v["state_epoch"]

    def delete(self, now: int, keys: list[tuple[str, bytes, int]]) -> Result:
        res = Result({"error_code": 0}, records=[(snapshot_key(*k), None) for k in keys if k in self.states])
        res.failure = {"error_code": errors.COORDINATOR_NOT_AVAILABLE}
        return res

    def read_checked(self, key: tuple[str, bytes, int], leader_epoch: int):
        """(error, :meth:`read`): FENCED_LEADER_EPOCH for a leader older than the last writer."""
        v = self.states.get(key)
        if v is not None and 0 <= leader_epoch < v["leader_epoch"]:
            return errors.FENCED_LEADER_EPOCH, None
        return 0, self.read(key)

    def read(self, key: tuple[str, bytes, int]) -> tuple[int, list[tuple[int, int, int, int]]] | None:
        """(start offset, state batches) of ``key``, or None."""
        v = self.states.get(key)
        if v is None:
            return None
        return v["start_offset"], [(b["first_offset"], b["last_offset"], b["delivery_state"], b["delivery_count"])
                                   for b in v["state_batches"]]

    # -- what the runner calls -------------------------------------------
    def replay(self, key: bytes, value: bytes | None, now: int) -> None:
        kind, k = decode_key(key)
        if value is None:
            self.states.pop(k, None)
            return
        v = decode_value(kind, value)
        if kind == SNAPSHOT_KEY_TYPE:
            self.states[k] = v
            return
        old = self.states.get(k)  # an update (Kafka's): its batches over the snapshot's
        if old is None:
            return
        start = v["start_offset"] if v["start_offset"] >= 0 else old["start_offset"]
        self.states[k] = dict(old, start_offset=start, leader_epoch=v["leader_epoch"],
                              state_batches=_merge(old["state_batches"], v["state_batches"], start))

    def drain(self) -> list:
        return []

    def tick(self, now: int) -> Result:
        return Result()

    @staticmethod
    def next_deadline() -> None:
        return None

    def append_failed(self, records: list, now: int) -> None:
        """Nothing waits on a state record but its writer, which is told."""


class _Hosted:
    __slots__ = ("index", "partition", "shard", "runner", "loading", "load_task", "last_written")

    def __init__(self, index: int, partition, shard: ShareStateShard):
        self.index = index
        self.partition = partition
        self.shard = shard
        self.runner: ShardRunner | None = None
        self.loading = True
        self.load_task: asyncio.Task | None = None
        self.last_written = -1  # offset of the last record this shard appended


class ShareCoordinator:
    """One :class:`ShareStateShard` per ``__share_group_state`` partition led here."""

    def __init__(self, broker):
        self.broker = broker
        cfg = broker.config
        self.num_partitions = cfg.get_int("share.coordinator.state.topic.num.partitions", 50)
        self.replication_factor = cfg.get_int("share.coordinator.state.topic.replication.factor", 3)
        self.min_isr = cfg.get_int("share.coordinator.state.topic.min.isr", 2)
        self.write_timeout_ms = cfg.get_int("share.coordinator.write.timeout.ms", 5000)
        self.hosted: dict[int, _Hosted] = {}
        self._create_task: asyncio.Task | None = None
        self._stopped = False

    async def start(self) -> None:
        self.broker.replicas.listeners.append(self._on_hosting_changed)
        loads = self.sync_shards()
        if loads:
            await asyncio.gather(*loads, return_exceptions=True)

    async def stop(self) -> None:
        self._stopped = True
        for index in list(self.hosted):
            self.unload(index)
        if self._create_task is not None and not self._create_task.done():
            self._create_task.cancel()
            await asyncio.gather(self._create_task, return_exceptions=True)

    # -- routing -----------------------------------------------------------
    async def shard_for(self, key: tuple[str, bytes, int]) -> ShareStateShard | None:
        """The loaded shard of ``key`` on this broker (creating the topic on
        first use), or None when its partition is led elsewhere or unavailable."""
        if not await self.ensure_topic():
            return None
        index = partition_for(*key, self.num_partitions)
        p, code = self.broker.replicas.partition_or_error(STATE_TOPIC, index)
        h = self.hosted.get(index)
        if code:
            if h is not None:
                self.unload(index)
            return None
        if h is None or h.partition is not p:
            h = self._host(index, p)
        if h.loading:
            await asyncio.shield(h.load_task)
            if self.hosted.get(index) is not h or h.loading:
                return None
        return h.shard

    def node_of(self, key: tuple[str, bytes, int]) -> int | None:
        """The live broker leading ``key``'s partition of the topic, or None."""
        image = self.broker.image
        state = image.get(STATE_TOPIC)
        if state is None or not state.partitions:
            return None
        leader = state.partitions[partition_for(*key, len(state.partitions))].leader
        return leader if leader >= 0 and leader in image.brokers else None

    def execute(self, shard: ShareStateShard, op, *args) -> Result:
        h = self.hosted.get(shard.index)
        if h is None or h.shard is not shard:
            return Result({"error_code": errors.NOT_COORDINATOR})
        now = now_ms()
        res = op(now, *args)
        h.runner.apply(res, now)
        return res

    async def committed(self, shard: ShareStateShard) -> int:
        """0 once what ``shard`` has appended is committed (the high watermark
        of its partition passed it, as Kafka answers its coordinators'
        writes); NOT_COORDINATOR if leadership is lost first,
        REQUEST_TIMED_OUT after ``share.coordinator.write.timeout.ms``."""
        h = self.hosted.get(shard.index)
        if h is None or h.shard is not shard:
            return errors.NOT_COORDINATOR
        code = await h.partition.wait_replicated(h.last_written, self.write_timeout_ms / 1000)
        if code is None:
            return errors.REQUEST_TIMED_OUT
        return errors.NOT_COORDINATOR if code else 0

    # -- the topic and its partitions --------------------------------------
    async def ensure_topic(self) -> bool:
        if STATE_TOPIC not in self.broker.image:
            if self._create_task is None or self._create_task.done():
                self._create_task = asyncio.get_running_loop().create_task(self._create_topic())
            if await asyncio.shield(self._create_task) is None:
                return False
        loads = self.sync_shards()
        if loads:
            await asyncio.shield(asyncio.gather(*loads, return_exceptions=True))
        return True

    async def _create_topic(self):
        return await create_state_topic(self.broker, STATE_TOPIC, self.num_partitions, self.replication_factor,
                                        STATE_TOPIC_CONFIGS, self.min_isr, log)

    def sync_shards(self) -> list[asyncio.Task]:
        state = self.broker.image.get(STATE_TOPIC)
        count = len(state.partitions) if state is not None else 0
        if count:
            self.num_partitions = count
        started = []
        for index in range(count):
            p, code = self.broker.replicas.partition_or_error(STATE_TOPIC, index)
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
        if not self._stopped and any(p.topic.name == STATE_TOPIC for p in gained + lost):
            self.sync_shards()

    def _host(self, index: int, partition) -> _Hosted:
        if index in self.hosted:
            self.unload(index)
        h = _Hosted(index, partition, ShareStateShard(index))
        h.runner = ShardRunner(h.shard, lambda records, now: self._append(h, records, now))
        self.hosted[index] = h
        h.load_task = asyncio.get_running_loop().create_task(self._load(h))
        return h

    def unload(self, index: int) -> None:
        h = self.hosted.pop(index, None)
        if h is not None and h.load_task is not None and not h.load_task.done():
            h.load_task.cancel()

    async def _load(self, h: _Hosted) -> None:
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
            log.exception("loading %s-%d failed; its share-partitions start afresh", STATE_TOPIC, h.index)
        if self.hosted.get(h.index) is h:
            h.loading = False

    def _append(self, h: _Hosted, records: list, now: int) -> None:
        h.last_written = append_records(self.broker, STATE_TOPIC, h.index, records, now, h.partition).last_offset


__all__ = ["ShareCoordinator", "ShareStateShard", "STATE_TOPIC", "partition_for", "coordinator_key"]
