"""Helpers a test writer wants around a running broker, without any client library.

They act on the broker in-process (through its event loop), so they need no
Kafka client and see exactly what the broker stored.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from odradek.embedded import EmbeddedBroker
from odradek.clock import now_ms


@dataclass
class StoredRecord:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list


def _as_bytes(x):
    if x is None or isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    return bytes(x)


class BrokerHandle:
    """A running broker plus helpers: topics, seeding data and reading it back."""

    def __init__(self, broker: EmbeddedBroker):
        self.broker = broker

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def create_topic(self, name: str, partitions: int = 1, config: dict | None = None) -> str:
        """Create ``name`` (no error if it exists with the same partition count)."""
        core = self.broker.core

        async def create():
            if name not in core.image:
                await core.admin.create_topic(name, partitions, -1,
                                              {k: str(v) for k, v in (config or {}).items()})
        self.broker.call(create)
        return name

    def delete_topic(self, name: str) -> None:
        self.broker.call(self.broker.core.admin.delete_topic, name)

    def produce(self, topic: str, values, key=None, partition: int = 0, headers=None) -> int:
        """Append records (values, or (key, value) pairs) to one partition; return the base offset."""
        from odradek.protocol.records import build_batch

        now = now_ms()
        recs = []
        for v in values:
            k = key
            if isinstance(v, tuple):
                k, v = v
            recs.append((_as_bytes(k), _as_bytes(v), list(headers or []), now))
        batch = bytearray(build_batch(recs))
        core = self.broker.core

        async def append():
            if core.replicas.topic(topic) is None:
                await core.admin.create_topic(topic, max(1, partition + 1))
            p, code = core.replicas.partition_or_error(topic, partition)
            if code:
                raise ValueError(f"cannot produce to {topic}-{partition}: error {code}")
            return p.append_as_leader(batch, now).base_offset

        return self.broker.call(append)

    def records(self, topic: str, partition: int | None = None) -> list[StoredRecord]:
        """Every record stored in ``topic`` (all partitions unless one is given), by partition then offset."""
        from odradek.protocol.records import iter_records

        core = self.broker.core

        async def read():
            t = core.replicas.topic(topic)
            if t is None:
                return []
            out = []
            for p in t.partitions:
                if partition is not None and p.index != partition:
                    continue
                offset, end = p.log_start_offset, p.high_watermark
                while offset < end:
                    res = p.read_for_consumer(offset, 16 * 1024 * 1024)
                    if not res.size:
                        break
                    for chunk in res.chunks:
                        for _, r in iter_records(chunk):
                            if r.offset >= offset:
                                out.append(StoredRecord(topic, p.index, r.offset, r.timestamp,
                                                        r.key, r.value, r.headers))
                    if out and out[-1].partition == p.index:
                        offset = max(offset + 1, out[-1].offset + 1)
                    else:
                        break
            return out

        return self.broker.call(read)

    def wait_for(self, topic: str, n: int, timeout: float = 10.0) -> list[StoredRecord]:
        """Wait until ``topic`` holds at least ``n`` records; return them. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            recs = self.records(topic)
            if len(recs) >= n:
                return recs
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} has {len(recs)} records, expected {n} within {timeout}s")
            time.sleep(0.02)

    def end_offsets(self, topic: str) -> list[int]:
        t = self.broker.core.replicas.topic(topic)
        return [p.high_watermark for p in t.partitions] if t else []

    @contextlib.contextmanager
    def expect_produced(self, topic: str, count: int | None = None, timeout: float = 10.0):
        """Assert that the block produces to ``topic`` (exactly ``count`` records if given).

        Yields a list that is filled with the new records when the block ends.
        """
        before = self.end_offsets(topic)
        new: list[StoredRecord] = []
        yield new
        deadline = time.monotonic() + timeout
        while True:
            produced = sum(self.end_offsets(topic)) - sum(before)
            if produced > 0 and (count is None or produced >= count):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count or 'some'} records produced to {topic}, got {produced}")
            time.sleep(0.02)
        new.extend(r for r in self.records(topic)
                   if r.offset >= (before[r.partition] if r.partition < len(before) else 0))
        if count is not None:
            assert produced == count, f"expected {count} records produced to {topic}, got {produced}"
