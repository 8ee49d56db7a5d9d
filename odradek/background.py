"""The broker's background threads: a pool of ``background.threads`` (Kafka's
default 10, at least 1, a dynamic broker config) that runs the broker's
blocking work off the event loop: recovery and ``meta.properties`` at start,
opening, deleting and flushing logs, offset checkpoints, producer snapshots,
and the closing of the logs at stop.

Each broker has its own pool (several brokers can share one event loop, in
tests and in ``odradek cluster``). ``run(fn, *args)`` is the one way in.

Resizing (``resize``) puts a new executor of the new size in place; the old
one is shut down without cancelling anything: what it runs and what is queued
on it finish there, nothing new is given to it. Work is never moved between
executors, so none is lost or run twice. ``close()`` waits for the current
executor and every replaced one that is still finishing, and joins their
threads; a pool closed and run again (a broker started again) starts a new
executor.

Invariant: ``run`` and ``resize`` are called on the event loop only, so a
submission and a swap never interleave.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

DEFAULT_THREADS = 10  # Kafka's background.threads
_pools = itertools.count(1)  # threads are named odradek-background-<node>-p<pool>-e<executor>_<i>


class BackgroundPool:
    def __init__(self, size: int = DEFAULT_THREADS, node_id: int | None = None):
        if size < 1:
            raise ValueError(f"background.threads must be at least 1, not {size}")
        self.size = size
        self.name = f"odradek-background-{'' if node_id is None else node_id}-p{next(_pools)}"
        self._generation = itertools.count(1)
        self._executor: ThreadPoolExecutor | None = None
        self._retired: list[ThreadPoolExecutor] = []  # replaced, finishing what they were given
        self._lock = threading.Lock()  # close() runs in a thread of its own

    def _current(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.size,
                                                thread_name_prefix=f"{self.name}-e{next(self._generation)}")
        return self._executor

    def resize(self, size: int) -> None:
        """Run new work on ``size`` threads from now on (what runs finishes where it is)."""
        if size < 1:
            raise ValueError(f"background.threads must be at least 1, not {size}")
        if size == self.size:
            return
        self.size = size
        with self._lock:
            old, self._executor = self._executor, None
            if old is not None:
                old.shutdown(wait=False)  # queued work still runs; nothing new is accepted
                self._retired.append(old)

    async def run(self, fn, *args):
        """Run blocking ``fn(*args)`` on the pool and return its result. If the
        caller is cancelled (the broker stopping), ``fn`` is waited for before
        the cancellation goes on: a lock held around the call still covers it,
        and no such work outlives the broker's ``stop()``."""
        fut = asyncio.get_running_loop().run_in_executor(self._current(), fn, *args)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            await asyncio.wait([fut])
            raise

    def threads(self) -> list[threading.Thread]:
        """The live threads of the pool (current and replaced executors)."""
        return [t for t in threading.enumerate() if t.name.startswith(self.name + "-e")]

    def close(self) -> None:
        """Wait for all work given to the pool and join its threads (blocking)."""
        with self._lock:
            executors = self._retired + ([self._executor] if self._executor is not None else [])
            self._retired, self._executor = [], None
        for ex in executors:
            ex.shutdown(wait=True)

    async def aclose(self) -> None:
        """``close()`` without blocking the event loop."""
        await asyncio.to_thread(self.close)


def configured_threads(config) -> int:
    """``background.threads`` as ``config`` resolves it (dynamic, static, default);
    ConfigError when it is not a whole number of at least 1."""
    from odradek.config import ConfigError

    value = config.get("background.threads")
    try:
        n = int(value) if value not in (None, "") else DEFAULT_THREADS
    except ValueError:
        raise ConfigError(f"Invalid value {value} for configuration background.threads: "
                          f"Not a number of type INT") from None
    if n < 1:
        raise ConfigError(f"Invalid value {value} for configuration background.threads: Value must be at least 1")
    return n
