"""A partition's transactions: the ongoing ones, the aborted ones, the last stable offset.

Theory of operation
-------------------
:class:`TxnIndex` is kept by a partition's
:class:`~odradek.producers.ProducerStateTable`, which feeds it from the batch
headers as they are appended (or replayed at a rebuild):

- the first transactional batch of a producer after its last marker
  *begins* a transaction at that batch's base offset (``ongoing``);
- a commit or abort marker (a control batch) *ends* it; an aborted
  transaction is remembered as Kafka's ``AbortedTxn`` (producer id, first
  offset, last offset = the marker's, and the last stable offset when it
  ended).

What readers ask:

- the *last stable offset*: the first offset of the earliest transaction
  that is open or whose marker is not yet below the high watermark (a
  marker a new leader might not have: Kafka's "unreplicated transactions"),
  or the high watermark if it is lower or there is none. On one broker the
  high watermark is the log end, so only open transactions count.
  ``read_committed`` consumers read below it.
- the aborted transactions overlapping a fetched range ``[start, end)``, as
  Kafka selects them: ``last_offset >= start and first_offset < end``, sorted
  by first offset. Listing fewer would leak aborted records to a
  read_committed consumer; listing one that ended before ``start`` would make
  a client drop that producer's committed records.

Persistence: the index is part of the producer snapshot (version 2 of its
format, :mod:`odradek.producers`) and is rebuilt with the table from the
log's control batches after it. The aborted list here is the complete
record the snapshot carries and recovery restores the log's per-segment
``.txnindex`` files from (``SegmentedLog.restore_aborted``); Fetch lookups
read those files' entries (``SegmentedLog.aborted_between``), which the
cleaner trims as Kafka's does. ``aborted_between`` here is the reference
the tests compare them with.
"""

from __future__ import annotations

import struct
from typing import NamedTuple


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


_COUNT = struct.Struct(">i")
_ONGOING = struct.Struct(">qq")
_ABORTED = struct.Struct(">qqqq")


class TxnIndex:
    __slots__ = ("ongoing", "aborted", "unreplicated")

    def __init__(self):
        self.ongoing: dict[int, int] = {}  # producer id -> first offset of its open transaction
        self.aborted: list[AbortedTxn] = []  # in the order their markers were written
        # (first offset, marker offset) of ended transactions whose marker may
        # still be above the high watermark, in marker order (memory only)
        self.unreplicated: list[tuple[int, int]] = []

    def in_txn(self, producer_id: int) -> bool:
        return producer_id in self.ongoing

    def begin(self, producer_id: int, offset: int) -> None:
        """A transactional batch of ``producer_id`` was written at ``offset``."""
        self.ongoing.setdefault(producer_id, offset)

    def end(self, producer_id: int, marker_offset: int, commit: bool) -> AbortedTxn | None:
        """A marker of ``producer_id`` was written at ``marker_offset``; the
        aborted transaction it ended, if it was an abort of one."""
        first = self.ongoing.pop(producer_id, None)
        if first is None:
            return None
        self.unreplicated.append((first, marker_offset))
        if commit:
            return None
        lso = min(self.ongoing.values(), default=marker_offset + 1)
        a = AbortedTxn(producer_id, first, marker_offset, lso)
        self.aborted.append(a)
        return a

    def first_unstable_offset(self, high_watermark: int) -> int | None:
        """The first offset of the earliest open transaction or of one whose
        marker is at or above ``high_watermark``; None if there is none."""
        done = self.settle(high_watermark)
        first = min(self.ongoing.values()) if self.ongoing else None
        if done:
            earliest = min(f for f, _ in done)
            first = earliest if first is None else min(first, earliest)
        return first

    def settle(self, high_watermark: int) -> list:
        """Forget ended transactions whose marker is below ``high_watermark``."""
        done = self.unreplicated
        if done and done[0][1] < high_watermark:
            self.unreplicated = done = [t for t in done if t[1] >= high_watermark]
        return done

    def last_stable_offset(self, high_watermark: int) -> int:
        first = self.first_unstable_offset(high_watermark)
        return high_watermark if first is None else min(first, high_watermark)

    def aborted_between(self, start: int, end: int) -> list[AbortedTxn]:
        """The aborted transactions overlapping ``[start, end)``, by first offset."""
        return sorted((a for a in self.aborted if a.last_offset >= start and a.first_offset < end),
                      key=lambda a: a.first_offset)

    def prune(self, log_start_offset: int) -> None:
        """Forget aborted transactions wholly below the log start."""
        if self.aborted and self.aborted[0].last_offset < log_start_offset:
            self.aborted = [a for a in self.aborted if a.last_offset >= log_start_offset]

    # -- snapshot ---------------------------------------------------------
    def encode(self, out: bytearray) -> None:
        out += _COUNT.pack(len(self.ongoing))
        for pid, first in self.ongoing.items():
            out += _ONGOING.pack(pid, first)
        out += _COUNT.pack(len(self.aborted))
        for a in self.aborted:
            out += _ABORTED.pack(*a)

    @classmethod
    def decode(cls, data, pos: int) -> tuple["TxnIndex", int]:
        """Raises struct.error on truncated data."""
        idx = cls()
        (n,) = _COUNT.unpack_from(data, pos)
        pos += 4
        for _ in range(n):
            pid, first = _ONGOING.unpack_from(data, pos)
            idx.ongoing[pid] = first
            pos += _ONGOING.size
        (n,) = _COUNT.unpack_from(data, pos)
        pos += 4
        for _ in range(n):
            idx.aborted.append(AbortedTxn(*_ABORTED.unpack_from(data, pos)))
            pos += _ABORTED.size
        return idx, pos

    def __eq__(self, other) -> bool:
        return isinstance(other, TxnIndex) and self.ongoing == other.ongoing and self.aborted == other.aborted
