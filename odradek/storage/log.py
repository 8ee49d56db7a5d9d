"""The partition log: a directory of segments, laid out as Apache Kafka lays out a log.

``<data_dir>/<topic>-<partition>/`` holds segments named by their 20-digit
base offset (``segment.py``: the ``.log`` and its ``.index`` and
``.timeindex``), plus ``leader-epoch-checkpoint`` (``checkpoints.py``) and
auxiliary files named ``*.snapshot`` (``write_aux``: odradek's
``producer-state.snapshot``, whose format ``odradek.producers`` defines; each
replaced atomically -- temp file, fsync, rename, directory fsync -- and all
deleted by ``truncate_to``). Opening a log loads and recovers it
(``recovery.py``). The same code serves disk and memory mode: only the
``FileSystem`` underneath differs.

Invariants:

- Offsets only grow through a log; segment base offsets strictly increase and
  the last segment is the active one (the only one appended to).
- Everything below the recovery point has been fsynced.
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
  dropped. Loading completes a committed swap and rolls back an uncommitted one.
"""

from __future__ import annotations

import bisect
import os
import threading

from odradek.protocol.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    InvalidBatch,
    read_header,
    set_base_offset,
    set_leader_epoch,
    set_log_append_time,
)

from .base import (
    AUX_SUFFIX,
    AppendInfo,
    LogConfig,
    OffsetOutOfRange,
    PartitionLog,
    ReadResult,
    check_aux_name,
)
from .checkpoints import write_epoch_checkpoint
from .fs import FileSystem, OSFileSystem
from .recovery import load_log
from .segment import MAX_RELATIVE_OFFSET, SWAP_SUFFIX, CleanedSegment, OpenLogFiles, Segment
from odradek.clock import now_ms


class SegmentedLog(PartitionLog):
    """One partition's directory of segments. See the module docstring."""

    # (new segment's base offset, anchor of the batch before it) after a roll,
    # until pop_roll; a class default, so that a log that never rolled keeps
    # one attribute fewer (memory per partition: a __dict__ resize)
    _roll_mark = None

    def __init__(self, directory: str, topic: str, partition: int, config: LogConfig,
                 fs: FileSystem | None = None, *, recovery_point: int = 0,
                 log_start_offset: int | None = None, high_watermark: int | None = None,
                 auto_high_watermark: bool = True, files: OpenLogFiles | None = None):
        self.dir = directory
        self.files = files  # the store's open .log files, held to its limit (None: no limit)
        self.topic = topic
        self.partition = partition
        self.config = config
        self.fs = fs or OSFileSystem()
        self.auto_high_watermark = auto_high_watermark
        self._lock = threading.Lock()  # bookkeeping shared with flush threads
        self._flush_lock = threading.Lock()  # one flush at a time
        self._epoch_file_lock = threading.Lock()
        self._aux_lock = threading.Lock()  # aux file writes and truncation's deletes
        loaded = load_log(self.fs, directory, config, recovery_point, log_start_offset)
        self.stats = loaded.stats
        self._segments: list[Segment] = loaded.segments
        self._bases: list[int] = [s.base for s in loaded.segments]
        self._epochs = loaded.epochs
        self._epochs_dirty = loaded.epochs_dirty
        self._dir_dirty = loaded.dir_dirty
        self._gen = 0  # bumped by truncation; a flush racing one does not move the recovery point
        self._leo = leo = loaded.log_end_offset
        self._log_start = loaded.log_start
        self._rp = self._flush_mark = loaded.recovery_point
        # .txnindex entries from here on were dropped by recovery and come back
        # from the producer-state replay (restore_aborted)
        self.txn_restore_from = loaded.txn_rebuild_from
        self._n_aborted = sum(len(s.aborted) for s in loaded.segments)
        if auto_high_watermark or high_watermark is None:
            self._hw = leo if auto_high_watermark else self._log_start
        else:
            self._hw = min(max(high_watermark, self._log_start), leo)
        self._rolled_since_flush = False
        # (base offset, last offset, CRC, leader epoch) of the last batch
        # appended, as its header holds them: a producer snapshot's anchor,
        # known without reading the file (None: not since loading or truncating)
        self._last_anchor = None
        self._last_flush_ms = now_ms()
        self._closed = False
        for seg in self._segments:
            self._adopt(seg)
        self.release_files()

    def _adopt(self, seg: Segment) -> Segment:
        """Make ``seg`` one of this log's: its file may be closed for the store's
        limit, under this log's lock."""
        seg.guard = self._lock
        if self.files is not None and seg.files is None:
            seg.files = self.files
            if seg._log is not None:
                self.files.opened(seg)
        return seg

    def release_files(self) -> None:
        """Close the segments' files (opened again on demand): what loading or
        creating the log opened, before the loop uses it (any thread)."""
        if self.files is None:
            return
        for seg in self._segments:
            seg.close_if_idle()

    def _trim_files(self) -> None:
        files = self.files
        if files is not None and len(files) > files.limit:
            files.trim()

    def _write_epochs(self, text: str) -> None:
        with self._epoch_file_lock:
            write_epoch_checkpoint(self.fs, self.dir, text)

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

    @property
    def last_batch_anchor(self) -> tuple[int, int, int, int] | None:
        """(base offset, last offset, CRC, partition leader epoch) of the batch
        that ends the log, when this log appended it since it was loaded or
        last truncated (else None: read its header)."""
        a = self._last_anchor
        return a if a is not None and a[1] == self._leo - 1 else None

    def flush_due_by_time(self, now_ms: int) -> bool:
        return self._leo > self._rp and now_ms - self._last_flush_ms >= self.config.flush_ms

    def size_in_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def segment_base_offsets(self) -> list[int]:
        return list(self._bases)

    # -- append ---------------------------------------------------------
    def append(self, records: bytearray, leader_epoch: int, now_ms: int,
               log_append_time: bool = False) -> AppendInfo:
        base = self._leo
        spans, offset, max_ts = stamp_batches(records, base, leader_epoch, now_ms, log_append_time)
        self._write(records, spans, offset, max_ts, now_ms, ((leader_epoch, base),))
        return AppendInfo(base, offset - 1, max_ts, now_ms if log_append_time else -1)

    def append_replicated(self, records: bytearray, now_ms: int) -> AppendInfo:
        base = self._leo
        spans, offset, max_ts, epochs = read_spans(records, base)
        self._write(records, spans, offset, max_ts, now_ms, epochs)
        return AppendInfo(base, offset - 1, max_ts, -1)

    def _write(self, buf, spans, offset: int, max_ts: int, now_ms: int, epochs) -> None:
        """Write the batches of ``buf`` (offsets ``self._leo``..``offset``-1,
        described by ``spans``) at the end; ``epochs`` are the (leader epoch,
        start offset) pairs they begin."""
        n = len(buf)
        seg = self._segments[-1]
        if self._should_roll(seg, n, max_ts, offset - 1, now_ms):
            seg = self._roll(now_ms)
        at = seg.size
        try:
            seg.pwrite(buf, at)
        except OSError:
            try:
                seg.truncate(at)
            except OSError:
                pass
            raise
        seg.size = at + n
        interval = self.config.index_interval_bytes
        for p, _, last, ts in spans:
            seg.track(at + p, last, ts, interval)
        h = read_header(buf, spans[-1][0])
        with self._lock:
            seg.dirty = True
            self._last_anchor = (h.base_offset, h.last_offset, h.crc, h.partition_leader_epoch)
            self._leo = offset
            if self.auto_high_watermark:
                self._hw = offset
            for epoch, start in epochs:
                if epoch >= 0 and self._epochs.assign(epoch, start):
                    self._epochs_dirty = True
        self._trim_files()

    def assign_epoch(self, leader_epoch: int) -> None:
        with self._lock:
            if self._epochs.assign(leader_epoch, self._leo):
                self._epochs_dirty = True

    @property
    def latest_epoch(self) -> int:
        return self._epochs.latest_epoch

    def _should_roll(self, seg: Segment, n: int, max_ts: int, last: int, now_ms: int) -> bool:
        if seg.size == 0:
            return False
        c = self.config
        return (seg.size + n > c.segment_bytes
                or seg.time_waited(max_ts, now_ms) > c.segment_ms
                or seg.index_full(c)
                or last - seg.base > MAX_RELATIVE_OFFSET)


    def _roll(self, now_ms: int) -> Segment:
        old = self._segments[-1]
        old.maybe_time_entry()
        seg = self._adopt(Segment(self.fs, self.dir, self._leo, now_ms, files=self.files))
        if seg.size:  # a leftover file at this offset holds nothing we index
            seg.truncate(0)
            seg.size = 0
        seg.write_indexes()
        with self._lock:
            self._segments.append(seg)
            self._bases.append(seg.base)
            self._dir_dirty = True
        self._rolled_since_flush = True
        self._roll_mark = (seg.base, self.last_batch_anchor)
        return seg

    def pop_roll(self) -> tuple[int, tuple[int, int, int, int] | None] | None:
        """See PartitionLog.pop_roll."""
        mark, self._roll_mark = self._roll_mark, None
        return mark

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
                    if remaining - h.size < HEADER_SIZE:  # no room for a second batch
                        end = start + h.size if h.size <= remaining else start
                    else:
                        end = seg.boundary(start, start + remaining)
                    if end == start:
                        if result.chunks or not min_one:
                            break
                        end = start + h.size
                data = seg.read(start, end - start)
                if type(data) is list:  # pieces (a read that must not wait: coldreads)
                    n = sum(map(len, data))
                    result.chunks += data
                else:
                    n = len(data)
                    result.chunks.append(data)
                result.size += n
                remaining -= n
                if not full or limit < seg.next_offset:
                    break
            i += 1
            if i < len(segs):
                offset = segs[i].base
        self._trim_files()
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
            for s in segs[i:]:
                s.log  # open now: a pinned segment deleted meanwhile keeps its file
        try:
            pos = segs[i].lookup(start_offset) if i < len(segs) else 0
            for seg in segs[i:]:
                size = seg.size
                while size - pos >= HEADER_SIZE:
                    hdr = seg.pread(HEADER_SIZE, pos)
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

    def _record_at(self, seg: Segment, pos: int, h, match) -> tuple[int, int]:
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

    # -- the aborted-transaction index (.txnindex per segment) ------------
    def append_aborted(self, a) -> None:
        """An abort marker was just appended: index its transaction (an
        AbortedTxn) in the active segment's ``.txnindex`` (no fsync: the
        segment's next flush)."""
        seg = self._segments[-1]
        seg.add_aborted(a)
        self._n_aborted += 1

    def restore_aborted(self, aborted) -> int:
        """After loading or truncation: put back the entries recovery dropped
        (those whose marker is at or after ``txn_restore_from``) from the
        producer-state replay's aborted transactions; returns how many."""
        start, self.txn_restore_from = self.txn_restore_from, None
        if start is None:
            return 0
        n = 0
        for a in aborted:
            if a.last_offset < start or not self._log_start <= a.last_offset < self._leo:
                continue
            i = bisect.bisect_right(self._bases, a.last_offset) - 1
            if i >= 0 and self._segments[i].insert_aborted(a):
                n += 1
        self._n_aborted += n
        return n

    def aborted_between(self, start: int, end: int) -> list:
        """The aborted transactions overlapping ``[start, end)`` (``last_offset
        >= start and first_offset < end``), by first offset: from the segment
        holding ``start`` on, until an entry's last stable offset reaches
        ``end`` (no transaction ending later began below ``end``), as Kafka
        collects them."""
        if not self._n_aborted:
            return []
        out = []
        segs = self._segments
        i = max(0, bisect.bisect_right(self._bases, start) - 1)
        for seg in segs[i:]:
            done = False
            for a in seg.aborted:
                if a.last_offset >= start and a.first_offset < end:
                    out.append(a)
                if a.last_stable_offset >= end:
                    done = True
            if done:
                break
        out.sort(key=lambda a: a.first_offset)
        return out

    # -- deletion -------------------------------------------------------
    def apply_retention(self, now_ms: int) -> int:
        active = self._segments[-1]
        if active.size and active.time_waited(now_ms, now_ms) > self.config.segment_ms:
            self._roll(now_ms)
        descr = [(s.base, s.size, s.largest_timestamp()) for s in self._segments]
        k = count_expired_segments(descr, self._log_start, self._hw, self.config, now_ms)
        self._delete_segments(k)
        return k

    def _delete_segments(self, count: int) -> None:
        """Delete the ``count`` oldest segments (never the active one)."""
        count = min(count, len(self._segments) - 1)
        if count <= 0:
            return
        with self._lock:
            doomed = self._segments[:count]
            del self._segments[:count]
            del self._bases[:count]
            self._n_aborted -= sum(len(s.aborted) for s in doomed)
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
            # Nothing to drop; but an epoch this broker began as leader without
            # writing in it (it starts at the log end) is not the leader's.
            with self._lock:
                if self._epochs.truncate_from_end(self._leo):
                    self._epochs_dirty = True
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
            seg = self._adopt(Segment(self.fs, self.dir, offset, now_ms(), files=self.files))
            seg.write_indexes()
            with self._lock:
                self._segments, self._bases = [seg], [offset]
                self._log_start = offset
        else:
            seg = self._segments[-1]
            found = seg.find_batch(offset)
            if found is not None:
                seg.truncate_at(found[0], found[1].base_offset, interval)
            seg.trim_txn_index(seg.next_offset)
        seg.dirty = True
        with self._lock:
            self._last_anchor = self._roll_mark = None
            self._leo = self._segments[-1].next_offset
            self._hw = min(self._hw, self._leo)
            self._rp = min(self._rp, self._leo)
            self._flush_mark = min(self._flush_mark, self._leo)
            self._log_start = min(self._log_start, self._leo)
            if self._epochs.truncate_from_end(self._leo):
                self._epochs_dirty = True  # written by the next flush, off the loop
            self._dir_dirty = True
            self._n_aborted = sum(len(s.aborted) for s in self._segments)
            self.txn_restore_from = None
        self._drop_aux()

    def reset_to(self, offset: int) -> None:
        if offset < 0:
            raise ValueError(f"cannot start a log at {offset}")
        with self._lock:
            self._gen += 1
            doomed = self._segments
            for s in doomed:
                s.deleted = True
                if s.pins == 0:
                    s.close_handles()
        for s in doomed:
            s.remove_files()
        seg = self._adopt(Segment(self.fs, self.dir, offset, now_ms(), files=self.files))
        seg.write_indexes()
        seg.dirty = True
        with self._lock:
            self._segments, self._bases = [seg], [offset]
            self._leo = self._hw = self._rp = self._flush_mark = self._log_start = offset
            self._last_anchor = self._roll_mark = None
            self._n_aborted = 0
            self.txn_restore_from = None
            self._epochs.entries.clear()
            self._epochs_dirty = True
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
                segs = [s for s in self._segments if s.dirty or not s.indexes_written()]
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
                for s, handles in zip(segs, work):
                    for h in handles:
                        if h is not None:
                            self.fs.fsync(h)
                    if not (s.deleted or self._closed):  # (deleted: no files to write)
                        s.write_indexes(fsync=True)
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
                        self._last_flush_ms = now_ms()

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
                if not s.deleted:
                    s.log  # open now: a pinned segment deleted meanwhile keeps its file

    def unpin_segments(self, segs) -> None:
        with self._lock:
            for s in segs:
                s.pins -= 1
                if s.deleted and s.pins == 0:
                    s.close_handles()

    def segment_batches(self, seg):
        """Yield (header, bytes) for each whole batch of ``seg``, a pinned
        non-active segment (safe in a worker thread: such segments never change)."""
        return seg.batches()

    def cleaned_segment(self, base: int, created_ms: int) -> CleanedSegment:
        """A new segment file set to fill with cleaned batches (call on the loop)."""
        return CleanedSegment(self.fs, self.dir, base, created_ms,
                              self.config.index_interval_bytes)

    def commit_swap(self, old: list, cleaned: CleanedSegment, guard=None) -> bool:
        """PartitionLog.commit_swap: renaming the cleaned ``.log`` to ``.log.swap``
        commits (recovery completes the swap from there)."""
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
        new.guard = self._lock  # (its file stays open: it is not one of the store's limited files)
        with self._lock:
            self._segments[i : i + len(old)] = [new]
            self._bases[i : i + len(old)] = [new.base]
            for s in old:
                s.deleted = True
                if s.pins == 0:
                    s.close_handles()
            self._dir_dirty = True
            self._n_aborted += len(new.aborted) - sum(len(s.aborted) for s in old)
        for attr, ext in (("index_path", ".index"), ("time_path", ".timeindex"),
                          ("txn_path", ".txnindex")):
            if attr == "txn_path" and not fs.exists(new.txn_path):
                new.txn_path = new.stem + ext + SWAP_SUFFIX
                continue
            fs.rename(getattr(new, attr), new.stem + ext + SWAP_SUFFIX)
            setattr(new, attr, new.stem + ext + SWAP_SUFFIX)
        return True

    def sync_dir(self) -> None:
        """fsync the log directory."""
        if not self._closed:
            self.fs.fsync_dir(self.dir)

    def finish_swap(self, old: list, cleaned: CleanedSegment) -> None:
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
        if not fs.exists(new.txn_path):  # none: the replaced segment's must not stay
            fs.remove_if_exists(new.stem + ".txnindex")
        for attr, ext in (("index_path", ".index"), ("time_path", ".timeindex"),
                          ("txn_path", ".txnindex"), ("log_path", ".log")):
            if attr == "txn_path" and not fs.exists(new.txn_path):
                new.txn_path = new.stem + ext
                continue
            fs.rename(getattr(new, attr), new.stem + ext)
            setattr(new, attr, new.stem + ext)


def count_expired_segments(segments, log_start_offset: int, high_watermark: int,
                           config: LogConfig, now_ms: int) -> int:
    """How many leading segments retention deletes, Kafka's three passes in order:
    retention.ms (segment's largest timestamp older than now - retention.ms),
    retention.bytes (oldest first while the log stays above the limit), then those
    wholly below the log start offset. ``segments`` holds (base_offset, size,
    largest_timestamp) oldest first; the last (active) one is never counted, nor a
    segment not wholly below the high watermark."""
    n = len(segments)
    deletable = 0  # segments[:deletable] are wholly below the high watermark

    while deletable < n - 1 and segments[deletable + 1][0] <= high_watermark:
        deletable += 1
    k = 0
    if "delete" in config.cleanup_policy and config.retention_ms >= 0:
        while k < deletable and now_ms - segments[k][2] > config.retention_ms:
            k += 1
    if "delete" in config.cleanup_policy and config.retention_bytes >= 0:
        excess = sum(s[1] for s in segments[k:]) - config.retention_bytes
        while k < deletable and excess - segments[k][1] >= 0:
            excess -= segments[k][1]
            k += 1
    while k < deletable and segments[k + 1][0] <= log_start_offset:
        k += 1
    return k


def record_matching(batch, header, log_start_offset: int, match) -> tuple[int, int]:
    """(offset, timestamp) of the first record in ``batch`` (one whole batch's
    bytes) at or after ``log_start_offset`` whose timestamp satisfies ``match``.
    Under LogAppendTime, or when records cannot be decoded, the batch answers
    for itself: (its base offset, its max timestamp)."""
    if not header.log_append_time:
        try:
            from odradek.protocol.records import decode_batch
        except ImportError:  # pragma: no cover - records module not there
            decode_batch = None
        if decode_batch is not None:
            try:
                for r in decode_batch(batch, 0)[1]:
                    if r.offset >= log_start_offset and match(r.timestamp):
                        return (r.offset, r.timestamp)
            except Exception:  # undecodable (corrupt, unknown codec): answer with the batch
                pass
    return (max(header.base_offset, log_start_offset), header.max_timestamp)


def stamp_batches(buf: bytearray, base_offset: int, leader_epoch: int, now_ms: int,
                  log_append_time: bool) -> tuple[list, int, int]:
    """Give the batches in ``buf`` their offsets from ``base_offset`` on and the
    leader epoch, and stamp LogAppendTime when asked, all in place.

    Returns (spans, next offset, max timestamp) where spans holds
    (position, size, last offset, max timestamp) per batch. Raises InvalidBatch
    for framing that does not add up (the produce path validated it already).
    """
    offset = base_offset
    spans = []
    max_ts = -1
    for pos, size, h in framed_batches(buf):
        set_base_offset(buf, pos, offset)
        set_leader_epoch(buf, pos, leader_epoch)
        if log_append_time:
            set_log_append_time(buf, pos, size, now_ms)
            ts = now_ms
        else:
            ts = h.max_timestamp
        last = offset + h.last_offset_delta
        spans.append((pos, size, last, ts))
        if ts > max_ts:
            max_ts = ts
        offset = last + 1
    return spans, offset, max_ts


def framed_batches(buf):
    """(position, size, header) of each batch of ``buf``, in order. Raises
    InvalidBatch for an empty buffer or framing that does not add up."""
    n = len(buf)
    if n == 0:
        raise InvalidBatch("no record batches to append")
    pos = 0
    while pos < n:
        if n - pos < HEADER_SIZE:
            raise InvalidBatch("truncated batch header")
        h = read_header(buf, pos)
        size = h.batch_length + LOG_OVERHEAD
        if size < HEADER_SIZE or pos + size > n:
            raise InvalidBatch("batch length out of bounds")
        yield pos, size, h
        pos += size


def read_spans(buf, base_offset: int) -> tuple[list, int, int, list]:
    """The batches of ``buf`` as a replica received them (offsets and leader
    epochs final): (spans as ``stamp_batches`` gives them, next offset, max
    timestamp, [(leader epoch, start offset)] where the epoch changes). Raises
    InvalidBatch unless the first batch starts at ``base_offset`` and each
    next one where the previous ended."""
    offset = base_offset
    spans = []
    epochs = []
    max_ts = -1
    for pos, size, h in framed_batches(buf):
        if h.base_offset != offset:
            raise InvalidBatch(f"batch at offset {h.base_offset} where {offset} was expected")
        if not epochs or epochs[-1][0] != h.partition_leader_epoch:
            epochs.append((h.partition_leader_epoch, offset))
        last = offset + h.last_offset_delta
        spans.append((pos, size, last, h.max_timestamp))
        max_ts = max(max_ts, h.max_timestamp)
        offset = last + 1
    return spans, offset, max_ts, epochs
