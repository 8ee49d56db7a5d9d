"""Zero-copy fetch: on a plaintext listener in disk mode, a consumer's large
runs of stored batches go from the page cache to the socket with sendfile,
byte for byte what a copying read would send; TLS and memory mode copy."""

from __future__ import annotations

import hashlib

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from odradek.embedded import EmbeddedBroker


def produce(bootstrap: str, topic: str, n: int, size: int) -> dict:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1 << 20,
                  "compression.type": "none", "message.max.bytes": 4 << 20})
    sent = {}
    for i in range(n):
        value = hashlib.sha256(str(i).encode()).digest() * (size // 32)
        p.produce(topic, value, key=str(i).encode(), partition=i % 2)
        sent[str(i).encode()] = value
    assert p.flush(30) == 0
    return sent


def consume(bootstrap: str, topic: str, n: int, **conf) -> dict:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "zc", "enable.auto.commit": False,
                  "fetch.max.bytes": 8 << 20, "max.partition.fetch.bytes": 4 << 20, **conf})
    c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    got = {}
    try:
        for _ in range(400):
            for m in c.consume(100, 0.2):
                assert m.error() is None, m.error()
                got[m.key()] = m.value()
            if len(got) >= n:
                break
    finally:
        c.close()
    return got


def test_large_fetches_are_sent_with_sendfile_and_arrive_intact(tmp_path):
    with EmbeddedBroker(data_dir=str(tmp_path / "data")) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("zc", 2, 1, config={"segment.bytes": str(2 << 20)})])["zc"].result(10)
        sent = produce(b.bootstrap, "zc", 200, 40_000)  # 8 MB over several segments
        assert consume(b.bootstrap, "zc", 200) == sent
        zero_copied = b.core.metrics.sendfile_bytes
        # Most of it (small runs, and what a full socket buffer would not take, are copied).
        assert zero_copied >= 3_000_000
        # read_committed reads the same way
        assert consume(b.bootstrap, "zc", 200, **{"isolation.level": "read_committed"}) == sent
        assert b.core.metrics.sendfile_bytes >= zero_copied + 3_000_000


def test_memory_mode_copies():
    with EmbeddedBroker() as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("zc", 2, 1)])["zc"].result(10)
        sent = produce(b.bootstrap, "zc", 50, 40_000)
        assert consume(b.bootstrap, "zc", 50) == sent
        assert b.core.metrics.sendfile_bytes == 0
