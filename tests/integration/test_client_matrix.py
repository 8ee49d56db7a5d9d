"""Acceptance 1 of the broker core: every client produces under every codec, and
every client reads back exactly what was acknowledged, per partition in order."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from tests.conftest import have_kcat
from tests.integration.clients import CODECS, CONSUMERS, PRODUCERS

N = 40
CLIENTS = ["confluent", "kafka-python", "aiokafka", "kcat"]


def needs(client):
    if client == "kcat" and not have_kcat():
        pytest.skip("kcat is not installed (apt-get install kcat)")


def make_messages(tag: str, with_timestamps: bool = True):
    base = int(time.time() * 1000) - 60_000
    msgs = []
    for i in range(N):
        m = {"key": f"key-{i % 7}".encode(), "value": f"{tag}-value-{i}".encode() * (1 + i % 3),
             "headers": [("h1", f"v{i}".encode()), ("trace", b"\x00\x01")]}
        if with_timestamps:
            m["timestamp"] = base + i
        msgs.append(m)
    return msgs


def check_readback(sent, acked, got, client_sets_timestamps=True, check_headers=True):
    assert len(got) == len(sent), f"read {len(got)} of {len(sent)}"
    by_partition = defaultdict(list)
    for r in got:
        by_partition[r["partition"]].append(r)
    # Per partition, offsets strictly increase and are dense from 0.
    for p, recs in by_partition.items():
        offsets = [r["offset"] for r in recs]
        assert offsets == sorted(offsets) and offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    # Same key, same partition.
    key_partition = {}
    for r in got:
        assert key_partition.setdefault(r["key"], r["partition"]) == r["partition"]
    if acked is not None:
        index = {(r["partition"], r["offset"]): r for r in got}
        for m, (p, o) in zip(sent, acked):
            r = index[(p, o)]
            assert (r["key"], r["value"]) == (m["key"], m["value"])
            if check_headers and r["headers"] is not None:
                assert r["headers"] == m["headers"]
            if client_sets_timestamps and "timestamp" in m:
                assert r["timestamp"] == m["timestamp"]
    else:
        # No per-message acks (kcat): per key, values arrive in production order.
        sent_by_key = defaultdict(list)
        for m in sent:
            sent_by_key[m["key"]].append(m["value"])
        got_by_key = defaultdict(list)
        for r in sorted(got, key=lambda r: (r["partition"], r["offset"])):
            got_by_key[r["key"]].append(r["value"])
        assert got_by_key == sent_by_key


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("producer", CLIENTS)
def test_produce_then_read_back(odradek_broker, producer, codec):
    needs(producer)
    topic = odradek_broker.create_topic(f"matrix-{producer}-{codec}", partitions=3)
    sent = make_messages(f"{producer}/{codec}", with_timestamps=producer != "kcat")
    acked = PRODUCERS[producer](odradek_broker.bootstrap, topic, sent, codec=codec)
    # Read back with the same client and with the next one in the list, so one
    # client's output is always read by another.
    reader = CLIENTS[(CLIENTS.index(producer) + 1) % len(CLIENTS)]
    for consumer in {producer, reader}:
        needs(consumer)
        got = CONSUMERS[consumer](odradek_broker.bootstrap, topic, 3, len(sent))
        check_readback(sent, acked, got, client_sets_timestamps=producer != "kcat",
                       check_headers=producer != "kcat" and consumer != "kcat")
    # What the broker stored is what was acknowledged.
    stored = odradek_broker.records(topic)
    assert len(stored) == len(sent)


@pytest.mark.parametrize("client", ["confluent", "kafka-python", "aiokafka"])
def test_metadata_and_topic_creation(odradek_broker, client):
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"created-by-admin-{client}"
    if client == "confluent":
        admin = AdminClient({"bootstrap.servers": odradek_broker.bootstrap})
        admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(10)
        md = admin.list_topics(timeout=10)
        assert len(md.topics[name].partitions) == 3
        assert md.brokers and md.cluster_id
    elif client == "kafka-python":
        from kafka.admin import KafkaAdminClient, NewTopic as KNewTopic

        admin = KafkaAdminClient(bootstrap_servers=odradek_broker.bootstrap)
        admin.create_topics([KNewTopic(name, 3, 1)])
        assert name in admin.list_topics()
        desc = admin.describe_topics([name])
        assert len(desc[0]["partitions"]) == 3
        admin.close()
    else:
        import asyncio

        from aiokafka.admin import AIOKafkaAdminClient, NewTopic as ANewTopic

        async def run():
            admin = AIOKafkaAdminClient(bootstrap_servers=odradek_broker.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([ANewTopic(name, 3, 1)])
                assert name in await admin.list_topics()
            finally:
                await admin.close()

        asyncio.run(run())
