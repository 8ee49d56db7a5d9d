"""The broker's lag history: rings bounded in size and count, a pass that
yields to the event loop every chunk of partitions, rings dropped with
their groups."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

from odradek import lag_history
from odradek.lag_history import LagHistory, Ring


def test_ring_keeps_the_last_points_in_order():
    r = Ring(points=4)
    for i in range(6):
        r.append(float(i), i * 10, i / 2)
    assert r.samples() == [(2.0, 20, 1.0), (3.0, 30, 1.5), (4.0, 40, 2.0), (5.0, 50, 2.5)]


def fake_broker(groups: dict[str, dict[tuple[str, int], int]], hw: int = 100):
    offsets = {g: {tp: SimpleNamespace(offset=o) for tp, o in parts.items()} for g, parts in groups.items()}
    shard = SimpleNamespace(offsets=SimpleNamespace(offsets=offsets), groups={})
    topic = SimpleNamespace(topic_id=b"t" * 16)

    def lookup(t, i, leader_required=True):
        return SimpleNamespace(topic=topic, index=i, high_watermark=hw, log_start_offset=0), 0

    return SimpleNamespace(groups=SimpleNamespace(hosted={0: SimpleNamespace(loading=False, shard=shard)}),
                           replicas=SimpleNamespace(partition_or_error=lookup))


def test_a_pass_yields_every_chunk_and_bounds_the_groups(monkeypatch):
    yields = []
    real_sleep = asyncio.sleep
    here = threading.get_ident()

    async def counting_sleep(d):
        # asyncio.sleep is patched for the whole process: a broker another
        # test left running in a thread (its event-loop probe sleeps) is not counted.
        if threading.get_ident() != here:
            return await real_sleep(d)
        yields.append(d)
        await real_sleep(0)

    monkeypatch.setattr(lag_history.asyncio, "sleep", counting_sleep)
    monkeypatch.setattr(lag_history, "batch_stamp", lambda p, o: None)
    groups = {f"g{i}": {("t", p): 100 for p in range(10)} for i in range(30)}  # caught up: no stamp read
    groups["g0"] = {("t", p): 40 for p in range(10)}
    h = LagHistory(points=8, max_groups=20, chunk=25)
    broker = fake_broker(groups)
    asyncio.run(h.sample(broker))
    assert len(yields) == 300 // 25
    assert len(h.rings) == 20 and "g29" not in h.rings
    assert h.get("g0")[-1][1] == 600 and h.get("g1")[-1][1] == 0
    del groups["g0"]
    asyncio.run(h.sample(fake_broker(groups)))
    assert h.get("g0") == [] and len(h.get("g1")) == 2
