"""Idempotent-producer state: snapshots, and rebuilds from them and from headers."""

from __future__ import annotations

import os
import time

import pytest

from odradek.producers import (
    MAX_CACHED,
    SNAPSHOT_NAME,
    ProducerEntry,
    ProducerStateTable,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
    write_snapshot,
)
from odradek.protocol.batch import HEADER_SIZE, read_header
from odradek.protocol.records import build_batch
from odradek.storage.base import LogConfig, PartitionLog
from odradek.storage.disk import DiskLogStore
from odradek.storage.fs import FakeFileSystem
from odradek.storage.memory import MemoryLogStore


class Env:
    """Log ``t-0`` plus the producer table a broker would keep with it."""

    def __init__(self, kind: str, tmp_path):
        self.kind = kind
        self.fs = FakeFileSystem() if kind == "disk" else None
        self.path = "/data" if kind == "disk" else str(tmp_path / "data")
        self.store = self._store()
        self.table = ProducerStateTable()
        self.now = 5000

    def _store(self):
        if self.kind == "memory":  # the same store: its logs outlive a 'restart'
            return getattr(self, "store", None) or MemoryLogStore()
        return DiskLogStore(self.path, self.fs)

    def open(self, **cfg):
        self.config = LogConfig(**cfg)
        self.log = self.store.open_log("t", 0, self.config)
        return self.log

    def produce(self, pid, seq, n=1, epoch=0, value=b"v", leader_epoch=0):
        """An idempotent batch through check/append/record, as the produce path does."""
        b = bytearray(build_batch([(b"k", value, [], 1000 + seq + i) for i in range(n)],
                                  producer_id=pid, producer_epoch=epoch, base_sequence=seq))
        h = read_header(b)
        code, dup = self.table.check(h)
        assert (code, dup) == (0, None)
        info = self.log.append(b, leader_epoch, self.now)
        self.table.record(h, info.base_offset)
        return info.base_offset

    def plain(self, n=1, value=b"v"):
        b = bytearray(build_batch([(b"k", value, [], 1000)] * n))
        return self.log.append(b, 0, self.now).base_offset

    def snapshot(self):
        assert write_snapshot(self.log, self.table.snapshot(self.log, force=True))

    def restart(self, crash: str | None = None) -> ProducerStateTable:
        """Restart the 'broker': reopen the log and rebuild a fresh table."""
        if crash is None:
            self.store.close()
        else:
            self.fs.crash(crash)
        self.store = self._store()
        self.log = self.store.open_log("t", 0, self.config)
        self.table = ProducerStateTable()
        if self.fs is not None:
            self.fs.bytes_read = 0
        self.table.rebuild(self.log)
        return self.table


@pytest.fixture(params=["memory", "disk", "os"])
def env(request, tmp_path):
    e = Env(request.param, tmp_path)
    yield e
    if e.kind != "memory":
        try:
            e.store.close()
        except OSError:
            pass


@pytest.fixture
def fake_env(tmp_path):
    return Env("disk", tmp_path)


def state(table: ProducerStateTable) -> dict:
    return {pid: (e.epoch, list(e.batches), e.last_timestamp) for pid, e in table.producers.items()}


def replayed(lg) -> dict:
    """The table a snapshot-less rebuild gives (the reference)."""
    t = ProducerStateTable()
    t.producers.clear()
    for h in PartitionLog.iter_headers(lg, lg.log_start_offset):  # the read()-based default
        if h.producer_id >= 0 and h.base_sequence >= 0 and not h.is_control:
            t.record(h, h.base_offset)
    return state(t)


def batch_header(pid, seq, n=1, epoch=0):
    return read_header(build_batch([(b"k", b"v", [], 1000)] * n, producer_id=pid,
                                   producer_epoch=epoch, base_sequence=seq))


# -- the snapshot format -----------------------------------------------------------

def test_snapshot_round_trip():
    t = ProducerStateTable()
    for i in range(MAX_CACHED + 3):  # more than the cache holds
        t.record(batch_header(7, 2 * i, n=2), 100 + 2 * i)
    t.record(batch_header(8, 0x7FFFFFFE, n=3, epoch=3), 500)  # sequence wraps
    t.producers[9] = ProducerEntry(0)  # an epoch bump with no batch yet
    data = encode_snapshot(t.producers, 503, (500, 502, 0xDEADBEEF, 4))
    offset, anchor, producers = decode_snapshot(data)
    assert (offset, anchor) == (503, (500, 502, 0xDEADBEEF, 4))
    back = ProducerStateTable()
    back.producers = producers
    assert state(back) == state(t)
    assert len(producers[7].batches) == MAX_CACHED
    assert producers[8].batches == [(0x7FFFFFFE, 0, 500, 502)]
    assert producers[9].batches == [] and producers[9].last_timestamp == -1
    # An empty table, too.
    assert decode_snapshot(encode_snapshot({}, 0)) == (0, (-1, -1, 0, -1), {})


@pytest.mark.parametrize("damage", ["crc", "short", "magic", "tail", "count"])
def test_damaged_snapshot_is_rejected(damage):
    t = ProducerStateTable()
    t.record(batch_header(1, 0), 0)
    data = bytearray(encode_snapshot(t.producers, 1))
    if damage == "crc":
        data[30] ^= 1
    elif damage == "short":
        data = data[:10]
    elif damage == "magic":
        data[0:4] = b"XXXX"
    elif damage == "tail":
        data = data[:-5] + data[-4:]
    elif damage == "count":
        data[38:42] = b"\0\0\0\x09"  # count (header bytes 38..41): more than there are
    if damage in ("magic", "tail", "count"):  # past the CRC check: re-sign
        from crc32c import crc32c
        data[-4:] = crc32c(bytes(data[:-4])).to_bytes(4, "big")
    with pytest.raises(SnapshotError):
        decode_snapshot(bytes(data))


# -- rebuilds ------------------------------------------------------------------------

def test_restart_with_snapshot_replays_only_after_it(env):
    lg = env.open(segment_bytes=4000)
    for i in range(20):
        env.produce(1, 3 * i, n=3)
        env.produce(2, i)
        env.plain()
    env.snapshot()
    snap_at = lg.log_end_offset
    env.produce(1, 60, n=3)
    env.produce(3, 0, epoch=2)
    env.plain(2)
    live = state(env.table)
    t = env.restart()
    assert state(t) == live == replayed(env.log)
    assert t.rebuild_stats["snapshot_offset"] == snap_at
    assert t.rebuild_stats["headers_read"] == 4  # the anchor batch + the 3 after it
    # Duplicates are still recognised, and sequences continue.
    assert t.check(batch_header(1, 60, n=3)) == (0, snap_at)
    assert t.check(batch_header(2, 19)) == (0, snap_at - 2)
    assert t.check(batch_header(2, 21))[0] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    assert t.check(batch_header(3, 0, epoch=1))[0] == 47  # INVALID_PRODUCER_EPOCH


def test_restart_without_snapshot_replays_every_header(env):
    lg = env.open(segment_bytes=2000)
    for i in range(15):
        env.produce(1, i)
        env.plain()
    live = state(env.table)
    assert lg.read_aux(SNAPSHOT_NAME) is None
    t = env.restart()
    assert state(t) == live
    assert t.rebuild_stats == {"from_offset": 0, "snapshot_offset": None, "headers_read": 30}
    assert t.check(batch_header(1, 14)) == (0, 28)


def test_snapshot_is_not_retaken_when_nothing_moved(env):
    lg = env.open()
    assert env.table.snapshot(lg) is None  # empty log, no producers: nothing to save
    env.produce(5, 0)
    assert env.table.snapshot(lg) is not None
    assert env.table.snapshot(lg) is None
    assert env.table.snapshot(lg, force=True) is not None
    env.plain()
    assert env.table.snapshot(lg) is not None


def test_kill_without_snapshot_rebuilds_from_headers(fake_env):
    env = fake_env
    env.open(segment_bytes=3000)
    for i in range(30):
        env.produce(1 + i % 3, i // 3, value=b"x" * 100)
    live = state(env.table)
    t = env.restart(crash="kill")
    assert state(t) == live
    assert t.rebuild_stats["snapshot_offset"] is None
    assert t.check(batch_header(3, 9)) == (0, 29)


def test_kill_after_an_older_snapshot(fake_env):
    env = fake_env
    env.open(segment_bytes=3000)
    for i in range(10):
        env.produce(1, i)
    env.snapshot()
    for i in range(10, 15):
        env.produce(1, i)
        env.produce(2, i - 10)
    live = state(env.table)
    t = env.restart(crash="kill")
    assert state(t) == live
    assert t.rebuild_stats["snapshot_offset"] == 10
    assert t.rebuild_stats["headers_read"] == 11


def test_snapshot_beyond_truncated_end_is_ignored(env):
    lg = env.open(segment_bytes=2000)
    for i in range(10):
        env.produce(1, i)
    env.snapshot()
    stale = lg.read_aux(SNAPSHOT_NAME)
    assert stale is not None
    lg.truncate_to(6)
    assert lg.read_aux(SNAPSHOT_NAME) is None  # truncation deletes it
    # Even if it comes back (a snapshot write racing the truncation) ...
    lg.write_aux(SNAPSHOT_NAME, stale)
    t = ProducerStateTable()
    t.rebuild(lg)  # ... it is beyond the end: ignored
    assert t.rebuild_stats["snapshot_offset"] is None
    assert state(t) == replayed(lg) and t.producers[1].batches[-1][0] == 5
    # ... and still ignored once the log grows past it again, with other batches.
    env.table = t
    for i in range(6, 12):
        env.produce(1, i, value=b"other")
    assert lg.log_end_offset > 10
    t = ProducerStateTable()
    t.rebuild(lg)
    assert t.rebuild_stats["snapshot_offset"] is None
    assert state(t) == state(env.table) == replayed(lg)


def test_snapshot_ahead_of_fsynced_log_is_ignored_after_power_loss(fake_env):
    env = fake_env
    lg = env.open()
    for i in range(5):
        env.produce(1, i)
    lg.flush()
    for i in range(5, 10):
        env.produce(1, i)
    env.snapshot()  # durable, at offset 10; the log is durable to 5 only
    env.fs.crash("power")
    env.store = env._store()
    lg = env.log = env.store.open_log("t", 0, env.config)
    assert lg.log_end_offset == 5
    env.table = ProducerStateTable()
    env.table.rebuild(lg)
    assert env.table.rebuild_stats["snapshot_offset"] is None
    # Producer 1 retries from sequence 5; another producer fills the log past 10.
    for i in range(5, 8):
        env.produce(1, i, value=b"retry")
    for i in range(4):
        env.produce(2, i)
    live = state(env.table)
    t = env.restart(crash="kill")
    assert t.rebuild_stats["snapshot_offset"] is None  # its anchor batch is gone
    assert state(t) == live


def test_snapshot_below_log_start(env):
    lg = env.open(segment_bytes=1000)
    for i in range(10):
        env.produce(1, i)
    env.snapshot()  # at 10
    env.produce(2, 0)
    env.produce(2, 1)
    lg.delete_records_before(11)
    t = ProducerStateTable()
    t.rebuild(lg)
    assert t.rebuild_stats["snapshot_offset"] is None
    assert t.rebuild_stats["from_offset"] == 11
    # Without a usable snapshot, what is below the log start is not seen.
    assert set(t.producers) == {2}
    # A snapshot exactly at the log start is used, and keeps its producers.
    env.snapshot()
    lg.delete_records_before(12)
    t = ProducerStateTable()
    t.rebuild(lg)
    assert t.rebuild_stats["snapshot_offset"] == 12 and set(t.producers) == {1, 2}


def test_corrupt_snapshot_falls_back_to_headers(fake_env):
    env = fake_env
    lg = env.open()
    for i in range(6):
        env.produce(1, i)
    env.snapshot()
    live = state(env.table)
    env.store.close()
    env.fs.corrupt("/data/t-0/" + SNAPSHOT_NAME, 20, b"\xff\xff")
    t = env.restart(crash="kill")
    assert t.rebuild_stats["snapshot_offset"] is None and state(t) == live
    assert lg.closed


# -- what a rebuild reads --------------------------------------------------------------

def _big_log(env, batches=1500, value_size=4000):
    """A multi-MB log of idempotent batches from a few producers."""
    lg = env.open(segment_bytes=1 << 20)
    value = b"x" * value_size
    for i in range(batches):
        env.produce(1 + i % 4, i // 4, value=value)
    return lg


def test_a_snapshot_after_appends_reads_nothing_from_the_log(fake_env):
    """The anchor (the header of the batch ending the log) comes from what
    the log kept of its last append: the broker's checkpoint takes the
    snapshots of every changed partition on the event loop, and reading
    100,000 headers there stalled it for seconds. It is the header on disk,
    and after a truncation (when the log kept nothing) it is read again."""
    env = fake_env
    lg = env.open(segment_bytes=2000)
    for i in range(6):
        env.produce(1, i, leader_epoch=3)
    env.plain()
    env.produce(1, 6, leader_epoch=4)
    on_disk = next(iter(lg.iter_headers(lg.log_end_offset - 1)))
    env.fs.bytes_read = 0
    data = env.table.snapshot(lg, force=True)
    assert env.fs.bytes_read == 0
    assert decode_snapshot(data)[1] == (on_disk.base_offset, on_disk.last_offset, on_disk.crc, 4)
    lg.truncate_to(5)
    assert lg.last_batch_anchor is None
    t = ProducerStateTable()
    t.rebuild(lg)
    env.fs.bytes_read = 0
    data = t.snapshot(lg, force=True)
    assert env.fs.bytes_read > 0
    assert decode_snapshot(data)[1] == (4, 4, next(iter(lg.iter_headers(4))).crc, 3)
    assert write_snapshot(lg, data)
    t = env.restart(crash="kill")  # the snapshot taken after the truncation is used
    assert t.rebuild_stats["snapshot_offset"] == 5


def test_rebuild_reads_headers_only(fake_env):
    env = fake_env
    lg = _big_log(env)
    size, n = lg.size_in_bytes(), 1500
    assert size > 6_000_000
    live = state(env.table)
    # Without a snapshot: one header per batch, not the data.
    t = env.restart()
    assert state(t) == live
    assert t.rebuild_stats["headers_read"] == n
    assert n * HEADER_SIZE <= env.fs.bytes_read <= n * HEADER_SIZE + 4096
    # The read()-based default reads it all.
    env.fs.bytes_read = 0
    assert sum(1 for _ in PartitionLog.iter_headers(env.log, 0)) == n
    assert env.fs.bytes_read >= size


def test_rebuild_with_snapshot_near_the_end_reads_little(fake_env):
    env = fake_env
    lg = _big_log(env)
    size = lg.size_in_bytes()
    env.snapshot()  # at 1500
    for seq in range(375, 385):
        env.produce(1, seq)
    live = state(env.table)
    t = env.restart()
    assert state(t) == live
    assert t.rebuild_stats["snapshot_offset"] == 1500
    assert t.rebuild_stats["headers_read"] == 11
    # The snapshot file, the anchor's index neighbourhood and 11 headers.
    assert env.fs.bytes_read < 16 * 1024, env.fs.bytes_read
    assert env.fs.bytes_read < size / 100


# -- the broker writes snapshots -------------------------------------------------------

def _produce(client, topic, batch):
    resp = client.request("Produce", 9, {
        "acks": -1, "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}]})
    return resp["responses"][0]["partition_responses"][0]


def test_broker_snapshots_at_shutdown_not_at_checkpoints(odradek_broker_factory, tmp_path):
    from tests.integration.rawclient import RawClient

    data = str(tmp_path / "d")
    b = odradek_broker_factory(data_dir=data,
                               config={"log.flush.offset.checkpoint.interval.ms": "100"})
    b.create_topic("snap", partitions=1)
    path = os.path.join(data, "snap-0", SNAPSHOT_NAME)
    checkpoint = os.path.join(data, "replication-offset-checkpoint")  # high watermarks
    c = RawClient(b.bootstrap)
    try:
        batches = [build_batch([(b"k", b"v%d" % i, [], 1000)], producer_id=77, producer_epoch=0,
                               base_sequence=i) for i in range(3)]
        for i, batch in enumerate(batches):
            assert _produce(c, "snap", batch)["base_offset"] == i
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the periodic checkpoint runs...
            if os.path.exists(checkpoint) and " 3\n" in open(checkpoint).read():
                break
            time.sleep(0.05)
        assert " 3\n" in open(checkpoint).read()
        time.sleep(0.3)  # ...a few times
        assert not os.path.exists(path)  # and writes no producer snapshot (no segment rolled)
    finally:
        c.close()
    b.broker.stop()  # a clean shutdown snapshots at the end
    assert decode_snapshot(open(path, "rb").read())[0] == 3
    b2 = odradek_broker_factory(data_dir=data)
    t = b2.broker.core.replicas.partition_or_error("snap", 0)[0].producers
    assert t.rebuild_stats["snapshot_offset"] == 3 and t.rebuild_stats["headers_read"] == 1
    c = RawClient(b2.bootstrap)
    try:
        assert _produce(c, "snap", batches[1])["base_offset"] == 1  # a duplicate
        assert b2.end_offsets("snap") == [3]
    finally:
        c.close()


def test_idle_producers_expire_unless_in_a_transaction():
    """Kafka's producer.id.expiration.ms: a producer whose last batch's timestamp
    is that old is forgotten, unless it has a transaction open here; one the
    table does not hold may start at any sequence."""
    t = ProducerStateTable()
    old = read_header(build_batch([(b"k", b"v", [], 1000)], producer_id=1, producer_epoch=0, base_sequence=0))
    recent = read_header(build_batch([(b"k", b"v", [], 5000)], producer_id=2, producer_epoch=0, base_sequence=0))
    in_txn = read_header(build_batch([(b"k", b"v", [], 1000)], producer_id=3, producer_epoch=0, base_sequence=0,
                                     transactional=True))
    for offset, h in enumerate((old, recent, in_txn)):
        t.record(h, offset)
    assert t.expire(now=5000, expiration_ms=4000) == 1
    assert sorted(t.producers) == [2, 3]
    t.record_marker(3, 0, 3, commit=True, timestamp=1000)
    assert t.expire(now=5000, expiration_ms=4000) == 1 and sorted(t.producers) == [2]
    assert t.check(batch_header(1, 7)) == (0, None)  # forgotten: its next batch is taken
    assert t.check(batch_header(2, 7))[0] == 45  # known: a gap is refused
