"""The state of one share-partition (KIP-932): which records are available,
acquired, acknowledged or archived. Pure: no I/O, no clock (``now`` is given).

Theory of operation
-------------------
A share group reads a partition as a queue: every record is handed to one
member at a time, under a lock, and stays in flight until it is
acknowledged. :class:`SharePartition` is that bookkeeping for one (group,
topic, partition), kept by the partition's leader, as Kafka's
``SharePartition`` is.

- The *share-partition start offset* (SPSO, :attr:`start`) is the first
  offset not yet done with: every record below it is acknowledged or
  archived. The in-flight window is ``[start, end)``; ``end`` is one past
  the last offset ever acquired (Kafka's share-partition end offset, SPEO,
  is ``end - 1``). Records at ``end`` and beyond have never been delivered.
- Every offset of the window has a state: AVAILABLE (may be acquired),
  ACQUIRED (held by one member until its lock expires), ACKNOWLEDGED
  (accepted) or ARCHIVED (rejected, a gap, or given up after too many
  deliveries). ACKNOWLEDGED and ARCHIVED are final.
- Acquiring a record adds one to its delivery count and locks it for
  ``lock_duration_ms`` to the member. A lock that expires, a release, or the
  member leaving makes the record AVAILABLE again, or ARCHIVED once its
  delivery count has reached ``delivery_count_limit``.
- Fresh records (at ``end`` and beyond) are acquired a whole record batch
  at a time, as the log stores them, so ``max_records`` may be exceeded to
  finish a batch; the window never grows past ``max_record_locks`` records
  (records already in the window may still be acquired again).
- Acknowledgements come as ranges ``(first, last, types)``: one type for
  the whole range, or one per offset (0 gap, 1 accept, 2 release, 3 reject;
  4 renew, which extends the lock, where the client asked for renewals).
  Every offset must be ACQUIRED by the acknowledging member, else the whole
  acknowledgement is refused (INVALID_RECORD_STATE) and nothing changes.
- When the records at ``start`` are final, ``start`` moves up past them and
  they are forgotten, so the state is bounded by the window.

The invariant, checked by :meth:`check`: a record is ACQUIRED by exactly
one member at a time, with a lock deadline; no other state has either.
"""

from __future__ import annotations

from dataclasses import dataclass

from odradek.protocol import errors

AVAILABLE = 0
ACQUIRED = 1
ACKNOWLEDGED = 2
ARCHIVED = 4  # the numbers of Kafka's RecordState (persisted as such)

GAP, ACCEPT, RELEASE, REJECT, RENEW = 0, 1, 2, 3, 4

STATE_NAMES = {AVAILABLE: "Available", ACQUIRED: "Acquired", ACKNOWLEDGED: "Acknowledged",
               ARCHIVED: "Archived"}


@dataclass
class SharePartitionConfig:
    lock_duration_ms: int = 30000  # group.share.record.lock.duration.ms
    delivery_count_limit: int = 5  # group.share.delivery.count.limit
    max_record_locks: int = 2000  # group.share.partition.max.record.locks


@dataclass
class _Record:
    state: int = AVAILABLE
    delivery_count: int = 0
    member: str | None = None
    deadline: int | None = None


class SharePartition:
    """One share-partition's in-flight records. See the module docstring."""

    def __init__(self, start: int, config: SharePartitionConfig | None = None):
        self.config = config or SharePartitionConfig()
        self.start = start
        self.end = start
        self._records: dict[int, _Record] = {}

    # -- reading -------------------------------------------------------------
    def state_of(self, offset: int) -> tuple[int, int, str | None]:
        """(state, delivery count, holder) of ``offset``."""
        if offset < self.start:
            return ACKNOWLEDGED, 0, None  # done with (acknowledged or archived)
        r = self._records.get(offset)
        if r is None:
            return AVAILABLE, 0, None
        return r.state, r.delivery_count, r.member

    def next_fetch_offset(self) -> int:
        """Where a read for new acquisitions starts: the first available
        offset of the window, else its end."""
        for off in range(self.start, self.end):
            if self._records[off].state == AVAILABLE:
                return off
        return self.end

    def can_acquire(self) -> bool:
        return self.next_fetch_offset() < self.end or self.end - self.start < self.config.max_record_locks

    def acquired_by(self, member: str) -> list[int]:
        return [off for off, r in self._records.items() if r.state == ACQUIRED and r.member == member]

    def in_flight(self) -> int:
        return self.end - self.start

    def completed(self) -> int:
        """Offsets from the start whose delivery is complete (acknowledged or
        archived): Kafka's delivery complete count."""
        return sum(1 for r in self._records.values() if r.state in (ACKNOWLEDGED, ARCHIVED))

    def lag(self, high_watermark: int) -> int:
        """Records below ``high_watermark`` not yet acknowledged or archived."""
        done = sum(1 for off in range(self.start, min(self.end, high_watermark))
                   if self._records[off].state in (ACKNOWLEDGED, ARCHIVED))
        return max(0, high_watermark - self.start - done)

    # -- acquiring -----------------------------------------------------------
    def acquire(self, member: str, batches, now: int, max_records: int = 500,
                strict: bool = False) -> list[tuple[int, int, int]]:
        """Acquire for ``member`` what is available in ``batches`` (the
        ``(base offset, last offset)`` of the record batches read from the
        log, in order; ``(base, last, False)`` for a batch never to be
        delivered, such as transaction markers or aborted records, which is
        archived): ``[(first, last, delivery count)]`` ranges. With
        ``strict`` (ShareFetch's record-limit acquire mode) no more than
        ``max_records`` are acquired, splitting a batch if need be."""
        taken: list[tuple[int, int]] = []  # (offset, delivery count)
        deadline = now + self.config.lock_duration_ms
        max_records = max(1, max_records)
        for batch in batches:
            base, last = batch[0], batch[1]
            if taken and len(taken) >= max_records:
                break
            if last < self.start:
                continue
            if len(batch) > 2 and not batch[2]:
                self._archive(base, last)
                continue
            # Records already in the window: the available ones, one by one.
            for off in range(max(base, self.start), min(last + 1, self.end)):
                if strict and len(taken) >= max_records:
                    break
                r = self._records[off]
                if r.state == AVAILABLE:
                    self._lock(r, member, deadline)
                    taken.append((off, r.delivery_count))
            if last < self.end or (strict and len(taken) >= max_records):
                continue
            # Fresh records: the whole batch, if the window has room.
            if self.end - self.start >= self.config.max_record_locks:
                break
            first = max(base, self.end)
            if not self._skip_to(first):
                break
            if strict:
                last = min(last, first + max_records - len(taken) - 1)
            for off in range(first, last + 1):
                r = self._records[off] = _Record()
                self._lock(r, member, deadline)
                taken.append((off, r.delivery_count))
            self.end = last + 1
        self._advance()
        return _ranges(taken)

    def _archive(self, base: int, last: int) -> None:
        """Offsets ``base..last`` hold nothing to deliver: archive them."""
        for off in range(max(base, self.start), min(last + 1, self.end)):
            r = self._records[off]
            if r.state == AVAILABLE:
                r.state = ARCHIVED
        if last >= self.end and self.end - self.start < self.config.max_record_locks:
            self._skip_to(last + 1)
        self._advance()

    def _skip_to(self, offset: int) -> bool:
        """Offsets from the window's end to ``offset`` hold nothing (compacted
        away, or markers): archived. An empty window just moves; a gap wider
        than the window may grow waits until the window is empty (False)."""
        if offset <= self.end:
            return True
        if self.start == self.end:
            self.start = self.end = offset
            return True
        if offset - self.end > self.config.max_record_locks:
            return False
        for off in range(self.end, offset):
            self._records[off] = _Record(ARCHIVED)
        self.end = offset
        return True

    @staticmethod
    def _lock(r: _Record, member: str, deadline: int) -> None:
        r.state = ACQUIRED
        r.member = member
        r.deadline = deadline
        r.delivery_count += 1

    def _release(self, r: _Record) -> None:
        r.member = None
        r.deadline = None
        r.state = ARCHIVED if r.delivery_count >= self.config.delivery_count_limit else AVAILABLE

    # -- acknowledging -------------------------------------------------------
    def acknowledge(self, member: str, batches, now: int, renew: bool = False) -> int:
        """Apply ``[(first, last, types)]`` for ``member``: 0, or the error
        code that refuses all of them (nothing changed)."""
        plan: list[tuple[int, int]] = []
        for first, last, types in batches:
            if first > last or not types or (len(types) != 1 and len(types) != last - first + 1):
                return errors.INVALID_REQUEST
            for t in types:
                if t not in (GAP, ACCEPT, RELEASE, REJECT) and not (renew and t == RENEW):
                    return errors.INVALID_REQUEST
            for i, off in enumerate(range(first, last + 1)):
                r = self._records.get(off) if self.start <= off < self.end else None
                if r is None or r.state != ACQUIRED or r.member != member:
                    return errors.INVALID_RECORD_STATE
                plan.append((off, types[0] if len(types) == 1 else types[i]))
        if len({off for off, _ in plan}) != len(plan):
            return errors.INVALID_REQUEST  # an offset acknowledged twice
        for off, t in plan:
            r = self._records[off]
            if t == ACCEPT:
                r.state, r.member, r.deadline = ACKNOWLEDGED, None, None
            elif t == RELEASE:
                self._release(r)
            elif t == RENEW:
                r.deadline = now + self.config.lock_duration_ms
            else:  # REJECT, GAP
                r.state, r.member, r.deadline = ARCHIVED, None, None
        self._advance()
        return 0

    # -- locks and members ---------------------------------------------------
    def next_deadline(self) -> int | None:
        deadlines = [r.deadline for r in self._records.values() if r.state == ACQUIRED]
        return min(deadlines) if deadlines else None

    def expire(self, now: int) -> int:
        """Release every record whose lock has expired; how many were."""
        n = 0
        for r in self._records.values():
            if r.state == ACQUIRED and r.deadline <= now:
                self._release(r)
                n += 1
        if n:
            self._advance()
        return n

    def release_member(self, member: str) -> int:
        """``member`` is gone (its share session closed, or it left the
        group): everything it holds is released."""
        n = 0
        for r in self._records.values():
            if r.state == ACQUIRED and r.member == member:
                self._release(r)
                n += 1
        if n:
            self._advance()
        return n

    def log_start_moved(self, log_start: int) -> None:
        """The log lost its records below ``log_start`` (retention, deletion)."""
        if log_start <= self.start:
            return
        for off in range(self.start, min(log_start, self.end)):
            self._records.pop(off, None)
        self.start = log_start
        self.end = max(self.end, log_start)
        self._advance()

    def _advance(self) -> None:
        while self.start < self.end and self._records[self.start].state in (ACKNOWLEDGED, ARCHIVED):
            del self._records[self.start]
            self.start += 1

    # -- persistence and inspection ------------------------------------------
    def state_batches(self) -> list[tuple[int, int, int, int]]:
        """The window as ``(first, last, state, delivery count)`` runs, with
        acquired records shown AVAILABLE: what a new leader would start from
        (Kafka's persisted state batches)."""
        out: list[list[int]] = []
        for off in range(self.start, self.end):
            r = self._records[off]
            state = AVAILABLE if r.state == ACQUIRED else r.state
            if out and out[-1][1] == off - 1 and out[-1][2] == state and out[-1][3] == r.delivery_count:
                out[-1][1] = off
            else:
                out.append([off, off, state, r.delivery_count])
        return [tuple(b) for b in out]

    @classmethod
    def restore(cls, start: int, batches, config: SharePartitionConfig | None = None) -> "SharePartition":
        """A share-partition from ``start`` and its ``state_batches()``."""
        sp = cls(start, config)
        for first, last, state, count in batches:
            for off in range(max(first, start), last + 1):
                sp._records[off] = _Record(ARCHIVED if state == ARCHIVED else
                                           ACKNOWLEDGED if state == ACKNOWLEDGED else AVAILABLE, count)
            sp.end = max(sp.end, last + 1)
        for off in range(start, sp.end):
            sp._records.setdefault(off, _Record(ARCHIVED))
        sp._advance()
        return sp

    def check(self) -> None:
        """Assert the invariants (tests)."""
        assert self.start <= self.end
        assert set(self._records) == set(range(self.start, self.end)), "window and records differ"
        if self.start < self.end:
            assert self._records[self.start].state not in (ACKNOWLEDGED, ARCHIVED)
        for off, r in self._records.items():
            if r.state == ACQUIRED:
                assert r.member is not None and r.deadline is not None, off
                assert r.delivery_count >= 1, off
            else:
                assert r.member is None and r.deadline is None, off


def _ranges(taken: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    out: list[list[int]] = []
    for off, count in taken:
        if out and out[-1][1] == off - 1 and out[-1][2] == count:
            out[-1][1] = off
        else:
            out.append([off, off, count])
    return [tuple(r) for r in out]


__all__ = ["SharePartition", "SharePartitionConfig", "AVAILABLE", "ACQUIRED", "ACKNOWLEDGED",
           "ARCHIVED", "GAP", "ACCEPT", "RELEASE", "REJECT", "RENEW"]
