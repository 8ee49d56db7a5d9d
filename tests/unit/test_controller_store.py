"""The controller's election and fencing against a real store (SQLite, in
memory), without a broker: one claim wins, the key goes with the lease, a
stale epoch's write is refused by the store, a write decided on an old
state is refused without deposing the controller, and a controlled
shutdown's mark keeps the broker epoch."""

import asyncio

import pytest

from odradek.cluster.controller import Change, Controller, NotController
from odradek.config import BrokerConfig
from odradek.metadata.brokers import BrokerInfo, Registration
from odradek.metadata.image import MetadataImage
from odradek.metadata.sqlite import SqliteStore
from odradek.metadata.topics import PartitionState, TopicState, create_topic_txn


async def following(store, image):
    kvs, rev = await store.range("")
    image.load(kvs, rev)

    async def follow():
        async for events in store.watch("", rev + 1):
            image.apply(events)

    return asyncio.get_running_loop().create_task(follow())


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_election_fencing_and_the_shutting_down_mark():
    async def main():
        store = await SqliteStore.open(None)
        image = MetadataImage()
        task = await following(store, image)
        try:
            regs = {}
            for n in (1, 2):
                regs[n] = Registration(store, BrokerInfo(n, {"PLAINTEXT": ("127.0.0.1", 9000 + n)}), 30)
                await regs[n].register()
            await store.txn(*create_topic_txn(TopicState("t", b"\1" * 16, {}, [
                PartitionState(1, 0, [1, 2], [1, 2])])))
            c1, c2 = (Controller(BrokerConfig(node_id=n), store, image, regs[n]) for n in (1, 2))
            assert await c1.claim() is True
            assert await c2.claim() is False
            assert (image.controller_id, image.controller_epoch) == (1, c1.epoch) and c1.active
            assert not c2.active

            # The controller's lease goes: so does its key; the other claims a newer epoch.
            await store.revoke_lease(regs[1].lease)
            await image.wait_for((await store.range(""))[1])
            assert image.controller_id == -1 and 1 not in image.brokers
            assert await c2.claim() is True and c2.epoch > c1.epoch
            s = image.get("t").partitions[0]
            change = Change("t", 0, PartitionState(2, 1, [1, 2], [2]), s.revision)
            with pytest.raises(NotController):  # the stale epoch: refused by the store
                await c1.write(change)
            assert image.get("t").partitions[0].leader == 1
            stale = Change("t", 0, change.state, s.revision - 1)
            assert (await c2.write(stale))[0] is False  # an old read: refused, still controller
            written, rev = await c2.write(change)
            assert written
            await image.wait_for(rev)
            assert image.get("t").partitions[0].leader == 2

            # The shutting-down mark rewrites the registration under the same lease and epoch.
            epoch = regs[2].info.epoch
            assert await regs[2].mark_shutting_down() is True
            await image.wait_for((await store.range(""))[1])
            assert image.brokers[2].shutting_down and image.brokers[2].epoch == epoch
            assert image.shutting_down() == {2}
            assert image.controller_id == 2  # the key, on the same lease, stays
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await store.close()

    run(main())


def test_controller_loop_elects_and_stops_acting_when_deposed():
    """``run`` claims, then moves the leadership of a broker that leaves."""
    async def main():
        store = await SqliteStore.open(None)
        image = MetadataImage()
        task = await following(store, image)
        loops = []
        try:
            regs = {}
            for n in (1, 2):
                regs[n] = Registration(store, BrokerInfo(n, {"PLAINTEXT": ("127.0.0.1", 9000 + n)}), 30)
                await regs[n].register()
            await store.txn(*create_topic_txn(TopicState("t", b"\1" * 16, {}, [
                PartitionState(2, 0, [2, 1], [2, 1])])))
            c1 = Controller(BrokerConfig(node_id=1), store, image, regs[1])
            loops.append(asyncio.get_running_loop().create_task(c1.run()))
            while not c1.active:
                await asyncio.sleep(0.01)
            await store.revoke_lease(regs[2].lease)
            while image.get("t").partitions[0].leader != 1:
                await asyncio.sleep(0.01)
            s = image.get("t").partitions[0]
            assert (s.leader, s.leader_epoch, s.isr) == (1, 1, [1])
            # Deposed (its lease gone): it notices and stops acting.
            await store.revoke_lease(regs[1].lease)
            while c1.epoch:
                await asyncio.sleep(0.01)
            assert not c1.active
        finally:
            for t in loops + [task]:
                t.cancel()
            await asyncio.gather(*loops, task, return_exceptions=True)
            await store.close()

    run(main())


def test_a_keep_alive_that_gets_no_answer_is_tried_again_before_the_lease_lapses():
    """One renewal that hangs (a lost call) is given up after a third of the
    time to live and tried again at once; the registration and its epoch stay."""
    class OneLostRenewal:
        def __init__(self, store):
            self.store, self.calls = store, 0

        def __getattr__(self, name):
            return getattr(self.store, name)

        async def keep_alive(self, lease):
            self.calls += 1
            if self.calls == 1:
                await asyncio.Event().wait()  # never answered
            return await self.store.keep_alive(lease)

    async def main():
        store = await SqliteStore.open(None)
        lossy = OneLostRenewal(store)
        reg = Registration(lossy, BrokerInfo(1, {"PLAINTEXT": ("127.0.0.1", 9001)}), 1.5)
        epoch = await reg.register()
        reg.start_keepalive()
        try:
            await asyncio.sleep(3.0)
            kvs, _ = await store.range("brokers/")
            assert [kv.create_revision for kv in kvs] == [epoch]  # never lapsed, never made again
            assert reg.info.epoch == epoch and lossy.calls >= 4
        finally:
            await reg.withdraw()
            await store.close()

    run(main())
