"""#11 acceptance 3: interleaved committed and aborted transactions (one
partition holding only aborted data, ``txn_interleaved``) read with
read_committed by confluent-kafka, kafka-python, aiokafka and the Java
client: exactly the committed records, in offset order per partition;
read_uncommitted: all of them. (franz-go: test_franz_go.py.)"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration import txn_interleaved
from tests.integration.java_client import run_java

pytestmark = pytest.mark.timeout(180)
TOPIC = "interleaved"


@pytest.fixture(scope="module")
def written():
    """One broker holding the transactions, for every reader."""
    from odradek.embedded import EmbeddedBroker
    from odradek.testing.helpers import BrokerHandle
    from odradek.testing.plugin import FAST_GROUPS

    with EmbeddedBroker(config=dict(FAST_GROUPS, **{"transaction.state.log.num.partitions": "3"})) as broker:
        b = BrokerHandle(broker)
        b.create_topic(TOPIC, 3)
        want, everything = txn_interleaved.write(b.bootstrap, TOPIC)
        yield b, want, everything


def until_idle(poll, expect: int, timeout: float = 30.0) -> list:
    """Records from ``poll()`` until ``expect`` came and a second passed with nothing more."""
    out = []
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        got = poll()
        if got:
            out += got
            quiet_since = None
        elif len(out) >= expect:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 1.0:
                break
    return out


@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
def test_confluent_kafka(written, isolation):
    from confluent_kafka import Consumer, TopicPartition

    b, want, everything = written
    expected = want if isolation == "read_committed" else everything
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"ck-{isolation}", "isolation.level": isolation,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, q, 0) for q in range(3)])

    def poll():
        m = c.poll(0.2)
        return [(m.partition(), m.offset(), m.value().decode())] if m is not None and m.error() is None else []

    got = until_idle(poll, sum(map(len, expected.values())))
    c.close()
    assert txn_interleaved.by_partition(got) == expected


@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
def test_kafka_python(written, isolation):
    from kafka import KafkaConsumer, TopicPartition

    b, want, everything = written
    expected = want if isolation == "read_committed" else everything
    c = KafkaConsumer(bootstrap_servers=b.bootstrap, isolation_level=isolation, enable_auto_commit=False)
    c.assign([TopicPartition(TOPIC, q) for q in range(3)])
    c.seek_to_beginning()

    def poll():
        return [(r.partition, r.offset, r.value.decode()) for rs in c.poll(timeout_ms=200).values() for r in rs]

    got = until_idle(poll, sum(map(len, expected.values())))
    c.close()
    assert txn_interleaved.by_partition(got) == expected


@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
def test_aiokafka(written, isolation):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    b, want, everything = written
    expected = want if isolation == "read_committed" else everything

    async def read():
        c = AIOKafkaConsumer(bootstrap_servers=b.bootstrap, isolation_level=isolation, enable_auto_commit=False)
        await c.start()
        try:
            c.assign([TopicPartition(TOPIC, q) for q in range(3)])
            await c.seek_to_beginning()
            out = []
            deadline = time.monotonic() + 30
            quiet_since = None
            while time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=200)
                got = [(r.partition, r.offset, r.value.decode()) for rs in batch.values() for r in rs]
                if got:
                    out += got
                    quiet_since = None
                elif len(out) >= sum(map(len, expected.values())):
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since > 1.0:
                        break
            return out
        finally:
            await c.stop()

    assert txn_interleaved.by_partition(asyncio.run(read())) == expected


JAVA_READER = """
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

public class InterleavedReader {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", a[0]);
        p.put("isolation.level", a[2]);
        p.put("enable.auto.commit", "false");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        int expect = Integer.parseInt(a[3]);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int q = 0; q < 3; q++) tps.add(new TopicPartition(a[1], q));
            c.assign(tps);
            c.seekToBeginning(tps);
            int n = 0;
            long quietSince = -1, deadline = System.currentTimeMillis() + 30000;
            while (System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : rs) {
                    System.out.println("record " + r.partition() + " " + r.offset() + " " + r.value());
                    n++;
                }
                if (rs.isEmpty() && n >= expect) {
                    if (quietSince < 0) quietSince = System.currentTimeMillis();
                    if (System.currentTimeMillis() - quietSince > 1000) break;
                } else if (!rs.isEmpty()) quietSince = -1;
            }
        }
    }
}
"""


@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
def test_java_client(written, isolation, tmp_path):
    b, want, everything = written
    expected = want if isolation == "read_committed" else everything
    out = run_java(tmp_path, "InterleavedReader", JAVA_READER,
                   [b.bootstrap, TOPIC, isolation, str(sum(map(len, expected.values())))])
    got = []
    for line in out.splitlines():
        if line.startswith("record "):
            _, q, o, v = line.split(" ", 3)
            got.append((int(q), int(o), v))
    assert txn_interleaved.by_partition(got) == expected
