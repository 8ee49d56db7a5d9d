"""Classic groups (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DescribeGroups).

Theory of operation
-------------------
:class:`ClassicGroups` is the classic group type of a shard's
:class:`~odradek.coordinator.group_manager.GroupManager`: it serves the
classic protocol's APIs for the groups of its table, replays the group
metadata records (key type 2), and answers what the offsets component asks
about a classic group. It never touches a socket, a clock or a log: each
operation takes ``now`` (ms since the epoch) and the request's fields, and
returns a :class:`~odradek.coordinator.runtime.Result` with

- ``records``: ``(key, value)`` to append to the shard's partition of
  ``__consumer_offsets`` (value None is a tombstone);
- ``response``: the answer, when it is known at once, else
- ``wait``: a token; the answer arrives later as a completion ``(token,
  response)``, for JoinGroup and SyncGroup requests parked until the rebalance
  moves on. Completions collect in the group manager's outbox, which the
  runner drains after every step (operation, timer tick or replay).

The runner appends the records, then feeds each one back through the
shard's ``replay``, then hands back completions, so nothing is acknowledged
before it is in the log. ``replay`` is the only code that changes what is
durable: group existence, and a group's stored generation (protocol type,
generation, protocol, leader, members with their assignments). At startup
the same replay runs over every record of the partition, in order, so the
groups rebuilt after a restart or a kill are exactly those the records
describe. Transitions that must not happen before the write (the group
becoming Stable with the leader's assignment, a group being deleted) happen
only in ``replay``. Rebalance bookkeeping that Kafka keeps only in memory
(members waiting in a JoinGroup, the next generation while it is being
assigned, heartbeat deadlines) is changed directly by the operations; the
few records written for such moves (a group becoming Empty, a static member
replaced in Stable) replay onto the live group as no-ops.

Deadlines: members' session expiries, MEMBER_ID_REQUIRED placeholders, the
join phase (rebalance timeout, or group.initial.rebalance.delay.ms for the
first rebalance of an empty group) and the sync phase live on each group;
the group manager calls :meth:`ClassicGroups.check` when one is due.

States follow Kafka's classic protocol: Empty -> PreparingRebalance ->
CompletingRebalance -> Stable, back to PreparingRebalance on any membership
or metadata change, and Dead for a removed group (never kept in the table).

A JoinGroup for an empty group of another type turns it into a classic
group (that group's records are tombstoned first). For a KIP-848 consumer
group with members, JoinGroup, SyncGroup and Heartbeat are served by the
consumer groups (``ConsumerGroups.classic_join`` and its siblings: Kafka 4's
online migration); for a group of another type with members JoinGroup
answers INCONSISTENT_GROUP_PROTOCOL, SyncGroup and Heartbeat
UNKNOWN_MEMBER_ID. DescribeGroups answers Dead for a group of another type
(v6: GROUP_ID_NOT_FOUND). A consumer group whose last consumer-protocol
member leaves becomes a classic group again with a record that names
members but no leader; replaying it starts a rebalance, as Kafka does then.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Iterable

from odradek.coordinator import records as rec
from odradek.coordinator.config import GroupConfig
from odradek.coordinator.group_manager import (AUTHORIZED_OPERATIONS_OMITTED, CLASSIC, CONSUMER, DEAD, EMPTY,
                                               GroupManager)
from odradek.coordinator.records import GroupKey
from odradek.coordinator.runtime import Result
from odradek.protocol import errors
from odradek.protocol.consumer_protocol import decode_subscription

PREPARING_REBALANCE = "PreparingRebalance"
COMPLETING_REBALANCE = "CompletingRebalance"
STABLE = "Stable"
STATES = (EMPTY, PREPARING_REBALANCE, COMPLETING_REBALANCE, STABLE, DEAD)


class ClassicMember:
    __slots__ = ("member_id", "instance_id", "client_id", "client_host", "rebalance_timeout",
                 "session_timeout", "protocol_type", "protocols", "assignment", "join_waiter",
                 "sync_waiter", "deadline", "is_new")

    def __init__(self, member_id: str, instance_id: str | None, client_id: str, client_host: str,
                 rebalance_timeout: int, session_timeout: int, protocol_type: str,
                 protocols: list[tuple[str, bytes]]):
        self.member_id = member_id
        self.instance_id = instance_id
        self.client_id = client_id
        self.client_host = client_host
        self.rebalance_timeout = rebalance_timeout
        self.session_timeout = session_timeout
        self.protocol_type = protocol_type
        self.protocols = protocols  # [(name, metadata)], in the member's order of preference
        self.assignment = b""
        self.join_waiter: int | None = None  # token of a parked JoinGroup
        self.sync_waiter: int | None = None  # token of a parked SyncGroup
        self.deadline: int | None = None  # session expiry, None while parked
        self.is_new = False

    def metadata(self, protocol: str | None) -> bytes:
        for name, data in self.protocols:
            if name == protocol:
                return data
        return b""


class ClassicGroup:
    """One group: durable fields (as the last replayed record left them, or the
    live generation while rebalancing), members and deadlines."""

    group_type = CLASSIC

    def __init__(self, group_id: str, now: int):
        self.group_id = group_id
        self.state = EMPTY
        self.previous_state: str | None = None
        self.state_timestamp = now
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.generation = 0
        self.leader_id: str | None = None
        self.members: dict[str, ClassicMember] = {}
        self.static_members: dict[str, str] = {}  # group instance id -> member id
        self.pending_members: dict[str, int] = {}  # MEMBER_ID_REQUIRED ids -> expiry
        self.pending_sync: set[str] = set()
        self.join_deadline: int | None = None
        self.join_initial = False
        self.join_delay = 0
        self.join_remaining = 0
        self.new_member_added = False
        self.sync_deadline: int | None = None
        self.rebalance_due = False  # a group just downgraded from a consumer group
        self.next_check: int | None = None

    # -- queries ---------------------------------------------------------
    def rebalance_timeout(self) -> int:
        return max((m.rebalance_timeout for m in self.members.values()), default=0)

    def all_joined(self) -> bool:
        return not self.pending_members and all(
            m.join_waiter is not None for m in self.members.values())

    def candidate_protocols(self) -> set[str] | None:
        """Protocols every member supports; None when there are no members."""
        found = None
        for m in self.members.values():
            names = {n for n, _ in m.protocols}
            found = names if found is None else found & names
        return found

    def select_protocol(self) -> str | None:
        """Each member votes for its most preferred protocol that all support;
        the most voted wins (ties: the first voted for)."""
        candidates = self.candidate_protocols()
        if not candidates:
            return None
        votes: Counter = Counter()
        for m in self.members.values():
            for name, _ in m.protocols:
                if name in candidates:
                    votes[name] += 1
                    break
        return max(votes, key=votes.__getitem__)

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members of a consumer group subscribe to; None if unknown."""
        if self.protocol_type != "consumer" or self.protocol_name is None:
            return None
        topics: set[str] = set()
        for m in self.members.values():
            try:
                topics.update(decode_subscription(m.metadata(self.protocol_name))["topics"])
            except ValueError:
                return None
        return topics

    def snapshot(self, now_state_timestamp: int | None = None,
                 assignments: dict[str, bytes] | None = None) -> dict:
        """The GroupMetadataValue describing this group (with ``assignments`` if given)."""
        members = []
        for m in self.members.values():
            members.append({
                "member_id": m.member_id, "group_instance_id": m.instance_id,
                "client_id": m.client_id, "client_host": m.client_host,
                "rebalance_timeout": m.rebalance_timeout, "session_timeout": m.session_timeout,
                "subscription": m.metadata(self.protocol_name),
                "assignment": assignments.get(m.member_id, b"") if assignments is not None
                else m.assignment,
            })
        return {
            "protocol_type": self.protocol_type or "",
            "generation": self.generation,
            "protocol": self.protocol_name,
            "leader": self.leader_id,
            "current_state_timestamp": self.state_timestamp if now_state_timestamp is None
            else now_state_timestamp,
            "members": members,
        }


def join_error(code: int, member_id: str = "") -> dict:
    """A JoinGroup error answer (classic groups, and classic members of consumer groups)."""
    return {"error_code": code, "generation_id": -1, "protocol_type": None, "protocol_name": None,
            "leader": "", "skip_assignment": False, "member_id": member_id, "members": []}


def sync_error(code: int) -> dict:
    """A SyncGroup error answer (classic groups, and classic members of consumer groups)."""
    return {"error_code": code, "protocol_type": None, "protocol_name": None, "assignment": b""}


class ClassicGroups:
    """The classic groups of one shard. See the module docstring."""

    group_type = CLASSIC

    def __init__(self, groups: GroupManager, config: GroupConfig | None = None):
        self.gm = groups
        self.config = config or GroupConfig()
        groups.register(self)

    # -- plumbing --------------------------------------------------------
    @property
    def groups(self) -> dict:
        return self.gm.groups

    def _own(self, group_id: str | None) -> ClassicGroup | None:
        g = self.gm.get(group_id)
        return g if g is not None and g.group_type == CLASSIC else None

    def _complete(self, token: int | None, response: dict) -> None:
        self.gm.complete(token, response)

    def _schedule(self, g: ClassicGroup, when: int) -> None:
        self.gm.schedule(g, when)

    def reschedule(self, g: ClassicGroup) -> None:
        times = [m.deadline for m in g.members.values() if m.deadline is not None]
        times.extend(g.pending_members.values())
        if g.join_deadline is not None:
            times.append(g.join_deadline)
        if g.sync_deadline is not None:
            times.append(g.sync_deadline)
        if times:
            self._schedule(g, min(times))

    def _heartbeat(self, g: ClassicGroup, m: ClassicMember, now: int, timeout: int | None = None) -> None:
        m.deadline = now + (m.session_timeout if timeout is None else timeout)
        self._schedule(g, m.deadline)

    @staticmethod
    def _group_record(g: ClassicGroup, value: dict | None) -> tuple:
        return rec.group_key(g.group_id), None if value is None else rec.group_value(value)

    @staticmethod
    def _validate_member(g: ClassicGroup, member_id: str, instance_id: str | None) -> int:
        if instance_id is not None:
            current = g.static_members.get(instance_id)
            if current is None:
                return errors.UNKNOWN_MEMBER_ID
            if current != member_id:
                return errors.FENCED_INSTANCE_ID
        if member_id not in g.members:
            return errors.UNKNOWN_MEMBER_ID
        return 0

    def _supports(self, g: ClassicGroup, protocol_type: str, protocols: list) -> bool:
        if g.state == EMPTY and not g.members:
            return bool(protocol_type) and bool(protocols)
        if protocol_type != g.protocol_type:
            return False
        candidates = g.candidate_protocols()
        return candidates is None or any(name in candidates for name, _ in protocols)

    def _accepts_joining(self, g: ClassicGroup, member_id: str) -> bool:
        limit = self.config.max_group_size
        if g.state == EMPTY:
            return True
        if g.state == PREPARING_REBALANCE:
            m = g.members.get(member_id)
            awaiting = sum(1 for x in g.members.values() if x.join_waiter is not None)
            return (m is not None and m.join_waiter is not None) or awaiting < limit
        return member_id in g.members or len(g.members) < limit

    def _join_response(self, g: ClassicGroup, m: ClassicMember, with_members: bool, leader: str | None = None,
                       skip_assignment: bool = False) -> dict:
        members = []
        if with_members:
            members = [{"member_id": x.member_id, "group_instance_id": x.instance_id,
                        "metadata": x.metadata(g.protocol_name)} for x in g.members.values()]
        return {"error_code": 0, "generation_id": g.generation, "protocol_type": g.protocol_type,
                "protocol_name": g.protocol_name,
                "leader": (g.leader_id if leader is None else leader) or "",
                "skip_assignment": skip_assignment, "member_id": m.member_id, "members": members}

    # -- rebalance mechanics --------------------------------------------
    def _drop_member(self, g: ClassicGroup, m: ClassicMember, join_code: int = errors.UNKNOWN_MEMBER_ID,
                     sync_code: int = errors.UNKNOWN_MEMBER_ID) -> None:
        """Take ``m`` out of the group, answering whatever it has parked."""
        if m.join_waiter is not None:
            self._complete(m.join_waiter, join_error(join_code))
            m.join_waiter = None
        if m.sync_waiter is not None:
            self._complete(m.sync_waiter, sync_error(sync_code))
            m.sync_waiter = None
        g.members.pop(m.member_id, None)
        if m.instance_id is not None and g.static_members.get(m.instance_id) == m.member_id:
            del g.static_members[m.instance_id]
        g.pending_sync.discard(m.member_id)
        if g.leader_id == m.member_id:
            g.leader_id = next(iter(g.members), None)

    def _remove_member(self, g: ClassicGroup, m: ClassicMember, now: int, res: Result) -> None:
        self._drop_member(g, m)
        if g.state in (STABLE, COMPLETING_REBALANCE):
            self._prepare_rebalance(g, now, res)
        elif g.state == PREPARING_REBALANCE and g.all_joined():
            self._complete_join(g, now, res)

    def _propagate_error(self, g: ClassicGroup, code: int, now: int) -> None:
        for m in g.members.values():
            m.assignment = b""
            if m.sync_waiter is not None:
                self._complete(m.sync_waiter, sync_error(code))
                m.sync_waiter = None
                self._heartbeat(g, m, now)

    def _prepare_rebalance(self, g: ClassicGroup, now: int, res: Result) -> None:
        if g.state == COMPLETING_REBALANCE:
            self._propagate_error(g, errors.REBALANCE_IN_PROGRESS, now)
        g.pending_sync.clear()
        g.sync_deadline = None
        initial = g.state == EMPTY
        g.previous_state = g.state
        g.state = PREPARING_REBALANCE
        g.state_timestamp = now
        if initial:
            delay = self.config.initial_rebalance_delay_ms
            g.join_initial = True
            g.join_delay = delay
            g.join_remaining = max(g.rebalance_timeout() - delay, 0)
            g.new_member_added = False
            g.join_deadline = now + delay
            self._schedule(g, g.join_deadline)
        else:
            g.join_initial = False
            if g.all_joined():
                self._complete_join(g, now, res)
            else:
                g.join_deadline = now + g.rebalance_timeout()
                self._schedule(g, g.join_deadline)

    def _maybe_rebalance(self, g: ClassicGroup, now: int, res: Result) -> None:
        if g.state in (STABLE, COMPLETING_REBALANCE, EMPTY):
            self._prepare_rebalance(g, now, res)
        elif g.state == PREPARING_REBALANCE and g.all_joined() and g.previous_state != EMPTY:
            self._complete_join(g, now, res)

    def _complete_join(self, g: ClassicGroup, now: int, res: Result) -> None:
        g.join_deadline = None
        for m in list(g.members.values()):
            if m.join_waiter is None and m.instance_id is None:
                self._drop_member(g, m)
        joined = [m for m in g.members.values() if m.join_waiter is not None]
        if g.members and not joined:
            # Only static members that have not rejoined are left: wait for them
            # (or for their sessions to expire) one more rebalance timeout.
            g.join_deadline = now + g.rebalance_timeout()
            self._schedule(g, g.join_deadline)
            return
        leader = g.members.get(g.leader_id) if g.leader_id is not None else None
        if leader is None or leader.join_waiter is None:
            g.leader_id = joined[0].member_id if joined else None
        g.generation += 1
        g.previous_state = g.state
        g.state_timestamp = now
        if not g.members:
            g.state = EMPTY
            g.protocol_name = None
            g.leader_id = None
            res.records.append(self._group_record(g, g.snapshot()))
            return
        g.protocol_name = g.select_protocol()
        g.state = COMPLETING_REBALANCE
        for m in g.members.values():
            if m.join_waiter is not None:
                self._complete(m.join_waiter,
                               self._join_response(g, m, with_members=m.member_id == g.leader_id))
                m.join_waiter = None
                m.is_new = False
            self._heartbeat(g, m, now)
        g.pending_sync = set(g.members)
        g.sync_deadline = now + g.rebalance_timeout()
        self._schedule(g, g.sync_deadline)

    def _add_member(self, g: ClassicGroup, now: int, member_id: str, instance_id: str | None, client_id: str,
                    client_host: str, rebalance_timeout: int, session_timeout: int, protocol_type: str,
                    protocols: list, token: int) -> Result:
        res = Result(wait=token)
        m = ClassicMember(member_id, instance_id, client_id, client_host, rebalance_timeout, session_timeout,
                   protocol_type, protocols)
        m.is_new = True
        m.join_waiter = token
        if g.state == PREPARING_REBALANCE and g.previous_state == EMPTY:
            g.new_member_added = True
        if not g.members:
            g.protocol_type = protocol_type
        g.members[member_id] = m
        if g.leader_id is None:
            g.leader_id = member_id
        if instance_id is not None:
            g.static_members[instance_id] = member_id
        self._heartbeat(g, m, now, self.config.new_member_join_timeout_ms)
        self._maybe_rebalance(g, now, res)
        return res

    def _update_member(self, g: ClassicGroup, m: ClassicMember, protocols: list, rebalance_timeout: int,
                       session_timeout: int, token: int) -> None:
        if m.join_waiter is not None and m.join_waiter != token:
            self._complete(m.join_waiter, join_error(errors.REBALANCE_IN_PROGRESS, m.member_id))
        m.protocols = protocols
        m.rebalance_timeout = rebalance_timeout
        m.session_timeout = session_timeout
        m.join_waiter = token

    def _replace_static_member(self, g: ClassicGroup, now: int, old_id: str, new_id: str, instance_id: str,
                               protocols: list, rebalance_timeout: int, session_timeout: int,
                               token: int, supports_skip_assignment: bool) -> Result:
        res = Result(wait=token)
        old_leader = g.leader_id
        old = g.members.pop(old_id)
        if old.join_waiter is not None:
            self._complete(old.join_waiter, join_error(errors.FENCED_INSTANCE_ID, old_id))
            old.join_waiter = None
        if old.sync_waiter is not None:
            self._complete(old.sync_waiter, sync_error(errors.FENCED_INSTANCE_ID))
            old.sync_waiter = None
        m = old
        m.member_id = new_id
        g.members[new_id] = m
        g.static_members[instance_id] = new_id
        if g.leader_id == old_id:
            g.leader_id = new_id
        if old_id in g.pending_sync:
            g.pending_sync.discard(old_id)
            g.pending_sync.add(new_id)
        self._heartbeat(g, m, now)
        self._update_member(g, m, protocols, rebalance_timeout, session_timeout, token)
        if g.state == STABLE:
            if g.protocol_name == g.select_protocol():
                # Nothing changes for the others: keep the generation and the
                # assignment, persist the new member id, and answer at once.
                m.join_waiter = None
                res.wait = None
                res.records.append(self._group_record(g, g.snapshot()))
                if supports_skip_assignment:
                    is_leader = g.leader_id == new_id
                    res.response = self._join_response(g, m, with_members=is_leader,
                                                       skip_assignment=is_leader)
                else:
                    res.response = self._join_response(g, m, with_members=False, leader=old_leader)
                res.failure = join_error(errors.COORDINATOR_NOT_AVAILABLE, new_id)
            else:
                self._prepare_rebalance(g, now, res)
        elif g.state == COMPLETING_REBALANCE:
            self._prepare_rebalance(g, now, res)
        elif g.state == PREPARING_REBALANCE:
            self._maybe_rebalance(g, now, res)
        return res

    # -- JoinGroup -------------------------------------------------------
    def join_group(self, now: int, *, group_id: str, member_id: str, instance_id: str | None,
                   session_timeout: int, rebalance_timeout: int, protocol_type: str,
                   protocols: list[tuple[str, bytes]], client_id: str = "", client_host: str = "",
                   require_known_member_id: bool = True,
                   supports_skip_assignment: bool = False) -> Result:
        if not group_id:
            return Result(join_error(errors.INVALID_GROUP_ID, member_id))
        g = self.groups.get(group_id)
        replaced = None
        cfg = self.config
        session_ok = cfg.min_session_timeout_ms <= session_timeout <= cfg.max_session_timeout_ms
        if g is not None and g.group_type != CLASSIC:
            if g.group_type == CONSUMER and not self.gm.convertible(g, CLASSIC):
                # A classic member of a KIP-848 group (Kafka 4's online migration).
                if not session_ok:
                    return Result(join_error(errors.INVALID_SESSION_TIMEOUT, member_id))
                return self.gm.kinds[CONSUMER].classic_join(
                    now, g, member_id=member_id, instance_id=instance_id, session_timeout=session_timeout,
                    rebalance_timeout=rebalance_timeout if rebalance_timeout is not None else -1,
                    protocol_type=protocol_type, protocols=protocols, client_id=client_id,
                    client_host=client_host, require_known_member_id=require_known_member_id)
            if not self.gm.convertible(g, CLASSIC):
                return Result(join_error(errors.INCONSISTENT_GROUP_PROTOCOL, member_id))
            replaced, g = g, None  # an empty group of another type becomes a classic one
        if not session_ok:
            return Result(join_error(errors.INVALID_SESSION_TIMEOUT, member_id))
        if rebalance_timeout is None or rebalance_timeout < 0:
            rebalance_timeout = session_timeout
        created = False
        if g is None:
            if member_id:
                return Result(join_error(errors.UNKNOWN_MEMBER_ID, member_id))
            g = ClassicGroup(group_id, now)
            created = True
        if not self._accepts_joining(g, member_id):
            return Result(join_error(errors.GROUP_MAX_SIZE_REACHED, ""))
        if not self._supports(g, protocol_type, protocols):
            return Result(join_error(errors.INCONSISTENT_GROUP_PROTOCOL, member_id))
        if created:
            self.groups[group_id] = g
        res = self._join(g, now, member_id, instance_id, session_timeout, rebalance_timeout, protocol_type,
                         protocols, client_id, client_host, require_known_member_id, supports_skip_assignment)
        if replaced is not None:
            res.records[:0] = self.gm.conversion_records(replaced)
        return res

    def _join(self, g: ClassicGroup, now: int, member_id: str, instance_id: str | None, session_timeout: int,
              rebalance_timeout: int, protocol_type: str, protocols: list, client_id: str, client_host: str,
              require_known_member_id: bool, supports_skip_assignment: bool) -> Result:
        token = self.gm.next_token()
        if not member_id:
            new_id = f"{instance_id if instance_id is not None else client_id}-{uuid.uuid4()}"
            if instance_id is not None:
                old_id = g.static_members.get(instance_id)
                if old_id is not None:
                    return self._replace_static_member(
                        g, now, old_id, new_id, instance_id, protocols, rebalance_timeout,
                        session_timeout, token, supports_skip_assignment)
            elif require_known_member_id:
                g.pending_members[new_id] = now + session_timeout
                self._schedule(g, now + session_timeout)
                return Result(join_error(errors.MEMBER_ID_REQUIRED, new_id))
            return self._add_member(g, now, new_id, instance_id, client_id, client_host,
                                    rebalance_timeout, session_timeout, protocol_type, protocols, token)
        if member_id in g.pending_members:
            del g.pending_members[member_id]
            return self._add_member(g, now, member_id, instance_id, client_id, client_host,
                                    rebalance_timeout, session_timeout, protocol_type, protocols, token)
        code = self._validate_member(g, member_id, instance_id)
        if code:
            return Result(join_error(code, member_id))
        m = g.members[member_id]
        res = Result(wait=token)
        if g.state == PREPARING_REBALANCE:
            self._update_member(g, m, protocols, rebalance_timeout, session_timeout, token)
            self._maybe_rebalance(g, now, res)
        elif g.state == COMPLETING_REBALANCE:
            if m.protocols == protocols:
                # A repeated JoinGroup (the first answer was lost): same answer.
                return Result(self._join_response(g, m, with_members=member_id == g.leader_id))
            self._update_member(g, m, protocols, rebalance_timeout, session_timeout, token)
            self._prepare_rebalance(g, now, res)
        elif g.state == STABLE:
            if member_id == g.leader_id or m.protocols != protocols:
                self._update_member(g, m, protocols, rebalance_timeout, session_timeout, token)
                self._prepare_rebalance(g, now, res)
            else:
                # A follower rejoining with unchanged metadata (e.g. cooperative
                # rebalancing): let it sync to the current generation.
                return Result(self._join_response(g, m, with_members=False))
        else:
            return Result(join_error(errors.UNKNOWN_MEMBER_ID, member_id))
        return res

    # -- SyncGroup -------------------------------------------------------
    def sync_group(self, now: int, *, group_id: str, generation: int, member_id: str,
                   instance_id: str | None, protocol_type: str | None, protocol_name: str | None,
                   assignments: Iterable[tuple[str, bytes]]) -> Result:
        if not group_id:
            return Result(sync_error(errors.INVALID_GROUP_ID))
        g = self._own(group_id)
        if g is None:
            other = self.gm.get(group_id)
            if other is not None and other.group_type == CONSUMER:
                return self.gm.kinds[CONSUMER].classic_sync(
                    now, other, generation=generation, member_id=member_id, instance_id=instance_id,
                    protocol_type=protocol_type, protocol_name=protocol_name)
            return Result(sync_error(errors.UNKNOWN_MEMBER_ID))
        code = self._validate_member(g, member_id, instance_id)
        if code:
            return Result(sync_error(code))
        if generation != g.generation:
            return Result(sync_error(errors.ILLEGAL_GENERATION))
        if (protocol_type is not None and protocol_type != g.protocol_type) or (
                protocol_name is not None and protocol_name != g.protocol_name):
            return Result(sync_error(errors.INCONSISTENT_GROUP_PROTOCOL))
        if g.state == PREPARING_REBALANCE:
            return Result(sync_error(errors.REBALANCE_IN_PROGRESS))
        m = g.members[member_id]
        if g.state == STABLE:
            g.pending_sync.discard(member_id)
            self._heartbeat(g, m, now)
            return Result({"error_code": 0, "protocol_type": g.protocol_type,
                           "protocol_name": g.protocol_name, "assignment": m.assignment})
        if g.state != COMPLETING_REBALANCE:
            return Result(sync_error(errors.UNKNOWN_MEMBER_ID))
        token = self.gm.next_token()
        if m.sync_waiter is not None:
            self._complete(m.sync_waiter, sync_error(errors.REBALANCE_IN_PROGRESS))
        m.sync_waiter = token
        g.pending_sync.discard(member_id)
        res = Result(wait=token)
        if member_id == g.leader_id:
            given = {mid: bytes(a) for mid, a in assignments if mid in g.members}
            # The group becomes Stable when this record is replayed.
            res.records.append(self._group_record(g, g.snapshot(now, given)))
        return res

    # -- Heartbeat -------------------------------------------------------
    def heartbeat(self, now: int, *, group_id: str, generation: int, member_id: str,
                  instance_id: str | None) -> Result:
        if not group_id:
            return Result({"error_code": errors.INVALID_GROUP_ID})
        g = self._own(group_id)
        if g is None:
            other = self.gm.get(group_id)
            if other is not None and other.group_type == CONSUMER:
                return self.gm.kinds[CONSUMER].classic_heartbeat(
                    now, other, generation=generation, member_id=member_id, instance_id=instance_id)
            return Result({"error_code": errors.UNKNOWN_MEMBER_ID})
        code = self._validate_member(g, member_id, instance_id)
        if code:
            return Result({"error_code": code})
        if generation != g.generation:
            return Result({"error_code": errors.ILLEGAL_GENERATION})
        m = g.members[member_id]
        if g.state == EMPTY:
            return Result({"error_code": errors.UNKNOWN_MEMBER_ID})
        self._heartbeat(g, m, now)
        if g.state == PREPARING_REBALANCE:
            return Result({"error_code": errors.REBALANCE_IN_PROGRESS})
        return Result({"error_code": 0})

    # -- LeaveGroup ------------------------------------------------------
    def leave_group(self, now: int, *, group_id: str,
                    members: list[tuple[str, str | None]]) -> Result:
        """``members``: (member id, group instance id). Answers
        ``{"error_code", "members": [{member_id, group_instance_id, error_code}]}``."""
        if not group_id:
            return Result({"error_code": errors.INVALID_GROUP_ID, "members": []})
        g = self._own(group_id)
        out = []
        res = Result()
        for member_id, instance_id in members:
            code = 0
            if g is None:
                code = errors.UNKNOWN_MEMBER_ID
            elif not member_id:
                current = g.static_members.get(instance_id) if instance_id is not None else None
                if current is None:
                    code = errors.UNKNOWN_MEMBER_ID
                else:
                    self._remove_member(g, g.members[current], now, res)
            elif member_id in g.pending_members:
                del g.pending_members[member_id]
                if g.state == PREPARING_REBALANCE and g.all_joined():
                    self._complete_join(g, now, res)
            elif instance_id is not None and g.static_members.get(instance_id, member_id) != member_id:
                code = errors.FENCED_INSTANCE_ID
            elif member_id in g.members:
                self._remove_member(g, g.members[member_id], now, res)
            else:
                code = errors.UNKNOWN_MEMBER_ID
            out.append({"member_id": member_id, "group_instance_id": instance_id, "error_code": code})
        res.response = {"error_code": 0, "members": out}
        return res

    # -- what other components ask about a classic group ---------------
    @staticmethod
    def is_empty(g: ClassicGroup) -> bool:
        return g.state == EMPTY and not g.members and not g.pending_members

    def convertible(self, g: ClassicGroup, to: str) -> bool:
        return self.is_empty(g)

    @staticmethod
    def expires(g: ClassicGroup) -> bool:
        return True

    def conversion_records(self, g: ClassicGroup) -> list:
        # A group that only ever had offsets has no metadata record to delete.
        return [self._group_record(g, None)] if g.protocol_type is not None or g.generation else []

    def delete_records(self, g: ClassicGroup) -> list:
        return [self._group_record(g, None)]

    def validate_offset_commit(self, g: ClassicGroup, now: int, generation: int, member_id: str,
                               instance_id: str | None, version: int) -> int:
        """0 if the commit is accepted (a member's commit counts as a heartbeat)."""
        code = self._offset_commit_error(g, generation, member_id, instance_id)
        if not code and member_id in g.members and generation >= 0:
            self._heartbeat(g, g.members[member_id], now)
        return code

    def _offset_commit_error(self, g: ClassicGroup, generation: int, member_id: str,
                             instance_id: str | None) -> int:
        if generation < 0 and g.state == EMPTY:
            return 0  # a consumer that manages its partitions itself, or an admin
        if generation >= 0 or member_id or instance_id is not None:
            code = self._validate_member(g, member_id, instance_id)
            if code:
                return code
            if generation != g.generation:
                return errors.ILLEGAL_GENERATION
        elif g.state != EMPTY:
            return errors.UNKNOWN_MEMBER_ID
        if g.state == COMPLETING_REBALANCE:
            return errors.REBALANCE_IN_PROGRESS
        return 0

    @staticmethod
    def validate_offset_fetch(g: ClassicGroup, member_id: str | None, member_epoch: int) -> int:
        return 0

    @staticmethod
    def offset_delete_guard(g: ClassicGroup) -> tuple[int, set[str]]:
        """(error, topics whose offsets must stay): a group with members may only
        lose offsets of topics it does not subscribe to, and only if it is a
        consumer-protocol group (whose subscriptions can be read)."""
        if g.state == EMPTY:
            return 0, set()
        if g.protocol_type != "consumer":
            return errors.NON_EMPTY_GROUP, set()
        return 0, g.subscribed_topics() or set()

    @staticmethod
    def expiry_rule(g: ClassicGroup):
        """None (no offset expires now), or (base time of an offset, topics whose
        offsets do not expire): an Empty group's offsets expire counting from
        when it became Empty; a Stable consumer-protocol group's offsets of
        topics it no longer subscribes to, from their commit."""
        if g.state == EMPTY:
            if g.protocol_type is not None and g.state_timestamp >= 0:
                return (lambda v: g.state_timestamp), set()
            return (lambda v: v.commit_timestamp), set()
        if g.state == STABLE and g.protocol_type == "consumer":
            subscribed = g.subscribed_topics()
            if subscribed is not None:
                return (lambda v: v.commit_timestamp), subscribed
        return None

    # -- DescribeGroups --------------------------------------------------
    def describe_group(self, group_id: str, version: int = 5) -> dict:
        """The group as DescribeGroups tells it; its authorized operations are
        the API's (``odradek.security.checks``), left "not requested" here."""
        base = {"error_code": 0, "error_message": None, "group_id": group_id, "group_state": DEAD,
                "protocol_type": "", "protocol_data": "", "members": [],
                "authorized_operations": AUTHORIZED_OPERATIONS_OMITTED}
        if group_id is None:
            return dict(base, group_id="", error_code=errors.INVALID_GROUP_ID)
        g = self.gm.get(group_id)
        if g is None or g.group_type != CLASSIC:
            if version >= 6:
                message = f"Group {group_id} not found." if g is None else \
                    f"Group {group_id} is not a classic group."
                return dict(base, error_code=errors.GROUP_ID_NOT_FOUND, error_message=message)
            return base
        stable = g.state == STABLE
        members = [{
            "member_id": m.member_id, "group_instance_id": m.instance_id, "client_id": m.client_id,
            "client_host": m.client_host,
            "member_metadata": m.metadata(g.protocol_name) if stable else b"",
            "member_assignment": m.assignment,  # as Kafka, in every state (only the metadata waits for Stable)
        } for m in g.members.values()]
        return dict(base, group_state=g.state, protocol_type=g.protocol_type or "",
                    protocol_data=(g.protocol_name or "") if stable else "", members=members)


    # -- timers and failures ---------------------------------------------
    def unload(self) -> None:
        """Answer NOT_COORDINATOR to every parked JoinGroup and SyncGroup."""
        for g in self.groups.values():
            if g.group_type != CLASSIC:
                continue
            for m in g.members.values():
                if m.join_waiter is not None:
                    self._complete(m.join_waiter, join_error(errors.NOT_COORDINATOR, m.member_id))
                    m.join_waiter = None
                if m.sync_waiter is not None:
                    self._complete(m.sync_waiter, sync_error(errors.NOT_COORDINATOR))
                    m.sync_waiter = None

    def append_failed(self, records: list, now: int) -> None:
        """Group records (``(decoded key, value)``) of an operation could not be
        written: undo what waits on them."""
        for k, value in records:
            if isinstance(k, GroupKey) and value is not None:
                g = self.groups.get(k.group)
                if g is not None and g.state == COMPLETING_REBALANCE:
                    self._propagate_error(g, errors.COORDINATOR_NOT_AVAILABLE, now)
                    self._prepare_rebalance(g, now, Result())

    def check(self, g: ClassicGroup, now: int, res: Result) -> None:
        if g.rebalance_due:
            g.rebalance_due = False
            if g.state == STABLE:
                self._prepare_rebalance(g, now, res)
        for mid, deadline in list(g.pending_members.items()):
            if deadline <= now:
                del g.pending_members[mid]
                if g.state == PREPARING_REBALANCE and g.all_joined():
                    self._complete_join(g, now, res)
        for m in list(g.members.values()):
            if m.deadline is None or m.deadline > now or g.members.get(m.member_id) is not m:
                continue
            if m.is_new or (m.join_waiter is None and m.sync_waiter is None):
                self._remove_member(g, m, now, res)
            else:
                m.deadline = None  # parked in a rebalance: rescheduled when it ends
        if g.state == PREPARING_REBALANCE and g.join_deadline is not None and g.join_deadline <= now:
            if g.join_initial and g.new_member_added and g.join_remaining > 0:
                g.new_member_added = False
                delay = min(self.config.initial_rebalance_delay_ms, g.join_remaining)
                g.join_remaining = max(g.join_remaining - g.join_delay, 0)
                g.join_delay = delay
                g.join_deadline += delay
            else:
                self._complete_join(g, now, res)
        if g.sync_deadline is not None and g.sync_deadline <= now:
            g.sync_deadline = None
            if g.state in (COMPLETING_REBALANCE, STABLE) and g.pending_sync:
                for mid in list(g.pending_sync):
                    m = g.members.get(mid)
                    if m is not None:
                        self._drop_member(g, m)
                g.pending_sync.clear()
                self._prepare_rebalance(g, now, res)


    # -- replay ----------------------------------------------------------
    @staticmethod
    def decode_value(key: GroupKey, value: bytes | None) -> dict | None:
        return rec.decode_group_value(value)

    def replay(self, key: GroupKey, v: dict | None, now: int) -> None:
        """Apply a group metadata record (its value decoded)."""
        self._replay_group(key.group, v, now)

    def add_simple_group(self, group_id: str, now: int) -> ClassicGroup:
        """An empty group that holds only offsets (a "simple" consumer's, or what
        is left when a group's metadata is deleted before its offsets)."""
        g = self.groups[group_id] = ClassicGroup(group_id, now)
        return g

    def _replay_group(self, group_id: str, v: dict | None, now: int) -> None:
        g = self.groups.get(group_id)
        if v is None:
            if g is None:
                return
            del self.groups[group_id]
            for m in list(g.members.values()):
                # A group with members is tombstoned only when it becomes a KIP-848
                # group (online upgrade): its members' parked requests are answered
                # REBALANCE_IN_PROGRESS, and they join it again, as Kafka answers them.
                self._drop_member(g, m, errors.REBALANCE_IN_PROGRESS, errors.REBALANCE_IN_PROGRESS)
            g.state = DEAD
            return
        if g is None:
            g = self.groups[group_id] = ClassicGroup(group_id, now)
        if v["members"] and v["leader"] is None:
            # Members and no leader: only a consumer group turned classic is written so
            # (Kafka 4's online downgrade). Its members join again, as Kafka has them.
            g.rebalance_due = True
            self._schedule(g, now)
        completing = g.state == COMPLETING_REBALANCE and g.generation == v["generation"]
        same_generation = completing or (g.state == STABLE and g.generation == v["generation"])
        g.protocol_type = v["protocol_type"] or None
        g.generation = v["generation"]
        g.protocol_name = v["protocol"]
        g.leader_id = v["leader"]
        if v["current_state_timestamp"] >= 0:
            g.state_timestamp = v["current_state_timestamp"]
        members: dict[str, ClassicMember] = {}
        for mv in v["members"]:
            m = g.members.get(mv["member_id"])
            rebalance_timeout = mv["rebalance_timeout"]
            if rebalance_timeout < 0:
                rebalance_timeout = mv["session_timeout"]
            if m is None:
                m = ClassicMember(mv["member_id"], mv["group_instance_id"], mv["client_id"],
                                  mv["client_host"], rebalance_timeout, mv["session_timeout"],
                                  g.protocol_type or "", [(g.protocol_name, mv["subscription"])])
                self._heartbeat(g, m, now)
            else:
                m.rebalance_timeout = rebalance_timeout
                m.session_timeout = mv["session_timeout"]
                if m.metadata(g.protocol_name) != mv["subscription"]:
                    m.protocols = [(g.protocol_name, mv["subscription"])]
            m.instance_id = mv["group_instance_id"]
            m.assignment = mv["assignment"]
            members[m.member_id] = m
        for mid, m in list(g.members.items()):
            if mid not in members:
                self._drop_member(g, m)
        g.members = members
        g.static_members = {m.instance_id: mid for mid, m in members.items() if m.instance_id is not None}
        g.previous_state = g.state
        g.join_deadline = None
        if not members:
            g.state = EMPTY
            g.pending_sync.clear()
            g.sync_deadline = None
            return
        g.state = STABLE
        if completing:
            for m in members.values():
                if m.sync_waiter is not None:
                    self._complete(m.sync_waiter, {"error_code": 0, "protocol_type": g.protocol_type,
                                                   "protocol_name": g.protocol_name,
                                                   "assignment": m.assignment})
                    m.sync_waiter = None
                    self._heartbeat(g, m, now)
        if not same_generation:
            g.pending_sync.clear()
            g.sync_deadline = None


    # -- inspection (tests, tools) --------------------------------------
    @staticmethod
    def durable_view(g: ClassicGroup) -> dict:
        """What the records describe of ``g``: comparable across a replay."""
        state = g.state if g.state in (EMPTY, STABLE) else "Rebalancing"
        return {
            "state": state if g.members or g.state != EMPTY else EMPTY,
            "generation": g.generation,
            "protocol_type": g.protocol_type,
            "protocol": g.protocol_name,
            "leader": g.leader_id,
            "members": {m.member_id: (m.instance_id, m.client_id, m.client_host, m.rebalance_timeout,
                                      m.session_timeout, m.metadata(g.protocol_name), m.assignment)
                        for m in g.members.values()},
        }
