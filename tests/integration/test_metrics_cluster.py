"""Consumer lag in /metrics across a cluster: the coordinator of a group
reports the lag of every partition the group has offsets for, wherever it
is led (its replica's high watermark, else the leader's, asked with
ListOffsets), and the lag in time where it has a replica."""

from __future__ import annotations

import time
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, wait_port

pytestmark = pytest.mark.timeout(90)
PORTS = {n: free_port() for n in (1, 2, 3)}


def lags(port: int, group: str) -> dict[int, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "odradek_consumer_group_lag":
            for s in family.samples:
                if s.labels["group"] == group and s.labels["topic"] == "spread":
                    out[int(s.labels["partition"])] = s.value
    return out


@pytest.mark.odradek_cluster(brokers=3, broker_config={
    n: {"http.listener": f"127.0.0.1:{port}", "http.lag.history.interval.ms": "300"} for n, port in PORTS.items()})
def test_a_coordinator_reports_the_lag_of_partitions_led_elsewhere(odradek_cluster):
    for port in PORTS.values():
        wait_port(port, timeout=30)
    boot = odradek_cluster.bootstrap
    admin = AdminClient({"bootstrap.servers": boot})
    admin.create_topics([NewTopic("spread", 3, 1)])["spread"].result(20)
    leaders = {i: p.leader for i, p in admin.list_topics("spread", timeout=10).topics["spread"].partitions.items()}
    assert len(set(leaders.values())) == 3  # one partition on each broker
    producer = Producer({"bootstrap.servers": boot})
    for i in range(3):
        for k in range(10):
            producer.produce("spread", b"x", partition=i)
    assert producer.flush(20) == 0
    consumer = Consumer({"bootstrap.servers": boot, "group.id": "lagging", "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition("spread", i, 2 + i) for i in range(3)], asynchronous=False)
    coordinator = admin.describe_consumer_groups(["lagging"])["lagging"].result(10).coordinator.id
    consumer.close()
    port = PORTS[coordinator]
    deadline = time.monotonic() + 20
    seen = {}
    while time.monotonic() < deadline:
        seen = lags(port, "lagging")
        if seen == {0: 8.0, 1: 7.0, 2: 6.0}:
            break
        time.sleep(0.3)
    assert seen == {0: 8.0, 1: 7.0, 2: 6.0}, (seen, leaders, coordinator)
    for other, p in PORTS.items():
        if other != coordinator:
            assert lags(p, "lagging") == {}  # reported once, by the coordinator
