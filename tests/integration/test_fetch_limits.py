"""Fetch response size limits (KIP-74).

The first partition with data gets at least one whole batch even if it is
larger than the limits; after it, a batch that does not fit in what is left
of ``max_bytes`` is not sent. librdkafka sizes its receive buffer from
``fetch.max.bytes`` and drops the connection on a larger response (its test
0082: ``fetch.max.bytes=1000000`` over 900 KiB messages).
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer

from tests.integration.rawclient import RawClient

pytestmark = pytest.mark.timeout(120)

MSG = 900 * 1024
PARTITIONS = 3


def fill(broker, topic: str, per_partition: int) -> None:
    broker.create_topic(topic, PARTITIONS)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0,
                  "message.max.bytes": 2 * MSG, "batch.size": MSG + 4096})
    for part in range(PARTITIONS):
        for i in range(per_partition):
            p.produce(topic, value=bytes([65 + i]) * MSG, partition=part)
            p.flush(30)  # one message per batch


def fetch(bootstrap: str, topic: str, max_bytes: int, partition_max_bytes: int,
          offsets=(0,) * PARTITIONS) -> dict:
    c = RawClient(bootstrap)
    try:
        resp = c.request("Fetch", 11, {
            "replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": max_bytes,
            "isolation_level": 0, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": topic, "partitions": [
                {"partition": i, "current_leader_epoch": -1, "fetch_offset": off,
                 "log_start_offset": -1, "partition_max_bytes": partition_max_bytes}
                for i, off in enumerate(offsets)]}],
            "forgotten_topics_data": [], "rack_id": ""})
    finally:
        c.close()
    return {p["partition_index"]: len(p["records"] or b"") for p in resp["responses"][0]["partitions"]}


def test_fetch_response_stays_within_max_bytes(odradek_broker):
    fill(odradek_broker, "fetch-limits-raw", 2)
    sizes = fetch(odradek_broker.bootstrap, "fetch-limits-raw", 1_000_000, 20_000_000)
    # One batch of the first partition; the next one would overshoot.
    assert MSG < sizes[0] < 1_000_000 and sizes[1] == sizes[2] == 0
    assert sum(sizes.values()) <= 1_000_000
    # KIP-74: the first partition with data gets its batch even over both limits...
    sizes = fetch(odradek_broker.bootstrap, "fetch-limits-raw", 1000, 1000)
    assert sizes[0] > MSG and sizes[1] == sizes[2] == 0
    # ... also when it is not the first partition asked for.
    sizes = fetch(odradek_broker.bootstrap, "fetch-limits-raw", 1000, 1000, offsets=(2, 0, 0))
    assert sizes[0] == 0 and sizes[1] > MSG and sizes[2] == 0
    # Room for two batches, one per partition: two partitions answer.
    sizes = fetch(odradek_broker.bootstrap, "fetch-limits-raw", 2 * MSG + 1000, MSG + 1000)
    assert sizes[0] > MSG and sizes[1] > MSG and sizes[2] == 0


def test_librdkafka_consumes_with_small_fetch_max_bytes(odradek_broker):
    """librdkafka 0082's settings: every message arrives, and no response is
    refused as too large (which drops the connection and starts over)."""
    per_partition = 3
    fill(odradek_broker, "fetch-limits-rdk", per_partition)
    errors = []
    c = Consumer({"bootstrap.servers": odradek_broker.bootstrap, "group.id": "fetch-limits",
                  "auto.offset.reset": "earliest", "max.partition.fetch.bytes": 20_000_000,
                  "fetch.max.bytes": 1_000_000, "receive.message.max.bytes": 1_000_512,
                  "error_cb": errors.append})
    try:
        c.subscribe(["fetch-limits-rdk"])
        got = 0
        deadline = time.monotonic() + 30
        while got < PARTITIONS * per_partition and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got += 1
    finally:
        c.close()
    assert got == PARTITIONS * per_partition
    assert not errors, errors
