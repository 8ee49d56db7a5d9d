"""Consumer group records: their encoding, replaying them rebuilds the same
groups, and classic and consumer groups sharing the table."""

from __future__ import annotations

import struct

from odradek.coordinator import records as rec
from odradek.coordinator.config import ConsumerGroupConfig
from odradek.coordinator.consumer_groups import (
    UNREVOKED_PARTITIONS,
    ConsumerGroup,
)
from odradek.coordinator.classic_groups import EMPTY, ClassicGroup
from odradek.coordinator.shard import GroupShard
from odradek.protocol import errors

from tests.unit.consumer_group_harness import T0, Client, ConsumerHarness, tid


def replayed(h: ConsumerHarness, now: int | None = None) -> GroupShard:
    sm = GroupShard(h.sm.config, h.sm.consumer.config, h.topic_view)
    for key, value in h.log:
        sm.replay(key, value, h.now if now is None else now)
    return sm


def test_record_keys_and_values_use_kafka_numbering():
    for kind, sub in ((3, None), (4, None), (5, "m"), (6, None), (7, "m"), (8, "m"), (16, "^a.*")):
        key = rec.consumer_key(kind, "grp", sub)
        assert struct.unpack(">h", key[:2])[0] == kind
        assert rec.decode_key(key) == rec.ConsumerKey(kind, "grp", sub)
    # Member-keyed records: version, group, member id (int16-prefixed strings).
    assert rec.consumer_key(8, "g", "m") == b"\x00\x08\x00\x01g\x00\x01m"
    value = rec.consumer_value(rec.CG_CURRENT_ASSIGNMENT, {
        "member_epoch": 3, "previous_member_epoch": 2, "state": 1,
        "assigned_partitions": [{"topic_id": tid("t"), "partitions": [0, 2]}],
        "partitions_pending_revocation": [{"topic_id": tid("t"), "partitions": [1]}]})
    assert value[:2] == b"\x00\x00"
    d = rec.decode_consumer_value(rec.CG_CURRENT_ASSIGNMENT, value)
    assert (d["member_epoch"], d["previous_member_epoch"], d["state"]) == (3, 2, 1)
    assert d["assigned_partitions"][0]["partitions"] == [0, 2]
    assert rec.decode_consumer_value(rec.CG_METADATA, rec.consumer_value(3, {"epoch": 9}))["epoch"] == 9


def history() -> ConsumerHarness:
    """A log with joins, revocations in progress, a static member away, a
    regex, offsets, a member that left and a deleted group."""
    h = ConsumerHarness(topics={"t": 4, "u": 2, "ux": 1})
    a = Client(h, "a", topics=["t", "u"])
    b = Client(h, "b", topics=["t"], instance="inst-b")
    for _ in range(3):
        a.step(), b.step()
    h.commit("a", a.epoch, {("t", 0): 10, ("u", 1): 3})
    c = Client(h, "c", topics=["t"], lazy=10**6)
    c.step()
    a.step()  # a is told to revoke: stays mid-rebalance
    h.hb("b", -2, instance="inst-b")  # static member away
    r = h.hb("r", 0, topics=None, regex="u.*", group="rx")
    assert r["assignment"] == {"u": {0, 1}, "ux": {0}}
    h.hb("gone", 0, group="gone")
    h.commit("gone", 1, {("t", 1): 1}, group="gone")
    h.hb("gone", -1, group="gone")
    h.apply(h.sm.delete_groups(h.now, ["gone"]))
    return h


def test_replay_rebuilds_the_same_groups():
    h = history()
    assert "gone" not in h.sm.groups
    assert h.member("a").state == UNREVOKED_PARTITIONS
    sm = replayed(h)
    assert sm.durable_view() == h.sm.durable_view()
    g = sm.groups["g"]
    assert isinstance(g, ConsumerGroup) and g.state == "Reconciling"
    assert g.static_members == {"inst-b": "b"} and g.members["b"].member_epoch == -2
    assert sm.groups["rx"].resolved_regexes == {"u.*": frozenset({"u", "ux"})}
    assert sm.fetch_offsets("g", None) == h.sm.fetch_offsets("g", None)
    # Runtime state comes back too: sessions, and the revocation deadline of a.
    assert set(g.session_deadlines) == {"a", "b", "c"}
    assert g.rebalance_deadlines["a"][1] == g.members["a"].member_epoch


def test_replayed_group_goes_on():
    h = history()
    h2 = ConsumerHarness(topics={"t": 4, "u": 2, "ux": 1})
    h2.sm = replayed(h)
    h2.now = h.now
    a_epoch = h2.member("a").member_epoch
    kept = h2.assigned("a")
    resp = h2.hb("a", a_epoch, owned=kept)  # a finishes revoking
    assert resp["error_code"] == 0 and resp["member_epoch"] == h2.group().assignment_epoch
    # The static instance comes back under a new id and takes over its target
    # (which shrank for c while it was away: it gives up nothing it does not own).
    target = {h2.name(t): set(ps) for t, ps in h2.group().target["b"].items()}
    assert target["t"] < h2.assigned("b")["t"]
    resp = h2.hb("b2", 0, instance="inst-b")
    assert resp["error_code"] == 0 and resp["assignment"] == target
    assert "b" not in h2.group().members and h2.group().static_members == {"inst-b": "b2"}
    assert h2.hb("zz", 1, group="gone")["error_code"] == errors.GROUP_ID_NOT_FOUND


def test_replay_at_a_later_time_expires_sessions():
    h = history()
    sm = replayed(h, now=T0)
    sm.consumer.config = ConsumerGroupConfig(session_timeout_ms=1000)
    res = sm.tick(T0 + 50_000)
    for key, value in res.records:
        sm.replay(key, value, T0 + 50_000)
    assert sm.groups["g"].members == {} and sm.groups["g"].state == EMPTY


def test_classic_and_consumer_groups_share_the_table():
    h = ConsumerHarness()
    sm = h.sm
    h.hb("a", 0, group="cg")

    def join(group, member_id=""):
        return h.apply(sm.join_group(h.now, group_id=group, member_id=member_id, instance_id=None,
                                     session_timeout=10000, rebalance_timeout=10000, protocol_type="consumer",
                                     protocols=[("range", b"")], require_known_member_id=False))

    assert join("cg").response["error_code"] == errors.INCONSISTENT_GROUP_PROTOCOL
    assert sm.sync_group(h.now, group_id="cg", generation=1, member_id="a", instance_id=None,
                         protocol_type=None, protocol_name=None, assignments=[]).response["error_code"] \
        == errors.UNKNOWN_MEMBER_ID
    assert sm.heartbeat(h.now, group_id="cg", generation=1, member_id="a",
                        instance_id=None).response["error_code"] == errors.UNKNOWN_MEMBER_ID
    # A classic group with a member (parked in its join) refuses the consumer protocol.
    parked = join("classic")
    assert parked.wait is not None
    assert h.hb("x", 0, group="classic")["error_code"] == errors.GROUP_ID_NOT_FOUND
    groups = sm.list_groups()
    assert {g["group_id"]: g["group_type"] for g in groups} == {"cg": "consumer", "classic": "classic"}
    assert [g["group_id"] for g in sm.list_groups(types=["consumer"])] == ["cg"]
    assert [g["group_id"] for g in sm.list_groups(states=["stable"])] == ["cg"]
    assert sm.describe_group("cg", 5)["group_state"] == "Dead"
    assert sm.describe_group("cg", 6)["error_code"] == errors.GROUP_ID_NOT_FOUND
    described = sm.consumer_group_describe(["cg", "classic", "none"])
    assert [d["error_code"] for d in described] == [0, errors.GROUP_ID_NOT_FOUND, errors.GROUP_ID_NOT_FOUND]
    assert described[0]["members"][0]["assignment"]["topic_partitions"][0]["topic_name"] == "t"
    assert sm.delete_groups(h.now, ["cg"]).response["results"][0]["error_code"] == errors.NON_EMPTY_GROUP

    # An empty consumer group turns classic on JoinGroup, keeping its offsets.
    h.commit("a", 1, {("t", 0): 4}, group="cg")
    h.hb("a", -1, group="cg")
    res = join("cg")
    assert isinstance(sm.groups["cg"], ClassicGroup) and res.wait is not None
    assert sm.offsets.of("cg")[("t", 0)].offset == 4
    # An empty classic group turns into a consumer group on a join with epoch 0.
    h.commit("", -1, {("t", 1): 8}, group="simple")
    assert type(sm.groups["simple"]) is ClassicGroup
    resp = h.hb("s", 0, group="simple")
    assert resp["error_code"] == 0 and isinstance(sm.groups["simple"], ConsumerGroup)
    assert sm.offsets.of("simple")[("t", 1)].offset == 8
    again = replayed(h)
    assert again.durable_view()["simple"] == sm.durable_view()["simple"]
    # (Classic joins still under way wrote nothing yet: "cg" is an empty classic group.)
    assert type(again.groups["cg"]) is ClassicGroup and again.offsets.of("cg") == sm.offsets.of("cg")


def test_delete_and_expire_consumer_groups():
    h = ConsumerHarness()
    sm = h.sm
    sm.config.offsets_retention_ms = 1000
    h.hb("a", 0, group="cg")
    h.commit("a", 1, {("t", 0): 1, ("u", 0): 2}, group="cg")
    h.now += 2000
    res = h.apply(sm.expire_offsets(h.now))
    # Only the offset of a topic the group no longer subscribes to expires.
    assert sorted(sm.offsets.of("cg")) == [("t", 0)] and len(res.records) == 1
    assert sm.delete_offsets(h.now, group_id="cg", topics=[("t", [0])],
                             topic_exists=lambda n, p: True).response["topics"][0]["partitions"][0][
        "error_code"] == errors.GROUP_SUBSCRIBED_TO_TOPIC
    h.hb("a", -1, group="cg")
    h.hb("b", 0, group="cg2")
    h.hb("b", -1, group="cg2")
    res = h.apply(sm.delete_groups(h.now, ["cg2"]))
    assert res.response["results"] == [{"group_id": "cg2", "error_code": 0}] and "cg2" not in sm.groups
    h.now += 2000
    h.apply(sm.expire_offsets(h.now))
    assert "cg" not in sm.groups  # empty, and its last offsets expired
    assert replayed(h).durable_view() == sm.durable_view() == {}
