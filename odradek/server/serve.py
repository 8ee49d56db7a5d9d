"""Run one broker in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from odradek.config import BrokerConfig

log = logging.getLogger("odradek")


async def serve(config: BrokerConfig) -> None:
    from odradek.broker import BrokerCore

    t0 = time.monotonic()
    broker = BrokerCore(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    where = config.data_dir if config.data_dir is not None else "memory"
    bound = ", ".join(
        f"{name} {s.sockets[0].getsockname()[0]}:{s.sockets[0].getsockname()[1]} (advertised {h}:{p})"
        for (name, (h, p)), s in zip(broker.endpoints.items(), broker.servers))
    log.info("odradek broker %d ready on %s, data in %s, started in %.0f ms",
             config.node_id, bound, where, (time.monotonic() - t0) * 1000)
    if broker.http_address is not None:
        log.info("console at http://%s:%d/, metrics at /metrics", *broker.http_address)
    await stop.wait()
    log.info("stopping")
    await broker.stop()
    log.info("stopped")


def raise_open_file_limit() -> None:
    """Lift the soft open-file limit to the hard one: each partition keeps its
    active segment's files open, as Kafka does."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


#: glibc mallopt parameters, and what ``odradek serve`` sets them to
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 16 * 1024 * 1024
TRIM_THRESHOLD = 64 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep the memory of freed request frames for the next
    ones. At its defaults, a block over the mmap threshold (128 KiB, raised
    only as far as the largest one freed so far) is mapped and unmapped on
    its own, and the top of the heap is handed back past twice that, so every
    Produce frame of a few hundred KiB had its pages faulted in afresh:
    measured 90-300 page faults per MB produced and about a third of the
    broker's CPU (docs/performance.md, Freed request frames). Here blocks up to 16 MiB
    come from the heap and up to 64 MiB of free heap stays mapped. Left alone
    when the environment sets glibc's own MALLOC_MMAP_THRESHOLD_ or
    MALLOC_TRIM_THRESHOLD_, and off glibc; True when it was set."""
    import os
    import platform

    if platform.libc_ver()[0] != "glibc" or any(
            k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def run(config: BrokerConfig) -> None:
    from odradek.embedded import new_event_loop

    raise_open_file_limit()
    keep_freed_memory()

    loop = new_event_loop()
    try:
        loop.run_until_complete(serve(config))
    finally:
        loop.close()
