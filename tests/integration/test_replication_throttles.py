"""Replication throttles (KIP-73) on three brokers, driven by Apache Kafka's
own ``kafka-reassign-partitions`` (org.apache.kafka.tools.reassign.
ReassignPartitionsCommand, from the jars on Maven Central): a partition of
3 MB moved to a second broker under ``--throttle 50000`` is still moving
seconds later; ``--additional --throttle`` raising the rate lets it end;
``--verify`` then reports it completed and clears every throttle it set.
Each side alone (only the leader's rate and list, or only the follower's,
set with confluent-kafka's admin client) holds the move back too, and the
move ends once that rate is deleted."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from tests.integration.test_acl_command import kafka_runtime

pytestmark = pytest.mark.timeout(240)

TOOL = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"


def reassign(rt, cluster, plan, *args: str) -> str:
    proc = subprocess.run(rt.java_command(TOOL, ["--bootstrap-server", cluster.bootstrap,
                                                 "--reassignment-json-file", str(plan), *args],
                                          heap="256M", jvm_opts=["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def three_megabytes_on_broker_1(cluster, admin, topic):
    from confluent_kafka.admin import NewTopic

    admin.create_topics([NewTopic(topic, 1, -1, replica_assignment=[[1]])])[topic].result(20)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "linger.ms": 20})
    for _ in range(300):
        p.produce(topic, b"x" * 10_000, partition=0)
    assert p.flush(30) == 0


def set_configs(admin, kind, name, **values):
    res = ConfigResource(kind, name, incremental_configs=[
        ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.DELETE if v is None
                    else AlterConfigOpType.SET) for k, v in values.items()])
    admin.incremental_alter_configs([res])[res].result(20)


def configs(admin, kind, name) -> dict:
    res = ConfigResource(kind, name)
    return {k: v.value for k, v in admin.describe_configs([res])[res].result(20).items() if not v.is_default}


def wait_completed(rt, cluster, plan, timeout=40.0) -> str:
    deadline = time.time() + timeout
    while True:
        out = reassign(rt, cluster, plan, "--verify")
        if "is completed" in out or time.time() > deadline:
            return out
        time.sleep(1)


@pytest.fixture
def moving(odradek_cluster, tmp_path):
    rt = kafka_runtime()
    admin = AdminClient({"bootstrap.servers": odradek_cluster.bootstrap})
    three_megabytes_on_broker_1(odradek_cluster, admin, "moving")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [{"topic": "moving", "partition": 0,
                                                               "replicas": [1, 2]}]}))
    return rt, odradek_cluster, admin, plan


def test_kafkas_reassignment_tool_throttles_and_clears(moving):
    rt, cluster, admin, plan = moving
    out = reassign(rt, cluster, plan, "--execute", "--throttle", "50000")
    assert "The inter-broker throttle limit was set to 50000 B/s" in out
    assert configs(admin, "topic", "moving") == {"leader.replication.throttled.replicas": "0:1",
                                                 "follower.replication.throttled.replicas": "0:2"}
    assert configs(admin, "broker", "2")["follower.replication.throttled.rate"] == "50000"
    time.sleep(3)  # unthrottled, 3 MB move here in well under a second
    assert "still in progress" in reassign(rt, cluster, plan, "--verify")
    reassign(rt, cluster, plan, "--execute", "--additional", "--throttle", "100000000")
    out = wait_completed(rt, cluster, plan)
    assert "Reassignment of partition moving-0 is completed" in out and "Clearing topic-level throttles" in out
    assert configs(admin, "topic", "moving") == {}
    for broker in ("1", "2", "3"):
        assert not {k for k in configs(admin, "broker", broker) if "throttled" in k}


@pytest.mark.parametrize("side, broker, listed", [("leader", "1", "0:1"), ("follower", "2", "0:2")])
def test_either_side_alone_holds_the_move_back(moving, side, broker, listed):
    rt, cluster, admin, plan = moving
    set_configs(admin, "broker", broker, **{f"{side}.replication.throttled.rate": "50000"})
    set_configs(admin, "topic", "moving", **{f"{side}.replication.throttled.replicas": listed})
    reassign(rt, cluster, plan, "--execute")
    time.sleep(3)
    assert "still in progress" in reassign(rt, cluster, plan, "--verify")
    set_configs(admin, "broker", broker, **{f"{side}.replication.throttled.rate": None})
    assert "is completed" in wait_completed(rt, cluster, plan)
