"""Consumer groups' lag history, kept by the broker while no page watches.

Theory of operation: while the HTTP listener is on, a task samples every
``http.lag.history.interval.ms`` (default 5 s; 0: off) the lag of every
group this broker coordinates, from the same walk as ``/metrics``
(``odradek.metrics.group_lags``): per group the lag in records summed over
its partitions (wherever they are led), and the lag in time, the largest
over those with a replica here (``odradek.metrics.time_lag``). Each group's samples go into a ring of
``POINTS`` entries (15 minutes at 5 s) in three flat arrays, about 3.6 KB a
group; at most ``MAX_GROUPS`` groups are kept (the first in name order), so
the memory is bounded whatever the cluster's size; a group that no longer
has offsets here loses its ring.

The walk pauses (yields to the event loop) every ``CHUNK`` partitions, so a
sampling pass over a huge cluster never holds up requests for more than one
chunk's work. The lag in time costs one batch-header read per lagging
partition; the timestamp of the batch holding a committed offset never
changes, so it is cached (``STAMPS`` entries) and a consumer that stays
behind costs nothing more. The time spent sampling is counted
(``odradek_consumer_group_lag_sampling_seconds_total``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array

from odradek.metrics import batch_stamp, group_lags, time_lag

log = logging.getLogger("odradek.lag_history")

POINTS = 180
MAX_GROUPS = 1000
CHUNK = 500
STAMPS = 100_000
DEFAULT_INTERVAL_MS = 5000


class Ring:
    """The last ``POINTS`` samples of one group: (wall time s, lag in records, lag in seconds)."""

    __slots__ = ("at", "lag", "secs", "n", "pos")

    def __init__(self, points: int = POINTS):
        self.at = array("d", bytes(8 * points))
        self.lag = array("q", bytes(8 * points))
        self.secs = array("f", bytes(4 * points))
        self.n = 0
        self.pos = 0

    def append(self, at: float, lag: int, secs: float) -> None:
        self.at[self.pos], self.lag[self.pos], self.secs[self.pos] = at, lag, secs
        self.pos = (self.pos + 1) % len(self.at)
        self.n = min(self.n + 1, len(self.at))

    def samples(self) -> list[tuple[float, int, float]]:
        size = len(self.at)
        start = (self.pos - self.n) % size
        return [(self.at[i % size], self.lag[i % size], self.secs[i % size]) for i in range(start, start + self.n)]


class LagHistory:
    def __init__(self, points: int = POINTS, max_groups: int = MAX_GROUPS, chunk: int = CHUNK):
        self.points = points
        self.max_groups = max_groups
        self.chunk = chunk
        self.rings: dict[str, Ring] = {}
        self.stamps: dict[tuple, int | None] = {}  # (topic id, partition, offset) -> its batch's stamp
        self.passes = 0
        self.cpu_seconds = 0.0  # event-loop thread CPU spent sampling
        self.longest_slice = 0.0  # wall seconds of the longest step between two yields

    def get(self, group: str) -> list[tuple[float, int, float]]:
        ring = self.rings.get(group)
        return ring.samples() if ring is not None else []

    def _stamp(self, p, offset: int) -> int | None:
        key = (p.topic.topic_id, p.index, offset)  # a topic made again under the name has another id
        if key in self.stamps:
            return self.stamps[key]
        stamped = self.stamps[key] = batch_stamp(p, offset)
        if len(self.stamps) > STAMPS:
            for k in list(self.stamps)[:STAMPS // 10]:
                del self.stamps[k]
        return stamped

    async def sample(self, broker) -> None:
        """One pass over every group's offsets, yielding every ``chunk`` partitions."""
        totals: dict[str, list] = {}
        now = time.time()
        now_ms = now * 1000
        c0, t0, n = time.thread_time(), time.perf_counter(), 0
        cpu = 0.0
        for gid, topic, index, p, committed, lag in group_lags(broker):
            n += 1
            t = totals.get(gid)
            if t is None and len(totals) < self.max_groups:
                t = totals[gid] = [0, 0.0]
            if t is not None:
                t[0] += lag
                if lag and p is not None:
                    secs = time_lag(p, committed, now_ms, self._stamp)
                    if secs is not None and secs > t[1]:
                        t[1] = secs
            if n % self.chunk == 0:
                self.longest_slice = max(self.longest_slice, time.perf_counter() - t0)
                cpu += time.thread_time() - c0
                await asyncio.sleep(0)
                c0, t0 = time.thread_time(), time.perf_counter()
        self.longest_slice = max(self.longest_slice, time.perf_counter() - t0)
        for gid in [g for g in self.rings if g not in totals]:
            del self.rings[gid]
        for gid, (lag, secs) in totals.items():
            ring = self.rings.get(gid)
            if ring is None:
                ring = self.rings[gid] = Ring(self.points)
            ring.append(now, lag, secs)
        self.cpu_seconds += cpu + time.thread_time() - c0
        self.passes += 1

    async def run(self, broker, interval: float) -> None:
        while True:
            try:
                await self.sample(broker)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad pass must not end the history
                log.exception("lag history: a sampling pass failed")
            await asyncio.sleep(interval)
