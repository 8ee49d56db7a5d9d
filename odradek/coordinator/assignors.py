"""Server-side partition assignors of KIP-848 consumer groups.

An assignor maps the group's members to partitions of the topics they
subscribe to. Inputs:

- ``members``: member id -> :class:`MemberSpec` (the topic ids it subscribes
  to, its instance id, and the partitions the previous target gave it, for
  stickiness);
- ``topics``: topic id -> number of partitions, for the subscribed topics
  that exist; ``names``: topic id -> name, used only to order topics.

Output: member id -> {topic id: set of partitions}, every member present
(possibly empty), each partition given to at most one member, and only to a
member subscribed to its topic.

``uniform`` (the default, as in Kafka) balances the number of partitions per
member while moving as few as possible from the previous target: members
keep what they had while it stays balanced, then unassigned partitions go to
the least loaded eligible member, then partitions move from members that
have two or more above an eligible member until none does. With every member
on the same topics, counts differ by at most one.

``range`` gives each member, topic by topic, a contiguous range of
partitions (members in order of instance id, else member id; the first
``partitions % members`` members get one more), so members with the same
subscription get the same partition numbers of co-partitioned topics.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

Assignment = dict  # topic id (bytes) -> set[int]


@dataclass
class MemberSpec:
    subscribed: set  # topic ids
    instance_id: str | None = None
    current: dict = field(default_factory=dict)  # topic id -> set of partitions (previous target)


def _sort_key(member_id: str, spec: MemberSpec) -> tuple:
    return (spec.instance_id is None, spec.instance_id or "", member_id)


def uniform(members: dict[str, MemberSpec], topics: dict[bytes, int],
            names: dict[bytes, str] | None = None) -> dict[str, Assignment]:
    names = names or {}
    order = sorted(members, key=lambda m: _sort_key(m, members[m]))
    rank = {m: i for i, m in enumerate(order)}
    result: dict[str, Assignment] = {m: {} for m in order}
    count = {m: 0 for m in order}
    owner: dict[tuple, str] = {}
    eligible: dict[bytes, list[str]] = {
        tid: [m for m in order if tid in members[m].subscribed] for tid in topics}
    total = sum(n for tid, n in topics.items() if eligible[tid])
    topic_set = set(topics)
    homogeneous = len({frozenset(members[m].subscribed & topic_set) for m in order}) <= 1

    def give(m, tp):
        owner[tp] = m
        result[m].setdefault(tp[0], set()).add(tp[1])
        count[m] += 1

    def take(m, tp):
        del owner[tp]
        parts = result[m][tp[0]]
        parts.discard(tp[1])
        if not parts:
            del result[m][tp[0]]
        count[m] -= 1

    # 1. Stickiness: keep previous partitions that are still valid. With one
    # subscription for all, cap each member at its fair share, giving the
    # "+1" slots to the members that held the most.
    kept: dict[str, list[tuple]] = {}
    for m in order:
        valid = []
        for tid, parts in members[m].current.items():
            if tid in topics and tid in members[m].subscribed:
                valid.extend((tid, p) for p in parts if 0 <= p < topics[tid])
        valid.sort(key=lambda tp: (names.get(tp[0], ""), tp[0], tp[1]))
        kept[m] = valid
    if homogeneous and order:
        base, extra = divmod(total, len(order))
        quota = {m: base for m in order}
        for m in sorted(order, key=lambda m: (-len(kept[m]), rank[m])):
            if extra and len(kept[m]) > base:
                quota[m] += 1
                extra -= 1
    else:
        quota = None
    for m in order:
        for tp in kept[m]:
            if tp in owner or (quota is not None and count[m] >= quota[m]):
                continue
            give(m, tp)

    # 2. Unassigned partitions, most constrained topics first, to the least
    # loaded eligible member.
    unassigned = [(tid, p) for tid in sorted(topics, key=lambda t: (len(eligible[t]), names.get(t, ""), t))
                  if eligible[tid] for p in range(topics[tid]) if (tid, p) not in owner]
    if homogeneous:
        heap = [(count[m], rank[m], m) for m in order]
        heapq.heapify(heap)
        for tp in unassigned:
            c, r, m = heapq.heappop(heap)
            give(m, tp)
            heapq.heappush(heap, (count[m], r, m))
        return result
    for tp in unassigned:
        m = min(eligible[tp[0]], key=lambda x: (count[x], rank[x]))
        give(m, tp)

    # 3. Balance: move a partition from its owner to an eligible member with
    # at least two fewer; each move lowers the sum of squared counts, so this ends.
    moved = True
    while moved:
        moved = False
        for tp in sorted(owner, key=lambda tp: (-count[owner[tp]], names.get(tp[0], ""), tp[0], -tp[1])):
            m = owner[tp]
            target = min(eligible[tp[0]], key=lambda x: (count[x], rank[x]))
            if count[m] - count[target] >= 2:
                take(m, tp)
                give(target, tp)
                moved = True
    return result


def range_assignor(members: dict[str, MemberSpec], topics: dict[bytes, int],
                   names: dict[bytes, str] | None = None) -> dict[str, Assignment]:
    order = sorted(members, key=lambda m: _sort_key(m, members[m]))
    result: dict[str, Assignment] = {m: {} for m in order}
    for tid, n in topics.items():
        subs = [m for m in order if tid in members[m].subscribed]
        if not subs or n <= 0:
            continue
        per, extra = divmod(n, len(subs))
        start = 0
        for i, m in enumerate(subs):
            size = per + (1 if i < extra else 0)
            if size:
                result[m][tid] = set(range(start, start + size))
            start += size
    return result


ASSIGNORS = {"uniform": uniform, "range": range_assignor}
DEFAULT_ASSIGNORS = ("uniform", "range")
