"""Committed offsets of a shard's groups (OffsetCommit, OffsetFetch, OffsetDelete).

Theory of operation
-------------------
:class:`OffsetManager` holds every committed offset of the groups of one
shard, ``group id -> {(topic, partition): OffsetValue}``, apart from group
membership: a group's offsets stay when the group changes type, and outlive
its metadata (as in Kafka). It asks the shard's
:class:`~odradek.coordinator.group_manager.GroupManager` about the group,
whatever its type, before acting: whether a commit is valid for it
(generation or member epoch), whether a fetch is, which topics' offsets
may not be deleted or expired, and whether an emptied group goes too.

As everywhere in the coordinator, operations return records (offset
commit keys, type 1; a null value deletes the offset) and only
:meth:`OffsetManager.replay` changes what is stored. Offsets expire after
``offsets.retention.minutes`` (or at the expiry a v2-4 OffsetCommit asked
for), counting from when the group became Empty, or from the commit for
offsets of topics a group no longer subscribes to; a deleted topic's offsets
are deleted with it.

Transactional offsets (TxnOffsetCommit) are replayed into ``pending``, per
producer id, and become committed offsets when that producer's commit
marker is written to the partition (``complete_transaction``), or are
dropped at its abort marker; OffsetFetch with ``require_stable`` answers
UNSTABLE_OFFSET_COMMIT for a partition with a pending offset.
"""

from __future__ import annotations

from typing import Callable

from odradek.coordinator import records as rec
from odradek.coordinator.config import GroupConfig
from odradek.coordinator.group_manager import GroupManager
from odradek.coordinator.records import OffsetKey, OffsetValue
from odradek.coordinator.runtime import Result
from odradek.protocol import errors

OFFSET_METADATA_TOO_LARGE = 12  # not in odradek.protocol.errors yet


def offset_record(group_id: str, topic: str, partition: int, value: OffsetValue | None) -> tuple:
    return rec.offset_key(group_id, topic, partition), None if value is None else rec.offset_value(value)


class OffsetManager:
    """The committed offsets of one shard's groups."""

    def __init__(self, groups: GroupManager, config: GroupConfig | None = None):
        self.groups = groups
        self.config = config or GroupConfig()
        self.offsets: dict[str, dict[tuple[str, int], OffsetValue]] = {}
        # producer id -> group -> (topic, partition) -> offset, until the transaction's marker
        self.pending: dict[int, dict[str, dict[tuple[str, int], OffsetValue]]] = {}

    def of(self, group_id: str) -> dict[tuple[str, int], OffsetValue]:
        return self.offsets.get(group_id, {})

    def tombstones(self, group_id: str, keys=None) -> list:
        """Records deleting ``keys`` (default: every offset) of the group."""
        keys = sorted(self.of(group_id) if keys is None else keys)
        return [offset_record(group_id, t, p, None) for t, p in keys]

    # -- OffsetCommit ----------------------------------------------------
    def commit_offsets(self, now: int, *, group_id: str | None, generation: int, member_id: str,
                       instance_id: str | None, topics: list[tuple[str, list[tuple]]],
                       topic_exists: Callable[[str, int], bool], retention_ms: int = -1,
                       version: int = 9, transactional: bool = False) -> Result:
        """``topics``: (name, [(partition, offset, leader_epoch, metadata)]). Answers
        ``{"topics": [{"name", "partitions": [{partition_index, error_code}]}]}``."""

        def answer(code_for):
            return {"topics": [{"name": name, "partitions": [
                {"partition_index": p[0], "error_code": code_for(name, p)} for p in parts]}
                for name, parts in topics]}

        code = 0
        if not group_id:
            code = errors.INVALID_GROUP_ID
        elif transactional and generation < 0 and not member_id:
            pass  # TxnOffsetCommit before v3, or without group metadata: not checked, as in Kafka
        else:
            g = self.groups.get(group_id)
            if g is None:
                if generation >= 0:
                    code = errors.GROUP_ID_NOT_FOUND if version >= 9 else errors.ILLEGAL_GENERATION
            else:
                # A transactional commit to a KIP-848 group is checked by member
                # epoch whatever its version, as Kafka does (not UNSUPPORTED_VERSION).
                code = self.groups.kind(g).validate_offset_commit(g, now, generation, member_id,
                                                                  instance_id, max(version, 9) if transactional
                                                                  else version)
        if code:
            return Result(answer(lambda name, p: code))
        expire = now + retention_ms if retention_ms is not None and retention_ms >= 0 else -1
        res = Result()
        codes: dict[tuple[str, int], int] = {}
        for name, parts in topics:
            for index, offset, epoch, metadata in parts:
                if not topic_exists(name, index):
                    codes[(name, index)] = errors.UNKNOWN_TOPIC_OR_PARTITION
                elif metadata is not None and len(metadata.encode("utf-8")) > self.config.max_metadata_bytes:
                    codes[(name, index)] = OFFSET_METADATA_TOO_LARGE
                else:
                    codes[(name, index)] = 0
                    value = OffsetValue(offset, epoch, metadata or "", now, expire)
                    res.records.append(offset_record(group_id, name, index, value))
        res.response = answer(lambda name, p: codes[(name, p[0])])
        res.failure = answer(lambda name, p: codes[(name, p[0])] or errors.COORDINATOR_NOT_AVAILABLE)
        return res

    # -- OffsetFetch -----------------------------------------------------
    def fetch_offsets(self, group_id: str, topics: list[tuple[str, list[int]]] | None,
                      member_id: str | None = None, member_epoch: int = -1) -> dict:
        """``topics`` None means every committed partition; a member id or epoch
        is checked against the group. Answers ``{"error_code", "topics":
        [{"name", "partitions": [...]}]}``."""
        if not group_id:
            return {"error_code": errors.INVALID_GROUP_ID, "topics": []}
        g = self.groups.get(group_id)
        if g is not None and not (member_id is None and member_epoch < 0):
            code = self.groups.kind(g).validate_offset_fetch(g, member_id, member_epoch)
            if code:
                return {"error_code": code, "topics": []}
        offsets = self.of(group_id)

        def entry(index: int, v: OffsetValue | None) -> dict:
            if v is None:
                return {"partition_index": index, "committed_offset": -1, "committed_leader_epoch": -1,
                        "metadata": "", "error_code": 0}
            return {"partition_index": index, "committed_offset": v.offset,
                    "committed_leader_epoch": v.leader_epoch, "metadata": v.metadata, "error_code": 0}

        out = []
        if topics is None:
            by_topic: dict[str, list] = {}
            for (topic, index) in sorted(offsets):
                by_topic.setdefault(topic, []).append(entry(index, offsets[(topic, index)]))
            out = [{"name": t, "partitions": ps} for t, ps in by_topic.items()]
        else:
            for name, indexes in topics:
                out.append({"name": name,
                            "partitions": [entry(i, offsets.get((name, i))) for i in indexes]})
        return {"error_code": 0, "topics": out}

    # -- OffsetDelete ----------------------------------------------------
    def delete_offsets(self, now: int, *, group_id: str, topics: list[tuple[str, list[int]]],
                       topic_exists: Callable[[str, int], bool]) -> Result:
        """Answers ``{"error_code", "topics": [{"name", "partitions": [{partition_index, error_code}]}]}``."""
        def top(code):
            return Result({"error_code": code, "topics": []})

        if not group_id:
            return top(errors.INVALID_GROUP_ID)
        g = self.groups.get(group_id)
        if g is None:
            return top(errors.GROUP_ID_NOT_FOUND)
        code, subscribed = self.groups.kind(g).offset_delete_guard(g)
        if code:
            return top(code)
        offsets = self.of(group_id)
        res = Result()
        out = []
        for name, indexes in topics:
            parts = []
            for i in indexes:
                if name in subscribed:
                    code = errors.GROUP_SUBSCRIBED_TO_TOPIC
                elif not topic_exists(name, i):
                    code = errors.UNKNOWN_TOPIC_OR_PARTITION
                else:
                    code = 0
                    if (name, i) in offsets:
                        res.records.append(offset_record(group_id, name, i, None))
                parts.append({"partition_index": i, "error_code": code})
            out.append({"name": name, "partitions": parts})
        res.response = {"error_code": 0, "topics": out}
        res.failure = {"error_code": errors.COORDINATOR_NOT_AVAILABLE, "topics": []}
        return res

    # -- background duties ----------------------------------------------
    def expire_offsets(self, now: int) -> Result:
        """Tombstones for offsets past retention, and for empty groups left
        without offsets (offsets.retention.minutes, as Kafka since 2.1)."""
        res = Result()
        retention = self.config.offsets_retention_ms
        for g in list(self.groups.groups.values()):
            offsets = self.of(g.group_id)
            rule = self.groups.kind(g).expiry_rule(g)
            expired = []
            if rule is not None:
                base, kept = rule
                for key, v in offsets.items():
                    if key[0] in kept:
                        continue
                    if (now >= v.expire_timestamp) if v.expire_timestamp >= 0 else (now - base(v) >= retention):
                        expired.append(key)
            res.records.extend(self.tombstones(g.group_id, expired))
            if len(expired) == len(offsets) and self.groups.is_empty(g) and self.groups.expires(g):
                res.records.extend(self.groups.delete_records(g))
        return res

    def topic_deleted(self, now: int, topic: str) -> Result:
        res = Result()
        for gid, offsets in self.offsets.items():
            res.records.extend(self.tombstones(gid, [key for key in offsets if key[0] == topic]))
        return res

    # -- transactional offsets -------------------------------------------
    def replay_pending(self, producer_id: int, key: OffsetKey, value: bytes | None) -> None:
        v = rec.decode_offset_value(value)
        if v is not None:
            self.pending.setdefault(producer_id, {}).setdefault(key.group, {})[(key.topic, key.partition)] = v

    def complete_transaction(self, producer_id: int, commit: bool) -> list[str]:
        """Materialise (commit) or drop the offsets of ``producer_id``'s
        transaction; return the groups that got offsets."""
        pending = self.pending.pop(producer_id, {})
        if not commit:
            return []
        for group, offsets in pending.items():
            self.offsets.setdefault(group, {}).update(offsets)
        return list(pending)

    def unstable(self, group_id: str, topic: str, partition: int) -> bool:
        """Whether a transactional offset of the partition awaits its marker."""
        return any((topic, partition) in by_group.get(group_id, ())
                   for by_group in self.pending.values())

    # -- replay ----------------------------------------------------------
    def replay(self, key: OffsetKey, value: bytes | None) -> None:
        v = rec.decode_offset_value(value)
        if v is None:
            offsets = self.offsets.get(key.group)
            if offsets is not None:
                offsets.pop((key.topic, key.partition), None)
                if not offsets:
                    del self.offsets[key.group]
            return
        self.offsets.setdefault(key.group, {})[(key.topic, key.partition)] = v
