"""Housekeeping's offset checkpoint with many partitions: the producer
snapshots are taken on the event loop a chunk at a time, each chunk written
off the loop before the next, so the loop keeps turning between chunks."""

from __future__ import annotations

import asyncio

from odradek.config import BrokerConfig
from odradek.scheduler import SNAPSHOT_CHUNK, Housekeeping


class _Table:
    def __init__(self, taken: list):
        self.taken = taken

    def snapshot(self, log, force=False):
        self.taken.append(log)
        return b"snapshot"


class _Partition:
    def __init__(self, i: int, taken: list):
        self.log = f"log-{i}"
        self.producers = _Table(taken)


class _Background:
    def __init__(self, written: list):
        self.written = written

    async def run(self, fn, *args):
        if args:  # write_snapshots(snapshots): record what would be written
            self.written.extend(log for log, _ in args[0])
            await asyncio.sleep(0)  # a real pool hands the work to a thread
        return None


class _Store:
    def write_checkpoints(self):
        pass


class _Replicas:
    def __init__(self, n: int):
        self.taken, self.written = [], []
        self.parts = [_Partition(i, self.taken) for i in range(n)]
        self.store = _Store()
        self.background = _Background(self.written)

    def all_partitions(self):
        return iter(self.parts)


def test_the_checkpoint_takes_producer_snapshots_a_chunk_at_a_time():
    n = 2 * SNAPSHOT_CHUNK + 10
    replicas = _Replicas(n)
    seen = []  # snapshots taken so far, each time another task got the loop

    async def main():
        done = False

        async def ticker():
            while not done:
                seen.append(len(replicas.taken))
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        await Housekeeping(BrokerConfig(), replicas).checkpoint()
        done = True
        await t

    asyncio.run(main())
    assert replicas.taken == replicas.written == [p.log for p in replicas.parts]
    assert {SNAPSHOT_CHUNK, 2 * SNAPSHOT_CHUNK} <= set(seen)  # the loop turned between chunks
