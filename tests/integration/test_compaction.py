"""Log compaction end to end: confluent-kafka against an embedded broker on disk."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from odradek.embedded import EmbeddedBroker

TOPIC = "compacted"
RETENTION_MS = 2500


def wait_for(cond, timeout=15.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not reached")


def produce(bootstrap, messages):
    """Send (key, value) pairs in order; return [(offset, key, value)]."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, "acks": "all",
                  "batch.num.messages": 4})
    out = [None] * len(messages)
    errs = []

    def cb(i):
        def done(err, msg):
            if err is not None:
                errs.append(err)
            else:
                out[i] = (msg.offset(), messages[i][0], messages[i][1])
        return done

    for i, (k, v) in enumerate(messages):
        p.produce(TOPIC, key=k, value=v, partition=0, on_delivery=cb(i))
        p.poll(0)
    assert p.flush(30) == 0 and not errs, errs
    return out


def consume_all(bootstrap):
    """Every record of the partition from the beginning: [(offset, key, value)]."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compaction-reader",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 50})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
        c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
        out = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (not out or out[-1][0] < high - 1):
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            out.append((m.offset(), m.key(), m.value()))
        return out
    finally:
        c.close()


def latest(records):
    view = {}
    for off, k, v in records:
        view[k] = (off, v)
    return view


@pytest.fixture
def broker(tmp_path):
    conf = {"log.cleaner.backoff.ms": "100", "group.initial.rebalance.delay.ms": "0",
            "offsets.topic.num.partitions": "1"}
    b = EmbeddedBroker(data_dir=str(tmp_path / "data"), config=conf).start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    fs = admin.create_topics([NewTopic(TOPIC, 1, 1, config={
        "cleanup.policy": "compact", "internal.segment.bytes": "1024",
        "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": str(RETENTION_MS)})])
    fs[TOPIC].result(15)
    yield b, tmp_path / "data"
    b.stop()


def test_compaction_end_to_end(broker):
    b, data_dir = broker
    updates = [(b"key-%d" % (i % 8), b"value-%d" % i) for i in range(160)]
    written = produce(b.bootstrap, updates)
    written += produce(b.bootstrap, [(b"key-3", None)])  # a tombstone
    tomb_offset = written[-1][0]
    # Unique keys after it, so every update sits in a non-active segment.
    written += produce(b.bootstrap, [(b"filler-%d" % i, b"f") for i in range(60)])
    expected = latest(written)
    superseded = {o for o, k, _ in written if expected[k][0] != o}

    def cleaned():
        got = consume_all(b.bootstrap)
        return got if not superseded & {o for o, _, _ in got} else None

    got = wait_for(cleaned)
    # Only the latest value per key, at its original offset; the tombstone is still there.
    assert latest(got) == expected
    assert [r for r in got if r[1] == b"key-3"] == [(tomb_offset, b"key-3", None)]
    assert len(got) == len(expected)
    assert sorted(o for o, _, _ in got) == [o for o, _, _ in got]

    # After delete.retention.ms (and a pass for its sake alone) the tombstone goes too.
    time.sleep(RETENTION_MS / 1000)
    got = wait_for(lambda: (lambda r: r if all(k != b"key-3" for _, k, _ in r) else None)(
        consume_all(b.bootstrap)))
    del expected[b"key-3"]
    assert latest(got) == expected and len(got) == len(expected)

    # Records without a key are refused on a compacted topic.
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "retries": 0})
    res = {}
    p.produce(TOPIC, value=b"no key", partition=0,
              on_delivery=lambda err, msg: res.setdefault("err", err))
    p.flush(15)
    assert res["err"] is not None and res["err"].code() == KafkaError.INVALID_RECORD

    # A restart recovers the cleaned segments as they are.
    cleaner = b.core.cleaner
    # (A pass's new segments are read before the broker's loop counts the pass: wait for the count.)
    wait_for(lambda: cleaner.passes >= 2, timeout=5)
    b.stop()
    b2 = EmbeddedBroker(data_dir=str(data_dir), config={"log.cleaner.enable": "false"}).start()
    try:
        assert consume_all(b2.bootstrap) == got
    finally:
        b2.stop()


def test_consumer_offsets_compacted(broker):
    b, data_dir = broker
    produce(b.bootstrap, [(b"k", b"v%d" % i) for i in range(10)])
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "committer",
                  "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(TOPIC, 0, 1)], asynchronous=False)  # creates the topic
    core = b.core
    b.call(core.admin.alter_topic_config, "__consumer_offsets",
           {"cleanup.policy": "compact", "internal.segment.bytes": "1024",
            "min.cleanable.dirty.ratio": "0.01"})
    for i in range(2, 150):
        c.commit(offsets=[TopicPartition(TOPIC, 0, i % 10 + 1)], asynchronous=False)
    c.close()
    offsets_log = core.replicas.topics["__consumer_offsets"].partitions[0].log

    def count():
        async def read():
            r = offsets_log.read(offsets_log.log_start_offset, 1 << 30, offsets_log.log_end_offset)
            from odradek.protocol.batch import iter_batches
            return sum(h.records_count for ch in r.chunks for _, h in iter_batches(ch))
        return b.call(read)

    assert offsets_log.log_end_offset >= 149  # one record per commit was written
    wait_for(lambda: count() < 20)  # the cleaner keeps the last commit (and the active segment)
    b.stop()
    b2 = EmbeddedBroker(data_dir=str(data_dir), config={"log.cleaner.enable": "false"}).start()
    try:
        c = Consumer({"bootstrap.servers": b2.bootstrap, "group.id": "committer"})
        [tp] = c.committed([TopicPartition(TOPIC, 0)], timeout=15)
        assert tp.offset == 149 % 10 + 1
        c.close()
    finally:
        b2.stop()
