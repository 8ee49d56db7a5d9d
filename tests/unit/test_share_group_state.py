"""KIP-932 share groups in a coordinator shard (odradek/coordinator/share_groups.py):
ShareGroupHeartbeat, the simple assignor, ShareGroupDescribe, group id
collisions with the other group types, and replay rebuilding the same groups."""

from __future__ import annotations

import struct

from odradek.coordinator import records as rec
from odradek.coordinator.config import ConsumerGroupConfig, GroupConfig, ShareGroupConfig
from odradek.coordinator.consumer_groups import DictTopics
from odradek.coordinator.share_groups import ShareMember, simple_assign
from odradek.coordinator.shard import GroupShard
from odradek.protocol import errors

from tests.unit.consumer_group_harness import tid
from tests.unit.group_harness import ShardHarness

NAMES = {}


class ShareHarness(ShardHarness):
    def __init__(self, topics=None, **share_config):
        self.topic_view = DictTopics({n: (tid(n), p) for n, p in (topics or {"t": 1, "u": 3}).items()})
        NAMES.update({tid(n): n for n in self.topic_view.topics})
        self.share_config = ShareGroupConfig(**share_config)
        super().__init__(self._shard())

    def _shard(self) -> GroupShard:
        return GroupShard(GroupConfig(num_partitions=4), ConsumerGroupConfig(), self.topic_view,
                          share_config=self.share_config)

    def hb(self, member, epoch, topics=None, group="g") -> dict:
        if epoch == 0 and topics is None:
            topics = ["t"]
        res = self.apply(self.sm.share_group_heartbeat(
            self.now, group_id=group, member_id=member, member_epoch=epoch, rack_id=None,
            subscribed_topic_names=topics, client_id="c", client_host="/127.0.0.1"))
        resp = dict(res.response)
        if resp.get("assignment") is not None:
            resp["assignment"] = {NAMES[e["topic_id"]]: set(e["partitions"])
                                  for e in resp["assignment"]["topic_partitions"]}
        return resp

    def replayed(self) -> GroupShard:
        sm = self._shard()
        for key, value in self.log:
            sm.replay(key, value, self.now)
        return sm


def test_share_record_keys_use_kafka_numbering():
    for kind, sub in ((10, "m"), (11, None), (12, None), (13, "m"), (14, "m")):
        key = rec.share_key(kind, "grp", sub)
        assert struct.unpack(">h", key[:2])[0] == kind
        assert rec.decode_key(key) == rec.ShareKey(kind, "grp", sub)


def test_three_members_of_one_partition_all_get_it():
    h = ShareHarness()
    a = h.hb("a", 0)
    assert a["error_code"] == 0 and a["member_epoch"] == 1 and a["assignment"] == {"t": {0}}
    b = h.hb("b", 0)
    assert b["member_epoch"] == 2 and b["assignment"] == {"t": {0}}
    c = h.hb("c", 0)
    assert c["member_epoch"] == 3 and c["assignment"] == {"t": {0}}
    # a catches up to the new epoch; its assignment did not change, so none is sent
    again = h.hb("a", 1)
    assert again["member_epoch"] == 3 and again["assignment"] is None
    d = h.sm.share_group_describe(["g"])[0]
    assert d["group_state"] == "Stable" and d["group_epoch"] == 3 and d["assignor_name"] == "simple"
    assert sorted(m["member_id"] for m in d["members"]) == ["a", "b", "c"]
    assert h.sm.list_groups() == [{"group_id": "g", "protocol_type": "share", "group_state": "Stable",
                                   "group_type": "share"}]
    assert h.sm.list_groups(types=["consumer"]) == []


def test_every_partition_gets_a_member():
    h = ShareHarness()
    assert h.hb("a", 0, ["u"])["assignment"] == {"u": {0, 1, 2}}
    h.hb("b", 0, ["u"])
    h.hb("a", 1)
    g = h.sm.groups["g"]
    union = set()
    for m in g.members.values():
        union |= set(m.assigned.get(tid("u"), ()))
    assert union == {0, 1, 2}
    assert g.members["b"].assigned  # the newcomer is hashed onto one partition


def test_simple_assignor_hashes_members_and_round_robins_the_rest():
    meta = {"u": (tid("u"), 4)}
    members = {m: ShareMember(m, subscribed_topic_names=("u",)) for m in ("m1", "m2")}
    out = simple_assign(members, {}, meta)
    parts = [set(out[m][tid("u")]) for m in ("m1", "m2")]
    assert parts[0] | parts[1] == {0, 1, 2, 3}
    # what a member held stays its own
    out2 = simple_assign(members, {"m1": {tid("u"): frozenset({0, 1, 2, 3})}}, meta)
    assert out2["m1"][tid("u")] == frozenset({0, 1, 2, 3})
    # a member no longer subscribed to the topic loses it
    members["m1"] = ShareMember("m1", subscribed_topic_names=("t",))
    out3 = simple_assign(members, {"m1": {tid("u"): frozenset({0})}}, meta)
    assert out3["m1"] == {}


def test_leaving_and_session_expiry_remove_members():
    h = ShareHarness(session_timeout_ms=1000)
    h.hb("a", 0)
    h.hb("b", 0)
    left = h.hb("b", -1)
    assert left["error_code"] == 0 and left["member_epoch"] == -1
    assert set(h.sm.groups["g"].members) == {"a"}
    assert h.hb("b", 2)["error_code"] == errors.UNKNOWN_MEMBER_ID
    h.advance(1001)
    g = h.sm.groups["g"]
    assert g.members == {} and g.state == "Empty"
    assert h.sm.share_group_describe(["g"])[0]["group_state"] == "Empty"
    # an empty share group is not expired with offsets
    h.apply(h.sm.expire_offsets(h.now + 10**10))
    assert "g" in h.sm.groups
    # and DeleteGroups deletes it
    res = h.apply(h.sm.delete_groups(h.now, ["g"]))
    assert res.response["results"][0]["error_code"] == 0
    assert "g" not in h.sm.groups
    assert "g" not in h.replayed().groups


def test_epochs_are_checked():
    h = ShareHarness()
    h.hb("a", 0)
    h.hb("b", 0)
    assert h.hb("a", 5)["error_code"] == errors.FENCED_MEMBER_EPOCH
    assert h.hb("a", 1)["member_epoch"] == 2  # the previous epoch is accepted
    assert h.hb("x", 1)["error_code"] == errors.UNKNOWN_MEMBER_ID
    assert h.hb("a", 2, group="nope")["error_code"] == errors.GROUP_ID_NOT_FOUND


def test_invalid_heartbeats():
    h = ShareHarness()
    assert h.hb("", 0)["error_code"] == errors.INVALID_REQUEST
    assert h.hb("a", 0, topics=[])["error_code"] == errors.INVALID_REQUEST
    assert h.hb("a", 0, group="")["error_code"] == errors.INVALID_REQUEST
    assert h.hb("a", -2)["error_code"] == errors.INVALID_REQUEST
    assert h.log == []


def test_a_group_id_is_of_one_type():
    h = ShareHarness()
    h.hb("a", 0)
    h.hb("a", -1)
    # an empty share group is not taken over by a consumer group, nor a classic one
    r = h.apply(h.sm.consumer_group_heartbeat(
        h.now, group_id="g", member_id="m", member_epoch=0, rebalance_timeout_ms=30000,
        subscribed_topic_names=["t"], topic_partitions=[]))
    assert r.response["error_code"] == errors.GROUP_ID_NOT_FOUND
    j = h.apply(h.sm.join_group(h.now, group_id="g", member_id="", instance_id=None, session_timeout=10000,
                                rebalance_timeout=10000, protocol_type="consumer", protocols=[("range", b"")]))
    assert j.response["error_code"] == errors.INCONSISTENT_GROUP_PROTOCOL
    # a consumer group's id is not taken by a share group
    h.apply(h.sm.consumer_group_heartbeat(
        h.now, group_id="c", member_id="m", member_epoch=0, rebalance_timeout_ms=30000,
        subscribed_topic_names=["t"], topic_partitions=[]))
    s = h.hb("a", 0, group="c")
    assert s["error_code"] == errors.GROUP_ID_NOT_FOUND
    assert s["error_message"] == "Group c is not a share group."
    d = h.sm.share_group_describe(["c", "zz"])
    assert [x["error_code"] for x in d] == [errors.GROUP_ID_NOT_FOUND] * 2
    assert d[0]["error_message"] == "Group c is not a share group."
    assert h.sm.consumer_group_describe(["g"])[0]["error_code"] == errors.GROUP_ID_NOT_FOUND
    assert h.sm.describe_group("g", 6)["error_code"] == errors.GROUP_ID_NOT_FOUND
    # offsets cannot be committed to a share group
    c = h.apply(h.sm.commit_offsets(h.now, group_id="g", generation=-1, member_id="", instance_id=None,
                                    topics=[("t", [(0, 5, -1, "")])], version=8,
                                    topic_exists=lambda n, p: True))
    codes = {p["error_code"] for t in c.response["topics"] for p in t["partitions"]}
    assert codes == {errors.GROUP_ID_NOT_FOUND}


def test_replay_rebuilds_the_same_groups():
    h = ShareHarness()
    h.hb("a", 0, ["t", "u"])
    h.hb("b", 0, ["u"])
    h.hb("c", 0, ["t"])
    h.hb("a", 1)
    h.hb("c", -1)
    assert h.replayed().durable_view() == h.sm.durable_view()


def test_a_new_partition_bumps_the_epoch_on_the_next_heartbeat():
    h = ShareHarness()
    first = h.hb("a", 0, ["u"])
    h.topic_view.topics["u"] = (tid("u"), 4)
    nxt = h.hb("a", first["member_epoch"])
    assert nxt["member_epoch"] == first["member_epoch"] + 1
    assert nxt["assignment"] == {"u": {0, 1, 2, 3}}


def test_departures_are_reported_for_the_share_partitions():
    h = ShareHarness(session_timeout_ms=1000)
    h.hb("a", 0)
    h.hb("b", 0)
    assert h.sm.share.drain_departures() == []
    h.hb("b", -1)
    assert h.sm.share.drain_departures() == [("g", "b")]
    h.advance(1001)
    assert h.sm.share.drain_departures() == [("g", "a")]
    h.apply(h.sm.delete_groups(h.now, ["g"]))
    assert h.sm.share.drain_departures() == [("g", None)]
