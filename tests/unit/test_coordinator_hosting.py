"""ShardHosting on its own, with a minimal shard over an in-memory broker: the
topic created on first use (and its replication factors tried in turn), a
shard's life (loading, active, unloaded), reading a partition from its log
start, appends and the timer."""

from __future__ import annotations

import asyncio
import logging
import time

from odradek.broker import BrokerCore
from odradek.config import BrokerConfig
from odradek.coordinator.hosting import ShardHosting, read_log
from odradek.coordinator.runtime import Result
from odradek.protocol import errors
from odradek.topic_admin import TopicError

TOPIC = "__test_state"
log = logging.getLogger("odradek.test_hosting")


class Config:
    num_partitions = 2


class KeyValueShard:
    """The smallest shard ShardRunner drives: a dict, and one deadline."""

    def __init__(self, index: int):
        self.partition = index
        self.values: dict[bytes, bytes | None] = {}
        self.deadline: int | None = None
        self.ticks = 0

    def put(self, now: int, key: bytes, value: bytes) -> Result:
        return Result(response={"error_code": 0}, records=[(key, value)])

    def replay(self, key: bytes, value: bytes | None, now: int) -> None:
        self.values[key] = value

    def drain(self):
        return []

    def tick(self, now: int) -> Result:
        self.ticks += 1
        self.deadline = None
        return Result(response=None)

    def next_deadline(self):
        return self.deadline

    def append_failed(self, records, now):
        pass


class Coordinator:
    """What a coordinator gives the hosting, recording what it is told."""

    def __init__(self, broker, factors=(1,)):
        self.events: list = []
        self.hosting = ShardHosting(
            broker, TOPIC, Config(), {"cleanup.policy": "compact"}, factors=lambda: factors,
            build=KeyValueShard, load=self.load, loaded=self.loaded, unloaded=self.unloaded,
            tick=self.tick, noun="keys", size=lambda shard: len(shard.values), log=log)

    async def load(self, h) -> int:
        count = 0
        async for header, records, now in read_log(h.partition):
            for r in records:
                count += h.runner.load(r.key, r.value, now)
        return count

    def loaded(self, h, count, seconds):
        self.events.append(("loaded", h.index, count))
        self.hosting.reschedule(h)

    def unloaded(self, h, answer):
        self.events.append(("unloaded", h.index, answer))

    def tick(self, h):
        res = h.shard.tick(0)
        h.runner.apply(res, 0)
        self.events.append(("tick", h.index))


async def make_broker() -> BrokerCore:
    b = BrokerCore(BrokerConfig(data_dir=None, props={}))
    await b.load()
    return b


def run(coro):
    return asyncio.run(coro)


async def hosting_with_topic() -> Coordinator:
    """A coordinator whose hosting has started and created its topic."""
    c = Coordinator(await make_broker())
    await c.hosting.start()
    assert await c.hosting.ensure_topic()
    return c


def test_the_topic_is_created_on_first_use_and_its_shards_loaded():
    async def main():
        b = await make_broker()
        c = Coordinator(b)
        await c.hosting.start()
        assert c.hosting.hosted == {}
        assert c.hosting.hosted_for(0) == (None, errors.NOT_COORDINATOR)  # no topic yet
        assert await c.hosting.ensure_topic()
        assert TOPIC in b.image and b.replicas.topics[TOPIC].config.get("cleanup.policy") == "compact"
        assert sorted(c.hosting.hosted) == [0, 1]
        assert sorted(c.events) == [("loaded", 0, 0), ("loaded", 1, 0)]
        h, code = c.hosting.hosted_for(1)
        assert code == 0 and not h.loading
        await c.hosting.stop()
        assert c.hosting.hosted == {} and ("unloaded", 1, False) in c.events

    run(main())


def test_records_appended_are_loaded_by_the_next_host():
    async def main():
        b = await make_broker()
        c = Coordinator(b)
        await c.hosting.start()
        await c.hosting.ensure_topic()
        h, _ = c.hosting.hosted_for(0)
        for i in range(3):
            h.runner.apply(h.shard.put(0, b"k%d" % i, b"v%d" % i), 0)
        assert h.last_written == 2
        replicated = h.replicated()
        assert replicated is None or (await replicated) == 0  # a leader alone in its ISR
        await c.hosting.stop()

        again = Coordinator(b)
        again.hosting.sync_shards()
        assert again.hosting.hosted_for(0) == (None, errors.COORDINATOR_LOAD_IN_PROGRESS)
        await again.hosting.start()  # waits for the loads under way
        h, code = again.hosting.hosted_for(0)
        assert code == 0 and h.shard.values == {b"k0": b"v0", b"k1": b"v1", b"k2": b"v2"}
        assert ("loaded", 0, 3) in again.events
        await again.hosting.stop()

    run(main())


def test_a_shard_is_unloaded_when_its_partition_is_gone_and_rehosted_for_a_new_one():
    async def main():
        c = await hosting_with_topic()
        first = c.hosting.hosted[0]
        c.hosting.unload(0)
        assert ("unloaded", 0, True) in c.events and 0 not in c.hosting.hosted
        h, code = c.hosting.hosted_for(0)  # still led here: hosted again, loading
        assert h is None and code == errors.COORDINATOR_LOAD_IN_PROGRESS
        assert c.hosting.hosted[0] is not first
        await c.hosting.hosted[0].load_task
        assert c.hosting.hosted_for(0)[1] == 0
        await c.hosting.stop()

    run(main())


def test_the_timer_fires_at_the_shard_deadline_and_not_after_unload():
    async def main():
        c = await hosting_with_topic()
        h0, h1 = c.hosting.hosted[0], c.hosting.hosted[1]
        now = int(time.time() * 1000)
        h0.shard.deadline = h1.shard.deadline = now + 20
        c.hosting.reschedule(h0)
        c.hosting.reschedule(h1)
        c.hosting.unload(1)
        await asyncio.sleep(0.1)
        assert ("tick", 0) in c.events and ("tick", 1) not in c.events
        assert h0.timer is None and h0.timer_at is None
        await c.hosting.stop()

    run(main())


def test_a_refused_replication_factor_falls_back_to_the_next():
    async def main():
        b = await make_broker()
        asked = []
        create = b.admin.create_topic

        async def create_topic(name, partitions, rf, configs):
            asked.append(rf)
            if rf > 1:
                raise TopicError(errors.INVALID_REPLICATION_FACTOR, "too few brokers")
            return await create(name, partitions, rf, configs)

        b.admin.create_topic = create_topic
        c = Coordinator(b, factors=(3, 1))
        assert await c.hosting.ensure_topic()
        assert asked == [3, 1]
        await c.hosting.stop()

        b2 = await make_broker()
        b2.admin.create_topic = create_topic
        asked.clear()
        only = Coordinator(b2, factors=(3,))
        assert not await only.hosting.ensure_topic()  # nothing left to try
        assert asked == [3] and TOPIC not in b2.image
        await only.hosting.stop()

    run(main())
