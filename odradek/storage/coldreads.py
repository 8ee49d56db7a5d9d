"""Read passes that never wait for the disk on the event loop.

A fetch reads its partitions in one synchronous pass on the event loop
(``odradek.apis.fetch.read_partitions``), and the record bytes come from
``Segment.read``. From the page cache that read is a copy; from a cold page
cache it waits for the disk, and the whole broker waits with it.

``off_loop(run, read_pass, *args)`` runs such a pass with ``COLD_PASS`` set:
each ``Segment.read`` then reads only what the page cache holds
(``FileSystem.pread_nowait``: on Linux 6.5+ ``cachestat`` tells, without
reading anything, whether every page of the range is cached, and a plain
``pread`` copies them; on older kernels ``preadv2(RWF_NOWAIT)``), and so does
each read of batch headers that finds where to start and stop
(``Segment.find_batch``, ``Segment.boundary``). If every read was served,
that pass is the answer: a warm read costs no thread hop. If any was not, the
pass is dropped -- at once when headers were missing (``ColdRead``: the pass
cannot go on without them), else at its end; a thread (``run``: the broker's
background pool) reads the ranges it missed, and ``READ_AHEAD`` bytes after
each (``Segment.read_in``), into the page cache, and the pass runs again on
the loop. A pass that misses only ranges already read in by this call
(evicted again at once: memory pressure) is stale; after ``TRIES`` stale
passes, or ``MAX_PASSES`` in all, the last pass reads as before, waiting.

The thread reads in with ``POSIX_FADV_WILLNEED`` and then waits for the
pages (``FileSystem.read_ahead``), not with the kernel's own readahead: that
leaves readahead marks, and a read on the loop reaching one would start the
next readahead window from the loop (on this project's test machine that
start alone costs the reader milliseconds). So the loop's reads of pages this
module brought in start no I/O. (Pages read in that way are small pages, not
the large folios of the kernel's readahead, and a later copy of them costs
more: see docs/performance.md.)

Invariants:

- The answer is always one whole pass of ``read_pass`` run on the loop, as
  without this module: same bytes, same limits, same offsets. The thread
  never produces bytes that are sent; a missed read's place in a dropped pass
  is held by a ``Missing`` of the same length, so the rest of that pass plans
  as it would have.
- ``read_pass`` must therefore have no side effects (it may run more than
  once).
- The thread's reads are advisory: a segment closed, truncated, deleted or
  replaced by the cleaner meanwhile makes them fail (ignored) or read bytes
  that are thrown away; the next pass sees the log as it is then.
- Bytes a segment was written lately by this process (``Segment.warm``:
  after it was opened, within ``WARM_TAIL`` of its end) are read as before,
  without asking the page cache: they are there short of memory pressure.
- Only reads inside ``off_loop`` on the loop's thread see ``COLD_PASS`` (a
  context variable): coordinators and other threads read as before.
"""

from __future__ import annotations

import contextvars

#: A segment's last bytes written by this process are taken to be in the page
#: cache without asking (``Segment.warm``): a tail consumer's reads cost no check.
WARM_TAIL = 16 << 20
READ_AHEAD = 8 << 20  # read in after each missed range too: a consumer reads on from there
TRIES = 3  # stale passes before one that waits
MAX_PASSES = 64  # passes in all before one that waits

COLD_PASS: contextvars.ContextVar = contextvars.ContextVar("odradek_cold_pass", default=None)


class ColdRead(Exception):
    """Batch headers a pass needs are not in the page cache: the pass ends."""


class Missing:
    """Stands for ``size`` bytes a dropped pass could not read without waiting."""

    __slots__ = ("size",)

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size


class ColdPass:
    """The ranges one read pass found outside the page cache."""

    def __init__(self):
        self.ranges: list = []  # (segment, position, size)

    def missed(self, seg, pos: int, size: int) -> Missing:
        self.ranges.append((seg, pos, size))
        return Missing(size)

    def read_in(self) -> int:
        """Read the missed ranges (blocking: on a thread), so the page cache
        holds them; return the bytes read. Failures are ignored (see the
        module's invariants)."""
        total = 0
        for seg, pos, size in self.ranges:
            try:
                total += seg.read_in(pos, size, READ_AHEAD)
            except (OSError, ValueError):
                pass
        return total


async def off_loop(run, read_pass, *args):
    """``read_pass(*args)``, run on the loop without waiting for the disk;
    ``run(fn)`` awaits ``fn()`` on a thread. See the module docstring."""
    seen: set = set()
    stale = 0
    for _ in range(MAX_PASSES):
        cold = ColdPass()
        token = COLD_PASS.set(cold)
        try:
            result = read_pass(*args)
        except ColdRead:
            pass
        else:
            if not cold.ranges:
                return result
        finally:
            COLD_PASS.reset(token)
        missed = {(seg.log_path, pos, size) for seg, pos, size in cold.ranges}
        if missed <= seen:
            stale += 1
            if stale >= TRIES:
                break
        seen |= missed
        await run(cold.read_in)
    return read_pass(*args)
