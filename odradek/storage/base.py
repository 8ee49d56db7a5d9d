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
- Compaction (``odradek.storage.cleaner``) only reads pinned non-active
  segments and replaces consecutive ones by a cleaned segment with the same
  base offset and the same last offset, so offsets never move; readers see
  the old segments or the new one, never a mix.

One implementation (``log.py``, over a ``FileSystem``) serves disk and memory mode.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Iterator, Protocol


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


class SegmentView(Protocol):
    """A segment as the cleaner sees it (``segments_for_cleaning``)."""

    base: int  # base offset
    size: int  # bytes
    created_ms: int

    def first_timestamp(self) -> int:
        """Max timestamp of the first batch (creation time if none)."""

    def largest_timestamp(self) -> int:
        """Largest timestamp in the segment (creation time if none)."""


class CleanedSegmentWriter(Protocol):
    """A new segment the cleaner fills (``cleaned_segment``), then swaps in or aborts."""

    size: int

    def append(self, batch) -> None:
        """Write one whole batch, its offsets final, at the end."""

    def finish(self) -> None:
        """Make it durable (blocking: off the loop); then ``commit_swap`` it."""

    def abort(self) -> None:
        """Discard it."""


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
    def append_replicated(self, records: bytearray, now_ms: int) -> AppendInfo:
        """Append batches as a follower received them from its leader: their
        offsets (the first must be ``log_end_offset``) and leader epochs are
        kept, and the leader-epoch cache follows them. Raises InvalidBatch."""

    @abc.abstractmethod
    def assign_epoch(self, leader_epoch: int) -> None:
        """Record that ``leader_epoch`` starts at the log end (a new leader's first act)."""

    @property
    @abc.abstractmethod
    def latest_epoch(self) -> int:
        """The newest leader epoch in the log's epoch cache (-1: none)."""

    @abc.abstractmethod
    def reset_to(self, offset: int) -> None:
        """Drop every record and start afresh, empty, at ``offset`` (a follower
        whose log ends before its leader's log start)."""

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

    @abc.abstractmethod
    def abandon(self) -> None:
        """Close without flushing: the log is about to be deleted. Does no
        fsync, so it may run on the event loop; appends, reads and flushes
        after it fail or do nothing."""

    @abc.abstractmethod
    def size_in_bytes(self) -> int: ...

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

    @abc.abstractmethod
    def read_aux(self, name: str) -> bytes | None:
        """The auxiliary file ``name`` (see the module docstring), None when absent."""

    @abc.abstractmethod
    def write_aux(self, name: str, data: bytes) -> None:
        """Atomically and durably replace the auxiliary file ``name`` with ``data``
        (blocking: off the event loop)."""

    @property
    @abc.abstractmethod
    def recovery_point(self) -> int:
        """Offset below which everything is known to be fsynced."""

    @property
    @abc.abstractmethod
    def flush_due(self) -> bool:
        """True when flush.messages records are unflushed: the caller should run
        ``flush()`` off the event loop. Reported once per such batch of records."""

    def pop_roll(self) -> tuple[int, tuple[int, int, int, int] | None] | None:
        """After an append or ``apply_retention``: (base offset of the segment
        rolled since the last call, (base offset, last offset, CRC, leader
        epoch) of the batch ending just before it, or None when the log does
        not know them without a read), or None when no segment rolled.
        Reported once (the owner of the log takes its producer snapshot there;
        the log knows nothing of producers). This default never rolls."""
        return None

    @abc.abstractmethod
    def flush_due_by_time(self, now_ms: int) -> bool:
        """True when there is unflushed data and flush.ms has passed since the last flush."""

    # -- compaction: what odradek.storage.cleaner uses ---------------------
    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """True once closed or abandoned: the cleaner leaves the log alone."""

    @abc.abstractmethod
    def segments_for_cleaning(self) -> list[SegmentView]:
        """The segments, oldest first; the last one is the active segment."""

    @abc.abstractmethod
    def pin_segments(self, segs: list[SegmentView]) -> None:
        """Keep ``segs`` readable while a worker thread reads them (until
        ``unpin_segments``), even if retention or truncation drops them."""

    @abc.abstractmethod
    def unpin_segments(self, segs: list[SegmentView]) -> None: ...

    @abc.abstractmethod
    def segment_batches(self, seg: SegmentView) -> Iterator[tuple]:
        """Yield (header, bytes) for each whole batch of ``seg``, a pinned
        non-active segment (safe in a worker thread: such segments never change)."""

    @abc.abstractmethod
    def cleaned_segment(self, base: int, created_ms: int) -> CleanedSegmentWriter:
        """A new, empty segment to fill with cleaned batches. Call it on the
        event loop; ``append`` and ``finish`` may then run in a worker thread."""

    @abc.abstractmethod
    def commit_swap(self, old: list[SegmentView], cleaned: CleanedSegmentWriter,
                    guard: SegmentView | None = None) -> bool:
        """Put ``cleaned`` (finished, same base offset) in place of ``old``
        (consecutive non-active segments). On the event loop, so appends and
        reads see either the old segments or the new one, never a mix.

        Returns False, discarding ``cleaned``, when the log changed meanwhile:
        ``old`` is no longer there as it was, or ``guard`` (the segment after the
        cleaned range) is gone, i.e. the log was truncated into that range.
        Otherwise the swap is committed: it survives a crash from here on. The
        caller then runs ``sync_dir`` (blocking: off the loop), ``finish_swap``
        and ``sync_dir`` again."""

    @abc.abstractmethod
    def sync_dir(self) -> None:
        """Make the swap's file operations so far durable (blocking)."""

    @abc.abstractmethod
    def finish_swap(self, old: list[SegmentView], cleaned: CleanedSegmentWriter) -> None:
        """After ``commit_swap`` and a ``sync_dir``: remove what ``old`` left and
        give ``cleaned`` its final name (on the event loop)."""

    def replace_segments(self, old: list[SegmentView], cleaned: CleanedSegmentWriter,
                         guard: SegmentView | None = None) -> bool:
        """``commit_swap``, ``sync_dir``, ``finish_swap``, ``sync_dir`` in one go
        (blocking)."""
        if not self.commit_swap(old, cleaned, guard):
            return False
        self.sync_dir()
        self.finish_swap(old, cleaned)
        self.sync_dir()
        return True


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

    @abc.abstractmethod
    def has_log(self, topic: str, partition: int) -> bool:
        """Whether the log exists already (opened, or on disk)."""

    def read_metadata(self, name: str) -> bytes | None:
        """Broker-level metadata files (topic registry); None when absent."""
        return None

    def write_metadata(self, name: str, data: bytes) -> None:
        """Durably replace a broker-level metadata file."""

    @abc.abstractmethod
    def write_checkpoints(self) -> None:
        """Durably record every log's recovery point, log start offset and high
        watermark, so a restart starts from them (blocking: off the event loop)."""

    def close(self) -> None: ...
