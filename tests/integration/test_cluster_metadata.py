"""Several brokers on one etcd cluster prefix: they register under leases,
share one image of the topics, spread a topic's partitions over the live
brokers, each hosting only its own, and clients produce to and read from
every partition through any of them. A second broker with a live broker's
node id is refused, and a stopped broker's partitions of replication factor
1 are reported offline. Skipped, saying why, without etcd 3.5.3+ or
etcd3aio."""

from __future__ import annotations

import time

import pytest

from odradek.embedded import EmbeddedBroker
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

def test_three_brokers_share_topics_and_spread_partitions(etcd, tmp_path):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    url = etcd.url("three")
    config = {"metadata.store": url, "broker.session.timeout.ms": "3000"}
    brokers = [EmbeddedBroker(data_dir=str(tmp_path / f"b{i}"), node_id=i, config=config).start()
               for i in (1, 2, 3)]
    try:
        wait_until(lambda: all(len(b.core.image.brokers) == 3 for b in brokers), what="3 registrations")
        bootstrap = brokers[0].bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap})
        md = admin.list_topics(timeout=10)
        assert sorted(md.brokers) == [1, 2, 3]
        assert {(b.host, b.port) for b in md.brokers.values()} == {
            (b.host, b.port) for b in brokers}

        admin.create_topics([NewTopic("spread", 6, 1)])["spread"].result(30)
        # Every broker comes to the same image, and hosts exactly the partitions it leads.
        state = brokers[0].core.image.get("spread")  # the creating broker: at once
        leaders = {i: p.leader for i, p in enumerate(state.partitions)}
        assert len(leaders) == 6 and set(leaders.values()) == {1, 2, 3}

        def hosting_follows(b):
            hosted = b.core.replicas.topic("spread")
            mine = sorted(i for i, leader in leaders.items() if leader == b.core.config.node_id)
            theirs = b.core.image.get("spread")
            return (theirs is not None and [p.leader for p in theirs.partitions] == list(leaders.values())
                    and hosted is not None and sorted(hosted.by_index) == mine)

        for b in brokers:
            wait_until(lambda: hosting_follows(b), what=f"broker {b.core.config.node_id} to host its partitions")

        # A replication factor above the live brokers is refused with the reason.
        with pytest.raises(Exception) as refused:
            admin.create_topics([NewTopic("rf4", 3, 4)])["rf4"].result(30)
        assert "INVALID_REPLICATION_FACTOR" in str(refused.value)

        acked = []
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(600):
            producer.produce("spread", f"v{i}".encode(), partition=i % 6,
                             on_delivery=lambda err, msg: acked.append((err, msg.partition(), msg.offset())))
        assert producer.flush(60) == 0
        assert all(err is None for err, _, _ in acked) and len(acked) == 600

        consumer = Consumer({"bootstrap.servers": brokers[2].bootstrap, "group.id": "reader",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition("spread", p, 0) for p in range(6)])
        got = set()
        deadline = time.monotonic() + 30
        while len(got) < 600 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.add((msg.partition(), msg.offset(), msg.value()))
        consumer.close()
        assert {(p, o) for _, p, o in acked} == {(p, o) for p, o, _ in got}
        assert {v for _, _, v in got} == {f"v{i}".encode() for i in range(600)}

        # A consumer group: its coordinator is the leader of its __consumer_offsets
        # partition, wherever that is; a second consumer resumes from the commits.
        def group_consume(n: int) -> list:
            c = Consumer({"bootstrap.servers": brokers[1].bootstrap, "group.id": "spread-group",
                          "auto.offset.reset": "earliest", "enable.auto.commit": False})
            c.subscribe(["spread"])
            out = []
            deadline = time.monotonic() + 45
            while len(out) < n and time.monotonic() < deadline:
                msg = c.poll(0.5)
                if msg is not None and msg.error() is None:
                    out.append(msg.value())
                    if len(out) == n:
                        c.commit(asynchronous=False)
            c.close()
            return out

        first = group_consume(600)
        assert sorted(first) == sorted(v for _, _, v in got)
        for i in range(600, 612):
            producer.produce("spread", f"v{i}".encode(), partition=i % 6)
        assert producer.flush(30) == 0
        assert sorted(group_consume(12)) == sorted(f"v{i}".encode() for i in range(600, 612))
        offsets = brokers[0].core.image.get("__consumer_offsets")
        assert offsets is not None and {p.leader for p in offsets.partitions} == {1, 2, 3}

        # The same node id again: refused while the first one's lease lives.
        with pytest.raises(Exception) as duplicate:
            EmbeddedBroker(data_dir=str(tmp_path / "dup"), node_id=2, config=config).start(timeout=30)
        assert "registered by another live process" in str(duplicate.value)

        # Broker 3 stops: the others list two brokers and its partitions offline.
        brokers[2].stop()
        wait_until(lambda: sorted(brokers[0].core.image.brokers) == [1, 2], what="3's registration to go")
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
        assert sorted(md.brokers) == [1, 2]
        offline = {i for i, p in md.topics["spread"].partitions.items() if p.leader == -1}
        assert offline == {i for i, leader in leaders.items() if leader == 3}
    finally:
        for b in brokers:
            b.stop()


def test_acls_reach_every_broker_through_the_store(etcd, tmp_path):
    from confluent_kafka.admin import AdminClient

    from tests.integration import test_acls as T

    # Brokers reach each other on a PLAINTEXT listener of their own (replication
    # refuses any other inter-broker listener for now).
    config = dict(T.broker_config(), **{
        "metadata.store": etcd.url("acls"), "broker.session.timeout.ms": "3000",
        "listeners": "SASL_PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL"})
    brokers = [EmbeddedBroker(data_dir=str(tmp_path / f"b{i}"), node_id=i, config=config).start() for i in (1, 2)]
    try:
        for b in brokers:
            b.addr = "127.0.0.1:%d" % b.core.endpoints["SASL_PLAINTEXT"][1]
        wait_until(lambda: all(len(b.core.image.brokers) == 2 for b in brokers), what="2 registrations")
        T.create_topics(brokers[0], "shared", "other")
        admin = AdminClient(T.conf(brokers[0], "admin"))
        for f in admin.create_acls([T.acl("TOPIC", "shared", "User:alice", "READ")]).values():
            f.result(timeout=10)
        wait_until(lambda: len(brokers[1].core.image.acls) == 1, what="the ACL on broker 2")
        assert T.topics_seen(brokers[1], "alice") == {"shared"}
    finally:
        for b in brokers:
            b.stop()
