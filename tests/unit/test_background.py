"""The broker's background pool (odradek.background): ``background.threads``
threads; a resize puts a new executor in place while the old one finishes
what it was given (nothing lost, nothing run twice), and ``close`` joins the
threads of both."""

from __future__ import annotations

import asyncio
import threading

import pytest

from odradek.background import BackgroundPool, configured_threads
from odradek.config import BrokerConfig, ConfigError


def test_resize_keeps_running_work_and_close_joins_every_thread():
    async def main():
        pool = BackgroundPool(3, node_id=7)
        release = threading.Event()
        ran: list[str] = []

        def blocked(tag):
            release.wait(10)
            ran.append(tag)
            return threading.current_thread().name

        # Three running, two queued behind them on the old executor.
        old = [asyncio.ensure_future(pool.run(blocked, f"old{i}")) for i in range(5)]
        await asyncio.sleep(0.1)
        assert len(pool.threads()) == 3
        pool.resize(1)
        assert pool.size == 1
        # New work runs at once on the new executor, beside the blocked old one.
        name = await asyncio.wait_for(pool.run(lambda: threading.current_thread().name), 5)
        assert name.startswith(pool.name + "-e2_") and ran == []
        release.set()
        names = await asyncio.gather(*old)
        assert sorted(ran) == [f"old{i}" for i in range(5)]  # each once, none lost
        new_names = {await pool.run(lambda: threading.current_thread().name) for _ in range(20)}
        assert len(new_names) == 1 and not new_names & set(names)  # one thread: the new size
        pool.resize(2)
        await asyncio.gather(*(pool.run(release.wait, 1) for _ in range(4)))
        assert pool.threads()
        await pool.aclose()
        assert pool.threads() == []
        # Used again (a broker started again): a fresh executor.
        assert await pool.run(lambda: 42) == 42
        await pool.aclose()
        assert pool.threads() == []

    asyncio.run(main())


def test_configured_size_and_its_bounds():
    assert configured_threads(BrokerConfig()) == 10
    assert configured_threads(BrokerConfig(props={"background.threads": "3"})) == 3
    for bad, message in (("0", "Value must be at least 1"), ("x", "Not a number of type INT")):
        with pytest.raises(ConfigError, match=message):
            configured_threads(BrokerConfig(props={"background.threads": bad}))
    with pytest.raises(ValueError):
        BackgroundPool(3).resize(0)
