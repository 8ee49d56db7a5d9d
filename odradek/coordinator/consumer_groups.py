"""KIP-848 consumer groups (ConsumerGroupHeartbeat, ConsumerGroupDescribe).

Theory of operation
-------------------
:class:`ConsumerGroups` is the consumer group type of a shard's
:class:`~odradek.coordinator.group_manager.GroupManager`, a sibling of the
classic groups (``classic_groups.py``) in the same table: a group id is
either classic or consumer. The same rules hold: every operation takes
``now`` and returns a :class:`~odradek.coordinator.runtime.Result`; ``replay``
is the only code that changes durable state. For consumer groups that is
all of it: an operation reads the group as the records left it, computes the
records of its change, and answers; the change happens when the runtime
replays those records. Only deadlines (member sessions, revocation
deadlines, classic members' join and sync timeouts) and the time of the last
regex resolution are runtime state.

Records (``__consumer_offsets``, key versions as Kafka numbers them):
3 group epoch, 4 metadata of the subscribed topics, 5 a member's
subscription, 6 the target assignment's epoch, 7 a member's target
partitions, 8 a member's current assignment (epochs, state, owned
partitions, partitions to revoke), 16 the topics a regex matched.

The protocol, one ConsumerGroupHeartbeat at a time:

1. The member joins with epoch 0 (a new member, or a static member taking
   over its instance id after leaving with epoch -2), or heartbeats with its
   epoch, which must be the current one, or the previous one when it owns
   no partition outside its assignment (the answer that bumped it was lost);
   else FENCED_MEMBER_EPOCH.
2. A new or changed subscription, a changed set of subscribed topics or
   partitions, a new regex, or a regex matching other topics bumps the
   group epoch.
3. When the group epoch is ahead of the target assignment's, the server
   assignor (the one most members ask for, else the first configured:
   ``uniform``) computes a new target for every member.
4. The member reconciles toward its target. It keeps what stays its own,
   and first gives up what goes to others: until its heartbeat no longer
   lists those partitions it stays at its epoch (UNREVOKED_PARTITIONS), and
   is fenced if that takes longer than its rebalance timeout. Then it moves
   to the target epoch and gets the new partitions that are free; a
   partition still owned (or being revoked) by another member is given only
   once released (UNRELEASED_PARTITIONS). So no partition is ever owned by
   two members.
5. The answer carries the member's epoch, the heartbeat interval and, when
   it changed or the member sent its full state, its assignment.

Members leave with epoch -1 (removed at once, group epoch bumped) or, if
static, -2 (kept with their partitions until their session expires or the
instance rejoins). A member whose session expires is removed the same way.

An empty classic or consumer group is converted to the other (its records
tombstoned; its offsets, which the offsets component keeps, stay). Groups
with members migrate online, as in Kafka 4 (``group.consumer.migration.policy``,
bidirectional by default):

- Upgrade: a ConsumerGroupHeartbeat joining a classic group of consumers
  turns it into a consumer group at once (``_upgrade``). Every classic member
  stays, at the classic generation as its epoch, with its subscription and
  the partitions it was given, as a *classic member* (``ConsumerMember.classic``:
  its session timeout and protocols, kept in the member record).
- Classic members are served JoinGroup, SyncGroup, Heartbeat and LeaveGroup
  by this component. Their JoinGroup runs the same reconciliation as a
  heartbeat, with the partitions their subscription says they own, and is
  answered at once: generation = member epoch, no leader, so SyncGroup
  answers their assignment. Heartbeat answers REBALANCE_IN_PROGRESS while
  there is something to reconcile, which makes them join again.
- Downgrade: when the last consumer-protocol member leaves and classic
  members remain, the group becomes a classic group (``_downgrade``) at the
  group epoch as generation, each member given its target assignment; the
  classic group then rebalances.

Any other group type with members refuses a ConsumerGroupHeartbeat
(GROUP_ID_NOT_FOUND). LeaveGroup removes members by member id (classic
members) or by instance id (as the admin client does).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable

from odradek.coordinator import records as rec
from odradek.coordinator.assignors import ASSIGNORS, MemberSpec
from odradek.coordinator.classic_groups import ClassicGroup, ClassicMember, join_error, sync_error
from odradek.coordinator.config import ConsumerGroupConfig, group_setting
from odradek.coordinator.records import (
    CG_CURRENT_ASSIGNMENT,
    CG_MEMBER_METADATA,
    CG_METADATA,
    CG_PARTITION_METADATA,
    CG_REGEX,
    CG_TARGET_MEMBER,
    CG_TARGET_METADATA,
    ConsumerKey,
)
from odradek.coordinator.group_manager import AUTHORIZED_OPERATIONS_OMITTED, CLASSIC, CONSUMER, EMPTY, GroupManager
from odradek.coordinator.runtime import Result
from odradek.coordinator.topic_regex import InvalidTopicRegex, compile_topic_regex, matching_topics
from odradek.protocol import errors
from odradek.protocol.consumer_protocol import (decode_assignment, decode_subscription, encode_assignment,
                                                subscription_version)

log = logging.getLogger("odradek.groups")

# Member states (ConsumerGroupCurrentMemberAssignment.State).
MEMBER_STABLE = 0
UNREVOKED_PARTITIONS = 1
UNRELEASED_PARTITIONS = 2
MEMBER_UNKNOWN = 127

# Group states, as ListGroups and ConsumerGroupDescribe spell them.
ASSIGNING = "Assigning"
RECONCILING = "Reconciling"
CONSUMER_STABLE = "Stable"

LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2

FENCE_RETRY_MS = 1000

Partitions = dict  # topic id (16 bytes) -> frozenset of partition indexes, never empty


class DictTopics:
    """A topic view over a dict ``name -> (topic id, partitions)`` (tests, tools)."""

    def __init__(self, topics: dict[str, tuple[bytes, int]] | None = None):
        self.topics = dict(topics or {})

    def get(self, name: str) -> tuple[bytes, int] | None:
        return self.topics.get(name)

    def names(self):
        return list(self.topics)

    def name_of(self, topic_id: bytes) -> str | None:
        for name, (tid, _) in self.topics.items():
            if tid == topic_id:
                return name
        return None


@dataclass(frozen=True)
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple = ()
    subscribed_topic_regex: str | None = None
    rebalance_timeout_ms: int = -1
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: int = MEMBER_STABLE
    assigned: dict = field(default_factory=dict)  # Partitions
    pending_revocation: dict = field(default_factory=dict)  # Partitions
    # A member that speaks the classic protocol (JoinGroup, SyncGroup, Heartbeat):
    # (session timeout ms, ((protocol name, metadata), ...) as its last JoinGroup
    # listed them); None for a ConsumerGroupHeartbeat member.
    classic: tuple | None = None

    @property
    def regex(self) -> str | None:
        return self.subscribed_topic_regex or None

    def metadata(self) -> tuple:
        return (self.instance_id, self.rack_id, self.client_id, self.client_host,
                self.subscribed_topic_names, self.subscribed_topic_regex, self.rebalance_timeout_ms,
                self.server_assignor, self.classic)

    def assignment_state(self) -> tuple:
        return (self.member_epoch, self.previous_member_epoch, self.state, self.assigned,
                self.pending_revocation)

    def reconciled_to(self, epoch: int) -> bool:
        return self.state == MEMBER_STABLE and self.member_epoch == epoch

    def owned(self):
        for parts in (self.assigned, self.pending_revocation):
            for tid, ps in parts.items():
                for p in ps:
                    yield tid, p


class ConsumerGroup:
    """One consumer group as its records describe it, plus runtime deadlines."""

    protocol_type = "consumer"
    group_type = CONSUMER

    def __init__(self, group_id: str, now: int):
        self.group_id = group_id
        self.group_epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, ConsumerMember] = {}
        self.static_members: dict[str, str] = {}  # instance id -> member id
        self.subscription_metadata: dict[str, tuple[bytes, int]] = {}  # name -> (id, partitions)
        self.target: dict[str, dict] = {}  # member id -> Partitions
        self.partition_epochs: dict[tuple[bytes, int], int] = {}  # owned partition -> owner's epoch
        self.resolved_regexes: dict[str, frozenset] = {}
        self.topic_refs: Counter = Counter()  # subscribed name -> members naming it
        self.regex_refs: Counter = Counter()  # regex -> members subscribing with it
        self.state_timestamp = now
        # runtime only
        self.session_deadlines: dict[str, int] = {}
        self.rebalance_deadlines: dict[str, tuple[int, int]] = {}  # member id -> (deadline, epoch)
        # Classic members: told to join again, they must within their rebalance
        # timeout; having joined, they must sync within it (Kafka 4's join and
        # sync timeouts).
        self.join_deadlines: dict[str, int] = {}
        self.sync_deadlines: dict[str, int] = {}
        self.regex_resolved_at = 0
        self.next_check: int | None = None

    @property
    def state(self) -> str:
        if not self.members:
            return EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ASSIGNING
        for m in self.members.values():
            if not m.reconciled_to(self.assignment_epoch):
                return RECONCILING
        return CONSUMER_STABLE

    def subscribed_topics(self) -> set[str]:
        out = {n for n, c in self.topic_refs.items() if c > 0}
        for regex, c in self.regex_refs.items():
            if c > 0:
                out.update(self.resolved_regexes.get(regex, ()))
        return out

    def static_member(self, instance_id: str) -> ConsumerMember | None:
        mid = self.static_members.get(instance_id)
        return self.members.get(mid) if mid is not None else None


# -- helpers -------------------------------------------------------------------

def _partitions(entries) -> dict:
    """Partitions from ``[{"topic_id", "partitions"}]`` (merging repeated topics)."""
    out: dict[bytes, set] = {}
    for e in entries or ():
        if e["partitions"]:
            out.setdefault(bytes(e["topic_id"]), set()).update(e["partitions"])
    return {tid: frozenset(ps) for tid, ps in out.items() if ps}


def _entries(parts: dict) -> list[dict]:
    return [{"topic_id": tid, "partitions": sorted(ps)} for tid, ps in sorted(parts.items()) if ps]


def _freeze(parts: dict) -> dict:
    return {tid: frozenset(ps) for tid, ps in parts.items() if ps}


def _hb_error(code: int, message: str | None = None) -> dict:
    return {"error_code": code, "error_message": message, "member_id": None, "member_epoch": 0,
            "heartbeat_interval_ms": 0, "assignment": None}


def _classic_of(value: dict | None) -> tuple | None:
    """ClassicMemberMetadata as ConsumerMember.classic (absent: the decoder's empty default)."""
    if not value or not value["supported_protocols"]:
        return None
    return value["session_timeout_ms"], tuple((p["name"], bytes(p["metadata"])) for p in value["supported_protocols"])


class _Refused(Exception):
    def __init__(self, code: int, message: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message


def _owns_any(owned: dict | None, parts: dict) -> bool:
    """Whether the member still owns any of ``parts``; unknown (None) counts as yes."""
    if owned is None:
        return True
    return any(owned.get(tid, frozenset()) & ps for tid, ps in parts.items())


def _subset(owned: dict | None, parts: dict) -> bool:
    if owned is None:
        return False
    return all(ps <= parts.get(tid, frozenset()) for tid, ps in owned.items())


def _next_assignment(m: ConsumerMember, epoch: int, target_epoch: int, target: dict,
                     partition_epoch: Callable[[bytes, int], int], owned: dict | None) -> ConsumerMember:
    """The member's next step toward ``target``: revoke first, then take what is free."""
    keep: dict = {}
    revoke: dict = {}
    gain: dict = {}
    unreleased = False
    for tid in set(target) | set(m.assigned):
        want = target.get(tid, frozenset())
        have = m.assigned.get(tid, frozenset())
        if have & want:
            keep[tid] = have & want
        if have - want:
            revoke[tid] = have - want
        free = set()
        for p in want - have:
            if partition_epoch(tid, p) == -1:
                free.add(p)
            else:
                unreleased = True
        if free:
            gain[tid] = frozenset(free)
    if revoke and _owns_any(owned, revoke):
        return replace(m, state=UNREVOKED_PARTITIONS, previous_member_epoch=m.member_epoch,
                       member_epoch=epoch, assigned=keep, pending_revocation=revoke)
    assigned = dict(keep)
    for tid, ps in gain.items():
        assigned[tid] = assigned.get(tid, frozenset()) | ps
    return replace(m, state=UNRELEASED_PARTITIONS if unreleased else MEMBER_STABLE,
                   previous_member_epoch=m.member_epoch, member_epoch=target_epoch,
                   assigned=assigned, pending_revocation={})


def reconcile(m: ConsumerMember, target_epoch: int, target: dict,
              partition_epoch: Callable[[bytes, int], int], owned: dict | None) -> ConsumerMember:
    """Move ``m`` toward its target assignment (raises _Refused to fence it)."""
    if m.state == MEMBER_STABLE:
        if m.member_epoch != target_epoch:
            return _next_assignment(m, m.member_epoch, target_epoch, target, partition_epoch, owned)
        return m
    if m.state == UNREVOKED_PARTITIONS:
        if _owns_any(owned, m.pending_revocation):
            return m
        return _next_assignment(m, m.member_epoch + 1, target_epoch, target, partition_epoch, owned)
    if m.state == UNRELEASED_PARTITIONS:
        return _next_assignment(m, m.member_epoch, target_epoch, target, partition_epoch, owned)
    if owned is None or owned:
        raise _Refused(errors.FENCED_MEMBER_EPOCH,
                       "The member is in an unknown state; it must give up its partitions and rejoin.")
    return _next_assignment(m, target_epoch, target_epoch, target, partition_epoch, owned)


class ConsumerGroups:
    """The KIP-848 consumer groups of one shard. See the module docstring."""

    group_type = CONSUMER

    def __init__(self, groups: GroupManager, config: ConsumerGroupConfig | None = None, topics=None,
                 group_configs=None):
        self.gm = groups
        self.config = config or ConsumerGroupConfig()
        self.topics = topics if topics is not None else DictTopics()
        self.group_configs = group_configs  # odradek.metadata.group_configs.GroupConfigCache, or None
        groups.register(self)

    def _setting(self, group_id: str, name: str, default: int) -> int:
        return group_setting(self.group_configs, group_id, name, default)

    def session_timeout_ms(self, group_id: str) -> int:
        return self._setting(group_id, "consumer.session.timeout.ms", self.config.session_timeout_ms)

    def member_session_ms(self, group_id: str, m: ConsumerMember) -> int:
        """A classic member's session is its own (from its JoinGroup), as Kafka."""
        return m.classic[0] if m.classic is not None else self.session_timeout_ms(group_id)

    def heartbeat_interval_ms(self, group_id: str) -> int:
        return self._setting(group_id, "consumer.heartbeat.interval.ms", self.config.heartbeat_interval_ms)

    @property
    def groups(self) -> dict:
        return self.gm.groups

    def _schedule(self, g: ConsumerGroup, when: int) -> None:
        self.gm.schedule(g, when)

    # -- records ---------------------------------------------------------
    @staticmethod
    def _cg(kind: int, group_id: str, value: dict | None, sub: str | None = None) -> tuple:
        return rec.consumer_key(kind, group_id, sub), None if value is None else rec.consumer_value(kind, value)

    def _member_record(self, gid: str, m: ConsumerMember) -> tuple:
        value = {
            "instance_id": m.instance_id, "rack_id": m.rack_id, "client_id": m.client_id,
            "client_host": m.client_host, "subscribed_topic_names": list(m.subscribed_topic_names),
            "subscribed_topic_regex": m.subscribed_topic_regex,
            "rebalance_timeout_ms": m.rebalance_timeout_ms, "server_assignor": m.server_assignor,
        }
        # A tagged field whose absence Kafka reads as an empty struct (a classic member with
        # no protocols), so a consumer-protocol member's is written null, as Kafka writes it.
        value["classic_member_metadata"] = None if m.classic is None else {
            "session_timeout_ms": m.classic[0],
            "supported_protocols": [{"name": n, "metadata": md} for n, md in m.classic[1]]}
        return self._cg(CG_MEMBER_METADATA, gid, value, m.member_id)

    def _target_record(self, gid: str, member_id: str, parts: dict) -> tuple:
        return self._cg(CG_TARGET_MEMBER, gid, {"topic_partitions": _entries(parts)}, member_id)

    def _current_record(self, gid: str, m: ConsumerMember) -> tuple:
        return self._cg(CG_CURRENT_ASSIGNMENT, gid, {
            "member_epoch": m.member_epoch, "previous_member_epoch": m.previous_member_epoch,
            "state": m.state, "assigned_partitions": _entries(m.assigned),
            "partitions_pending_revocation": _entries(m.pending_revocation),
        }, m.member_id)

    def _metadata_record(self, gid: str, meta: dict) -> tuple:
        return self._cg(CG_PARTITION_METADATA, gid, {"topics": [
            {"topic_id": tid, "topic_name": name, "num_partitions": n, "partition_metadata": []}
            for name, (tid, n) in sorted(meta.items())]})

    def _member_tombstones(self, gid: str, member_id: str) -> list:
        return [self._cg(CG_CURRENT_ASSIGNMENT, gid, None, member_id),
                self._cg(CG_TARGET_MEMBER, gid, None, member_id),
                self._cg(CG_MEMBER_METADATA, gid, None, member_id)]

    def _consumer_group_tombstones(self, g: ConsumerGroup) -> list:
        out = [self._cg(CG_CURRENT_ASSIGNMENT, g.group_id, None, mid) for mid in g.members]
        out += [self._cg(CG_TARGET_MEMBER, g.group_id, None, mid) for mid in g.members]
        out.append(self._cg(CG_TARGET_METADATA, g.group_id, None))
        out += [self._cg(CG_MEMBER_METADATA, g.group_id, None, mid) for mid in g.members]
        out += [self._cg(CG_REGEX, g.group_id, None, regex) for regex in sorted(g.resolved_regexes)]
        out.append(self._cg(CG_PARTITION_METADATA, g.group_id, None))
        out.append(self._cg(CG_METADATA, g.group_id, None))
        return out

    # -- topics ----------------------------------------------------------
    def _resolve_regex(self, regex: str) -> frozenset:
        # Every topic, internal ones included, as Kafka's TopicRegexResolver.
        return matching_topics(regex, self.topics.names())

    def _metadata_of(self, names) -> dict:
        out = {}
        for name in names:
            found = self.topics.get(name)
            if found is not None and found[1] > 0:
                out[name] = (bytes(found[0]), found[1])
        return out

    @staticmethod
    def _member_topics(m: ConsumerMember, resolved: dict) -> set[str]:
        out = set(m.subscribed_topic_names)
        if m.regex:
            out.update(resolved.get(m.regex, ()))
        return out

    def _preferred_assignor(self, members) -> str:
        votes = Counter(m.server_assignor for m in members if m.server_assignor in self.config.assignors)
        if votes:
            return max(sorted(votes), key=votes.__getitem__)
        return self.config.assignors[0]

    def _compute_target(self, members: dict[str, ConsumerMember], previous: dict[str, dict],
                        meta: dict, resolved: dict) -> dict[str, dict]:
        ids = {tid: n for tid, n in meta.values()}
        names = {tid: name for name, (tid, _) in meta.items()}
        specs = {}
        for mid, m in members.items():
            subscribed = {meta[n][0] for n in self._member_topics(m, resolved) if n in meta}
            specs[mid] = MemberSpec(subscribed, m.instance_id,
                                    {tid: set(ps) for tid, ps in previous.get(mid, {}).items()})
        assign = ASSIGNORS[self._preferred_assignor(members.values())]
        out = assign(specs, ids, names)
        return {mid: _freeze(out.get(mid, {})) for mid in members}

    # -- ConsumerGroupHeartbeat -----------------------------------------
    def _check_heartbeat(self, group_id, member_id, member_epoch, instance_id, rack_id,
                         rebalance_timeout_ms, names, regex, assignor, owned, version) -> None:
        def invalid(message):
            raise _Refused(errors.INVALID_REQUEST, message)

        if version >= 1 and not member_id:
            invalid("MemberId can't be empty.")
        if not group_id:
            invalid("GroupId can't be empty.")
        if instance_id is not None and not instance_id.strip():
            invalid("InstanceId can't be empty.")
        if rack_id is not None and not rack_id.strip():
            invalid("RackId can't be empty.")
        if member_epoch == 0:
            if rebalance_timeout_ms == -1:
                invalid("RebalanceTimeoutMs must be provided in first request.")
            if owned is None or owned:
                invalid("TopicPartitions must be empty when (re-)joining.")
            if names is None and regex is None:
                invalid("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null "
                        "when (re-)joining.")
        elif member_epoch > 0 or member_epoch == LEAVE_GROUP_MEMBER_EPOCH:
            if not member_id:
                invalid("MemberId can't be empty.")
        elif member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            if not member_id:
                invalid("MemberId can't be empty.")
            if instance_id is None:
                invalid("InstanceId can't be null.")
        else:
            invalid("MemberEpoch is invalid.")
        if assignor is not None and assignor not in self.config.assignors:
            raise _Refused(errors.UNSUPPORTED_ASSIGNOR,
                           f"ServerAssignor {assignor} is not supported. Supported assignors: "
                           f"{', '.join(self.config.assignors)}.")
        if regex:
            try:
                compile_topic_regex(regex)
            except InvalidTopicRegex as e:
                raise _Refused(errors.INVALID_REGULAR_EXPRESSION,
                               f"SubscribedTopicRegex `{regex}` is not a valid regular expression: "
                               f"{e.description}.")

    @staticmethod
    def _check_epoch(m: ConsumerMember, epoch: int, owned: dict | None) -> None:
        if epoch > m.member_epoch:
            raise _Refused(errors.FENCED_MEMBER_EPOCH,
                           f"The member's epoch ({epoch}) is ahead of the coordinator's "
                           f"({m.member_epoch}); it must give up its partitions and rejoin.")
        if epoch < m.member_epoch and (epoch != m.previous_member_epoch or not _subset(owned, m.assigned)):
            raise _Refused(errors.FENCED_MEMBER_EPOCH,
                           f"The member's epoch ({epoch}) is behind the coordinator's "
                           f"({m.member_epoch}); it must give up its partitions and rejoin.")

    def consumer_group_heartbeat(self, now: int, *, group_id: str, member_id: str, member_epoch: int,
                                 instance_id: str | None = None, rack_id: str | None = None,
                                 rebalance_timeout_ms: int = -1,
                                 subscribed_topic_names: list[str] | None = None,
                                 subscribed_topic_regex: str | None = None,
                                 server_assignor: str | None = None,
                                 topic_partitions: list[dict] | None = None,
                                 client_id: str = "", client_host: str = "", version: int = 1,
                                 topic_filter=None) -> Result:
        """``topic_partitions``: the owned partitions, ``[{"topic_id", "partitions"}]`` or None.
        ``topic_filter``: with ACLs, the topics (of a set of names) the request's
        principal may DESCRIBE; a regex this heartbeat resolves keeps only those,
        as Kafka resolves regexes with the authorizer and the triggering request.
        Answers the ConsumerGroupHeartbeat response fields (without throttle_time_ms)."""
        owned = None if topic_partitions is None else _partitions(topic_partitions)
        try:
            self._check_heartbeat(group_id, member_id, member_epoch, instance_id, rack_id,
                                  rebalance_timeout_ms, subscribed_topic_names, subscribed_topic_regex,
                                  server_assignor, topic_partitions, version)
            if member_epoch < 0:
                return self._consumer_leave(now, group_id, member_id, instance_id, member_epoch)
            return self._consumer_heartbeat(
                now, group_id, member_id or str(uuid.uuid4()), member_epoch, instance_id, rack_id,
                rebalance_timeout_ms, subscribed_topic_names, subscribed_topic_regex, server_assignor,
                owned, client_id, client_host, topic_filter)
        except _Refused as e:
            return Result(_hb_error(e.code, e.message))

    def _consumer_heartbeat(self, now, group_id, member_id, member_epoch, instance_id, rack_id,
                            rebalance_timeout_ms, names, regex, assignor, owned, client_id,
                            client_host, topic_filter=None) -> Result:
        cfg = self.config
        res = Result()
        records = res.records
        g = self.groups.get(group_id)
        live = True  # g is the object in the table (else records will create it)
        if g is None:
            if member_epoch != 0:
                raise _Refused(errors.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
            g, live = ConsumerGroup(group_id, now), False
        elif g.group_type != CONSUMER:
            if member_epoch != 0:
                raise _Refused(errors.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
            if self.gm.convertible(g, CONSUMER):
                records.extend(self.gm.conversion_records(g))  # it becomes a consumer group
                g = ConsumerGroup(group_id, now)
            elif g.group_type == CLASSIC:
                g = self._upgrade(g, now, records)  # its members stay, as classic members
            else:
                raise _Refused(errors.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
            live = False
        if len(g.members) >= cfg.max_size and member_id not in g.members:
            raise _Refused(errors.GROUP_MAX_SIZE_REACHED,
                           f"The consumer group has reached its maximum capacity of {cfg.max_size} members.")

        # 1. The member: known, new, or a static member replacing its departed instance.
        replaced: ConsumerMember | None = None
        if instance_id is None:
            member = g.members.get(member_id)
            if member is None:
                if member_epoch != 0:
                    raise _Refused(errors.UNKNOWN_MEMBER_ID,
                                   f"Member {member_id} is not a member of group {group_id}.")
                member = ConsumerMember(member_id)
            self._check_epoch(member, member_epoch, owned)
        else:
            existing = g.static_member(instance_id)
            if member_epoch == 0:
                if existing is None:
                    member = g.members.get(member_id) or ConsumerMember(member_id)
                else:
                    # A classic member's instance id is taken over at once (a static
                    # consumer restarted with the consumer protocol), as Kafka does.
                    if existing.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH and existing.classic is None:
                        raise _Refused(errors.UNRELEASED_INSTANCE_ID,
                                       f"Static member {member_id} with instance id {instance_id} cannot "
                                       f"join the group: the instance id is still owned by member "
                                       f"{existing.member_id}.")
                    replaced = existing
                    member = replace(existing, member_id=member_id, member_epoch=0, previous_member_epoch=0)
                    records.extend(self._member_tombstones(group_id, existing.member_id))
                    records.append(self._member_record(group_id, member))
                    records.append(self._target_record(group_id, member_id,
                                                       g.target.get(existing.member_id, {})))
                    records.append(self._current_record(group_id, member))
            else:
                if existing is None:
                    raise _Refused(errors.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
                if existing.member_id != member_id:
                    raise _Refused(errors.FENCED_INSTANCE_ID,
                                   f"Static member {member_id} with instance id {instance_id} was "
                                   f"fenced by member {existing.member_id}.")
                self._check_epoch(existing, member_epoch, owned)
                member = existing

        updated = replace(
            member,
            instance_id=instance_id if instance_id is not None else member.instance_id,
            rack_id=rack_id if rack_id is not None else member.rack_id,
            rebalance_timeout_ms=rebalance_timeout_ms if rebalance_timeout_ms != -1
            else member.rebalance_timeout_ms,
            server_assignor=assignor if assignor is not None else member.server_assignor,
            subscribed_topic_names=tuple(sorted(set(names))) if names is not None
            else member.subscribed_topic_names,
            subscribed_topic_regex=regex if regex is not None else member.subscribed_topic_regex,
            client_id=client_id, client_host=client_host, classic=None)
        updated = self._converge(g, live, res, member, updated, replaced, now, owned, topic_filter)

        full = member_epoch == 0 or (rebalance_timeout_ms != -1 and owned is not None
                                     and (names is not None or regex is not None))
        res.response = {
            "error_code": 0, "error_message": None, "member_id": member_id,
            "member_epoch": updated.member_epoch, "heartbeat_interval_ms": self.heartbeat_interval_ms(group_id),
            "assignment": {"topic_partitions": _entries(updated.assigned)}
            if full or updated.assigned != member.assigned else None,
        }
        res.failure = _hb_error(errors.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
        return res

    def _converge(self, g: ConsumerGroup, live: bool, res: Result, member: ConsumerMember,
                  updated: ConsumerMember, replaced: ConsumerMember | None, now: int, owned: dict | None,
                  topic_filter=None) -> ConsumerMember:
        """The records of ``member`` becoming ``updated`` (its subscription, the
        group epoch, the target assignment) and of its reconciliation toward its
        target, given the partitions it says it owns; the member as reconciled.
        Served to ConsumerGroupHeartbeat and classic JoinGroup members alike."""
        records = res.records
        group_id = g.group_id
        member_id = updated.member_id
        known = replaced is not None or member.member_id in g.members
        bump = g.group_epoch == 0
        if not known or updated.metadata() != member.metadata():
            records.append(self._member_record(group_id, updated))
        if (updated.subscribed_topic_names, updated.regex) != (member.subscribed_topic_names, member.regex):
            bump = True

        # 2. Subscriptions: regexes, topic metadata, group epoch.
        previous = replaced if replaced is not None else g.members.get(member_id)
        regex_refs = Counter(g.regex_refs)
        topic_refs = Counter(g.topic_refs)
        if previous is not None:
            if previous.regex:
                regex_refs[previous.regex] -= 1
            topic_refs.subtract(previous.subscribed_topic_names)
        if updated.regex:
            regex_refs[updated.regex] += 1
        topic_refs.update(updated.subscribed_topic_names)
        resolved, regex_records, regex_changed = self._refresh_regexes(g, regex_refs, now, live, topic_filter)
        records.extend(regex_records)
        bump |= regex_changed
        subscribed = {n for n, c in topic_refs.items() if c > 0}
        for r, c in regex_refs.items():
            if c > 0:
                subscribed.update(resolved.get(r, ()))
        meta = self._metadata_of(subscribed)
        if meta != g.subscription_metadata:
            records.append(self._metadata_record(group_id, meta))
            bump = True
        group_epoch = g.group_epoch
        if bump:
            group_epoch += 1
            records.append(self._cg(CG_METADATA, group_id, {"epoch": group_epoch}))

        # 3. The target assignment.
        if group_epoch > g.assignment_epoch:
            members_after = dict(g.members)
            if replaced is not None:
                del members_after[replaced.member_id]
            members_after[member_id] = updated
            prev_targets = dict(g.target)
            if replaced is not None:
                prev_targets[member_id] = prev_targets.pop(replaced.member_id, {})
            targets = self._compute_target(members_after, prev_targets, meta, resolved)
            for mid, parts in targets.items():
                if parts != prev_targets.get(mid):
                    records.append(self._target_record(group_id, mid, parts))
            records.append(self._cg(CG_TARGET_METADATA, group_id,
                                    {"assignment_epoch": group_epoch, "assignment_timestamp": now}))
            target_epoch, target = group_epoch, targets[member_id]
        else:
            target_epoch = g.assignment_epoch
            target = g.target.get(member_id)
            if target is None and replaced is not None:
                target = g.target.get(replaced.member_id)
            target = target or {}

        # 4. Reconciliation toward the target.
        if not updated.reconciled_to(target_epoch):
            def partition_epoch(tid, p):
                return g.partition_epochs.get((tid, p), -1)

            reconciled = reconcile(updated, target_epoch, target, partition_epoch, owned)
            if reconciled.assignment_state() != updated.assignment_state():
                # (Its replay arms or clears the revocation deadline.)
                records.append(self._current_record(group_id, reconciled))
            updated = reconciled
        if live:
            session_timeout = self.member_session_ms(group_id, updated)
            g.session_deadlines[member_id] = now + session_timeout
            self._schedule(g, now + session_timeout)
        return updated

    def _refresh_regexes(self, g: ConsumerGroup, regex_refs: Counter, now: int,
                         live: bool, topic_filter=None) -> tuple[dict, list, bool]:
        """Regexes in use resolved (new ones at once, all of them every
        regex_refresh_ms): (resolved map, records, whether a resolution changed)."""
        resolved = dict(g.resolved_regexes)
        out = []
        changed = False
        for regex in sorted(resolved):
            if regex_refs.get(regex, 0) <= 0:
                out.append(self._cg(CG_REGEX, g.group_id, None, regex))
                del resolved[regex]
        in_use = sorted(r for r, c in regex_refs.items() if c > 0)
        refresh_all = now - g.regex_resolved_at >= self.config.regex_refresh_ms
        for regex in in_use:
            if regex in resolved and not refresh_all:
                continue
            topics = self._resolve_regex(regex)
            if topic_filter is not None:
                topics = frozenset(topic_filter(topics))
            if resolved.get(regex) != topics:
                out.append(self._cg(CG_REGEX, g.group_id,
                                    {"topics": sorted(topics), "version": now, "timestamp": now}, regex))
                resolved[regex] = topics
                changed = True
        if in_use and refresh_all and live:
            g.regex_resolved_at = now
        return resolved, out, changed

    # -- online migration (KIP-848): classic members in a consumer group --
    def _upgrade(self, cg, now: int, records: list) -> ConsumerGroup:
        """A classic group with members, as the consumer group it becomes when a
        ConsumerGroupHeartbeat joins it (``group.consumer.migration.policy``
        upgrade or bidirectional): every member stays, at the classic
        generation, with its subscription and the partitions it was given, and
        goes on with JoinGroup, SyncGroup and Heartbeat. ``records`` gets the
        classic group's tombstone and the consumer group's records; the group
        returned is what they describe (not in the table)."""
        gid = cg.group_id
        if self.config.migration_policy not in ("bidirectional", "upgrade"):
            raise _Refused(errors.GROUP_ID_NOT_FOUND,
                           f"Cannot upgrade classic group {gid} to consumer group because the online "
                           f"upgrade is disabled.")
        if cg.protocol_type != ConsumerGroup.protocol_type or not cg.protocol_name:
            raise _Refused(errors.GROUP_ID_NOT_FOUND,
                           f"Cannot upgrade classic group {gid} to consumer group because it is not a "
                           f"consumer group with an assignment.")
        if len(cg.members) > self.config.max_size:
            raise _Refused(errors.GROUP_ID_NOT_FOUND,
                           f"Cannot upgrade classic group {gid} to consumer group because its size "
                           f"exceeds the consumer group maximum size.")
        generation = cg.generation
        g = ConsumerGroup(gid, now)
        g.group_epoch = g.assignment_epoch = generation
        for cm in cg.members.values():
            try:
                sub = decode_subscription(cm.metadata(cg.protocol_name))
                assignment, user_data = decode_assignment(cm.assignment)
            except ValueError as e:
                raise _Refused(errors.GROUP_ID_NOT_FOUND,
                               f"Cannot upgrade classic group {gid} to consumer group because {e}.") from None
            if user_data:
                raise _Refused(errors.GROUP_ID_NOT_FOUND,
                               f"Cannot upgrade classic group {gid} to consumer group because an unsupported "
                               f"custom assignor is in use.")
            assigned = self._partitions_of(assignment)
            m = ConsumerMember(
                cm.member_id, instance_id=cm.instance_id, rack_id=sub.get("rack_id"), client_id=cm.client_id,
                client_host=cm.client_host, subscribed_topic_names=tuple(sorted(set(sub["topics"]))),
                rebalance_timeout_ms=cm.rebalance_timeout, member_epoch=generation,
                previous_member_epoch=generation, assigned=assigned,
                classic=(cm.session_timeout, tuple(cm.protocols)))
            g.members[m.member_id] = m
            g.target[m.member_id] = assigned
            g.topic_refs.update(m.subscribed_topic_names)
            if m.instance_id is not None:
                g.static_members[m.instance_id] = m.member_id
            for tp in m.owned():
                g.partition_epochs[tp] = generation
        g.subscription_metadata = self._metadata_of(g.subscribed_topics())
        records.extend(self.gm.conversion_records(cg))
        records.extend(self._member_record(gid, m) for m in g.members.values())
        records.append(self._metadata_record(gid, g.subscription_metadata))
        records.append(self._cg(CG_METADATA, gid, {"epoch": generation}))
        records.extend(self._target_record(gid, mid, parts) for mid, parts in g.target.items())
        records.append(self._cg(CG_TARGET_METADATA, gid,
                                {"assignment_epoch": generation, "assignment_timestamp": now}))
        records.extend(self._current_record(gid, m) for m in g.members.values())
        log.info("group %s: upgraded from a classic group (generation %d, %d members)",
                 gid, generation, len(g.members))
        return g

    def _downgrade(self, g: ConsumerGroup, rest: list[ConsumerMember], now: int) -> list | None:
        """The records turning ``g`` into a classic group of its classic members
        ``rest`` (the last consumer-protocol member is leaving;
        ``group.consumer.migration.policy`` downgrade or bidirectional), as
        Kafka 4: at the group epoch as generation, with no leader, the protocol
        the members vote for, and each member given its target assignment. The
        classic group rebalances once replayed (``ClassicGroups``)."""
        cg = ClassicGroup(g.group_id, now)
        cg.protocol_type = ConsumerGroup.protocol_type
        cg.generation = g.group_epoch
        for m in rest:
            cg.members[m.member_id] = ClassicMember(
                m.member_id, m.instance_id, m.client_id, m.client_host, m.rebalance_timeout_ms, m.classic[0],
                ConsumerGroup.protocol_type, list(m.classic[1]))
        cg.protocol_name = cg.select_protocol()
        if cg.protocol_name is None:  # no protocol all support: they stay classic members here
            return None
        assignments = {
            m.member_id: encode_assignment(self._names_of(g.target.get(m.member_id, {})),
                                           subscription_version(cg.members[m.member_id].metadata(cg.protocol_name)))
            for m in rest}
        log.info("group %s: downgraded to a classic group (generation %d, %d members)",
                 g.group_id, cg.generation, len(rest))
        return self._consumer_group_tombstones(g) + [
            (rec.group_key(g.group_id), rec.group_value(cg.snapshot(now, assignments)))]

    def _partitions_of(self, by_name: dict[str, list[int]]) -> dict:
        """Partitions by topic id from partitions by topic name (unknown topics dropped)."""
        out = {}
        for name, ps in by_name.items():
            found = self.topics.get(name)
            if found is not None and ps:
                out[bytes(found[0])] = frozenset(ps)
        return out

    def _names_of(self, parts: dict) -> dict[str, list[int]]:
        out = {}
        for tid, ps in parts.items():
            name = self.topics.name_of(tid)
            if name is not None:
                out[name] = sorted(ps)
        return out

    def _classic_member(self, g: ConsumerGroup, member_id: str, instance_id: str | None) -> ConsumerMember:
        """The classic member a SyncGroup or Heartbeat names, or _Refused."""
        if instance_id is not None:
            m = g.static_member(instance_id)
            if m is None:
                raise _Refused(errors.UNKNOWN_MEMBER_ID)
            if m.member_id != member_id:
                raise _Refused(errors.FENCED_INSTANCE_ID)
        m = g.members.get(member_id)
        if m is None or m.classic is None:
            raise _Refused(errors.UNKNOWN_MEMBER_ID)
        return m

    def classic_join(self, now: int, g: ConsumerGroup, *, member_id: str, instance_id: str | None,
                     session_timeout: int, rebalance_timeout: int, protocol_type: str,
                     protocols: list[tuple[str, bytes]], client_id: str = "", client_host: str = "",
                     require_known_member_id: bool = True) -> Result:
        """JoinGroup of a classic member into a consumer group with members (as
        Kafka 4: the member's subscription is read from its first protocol's
        metadata, the partitions it owns from that subscription; it is
        reconciled as a KIP-848 member is, and answered at once, as a follower
        whose generation is its member epoch and whose SyncGroup gets its
        assignment)."""
        def error(code: int, mid: str = member_id) -> Result:
            return Result(join_error(code, mid))

        gid = g.group_id
        if self.config.migration_policy == "disabled":
            return error(errors.INCONSISTENT_GROUP_PROTOCOL)
        new_id = member_id or str(uuid.uuid4())
        known = g.members.get(member_id) is not None or (
            instance_id is not None and g.static_member(instance_id) is not None)
        if len(g.members) >= self.config.max_size and not known:
            return error(errors.GROUP_MAX_SIZE_REACHED, "")
        classic = [m.classic for m in g.members.values() if m.classic is not None]
        names = [n for n, _ in protocols]
        if protocol_type != ConsumerGroup.protocol_type or not protocols or not any(
                all(n in {x for x, _ in c[1]} for c in classic) for n in names):
            return error(errors.INCONSISTENT_GROUP_PROTOCOL)
        if not member_id and instance_id is None and require_known_member_id:
            return error(errors.MEMBER_ID_REQUIRED, new_id)
        try:
            sub = decode_subscription(protocols[0][1])
        except ValueError:
            return error(errors.INCONSISTENT_GROUP_PROTOCOL)
        res = Result()
        replaced = None
        if instance_id is None:
            member = g.members.get(new_id) or ConsumerMember(new_id)
        else:
            existing = g.static_member(instance_id)
            if not member_id and existing is not None and existing.classic is None and all(
                    m.classic is not None for m in g.members.values() if m is not existing):
                # The last consumer-protocol member's instance restarted with the classic
                # protocol: that member goes, so the group turns classic if the policy lets it,
                # and the instance joins again (Kafka converts and joins in one step).
                res = Result(join_error(errors.REBALANCE_IN_PROGRESS))
                res.records = self._fence(g, [existing], now)
                res.failure = join_error(errors.COORDINATOR_NOT_AVAILABLE)
                return res
            if not member_id:
                if existing is None:
                    member = ConsumerMember(new_id)
                else:  # the instance comes back with a new member id: it takes over the old one's place
                    replaced = existing
                    member = replace(existing, member_id=new_id, member_epoch=0, previous_member_epoch=0)
                    res.records.extend(self._member_tombstones(gid, existing.member_id))
                    res.records.append(self._member_record(gid, member))
                    res.records.append(self._target_record(gid, new_id, g.target.get(existing.member_id, {})))
                    res.records.append(self._current_record(gid, member))
            elif existing is None:
                return error(errors.UNKNOWN_MEMBER_ID)
            elif existing.member_id != member_id:
                return error(errors.FENCED_INSTANCE_ID)
            else:
                member = existing
        updated = replace(
            member, instance_id=instance_id, client_id=client_id, client_host=client_host,
            rack_id=sub.get("rack_id") or member.rack_id,
            rebalance_timeout_ms=rebalance_timeout if rebalance_timeout != -1 else member.rebalance_timeout_ms,
            subscribed_topic_names=tuple(sorted(set(sub["topics"]))), subscribed_topic_regex=None,
            classic=(session_timeout, tuple((n, bytes(md)) for n, md in protocols)))
        owned = self._partitions_of(sub.get("owned_partitions") or {})
        updated = self._converge(g, True, res, member, updated, replaced, now, owned)
        g.join_deadlines.pop(new_id, None)
        g.sync_deadlines[new_id] = deadline = now + max(updated.rebalance_timeout_ms, 0)
        self._schedule(g, deadline)
        res.response = {"error_code": 0, "generation_id": updated.member_epoch,
                        "protocol_type": ConsumerGroup.protocol_type,
                        "protocol_name": protocols[0][0], "leader": "", "skip_assignment": False,
                        "member_id": new_id, "members": []}
        res.failure = join_error(errors.COORDINATOR_NOT_AVAILABLE, member_id)
        return res

    def classic_sync(self, now: int, g: ConsumerGroup, *, generation: int, member_id: str,
                     instance_id: str | None, protocol_type: str | None, protocol_name: str | None) -> Result:
        """SyncGroup of a classic member of a consumer group: its assignment (what
        it may own now: not what it is revoking, nor what others still hold)."""
        def error(code: int) -> Result:
            return Result(sync_error(code))

        try:
            m = self._classic_member(g, member_id, instance_id)
        except _Refused as e:
            return error(e.code)
        if generation != m.member_epoch:
            return error(errors.ILLEGAL_GENERATION)
        first = m.classic[1][0] if m.classic[1] else ("", b"")
        if (protocol_type is not None and protocol_type != ConsumerGroup.protocol_type) or (
                protocol_name is not None and protocol_name != first[0]):
            return error(errors.INCONSISTENT_GROUP_PROTOCOL)
        if g.group_epoch > m.member_epoch and m.state != UNREVOKED_PARTITIONS:
            self._must_join(g, m, now)
            return error(errors.REBALANCE_IN_PROGRESS)
        g.sync_deadlines.pop(m.member_id, None)
        self._touch(g, m, now)
        return Result({"error_code": 0, "protocol_type": protocol_type, "protocol_name": protocol_name,
                       "assignment": encode_assignment(self._names_of(m.assigned), subscription_version(first[1]))})

    def classic_heartbeat(self, now: int, g: ConsumerGroup, *, generation: int, member_id: str,
                          instance_id: str | None) -> Result:
        """Heartbeat of a classic member of a consumer group: REBALANCE_IN_PROGRESS
        while it has something to reconcile (a newer target, partitions to
        revoke, or partitions now free to take), which makes it join again.
        A group epoch ahead of its epoch counts as a newer target: a classic
        member's join is what computes it when no consumer-protocol member is
        left to (a member left, and the policy keeps the group)."""
        try:
            m = self._classic_member(g, member_id, instance_id)
        except _Refused as e:
            return Result({"error_code": e.code})
        if generation != m.member_epoch:
            return Result({"error_code": errors.ILLEGAL_GENERATION})
        self._touch(g, m, now)
        if m.member_epoch < g.group_epoch or m.state == UNREVOKED_PARTITIONS:
            self._must_join(g, m, now)
            return Result({"error_code": errors.REBALANCE_IN_PROGRESS})
        if m.state == UNRELEASED_PARTITIONS:
            target = g.target.get(m.member_id, {})
            waiting = any(g.partition_epochs.get((tid, p)) is not None
                          for tid, ps in target.items() for p in ps - m.assigned.get(tid, frozenset()))
            if not waiting:
                self._must_join(g, m, now)
                return Result({"error_code": errors.REBALANCE_IN_PROGRESS})
        return Result({"error_code": 0})

    def _must_join(self, g: ConsumerGroup, m: ConsumerMember, now: int) -> None:
        """A classic member answered REBALANCE_IN_PROGRESS is fenced unless it
        joins within its rebalance timeout, counted from the first such answer."""
        if m.member_id not in g.join_deadlines:
            g.join_deadlines[m.member_id] = deadline = now + max(m.rebalance_timeout_ms, 0)
            self._schedule(g, deadline)

    def _touch(self, g: ConsumerGroup, m: ConsumerMember, now: int) -> None:
        deadline = now + self.member_session_ms(g.group_id, m)
        g.session_deadlines[m.member_id] = deadline
        self._schedule(g, deadline)

    # -- leaving and fencing --------------------------------------------
    def _consumer_leave(self, now, group_id, member_id, instance_id, member_epoch) -> Result:
        g = self.groups.get(group_id)
        if g is None or g.group_type != CONSUMER:
            raise _Refused(errors.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group."
                           if g is not None else f"Group {group_id} not found.")
        response = {"error_code": 0, "error_message": None, "member_id": member_id,
                    "member_epoch": member_epoch, "heartbeat_interval_ms": 0, "assignment": None}
        if instance_id is None:
            m = g.members.get(member_id)
            if m is None:
                raise _Refused(errors.UNKNOWN_MEMBER_ID,
                               f"Member {member_id} is not a member of group {group_id}.")
            res = Result(records=self._fence(g, [m], now))
        else:
            m = g.static_member(instance_id)
            if m is None:
                raise _Refused(errors.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
            if m.member_id != member_id:
                raise _Refused(errors.FENCED_INSTANCE_ID,
                               f"Static member {member_id} with instance id {instance_id} was fenced "
                               f"by member {m.member_id}.")
            if member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                # Gone for now: it keeps its partitions until it comes back or its session ends.
                away = replace(m, member_epoch=LEAVE_GROUP_STATIC_MEMBER_EPOCH, pending_revocation={})
                res = Result(records=[self._current_record(group_id, away)])
            else:
                res = Result(records=self._fence(g, [m], now))
        res.response = response
        res.failure = _hb_error(errors.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
        return res

    def _fence(self, g: ConsumerGroup, members: list[ConsumerMember], now: int) -> list:
        """Records removing ``members`` and bumping the group epoch; or, when only
        classic members would be left, turning the group into a classic one."""
        gone = {m.member_id for m in members}
        rest = [m for mid, m in g.members.items() if mid not in gone]
        if rest and all(m.classic is not None for m in rest) and self.config.migration_policy in (
                "bidirectional", "downgrade") and len(rest) <= self.gm.kinds[CLASSIC].config.max_group_size:
            records = self._downgrade(g, rest, now)
            if records is not None:
                return records
        out = []
        for m in members:
            out.extend(self._member_tombstones(g.group_id, m.member_id))
        regexes = {m.regex for m in rest if m.regex}
        for regex in sorted(g.resolved_regexes):
            if regex not in regexes:
                out.append(self._cg(CG_REGEX, g.group_id, None, regex))
        subscribed = set()
        for m in rest:
            subscribed |= self._member_topics(m, g.resolved_regexes)
        meta = self._metadata_of(subscribed)
        if meta != g.subscription_metadata:
            out.append(self._metadata_record(g.group_id, meta))
        out.append(self._cg(CG_METADATA, g.group_id, {"epoch": g.group_epoch + 1}))
        return out

    # -- timers ----------------------------------------------------------
    def check(self, g: ConsumerGroup, now: int, res: Result) -> None:
        expired: dict[str, ConsumerMember] = {}
        for mid, deadline in list(g.session_deadlines.items()):
            if deadline > now:
                continue
            m = g.members.get(mid)
            if m is None:
                del g.session_deadlines[mid]
                continue
            log.info("group %s: member %s fenced: its session expired", g.group_id, mid)
            expired[mid] = m
            g.session_deadlines[mid] = now + FENCE_RETRY_MS  # in case the fencing is not written
        for mid, (deadline, epoch) in list(g.rebalance_deadlines.items()):
            if deadline > now:
                continue
            del g.rebalance_deadlines[mid]
            m = g.members.get(mid)
            if m is not None and m.member_epoch == epoch and mid not in expired:
                log.info("group %s: member %s fenced: it did not revoke its partitions in %d ms",
                         g.group_id, mid, m.rebalance_timeout_ms)
                expired[mid] = m
        for deadlines, what in ((g.join_deadlines, "join"), (g.sync_deadlines, "sync")):
            for mid, deadline in list(deadlines.items()):
                if deadline > now:
                    continue
                m = g.members.get(mid)
                if m is None:
                    del deadlines[mid]
                    continue
                deadlines[mid] = now + FENCE_RETRY_MS  # in case the fencing is not written
                if mid not in expired:
                    log.info("group %s: classic member %s fenced: it did not %s within its rebalance timeout",
                             g.group_id, mid, what)
                    expired[mid] = m
        if expired:
            res.records.extend(self._fence(g, list(expired.values()), now))

    def reschedule(self, g: ConsumerGroup) -> None:
        times = list(g.session_deadlines.values())
        times.extend(d for d, _ in g.rebalance_deadlines.values())
        times.extend(g.join_deadlines.values())
        times.extend(g.sync_deadlines.values())
        if times:
            self._schedule(g, min(times))

    @staticmethod
    def append_failed(records: list, now: int) -> None:
        """Nothing waits on a consumer group's records: its state is what was written."""

    @staticmethod
    def unload() -> None:
        """No request is ever parked by a consumer group."""

    # -- replay ----------------------------------------------------------
    @staticmethod
    def decode_value(key: ConsumerKey, value: bytes | None) -> dict | None:
        return rec.decode_consumer_value(key.kind, value)

    def replay(self, k: ConsumerKey, v: dict | None, now: int) -> None:
        """Apply a consumer group record (its value decoded)."""
        g = self.groups.get(k.group)
        if g is None:
            if v is None:
                return  # tombstone of a consumer group that is no longer one
            g = self.groups[k.group] = ConsumerGroup(k.group, now)
        kind = k.kind
        if kind == CG_METADATA:
            if v is None:
                self._drop_consumer_group(g, now)
            else:
                g.group_epoch = v["epoch"]
                g.state_timestamp = now
        elif kind == CG_PARTITION_METADATA:
            g.subscription_metadata = {} if v is None else {
                t["topic_name"]: (bytes(t["topic_id"]), t["num_partitions"]) for t in v["topics"]}
        elif kind == CG_MEMBER_METADATA:
            self._replay_member(g, k.sub, v, now)
        elif kind == CG_TARGET_METADATA:
            g.assignment_epoch = 0 if v is None else v["assignment_epoch"]
        elif kind == CG_TARGET_MEMBER:
            if v is None:
                g.target.pop(k.sub, None)
            else:
                g.target[k.sub] = _partitions(v["topic_partitions"])
        elif kind == CG_CURRENT_ASSIGNMENT:
            self._replay_current(g, k.sub, v, now)
        elif kind == CG_REGEX:
            if v is None:
                g.resolved_regexes.pop(k.sub, None)
            else:
                g.resolved_regexes[k.sub] = frozenset(v["topics"])
                g.regex_resolved_at = max(g.regex_resolved_at, v["timestamp"])

    def _drop_consumer_group(self, g: ConsumerGroup, now: int) -> None:
        del self.groups[g.group_id]

    def _replay_member(self, g: ConsumerGroup, member_id: str, v: dict | None, now: int) -> None:
        old = g.members.get(member_id)
        if old is not None:
            if old.regex:
                g.regex_refs[old.regex] -= 1
                if g.regex_refs[old.regex] <= 0:
                    del g.regex_refs[old.regex]
            g.topic_refs.subtract(old.subscribed_topic_names)
            g.topic_refs = +g.topic_refs
            if old.instance_id is not None and g.static_members.get(old.instance_id) == member_id:
                del g.static_members[old.instance_id]
        if v is None:
            if old is None:
                return
            del g.members[member_id]
            for tp in old.owned():
                if g.partition_epochs.get(tp) is not None:
                    del g.partition_epochs[tp]
            for deadlines in (g.session_deadlines, g.rebalance_deadlines, g.join_deadlines, g.sync_deadlines):
                deadlines.pop(member_id, None)
            if not g.members:
                g.state_timestamp = now
            return
        base = old if old is not None else ConsumerMember(member_id)
        m = replace(base, instance_id=v["instance_id"], rack_id=v["rack_id"], client_id=v["client_id"],
                    client_host=v["client_host"],
                    subscribed_topic_names=tuple(v["subscribed_topic_names"]),
                    subscribed_topic_regex=v["subscribed_topic_regex"],
                    rebalance_timeout_ms=v["rebalance_timeout_ms"], server_assignor=v["server_assignor"],
                    classic=_classic_of(v.get("classic_member_metadata")))
        g.members[member_id] = m
        if m.regex:
            g.regex_refs[m.regex] += 1
        g.topic_refs.update(m.subscribed_topic_names)
        if m.instance_id is not None:
            g.static_members[m.instance_id] = member_id
        if member_id not in g.session_deadlines:
            session_timeout = self.member_session_ms(g.group_id, m)
            g.session_deadlines[member_id] = now + session_timeout
            self._schedule(g, now + session_timeout)

    def _replay_current(self, g: ConsumerGroup, member_id: str, v: dict | None, now: int) -> None:
        old = g.members.get(member_id)
        if old is None and v is None:
            return
        if old is None:
            old = g.members[member_id] = ConsumerMember(member_id)
        for tp in old.owned():
            if g.partition_epochs.get(tp) is not None:
                del g.partition_epochs[tp]
        if v is None:
            m = replace(old, member_epoch=LEAVE_GROUP_MEMBER_EPOCH,
                        previous_member_epoch=LEAVE_GROUP_MEMBER_EPOCH, assigned={}, pending_revocation={})
        else:
            m = replace(old, member_epoch=v["member_epoch"], previous_member_epoch=v["previous_member_epoch"],
                        state=v["state"] if v["state"] in (MEMBER_STABLE, UNREVOKED_PARTITIONS,
                                                           UNRELEASED_PARTITIONS) else MEMBER_UNKNOWN,
                        assigned=_partitions(v["assigned_partitions"]),
                        pending_revocation=_partitions(v["partitions_pending_revocation"]))
        for tp in m.owned():
            other = g.partition_epochs.get(tp)
            if other is not None:
                log.warning("group %s: partition %s-%d given to %s while owned at epoch %d",
                            g.group_id, tp[0].hex(), tp[1], member_id, other)
            g.partition_epochs[tp] = m.member_epoch
        g.members[member_id] = m
        if m.state == UNREVOKED_PARTITIONS and m.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            armed = g.rebalance_deadlines.get(member_id)
            if armed is None or armed[1] != m.member_epoch:
                deadline = now + max(m.rebalance_timeout_ms, 0)
                g.rebalance_deadlines[member_id] = (deadline, m.member_epoch)
                self._schedule(g, deadline)
        else:
            g.rebalance_deadlines.pop(member_id, None)

    # -- describing and listing -----------------------------------------
    def _described_partitions(self, parts: dict) -> list[dict]:
        out = []
        for tid, ps in sorted(parts.items()):
            name = self.topics.name_of(tid)
            if name is not None:
                out.append({"topic_id": tid, "topic_name": name, "partitions": sorted(ps)})
        return out

    def consumer_group_describe(self, group_ids: list[str]) -> list[dict]:
        ops = AUTHORIZED_OPERATIONS_OMITTED  # the API fills them in (odradek.security.checks)
        out = []
        for gid in group_ids:
            base = {"error_code": 0, "error_message": None, "group_id": gid, "group_state": "",
                    "group_epoch": 0, "assignment_epoch": 0, "assignor_name": "", "members": [],
                    "authorized_operations": ops}
            g = self.gm.get(gid)
            if g is None:
                out.append(dict(base, error_code=errors.GROUP_ID_NOT_FOUND,
                                error_message=f"Group {gid} not found."))
            elif g.group_type != CONSUMER:
                out.append(dict(base, error_code=errors.GROUP_ID_NOT_FOUND,
                                error_message=f"Group {gid} is not a consumer group."))
            else:
                members = [{
                    "member_id": m.member_id, "instance_id": m.instance_id, "rack_id": m.rack_id,
                    "member_epoch": m.member_epoch, "client_id": m.client_id, "client_host": m.client_host,
                    "subscribed_topic_names": list(m.subscribed_topic_names),
                    "subscribed_topic_regex": m.subscribed_topic_regex,
                    "assignment": {"topic_partitions": self._described_partitions(m.assigned)},
                    "target_assignment": {"topic_partitions": self._described_partitions(
                        g.target.get(m.member_id, {}))},
                    "member_type": 1 if m.classic is None else 0,
                } for m in g.members.values()]
                out.append(dict(base, group_state=g.state, group_epoch=g.group_epoch,
                                assignment_epoch=g.assignment_epoch,
                                assignor_name=self._preferred_assignor(g.members.values()),
                                members=members))
        return out

    # -- LeaveGroup on consumer groups ---------------------------------
    def leave_group(self, now: int, *, group_id: str, members: list[tuple[str, str | None]]) -> Result:
        """LeaveGroup on a consumer group: a classic member leaving, or members
        removed by instance id (as the admin client does); any member named,
        of either protocol, is removed at once, static ones too."""
        g = self.groups[group_id]
        out = []
        leaving: dict[str, ConsumerMember] = {}
        for member_id, instance_id in members:
            code = 0
            if instance_id is None:
                m = g.members.get(member_id)
                if m is None:
                    code = errors.UNKNOWN_MEMBER_ID
                else:
                    leaving[m.member_id] = m
            else:
                m = g.static_member(instance_id)
                if m is None:
                    code = errors.UNKNOWN_MEMBER_ID
                elif member_id and m.member_id != member_id:
                    code = errors.FENCED_INSTANCE_ID
                else:
                    leaving[m.member_id] = m
            out.append({"member_id": member_id, "group_instance_id": instance_id, "error_code": code})
        res = Result({"error_code": 0, "members": out})
        if leaving:
            res.records = self._fence(g, list(leaving.values()), now)
            res.failure = {"error_code": errors.COORDINATOR_NOT_AVAILABLE, "members": []}
        return res

    # -- what other components ask about a consumer group --------------
    @staticmethod
    def is_empty(g: ConsumerGroup) -> bool:
        return not g.members

    @staticmethod
    def convertible(g: ConsumerGroup, to: str) -> bool:
        """An empty consumer group becomes a classic one (not a streams group, as in Kafka)."""
        return not g.members and to != "streams"

    @staticmethod
    def expires(g: ConsumerGroup) -> bool:
        return True

    def conversion_records(self, g: ConsumerGroup) -> list:
        return self._consumer_group_tombstones(g)

    def delete_records(self, g: ConsumerGroup) -> list:
        return self._consumer_group_tombstones(g)

    @staticmethod
    def validate_offset_commit(g: ConsumerGroup, now: int, generation: int, member_id: str,
                               instance_id: str | None, version: int) -> int:
        """A member commits at its current epoch, with OffsetCommit v9+ (a classic
        member with any version, its generation being its epoch); anyone may
        commit to an empty group with epoch -1."""
        if generation < 0 and not g.members:
            return 0
        m = g.members.get(member_id)
        if m is None:
            return errors.UNKNOWN_MEMBER_ID
        if m.classic is not None:
            return 0 if generation == m.member_epoch else errors.ILLEGAL_GENERATION
        if version < 9:
            return errors.UNSUPPORTED_VERSION
        if generation != m.member_epoch:
            return errors.STALE_MEMBER_EPOCH
        return 0

    @staticmethod
    def validate_offset_fetch(g: ConsumerGroup, member_id: str | None, member_epoch: int) -> int:
        m = g.members.get(member_id)
        if m is None:
            return errors.UNKNOWN_MEMBER_ID
        if member_epoch != m.member_epoch:
            return errors.STALE_MEMBER_EPOCH if m.classic is None else errors.ILLEGAL_GENERATION
        return 0

    @staticmethod
    def offset_delete_guard(g: ConsumerGroup) -> tuple[int, set[str]]:
        return 0, g.subscribed_topics() if g.members else set()

    @staticmethod
    def expiry_rule(g: ConsumerGroup):
        """Offsets of topics the group does not subscribe to expire, counting from their commit."""
        return (lambda v: v.commit_timestamp), g.subscribed_topics()

    # -- inspection ------------------------------------------------------
    @staticmethod
    def durable_view(g: ConsumerGroup) -> dict:
        """What the records describe of ``g``: comparable across a replay."""
        return {
            "type": "consumer", "state": g.state, "group_epoch": g.group_epoch,
            "assignment_epoch": g.assignment_epoch, "members": dict(sorted(g.members.items())),
            "target": dict(sorted(g.target.items())), "metadata": g.subscription_metadata,
            "regexes": dict(g.resolved_regexes), "partition_epochs": dict(g.partition_epochs),
        }


__all__ = ["ConsumerGroup", "ConsumerGroups", "ConsumerMember", "DictTopics", "reconcile"]
