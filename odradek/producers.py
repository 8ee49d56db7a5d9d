"""Idempotent-producer state per partition: epochs and recent sequence numbers.

Invariants (as Kafka's ProducerStateManager keeps them):
- For each producer id the table holds its current epoch and the metadata of
  its last ``MAX_CACHED`` batches (first/last sequence, first/last offset).
- A batch whose sequences equal a cached batch is a duplicate: it is answered
  with the offsets it was first written at and not written again.
- Otherwise, within one epoch, a batch must start at last sequence + 1
  (wrapping at 2^31); a new epoch must start at sequence 0.
- State is rebuilt at startup from the batch headers in the log, so it needs
  no files of its own.
"""

from __future__ import annotations

from odradek.protocol import errors
from odradek.protocol.batch import BatchHeader, iter_batches

MAX_CACHED = 5
INT32_MAX = 0x7FFFFFFF


class ProducerEntry:
    __slots__ = ("epoch", "batches", "last_timestamp")

    def __init__(self, epoch: int):
        self.epoch = epoch
        # (first_seq, last_seq, first_offset, last_offset), oldest first
        self.batches: list[tuple[int, int, int, int]] = []
        self.last_timestamp = -1


class ProducerStateTable:
    def __init__(self):
        self.producers: dict[int, ProducerEntry] = {}

    def check(self, h: BatchHeader) -> tuple[int, int | None]:
        """(error_code, duplicate base offset or None) for an incoming batch."""
        entry = self.producers.get(h.producer_id)
        first, last = h.base_sequence, h.last_sequence
        if entry is None:
            if first != 0:
                return errors.OUT_OF_ORDER_SEQUENCE_NUMBER, None
            return errors.NONE, None
        if h.producer_epoch < entry.epoch:
            return errors.INVALID_PRODUCER_EPOCH, None
        if h.producer_epoch > entry.epoch:
            if first != 0:
                return errors.OUT_OF_ORDER_SEQUENCE_NUMBER, None
            return errors.NONE, None
        for bfirst, blast, boff, _ in entry.batches:
            if bfirst == first and blast == last:
                return errors.NONE, boff
        if entry.batches:
            expected = (entry.batches[-1][1] + 1) & INT32_MAX
            if first != expected:
                return errors.OUT_OF_ORDER_SEQUENCE_NUMBER, None
        return errors.NONE, None

    def record(self, h: BatchHeader, base_offset: int) -> None:
        """Remember a batch just written at ``base_offset``."""
        entry = self.producers.get(h.producer_id)
        if entry is None or h.producer_epoch > entry.epoch:
            entry = self.producers[h.producer_id] = ProducerEntry(h.producer_epoch)
        entry.batches.append((h.base_sequence, h.last_sequence, base_offset,
                              base_offset + h.last_offset_delta))
        if len(entry.batches) > MAX_CACHED:
            del entry.batches[0]
        entry.last_timestamp = h.max_timestamp

    def rebuild(self, log, chunk_bytes: int = 8 * 1024 * 1024) -> None:
        """Replay the producer ids and sequences found in ``log``'s batch headers."""
        self.producers.clear()
        offset = log.log_start_offset
        end = log.log_end_offset
        while offset < end:
            result = log.read(offset, chunk_bytes, end)
            if not result.chunks:
                break
            advanced = False
            for chunk in result.chunks:
                for _, h in iter_batches(chunk):
                    if h.next_offset <= offset:
                        continue
                    if h.producer_id >= 0 and h.base_sequence >= 0 and not h.is_control:
                        self.record(h, h.base_offset)
                    offset = h.next_offset
                    advanced = True
            if not advanced:
                break
