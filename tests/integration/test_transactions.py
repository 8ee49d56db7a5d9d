"""Transactions with real clients: confluent-kafka's transactional producer
against read_committed and read_uncommitted consumers, offsets sent in a
transaction, zombie fencing, timeouts, and restarts mid-transaction."""

from __future__ import annotations

import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition  # noqa: E402

from tests.integration.rawclient import RawClient  # noqa: E402

TXN_CONFIG = {"transaction.state.log.num.partitions": "3"}


def producer(bootstrap, txn_id, **extra):
    conf = {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 0}
    conf.update(extra)
    p = Producer(conf)
    p.init_transactions(30)
    return p


def read(bootstrap, topics, isolation, expect=None, timeout=10.0, group=None):
    """Every record's (topic, partition, value), reading the partitions from the
    beginning until ``expect`` records came or nothing came for a while."""
    conf = {"bootstrap.servers": bootstrap, "group.id": group or f"reader-{time.monotonic_ns()}",
            "enable.auto.commit": False, "isolation.level": isolation}
    c = Consumer(conf)
    c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, parts in topics.items() for p in range(parts)])
    out = []
    deadline = time.monotonic() + timeout
    idle_until = None
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                if expect is not None and len(out) >= expect:
                    if idle_until is None:
                        idle_until = time.monotonic() + 1.0
                    elif time.monotonic() > idle_until:
                        break
                continue
            if m.error():
                continue
            out.append((m.topic(), m.partition(), m.value()))
    finally:
        c.close()
    return out


def values(records):
    return [v for _, _, v in records]


def test_committed_and_aborted_transactions(odradek_broker_factory):
    b = odradek_broker_factory(config=TXN_CONFIG)
    b.create_topic("tx-a", 1)
    b.create_topic("tx-b", 1)
    b.create_topic("tx-only-aborted", 1)
    p = producer(b.bootstrap, "txn-basic")
    expected = []
    for i in range(6):
        p.begin_transaction()
        for topic in ("tx-a", "tx-b"):
            p.produce(topic, b"%s-%d" % (topic.encode(), i))
        if i % 2:
            p.produce("tx-only-aborted", b"never-%d" % i)
            p.flush()  # written, then aborted (abort_transaction drops records not yet sent)
            p.abort_transaction(30)
        else:
            p.commit_transaction(30)
            expected += [("tx-a", 0, b"tx-a-%d" % i), ("tx-b", 0, b"tx-b-%d" % i)]
    plain = Producer({"bootstrap.servers": b.bootstrap})  # outside any transaction: always visible
    plain.produce("tx-a", b"plain")
    assert plain.flush(30) == 0
    expected.append(("tx-a", 0, b"plain"))
    topics = {"tx-a": 1, "tx-b": 1, "tx-only-aborted": 1}
    committed = read(b.bootstrap, topics, "read_committed", expect=len(expected))
    assert sorted(committed) == sorted(expected)
    # in order, per partition
    assert [v for t, _, v in committed if t == "tx-a"] == [v for t, _, v in expected if t == "tx-a"]
    everything = read(b.bootstrap, topics, "read_uncommitted", expect=16)
    assert len([v for v in values(everything) if b"never" in v]) == 3
    assert len(everything) == 16


def test_open_transaction_blocks_read_committed_until_it_ends(odradek_broker_factory):
    b = odradek_broker_factory(config=TXN_CONFIG)
    b.create_topic("tx-block", 1)
    slow = producer(b.bootstrap, "txn-slow")
    fast = producer(b.bootstrap, "txn-fast")
    slow.begin_transaction()
    slow.produce("tx-block", b"slow")
    slow.flush()
    fast.begin_transaction()
    fast.produce("tx-block", b"fast")
    fast.commit_transaction(30)
    # fast's committed record is after slow's first offset: not readable yet
    assert read(b.bootstrap, {"tx-block": 1}, "read_committed", timeout=2.0) == []
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "lso", "isolation.level": "read_committed"})
    low, high = c.get_watermark_offsets(TopicPartition("tx-block", 0), timeout=10, cached=False)
    c.close()
    assert high == 0  # ListOffsets latest under read_committed: the last stable offset
    slow.commit_transaction(30)
    assert values(read(b.bootstrap, {"tx-block": 1}, "read_committed", expect=2)) == [b"slow", b"fast"]


def test_offsets_sent_in_a_transaction(odradek_broker_factory):
    b = odradek_broker_factory(config=TXN_CONFIG)
    b.create_topic("tx-in", 1)
    b.create_topic("tx-out", 1)
    group = "copier"
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    meta = c.consumer_group_metadata()
    p = producer(b.bootstrap, "txn-offsets")

    def committed():
        return c.committed([TopicPartition("tx-in", 0)], timeout=10)[0].offset

    p.begin_transaction()
    p.produce("tx-out", b"x")
    p.send_offsets_to_transaction([TopicPartition("tx-in", 0, 5)], meta, 30)
    p.abort_transaction(30)
    assert committed() < 0  # dropped with the abort
    p.begin_transaction()
    p.produce("tx-out", b"y")
    p.send_offsets_to_transaction([TopicPartition("tx-in", 0, 7)], meta, 30)
    raw = RawClient(b.bootstrap)
    try:
        def fetch(stable):
            r = raw.request("OffsetFetch", 7, {"group_id": group, "require_stable": stable,
                                               "topics": [{"name": "tx-in", "partition_indexes": [0]}]})
            part = r["topics"][0]["partitions"][0]
            return part["error_code"], part["committed_offset"]

        assert fetch(True) == (88, -1)  # UNSTABLE_OFFSET_COMMIT while the commit is pending
        assert fetch(False) == (0, -1)
        p.commit_transaction(30)
        assert fetch(True) == (0, 7)
    finally:
        raw.close()
    assert committed() == 7
    c.close()
    assert values(read(b.bootstrap, {"tx-out": 1}, "read_committed", expect=1)) == [b"y"]


def test_zombie_is_fenced(odradek_broker_factory):
    b = odradek_broker_factory(config=TXN_CONFIG)
    b.create_topic("tx-zombie", 1)
    old = producer(b.bootstrap, "txn-zombie")
    old.begin_transaction()
    old.produce("tx-zombie", b"zombie-1")
    old.flush()
    new = producer(b.bootstrap, "txn-zombie")  # fences old, aborting its transaction
    new.begin_transaction()
    new.produce("tx-zombie", b"new")
    new.commit_transaction(30)
    with pytest.raises(KafkaException) as e:
        old.produce("tx-zombie", b"zombie-2")
        old.commit_transaction(10)
    err = e.value.args[0]
    assert err.fatal() or err.txn_requires_abort(), err
    assert values(read(b.bootstrap, {"tx-zombie": 1}, "read_committed", expect=1)) == [b"new"]


def test_zombie_produce_after_fencing_is_fatal(odradek_broker_factory):
    """A fenced producer that keeps producing: the Produce is refused with
    INVALID_PRODUCER_EPOCH (the coordinator's PRODUCER_FENCED, as Kafka maps it
    for Produce), which librdkafka raises as the fatal _FENCED; with
    PRODUCER_FENCED it only saw an abortable error (librdkafka test 0103)."""
    from confluent_kafka import KafkaError

    b = odradek_broker_factory(config=TXN_CONFIG)
    b.create_topic("tx-zombie-produce", 1)
    old = producer(b.bootstrap, "txn-zombie-produce")
    old.begin_transaction()
    old.produce("tx-zombie-produce", b"zombie-1")
    old.flush()
    producer(b.bootstrap, "txn-zombie-produce")  # fences old, aborting its transaction
    old.produce("tx-zombie-produce", b"zombie-2")
    with pytest.raises(KafkaException) as e:
        old.flush(10)  # raises once the producer has a fatal error
        old.commit_transaction(10)
    err = e.value.args[0]
    assert err.fatal() and not err.txn_requires_abort(), err
    assert err.code() == KafkaError._FENCED, err
    assert values(read(b.bootstrap, {"tx-zombie-produce": 1}, "read_committed", timeout=2)) == []


def test_timeout_aborts_an_abandoned_transaction(odradek_broker_factory):
    b = odradek_broker_factory(config=TXN_CONFIG)
    b.create_topic("tx-timeout", 1)
    p = producer(b.bootstrap, "txn-timeout", **{"transaction.timeout.ms": 1500})
    p.begin_transaction()
    p.produce("tx-timeout", b"abandoned")
    p.flush()
    other = producer(b.bootstrap, "txn-other")
    other.begin_transaction()
    other.produce("tx-timeout", b"kept")
    other.commit_transaction(30)
    # within a few seconds the coordinator aborts the abandoned transaction
    assert values(read(b.bootstrap, {"tx-timeout": 1}, "read_committed", expect=1, timeout=15)) == [b"kept"]
    assert sorted(values(read(b.bootstrap, {"tx-timeout": 1}, "read_uncommitted", expect=2))) == \
        [b"abandoned", b"kept"]


def test_transaction_survives_broker_kill(broker_process, tmp_path):
    props = dict(TXN_CONFIG)
    b = broker_process(tmp_path / "d", props=props)
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("tx-kill", 1)])["tx-kill"].result(30)
    p = producer(b.bootstrap, "txn-kill")
    p.begin_transaction()
    p.produce("tx-kill", b"before")
    p.flush()
    b.kill()
    b.start()
    p.produce("tx-kill", b"after")
    p.commit_transaction(60)
    got = values(read(b.bootstrap, {"tx-kill": 1}, "read_committed", expect=2, timeout=20))
    assert got == [b"before", b"after"]
    b.kill()
    b.start()  # markers and state rebuilt from the log after a second kill
    got = values(read(b.bootstrap, {"tx-kill": 1}, "read_committed", expect=2, timeout=20))
    assert got == [b"before", b"after"]


class StuckMarkers:
    """A marker writer whose partitions never answer: the transaction stays in
    its Prepare state, as when a coordinator dies between Prepare and Complete."""

    async def write(self, producer_id, producer_epoch, coordinator_epoch, commit, partitions):
        return {tp: 6 for tp in partitions}  # NOT_LEADER_OR_FOLLOWER: retried


def test_prepared_commit_is_completed_after_restart(odradek_broker_factory, tmp_path):
    from odradek.protocol.batch import iter_batches

    data = str(tmp_path / "d")
    b = odradek_broker_factory(config=TXN_CONFIG, data_dir=data)
    b.create_topic("tx-prepared", 2)
    b.broker.core.transactions.markers = StuckMarkers()
    p = producer(b.bootstrap, "txn-prepared")
    p.begin_transaction()
    p.produce("tx-prepared", b"one", partition=0)
    p.produce("tx-prepared", b"two", partition=1)
    p.commit_transaction(30)  # answered once PrepareCommit is written
    assert read(b.bootstrap, {"tx-prepared": 2}, "read_committed", timeout=2.0) == []
    states = b.broker.core.transactions.durable_view()
    assert states["txn-prepared"][3] == "PREPARE_COMMIT"
    b.broker.stop()
    b = odradek_broker_factory(config=TXN_CONFIG, data_dir=data)
    got = read(b.bootstrap, {"tx-prepared": 2}, "read_committed", expect=2, timeout=20)
    assert sorted(values(got)) == [b"one", b"two"]
    deadline = time.monotonic() + 10
    while b.broker.core.transactions.durable_view()["txn-prepared"][3] != "COMPLETE_COMMIT":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # exactly one marker per partition
    for index in range(2):
        part = b.broker.core.replicas.partition_or_error("tx-prepared", index)[0]
        buf = b"".join(bytes(c) for c in part.read_for_replica(0, 1 << 20).chunks)
        assert [h.is_control for _, h in iter_batches(buf)] == [False, True]


def test_describe_and_list_transactions_and_producers(odradek_broker_factory):
    b = odradek_broker_factory(config=TXN_CONFIG)
    b.create_topic("tx-describe", 1)
    p = producer(b.bootstrap, "txn-describe")
    done = producer(b.bootstrap, "txn-done")
    done.begin_transaction()
    done.produce("tx-describe", b"d")
    done.commit_transaction(30)
    p.begin_transaction()
    p.produce("tx-describe", b"x")
    p.flush()
    raw = RawClient(b.bootstrap)
    try:
        d = raw.request("DescribeTransactions", 0, {"transactional_ids": ["txn-describe", "nope"]})
        ours, unknown = d["transaction_states"]
        assert ours["error_code"] == 0 and ours["transaction_state"] == "Ongoing"
        assert ours["topics"] == [{"topic": "tx-describe", "partitions": [0]}]
        assert ours["transaction_start_time_ms"] > 0 and ours["producer_id"] >= 0
        assert unknown["error_code"] == 105  # TRANSACTIONAL_ID_NOT_FOUND
        lst = raw.request("ListTransactions", 1, {"state_filters": [], "producer_id_filters": [],
                                                  "duration_filter": -1})
        assert {(s["transactional_id"], s["transaction_state"]) for s in lst["transaction_states"]} == {
            ("txn-describe", "Ongoing"), ("txn-done", "CompleteCommit")}
        lst = raw.request("ListTransactions", 2, {"state_filters": ["Ongoing", "Bogus"], "producer_id_filters": [],
                                                  "duration_filter": -1, "transactional_id_pattern": "txn-.*"})
        assert [s["transactional_id"] for s in lst["transaction_states"]] == ["txn-describe"]
        assert lst["unknown_state_filters"] == ["Bogus"]
        prod = raw.request("DescribeProducers", 0, {"topics": [{"name": "tx-describe", "partition_indexes": [0]}]})
        active = {a["producer_id"]: a for a in prod["topics"][0]["partitions"][0]["active_producers"]}
        assert active[ours["producer_id"]]["current_txn_start_offset"] == 2  # after d (0) and its marker (1)
        assert all(a["current_txn_start_offset"] == -1 for pid, a in active.items() if pid != ours["producer_id"])
    finally:
        raw.close()
    p.abort_transaction(30)


def test_the_transaction_log_is_written_with_acks_all(odradek_broker_factory):
    """As Kafka's transaction coordinator (acks=all, min.insync.replicas of
    __transaction_state, transaction.state.log.min.isr at creation): while
    the partition's ISR is below it, InitProducerId is refused
    COORDINATOR_NOT_AVAILABLE and nothing is written; raised back to what
    the ISR holds, it goes through. The group coordinator writes with acks=1
    as Kafka 4's does: offsets commit under the same setting."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    b = odradek_broker_factory(config=dict(TXN_CONFIG, **{"transaction.state.log.min.isr": "2"}))
    producer(b.bootstrap, "acks-all-1").flush()  # creates the topic: min.insync.replicas capped to its 1 replica
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    described = admin.describe_configs([ConfigResource("topic", "__transaction_state")])
    assert next(iter(described.values())).result(10)["min.insync.replicas"].value == "1"

    def set_min_isr(topic, value):
        entry = ConfigEntry("min.insync.replicas", value, incremental_operation=AlterConfigOpType.SET)
        for f in admin.incremental_alter_configs([ConfigResource("topic", topic, incremental_configs=[entry])]).values():
            f.result(10)

    set_min_isr("__transaction_state", "2")
    raw = RawClient(b.bootstrap)
    try:
        def init(txn_id):
            return raw.request("InitProducerId", 4, {"transactional_id": txn_id, "transaction_timeout_ms": 60000,
                                                     "producer_id": -1, "producer_epoch": -1})["error_code"]

        coordinator = raw.request("FindCoordinator", 4, {"key_type": 1, "coordinator_keys": ["acks-all-2"]})
        assert coordinator["coordinators"][0]["error_code"] == 0
        assert init("acks-all-2") == 15  # COORDINATOR_NOT_AVAILABLE: the write was refused
        set_min_isr("__transaction_state", "1")
        assert init("acks-all-2") == 0
    finally:
        raw.close()

    from confluent_kafka.admin import NewTopic

    admin.create_topics([NewTopic("anything", 1, 1)])["anything"].result(10)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "acks-one", "enable.auto.commit": False})
    c.assign([TopicPartition("anything", 0, 5)])
    c.commit(offsets=[TopicPartition("anything", 0, 5)], asynchronous=False)  # creates __consumer_offsets
    set_min_isr("__consumer_offsets", "2")
    c.commit(offsets=[TopicPartition("anything", 0, 7)], asynchronous=False)
    assert c.committed([TopicPartition("anything", 0)], timeout=10)[0].offset == 7
    c.close()
