"""A long-polling Fetch that is woken reads again only the partitions that
changed (``odradek.apis.fetch.read_partitions``), and answers exactly what a
fresh full Fetch of the same partitions answers: byte for byte, after
appends to one partition, to several, to an earlier one after a later one
under ``max_bytes``, and under ``partition_max_bytes`` where KIP-74's "the
first partition with data may exceed its limit" moves to an earlier
partition; with read_uncommitted and read_committed. And it reads only them:
the partition lookups of a fetch over 40 partitions woken by one append."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from odradek.protocol.frames import decode_response, encode_request
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

PARTS = 4


def raw_fetch(addr: str, body: dict) -> bytes:
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(encode_request("Fetch", 12, body, 9, "woken"))
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = s.recv(1 << 16)
            assert chunk, "broker closed the connection"
            buf += chunk
        return buf[4:]


def body(topic: str, parts: int, min_bytes: int, max_bytes: int, partition_max_bytes: int,
         isolation: int, max_wait_ms: int) -> dict:
    return {"replica_id": -1, "max_wait_ms": max_wait_ms, "min_bytes": min_bytes, "max_bytes": max_bytes,
            "isolation_level": isolation, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": topic, "partitions": [
                {"partition": i, "current_leader_epoch": -1, "fetch_offset": 0, "log_start_offset": -1,
                 "partition_max_bytes": partition_max_bytes} for i in range(parts)]}],
            "forgotten_topics_data": [], "rack_id": ""}


class LongPoll:
    """A Fetch sent from a thread; ``appended`` waits until it took in an append."""

    def __init__(self, broker, topic: str, parts: int, **limits):
        self.broker, self.topic = broker, topic
        self.partitions = broker.broker.core.replicas.topic(topic).partitions[:parts]
        self.answer = None
        self.thread = threading.Thread(target=self._run, args=(body(topic, parts, max_wait_ms=10000, **limits),))
        self.thread.start()
        self.waiting()

    def _run(self, request):
        self.answer = raw_fetch(self.broker.bootstrap, request)

    def waiting(self) -> bool:
        wait_until(lambda: self.answer is not None or any(p.waiters for p in self.partitions), interval=0.005,
                   what="the fetch to wait")
        return self.answer is None

    def append(self, partition: int, size: int) -> None:
        assert self.answer is None, "answered before the last append"
        self.broker.produce(self.topic, [b"v" * size], partition=partition)
        self.waiting()

    def done(self) -> bytes:
        self.thread.join(15)
        assert self.answer is not None
        return self.answer


# (appends as (partition, value bytes), min_bytes, max_bytes, partition_max_bytes, records expected per partition)
SCENARIOS = {
    "one partition": ([(2, 100)], 1, 100_000, 100_000, {2}),
    "several, one wake each": ([(1, 1000), (3, 1000), (0, 1000)], 2500, 100_000, 100_000, {0, 1, 3}),
    # P3 had data; P0 comes first and takes most of max_bytes: P3's batch no longer fits.
    "an earlier one after a later one, max_bytes": ([(3, 800), (0, 1000)], 1000, 1500, 100_000, {0}),
    # P2's batch is over its limit but first with data; then P0 is first, and P2 may not exceed.
    "KIP-74 first partition moves earlier": ([(2, 1000), (0, 1000), (1, 400)], 1400, 10_000, 500, {0, 1}),
}


@pytest.mark.parametrize("isolation", [0, 1], ids=["read_uncommitted", "read_committed"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_woken_fetch_answers_what_a_full_fetch_answers(odradek_broker, name, isolation):
    appends, min_bytes, max_bytes, pmax, with_records = SCENARIOS[name]
    topic = f"woken-{list(SCENARIOS).index(name)}-{isolation}"
    odradek_broker.create_topic(topic, PARTS)
    limits = {"min_bytes": min_bytes, "max_bytes": max_bytes, "partition_max_bytes": pmax, "isolation": isolation}
    poll = LongPoll(odradek_broker, topic, PARTS, **limits)
    for partition, size in appends:
        poll.append(partition, size)
    woken = poll.done()
    fresh = raw_fetch(odradek_broker.bootstrap, body(topic, PARTS, max_wait_ms=0, **limits))
    assert woken == fresh
    answer = decode_response("Fetch", 12, woken)[1]
    got = {p["partition_index"] for p in answer["responses"][0]["partitions"] if p["records"]}
    assert got == with_records
    assert len(woken) <= max_bytes + 1000  # partitions' headers beside the records


def test_a_woken_fetch_reads_only_the_partition_that_changed(odradek_broker):
    topic, parts = "woken-lookups", 40
    odradek_broker.create_topic(topic, parts)
    replicas = odradek_broker.broker.core.replicas
    looked_up = []
    lookup = replicas.partition_or_error

    def counting(name, index, **kw):
        if name == topic:
            looked_up.append(index)
        return lookup(name, index, **kw)

    replicas.partition_or_error = counting
    try:
        limits = {"min_bytes": 1, "max_bytes": 100_000, "partition_max_bytes": 10_000, "isolation": 0}
        poll = LongPoll(odradek_broker, topic, parts, **limits)
        first = list(looked_up)
        poll.append(7, 100)
        woken = poll.done()
        assert sorted(first) == list(range(parts))
        # The produce helper's lookup, then the woken pass's: only the partition that changed.
        assert looked_up[len(first):] == [7, 7]
    finally:
        del replicas.partition_or_error
    assert woken == raw_fetch(odradek_broker.bootstrap, body(topic, parts, max_wait_ms=0, **limits))
