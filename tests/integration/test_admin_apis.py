"""Topic administration and config APIs through real admin clients."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic,
)

from odradek.protocol import errors
from tests.integration.rawclient import RawClient


@pytest.fixture
def admin(odradek_broker):
    return AdminClient({"bootstrap.servers": odradek_broker.bootstrap})


def test_create_with_configs_validate_only_and_errors(admin, odradek_broker):
    fs = admin.create_topics([NewTopic("cfg-topic", 2, 1, config={"retention.ms": "1000", "cleanup.policy": "compact"})])
    fs["cfg-topic"].result(10)
    # validate_only creates nothing.
    admin.create_topics([NewTopic("validate-only", 2, 1)], validate_only=True)["validate-only"].result(10)
    assert "validate-only" not in admin.list_topics(timeout=10).topics
    errors = {  # librdkafka's names for Kafka's error codes
        "cfg-topic": "TOPIC_ALREADY_EXISTS",
        "bad/name": "TOPIC_EXCEPTION",
        "bad-config": "INVALID_CONFIG",
        "bad-value": "INVALID_CONFIG",
        "rf-three": "INVALID_REPLICATION_FACTOR",
    }
    new = [NewTopic("cfg-topic", 1, 1), NewTopic("bad/name", 1, 1),
           NewTopic("bad-config", 1, 1, config={"no.such.config": "1"}),
           NewTopic("bad-value", 1, 1, config={"retention.ms": "abc"}),
           NewTopic("rf-three", 1, 3)]
    fs = admin.create_topics(new)
    for name, expected in errors.items():
        with pytest.raises(KafkaException) as e:
            fs[name].result(10)
        assert e.value.args[0].name() == expected, (name, e.value.args[0])


def test_describe_and_alter_configs(admin, odradek_broker):
    admin.create_topics([NewTopic("alter-me", 1, 1, config={"retention.ms": "5000"})])["alter-me"].result(10)
    res = ConfigResource("topic", "alter-me")
    configs = admin.describe_configs([res])[res].result(10)
    assert configs["retention.ms"].value == "5000" and not configs["retention.ms"].is_default
    assert configs["segment.bytes"].is_default
    inc = ConfigResource("topic", "alter-me", incremental_configs=[
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    admin.incremental_alter_configs([inc])[inc].result(10)
    configs = admin.describe_configs([res])[res].result(10)
    assert configs["max.message.bytes"].value == "2000"
    assert configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete,compact"
    assert odradek_broker.broker.core.replicas.topics["alter-me"].partitions[0].log.config.cleanup_policy == "delete,compact"
    bad = ConfigResource("topic", "alter-me", incremental_configs=[
        ConfigEntry("segment.bytes", "lots", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException):
        admin.incremental_alter_configs([bad])[bad].result(10)
    broker_res = ConfigResource("broker", "1")
    bconf = admin.describe_configs([broker_res])[broker_res].result(10)
    assert "num.partitions" in bconf


def test_create_partitions_and_delete_topics(admin, odradek_broker):
    admin.create_topics([NewTopic("grow", 2, 1)])["grow"].result(10)
    admin.create_partitions([NewPartitions("grow", 5)])["grow"].result(10)
    assert len(admin.list_topics(timeout=10).topics["grow"].partitions) == 5
    with pytest.raises(KafkaException) as e:
        admin.create_partitions([NewPartitions("grow", 3)])["grow"].result(10)
    assert e.value.args[0].name() == "INVALID_PARTITIONS"
    odradek_broker.produce("grow", [b"x"], partition=4)
    admin.delete_topics(["grow"])["grow"].result(10)
    assert "grow" not in admin.list_topics(timeout=10).topics
    with pytest.raises(KafkaException) as e:
        admin.delete_topics(["grow"])["grow"].result(10)
    assert e.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART"
    # Re-created under the same name: a new id and no old data.
    admin.create_topics([NewTopic("grow", 1, 1)])["grow"].result(10)
    assert odradek_broker.records("grow") == []


def test_describe_cluster_and_offset_for_leader_epoch(admin, odradek_broker):
    c = RawClient(odradek_broker.bootstrap)
    try:
        cluster = c.request("DescribeCluster", 1, {"include_cluster_authorized_operations": False,
                                                   "endpoint_type": 1})
        assert cluster["error_code"] == 0 and cluster["brokers"][0]["broker_id"] == 1
        odradek_broker.create_topic("epochs", 1)
        odradek_broker.produce("epochs", [b"a", b"b", b"c"])
        resp = c.request("OffsetForLeaderEpoch", 4, {"replica_id": -1, "topics": [
            {"topic": "epochs", "partitions": [{"partition": 0, "current_leader_epoch": -1, "leader_epoch": 0}]}]})
        part = resp["topics"][0]["partitions"][0]
        assert (part["error_code"], part["leader_epoch"], part["end_offset"]) == (0, 0, 3)
        resp = c.request("OffsetForLeaderEpoch", 4, {"replica_id": -1, "topics": [
            {"topic": "epochs", "partitions": [{"partition": 0, "current_leader_epoch": 5, "leader_epoch": 0}]}]})
        assert resp["topics"][0]["partitions"][0]["error_code"] == 75  # UNKNOWN_LEADER_EPOCH
        md = c.request("Metadata", 12, {"topics": None, "allow_auto_topic_creation": False})
        ids = {t["name"]: t["topic_id"] for t in md["topics"]}
        assert ids["epochs"] == odradek_broker.broker.core.replicas.topics["epochs"].topic_id != bytes(16)
        by_id = c.request("Metadata", 12, {"topics": [{"topic_id": ids["epochs"], "name": None}],
                                           "allow_auto_topic_creation": False})
        assert by_id["topics"][0]["name"] == "epochs"
    finally:
        c.close()


def test_auto_create_on_metadata_and_produce(odradek_broker):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": odradek_broker.bootstrap})
    p.produce("auto-created-topic", b"x")
    assert p.flush(10) == 0
    assert odradek_broker.end_offsets("auto-created-topic") == [1]


def test_running_out_of_file_descriptors_refuses_the_topic_cleanly(tmp_path):
    """More partitions than the open-file limit are served (segment files are
    opened on demand); but with no descriptor left at all, a creation is
    refused with KAFKA_STORAGE_ERROR, nothing is left behind, and the broker
    serves on once descriptors are free again."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        from odradek.embedded import EmbeddedBroker
        from confluent_kafka.admin import AdminClient, NewTopic
        from confluent_kafka import KafkaException
        with EmbeddedBroker(data_dir={str(tmp_path)!r}) as b:
            a = AdminClient({{"bootstrap.servers": b.bootstrap}})
            a.create_topics([NewTopic("many", 500, 1)])["many"].result(60)
            print("created many")
            a.list_topics(timeout=10)
            hog = []
            try:
                while True:
                    hog.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            try:  # (the admin client's connection is open already)
                a.create_topics([NewTopic("big", 50, 1)])["big"].result(30)
                print("created?!")
            except KafkaException as e:
                print("refused", e.args[0].name())
            for fd in hog:
                os.close(fd)
            a.create_topics([NewTopic("small", 3, 1)])["small"].result(30)
            print("topics", sorted(a.list_topics(timeout=10).topics))
            left = [f for d in os.listdir({str(tmp_path)!r}) if d.startswith("big-")
                    for f in os.listdir(os.path.join({str(tmp_path)!r}, d))]
            print("left", left)
            a.create_topics([NewTopic("big", 50, 1)])["big"].result(30)
            print("again", sorted(a.list_topics(timeout=10).topics))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr[-2000:]
    assert "created many" in proc.stdout, out
    assert "refused KAFKA_STORAGE_ERROR" in proc.stdout, out
    assert "topics ['many', 'small']" in proc.stdout, out
    # With no descriptor at all, only directories could be made (mkdir needs
    # none), and none could be listed to be removed: empty ones may stay, and
    # the name can be created again.
    assert "left []" in proc.stdout, out
    assert "again ['big', 'many', 'small']" in proc.stdout, out


def test_manual_replica_assignments(admin, odradek_broker):
    """Assignments are checked as Kafka checks them and used as given; more
    than one replica is refused while replication is not served."""
    me = 1
    admin.create_topics([NewTopic("assigned", 2, -1, replica_assignment=[[me], [me]])])["assigned"].result(10)
    parts = admin.list_topics("assigned", timeout=10).topics["assigned"].partitions
    assert {i: (p.leader, p.replicas, p.isrs) for i, p in parts.items()} == {0: (me, [me], [me]), 1: (me, [me], [me])}
    fs = admin.create_topics([NewTopic("unknown-broker", 1, -1, replica_assignment=[[7]]),
                              NewTopic("twice", 1, -1, replica_assignment=[[me, me]]),
                              NewTopic("two-replicas", 1, -1, replica_assignment=[[me, 7]])])
    for name, expected in {"unknown-broker": "INVALID_REPLICA_ASSIGNMENT", "twice": "INVALID_REPLICA_ASSIGNMENT",
                           "two-replicas": "INVALID_REPLICA_ASSIGNMENT"}.items():
        with pytest.raises(KafkaException) as e:
            fs[name].result(10)
        assert e.value.args[0].name() == expected, (name, e.value.args[0])
    raw = RawClient(odradek_broker.bootstrap)
    try:
        def create(name, assignments):
            res = raw.request("CreateTopics", 7, {"timeout_ms": 10000, "validate_only": False, "topics": [
                {"name": name, "num_partitions": -1, "replication_factor": -1, "configs": [],
                 "assignments": [{"partition_index": i, "broker_ids": b} for i, b in assignments]}]})
            return res["topics"][0]["error_code"]

        assert create("gap", [(0, [me]), (2, [me])]) == 39  # INVALID_REPLICA_ASSIGNMENT
        assert create("rf-two", [(0, [me, 2])]) == 39  # broker 2 is not registered
        res = raw.request("CreatePartitions", 3, {"timeout_ms": 10000, "validate_only": False, "topics": [
            {"name": "assigned", "count": 4, "assignments": [{"broker_ids": [me]}]}]})
        assert res["results"][0]["error_code"] == 39  # 2 partitions added, 1 assignment
        res = raw.request("CreatePartitions", 3, {"timeout_ms": 10000, "validate_only": False, "topics": [
            {"name": "assigned", "count": 3, "assignments": [{"broker_ids": [me]}]}]})
        assert res["results"][0]["error_code"] == 0
    finally:
        raw.close()


def test_elect_leaders_on_one_broker(admin, odradek_broker):
    """One broker is its own controller: its partitions' preferred leader
    leads already, and unknown partitions are named."""
    from confluent_kafka import ElectionType, TopicPartition

    admin.create_topics([NewTopic("elect-one", 2, 1)])["elect-one"].result(10)
    result = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("elect-one", 0),
                                                          TopicPartition("elect-one", 5)]).result(10)
    errs = {tp.partition: e for tp, e in result.items()}
    assert "ELECTION_NOT_NEEDED" in str(errs[0]) and "val=3," in str(errs[5])
    raw = RawClient(odradek_broker.bootstrap)
    try:
        for election_type in (0, 1):  # every partition: none needs an election, none is listed
            res = raw.request("ElectLeaders", 2, {"election_type": election_type, "timeout_ms": 1000,
                                                  "topic_partitions": None})
            assert res["error_code"] == 0 and res["replica_election_results"] == []
        res = raw.request("ElectLeaders", 0, {"timeout_ms": 1000,
                                              "topic_partitions": [{"topic": "elect-one", "partitions": [1]}]})
        assert res["replica_election_results"][0]["partition_result"][0]["error_code"] == 84
    finally:
        raw.close()


def test_describe_topic_partitions_pages_with_a_cursor(odradek_broker):
    """KIP-966's DescribeTopicPartitions: name order, at most the limit per
    response, the next cursor where it stopped; unknown topics named."""
    odradek_broker.create_topic("page-a", 3)
    odradek_broker.create_topic("page-b", 2)
    c = RawClient(odradek_broker.bootstrap)
    try:
        def page(cursor, topics=("page-b", "page-a", "page-none")):
            return c.request("DescribeTopicPartitions", 0, {
                "topics": [{"name": t} for t in topics], "response_partition_limit": 2, "cursor": cursor})

        seen, cursor, pages = [], None, 0
        while True:
            resp = page(cursor)
            pages += 1
            for t in resp["topics"]:
                if t["error_code"]:
                    seen.append((t["name"], t["error_code"]))
                seen += [(t["name"], p["partition_index"]) for p in t["partitions"]]
                assert all(p["eligible_leader_replicas"] == [] and p["isr_nodes"] == [1] for p in t["partitions"])
            cursor = resp["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert seen == [("page-a", 0), ("page-a", 1), ("page-a", 2), ("page-b", 0), ("page-b", 1),
                        ("page-none", 3)]  # UNKNOWN_TOPIC_OR_PARTITION
        everything = c.request("DescribeTopicPartitions", 0, {"topics": [], "response_partition_limit": 2000,
                                                              "cursor": None})
        assert {"page-a", "page-b"} <= {t["name"] for t in everything["topics"]}
        assert everything["next_cursor"] is None
    finally:
        c.close()


def test_describe_log_dirs(odradek_broker_factory, tmp_path):
    on_disk = odradek_broker_factory(data_dir=str(tmp_path / "d"))
    on_disk.create_topic("dirs", 2)
    on_disk.produce("dirs", [b"x" * 100])
    c = RawClient(on_disk.bootstrap)
    try:
        resp = c.request("DescribeLogDirs", 4, {"topics": [{"topic": "dirs", "partitions": [0, 1, 7]},
                                                           {"topic": "nowhere", "partitions": [0]}]})
        (d,) = resp["results"]
        assert d["error_code"] == 0 and d["log_dir"] == str(tmp_path / "d")
        assert d["total_bytes"] >= d["usable_bytes"] > 0
        (t,) = d["topics"]
        sizes = {p["partition_index"]: p["partition_size"] for p in t["partitions"]}
        assert t["name"] == "dirs" and sorted(sizes) == [0, 1] and sum(sizes.values()) > 100
        everything = c.request("DescribeLogDirs", 1, {"topics": None})
        assert "dirs" in {t["name"] for t in everything["results"][0]["topics"]}
    finally:
        c.close()
    in_memory = odradek_broker_factory()
    c = RawClient(in_memory.bootstrap)
    try:
        assert c.request("DescribeLogDirs", 4, {"topics": None})["results"] == []
    finally:
        c.close()


def test_describe_topics_and_cluster_report_authorized_operations(admin, odradek_broker):
    """Asked for (include_authorized_operations), a broker with no authoriser
    reports every operation of the resource, as Kafka does: 8 for a topic, 7
    for the cluster (librdkafka test 0081 checks both); not asked for, none."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation

    for f in admin.create_topics([NewTopic("authz-ops", 1, 1)]).values():
        f.result(10)
    topic = admin.describe_topics(TopicCollection(["authz-ops"]),
                                  include_authorized_operations=True)["authz-ops"].result(10)
    assert set(topic.authorized_operations or []) == {
        AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE, AclOperation.ALTER,
        AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}
    cluster = admin.describe_cluster(include_authorized_operations=True).result(10)
    assert set(cluster.authorized_operations or []) == {
        AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER, AclOperation.DESCRIBE}
    assert not admin.describe_topics(TopicCollection(["authz-ops"]))["authz-ops"].result(10).authorized_operations
    assert not admin.describe_cluster().result(10).authorized_operations


def test_broker_logger_resources_name_this_broker(odradek_broker):
    """BROKER_LOGGER (type 8) as Kafka answers it: another broker's id or none
    is INVALID_REQUEST, legacy AlterConfigs does not take the type, and
    validate_only changes nothing (kafka-configs drives the rest:
    test_config_command.py)."""
    import logging

    c = RawClient(odradek_broker.bootstrap)
    try:
        def describe(name):
            [r] = c.request("DescribeConfigs", 4, {"resources": [{"resource_type": 8, "resource_name": name,
                                                                  "configuration_keys": None}],
                                                   "include_synonyms": False, "include_documentation": False})["results"]
            return r

        me = str(odradek_broker.broker.core.config.node_id)
        assert describe(me)["error_code"] == 0 and {"root", "odradek"} <= {x["name"] for x in describe(me)["configs"]}
        assert {x["config_source"] for x in describe(me)["configs"]} == {6}  # DYNAMIC_BROKER_LOGGER_CONFIG
        assert (describe("77")["error_code"], describe("")["error_code"]) == (42, 42)
        assert describe("77")["error_message"] == f"Unexpected broker id, expected {me} but received 77"

        def alter(api, version, name, validate_only=False, **op):
            body = {"resources": [{"resource_type": 8, "resource_name": name,
                                   "configs": [{"name": "odradek", "value": "DEBUG", **op}]}],
                    "validate_only": validate_only}
            return c.request(api, version, body)["responses"][0]["error_code"]

        assert alter("IncrementalAlterConfigs", 1, "77", config_operation=0) == 42
        # a BROKER resource too names this broker or none (the cluster default), as Kafka's
        body = {"resources": [{"resource_type": 4, "resource_name": "77", "configs": [
            {"name": "log.retention.ms", "value": "1000", "config_operation": 0}]}], "validate_only": False}
        [r] = c.request("IncrementalAlterConfigs", 1, body)["responses"]
        assert (r["error_code"], r["error_message"]) == (42, f"Unexpected broker id, expected {me}, but received 77")
        assert alter("AlterConfigs", 2, me) == 42  # Kafka: legacy AlterConfigs has no BROKER_LOGGER
        assert alter("IncrementalAlterConfigs", 1, me, validate_only=True, config_operation=0) == 0
        assert logging.getLogger("odradek").level == logging.NOTSET
        assert alter("IncrementalAlterConfigs", 1, me, config_operation=2) == 42  # APPEND
    finally:
        c.close()


def test_list_config_resources(admin, odradek_broker):
    """KIP-1142 as Kafka answers it: v1 lists groups with configs, the
    brokers (also as loggers) and every topic, of the types asked or of all;
    a type it does not list is UNSUPPORTED_VERSION; v0 (once
    ListClientMetricsResources) lists the client metrics subscriptions only."""
    odradek_broker.create_topic("listed-topic", 1)
    res = ConfigResource("group", "listed-group", incremental_configs=[
        ConfigEntry("consumer.session.timeout.ms", "50000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(10)
    me = str(odradek_broker.broker.core.config.node_id)
    c = RawClient(odradek_broker.bootstrap)
    try:
        r = c.request("IncrementalAlterConfigs", 1, {"validate_only": False, "resources": [
            {"resource_type": 16, "resource_name": "listed-subscription",
             "configs": [{"name": "metrics", "config_operation": 0, "value": "org.apache.kafka.producer."}]}]})
        assert r["responses"][0]["error_code"] == 0  # (confluent-kafka has no CLIENT_METRICS resource type)
        def listed(version, types=None):
            body = {} if version == 0 else {"resource_types": types or []}
            r = c.request("ListConfigResources", version, body)
            return r["error_code"], {(x["resource_name"], x.get("resource_type", 16)) for x in r["config_resources"]}

        code, every = listed(1)
        assert code == 0 and {("listed-group", 32), (me, 4), (me, 8), ("listed-topic", 2),
                              ("listed-subscription", 16)} <= every
        assert {t for _, t in every} == {2, 4, 8, 16, 32}
        assert listed(1, [2]) == (0, {(n, t) for n, t in every if t == 2})
        assert listed(1, [32, 4]) == (0, {(n, t) for n, t in every if t in (4, 32)})
        assert listed(1, [16]) == (0, {(n, t) for n, t in every if t == 16})
        assert ("listed-subscription", 16) in listed(1, [16])[1]
        assert listed(1, [2, 99]) == (35, set())  # UNSUPPORTED_VERSION
        assert listed(0) == listed(1, [16])
    finally:
        c.close()


def test_client_metrics_subscriptions_raw(odradek_broker):
    """CLIENT_METRICS resources on the wire as Kafka 4.4 answers them: the
    three configs with their sources (CLIENT_METRICS_CONFIG for what is set,
    DEFAULT_CONFIG for the rest) and types (LIST, INT); APPEND to a list;
    a subscription that does not exist described with the defaults; legacy
    AlterConfigs replacing the whole subscription; Kafka's errors (the same
    outcomes, codes and messages as Kafka 4.4's for the same requests)."""
    c = RawClient(odradek_broker.bootstrap)

    def alter(api, version, name, configs):
        r = c.request(api, version, {"resources": [{"resource_type": 16, "resource_name": name, "configs": configs}],
                                     "validate_only": False})
        return r["responses"][0]["error_code"], r["responses"][0]["error_message"]

    def describe(name):
        r = c.request("DescribeConfigs", 4, {"resources": [{"resource_type": 16, "resource_name": name,
                                                             "configuration_keys": None}],
                                             "include_synonyms": True, "include_documentation": False})
        res = r["results"][0]
        assert res["error_code"] or res["error_message"] == ""  # Kafka 4.4's answer has "", not null
        return res["error_code"], {x["name"]: (x["value"], x["config_source"], x["config_type"], len(x["synonyms"]))
                                   for x in res["configs"]}
    try:
        assert alter("IncrementalAlterConfigs", 1, "s1", [
            {"name": "metrics", "config_operation": 0, "value": "a.,b."},
            {"name": "interval.ms", "config_operation": 0, "value": "1000"}]) == (0, None)
        assert alter("IncrementalAlterConfigs", 1, "s1", [
            {"name": "metrics", "config_operation": 2, "value": "c.,a."}]) == (0, None)
        assert describe("s1") == (0, {"metrics": ("a.,b.,c.", 7, 7, 1), "interval.ms": ("1000", 7, 3, 1),
                                      "match": ("", 5, 7, 0)})
        assert describe("nobody") == (0, {"metrics": ("", 5, 7, 0), "interval.ms": ("300000", 5, 3, 0),
                                          "match": ("", 5, 7, 0)})
        assert alter("AlterConfigs", 2, "s1", [{"name": "match", "value": "client_id=x"}]) == (0, None)
        assert describe("s1")[1]["metrics"] == ("", 5, 7, 0)  # replaced whole
        assert alter("IncrementalAlterConfigs", 1, "s1", [{"name": "interval.ms", "config_operation": 2,
                                                           "value": "5"}]) == (
            errors.INVALID_CONFIG, "Can't APPEND to key interval.ms because its type is not LIST.")
        assert alter("IncrementalAlterConfigs", 1, "", [{"name": "metrics", "config_operation": 0, "value": "*"}]) \
            == (errors.INVALID_REQUEST, "Subscription name can't be empty")
        assert alter("IncrementalAlterConfigs", 1, "s1", [{"name": "interval.ms", "config_operation": 0,
                                                           "value": "abc"}]) == (
            errors.INVALID_CONFIG, "Invalid value abc for configuration interval.ms: Not a number of type INT")
        assert alter("IncrementalAlterConfigs", 1, "s1", [{"name": "match", "config_operation": 1, "value": None}]) \
            == (0, None)
        assert describe("s1")[1]["match"] == ("", 5, 7, 0)
    finally:
        c.close()


@pytest.mark.parametrize("api, configs, message", [
    ("IncrementalAlterConfigs", [{"name": "retention.ms", "config_operation": 0, "value": "1000"},
                                 {"name": "retention.ms", "config_operation": 1, "value": None}],
     "Error due to duplicate config keys"),
    ("AlterConfigs", [{"name": "retention.ms", "value": "1000"}, {"name": "retention.ms", "value": "2000"}],
     "Error due to duplicate config keys"),
    ("IncrementalAlterConfigs", [{"name": "retention.ms", "config_operation": 0, "value": None}],
     "Null value not supported for : retention.ms"),
    ("AlterConfigs", [{"name": "retention.ms", "value": None}], "Null value not supported for : retention.ms"),
])
def test_a_key_given_twice_or_set_to_null_is_refused(odradek_broker, api, configs, message):
    """As Kafka 4.4 answers (side by side): INVALID_REQUEST, and nothing changed."""
    odradek_broker.create_topic("twice", 1)
    c = RawClient(odradek_broker.bootstrap)
    try:
        r = c.request(api, 2 if api == "AlterConfigs" else 1, {"validate_only": False, "resources": [
            {"resource_type": 2, "resource_name": "twice", "configs": configs}]})
        assert (r["responses"][0]["error_code"], r["responses"][0]["error_message"]) == (errors.INVALID_REQUEST,
                                                                                          message)
        assert "retention.ms" not in odradek_broker.broker.core.image.get("twice").configs
    finally:
        c.close()


KAFKA_44_TOPIC_CONFIGS = {  # the topic configs Kafka 4.4 added or kept that odradek refused before
    "compression.gzip.level": "9", "compression.lz4.level": "12", "compression.zstd.level": "19",
    "max.decompressed.message.bytes": "100000", "preallocate": "true", "remote.storage.enable": "false",
    "local.retention.ms": "-2", "local.retention.bytes": "-2", "remote.log.copy.disable": "false",
    "remote.log.delete.on.disable": "false", "remote.copy.lag.ms": "0", "remote.copy.lag.bytes": "-1",
    "errors.deadletterqueue.group.enable": "true",
}


def test_kafka_44_topic_configs(admin, odradek_broker):
    """Every topic config of Kafka 4.4 is taken, described and checked with
    Kafka's messages; tiered storage is refused as on a Kafka broker without
    it; the codec levels are used when the broker compresses; a compressed
    record larger than max.decompressed.message.bytes once decompressed is
    refused with INVALID_RECORD, the others written."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import ConfigResource

    admin.create_topics([NewTopic("k44", 1, 1, config=KAFKA_44_TOPIC_CONFIGS)])["k44"].result(10)
    described = admin.describe_configs([ConfigResource("topic", "k44")])
    entries = next(iter(described.values())).result(10)
    assert {k: entries[k].value for k in KAFKA_44_TOPIC_CONFIGS} == KAFKA_44_TOPIC_CONFIGS
    c = RawClient(odradek_broker.bootstrap)
    try:
        for configs, message in (
                ({"remote.storage.enable": "true"}, "Tiered Storage functionality is disabled in the broker. "
                                                    "Topic cannot be configured with remote log storage."),
                ({"compression.gzip.level": "10"}, "Invalid value 10 for configuration compression.gzip.level: "
                                                   "Value must be between 1 and 9 or equal to -1"),
                ({"compression.zstd.level": "23"}, "Invalid value 23 for configuration compression.zstd.level: "
                                                   "Value must be no more than 22"),
                ({"local.retention.ms": "-3"}, "Invalid value -3 for configuration local.retention.ms: "
                                               "Value must be at least -2"),
                ({"segment.bytes": "1000"}, "Invalid value 1000 for configuration segment.bytes: "
                                            "Value must be at least 1048576")):
            r = c.request("CreateTopics", 7, {"topics": [{
                "name": "k44-refused", "num_partitions": 1, "replication_factor": 1, "assignments": [],
                "configs": [{"name": k, "value": v} for k, v in configs.items()]}],
                "timeout_ms": 10000, "validate_only": False})["topics"][0]
            assert (r["error_code"], r["error_message"]) == (errors.INVALID_CONFIG, message)
    finally:
        c.close()

    # The level the broker compresses with (compression.type=zstd, the producer's batches uncompressed).
    value = b"".join(b"record %d of a text that compresses;" % (i % 37) for i in range(3000))
    sizes = {}
    for level in ("1", "19"):
        name = f"zstd-{level}"
        admin.create_topics([NewTopic(name, 1, 1, config={"compression.type": "zstd",
                                                          "compression.zstd.level": level})])[name].result(10)
        p = Producer({"bootstrap.servers": odradek_broker.bootstrap, "compression.type": "none"})
        p.produce(name, value)
        assert p.flush(10) == 0
        part = odradek_broker.broker.core.replicas.topic(name).by_index[0]
        sizes[level] = part.log.size_in_bytes()
    assert sizes["19"] < sizes["1"], sizes

    # max.decompressed.message.bytes=100000 (above): a gzip batch whose second record is bigger refused.
    delivered = []
    p = Producer({"bootstrap.servers": odradek_broker.bootstrap, "compression.type": "gzip", "linger.ms": 50,
                  "retries": 0})
    for v in (b"a" * 1000, b"b" * 150_000, b"c" * 1000):
        p.produce("k44", v, on_delivery=lambda err, msg: delivered.append(err))
    p.flush(10)
    assert {e.name() for e in delivered if e is not None} == {"INVALID_RECORD"}, delivered
    p.produce("k44", b"d" * 99_000, on_delivery=lambda err, msg: delivered.append(err))
    assert p.flush(10) == 0 and delivered[-1] is None


def test_internal_segment_bytes(admin, odradek_broker):
    """Kafka 4's internal.segment.bytes: taken, used as the topic's segment
    size (segments roll at it), and described only when set, as Kafka 4.4
    describes it (measured: 37 topic configs without it, 38 with it)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import ConfigResource

    admin.create_topics([NewTopic("small-segments", 1, 1, config={"internal.segment.bytes": "2000"}),
                         NewTopic("plain-segments", 1, 1)])["small-segments"].result(10)
    p = Producer({"bootstrap.servers": odradek_broker.bootstrap, "linger.ms": 0})
    for i in range(20):
        p.produce("small-segments", b"x" * 500)
        p.flush(10)
    part = odradek_broker.broker.core.replicas.topic("small-segments").by_index[0]
    assert len(part.log.segment_base_offsets()) >= 5  # about 500 bytes a batch, rolled every 2000
    described = admin.describe_configs([ConfigResource("topic", "small-segments"),
                                        ConfigResource("topic", "plain-segments")])
    small, plain = (f.result(10) for f in described.values())
    assert small["internal.segment.bytes"].value == "2000" and "internal.segment.bytes" not in plain
    assert len(small) == len(plain) + 1
