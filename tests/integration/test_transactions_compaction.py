"""Compaction of a topic written in transactions (confluent-kafka): the cleaner
removes aborted records, compacts committed ones like any other, and both
read_committed and read_uncommitted consumers then see what they would see
on Kafka: the latest committed value per key, no aborted record."""

from __future__ import annotations

import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from odradek.embedded import EmbeddedBroker  # noqa: E402
from odradek.protocol.batch import iter_batches  # noqa: E402

TOPIC = "txn-compacted"


def wait_for(cond, timeout=30.0, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not reached")


def consume(bootstrap, isolation):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "fetch.wait.max.ms": 50})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
        c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
        out = []
        deadline = time.monotonic() + 15
        idle = None
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                if out and out[-1][0] >= high - 5:  # (the last offsets may be markers)
                    idle = idle or time.monotonic() + 0.5
                    if time.monotonic() > idle:
                        break
                continue
            if m.error():
                continue
            out.append((m.offset(), m.key(), m.value()))
        return out
    finally:
        c.close()


def test_compacted_topic_with_transactions(tmp_path):
    conf = {"log.cleaner.backoff.ms": "100", "transaction.state.log.num.partitions": "1",
            "transaction.state.log.replication.factor": "1"}
    b = EmbeddedBroker(data_dir=str(tmp_path / "data"), config=conf).start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic(TOPIC, 1, 1, config={
            "cleanup.policy": "compact", "internal.segment.bytes": "1024",
            "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "100"})])[TOPIC].result(15)
        p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "compact-tx",
                      "linger.ms": 0})
        p.init_transactions(30)

        def txn(values, commit):
            p.begin_transaction()
            for k, v in values:
                p.produce(TOPIC, key=k, value=v, partition=0)
            p.flush(30)
            (p.commit_transaction if commit else p.abort_transaction)(30)

        txn([(b"k%d" % i, b"c1-%d" % i) for i in range(4)], True)
        txn([(b"k%d" % i, b"a2-%d" % i) for i in range(4)] + [(b"ghost", b"a2")], False)
        txn([(b"k0", b"c3-0"), (b"k1", b"c3-1")], True)
        txn([(b"k2", b"a4-2"), (b"ghost", b"a4")], False)
        plain = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 1})
        for i in range(80):  # unique keys: rolls segments past the transactions
            plain.produce(TOPIC, key=b"filler-%d" % i, value=b"f", partition=0)
        assert plain.flush(30) == 0
        expected = {b"k0": b"c3-0", b"k1": b"c3-1", b"k2": b"c1-2", b"k3": b"c1-3"}
        expected.update({b"filler-%d" % i: b"f" for i in range(80)})

        def cleaned():
            got = consume(b.bootstrap, "read_uncommitted")
            return got if {k: v for _, k, v in got} == expected and len(got) == len(expected) \
                else None

        uncommitted = wait_for(cleaned)
        committed = consume(b.bootstrap, "read_committed")
        assert committed == uncommitted  # nothing aborted left to hide
        assert [o for o, _, _ in committed] == sorted(o for o, _, _ in committed)
        assert b.core.cleaner.passes >= 1

        # The abort markers' data is gone: after delete.retention.ms they are
        # removed too; the commit markers of data still in the log stay.
        part = b.core.replicas.topics[TOPIC].partitions[0]

        def markers():
            async def read():
                lg = part.log
                r = lg.read(lg.log_start_offset, 1 << 30, lg.log_end_offset)
                return [(h.base_offset, h.records_count) for ch in r.chunks
                        for _, h in iter_batches(ch) if h.is_control]
            return b.call(read)

        assert len(markers()) >= 2
        assert part.last_stable_offset == part.high_watermark
        # A restart rebuilds the same view (producer state, aborted index).
        b.stop()
        b = EmbeddedBroker(data_dir=str(tmp_path / "data"),
                           config={**conf, "log.cleaner.enable": "false"}).start()
        assert consume(b.bootstrap, "read_committed") == committed
        assert consume(b.bootstrap, "read_uncommitted") == uncommitted
    finally:
        b.stop()
