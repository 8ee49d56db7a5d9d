"""A consumer reading partitions whose files are not in the page cache
(odradek.storage.coldreads): confluent-kafka reads back every record, in
order, after the segment files were dropped from the page cache; the broker
read the missing bytes in on its background threads."""

from __future__ import annotations

import glob
import os

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from odradek.storage import coldreads
from odradek.storage.fs import OSFileSystem

pytestmark = pytest.mark.timeout(120)

PARTITIONS = 3
PER_PARTITION = 700  # 4 KiB values: about 2.8 MB a partition, 3 segments of 1 MiB


def evict(data_dir: str) -> bool:
    """Drop the topic's files from the page cache; True if the kernel says
    their pages are gone (not so on tmpfs)."""
    fs = OSFileSystem()
    gone = True
    for path in glob.glob(os.path.join(data_dir, "cold-*", "*.log")):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            gone = gone and fs.pread_nowait(fd, 4096, 0) is None
        finally:
            os.close(fd)
    return gone


def consume_all(bootstrap: str, topic: str) -> dict[int, list[bytes]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "cold", "enable.auto.commit": False,
                  "max.partition.fetch.bytes": 1 << 20, "fetch.max.bytes": 8 << 20})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    try:
        n = 0
        for _ in range(600):
            for m in c.consume(1000, 0.2):
                assert m.error() is None, m.error()
                got[m.partition()].append(m.value())
                n += 1
            if n >= PARTITIONS * PER_PARTITION:
                break
    finally:
        c.close()
    return got


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="needs posix_fadvise")
def test_consumer_reads_every_record_from_a_cold_page_cache(odradek_broker_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(coldreads, "WARM_TAIL", 0)  # the test reads back what it wrote
    data_dir = str(tmp_path / "d")
    broker = odradek_broker_factory(data_dir=data_dir, config={"log.segment.bytes": str(1 << 20)})
    broker.create_topic("cold-t", PARTITIONS)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    sent = {part: [b"%d-%d-" % (part, i) + os.urandom(2048).hex().encode() for i in range(PER_PARTITION)]
            for part in range(PARTITIONS)}
    for part, values in sent.items():
        for v in values:
            p.produce("cold-t", v, partition=part)
    assert p.flush(30) == 0
    read_in = []
    original = coldreads.ColdPass.read_in

    def counted(self):
        n = original(self)
        read_in.append(n)
        return n

    monkeypatch.setattr(coldreads.ColdPass, "read_in", counted)
    cold = evict(data_dir)
    assert consume_all(broker.bootstrap, "cold-t") == sent
    if cold:  # the kernel dropped the pages: the broker read them in off the loop
        assert sum(read_in) > 0
    read_in.clear()
    assert consume_all(broker.bootstrap, "cold-t") == sent  # warm: no thread needed
    assert sum(read_in) == 0
