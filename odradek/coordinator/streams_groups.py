"""KIP-1071 streams groups (StreamsGroupHeartbeat, StreamsGroupDescribe).

Theory of operation
-------------------
:class:`StreamsGroups` is the streams group type of a shard's
:class:`~odradek.coordinator.group_manager.GroupManager`, a sibling of the
classic, consumer and share groups in the same table. Every operation takes
``now`` and returns a :class:`~odradek.coordinator.runtime.Result`;
``replay`` is the only code that changes durable state; member session
deadlines are runtime state.

Records (``__consumer_offsets``, Kafka's key types and formats): 17 the
group epoch (with a hash of its topics' metadata), 19 a member's metadata
(process, endpoint, topology epoch), 20 the target assignment's epoch, 21 a
member's target tasks, 22 a member's current tasks (with those pending
revocation), 23 the topology.

A task is (subtopology id, partition). The group's topology is the one the
first member sent (epoch 0 with a ``Topology``); each heartbeat the
topology is *configured* against the broker's topics (:func:`configure`):

- every source topic must exist (else status MISSING_SOURCE_TOPICS);
- a repartition topic without a partition count takes the largest count of
  the source topics of the subtopologies writing to it; copartitioned
  source topics must agree and copartitioned repartition topics follow them
  (else INCORRECTLY_PARTITIONED_TOPICS);
- a subtopology has one task per partition of its largest source topic; its
  changelog topics have that many partitions;
- internal topics (repartition and changelog) that do not exist yet are
  returned to the caller, which creates them (the API handler, as Kafka's
  broker does beside its coordinator), and status MISSING_INTERNAL_TOPICS is
  answered meanwhile; one that exists with another partition count is
  INCORRECTLY_PARTITIONED_TOPICS.

While the topology is not ready the target assignment is empty.

One StreamsGroupHeartbeat:

1. The member joins with epoch 0 (its id chosen by the client) and its
   topology, heartbeats with its current epoch (or the previous one, if the
   answer that bumped it was lost; else FENCED_MEMBER_EPOCH), or leaves
   with -1 (-2: a static member leaving for a while, treated as leaving).
2. A new member, changed member metadata (process, rack, client tags,
   topology epoch), a new topology or a change in the topics' metadata
   (created, deleted, more partitions) bumps the group epoch.
3. When the group epoch is ahead of the target assignment's, tasks are
   assigned (a new group's first assignment is empty, and its tasks are
   assigned ``group.streams.initial.rebalance.delay.ms`` later, by the
   timer, heartbeats meanwhile answered ASSIGNMENT_DELAYED, so members
   starting together do not move tasks about) (:func:`assign`): sticky (members keep their active tasks up to
   an even share), the rest to the least loaded member; standby tasks
   (``streams.num.standby.replicas``) of the stateful subtopologies on
   members of other processes.
4. The member reconciles toward its target as KIP-848 consumers do: tasks
   it must give up are revoked first, its epoch unchanged
   (UNREVOKED_TASKS) until it reports them gone; then it moves to the target
   epoch and takes the active tasks no other member still owns; those still
   owned elsewhere follow later (UNRELEASED_TASKS).

A member whose session expires (``streams.session.timeout.ms`` of the group,
else ``group.streams.session.timeout.ms``), or that has not revoked its tasks
within its rebalance timeout (``RebalanceTimeoutMs``, Kafka Streams'
``max.poll.interval.ms``), is removed and the group epoch bumped. Group states: Empty, NotReady (the topology cannot be configured),
Assigning (the target is behind the group epoch), Reconciling (a member is
not at the target yet), Stable.

The topology stays the group's: a member joining with another one (at the
same or a later epoch, even into an empty group) is refused INVALID_REQUEST
("Topology updates are not supported yet.", as Kafka 4.4); the group must be
deleted first.

Group ids and types, as in Kafka: an empty classic group becomes a streams
group when a member joins (its offsets kept), an empty streams group a
classic one at a JoinGroup; otherwise a streams group id is not taken over
by another type, nor does a streams group take over another type's id:
StreamsGroupHeartbeat for another type answers GROUP_ID_NOT_FOUND ("Group g
is not a streams group.").
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace

from odradek.coordinator import records as rec
from odradek.coordinator.config import group_setting
from odradek.coordinator.consumer_groups import DictTopics
from odradek.coordinator.group_manager import AUTHORIZED_OPERATIONS_OMITTED, EMPTY, GroupManager
from odradek.coordinator.records import (
    STG_CURRENT_ASSIGNMENT,
    STG_MEMBER_METADATA,
    STG_METADATA,
    STG_TARGET_MEMBER,
    STG_TARGET_METADATA,
    STG_TOPOLOGY,
    StreamsKey,
)
from odradek.coordinator.runtime import Result
from odradek.coordinator.topic_regex import matching_topics
from odradek.metadata.topics import INTERNAL_TOPICS
from odradek.protocol import errors

log = logging.getLogger("odradek.groups")

STREAMS = "streams"
LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2
FENCE_RETRY_MS = 1000
ASSIGNOR_NAME = "sticky"

# Member states (Kafka's MemberState for streams groups).
MEMBER_STABLE = 0
UNREVOKED_TASKS = 1
UNRELEASED_TASKS = 2
MEMBER_UNKNOWN = 127

# Status codes of StreamsGroupHeartbeatResponse.
STALE_TOPOLOGY = 0
MISSING_SOURCE_TOPICS = 1
INCORRECTLY_PARTITIONED_TOPICS = 2
MISSING_INTERNAL_TOPICS = 3
SHUTDOWN_APPLICATION = 4
ASSIGNMENT_DELAYED = 5

EMPTY_TASKS: dict = {}


@dataclass
class StreamsGroupConfig:
    """Settings of KIP-1071 streams groups (server.properties names)."""

    session_timeout_ms: int = 45000  # group.streams.session.timeout.ms
    heartbeat_interval_ms: int = 5000  # group.streams.heartbeat.interval.ms
    max_size: int = 2**31 - 1  # group.streams.max.size
    num_standby_replicas: int = 0  # group.streams.num.standby.replicas
    initial_rebalance_delay_ms: int = 3000  # group.streams.initial.rebalance.delay.ms
    acceptable_recovery_lag: int = 10000  # answered to members; odradek assigns no warm-up tasks
    task_offset_interval_ms: int = 60000  # answered to members; task offsets are kept for describing

    @classmethod
    def from_broker(cls, config) -> "StreamsGroupConfig":
        d = cls()
        return cls(
            session_timeout_ms=config.get_int("group.streams.session.timeout.ms", d.session_timeout_ms),
            heartbeat_interval_ms=config.get_int("group.streams.heartbeat.interval.ms", d.heartbeat_interval_ms),
            max_size=config.get_int("group.streams.max.size", d.max_size),
            num_standby_replicas=config.get_int("group.streams.num.standby.replicas", d.num_standby_replicas),
            initial_rebalance_delay_ms=config.get_int("group.streams.initial.rebalance.delay.ms",
                                                      d.initial_rebalance_delay_ms),
        )


# -- tasks: {subtopology id: frozenset of partitions} ------------------------

def _tasks(entries) -> dict:
    out: dict[str, set] = {}
    for e in entries or ():
        if e["partitions"]:
            out.setdefault(e["subtopology_id"], set()).update(e["partitions"])
    return {sid: frozenset(ps) for sid, ps in out.items() if ps}


def _task_entries(tasks: dict) -> list[dict]:
    return [{"subtopology_id": sid, "partitions": sorted(ps)} for sid, ps in sorted(tasks.items()) if ps]


def _minus(a: dict, b: dict) -> dict:
    out = {sid: ps - b.get(sid, frozenset()) for sid, ps in a.items()}
    return {sid: ps for sid, ps in out.items() if ps}


def _and(a: dict, b: dict) -> dict:
    out = {sid: ps & b.get(sid, frozenset()) for sid, ps in a.items()}
    return {sid: ps for sid, ps in out.items() if ps}


def _or(a: dict, b: dict) -> dict:
    out = dict(a)
    for sid, ps in b.items():
        out[sid] = out.get(sid, frozenset()) | ps
    return {sid: ps for sid, ps in out.items() if ps}


def _flat(tasks: dict) -> set:
    return {(sid, p) for sid, ps in tasks.items() for p in ps}


def _group(pairs) -> dict:
    out: dict[str, set] = {}
    for sid, p in pairs:
        out.setdefault(sid, set()).add(p)
    return {sid: frozenset(ps) for sid, ps in out.items()}


@dataclass(frozen=True)
class Assignment:
    active: dict = field(default_factory=dict)
    standby: dict = field(default_factory=dict)
    warmup: dict = field(default_factory=dict)

    def minus(self, other: "Assignment") -> "Assignment":
        return Assignment(_minus(self.active, other.active), _minus(self.standby, other.standby),
                          _minus(self.warmup, other.warmup))

    def both(self, other: "Assignment") -> "Assignment":
        return Assignment(_and(self.active, other.active), _and(self.standby, other.standby),
                          _and(self.warmup, other.warmup))

    def __bool__(self) -> bool:
        return bool(self.active or self.standby or self.warmup)

    def entries(self) -> dict:
        return {"active_tasks": _task_entries(self.active), "standby_tasks": _task_entries(self.standby),
                "warmup_tasks": _task_entries(self.warmup)}

    @classmethod
    def of(cls, v: dict, suffix: str = "") -> "Assignment":
        return cls(_tasks(v["active_tasks" + suffix]), _tasks(v["standby_tasks" + suffix]),
                   _tasks(v["warmup_tasks" + suffix]))


NO_TASKS = Assignment()


@dataclass(frozen=True)
class StreamsMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    rebalance_timeout_ms: int = -1
    topology_epoch: int = 0
    process_id: str = ""
    user_endpoint: tuple | None = None  # (host, port)
    client_tags: tuple = ()  # ((key, value), ...)
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: int = MEMBER_STABLE
    assigned: Assignment = NO_TASKS
    pending_revocation: Assignment = NO_TASKS
    # runtime only (not in the records): what the member last said it owns
    task_offsets: tuple = ()
    task_end_offsets: tuple = ()

    def metadata(self) -> tuple:
        return (self.instance_id, self.rack_id, self.client_id, self.client_host, self.rebalance_timeout_ms,
                self.topology_epoch, self.process_id, self.user_endpoint, self.client_tags)

    def assignment_inputs(self) -> tuple:
        """What the assignor looks at: a change bumps the group epoch."""
        return (self.process_id, self.rack_id, self.client_tags, self.topology_epoch)


class StreamsGroup:
    """One streams group as its records describe it, plus session deadlines."""

    protocol_type = "streams"
    group_type = STREAMS

    def __init__(self, group_id: str, now: int, topics=None):
        self.group_id = group_id
        self.topics = topics  # the broker's topics (runtime): the state says whether the topology is ready
        self.group_epoch = 0
        self.metadata_hash = 0
        self.topology: dict | None = None  # the StreamsGroupTopology value
        self.assignment_epoch = 0
        self.members: dict[str, StreamsMember] = {}
        self.target: dict[str, Assignment] = {}
        self.state_timestamp = now
        # runtime only
        self.session_deadlines: dict[str, int] = {}
        self.revocation_deadlines: dict[str, int] = {}  # member id -> when it must have revoked its tasks
        self.next_check: int | None = None

    @property
    def configured(self) -> "Configured | None":
        """The topology configured against the topics as they are now."""
        if self.topology is None or self.topics is None:
            return None
        return configure(self.topology, self.topics)

    @property
    def state(self) -> str:
        if not self.members:
            return EMPTY
        configured = self.configured
        if configured is not None and not configured.ready:
            return "NotReady"
        if self.assignment_epoch < self.group_epoch:
            return "Assigning"
        for m in self.members.values():
            if m.member_epoch != self.assignment_epoch or m.state != MEMBER_STABLE:
                return "Reconciling"
        return "Stable"

    def active_owner(self, task: tuple) -> str | None:
        """The member owning ``task`` as active (assigned or being revoked), if any."""
        sid, p = task
        for mid, m in self.members.items():
            if p in m.assigned.active.get(sid, ()) or p in m.pending_revocation.active.get(sid, ()):
                return mid
        return None


# -- the topology against the broker's topics --------------------------------

@dataclass
class Configured:
    """A topology configured against the topics: its tasks, or why it is not ready."""

    tasks: dict = field(default_factory=dict)  # subtopology id -> number of tasks
    statuses: list = field(default_factory=list)  # [{"status_code", "status_detail"}]
    to_create: list = field(default_factory=list)  # [(name, partitions, replication factor, configs)]
    topics_by_subtopology: dict = field(default_factory=dict)  # subtopology id -> [source topic names]
    referenced: set = field(default_factory=set)  # every topic name the hash covers
    stateful: set = field(default_factory=set)  # subtopologies with changelog topics: they get standby tasks
    internal: dict = field(default_factory=dict)  # internal topic -> its partition count

    @property
    def ready(self) -> bool:
        return not self.statuses


def _configs(infos) -> dict:
    return {kv.get("key", kv.get("Key")): kv.get("value", kv.get("Value")) for kv in infos or ()}


def configure(topology: dict | None, topics) -> Configured:
    """Configure ``topology`` (the StreamsGroupTopology value) against
    ``topics`` (``get(name) -> (topic id, partitions) | None``, ``names()``)."""
    out = Configured()
    if topology is None:
        return out
    subs = topology["subtopologies"]
    missing_source: list[str] = []
    sources: dict[str, list[str]] = {}
    for s in subs:
        names = list(s["source_topics"])
        for pattern in s["source_topic_regex"]:
            # matched in full with RE2 (linear in the name: no pattern stalls the loop)
            matched = sorted(n for n in matching_topics(pattern, topics.names()) if n not in INTERNAL_TOPICS)
            if not matched:
                missing_source.append(pattern)
            names.extend(matched)
        for n in s["source_topics"]:
            if topics.get(n) is None:
                missing_source.append(n)
        sources[s["subtopology_id"]] = names
    out.referenced.update(n for names in sources.values() for n in names)
    repartition: dict[str, dict] = {}
    for s in subs:
        for t in s["repartition_source_topics"]:
            repartition[t["name"]] = t
    out.referenced.update(repartition)
    if missing_source:
        out.statuses.append({"status_code": MISSING_SOURCE_TOPICS,
                             "status_detail": "Source topics " + ", ".join(sorted(set(missing_source)))
                             + " are missing."})
        return out

    def count(name: str) -> int | None:
        found = topics.get(name)
        return found[1] if found is not None else None

    # repartition topics' partition counts: given, else from their writers' sources
    parts: dict[str, int] = {n: t["partitions"] for n, t in repartition.items() if t["partitions"] > 0}
    for _ in range(len(subs) + 1):
        changed = False
        for s in subs:
            counts = [count(n) for n in s["source_topics"]] + [parts.get(t["name"]) for t in
                                                              s["repartition_source_topics"]]
            counts = [c for c in counts if c]
            if not counts:
                continue
            for sink in s["repartition_sink_topics"]:
                if sink in repartition and sink not in parts:
                    parts[sink] = max(counts)
                    changed = True
        if not changed:
            break
    wrong: list[str] = []
    for s in subs:
        for group in s["copartition_groups"]:
            src = [s["source_topics"][i] for i in group["source_topics"] if i < len(s["source_topics"])]
            rep = [s["repartition_source_topics"][i]["name"] for i in group["repartition_source_topics"]
                   if i < len(s["repartition_source_topics"])]
            src_counts = {count(n) for n in src}
            if len(src_counts) > 1:
                wrong.extend(src)
                continue
            want = src_counts.pop() if src_counts else max((parts.get(n, 0) for n in rep), default=0)
            for n in rep:
                if repartition[n]["partitions"] > 0 and repartition[n]["partitions"] != want:
                    wrong.append(n)
                elif want:
                    parts[n] = want
    for n in repartition:
        if n not in parts:
            wrong.append(n)  # no writer tells its size
    for s in subs:
        sid = s["subtopology_id"]
        counts = [count(n) or 0 for n in sources[sid]] + [parts.get(t["name"], 0)
                                                          for t in s["repartition_source_topics"]]
        out.tasks[sid] = max(counts, default=0)
        out.topics_by_subtopology[sid] = sources[sid] + [t["name"] for t in s["repartition_source_topics"]]
    internal: dict[str, tuple] = {}
    for n, t in repartition.items():
        if n in parts:
            internal[n] = (parts[n], t["replication_factor"], _configs(t["topic_configs"]))
    for s in subs:
        for t in s["state_changelog_topics"]:
            internal[t["name"]] = (t["partitions"] or out.tasks[s["subtopology_id"]], t["replication_factor"],
                                   _configs(t["topic_configs"]))
            out.referenced.add(t["name"])
        if s["state_changelog_topics"]:
            out.stateful.add(s["subtopology_id"])
    out.internal = {n: p for n, (p, _, _) in internal.items()}
    missing_internal = []
    for n, (p, rf, cfg) in sorted(internal.items()):
        have = count(n)
        if have is None:
            missing_internal.append(n)
            out.to_create.append((n, p, rf or -1, cfg))
        elif have != p:
            wrong.append(n)
    if wrong:
        out.statuses.append({"status_code": INCORRECTLY_PARTITIONED_TOPICS,
                             "status_detail": "Topics " + ", ".join(sorted(set(wrong)))
                             + " are incorrectly partitioned."})
    if missing_internal:
        out.statuses.append({"status_code": MISSING_INTERNAL_TOPICS,
                             "status_detail": "Internal topics are missing: " + ", ".join(missing_internal)})
    return out


def metadata_hash(names, topics) -> int:
    """A signed 64-bit hash of the (name, id, partitions) of the topics a
    topology refers to: changes when one is created, deleted or grows. (The
    value is odradek's own; Kafka's hash covers racks too.)"""
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(names):
        found = topics.get(name)
        if found is not None:
            h.update(name.encode() + b"\0" + bytes(found[0]) + found[1].to_bytes(4, "big"))
    v = int.from_bytes(h.digest(), "big")
    return v - (1 << 64) if v >= 1 << 63 else v


# -- the assignor --------------------------------------------------------------

def assign(members: dict[str, StreamsMember], previous: dict[str, Assignment], tasks: dict[str, int],
           num_standby: int, stateful: set | None = None) -> dict[str, Assignment]:
    """Active tasks sticky and balanced over the members, then standby tasks
    (``num_standby`` per task of the ``stateful`` subtopologies: those with
    state to keep warm) on members of another process than the active's,
    preferring those that had them."""
    ids = sorted(members)
    out_active: dict[str, set] = {mid: set() for mid in ids}
    out_standby: dict[str, set] = {mid: set() for mid in ids}
    all_tasks = [(sid, p) for sid in sorted(tasks) for p in range(tasks[sid])]
    if not ids:
        return {}
    quota = -(-len(all_tasks) // len(ids))
    owner: dict[tuple, str] = {}
    for mid in ids:
        prev = previous.get(mid)
        if prev is None:
            continue
        for task in sorted(_flat(prev.active)):
            if task in owner or task[0] not in tasks or task[1] >= tasks[task[0]]:
                continue
            if len(out_active[mid]) < quota:
                out_active[mid].add(task)
                owner[task] = mid
    for task in all_tasks:
        if task in owner:
            continue
        mid = min(ids, key=lambda m: (len(out_active[m]), m))
        out_active[mid].add(task)
        owner[task] = mid
    if num_standby > 0:
        had = {mid: _flat(previous[mid].standby) if mid in previous else set() for mid in ids}
        for task in all_tasks:
            if stateful is not None and task[0] not in stateful:
                continue
            active_process = members[owner[task]].process_id
            taken: set[str] = set()
            for _ in range(num_standby):
                candidates = [m for m in ids if members[m].process_id != active_process
                              and members[m].process_id not in taken and task not in out_active[m]]
                if not candidates:
                    break
                mid = min(candidates, key=lambda m: (task not in had[m],
                                                     len(out_standby[m]) + len(out_active[m]), m))
                out_standby[mid].add(task)
                taken.add(members[mid].process_id)
    return {mid: Assignment(_group(out_active[mid]), _group(out_standby[mid])) for mid in ids}


# -- reconciliation ------------------------------------------------------------

def _owns_any(owned: Assignment | None, tasks: Assignment) -> bool:
    if owned is None:
        return True  # unknown: it may still
    return bool(owned.both(tasks))


def _next(g: StreamsGroup, m: StreamsMember, target_epoch: int, target: Assignment,
          owned: Assignment | None) -> StreamsMember:
    keep = m.assigned.both(target)
    revoke = m.assigned.minus(target)
    if revoke and _owns_any(owned, revoke):
        return replace(m, state=UNREVOKED_TASKS, assigned=keep, pending_revocation=revoke)
    gain_active = set()
    unreleased = False
    for task in _flat(target.active) - _flat(keep.active):
        holder = g.active_owner(task)
        if holder is None or holder == m.member_id:
            gain_active.add(task)
        else:
            unreleased = True
    new = Assignment(_or(keep.active, _group(gain_active)), target.standby, target.warmup)
    return replace(m, state=UNRELEASED_TASKS if unreleased else MEMBER_STABLE,
                   previous_member_epoch=m.member_epoch, member_epoch=target_epoch,
                   assigned=new, pending_revocation=NO_TASKS)


def reconcile(g: StreamsGroup, m: StreamsMember, target_epoch: int, target: Assignment,
              owned: Assignment | None) -> StreamsMember:
    """Move ``m`` toward its target: revoke first, then take what is free."""
    if m.state == MEMBER_STABLE:
        if m.member_epoch != target_epoch:
            return _next(g, m, target_epoch, target, owned)
        return m
    if m.state == UNREVOKED_TASKS:
        if _owns_any(owned, m.pending_revocation):
            return m
        return _next(g, replace(m, pending_revocation=NO_TASKS), target_epoch, target, owned)
    return _next(g, m, target_epoch, target, owned)


def _hb_error(code: int, message: str | None = None) -> dict:
    return {"error_code": code, "error_message": message, "member_id": "", "member_epoch": 0,
            "heartbeat_interval_ms": 0, "acceptable_recovery_lag_legacy": 0, "task_offset_interval_ms": 0,
            "acceptable_recovery_lag": -1, "status": [], "active_tasks": None, "standby_tasks": None,
            "warmup_tasks": None, "endpoint_information_epoch": 0, "partitions_by_user_endpoint": None}


class _Refused(Exception):
    def __init__(self, code: int, message: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message


def _topology_value(t: dict) -> dict:
    """The StreamsGroupTopology value of a request's topology."""
    def info(ti):
        return {"name": ti["name"], "partitions": ti["partitions"], "replication_factor": ti["replication_factor"],
                "topic_configs": [{"key": kv["key"], "value": kv["value"]} for kv in ti["topic_configs"] or ()]}
    return {"epoch": t["epoch"], "subtopologies": [{
        "subtopology_id": s["subtopology_id"], "source_topics": list(s["source_topics"] or ()),
        "source_topic_regex": list(s["source_topic_regex"] or ()),
        "state_changelog_topics": [info(ti) for ti in s["state_changelog_topics"] or ()],
        "repartition_sink_topics": list(s["repartition_sink_topics"] or ()),
        "repartition_source_topics": [info(ti) for ti in s["repartition_source_topics"] or ()],
        "copartition_groups": [{"source_topics": list(c["source_topics"]),
                                "source_topic_regex": list(c["source_topic_regex"]),
                                "repartition_source_topics": list(c["repartition_source_topics"])}
                               for c in s["copartition_groups"] or ()],
    } for s in t["subtopologies"]]}


class StreamsGroups:
    """The streams groups of one shard. See the module docstring."""

    group_type = STREAMS

    def __init__(self, groups: GroupManager, config: StreamsGroupConfig | None = None, topics=None,
                 group_configs=None):
        self.gm = groups
        self.config = config or StreamsGroupConfig()
        self.topics = topics if topics is not None else DictTopics()
        self.group_configs = group_configs
        self._delays: dict[str, int] = {}  # group -> when its delayed first assignment is computed (runtime)
        groups.register(self)

    @property
    def groups(self) -> dict:
        return self.gm.groups

    def _setting(self, group_id: str, name: str, default: int) -> int:
        return group_setting(self.group_configs, group_id, name, default)

    def session_timeout_ms(self, group_id: str) -> int:
        return self._setting(group_id, "streams.session.timeout.ms", self.config.session_timeout_ms)

    def heartbeat_interval_ms(self, group_id: str) -> int:
        return self._setting(group_id, "streams.heartbeat.interval.ms", self.config.heartbeat_interval_ms)

    def num_standby_replicas(self, group_id: str) -> int:
        return self._setting(group_id, "streams.num.standby.replicas", self.config.num_standby_replicas)

    # -- records ---------------------------------------------------------
    @staticmethod
    def _r(kind: int, group_id: str, value: dict | None, sub: str | None = None) -> tuple:
        return rec.streams_key(kind, group_id, sub), None if value is None else rec.streams_value(kind, value)

    def _member_record(self, gid: str, m: StreamsMember) -> tuple:
        return self._r(STG_MEMBER_METADATA, gid, {
            "instance_id": m.instance_id, "rack_id": m.rack_id, "client_id": m.client_id,
            "client_host": m.client_host, "rebalance_timeout_ms": m.rebalance_timeout_ms,
            "topology_epoch": m.topology_epoch, "process_id": m.process_id,
            "user_endpoint": None if m.user_endpoint is None else
            {"host": m.user_endpoint[0], "port": m.user_endpoint[1]},
            "client_tags": [{"key": k, "value": v} for k, v in m.client_tags]}, m.member_id)

    def _current_record(self, gid: str, m: StreamsMember) -> tuple:
        value = {"member_epoch": m.member_epoch, "previous_member_epoch": m.previous_member_epoch,
                 "state": m.state, **m.assigned.entries()}
        pending = m.pending_revocation.entries()
        value.update({k + "_pending_revocation": v for k, v in pending.items()})
        return self._r(STG_CURRENT_ASSIGNMENT, gid, value, m.member_id)

    def _metadata_record(self, gid: str, epoch: int, mhash: int) -> tuple:
        return self._r(STG_METADATA, gid, {"epoch": epoch, "metadata_hash": mhash})

    def _member_tombstones(self, gid: str, member_id: str) -> list:
        return [self._r(STG_CURRENT_ASSIGNMENT, gid, None, member_id),
                self._r(STG_TARGET_MEMBER, gid, None, member_id),
                self._r(STG_MEMBER_METADATA, gid, None, member_id)]

    def _group_tombstones(self, g: StreamsGroup) -> list:
        out = [self._r(STG_CURRENT_ASSIGNMENT, g.group_id, None, mid) for mid in g.members]
        out += [self._r(STG_TARGET_MEMBER, g.group_id, None, mid) for mid in g.target]
        out.append(self._r(STG_TARGET_METADATA, g.group_id, None))
        out += [self._r(STG_MEMBER_METADATA, g.group_id, None, mid) for mid in g.members]
        out.append(self._r(STG_TOPOLOGY, g.group_id, None))
        out.append(self._r(STG_METADATA, g.group_id, None))
        return out

    # -- StreamsGroupHeartbeat -------------------------------------------
    def streams_group_heartbeat(self, now: int, *, request: dict, client_id: str = "",
                                client_host: str = "") -> Result:
        """Answers the StreamsGroupHeartbeat response fields (without
        throttle_time_ms), plus ``internal_topics_to_create``: (name,
        partitions, replication factor, configs) the caller creates."""
        try:
            self._check_heartbeat(request)
            if request["member_epoch"] in (LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH):
                return self._leave(request["group_id"], request["member_id"], request["member_epoch"])
            return self._heartbeat(now, request, client_id, client_host)
        except _Refused as e:
            return Result(_hb_error(e.code, e.message))

    @staticmethod
    def _check_heartbeat(r: dict) -> None:
        def invalid(message):
            raise _Refused(errors.INVALID_REQUEST, message)

        # in Kafka's order, with its messages
        for key, name in (("member_id", "MemberId"), ("group_id", "GroupId"), ("instance_id", "InstanceId"),
                          ("rack_id", "RackId")):
            if r[key] is not None and not r[key].strip():
                invalid(f"{name} can't be empty.")
        epoch = r["member_epoch"]
        if epoch == 0:
            if r["rebalance_timeout_ms"] == -1:
                invalid("RebalanceTimeoutMs must be provided in first request.")
            for key, name in (("active_tasks", "ActiveTasks"), ("standby_tasks", "StandbyTasks"),
                              ("warmup_tasks", "WarmupTasks")):
                if r[key]:
                    invalid(f"{name} must be empty when (re-)joining.")
            if r["topology"] is None:
                invalid("Topology must be non-null when (re-)joining.")
            for sub in r["topology"]["subtopologies"]:
                for t in sub["state_changelog_topics"] or ():
                    if t["partitions"] != 0:
                        raise _Refused(errors.STREAMS_INVALID_TOPOLOGY,
                                       f"Changelog topic {t['name']} must have an undefined partition count, "
                                       f"but it is set to {t['partitions']}.")
        elif epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            if r["instance_id"] is None:
                invalid("InstanceId can't be null.")
        elif epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            invalid(f"MemberEpoch is {epoch}, but must be greater than or equal to -2.")
        kinds = (r["active_tasks"], r["standby_tasks"], r["warmup_tasks"])
        if any(k is not None for k in kinds) and any(k is None for k in kinds):
            invalid("If one task-type is non-null, all must be non-null.")

    def _streams_group(self, group_id: str, create: bool, now: int,
                       records: list | None = None) -> tuple[StreamsGroup, bool]:
        """(the group, whether it is the table's object); raises _Refused. An
        empty classic group becomes a streams group when a member joins (its
        records tombstoned into ``records``, its offsets kept), as in Kafka."""
        g = self.groups.get(group_id)
        if g is None:
            if not create:
                raise _Refused(errors.GROUP_ID_NOT_FOUND, f"Streams group {group_id} not found.")
            return StreamsGroup(group_id, now, self.topics), False
        if g.group_type != STREAMS:
            if create and records is not None and self.gm.convertible(g, STREAMS):
                records.extend(self.gm.conversion_records(g))
                return StreamsGroup(group_id, now, self.topics), False
            raise _Refused(errors.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a streams group.")
        return g, True

    def _leave(self, group_id: str, member_id: str, epoch: int) -> Result:
        g, _ = self._streams_group(group_id, False, 0)
        m = g.members.get(member_id)
        if m is None:
            raise _Refused(errors.UNKNOWN_MEMBER_ID, f"Member {member_id} is not a member of group {group_id}.")
        res = Result(records=self._fence(g, [m]))
        res.response = dict(_hb_error(0), member_id=member_id, member_epoch=epoch)
        res.failure = _hb_error(errors.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
        return res

    def _heartbeat(self, now: int, r: dict, client_id: str, client_host: str) -> Result:
        group_id, member_id, member_epoch = r["group_id"], r["member_id"], r["member_epoch"]
        res = Result()
        records = res.records
        g, live = self._streams_group(group_id, member_epoch == 0, now, records)
        statuses: list = []
        member = g.members.get(member_id)
        if member is None:
            if member_epoch != 0:
                raise _Refused(errors.UNKNOWN_MEMBER_ID, f"Member {member_id} is not a member of group {group_id}.")
            if len(g.members) >= self.config.max_size:
                raise _Refused(errors.GROUP_MAX_SIZE_REACHED,
                               f"The streams group has reached its maximum capacity of "
                               f"{self.config.max_size} members.")
            member = StreamsMember(member_id)
            known = False
        else:
            known = True
            if member_epoch == 0:
                pass  # the member rejoins (it lost its tasks): it reconciles from scratch below
            elif member_epoch > member.member_epoch or (
                    member_epoch < member.member_epoch and member_epoch != member.previous_member_epoch):
                which = "greater" if member_epoch > member.member_epoch else "smaller"
                raise _Refused(errors.FENCED_MEMBER_EPOCH,
                               f"The streams group member has a {which} member epoch ({member_epoch}) than the "
                               f"one known by the group coordinator ({member.member_epoch}). The member must "
                               f"abandon all its partitions and rejoin.")
        # the topology
        topology = g.topology
        bump = not known or g.group_epoch == 0
        topology_epoch = member.topology_epoch
        if r["topology"] is not None:
            sent = _topology_value(r["topology"])
            topology_epoch = sent["epoch"]
            if topology is None:
                records.append(self._r(STG_TOPOLOGY, group_id, sent))
                topology = sent
                bump = True
            elif sent["epoch"] < topology["epoch"]:
                statuses.append({"status_code": STALE_TOPOLOGY,
                                 "status_detail": f"The member's topology epoch {sent['epoch']} is behind the "
                                                  f"group's topology epoch {topology['epoch']}."})
            elif sent != topology:  # as Kafka 4.4, even for an empty group
                raise _Refused(errors.INVALID_REQUEST, "Topology updates are not supported yet.")

        endpoint = member.user_endpoint
        if r["user_endpoint"] is not None:
            endpoint = (r["user_endpoint"]["host"], r["user_endpoint"]["port"])
        updated = replace(
            member,
            instance_id=r["instance_id"] if r["instance_id"] is not None else member.instance_id,
            rack_id=r["rack_id"] if r["rack_id"] is not None else member.rack_id,
            client_id=client_id, client_host=client_host,
            rebalance_timeout_ms=r["rebalance_timeout_ms"] if r["rebalance_timeout_ms"] != -1
            else member.rebalance_timeout_ms,
            topology_epoch=topology_epoch,
            process_id=r["process_id"] if r["process_id"] is not None else member.process_id,
            user_endpoint=endpoint,
            client_tags=tuple((kv["key"], kv["value"]) for kv in r["client_tags"])
            if r["client_tags"] is not None else member.client_tags,
        )
        if r["task_offsets"] is not None:
            updated = replace(updated, task_offsets=tuple(
                (t["subtopology_id"], t["partition"], t["offset"]) for t in r["task_offsets"]))
        if r["task_end_offsets"] is not None:
            updated = replace(updated, task_end_offsets=tuple(
                (t["subtopology_id"], t["partition"], t["offset"]) for t in r["task_end_offsets"]))
        if not known or updated.metadata() != member.metadata():
            records.append(self._member_record(group_id, updated))
        if updated.assignment_inputs() != member.assignment_inputs():
            bump = True
        configured = configure(topology, self.topics)
        mhash = metadata_hash(configured.referenced, self.topics)
        if mhash != g.metadata_hash:
            bump = True
        group_epoch = g.group_epoch
        if bump:
            group_epoch += 1
            records.append(self._metadata_record(group_id, group_epoch, mhash))
        members_after = dict(g.members)
        members_after[member_id] = updated
        delay = self.config.initial_rebalance_delay_ms
        delayed_until = self._delays.get(group_id)
        if delayed_until is not None and now >= delayed_until:
            delayed_until = None
        if group_epoch > g.assignment_epoch and g.assignment_epoch == 0 and delay > 0 and not g.target \
                and (delayed_until is None or not live):  # (not live: a new group, whatever was armed before)
            # the group's first assignment: empty, the tasks assigned once the delay has passed
            delayed_until = self._delays[group_id] = now + delay
            targets = {mid: NO_TASKS for mid in members_after}
            records.extend(self._target_records(g, targets, group_epoch, now))
            target_epoch, target = group_epoch, NO_TASKS
            view = StreamsGroup(group_id, now)
            view.members = members_after
        elif group_epoch > g.assignment_epoch and delayed_until is None:
            targets = self._targets(g, members_after, configured)
            records.extend(self._target_records(g, targets, group_epoch, now))
            target_epoch, target = group_epoch, targets[member_id]
            view = StreamsGroup(group_id, now)  # the group as the new targets leave it, for reconciling
            view.members = members_after
        else:  # the target is up to date, or its computation delayed
            target_epoch, target = g.assignment_epoch, g.target.get(member_id, NO_TASKS)
            view = StreamsGroup(group_id, now)
            view.members = members_after

        owned = None
        if r["active_tasks"] is not None and r["standby_tasks"] is not None and r["warmup_tasks"] is not None:
            owned = Assignment(_tasks(r["active_tasks"]), _tasks(r["standby_tasks"]), _tasks(r["warmup_tasks"]))
        if member_epoch == 0 and known:
            # rejoining: what it held is gone
            updated = replace(updated, state=MEMBER_STABLE, assigned=NO_TASKS, pending_revocation=NO_TASKS)
            view.members[member_id] = updated
        new = reconcile(view, updated, target_epoch, target, owned)
        if not known or member_epoch == 0 or (new.member_epoch, new.previous_member_epoch, new.state, new.assigned,
                                              new.pending_revocation) != (
                member.member_epoch, member.previous_member_epoch, member.state, member.assigned,
                member.pending_revocation):
            records.append(self._current_record(group_id, new))
        if live:
            timeout = self.session_timeout_ms(group_id)
            g.session_deadlines[member_id] = now + timeout
            self.gm.schedule(g, now + timeout)
            if new.state != UNREVOKED_TASKS:
                g.revocation_deadlines.pop(member_id, None)
            elif member_id not in g.revocation_deadlines and new.rebalance_timeout_ms > 0:
                # it has this long to give up its tasks, else it is fenced
                g.revocation_deadlines[member_id] = now + new.rebalance_timeout_ms
                self.gm.schedule(g, now + new.rebalance_timeout_ms)
        full = member_epoch == 0 or new.assigned != member.assigned or (
            owned is not None and owned != new.assigned)
        if delayed_until is not None:
            statuses.append({"status_code": ASSIGNMENT_DELAYED,
                             "status_detail": "Assignment delayed due to the configured initial rebalance delay."})
        statuses.extend(configured.statuses)
        if r["shutdown_application"]:
            statuses.append({"status_code": SHUTDOWN_APPLICATION,
                             "status_detail": f"Member {member_id} requested the application to shut down."})
        endpoints, endpoint_epoch = None, 0
        if any(m.user_endpoint is not None for m in members_after.values()):
            # IQ: where each member's tasks are served. Its epoch is a digest of
            # what it says (the members' current tasks change without the
            # target epoch changing): a member whose copy differs gets it again.
            endpoints = self._endpoints(members_after, new, configured)
            digest = hashlib.blake2b(repr(endpoints).encode(), digest_size=4).digest()
            endpoint_epoch = (int.from_bytes(digest, "big") & 0x3FFFFFFF) + 1
            if r["endpoint_information_epoch"] == endpoint_epoch:
                endpoints = None
        res.response = dict(
            _hb_error(0), member_id=member_id, member_epoch=new.member_epoch,
            heartbeat_interval_ms=self.heartbeat_interval_ms(group_id),
            acceptable_recovery_lag_legacy=self.config.acceptable_recovery_lag,
            acceptable_recovery_lag=self.config.acceptable_recovery_lag,
            task_offset_interval_ms=self.config.task_offset_interval_ms,
            status=statuses,
            endpoint_information_epoch=endpoint_epoch,
            partitions_by_user_endpoint=endpoints,
        )
        if full:
            res.response.update(new.assigned.entries())
        res.response["internal_topics_to_create"] = list(configured.to_create)
        res.failure = _hb_error(errors.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
        return res

    @staticmethod
    def _endpoints(members: dict, current: StreamsMember, configured: Configured) -> list | None:
        """IQ: for each member with an endpoint, the source partitions of its tasks."""
        def partitions(tasks: dict) -> list:
            by_topic: dict[str, set] = {}
            for sid, ps in tasks.items():
                for topic in configured.topics_by_subtopology.get(sid, ()):
                    by_topic.setdefault(topic, set()).update(ps)
            return [{"topic": t, "partitions": sorted(ps)} for t, ps in sorted(by_topic.items())]

        out = []
        for mid, m in sorted(members.items()):
            if mid == current.member_id:
                m = current
            if m.user_endpoint is None:
                continue
            out.append({"user_endpoint": {"host": m.user_endpoint[0], "port": m.user_endpoint[1]},
                        "active_partitions": partitions(m.assigned.active),
                        "standby_partitions": partitions(_or(m.assigned.standby, m.assigned.warmup))})
        return out

    def _targets(self, g: StreamsGroup, members: dict, configured: Configured) -> dict[str, Assignment]:
        tasks = configured.tasks if configured.ready else {}
        return assign(members, g.target, tasks, self.num_standby_replicas(g.group_id), configured.stateful)

    def _target_records(self, g: StreamsGroup, targets: dict, epoch: int, now: int) -> list:
        out = [self._r(STG_TARGET_MEMBER, g.group_id, a.entries(), mid)
               for mid, a in targets.items() if a != g.target.get(mid)]
        out.append(self._r(STG_TARGET_METADATA, g.group_id, {"assignment_epoch": epoch, "assignment_timestamp": now}))
        return out

    def _fence(self, g: StreamsGroup, members: list[StreamsMember]) -> list:
        """Records removing ``members`` and bumping the group epoch."""
        out = []
        for m in members:
            out.extend(self._member_tombstones(g.group_id, m.member_id))
        out.append(self._metadata_record(g.group_id, g.group_epoch + 1, g.metadata_hash))
        return out

    # -- timers ----------------------------------------------------------
    def check(self, g: StreamsGroup, now: int, res: Result) -> None:
        expired = []
        for mid, deadline in list(g.session_deadlines.items()):
            if deadline > now:
                continue
            m = g.members.get(mid)
            if m is None:
                del g.session_deadlines[mid]
                continue
            log.info("streams group %s: member %s fenced: its session expired", g.group_id, mid)
            expired.append(m)
            g.session_deadlines[mid] = now + FENCE_RETRY_MS
        for mid, deadline in list(g.revocation_deadlines.items()):
            m = g.members.get(mid)
            if m is None or m.state != UNREVOKED_TASKS:
                del g.revocation_deadlines[mid]
            elif deadline <= now and m not in expired:
                log.info("streams group %s: member %s fenced: it did not revoke its tasks within its rebalance "
                         "timeout", g.group_id, mid)
                expired.append(m)
                g.revocation_deadlines[mid] = now + FENCE_RETRY_MS
        if expired:
            res.records.extend(self._fence(g, expired))
        delayed_until = self._delays.get(g.group_id)
        if delayed_until is not None and delayed_until <= now:
            del self._delays[g.group_id]
            if g.group_epoch > g.assignment_epoch and not expired:  # the delayed first assignment
                targets = self._targets(g, g.members, configure(g.topology, self.topics))
                res.records.extend(self._target_records(g, targets, g.group_epoch, now))

    def reschedule(self, g: StreamsGroup) -> None:
        deadlines = list(g.session_deadlines.values()) + list(g.revocation_deadlines.values())
        if g.group_id in self._delays:
            deadlines.append(self._delays[g.group_id])
        if deadlines:
            self.gm.schedule(g, min(deadlines))

    @staticmethod
    def append_failed(records: list, now: int) -> None:
        """Nothing waits on a streams group's records."""

    @staticmethod
    def unload() -> None:
        """No request is ever parked by a streams group."""

    # -- replay ----------------------------------------------------------
    @staticmethod
    def decode_value(key: StreamsKey, value: bytes | None) -> dict | None:
        return rec.decode_streams_value(key.kind, value)

    def replay(self, k: StreamsKey, v: dict | None, now: int) -> None:
        g = self.groups.get(k.group)
        if g is None:
            if v is None:
                return
            g = self.groups[k.group] = StreamsGroup(k.group, now, self.topics)
        kind = k.kind
        if kind == STG_METADATA:
            if v is None:
                del self.groups[g.group_id]
            else:
                g.group_epoch = v["epoch"]
                g.metadata_hash = v["metadata_hash"]
        elif kind == STG_TOPOLOGY:
            g.topology = v
        elif kind == STG_MEMBER_METADATA:
            if v is None:
                if g.members.pop(k.sub, None) is not None and not g.members:
                    g.state_timestamp = now
                g.session_deadlines.pop(k.sub, None)
                g.revocation_deadlines.pop(k.sub, None)
            else:
                old = g.members.get(k.sub) or StreamsMember(k.sub)
                ep = v["user_endpoint"]
                g.members[k.sub] = replace(
                    old, instance_id=v["instance_id"], rack_id=v["rack_id"], client_id=v["client_id"],
                    client_host=v["client_host"], rebalance_timeout_ms=v["rebalance_timeout_ms"],
                    topology_epoch=v["topology_epoch"], process_id=v["process_id"],
                    user_endpoint=None if ep is None else (ep["host"], ep["port"]),
                    client_tags=tuple((kv["key"], kv["value"]) for kv in v["client_tags"]))
                if k.sub not in g.session_deadlines:
                    timeout = self.session_timeout_ms(g.group_id)
                    g.session_deadlines[k.sub] = now + timeout
                    self.gm.schedule(g, now + timeout)
        elif kind == STG_TARGET_METADATA:
            g.assignment_epoch = 0 if v is None else v["assignment_epoch"]
            if g.group_id in self._delays:  # the first assignment, delayed: look again then
                self.gm.schedule(g, self._delays[g.group_id])
        elif kind == STG_TARGET_MEMBER:
            if v is None:
                g.target.pop(k.sub, None)
            else:
                g.target[k.sub] = Assignment.of(v)
        elif kind == STG_CURRENT_ASSIGNMENT:
            m = g.members.get(k.sub)
            if v is None:
                if m is not None:
                    g.members[k.sub] = replace(m, member_epoch=LEAVE_GROUP_MEMBER_EPOCH, assigned=NO_TASKS,
                                               pending_revocation=NO_TASKS)
            else:
                m = m or StreamsMember(k.sub)
                state = v["state"] if v["state"] in (MEMBER_STABLE, UNREVOKED_TASKS, UNRELEASED_TASKS) \
                    else MEMBER_UNKNOWN
                g.members[k.sub] = replace(m, member_epoch=v["member_epoch"],
                                           previous_member_epoch=v["previous_member_epoch"], state=state,
                                           assigned=Assignment.of(v),
                                           pending_revocation=Assignment.of(v, "_pending_revocation"))

    # -- describing ------------------------------------------------------
    def streams_group_describe(self, group_ids: list[str]) -> list:
        ops = AUTHORIZED_OPERATIONS_OMITTED  # the API fills them in
        out = []
        for gid in group_ids:
            base = {"error_code": 0, "error_message": None, "group_id": gid, "group_state": "",
                    "group_epoch": 0, "assignment_epoch": 0, "topology": None, "members": [],
                    "authorized_operations": ops, "topology_description": None,
                    "topology_description_status": 0, "assignor_name": None}
            g = self.gm.get(gid)
            if not gid:
                out.append(dict(base, group_id=gid or "", error_code=errors.INVALID_GROUP_ID))
            elif g is None:
                out.append(dict(base, error_code=errors.GROUP_ID_NOT_FOUND, error_message=f"Group {gid} not found."))
            elif g.group_type != STREAMS:
                out.append(dict(base, error_code=errors.GROUP_ID_NOT_FOUND,
                                error_message=f"Group {gid} is not a streams group."))
            else:
                configured = configure(g.topology, self.topics)
                topology = None
                if g.topology is not None:
                    subs = None
                    if configured.ready:
                        def counted(infos):
                            return [dict(t, partitions=configured.internal.get(t["name"], t["partitions"]))
                                    for t in infos]

                        subs = [{
                            "subtopology_id": s["subtopology_id"],
                            "source_topics": configured.topics_by_subtopology[s["subtopology_id"]][
                                :len(configured.topics_by_subtopology[s["subtopology_id"]])
                                - len(s["repartition_source_topics"])],
                            "repartition_sink_topics": s["repartition_sink_topics"],
                            "state_changelog_topics": counted(s["state_changelog_topics"]),
                            "repartition_source_topics": counted(s["repartition_source_topics"]),
                        } for s in g.topology["subtopologies"]]
                    topology = {"epoch": g.topology["epoch"], "subtopologies": subs}

                def offsets(entries):
                    return [{"subtopology_id": s, "partition": p, "offset": o} for s, p, o in entries]

                members = [{
                    "member_id": m.member_id, "member_epoch": m.member_epoch, "instance_id": m.instance_id,
                    "rack_id": m.rack_id, "client_id": m.client_id, "client_host": m.client_host,
                    "topology_epoch": m.topology_epoch, "process_id": m.process_id,
                    "user_endpoint": None if m.user_endpoint is None else
                    {"host": m.user_endpoint[0], "port": m.user_endpoint[1]},
                    "client_tags": [{"key": k, "value": v} for k, v in m.client_tags],
                    "task_offsets": offsets(m.task_offsets), "task_end_offsets": offsets(m.task_end_offsets),
                    "assignment": m.assigned.entries(),
                    "target_assignment": g.target.get(m.member_id, NO_TASKS).entries(),
                    "is_classic": False,
                } for m in g.members.values()]
                out.append(dict(base, group_state=g.state, group_epoch=g.group_epoch,
                                assignment_epoch=g.assignment_epoch, topology=topology, members=members,
                                assignor_name=ASSIGNOR_NAME))
        return out

    # -- other APIs on a streams group -----------------------------------
    @staticmethod
    def leave_group(now: int, *, group_id: str, members: list) -> Result:
        return Result({"error_code": errors.GROUP_ID_NOT_FOUND, "members": []})

    # -- what other components ask about a streams group -----------------
    @staticmethod
    def is_empty(g: StreamsGroup) -> bool:
        return not g.members

    @staticmethod
    def convertible(g: StreamsGroup, to: str) -> bool:
        """An empty streams group becomes a classic one (JoinGroup), as in Kafka."""
        return to == "classic" and not g.members

    @staticmethod
    def expires(g: StreamsGroup) -> bool:
        return True

    def conversion_records(self, g: StreamsGroup) -> list:
        return self._group_tombstones(g)

    def delete_records(self, g: StreamsGroup) -> list:
        return self._group_tombstones(g)

    @staticmethod
    def validate_offset_commit(g: StreamsGroup, now: int, generation: int, member_id: str,
                               instance_id: str | None, version: int) -> int:
        """A member commits at its current epoch (OffsetCommit v9+); anyone
        may commit to an empty group with epoch -1 (the admin tools)."""
        if generation < 0 and not g.members:
            return 0
        m = g.members.get(member_id)
        if m is None:
            return errors.UNKNOWN_MEMBER_ID
        if version < 9:
            return errors.UNSUPPORTED_VERSION
        if generation != m.member_epoch:
            return errors.STALE_MEMBER_EPOCH
        return 0

    @staticmethod
    def validate_offset_fetch(g: StreamsGroup, member_id: str | None, member_epoch: int) -> int:
        m = g.members.get(member_id)
        if m is None:
            return errors.UNKNOWN_MEMBER_ID
        if member_epoch != m.member_epoch:
            return errors.STALE_MEMBER_EPOCH
        return 0

    @staticmethod
    def offset_delete_guard(g: StreamsGroup) -> tuple[int, set[str]]:
        if not g.members:
            return 0, set()
        topics: set[str] = set()
        if g.configured is not None:
            for names in g.configured.topics_by_subtopology.values():
                topics.update(names)
        return 0, topics

    @staticmethod
    def expiry_rule(g: StreamsGroup):
        """Offsets of an empty streams group expire, counting from their commit."""
        if g.members:
            return None
        return (lambda v: v.commit_timestamp), set()

    # -- inspection ------------------------------------------------------
    @staticmethod
    def durable_view(g: StreamsGroup) -> dict:
        members = {mid: replace(m, task_offsets=(), task_end_offsets=()) for mid, m in g.members.items()}
        return {"type": STREAMS, "group_epoch": g.group_epoch, "metadata_hash": g.metadata_hash,
                "topology": g.topology, "assignment_epoch": g.assignment_epoch,
                "members": dict(sorted(members.items())), "target": dict(sorted(g.target.items()))}


__all__ = ["StreamsGroup", "StreamsGroups", "StreamsGroupConfig", "StreamsMember", "assign", "configure",
           "reconcile", "STREAMS"]
