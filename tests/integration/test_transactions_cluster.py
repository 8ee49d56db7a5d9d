"""Transactions across brokers: the transaction coordinator on one broker
sends WriteTxnMarkers to the leaders of the transaction's other partitions."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.odradek_cluster(brokers=3, config={"transaction.state.log.num.partitions": "3"})]

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def test_transactions_over_partitions_led_by_three_brokers(odradek_cluster):
    bootstrap = odradek_cluster.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("spread", 6, 1)])["spread"].result(30)
    leaders = {p.id: p.leader for p in admin.list_topics("spread", timeout=10).topics["spread"].partitions.values()}
    assert len(set(leaders.values())) == 3, leaders  # every broker leads some partition
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "spread-txn"})
    p.init_transactions(60)
    group = Consumer({"bootstrap.servers": bootstrap, "group.id": "spread-group", "enable.auto.commit": False})
    for n, commit in enumerate((True, False, True)):
        p.begin_transaction()
        for i in range(6):
            p.produce("spread", b"%s-%d" % (b"c" if commit else b"a", i), partition=i)
        p.flush()
        p.send_offsets_to_transaction([TopicPartition("spread", 0, 10 + n)], group.consumer_group_metadata(), 60)
        if commit:
            p.commit_transaction(60)
        else:
            p.abort_transaction(60)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "spread-check", "isolation.level": "read_committed",
                  "enable.auto.commit": False})
    c.assign([TopicPartition("spread", i, OFFSET_BEGINNING) for i in range(6)])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 12 and time.monotonic() < deadline:
        got.extend(m.value() for m in c.consume(num_messages=100, timeout=0.5) if not m.error())
    got.extend(m.value() for m in c.consume(num_messages=100, timeout=1.5) if not m.error())
    c.close()
    assert sorted(got) == sorted([b"c-%d" % i for i in range(6)] * 2)
    # offsets of the committed transactions only, on the group's coordinator (wherever it is)
    assert group.committed([TopicPartition("spread", 0)], timeout=10)[0].offset == 12
    group.close()


def test_writes_verified_with_a_coordinator_on_another_broker(odradek_cluster):
    from odradek.protocol.records import build_batch
    from tests.integration.rawclient import RawClient

    bootstrap = odradek_cluster.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("verified", 3, 1)])["verified"].result(30)
    leaders = {p.id: p.leader for p in admin.list_topics("verified", timeout=10).topics["verified"].partitions.values()}
    raw = RawClient(bootstrap.split(",")[0])
    try:
        fc = raw.request("FindCoordinator", 1, {"key": "raw-txn", "key_type": 1})
        assert fc["error_code"] == 0, fc
    finally:
        raw.close()
    coord = RawClient(f"{fc['host']}:{fc['port']}")
    index = next(i for i, leader in leaders.items() if leader != fc["node_id"])  # led elsewhere
    leader = RawClient(odradek_cluster.broker(leaders[index]).address)
    try:
        deadline = time.monotonic() + 15
        while True:  # as clients do: a coordinator still loading (14) or not ready (15) is asked again
            init = coord.request("InitProducerId", 4, {"transactional_id": "raw-txn",
                                                       "transaction_timeout_ms": 60000,
                                                       "producer_id": -1, "producer_epoch": -1})
            if init["error_code"] not in (14, 15) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert init["error_code"] == 0, init
        pid, epoch = init["producer_id"], init["producer_epoch"]

        def produce():
            batch = build_batch([(b"k", b"v", [], 1000)], producer_id=pid, producer_epoch=epoch, base_sequence=0,
                                transactional=True)
            r = leader.request("Produce", 9, {"transactional_id": "raw-txn", "acks": -1, "timeout_ms": 5000,
                                              "topic_data": [{"name": "verified", "partition_data": [
                                                  {"index": index, "records": batch}]}]})
            return r["responses"][0]["partition_responses"][0]["error_code"]

        assert produce() == 48  # INVALID_TXN_STATE: not added, says the coordinator on the other broker
        add = coord.request("AddPartitionsToTxn", 3, {
            "v3_and_below_transactional_id": "raw-txn", "v3_and_below_producer_id": pid,
            "v3_and_below_producer_epoch": epoch, "v3_and_below_topics": [{"name": "verified", "partitions": [index]}]})
        assert add["results_by_topic_v3_and_below"][0]["results_by_partition"][0]["partition_error_code"] == 0
        assert produce() == 0
        end = coord.request("EndTxn", 3, {"transactional_id": "raw-txn", "producer_id": pid, "producer_epoch": epoch,
                                          "committed": False})
        assert end["error_code"] == 0
    finally:
        coord.close()
        leader.close()
