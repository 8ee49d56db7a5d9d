"""Replica placement: which brokers hold each new partition, as Kafka places them.

Pure functions, no store. ``assign_replicas`` spreads ``count`` partitions of
``rf`` replicas over brokers:

- the first replica of partition p (its preferred, and initial, leader) is
  the broker at position (p + start) of the broker list, so leaders go round
  the brokers from a random start and are balanced;
- the other replicas follow it at a distance that depends on a random shift,
  which grows by one each time the partitions have gone once round the
  brokers, so the followers of one broker's partitions are spread over the
  others rather than always being its neighbours;
- when every broker has a rack, the list is first arranged so that racks
  alternate (one broker of each rack in turn), and a follower is taken only
  from a rack (and a broker) the partition does not use yet, unless every
  rack (every broker) already holds one of its replicas. Brokers without a
  rack (any of them) mean placement ignores racks.

Invariants: every partition has ``rf`` distinct brokers (``rf`` at most the
number of brokers); with rack information, a partition's replicas are on
min(rf, racks) distinct racks.
"""

from __future__ import annotations

import random
from typing import Sequence


def rack_alternated(brokers: Sequence[tuple[int, str]]) -> list[int]:
    """Broker ids ordered so that racks alternate: the first broker of each
    rack (racks by name, brokers by id), then the second of each, and so on."""
    by_rack: dict[str, list[int]] = {}
    for b, rack in sorted(brokers):
        by_rack.setdefault(rack, []).append(b)
    racks = [by_rack[r] for r in sorted(by_rack)]
    out: list[int] = []
    depth = 0
    while len(out) < len(brokers):
        for members in racks:
            if depth < len(members):
                out.append(members[depth])
        depth += 1
    return out


def _follower_position(first: int, shift: int, j: int, n: int) -> int:
    return (first + 1 + (shift + j) % (n - 1)) % n


def assign_replicas(brokers: Sequence[tuple[int, str | None]], count: int, rf: int, *,
                    first_partition: int = 0, start: int | None = None, shift: int | None = None,
                    rng: random.Random | None = None) -> list[list[int]]:
    """Replica lists for partitions ``first_partition``.. (``count`` of them),
    ``rf`` replicas each, over ``brokers`` ((node id, rack or None)). ``start``
    and ``shift`` default to random positions (``rng``)."""
    n = len(brokers)
    if n == 0 or rf < 1 or rf > n:
        raise ValueError(f"cannot place {rf} replicas on {n} brokers")
    rng = rng or random
    aware = all(rack for _, rack in brokers)
    ids = rack_alternated(brokers) if aware else sorted(b for b, _ in brokers)
    rack_of = dict(brokers)
    racks = len({r for _, r in brokers}) if aware else 0
    if start is None:
        start = rng.randrange(n)
    if shift is None:
        shift = rng.randrange(n)
    out = []
    for p in range(first_partition, first_partition + count):
        if p > 0 and p % n == 0:
            shift += 1
        first = (p + start) % n
        replicas = [ids[first]]
        if not aware:
            replicas += [ids[_follower_position(first, shift, j, n)] for j in range(rf - 1)]
        else:
            used_racks = {rack_of[ids[first]]}
            k = 0
            while len(replicas) < rf:
                b = ids[_follower_position(first, shift, k, n)]
                k += 1
                if ((rack_of[b] not in used_racks or len(used_racks) == racks)
                        and (b not in replicas or len(replicas) == n)):
                    replicas.append(b)
                    used_racks.add(rack_of[b])
        out.append(replicas)
    return out


def check_assignment(assignment: Sequence[Sequence[int]], live: set[int], rf: int | None = None) -> str | None:
    """Why a manual assignment (a replica list per partition) is invalid, or
    None. ``rf``: the length every list must have (default: the first's)."""
    if not assignment:
        return "The manual partition assignment is empty."
    want = len(assignment[0]) if rf is None else rf
    for replicas in assignment:
        if not replicas:
            return "The manual partition assignment includes an empty replica list."
        if len(set(replicas)) != len(replicas):
            dup = next(b for b in replicas if list(replicas).count(b) > 1)
            return f"The manual partition assignment includes the broker {dup} more than once."
        for b in replicas:
            if b not in live:
                return f"The manual partition assignment includes broker {b}, but no such broker is registered."
        if len(replicas) != want:
            return ("The manual partition assignment includes a partition with "
                    f"{len(replicas)} replica(s), but this is not consistent with previous "
                    f"partitions, which have {want} replica(s).")
    return None
