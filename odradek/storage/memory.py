"""Memory mode (``odradek serve --memory``, ``odradek.Broker()``): the log store
of ``disk.py``, unchanged, over a ``MemoryFileSystem``.

So memory mode runs the very log code disk mode runs -- segments, indexes,
rolling, retention, truncation, compaction, checkpoints -- and differs only in
what a crash would keep: nothing. Nothing is written to disk, and a deleted
segment's or log's memory is freed with its files.
"""

from __future__ import annotations

from .disk import DiskLogStore
from .fs import MemoryFileSystem


class MemoryLogStore(DiskLogStore):
    """Partition logs and metadata files in memory. A log closed and opened
    again keeps its data, as on disk (the store's files are its memory)."""

    def __init__(self, *, auto_high_watermark: bool = True):
        # Memory files cost no descriptor: no limit on how many stay open.
        super().__init__("/", MemoryFileSystem(), auto_high_watermark=auto_high_watermark, open_files=0)
