"""The groups of one shard: one table, and dispatch by group type.

Theory of operation
-------------------
:class:`GroupManager` holds every group of a shard in one table (a group id
is of one type at a time), the deadlines of all of them, and the outbox of
completions (answers to parked requests). It knows no protocol: each group
type is a sibling component registered with it (classic groups in
``classic_groups.py``, KIP-848 consumer groups in ``consumer_groups.py``, KIP-932
share groups in ``share_groups.py``, KIP-1071 streams groups in
``streams_groups.py``), which owns its own APIs, its own
records and its own deadlines, and answers the questions other components
ask about any group, through the same methods:

- ``is_empty(g)``: no members (a group that may be deleted);
- ``convertible(g, to)``: whether type ``to`` may take over its id (empty
  classic groups; empty consumer and streams groups by a classic group;
  never a share group), ``expires(g)``:
  whether offset expiry deletes it once empty and without offsets;
- ``conversion_records(g)`` / ``delete_records(g)``: records removing the
  group's membership state when another type takes over the id, or when the
  group is deleted;
- ``validate_offset_commit``, ``validate_offset_fetch``,
  ``offset_delete_guard``, ``expiry_rule``: what the offsets component
  (``offsets.py``) asks before committing, fetching, deleting or expiring a
  group's offsets;
- ``check(g, now, res)`` / ``reschedule(g)``: act on a passed deadline, and
  say when to look at the group next (through :meth:`GroupManager.schedule`);
- ``replay(key, value, now)`` for its record types, ``append_failed``,
  ``unload()`` (answer parked requests: the shard is going), ``durable_view(g)``.

Every group object has ``group_id``, ``group_type``, ``state``,
``protocol_type`` and ``next_check``.

A record of one type for a group of another (the log of a group that
changed type): a tombstone is ignored, it deletes what the group was
before; a value replaces the group if it is empty, and is skipped otherwise.
"""

from __future__ import annotations

import heapq
import itertools
import logging

from odradek.coordinator.records import (ConsumerKey, GroupKey, OffsetKey, RecordFormatError, ShareKey, StreamsKey,
                                        decode_key)
from odradek.coordinator.runtime import Result

log = logging.getLogger("odradek.groups")

CLASSIC = "classic"
CONSUMER = "consumer"
SHARE = "share"
STREAMS = "streams"

EMPTY = "Empty"
DEAD = "Dead"

# The "not requested" value of the authorized_operations fields; the APIs fill
# them in when asked (KIP-430, odradek.security.checks.authorized_operations).
AUTHORIZED_OPERATIONS_OMITTED = -(1 << 31)


class GroupManager:
    """The group table of one shard, its deadlines and its outbox."""

    def __init__(self, tokens=None):
        self.groups: dict = {}
        self.kinds: dict = {}  # group type -> the component serving it
        self.completions: list[tuple[int, dict]] = []
        self.tokens = tokens if tokens is not None else itertools.count(1)
        self._timers: list[tuple[int, int, str]] = []
        self._seq = itertools.count()

    def register(self, kind) -> None:
        self.kinds[kind.group_type] = kind

    def kind(self, g):
        return self.kinds[g.group_type]

    def get(self, group_id: str | None):
        return self.groups.get(group_id) if group_id is not None else None

    # -- outbox and deadlines -------------------------------------------
    def next_token(self) -> int:
        return next(self.tokens)

    def complete(self, token: int | None, response: dict) -> None:
        if token is not None:
            self.completions.append((token, response))

    def drain(self) -> list[tuple[int, dict]]:
        out, self.completions = self.completions, []
        return out

    def schedule(self, g, when: int) -> None:
        """Look at ``g`` at ``when`` (or earlier, if already due earlier)."""
        if g.next_check is None or when < g.next_check:
            g.next_check = when
            heapq.heappush(self._timers, (when, next(self._seq), g.group_id))

    def next_deadline(self) -> int | None:
        return self._timers[0][0] if self._timers else None

    def tick(self, now: int) -> Result:
        """Act on every deadline that has passed."""
        res = Result()
        while self._timers and self._timers[0][0] <= now:
            when, _, gid = heapq.heappop(self._timers)
            g = self.groups.get(gid)
            if g is None or g.next_check != when:
                continue
            g.next_check = None
            kind = self.kind(g)
            kind.check(g, now, res)
            if self.groups.get(gid) is g:
                kind.reschedule(g)
        return res

    # -- questions about any group --------------------------------------
    def is_empty(self, g) -> bool:
        return self.kind(g).is_empty(g)

    def convertible(self, g, to: str) -> bool:
        """Whether a group of type ``to`` may take over ``g``'s id, as in
        Kafka: an empty classic group (by a consumer or streams group), an
        empty consumer group (by a classic group), an empty streams group (by
        a classic group); never a share group."""
        return self.kind(g).convertible(g, to)

    def expires(self, g) -> bool:
        """Whether ``g``, empty and without offsets, is deleted by offset expiry."""
        return self.kind(g).expires(g)

    def conversion_records(self, g) -> list:
        return self.kind(g).conversion_records(g)

    def delete_records(self, g) -> list:
        return self.kind(g).delete_records(g)

    # -- APIs over every type -------------------------------------------
    def leave_group(self, now: int, *, group_id: str, members: list[tuple[str, str | None]]) -> Result:
        g = self.get(group_id) if group_id else None
        kind = self.kind(g) if g is not None else self.kinds[CLASSIC]
        return kind.leave_group(now, group_id=group_id, members=members)

    def list_groups(self, states: list[str] | None = None, types: list[str] | None = None) -> list[dict]:
        wanted_types = {t.lower() for t in types} if types else None
        wanted_states = {s.lower() for s in states} if states else None
        out = []
        for g in self.groups.values():
            if wanted_types is not None and g.group_type not in wanted_types:
                continue
            if wanted_states is not None and g.state.lower() not in wanted_states:
                continue
            out.append({"group_id": g.group_id, "protocol_type": g.protocol_type or "",
                        "group_state": g.state, "group_type": g.group_type})
        return out

    # -- replay ----------------------------------------------------------
    def replay(self, key, value: bytes | None, now: int) -> None:
        """Apply a group record (``key`` decoded) to the type that owns it."""
        if isinstance(key, GroupKey):
            kind = self.kinds[CLASSIC]
        elif isinstance(key, ConsumerKey):
            kind = self.kinds[CONSUMER]
        elif isinstance(key, ShareKey) and SHARE in self.kinds:
            kind = self.kinds[SHARE]
        elif isinstance(key, StreamsKey) and STREAMS in self.kinds:
            kind = self.kinds[STREAMS]
        else:
            raise TypeError(f"not a group record: {key!r}")
        value = kind.decode_value(key, value)
        g = self.groups.get(key.group)
        if g is not None and g.group_type != kind.group_type:
            if value is None:
                return  # a tombstone of what the group was before
            if not self.is_empty(g):
                log.warning("group %s: %s group record over a live %s group; skipped",
                            key.group, kind.group_type, g.group_type)
                return
            del self.groups[key.group]  # the empty group gives way
        kind.replay(key, value, now)

    def append_failed(self, records: list, now: int) -> None:
        keys = []
        for key, value in records:
            try:
                k = decode_key(key)
            except RecordFormatError:
                continue
            if not isinstance(k, OffsetKey):
                keys.append((k, value))
        for kind in self.kinds.values():
            kind.append_failed(keys, now)

    def unload(self) -> None:
        for kind in self.kinds.values():
            kind.unload()

