"""kafka-python and aiokafka transactional producers, read back with
read_committed and read_uncommitted consumers of the same clients."""

from __future__ import annotations

import asyncio
import time

import pytest

TXN_CONFIG = {"transaction.state.log.num.partitions": "3"}


def test_kafka_python_transactions(odradek_broker_factory):
    kafka = pytest.importorskip("kafka")
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    b = odradek_broker_factory(config=TXN_CONFIG)
    b.create_topic("kp-txn", 1)
    p = KafkaProducer(bootstrap_servers=b.bootstrap, transactional_id="kp-txn")
    p.init_transactions()
    for i in range(4):
        p.begin_transaction()
        p.send("kp-txn", b"v%d" % i)
        p.flush()
        if i % 2:
            p.abort_transaction()
        else:
            p.commit_transaction()
    p.begin_transaction()
    p.send("kp-txn", b"offsets")
    p.send_offsets_to_transaction({TopicPartition("kp-txn", 0): kafka.OffsetAndMetadata(3, "", -1)}, "kp-group")
    p.commit_transaction()
    p.close()

    def read(isolation, expect):
        c = KafkaConsumer(bootstrap_servers=b.bootstrap, isolation_level=isolation,
                          auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000)
        c.assign([TopicPartition("kp-txn", 0)])
        c.seek_to_beginning()
        out = []
        deadline = time.monotonic() + 15
        while len(out) < expect and time.monotonic() < deadline:
            for records in c.poll(500).values():
                out.extend(r.value for r in records)
        c.close()
        return out

    assert read("read_committed", 3) == [b"v0", b"v2", b"offsets"]
    assert read("read_uncommitted", 5) == [b"v0", b"v1", b"v2", b"v3", b"offsets"]
    c = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id="kp-group", enable_auto_commit=False)
    assert c.committed(TopicPartition("kp-txn", 0)) == 3
    c.close()


def test_aiokafka_transactions(odradek_broker_factory):
    pytest.importorskip("aiokafka")
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    b = odradek_broker_factory(config=TXN_CONFIG)
    b.create_topic("aio-txn", 1)

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=b.bootstrap, transactional_id="aio-txn")
        await p.start()
        try:
            for i in range(4):
                await p.begin_transaction()
                await p.send_and_wait("aio-txn", b"v%d" % i)
                if i % 2:
                    await p.abort_transaction()
                else:
                    await p.commit_transaction()
        finally:
            await p.stop()

        async def read(isolation, expect):
            c = AIOKafkaConsumer(bootstrap_servers=b.bootstrap, isolation_level=isolation,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
            await c.start()
            try:
                c.assign([TopicPartition("aio-txn", 0)])
                await c.seek_to_beginning()
                out = []
                deadline = time.monotonic() + 15
                while len(out) < expect and time.monotonic() < deadline:
                    for records in (await c.getmany(timeout_ms=500)).values():
                        out.extend(r.value for r in records)
                return out
            finally:
                await c.stop()

        return await read("read_committed", 2), await read("read_uncommitted", 4)

    committed, everything = asyncio.run(run())
    assert committed == [b"v0", b"v2"]
    assert everything == [b"v0", b"v1", b"v2", b"v3"]
