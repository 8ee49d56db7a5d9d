"""The authorisation answers of each API on the wire, byte for byte as Kafka
shapes them, from a raw client on a PLAINTEXT listener (principal
User:ANONYMOUS, allowed DESCRIBE on topic "a" only); the admin sets things up
over SASL with confluent-kafka."""

from __future__ import annotations

import pytest

from tests.integration import test_acls as T
from tests.integration.rawclient import RawClient

pytestmark = pytest.mark.timeout(120)

TOPIC_DENIED, GROUP_DENIED, CLUSTER_DENIED, TXN_DENIED = 29, 30, 31, 53


@pytest.fixture(scope="module")
def broker():
    from confluent_kafka.admin import AdminClient

    config = T.broker_config(**{
        "listeners": "SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
        "auto.create.topics.enable": "true",
    })
    b = T.start(config)
    try:
        b.plain = "127.0.0.1:%d" % b.core.endpoints["PLAINTEXT"][1]
        T.create_topics(b, "a", "b")
        admin = AdminClient(T.conf(b, "admin"))
        for f in admin.create_acls([T.acl("TOPIC", "a", "User:ANONYMOUS", "DESCRIBE")]).values():
            f.result(timeout=10)
        yield b
    finally:
        b.__exit__(None, None, None)


@pytest.fixture
def raw(broker):
    c = RawClient(broker.plain)
    yield c
    c.close()


def test_metadata_lists_only_what_may_be_described_and_never_auto_creates_without_create(broker, raw):
    full = raw.request("Metadata", 12, {"topics": None})
    assert [t["name"] for t in full["topics"]] == ["a"]
    named = raw.request("Metadata", 12, {"topics": [{"name": n} for n in ("a", "b", "zz-new")],
                                         "allow_auto_topic_creation": True})
    assert {t["name"]: t["error_code"] for t in named["topics"]} == {"a": 0, "b": TOPIC_DENIED,
                                                                     "zz-new": TOPIC_DENIED}
    assert "zz-new" not in broker.core.image


def test_partition_apis_answer_topic_authorization_failed(raw):
    lo = raw.request("ListOffsets", 7, {"replica_id": -1, "topics": [
        {"name": n, "partitions": [{"partition_index": 0, "timestamp": -1}]} for n in ("a", "b")]})
    assert {t["name"]: t["partitions"][0]["error_code"] for t in lo["topics"]} == {"a": 0, "b": TOPIC_DENIED}
    fetch = raw.request("Fetch", 12, {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 0, "topics": [
        {"topic": "a", "partitions": [{"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1024}]}]})
    assert [(t["topic"], t["partitions"][0]["error_code"]) for t in fetch["responses"]] == [("a", TOPIC_DENIED)]
    produce = raw.request("Produce", 9, {"acks": 1, "timeout_ms": 1000, "topic_data": [
        {"name": "a", "partition_data": [{"index": 0, "records": None}]}]})
    assert produce["responses"][0]["partition_responses"][0]["error_code"] == TOPIC_DENIED


def test_group_transaction_and_cluster_apis(raw):
    assert raw.request("InitProducerId", 4, {"transactional_id": None, "transaction_timeout_ms": 60000})[
        "error_code"] == CLUSTER_DENIED
    assert raw.request("InitProducerId", 4, {"transactional_id": "tx", "transaction_timeout_ms": 60000})[
        "error_code"] == TXN_DENIED
    assert raw.request("EndTxn", 3, {"transactional_id": "tx", "producer_id": 1, "producer_epoch": 0,
                                     "committed": True})["error_code"] == TXN_DENIED
    add = raw.request("AddPartitionsToTxn", 3, {
        "v3_and_below_transactional_id": "tx", "v3_and_below_producer_id": 1, "v3_and_below_producer_epoch": 0,
        "v3_and_below_topics": [{"name": "a", "partitions": [0, 1]}]})
    assert [p["partition_error_code"] for t in add["results_by_topic_v3_and_below"]
            for p in t["results_by_partition"]] == [TXN_DENIED, TXN_DENIED]
    assert raw.request("DescribeTransactions", 0, {"transactional_ids": ["tx"]})["transaction_states"][0][
        "error_code"] == TXN_DENIED
    assert raw.request("WriteTxnMarkers", 1, {"markers": [{
        "producer_id": 1, "producer_epoch": 0, "transaction_result": True, "coordinator_epoch": 0,
        "topics": [{"name": "a", "partition_indexes": [0]}]}]})["markers"][0]["topics"][0]["partitions"][0][
        "error_code"] == CLUSTER_DENIED
    fc = raw.request("FindCoordinator", 4, {"key_type": 0, "coordinator_keys": ["g1", "g2"]})
    assert {c["key"]: c["error_code"] for c in fc["coordinators"]} == {"g1": GROUP_DENIED, "g2": GROUP_DENIED}
    of = raw.request("OffsetFetch", 8, {"groups": [{"group_id": "g1", "topics": None}]})
    assert of["groups"][0]["error_code"] == GROUP_DENIED
    assert raw.request("JoinGroup", 7, {"group_id": "g1", "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000,
                                        "member_id": "", "protocol_type": "consumer", "protocols": []})[
        "error_code"] == GROUP_DENIED
    assert raw.request("DescribeAcls", 3, {"resource_type_filter": 1, "pattern_type_filter": 1, "operation": 1,
                                           "permission_type": 1})["error_code"] == CLUSTER_DENIED
    created = raw.request("CreateAcls", 3, {"creations": [
        {"resource_type": 2, "resource_name": "b", "resource_pattern_type": 3, "principal": "User:ANONYMOUS",
         "host": "*", "operation": 2, "permission_type": 3}]})
    assert [r["error_code"] for r in created["results"]] == [CLUSTER_DENIED]
    assert raw.request("DescribeUserScramCredentials", 0, {"users": None})["error_code"] == CLUSTER_DENIED
    lg = raw.request("ListGroups", 4, {"states_filter": []})
    assert lg["error_code"] == 0 and lg["groups"] == []


def test_elect_leaders_needs_alter_on_the_cluster(raw):
    res = raw.request("ElectLeaders", 2, {"election_type": 0, "timeout_ms": 1000,
                                          "topic_partitions": [{"topic": "a", "partitions": [0]}]})
    assert res["error_code"] == CLUSTER_DENIED
    assert res["replica_election_results"] == [{"topic": "a", "partition_result": [
        {"partition_id": 0, "error_code": CLUSTER_DENIED, "error_message": None}]}]



def test_reassignments_need_alter_and_describe_on_the_cluster(raw):
    res = raw.request("AlterPartitionReassignments", 1, {
        "timeout_ms": 1000, "allow_replication_factor_change": True,
        "topics": [{"name": "a", "partitions": [{"partition_index": 0, "replicas": [1]}]}]})
    assert res["error_code"] == CLUSTER_DENIED
    assert res["responses"] == [{"name": "a", "partitions": [
        {"partition_index": 0, "error_code": CLUSTER_DENIED, "error_message": None}]}]
    res = raw.request("ListPartitionReassignments", 0, {"timeout_ms": 1000, "topics": None})
    assert res["error_code"] == CLUSTER_DENIED and res["topics"] == []


def test_describe_topic_partitions_filters_as_metadata_does(raw):
    full = raw.request("DescribeTopicPartitions", 0, {"topics": [], "response_partition_limit": 100,
                                                     "cursor": None})
    assert [t["name"] for t in full["topics"]] == ["a"]
    named = raw.request("DescribeTopicPartitions", 0, {"topics": [{"name": "a"}, {"name": "b"}],
                                                      "response_partition_limit": 100, "cursor": None})
    assert {t["name"]: t["error_code"] for t in named["topics"]} == {"a": 0, "b": TOPIC_DENIED}


def test_describe_log_dirs_needs_describe_on_the_cluster(raw):
    res = raw.request("DescribeLogDirs", 4, {"topics": None})
    assert res["error_code"] == CLUSTER_DENIED and res["results"] == []


def test_streams_groups_need_read_on_the_group_describe_on_topics_and_create_for_internal_topics(broker, raw):
    from confluent_kafka.admin import AdminClient

    info = {"name": "sg-acl-cl", "partitions": 0, "replication_factor": 0, "topic_configs": []}
    topology = {"epoch": 0, "subtopologies": [{
        "subtopology_id": "0", "source_topics": ["a"], "source_topic_regex": [], "state_changelog_topics": [info],
        "repartition_sink_topics": [], "repartition_source_topics": [], "copartition_groups": []}]}

    def hb(group):
        return raw.request("StreamsGroupHeartbeat", 1, {
            "group_id": group, "member_id": "m", "member_epoch": 0, "endpoint_information_epoch": 0,
            "rebalance_timeout_ms": 30000, "topology": topology, "active_tasks": [], "standby_tasks": [],
            "warmup_tasks": [], "process_id": "p"})

    assert hb("sg-acl")["error_code"] == GROUP_DENIED
    admin = AdminClient(T.conf(broker, "admin"))
    for f in admin.create_acls([T.acl("GROUP", "sg-acl", "User:ANONYMOUS", "READ")]).values():
        f.result(timeout=10)
    denied = hb("sg-acl")
    assert (denied["error_code"], denied["error_message"]) == (TOPIC_DENIED, None)  # no DESCRIBE on the changelog
    for f in admin.create_acls([T.acl("TOPIC", "sg-acl-cl", "User:ANONYMOUS", "DESCRIBE")]).values():
        f.result(timeout=10)
    joined = hb("sg-acl")
    assert joined["error_code"] == 0
    missing = [st["status_detail"] for st in joined["status"] if st["status_code"] == 3]  # MISSING_INTERNAL_TOPICS
    assert len(missing) == 1 and "Unauthorized to CREATE on topics sg-acl-cl." in missing[0], joined["status"]
    assert "sg-acl-cl" not in broker.core.image
    described = raw.request("StreamsGroupDescribe", 0, {"group_ids": ["sg-acl", "sg-other"],
                                                        "include_authorized_operations": False})
    assert [g["error_code"] for g in described["groups"]] == [0, GROUP_DENIED]  # READ implies DESCRIBE


def test_a_consumer_group_heartbeat_needs_describe_on_the_topics_it_subscribes_to(broker, raw):
    """KIP-848 as Kafka 4.4's KafkaApis checks it: READ on the group, then
    DESCRIBE on each topic subscribed by name; one refused and the answer is
    TOPIC_AUTHORIZATION_FAILED without a message, the member not joined."""
    from confluent_kafka.admin import AdminClient

    def hb(group, topics):
        return raw.request("ConsumerGroupHeartbeat", 0, {
            "group_id": group, "member_id": "m-1", "member_epoch": 0, "rebalance_timeout_ms": 30000,
            "subscribed_topic_names": topics, "topic_partitions": []})

    assert hb("cg-acl", ["a"])["error_code"] == GROUP_DENIED
    admin = AdminClient(T.conf(broker, "admin"))
    for f in admin.create_acls([T.acl("GROUP", "cg-acl", "User:ANONYMOUS", "READ")]).values():
        f.result(timeout=10)
    denied = hb("cg-acl", ["a", "b"])  # DESCRIBE on a, not on b
    assert (denied["error_code"], denied["error_message"]) == (TOPIC_DENIED, None), denied
    assert hb("cg-acl", ["zz-unknown"])["error_code"] == TOPIC_DENIED  # unknown topics are checked too
    joined = hb("cg-acl", ["a"])
    assert joined["error_code"] == 0 and joined["member_epoch"] >= 1, joined


def test_a_regex_subscription_resolves_to_the_topics_the_member_may_describe(broker, raw):
    """As Kafka 4.4 resolves a KIP-848 regex under ACLs: ^[ab]$ matches a and
    b, but the member (DESCRIBE on a only) is assigned a alone."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(T.conf(broker, "admin"))
    for f in admin.create_acls([T.acl("GROUP", "cg-regex", "User:ANONYMOUS", "READ")]).values():
        f.result(timeout=10)
    r = raw.request("ConsumerGroupHeartbeat", 1, {
        "group_id": "cg-regex", "member_id": "m-r", "member_epoch": 0, "rebalance_timeout_ms": 30000,
        "instance_id": None, "rack_id": None, "server_assignor": None, "subscribed_topic_names": None,
        "subscribed_topic_regex": "^[ab]$", "topic_partitions": []})
    assert r["error_code"] == 0, r
    ids = {t.topic_id: name for name, t in ((n, broker.core.image.get(n)) for n in ("a", "b"))}
    assert [ids[bytes(t["topic_id"])] if bytes(t["topic_id"]) in ids else t["topic_id"]
            for t in r["assignment"]["topic_partitions"]] == ["a"], r
