"""KIP-932 share groups (ShareGroupHeartbeat, ShareGroupDescribe).

Theory of operation
-------------------
:class:`ShareGroups` is the share group type of a shard's
:class:`~odradek.coordinator.group_manager.GroupManager`, a sibling of the
classic and consumer groups in the same table. As with them, every operation
takes ``now`` and returns a :class:`~odradek.coordinator.runtime.Result`,
and ``replay`` is the only code that changes durable state; member session
deadlines are runtime state.

Records (``__consumer_offsets``, key versions as Kafka numbers them): 10 a
member's subscription, 11 the group epoch (with a hash of the subscribed
topics' metadata), 12 the target assignment's epoch, 13 a member's target
partitions, 14 a member's current assignment.

A share group hands partitions out without revocation: members of a share
group may read the same partition at once (the share-partition's record
locks, ``odradek/share/partition.py``, keep a record with one member at a
time), so a member moves to its target at once, on its next heartbeat.

One ShareGroupHeartbeat:

1. The member joins with epoch 0 (its id chosen by the client), heartbeats
   with its current epoch (or the previous one, if the answer that bumped it
   was lost; else FENCED_MEMBER_EPOCH), or leaves with -1.
2. A new member, a changed subscription, or a change in the subscribed
   topics (created, deleted, more partitions) bumps the group epoch.
3. When the group epoch is ahead of the target assignment's, the simple
   assignor (as Kafka's ``SimpleAssignor``) computes a new target: each
   member is hashed onto one partition of its topics (Java's
   ``String.hashCode`` of its id, modulo the partition count), partitions
   nobody holds and nobody was hashed to go round-robin over the members
   subscribed to their topic, and every member keeps what it had that it
   still subscribes to. So with fewer partitions than members, members share
   partitions; with more, every partition has a member.
4. The member takes its target: epoch and assignment in one record.

Members removed (leaving, fenced) and deleted groups are reported through
``drain_departures``: the group coordinator has this broker's
share-partitions release the records such a member holds (and forget a
deleted group's state), as Kafka's group coordinator tells the
share-partition leaders.

A member whose session expires (the group's ``share.session.timeout.ms``,
else ``group.share.session.timeout.ms``) is removed and the group epoch
bumped; the heartbeat interval is the group's ``share.heartbeat.interval.ms``,
else ``group.share.heartbeat.interval.ms`` (group configs,
``odradek/metadata/group_configs.py``). Group states: Empty (no members) and
Stable.

A share group id is never taken over by another group type, nor does a
share group take over an id of another type, even when empty (as Kafka):
ShareGroupHeartbeat for a classic or consumer group, and
ConsumerGroupHeartbeat for a share group, answer GROUP_ID_NOT_FOUND ("Group
g is not a share group." / "... not a consumer group."), and JoinGroup for a
share group INCONSISTENT_GROUP_PROTOCOL.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace

from odradek.coordinator import records as rec
from odradek.coordinator.config import ShareGroupConfig, group_setting
from odradek.coordinator.consumer_groups import DictTopics
from odradek.coordinator.group_manager import AUTHORIZED_OPERATIONS_OMITTED, EMPTY, GroupManager
from odradek.coordinator.records import (
    SG_CURRENT_ASSIGNMENT,
    SG_MEMBER_METADATA,
    SG_METADATA,
    SG_TARGET_MEMBER,
    SG_TARGET_METADATA,
    ShareKey,
    java_string_hash,
)
from odradek.coordinator.runtime import Result
from odradek.protocol import errors

log = logging.getLogger("odradek.groups")

SHARE = "share"
SHARE_STABLE = "Stable"
LEAVE_GROUP_MEMBER_EPOCH = -1
FENCE_RETRY_MS = 1000
ASSIGNOR_NAME = "simple"


@dataclass(frozen=True)
class ShareMember:
    member_id: str
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple = ()
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: int = 0
    assigned: dict = field(default_factory=dict)  # topic id -> frozenset of partitions

    def metadata(self) -> tuple:
        return (self.rack_id, self.client_id, self.client_host, self.subscribed_topic_names)


class ShareGroup:
    """One share group as its records describe it, plus session deadlines."""

    protocol_type = "share"
    group_type = SHARE

    def __init__(self, group_id: str, now: int):
        self.group_id = group_id
        self.group_epoch = 0
        self.metadata_hash = 0
        self.assignment_epoch = 0
        self.members: dict[str, ShareMember] = {}
        self.target: dict[str, dict] = {}
        self.state_timestamp = now
        # runtime only
        self.session_deadlines: dict[str, int] = {}
        self.next_check: int | None = None

    @property
    def state(self) -> str:
        return SHARE_STABLE if self.members else EMPTY

    def subscribed_topics(self) -> set[str]:
        out: set[str] = set()
        for m in self.members.values():
            out.update(m.subscribed_topic_names)
        return out


def _partitions(entries) -> dict:
    out: dict[bytes, set] = {}
    for e in entries or ():
        if e["partitions"]:
            out.setdefault(bytes(e["topic_id"]), set()).update(e["partitions"])
    return {tid: frozenset(ps) for tid, ps in out.items() if ps}


def _entries(parts: dict) -> list[dict]:
    return [{"topic_id": tid, "partitions": sorted(ps)} for tid, ps in sorted(parts.items()) if ps]


def _hb_error(code: int, message: str | None = None) -> dict:
    return {"error_code": code, "error_message": message, "member_id": None, "member_epoch": 0,
            "heartbeat_interval_ms": 0, "assignment": None}


class _Refused(Exception):
    def __init__(self, code: int, message: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message


def metadata_hash(meta: dict) -> int:
    """A signed 64-bit hash of the subscribed topics' (name, id, partitions):
    changes when a topic is created, deleted or grows. (Kafka's hash covers
    racks too, with another function: the value is odradek's own.)"""
    h = hashlib.blake2b(digest_size=8)
    for name, (tid, n) in sorted(meta.items()):
        h.update(name.encode() + b"\0" + bytes(tid) + n.to_bytes(4, "big"))
    v = int.from_bytes(h.digest(), "big")
    return v - (1 << 64) if v >= 1 << 63 else v


def simple_assign(members: dict[str, ShareMember], current: dict[str, dict], meta: dict) -> dict[str, dict]:
    """Kafka's simple share assignor: ``member id -> {topic id: frozenset}``.
    ``current``: each member's previous target; ``meta``: name -> (id, partitions)."""
    ordered = sorted(members)
    subscribed: dict[str, list[tuple[bytes, int]]] = {}
    topic_members: dict[bytes, list[str]] = {}
    for mid in ordered:
        parts = []
        for name in sorted(members[mid].subscribed_topic_names):
            if name in meta:
                tid, n = meta[name]
                parts.extend((tid, p) for p in range(n))
                topic_members.setdefault(tid, []).append(mid)
        if parts:
            subscribed[mid] = parts
    held: set[tuple[bytes, int]] = set()
    for mid, parts in current.items():
        if mid in members:
            held.update((tid, p) for tid, ps in parts.items() for p in ps)
    new: dict[tuple[bytes, int], list[str]] = {}
    # 1. every member hashed onto one of its partitions
    for mid, parts in subscribed.items():
        tp = parts[abs(java_string_hash(mid)) % len(parts)]
        new.setdefault(tp, []).append(mid)
    # 2. partitions that nobody was hashed to and nobody holds: round-robin per topic
    all_parts: list[tuple[bytes, int]] = []
    for parts in subscribed.values():
        for tp in parts:
            if tp not in all_parts:
                all_parts.append(tp)
    free: dict[bytes, list[tuple[bytes, int]]] = {}
    for tp in all_parts:
        if tp not in new and tp not in held:
            free.setdefault(tp[0], []).append(tp)
    for tid, tps in free.items():
        mids = topic_members[tid]
        for i, tp in enumerate(tps):
            new.setdefault(tp, []).append(mids[i % len(mids)])
    # 3. what each member held of the topics it still subscribes to, and the new
    out: dict[str, dict[bytes, set]] = {mid: {} for mid in members}
    for mid, parts in current.items():
        if mid not in members:
            continue
        for tid, ps in parts.items():
            if mid in topic_members.get(tid, ()):
                n = next((n for t, n in meta.values() if t == tid), 0)
                keep = {p for p in ps if p < n}
                if keep:
                    out[mid].setdefault(tid, set()).update(keep)
    for (tid, p), mids in new.items():
        for mid in mids:
            out[mid].setdefault(tid, set()).add(p)
    return {mid: {tid: frozenset(ps) for tid, ps in parts.items() if ps} for mid, parts in out.items()}


class ShareGroups:
    """The share groups of one shard. See the module docstring."""

    group_type = SHARE

    def __init__(self, groups: GroupManager, config: ShareGroupConfig | None = None, topics=None,
                 group_configs=None):
        self.gm = groups
        self.config = config or ShareGroupConfig()
        self.topics = topics if topics is not None else DictTopics()
        self.group_configs = group_configs  # odradek.metadata.group_configs.GroupConfigCache, or None
        self.departures: list[tuple[str, str]] = []  # (group, member) removed since the last drain
        groups.register(self)

    def drain_departures(self) -> list[tuple[str, str]]:
        """Members removed (left, fenced, their group deleted) since the last
        call: the share-partitions release what they hold."""
        out, self.departures = self.departures, []
        return out

    def _setting(self, group_id: str, name: str, default: int) -> int:
        return group_setting(self.group_configs, group_id, name, default)

    def session_timeout_ms(self, group_id: str) -> int:
        return self._setting(group_id, "share.session.timeout.ms", self.config.session_timeout_ms)

    def heartbeat_interval_ms(self, group_id: str) -> int:
        return self._setting(group_id, "share.heartbeat.interval.ms", self.config.heartbeat_interval_ms)

    @property
    def groups(self) -> dict:
        return self.gm.groups

    # -- records ---------------------------------------------------------
    @staticmethod
    def _sg(kind: int, group_id: str, value: dict | None, sub: str | None = None) -> tuple:
        return rec.share_key(kind, group_id, sub), None if value is None else rec.share_value(kind, value)

    def _member_record(self, gid: str, m: ShareMember) -> tuple:
        return self._sg(SG_MEMBER_METADATA, gid, {
            "rack_id": m.rack_id, "client_id": m.client_id, "client_host": m.client_host,
            "subscribed_topic_names": list(m.subscribed_topic_names)}, m.member_id)

    def _current_record(self, gid: str, m: ShareMember) -> tuple:
        return self._sg(SG_CURRENT_ASSIGNMENT, gid, {
            "member_epoch": m.member_epoch, "previous_member_epoch": m.previous_member_epoch,
            "state": m.state, "assigned_partitions": _entries(m.assigned)}, m.member_id)

    def _member_tombstones(self, gid: str, member_id: str) -> list:
        return [self._sg(SG_CURRENT_ASSIGNMENT, gid, None, member_id),
                self._sg(SG_TARGET_MEMBER, gid, None, member_id),
                self._sg(SG_MEMBER_METADATA, gid, None, member_id)]

    def _group_tombstones(self, g: ShareGroup) -> list:
        out = [self._sg(SG_CURRENT_ASSIGNMENT, g.group_id, None, mid) for mid in g.members]
        out += [self._sg(SG_TARGET_MEMBER, g.group_id, None, mid) for mid in g.target]
        out.append(self._sg(SG_TARGET_METADATA, g.group_id, None))
        out += [self._sg(SG_MEMBER_METADATA, g.group_id, None, mid) for mid in g.members]
        out.append(self._sg(SG_METADATA, g.group_id, None))
        return out

    def _metadata_of(self, names) -> dict:
        out = {}
        for name in names:
            found = self.topics.get(name)
            if found is not None and found[1] > 0:
                out[name] = (bytes(found[0]), found[1])
        return out

    # -- ShareGroupHeartbeat --------------------------------------------
    def share_group_heartbeat(self, now: int, *, group_id: str, member_id: str, member_epoch: int,
                              rack_id: str | None = None, subscribed_topic_names: list[str] | None = None,
                              client_id: str = "", client_host: str = "") -> Result:
        """Answers the ShareGroupHeartbeat response fields (without throttle_time_ms)."""
        try:
            self._check_heartbeat(group_id, member_id, member_epoch, rack_id, subscribed_topic_names)
            if member_epoch == LEAVE_GROUP_MEMBER_EPOCH:
                return self._leave(group_id, member_id)
            return self._heartbeat(now, group_id, member_id, member_epoch, rack_id, subscribed_topic_names,
                                   client_id, client_host)
        except _Refused as e:
            return Result(_hb_error(e.code, e.message))

    @staticmethod
    def _check_heartbeat(group_id, member_id, member_epoch, rack_id, names) -> None:
        def invalid(message):
            raise _Refused(errors.INVALID_REQUEST, message)

        if not group_id or not group_id.strip():
            invalid("GroupId can't be empty.")
        if not member_id or not member_id.strip():
            invalid("MemberId can't be empty.")
        if rack_id is not None and not rack_id.strip():
            invalid("RackId can't be empty.")
        if member_epoch == 0:
            if not names:
                invalid("SubscribedTopicNames must be set in first request.")
        elif member_epoch < LEAVE_GROUP_MEMBER_EPOCH:
            invalid("MemberEpoch is invalid.")

    def _share_group(self, group_id: str, create: bool, now: int) -> tuple[ShareGroup, bool]:
        """(the group, whether it is the table's object); raises _Refused."""
        g = self.groups.get(group_id)
        if g is None:
            if not create:
                raise _Refused(errors.GROUP_ID_NOT_FOUND, f"Share group {group_id} not found.")
            return ShareGroup(group_id, now), False
        if g.group_type != SHARE:
            raise _Refused(errors.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a share group.")
        return g, True

    def _leave(self, group_id: str, member_id: str) -> Result:
        g = self.groups.get(group_id)
        if g is None:
            raise _Refused(errors.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
        if g.group_type != SHARE:
            raise _Refused(errors.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a share group.")
        m = g.members.get(member_id)
        if m is None:
            raise _Refused(errors.UNKNOWN_MEMBER_ID, f"Member {member_id} is not a member of group {group_id}.")
        res = Result(records=self._fence(g, [m]))
        res.response = {"error_code": 0, "error_message": None, "member_id": member_id,
                        "member_epoch": LEAVE_GROUP_MEMBER_EPOCH, "heartbeat_interval_ms": 0, "assignment": None}
        res.failure = _hb_error(errors.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
        return res

    def _heartbeat(self, now, group_id, member_id, member_epoch, rack_id, names, client_id, client_host) -> Result:
        cfg = self.config
        g, live = self._share_group(group_id, member_epoch == 0, now)
        res = Result()
        records = res.records
        member = g.members.get(member_id)
        if member is None:
            if member_epoch != 0:
                raise _Refused(errors.UNKNOWN_MEMBER_ID,
                               f"Member {member_id} is not a member of group {group_id}.")
            if len(g.members) >= cfg.max_size:
                raise _Refused(errors.GROUP_MAX_SIZE_REACHED,
                               f"The share group has reached its maximum capacity of {cfg.max_size} members.")
            member = ShareMember(member_id)
            known = False
        else:
            known = True
            if member_epoch > member.member_epoch or (
                    0 < member_epoch < member.member_epoch and member_epoch != member.previous_member_epoch):
                raise _Refused(errors.FENCED_MEMBER_EPOCH,
                               f"The share group member has a mismatched member epoch ({member_epoch}, "
                               f"expected {member.member_epoch}).")

        updated = replace(member, rack_id=rack_id if rack_id is not None else member.rack_id,
                          client_id=client_id, client_host=client_host,
                          subscribed_topic_names=tuple(sorted(set(names))) if names is not None
                          else member.subscribed_topic_names)
        bump = not known or g.group_epoch == 0
        if not known or updated.metadata() != member.metadata():
            records.append(self._member_record(group_id, updated))
        if updated.subscribed_topic_names != member.subscribed_topic_names:
            bump = True
        members_after = dict(g.members)
        members_after[member_id] = updated
        subscribed: set[str] = set()
        for m in members_after.values():
            subscribed.update(m.subscribed_topic_names)
        meta = self._metadata_of(subscribed)
        mhash = metadata_hash(meta)
        if mhash != g.metadata_hash:
            bump = True
        group_epoch = g.group_epoch
        if bump:
            group_epoch += 1
            records.append(self._sg(SG_METADATA, group_id, {"epoch": group_epoch, "metadata_hash": mhash}))

        if group_epoch > g.assignment_epoch:
            targets = simple_assign(members_after, g.target, meta)
            for mid, parts in targets.items():
                if parts != g.target.get(mid):
                    records.append(self._sg(SG_TARGET_MEMBER, group_id,
                                            {"topic_partitions": _entries(parts)}, mid))
            records.append(self._sg(SG_TARGET_METADATA, group_id,
                                    {"assignment_epoch": group_epoch, "assignment_timestamp": now}))
            target_epoch, target = group_epoch, targets[member_id]
        else:
            target_epoch, target = g.assignment_epoch, g.target.get(member_id, {})

        if updated.member_epoch != target_epoch or updated.assigned != target or not known:
            updated = replace(updated, previous_member_epoch=updated.member_epoch, member_epoch=target_epoch,
                              assigned=target)
            records.append(self._current_record(group_id, updated))
        if live:
            timeout = self.session_timeout_ms(group_id)
            g.session_deadlines[member_id] = now + timeout
            self.gm.schedule(g, now + timeout)
        full = member_epoch == 0 or updated.assigned != member.assigned
        res.response = {
            "error_code": 0, "error_message": None, "member_id": member_id,
            "member_epoch": updated.member_epoch, "heartbeat_interval_ms": self.heartbeat_interval_ms(group_id),
            "assignment": {"topic_partitions": _entries(updated.assigned)} if full else None,
        }
        res.failure = _hb_error(errors.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
        return res

    def _fence(self, g: ShareGroup, members: list[ShareMember]) -> list:
        """Records removing ``members`` and bumping the group epoch."""
        out = []
        gone = {m.member_id for m in members}
        for m in members:
            out.extend(self._member_tombstones(g.group_id, m.member_id))
        subscribed: set[str] = set()
        for mid, m in g.members.items():
            if mid not in gone:
                subscribed.update(m.subscribed_topic_names)
        out.append(self._sg(SG_METADATA, g.group_id, {
            "epoch": g.group_epoch + 1, "metadata_hash": metadata_hash(self._metadata_of(subscribed))}))
        return out

    # -- timers ----------------------------------------------------------
    def check(self, g: ShareGroup, now: int, res: Result) -> None:
        expired = []
        for mid, deadline in list(g.session_deadlines.items()):
            if deadline > now:
                continue
            m = g.members.get(mid)
            if m is None:
                del g.session_deadlines[mid]
                continue
            log.info("share group %s: member %s fenced: its session expired", g.group_id, mid)
            expired.append(m)
            g.session_deadlines[mid] = now + FENCE_RETRY_MS
        if expired:
            res.records.extend(self._fence(g, expired))

    def reschedule(self, g: ShareGroup) -> None:
        if g.session_deadlines:
            self.gm.schedule(g, min(g.session_deadlines.values()))

    @staticmethod
    def append_failed(records: list, now: int) -> None:
        """Nothing waits on a share group's records."""

    @staticmethod
    def unload() -> None:
        """No request is ever parked by a share group."""

    # -- replay ----------------------------------------------------------
    @staticmethod
    def decode_value(key: ShareKey, value: bytes | None) -> dict | None:
        return rec.decode_share_value(key.kind, value)

    def replay(self, k: ShareKey, v: dict | None, now: int) -> None:
        g = self.groups.get(k.group)
        if g is None:
            if v is None:
                return
            g = self.groups[k.group] = ShareGroup(k.group, now)
        kind = k.kind
        if kind == SG_METADATA:
            if v is None:
                del self.groups[g.group_id]
                self.departures.append((g.group_id, None))  # the group is gone
            else:
                g.group_epoch = v["epoch"]
                g.metadata_hash = v["metadata_hash"]
        elif kind == SG_MEMBER_METADATA:
            if v is None:
                if g.members.pop(k.sub, None) is not None:
                    self.departures.append((g.group_id, k.sub))
                    if not g.members:
                        g.state_timestamp = now
                g.session_deadlines.pop(k.sub, None)
            else:
                old = g.members.get(k.sub) or ShareMember(k.sub)
                g.members[k.sub] = replace(old, rack_id=v["rack_id"], client_id=v["client_id"],
                                           client_host=v["client_host"],
                                           subscribed_topic_names=tuple(v["subscribed_topic_names"]))
                if k.sub not in g.session_deadlines:
                    timeout = self.session_timeout_ms(g.group_id)
                    g.session_deadlines[k.sub] = now + timeout
                    self.gm.schedule(g, now + timeout)
        elif kind == SG_TARGET_METADATA:
            g.assignment_epoch = 0 if v is None else v["assignment_epoch"]
        elif kind == SG_TARGET_MEMBER:
            if v is None:
                g.target.pop(k.sub, None)
            else:
                g.target[k.sub] = _partitions(v["topic_partitions"])
        elif kind == SG_CURRENT_ASSIGNMENT:
            m = g.members.get(k.sub)
            if v is None:
                if m is not None:
                    g.members[k.sub] = replace(m, member_epoch=LEAVE_GROUP_MEMBER_EPOCH, assigned={})
            else:
                m = m or ShareMember(k.sub)
                g.members[k.sub] = replace(m, member_epoch=v["member_epoch"],
                                           previous_member_epoch=v["previous_member_epoch"], state=v["state"],
                                           assigned=_partitions(v["assigned_partitions"]))

    # -- describing ------------------------------------------------------
    def _described(self, parts: dict) -> list[dict]:
        out = []
        for tid, ps in sorted(parts.items()):
            name = self.topics.name_of(tid)
            if name is not None:
                out.append({"topic_id": tid, "topic_name": name, "partitions": sorted(ps)})
        return out

    def share_group_describe(self, group_ids: list[str]) -> list:
        ops = AUTHORIZED_OPERATIONS_OMITTED  # the API fills them in (odradek.security.checks)
        out = []
        for gid in group_ids:
            base = {"error_code": 0, "error_message": None, "group_id": gid, "group_state": "",
                    "group_epoch": 0, "assignment_epoch": 0, "assignor_name": "", "members": [],
                    "authorized_operations": ops}
            g = self.gm.get(gid)
            if not gid:
                out.append(dict(base, group_id=gid or "", error_code=errors.INVALID_GROUP_ID))
            elif g is None:
                out.append(dict(base, error_code=errors.GROUP_ID_NOT_FOUND, error_message=f"Group {gid} not found."))
            elif g.group_type != SHARE:
                out.append(dict(base, error_code=errors.GROUP_ID_NOT_FOUND,
                                error_message=f"Group {gid} is not a share group."))
            else:
                members = [{
                    "member_id": m.member_id, "rack_id": m.rack_id, "member_epoch": m.member_epoch,
                    "client_id": m.client_id, "client_host": m.client_host,
                    "subscribed_topic_names": list(m.subscribed_topic_names),
                    "assignment": {"topic_partitions": self._described(m.assigned)},
                } for m in g.members.values()]
                out.append(dict(base, group_state=g.state, group_epoch=g.group_epoch,
                                assignment_epoch=g.assignment_epoch, assignor_name=ASSIGNOR_NAME,
                                members=members))
        return out

    def member_assignment(self, group_id: str, member_id: str) -> dict | None:
        """The partitions ``member_id`` of share group ``group_id`` holds, or None."""
        g = self.gm.get(group_id)
        if g is None or g.group_type != SHARE:
            return None
        m = g.members.get(member_id)
        return None if m is None else m.assigned

    # -- share group offsets (Describe/Alter/DeleteShareGroupOffsets) ----
    def offsets_check(self, now: int, group_id: str, mode: str = "describe") -> Result:
        """Whether the offsets of ``group_id`` may be read (``mode``
        "describe") or changed ("alter", "delete"): ``{"error_code",
        "error_message"}``. Changing them needs an empty group;
        AlterShareGroupOffsets creates a missing one (an empty share group,
        its metadata record at epoch 0)."""
        alter = mode != "describe"
        ok = {"error_code": 0, "error_message": None}
        if not group_id:
            return Result({"error_code": errors.INVALID_GROUP_ID, "error_message": "The group id is missing."})
        g = self.groups.get(group_id)
        if g is None:
            if mode == "alter":
                res = Result(dict(ok), records=[self._sg(SG_METADATA, group_id, {"epoch": 0, "metadata_hash": 0})])
                res.failure = {"error_code": errors.COORDINATOR_NOT_AVAILABLE, "error_message": None}
                return res
            return Result({"error_code": errors.GROUP_ID_NOT_FOUND, "error_message": f"Group {group_id} not found."})
        if g.group_type != SHARE:
            return Result({"error_code": errors.GROUP_ID_NOT_FOUND,
                           "error_message": f"Group {group_id} is not a share group."})
        if alter and g.members:
            return Result({"error_code": errors.NON_EMPTY_GROUP, "error_message": "The group is not empty."})
        return Result(dict(ok))

    # -- other APIs on a share group ------------------------------------
    @staticmethod
    def leave_group(now: int, *, group_id: str, members: list) -> Result:
        return Result({"error_code": errors.GROUP_ID_NOT_FOUND, "members": []})

    # -- what other components ask about a share group ------------------
    @staticmethod
    def is_empty(g: ShareGroup) -> bool:
        return not g.members

    @staticmethod
    def convertible(g: ShareGroup, to: str) -> bool:
        """Another group type never takes over a share group's id."""
        return False

    @staticmethod
    def expires(g: ShareGroup) -> bool:
        """An empty share group stays until it is deleted (DeleteGroups)."""
        return False

    def conversion_records(self, g: ShareGroup) -> list:
        return self._group_tombstones(g)

    def delete_records(self, g: ShareGroup) -> list:
        return self._group_tombstones(g)

    @staticmethod
    def validate_offset_commit(g, now, generation, member_id, instance_id, version) -> int:
        return errors.GROUP_ID_NOT_FOUND

    @staticmethod
    def validate_offset_fetch(g, member_id, member_epoch) -> int:
        return errors.GROUP_ID_NOT_FOUND

    @staticmethod
    def offset_delete_guard(g) -> tuple[int, set[str]]:
        return errors.GROUP_ID_NOT_FOUND, set()

    @staticmethod
    def expiry_rule(g):
        return None

    # -- inspection ------------------------------------------------------
    @staticmethod
    def durable_view(g: ShareGroup) -> dict:
        return {"type": SHARE, "state": g.state, "group_epoch": g.group_epoch, "metadata_hash": g.metadata_hash,
                "assignment_epoch": g.assignment_epoch, "members": dict(sorted(g.members.items())),
                "target": dict(sorted(g.target.items()))}


__all__ = ["ShareGroup", "ShareGroups", "ShareMember", "simple_assign", "SHARE"]
