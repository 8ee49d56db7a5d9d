"""The storage seam: what the broker asks of a partition log.

A partition log is an append-only sequence of record batches (magic 2), each
stored byte for byte as the producer sent it, with the base offset and the
partition leader epoch patched in by the log. Offsets are dense from the
broker's point of view: every append gets ``log_end_offset`` as its base offset.

Invariants every implementation keeps:

- ``log_start_offset <= high_watermark <= log_end_offset``.
- ``append``, ``truncate_to``, ``delete_records_before`` and retention are
  called from the event loop only and never fsync; ``flush`` and ``close``
  fsync (blocking: run them in a worker thread), and ``flush`` must be safe to
  run concurrently with ``append`` and ``read``.
- ``read`` returns whole batches, starting with the batch that contains
  ``offset`` (so a reader may get records before ``offset``; clients skip them),
  and always at least one batch when one exists below ``max_offset``, even if
  it is larger than ``max_bytes``.
- Everything acknowledged survives a process kill (the bytes are in the page
  cache via write(2)); what survives power loss is what ``flush`` reached.
- Auxiliary files (``read_aux``/``write_aux``, names ending ``.snapshot``) hold
  state derived from the log as of some offset (the producer-state snapshot);
  the log does not interpret them. ``write_aux`` replaces one atomically and
  durably and is blocking (run it off the event loop); ``truncate_to`` deletes
  them all, as the log they were derived from may then be rewritten. Readers
  must still check that a snapshot matches the log (it may be newer than the
  fsynced log after a power loss).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from odradek.protocol.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    InvalidBatch,
    read_header,
    set_base_offset,
    set_leader_epoch,
    set_log_append_time,
)


@dataclass
class LogConfig:
    """Topic-level settings the log itself acts on (Kafka's names in comments)."""

    segment_bytes: int = 1024 * 1024 * 1024  # segment.bytes
    segment_ms: int = 7 * 24 * 3600 * 1000  # segment.ms
    retention_bytes: int = -1  # retention.bytes
    retention_ms: int = 7 * 24 * 3600 * 1000  # retention.ms
    index_interval_bytes: int = 4096  # index.interval.bytes
    segment_index_bytes: int = 10 * 1024 * 1024  # segment.index.bytes
    flush_messages: int = 2**63 - 1  # flush.messages
    flush_ms: int = 2**63 - 1  # flush.ms
    file_delete_delay_ms: int = 60000  # file.delete.delay.ms
    cleanup_policy: str = "delete"  # cleanup.policy


@dataclass
class AppendInfo:
    base_offset: int
    last_offset: int
    max_timestamp: int
    log_append_time: int = -1


@dataclass
class ReadResult:
    """Bytes of whole batches, as a list of buffers to be written out in order."""

    chunks: list = field(default_factory=list)
    size: int = 0


class PartitionLog(abc.ABC):
    """One partition's log. See the module docstring for invariants."""

    config: LogConfig

    @property
    @abc.abstractmethod
    def log_start_offset(self) -> int: ...

    @property
    @abc.abstractmethod
    def log_end_offset(self) -> int: ...

    @property
    @abc.abstractmethod
    def high_watermark(self) -> int: ...

    @abc.abstractmethod
    def set_high_watermark(self, offset: int) -> None: ...

    @abc.abstractmethod
    def append(self, records: bytearray, leader_epoch: int, now_ms: int,
               log_append_time: bool = False) -> AppendInfo:
        """Append validated batches (``records`` may hold several), assigning
        offsets from ``log_end_offset`` on. Patches base offsets and leader epochs
        in ``records`` in place, and stamps LogAppendTime when asked."""

    @abc.abstractmethod
    def read(self, offset: int, max_bytes: int, max_offset: int | None = None,
             min_one: bool = True) -> ReadResult:
        """Whole batches from the one containing ``offset`` up to ``max_offset``
        (exclusive; default the high watermark), at most ``max_bytes`` but, with
        ``min_one``, at least one batch (KIP-74). Raises OffsetOutOfRange
        outside [log_start, log_end]."""

    @abc.abstractmethod
    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """First (offset, timestamp) whose timestamp >= ``timestamp``, or None."""

    @abc.abstractmethod
    def max_timestamp(self) -> tuple[int, int]:
        """(offset, timestamp) of the record with the largest timestamp, or (-1, -1)."""

    @abc.abstractmethod
    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """(largest epoch <= ``epoch``, its end offset) per the leader-epoch
        cache, or (-1, -1) when unknown. The end offset of the latest epoch is
        the log end offset."""

    @abc.abstractmethod
    def delete_records_before(self, offset: int) -> int:
        """Move the log start offset up to ``offset`` (DeleteRecords); return it."""

    @abc.abstractmethod
    def truncate_to(self, offset: int) -> None:
        """Drop everything at or after ``offset`` (for replication later). On the
        event loop, like ``append``: no fsync; ``flush`` makes it durable."""

    @abc.abstractmethod
    def apply_retention(self, now_ms: int) -> int:
        """Delete whole segments past retention.ms/retention.bytes and roll by
        segment.ms; return the number of segments deleted."""

    @abc.abstractmethod
    def flush(self) -> None:
        """fsync what is written. Blocking: run it off the event loop."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and close (blocking: off the event loop)."""

    def abandon(self) -> None:
        """Close without flushing: the log is about to be deleted. Does no
        fsync, so it may run on the event loop; appends, reads and flushes
        after it fail or do nothing. Logs holding no files need not act."""

    def size_in_bytes(self) -> int:
        return 0

    def iter_headers(self, start_offset: int, chunk_bytes: int = 8 * 1024 * 1024):
        """Yield the header of every batch from the one containing ``start_offset``
        to the log end, in offset order (headers only: positions are the log's
        business). Raises OffsetOutOfRange outside [log_start, log_end]. For use
        on the event loop (or wherever appends are not running).

        This default reads whole batches with ``read`` in ``chunk_bytes`` chunks;
        logs that can read just the headers should do so."""
        from odradek.protocol.batch import iter_batches

        offset, end = start_offset, self.log_end_offset
        if offset < self.log_start_offset or offset > end:
            raise OffsetOutOfRange(f"offset {offset} not in [{self.log_start_offset}, {end}]")
        while offset < end:
            result = self.read(offset, chunk_bytes, end)
            advanced = False
            for chunk in result.chunks:
                for _, h in iter_batches(chunk):
                    if h.next_offset <= offset:
                        continue
                    yield h
                    offset = h.next_offset
                    advanced = True
            if not advanced:
                return

    def read_aux(self, name: str) -> bytes | None:
        """The auxiliary file ``name`` (see the module docstring), None when absent."""
        return None

    def write_aux(self, name: str, data: bytes) -> None:
        """Atomically and durably replace the auxiliary file ``name`` with ``data``
        (blocking: off the event loop). Logs without aux storage ignore it."""

    @property
    def recovery_point(self) -> int:
        """Offset below which everything is known to be fsynced."""
        return self.log_end_offset

    @property
    def flush_due(self) -> bool:
        """True when flush.messages records are unflushed: the caller should run
        ``flush()`` off the event loop. Reported once per such batch of records."""
        return False

    def flush_due_by_time(self, now_ms: int) -> bool:
        """True when there is unflushed data and flush.ms has passed since the last flush."""
        return False


class SegmentedLog(PartitionLog):
    """What the disk and memory logs share: a list of segments, oldest first,
    the last one active. Subclasses provide ``_segments`` (each with ``base``,
    ``size``, ``first_ts``, ``created_ms`` and ``largest_timestamp()``),
    ``_log_start``, ``_hw``, ``_roll(now_ms)`` and ``_delete_segments(count)``."""

    @staticmethod
    def _time_waited(seg, ts: int, now_ms: int) -> int:
        """Kafka's roll clock: from the first batch's timestamp, else segment creation."""
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


class OffsetOutOfRange(Exception):
    pass


AUX_SUFFIX = ".snapshot"


def check_aux_name(name: str) -> str:
    """``name`` if it is a legal auxiliary file name (a plain file name ending
    ``.snapshot``); raises ValueError otherwise."""
    if (not isinstance(name, str) or not name.endswith(AUX_SUFFIX) or len(name) <= len(AUX_SUFFIX)
            or "/" in name or "\\" in name or name.startswith(".") or "\0" in name):
        raise ValueError(f"bad auxiliary file name {name!r}")
    return name


class LogStore(abc.ABC):
    """Where partition logs live: creates, opens, lists and deletes them."""

    @abc.abstractmethod
    def open_log(self, topic: str, partition: int, config: LogConfig) -> PartitionLog: ...

    @abc.abstractmethod
    def delete_log(self, topic: str, partition: int) -> None: ...

    @abc.abstractmethod
    def existing_logs(self) -> list[tuple[str, int]]: ...

    def read_metadata(self, name: str) -> bytes | None:
        """Broker-level metadata files (topic registry); None when absent."""
        return None

    def write_metadata(self, name: str, data: bytes) -> None:
        """Durably replace a broker-level metadata file."""

    def close(self) -> None: ...


class LeaderEpochCache:
    """Kafka's leader-epoch cache: (epoch, start_offset) entries, both strictly
    increasing, saying from which offset each leader epoch wrote the log.

    Pure bookkeeping; implementations persist it (``to_text``/``from_text`` is the
    ``leader-epoch-checkpoint`` format: version 0, count, ``epoch offset`` lines).
    """

    def __init__(self, entries=()):
        self.entries: list[tuple[int, int]] = [tuple(e) for e in entries]

    @property
    def latest_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else -1

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset``; return True if changed.
        Entries that would break monotonicity (epoch >= ``epoch`` or start offset
        >= ``start_offset``) are dropped first, as Kafka does."""
        if epoch < 0 or start_offset < 0:
            return False
        if self.entries:
            last_epoch, last_start = self.entries[-1]
            if epoch == last_epoch and start_offset >= last_start:
                return False
        entries = self.entries
        while entries and (entries[-1][0] >= epoch or entries[-1][1] >= start_offset):
            entries.pop()
        self.entries.append((epoch, start_offset))
        return True

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (largest known epoch <= ``epoch``, start offset of
        the next epoch) -- the log end offset for the latest epoch; (-1, -1) when
        ``epoch`` is undefined or newer than any known epoch."""
        if epoch < 0 or not self.entries:
            return (-1, -1)
        if epoch == self.entries[-1][0]:
            return (epoch, log_end_offset)
        floor = None
        for e, start in self.entries:
            if e > epoch:  # the first higher entry
                return (epoch if floor is None else floor, start)
            floor = e
        return (-1, -1)

    def truncate_from_end(self, end_offset: int) -> bool:
        """Forget epochs starting at or after ``end_offset`` (log truncated there)."""
        n = len(self.entries)
        while self.entries and self.entries[-1][1] >= end_offset:
            self.entries.pop()
        return len(self.entries) != n

    def truncate_from_start(self, start_offset: int) -> bool:
        """Log start moved to ``start_offset``: the epoch covering it now starts there."""
        i = 0
        while i < len(self.entries) and self.entries[i][1] <= start_offset:
            i += 1
        if i == 0 or (i == 1 and self.entries[0][1] == start_offset):
            return False
        epoch = self.entries[i - 1][0]
        self.entries[: i] = [(epoch, start_offset)]
        return True

    def to_text(self) -> str:
        lines = ["0", str(len(self.entries))]
        lines += [f"{e} {o}" for e, o in self.entries]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str) -> "LeaderEpochCache":
        """Parse a checkpoint; raises ValueError if it is not version 0 or malformed."""
        lines = text.split("\n")
        if len(lines) < 2 or lines[0].strip() != "0":
            raise ValueError("unsupported leader-epoch-checkpoint version")
        count = int(lines[1])
        entries = []
        for line in lines[2 : 2 + count]:
            e, o = line.split()
            entries.append((int(e), int(o)))
        if len(entries) != count:
            raise ValueError("leader-epoch-checkpoint is truncated")
        return cls(entries)


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
    n = len(buf)
    if n == 0:
        raise InvalidBatch("no record batches to append")
    offset = base_offset
    spans = []
    pos = 0
    max_ts = -1
    while pos < n:
        if n - pos < HEADER_SIZE:
            raise InvalidBatch("truncated batch header")
        h = read_header(buf, pos)
        size = h.batch_length + LOG_OVERHEAD
        if size < HEADER_SIZE or pos + size > n:
            raise InvalidBatch("batch length out of bounds")
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
        pos += size
    return spans, offset, max_ts
