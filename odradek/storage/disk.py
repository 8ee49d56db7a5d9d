"""Partition logs on disk, laid out as Apache Kafka lays out a log directory.

``<data_dir>/<topic>-<partition>/`` holds segments named by their 20-digit
base offset: ``.log`` (batches byte for byte), ``.index`` (big-endian int32
relative offset, int32 position: one entry for the first batch that starts more
than index.interval.bytes after the previous entry, mapping that batch's last
offset to its position) and ``.timeindex`` (int64 timestamp, int32 relative
offset of the batch holding it: the segment's max timestamp so far, appended at
index points when it grew, and once more when the segment is rolled or closed),
plus ``leader-epoch-checkpoint`` and auxiliary files named ``*.snapshot``
(``write_aux``: odradek's ``producer-state.snapshot``, whose format
``odradek.producers`` defines; each replaced atomically -- temp file, fsync,
rename, directory fsync -- and all deleted by ``truncate_to``). The data dir
root holds Kafka's offset checkpoints and the broker's metadata files.

Invariants:

- Offsets only grow through a log; segment base offsets strictly increase and
  the last segment is the active one (the only one appended to).
- Every index entry points at a batch boundary; an index is a pure function of
  its ``.log`` (rebuilding it gives the same bytes), so it is never trusted
  blindly: startup checks it and rebuilds it when missing or inconsistent.
- Everything below the recovery point has been fsynced; at startup the bytes
  after it are re-validated batch by batch (CRC) and a bad tail is cut off,
  with every later segment. Above the recovery point offsets are dense, so a
  segment that does not continue its predecessor (emptied by a power loss)
  also ends the log.
- ``append``/``read``/retention/``truncate_to`` run on the event loop and
  never fsync (a truncation's epoch checkpoint is written by the next flush);
  ``flush``, ``close`` and ``write_aux`` fsync and may run in a worker thread.
  ``_lock`` guards only bookkeeping (never held across I/O of data), and a
  segment being flushed is pinned so its files stay open.
- Compaction (``odradek.storage.cleaner``) rewrites non-active segments: a
  cleaned segment keeps its batches' offsets (with gaps) and always ends with
  a batch holding the last offset of the segments it replaces, so segments
  stay contiguous. It is written as ``<base>.log.cleaned`` (and indexes),
  fsynced, renamed to ``.swap`` (the log file first: its rename commits the
  swap), then the replaced segments' files go and the ``.swap`` suffix is
  dropped. At startup a ``.log.swap`` is completed (every segment inside its
  offset range is removed, then it is renamed); ``.cleaned`` files are
  dropped, which rolls back a swap not yet committed.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
import sys
import threading
import time
from array import array

from odradek.protocol.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    InvalidBatch,
    peek_size,
    read_header,
    validate,
)

from .base import (
    AUX_SUFFIX,
    AppendInfo,
    LeaderEpochCache,
    LogConfig,
    LogStore,
    OffsetOutOfRange,
    ReadResult,
    SegmentedLog,
    check_aux_name,
    record_matching,
    stamp_batches,
)
from .fs import FileSystem, OSFileSystem

log = logging.getLogger(__name__)

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_CHECKPOINT = "log-start-offset-checkpoint"
HIGH_WATERMARK_CHECKPOINT = "replication-offset-checkpoint"
LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"
_TEMP_SUFFIXES = (".tmp", ".deleted", ".cleaned")  # .swap: completed by _complete_swaps
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"

_IDX = struct.Struct(">ii")  # relative offset, position
_TIDX = struct.Struct(">qi")  # timestamp, relative offset
_MAX_REL = 0x7FFFFFFF
_SCAN_WINDOW = 16 * 1024  # header scans near an index entry
_RECOVER_WINDOW = 1024 * 1024  # validating reads at startup


def _now_ms() -> int:
    return int(time.time() * 1000)


def _validate_stored(buf, pos: int, end: int):
    """``validate`` for batches read back from a log: compacted batches have
    offset gaps, and empty ones keep their offset range."""
    return validate(buf, pos, end, dense=False)


class _Segment:
    """One segment's files and in-memory index. Not thread-safe by itself: the
    owning log mutates it on the loop; flush only fsyncs its handles."""

    def __init__(self, fs: FileSystem, directory: str, base: int, created_ms: int,
                 suffix: str = ""):
        self.fs = fs
        self.base = base
        self.stem = stem = os.path.join(directory, f"{base:020d}")
        self.log_path = stem + ".log" + suffix
        self.index_path = stem + ".index" + suffix
        self.time_path = stem + ".timeindex" + suffix
        self.log = fs.open(self.log_path)
        self.size = fs.fsize(self.log)
        self.idx_h = None
        self.ts_h = None
        self.created_ms = created_ms
        self.pins = 0
        self.deleted = False
        self.dirty = False
        self.reset_indexes()

    def reset_indexes(self) -> None:
        self.idx_off = array("i")  # relative offsets of indexed batches' last records
        self.idx_pos = array("i")
        self.tidx = bytearray()  # raw .timeindex entries
        self.last_index_pos = 0
        self.next_offset = self.base
        self.max_ts = -1
        self.max_ts_offset = -1  # last offset of the batch that holds max_ts
        self.first_ts = None  # max timestamp of the first batch (segment.ms rolls)

    # -- index files ----------------------------------------------------
    def _index_handles(self):
        if self.idx_h is None:
            self.idx_h = self.fs.open(self.index_path)
            self.ts_h = self.fs.open(self.time_path)
        return self.idx_h, self.ts_h

    def load_indexes(self, upper: int | None) -> bool:
        """Read both index files; False if missing or inconsistent. ``upper`` bounds
        the segment's offsets (next segment's base) when known."""
        fs = self.fs
        if not (fs.exists(self.index_path) and fs.exists(self.time_path)):
            return False
        raw = fs.read_file(self.index_path)
        traw = fs.read_file(self.time_path)
        if raw is None or traw is None or len(raw) % 8 or len(traw) % 12:
            return False
        a = array("i")
        a.frombytes(raw)
        if sys.byteorder == "little":
            a.byteswap()
        offs, poss = a[0::2], a[1::2]
        n = len(offs)
        if n:
            if poss[0] <= 0 or poss[-1] >= self.size or offs[0] < 0 or poss[-1] < poss[0] \
                    or offs[-1] < offs[0]:
                return False
            if upper is not None and self.base + offs[-1] >= upper:
                return False
            hdr = fs.pread(self.log, HEADER_SIZE, poss[-1])
            if len(hdr) < HEADER_SIZE:
                return False
            h = read_header(hdr)
            if h.magic != 2 or not self.base <= h.base_offset <= self.base + offs[-1]:
                return False
        m = len(traw) // 12
        if m:
            ts0, rel0 = _TIDX.unpack_from(traw, 0)
            ts1, rel1 = _TIDX.unpack_from(traw, (m - 1) * 12)
            if ts1 < ts0 or rel0 < 0 or rel1 < rel0:
                return False
            if upper is not None and self.base + rel1 >= upper:
                return False
        self.idx_off, self.idx_pos, self.tidx = offs, poss, bytearray(traw)
        self.last_index_pos = poss[-1] if n else 0
        if m:
            self.max_ts, rel = _TIDX.unpack_from(traw, (m - 1) * 12)
            self.max_ts_offset = self.base + rel
        return True

    def write_indexes(self) -> None:
        """Rewrite both index files from memory."""
        idx_h, ts_h = self._index_handles()
        a = array("i", bytes(8 * len(self.idx_off)))
        a[0::2] = self.idx_off
        a[1::2] = self.idx_pos
        if sys.byteorder == "little":
            a.byteswap()
        raw = a.tobytes()
        self.fs.pwrite(idx_h, raw, 0)
        self.fs.truncate(idx_h, len(raw))
        self.fs.pwrite(ts_h, self.tidx, 0)
        self.fs.truncate(ts_h, len(self.tidx))

    def index_full(self, config: LogConfig) -> bool:
        return (len(self.idx_off) >= config.segment_index_bytes // 8
                or len(self.tidx) // 12 >= config.segment_index_bytes // 12)

    def track(self, pos: int, last_offset: int, max_ts: int, interval: int) -> None:
        """Account for the batch at ``pos`` (already written): Kafka's index rule."""
        if max_ts > self.max_ts:
            self.max_ts = max_ts
            self.max_ts_offset = last_offset
        if pos == 0:
            self.first_ts = max_ts
        elif pos - self.last_index_pos > interval:
            idx_h, ts_h = self._index_handles()
            rel = last_offset - self.base
            self.fs.pwrite(idx_h, _IDX.pack(rel, pos), 8 * len(self.idx_off))
            self.idx_off.append(rel)
            self.idx_pos.append(pos)
            self.last_index_pos = pos
            self.maybe_time_entry()
        self.next_offset = last_offset + 1

    def maybe_time_entry(self) -> None:
        """Append (max_ts, its offset) to the time index if the max grew."""
        last = _TIDX.unpack_from(self.tidx, len(self.tidx) - 12)[0] if self.tidx else -1
        if self.max_ts > last:
            _, ts_h = self._index_handles()
            entry = _TIDX.pack(self.max_ts, self.max_ts_offset - self.base)
            self.fs.pwrite(ts_h, entry, len(self.tidx))
            self.tidx += entry

    # -- lookups --------------------------------------------------------
    def lookup(self, offset: int) -> int:
        """Position of the last indexed batch at or before ``offset`` (0 if none)."""
        i = bisect.bisect_right(self.idx_off, offset - self.base) - 1
        return self.idx_pos[i] if i >= 0 else 0

    def time_lookup(self, ts: int) -> int:
        """Offset of the last time-index entry with timestamp <= ``ts`` (base if none)."""
        lo, hi = 0, len(self.tidx) // 12
        while lo < hi:
            mid = (lo + hi) // 2
            if _TIDX.unpack_from(self.tidx, mid * 12)[0] <= ts:
                lo = mid + 1
            else:
                hi = mid
        return self.base + _TIDX.unpack_from(self.tidx, (lo - 1) * 12)[1] if lo else self.base

    def headers(self, pos: int, end: int | None = None):
        """Yield (position, header) of whole batches from ``pos`` up to ``end``
        (no CRC check); stop at anything malformed or partial."""
        if end is None:
            end = self.size
        fs, fh = self.fs, self.log
        while end - pos >= HEADER_SIZE:
            buf = fs.pread(fh, min(_SCAN_WINDOW, end - pos), pos)
            n = len(buf)
            if n < HEADER_SIZE:
                return
            b = 0
            while n - b >= HEADER_SIZE:
                h = read_header(buf, b)
                size = h.batch_length + LOG_OVERHEAD
                if size < HEADER_SIZE or pos + b + size > end or h.magic != 2:
                    return
                yield pos + b, h
                b += size
            pos += b

    def find_batch(self, offset: int):
        """(position, header) of the first batch whose last offset >= ``offset``, or None."""
        for p, h in self.headers(self.lookup(offset)):
            if h.base_offset + h.last_offset_delta >= offset:
                return p, h
        return None

    def boundary(self, start: int, limit: int) -> int:
        """End of the last whole batch within [start, limit] (``start`` if none)."""
        i = bisect.bisect_right(self.idx_pos, limit) - 1
        p = self.idx_pos[i] if i >= 0 else 0
        end = p = max(p, start)
        for q, h in self.headers(p, limit):
            end = q + h.size
        return end

    def read(self, pos: int, size: int) -> bytes:
        return self.fs.pread(self.log, size, pos)

    # -- recovery -------------------------------------------------------
    def recover(self, from_offset: int, interval: int, on_batch=None) -> int:
        """Re-derive state from the file: batches ending before ``from_offset`` are
        trusted (header scan from the last index entry below it); the rest are
        CRC-validated and re-indexed, and an invalid tail is truncated. Indexes
        must be loaded (or reset) before. Returns the number of bytes validated."""
        rel = from_offset - self.base
        k = bisect.bisect_left(self.idx_off, rel)
        del self.idx_off[k:]
        del self.idx_pos[k:]
        lo, hi = 0, len(self.tidx) // 12  # time entries are ordered by offset too
        while lo < hi:
            mid = (lo + hi) // 2
            if _TIDX.unpack_from(self.tidx, mid * 12)[1] < rel:
                lo = mid + 1
            else:
                hi = mid
        del self.tidx[lo * 12:]
        self.last_index_pos = self.idx_pos[-1] if k else 0
        self.next_offset = self.base
        self.max_ts, self.max_ts_offset, self.first_ts = -1, -1, None
        if self.tidx:
            self.max_ts, r = _TIDX.unpack_from(self.tidx, len(self.tidx) - 12)
            self.max_ts_offset = self.base + r
        start = self.last_index_pos
        if start > 0:  # the scan below will not see the first batch
            self.first_ts = self._first_batch_ts()
        for p, h in self.headers(start):
            if h.last_offset >= from_offset:
                break
            self.track(p, h.last_offset, h.max_timestamp, interval)
            start = p + h.size
        validated = self._validate_from(start, interval, on_batch)
        self.maybe_time_entry()
        self.write_indexes()
        return validated

    def _first_batch_ts(self):
        hdr = self.fs.pread(self.log, HEADER_SIZE, 0)
        return read_header(hdr).max_timestamp if len(hdr) == HEADER_SIZE else None

    def _validate_from(self, pos: int, interval: int, on_batch) -> int:
        fs, fh, end = self.fs, self.log, self.size
        start = pos
        expected = self.next_offset
        bad = False
        while end - pos >= HEADER_SIZE and not bad:
            buf = fs.pread(fh, min(_RECOVER_WINDOW, end - pos), pos)
            n, b = len(buf), 0
            while n - b >= LOG_OVERHEAD:
                size = peek_size(buf, b)
                if size < HEADER_SIZE or pos + b + size > end:
                    bad = True
                    break
                if size > n - b:
                    if b == 0:  # one batch larger than the window
                        buf, n = fs.pread(fh, size, pos), size
                        continue
                    break
                try:
                    h = _validate_stored(buf, b, b + size)
                except InvalidBatch as e:
                    log.warning("%s: invalid batch at position %d: %s", self.log_path, pos + b, e)
                    bad = True
                    break
                if h.base_offset < expected or h.last_offset - self.base > _MAX_REL:
                    log.warning("%s: out-of-order offset %d at position %d",
                                self.log_path, h.base_offset, pos + b)
                    bad = True
                    break
                self.track(pos + b, h.last_offset, h.max_timestamp, interval)
                if on_batch is not None:
                    on_batch(h)
                expected = h.next_offset
                b += size
            if b == 0:
                break
            pos += b
        if pos < self.size:
            log.warning("%s: truncating %d bytes of invalid data at position %d",
                        self.log_path, self.size - pos, pos)
            self.fs.truncate(fh, pos)
            self.size = pos
        return pos - start

    def truncate_at(self, pos: int, offset: int, interval: int) -> None:
        """Drop everything from ``pos`` (the start of the batch holding ``offset``)."""
        self.fs.truncate(self.log, pos)
        self.size = pos
        self.recover(offset, interval)

    # -- lifecycle ------------------------------------------------------
    def handles(self):
        return (self.log, self.idx_h, self.ts_h)

    def close_handles(self) -> None:
        for h in self.handles():
            if h is not None:
                try:
                    self.fs.close(h)
                except OSError:
                    pass
        self.log = self.idx_h = self.ts_h = None

    def remove_files(self) -> None:
        for p in (self.log_path, self.index_path, self.time_path):
            self.fs.remove_if_exists(p)

    def largest_timestamp(self) -> int:
        return self.max_ts if self.max_ts >= 0 else self.created_ms

    def first_timestamp(self) -> int:
        """Max timestamp of the first batch (creation time if none): what
        max.compaction.lag.ms measures a dirty segment by."""
        if self.first_ts is None and self.size:
            self.first_ts = self._first_batch_ts()
        return self.first_ts if self.first_ts is not None and self.first_ts >= 0 else self.created_ms


class _CleanedSegment:
    """A segment the cleaner writes (``<base>.log.cleaned`` and indexes) to
    replace others. Created on the event loop, so every file exists before a
    worker thread writes to it; ``append``/``finish`` may then run in a thread."""

    def __init__(self, owner: "DiskPartitionLog", base: int, created_ms: int):
        self.owner = owner
        self.seg = seg = _Segment(owner.fs, owner.dir, base, created_ms, suffix=CLEANED_SUFFIX)
        if seg.size:  # a leftover of an abandoned clean
            owner.fs.truncate(seg.log, 0)
            seg.size = 0
        seg._index_handles()
        self.interval = owner.config.index_interval_bytes

    @property
    def size(self) -> int:
        return self.seg.size

    def append(self, batch) -> None:
        """Write one whole batch (its offsets already final) at the end."""
        seg = self.seg
        h = read_header(batch)
        pos = seg.size
        self.owner.fs.pwrite(seg.log, batch, pos)
        seg.size = pos + len(batch)
        seg.track(pos, h.last_offset, h.max_timestamp, self.interval)

    def finish(self) -> None:
        """Write the indexes and fsync all three files."""
        seg = self.seg
        seg.maybe_time_entry()
        seg.write_indexes()
        for h in seg.handles():
            self.owner.fs.fsync(h)

    def abort(self) -> None:
        self.seg.close_handles()
        self.seg.remove_files()


class DiskPartitionLog(SegmentedLog):
    """One partition's directory of segments. See the module docstring."""

    def __init__(self, directory: str, topic: str, partition: int, config: LogConfig,
                 fs: FileSystem | None = None, *, recovery_point: int = 0,
                 log_start_offset: int | None = None, high_watermark: int | None = None,
                 auto_high_watermark: bool = True):
        self.dir = directory
        self.topic = topic
        self.partition = partition
        self.config = config
        self.fs = fs or OSFileSystem()
        self.auto_high_watermark = auto_high_watermark
        self._lock = threading.Lock()  # bookkeeping shared with flush threads
        self._flush_lock = threading.Lock()  # one flush at a time
        self._epoch_file_lock = threading.Lock()
        self._aux_lock = threading.Lock()  # aux file writes and truncation's deletes
        self._segments: list[_Segment] = []
        self._bases: list[int] = []
        self._epochs = LeaderEpochCache()
        self._epochs_dirty = False
        self._dir_dirty = False
        self._gen = 0  # bumped by truncation; a flush racing one does not move the recovery point
        self._flush_mark = 0
        self._rolled_since_flush = False
        self._last_flush_ms = _now_ms()
        self._closed = False
        self.stats = {"recovered_segments": 0, "recovered_bytes": 0, "rebuilt_indexes": 0}
        self._load(recovery_point, log_start_offset, high_watermark)

    # -- startup --------------------------------------------------------
    def _load(self, recovery_point: int, log_start: int | None, hw: int | None) -> None:
        fs, d = self.fs, self.dir
        fs.mkdir(d)
        names = fs.listdir(d)
        for n in names:
            if n.endswith(_TEMP_SUFFIXES):
                fs.remove_if_exists(os.path.join(d, n))
        if any(n.endswith(SWAP_SUFFIX) for n in names):
            self._complete_swaps()
            names = fs.listdir(d)
        bases = sorted(int(n[:20]) for n in names
                       if n.endswith(".log") and len(n) == 24 and n[:20].isdigit())
        known = {f"{b:020d}" for b in bases}
        for n in names:  # index files whose log is gone
            stem, ext = os.path.splitext(n)
            if ext in (".index", ".timeindex") and stem not in known:
                fs.remove_if_exists(os.path.join(d, n))
        self._load_epochs()
        now = _now_ms()
        if not bases:
            start = max(log_start or 0, 0)
            seg = _Segment(fs, d, start, now)
            seg._index_handles()
            self._segments, self._bases = [seg], [start]
            self._dir_dirty = True
            recovery_point = start
        else:
            segs = [_Segment(fs, d, b, now) for b in bases]
            self._segments = segs
            recovery_point = max(recovery_point, bases[0])
            k = max(0, bisect.bisect_right(bases, recovery_point) - 1)
            interval = self.config.index_interval_bytes
            for i in range(k):  # wholly below the recovery point: check, don't rescan
                seg = segs[i]
                if seg.load_indexes(bases[i + 1]):
                    seg.next_offset = bases[i + 1]
                else:
                    seg.reset_indexes()
                    self.stats["rebuilt_indexes"] += 1
                    self.stats["recovered_bytes"] += seg.recover(seg.base, interval)
            i = k
            while i < len(segs):
                seg = segs[i]
                if i > k and seg.base != segs[i - 1].next_offset:
                    # Above the recovery point offsets are dense: a gap (a segment
                    # emptied by a power loss) or an overlap means lost data.
                    self._drop_segments(segs, i)
                    break
                upper = bases[i + 1] if i + 1 < len(segs) else None
                from_offset = recovery_point if i == k else seg.base
                if not seg.load_indexes(upper):
                    seg.reset_indexes()
                    if seg.size:
                        self.stats["rebuilt_indexes"] += 1
                    from_offset = seg.base
                original = seg.size
                done = seg.recover(from_offset, interval, self._epoch_from_batch)
                self.stats["recovered_bytes"] += done
                if done or from_offset == seg.base:
                    self.stats["recovered_segments"] += 1
                seg.dirty = True
                if seg.size < original:
                    self._drop_segments(segs, i + 1)
                    break
                i += 1
            self._bases = [s.base for s in segs]
            active = segs[-1]
            active._index_handles()
            if active.first_ts is None and active.size:
                active.first_ts = active._first_batch_ts()
        leo = self._segments[-1].next_offset
        self._leo = leo
        self._log_start = min(max(log_start or 0, self._bases[0]), leo)
        self._rp = min(max(recovery_point, self._bases[0]), leo)
        self._flush_mark = self._rp
        if self.auto_high_watermark or hw is None:
            self._hw = leo if self.auto_high_watermark else self._log_start
        else:
            self._hw = min(max(hw, self._log_start), leo)
        if self._epochs.truncate_from_end(leo) | self._epochs.truncate_from_start(self._log_start):
            self._epochs_dirty = True

    def _complete_swaps(self) -> None:
        """Startup: finish the segment swaps the cleaner committed (a ``.log.swap``
        exists) -- remove every segment inside the swap's offset range, then drop
        the suffix -- and the index renames that were still to come after."""
        fs, d = self.fs, self.dir
        names = fs.listdir(d)
        for n in sorted(names):
            if not (n.endswith(".log" + SWAP_SUFFIX) and len(n) == 29 and n[:20].isdigit()):
                continue
            base = int(n[:20])
            swap = _Segment(fs, d, base, _now_ms(), suffix=SWAP_SUFFIX)
            try:
                end = None
                for _, h in swap.headers(0):
                    end = h.next_offset
            finally:
                swap.close_handles()
            if end is None:  # nothing readable: keep the segments it was to replace
                log.warning("%s: empty swap file, discarded", swap.log_path)
                for p in (swap.log_path, swap.index_path, swap.time_path):
                    fs.remove_if_exists(p)
                continue
            for m in names:
                if m.endswith(".log") and len(m) == 24 and m[:20].isdigit() \
                        and base <= int(m[:20]) < end:
                    stem = os.path.join(d, m[:20])
                    fs.remove_if_exists(stem + ".index")
                    fs.remove_if_exists(stem + ".timeindex")
                    if int(m[:20]) != base:
                        fs.remove_if_exists(stem + ".log")
            for src, dst in ((swap.index_path, swap.stem + ".index"),
                             (swap.time_path, swap.stem + ".timeindex"),
                             (swap.log_path, swap.stem + ".log")):
                if fs.exists(src):
                    fs.rename(src, dst)
            log.info("%s: completed an interrupted segment swap at offset %d", d, base)
        for n in fs.listdir(d):  # index swaps whose log was renamed already
            if n.endswith((".index" + SWAP_SUFFIX, ".timeindex" + SWAP_SUFFIX)):
                src = os.path.join(d, n)
                if fs.exists(os.path.join(d, n[:20] + ".log")):
                    fs.rename(src, src[: -len(SWAP_SUFFIX)])
                else:
                    fs.remove_if_exists(src)
        fs.fsync_dir(d)

    @staticmethod
    def _drop_segments(segs: list, i: int) -> None:
        """Startup only: remove ``segs[i:]``, which follow lost or corrupt data."""
        for later in segs[i:]:
            log.warning("%s: removing segment after lost or corrupt data", later.log_path)
            later.close_handles()
            later.remove_files()
        del segs[i:]

    def _load_epochs(self) -> None:
        raw = self.fs.read_file(os.path.join(self.dir, LEADER_EPOCH_CHECKPOINT))
        if raw is None:
            return
        try:
            self._epochs = LeaderEpochCache.from_text(raw.decode())
        except (ValueError, UnicodeDecodeError) as e:
            log.warning("%s: ignoring bad %s: %s", self.dir, LEADER_EPOCH_CHECKPOINT, e)
            self._epochs_dirty = True

    def _epoch_from_batch(self, h) -> None:
        if h.partition_leader_epoch >= 0 and self._epochs.assign(h.partition_leader_epoch,
                                                                 h.base_offset):
            self._epochs_dirty = True

    def _write_epochs(self, text: str) -> None:
        with self._epoch_file_lock:
            self.fs.write_atomic(os.path.join(self.dir, LEADER_EPOCH_CHECKPOINT), text.encode())

    # -- offsets --------------------------------------------------------
    @property
    def log_start_offset(self) -> int:
        return self._log_start

    @property
    def log_end_offset(self) -> int:
        return self._leo

    @property
    def high_watermark(self) -> int:
        return self._hw

    @property
    def recovery_point(self) -> int:
        return self._rp

    def set_high_watermark(self, offset: int) -> None:
        self._hw = min(max(offset, self._log_start), self._leo)

    @property
    def flush_due(self) -> bool:
        """See PartitionLog.flush_due: true once per flush.messages appended
        records, and once after each roll (as Kafka flushes a rolled segment)."""
        if self._rolled_since_flush:
            self._rolled_since_flush = False
            self._flush_mark = self._leo
            return True
        if self._leo - max(self._rp, self._flush_mark) >= self.config.flush_messages:
            self._flush_mark = self._leo
            return True
        return False

    def flush_due_by_time(self, now_ms: int) -> bool:
        return self._leo > self._rp and now_ms - self._last_flush_ms >= self.config.flush_ms

    def size_in_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def segment_base_offsets(self) -> list[int]:
        return list(self._bases)

    # -- append ---------------------------------------------------------
    def append(self, records: bytearray, leader_epoch: int, now_ms: int,
               log_append_time: bool = False) -> AppendInfo:
        buf = records
        n = len(buf)
        base = self._leo
        spans, offset, max_ts = stamp_batches(buf, base, leader_epoch, now_ms, log_append_time)
        seg = self._segments[-1]
        if self._should_roll(seg, n, max_ts, offset - 1, now_ms):
            seg = self._roll(now_ms)
        at = seg.size
        try:
            self.fs.pwrite(seg.log, buf, at)
        except OSError:
            try:
                self.fs.truncate(seg.log, at)
            except OSError:
                pass
            raise
        seg.size = at + n
        interval = self.config.index_interval_bytes
        for p, _, last, ts in spans:
            seg.track(at + p, last, ts, interval)
        with self._lock:
            seg.dirty = True
            self._leo = offset
            if self.auto_high_watermark:
                self._hw = offset
            if leader_epoch >= 0 and self._epochs.assign(leader_epoch, base):
                self._epochs_dirty = True
        return AppendInfo(base, offset - 1, max_ts, now_ms if log_append_time else -1)

    def _should_roll(self, seg: _Segment, n: int, max_ts: int, last: int, now_ms: int) -> bool:
        if seg.size == 0:
            return False
        c = self.config
        return (seg.size + n > c.segment_bytes
                or self._time_waited(seg, max_ts, now_ms) > c.segment_ms
                or seg.index_full(c)
                or last - seg.base > _MAX_REL)


    def _roll(self, now_ms: int) -> _Segment:
        old = self._segments[-1]
        old.maybe_time_entry()
        seg = _Segment(self.fs, self.dir, self._leo, now_ms)
        if seg.size:  # a leftover file at this offset holds nothing we index
            self.fs.truncate(seg.log, 0)
            seg.size = 0
        seg.write_indexes()
        with self._lock:
            self._segments.append(seg)
            self._bases.append(seg.base)
            self._dir_dirty = True
        self._rolled_since_flush = True
        return seg

    # -- read -----------------------------------------------------------
    def _check_offset(self, offset: int) -> None:
        if offset < self._log_start or offset > self._leo:
            raise OffsetOutOfRange(
                f"offset {offset} not in [{self._log_start}, {self._leo}] of "
                f"{self.topic}-{self.partition}")

    def read(self, offset: int, max_bytes: int, max_offset: int | None = None,
             min_one: bool = True) -> ReadResult:
        self._check_offset(offset)
        limit = self._hw if max_offset is None else min(max_offset, self._leo)
        result = ReadResult()
        if offset >= limit:
            return result
        segs = self._segments
        i = max(0, bisect.bisect_right(self._bases, offset) - 1)
        remaining = max_bytes
        while i < len(segs):
            seg = segs[i]
            found = seg.find_batch(offset)
            if found is not None:
                start, h = found
                if h.last_offset >= limit:
                    break
                if limit >= seg.next_offset:
                    end = seg.size
                else:
                    stop = seg.find_batch(limit)
                    end = stop[0] if stop is not None else seg.size
                full = True
                if end - start > remaining:
                    full = False
                    end = seg.boundary(start, start + remaining) if remaining > 0 else start
                    if end == start:
                        if result.chunks or not min_one:
                            break
                        end = start + h.size
                data = seg.read(start, end - start)
                result.chunks.append(data)
                result.size += len(data)
                remaining -= len(data)
                if not full or limit < seg.next_offset:
                    break
            i += 1
            if i < len(segs):
                offset = segs[i].base
        return result

    def iter_headers(self, start_offset: int, chunk_bytes: int = 0):
        """PartitionLog.iter_headers reading only the headers: the segment's index
        finds a batch at or before ``start_offset``, then one ``HEADER_SIZE``
        pread per batch hops from header to header (``chunk_bytes`` is unused).
        Stops at the log end as of the call, or at anything malformed."""
        self._check_offset(start_offset)
        end = self._leo
        with self._lock:
            segs = list(self._segments)
            i = max(0, bisect.bisect_right(self._bases, start_offset) - 1)
            for s in segs:
                s.pins += 1
        pread = self.fs.pread
        try:
            pos = segs[i].lookup(start_offset) if i < len(segs) else 0
            for seg in segs[i:]:
                fh, size = seg.log, seg.size
                while size - pos >= HEADER_SIZE:
                    hdr = pread(fh, HEADER_SIZE, pos)
                    if len(hdr) < HEADER_SIZE:
                        break
                    h = read_header(hdr)
                    n = h.batch_length + LOG_OVERHEAD
                    if n < HEADER_SIZE or pos + n > size or h.magic != 2 or h.base_offset >= end:
                        return
                    if h.base_offset + h.last_offset_delta >= start_offset:
                        yield h
                    pos += n
                pos = 0
        finally:
            self.unpin_segments(segs)

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        start = self._log_start
        for seg in self._segments:
            if seg.max_ts < timestamp or seg.next_offset <= start:
                continue
            target = max(seg.time_lookup(timestamp), start)
            for p, h in seg.headers(seg.lookup(target)):
                if h.last_offset >= start and h.max_timestamp >= timestamp:
                    return self._record_at(seg, p, h, lambda ts: ts >= timestamp)
        return None

    def _record_at(self, seg: _Segment, pos: int, h, match) -> tuple[int, int]:
        return record_matching(seg.read(pos, h.size), h, self._log_start, match)

    def max_timestamp(self) -> tuple[int, int]:
        best = None
        for seg in self._segments:
            if seg.max_ts >= 0 and (best is None or seg.max_ts > best.max_ts):
                best = seg
        if best is None:
            return (-1, -1)
        found = best.find_batch(max(best.max_ts_offset, self._log_start))
        if found is None:
            return (max(best.max_ts_offset, self._log_start), best.max_ts)
        ts = best.max_ts
        return self._record_at(best, found[0], found[1], lambda t: t == ts)

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        return self._epochs.end_offset_for(epoch, self._leo)

    def leader_epochs(self) -> list[tuple[int, int]]:
        return list(self._epochs.entries)

    # -- deletion -------------------------------------------------------
    def _delete_segments(self, count: int) -> None:
        """Delete the ``count`` oldest segments (never the active one)."""
        count = min(count, len(self._segments) - 1)
        if count <= 0:
            return
        with self._lock:
            doomed = self._segments[:count]
            del self._segments[:count]
            del self._bases[:count]
            for seg in doomed:
                seg.deleted = True
                if seg.pins == 0:
                    seg.close_handles()
            self._log_start = max(self._log_start, self._bases[0])
            self._rp = max(self._rp, self._bases[0])
            if self._epochs.truncate_from_start(self._log_start):
                self._epochs_dirty = True
        for seg in doomed:
            seg.remove_files()

    def delete_records_before(self, offset: int) -> int:
        if offset == -1:
            offset = self._hw
        if offset < 0 or offset > self._hw:
            raise OffsetOutOfRange(f"offset {offset} above the high watermark {self._hw}")
        if offset > self._log_start:
            with self._lock:
                self._log_start = offset
                if self._epochs.truncate_from_start(offset):
                    self._epochs_dirty = True
        k = 0
        while k < len(self._bases) - 1 and self._bases[k + 1] <= self._log_start:
            k += 1
        self._delete_segments(k)
        return self._log_start

    def truncate_to(self, offset: int) -> None:
        if offset >= self._leo:
            return
        if offset < 0:
            raise ValueError(f"cannot truncate to {offset}")
        interval = self.config.index_interval_bytes
        with self._lock:
            self._gen += 1
        # Segments starting after ``offset`` go; if all do, start afresh at ``offset``.
        k = bisect.bisect_right(self._bases, offset)
        doomed = self._segments[k:]
        with self._lock:
            for s in doomed:
                s.deleted = True
                if s.pins == 0:
                    s.close_handles()
            del self._segments[k:]
            del self._bases[k:]
        for s in doomed:
            s.remove_files()
        if k == 0:
            seg = _Segment(self.fs, self.dir, offset, _now_ms())
            seg.write_indexes()
            with self._lock:
                self._segments, self._bases = [seg], [offset]
                self._log_start = offset
        else:
            seg = self._segments[-1]
            found = seg.find_batch(offset)
            if found is not None:
                seg.truncate_at(found[0], found[1].base_offset, interval)
            seg._index_handles()
        seg.dirty = True
        with self._lock:
            self._leo = self._segments[-1].next_offset
            self._hw = min(self._hw, self._leo)
            self._rp = min(self._rp, self._leo)
            self._flush_mark = min(self._flush_mark, self._leo)
            self._log_start = min(self._log_start, self._leo)
            if self._epochs.truncate_from_end(self._leo):
                self._epochs_dirty = True  # written by the next flush, off the loop
            self._dir_dirty = True
        self._drop_aux()

    # -- auxiliary files --------------------------------------------------
    def read_aux(self, name: str) -> bytes | None:
        return self.fs.read_file(os.path.join(self.dir, check_aux_name(name)))

    def write_aux(self, name: str, data: bytes) -> None:
        """Atomically and durably replace ``<dir>/<name>`` (blocking; any thread).
        Ignored once the log is closed (it may be being deleted)."""
        path = os.path.join(self.dir, check_aux_name(name))
        with self._aux_lock:
            if not self._closed:
                self.fs.write_atomic(path, bytes(data))

    def _drop_aux(self) -> None:
        """Delete every auxiliary file: the log they describe was truncated."""
        with self._aux_lock:
            for n in self.fs.listdir(self.dir):
                if n.endswith(AUX_SUFFIX):
                    self.fs.remove_if_exists(os.path.join(self.dir, n))

    # -- durability -----------------------------------------------------
    def flush(self) -> None:
        """fsync every segment written since the last flush, the directory if
        segments were created, and the epoch checkpoint if it changed; then move
        the recovery point to the log end offset seen at the start."""
        with self._flush_lock:
            with self._lock:
                if self._closed:
                    return
                end, gen = self._leo, self._gen
                segs = [s for s in self._segments if s.dirty]
                work = []
                for s in segs:
                    s.dirty = False
                    s.pins += 1
                    work.append(s.handles())
                dir_dirty, self._dir_dirty = self._dir_dirty, False
                epochs = self._epochs.to_text() if self._epochs_dirty else None
                self._epochs_dirty = False
            ok = False
            try:
                for handles in work:
                    for h in handles:
                        if h is not None:
                            self.fs.fsync(h)
                if dir_dirty and not self._closed:  # (closed: maybe being deleted)
                    self.fs.fsync_dir(self.dir)
                if epochs is not None and not self._closed:
                    self._write_epochs(epochs)
                ok = True
            finally:
                with self._lock:
                    for s in segs:
                        s.pins -= 1
                        if s.deleted and s.pins == 0:
                            s.close_handles()
                        elif not ok:
                            s.dirty = True
                    if not ok:
                        self._dir_dirty |= dir_dirty
                        self._epochs_dirty |= epochs is not None
                    else:
                        if gen == self._gen:
                            self._rp = max(self._rp, min(end, self._leo))
                        self._last_flush_ms = _now_ms()

    def close(self) -> None:
        """Write the active segment's final time-index entry, flush, close files."""
        if self._closed:
            return
        self._segments[-1].maybe_time_entry()
        self.flush()
        with self._aux_lock, self._lock:  # no aux write runs past this point
            self._closed = True
            for s in self._segments:
                if s.pins == 0:
                    s.close_handles()
                else:
                    s.deleted = True  # closed by the flush holding it

    def abandon(self) -> None:
        """Close files without flushing (the log is about to be deleted)."""
        with self._aux_lock, self._lock:  # no aux write runs past this point
            self._closed = True
            for s in self._segments:
                s.deleted = True
                if s.pins == 0:
                    s.close_handles()

    # -- compaction (odradek.storage.cleaner) -----------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def segments_for_cleaning(self) -> list:
        """The segments, oldest first; the last one is the active segment."""
        return list(self._segments)

    def pin_segments(self, segs) -> None:
        """Keep ``segs``' files open while a worker thread reads them."""
        with self._lock:
            for s in segs:
                s.pins += 1

    def unpin_segments(self, segs) -> None:
        with self._lock:
            for s in segs:
                s.pins -= 1
                if s.deleted and s.pins == 0:
                    s.close_handles()

    def segment_batches(self, seg):
        """Yield (header, bytes) for each whole batch of ``seg``, a pinned
        non-active segment (safe in a worker thread: such segments never change)."""
        fs, fh, end = self.fs, seg.log, seg.size
        pos = 0
        while end - pos >= HEADER_SIZE:
            buf = fs.pread(fh, min(_RECOVER_WINDOW, end - pos), pos)
            n, b = len(buf), 0
            while n - b >= HEADER_SIZE:
                size = peek_size(buf, b)
                if size < HEADER_SIZE or pos + b + size > end:
                    return
                if size > n - b:
                    if b == 0:  # one batch larger than the window
                        buf = fs.pread(fh, size, pos)
                        n = len(buf)
                        if n < size:
                            return
                        continue
                    break
                yield read_header(buf, b), buf[b : b + size]
                b += size
            if b == 0:
                return
            pos += b

    def cleaned_segment(self, base: int, created_ms: int) -> _CleanedSegment:
        """A new segment file set to fill with cleaned batches (call on the loop)."""
        return _CleanedSegment(self, base, created_ms)

    def commit_swap(self, old: list, cleaned: _CleanedSegment, guard=None) -> bool:
        """Put ``cleaned`` (finished, same base offset) in place of ``old``
        (consecutive non-active segments). On the event loop, so appends and
        reads see either the old segments or the new one, never a mix.

        Returns False, discarding ``cleaned``, when the log changed meanwhile:
        ``old`` is no longer there as it was, or ``guard`` (the segment after the
        cleaned range) is gone, i.e. the log was truncated into that range.
        Otherwise the swap is committed (``.log.swap`` exists); the caller then
        runs ``sync_dir`` (blocking: off the loop) and ``finish_swap``."""
        new, fs = cleaned.seg, self.fs
        with self._lock:
            segs = self._segments
            i = next((k for k, s in enumerate(segs) if s is old[0]), None) if old else None
            ok = (not self._closed and i is not None and new.base == old[0].base
                  and i + len(old) < len(segs)
                  and all(segs[i + k] is s and not s.deleted for k, s in enumerate(old))
                  and (guard is None or any(s is guard for s in segs)))
        if not ok:
            cleaned.abort()
            return False
        try:
            fs.rename(new.log_path, new.stem + ".log" + SWAP_SUFFIX)  # the commit
        except OSError:
            cleaned.abort()
            raise
        new.log_path = new.stem + ".log" + SWAP_SUFFIX
        with self._lock:
            self._segments[i : i + len(old)] = [new]
            self._bases[i : i + len(old)] = [new.base]
            for s in old:
                s.deleted = True
                if s.pins == 0:
                    s.close_handles()
            self._dir_dirty = True
        for attr, ext in (("index_path", ".index"), ("time_path", ".timeindex")):
            fs.rename(getattr(new, attr), new.stem + ext + SWAP_SUFFIX)
            setattr(new, attr, new.stem + ext + SWAP_SUFFIX)
        return True

    def sync_dir(self) -> None:
        """fsync the log directory (blocking)."""
        if not self._closed:
            self.fs.fsync_dir(self.dir)

    def finish_swap(self, old: list, cleaned: _CleanedSegment) -> None:
        """After ``commit_swap`` and a ``sync_dir``: remove the replaced files and
        drop the ``.swap`` suffix (then ``sync_dir`` again). On the event loop."""
        new, fs = cleaned.seg, self.fs
        if self._closed:  # deleted (files gone) or shut down (startup completes it)
            return
        for s in old:
            if s.base != new.base or new.deleted:  # else replaced by the renames below
                s.remove_files()
        if new.deleted:  # retention or truncation took the new segment meanwhile
            return
        for attr, ext in (("index_path", ".index"), ("time_path", ".timeindex"),
                          ("log_path", ".log")):
            fs.rename(getattr(new, attr), new.stem + ext)
            setattr(new, attr, new.stem + ext)

    def replace_segments(self, old: list, cleaned: _CleanedSegment, guard=None) -> bool:
        """``commit_swap``, ``sync_dir``, ``finish_swap``, ``sync_dir`` in one go."""
        if not self.commit_swap(old, cleaned, guard):
            return False
        self.sync_dir()
        self.finish_swap(old, cleaned)
        self.sync_dir()
        return True


# -- the store ----------------------------------------------------------------

def format_offset_checkpoint(entries: dict) -> bytes:
    """Kafka's offset checkpoint text: version 0, count, ``topic partition offset`` lines."""
    lines = ["0", str(len(entries))]
    lines += [f"{t} {p} {o}" for (t, p), o in sorted(entries.items())]
    return ("\n".join(lines) + "\n").encode()


def parse_offset_checkpoint(raw: bytes) -> dict:
    """Inverse of format_offset_checkpoint; raises ValueError when malformed."""
    lines = raw.decode().split("\n")
    if len(lines) < 2 or lines[0].strip() != "0":
        raise ValueError("unsupported checkpoint version")
    count = int(lines[1])
    out = {}
    for line in lines[2 : 2 + count]:
        t, p, o = line.split()
        out[(t, int(p))] = int(o)
    if len(out) != count:
        raise ValueError("checkpoint is truncated")
    return out


class DiskLogStore(LogStore):
    """Partition logs under ``data_dir``, plus Kafka's offset checkpoints there.

    ``auto_high_watermark``: single-broker mode, where each log's high watermark
    follows its end offset (set False once replication moves it)."""

    CHECKPOINTS = (RECOVERY_POINT_CHECKPOINT, LOG_START_CHECKPOINT, HIGH_WATERMARK_CHECKPOINT)

    def __init__(self, data_dir, fs: FileSystem | None = None, *, auto_high_watermark: bool = True):
        self.data_dir = str(data_dir)
        self.fs = fs or OSFileSystem()
        self.auto_high_watermark = auto_high_watermark
        self.fs.mkdir(self.data_dir)
        for n in self.fs.listdir(self.data_dir):
            if n.endswith(".tmp"):
                self.fs.remove_if_exists(os.path.join(self.data_dir, n))
        self._checkpoints = {name: self._read_checkpoint(name) for name in self.CHECKPOINTS}
        self._logs: dict[tuple[str, int], DiskPartitionLog] = {}
        self._checkpoint_lock = threading.Lock()

    def _read_checkpoint(self, name: str) -> dict:
        raw = self.fs.read_file(os.path.join(self.data_dir, name))
        if raw is None:
            return {}
        try:
            return parse_offset_checkpoint(raw)
        except (ValueError, UnicodeDecodeError) as e:
            log.warning("ignoring bad checkpoint %s: %s", name, e)
            return {}

    def _dir(self, topic: str, partition: int) -> str:
        return os.path.join(self.data_dir, f"{topic}-{partition}")

    def open_log(self, topic: str, partition: int, config: LogConfig) -> DiskPartitionLog:
        key = (topic, partition)
        lg = self._logs.get(key)
        if lg is not None and not lg._closed:
            lg.config = config
            return lg
        d = self._dir(topic, partition)
        if lg is not None:  # closed earlier: its own offsets are the freshest
            rp, start, hw = lg.recovery_point, lg.log_start_offset, lg.high_watermark
        elif self.fs.isdir(d):
            rp, start, hw = (self._checkpoints[n].get(key) for n in self.CHECKPOINTS)
        else:  # a new log: checkpoint entries, if any, are stale
            rp, start, hw = 0, None, None
        lg = DiskPartitionLog(d, topic, partition, config, self.fs,
                              recovery_point=rp or 0, log_start_offset=start, high_watermark=hw,
                              auto_high_watermark=self.auto_high_watermark)
        self._logs[key] = lg
        return lg

    def delete_log(self, topic: str, partition: int) -> None:
        key = (topic, partition)
        lg = self._logs.pop(key, None)
        if lg is not None:
            lg.abandon()
        with self._checkpoint_lock:  # a concurrent write_checkpoints must not revive it
            for cp in self._checkpoints.values():
                cp.pop(key, None)
        d = self._dir(topic, partition)
        if self.fs.isdir(d):
            for n in self.fs.listdir(d):
                self.fs.remove_if_exists(os.path.join(d, n))
            self.fs.rmdir(d)

    def existing_logs(self) -> list[tuple[str, int]]:
        out = []
        for n in self.fs.listdir(self.data_dir):
            topic, sep, part = n.rpartition("-")
            if sep and topic and part.isdigit() and self.fs.isdir(os.path.join(self.data_dir, n)):
                out.append((topic, int(part)))
        return sorted(out)

    def write_checkpoints(self) -> None:
        """Durably write the three offset checkpoints (blocking: run off the loop)."""
        with self._checkpoint_lock:
            values = [dict(cp) for cp in (self._checkpoints[n] for n in self.CHECKPOINTS)]
            for key, lg in list(self._logs.items()):
                values[0][key] = lg.recovery_point
                values[1][key] = lg.log_start_offset
                values[2][key] = lg.high_watermark
            for name, entries in zip(self.CHECKPOINTS, values):
                self.fs.write_atomic(os.path.join(self.data_dir, name),
                                     format_offset_checkpoint(entries))
                self._checkpoints[name] = entries

    def flush(self) -> None:
        for lg in list(self._logs.values()):
            lg.flush()

    def read_metadata(self, name: str) -> bytes | None:
        return self.fs.read_file(self._meta_path(name))

    def write_metadata(self, name: str, data: bytes) -> None:
        self.fs.write_atomic(self._meta_path(name), bytes(data))

    def _meta_path(self, name: str) -> str:
        if not name or "/" in name or name in (".", "..") or name in self.CHECKPOINTS:
            raise ValueError(f"bad metadata file name {name!r}")
        return os.path.join(self.data_dir, name)

    def close(self) -> None:
        """Close every log (flushing it) and write the checkpoints: a clean shutdown."""
        for lg in list(self._logs.values()):
            lg.close()
        self.write_checkpoints()
