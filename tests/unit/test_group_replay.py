"""Replaying the records a coordinator wrote rebuilds the same groups and offsets."""

from __future__ import annotations

from odradek.coordinator.classic_groups import EMPTY, STABLE
from odradek.coordinator.shard import GroupShard

from tests.unit.group_harness import Harness


def replayed(h: Harness, now: int | None = None) -> GroupShard:
    sm = GroupShard(h.sm.config)
    for key, value in h.log:
        sm.replay(key, value, h.now if now is None else now)
    return sm


def test_replay_reproduces_groups_and_offsets():
    h = Harness(offsets_retention_ms=10_000)
    (a, b), gen = h.stable_group(2)
    h.commit({("t", 0): 10, ("t", 1): (11, "m1")}, generation=gen, member_id=a)
    h.commit({("t", 2): 12}, generation=gen, member_id=b)
    h.commit({("u", 0): 3}, group="simple")
    h.commit({("u", 1): 4}, group="gone")
    h.apply(h.sm.delete_groups(h.now, ["gone"]))
    (s,), sgen = h.stable_group(1, group="static-g", instance_id="i1")
    h.apply(h.sm.join_group(h.now, group_id="static-g", member_id="", instance_id="i1",
                            session_timeout=1000, rebalance_timeout=5000, protocol_type="consumer",
                            protocols=list(h.sm.groups["static-g"].members[s].protocols),
                            client_id="c", client_host="/127.0.0.1"))
    (e,), egen = h.stable_group(1, group="emptied")
    h.commit({("t", 3): 30}, group="emptied", generation=egen, member_id=e)
    h.leave((e, None), group="emptied")
    h.apply(h.sm.delete_offsets(h.now, group_id="g", topics=[("t", [1])], topic_exists=h.topic_exists))
    assert all(g.state in (EMPTY, STABLE) for g in h.sm.groups.values())

    sm = replayed(h)
    assert sm.durable_view() == h.sm.durable_view()
    assert set(sm.groups) == {"g", "simple", "static-g", "emptied"}
    assert sm.groups["g"].state == STABLE and sm.groups["g"].generation == gen
    assert sm.groups["emptied"].state == EMPTY and sm.groups["emptied"].generation == egen + 1
    assert sm.fetch_offsets("g", None) == h.sm.fetch_offsets("g", None)
    # The loaded members are live: they may heartbeat with their generation.
    h2 = Harness()
    h2.sm = sm
    assert h2.heartbeat(a, gen) == 0
    static_member = next(iter(sm.groups["static-g"].members))
    assert static_member != s
    assert h2.heartbeat(static_member, sgen, group="static-g", instance_id="i1") == 0


def test_replay_mid_rebalance_restores_last_stored_generation():
    h = Harness()
    (a, b), gen = h.stable_group(2)
    h.join(member_id=a)
    h.join(member_id=b)
    assert h.sm.groups["g"].generation == gen + 1  # joined, assignment not stored yet
    sm = replayed(h)
    g = sm.groups["g"]
    assert g.state == STABLE and g.generation == gen
    assert {m.assignment for m in g.members.values()} == {f"assign-{a}".encode(), f"assign-{b}".encode()}


def test_loaded_members_expire_without_heartbeats():
    h = Harness()
    (a,), gen = h.stable_group(1, session=500)
    h.commit({("t", 0): 5}, generation=gen, member_id=a)
    h2 = Harness()
    h2.now = h.now + 10_000
    h2.sm = replayed(h, now=h2.now)
    assert h2.sm.groups["g"].state == STABLE
    h2.advance(501)
    g = h2.sm.groups["g"]
    assert g.state == EMPTY and g.generation == gen + 1
    assert h2.committed() == {("t", 0): 5}


def test_replay_is_idempotent_on_live_state():
    """Records written for moves already made in memory change nothing when replayed."""
    h = Harness()
    h.stable_group(2)
    before = h.sm.durable_view()
    for key, value in h.log:
        h.sm.replay(key, value, h.now)
    assert h.sm.durable_view() == before


def test_group_tombstone_keeps_later_offsets():
    h = Harness()
    h.commit({("t", 0): 1}, group="x")
    h.apply(h.sm.delete_groups(h.now, ["x"]))
    h.commit({("t", 1): 2}, group="x")
    sm = replayed(h)
    assert sm.durable_view() == h.sm.durable_view()
    assert {k: v.offset for k, v in sm.offsets.of("x").items()} == {("t", 1): 2}

