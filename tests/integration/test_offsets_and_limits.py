"""Acceptance 3, 5 and 6 of the broker core: timestamps and watermarks,
DeleteRecords, message size limits, many partitions, and garbage on the port."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from odradek.protocol.schema import codec


def producer(bootstrap, **extra):
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 2, "acks": "all"}
    conf.update(extra)
    return Producer(conf)


def produce_sync(p, topic, value, **kw):
    result = {}

    def cb(err, msg):
        result["err"], result["msg"] = err, msg

    p.produce(topic, value, on_delivery=cb, **kw)
    p.flush(30)
    return result["err"], result["msg"]


def test_offsets_for_times_and_watermarks(odradek_broker):
    topic = odradek_broker.create_topic("times", partitions=1)
    p = producer(odradek_broker.bootstrap)
    base = int(time.time() * 1000) - 100_000
    for i in range(20):
        produce_sync(p, topic, f"v{i}".encode(), timestamp=base + i * 1000, partition=0)
    c = Consumer({"bootstrap.servers": odradek_broker.bootstrap, "group.id": "times"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert (low, high) == (0, 20)
        for i in (0, 5, 19):
            [tp] = c.offsets_for_times([TopicPartition(topic, 0, base + i * 1000)], timeout=10)
            assert tp.offset == i
        # Between two timestamps: the first record at or after.
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, base + 5500)], timeout=10)
        assert tp.offset == 6
        # After the last: no offset (-1, "end").
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, base + 10**7)], timeout=10)
        assert tp.offset == -1
    finally:
        c.close()


def test_list_offsets_max_timestamp_kafka_python(odradek_broker):
    from kafka import KafkaConsumer, TopicPartition as KTP

    topic = odradek_broker.create_topic("maxts", partitions=1)
    p = producer(odradek_broker.bootstrap)
    base = int(time.time() * 1000) - 50_000
    for i, dt in enumerate([5, 50, 10]):
        produce_sync(p, topic, b"x", timestamp=base + dt, partition=0)
    c = KafkaConsumer(bootstrap_servers=odradek_broker.bootstrap)
    try:
        tp = KTP(topic, 0)
        assert c.beginning_offsets([tp])[tp] == 0
        assert c.end_offsets([tp])[tp] == 3
        found = c.offsets_for_times({tp: base + 6})[tp]
        assert (found.offset, found.timestamp) == (1, base + 50)
    finally:
        c.close()


def test_delete_records_moves_log_start(odradek_broker):
    from confluent_kafka.admin import AdminClient

    topic = odradek_broker.create_topic("delrec", partitions=1)
    p = producer(odradek_broker.bootstrap)
    for i in range(10):
        produce_sync(p, topic, f"v{i}".encode(), partition=0)
    admin = AdminClient({"bootstrap.servers": odradek_broker.bootstrap})
    fut = admin.delete_records([TopicPartition(topic, 0, 4)])
    [(tp, f)] = fut.items()
    res = f.result(10)
    assert res.low_watermark == 4
    c = Consumer({"bootstrap.servers": odradek_broker.bootstrap, "group.id": "delrec",
                  "auto.offset.reset": "earliest"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert (low, high) == (4, 10)
        c.assign([TopicPartition(topic, 0, -2)])
        got = []
        deadline = time.monotonic() + 15
        while len(got) < 6 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.offset())
        assert got == [4, 5, 6, 7, 8, 9]
    finally:
        c.close()


def test_one_megabyte_round_trip_and_message_too_large(odradek_broker):
    big = odradek_broker.create_topic("big", partitions=1, config={"max.message.bytes": 2_000_000})
    small = odradek_broker.create_topic("small-limit", partitions=1, config={"max.message.bytes": 100_000})
    value = bytes(range(256)) * 4096  # 1 MiB
    p = producer(odradek_broker.bootstrap, **{"message.max.bytes": 3_000_000})
    err, msg = produce_sync(p, big, value, partition=0)
    assert err is None
    err, msg = produce_sync(p, small, value, partition=0)
    assert err is not None and err.name() == "MSG_SIZE_TOO_LARGE"
    c = Consumer({"bootstrap.servers": odradek_broker.bootstrap, "group.id": "big",
                  "fetch.max.bytes": 1024, "max.partition.fetch.bytes": 1024,
                  "message.max.bytes": 1000, "receive.message.max.bytes": 4_000_000})
    try:
        c.assign([TopicPartition(big, 0, 0)])
        deadline = time.monotonic() + 15
        m = None
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                break
        # The fetch limits are smaller than the message: at least one whole batch is returned.
        assert m is not None and m.value() == value
    finally:
        c.close()


def test_message_too_large_kafka_python(odradek_broker):
    from kafka import KafkaProducer
    from kafka.errors import MessageSizeTooLargeError

    topic = odradek_broker.create_topic("small-limit-kp", partitions=1, config={"max.message.bytes": 10_000})
    p = KafkaProducer(bootstrap_servers=odradek_broker.bootstrap, max_request_size=5_000_000)
    try:
        with pytest.raises(MessageSizeTooLargeError):
            p.send(topic, b"x" * 50_000).get(timeout=20)
    finally:
        p.close(5)


def test_two_hundred_partitions(odradek_broker):
    topic = "wide"
    admin = AdminClient({"bootstrap.servers": odradek_broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=200, replication_factor=1)])[topic].result(20)
    p = producer(odradek_broker.bootstrap, **{"linger.ms": 20})
    for i in range(200):
        p.produce(topic, f"v{i}".encode(), partition=i)
    assert p.flush(30) == 0
    assert odradek_broker.end_offsets(topic) == [1] * 200
    c = Consumer({"bootstrap.servers": odradek_broker.bootstrap, "group.id": "wide"})
    try:
        c.assign([TopicPartition(topic, i, 0) for i in range(200)])
        seen = set()
        deadline = time.monotonic() + 30
        while len(seen) < 200 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                seen.add(m.partition())
        assert len(seen) == 200
    finally:
        c.close()


def _raw_request(port, payload: bytes, read=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(payload)
        if not read:
            return None
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
            if len(data) >= 4 and len(data) >= 4 + struct.unpack(">i", data[:4])[0]:
                return data
    except (ConnectionResetError, socket.timeout):
        return b""
    finally:
        s.close()


def test_garbage_leaves_broker_serving(odradek_broker):
    port = int(odradek_broker.bootstrap.rsplit(":", 1)[1])
    bad_inputs = [
        b"\xff" * 64,                                       # negative frame size
        struct.pack(">i", 2**30) + b"x" * 100,              # over socket.request.max.bytes
        struct.pack(">i", 10) + b"\x00" * 10,               # truncated header
        struct.pack(">ihhi", 8, 999, 0, 1),                 # unknown API key
        struct.pack(">ihhi", 8, 3, 99, 1),                  # unsupported Metadata version
        struct.pack(">ihhih", 12, 0, 9, 7, -1) + b"\x07\x07",   # malformed Produce v9 body
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for payload in bad_inputs:
        _raw_request(port, payload)
    # ApiVersions at an unknown version: error 35 with a v0 body listing the APIs.
    resp = _raw_request(port, struct.pack(">ihhih", 10, 18, 99, 42, -1))
    size, corr = struct.unpack(">ii", resp[:8])
    assert corr == 42
    body, _ = codec("ApiVersionsResponse", 0).decode(resp, 8)
    assert body["error_code"] == 35 and any(k["api_key"] == 0 for k in body["api_keys"])
    # A Produce with a corrupt batch is answered with CORRUPT_MESSAGE, not a crash.
    topic = odradek_broker.create_topic("garbage-target", partitions=1)
    from odradek.protocol.records import build_batch

    batch = bytearray(build_batch([(b"k", b"v", [], 1)]))
    batch[-1] ^= 0xFF  # break the CRC
    req = {"acks": 1, "timeout_ms": 1000,
           "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": bytes(batch)}]}]}
    body = codec("ProduceRequest", 7).encode(req)
    header = struct.pack(">hhih", 0, 7, 5, -1)
    resp = _raw_request(port, struct.pack(">i", len(header) + len(body)) + header + body)
    decoded, _ = codec("ProduceResponse", 7).decode(resp, 8)
    assert decoded["responses"][0]["partition_responses"][0]["error_code"] == 2
    # Other clients still work, and nothing was stored.
    err, msg = produce_sync(producer(odradek_broker.bootstrap), topic, b"after garbage", partition=0)
    assert err is None and msg.offset() == 0


def _stored_codecs(handle, topic):
    from odradek.protocol.batch import iter_batches

    p = handle.broker.core.replicas.partition_or_error(topic, 0)[0]
    res = p.log.read(0, 1 << 24, p.log.high_watermark)
    return [h.compression for chunk in res.chunks for _, h in iter_batches(chunk)]


def test_topic_compression_type_recompresses(odradek_broker):
    topic = odradek_broker.create_topic("recompress", partitions=1, config={"compression.type": "zstd"})
    p = producer(odradek_broker.bootstrap, **{"compression.type": "gzip", "enable.idempotence": True})
    for i in range(5):
        produce_sync(p, topic, f"value-{i}".encode() * 20, key=b"k", partition=0)
    assert set(_stored_codecs(odradek_broker, topic)) == {4}
    assert [r.value for r in odradek_broker.records(topic)] == [f"value-{i}".encode() * 20 for i in range(5)]


def test_log_append_time(odradek_broker):
    topic = odradek_broker.create_topic("lat", partitions=1, config={"message.timestamp.type": "LogAppendTime"})
    p = producer(odradek_broker.bootstrap)
    before = int(time.time() * 1000)
    err, msg = produce_sync(p, topic, b"x", timestamp=1000, partition=0)
    assert err is None
    kind, ts = msg.timestamp()
    assert kind == 2 and ts >= before  # TIMESTAMP_LOG_APPEND_TIME
    [rec] = odradek_broker.records(topic)
    assert rec.timestamp >= before
