"""Log compaction: the log cleaner, for logs whose cleanup.policy has ``compact``.

Theory of operation (Apache Kafka's log cleaner is the reference):

- Per log the cleaner keeps a *clean point*, the offset below which the log was
  cleaned, in ``cleaner-offset-checkpoint`` (Kafka's offset-checkpoint format,
  a broker metadata file in the data dir). The *dirty section* runs from it to
  the *first uncleanable offset*: the active segment's base, or earlier the
  first segment holding a record newer than min.compaction.lag.ms, or the one
  holding the high watermark. Everything is done per whole segment, and the
  active segment is never touched.
- A log is cleaned when its dirty ratio (dirty bytes / bytes from the log start
  to the first uncleanable offset) exceeds min.cleanable.dirty.ratio, when its
  first dirty segment is older than max.compaction.lag.ms, or, when nothing
  else is due, when a tombstone it holds has passed its delete horizon. The
  dirtiest log goes first; with nothing to do the cleaner sleeps for
  log.cleaner.backoff.ms.
- Cleaning a log: (1) a worker thread builds the *offset map*, key -> last
  offset, over the dirty section (a budget, log.cleaner.dedupe.buffer.size,
  may stop it at a segment boundary; the cleaned range then ends there);
  (2) the segments from the log start to the end of the mapped range are
  grouped (consecutive, at most segment.bytes together); (3) for each group a
  worker thread writes one new segment keeping, of each batch, the records
  that are the latest for their key -- all of the batch copied byte for byte
  when nothing changes, else rebuilt with the original offsets (gaps), base
  offset, last offset delta, producer fields, leader epoch and codec -- and
  the event loop swaps it in (``commit_swap``: appends and reads see the old
  segments or the new one, never a mix; durable renames off the loop; see
  log.py for the crash-safe file protocol); (4) the clean point moves to the
  end of the range.
- Records without a key are dropped. A batch left empty is dropped unless
  it may carry producer state (idempotence) or it is the last batch of its
  group (a cleaned segment always ends at the offset its group ended at, so
  segments stay contiguous).
- Transactions, as Kafka's cleaner treats them (``TxnCleaning``): nothing at
  or above the last stable offset is cleaned (``examine``), so every
  transaction met has ended; records of aborted transactions (the log's
  AbortedTxn entries) are removed and never enter the offset map; records of
  committed transactions compact like any other. A marker stays while its
  transaction's data may be in the log (a batch of it was walked in this
  pass); once none is, it is stamped with a delete horizon like a tombstone
  and removed by a pass at or after it. Batches keep their producer id,
  epoch and sequence: the batches a producer table caches are kept (emptied
  when all their records go), and a marker that is its producer's last entry
  (an epoch bump, e.g. a fencing abort) is kept whole, so a rebuilt producer
  table equals the one before (Kafka keeps only each producer's last batch,
  and such a marker as an empty batch; odradek's rebuild reads the epoch
  from the marker's record, so keeps it whole).
- Tombstones (null values): the first cleaning that keeps one stamps its batch
  with a *delete horizon* (clean time + delete.retention.ms), as Kafka does for
  magic 2: attribute bit 6 set and the horizon in the base timestamp field,
  record timestamp deltas relative to it (so record timestamps read the same).
  A later cleaning at or past the horizon drops the tombstone. The horizon
  lives in the batch, so it survives restarts; the earliest pending horizon of
  each log is remembered (and recomputed from batch headers after a restart)
  to know when a log needs a pass for its tombstones alone.

Cleaning steps are written once, as a generator (``clean_steps``) that runs on
the event loop and yields the blocking parts as callables: ``clean_log`` runs
them inline (tests), ``LogCleaner`` in its worker thread. Not implemented:
the I/O throttle,
several cleaner threads, and forcing a roll of the active segment when
max.compaction.lag.ms passes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from odradek.protocol.batch import (
    ATTRIBUTES_OFFSET,
    CRC_OFFSET,
    DELETE_HORIZON_FLAG,
    compute_crc,
)
from odradek.protocol.records import build_batch, decode_batch
from odradek.clock import now_ms
from odradek.producers import ProducerStateTable, marker_in

log = logging.getLogger("odradek.cleaner")

CHECKPOINT_FILE = "cleaner-offset-checkpoint"
LONG_MAX = 2**63 - 1
DAY_MS = 24 * 3600 * 1000
DEFAULT_DEDUPE_BYTES = 128 * 1024 * 1024
_ENTRY_COST = 100  # approximate bytes an offset-map entry costs besides its key
_MAX_KEY = 32  # longer keys are mapped by a 16-byte digest
_MAX_REL = 0x7FFFFFFF
_H = struct.Struct(">h")
_I = struct.Struct(">I")


class CleanerAborted(Exception):
    """The cleaner is stopping or the log was closed: the pass is abandoned."""


@dataclass
class CompactionConfig:
    """The topic settings compaction acts on (Kafka's names)."""

    delete_retention_ms: int = DAY_MS  # delete.retention.ms
    min_cleanable_ratio: float = 0.5  # min.cleanable.dirty.ratio
    min_compaction_lag_ms: int = 0  # min.compaction.lag.ms
    max_compaction_lag_ms: int = LONG_MAX  # max.compaction.lag.ms
    segment_bytes: int = 1024**3  # segment.bytes: the largest group of segments merged

    @classmethod
    def from_topic(cls, topic_config) -> "CompactionConfig":
        return cls(
            delete_retention_ms=int(topic_config.get("delete.retention.ms")),
            min_cleanable_ratio=float(topic_config.get("min.cleanable.dirty.ratio")),
            min_compaction_lag_ms=int(topic_config.get("min.compaction.lag.ms")),
            max_compaction_lag_ms=int(topic_config.get("max.compaction.lag.ms")),
            segment_bytes=topic_config.segment_bytes,
        )


def is_compacted(lg) -> bool:
    return "compact" in lg.config.cleanup_policy


# -- what is cleanable ---------------------------------------------------------

@dataclass
class LogToClean:
    log: object
    segments: list  # all of them, oldest first; the last is the active one
    first_dirty: int
    first_uncleanable: int
    clean_bytes: int
    dirty_bytes: int
    must_clean: bool  # max.compaction.lag.ms passed for the first dirty segment

    @property
    def ratio(self) -> float:
        total = self.clean_bytes + self.dirty_bytes
        return self.dirty_bytes / total if total else 0.0

    def due(self, cfg: CompactionConfig) -> bool:
        return self.dirty_bytes > 0 and (self.must_clean or self.ratio > cfg.min_cleanable_ratio)


def examine(lg, clean_point: int | None, cfg: CompactionConfig, now: int,
            last_stable_offset: int | None = None) -> LogToClean:
    """Where ``lg``'s dirty section lies and how dirty it is (cheap: segment
    metadata). Nothing at or above ``last_stable_offset`` (default: the high
    watermark) is cleanable: an open transaction's data stays as written."""
    segs = lg.segments_for_cleaning()
    active = segs[-1]
    start = max(lg.log_start_offset, segs[0].base)
    if clean_point is None or not start <= clean_point <= active.base:
        first_dirty = start  # none yet, or stale (log truncated, topic recreated)
    else:
        first_dirty = clean_point
    fu = active.base
    hw = lg.high_watermark
    if last_stable_offset is not None:
        hw = min(hw, last_stable_offset)
    for i, seg in enumerate(segs[:-1]):
        if segs[i + 1].base > hw:  # holds records above the high watermark (or the LSO)
            fu = min(fu, seg.base)
            break
    if cfg.min_compaction_lag_ms > 0:
        for i, seg in enumerate(segs[:-1]):
            if segs[i + 1].base > first_dirty and \
                    seg.largest_timestamp() > now - cfg.min_compaction_lag_ms:
                fu = min(fu, seg.base)
                break
    clean = dirty = 0
    first_dirty_seg = None
    for i, seg in enumerate(segs[:-1]):
        if segs[i + 1].base <= first_dirty:
            clean += seg.size
        elif seg.base < fu:
            dirty += seg.size
            if first_dirty_seg is None:
                first_dirty_seg = seg
    must = (first_dirty_seg is not None and cfg.max_compaction_lag_ms < LONG_MAX
            and now - first_dirty_seg.first_timestamp() > cfg.max_compaction_lag_ms)
    return LogToClean(lg, segs, first_dirty, fu, clean, dirty, must)


# -- the record-level work (worker thread) --------------------------------------

class TxnCleaning:
    """The transactions a cleaning pass walks through, in offset order (Kafka's
    CleanedTransactionMetadata): which data batches belong to aborted
    transactions (dropped), and which markers may go.

    ``aborted`` is the log's AbortedTxn entries; those overlapping ``[start,
    end)`` are taken in first-offset order as the walk reaches them. A data
    batch of a producer with such an aborted transaction under way is
    aborted data (``on_batch`` answers True); any other transactional batch
    belongs to a committed transaction (below the last stable offset every
    transaction has ended). A marker may be discarded (``on_marker`` answers
    True) when no batch of its transaction was walked since the previous
    marker of its producer: its data is gone. An abort marker whose data was
    still walked is kept, and its AbortedTxn goes to ``kept`` (what the
    cleaned segments' aborted-transaction index holds)."""

    def __init__(self, aborted=(), start: int = 0, end: int = LONG_MAX):
        self._pending = sorted((a for a in aborted if a.last_offset >= start and a.first_offset < end),
                               key=lambda a: a.first_offset)
        self._next = 0
        self.aborted_ongoing: dict[int, list] = {}  # producer id -> [AbortedTxn, data walked?]
        self.committed_ongoing: set[int] = set()
        self.kept: list = []

    def _reach(self, offset: int) -> None:
        p = self._pending
        while self._next < len(p) and p[self._next].first_offset <= offset:
            a = p[self._next]
            self._next += 1
            self.aborted_ongoing.setdefault(a.producer_id, [a, False])

    def on_batch(self, h) -> bool:
        """A data batch walked: True if it is aborted data."""
        self._reach(h.last_offset)
        if not h.is_transactional:
            return False
        e = self.aborted_ongoing.get(h.producer_id)
        if e is not None:
            e[1] = True
            return True
        self.committed_ongoing.add(h.producer_id)
        return False

    def on_marker(self, h, commit: bool | None) -> bool:
        """A control batch walked (``commit``: its type, None if it has no
        marker record): True if its transaction has no data left before it."""
        self._reach(h.last_offset)
        pid = h.producer_id
        if commit is None:
            return True
        if commit:
            walked = pid in self.committed_ongoing
            self.committed_ongoing.discard(pid)
            return not walked
        e = self.aborted_ongoing.pop(pid, None)
        if e is not None and e[1]:
            self.kept.append(e[0])
            return False
        return True


def _map_key(key: bytes) -> bytes:
    return key if len(key) <= _MAX_KEY else hashlib.blake2b(key, digest_size=16).digest()


def build_offset_map(lg, dirty: list, end: int, budget: int, should_abort,
                     aborted=()) -> tuple[dict, int]:
    """Key -> last offset over the ``dirty`` segments (whole ones; at least the
    first, then while under ``budget`` bytes). Returns the map and the offset
    it covers up to: ``end`` if every segment made it, else the base of the
    first segment left out. Records of aborted transactions (``aborted``:
    the log's AbortedTxn entries) are left out, so they never hide a value;
    committed transactions' records count like any other."""
    offsets: dict[bytes, int] = {}
    cost = 0
    txn = TxnCleaning(aborted, dirty[0].base if dirty else end, end)
    for n, seg in enumerate(dirty):
        if n and cost > budget:
            return offsets, seg.base
        for h, batch in lg.segment_batches(seg):
            if should_abort():
                raise CleanerAborted()
            if h.is_control:
                m = marker_in(batch)
                txn.on_marker(h, None if m is None else m[0])
                continue
            if txn.on_batch(h):
                continue
            for r in decode_batch(batch)[1]:
                if r.key is not None:
                    k = _map_key(r.key)
                    if k not in offsets:
                        cost += len(k) + _ENTRY_COST
                    offsets[k] = r.offset
    return offsets, end


def _set_delete_horizon(batch: bytes) -> bytes:
    out = bytearray(batch)
    attrs = _H.unpack_from(out, ATTRIBUTES_OFFSET)[0]
    _H.pack_into(out, ATTRIBUTES_OFFSET, attrs | DELETE_HORIZON_FLAG)
    _I.pack_into(out, CRC_OFFSET, compute_crc(out, 0, len(out)))
    return bytes(out)


def empty_batch(h) -> bytes:
    """A batch with no records standing for ``h``'s offsets and producer state."""
    return build_batch(
        [], base_offset=h.base_offset, last_offset_delta=h.last_offset_delta,
        base_timestamp=h.max_timestamp, max_timestamp=h.max_timestamp,
        producer_id=h.producer_id, producer_epoch=h.producer_epoch,
        base_sequence=h.base_sequence, transactional=h.is_transactional,
        control=h.is_control, log_append_time=h.log_append_time,
        partition_leader_epoch=h.partition_leader_epoch)


def filter_batch(h, batch, offsets: dict, now: int, delete_retention_ms: int, keep_empty,
                 txn: TxnCleaning | None = None, keep_marker=lambda h: False):
    """What cleaning makes of one batch: (bytes or None to drop it, the delete
    horizon of the tombstones or marker it keeps or None). Unchanged batches
    come back as the very same object. ``txn`` follows the transactions
    (None: no transaction is aborted); ``keep_marker(h)`` says a marker is
    its producer's last entry and stays whole (its epoch fences)."""
    txn = txn if txn is not None else TxnCleaning()
    horizon = h.base_timestamp if h.attributes & DELETE_HORIZON_FLAG else None
    if h.is_control:
        m = marker_in(batch)
        discardable = txn.on_marker(h, None if m is None else m[0])
        if m is None:  # no marker record left: an empty batch of an earlier cleaning
            return (batch if keep_empty(h) else None), None
        if not discardable or keep_marker(h):
            return batch, None
        # Its transaction's data is gone: like a tombstone, the marker stays
        # until delete.retention.ms after the first cleaning that saw that.
        if horizon is None:
            horizon = min(now + delete_retention_ms, LONG_MAX)
            return _rebuild(h, decode_batch(batch)[1], horizon), horizon
        if now >= horizon:
            return None, None
        return batch, horizon
    if txn.on_batch(h):  # aborted data
        return (empty_batch(h) if keep_empty(h) else None), None
    records = decode_batch(batch)[1]
    if not records:  # an empty batch an earlier cleaning kept
        return (batch if keep_empty(h) else None), None
    kept = []
    tombstones = False
    for r in records:
        if r.key is None:
            continue
        latest = offsets.get(_map_key(r.key))
        if latest is not None and latest > r.offset:
            continue
        if r.value is None:
            if horizon is not None and now >= horizon:
                continue
            tombstones = True
        kept.append(r)
    if len(kept) == len(records) and (horizon is not None or not tombstones):
        return batch, (horizon if tombstones else None)
    if not kept:
        return (empty_batch(h) if keep_empty(h) else None), None
    if tombstones and horizon is None:
        horizon = min(now + delete_retention_ms, LONG_MAX)
    elif not tombstones:
        horizon = None
    return _rebuild(h, kept, horizon), horizon


def _rebuild(h, kept: list, horizon: int | None) -> bytes:
    """``h``'s batch holding only the records ``kept`` (original offsets), with
    ``horizon`` stamped as its delete horizon when not None."""
    lat = h.log_append_time
    out = build_batch(
        kept, base_offset=h.base_offset, preserve_offsets=True,
        last_offset_delta=h.last_offset_delta, compression=h.compression,
        producer_id=h.producer_id, producer_epoch=h.producer_epoch,
        base_sequence=h.base_sequence, log_append_time=lat,
        transactional=h.is_transactional, control=h.is_control,
        partition_leader_epoch=h.partition_leader_epoch,
        base_timestamp=horizon,  # None: the first record's
        max_timestamp=h.max_timestamp if lat else None)
    if horizon is not None:
        out = _set_delete_horizon(out)
    return out


@dataclass
class GroupOutcome:
    changed: bool = False
    bytes_in: int = 0
    bytes_out: int = 0
    batches_dropped: int = 0
    horizon: int | None = None  # earliest delete horizon of the tombstones kept


def clean_group(lg, group: list, cleaned, offsets: dict, now: int, cfg: CompactionConfig,
                keep_empty, should_abort, txn: TxnCleaning | None = None,
                keep_marker=lambda h: False) -> GroupOutcome:
    """Write the cleaned contents of ``group`` into ``cleaned`` and finish it
    (when anything changed: otherwise the caller discards it)."""
    out = GroupOutcome(changed=len(group) > 1)
    dropped_last = None
    kept_before = len(txn.kept) if txn is not None else 0
    for seg in group:
        out.bytes_in += seg.size
        for h, batch in lg.segment_batches(seg):
            if should_abort():
                raise CleanerAborted()
            data, horizon = filter_batch(h, batch, offsets, now, cfg.delete_retention_ms,
                                         keep_empty, txn, keep_marker)
            if data is None:
                out.changed = True
                out.batches_dropped += 1
                dropped_last = h
                continue
            dropped_last = None
            if data is not batch:
                out.changed = True
            if horizon is not None and (out.horizon is None or horizon < out.horizon):
                out.horizon = horizon
            cleaned.append(data)
    if dropped_last is not None:  # the segment must still end where the group did
        cleaned.append(empty_batch(dropped_last))
        out.batches_dropped -= 1
    if txn is not None:  # the aborted transactions whose markers this group keeps
        kept = txn.kept[kept_before:]
        if [a.last_offset for a in kept] != [a.last_offset for s in group for a in s.aborted]:
            out.changed = True
        for a in kept:
            cleaned.add_aborted(a)
    out.bytes_out = cleaned.size
    if out.changed and cleaned.size:
        cleaned.finish()
    else:
        out.changed = False
    return out


def group_segments(segs: list, count: int, max_bytes: int) -> list[list]:
    """Split ``segs[:count]`` into runs of consecutive segments to merge: at
    most ``max_bytes`` together and relative offsets within 32 bits (``segs``
    goes on past ``count``, so every segment's end is known)."""
    groups = []
    i = 0
    while i < count:
        group = [segs[i]]
        size = segs[i].size
        j = i + 1
        while j < count and size + segs[j].size <= max_bytes \
                and segs[j + 1].base - 1 - segs[i].base <= _MAX_REL:
            group.append(segs[j])
            size += segs[j].size
            j += 1
        groups.append(group)
        i = j
    return groups


def scan_horizons(lg, segs: list, should_abort) -> int | None:
    """Earliest delete horizon stamped on a batch of ``segs`` (headers only)."""
    best = None
    for seg in segs:
        for h, _ in lg.segment_batches(seg):
            if should_abort():
                raise CleanerAborted()
            if h.attributes & DELETE_HORIZON_FLAG:
                if best is None or h.base_timestamp < best:
                    best = h.base_timestamp
    return best


# -- one cleaning pass ------------------------------------------------------------

@dataclass
class CleanResult:
    end_offset: int = 0  # the new clean point
    complete: bool = True  # False: the log changed under the cleaner, a swap was refused
    groups: int = 0
    swapped: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    horizon: int | None = None
    outcomes: list = field(default_factory=list)


def producer_retention(producers: dict) -> tuple[set, dict]:
    """What cleaning keeps for a producer table's sake (``ProducerStateTable.producers``):
    the base offsets of the batches it caches (kept, emptied if need be, so
    their sequence numbers survive a rebuild) and, for producers whose last
    entry is a marker (an epoch bump cleared their batches), producer id ->
    that epoch (their markers of that epoch stay: they fence older epochs)."""
    batches = {b[2] for e in producers.values() for b in e.batches}
    markers = {pid: e.epoch for pid, e in producers.items() if not e.batches}
    return batches, markers


def clean_steps(ltc: LogToClean, cfg: CompactionConfig, now: int, *,
                producer_batches: set | None = None, producer_markers: dict | None = None,
                aborted=(), map_budget: int = DEFAULT_DEDUPE_BYTES,
                should_abort=lambda: False):
    """One cleaning pass over ``ltc.log``, as a generator run on the event loop:
    it yields callables to run in a worker thread and is sent their results
    (or thrown their exceptions); it returns a CleanResult.

    ``producer_batches``: base offsets of batches whose header the producer
    state needs (kept as empty batches if all their records go); None keeps
    every idempotent batch's header. ``producer_markers``: see
    ``producer_retention`` (None: none). ``aborted``: the log's AbortedTxn
    entries (their data is removed); ``ltc`` must end at or below the last
    stable offset (``examine``), so every transaction met has ended."""
    lg = ltc.log
    segs = ltc.segments
    fu = ltc.first_uncleanable
    n = 0
    while n < len(segs) - 1 and segs[n].base < fu:
        n += 1
    pinned = segs[:n]
    if producer_batches is None:
        def keep_empty(h):
            return h.producer_id >= 0
    else:
        def keep_empty(h):
            return h.base_offset in producer_batches
    markers = producer_markers or {}

    def keep_marker(h):
        return markers.get(h.producer_id, -2) == h.producer_epoch

    aborted = list(aborted)
    lg.pin_segments(pinned)
    try:
        dirty = [s for i, s in enumerate(pinned) if segs[i + 1].base > ltc.first_dirty]
        offsets, end = yield partial(build_offset_map, lg, dirty, fu, map_budget, should_abort,
                                     aborted)
        count = 0
        while count < n and segs[count].base < end:
            count += 1
        guard = segs[count]
        result = CleanResult(end_offset=end)
        txn = TxnCleaning(aborted, segs[0].base if segs else 0, end)
        for group in group_segments(segs, count, cfg.segment_bytes):
            if should_abort():
                raise CleanerAborted()
            result.groups += 1
            cleaned = lg.cleaned_segment(group[0].base, group[0].created_ms)
            try:
                outcome = yield partial(clean_group, lg, group, cleaned, offsets, now, cfg,
                                        keep_empty, should_abort, txn, keep_marker)
            except BaseException:
                cleaned.abort()
                raise
            result.outcomes.append(outcome)
            result.bytes_in += outcome.bytes_in
            if outcome.horizon is not None and (result.horizon is None
                                                or outcome.horizon < result.horizon):
                result.horizon = outcome.horizon
            if not outcome.changed:
                cleaned.abort()
                result.bytes_out += outcome.bytes_in
                continue
            if not lg.commit_swap(group, cleaned, guard):
                result.complete = False
                result.bytes_out += outcome.bytes_in
                continue
            result.swapped += 1
            result.bytes_out += outcome.bytes_out
            # Committed: the rest runs even if the cleaner is stopping.
            yield lg.sync_dir
            lg.finish_swap(group, cleaned)
            yield lg.sync_dir
        return result
    finally:
        lg.unpin_segments(pinned)


def run_steps(gen):
    """Drive a ``clean_steps`` generator inline (blocking calls on this thread)."""
    try:
        req = next(gen)
        while True:
            try:
                res = req()
            except Exception as e:
                req = gen.throw(e)
            else:
                req = gen.send(res)
    except StopIteration as stop:
        return stop.value


def clean_log(lg, cfg: CompactionConfig, now: int | None = None, clean_point: int | None = None,
              *, force: bool = False, **kwargs) -> CleanResult | None:
    """Clean ``lg`` synchronously if it is due (or ``force``); None if not cleaned.
    Without ``aborted`` in ``kwargs``, the transactions, the last stable
    offset and what producer state needs come from a producer table rebuilt
    from the log (as a partition has them)."""
    now = now_ms() if now is None else now
    lso = None
    if "aborted" not in kwargs:
        table = ProducerStateTable()
        table.rebuild(lg)
        lg.restore_aborted(table.txns.aborted)
        batches, markers = producer_retention(table.producers)
        kwargs["aborted"] = list(table.txns.aborted)
        kwargs.setdefault("producer_batches", batches)
        kwargs.setdefault("producer_markers", markers)
        lso = table.txns.last_stable_offset(lg.high_watermark)
    ltc = examine(lg, clean_point, cfg, now, lso)
    if not (force or ltc.due(cfg)):
        return None
    return run_steps(clean_steps(ltc, cfg, now, **kwargs))


# -- the broker's background cleaner -------------------------------------------------

class LogCleaner:
    """Cleans the broker's compacted logs, one at a time, the dirtiest first.

    ``run`` is the asyncio task; cancelling it lets the step in the worker
    thread finish (a committed swap is always completed) before returning."""

    def __init__(self, broker):
        self.broker = broker
        self.clean_points: dict[tuple[str, int], int] = {}
        self._horizons: dict[tuple[str, int], tuple[object, int | None]] = {}
        self._failed = weakref.WeakSet()  # logs whose cleaning failed: left alone until restart
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="odradek-cleaner")
        self.stopping = False
        self.passes = 0  # cleaning passes done (tests wait on it)
        self.last_result: CleanResult | None = None

    # Read at each use: both are dynamic broker configs.
    @property
    def backoff(self) -> float:
        return max(self.broker.config.get_int("log.cleaner.backoff.ms", 15000), 1) / 1000

    @property
    def map_budget(self) -> int:
        return self.broker.config.get_int("log.cleaner.dedupe.buffer.size", DEFAULT_DEDUPE_BYTES)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            raw = await loop.run_in_executor(self._executor, self.broker.store.read_metadata,
                                             CHECKPOINT_FILE)
            self.clean_points = self._parse(raw)
            while True:
                try:
                    did = await self.clean_one()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("log cleaner pass failed")
                    did = False
                await asyncio.sleep(0 if did else self.backoff)
        finally:
            self.stopping = True
            self._executor.shutdown(wait=False)

    @staticmethod
    def _parse(raw) -> dict:
        from odradek.storage.checkpoints import load_offset_checkpoint

        return load_offset_checkpoint(raw or None, CHECKPOINT_FILE)

    async def _drive(self, gen):
        """Run a ``clean_steps`` generator: its blocking steps in the worker
        thread, the rest here. A cancellation waits for the step in flight,
        lets the pass wind down (should_abort turns true) and is re-raised."""
        loop = asyncio.get_running_loop()
        cancelled = False
        try:
            req = next(gen)
            while True:
                fut = loop.run_in_executor(self._executor, req)
                while True:
                    try:
                        res, exc = await asyncio.shield(fut), None
                        break
                    except asyncio.CancelledError:
                        if fut.done() and fut.cancelled():
                            raise
                        cancelled = True
                        self.stopping = True
                    except Exception as e:
                        res, exc = None, e
                        break
                req = gen.send(res) if exc is None else gen.throw(exc)
        except StopIteration as stop:
            result = stop.value
        except CleanerAborted:
            if cancelled:
                raise asyncio.CancelledError() from None
            raise
        if cancelled:
            raise asyncio.CancelledError()
        return result

    async def _in_thread(self, fn, *args):
        fut = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            self.stopping = True
            await asyncio.wait([fut])
            raise

    def _should_abort(self, lg):
        return lambda: self.stopping or lg.closed

    async def clean_one(self) -> bool:
        """Pick the log most in need of cleaning and clean it; False if none is."""
        now = now_ms()
        best = best_score = None
        for p in list(self.broker.replicas.all_partitions()):
            lg = p.log
            if not is_compacted(lg) or lg.closed or lg in self._failed:
                continue
            key = (p.topic.name, p.index)
            cfg = CompactionConfig.from_topic(p.topic.config)
            ltc = examine(lg, self.clean_points.get(key), cfg, now, p.last_stable_offset)
            if ltc.due(cfg):
                score = (2 if ltc.must_clean else 1, ltc.ratio)
            else:
                horizon = await self._horizon(key, lg, ltc)
                if horizon is None or horizon > now:
                    continue
                score = (0, 0.0)
            if best_score is None or score > best_score:
                best, best_score = (p, key, cfg, ltc), score
        if best is None:
            return False
        p, key, cfg, ltc = best
        lg = p.log
        producer_batches, producer_markers = producer_retention(p.producers.producers)
        gen = clean_steps(ltc, cfg, now, producer_batches=producer_batches,
                          producer_markers=producer_markers,
                          aborted=lg.aborted_between(0, LONG_MAX), map_budget=self.map_budget, should_abort=self._should_abort(lg))
        try:
            result = await self._drive(gen)
        except CleanerAborted:
            return False
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cleaning %s-%d failed; it is left alone until restart", *key)
            self._failed.add(lg)
            return True
        self.passes += 1
        self.last_result = result
        self._horizons[key] = (lg, result.horizon)
        if result.complete:
            self.clean_points[key] = result.end_offset
            await self._write_checkpoint()
        if result.swapped:
            log.info("cleaned %s-%d up to offset %d: %d -> %d bytes in %d segment group(s)",
                     key[0], key[1], result.end_offset, result.bytes_in, result.bytes_out,
                     result.groups)
        return True

    async def _horizon(self, key, lg, ltc: LogToClean) -> int | None:
        """Earliest delete horizon of the log's cleaned part (scanned once after start)."""
        known = self._horizons.get(key)
        if known is not None and known[0] is lg:
            return known[1]
        clean = [s for i, s in enumerate(ltc.segments[:-1])
                 if ltc.segments[i + 1].base <= ltc.first_dirty]
        horizon = None
        if clean:
            lg.pin_segments(clean)
            try:
                horizon = await self._in_thread(scan_horizons, lg, clean, self._should_abort(lg))
            except CleanerAborted:
                return None
            finally:
                lg.unpin_segments(clean)
        self._horizons[key] = (lg, horizon)
        return horizon

    async def _write_checkpoint(self) -> None:
        from odradek.storage.checkpoints import format_offset_checkpoint

        live = {(p.topic.name, p.index) for p in self.broker.replicas.all_partitions()}
        entries = {k: v for k, v in self.clean_points.items() if k in live}
        self.clean_points = entries
        store = self.broker.store
        if store is not None:
            await self._in_thread(store.write_metadata, CHECKPOINT_FILE,
                                  format_offset_checkpoint(entries))
