"""Share groups on a three-broker cluster (librdkafka's share consumer):
partitions led by different brokers, the group coordinated by one of them,
the group config set through any broker. Skipped, saying why, without etcd
3.5.3+ or etcd3aio."""

from __future__ import annotations

import time

import pytest

from tests.integration.rawclient import RawClient
from tests.integration.test_cluster_faults import create_topic

ck = pytest.importorskip("confluent_kafka")
if not hasattr(ck, "ShareConsumer"):
    pytest.skip("this confluent-kafka has no ShareConsumer", allow_module_level=True)

pytestmark = pytest.mark.timeout(180)

CONFIG = {"default.replication.factor": 3, "min.insync.replicas": 2, "offsets.topic.replication.factor": 3,
          "offsets.topic.num.partitions": 3, "share.coordinator.state.topic.num.partitions": 3,
          "group.share.heartbeat.interval.ms": 1000, "group.share.min.heartbeat.interval.ms": 1000,
          "replica.fetch.backoff.ms": 200}


@pytest.mark.odradek_cluster(config=CONFIG)
def test_share_consumers_on_a_cluster(odradek_cluster):
    cluster = odradek_cluster
    create_topic(cluster, "sgc", 3)
    p = ck.Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(60):
        p.produce("sgc", f"v{i}".encode(), partition=i % 3)
    assert p.flush(20) == 0
    rc = RawClient(cluster.bootstrap.split(",")[0])
    try:
        r = rc.request("IncrementalAlterConfigs", 1, {"resources": [{
            "resource_type": 32, "resource_name": "sgc-g",
            "configs": [{"name": "share.auto.offset.reset", "config_operation": 0, "value": "earliest"}]}],
            "validate_only": False})
        assert r["responses"][0]["error_code"] == 0
    finally:
        rc.close()
    time.sleep(1)  # every broker's image follows the store
    cs = [ck.ShareConsumer({"bootstrap.servers": cluster.bootstrap, "group.id": "sgc-g"}) for _ in range(2)]
    got = []
    try:
        for c in cs:
            c.subscribe(["sgc"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(got) < 60:
            for c in cs:
                got += [m.value() for m in c.poll(0.2) or [] if not m.error()]
        for c in cs:
            c.commit_sync()
    finally:
        for c in cs:
            c.close()
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(60))


@pytest.mark.odradek_cluster(config=CONFIG)
def test_acknowledged_records_stay_acknowledged_when_the_whole_cluster_is_killed(odradek_cluster):
    """Each share-partition's state is written to the share coordinator of its
    key, on whichever broker leads that partition of __share_group_state
    (WriteShareGroupState between brokers), and read back from there."""
    cluster = odradek_cluster
    create_topic(cluster, "sgk", 3)
    p = ck.Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(30):
        p.produce("sgk", f"v{i}".encode(), partition=i % 3)
    assert p.flush(20) == 0
    rc = RawClient(cluster.bootstrap.split(",")[0])
    try:
        r = rc.request("IncrementalAlterConfigs", 1, {"resources": [{
            "resource_type": 32, "resource_name": "sgk-g",
            "configs": [{"name": "share.auto.offset.reset", "config_operation": 0, "value": "earliest"}]}],
            "validate_only": False})
        assert r["responses"][0]["error_code"] == 0
    finally:
        rc.close()
    time.sleep(1)

    def consume(want: int, seconds: float) -> list:
        c = ck.ShareConsumer({"bootstrap.servers": cluster.bootstrap, "group.id": "sgk-g"})
        got = []
        try:
            c.subscribe(["sgk"])
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and len(got) < want:
                got += [m.value() for m in c.poll(0.2) or [] if not m.error()]
            c.commit_sync()
        finally:
            c.close()
        return got

    assert sorted(consume(30, 60)) == sorted(f"v{i}".encode() for i in range(30))
    time.sleep(1)  # the state replicated to the followers of __share_group_state
    for b in cluster.brokers:
        b.kill()
    cluster.start()
    for i in range(30, 36):
        p.produce("sgk", f"v{i}".encode(), partition=i % 3)
    assert p.flush(30) == 0
    again = consume(6, 60)
    assert sorted(again) == sorted(f"v{i}".encode() for i in range(30, 36)), again


@pytest.mark.odradek_cluster(config=CONFIG)
def test_share_group_offsets_across_brokers(odradek_cluster):
    """The group coordinator's DescribeShareGroupOffsets, AlterShareGroupOffsets
    and DeleteShareGroupOffsets reach every share-partition, whichever broker
    leads it and whichever keeps its state (ReadShareGroupStateSummary,
    InitializeShareGroupState and DeleteShareGroupState to the share
    coordinators), and consumers then start where Alter said."""
    from tests.integration.test_cluster_faults import coordinator_of

    cluster = odradek_cluster
    create_topic(cluster, "sgo", 3)
    p = ck.Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(30):
        p.produce("sgo", f"v{i}".encode(), partition=i % 3)
    assert p.flush(20) == 0
    node = coordinator_of(cluster, "sgo-g")
    rc = RawClient(next(b.address for b in cluster.brokers if b.node_id == node))

    def describe(topics=None) -> dict:
        g = rc.request("DescribeShareGroupOffsets", 1, {"groups": [{"group_id": "sgo-g", "topics": topics}]})
        g = g["groups"][0]
        assert g["error_code"] == 0, g
        assert all(q["error_code"] == 0 for t in g["topics"] for q in t["partitions"]), g
        return {q["partition_index"]: (q["start_offset"], q["lag"]) for t in g["topics"] for q in t["partitions"]}

    try:
        starts = {0: 2, 1: 5, 2: 8}
        deadline = time.monotonic() + 20
        while True:  # as a client does while the group's coordinator loads
            r = rc.request("AlterShareGroupOffsets", 0, {"group_id": "sgo-g", "topics": [
                {"topic_name": "sgo", "partitions": [{"partition_index": i, "start_offset": s}
                                                     for i, s in starts.items()]}]})
            if r["error_code"] not in (14, 15, 16) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r["error_code"] == 0 and [q["error_code"] for q in r["responses"][0]["partitions"]] == [0, 0, 0], r
        want = {i: (s, 10 - s) for i, s in starts.items()}
        deadline = time.monotonic() + 10
        while describe() != want and time.monotonic() < deadline:
            time.sleep(0.1)  # the lag is the coordinator's replica's: its high watermark may be a fetch behind
        assert describe() == want
        assert describe([{"topic_name": "sgo", "partitions": [0, 1, 2]}]) == want
        c = ck.ShareConsumer({"bootstrap.servers": cluster.bootstrap, "group.id": "sgo-g"})
        got = []
        try:
            c.subscribe(["sgo"])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(got) < 15:
                got += [m.value() for m in c.poll(0.2) or [] if not m.error()]
            c.commit_sync()
        finally:
            c.close()
        assert sorted(got) == sorted(f"v{i}".encode() for i in range(30) if i // 3 >= starts[i % 3]), got
        assert describe() == {0: (10, 0), 1: (10, 0), 2: (10, 0)}
        r = rc.request("DeleteShareGroupOffsets", 0, {"group_id": "sgo-g", "topics": [{"topic_name": "sgo"}]})
        assert r["error_code"] == 0 and r["responses"][0]["error_code"] == 0, r
        assert describe() == {}
    finally:
        rc.close()


@pytest.mark.odradek_cluster(config=dict(CONFIG, **{"group.share.min.record.lock.duration.ms": 1000,
                                                    "replica.lag.time.max.ms": 3000}))
def test_share_consumers_through_a_kill_of_their_partitions_leader(odradek_cluster):
    """Two share consumers (explicit acknowledgement) read one partition while
    its leader is killed (kill -9) and records are still produced: no record
    whose acceptance was acknowledged (commit_sync answered without error) is
    delivered again, and in the end every record is delivered and accepted.
    ``__share_group_state`` is created by their first reads here: an
    acknowledgement is answered only once the share-partition's state is
    replicated, not when its share coordinator has appended it, so a kill of
    that coordinator's broker (one time in three) loses none of it."""
    from tests.integration.waiting import wait_until

    cluster = odradek_cluster
    create_topic(cluster, "sgf", 1)
    group = "sgf-g"
    p = ck.Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True})

    def produce(values):
        for v in values:
            p.produce("sgf", v, partition=0)
            p.poll(0)
        assert p.flush(60) == 0

    everything = [f"v{i}".encode() for i in range(300)]
    produce(everything[:150])
    rc = RawClient(cluster.bootstrap.split(",")[0])
    try:
        r = rc.request("IncrementalAlterConfigs", 1, {"resources": [{
            "resource_type": 32, "resource_name": group, "configs": [
                {"name": "share.auto.offset.reset", "config_operation": 0, "value": "earliest"},
                {"name": "share.record.lock.duration.ms", "config_operation": 0, "value": "2000"}]}],
            "validate_only": False})
        assert r["responses"][0]["error_code"] == 0
    finally:
        rc.close()
    time.sleep(1)  # every broker's image follows the store
    cs = [ck.ShareConsumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                            "share.acknowledgement.mode": "explicit", "max.poll.records": 20}) for _ in range(2)]
    accepted: set = set()
    again: list = []  # records delivered after their acceptance was acknowledged
    victim = None
    try:
        for c in cs:
            c.subscribe(["sgf"])
        deadline = time.monotonic() + 90
        while len(accepted) < len(everything) and time.monotonic() < deadline:
            for c in cs:
                got = [m for m in c.poll(0.2) or [] if not m.error()]
                for m in got:
                    if m.value() in accepted:
                        again.append((m.value(), m.delivery_count()))
                    c.acknowledge(m, ck.AcknowledgeType.ACCEPT)
                if not got:
                    continue
                try:
                    results = c.commit_sync(10)
                except ck.KafkaException:
                    continue
                if results and all(e is None for e in results.values()):
                    accepted.update(m.value() for m in got)
            if victim is None and len(accepted) >= 60:
                victim = cluster.broker(cluster.leader("sgf", 0))
                victim.kill()
                produce(everything[150:])  # to the new leader
        assert victim is not None
        assert again == [], again
        assert accepted == set(everything), sorted(set(everything) - accepted)[:20]
    finally:
        for c in cs:
            c.close()
    if victim is not None:
        victim.start()
        wait_until(lambda: cluster.leader("sgf", 0) is not None, timeout=30, what="a leader")
