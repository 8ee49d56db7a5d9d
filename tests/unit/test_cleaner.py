"""Log compaction (odradek.storage.cleaner) in memory mode and on the fake filesystem."""

from __future__ import annotations

import asyncio
import os

import pytest

from odradek.producers import ProducerStateTable
from odradek.protocol.batch import DELETE_HORIZON_FLAG, iter_batches
from odradek.protocol.records import build_batch, build_control_batch, decode_batch
from odradek.storage.base import LogConfig
from odradek.storage.cleaner import (
    CHECKPOINT_FILE,
    CompactionConfig,
    LogCleaner,
    clean_log,
    clean_steps,
    examine,
)
from odradek.storage.checkpoints import parse_offset_checkpoint
from odradek.storage.disk import DiskLogStore
from odradek.storage.fs import FakeFileSystem
from odradek.storage.memory import MemoryLogStore

NOW = 10**12  # "now" for cleaning: far after every record timestamp below


class Env:
    """One log ``t-0`` in a memory store or a disk store on a fake filesystem."""

    def __init__(self, kind: str, fs=None):
        self.kind = kind
        self.fs = fs if fs is not None else (FakeFileSystem() if kind == "disk" else None)
        self.store = MemoryLogStore() if kind == "memory" else DiskLogStore("/data", self.fs)
        self.config = None

    def open(self, **cfg):
        cfg.setdefault("cleanup_policy", "compact")
        self.config = LogConfig(**cfg)
        return self.store.open_log("t", 0, self.config)

    def reopen(self, crash: str | None = None):
        if crash is None:
            self.store.close()
        else:
            self.fs.crash(crash)
        self.store = DiskLogStore("/data", self.fs)
        return self.store.open_log("t", 0, self.config)

    def files(self) -> list[str]:
        return self.fs.listdir("/data/t-0")


@pytest.fixture(params=["memory", "disk"])
def env(request):
    return Env(request.param)


@pytest.fixture
def disk():
    return Env("disk")


def cfg(**kw) -> CompactionConfig:
    kw.setdefault("min_cleanable_ratio", 0.0)
    kw.setdefault("segment_bytes", 600)
    return CompactionConfig(**kw)


def append(lg, records, ts=1000, **batch_kw) -> int:
    """Append one batch of (key, value) pairs, committed (the high watermark
    moves past it, as a leader alone in its ISR does); return its base offset."""
    b = bytearray(build_batch([(k, v, [], ts) for k, v in records], **batch_kw))
    info = lg.append(b, 0, 5000)
    lg.set_high_watermark(info.last_offset + 1)
    return info.base_offset


def fill(lg, n_keys=5, rounds=20, per_batch=1, ts=1000):
    """Updates to ``n_keys`` keys, ``rounds`` times; return [(offset, key, value)]."""
    out = []
    seq = [(b"k%d" % (i % n_keys), b"v%d" % i) for i in range(n_keys * rounds)]
    for i in range(0, len(seq), per_batch):
        chunk = seq[i : i + per_batch]
        base = append(lg, chunk, ts=ts + i)
        out += [(base + j, k, v) for j, (k, v) in enumerate(chunk)]
    return out


def batches(lg, start=None):
    start = lg.log_start_offset if start is None else start
    r = lg.read(start, 1 << 30, lg.log_end_offset)
    return [(h, bytes(c[p : p + h.size])) for c in r.chunks for p, h in iter_batches(c)]


def records(lg):
    out = []
    for h, b in batches(lg):
        out += [(r.offset, r.key, r.value) for r in decode_batch(b)[1]]
    return out


def expected_after(written, end):
    """What a clean up to ``end`` keeps: below ``end`` a record survives when no
    later record below ``end`` has its key; from ``end`` on everything stays."""
    last = {}
    for off, k, v in written:
        if off < end:
            last[k] = off
    return [(o, k, v) for o, k, v in written if o >= end or last[k] == o]


def latest_view(recs):
    view = {}
    for off, k, v in recs:
        view[k] = (off, v)
    return view


def active_base(lg):
    return lg.segment_base_offsets()[-1]


# -- what cleaning keeps ----------------------------------------------------------

def test_updates_shrink_to_latest_per_key(env):
    lg = env.open(segment_bytes=600)
    written = fill(lg, n_keys=5, rounds=40)
    size = lg.size_in_bytes()
    end = active_base(lg)
    res = clean_log(lg, cfg(), NOW)
    assert res.end_offset == end and res.swapped > 0
    assert records(lg) == expected_after(written, end)
    assert latest_view(records(lg)) == latest_view(written)
    assert lg.size_in_bytes() < size / 2
    assert lg.log_end_offset == len(written) and lg.log_start_offset == 0


def test_offsets_intact_and_reads_land_in_gaps(env):
    lg = env.open(segment_bytes=600)
    written = fill(lg, n_keys=3, rounds=30, per_batch=3)
    clean_log(lg, cfg(), NOW)
    kept = {o: (k, v) for o, k, v in records(lg)}
    originals = {o: (k, v) for o, k, v in written}
    assert all(originals[o] == kv for o, kv in kept.items())
    for off in range(lg.log_end_offset):  # any offset: batches from the one holding it
        r = lg.read(off, 300)
        hs = [h for c in r.chunks for _, h in iter_batches(c)]
        assert hs[0].base_offset <= off <= hs[0].last_offset or \
            (off not in kept and hs[0].base_offset > off)
        got = [x.offset for c in r.chunks for p, _ in iter_batches(c)
               for x in decode_batch(c, p)[1]]
        assert got and min(o for o in kept if o >= off) in got
    # Batches keep their base offsets and offset ranges.
    bases = {h.base_offset: h.last_offset_delta for h, _ in batches(lg)}
    assert all(b % 3 == 0 and d == 2 for b, d in bases.items())


def test_second_pass_merges_small_segments(env):
    lg = env.open(segment_bytes=600)
    written = fill(lg, n_keys=4, rounds=50)
    clean_log(lg, cfg(), NOW)
    n = len(lg.segment_base_offsets())
    res = clean_log(lg, cfg(), NOW, force=True)
    assert res.swapped and len(lg.segment_base_offsets()) < n
    assert latest_view(records(lg)) == latest_view(written)
    # Segments stay contiguous: each ends where the next one starts.
    segs = lg.segments_for_cleaning()
    for a, b in zip(segs, segs[1:]):
        assert a.next_offset == b.base


def test_active_segment_untouched(env):
    lg = env.open(segment_bytes=600)
    fill(lg, n_keys=2, rounds=40)
    append(lg, [(b"k0", b"a1"), (b"k0", b"a2")])  # duplicates inside the active segment
    active = lg.segments_for_cleaning()[-1]
    before = batches(lg, active.base)
    clean_log(lg, cfg(), NOW)
    assert lg.segments_for_cleaning()[-1] is active
    assert batches(lg, active.base) == before
    assert [v for _, k, v in records(lg) if k == b"k0"][-2:] == [b"a1", b"a2"]


def test_nothing_cleanable_with_one_segment(env):
    lg = env.open()
    fill(lg, n_keys=2, rounds=10)
    assert clean_log(lg, cfg(), NOW) is None
    ltc = examine(lg, None, cfg(), NOW)
    assert ltc.dirty_bytes == 0


def test_dirty_ratio_respected(env):
    lg = env.open(segment_bytes=600)
    fill(lg, n_keys=20, rounds=3)
    c = cfg(min_cleanable_ratio=0.5)
    res = clean_log(lg, c, NOW)
    assert res is not None
    point = res.end_offset
    clean_bytes = lg.size_in_bytes() - lg.segments_for_cleaning()[-1].size
    # A little more dirty data: below the ratio, not cleaned.
    while True:
        append(lg, [(b"x%d" % lg.log_end_offset, b"y")])
        ltc = examine(lg, point, c, NOW)
        if ltc.dirty_bytes:
            break
    assert ltc.clean_bytes == clean_bytes
    assert ltc.ratio == ltc.dirty_bytes / (ltc.clean_bytes + ltc.dirty_bytes) < 0.5
    assert clean_log(lg, c, NOW, point) is None
    # Enough to pass it.
    while examine(lg, point, c, NOW).ratio <= 0.5:
        append(lg, [(b"x%d" % lg.log_end_offset, b"y")])
    assert clean_log(lg, c, NOW, point) is not None


def test_clean_point_only_maps_the_dirty_section(env):
    """A key updated in the dirty section removes its older values in the clean one."""
    lg = env.open(segment_bytes=600)
    written = fill(lg, n_keys=3, rounds=20)
    point = clean_log(lg, cfg(), NOW).end_offset
    more = fill(lg, n_keys=1, rounds=30)  # only k0 changes
    res = clean_log(lg, cfg(), NOW, point)
    assert res.end_offset > point
    view = latest_view(records(lg))
    assert view[b"k0"] == latest_view(more)[b"k0"]
    assert view[b"k1"] == latest_view(written)[b"k1"]
    assert [o for o, k, _ in records(lg) if k == b"k0" and o < res.end_offset] == \
        [max(o for o, k, _ in written + more if k == b"k0" and o < res.end_offset)]


def test_min_compaction_lag(env):
    lg = env.open(segment_bytes=600)
    old = fill(lg, n_keys=2, rounds=20, ts=1000)
    recent_from = lg.log_end_offset
    fill(lg, n_keys=2, rounds=20, ts=NOW - 100)
    c = cfg(min_compaction_lag_ms=1000)
    ltc = examine(lg, None, c, NOW)
    assert recent_from <= ltc.first_uncleanable <= recent_from + 600
    res = clean_log(lg, c, NOW)
    assert res.end_offset == ltc.first_uncleanable < active_base(lg)
    # Records newer than the lag are all still there.
    kept = {o for o, _, _ in records(lg)}
    assert set(range(res.end_offset, lg.log_end_offset)) <= kept
    assert len([o for o in kept if o < recent_from]) < len(old)


def test_max_compaction_lag_forces_cleaning(env):
    lg = env.open(segment_bytes=600)
    fill(lg, n_keys=50, rounds=2, ts=1000)
    point = clean_log(lg, cfg(), NOW).end_offset
    fill(lg, n_keys=50, rounds=2, ts=2000)
    c = cfg(min_cleanable_ratio=0.99)
    assert clean_log(lg, c, NOW, point) is None
    c.max_compaction_lag_ms = NOW - 5000
    assert clean_log(lg, c, NOW, point) is not None


def test_map_budget_cleans_in_steps(env):
    lg = env.open(segment_bytes=600)
    written = fill(lg, n_keys=200, rounds=2)
    res = clean_log(lg, cfg(), NOW, map_budget=1)  # one segment's keys at a time
    assert res.end_offset == lg.segment_base_offsets()[1]
    assert records(lg) == expected_after(written, res.end_offset)
    point = res.end_offset
    while point < active_base(lg):
        point = clean_log(lg, cfg(), NOW, point, force=True, map_budget=1).end_offset
    assert latest_view(records(lg)) == latest_view(written)


# -- tombstones -------------------------------------------------------------------

def test_tombstones_removed_only_after_delete_retention(env):
    lg = env.open(segment_bytes=600)
    written = fill(lg, n_keys=4, rounds=10)
    tomb = append(lg, [(b"k1", None)], ts=5000)
    written.append((tomb, b"k1", None))
    written += fill(lg, n_keys=1, rounds=30, ts=6000)  # k0 only: rolls past the tombstone
    c = cfg(delete_retention_ms=1000)
    t0 = NOW
    res = clean_log(lg, c, t0)
    assert res.horizon == t0 + 1000
    recs = records(lg)
    assert [(o, v) for o, k, v in recs if k == b"k1"] == [(tomb, None)]
    # The batch holding it carries the delete horizon, record timestamps unchanged.
    [(h, b)] = [(h, b) for h, b in batches(lg) if h.base_offset <= tomb <= h.last_offset]
    assert h.attributes & DELETE_HORIZON_FLAG and h.base_timestamp == t0 + 1000
    assert decode_batch(b)[1][0].timestamp == 5000
    # Cleaning again before the horizon keeps it (and keeps the same horizon).
    res = clean_log(lg, c, t0 + 999, force=True)
    assert (tomb, b"k1", None) in records(lg) and res.horizon == t0 + 1000
    # At the horizon it goes, with no key k1 left at all.
    res = clean_log(lg, c, t0 + 1000, force=True)
    assert res.horizon is None
    assert [o for o, k, _ in records(lg) if k == b"k1"] == []
    view = latest_view(written)
    del view[b"k1"]
    assert latest_view(records(lg)) == view


def test_tombstone_horizon_survives_restart(disk):
    lg = disk.open(segment_bytes=600)
    fill(lg, n_keys=4, rounds=10)
    tomb = append(lg, [(b"k2", None)])
    fill(lg, n_keys=1, rounds=30)
    c = cfg(delete_retention_ms=1000)
    clean_log(lg, c, NOW)
    lg = disk.reopen()
    assert (tomb, b"k2", None) in records(lg)
    clean_log(lg, c, NOW + 500, force=True)
    assert (tomb, b"k2", None) in records(lg)
    lg = disk.reopen(crash="kill")
    clean_log(lg, c, NOW + 1000, force=True)
    assert all(k != b"k2" for _, k, _ in records(lg))


# -- batches kept whole, codecs, producer state ---------------------------------

@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_compression_codec_kept(env, codec):
    lg = env.open(segment_bytes=800)
    written = []
    for i in range(40):
        chunk = [(b"k%d" % (j % 3), b"value-%d-%d" % (i, j)) for j in range(4)]
        base = append(lg, chunk, compression=codec)
        written += [(base + j, k, v) for j, (k, v) in enumerate(chunk)]
    end = active_base(lg)
    clean_log(lg, cfg(segment_bytes=800), NOW)
    assert records(lg) == expected_after(written, end)
    assert {h.compression for h, _ in batches(lg) if h.records_count} == {codec}


def _txn(lg, pid, recs, seq=0, epoch=0) -> int:
    b = bytearray(build_batch([(k, v, [], 1000) for k, v in recs], transactional=True,
                              producer_id=pid, producer_epoch=epoch, base_sequence=seq))
    info = lg.append(b, 0, 5000)
    lg.set_high_watermark(info.last_offset + 1)
    return info.base_offset


def _marker(lg, pid, commit, epoch=0) -> int:
    info = lg.append(bytearray(build_control_batch(1 if commit else 0, pid, epoch, 0, 1000)), 0, 5000)
    lg.set_high_watermark(info.last_offset + 1)
    return info.base_offset


def _markers(lg):
    return [(h.base_offset, h.producer_id) for h, _ in batches(lg) if h.is_control]


def _table(lg):
    t = ProducerStateTable()
    t.rebuild(lg)
    return t


def test_transactions_compacted_as_kafka_does(env):
    """Aborted records go (and never hide an older value), committed ones
    compact like any other; each marker stays while its transaction's data
    may be in the log, then delete.retention.ms after the first cleaning
    that found its data gone."""
    lg = env.open(segment_bytes=600)
    append(lg, [(b"a", b"old-a"), (b"b", b"old-b")])
    c1 = _txn(lg, 7, [(b"a", b"committed-a"), (b"c", b"committed-c")])
    a1 = _txn(lg, 8, [(b"b", b"aborted-b"), (b"d", b"aborted-d")])
    commit = _marker(lg, 7, True)
    abort = _marker(lg, 8, False)
    fill(lg, n_keys=1, rounds=40)  # key k0 only: rolls segments past the transactions
    c = cfg(delete_retention_ms=1000)
    # Producer state kept nothing (as after the producers expired): only the
    # transactions decide what stays.
    res = clean_log(lg, c, NOW, producer_batches=set(), producer_markers={})
    recs = {(o, k, v) for o, k, v in records(lg)}
    assert (a1, b"b", b"aborted-b") not in recs and (a1 + 1, b"d", b"aborted-d") not in recs
    assert (0, b"a", b"old-a") not in recs  # superseded by the committed value
    assert {(1, b"b", b"old-b"), (c1, b"a", b"committed-a"), (c1 + 1, b"c", b"committed-c")} <= recs
    # Both markers stay: their transactions' data was still there in this pass.
    assert _markers(lg) == [(commit, 7), (abort, 8)]
    assert res.horizon is None
    # Next pass: the aborted data is gone, its marker gets a delete horizon;
    # the committed data is still there (the latest a and c): its marker stays.
    kw = dict(producer_batches=set(), producer_markers={})
    res = clean_log(lg, c, NOW + 10, force=True, **kw)
    assert _markers(lg) == [(commit, 7), (abort, 8)]
    assert res.horizon == NOW + 10 + 1000
    hs = {h.base_offset: h for h, _ in batches(lg) if h.is_control}
    assert hs[abort].attributes & DELETE_HORIZON_FLAG and hs[abort].base_timestamp == NOW + 1010
    assert not hs[commit].attributes & DELETE_HORIZON_FLAG
    assert [b for h, b in batches(lg) if h.is_control and
            decode_batch(b)[1][0].timestamp != 1000] == []  # record timestamps unchanged
    # Before the horizon it stays; at it, it goes.
    clean_log(lg, c, NOW + 1009, force=True, **kw)
    assert _markers(lg) == [(commit, 7), (abort, 8)]
    clean_log(lg, c, NOW + 1010, force=True, **kw)
    assert _markers(lg) == [(commit, 7)]
    # Newer values of a and c: the committed transaction's data goes, then its marker.
    append(lg, [(b"a", b"new-a"), (b"c", b"new-c")])
    fill(lg, n_keys=1, rounds=40)
    clean_log(lg, c, NOW + 2000, force=True, **kw)
    assert _markers(lg) == [(commit, 7)]
    res = clean_log(lg, c, NOW + 2000, force=True, **kw)
    assert res.horizon == NOW + 3000
    clean_log(lg, c, NOW + 3000, force=True, **kw)
    assert _markers(lg) == []
    # What is left rebuilds into a consistent state: nothing open, no aborts.
    t = _table(lg)
    assert t.txns.ongoing == {} and t.txns.last_stable_offset(lg.high_watermark) == lg.high_watermark
    assert latest_view(records(lg))[b"b"] == (1, b"old-b")
    assert latest_view(records(lg))[b"a"][1] == b"new-a"


def test_producer_state_survives_transaction_cleaning(env):
    """The batches a producer table caches stay (emptied), and so does the
    abort marker that fenced a producer (its epoch); rebuilt state is equal."""
    lg = env.open(segment_bytes=600)
    _txn(lg, 7, [(b"a", b"1")], seq=0)
    _marker(lg, 7, True)
    _txn(lg, 7, [(b"a", b"2")], seq=1)
    _marker(lg, 7, False)
    _txn(lg, 9, [(b"x", b"zombie")], seq=0, epoch=3)
    fence = _marker(lg, 9, False, epoch=4)  # a fencing abort: epoch bumped
    fill(lg, n_keys=1, rounds=40)
    before = _table(lg)
    c = cfg(delete_retention_ms=0)
    for t in range(4):  # defaults: what producer state needs, from a rebuilt table
        clean_log(lg, c, NOW + t, force=True)
    after = _table(lg)
    assert {pid: (e.epoch, e.batches) for pid, e in after.producers.items()} == \
        {pid: (e.epoch, e.batches) for pid, e in before.producers.items()}
    assert after.txns.ongoing == {}
    assert (fence, 9) in _markers(lg)  # kept whole: producer 9's epoch 4 lives in it
    recs = records(lg)
    assert all(v not in (b"2", b"zombie") for _, _, v in recs)  # aborted data gone
    assert [(k, v) for _, k, v in recs if k == b"a"] == [(b"a", b"1")]


def test_no_cleaning_at_or_past_the_last_stable_offset(env):
    lg = env.open(segment_bytes=600)
    fill(lg, n_keys=2, rounds=10)
    first = _txn(lg, 5, [(b"k0", b"open")])  # never ended
    fill(lg, n_keys=2, rounds=40)
    seg_of_first = max(b for b in lg.segment_base_offsets() if b <= first)
    before = [(h.base_offset, b) for h, b in batches(lg) if h.base_offset >= seg_of_first]
    res = clean_log(lg, cfg(), NOW)
    assert res.end_offset <= seg_of_first
    after = [(h.base_offset, b) for h, b in batches(lg) if h.base_offset >= seg_of_first]
    assert after == before  # the open transaction and all after it untouched
    assert (first, b"k0", b"open") in records(lg)
    # Once it commits, it compacts like any other record.
    _marker(lg, 5, True)
    fill(lg, n_keys=2, rounds=40)
    clean_log(lg, cfg(), NOW, force=True, producer_batches=set(), producer_markers={})
    assert (first, b"k0", b"open") not in records(lg)


def test_cleaned_transactions_survive_restart(disk):
    lg = disk.open(segment_bytes=600)
    _txn(lg, 8, [(b"b", b"aborted")])
    _marker(lg, 8, False)
    fill(lg, n_keys=1, rounds=40)
    c = cfg(delete_retention_ms=1000)
    clean_log(lg, c, NOW, producer_batches=set(), producer_markers={})
    clean_log(lg, c, NOW, force=True, producer_batches=set(), producer_markers={})
    lg = disk.reopen(crash="kill")
    assert len(_markers(lg)) == 1 and all(k != b"b" for _, k, _ in records(lg))
    clean_log(lg, c, NOW + 1000, force=True, producer_batches=set(), producer_markers={})
    assert _markers(lg) == []


def test_keyless_records_dropped(env):
    lg = env.open(segment_bytes=600)
    append(lg, [(None, b"no key"), (b"a", b"1")])
    fill(lg, n_keys=3, rounds=20)
    clean_log(lg, cfg(), NOW)
    assert all(k is not None for _, k, _ in records(lg))


def test_emptied_last_batch_kept_as_empty_batch(env):
    lg = env.open(segment_bytes=600)
    fill(lg, n_keys=1, rounds=30)  # every segment ends with a superseded k0
    segs = lg.segments_for_cleaning()
    ends = [b.base for b in segs[1:]]
    clean_log(lg, cfg(segment_bytes=100), NOW)  # no merging: one group per segment
    segs = lg.segments_for_cleaning()
    assert [s.base for s in segs[1:]] == ends
    for s, nxt in zip(segs[:-2], ends):  # (the last cleaned one ends with the latest k0)
        hs = [h for h, _ in lg.segment_batches(s)]
        assert hs[-1].records_count == 0 and hs[-1].last_offset == nxt - 1


def test_producer_state_kept_across_cleaning(env):
    lg = env.open(segment_bytes=600)
    for seq in range(40):
        b = bytearray(build_batch([(b"k", b"v%d" % seq, [], 1000)], producer_id=5,
                                  producer_epoch=2, base_sequence=seq))
        lg.append(b, 0, 5000)
    table = ProducerStateTable()
    table.rebuild(lg)
    before = list(table.producers[5].batches)
    cached = {b[2] for b in before}
    res = clean_log(lg, cfg(), NOW, producer_batches=cached)
    assert res.swapped
    table.rebuild(lg)
    assert table.producers[5].batches == before
    assert sum(1 for h, _ in batches(lg) if h.records_count == 0) < 40 - 5


# -- log changes while cleaning -----------------------------------------------------

def test_swap_refused_after_truncation(env):
    lg = env.open(segment_bytes=600)
    fill(lg, n_keys=3, rounds=30)
    ltc = examine(lg, None, cfg(), NOW)
    gen = clean_steps(ltc, cfg(), NOW)
    req = next(gen)
    req = gen.send(req())  # offset map built
    lg.truncate_to(lg.segment_base_offsets()[2] + 1)
    expected = records(lg)
    try:
        while True:
            req = gen.send(req())
    except StopIteration as s:
        result = s.value
    assert not result.complete and result.swapped == 0
    assert records(lg) == expected
    if env.kind == "disk":
        assert not [n for n in env.files() if n.endswith((".cleaned", ".swap"))]


def test_retention_during_cleaning(env):
    lg = env.open(segment_bytes=600, retention_bytes=2000, retention_ms=-1,
                  cleanup_policy="compact,delete")
    fill(lg, n_keys=3, rounds=40)
    ltc = examine(lg, None, cfg(), NOW)
    gen = clean_steps(ltc, cfg(), NOW)
    req = next(gen)
    req = gen.send(req())
    assert lg.apply_retention(NOW) > 0
    try:
        while True:
            req = gen.send(req())
    except StopIteration as s:
        result = s.value
    assert result.swapped > 0  # the groups still there were cleaned
    assert lg.log_start_offset == lg.segment_base_offsets()[0]
    records(lg)


# -- crash safety ------------------------------------------------------------------------

class Crash(Exception):
    """The process died here."""


class CrashingFS(FakeFileSystem):
    """Counts mutating operations once armed; the ``crash_at``-th one and every
    later one fail with Crash (a dead process does nothing more)."""

    MUTATING = {"open", "pwrite", "truncate", "fsync", "rename", "remove", "fsync_dir"}

    def __init__(self):
        super().__init__()
        self.crash_at = None
        self.ops = 0

    def _check(self, op, path):
        if self.crash_at is not None and op in self.MUTATING:
            self.ops += 1
            if self.ops >= self.crash_at:
                raise Crash(f"{op} {path}")
        super()._check(op, path)


def _prepared(fs):
    e = Env("disk", fs)
    lg = e.open(segment_bytes=600)
    written = fill(lg, n_keys=4, rounds=25)
    append(lg, [(b"k3", None)])
    written.append((lg.log_end_offset - 1, b"k3", None))
    written += fill(lg, n_keys=1, rounds=15)
    lg.flush()
    e.store.write_checkpoints()
    return e, lg, written


def _count_ops():
    fs = CrashingFS()
    e, lg, _ = _prepared(fs)
    fs.crash_at = 10**9
    clean_log(lg, cfg(), NOW)
    n = fs.ops
    fs.crash_at = None
    return n


N_OPS = _count_ops()


@pytest.mark.parametrize("mode", ["kill", "power"])
@pytest.mark.parametrize("step", range(1, N_OPS + 1))
def test_crash_at_each_step_loses_nothing(step, mode):
    fs = CrashingFS()
    e, lg, written = _prepared(fs)
    end = active_base(lg)
    before = records(lg)
    cleaned = expected_after(written, end)
    fs.crash_at = step
    with pytest.raises(Crash):
        clean_log(lg, cfg(), NOW)
    fs.crash_at = None
    lg = e.reopen(crash=mode)
    got = records(lg)
    # Every group is either swapped or not: the log is a mix of old and cleaned
    # segments, each record there is an original one, and the latest value of
    # every key is intact.
    assert set(cleaned) <= set(got) <= set(before)
    assert latest_view(got) == latest_view(written)
    assert lg.log_end_offset == len(written)
    assert not [n for n in e.files() if n.endswith((".cleaned", ".swap"))]
    segs = lg.segments_for_cleaning()
    for a, b in zip(segs, segs[1:]):
        assert a.next_offset == b.base
    # A later pass finishes the job.
    clean_log(lg, cfg(), NOW, force=True)
    assert records(lg) == cleaned
    lg = e.reopen(crash="power" if mode == "kill" else "kill")
    assert records(lg) == cleaned


@pytest.mark.parametrize("step", range(1, N_OPS + 1, 3))
def test_io_error_at_each_step_keeps_log_usable(step):
    fs = CrashingFS()
    e, lg, written = _prepared(fs)
    before = records(lg)
    fs.crash_at = step

    def fail_once(op, path):  # only the step-th operation fails, with an I/O error
        if fs.crash_at is not None and op in CrashingFS.MUTATING:
            fs.ops += 1
            if fs.ops == fs.crash_at:
                raise OSError(5, f"injected {op} failure")
        FakeFileSystem._check(fs, op, path)

    fs._check = fail_once
    try:
        clean_log(lg, cfg(), NOW)
    except OSError:
        pass
    fs.crash_at = None
    got = records(lg)  # still readable in process, and appendable
    assert set(got) <= set(before) and latest_view(got) == latest_view(written)
    append(lg, [(b"k0", b"after")])
    lg = e.reopen()
    got = records(lg)
    assert got[-1] == (len(written), b"k0", b"after")
    assert latest_view(got[:-1]) == latest_view(written)


# -- the broker's cleaner task ------------------------------------------------------

async def _broker(data_dir, **topic_configs):
    """A broker's topics and logs without its listener: topic "t", compacted,
    created at the first call and found again (with its configs) after."""
    from odradek.broker import BrokerCore
    from odradek.config import BrokerConfig

    b = BrokerCore(BrokerConfig(data_dir=data_dir, props={"log.cleaner.backoff.ms": "10"}))
    await b.load()
    configs = {"cleanup.policy": "compact", "internal.segment.bytes": "600",
               "min.cleanable.dirty.ratio": "0.01", **topic_configs}
    if "t" not in b.replicas.topics:
        await b.admin.create_topic("t", 1, 1, configs)
    return b


async def _close(b):
    b.store.close()
    await b.metadata.close()


def test_log_cleaner_task_cleans_and_checkpoints(tmp_path):
    data = str(tmp_path / "data")

    async def first():
        b = await _broker(data, **{"delete.retention.ms": "1000"})
        lg = b.replicas.topics["t"].partitions[0].log
        written = fill(lg, n_keys=3, rounds=30)
        tomb = append(lg, [(b"k1", None)])
        fill(lg, n_keys=1, rounds=20)
        cleaner = LogCleaner(b)
        assert await cleaner.clean_one()
        point = cleaner.clean_points[("t", 0)]
        assert point == active_base(lg)
        raw = b.store.read_metadata(CHECKPOINT_FILE)
        assert parse_offset_checkpoint(raw) == {("t", 0): point}
        assert not await cleaner.clean_one()  # nothing dirty any more, horizon not passed
        assert (tomb, b"k1", None) in records(lg)
        await _close(b)
        return written, tomb, point

    written, tomb, point = asyncio.run(first())
    assert os.path.exists(os.path.join(data, CHECKPOINT_FILE))

    async def second():  # after a restart: horizon found again from the batches
        b = await _broker(data)
        lg = b.replicas.topics["t"].partitions[0].log
        cleaner = LogCleaner(b)
        cleaner.clean_points = cleaner._parse(b.store.read_metadata(CHECKPOINT_FILE))
        assert cleaner.clean_points == {("t", 0): point}
        await asyncio.sleep(1.05)  # past delete.retention.ms
        assert await cleaner.clean_one()
        assert all(k != b"k1" for _, k, _ in records(lg))
        assert not await cleaner.clean_one()
        await _close(b)

    asyncio.run(second())


def test_log_cleaner_run_stops_cleanly(tmp_path):
    async def main():
        b = await _broker(str(tmp_path / "data"))
        lg = b.replicas.topics["t"].partitions[0].log
        written = fill(lg, n_keys=3, rounds=60)
        cleaner = LogCleaner(b)
        task = asyncio.get_running_loop().create_task(cleaner.run())
        for _ in range(200):
            if cleaner.passes:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaner.passes >= 1
        assert latest_view(records(lg)) == latest_view(written)
        assert not [n for n in os.listdir(lg.dir) if n.endswith((".cleaned", ".swap"))]
        await _close(b)

    asyncio.run(main())
