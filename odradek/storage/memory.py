"""Partition logs kept in memory, with the disk log's semantics (minus durability).

Segments are lists of whole batches (``bytes``) with their last offsets and max
timestamps alongside, so lookups bisect instead of parsing. Rolling (including
Kafka's index-full roll, counted but not stored), retention, DeleteRecords,
truncation and the leader-epoch cache behave exactly as in ``disk.py``;
``flush`` only moves the recovery point. Used by ``odradek serve --memory``
and tests. Everything runs on the event loop, so there is no locking.
Auxiliary files (``write_aux``) are a dict on the log, cleared by truncation.
"""

from __future__ import annotations

import bisect
import time

from odradek.protocol.batch import read_header

from .base import (
    AppendInfo,
    LogConfig,
    LogStore,
    OffsetOutOfRange,
    PartitionLog,
    ReadResult,
    check_aux_name,
)
from .checkpoints import LeaderEpochCache
from .log import count_expired_segments, record_matching, stamp_batches

_MAX_REL = 0x7FFFFFFF


class _MemSegment:
    __slots__ = ("base", "batches", "lasts", "max_tss", "size", "created_ms", "first_ts",
                 "max_ts", "max_ts_offset", "index_entries", "time_entries",
                 "last_index_pos", "last_time_ts")

    def __init__(self, base: int, created_ms: int):
        self.base = base
        self.batches: list[bytes] = []
        self.lasts: list[int] = []  # last offset of each batch
        self.max_tss: list[int] = []  # max timestamp of each batch
        self.size = 0
        self.created_ms = created_ms
        self.first_ts = None
        self.max_ts = -1
        self.max_ts_offset = -1
        self.index_entries = 0  # what disk.py's .index would hold
        self.time_entries = 0
        self.last_index_pos = 0
        self.last_time_ts = -1

    @property
    def next_offset(self) -> int:
        return self.lasts[-1] + 1 if self.lasts else self.base

    def add(self, batch: bytes, last: int, ts: int, interval: int) -> None:
        pos = self.size
        if ts > self.max_ts:
            self.max_ts, self.max_ts_offset = ts, last
        if pos == 0:
            self.first_ts = ts
        elif pos - self.last_index_pos > interval:
            self.index_entries += 1
            self.last_index_pos = pos
            self._time_entry()
        self.batches.append(batch)
        self.lasts.append(last)
        self.max_tss.append(ts)
        self.size = pos + len(batch)

    def _time_entry(self) -> None:
        if self.max_ts > self.last_time_ts:
            self.time_entries += 1
            self.last_time_ts = self.max_ts

    def truncate(self, j: int, interval: int) -> None:
        """Keep the first ``j`` batches and recount as a rebuilt index would."""
        kept = list(zip(self.batches[:j], self.lasts[:j], self.max_tss[:j]))
        self.__init__(self.base, self.created_ms)
        for b, last, ts in kept:
            self.add(b, last, ts, interval)

    def largest_timestamp(self) -> int:
        return self.max_ts if self.max_ts >= 0 else self.created_ms

    def first_timestamp(self) -> int:
        return self.first_ts if self.first_ts is not None and self.first_ts >= 0 \
            else self.created_ms


class _MemCleaned:
    """A segment the cleaner fills to replace others (see disk.py's twin)."""

    def __init__(self, base: int, created_ms: int, interval: int):
        self.seg = _MemSegment(base, created_ms)
        self.interval = interval

    @property
    def size(self) -> int:
        return self.seg.size

    def append(self, batch) -> None:
        h = read_header(batch)
        self.seg.add(bytes(batch), h.last_offset, h.max_timestamp, self.interval)

    def finish(self) -> None:
        self.seg._time_entry()

    def abort(self) -> None:
        pass


class MemoryPartitionLog(PartitionLog):
    """One partition's log in memory."""

    def __init__(self, topic: str, partition: int, config: LogConfig, *,
                 auto_high_watermark: bool = True, now_ms: int | None = None):
        self.topic = topic
        self.partition = partition
        self.config = config
        self.auto_high_watermark = auto_high_watermark
        now = int(time.time() * 1000) if now_ms is None else now_ms
        self._segments = [_MemSegment(0, now)]
        self._bases = [0]
        self._leo = self._hw = self._log_start = self._rp = 0
        self._epochs = LeaderEpochCache()
        self._aux: dict[str, bytes] = {}

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

    def size_in_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def segment_base_offsets(self) -> list[int]:
        return list(self._bases)

    def leader_epochs(self) -> list[tuple[int, int]]:
        return list(self._epochs.entries)

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
        interval = self.config.index_interval_bytes
        for p, size, last, ts in spans:
            seg.add(bytes(buf[p : p + size]), last, ts, interval)
        self._leo = offset
        if self.auto_high_watermark:
            self._hw = offset
        if leader_epoch >= 0:
            self._epochs.assign(leader_epoch, base)
        return AppendInfo(base, offset - 1, max_ts, now_ms if log_append_time else -1)

    def _should_roll(self, seg: _MemSegment, n: int, max_ts: int, last: int, now_ms: int) -> bool:
        if seg.size == 0:
            return False
        c = self.config
        return (seg.size + n > c.segment_bytes
                or self._time_waited(seg, max_ts, now_ms) > c.segment_ms
                or seg.index_entries >= c.segment_index_bytes // 8
                or seg.time_entries >= c.segment_index_bytes // 12
                or last - seg.base > _MAX_REL)


    def _roll(self, now_ms: int) -> _MemSegment:
        self._segments[-1]._time_entry()
        seg = _MemSegment(self._leo, now_ms)
        self._segments.append(seg)
        self._bases.append(seg.base)
        return seg

    # -- read -----------------------------------------------------------
    def read(self, offset: int, max_bytes: int, max_offset: int | None = None,
             min_one: bool = True) -> ReadResult:
        if offset < self._log_start or offset > self._leo:
            raise OffsetOutOfRange(f"offset {offset} not in [{self._log_start}, {self._leo}]")
        limit = self._hw if max_offset is None else min(max_offset, self._leo)
        result = ReadResult()
        if offset >= limit:
            return result
        i = max(0, bisect.bisect_right(self._bases, offset) - 1)
        j = bisect.bisect_left(self._segments[i].lasts, offset)
        chunks = result.chunks
        size = 0
        for seg in self._segments[i:]:
            lasts, batches = seg.lasts, seg.batches
            while j < len(batches):
                b = batches[j]
                if lasts[j] >= limit or ((chunks or not min_one) and size + len(b) > max_bytes):
                    result.size = size
                    return result
                chunks.append(b)
                size += len(b)
                j += 1
            j = 0
        result.size = size
        return result

    def _locate(self, offset: int):
        """(segment, batch index) of the batch holding ``offset``, or None."""
        i = max(0, bisect.bisect_right(self._bases, offset) - 1)
        seg = self._segments[i]
        j = bisect.bisect_left(seg.lasts, offset)
        return (seg, j) if j < len(seg.lasts) else None

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        start = self._log_start
        for seg in self._segments:
            if seg.max_ts < timestamp or seg.next_offset <= start:
                continue
            for j, ts in enumerate(seg.max_tss):
                if ts >= timestamp and seg.lasts[j] >= start:
                    b = seg.batches[j]
                    return record_matching(b, read_header(b), start, lambda t: t >= timestamp)
        return None

    def max_timestamp(self) -> tuple[int, int]:
        best = None
        for seg in self._segments:
            if seg.max_ts >= 0 and (best is None or seg.max_ts > best.max_ts):
                best = seg
        if best is None:
            return (-1, -1)
        j = bisect.bisect_left(best.lasts, best.max_ts_offset)
        b = best.batches[j]
        ts = best.max_ts
        return record_matching(b, read_header(b), self._log_start, lambda t: t == ts)

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        return self._epochs.end_offset_for(epoch, self._leo)

    # -- deletion -------------------------------------------------------
    @staticmethod
    def _time_waited(seg, ts: int, now_ms: int) -> int:
        if seg.first_ts is not None and seg.first_ts >= 0:
            return ts - seg.first_ts
        return now_ms - seg.created_ms

    def apply_retention(self, now_ms: int) -> int:
        active = self._segments[-1]
        if active.size and self._time_waited(active, now_ms, now_ms) > self.config.segment_ms:
            self._roll(now_ms)
        descr = [(s.base, s.size, s.largest_timestamp()) for s in self._segments]
        k = count_expired_segments(descr, self._log_start, self._hw, self.config, now_ms)
        self._delete_segments(k)
        return k

    def _delete_segments(self, count: int) -> None:
        count = min(count, len(self._segments) - 1)
        if count <= 0:
            return
        del self._segments[:count]
        del self._bases[:count]
        self._log_start = max(self._log_start, self._bases[0])
        self._rp = max(self._rp, self._bases[0])
        self._epochs.truncate_from_start(self._log_start)

    def delete_records_before(self, offset: int) -> int:
        if offset == -1:
            offset = self._hw
        if offset < 0 or offset > self._hw:
            raise OffsetOutOfRange(f"offset {offset} above the high watermark {self._hw}")
        if offset > self._log_start:
            self._log_start = offset
            self._epochs.truncate_from_start(offset)
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
        k = bisect.bisect_right(self._bases, offset)
        del self._segments[k:]
        del self._bases[k:]
        if k == 0:
            self._segments = [_MemSegment(offset, int(time.time() * 1000))]
            self._bases = [offset]
            self._log_start = offset
        else:
            seg = self._segments[-1]
            seg.truncate(bisect.bisect_left(seg.lasts, offset), self.config.index_interval_bytes)
        self._leo = self._segments[-1].next_offset
        self._hw = min(self._hw, self._leo)
        self._rp = min(self._rp, self._leo)
        self._log_start = min(self._log_start, self._leo)
        self._epochs.truncate_from_end(self._leo)
        self._aux.clear()

    # -- auxiliary files (kept with the log, like its data) -----------------
    def read_aux(self, name: str) -> bytes | None:
        return self._aux.get(check_aux_name(name))

    def write_aux(self, name: str, data: bytes) -> None:
        self._aux[check_aux_name(name)] = bytes(data)

    def flush(self) -> None:
        self._rp = self._leo

    def close(self) -> None:
        self.flush()

    # -- compaction (odradek.storage.cleaner; same contract as disk.py) ----
    closed = False

    def segments_for_cleaning(self) -> list:
        return list(self._segments)

    def pin_segments(self, segs) -> None:
        pass

    def unpin_segments(self, segs) -> None:
        pass

    def segment_batches(self, seg):
        for b in list(seg.batches):
            yield read_header(b), b

    def cleaned_segment(self, base: int, created_ms: int) -> _MemCleaned:
        return _MemCleaned(base, created_ms, self.config.index_interval_bytes)

    def commit_swap(self, old: list, cleaned: _MemCleaned, guard=None) -> bool:
        segs = self._segments
        i = next((k for k, s in enumerate(segs) if s is old[0]), None) if old else None
        if (i is None or cleaned.seg.base != old[0].base or i + len(old) >= len(segs)
                or any(segs[i + k] is not s for k, s in enumerate(old))
                or (guard is not None and not any(s is guard for s in segs))):
            return False
        segs[i : i + len(old)] = [cleaned.seg]
        self._bases[i : i + len(old)] = [cleaned.seg.base]
        return True

    def sync_dir(self) -> None:
        pass

    def finish_swap(self, old: list, cleaned: _MemCleaned) -> None:
        pass

    def replace_segments(self, old: list, cleaned: _MemCleaned, guard=None) -> bool:
        return self.commit_swap(old, cleaned, guard)


class MemoryLogStore(LogStore):
    """Logs and metadata files in memory; a log reopened after close keeps its data."""

    def __init__(self, *, auto_high_watermark: bool = True):
        self.auto_high_watermark = auto_high_watermark
        self._logs: dict[tuple[str, int], MemoryPartitionLog] = {}
        self._meta: dict[str, bytes] = {}

    def open_log(self, topic: str, partition: int, config: LogConfig) -> MemoryPartitionLog:
        lg = self._logs.get((topic, partition))
        if lg is None:
            lg = self._logs[(topic, partition)] = MemoryPartitionLog(
                topic, partition, config, auto_high_watermark=self.auto_high_watermark)
        lg.config = config
        return lg

    def delete_log(self, topic: str, partition: int) -> None:
        self._logs.pop((topic, partition), None)

    def existing_logs(self) -> list[tuple[str, int]]:
        return sorted(self._logs)

    def read_metadata(self, name: str) -> bytes | None:
        return self._meta.get(name)

    def write_metadata(self, name: str, data: bytes) -> None:
        self._meta[name] = bytes(data)

    def write_checkpoints(self) -> None:
        pass
