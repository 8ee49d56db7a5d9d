"""Partition logs on the OS, fake and memory (memory mode) filesystems: same behaviour."""

from __future__ import annotations

import os
import struct
import threading

import pytest
from crc32c import crc32c

from odradek.protocol.batch import iter_batches, read_header
from odradek.storage.base import LogConfig, OffsetOutOfRange
from odradek.storage.checkpoints import LeaderEpochCache, parse_offset_checkpoint
from odradek.storage.disk import DiskLogStore
from odradek.storage.fs import FakeFileSystem
from odradek.storage.memory import MemoryLogStore

BIG = 2**62


# -- hand-made magic-2 batches --------------------------------------------------

def _varint(n: int) -> bytes:
    n = ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def make_batch(values=(b"v",), timestamps=None, ts=1000, log_append_time=False) -> bytearray:
    """A valid uncompressed batch at base offset 0, records timestamped ``timestamps``
    (default ``ts`` for all)."""
    if timestamps is None:
        timestamps = [ts] * len(values)
    base_ts = timestamps[0]
    recs = bytearray()
    for i, (v, t) in enumerate(zip(values, timestamps)):
        body = (b"\0" + _varint(t - base_ts) + _varint(i) + _varint(-1)
                + _varint(len(v)) + v + _varint(0))
        recs += _varint(len(body)) + body
    n = len(values)
    attrs = 0x08 if log_append_time else 0
    tail = struct.pack(">hiqqqhii", attrs, n - 1, base_ts, max(timestamps), -1, -1, -1, n) + recs
    return bytearray(struct.pack(">qiibI", 0, len(tail) + 9, -1, 2, crc32c(tail)) + tail)


BATCH_SIZE = len(make_batch())  # a one-record batch with value b"v"


def offsets_of(result) -> list[int]:
    out = []
    for chunk in result.chunks:
        for _, h in iter_batches(chunk):
            out.extend(range(h.base_offset, h.last_offset + 1))
    return out


def bases_of(result) -> list[int]:
    return [h.base_offset for chunk in result.chunks for _, h in iter_batches(chunk)]


# -- fixtures -------------------------------------------------------------------

class Env:
    """Opens one log ``t-0`` from a store of the given kind; ``reopen`` simulates a
    restart (clean unless ``crash`` is given: "kill" or "power")."""

    def __init__(self, kind: str, tmp_path):
        self.kind = kind
        self.fs = FakeFileSystem() if kind == "disk" else None
        self.path = "/data" if kind == "disk" else str(tmp_path / "data")
        self.store = self._store()

    def _store(self):
        if self.kind == "memory":
            return MemoryLogStore()
        return DiskLogStore(self.path, self.fs)

    def open(self, **cfg):
        self.config = LogConfig(**cfg)
        return self.store.open_log("t", 0, self.config)

    def reopen(self, crash: str | None = None, torn: int | None = None):
        if crash is None:
            self.store.close()
        else:
            self.fs.crash(crash, torn)
        self.store = self._store()
        return self.store.open_log("t", 0, self.config)


@pytest.fixture(params=["memory", "disk", "os"])
def env(request, tmp_path):
    e = Env(request.param, tmp_path)
    yield e
    try:
        e.store.close()
    except OSError:
        pass


@pytest.fixture(params=["disk", "os"])
def disk_env(request, tmp_path):
    e = Env(request.param, tmp_path)
    yield e
    try:
        e.store.close()
    except OSError:
        pass


@pytest.fixture
def fake_env(tmp_path):
    e = Env("disk", tmp_path)
    yield e


def fill(lg, n, values=(b"v",), ts0=1000, step=10, epoch=0, now=5000):
    """Append ``n`` batches; return {base_offset: stored batch bytes}."""
    stored = {}
    for i in range(n):
        b = make_batch(values, ts=ts0 + i * step)
        info = lg.append(b, epoch, now)
        stored[info.base_offset] = bytes(b)
    return stored


# -- append and read ------------------------------------------------------------

def test_append_read_round_trip(env):
    lg = env.open()
    assert (lg.log_start_offset, lg.log_end_offset, lg.high_watermark) == (0, 0, 0)
    stored = {}
    for i in range(20):
        b = make_batch([b"a", b"bb", b"ccc"], ts=1000 + i)
        info = lg.append(b, 3, 5000)
        assert (info.base_offset, info.last_offset) == (3 * i, 3 * i + 2)
        assert info.max_timestamp == 1000 + i
        assert read_header(b).base_offset == 3 * i and read_header(b).partition_leader_epoch == 3
        stored[info.base_offset] = bytes(b)
    assert lg.log_end_offset == lg.high_watermark == 60
    r = lg.read(0, 1 << 20)
    assert b"".join(r.chunks) == b"".join(stored[k] for k in sorted(stored))
    assert r.size == sum(len(c) for c in r.chunks) == lg.size_in_bytes()
    assert offsets_of(r) == list(range(60))
    assert lg.read(60, 1 << 20).chunks == []
    with pytest.raises(OffsetOutOfRange):
        lg.read(61, 100)
    with pytest.raises(OffsetOutOfRange):
        lg.read(-1, 100)


def test_multiple_batches_in_one_append(env):
    lg = env.open()
    buf = make_batch([b"a", b"b"]) + make_batch([b"c"]) + make_batch([b"d", b"e", b"f"])
    info = lg.append(buf, 0, 5000)
    assert (info.base_offset, info.last_offset) == (0, 5)
    assert bases_of(lg.read(0, 1 << 20)) == [0, 2, 3]
    assert bases_of(lg.read(4, 1 << 20)) == [3]


def test_log_append_time(env):
    lg = env.open()
    b = make_batch([b"a", b"b"], ts=1000)
    info = lg.append(b, 0, 777_000, log_append_time=True)
    assert info.log_append_time == 777_000 and info.max_timestamp == 777_000
    h = read_header(lg.read(0, 1000).chunks[0])
    assert h.log_append_time and h.max_timestamp == 777_000
    from odradek.protocol.batch import validate
    validate(b"".join(lg.read(0, 1000).chunks))  # CRC recomputed
    assert lg.offset_for_timestamp(500_000) == (0, 777_000)


@pytest.mark.parametrize("interval", [0, 100, 4096])
def test_read_from_middle_offsets(env, interval):
    lg = env.open(segment_bytes=2000, index_interval_bytes=interval)
    stored = fill(lg, 100, values=[b"x" * 10] * 4)  # 4 records per batch
    assert len(lg.segment_base_offsets()) > 3
    for offset in (0, 1, 3, 4, 5, 57, 131, 200, 398, 399):
        r = lg.read(offset, 1 << 20)
        first = offset - offset % 4
        assert bases_of(r)[0] == first
        assert bases_of(r) == list(range(first, 400, 4))
        assert b"".join(r.chunks) == b"".join(stored[k] for k in range(first, 400, 4))


def expected_read(batches, offset, max_bytes, limit, min_one=True) -> list[int]:
    """Base offsets a read should return: ``batches`` is [(base, last, size)]."""
    out, size = [], 0
    for base, last, n in batches:
        if last < offset:
            continue
        if last >= limit or ((out or not min_one) and size + n > max_bytes):
            break
        out.append(base)
        size += n
    return out


@pytest.mark.parametrize("interval", [0, 150, 4096])
def test_reads_match_a_model(env, interval):
    """Every offset, several sizes and limits: while appending (the newest batches
    are found without a scan), after a truncation, and (disk) after a restart."""
    lg = env.open(segment_bytes=1500, index_interval_bytes=interval)
    batches = []
    for i in range(60):
        info = lg.append(make_batch([b"x" * (7 * i % 90)] * (1 + i % 3), ts=1000 + i), 0, 5000)
        batches.append((info.base_offset, info.last_offset, lg.size_in_bytes()
                        - sum(n for _, _, n in batches)))

    def check(lg, batches):
        leo = lg.log_end_offset
        for offset in range(leo):
            for max_bytes in (1, 100, 250, 1000, 1 << 20):
                for limit in (leo, offset + 1, offset + 5):
                    for min_one in (True, False):
                        got = bases_of(lg.read(offset, max_bytes, limit, min_one))
                        want = expected_read(batches, offset, max_bytes, min(limit, leo), min_one)
                        assert got == want, (offset, max_bytes, limit, min_one)

    check(lg, batches)
    cut = batches[46][0] + 1  # inside a batch of 2 records: it goes, with the rest
    lg.truncate_to(cut)
    batches = [b for b in batches if b[1] < cut]
    assert len(batches) == 46 and lg.log_end_offset == batches[-1][1] + 1
    check(lg, batches)
    if env.kind != "memory":
        check(env.reopen(), batches)


def test_read_respects_max_bytes_and_max_offset(env):
    lg = env.open(segment_bytes=BATCH_SIZE * 5)
    fill(lg, 30)
    # Whole batches only, never more than max_bytes once one is in.
    r = lg.read(3, BATCH_SIZE * 4 + 10)
    assert bases_of(r) == [3, 4, 5, 6]
    assert r.size == BATCH_SIZE * 4
    # max_offset is exclusive.
    assert bases_of(lg.read(3, 1 << 20, max_offset=7)) == [3, 4, 5, 6]
    assert bases_of(lg.read(7, 1 << 20, max_offset=7)) == []
    # Across segment boundaries.
    assert bases_of(lg.read(8, BATCH_SIZE * 6)) == [8, 9, 10, 11, 12, 13]


def test_at_least_one_batch(env):
    lg = env.open(segment_bytes=3000)
    big = make_batch([b"y" * 1000])
    small = make_batch([b"z"])
    lg.append(big, 0, 5000)
    lg.append(small, 0, 5000)
    for max_bytes in (0, 1, 100, len(big) - 1):
        r = lg.read(0, max_bytes)
        assert bases_of(r) == [0]
        assert r.size == len(big)
    assert bases_of(lg.read(0, len(big) + len(small))) == [0, 1]
    assert bases_of(lg.read(1, 1)) == [1]


def test_min_one_false_keeps_to_the_limit(env):
    """A Fetch's later partitions: nothing rather than a batch over the limit."""
    lg = env.open(segment_bytes=3000)
    big = make_batch([b"y" * 1000])
    small = make_batch([b"z"])
    lg.append(big, 0, 5000)
    lg.append(small, 0, 5000)
    for max_bytes in (0, 1, 100, len(big) - 1):
        r = lg.read(0, max_bytes, min_one=False)
        assert (bases_of(r), r.size) == ([], 0)
    assert bases_of(lg.read(0, len(big), min_one=False)) == [0]
    assert bases_of(lg.read(0, len(big) + len(small) - 1, min_one=False)) == [0]
    assert bases_of(lg.read(1, len(small), min_one=False)) == [1]


def test_high_watermark_bounds_reads(env):
    lg = env.open()
    fill(lg, 5)
    assert lg.high_watermark == 5
    lg.set_high_watermark(3)
    assert bases_of(lg.read(0, 1 << 20)) == [0, 1, 2]
    assert bases_of(lg.read(0, 1 << 20, max_offset=5)) == [0, 1, 2, 3, 4]
    lg.set_high_watermark(99)
    assert lg.high_watermark == 5


# -- rolling and retention --------------------------------------------------------

def test_roll_by_size(env):
    lg = env.open(segment_bytes=BATCH_SIZE * 3)
    fill(lg, 10)
    assert lg.segment_base_offsets() == [0, 3, 6, 9]
    # An append bigger than a segment still goes in (into a fresh segment).
    lg.append(make_batch([b"q" * (BATCH_SIZE * 4)]), 0, 5000)
    assert lg.segment_base_offsets() == [0, 3, 6, 9, 10]
    assert bases_of(lg.read(0, 1 << 20)) == list(range(11))


def test_roll_by_time(env):
    lg = env.open(segment_ms=100)
    for ts in (1000, 1050, 1100, 1101, 1150, 1300):
        lg.append(make_batch(ts=ts), 0, 5000)
    # 1101 - 1000 > 100 rolls; then 1300 - 1101 > 100 rolls again.
    assert lg.segment_base_offsets() == [0, 3, 5]
    # An idle active segment is rolled by apply_retention once segment.ms has passed.
    assert lg.apply_retention(1350) == 0
    assert lg.segment_base_offsets() == [0, 3, 5]
    lg.apply_retention(1401)
    assert lg.segment_base_offsets() == [0, 3, 5, 6]
    lg.apply_retention(100_000)  # the new active segment is empty: no roll
    assert lg.segment_base_offsets() == [0, 3, 5, 6]


def test_roll_when_index_full(env):
    lg = env.open(index_interval_bytes=0, segment_index_bytes=36)
    fill(lg, 10)
    # Room for 4 offset entries but 3 time entries: batches 1, 2, 3 fill the
    # time index, so batch 4 starts a new segment.
    assert lg.segment_base_offsets() == [0, 4, 8]


def test_retention_by_time(env):
    lg = env.open(segment_bytes=BATCH_SIZE * 2, retention_ms=5000)
    fill(lg, 10, ts0=1000, step=1000)  # timestamps 1000..10000, two per segment
    assert lg.segment_base_offsets() == [0, 2, 4, 6, 8]
    # Largest timestamps per segment: 2000, 4000, 6000, 8000, 10000(active).
    assert lg.apply_retention(9000) == 1  # 9000 - 2000 > 5000
    assert lg.segment_base_offsets() == [2, 4, 6, 8]
    assert lg.log_start_offset == 2
    assert lg.apply_retention(9000) == 0
    assert lg.apply_retention(10_000_000) == 3  # never the active segment
    assert lg.segment_base_offsets() == [8]
    assert lg.log_start_offset == 8
    assert bases_of(lg.read(8, 1 << 20)) == [8, 9]
    with pytest.raises(OffsetOutOfRange):
        lg.read(7, 100)


def test_retention_by_size(env):
    lg = env.open(segment_bytes=BATCH_SIZE * 2, retention_bytes=BATCH_SIZE * 5, retention_ms=-1)
    fill(lg, 10)
    assert lg.apply_retention(5000) == 2  # 10 batches -> keep >= 5 worth
    assert lg.segment_base_offsets() == [4, 6, 8]
    assert lg.size_in_bytes() == BATCH_SIZE * 6
    assert lg.log_start_offset == 4
    assert lg.apply_retention(5000) == 0


def test_retention_ignored_for_compact_policy(env):
    lg = env.open(segment_bytes=BATCH_SIZE, retention_ms=1, cleanup_policy="compact")
    fill(lg, 4)
    assert lg.apply_retention(10**9) == 0


def test_delete_records_before(env):
    lg = env.open(segment_bytes=BATCH_SIZE * 2)
    fill(lg, 10, ts0=1000, step=10)
    assert lg.delete_records_before(5) == 5
    assert lg.log_start_offset == 5
    assert lg.segment_base_offsets() == [4, 6, 8]
    with pytest.raises(OffsetOutOfRange):
        lg.read(4, 100)
    assert bases_of(lg.read(5, 1 << 20)) == [5, 6, 7, 8, 9]
    assert lg.offset_for_timestamp(0) == (5, 1050)
    assert lg.delete_records_before(3) == 5  # never moves back
    with pytest.raises(OffsetOutOfRange):
        lg.delete_records_before(11)
    assert lg.delete_records_before(-1) == 10  # -1: up to the high watermark
    assert lg.segment_base_offsets() == [8]
    assert lg.read(10, 100).chunks == []
    info = lg.append(make_batch(), 0, 5000)
    assert info.base_offset == 10


def test_delete_records_within_batch(env):
    lg = env.open()
    lg.append(make_batch([b"a", b"b", b"c"], timestamps=[10, 20, 30]), 0, 5000)
    lg.append(make_batch([b"d"], ts=40), 0, 5000)
    assert lg.delete_records_before(1) == 1
    assert bases_of(lg.read(1, 1 << 20)) == [0, 3]  # the batch holding 1, whole
    assert lg.offset_for_timestamp(0) == (1, 20)


def test_truncate_to(env):
    lg = env.open(segment_bytes=BATCH_SIZE * 3)
    fill(lg, 10, epoch=0)
    fill(lg, 2, epoch=4)
    assert lg.leader_epochs() == [(0, 0), (4, 10)]
    lg.truncate_to(7)
    assert lg.log_end_offset == lg.high_watermark == 7
    assert lg.segment_base_offsets() == [0, 3, 6]
    assert lg.leader_epochs() == [(0, 0)]
    assert bases_of(lg.read(0, 1 << 20)) == list(range(7))
    assert lg.append(make_batch(), 1, 5000).base_offset == 7
    lg.truncate_to(6)  # a segment's base: it stays, empty
    assert lg.segment_base_offsets() == [0, 3, 6] and lg.log_end_offset == 6
    lg.truncate_to(2)
    assert lg.segment_base_offsets() == [0] and lg.log_end_offset == 2
    assert bases_of(lg.read(0, 1 << 20)) == [0, 1]
    lg.append(make_batch([b"a", b"b", b"c"]), 0, 5000)
    lg.truncate_to(3)  # inside a batch: the whole batch goes
    assert lg.log_end_offset == 2


def test_truncate_to_does_not_fsync(fake_env):
    """truncate_to runs on the event loop, so it does no fsync: the shortened
    segment and the leader-epoch checkpoint become durable with the next flush."""
    fs = fake_env.fs
    lg = fake_env.open(segment_bytes=BATCH_SIZE * 3)
    fill(lg, 6, epoch=0)
    fill(lg, 2, epoch=3)
    fill(lg, 2, epoch=4)
    lg.flush()
    path = os.path.join(fake_env.path, "t-0", "leader-epoch-checkpoint")

    def epochs_on_disk() -> list:
        return LeaderEpochCache.from_text(fs.synced_contents(path).decode()).entries

    assert epochs_on_disk() == [(0, 0), (3, 6), (4, 8)]
    n = len(fs.syncs)
    lg.truncate_to(7)
    assert fs.syncs[n:] == []
    lg.flush()
    assert epochs_on_disk() == [(0, 0), (3, 6)]
    fake_env.store.write_checkpoints()
    lg = fake_env.reopen(crash="power")
    assert lg.log_end_offset == 7 and lg.leader_epochs() == [(0, 0), (3, 6)]


# -- timestamps --------------------------------------------------------------------

def test_offset_for_timestamp(env):
    lg = env.open(segment_bytes=2000, index_interval_bytes=200)
    for i in range(60):  # three records per batch, timestamps 1000 + 30i + {0, 10, 20}
        t = 1000 + 30 * i
        lg.append(make_batch([b"a", b"b", b"c"], timestamps=[t, t + 10, t + 20]), 0, 5000)
    assert len(lg.segment_base_offsets()) > 2
    assert lg.offset_for_timestamp(0) == (0, 1000)
    assert lg.offset_for_timestamp(1000) == (0, 1000)
    assert lg.offset_for_timestamp(1030) == (3, 1030)
    # Inside a batch: the first record with a timestamp >= the target.
    assert lg.offset_for_timestamp(1031) == (4, 1040)
    assert lg.offset_for_timestamp(1045) == (5, 1050)
    assert lg.offset_for_timestamp(1000 + 30 * 45 + 5) == (136, 1000 + 30 * 45 + 10)
    assert lg.offset_for_timestamp(1000 + 30 * 59 + 20) == (179, 1000 + 30 * 59 + 20)
    assert lg.offset_for_timestamp(1000 + 30 * 59 + 21) is None
    assert lg.max_timestamp() == (179, 1000 + 30 * 59 + 20)


def test_offset_for_timestamp_out_of_order(env):
    lg = env.open()
    for ts in (500, 300, 900, 100, 700):
        lg.append(make_batch(ts=ts), 0, 5000)
    assert lg.offset_for_timestamp(400) == (0, 500)
    assert lg.offset_for_timestamp(600) == (2, 900)
    assert lg.max_timestamp() == (2, 900)
    assert lg.offset_for_timestamp(901) is None


def test_max_timestamp_empty(env):
    lg = env.open()
    assert lg.max_timestamp() == (-1, -1)
    assert lg.offset_for_timestamp(0) is None


# -- leader epochs ------------------------------------------------------------------

def test_leader_epoch_cache(env):
    lg = env.open(segment_bytes=BATCH_SIZE * 2)
    assert lg.end_offset_for_epoch(0) == (-1, -1)
    for epoch in (0, 0, 2, 2, 5):
        lg.append(make_batch(), epoch, 5000)
    assert lg.leader_epochs() == [(0, 0), (2, 2), (5, 4)]
    assert lg.end_offset_for_epoch(0) == (0, 2)
    assert lg.end_offset_for_epoch(1) == (0, 2)
    assert lg.end_offset_for_epoch(2) == (2, 4)
    assert lg.end_offset_for_epoch(4) == (2, 4)
    assert lg.end_offset_for_epoch(5) == (5, 5)
    assert lg.end_offset_for_epoch(6) == (-1, -1)
    assert lg.end_offset_for_epoch(-1) == (-1, -1)
    lg.delete_records_before(3)
    assert lg.leader_epochs() == [(2, 3), (5, 4)]
    assert lg.end_offset_for_epoch(0) == (0, 3)  # older than known: next epoch's start


def test_leader_epoch_cache_unit():
    c = LeaderEpochCache()
    assert c.assign(1, 0) and not c.assign(1, 5) and c.assign(3, 10)
    assert c.entries == [(1, 0), (3, 10)]
    assert c.assign(2, 7)  # lower epoch: later entries conflict and go, as in Kafka
    assert c.entries == [(1, 0), (2, 7)]
    assert LeaderEpochCache.from_text(c.to_text()).entries == c.entries
    assert c.to_text() == "0\n2\n1 0\n2 7\n"
    assert c.truncate_from_start(7) and c.entries == [(2, 7)]
    assert c.truncate_from_end(7) and c.entries == []


def test_leader_epoch_checkpoint_file(disk_env):
    lg = disk_env.open()
    for epoch in (0, 3, 3, 7):
        lg.append(make_batch(), epoch, 5000)
    lg.flush()
    path = os.path.join(disk_env.path, "t-0", "leader-epoch-checkpoint")
    raw = disk_env.fs.contents(path) if disk_env.fs else open(path, "rb").read()
    assert raw == b"0\n3\n0 0\n3 1\n7 3\n"
    lg = disk_env.reopen()
    assert lg.leader_epochs() == [(0, 0), (3, 1), (7, 3)]
    assert lg.end_offset_for_epoch(3) == (3, 3)


def test_leader_epochs_recovered_from_batches(fake_env):
    lg = fake_env.open()
    fill(lg, 3, epoch=1)
    lg.flush()
    fill(lg, 2, epoch=8)  # never flushed: the checkpoint file lacks epoch 8
    lg = fake_env.reopen(crash="kill")
    assert lg.leader_epochs() == [(1, 0), (8, 3)]


# -- restart and recovery -------------------------------------------------------------

def test_reopen_after_clean_close(disk_env):
    lg = disk_env.open(segment_bytes=5000, index_interval_bytes=500)
    stored = fill(lg, 200, values=[b"r" * 50], ts0=1000, step=7)
    leo, bases, size = lg.log_end_offset, lg.segment_base_offsets(), lg.size_in_bytes()
    mt = lg.max_timestamp()
    if disk_env.fs:
        disk_env.fs.bytes_read = 0
    lg = disk_env.reopen()
    assert lg.stats["recovered_bytes"] == 0 and lg.stats["rebuilt_indexes"] == 0
    if disk_env.fs:  # no rescan: index files plus a short tail scan
        assert disk_env.fs.bytes_read < size // 5
    assert (lg.log_end_offset, lg.high_watermark, lg.recovery_point) == (leo, leo, leo)
    assert lg.segment_base_offsets() == bases
    assert lg.max_timestamp() == mt
    assert b"".join(lg.read(0, 1 << 24).chunks) == b"".join(stored[k] for k in range(200))
    assert lg.offset_for_timestamp(1000 + 7 * 150) == (150, 1000 + 7 * 150)
    assert lg.append(make_batch(), 0, 5000).base_offset == 200


def test_checkpoint_files(disk_env):
    lg = disk_env.open(segment_bytes=BATCH_SIZE * 2)
    fill(lg, 6)
    lg.delete_records_before(3)
    other = disk_env.store.open_log("other-topic", 2, LogConfig())
    fill(other, 1)
    disk_env.store.close()
    for name, expect in (("recovery-point-offset-checkpoint", {("t", 0): 6, ("other-topic", 2): 1}),
                         ("log-start-offset-checkpoint", {("t", 0): 3, ("other-topic", 2): 0}),
                         ("replication-offset-checkpoint", {("t", 0): 6, ("other-topic", 2): 1})):
        path = os.path.join(disk_env.path, name)
        raw = disk_env.fs.contents(path) if disk_env.fs else open(path, "rb").read()
        assert raw.startswith(b"0\n2\n")
        assert parse_offset_checkpoint(raw) == expect
    store = DiskLogStore(disk_env.path, disk_env.fs)
    assert store.existing_logs() == [("other-topic", 2), ("t", 0)]
    lg = store.open_log("t", 0, disk_env.config)
    assert (lg.log_start_offset, lg.log_end_offset) == (3, 6)
    store.delete_log("other-topic", 2)
    assert store.existing_logs() == [("t", 0)]
    store.close()


def test_checkpoints_keep_the_logs_not_opened_since_a_restart(disk_env):
    """The store keeps in memory only the checkpoint entries of logs not open
    (an open log carries its own); a log not opened after a restart still has
    its entries in every checkpoint written, and gets them when opened."""
    a = disk_env.store.open_log("a", 0, LogConfig())
    b = disk_env.store.open_log("b", 0, LogConfig())
    fill(a, 2)
    fill(b, 3)
    disk_env.store.close()
    store = DiskLogStore(disk_env.path, disk_env.fs)
    a = store.open_log("a", 0, LogConfig())
    fill(a, 1)
    a.flush()
    for _ in range(2):  # the second write starts from what the first kept
        store.write_checkpoints()
        path = os.path.join(disk_env.path, "recovery-point-offset-checkpoint")
        raw = disk_env.fs.contents(path) if disk_env.fs else open(path, "rb").read()
        assert parse_offset_checkpoint(raw) == {("a", 0): 3, ("b", 0): 3}
    b = store.open_log("b", 0, LogConfig())
    assert (b.recovery_point, b.log_end_offset) == (3, 3)
    store.close()


def test_a_loaded_partition_log_stays_small_in_memory(tmp_path):
    """Memory per partition bounds how many one broker holds (100,000 and
    more): a loaded log with one record costs under 3,500 bytes of Python
    objects (before segments had slots and derived their index paths: 4,500)."""
    import gc
    import tracemalloc

    n = 300
    store = DiskLogStore(str(tmp_path), open_files=32)
    for p in range(n):
        store.open_log("t", p, LogConfig()).append(make_batch(), 0, 1000)
    store.close()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = DiskLogStore(str(tmp_path), open_files=32)
        logs = [store.open_log("t", p, LogConfig()) for p in range(n)]
        gc.collect()
        per_log = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert [lg.log_end_offset for lg in logs] == [1] * n
    assert per_log < 3500, per_log
    store.close()


def test_metadata_files(env):
    assert env.store.read_metadata("topics.json") is None
    env.store.write_metadata("topics.json", b'{"a": 1}')
    env.store.write_metadata("topics.json", b'{"a": 2}')
    assert env.store.read_metadata("topics.json") == b'{"a": 2}'
    if env.kind != "memory":
        files = env.fs.listdir(env.path) if env.fs else os.listdir(env.path)
        assert "topics.json" in files and "topics.json.tmp" not in files
        store = DiskLogStore(env.path, env.fs)
        assert store.read_metadata("topics.json") == b'{"a": 2}'


def test_recovery_truncates_torn_batch(fake_env):
    lg = fake_env.open(index_interval_bytes=1 << 20)  # the log write is the last write
    stored = fill(lg, 10)
    lg = fake_env.reopen(crash="kill", torn=BATCH_SIZE // 2)
    assert lg.log_end_offset == 9
    assert lg.stats["recovered_segments"] == 1
    assert fake_env.fs.size("/data/t-0/00000000000000000000.log") == 9 * BATCH_SIZE
    assert b"".join(lg.read(0, 1 << 20).chunks) == b"".join(stored[k] for k in range(9))
    assert lg.append(make_batch(), 0, 5000).base_offset == 9
    lg = fake_env.reopen()
    assert lg.log_end_offset == 10


@pytest.mark.parametrize("torn", [0, 5, 20, 60])
def test_recovery_torn_header(fake_env, torn):
    lg = fake_env.open(index_interval_bytes=1 << 20)
    fill(lg, 4)
    lg = fake_env.reopen(crash="kill", torn=torn)
    assert lg.log_end_offset == 3
    assert lg.size_in_bytes() == 3 * BATCH_SIZE


def test_power_loss_keeps_flushed_prefix(fake_env):
    lg = fake_env.open(segment_bytes=BATCH_SIZE * 4)
    fill(lg, 6)
    lg.flush()
    assert lg.recovery_point == 6
    fake_env.store.write_checkpoints()
    fill(lg, 7)  # into new segments, never fsynced
    lg = fake_env.reopen(crash="power")
    assert lg.log_end_offset == 6
    # Segments 8 and 12 came back empty: a gap means lost data, so they go.
    assert lg.segment_base_offsets() == [0, 4]
    assert not fake_env.fs.exists("/data/t-0/00000000000000000012.log")
    assert bases_of(lg.read(0, 1 << 20)) == list(range(6))
    assert lg.recovery_point == 6
    assert lg.append(make_batch(), 0, 5000).base_offset == 6


def test_power_loss_with_torn_write_on_synced_data(fake_env):
    lg = fake_env.open(index_interval_bytes=1 << 20)
    fill(lg, 3)
    lg.flush()
    # Nothing written after the flush: the 'last write' tears onto synced bytes.
    lg = fake_env.reopen(crash="power", torn=10)
    assert lg.log_end_offset == 3


def test_recovery_corrupt_crc_in_tail(fake_env):
    lg = fake_env.open(segment_bytes=BATCH_SIZE * 4)
    fill(lg, 5)
    lg.flush()
    fake_env.store.write_checkpoints()
    fill(lg, 10)  # offsets 5..14 in segments 4, 8, 12
    # Flip a byte in the record payload of offset 9 (second segment after the recovery point).
    fake_env.fs.corrupt("/data/t-0/00000000000000000008.log", BATCH_SIZE + 70 - 2, b"\xff")
    lg = fake_env.reopen(crash="kill")
    assert lg.log_end_offset == 9
    assert lg.segment_base_offsets() == [0, 4, 8]  # the segment after the corruption is gone
    assert not fake_env.fs.exists("/data/t-0/00000000000000000012.log")
    assert bases_of(lg.read(0, 1 << 20)) == list(range(9))
    assert lg.append(make_batch(), 0, 5000).base_offset == 9


def test_corruption_below_recovery_point_is_not_rescanned(fake_env):
    lg = fake_env.open()
    fill(lg, 5)
    fake_env.store.close()  # clean: recovery point = 5
    fake_env.fs.corrupt("/data/t-0/00000000000000000000.log", 2 * BATCH_SIZE + 68, b"\xff")
    lg = fake_env.reopen(crash="kill")
    assert lg.log_end_offset == 5 and lg.stats["recovered_bytes"] == 0


def test_full_rescan_without_checkpoint(fake_env):
    lg = fake_env.open(segment_bytes=BATCH_SIZE * 3)
    fill(lg, 10)
    lg = fake_env.reopen(crash="kill")  # no checkpoints were ever written
    assert lg.stats["recovered_bytes"] == 10 * BATCH_SIZE
    assert lg.log_end_offset == 10
    assert lg.segment_base_offsets() == [0, 3, 6, 9]


def _index_files(fs, seg):
    base = f"/data/t-0/{seg:020d}"
    return fs.contents(base + ".index"), fs.contents(base + ".timeindex")


@pytest.mark.parametrize("damage", ["missing", "missing-time", "wrong-size", "garbage", "zeros"])
def test_damaged_index_rebuilt(fake_env, damage):
    lg = fake_env.open(segment_bytes=BATCH_SIZE * 20, index_interval_bytes=BATCH_SIZE * 2)
    stored = fill(lg, 50, ts0=1000, step=10)
    fake_env.store.close()
    fs = fake_env.fs
    idx, tidx = _index_files(fs, 20)
    assert len(idx) > 8 and len(tidx) > 12
    path = "/data/t-0/00000000000000000020.index"
    if damage == "missing":
        fs.remove(path)
    elif damage == "missing-time":
        fs.remove(path.replace(".index", ".timeindex"))
    elif damage == "wrong-size":
        h = fs.open(path)
        fs.truncate(h, len(idx) - 3)
        fs.close(h)
    elif damage == "garbage":
        fs.corrupt(path, len(idx) - 4, struct.pack(">i", 10**6))
    else:
        fs.corrupt(path, 0, bytes(len(idx)))
    fs.crash("kill")
    fake_env.store = DiskLogStore("/data", fs)
    lg = fake_env.store.open_log("t", 0, fake_env.config)
    assert lg.stats["rebuilt_indexes"] == 1
    lg.flush()  # recovery rebuilds the entries in memory; the next flush writes the files
    assert _index_files(fs, 20) == (idx, tidx)  # rebuilt byte for byte
    for offset in (20, 21, 33, 39):
        assert b"".join(lg.read(offset, BATCH_SIZE).chunks) == stored[offset]
    assert lg.offset_for_timestamp(1000 + 10 * 35) == (35, 1350)
    assert lg.log_end_offset == 50


def test_creating_a_log_creates_one_file_and_a_crash_before_its_first_flush_loses_nothing(fake_env):
    """Creating a partition creates its directory and one file, the .log (not
    the index files: 100,000 partitions would mean 200,000 empty files); a
    kill -9 before the first flush recovers every record, indexes them in
    memory and creates no file: the next flush writes the index files."""
    fs = fake_env.fs
    lg = fake_env.open(index_interval_bytes=0)
    assert fs.listdir("/data/t-0") == ["00000000000000000000.log"]
    stored = fill(lg, 3)
    lg = fake_env.reopen(crash="kill")
    assert lg.log_end_offset == 3
    assert fs.listdir("/data/t-0") == ["00000000000000000000.log"]
    for offset, data in stored.items():
        assert b"".join(lg.read(offset, BATCH_SIZE).chunks) == data
    lg.flush()
    idx, tidx = _index_files(fs, 0)
    assert len(idx) == 2 * 8 and len(tidx) == 2 * 12  # as recovery indexed them again
    fake_env.store.close()
    lg = fake_env.reopen()  # a new log closed cleanly before any write: its files as well
    fake_env.store.open_log("u", 0, fake_env.config)
    fake_env.store.close()
    assert sorted(fs.listdir("/data/u-0")) == [f"{0:020d}.index", f"{0:020d}.log", f"{0:020d}.timeindex"]


def test_recovery_that_drops_no_index_entry_only_appends_to_the_index_files(fake_env):
    """After a kill -9, recovery rescans above the recovery point, in memory;
    when that drops no index entry the next flush appends what it found (it
    rewrites nothing), and the files come out as a rebuild from scratch
    writes them. Recovery itself only reads the index files."""
    fs = fake_env.fs
    lg = fake_env.open(index_interval_bytes=0)
    fill(lg, 3, ts0=1000, step=10)
    lg.flush()
    fake_env.store.write_checkpoints()  # recovery point 3
    fill(lg, 2, ts0=2000, step=10)
    fs.counts.clear()
    lg = fake_env.reopen(crash="kill")
    assert lg.log_end_offset == 5
    lg.flush()
    assert fs.counts["truncate"] == 0
    recovered = _index_files(fs, 0)
    assert len(recovered[0]) == 4 * 8 and len(recovered[1]) == 4 * 12
    for ext in (".index", ".timeindex"):
        fs.remove(f"/data/t-0/{0:020d}{ext}")
    fs.crash("kill")
    lg = fake_env.reopen(crash="kill")
    assert lg.stats["rebuilt_indexes"] == 1
    lg.flush()
    assert _index_files(fs, 0) == recovered
    fake_env.store.write_checkpoints()  # recovery point 5
    fill(lg, 1, ts0=1500)
    opened = []
    fs.on("open", lambda _op, path: opened.append(os.path.basename(path)), times=-1)
    writes = fs.counts["pwrite"]
    lg = fake_env.reopen(crash="kill")
    assert lg.log_end_offset == 6
    # each index file read once by loading, nothing written
    assert (opened.count(f"{0:020d}.index"), opened.count(f"{0:020d}.timeindex")) == (1, 1)
    assert fs.counts["pwrite"] == writes


def test_index_golden_bytes(fake_env):
    """.index: int32 relative offset, int32 position; .timeindex: int64 timestamp,
    int32 relative offset; big-endian, as Kafka's DumpLogSegments reads them."""
    lg = fake_env.open(index_interval_bytes=0)
    assert BATCH_SIZE == 69
    for ts in (1000, 2000, 1500, 3000):
        lg.append(make_batch(ts=ts), 0, 5000)
    # entries are kept in memory until a flush, which creates a new log's files
    assert not any(fake_env.fs.exists(f"/data/t-0/{0:020d}{ext}") for ext in (".index", ".timeindex"))
    lg.flush()
    idx, tidx = _index_files(fake_env.fs, 0)
    assert idx.hex() == "00000001" "00000045" "00000002" "0000008a" "00000003" "000000cf"
    assert tidx.hex() == ("00000000000007d0" "00000001"
                          "0000000000000bb8" "00000003")
    # Rolling (or closing) adds nothing when the last entry already holds the max.
    lg.append(make_batch(ts=3000), 0, 5000)
    fake_env.store.close()
    assert _index_files(fake_env.fs, 0)[1] == tidx


def test_timeindex_final_entry_on_roll(fake_env):
    lg = fake_env.open(index_interval_bytes=1 << 20, segment_bytes=BATCH_SIZE * 3)
    for ts in (1000, 1200, 1100, 1300):
        lg.append(make_batch(ts=ts), 0, 5000)
    lg.flush()  # as the roll schedules
    idx, tidx = _index_files(fake_env.fs, 0)
    assert idx == b"" and tidx.hex() == "00000000000004b0" "00000001"


def test_append_write_failure_leaves_log_intact(fake_env):
    lg = fake_env.open()
    fill(lg, 3)
    fake_env.fs.fail("pwrite", path_contains=".log")
    with pytest.raises(OSError):
        lg.append(make_batch(), 0, 5000)
    assert lg.log_end_offset == 3
    assert lg.append(make_batch(), 0, 5000).base_offset == 3
    assert bases_of(lg.read(0, 1 << 20)) == [0, 1, 2, 3]


def test_flush_failure_keeps_recovery_point(fake_env):
    lg = fake_env.open()
    fill(lg, 3)
    fake_env.fs.fail("fsync")
    with pytest.raises(OSError):
        lg.flush()
    assert lg.recovery_point == 0
    lg.flush()
    assert lg.recovery_point == 3


def test_flush_due(disk_env):
    lg = disk_env.open(flush_messages=10, flush_ms=1000)
    fill(lg, 9)
    assert not lg.flush_due
    fill(lg, 1)
    assert lg.flush_due
    assert not lg.flush_due  # reported once
    assert lg.recovery_point == 0  # append itself never flushes
    assert lg.flush_due_by_time(lg._last_flush_ms + 1000)
    lg.flush()
    assert lg.recovery_point == 10
    assert not lg.flush_due_by_time(lg._last_flush_ms + 10**6)


def test_flush_from_thread_while_appending(disk_env):
    lg = disk_env.open(segment_bytes=20_000, index_interval_bytes=256)
    stop = threading.Event()
    errors, seen = [], []

    def flusher():
        try:
            while not stop.is_set():
                lg.flush()
                seen.append((lg.recovery_point, lg.log_end_offset))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=flusher) for _ in range(2)]
    for t in threads:
        t.start()
    stored = {}
    try:
        for i in range(1500):
            b = make_batch([b"p" * 30, b"q" * 30], ts=1000 + i)
            info = lg.append(b, 0, 5000)
            stored[info.base_offset] = bytes(b)
            if i % 200 == 0:
                lg.apply_retention(0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert all(rp <= leo for rp, leo in seen)
    lg.flush()
    assert lg.recovery_point == lg.log_end_offset == 3000
    assert b"".join(lg.read(0, 1 << 26).chunks) == b"".join(stored[k] for k in sorted(stored))
    if disk_env.fs:  # everything flushed survives a power loss
        disk_env.store.write_checkpoints()
        lg = disk_env.reopen(crash="power")
    else:
        lg = disk_env.reopen()
    assert lg.log_end_offset == 3000
    assert b"".join(lg.read(0, 1 << 26).chunks) == b"".join(stored[k] for k in sorted(stored))


def test_retention_deletes_files(disk_env):
    lg = disk_env.open(segment_bytes=BATCH_SIZE * 2, retention_bytes=0, retention_ms=-1)
    fill(lg, 7)
    assert lg.apply_retention(0) == 3
    d = os.path.join(disk_env.path, "t-0")
    names = disk_env.fs.listdir(d) if disk_env.fs else os.listdir(d)
    assert sorted(n for n in names if n.endswith(".log")) == ["00000000000000000006.log"]
    lg = disk_env.reopen()
    assert (lg.log_start_offset, lg.log_end_offset) == (6, 7)


def test_reopen_after_truncate_and_delete(disk_env):
    lg = disk_env.open(segment_bytes=BATCH_SIZE * 3)
    fill(lg, 10, epoch=2)
    lg.truncate_to(5)
    lg.delete_records_before(4)
    lg = disk_env.reopen()
    assert (lg.log_start_offset, lg.log_end_offset) == (4, 5)
    assert lg.segment_base_offsets() == [3]
    assert lg.leader_epochs() == [(2, 4)]
    assert bases_of(lg.read(4, 1 << 20)) == [4]


def test_memory_store_keeps_logs():
    store = MemoryLogStore()
    lg = store.open_log("a", 0, LogConfig())
    stored = fill(lg, 2)
    lg.close()
    lg = store.open_log("a", 0, LogConfig())
    assert lg.log_end_offset == 2 and lg.read(0, 1 << 20).chunks == [b"".join(stored.values())]
    assert store.existing_logs() == [("a", 0)]
    store.delete_log("a", 0)
    assert store.existing_logs() == []


def test_memory_store_frees_what_it_deletes():
    store = MemoryLogStore()
    held = store.fs._files  # path -> file: all the memory the store's data takes
    lg = store.open_log("t", 0, LogConfig(segment_bytes=BATCH_SIZE * 10, retention_bytes=0))
    fill(lg, 95)
    assert lg.apply_retention(0) == 9
    segments = sum(len(f.data) for p, f in held.items() if p.endswith(".log"))
    assert segments == lg.size_in_bytes() == 5 * BATCH_SIZE
    assert all(p.startswith("/t-0/") and p.endswith(("0090.log", "0090.index", "0090.timeindex",
                                                     "leader-epoch-checkpoint"))
               for p in held)
    store.delete_log("t", 0)
    assert held == {} and store.fs._handles == {}


def test_recreated_log_ignores_stale_checkpoints(disk_env):
    lg = disk_env.open()
    fill(lg, 5)
    lg.delete_records_before(4)
    disk_env.store.write_checkpoints()
    disk_env.store.delete_log("t", 0)
    disk_env.store.write_checkpoints()
    lg = disk_env.store.open_log("t", 0, disk_env.config)
    assert (lg.log_start_offset, lg.log_end_offset) == (0, 0)
    lg = disk_env.reopen()
    assert (lg.log_start_offset, lg.log_end_offset) == (0, 0)


# -- batch headers and auxiliary files ------------------------------------------------

def test_iter_headers(env):
    from odradek.storage.base import PartitionLog

    lg = env.open(segment_bytes=BATCH_SIZE * 4, index_interval_bytes=BATCH_SIZE)
    fill(lg, 5)
    lg.append(make_batch([b"a", b"b", b"c"]), 1, 5000)  # offsets 5..7
    fill(lg, 6, epoch=2)
    leo = lg.log_end_offset
    assert leo == 14
    every = [h for chunk in lg.read(0, 1 << 20, leo).chunks for _, h in iter_batches(chunk)]
    assert len(every) == 12
    for start in range(leo + 1):
        want = [h for h in every if h.last_offset >= start]
        assert list(lg.iter_headers(start)) == want
        assert list(PartitionLog.iter_headers(lg, start, chunk_bytes=2 * BATCH_SIZE)) == want
    lg.set_high_watermark(3)  # headers go to the log end, not the high watermark
    assert list(lg.iter_headers(10)) == every[-4:]
    lg.set_high_watermark(leo)
    lg.delete_records_before(3)
    lg.delete_records_before(6)  # inside the 3-record batch
    assert [h.base_offset for h in lg.iter_headers(6)] == [5] + list(range(8, 14))
    for bad in (5, leo + 1):
        with pytest.raises(OffsetOutOfRange):
            next(iter(lg.iter_headers(bad)))


def test_iter_headers_reads_only_headers(fake_env):
    lg = fake_env.open(segment_bytes=40_000, index_interval_bytes=4096)
    fill(lg, 100, values=(b"x" * 2000,))
    fs = fake_env.fs
    fs.bytes_read = 0
    assert len(list(lg.iter_headers(0))) == 100
    assert fs.bytes_read == 100 * 61  # one header per batch, none of the data
    fs.bytes_read = 0
    assert [h.base_offset for h in lg.iter_headers(97)] == [97, 98, 99]
    assert fs.bytes_read <= 61 * 6  # from the index entry at or before 97
    fs.bytes_read = 0
    assert len(list(lg.iter_headers(99))) == 1


def test_aux_files(env):
    lg = env.open()
    assert lg.read_aux("state.snapshot") is None
    lg.write_aux("state.snapshot", b"one")
    lg.write_aux("state.snapshot", b"two")
    lg.write_aux("other.snapshot", b"")
    assert (lg.read_aux("state.snapshot"), lg.read_aux("other.snapshot")) == (b"two", b"")
    for bad in ("state", ".snapshot", "../x.snapshot", "a/b.snapshot", "leader-epoch-checkpoint",
                "00000000000000000000.log"):
        with pytest.raises(ValueError):
            lg.write_aux(bad, b"x")
        with pytest.raises(ValueError):
            lg.read_aux(bad)
    fill(lg, 3)
    if env.kind != "memory":
        lg = env.reopen()
        assert lg.read_aux("state.snapshot") == b"two"
        assert lg.log_end_offset == 3
    else:
        lg.write_aux("state.snapshot", b"two")
    lg.truncate_to(5)  # beyond the end: nothing happens
    assert lg.read_aux("state.snapshot") == b"two"
    lg.truncate_to(2)  # the log they describe changed: they all go
    assert lg.read_aux("state.snapshot") is None and lg.read_aux("other.snapshot") is None


def test_aux_write_is_atomic_and_durable(fake_env):
    lg = fake_env.open()
    lg.write_aux("p.snapshot", b"old")
    fake_env.fs.fail("rename", path_contains="p.snapshot")
    with pytest.raises(OSError):
        lg.write_aux("p.snapshot", b"new")
    assert lg.read_aux("p.snapshot") == b"old"
    lg = fake_env.reopen(crash="power")
    assert lg.read_aux("p.snapshot") == b"old"  # fsynced, and the temp file is gone
    assert fake_env.fs.listdir("/data/t-0") == ["00000000000000000000.log", "p.snapshot"]
    lg.close()
    lg.write_aux("p.snapshot", b"after close")  # ignored: the log may be being deleted
    assert lg.read_aux("p.snapshot") == b"old"
    fake_env.store.delete_log("t", 0)
    assert not fake_env.fs.exists("/data/t-0")


# -- file handles: a segment keeps only its .log open ---------------------------

def _open_paths(fs) -> list[str]:
    return sorted(path for path, _ in fs._handles.values())


def test_a_segment_keeps_only_its_log_open_and_indexes_are_written_at_flush(fake_env):
    """One open file per segment (Kafka maps its indexes; odradek keeps their
    entries in memory), so a broker holds one descriptor per partition's
    active segment; the index files catch up at a flush, by appending."""
    lg = fake_env.open(segment_bytes=BATCH_SIZE * 4, index_interval_bytes=0)
    fill(lg, 10, ts0=1000, step=10)
    assert _open_paths(fake_env.fs) == [f"/data/t-0/{b:020d}.log" for b in (0, 4, 8)]
    idx_before = _index_files(fake_env.fs, 8)
    lg.flush()
    assert _open_paths(fake_env.fs) == [f"/data/t-0/{b:020d}.log" for b in (0, 4, 8)]
    idx, tidx = _index_files(fake_env.fs, 8)
    assert idx_before == (b"", b"") and len(idx) == 8 and len(tidx) == 12  # offset 9 at batch 2
    writes = fake_env.fs.counts.get("pwrite", 0)
    fill(lg, 1, ts0=2000)
    lg.flush()
    # Only the new entries were written (one index and one time entry), not the files again.
    assert fake_env.fs.counts["pwrite"] - writes == 3
    assert _index_files(fake_env.fs, 8)[0] == idx + bytes.fromhex("000000020000008a")


@pytest.mark.parametrize("crash", ["kill", "power"])
def test_indexes_not_yet_written_are_derived_again_after_a_crash(fake_env, crash):
    """A crash before the flush that would have written them: the entries
    above the recovery point come back from the .log, so reads, timestamp
    lookups and the largest timestamp (retention's clock) are as before."""
    lg = fake_env.open(segment_bytes=BATCH_SIZE * 6, index_interval_bytes=BATCH_SIZE)
    stored = fill(lg, 8, ts0=1000, step=10)
    lg.flush()
    fake_env.store.write_checkpoints()
    stored.update(fill(lg, 10, ts0=2000, step=10))  # rolls at 12; never flushed
    if crash == "kill":
        expect_end, expect = 18, [(1005, (1, 1010)), (1075, (8, 2000)), (2085, (17, 2090)), (2095, None)]
    else:  # what was not fsynced is gone: the log ends at the flush
        expect_end, expect = 8, [(1005, (1, 1010)), (1070, (7, 1070)), (1075, None)]
    before = {b: lg.read(b, BATCH_SIZE) for b in range(expect_end)}
    lg = fake_env.reopen(crash=crash)
    assert lg.log_end_offset == expect_end
    for offset in range(expect_end):
        assert b"".join(lg.read(offset, BATCH_SIZE).chunks) == b"".join(before[offset].chunks)
    for ts, answer in expect:
        assert lg.offset_for_timestamp(ts) == answer
    lg.close()
    lg = fake_env.reopen()  # and the files a clean close wrote load as they are
    for ts, answer in expect:
        assert lg.offset_for_timestamp(ts) == answer


def _open_logs(fs) -> set[str]:
    return {path for path, _ in fs._handles.values() if path.endswith(".log")}


def test_a_store_keeps_at_most_its_limit_of_segment_files_open():
    """More segments than the open-file limit: the event loop closes the
    least recently used idle ones and they open again on demand, so every
    partition stays writable and readable, and comes back after a restart."""
    import asyncio

    fs = FakeFileSystem()
    config = LogConfig(segment_bytes=BATCH_SIZE * 2)

    async def main():
        store = DiskLogStore("/data", fs, open_files=3)
        logs = [store.open_log("t", p, config) for p in range(6)]
        assert _open_logs(fs) == set()  # a log just loaded holds no file
        stored = {}
        for _ in range(3):
            for p, lg in enumerate(logs):
                stored.setdefault(p, {}).update(fill(lg, 2))
                assert len(_open_logs(fs)) <= 3
        for p, lg in enumerate(logs):
            for offset, data in stored[p].items():
                assert b"".join(lg.read(offset, BATCH_SIZE).chunks) == data
            assert len(_open_logs(fs)) <= 3
        # A segment a worker thread pinned keeps its file while others come and go.
        pinned = logs[0].segments_for_cleaning()[:2]
        logs[0].pin_segments(pinned)
        for lg in logs[1:]:
            fill(lg, 1)
        assert {s.log_path for s in pinned} <= _open_logs(fs)
        assert [len(list(logs[0].segment_batches(s))) for s in pinned] == [2, 2]
        logs[0].unpin_segments(pinned)
        for lg in logs[1:]:
            lg.read(0, BATCH_SIZE)
        assert len(_open_logs(fs)) <= 3
        ends = [lg.log_end_offset for lg in logs]
        for lg in logs:
            lg.flush()
        store.close()
        assert _open_logs(fs) == set()
        store = DiskLogStore("/data", fs, open_files=3)
        for p in range(6):
            lg = store.open_log("t", p, config)
            assert lg.log_end_offset == ends[p] == (6 if p == 0 else 7)
            for offset, data in stored[p].items():
                assert b"".join(lg.read(offset, BATCH_SIZE).chunks) == data
        store.close()

    asyncio.run(main())


def test_reopening_files_beyond_the_limit_trims_once_per_eighth_of_the_limit(tmp_path):
    """Many more partitions in use than open files: each use reopens a file,
    and the store, once over its limit, closes down to 7/8 of it, so it
    trims once per limit/8 reopens (each trim scans the oldest files)."""
    store = DiskLogStore(str(tmp_path), open_files=64)
    logs = [store.open_log("t", p, LogConfig()) for p in range(200)]
    for lg in logs:
        lg.append(make_batch(), 0, 1000)
    trims = []
    real = store.files.trim
    store.files.trim = lambda: trims.append(real()) or trims[-1]
    for _ in range(3):
        for lg in logs:
            assert lg.read(0, BATCH_SIZE).size == BATCH_SIZE
            assert len(store.files) <= 64
    worked = [n for n in trims if n]
    assert len(worked) <= 3 * 200 // 8 + 1 and all(n >= 8 for n in worked), worked
    store.close()


def test_a_segment_file_is_never_created_again_by_opening_it_on_demand(fake_env):
    lg = fake_env.open(segment_bytes=BATCH_SIZE * 2)
    fill(lg, 5)
    seg = lg.segments_for_cleaning()[0]
    assert seg.close_if_idle()
    fake_env.fs.remove(seg.log_path)
    with pytest.raises(FileNotFoundError):
        seg.log
    assert not fake_env.fs.exists(seg.log_path)


def test_a_batch_larger_than_the_read_window_is_recovered_and_walked(fake_env):
    """Recovery and the cleaner's walk read 1 MiB windows; a batch larger than
    that is read whole."""
    lg = fake_env.open(segment_bytes=8 << 20)
    big = make_batch([bytes(range(256)) * 6000])  # ~1.5 MB
    small = make_batch()
    for b in (small, big, small):
        lg.append(bytearray(b), 0, 5000)
    lg = fake_env.reopen(crash="kill")  # nothing checkpointed: every batch is validated again
    assert lg.log_end_offset == 3
    assert [len(b"".join(lg.read(o, 1).chunks)) for o in range(3)] == [len(small), len(big), len(small)]
    seg = lg.segments_for_cleaning()[0]
    lg.pin_segments([seg])
    try:
        assert [len(raw) for _, raw in lg.segment_batches(seg)] == [len(small), len(big), len(small)]
    finally:
        lg.unpin_segments([seg])
