"""The log store: partition logs in a data directory, as Apache Kafka lays one out.

``<data_dir>`` holds a directory per partition log (``<topic>-<partition>``,
see ``log.py``), Kafka's three offset checkpoints (``checkpoints.py``) and the
broker's metadata files, all through a ``FileSystem`` (``fs.py``).
"""

from __future__ import annotations

import os
import threading

from .base import LogConfig, LogStore
from .checkpoints import (
    HIGH_WATERMARK_CHECKPOINT,
    LOG_START_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    format_offset_checkpoint,
    read_offset_checkpoint,
)
from .fs import FileSystem, OSFileSystem
from .log import SegmentedLog
from .segment import OpenLogFiles, open_file_limit


class DiskLogStore(LogStore):
    """Partition logs under ``data_dir``, plus Kafka's offset checkpoints there.

    ``auto_high_watermark``: single-broker mode, where each log's high watermark
    follows its end offset (set False once replication moves it)."""

    CHECKPOINTS = (RECOVERY_POINT_CHECKPOINT, LOG_START_CHECKPOINT, HIGH_WATERMARK_CHECKPOINT)

    def __init__(self, data_dir, fs: FileSystem | None = None, *, auto_high_watermark: bool = True,
                 open_files: int | None = None):
        """``open_files``: how many segment files to keep open at most (0: no
        limit; default: from the process's open-file limit, see
        ``segment.open_file_limit``)."""
        self.data_dir = str(data_dir)
        self.fs = fs or OSFileSystem()
        if open_files is None:
            open_files = open_file_limit()
        self.files = OpenLogFiles(open_files) if open_files else None
        self.auto_high_watermark = auto_high_watermark
        self.fs.mkdir(self.data_dir)
        for n in self.fs.listdir(self.data_dir):
            if n.endswith(".tmp"):
                self.fs.remove_if_exists(os.path.join(self.data_dir, n))
        self._checkpoints = {name: read_offset_checkpoint(self.fs, os.path.join(self.data_dir, name))
                             for name in self.CHECKPOINTS}
        self._logs: dict[tuple[str, int], SegmentedLog] = {}
        self._checkpoint_lock = threading.Lock()

    def _dir(self, topic: str, partition: int) -> str:
        return os.path.join(self.data_dir, f"{topic}-{partition}")

    def open_log(self, topic: str, partition: int, config: LogConfig) -> SegmentedLog:
        key = (topic, partition)
        lg = self._logs.get(key)
        if lg is not None and not lg.closed:
            lg.config = config
            return lg
        d = self._dir(topic, partition)
        if lg is not None:  # closed earlier: its own offsets are the freshest
            rp, start, hw = lg.recovery_point, lg.log_start_offset, lg.high_watermark
        elif self.fs.isdir(d):
            # from now on the log holds these (checkpoints keep only the logs not open)
            with self._checkpoint_lock:
                rp, start, hw = (self._checkpoints[n].pop(key, None) for n in self.CHECKPOINTS)
        else:  # a new log: checkpoint entries, if any, are stale
            rp, start, hw = 0, None, None
        lg = SegmentedLog(d, topic, partition, config, self.fs,
                              recovery_point=rp or 0, log_start_offset=start, high_watermark=hw,
                              auto_high_watermark=self.auto_high_watermark, files=self.files)
        self._logs[key] = lg
        return lg

    def delete_log(self, topic: str, partition: int) -> None:
        key = (topic, partition)
        lg = self._logs.pop(key, None)
        if lg is not None:
            lg.abandon()
        with self._checkpoint_lock:  # a concurrent write_checkpoints must not revive it
            for cp in self._checkpoints.values():
                cp.pop(key, None)
        d = self._dir(topic, partition)
        if self.fs.isdir(d):
            for n in self.fs.listdir(d):
                self.fs.remove_if_exists(os.path.join(d, n))
            self.fs.rmdir(d)

    def has_log(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self._logs or self.fs.isdir(self._dir(topic, partition))

    def existing_logs(self) -> list[tuple[str, int]]:
        out = []
        for n in self.fs.listdir(self.data_dir):
            topic, sep, part = n.rpartition("-")
            if sep and topic and part.isdigit() and self.fs.isdir(os.path.join(self.data_dir, n)):
                out.append((topic, int(part)))
        return sorted(out)

    def write_checkpoints(self) -> None:
        """Durably write the three offset checkpoints (blocking: run off the loop)."""
        with self._checkpoint_lock:
            values = [dict(cp) for cp in (self._checkpoints[n] for n in self.CHECKPOINTS)]
            for key, lg in list(self._logs.items()):
                values[0][key] = lg.recovery_point
                values[1][key] = lg.log_start_offset
                values[2][key] = lg.high_watermark
            for name, entries in zip(self.CHECKPOINTS, values):
                self.fs.write_atomic(os.path.join(self.data_dir, name),
                                     format_offset_checkpoint(entries))
                # kept in memory: the entries of logs not open (the open ones know theirs)
                self._checkpoints[name] = {k: v for k, v in entries.items() if k not in self._logs}

    def flush(self) -> None:
        for lg in list(self._logs.values()):
            lg.flush()

    def read_metadata(self, name: str) -> bytes | None:
        return self.fs.read_file(self._meta_path(name))

    def write_metadata(self, name: str, data: bytes) -> None:
        self.fs.write_atomic(self._meta_path(name), bytes(data))

    def _meta_path(self, name: str) -> str:
        if not name or "/" in name or name in (".", "..") or name in self.CHECKPOINTS:
            raise ValueError(f"bad metadata file name {name!r}")
        return os.path.join(self.data_dir, name)

    def close(self) -> None:
        """Close every log (flushing it) and write the checkpoints: a clean shutdown."""
        for lg in list(self._logs.values()):
            lg.close()
        self.write_checkpoints()

