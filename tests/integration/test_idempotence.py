"""Idempotent produce: duplicates acknowledged without a second write, gaps refused."""

from __future__ import annotations

from odradek.protocol.records import build_batch
from tests.integration.rawclient import RawClient


def produce(client, topic, batch, version=9):
    resp = client.request("Produce", version, {
        "acks": -1, "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}]})
    return resp["responses"][0]["partition_responses"][0]


def test_duplicates_and_sequence_gaps(odradek_broker):
    topic = odradek_broker.create_topic("idem", partitions=1)
    c = RawClient(odradek_broker.bootstrap)
    try:
        init = c.request("InitProducerId", 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                               "producer_id": -1, "producer_epoch": -1})
        assert init["error_code"] == 0
        pid, epoch = init["producer_id"], init["producer_epoch"]

        def batch(seq, n=2):
            return build_batch([(b"k", b"v%d" % (seq + i), [], 1000) for i in range(n)],
                               producer_id=pid, producer_epoch=epoch, base_sequence=seq)

        first = produce(c, topic, batch(0))
        assert (first["error_code"], first["base_offset"]) == (0, 0)
        second = produce(c, topic, batch(2))
        assert (second["error_code"], second["base_offset"]) == (0, 2)
        # The same batch again (a retry): acknowledged at its first offsets, not written.
        dup = produce(c, topic, batch(2))
        assert (dup["error_code"], dup["base_offset"]) == (0, 2)
        assert odradek_broker.end_offsets(topic) == [4]
        # A gap in sequence numbers.
        gap = produce(c, topic, batch(7))
        assert gap["error_code"] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
        # An old epoch is fenced after a bump.
        bumped = c.request("InitProducerId", 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                                 "producer_id": pid, "producer_epoch": epoch})
        assert bumped["producer_epoch"] == epoch + 1
        new = build_batch([(b"k", b"new", [], 1000)], producer_id=pid, producer_epoch=epoch + 1, base_sequence=0)
        assert produce(c, topic, new)["error_code"] == 0
        stale = produce(c, topic, batch(4))
        assert stale["error_code"] == 47  # INVALID_PRODUCER_EPOCH
        assert odradek_broker.end_offsets(topic) == [5]
    finally:
        c.close()


def test_producer_state_survives_restart(odradek_broker_factory, tmp_path):
    b = odradek_broker_factory(data_dir=str(tmp_path / "d"))
    b.create_topic("idem2", partitions=1)
    c = RawClient(b.bootstrap)
    init = c.request("InitProducerId", 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                           "producer_id": -1, "producer_epoch": -1})
    pid = init["producer_id"]
    batch = build_batch([(b"k", b"v", [], 1000)], producer_id=pid, producer_epoch=0, base_sequence=0)
    assert produce(c, "idem2", batch)["base_offset"] == 0
    c.close()
    b.broker.stop()
    b2 = odradek_broker_factory(data_dir=str(tmp_path / "d"))
    c = RawClient(b2.bootstrap)
    try:
        # The retry after the restart is still recognised as a duplicate.
        assert produce(c, "idem2", batch)["base_offset"] == 0
        assert b2.end_offsets("idem2") == [1]
        # New producer ids never repeat an old one.
        init2 = c.request("InitProducerId", 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                                "producer_id": -1, "producer_epoch": -1})
        assert init2["producer_id"] > pid
    finally:
        c.close()


def test_acks_zero_error_closes_the_connection(odradek_broker):
    import pytest

    c = RawClient(odradek_broker.bootstrap)
    try:
        bad = bytearray(build_batch([(b"k", b"v", [], 1000)]))
        bad[-1] ^= 1  # CRC mismatch
        body = {"acks": 0, "timeout_ms": 1000,
                "topic_data": [{"name": "acks0", "partition_data": [{"index": 0, "records": bytes(bad)}]}]}
        odradek_broker.create_topic("acks0", 1)
        from odradek.protocol.schema import codec
        import struct

        out = bytearray()
        codec("RequestHeader", 1).encode({"request_api_key": 0, "request_api_version": 7,
                                          "correlation_id": 1, "client_id": "raw"}, out)
        codec("ProduceRequest", 7).encode(body, out)
        c.sock.sendall(struct.pack(">i", len(out)) + out)
        with pytest.raises((ConnectionError, OSError)):
            c._recv(4)
    finally:
        c.close()


def test_idle_producers_expire_and_carry_on(odradek_broker_factory):
    """producer.id.expiration.ms (a dynamic setting; checked every
    producer.id.expiration.check.interval.ms): an idle idempotent producer's
    state is forgotten, DescribeProducers no longer lists it, and its next
    batches, which go on from its last sequence, are taken, as Kafka 4 takes
    a first batch at any sequence. A producer this broker never saw may start
    at any sequence too (measured on Kafka 4.4: a first batch at sequence 5
    is written)."""
    import time

    from confluent_kafka import Producer

    b = odradek_broker_factory(config={"producer.id.expiration.check.interval.ms": "100"})
    b.create_topic("idem-expire", partitions=1)
    c = RawClient(b.bootstrap)
    try:
        def producers():
            resp = c.request("DescribeProducers", 0, {"topics": [{"name": "idem-expire",
                                                                  "partition_indexes": [0]}]})
            return resp["topics"][0]["partitions"][0]["active_producers"]

        alter = c.request("IncrementalAlterConfigs", 1, {"resources": [{
            "resource_type": 4, "resource_name": "", "configs": [
                {"name": "producer.id.expiration.ms", "config_operation": 0, "value": "1500"}]}],
            "validate_only": False})
        assert alter["responses"][0]["error_code"] == 0, alter
        p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 0})
        errors = []
        for i in range(10):
            p.produce("idem-expire", b"a%d" % i, partition=0, on_delivery=lambda e, m: e and errors.append(e))
        assert p.flush(10) == 0
        assert len(producers()) == 1
        deadline = time.monotonic() + 10
        while producers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert producers() == []
        for i in range(10):
            p.produce("idem-expire", b"b%d" % i, partition=0, on_delivery=lambda e, m: e and errors.append(e))
        assert p.flush(10) == 0 and not errors, errors
        assert [x["last_sequence"] for x in producers()] == [19]
        assert b.end_offsets("idem-expire") == [20]

        init = c.request("InitProducerId", 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                               "producer_id": -1, "producer_epoch": -1})
        first = produce(c, "idem-expire", build_batch([(None, b"x", [], -1)] * 2, producer_id=init["producer_id"],
                                                      producer_epoch=init["producer_epoch"], base_sequence=5))
        assert (first["error_code"], first["base_offset"]) == (0, 20)
    finally:
        c.close()
