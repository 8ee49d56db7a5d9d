"""Streams groups on a three-broker cluster: Kafka Streams 4.4's word count
(``group.protocol=streams``) with its input and output topics, and the
internal topics the group's coordinator creates, replicated on three
brokers; the output exact. Skipped, saying why, without etcd 3.5.3+,
etcd3aio, javac or the Kafka 4.4 jars."""

from __future__ import annotations

import pytest

from tests.integration.test_cluster_faults import create_topic
from tests.integration.test_streams_groups_java import (
    APP, IN, OUT, Instance, Output, _compiled, _count, _produce, _text)

pytestmark = pytest.mark.timeout(180)

CONFIG = {"default.replication.factor": 3, "min.insync.replicas": 2, "offsets.topic.replication.factor": 3,
          "offsets.topic.num.partitions": 3, "group.streams.heartbeat.interval.ms": 500,
          "group.streams.initial.rebalance.delay.ms": 0, "replica.fetch.backoff.ms": 200}


@pytest.mark.odradek_cluster(config=CONFIG)
def test_kafka_streams_word_count_on_a_cluster(odradek_cluster, tmp_path):
    classpath = _compiled(tmp_path)
    cluster = odradek_cluster
    create_topic(cluster, IN, 4)
    create_topic(cluster, OUT, 4)
    lines = _text(6, 200)
    _produce(cluster.bootstrap, lines)
    out = Output(cluster.bootstrap)
    one = Instance(tmp_path, classpath, cluster.bootstrap, tmp_path / "state-1")
    try:
        out.until(_count(lines), [one])
        from tests.integration.rawclient import RawClient

        rc = RawClient(cluster.bootstrap.split(",")[0])
        try:
            md = rc.request("Metadata", 12, {"topics": [{"name": f"{APP}-counts-changelog"},
                                                        {"name": f"{APP}-counts-repartition"}]})
        finally:
            rc.close()
        for t in md["topics"]:
            assert t["error_code"] == 0 and len(t["partitions"]) == 4, t
            assert all(len(p["replica_nodes"]) == 3 for p in t["partitions"]), t
    finally:
        one.stop()
        out.c.close()
