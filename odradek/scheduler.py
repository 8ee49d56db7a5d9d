"""The broker's periodic duties, each on its own interval: retention
(``log.retention.check.interval.ms``), time-based flushes
(``log.flush.scheduler.interval.ms``), the offset checkpoints
(``log.flush.offset.checkpoint.interval.ms``), and forgetting idle producers
(``producer.id.expiration.check.interval.ms``: every partition's producers
older than ``producer.id.expiration.ms``, a dynamic setting, read each time).

Producer snapshots are not periodic: as in Kafka, a partition takes one when
its log rolls a segment (written by the flush the roll schedules) and at
clean shutdown (``odradek.producers``).

Retention runs on the event loop (it deletes segment files but never
fsyncs); flushes and checkpoints run on the broker's background threads
(``odradek.background``). A failure is logged and the next round runs as
usual.
"""

from __future__ import annotations

import asyncio
import logging
import time

from odradek.clock import now_ms
from odradek.config import BrokerConfig
from odradek.replica.manager import ReplicaManager

log = logging.getLogger("odradek.scheduler")


class Housekeeping:
    def __init__(self, config: BrokerConfig, replicas: ReplicaManager):
        self.replicas = replicas
        self.retention_every = config.get_int("log.retention.check.interval.ms", 300000) / 1000
        self.flush_every = min(config.get_int("log.flush.scheduler.interval.ms", 2**62), 2**31) / 1000
        self.checkpoint_every = config.get_int("log.flush.offset.checkpoint.interval.ms", 60000) / 1000
        self.config = config
        self.producers_every = config.get_int("producer.id.expiration.check.interval.ms", 600000) / 1000

    async def run(self) -> None:
        tick = max(0.05, min(self.retention_every, self.flush_every, self.checkpoint_every, self.producers_every,
                             1.0))
        last_retention = last_flush = last_checkpoint = last_producers = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            mono = time.monotonic()
            try:
                if mono - last_retention >= self.retention_every:
                    last_retention = mono
                    self.apply_retention()
                if mono - last_flush >= self.flush_every:
                    last_flush = mono
                    await self.flush_due_by_time()
                if mono - last_checkpoint >= self.checkpoint_every:
                    last_checkpoint = mono
                    await self.checkpoint()
                if mono - last_producers >= self.producers_every:
                    last_producers = mono
                    self.expire_producers()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping failed")

    def apply_retention(self) -> int:
        deleted = 0
        now = now_ms()
        for p in self.replicas.all_partitions():
            if "delete" in p.log.config.cleanup_policy:
                deleted += p.apply_retention(now)
        return deleted

    def expire_producers(self) -> int:
        expiration_ms = self.config.get_int("producer.id.expiration.ms", 86400000)
        now = now_ms()
        return sum(p.producers.expire(now, expiration_ms) for p in self.replicas.all_partitions())

    async def flush_due_by_time(self) -> None:
        for p in list(self.replicas.all_partitions()):
            if p.log.flush_due_by_time(now_ms()):
                await self.replicas.flush(p)

    async def checkpoint(self) -> None:
        store = self.replicas.store
        if store is None:
            return
        await self.replicas.background.run(store.write_checkpoints)
