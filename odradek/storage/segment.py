"""One segment of a partition log: its ``.log`` file and the two indexes.

A segment ``<base>`` (20 digits) of a log directory holds ``<base>.log``
(batches byte for byte), ``<base>.index`` (big-endian int32 relative offset,
int32 position: one entry for the first batch that starts more than
index.interval.bytes after the previous entry, mapping that batch's last
offset to its position) and ``<base>.timeindex`` (int64 timestamp, int32
relative offset of the batch holding it: the segment's max timestamp so far,
appended at index points when it grew, and once more when the segment is
rolled or closed) and, once the segment holds an abort marker,
``<base>.txnindex`` (the aborted transactions whose abort marker is in the
segment, in marker order: Kafka's AbortedTxn entries of 34 bytes, int16
version 0, int64 producer id, first offset, last offset = the marker's, last
stable offset when it ended). Kafka's formats.

Invariants:

- Every index entry points at a batch boundary; an index is a pure function of
  its ``.log`` (rebuilding it gives the same bytes), so it is never trusted
  blindly: ``load_indexes`` checks it and the loader rebuilds it when it is
  missing or inconsistent.
- In memory, besides the indexes, a segment may know the batches after its
  last index entry (``tail_off``/``tail_pos``: every one, in order, so at most
  index.interval.bytes' worth); it does when it tracked them itself, not
  after ``load_indexes`` until ``recover`` rescans.
- A segment's ``.log`` is opened on demand and may be closed again for the
  store's open-file limit (:class:`OpenLogFiles`), by any thread, but only
  while no thread uses it: every read, write and truncation holds it for
  the call (``pread``, ``pwrite``, ``truncate``), and a thread that pinned
  the segment (a flush, the cleaner) holds it until it unpins, pins
  changing under its log's lock, which closing takes too. A file is never
  created again by reopening it.
- The index entries live in memory; the files are written from them by
  ``write_indexes`` (at a flush, which fsyncs them, and when a segment is
  rolled, recovered or truncated; a new log's first segment has no index
  files until then), each time through a handle opened for
  that write alone. A segment therefore keeps one file open, its ``.log``
  (and its ``.txnindex`` once it has one), however long it lives. Between
  writes the files may lag behind memory: only by entries of offsets above
  the recovery point, which recovery derives again from the ``.log``.
- A segment object is not thread-safe by itself: its log mutates it on the
  event loop; other threads only fsync its handles, write its indexes
  (``write_indexes``, serialised by a lock of its own) or read a pinned
  segment that no longer changes.
"""

from __future__ import annotations

import bisect
import logging
import os
import errno
import struct
import sys
import threading
from array import array
from collections import OrderedDict
from itertools import islice

from odradek.protocol.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    InvalidBatch,
    peek_size,
    read_header,
    validate,
)

from .base import LogConfig
from . import coldreads
from .coldreads import COLD_PASS, ColdRead
from .fs import FileSystem
from odradek.txn_state import AbortedTxn

log = logging.getLogger(__name__)

CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"

_IDX = struct.Struct(">ii")  # relative offset, position
_TIDX = struct.Struct(">qi")  # timestamp, relative offset
_I64 = struct.Struct(">q")  # a batch's base offset (at 0)
_I32 = struct.Struct(">i")  # its length (at 8), its last offset delta (at 23)
_TXN = struct.Struct(">hqqqq")  # AbortedTxn: version, producer id, first, last, last stable offset
TXN_ENTRY_SIZE = _TXN.size  # 34
MAX_RELATIVE_OFFSET = 0x7FFFFFFF
_FIRST_WINDOW = 4096  # header scans near an index entry: the first read
_SCAN_WINDOW = 16 * 1024  # and the next ones
_RECOVER_WINDOW = 1024 * 1024  # validating reads at startup


def _validate_stored(buf, pos: int, end: int):
    """``validate`` for batches read back from a log: compacted batches have
    offset gaps, and empty ones keep their offset range."""
    return validate(buf, pos, end, dense=False)


class OpenLogFiles:
    """The segments' open ``.log`` files in one store, held near ``limit``
    (from the process's open-file limit, see ``open_file_limit``), so a broker
    can hold many more segments than it can have files open. Files are opened
    on demand (a segment's ``pread``/``pwrite``/``truncate``); ``trim``,
    which any thread may call, closes those of idle segments beyond the
    limit, oldest first, passing over one used since it was last passed
    (a clock: using a file costs no lock here). Once over the limit, it
    closes an eighth of the limit more, so that a stream of reopens (many
    more partitions in use than files) trims once per limit/8 of them rather
    than at each one."""

    def __init__(self, limit: int):
        self.limit = limit
        self._open: OrderedDict = OrderedDict()  # Segment -> None, oldest first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, seg: "Segment") -> None:
        with self._lock:
            self._open[seg] = None

    def closed(self, seg: "Segment") -> None:
        with self._lock:
            self._open.pop(seg, None)

    def trim(self) -> int:
        """Close idle segments' files beyond the limit; return how many."""
        excess = len(self._open) - self.limit
        if excess <= 0:
            return 0
        excess += self.limit // 8
        candidates = []
        with self._lock:
            for seg in list(islice(self._open, 2 * excess + 64)):  # the oldest only, not a copy of all
                if seg.recent:
                    seg.recent = False
                    self._open.move_to_end(seg)
                else:
                    candidates.append(seg)
        closed = 0
        for seg in candidates:
            if closed >= excess:
                break
            if seg.close_if_idle():
                closed += 1
        return closed


def open_file_limit() -> int:
    """How many segment files a store may keep open: the soft open-file limit
    less a quarter (at least 256) for sockets, index writes and the rest."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 1024
    if soft == resource.RLIM_INFINITY or soft <= 0:
        soft = 1 << 20
    return max(32, soft - max(256, soft // 4))


class Segment:
    """One segment's files and in-memory index. Not thread-safe by itself: the
    owning log mutates it on the loop; flush only fsyncs its handles."""

    # A broker holds a segment per partition at least (100,000 and more):
    # slots keep each one small (no instance dict).
    __slots__ = ("fs", "files", "guard", "_file_lock", "uses", "recent", "retired", "base", "stem",
                 "log_path", "_suffix", "_index_path", "_time_path", "_txn_path", "_log", "size",
                 "written_from", "txn_h", "index_gen", "index_written", "_index_lock", "aborted", "txn_torn", "created_ms",
                 "pins", "deleted", "dirty", "idx_off", "idx_pos", "tidx", "last_index_pos",
                 "next_offset", "max_ts", "max_ts_offset", "first_ts", "tail_off", "tail_pos")

    def __init__(self, fs: FileSystem, directory: str, base: int, created_ms: int,
                 suffix: str = "", files: OpenLogFiles | None = None):
        self.fs = fs
        self.files = files  # the store's open files (None: the file stays open until closed)
        self.guard = None  # the owning log's lock, once a log owns it: pins change under it
        self._file_lock = threading.Lock()  # the .log handle and its users
        self.uses = 0  # calls using the .log handle now
        self.recent = True  # used since OpenLogFiles.trim last passed it
        self.retired = False  # close_handles ran: never opened again
        self.base = base
        self.stem = stem = os.path.join(directory, f"{base:020d}")
        self.log_path = stem + ".log" + suffix
        self._suffix = suffix
        self._index_path = self._time_path = self._txn_path = None  # set: renamed (a swap)
        self._log = fs.open(self.log_path)
        self.size = fs.fsize(self._log)
        self.written_from = self.size  # bytes from here on were written by this process (warm)
        if files is not None:
            files.opened(self)
        self.txn_h = None
        self.index_gen = 0  # bumped whenever index entries are dropped from memory
        self.index_written = None  # (index_gen, entries, time entries) the files hold
        self._index_lock = threading.Lock()
        self.aborted: list[AbortedTxn] = []  # the .txnindex entries, in marker order
        self.txn_torn = False  # the file ended inside an entry (or held a bad one)
        self.created_ms = created_ms
        self.pins = 0
        self.deleted = False
        self.dirty = False
        self.reset_indexes()

    # The index paths, derived from the stem until a swap renames the files
    # (not stored: three strings per segment add up over many partitions).
    @property
    def index_path(self) -> str:
        return self._index_path or self.stem + ".index" + self._suffix

    @index_path.setter
    def index_path(self, path: str) -> None:
        self._index_path = path

    @property
    def time_path(self) -> str:
        return self._time_path or self.stem + ".timeindex" + self._suffix

    @time_path.setter
    def time_path(self, path: str) -> None:
        self._time_path = path

    @property
    def txn_path(self) -> str:
        return self._txn_path or self.stem + ".txnindex" + self._suffix

    @txn_path.setter
    def txn_path(self, path: str) -> None:
        self._txn_path = path

    def reset_indexes(self) -> None:
        self.index_gen += 1
        self.idx_off = array("i")  # relative offsets of indexed batches' last records
        self.idx_pos = array("i")
        self.tidx = bytearray()  # raw .timeindex entries
        self.last_index_pos = 0
        self.next_offset = self.base
        self.max_ts = -1
        self.max_ts_offset = -1  # last offset of the batch that holds max_ts
        self.first_ts = None  # max timestamp of the first batch (segment.ms rolls)
        self._reset_tail()

    def _reset_tail(self) -> None:
        # The batches after the last index entry, known when they were tracked
        # (None: unknown, as after load_indexes). At most index.interval.bytes'
        # worth, they let find_batch skip the scan for the newest offsets.
        self.tail_off = array("i")  # relative last offsets
        self.tail_pos = array("i")

    # -- index files ----------------------------------------------------
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
            hdr = self.pread(HEADER_SIZE, poss[-1])
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
        self.index_gen += 1
        self.idx_off, self.idx_pos, self.tidx = offs, poss, bytearray(traw)
        self.index_written = (self.index_gen, n, m)
        self.last_index_pos = poss[-1] if n else 0
        self.tail_off = self.tail_pos = None
        if m:
            self.max_ts, rel = _TIDX.unpack_from(traw, (m - 1) * 12)
            self.max_ts_offset = self.base + rel
        return True

    def write_indexes(self, fsync: bool = False) -> None:
        """Bring both index files up to the entries in memory (appending what
        is new, or rewriting them after entries were dropped); with ``fsync``,
        make them durable. Any thread: the entries are read under the GIL
        (appends on the loop only ever add), writers take turns, and each
        write opens the files for itself."""
        with self._index_lock:
            while True:  # a snapshot no drop of entries (recover, on the loop) straddles
                gen = self.index_gen
                off, pos, tidx = self.idx_off[:], self.idx_pos[:], bytes(self.tidx)
                if gen == self.index_gen:
                    break
            n, m = min(len(off), len(pos)), len(tidx) // 12
            written = self.index_written
            if written is not None and written[0] == gen and written[1] <= n and written[2] <= m:
                n0, m0 = written[1], written[2]
            else:
                n0 = m0 = -1  # rewrite
            if (n0, m0) == (n, m) and not fsync:
                return
            a = array("i", bytes(8 * (n - max(n0, 0))))
            a[0::2] = off[max(n0, 0):n]
            a[1::2] = pos[max(n0, 0):n]
            if sys.byteorder == "little":
                a.byteswap()
            fs = self.fs
            for path, data, start, rewrite in ((self.index_path, a.tobytes(), 8 * max(n0, 0), n0 < 0),
                                               (self.time_path, tidx[12 * max(m0, 0):12 * m], 12 * max(m0, 0),
                                                m0 < 0)):
                if not (data or rewrite or fsync):
                    continue  # this file holds every entry already
                h = fs.open(path)
                try:
                    if data:
                        fs.pwrite(h, data, start)
                    if rewrite:
                        fs.truncate(h, start + len(data))
                    if fsync:
                        fs.fsync(h)
                finally:
                    fs.close(h)
            self.index_written = (gen, n, m)

    def indexes_written(self) -> bool:
        """Whether the index files hold every entry in memory."""
        return self.index_written == (self.index_gen, len(self.idx_off), len(self.tidx) // 12)

    def index_full(self, config: LogConfig) -> bool:
        return (len(self.idx_off) >= config.segment_index_bytes // 8
                or len(self.tidx) // 12 >= config.segment_index_bytes // 12)

    def track(self, pos: int, last_offset: int, max_ts: int, interval: int) -> None:
        """Account for the batch at ``pos`` (already written): Kafka's index rule."""
        if max_ts > self.max_ts:
            self.max_ts = max_ts
            self.max_ts_offset = last_offset
        rel = last_offset - self.base
        if pos and pos - self.last_index_pos > interval:
            self.idx_off.append(rel)
            self.idx_pos.append(pos)
            self.last_index_pos = pos
            self.maybe_time_entry()
            if self.tail_off is not None:
                self._reset_tail()
        else:
            if pos == 0:
                self.first_ts = max_ts
            if self.tail_off is not None:
                self.tail_off.append(rel)
                self.tail_pos.append(pos)
        self.next_offset = last_offset + 1

    def maybe_time_entry(self) -> None:
        """Append (max_ts, its offset) to the time index if the max grew."""
        last = _TIDX.unpack_from(self.tidx, len(self.tidx) - 12)[0] if self.tidx else -1
        if self.max_ts > last:
            self.tidx += _TIDX.pack(self.max_ts, self.max_ts_offset - self.base)

    # -- the aborted-transaction index (.txnindex) ------------------------
    def load_txn_index(self) -> None:
        """Read ``.txnindex`` (absent: no entries). Whole version-0 entries
        are kept up to the first partial or unknown one (``txn_torn``)."""
        fs = self.fs
        raw = fs.read_file(self.txn_path) if fs.exists(self.txn_path) else None
        out = []
        if raw:
            for pos in range(0, len(raw) - TXN_ENTRY_SIZE + 1, TXN_ENTRY_SIZE):
                version, pid, first, last, lso = _TXN.unpack_from(raw, pos)
                if version != 0 or last < first or not self.base <= last:
                    break
                out.append(AbortedTxn(pid, first, last, lso))
        self.aborted = out
        self.txn_torn = raw is not None and len(raw) != TXN_ENTRY_SIZE * len(out)

    def _txn_handle(self):
        if self.txn_h is None:
            self.txn_h = self.fs.open(self.txn_path)
        return self.txn_h

    def add_aborted(self, a: AbortedTxn) -> None:
        """Append an entry (its marker is the newest in this segment)."""
        h = self._txn_handle()
        self.fs.pwrite(h, _TXN.pack(0, *a), TXN_ENTRY_SIZE * len(self.aborted))
        self.aborted.append(AbortedTxn(*a))
        self.dirty = True

    def write_txn_index(self) -> None:
        """Rewrite ``.txnindex`` from memory (removed, or emptied if open, when
        there is no entry)."""
        if not self.aborted and self.txn_h is None:
            self.fs.remove_if_exists(self.txn_path)
            self.txn_torn = False
            return
        raw = b"".join(_TXN.pack(0, *a) for a in self.aborted)
        h = self._txn_handle()
        self.fs.pwrite(h, raw, 0)
        self.fs.truncate(h, len(raw))
        self.dirty = True
        self.txn_torn = False

    def trim_txn_index(self, end_offset: int) -> bool:
        """Forget entries whose marker is at or after ``end_offset`` (and a torn
        tail); True if the file was rewritten."""
        keep = [a for a in self.aborted if a.last_offset < end_offset]
        if len(keep) == len(self.aborted) and not self.txn_torn:
            return False
        self.aborted = keep
        self.write_txn_index()
        return True

    def insert_aborted(self, a: AbortedTxn) -> bool:
        """Add ``a`` unless an entry for its marker is there (restoring after
        recovery); keeps marker order. True if added."""
        if any(e.last_offset == a.last_offset for e in self.aborted):
            return False
        self.aborted.append(AbortedTxn(*a))
        self.aborted.sort(key=lambda e: e.last_offset)
        self.write_txn_index()
        return True

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

    def _walk(self, pos: int, end: int):
        """Yield (buffer, index in it, position, size) for the header of each
        whole batch from ``pos`` up to ``end`` (no CRC check), reading windows
        of headers; stop at anything malformed or partial."""
        window = _FIRST_WINDOW  # a lookup's batch is usually near: start small
        while end - pos >= HEADER_SIZE:
            buf = self._pread_headers(min(window, end - pos), pos)
            window = _SCAN_WINDOW
            n = len(buf)
            if n < HEADER_SIZE:
                return
            b = 0
            while n - b >= HEADER_SIZE:
                size = _I32.unpack_from(buf, b + 8)[0] + LOG_OVERHEAD
                if size < HEADER_SIZE or pos + b + size > end or buf[b + 16] != 2:
                    return
                yield buf, b, pos + b, size
                b += size
            pos += b

    def headers(self, pos: int, end: int | None = None):
        """Yield (position, header) of whole batches from ``pos`` up to ``end``
        (no CRC check); stop at anything malformed or partial."""
        for buf, b, p, _ in self._walk(pos, self.size if end is None else end):
            yield p, read_header(buf, b)

    def find_batch(self, offset: int):
        """(position, header) of the first batch whose last offset >= ``offset``, or None."""
        rel, tail = offset - self.base, self.tail_off
        if tail and (not self.idx_off or rel > self.idx_off[-1]):
            j = bisect.bisect_left(tail, rel)
            if j == len(tail):
                return None
            pos = self.tail_pos[j]
            hdr = self._pread_headers(HEADER_SIZE, pos)
            return (pos, read_header(hdr)) if len(hdr) == HEADER_SIZE else None
        for buf, b, p, _ in self._walk(self.lookup(offset), self.size):
            if _I64.unpack_from(buf, b)[0] + _I32.unpack_from(buf, b + 23)[0] >= offset:
                return p, read_header(buf, b)  # (base offset + last offset delta)
        return None

    def boundary(self, start: int, limit: int) -> int:
        """End of the last whole batch within [start, limit] (``start`` if none)."""
        tail = self.tail_pos
        if tail and limit >= tail[0]:
            j = bisect.bisect_right(tail, limit) - 1  # the last batch starting by limit
            end = tail[j + 1] if j + 1 < len(tail) else self.size
            return max(start, end if end <= limit else tail[j])
        i = bisect.bisect_right(self.idx_pos, limit) - 1
        p = self.idx_pos[i] if i >= 0 else 0
        end = p = max(p, start)
        for _, _, q, size in self._walk(p, limit):
            end = q + size
        return end

    def read(self, pos: int, size: int):
        """Record bytes at ``pos`` (bytes-like, or a list of such pieces); in
        a read pass that must not wait for the disk (``coldreads.off_loop``),
        bytes not in the page cache are only noted, for a thread to read in
        (``coldreads.ColdPass``)."""
        cold = COLD_PASS.get()
        if cold is None or self.warm(pos):
            return self.pread(size, pos)
        data = self.pread_nowait(size, pos)
        return cold.missed(self, pos, size) if data is None else data

    def warm(self, pos: int) -> bool:
        """Whether the bytes from ``pos`` were written lately by this process:
        after the segment was opened, within ``coldreads.WARM_TAIL`` of its
        end. The page cache holds those (short of memory pressure), so a read
        pass that must not wait for the disk reads them without asking: a
        consumer at the tail pays no page-cache check."""
        return pos >= self.written_from and pos >= self.size - coldreads.WARM_TAIL

    def _pread_headers(self, size: int, pos: int):
        """Batch headers for a lookup; in a read pass that must not wait for
        the disk, headers not in the page cache end the pass (``ColdRead``)."""
        cold = COLD_PASS.get()
        if cold is None or self.warm(pos):
            return self.pread(size, pos)
        data = self.pread_nowait(size, pos)
        if data is None:
            cold.missed(self, pos, size)
            raise ColdRead(self.log_path, pos)
        return data[0] if len(data) == 1 else b"".join(data)

    def read_in(self, pos: int, size: int, ahead: int) -> int:
        """Read ``[pos, pos + size)`` into the page cache, and ``ahead``
        more bytes (up to the segment's end) too; return the bytes read of
        the first. Blocking: a worker thread's (``coldreads.ColdPass.read_in``)."""
        h = self._acquire() if self.files is not None else self._open_handle()
        try:
            self.fs.read_ahead(h, pos, max(size, min(self.size, pos + size + ahead) - pos))
            return len(self.fs.pread(h, size, pos))
        finally:
            if self.files is not None:
                self._release()

    def batches(self):
        """Yield (header, bytes) for each whole batch, reading large windows
        (for a segment that no longer changes: the cleaner's worker thread)."""
        end = self.size
        pos = 0
        while end - pos >= HEADER_SIZE:
            buf = self.pread(min(_RECOVER_WINDOW, end - pos), pos)
            n, b = len(buf), 0
            while n - b >= HEADER_SIZE:
                size = peek_size(buf, b)
                if size < HEADER_SIZE or pos + b + size > end:
                    return
                if size > n - b:
                    if b == 0:  # one batch larger than the window
                        buf = self.pread(size, pos)
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

    # -- recovery -------------------------------------------------------
    def recover(self, from_offset: int, interval: int, on_batch=None, *, write: bool = True) -> int:
        """Re-derive state from the file: batches ending before ``from_offset`` are
        trusted (header scan from the last index entry below it); the rest are
        CRC-validated and re-indexed, and an invalid tail is truncated. Indexes
        must be loaded (or reset) before. ``write=False`` leaves the index files
        to the next flush (``indexes_written`` is then false). Returns the
        number of bytes validated."""
        rel = from_offset - self.base
        k = bisect.bisect_left(self.idx_off, rel)
        lo, hi = 0, len(self.tidx) // 12  # time entries are ordered by offset too
        while lo < hi:
            mid = (lo + hi) // 2
            if _TIDX.unpack_from(self.tidx, mid * 12)[1] < rel:
                lo = mid + 1
            else:
                hi = mid
        if k < len(self.idx_off) or lo * 12 < len(self.tidx):
            # entries go: the files are rewritten (else only what the scan adds is appended)
            self.index_gen += 1
        del self.idx_off[k:]
        del self.idx_pos[k:]
        del self.tidx[lo * 12:]
        self.last_index_pos = self.idx_pos[-1] if k else 0
        self._reset_tail()  # tracked again by the scan from last_index_pos below
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
        if write:
            self.write_indexes()
        return validated

    def _first_batch_ts(self):
        hdr = self.pread(HEADER_SIZE, 0)
        return read_header(hdr).max_timestamp if len(hdr) == HEADER_SIZE else None

    def _validate_from(self, pos: int, interval: int, on_batch) -> int:
        end = self.size
        start = pos
        expected = self.next_offset
        bad = False
        while end - pos >= HEADER_SIZE and not bad:
            buf = self.pread(min(_RECOVER_WINDOW, end - pos), pos)
            n, b = len(buf), 0
            while n - b >= LOG_OVERHEAD:
                size = peek_size(buf, b)
                if size < HEADER_SIZE or pos + b + size > end:
                    bad = True
                    break
                if size > n - b:
                    if b == 0:  # one batch larger than the window
                        buf, n = self.pread(size, pos), size
                        continue
                    break
                try:
                    h = _validate_stored(buf, b, b + size)
                except InvalidBatch as e:
                    log.warning("%s: invalid batch at position %d: %s", self.log_path, pos + b, e)
                    bad = True
                    break
                if h.base_offset < expected or h.last_offset - self.base > MAX_RELATIVE_OFFSET:
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
            self.truncate(pos)
            self.size = pos
            self.written_from = min(self.written_from, pos)
        return pos - start

    def truncate_at(self, pos: int, offset: int, interval: int) -> None:
        """Drop everything from ``pos`` (the start of the batch holding ``offset``)."""
        self.truncate(pos)
        self.size = pos
        self.written_from = min(self.written_from, pos)
        self.recover(offset, interval)

    # -- the .log file ---------------------------------------------------
    def _acquire(self):
        """The open ``.log`` handle, counted in use until ``_release``."""
        with self._file_lock:
            h = self._log
            if h is None:
                if self.retired:
                    raise OSError(errno.EBADF, "segment closed", self.log_path)
                h = self._log = self.fs.open(self.log_path, create=False)
                if self.files is not None:
                    self.files.opened(self)
            self.uses += 1
        self.recent = True
        return h

    def _release(self) -> None:
        with self._file_lock:
            self.uses -= 1
        files = self.files
        if files is not None and len(files) > files.limit:
            files.trim()

    def pread(self, size: int, pos: int) -> bytes:
        if self.files is None:  # never closed for a limit: no need to count users
            return self.fs.pread(self._open_handle(), size, pos)
        h = self._acquire()
        try:
            return self.fs.pread(h, size, pos)
        finally:
            self._release()

    def pread_nowait(self, size: int, pos: int) -> list | None:
        """``pread`` from the page cache only, in pieces, else None (``FileSystem.pread_nowait``)."""
        if self.files is None:
            return self.fs.pread_nowait(self._open_handle(), size, pos)
        h = self._acquire()
        try:
            return self.fs.pread_nowait(h, size, pos)
        finally:
            self._release()

    def pwrite(self, data, pos: int) -> None:
        if self.files is None:
            self.fs.pwrite(self._open_handle(), data, pos)
            return
        h = self._acquire()
        try:
            self.fs.pwrite(h, data, pos)
        finally:
            self._release()

    def truncate(self, size: int) -> None:
        if self.files is None:
            self.fs.truncate(self._open_handle(), size)
            return
        h = self._acquire()
        try:
            self.fs.truncate(h, size)
        finally:
            self._release()

    def _open_handle(self):
        h = self._log
        if h is None:
            raise OSError(errno.EBADF, "segment closed", self.log_path)
        return h

    @property
    def log(self):
        """The ``.log`` handle, for a thread that pinned the segment (its
        handle stays open until unpinned); otherwise use ``pread`` and the
        like."""
        h = self._acquire()
        self._release()
        return h

    def close_if_idle(self) -> bool:
        """Close the ``.log`` for the open-file limit if nothing uses it and
        no thread has the segment pinned (checked under its log's lock, taken
        without waiting: a busy segment is passed over). Any thread."""
        guard = self.guard
        if self.files is None or guard is None or not guard.acquire(blocking=False):
            return False
        try:
            if not self._file_lock.acquire(blocking=False):
                return False
            try:
                h = self._log
                if self.pins or self.uses or h is None:
                    return False
                self._log = None
            finally:
                self._file_lock.release()
        finally:
            guard.release()
        self.files.closed(self)
        try:
            self.fs.close(h)
        except OSError:
            pass
        return True

    # -- lifecycle ------------------------------------------------------
    def handles(self):
        """The files it keeps open (the indexes are opened per write)."""
        return (self.log, self.txn_h)

    def close_handles(self) -> None:
        """Close its files for good (the segment is deleted, or its log closed)."""
        with self._file_lock:
            self.retired = True
            handles, self._log, self.txn_h = (self._log, self.txn_h), None, None
        if self.files is not None:
            self.files.closed(self)
        for h in handles:
            if h is not None:
                try:
                    self.fs.close(h)
                except OSError:
                    pass

    def remove_files(self) -> None:
        for p in (self.log_path, self.index_path, self.time_path, self.txn_path):
            self.fs.remove_if_exists(p)

    def time_waited(self, ts: int, now_ms: int) -> int:
        """Kafka's roll clock: from the first batch's timestamp, else creation."""
        if self.first_ts is not None and self.first_ts >= 0:
            return ts - self.first_ts
        return now_ms - self.created_ms

    def largest_timestamp(self) -> int:
        return self.max_ts if self.max_ts >= 0 else self.created_ms

    def first_timestamp(self) -> int:
        """Max timestamp of the first batch (creation time if none): what
        max.compaction.lag.ms measures a dirty segment by."""
        if self.first_ts is None and self.size:
            self.first_ts = self._first_batch_ts()
        return self.first_ts if self.first_ts is not None and self.first_ts >= 0 else self.created_ms


class CleanedSegment:
    """A segment the cleaner writes (``<base>.log.cleaned`` and indexes) to
    replace others. Created on the event loop, so every file exists before a
    worker thread writes to it; ``append``/``finish`` may then run in a thread."""

    def __init__(self, fs: FileSystem, directory: str, base: int, created_ms: int,
                 interval: int):
        self.fs = fs
        self.seg = seg = Segment(fs, directory, base, created_ms, suffix=CLEANED_SUFFIX)
        if seg.size:  # a leftover of an abandoned clean
            seg.truncate(0)
            seg.size = 0
        fs.remove_if_exists(seg.txn_path)
        seg.write_indexes()  # the files exist before a worker thread fills them
        self.interval = interval

    @property
    def size(self) -> int:
        return self.seg.size

    def append(self, batch) -> None:
        """Write one whole batch (its offsets already final) at the end."""
        seg = self.seg
        h = read_header(batch)
        pos = seg.size
        seg.pwrite(batch, pos)
        seg.size = pos + len(batch)
        seg.track(pos, h.last_offset, h.max_timestamp, self.interval)

    def add_aborted(self, a: AbortedTxn) -> None:
        """An aborted transaction whose abort marker this segment keeps."""
        self.seg.add_aborted(a)

    def finish(self) -> None:
        """Write the indexes and fsync the files."""
        seg = self.seg
        seg.maybe_time_entry()
        seg.write_indexes(fsync=True)
        for h in seg.handles():
            if h is not None:
                self.fs.fsync(h)

    def abort(self) -> None:
        self.seg.close_handles()
        self.seg.remove_files()

