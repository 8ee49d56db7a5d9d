"""KIP-932 share groups against an in-process broker: raw requests for the
group side (ShareGroupHeartbeat, ShareGroupDescribe, ListGroups,
DescribeGroups, DeleteGroups)."""

from __future__ import annotations

import uuid

import pytest

from odradek.embedded import EmbeddedBroker
from tests.integration.rawclient import RawClient
from tests.integration.test_groups import create_topic

BROKER_CONFIG = {
    "offsets.topic.num.partitions": "4",
    "auto.create.topics.enable": "false",
    "group.share.heartbeat.interval.ms": "300",
    "group.share.session.timeout.ms": "6000",
    "group.share.record.lock.duration.ms": "1000",
}

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker(config=BROKER_CONFIG) as b:
        yield b


def test_share_group_heartbeat_describe_list_and_delete(broker):
    create_topic(broker, "sg-raw", 2)
    rc = RawClient(broker.bootstrap)
    try:
        found = rc.request("FindCoordinator", 4, {"key_type": 0, "coordinator_keys": ["sg-raw-g"]})
        assert found["coordinators"][0]["error_code"] == 0
        members = [str(uuid.uuid4()) for _ in range(3)]
        epochs = {}
        for m in members:
            hb = rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-raw-g", "member_id": m, "member_epoch": 0,
                                                       "subscribed_topic_names": ["sg-raw"]})
            assert hb["error_code"] == 0, hb
            assert hb["heartbeat_interval_ms"] == 300
            assert hb["assignment"]["topic_partitions"]
            epochs[m] = hb["member_epoch"]
        assert sorted(epochs.values()) == [1, 2, 3]
        d = rc.request("ShareGroupDescribe", 1, {"group_ids": ["sg-raw-g", "sg-nope"],
                                                 "include_authorized_operations": False})["groups"]
        assert d[0]["error_code"] == 0 and d[0]["group_state"] == "Stable" and d[0]["assignor_name"] == "simple"
        assert sorted(x["member_id"] for x in d[0]["members"]) == sorted(members)
        parts = set()
        for x in d[0]["members"]:
            for t in x["assignment"]["topic_partitions"]:
                assert t["topic_name"] == "sg-raw"
                parts |= set(t["partitions"])
        assert parts == {0, 1}
        assert d[1]["error_code"] == 69 and d[1]["error_message"] == "Group sg-nope not found."
        listed = rc.request("ListGroups", 5, {"states_filter": [], "types_filter": ["share"]})["groups"]
        assert [(g["group_id"], g["group_type"], g["protocol_type"], g["group_state"]) for g in listed] == \
            [("sg-raw-g", "share", "share", "Stable")]
        classic = rc.request("DescribeGroups", 6, {"groups": ["sg-raw-g"]})["groups"][0]
        assert classic["error_code"] == 69 and classic["error_message"] == "Group sg-raw-g is not a classic group."
        # the id is taken: a consumer group heartbeat is refused
        cg = rc.request("ConsumerGroupHeartbeat", 1, {
            "group_id": "sg-raw-g", "member_id": "x", "member_epoch": 0, "rebalance_timeout_ms": 5000,
            "subscribed_topic_names": ["sg-raw"], "topic_partitions": []})
        assert cg["error_code"] == 69
        # a non-empty group cannot be deleted; once everyone left it can
        assert rc.request("DeleteGroups", 2, {"groups_names": ["sg-raw-g"]})["results"][0]["error_code"] == 68
        for m in members:
            left = rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-raw-g", "member_id": m, "member_epoch": -1})
            assert left["error_code"] == 0 and left["member_epoch"] == -1
        d = rc.request("ShareGroupDescribe", 1, {"group_ids": ["sg-raw-g"]})["groups"][0]
        assert d["group_state"] == "Empty" and d["members"] == []
        assert rc.request("DeleteGroups", 2, {"groups_names": ["sg-raw-g"]})["results"][0]["error_code"] == 0
        listed = rc.request("ListGroups", 5, {"states_filter": [], "types_filter": ["share"]})["groups"]
        assert listed == []
    finally:
        rc.close()
