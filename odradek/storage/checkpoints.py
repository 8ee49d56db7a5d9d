"""Checkpoint files: Kafka's offset checkpoints and the leader-epoch checkpoint.

An offset checkpoint (``recovery-point-offset-checkpoint``,
``log-start-offset-checkpoint``, ``replication-offset-checkpoint`` in the data
dir; the cleaner's ``cleaner-offset-checkpoint``) is text: version 0, a count,
then ``topic partition offset`` lines. A log directory's
``leader-epoch-checkpoint`` is version 0, a count, then ``epoch offset`` lines.
Both are replaced atomically (``FileSystem.write_atomic``) and never edited in
place; a malformed one is ignored with a warning (the log then recovers more).
"""

from __future__ import annotations

import logging
import os

from .fs import FileSystem

log = logging.getLogger(__name__)

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_CHECKPOINT = "log-start-offset-checkpoint"
HIGH_WATERMARK_CHECKPOINT = "replication-offset-checkpoint"
LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"


def format_offset_checkpoint(entries: dict) -> bytes:
    """Kafka's offset checkpoint text: version 0, count, ``topic partition offset`` lines."""
    lines = ["0", str(len(entries))]
    lines += [f"{t} {p} {o}" for (t, p), o in sorted(entries.items())]
    return ("\n".join(lines) + "\n").encode()


def parse_offset_checkpoint(raw: bytes) -> dict:
    """Inverse of format_offset_checkpoint; raises ValueError when malformed."""
    lines = raw.decode().split("\n")
    if len(lines) < 2 or lines[0].strip() != "0":
        raise ValueError("unsupported checkpoint version")
    count = int(lines[1])
    out = {}
    for line in lines[2 : 2 + count]:
        t, p, o = line.split()
        out[(t, int(p))] = int(o)
    if len(out) != count:
        raise ValueError("checkpoint is truncated")
    return out


def load_offset_checkpoint(raw: bytes | None, name: str) -> dict:
    """``raw`` parsed; {} when it is None or malformed (a warning names ``name``)."""
    if raw is None:
        return {}
    try:
        return parse_offset_checkpoint(raw)
    except (ValueError, UnicodeDecodeError) as e:
        log.warning("ignoring bad checkpoint %s: %s", name, e)
        return {}


def read_offset_checkpoint(fs: FileSystem, path: str) -> dict:
    """The checkpoint at ``path``; {} when it is missing or malformed."""
    return load_offset_checkpoint(fs.read_file(path), path)


class LeaderEpochCache:
    """Kafka's leader-epoch cache: (epoch, start_offset) entries, both strictly
    increasing, saying from which offset each leader epoch wrote the log.

    Pure bookkeeping; the log persists it with ``write_epoch_checkpoint`` and
    loads it with ``read_epoch_checkpoint`` (``to_text``/``from_text``: the file format).
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


def read_epoch_checkpoint(fs: FileSystem, directory: str) -> tuple[LeaderEpochCache, bool]:
    """(the log directory's leader-epoch cache, whether it must be rewritten):
    empty when absent, empty and to be rewritten when malformed."""
    raw = fs.read_file(os.path.join(directory, LEADER_EPOCH_CHECKPOINT))
    if raw is None:
        return LeaderEpochCache(), False
    try:
        return LeaderEpochCache.from_text(raw.decode()), False
    except (ValueError, UnicodeDecodeError) as e:
        log.warning("%s: ignoring bad %s: %s", directory, LEADER_EPOCH_CHECKPOINT, e)
        return LeaderEpochCache(), True


def write_epoch_checkpoint(fs: FileSystem, directory: str, text: str) -> None:
    """Durably replace the directory's leader-epoch checkpoint (blocking)."""
    fs.write_atomic(os.path.join(directory, LEADER_EPOCH_CHECKPOINT), text.encode())
