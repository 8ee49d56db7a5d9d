"""Streams groups (KIP-1071) over the wire with raw requests: the internal
topics the broker creates (with the topology's partition counts and
configs), a creation that fails told in the MISSING_INTERNAL_TOPICS status,
missing source topics, and the group in ListGroups and DeleteGroups."""

from __future__ import annotations

import time

import pytest

from odradek.embedded import EmbeddedBroker
from tests.integration.rawclient import RawClient
from tests.integration.test_groups import create_topic

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker(config={"offsets.topic.num.partitions": "2",
                                "group.streams.initial.rebalance.delay.ms": "0"}) as b:
        yield b


def info(name, partitions=0, **configs):
    return {"name": name, "partitions": partitions, "replication_factor": 0,
            "topic_configs": [{"key": k.replace("_", "."), "value": v} for k, v in configs.items()]}


def topology(source, changelog, repartition=None):
    subs = [{"subtopology_id": "0", "source_topics": [source], "source_topic_regex": [],
             "state_changelog_topics": [changelog], "repartition_sink_topics": [repartition["name"]] if repartition else [],
             "repartition_source_topics": [], "copartition_groups": []}]
    if repartition:
        subs.append({"subtopology_id": "1", "source_topics": [], "source_topic_regex": [], "state_changelog_topics": [],
                     "repartition_sink_topics": [], "repartition_source_topics": [repartition],
                     "copartition_groups": []})
    return {"epoch": 0, "subtopologies": subs}


def hb(rc, group, epoch=0, topo=None, member="m"):
    body = {"group_id": group, "member_id": member, "member_epoch": epoch, "endpoint_information_epoch": 0,
            "rebalance_timeout_ms": 30000 if epoch == 0 else -1, "topology": topo,
            "active_tasks": [] if epoch == 0 else None, "standby_tasks": [] if epoch == 0 else None,
            "warmup_tasks": [] if epoch == 0 else None, "process_id": "p" if epoch == 0 else None}
    for _ in range(50):
        r = rc.request("StreamsGroupHeartbeat", 1, body)
        if r["error_code"] not in (14, 15, 16):
            return r
        time.sleep(0.1)
    return r


def test_internal_topics_created_with_the_topologys_counts_and_configs(broker):
    create_topic(broker, "sr-in", 3)
    rc = RawClient(broker.bootstrap)
    try:
        topo = topology("sr-in", info("sr-app-cl", cleanup_policy="compact"), info("sr-app-rep", 5))
        first = hb(rc, "sr-app", 0, topo)
        assert first["error_code"] == 0 and [s["status_code"] for s in first["status"]] == [3]
        epoch = first["member_epoch"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = hb(rc, "sr-app", epoch)
            epoch = r["member_epoch"]
            if not r["status"] and r["active_tasks"]:
                break
            time.sleep(0.1)
        assert r["status"] == [] and {t["subtopology_id"]: t["partitions"] for t in r["active_tasks"]} == {
            "0": [0, 1, 2], "1": [0, 1, 2, 3, 4]}
        image = broker.core.image
        assert len(image.get("sr-app-cl").partitions) == 3  # the tasks of its subtopology
        assert len(image.get("sr-app-rep").partitions) == 5  # as the topology asks
        assert broker.core.admin.topic_config("sr-app-cl").get("cleanup.policy") == "compact"
        listed = rc.request("ListGroups", 5, {"states_filter": [], "types_filter": ["streams"]})
        assert [(g["group_id"], g["group_type"], g["protocol_type"]) for g in listed["groups"]] == [
            ("sr-app", "streams", "streams")]
        assert hb(rc, "sr-app", -1)["member_epoch"] == -1
        deleted = rc.request("DeleteGroups", 2, {"groups_names": ["sr-app"]})
        assert deleted["results"][0]["error_code"] == 0
    finally:
        rc.close()


def test_a_failed_creation_and_missing_source_topics_are_told_in_the_status(broker):
    create_topic(broker, "sr-in2", 2)
    rc = RawClient(broker.bootstrap)
    try:
        bad = topology("sr-in2", info("sr-bad-cl", cleanup_policy="sideways"))
        first = hb(rc, "sr-bad", 0, bad)
        assert [s["status_code"] for s in first["status"]] == [3]
        deadline = time.monotonic() + 10
        detail = ""
        while time.monotonic() < deadline and "sideways" not in detail:
            time.sleep(0.1)
            detail = hb(rc, "sr-bad", first["member_epoch"])["status"][0]["status_detail"]
        assert "sr-bad-cl" in detail and "sideways" in detail, detail
        assert "sr-bad-cl" not in broker.core.image
        missing = hb(rc, "sr-missing", 0, topology("sr-nope", info("sr-missing-cl")))
        assert [(s["status_code"], s["status_detail"]) for s in missing["status"]] == [
            (1, "Source topics sr-nope are missing.")]
    finally:
        rc.close()


def test_internal_and_illegal_topic_names_are_an_invalid_topology(broker):
    rc = RawClient(broker.bootstrap)
    try:
        internal = hb(rc, "sr-inv", 0, topology("__consumer_offsets", info("sr-inv-cl")))
        assert (internal["error_code"], internal["error_message"]) == (
            130, "Use of Kafka internal topics __consumer_offsets in a Kafka Streams topology is prohibited.")
        illegal = hb(rc, "sr-inv", 0, topology("sr-in", info("bad name")))
        assert (illegal["error_code"], illegal["error_message"]) == (
            130, "Topic names bad name are not valid topic names.")
    finally:
        rc.close()
