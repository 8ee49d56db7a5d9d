"""Reads that never wait for the disk on the event loop (odradek.storage.coldreads):
a read pass over files the (simulated) page cache does not hold gives the same
bytes as a plain read, the waiting reads run on a thread, and a segment
deleted, truncated or closed while that thread reads it is no harm."""

from __future__ import annotations

import asyncio
import os
import random
import threading

import pytest

from odradek.storage import coldreads
from odradek.storage.base import LogConfig, OffsetOutOfRange
from odradek.storage.coldreads import off_loop
from odradek.storage.disk import DiskLogStore
from odradek.storage.fs import FakeFileSystem, OSFileSystem

from .test_storage import BATCH_SIZE, make_batch


@pytest.fixture(autouse=True)
def no_warm_tail(request, monkeypatch):
    """These tests read back what they wrote: with no warm tail, every read
    of a pass asks the page cache (but the test of the warm tail itself)."""
    if "warm_tail" not in request.node.name:
        monkeypatch.setattr(coldreads, "WARM_TAIL", 0)


def test_the_warm_tail_is_read_without_asking_the_page_cache_and_older_bytes_are_not():
    """A segment's bytes written by this process within WARM_TAIL of its end
    are read plainly in a cold pass; the same bytes after the log is opened
    again (written before: maybe cold) are asked about and read in."""
    fs = FakeFileSystem()
    store, lg = new_log(fs, segment_batches=1000, n=40)
    fs.evict()
    calls = []
    first = asyncio.run(off_loop(thread_run(calls), lg.read, 0, 1 << 20))
    assert calls == [] and fs.counts["pread_nowait"] == 0  # warm tail: no check, no thread
    store.close()
    store = DiskLogStore("/data", fs, open_files=3)
    lg = store.open_log("t", 0, LogConfig(segment_bytes=BATCH_SIZE * 1000, index_interval_bytes=BATCH_SIZE))
    fs.evict()
    again = asyncio.run(off_loop(thread_run(calls), lg.read, 0, 1 << 20))
    assert calls and fs.counts["pread_nowait"] > 0  # opened from disk: asked, read in on a thread
    assert joined(again) == joined(first)


def thread_run(calls: list):
    async def run(fn):
        calls.append(fn)
        return await asyncio.to_thread(fn)
    return run


def joined(result) -> bytes:
    return b"".join(bytes(c) for c in result.chunks)


def new_log(fs, segment_batches: int = 4, open_files: int = 3, n: int = 40):
    store = DiskLogStore("/data", fs, open_files=open_files)
    lg = store.open_log("t", 0, LogConfig(segment_bytes=BATCH_SIZE * segment_batches,
                                          index_interval_bytes=BATCH_SIZE))
    for i in range(n):
        lg.append(make_batch([b"v%d" % i], ts=1000 + i), 0, 5000)
    return store, lg


def test_a_cold_read_pass_gives_the_same_bytes_and_waits_only_on_a_thread():
    fs = FakeFileSystem()
    store, lg = new_log(fs)
    rng = random.Random(7)
    cases = [(rng.randrange(0, 40), rng.choice([1, BATCH_SIZE, 3 * BATCH_SIZE + 5, 10 * BATCH_SIZE, 1 << 20]),
              rng.choice([None, 20, 40]), rng.choice([True, False])) for _ in range(60)]
    expected = [joined(lg.read(o, m, x, min_one=one)) for o, m, x, one in cases]

    async def main():
        loop_thread = threading.get_ident()
        calls = []
        run = thread_run(calls)
        for (o, m, x, one), want in zip(cases, expected):
            fs.evict()
            assert joined(await off_loop(run, lg.read, o, m, x, one)) == want
        assert calls, "the cold passes read on a thread"
        assert fs.cold_preads and all(t != loop_thread for _, t in fs.cold_preads)
        # Warm: the first pass is the answer, no thread.
        for o, m, x, one in cases:
            lg.read(o, m, x, min_one=one)  # reads every file in again
        calls.clear()
        for (o, m, x, one), want in zip(cases, expected):
            assert joined(await off_loop(run, lg.read, o, m, x, one)) == want
        assert calls == []

    asyncio.run(main())
    store.close()


def test_offset_out_of_range_is_raised_as_by_a_plain_read():
    fs = FakeFileSystem()
    store, lg = new_log(fs)
    fs.evict()

    async def main():
        with pytest.raises(OffsetOutOfRange):
            await off_loop(thread_run([]), lg.read, 41, 1000)

    asyncio.run(main())
    store.close()


@pytest.mark.parametrize("change", ["retention", "truncate", "close_for_limit", "roll"])
def test_a_segment_changed_while_a_thread_reads_it_in(change):
    """The thread reading the missed bytes is held inside its pread while the
    loop deletes (retention), truncates and rewrites, or closes the segment
    being read; the answer is then that of a plain read of the log as it is
    (or OffsetOutOfRange, as a fetch then gets), never the bytes read by the
    thread, and nothing crashes."""
    fs = FakeFileSystem()
    store, lg = new_log(fs, segment_batches=8, open_files=2)
    target = lg.segments_for_cleaning()[1]  # offsets 8-15
    reached, release = threading.Event(), threading.Event()
    loop_threads = set()

    def hold(op, path):
        if threading.get_ident() not in loop_threads and not reached.is_set():
            reached.set()
            assert release.wait(10)

    fs.on("pread", hold, path_contains=os.path.basename(target.log_path), times=-1)

    async def main():
        loop_threads.add(threading.get_ident())
        fs.evict()
        task = asyncio.ensure_future(off_loop(thread_run([]), lg.read, 9, 3 * BATCH_SIZE))
        for _ in range(5000):
            if reached.is_set():
                break
            await asyncio.sleep(0.001)
        assert reached.is_set(), "the thread read the segment in"
        if change == "retention":
            lg.delete_records_before(20)
        elif change == "truncate":
            lg.truncate_to(10)
            for i in range(6):
                lg.append(make_batch([b"new%d" % i], ts=9000 + i), 1, 9000)
        elif change == "close_for_limit":
            assert target.close_if_idle() in (True, False)  # a thread using it keeps it open
        else:
            lg.append(make_batch([b"more"]), 0, 5000)
        release.set()
        try:
            got = joined(await task)
        except OffsetOutOfRange:
            assert change == "retention"
            return
        assert change != "retention"
        assert got == joined(lg.read(9, 3 * BATCH_SIZE))
        if change == "truncate":
            assert b"new0" in got and b"v10" not in got

    asyncio.run(main())
    store.close()


def test_os_pread_nowait_is_pread_from_the_page_cache(tmp_path):
    """On Linux, after posix_fadvise(DONTNEED) pread_nowait may say None (the
    pages are on disk; tmpfs keeps them) without reading them in (cachestat);
    after a pread it returns the bytes (a list of pieces), and at the end of
    the file as few as pread does; read_ahead reads a range in."""
    fs = OSFileSystem()
    data = os.urandom(3 << 20)
    path = str(tmp_path / "f")
    h = fs.open(path)

    def nowait(size, pos):
        pieces = fs.pread_nowait(h, size, pos)
        if pieces is not None:
            return b"".join(pieces)
        return None

    try:
        fs.pwrite(h, data, 0)
        fs.fsync(h)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(h, 0, 0, os.POSIX_FADV_DONTNEED)
        got = nowait(1 << 20, 1 << 20)
        assert got is None or got == data[1 << 20:2 << 20]
        if got is None:
            assert nowait(1 << 20, 1 << 20) is None  # asking read nothing in
        fs.read_ahead(h, 1 << 20, 1 << 20)
        assert nowait(1 << 20, 1 << 20) == data[1 << 20:2 << 20]
        fs.pread(h, len(data), 0)
        assert nowait(1 << 20, 1 << 20) == data[1 << 20:2 << 20]
        assert nowait(len(data) - 5, 5) == data[5:]
        assert nowait(1 << 20, len(data) - 10) == data[-10:]
        assert nowait(10, len(data)) == b""
    finally:
        fs.close(h)


def test_os_pread_nowait_of_a_closed_handle_fails_as_pread_does(tmp_path):
    fs = OSFileSystem()
    h = fs.open(str(tmp_path / "f"))
    fs.pwrite(h, b"x" * 10000, 0)
    fs.close(h)
    with pytest.raises(OSError):
        fs.pread_nowait(h, 100, 0)
    h = fs.open(str(tmp_path / "f"))  # and cachestat is still used afterwards
    try:
        assert b"".join(fs.pread_nowait(h, 100, 0)) == b"x" * 100
    finally:
        fs.close(h)
