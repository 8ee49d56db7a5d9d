"""The classic group state machine, driven directly (no sockets, fake clock)."""

from __future__ import annotations

import pytest

from odradek.coordinator.classic_groups import COMPLETING_REBALANCE, EMPTY, PREPARING_REBALANCE, STABLE
from odradek.coordinator.config import GroupConfig
from odradek.coordinator.shard import GroupShard
from odradek.protocol import errors

from tests.unit.group_harness import Harness, subscription


@pytest.fixture
def h():
    return Harness()


def state(h, group="g"):
    return h.sm.groups[group].state


# -- joining -------------------------------------------------------------------

def test_member_id_required_then_join_and_sync(h):
    first = h.join()
    resp = h.answer(first)
    assert resp["error_code"] == errors.MEMBER_ID_REQUIRED
    member = resp["member_id"]
    assert member.startswith("c-")
    res = h.join(member_id=member)
    assert h.answer(res) is None  # parked until the initial delay passes
    assert state(h) == PREPARING_REBALANCE
    h.advance(0)
    joined = h.answer(res)
    assert joined["error_code"] == 0
    assert joined["generation_id"] == 1
    assert joined["leader"] == member
    assert joined["protocol_name"] == "range"
    assert [m["member_id"] for m in joined["members"]] == [member]
    assert state(h) == COMPLETING_REBALANCE
    sync = h.sync(member, 1, assignments=[(member, b"A")])
    assert h.answer(sync) == {"error_code": 0, "protocol_type": "consumer", "protocol_name": "range",
                              "assignment": b"A"}
    assert state(h) == STABLE
    assert h.heartbeat(member, 1) == 0


def test_old_versions_get_member_id_without_round_trip(h):
    res = h.join(version=3)
    h.advance(0)
    assert h.answer(res)["error_code"] == 0
    assert h.answer(res)["generation_id"] == 1


def test_initial_rebalance_delay_collects_members():
    h = Harness(initial_rebalance_delay_ms=100)
    a = h.join_new(client_id="a")
    h.advance(60)
    b = h.join_new(client_id="b")
    h.advance(60)  # first delay passed, but b arrived: extended by another delay
    assert h.answer(a) is None and h.answer(b) is None
    h.advance(79)
    assert h.answer(a) is None
    h.advance(1)
    ra, rb = h.answer(a), h.answer(b)
    assert ra["generation_id"] == rb["generation_id"] == 1
    assert ra["leader"] == ra["member_id"]
    assert len(ra["members"]) == 2 and rb["members"] == []


def test_initial_delay_is_bounded_by_rebalance_timeout():
    h = Harness(initial_rebalance_delay_ms=100)
    first = h.join_new(client_id="a", rebalance=250)
    for i in range(10):
        h.join_new(client_id=f"x{i}", rebalance=250)
        h.advance(50)
        if h.answer(first) is not None:
            break
    assert h.answer(first) is not None
    assert h.now - 1_700_000_000_000 <= 350


def test_second_member_triggers_rebalance_and_follower_waits_for_leader(h):
    (a,), gen = h.stable_group(1)
    b_join = h.join_new(client_id="b")
    assert state(h) == PREPARING_REBALANCE
    assert h.heartbeat(a, gen) == errors.REBALANCE_IN_PROGRESS
    a_join = h.join(member_id=a, client_id="a")
    ra, rb = h.answer(a_join), h.answer(b_join)
    assert ra["generation_id"] == rb["generation_id"] == gen + 1
    assert ra["leader"] == a and len(ra["members"]) == 2
    b = rb["member_id"]
    b_sync = h.sync(b, gen + 1)
    assert h.answer(b_sync) is None
    a_sync = h.sync(a, gen + 1, assignments=[(a, b"pa"), (b, b"pb")])
    assert h.answer(a_sync)["assignment"] == b"pa"
    assert h.answer(b_sync)["assignment"] == b"pb"
    assert state(h) == STABLE


def test_leader_missing_assignment_gets_empty(h):
    (a,), gen = h.stable_group(1)
    rb = h.join_new(client_id="b")
    h.join(member_id=a)
    b = h.answer(rb)["member_id"]
    b_sync = h.sync(b, gen + 1)
    h.sync(a, gen + 1, assignments=[(a, b"x"), ("ghost", b"y")])
    assert h.answer(b_sync) == {"error_code": 0, "protocol_type": "consumer", "protocol_name": "range",
                                "assignment": b""}


def test_members_that_do_not_rejoin_are_dropped_at_rebalance_timeout(h):
    (a, b), gen = h.stable_group(2, rebalance=300)
    c_join = h.join_new(client_id="c", rebalance=300)
    h.join(member_id=a, rebalance=300)
    h.advance(299)
    h.heartbeat(b, gen)  # b keeps its session but never rejoins
    assert h.answer(c_join) is None
    h.advance(2)
    rc = h.answer(c_join)
    assert rc["error_code"] == 0 and rc["generation_id"] == gen + 1
    assert set(h.sm.groups["g"].members) == {a, rc["member_id"]}
    assert h.heartbeat(b, gen) == errors.UNKNOWN_MEMBER_ID


def test_protocol_selection_by_votes(h):
    r1 = h.join_new(client_id="a", protocols=[("range", b"1"), ("roundrobin", b"1")])
    r2 = h.join_new(client_id="b", protocols=[("roundrobin", b"2"), ("range", b"2")])
    r3 = h.join_new(client_id="c", protocols=[("roundrobin", b"3"), ("sticky", b"3"), ("range", b"3")])
    h.advance(0)
    answers = [h.answer(r) for r in (r1, r2, r3)]
    assert {a["protocol_name"] for a in answers} == {"roundrobin"}
    leader = next(a for a in answers if a["members"])
    assert {m["metadata"] for m in leader["members"]} == {b"1", b"2", b"3"}


def test_inconsistent_protocols(h):
    h.stable_group(1)
    r = h.join(protocols=[("other", b"")])
    assert h.answer(r)["error_code"] == errors.INCONSISTENT_GROUP_PROTOCOL
    r = h.join(protocol_type="connect")
    assert h.answer(r)["error_code"] == errors.INCONSISTENT_GROUP_PROTOCOL
    r = h.join(group="fresh", protocols=[])
    assert h.answer(r)["error_code"] == errors.INCONSISTENT_GROUP_PROTOCOL
    assert "fresh" not in h.sm.groups


def test_invalid_session_timeout_and_group_id(h):
    assert h.answer(h.join(session=50))["error_code"] == errors.INVALID_SESSION_TIMEOUT
    assert h.answer(h.join(session=10**8))["error_code"] == errors.INVALID_SESSION_TIMEOUT
    assert h.answer(h.join(group=""))["error_code"] == errors.INVALID_GROUP_ID


def test_unknown_member_and_illegal_generation(h):
    (a,), gen = h.stable_group(1)
    assert h.heartbeat("nobody", gen) == errors.UNKNOWN_MEMBER_ID
    assert h.heartbeat(a, gen + 5) == errors.ILLEGAL_GENERATION
    assert h.heartbeat(a, gen, group="other") == errors.UNKNOWN_MEMBER_ID
    assert h.answer(h.sync(a, gen + 1))["error_code"] == errors.ILLEGAL_GENERATION
    assert h.answer(h.join(member_id="nobody"))["error_code"] == errors.UNKNOWN_MEMBER_ID
    assert h.answer(h.join(group="other", member_id="x"))["error_code"] == errors.UNKNOWN_MEMBER_ID


def test_sync_during_rebalance(h):
    (a, b), gen = h.stable_group(2)
    h.join(member_id=a)  # the leader rejoins: rebalance
    assert state(h) == PREPARING_REBALANCE
    assert h.answer(h.sync(b, gen))["error_code"] == errors.REBALANCE_IN_PROGRESS


def test_follower_rejoin_while_stable_keeps_group_stable(h):
    (a, b), gen = h.stable_group(2)
    follower = b if h.sm.groups["g"].leader_id == a else a
    r = h.join(member_id=follower)
    resp = h.answer(r)
    assert resp["error_code"] == 0 and resp["generation_id"] == gen and resp["members"] == []
    assert state(h) == STABLE
    assert h.answer(h.sync(follower, gen))["assignment"] == f"assign-{follower}".encode()
    # Changed metadata (e.g. a cooperative member revoked partitions) rebalances.
    r = h.join(member_id=follower, protocols=[("range", subscription("t", "u"))])
    assert h.answer(r) is None and state(h) == PREPARING_REBALANCE


def test_repeated_join_in_completing_rebalance_gets_same_answer(h):
    r = h.join_new()
    h.advance(0)
    first = h.answer(r)
    again = h.answer(h.join(member_id=first["member_id"]))
    assert again == first


# -- sessions and leaving --------------------------------------------------------

def test_session_expiry_removes_member_and_rebalances(h):
    (a, b), gen = h.stable_group(2, session=500)
    h.advance(400)
    assert h.heartbeat(a, gen) == 0
    h.advance(200)  # b silent for 600 ms
    assert b not in h.sm.groups["g"].members
    assert state(h) == PREPARING_REBALANCE
    assert h.heartbeat(a, gen) == errors.REBALANCE_IN_PROGRESS
    r = h.join(member_id=a, session=500)
    resp = h.answer(r)
    assert resp["generation_id"] == gen + 1 and [m["member_id"] for m in resp["members"]] == [a]


def test_last_member_expiring_empties_group(h):
    (a,), gen = h.stable_group(1, session=500)
    h.advance(501)
    g = h.sm.groups["g"]
    assert g.state == EMPTY and g.generation == gen + 1 and not g.members
    assert h.log[-1][1] is not None  # the empty generation is written


def test_pending_member_id_expires(h):
    resp = h.answer(h.join(session=300))
    assert resp["error_code"] == errors.MEMBER_ID_REQUIRED
    assert h.sm.groups["g"].pending_members
    h.advance(301)
    assert not h.sm.groups["g"].pending_members
    assert h.answer(h.join(member_id=resp["member_id"]))["error_code"] == errors.UNKNOWN_MEMBER_ID


def test_pending_member_blocks_join_completion_until_it_joins(h):
    (a,), gen = h.stable_group(1)
    pending = h.answer(h.join(client_id="b"))["member_id"]
    ra = h.join(member_id=a)
    assert h.answer(ra) is None  # b holds a member id but has not joined yet
    rb = h.join(member_id=pending, client_id="b")
    assert h.answer(ra)["generation_id"] == h.answer(rb)["generation_id"] == gen + 1


def test_leave_group_rebalances_others_and_empties_group(h):
    (a, b), gen = h.stable_group(2)
    out = h.leave((b, None), ("ghost", None))
    assert [m["error_code"] for m in out["members"]] == [0, errors.UNKNOWN_MEMBER_ID]
    assert state(h) == PREPARING_REBALANCE
    r = h.join(member_id=a)
    assert h.answer(r)["generation_id"] == gen + 1
    h.sync(a, gen + 1, [(a, b"all")])
    assert h.leave((a, None))["members"][0]["error_code"] == 0
    g = h.sm.groups["g"]
    assert g.state == EMPTY and g.generation == gen + 2
    assert h.leave(("x", None), group="missing")["members"][0]["error_code"] == errors.UNKNOWN_MEMBER_ID


def test_leaving_member_parked_in_join_is_answered(h):
    (a, b), gen = h.stable_group(2)
    ra = h.join(member_id=a)
    assert h.answer(ra) is None
    h.leave((a, None))
    assert h.answer(ra)["error_code"] == errors.UNKNOWN_MEMBER_ID


def test_pending_sync_expiry_removes_members_that_never_sync(h):
    ra = h.join_new(client_id="a", rebalance=400)
    rb = h.join_new(client_id="b", rebalance=400)
    h.advance(0)
    a, b = h.answer(ra)["member_id"], h.answer(rb)["member_id"]
    leader = h.answer(ra)["leader"]
    other = b if leader == a else a
    h.sync(leader, 1, [(a, b"x"), (b, b"y")])
    assert state(h) == STABLE
    h.advance(401)  # the follower never sent SyncGroup
    assert other not in h.sm.groups["g"].members
    assert state(h) == PREPARING_REBALANCE


def test_sessions_do_not_expire_while_parked(h):
    (a, b), gen = h.stable_group(2, session=200, rebalance=1000)
    ra = h.join(member_id=a, session=200, rebalance=1000)
    h.advance(500)  # a waits for b longer than its session: still a member
    assert a in h.sm.groups["g"].members
    assert b not in h.sm.groups["g"].members  # b neither rejoined nor heartbeat
    assert h.answer(ra)["generation_id"] == gen + 1


# -- static membership ----------------------------------------------------------

def test_static_member_rejoin_keeps_assignment_without_rebalance(h):
    ra = h.join(instance_id="ia", client_id="a", version=7)
    rb = h.join(instance_id="ib", client_id="b", version=7)
    h.advance(0)
    a, b = h.answer(ra)["member_id"], h.answer(rb)["member_id"]
    assert a.startswith("ia-")
    leader = h.answer(ra)["leader"]
    h.sync(a, 1, [(a, b"A"), (b, b"B")] if leader == a else ())
    h.sync(b, 1, [(a, b"A"), (b, b"B")] if leader == b else ())
    follower, finst = (b, "ib") if leader == a else (a, "ia")
    # The follower restarts: same instance id, no member id.
    r = h.join(instance_id=finst, client_id="again", version=7)
    resp = h.answer(r)
    assert resp["error_code"] == 0 and resp["generation_id"] == 1
    new_id = resp["member_id"]
    assert new_id != follower and resp["leader"] == leader
    assert state(h) == STABLE
    assert h.answer(h.sync(new_id, 1, instance_id=finst))["assignment"] == (b"B" if finst == "ib" else b"A")
    # The old incarnation is fenced.
    assert h.heartbeat(follower, 1, instance_id=finst) == errors.FENCED_INSTANCE_ID
    assert h.heartbeat(new_id, 1, instance_id=finst) == 0
    # The new member id was written, so a restart keeps it.
    sm = GroupShard(h.sm.config)
    for k, v in h.log:
        sm.replay(k, v, h.now)
    assert new_id in sm.groups["g"].members and follower not in sm.groups["g"].members


def test_static_leader_rejoin_v9_skips_assignment(h):
    r = h.join(instance_id="ia", version=9)
    h.advance(0)
    a = h.answer(r)["member_id"]
    h.sync(a, 1, [(a, b"A")], instance_id="ia")
    r2 = h.join(instance_id="ia", version=9)
    resp = h.answer(r2)
    assert resp["skip_assignment"] is True and resp["leader"] == resp["member_id"] != a
    assert len(resp["members"]) == 1
    r3 = h.join(instance_id="ia", version=8)
    resp3 = h.answer(r3)
    assert resp3["skip_assignment"] is False and resp3["leader"] == resp["member_id"]
    assert resp3["member_id"] != resp3["leader"] and resp3["members"] == []


def test_static_member_with_new_protocols_triggers_rebalance(h):
    r = h.join(instance_id="ia")
    h.advance(0)
    a = h.answer(r)["member_id"]
    h.sync(a, 1, [(a, b"A")])
    r2 = h.join(instance_id="ia", protocols=[("cooperative-sticky", b""), ("range", b"")])
    assert h.answer(r2)["generation_id"] == 2 and h.answer(r2)["protocol_name"] == "cooperative-sticky"


def test_static_member_rejoin_while_parked_fences_old_request(h):
    (a, b), gen = h.stable_group(2)
    rs = h.join(instance_id="is", client_id="s")
    old = h.answer(rs)
    if old is None:  # parked: the same instance restarts before the rebalance ends
        rs2 = h.join(instance_id="is", client_id="s")
        assert h.answer(rs)["error_code"] == errors.FENCED_INSTANCE_ID
        assert h.answer(rs2) is None


def test_leave_by_instance_id(h):
    r = h.join(instance_id="ia")
    h.advance(0)
    a = h.answer(r)["member_id"]
    h.sync(a, 1, [(a, b"A")])
    out = h.leave(("", "ia"), ("", "nope"))
    assert [m["error_code"] for m in out["members"]] == [0, errors.UNKNOWN_MEMBER_ID]
    assert state(h) == EMPTY


def test_leave_with_wrong_instance_is_fenced(h):
    r = h.join(instance_id="ia")
    h.advance(0)
    a = h.answer(r)["member_id"]
    h.sync(a, 1, [(a, b"A")])
    r2 = h.join(instance_id="ia")
    new_id = h.answer(r2)["member_id"]
    out = h.leave((a, "ia"))
    assert out["members"][0]["error_code"] == errors.FENCED_INSTANCE_ID
    assert new_id in h.sm.groups["g"].members


def test_group_max_size():
    h = Harness(max_group_size=1)
    h.stable_group(1)
    assert h.answer(h.join_new(client_id="b"))["error_code"] == errors.GROUP_MAX_SIZE_REACHED


# -- offsets ---------------------------------------------------------------------

def test_simple_consumer_commits_create_group(h):
    out = h.commit({("t", 0): (5, "meta"), ("t", 1): 7, ("nope", 0): 1})
    codes = {(t["name"], p["partition_index"]): p["error_code"] for t in out["topics"] for p in t["partitions"]}
    assert codes == {("t", 0): 0, ("t", 1): 0, ("nope", 0): errors.UNKNOWN_TOPIC_OR_PARTITION}
    assert state(h) == EMPTY
    assert h.sm.groups["g"].protocol_type is None
    resp = h.sm.fetch_offsets("g", [("t", [0, 1, 2])])
    parts = resp["topics"][0]["partitions"]
    assert [(p["committed_offset"], p["metadata"]) for p in parts] == [(5, "meta"), (7, ""), (-1, "")]
    assert h.committed() == {("t", 0): 5, ("t", 1): 7}
    assert h.sm.fetch_offsets("missing", None) == {"error_code": 0, "topics": []}


def test_member_commits_are_checked(h):
    (a, b), gen = h.stable_group(2)
    assert _codes(h.commit({("t", 0): 1}, generation=gen, member_id=a)) == {0}
    assert _codes(h.commit({("t", 0): 2}, generation=gen + 1, member_id=a)) == {errors.ILLEGAL_GENERATION}
    assert _codes(h.commit({("t", 0): 2}, generation=gen, member_id="x")) == {errors.UNKNOWN_MEMBER_ID}
    assert _codes(h.commit({("t", 0): 2})) == {errors.UNKNOWN_MEMBER_ID}  # simple commit, busy group
    assert _codes(h.commit({("t", 0): 2}, group="nog", generation=3, member_id="m")) == {
        errors.ILLEGAL_GENERATION}
    assert _codes(h.commit({("t", 0): 2}, group="nog", generation=3, member_id="m", version=9)) == {
        errors.GROUP_ID_NOT_FOUND}
    # During the join phase members of the current generation may still commit.
    h.join(member_id=a)
    assert _codes(h.commit({("t", 0): 3}, generation=gen, member_id=b)) == {0}
    # Once the join phase ends, commits wait for the assignment.
    ra = h.join(member_id=b)
    assert h.answer(ra)["generation_id"] == gen + 1
    assert _codes(h.commit({("t", 0): 4}, generation=gen + 1, member_id=b)) == {errors.REBALANCE_IN_PROGRESS}
    assert h.committed() == {("t", 0): 3}


def test_metadata_too_large():
    h = Harness(max_metadata_bytes=10)
    assert _codes(h.commit({("t", 0): (1, "x" * 11)})) == {12}
    assert _codes(h.commit({("t", 0): (1, "x" * 10)})) == {0}


def test_offsets_of_simple_group_expire_with_group():
    h = Harness(offsets_retention_ms=1000)
    h.commit({("t", 0): 1})
    h.now += 500
    h.commit({("t", 1): 2})
    h.now += 600
    h.apply(h.sm.expire_offsets(h.now))
    assert h.committed() == {("t", 1): 2}
    h.now += 500
    h.apply(h.sm.expire_offsets(h.now))
    assert "g" not in h.sm.groups


def test_explicit_retention_time_from_old_clients():
    h = Harness(offsets_retention_ms=10**9)
    h.commit({("t", 0): 1}, retention_ms=100, version=2)
    h.now += 101
    h.apply(h.sm.expire_offsets(h.now))
    assert h.committed() == {}


def test_consumer_group_offsets_expire_from_when_group_emptied():
    h = Harness(offsets_retention_ms=1000)
    (a,), gen = h.stable_group(1)
    h.commit({("t", 0): 1}, generation=gen, member_id=a)
    h.now += 5000  # long past the commit, but the group is active
    h.apply(h.sm.expire_offsets(h.now))
    assert h.committed() == {("t", 0): 1}
    h.leave((a, None))
    h.now += 999
    h.apply(h.sm.expire_offsets(h.now))
    assert h.committed() == {("t", 0): 1}
    h.now += 1
    h.apply(h.sm.expire_offsets(h.now))
    assert "g" not in h.sm.groups


def test_stable_consumer_group_drops_offsets_of_unsubscribed_topics():
    h = Harness(offsets_retention_ms=1000)
    (a,), gen = h.stable_group(1)  # subscribed to "t" only
    h.commit({("t", 0): 1, ("u", 0): 2}, generation=gen, member_id=a)
    h.now += 1000
    h.apply(h.sm.expire_offsets(h.now))
    assert h.committed() == {("t", 0): 1}


def test_topic_deleted_drops_offsets(h):
    h.commit({("t", 0): 1, ("u", 1): 2})
    h.apply(h.sm.topic_deleted(h.now, "u"))
    assert h.committed() == {("t", 0): 1}


# -- admin -----------------------------------------------------------------------

def test_describe_and_list(h):
    (a, b), gen = h.stable_group(2)
    h.commit({("t", 0): 1}, group="simple")
    d = h.sm.describe_group("g")
    assert d["group_state"] == STABLE and d["protocol_type"] == "consumer" and d["protocol_data"] == "range"
    assert {m["member_id"] for m in d["members"]} == {a, b}
    assert all(m["member_assignment"].startswith(b"assign-") for m in d["members"])
    assert d["members"][0]["client_host"] == "/127.0.0.1"
    assert h.sm.describe_group("nope")["group_state"] == "Dead"
    assert h.sm.describe_group("nope", version=6)["error_code"] == errors.GROUP_ID_NOT_FOUND
    assert h.sm.describe_group("g")["authorized_operations"] == -(1 << 31)  # the API's to fill in
    groups = h.sm.list_groups()
    assert {(x["group_id"], x["protocol_type"], x["group_state"]) for x in groups} == {
        ("g", "consumer", STABLE), ("simple", "", EMPTY)}
    assert [x["group_id"] for x in h.sm.list_groups(["empty"])] == ["simple"]
    assert h.sm.list_groups(None, ["consumer"]) == []
    assert len(h.sm.list_groups(None, ["Classic"])) == 2


def test_delete_groups(h):
    h.stable_group(1)
    h.commit({("t", 0): 1, ("t", 1): 2}, group="simple")
    res = h.apply(h.sm.delete_groups(h.now, ["g", "simple", "missing"]))
    assert [r["error_code"] for r in res.response["results"]] == [
        errors.NON_EMPTY_GROUP, 0, errors.GROUP_ID_NOT_FOUND]
    assert "simple" not in h.sm.groups
    assert [v for _, v in res.records] == [None, None, None]  # two offsets and the group
    assert h.committed("simple") == {}


def test_offset_delete(h):
    (a,), gen = h.stable_group(1)  # subscribed to "t"
    h.commit({("t", 0): 1, ("u", 0): 2, ("u", 1): 3}, generation=gen, member_id=a)
    res = h.apply(h.sm.delete_offsets(h.now, group_id="g", topics=[("t", [0]), ("u", [0]), ("zz", [0])],
                                      topic_exists=h.topic_exists))
    codes = {(t["name"], p["partition_index"]): p["error_code"] for t in res.response["topics"]
             for p in t["partitions"]}
    assert codes == {("t", 0): errors.GROUP_SUBSCRIBED_TO_TOPIC, ("u", 0): 0,
                     ("zz", 0): errors.UNKNOWN_TOPIC_OR_PARTITION}
    assert h.committed() == {("t", 0): 1, ("u", 1): 3}
    res = h.apply(h.sm.delete_offsets(h.now, group_id="missing", topics=[], topic_exists=h.topic_exists))
    assert res.response["error_code"] == errors.GROUP_ID_NOT_FOUND


def test_offset_delete_refused_for_busy_non_consumer_group(h):
    r = h.join_new(protocol_type="connect")
    h.advance(0)
    res = h.sm.delete_offsets(h.now, group_id="g", topics=[("t", [0])], topic_exists=h.topic_exists)
    assert res.response["error_code"] == errors.NON_EMPTY_GROUP
    assert h.answer(r)["error_code"] == 0


def _codes(resp) -> set:
    return {p["error_code"] for t in resp["topics"] for p in t["partitions"]}


def test_config_from_broker_properties():
    from odradek.config import BrokerConfig

    cfg = GroupConfig.from_broker(BrokerConfig(props={
        "offsets.topic.num.partitions": "3", "group.initial.rebalance.delay.ms": "0",
        "offsets.retention.minutes": "2"}))
    assert (cfg.num_partitions, cfg.initial_rebalance_delay_ms, cfg.offsets_retention_ms) == (3, 0, 120000)
    assert cfg.min_session_timeout_ms == 6000


def test_empty_group_id_is_invalid_for_offsets(h):
    assert _codes(h.commit({("t", 0): 1}, group="")) == {errors.INVALID_GROUP_ID}
    assert h.sm.fetch_offsets("", None)["error_code"] == errors.INVALID_GROUP_ID
