"""Consuming right after a seek: the broker answers data at the fetch offset at once.

librdkafka's test 0059 (a binary search by seeks, ``queued.min.messages=1``)
sees each consume after a seek take about 1 ms or about 1 s, on Apache Kafka
as on odradek. The second is the client's own ``fetch.queue.backoff.ms``
(default 1000): right after a seek its fetcher may find its queue still
holding the records from before the seek (and the seek's version barrier),
and backs off; whether it does is a race between its threads, not something
a broker answers. Both brokers send the same responses (the same records,
from the batch holding the offset to the partition limit) within a
millisecond. With that backoff off, every consume after a seek is fast:
this test holds odradek to it, raw and through librdkafka.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.integration.rawclient import RawClient

pytestmark = pytest.mark.timeout(120)

COUNT = 1000


@pytest.fixture
def topic(odradek_broker):
    name = "seek-latency"
    if not odradek_broker.records(name):
        odradek_broker.create_topic(name, 1)
        p = Producer({"bootstrap.servers": odradek_broker.bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(COUNT):
            p.produce(name, b"m%d" % i, partition=0)
            if i % 100 == 99:
                p.flush(10)  # several batches
        assert p.flush(10) == 0
    return name


def test_fetch_inside_a_batch_does_not_long_poll(odradek_broker, topic):
    """An offset in the middle of a stored batch is data: no wait for max_wait_ms."""
    c = RawClient(odradek_broker.bootstrap)
    try:
        for offset in (0, 357, 550, COUNT - 1):
            t0 = time.monotonic()
            resp = c.request("Fetch", 11, {
                "replica_id": -1, "max_wait_ms": 5000, "min_bytes": 1, "max_bytes": 1 << 20,
                "isolation_level": 1, "session_id": 0, "session_epoch": -1,
                "topics": [{"topic": topic, "partitions": [
                    {"partition": 0, "current_leader_epoch": -1, "fetch_offset": offset,
                     "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}],
                "forgotten_topics_data": [], "rack_id": ""})
            assert time.monotonic() - t0 < 1.0
            part = resp["responses"][0]["partitions"][0]
            assert part["error_code"] == 0 and len(part["records"]) > 0
    finally:
        c.close()


def test_consume_after_seek_is_immediate(odradek_broker, topic):
    """0059's consumer settings, without the client's queue backoff: every
    consume after a seek returns the record at the seek offset at once."""
    c = Consumer({"bootstrap.servers": odradek_broker.bootstrap, "group.id": "seek-latency",
                  "fetch.wait.max.ms": 1, "fetch.error.backoff.ms": 1, "queued.min.messages": 1,
                  "enable.auto.commit": False, "fetch.queue.backoff.ms": 0})
    targets = [500, 249, 374, 311, 342, 357, 100, 900, 3, 999]
    times = []
    try:
        c.assign([TopicPartition(topic, 0, targets[0])])
        for i, offset in enumerate(targets):
            if i:
                c.seek(TopicPartition(topic, 0, offset))
            t0 = time.monotonic()
            m = c.poll(5)
            times.append(time.monotonic() - t0)
            assert m is not None and m.error() is None and m.offset() == offset
    finally:
        c.close()
    assert max(times[1:]) < 0.25, times


@pytest.mark.parametrize("bad", [{"partition": 1, "fetch_offset": 5},   # out of range: OFFSET_OUT_OF_RANGE
                                 {"partition": 7, "fetch_offset": 0}])  # no such partition
def test_a_partition_in_error_ends_the_long_poll_at_once(odradek_broker, bad):
    """As Kafka: a Fetch with a partition it answers with an error is answered
    at once, not after max_wait_ms (a consumer resetting its offset, or
    finding a moved leader, is not kept waiting)."""
    from tests.integration.rawclient import RawClient

    topic = f"errs-{bad['partition']}"
    odradek_broker.create_topic(topic, 2)
    odradek_broker.produce(topic, [b"one"])
    c = RawClient(odradek_broker.bootstrap)
    try:
        t0 = time.monotonic()
        resp = c.request("Fetch", 11, {
            "replica_id": -1, "max_wait_ms": 5000, "min_bytes": 1 << 20, "max_bytes": 1 << 20,
            "isolation_level": 0, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": topic, "partitions": [
                {"partition": p["partition"], "current_leader_epoch": -1, "fetch_offset": p["fetch_offset"],
                 "log_start_offset": -1, "partition_max_bytes": 1 << 20}
                for p in ({"partition": 0, "fetch_offset": 1}, bad)]}],
            "forgotten_topics_data": [], "rack_id": ""})
        elapsed = time.monotonic() - t0
    finally:
        c.close()
    codes = {p["partition_index"]: p["error_code"] for p in resp["responses"][0]["partitions"]}
    assert codes[0] == 0 and codes[bad["partition"]] != 0
    assert elapsed < 2.5, elapsed
