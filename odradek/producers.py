"""Idempotent and transactional producer state per partition: epochs, recent
sequence numbers, and the partition's transactions (``odradek.txn_state``).

Invariants (as Kafka's ProducerStateManager keeps them):
- For each producer id the table holds its current epoch and the metadata of
  its last ``MAX_CACHED`` batches (first/last sequence, first/last offset).
- A batch whose sequences equal a cached batch is a duplicate: it is answered
  with the offsets it was first written at and not written again.
- Otherwise, within one epoch, a batch must start at last sequence + 1
  (wrapping at 2^31); a new epoch must start at sequence 0. A producer the
  table does not hold may start at any sequence, as in Kafka 4.
- A producer whose last batch is ``producer.id.expiration.ms`` old, and that
  has no transaction open, is forgotten (``expire``, every
  ``producer.id.expiration.check.interval.ms``, odradek.scheduler).
- A transactional batch begins its producer's transaction at the partition
  (if none is open) at its base offset; a control batch (commit or abort
  marker, ``record_marker``) ends it and moves the producer to the marker's
  epoch (a bumped epoch fences the older one). ``txns`` (a
  :class:`~odradek.txn_state.TxnIndex`) holds the open transactions' first
  offsets and the aborted transactions.
- The table is a pure function of the batch headers in the log (replayed in
  offset order through ``record`` and, for control batches, whose type is in
  their one record, ``record_marker``) and the expiry; as in Kafka, producers
  are not forgotten when the log start offset moves past their batches, only
  when they expire.

Persistence: as in Apache Kafka, a partition takes a *snapshot* of the table
when its log rolls a segment, as of the new segment's base offset ``O``, and at
clean shutdown, as of the log end offset ``O``; never on a timer. Each is
taken on the event loop, where the table and the log agree (``snapshot``: at a
roll, ``Partition`` takes it right after the append that rolled, before it
records that append's batches; the log reports the roll through ``pop_roll``
and knows nothing of producers), and written off the loop (``write_snapshot``:
the log's ``write_aux``, atomic and fsynced) as the partition's
``producer-state.snapshot``: a roll's by the flush the roll schedules
(``ReplicaManager.flush``), after the rolled segment's fsync, so it does not
outrun the log; the shutdown's after each log's last flush. At startup
``rebuild`` loads the snapshot and replays only the batch headers from ``O``
on (``iter_headers``, which on disk reads the 61-byte headers, not the data):
after a crash, normally the active segment only; without a usable snapshot it
replays every header from the log start. A snapshot is usable when
``log_start_offset <= O <= log_end_offset`` and the batch ending at ``O - 1``
still is the one it was taken after (same base and last offset, CRC and
leader epoch: the "anchor", which ``snapshot`` takes from what the log kept of
its last append, ``last_batch_anchor``, reading the header only when the log
does not know it); so a snapshot that outran the fsynced log (power loss) or a
truncated log is ignored even once the log grows past ``O`` again. Snapshots
are an optimisation only: a missing, unreadable or unusable one costs a longer
replay, never a wrong table. ``truncate_to`` on the log also deletes it. (On
a compacted topic, the cleaner may rewrite the batch a roll's snapshot is
anchored on, the last of the rolled segment, with a new CRC: that snapshot
is then ignored, and a restart after a crash replays from the log start.)

Why not at the periodic offset checkpoint (as odradek did before): with many
partitions each moved a little, every checkpoint wrote and fsynced one file
per partition (0.67 ms a file measured on disk: about a minute of a
background thread for 100,000 partitions that got one record each, delaying
the flushes queued behind it). A partition that never rolls is not
snapshotted between shutdowns, and none needs to be: replaying headers costs
about what the recovery after a crash spends re-validating the same range
anyway (measured on disk, page cache warm: 2.8 us a header, 0.28 s for
100,000 one-record batches, against 0.34 s to re-validate them), and with
the default flush policy that recovery re-reads everything since the last
roll (a roll flushes; the recovery point moves only with flushes). With
``flush.messages`` or ``flush.ms`` set, the replay may cover more than the
recovery does: the active segment, as in Kafka. So no partition is singled
out for a periodic snapshot either.

Snapshot format (``producer-state.snapshot``, version 2, big-endian; version
1, without the transactions, is still read)::

    magic            4 bytes  b"OPSS"
    version          int16    1
    offset           int64    O: the state covers every batch below it
    anchor_base      int64    base offset of the batch ending at O - 1 (-1: none)
    anchor_last      int64    its last offset (-1: none)
    anchor_crc       uint32   its CRC-32C header field (0: none)
    anchor_epoch     int32    its partition leader epoch (-1: none)
    count            int32    producer entries that follow
    count times:
      producer_id    int64
      epoch          int16
      last_timestamp int64
      coord_epoch    int32    (version 2 only) coordinator epoch of its last marker, -1: none
      n              int8     cached batches (0..MAX_CACHED), oldest first
      n times: first_seq int32, last_seq int32, first_offset int64, last_offset int64
    (version 2:)
    ongoing          int32    open transactions that follow
      producer_id int64, first_offset int64
    aborted          int32    aborted transactions that follow (Kafka's AbortedTxn)
      producer_id int64, first_offset int64, last_offset int64, last_stable_offset int64
    crc              uint32   CRC-32C of every byte before it
"""

from __future__ import annotations

import logging
import struct

from crc32c import crc32c

from odradek.protocol import errors
from odradek.protocol.batch import CONTROL_FLAG, BatchHeader, iter_batches
from odradek.txn_state import TxnIndex

logger = logging.getLogger(__name__)

MAX_CACHED = 5
INT32_MAX = 0x7FFFFFFF

SNAPSHOT_NAME = "producer-state.snapshot"
SNAPSHOT_MAGIC = b"OPSS"
SNAPSHOT_VERSION = 2
_SNAP_HEAD = struct.Struct(">4shqqqIii")
_SNAP_ENTRY_V1 = struct.Struct(">qhqb")
_SNAP_ENTRY = struct.Struct(">qhqib")
_SNAP_BATCH = struct.Struct(">iiqq")
_SNAP_CRC = struct.Struct(">I")
_NO_ANCHOR = (-1, -1, 0, -1)


class ProducerEntry:
    __slots__ = ("epoch", "batches", "last_timestamp", "coordinator_epoch")

    def __init__(self, epoch: int, coordinator_epoch: int = -1):
        self.epoch = epoch
        self.coordinator_epoch = coordinator_epoch  # of the last marker written for it
        # (first_seq, last_seq, first_offset, last_offset), oldest first
        self.batches: list[tuple[int, int, int, int]] = []
        self.last_timestamp = -1


class SnapshotError(ValueError):
    pass


def _anchor_of(h: BatchHeader | None) -> tuple[int, int, int, int]:
    if h is None:
        return _NO_ANCHOR
    return (h.base_offset, h.last_offset, h.crc, h.partition_leader_epoch)


def _first_header(log, offset: int) -> BatchHeader | None:
    it = iter(log.iter_headers(offset))
    try:
        return next(it, None)
    finally:
        _close(it)


def encode_snapshot(producers: dict, offset: int, anchor=_NO_ANCHOR, txns: TxnIndex | None = None) -> bytes:
    """The snapshot bytes (format in the module docstring) for ``producers`` as of ``offset``."""
    out = bytearray(_SNAP_HEAD.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, offset, *anchor,
                                    len(producers)))
    for pid, e in producers.items():
        batches = e.batches[-MAX_CACHED:]
        out += _SNAP_ENTRY.pack(pid, e.epoch, e.last_timestamp, e.coordinator_epoch, len(batches))
        for b in batches:
            out += _SNAP_BATCH.pack(*b)
    (txns or TxnIndex()).encode(out)
    out += _SNAP_CRC.pack(crc32c(out))
    return bytes(out)


def decode_snapshot(data) -> tuple[int, tuple, dict]:
    """(offset, anchor, producers) from snapshot bytes; raises SnapshotError."""
    return decode_snapshot_txns(data)[:3]


def decode_snapshot_txns(data) -> tuple[int, tuple, dict, TxnIndex]:
    """(offset, anchor, producers, transactions) from snapshot bytes; raises SnapshotError."""
    data = memoryview(data)
    n = len(data)
    if n < _SNAP_HEAD.size + _SNAP_CRC.size:
        raise SnapshotError("snapshot too short")
    if _SNAP_CRC.unpack_from(data, n - 4)[0] != crc32c(data[: n - 4]):
        raise SnapshotError("snapshot CRC mismatch")
    magic, version, offset, ab, al, ac, ae, count = _SNAP_HEAD.unpack_from(data, 0)
    if magic != SNAPSHOT_MAGIC or version not in (1, SNAPSHOT_VERSION):
        raise SnapshotError(f"unsupported snapshot {bytes(magic)!r} version {version}")
    if offset < 0 or count < 0:
        raise SnapshotError("negative offset or count in snapshot")
    producers: dict[int, ProducerEntry] = {}
    pos, end = _SNAP_HEAD.size, n - 4
    try:
        for _ in range(count):
            if version >= 2:
                pid, epoch, ts, coordinator_epoch, k = _SNAP_ENTRY.unpack_from(data, pos)
                pos += _SNAP_ENTRY.size
            else:
                pid, epoch, ts, k = _SNAP_ENTRY_V1.unpack_from(data, pos)
                pos += _SNAP_ENTRY_V1.size
                coordinator_epoch = -1
            if not 0 <= k <= MAX_CACHED:
                raise SnapshotError(f"bad batch count {k} in snapshot")
            e = ProducerEntry(epoch, coordinator_epoch)
            e.last_timestamp = ts
            for _ in range(k):
                e.batches.append(_SNAP_BATCH.unpack_from(data, pos))
                pos += _SNAP_BATCH.size
            producers[pid] = e
        txns = TxnIndex()
        if version >= 2:
            txns, pos = TxnIndex.decode(data, pos)
    except struct.error as exc:
        raise SnapshotError("truncated snapshot") from exc
    if pos != end:
        raise SnapshotError("trailing bytes in snapshot")
    return offset, (ab, al, ac, ae), producers, txns


class ProducerStateTable:
    def __init__(self):
        self.producers: dict[int, ProducerEntry] = {}
        self.txns = TxnIndex()  # the partition's open and aborted transactions
        self.snapshot_offset: int | None = None  # of the last snapshot loaded or taken
        self.rebuild_stats: dict = {}

    def check(self, h: BatchHeader) -> tuple[int, int | None]:
        """(error_code, duplicate base offset or None) for an incoming batch."""
        entry = self.producers.get(h.producer_id)
        first, last = h.base_sequence, h.last_sequence
        if entry is None:
            # A producer this partition keeps no state for (new, or expired after
            # producer.id.expiration.ms): any first sequence is taken, as Kafka 4 takes it.
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
        """Remember a batch (idempotent, transactional or both; not a control
        batch) just written at ``base_offset``."""
        entry = self.producers.get(h.producer_id)
        if entry is None or h.producer_epoch > entry.epoch:
            entry = self.producers[h.producer_id] = ProducerEntry(
                h.producer_epoch, -1 if entry is None else entry.coordinator_epoch)
        if h.base_sequence >= 0:
            entry.batches.append((h.base_sequence, h.last_sequence, base_offset,
                                  base_offset + h.last_offset_delta))
            if len(entry.batches) > MAX_CACHED:
                del entry.batches[0]
        entry.last_timestamp = h.max_timestamp
        if h.is_transactional:
            self.txns.begin(h.producer_id, base_offset)

    def in_txn(self, producer_id: int) -> bool:
        """Whether ``producer_id`` has a transaction open at this partition."""
        return self.txns.in_txn(producer_id)

    def expire(self, now: int, expiration_ms: int) -> int:
        """Forget the producers whose last batch's timestamp is ``expiration_ms``
        or more before ``now`` and that have no transaction open here (Kafka's
        ``producer.id.expiration.ms``); how many were."""
        gone = [pid for pid, e in self.producers.items()
                if now - e.last_timestamp >= expiration_ms and not self.txns.in_txn(pid)]
        for pid in gone:
            del self.producers[pid]
        return len(gone)

    def check_marker(self, producer_id: int, epoch: int, coordinator_epoch: int = -1) -> int:
        """The error for a marker of ``producer_id`` at ``epoch`` from a
        coordinator at ``coordinator_epoch``, or 0: an older producer epoch
        than the producer's is refused (INVALID_PRODUCER_EPOCH), and so is an
        older coordinator epoch than the last marker's
        (TRANSACTION_COORDINATOR_FENCED: a coordinator since replaced), as Kafka does."""
        entry = self.producers.get(producer_id)
        if entry is not None and epoch < entry.epoch:
            return errors.INVALID_PRODUCER_EPOCH
        if entry is not None and coordinator_epoch < entry.coordinator_epoch:
            return errors.TRANSACTION_COORDINATOR_FENCED
        return 0

    def marker_needed(self, producer_id: int, epoch: int) -> bool:
        """Whether a marker would end or fence anything: an open transaction, or
        an epoch above the producer's. Markers sent again (a coordinator that
        restarted before recording that they were written) are not appended twice."""
        entry = self.producers.get(producer_id)
        return self.txns.in_txn(producer_id) or entry is None or epoch > entry.epoch

    def record_marker(self, producer_id: int, epoch: int, offset: int, commit: bool,
                      timestamp: int = -1, coordinator_epoch: int = -1):
        """Remember a commit or abort marker written at ``offset``; return the
        aborted transaction it ended, if any."""
        entry = self.producers.get(producer_id)
        if entry is None or epoch > entry.epoch:
            entry = self.producers[producer_id] = ProducerEntry(epoch)
        entry.last_timestamp = max(entry.last_timestamp, timestamp)
        entry.coordinator_epoch = max(entry.coordinator_epoch, coordinator_epoch)
        return self.txns.end(producer_id, offset, commit)

    # -- snapshots --------------------------------------------------------
    def snapshot(self, log, force: bool = False, offset: int | None = None,
                 anchor: tuple[int, int, int, int] | None = None) -> bytes | None:
        """The table as snapshot bytes as of ``offset`` (default: ``log``'s end
        offset; the table must cover exactly the batches below it), or None
        when no snapshot is needed (unchanged offset since the last one, unless
        ``force``) or it cannot be taken. ``anchor``: the batch ending at
        ``offset - 1`` as the log knew it (read from the log when None). Call
        on the event loop, where the table and the log agree; write the result
        with ``write_snapshot``."""
        try:
            end, start = log.log_end_offset, log.log_start_offset
            at_end = offset is None or offset == end
            if not at_end:
                end = offset
            if not force and (end == self.snapshot_offset
                              or (end == start and not self.producers)):
                return None  # unchanged, or nothing a snapshot would save
            if end > start:  # the batch ending at end - 1; what the log knows of it saves a read
                anchor = anchor or (getattr(log, "last_batch_anchor", None) if at_end else None) \
                    or _anchor_of(_first_header(log, end - 1))
            else:
                anchor = _NO_ANCHOR
            self.txns.prune(start)
            data = encode_snapshot(self.producers, end, anchor, self.txns)
        except Exception:  # an optimisation only: never fail an append or shutdown
            logger.exception("producer snapshot of %s failed", log)
            return None
        self.snapshot_offset = end
        return data

    def load_snapshot(self, log) -> tuple[int, tuple, dict, TxnIndex] | None:
        """The log's snapshot decoded, or None (absent, unreadable or corrupt)."""
        try:
            raw = log.read_aux(SNAPSHOT_NAME)
        except OSError as e:
            logger.warning("cannot read producer snapshot: %s", e)
            return None
        if raw is None:
            return None
        try:
            return decode_snapshot_txns(raw)
        except SnapshotError as e:
            logger.warning("ignoring producer snapshot: %s", e)
            return None

    def rebuild(self, log) -> None:
        """Load the producer snapshot, if usable (see the module docstring), and
        replay the batch headers after it -- or all of them from the log start.
        ``rebuild_stats`` tells which: the offset replayed from, the snapshot
        offset used (None if none) and the number of headers read."""
        self.producers = {}
        self.txns = TxnIndex()
        self.snapshot_offset = None
        start, end = log.log_start_offset, log.log_end_offset
        offset, headers, read = start, None, 0
        snap = self.load_snapshot(log)
        if snap is not None:
            o, anchor, producers, txns = snap
            if not start <= o <= end:
                logger.warning("ignoring producer snapshot at %d: outside the log [%d, %d]",
                               o, start, end)
            else:
                if o > start:  # the batch ending at o - 1 must be the one it was taken after
                    headers = iter(log.iter_headers(o - 1))
                    read = 1
                    if _anchor_of(next(headers, None)) != tuple(anchor):
                        logger.warning("ignoring producer snapshot at %d: the log before it "
                                       "changed", o)
                        _close(headers)
                        headers = None
                        o = None
                else:
                    headers = iter(log.iter_headers(o))
                if o is not None:
                    self.producers, self.snapshot_offset, offset = producers, o, o
                    self.txns = txns
        from_offset = offset
        if headers is None:
            headers = log.iter_headers(start)
        record = self.record
        for h in headers:
            read += 1
            nxt = h.base_offset + h.last_offset_delta + 1
            if nxt <= offset:
                continue
            if h.producer_id >= 0:
                if h.attributes & CONTROL_FLAG:
                    marker = _marker_of(log, h)
                    if marker is not None:
                        self.record_marker(h.producer_id, h.producer_epoch, h.base_offset, marker[0],
                                           h.max_timestamp, marker[1])
                elif h.base_sequence >= 0 or h.is_transactional:
                    record(h, h.base_offset)
            offset = nxt
        self.txns.prune(start)
        self.rebuild_stats = {"from_offset": from_offset, "snapshot_offset": self.snapshot_offset,
                              "headers_read": read}


def marker_in(buf, pos: int = 0) -> tuple[bool, int] | None:
    """(commit?, coordinator epoch) of the control batch at ``pos`` in ``buf``
    (None: not a transaction marker, or unreadable): its one record's key
    and value (Kafka's EndTxnMarker)."""
    from odradek.protocol.records import CONTROL_ABORT, CONTROL_COMMIT, InvalidBatch, decode_batch, \
        decode_control_key, decode_end_txn_marker

    try:
        _, records = decode_batch(buf, pos)
        if not records:
            return None
        kind = decode_control_key(records[0].key).type
        if kind not in (CONTROL_COMMIT, CONTROL_ABORT):
            return None
        return kind == CONTROL_COMMIT, decode_end_txn_marker(records[0].value).coordinator_epoch
    except (InvalidBatch, IndexError, ValueError) as e:
        logger.warning("unreadable control batch: %s", e)
        return None


def _marker_of(log, h: BatchHeader) -> tuple[bool, int] | None:
    """``marker_in`` for the control batch ``h`` of ``log`` (read from it)."""
    try:
        res = log.read(h.base_offset, h.size, h.last_offset + 1, min_one=True)
    except Exception as e:
        logger.warning("cannot read the control batch at %d: %s", h.base_offset, e)
        return None
    buf = b"".join(bytes(c) for c in res.chunks)
    for pos, bh in iter_batches(buf):
        if bh.base_offset == h.base_offset:
            return marker_in(buf, pos)
    return None


def _close(it) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()


def write_snapshot(plog, data: bytes | None) -> bool:
    """Write snapshot bytes from ``ProducerStateTable.snapshot`` as ``plog``'s
    producer snapshot (atomic and fsynced: blocking, run it off the event loop).
    A failure is logged, not raised: a snapshot only shortens the next rebuild."""
    if data is None:
        return False
    try:
        plog.write_aux(SNAPSHOT_NAME, data)
        return True
    except Exception:
        logger.exception("writing producer snapshot of %s failed", getattr(plog, "dir", plog))
        return False
