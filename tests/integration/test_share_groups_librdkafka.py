"""Share groups (KIP-932) with librdkafka's share consumer, through
confluent-kafka's ``ShareConsumer``: implicit acknowledgement; explicit
accept, release and reject, with the delivery count; a lock that expires;
three consumers on one partition seeing every record once.

Share groups start at the high watermark when first read
(share.auto.offset.reset=latest): each group first waits until a "warm"
record produced meanwhile reaches it.
"""

from __future__ import annotations

import time

import pytest

from odradek.embedded import EmbeddedBroker
from tests.integration.test_groups import create_topic

ck = pytest.importorskip("confluent_kafka")
if not hasattr(ck, "ShareConsumer"):
    pytest.skip("this confluent-kafka has no ShareConsumer", allow_module_level=True)

BROKER_CONFIG = {
    "offsets.topic.num.partitions": "4",
    "group.share.heartbeat.interval.ms": "300",
    "group.share.record.lock.duration.ms": "1500",
    "group.share.delivery.count.limit": "2",
}

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker(config=BROKER_CONFIG) as b:
        create_topic(b, "sgk", 1)
        yield b


def consumer(b, group, mode="implicit"):
    return ck.ShareConsumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                             "share.acknowledgement.mode": mode})


def producer(b):
    return ck.Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})


def warm(b, consumers, explicit=False):
    """Produce "warm" records until one of ``consumers`` gets one."""
    p = producer(b)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        p.produce("sgk", b"warm", partition=0)
        p.flush()
        for c in consumers:
            got = [m for m in c.poll(0.2) or [] if not m.error()]
            if explicit:
                for m in got:
                    c.acknowledge(m, ck.AcknowledgeType.ACCEPT)
                if got:
                    c.commit_sync()
            if got:
                return
    raise AssertionError("no warm-up record received")


def send(b, values):
    p = producer(b)
    for v in values:
        p.produce("sgk", v.encode(), partition=0)
    assert p.flush(10) == 0


def test_implicit_acknowledgement(broker):
    c = consumer(broker, "sgk-implicit")
    try:
        c.subscribe(["sgk"])
        warm(broker, [c])
        send(broker, [f"a-{i}" for i in range(20)])
        got = set()
        deadline = time.monotonic() + 20
        while len(got) < 20 and time.monotonic() < deadline:
            got |= {m.value().decode() for m in c.poll(0.2) or [] if not m.error() and m.value() != b"warm"}
        assert got == {f"a-{i}" for i in range(20)}
        c.commit_sync()
    finally:
        c.close()


def test_explicit_release_and_reject_with_delivery_counts(broker):
    c = consumer(broker, "sgk-explicit", "explicit")
    seen = []
    try:
        c.subscribe(["sgk"])
        warm(broker, [c], explicit=True)
        send(broker, ["b-accept", "b-release", "b-reject"])
        deadline = time.monotonic() + 20
        sent_after = False
        while time.monotonic() < deadline and "b-after/1" not in seen:
            msgs = [m for m in c.poll(0.2) or [] if not m.error()]
            for m in msgs:
                v = m.value().decode()
                if v != "warm":
                    seen.append(f"{v}/{m.delivery_count()}")
                if v == "b-release" and m.delivery_count() == 1:
                    c.acknowledge(m, ck.AcknowledgeType.RELEASE)
                elif v == "b-reject":
                    c.acknowledge(m, ck.AcknowledgeType.REJECT)
                else:
                    c.acknowledge(m, ck.AcknowledgeType.ACCEPT)
            if msgs:
                c.commit_sync()
            if "b-release/2" in seen and not sent_after:
                send(broker, ["b-after"])
                sent_after = True
    finally:
        c.close()
    # the released record came back once, the others never did
    assert seen == ["b-accept/1", "b-release/1", "b-reject/1", "b-release/2", "b-after/1"], seen


def test_an_expired_lock_gives_the_records_to_another_member(broker):
    c1 = consumer(broker, "sgk-lock", "explicit")
    c2 = None
    try:
        c1.subscribe(["sgk"])
        warm(broker, [c1], explicit=True)
        send(broker, [f"c-{i}" for i in range(3)])
        held = []
        deadline = time.monotonic() + 20
        while not held and time.monotonic() < deadline:
            for m in c1.poll(0.2) or []:
                if m.error():
                    continue
                if m.value().startswith(b"c-"):
                    held.append(m.value().decode())
                else:
                    c1.acknowledge(m, ck.AcknowledgeType.ACCEPT)
        assert held
        t0 = time.monotonic()
        # c1 stops polling without acknowledging; c2 joins and gets them once the lock (1.5 s) expires
        c2 = consumer(broker, "sgk-lock")
        c2.subscribe(["sgk"])
        again = {}
        while len(again) < 3 and time.monotonic() < t0 + 20:
            for m in c2.poll(0.2) or []:
                if not m.error() and m.value().startswith(b"c-"):
                    again[m.value().decode()] = m.delivery_count()
        assert sorted(again) == ["c-0", "c-1", "c-2"]
        assert all(again[v] == 2 for v in held), (held, again)
        assert time.monotonic() - t0 >= 1.0
        c2.commit_sync()
    finally:
        c1.close()
        if c2 is not None:
            c2.close()


def test_three_consumers_on_one_partition_see_every_record_once(broker):
    cs = [consumer(broker, "sgk-three") for _ in range(3)]
    try:
        for c in cs:
            c.subscribe(["sgk"])
        warm(broker, cs)
        p = producer(broker)
        for i in range(300):
            p.produce("sgk", f"e-{i}".encode(), partition=0)
            if i % 5 == 4:
                p.flush()
        assert p.flush(10) == 0
        got = [[] for _ in cs]
        deadline = time.monotonic() + 30
        while sum(map(len, got)) < 300 and time.monotonic() < deadline:
            for i, c in enumerate(cs):
                got[i] += [m.value().decode() for m in c.poll(0.05) or []
                           if not m.error() and m.value().startswith(b"e-")]
        every = [v for g in got for v in g]
        assert len(every) == 300 and set(every) == {f"e-{i}" for i in range(300)}
        assert sum(1 for g in got if g) >= 2, [len(g) for g in got]
        for c in cs:
            c.commit_sync()
    finally:
        for c in cs:
            c.close()
