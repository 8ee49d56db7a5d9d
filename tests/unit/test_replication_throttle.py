"""Replication throttles (``odradek.replica.throttle``): the throttled-replicas
lists as Kafka validates and reads them (a broker reads the entries naming
itself), the rate over 11 one-second samples against the dynamic bound, and
the leader's rule: an in-sync follower is never held back."""

from __future__ import annotations

import pytest

from odradek.config import LONG_MAX, BrokerConfig, ConfigError, validate_topic_config
from odradek.metadata.topics import PartitionState
from odradek.replica.manager import ReplicaManager
from odradek.replica.throttle import ALL, LEADER_RATE, throttled_partitions
from tests.unit.test_partition_roles import make


@pytest.mark.parametrize("value, stored", [("", ""), ("*", "*"), (" 0:1, 1:2 ", "0:1,1:2")])
def test_lists_kafka_takes(value, stored):
    assert validate_topic_config("leader.replication.throttled.replicas", value) == stored


@pytest.mark.parametrize("value", ["1", "0:x", "*,0:1", "0:1:2", "a:b"])
def test_lists_kafka_refuses(value):
    with pytest.raises(ConfigError, match="must be the literal '\\*' or a list of replicas"):
        validate_topic_config("follower.replication.throttled.replicas", value)


def test_a_broker_reads_the_entries_naming_it():
    assert throttled_partitions("0:1,1:2,2:1", 1) == {0, 2}
    assert throttled_partitions("0:1,1:2", 3) == frozenset()
    assert throttled_partitions("*", 3) == ALL


def test_the_leader_holds_back_out_of_sync_followers_of_listed_partitions_over_the_rate():
    p, _ = make(state=PartitionState(1, 0, [1, 2, 3], [1, 2], revision=5))  # 3 is out of the ISR
    p.topic.config.overrides["leader.replication.throttled.replicas"] = "0:1"
    config = BrokerConfig(props={"node.id": "1", LEADER_RATE: "1000"})
    replicas = ReplicaManager(config, image=None)
    assert replicas.leader_throttled(3, 10_000) is None  # nothing measured yet
    replicas.sent_to_follower([(p, 50_000)], 10_000)  # 50 kB over 10 s of window: 5 kB/s > 1 kB/s
    held = replicas.leader_throttled(3, 10_001)
    assert held(p) and not replicas.leader_throttled(2, 10_001)(p)  # 2 is in sync: never held back
    assert replicas.leader_throttled(3, 70_000) is None  # the samples aged out
    unbounded = ReplicaManager(BrokerConfig(props={"node.id": "1"}), image=None)
    assert unbounded.leader_throttle.bound() == LONG_MAX
    unbounded.sent_to_follower([(p, 10**9)], 10_000)
    assert unbounded.leader_throttled(3, 10_001) is None
