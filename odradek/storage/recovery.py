"""Loading a log directory at startup, and recovering what a crash left.

``load_log`` turns a directory into segments and offsets:

- Leftover temporary files (``.tmp``, ``.deleted``, ``.cleaned``) are removed;
  ``.cleaned`` files are a swap the cleaner had not committed, so removing
  them rolls it back. A ``.log.swap`` is a committed swap: it is completed
  (every segment inside its offset range is removed, then the suffix dropped).
- Segments wholly below the recovery point have been fsynced: their indexes
  are checked, not their data, and rebuilt only when missing or inconsistent.
- From the recovery point on, batches are re-validated one by one (framing,
  CRC-32C, increasing offsets) and re-indexed; a bad or torn batch cuts the
  log there, with every later segment. Above the recovery point offsets are
  dense, so a segment that does not continue its predecessor (emptied by a
  power loss) also ends the log.
- Recovery rebuilds index entries in memory only: the next flush writes
  them (it writes every segment whose files lack entries it holds), and
  only a flush moves the recovery point past them, so a crash before it
  recovers them again. Writing them here created two files per partition
  that recovered its one unflushed segment (most of a restart's time with
  many partitions).
- The leader-epoch cache comes from its checkpoint plus the epochs of the
  re-validated batches, trimmed to what survives.
- Each segment's ``.txnindex`` is read; entries whose marker is gone, and in
  segments from the recovery point on every entry at or after it, are
  dropped (with a torn last entry): those are rebuilt from the log's control
  batches by the producer-state replay (``SegmentedLog.restore_aborted``,
  from ``txn_restore_from``).

Everything here is blocking I/O: it runs off the event loop (the broker loads
logs in a worker thread).
"""

from __future__ import annotations

import bisect
import logging
import os
from dataclasses import dataclass, field

from .base import LogConfig
from .checkpoints import LeaderEpochCache, read_epoch_checkpoint
from .fs import FileSystem
from .segment import SWAP_SUFFIX, Segment
from odradek.clock import now_ms

log = logging.getLogger(__name__)

_TEMP_SUFFIXES = (".tmp", ".deleted", ".cleaned")  # .swap: completed by complete_swaps


def _is_log_name(n: str) -> bool:
    return n.endswith(".log") and len(n) == 24 and n[:20].isdigit()


@dataclass
class LoadedLog:
    """What ``load_log`` found: ``segments`` oldest first (the last one active,
    its index files open), ``log_end_offset`` is the active one's next offset."""

    segments: list
    log_start: int
    recovery_point: int
    epochs: LeaderEpochCache
    epochs_dirty: bool  # the epoch checkpoint must be rewritten
    dir_dirty: bool  # segment files were created: the directory needs an fsync
    stats: dict = field(default_factory=dict)
    txn_rebuild_from: int = 0  # .txnindex entries from here on are to be restored

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset


def load_log(fs: FileSystem, directory: str, config: LogConfig, recovery_point: int = 0,
             log_start: int | None = None) -> LoadedLog:
    """Open (creating it if need be) the log in ``directory``; see the module docstring.
    ``recovery_point`` and ``log_start`` come from the checkpoints (0 and None
    when unknown)."""
    d = directory
    fs.mkdir(d)
    names = fs.listdir(d)
    for n in names:
        if n.endswith(_TEMP_SUFFIXES):
            fs.remove_if_exists(os.path.join(d, n))
    if any(n.endswith(SWAP_SUFFIX) for n in names):
        complete_swaps(fs, d)
        names = fs.listdir(d)
    bases = sorted(int(n[:20]) for n in names if _is_log_name(n))
    known = {f"{b:020d}" for b in bases}
    for n in names:  # index files whose log is gone
        stem, ext = os.path.splitext(n)
        if ext in (".index", ".timeindex", ".txnindex") and stem not in known:
            fs.remove_if_exists(os.path.join(d, n))
    epochs, epochs_dirty = read_epoch_checkpoint(fs, d)
    stats = {"recovered_segments": 0, "recovered_bytes": 0, "rebuilt_indexes": 0}
    dir_dirty = False

    def epoch_from_batch(h) -> None:
        nonlocal epochs_dirty
        if h.partition_leader_epoch >= 0 and epochs.assign(h.partition_leader_epoch,
                                                           h.base_offset):
            epochs_dirty = True

    now = now_ms()
    txn_rebuild_from = recovery_point
    if not bases:
        start = max(log_start or 0, 0)
        # Its index files are written by the first flush (or recovery): an
        # empty segment indexes nothing, and creating 100,000 partitions
        # should not create 200,000 empty files first.
        seg = Segment(fs, d, start, now)
        segs = [seg]
        dir_dirty = True
        recovery_point = start
    else:
        segs = [Segment(fs, d, b, now) for b in bases]
        recovery_point = max(recovery_point, bases[0])
        k = max(0, bisect.bisect_right(bases, recovery_point) - 1)
        interval = config.index_interval_bytes
        for i in range(k):  # wholly below the recovery point: check, don't rescan
            seg = segs[i]
            if seg.load_indexes(bases[i + 1]):
                seg.next_offset = bases[i + 1]
            else:
                seg.reset_indexes()
                stats["rebuilt_indexes"] += 1
                stats["recovered_bytes"] += seg.recover(seg.base, interval, write=False)
        i = k
        while i < len(segs):
            seg = segs[i]
            if i > k and seg.base != segs[i - 1].next_offset:
                # Above the recovery point offsets are dense: a gap (a segment
                # emptied by a power loss) or an overlap means lost data.
                _drop_segments(segs, i)
                break
            upper = bases[i + 1] if i + 1 < len(segs) else None
            from_offset = recovery_point if i == k else seg.base
            if not seg.load_indexes(upper):
                seg.reset_indexes()
                if seg.size:
                    stats["rebuilt_indexes"] += 1
                from_offset = seg.base
            original = seg.size
            done = seg.recover(from_offset, interval, epoch_from_batch, write=False)
            stats["recovered_bytes"] += done
            if done or from_offset == seg.base:
                stats["recovered_segments"] += 1
            seg.dirty = True
            if seg.size < original:
                _drop_segments(segs, i + 1)
                break
            i += 1
        for j, seg in enumerate(segs):
            seg.load_txn_index()
            if seg.txn_torn:  # a torn write: what it lost comes back from the replay
                txn_rebuild_from = min(txn_rebuild_from, seg.base)
            bound = seg.next_offset if j < k else min(seg.next_offset, max(recovery_point, seg.base))
            seg.trim_txn_index(bound)
        active = segs[-1]
        if active.first_ts is None and active.size:
            active.first_ts = active._first_batch_ts()
    leo = segs[-1].next_offset
    log_start = min(max(log_start or 0, segs[0].base), leo)
    recovery_point = min(max(recovery_point, segs[0].base), leo)
    if epochs.truncate_from_end(leo) | epochs.truncate_from_start(log_start):
        epochs_dirty = True
    loaded = LoadedLog(segs, log_start, recovery_point, epochs, epochs_dirty, dir_dirty, stats)
    loaded.txn_rebuild_from = min(txn_rebuild_from, recovery_point)
    return loaded



def complete_swaps(fs: FileSystem, d: str) -> None:
    """Finish the segment swaps the cleaner committed (a ``.log.swap`` exists):
    remove every segment inside the swap's offset range, then drop the suffix;
    and the index renames that were still to come after."""
    names = fs.listdir(d)
    for n in sorted(names):
        if not (n.endswith(".log" + SWAP_SUFFIX) and len(n) == 29 and n[:20].isdigit()):
            continue
        base = int(n[:20])
        swap = Segment(fs, d, base, now_ms(), suffix=SWAP_SUFFIX)
        try:
            end = None
            for _, h in swap.headers(0):
                end = h.next_offset
        finally:
            swap.close_handles()
        if end is None:  # nothing readable: keep the segments it was to replace
            log.warning("%s: empty swap file, discarded", swap.log_path)
            swap.remove_files()
            continue
        for m in names:
            if _is_log_name(m) and base <= int(m[:20]) < end:
                stem = os.path.join(d, m[:20])
                fs.remove_if_exists(stem + ".index")
                fs.remove_if_exists(stem + ".timeindex")
                fs.remove_if_exists(stem + ".txnindex")
                if int(m[:20]) != base:
                    fs.remove_if_exists(stem + ".log")
        for src, dst in ((swap.index_path, swap.stem + ".index"),
                         (swap.time_path, swap.stem + ".timeindex"),
                         (swap.txn_path, swap.stem + ".txnindex"),
                         (swap.log_path, swap.stem + ".log")):
            if fs.exists(src):
                fs.rename(src, dst)
        log.info("%s: completed an interrupted segment swap at offset %d", d, base)
    for n in fs.listdir(d):  # index swaps whose log was renamed already
        if n.endswith((".index" + SWAP_SUFFIX, ".timeindex" + SWAP_SUFFIX,
                       ".txnindex" + SWAP_SUFFIX)):
            src = os.path.join(d, n)
            if fs.exists(os.path.join(d, n[:20] + ".log")):
                fs.rename(src, src[: -len(SWAP_SUFFIX)])
            else:
                fs.remove_if_exists(src)
    fs.fsync_dir(d)


def _drop_segments(segs: list, i: int) -> None:
    """Remove ``segs[i:]``, which follow lost or corrupt data."""
    for later in segs[i:]:
        log.warning("%s: removing segment after lost or corrupt data", later.log_path)
        later.close_handles()
        later.remove_files()
    del segs[i:]
