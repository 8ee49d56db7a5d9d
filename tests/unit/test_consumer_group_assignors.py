"""Server-side assignors: valid, balanced, sticky (uniform) and co-partitioned (range)."""

from __future__ import annotations

import random

from odradek.coordinator.assignors import MemberSpec, range_assignor, uniform

T, U, V = b"T" * 16, b"U" * 16, b"V" * 16


def check_valid(members, topics, out):
    seen = set()
    for mid, parts in out.items():
        for tid, ps in parts.items():
            assert tid in members[mid].subscribed, "a member got a topic it does not subscribe to"
            for p in ps:
                assert 0 <= p < topics[tid] and (tid, p) not in seen
                seen.add((tid, p))
    wanted = {(tid, p) for tid, n in topics.items() for p in range(n)
              if any(tid in m.subscribed for m in members.values())}
    assert seen == wanted, "every partition of a subscribed topic is assigned"


def counts(out):
    return {mid: sum(len(ps) for ps in parts.values()) for mid, parts in out.items()}


def test_uniform_splits_evenly_and_sticks():
    members = {m: MemberSpec({T}) for m in "abc"}
    out = uniform(members, {T: 8})
    check_valid(members, {T: 8}, out)
    assert sorted(counts(out).values()) == [2, 3, 3]
    # A fourth member joins: only what it gets moves.
    members = {m: MemberSpec({T}, current=out[m]) for m in "abc"}
    members["d"] = MemberSpec({T})
    out2 = uniform(members, {T: 8})
    check_valid(members, {T: 8}, out2)
    assert sorted(counts(out2).values()) == [2, 2, 2, 2]
    for m in "abc":
        assert out2[m][T] <= out[m][T]
    # A member leaves: the others keep theirs and share its partitions.
    members = {m: MemberSpec({T}, current=out2[m]) for m in "abd"}
    out3 = uniform(members, {T: 8})
    assert sorted(counts(out3).values()) == [2, 3, 3]
    for m in "abd":
        assert out2[m][T] <= out3[m][T]


def test_uniform_with_different_subscriptions():
    members = {"a": MemberSpec({T, U}), "b": MemberSpec({U}), "c": MemberSpec({T, U, V})}
    topics = {T: 3, U: 6, V: 2}
    out = uniform(members, topics)
    check_valid(members, topics, out)
    assert max(counts(out).values()) - min(counts(out).values()) <= 1


def test_range_gives_the_same_numbers_of_co_partitioned_topics():
    members = {"b": MemberSpec({T, U}), "a": MemberSpec({T, U}), "c": MemberSpec({T, U})}
    out = range_assignor(members, {T: 7, U: 7})
    check_valid(members, {T: 7, U: 7}, out)
    assert out["a"] == {T: {0, 1, 2}, U: {0, 1, 2}}
    assert out["b"] == {T: {3, 4}, U: {3, 4}} and out["c"] == {T: {5, 6}, U: {5, 6}}
    # Static members are ordered by instance id, so a restart keeps the ranges.
    members = {"z": MemberSpec({T}, instance_id="i1"), "y": MemberSpec({T}, instance_id="i2")}
    assert range_assignor(members, {T: 2}) == {"z": {T: {0}}, "y": {T: {1}}}


def test_random_inputs_give_valid_balanced_assignments():
    rng = random.Random(7)
    for _ in range(300):
        topics = {tid: rng.randint(0, 9) for tid in rng.sample([T, U, V], rng.randint(1, 3))}
        homogeneous = rng.random() < 0.5
        subs = set(rng.sample(sorted(topics), rng.randint(1, len(topics))))
        members = {}
        for i in range(rng.randint(1, 6)):
            mine = subs if homogeneous else set(rng.sample(sorted(topics), rng.randint(0, len(topics))))
            current = {tid: {p for p in range(topics[tid] + 2) if rng.random() < 0.3} for tid in topics}
            members[f"m{i}"] = MemberSpec(mine, current=current)
        for assign in (uniform, range_assignor):
            out = assign(members, topics)
            check_valid(members, topics, out)
        out = uniform(members, topics)
        if homogeneous:
            assert max(counts(out).values()) - min(counts(out).values()) <= 1
