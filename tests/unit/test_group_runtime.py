"""The coordinator runtime over a real (in-memory) partition log, without sockets:
operations are appended as record batches, and a fresh coordinator loads them."""

from __future__ import annotations

import asyncio
import time

from odradek.broker import BrokerCore
from odradek.config import BrokerConfig
from odradek.coordinator import records as rec
from odradek.coordinator.group_coordinator import OFFSETS_TOPIC, GroupCoordinator
from odradek.coordinator.records import OffsetValue
from odradek.metadata.topics import PartitionState
from odradek.protocol import errors
from odradek.protocol.records import CONTROL_ABORT, CONTROL_COMMIT, build_batch, build_control_batch, iter_records


def run(coro):
    return asyncio.run(coro)


async def make_broker(**props) -> BrokerCore:
    cfg = {"offsets.topic.num.partitions": "3", "group.initial.rebalance.delay.ms": "0",
           "group.min.session.timeout.ms": "100"}
    cfg.update(props)
    b = BrokerCore(BrokerConfig(data_dir=None, props=cfg))
    await b.load()
    await b.admin.create_topic("t", 2, 1)
    return b


def execute(gc, group_id: str, op: str, **kw):
    """Run an operation of ``group_id``'s shard through the coordinator."""
    shard, code = gc.shard_for(group_id)
    assert code == 0
    return gc.execute(shard, getattr(shard, op), group_id=group_id, **kw)


def offsets_of(gc, group_id: str) -> dict:
    shard, code = gc.shard_for(group_id)
    assert code == 0
    return shard.offsets.of(group_id)


def append(broker, partition: int, batch: bytes) -> None:
    p = broker.replicas.topics[OFFSETS_TOPIC].partitions[partition]
    p.log.append(bytearray(batch), p.leader_epoch, int(time.time() * 1000))


def test_operations_are_written_and_reloaded():
    async def main():
        b = await make_broker()
        gc = GroupCoordinator(b)
        await gc.start()
        assert await gc.ensure_topic()
        topic = b.replicas.topics[OFFSETS_TOPIC]
        assert len(topic.partitions) == 3 and topic.config.get("cleanup.policy") == "compact"
        res = execute(gc, "simple", "commit_offsets", generation=-1, member_id="", instance_id=None,
                      topics=[("t", [(0, 5, -1, "m"), (1, 6, -1, None)])], topic_exists=gc.topic_exists)
        assert {p["error_code"] for t in res.response["topics"] for p in t["partitions"]} == {0}
        join = execute(gc, "g", "join_group", member_id="", instance_id=None,
                       session_timeout=10000, rebalance_timeout=10000, protocol_type="consumer",
                       protocols=[("range", b"sub")], client_id="c", require_known_member_id=False)
        joined = await asyncio.wait_for(gc.wait(join), 5)  # completed by the timer
        member = joined["member_id"]
        sync = execute(gc, "g", "sync_group", generation=1, member_id=member, instance_id=None,
                       protocol_type="consumer", protocol_name="range", assignments=[(member, b"A")])
        assert (await gc.wait(sync))["assignment"] == b"A"
        part = gc.partition_for("simple")
        stored = [r.key for _, r in iter_records(b"".join(topic.partitions[part].log.read(0, 1 << 20).chunks))]
        assert rec.offset_key("simple", "t", 0) in stored
        view = gc.durable_view()
        await gc.stop()

        again = b.groups = GroupCoordinator(b)
        await again.start()
        assert again.durable_view() == view
        assert again.group("g").state == "Stable"
        assert offsets_of(again, "simple")[("t", 0)].metadata == "m"
        # Deleting a topic drops its offsets, durably.
        await b.admin.delete_topic("t")
        assert offsets_of(again, "simple") == {} and again.group("simple") is not None
        await again.stop()
        third = GroupCoordinator(b)
        await third.start()
        assert offsets_of(third, "simple") == {} and third.group("simple") is not None
        await third.stop()

    run(main())


def test_loading_honours_transaction_markers():
    async def main():
        b = await make_broker()
        gc = GroupCoordinator(b)
        await gc.start()
        await gc.ensure_topic()
        await gc.stop()
        part = gc.partition_for("tx")
        now = int(time.time() * 1000)

        def commit(topic_partition: int, offset: int):
            return (rec.offset_key("tx", "t", topic_partition), rec.offset_value(OffsetValue(offset, -1, "", now)),
                    (), now)

        append(b, part, build_batch([commit(0, 1)]))
        append(b, part, build_batch([commit(0, 2)], producer_id=7, producer_epoch=0, base_sequence=0,
                                    transactional=True))
        append(b, part, build_batch([commit(1, 9)], producer_id=8, producer_epoch=0, base_sequence=0,
                                    transactional=True))
        append(b, part, build_control_batch(CONTROL_COMMIT, 7, 0, 0, now))
        append(b, part, build_control_batch(CONTROL_ABORT, 8, 0, 0, now))
        append(b, part, build_batch([(b"\x00\x09junk", b"x", (), now)]))  # unreadable: skipped
        loaded = GroupCoordinator(b)
        await loaded.start()
        offsets = {k: v.offset for k, v in offsets_of(loaded, "tx").items()}
        assert offsets == {("t", 0): 2}
        await loaded.stop()

    run(main())


def test_requests_during_loading_are_refused():
    async def main():
        b = await make_broker()
        gc = GroupCoordinator(b)
        await gc.start()
        await gc.ensure_topic()
        execute(gc, "g", "commit_offsets", generation=-1, member_id="", instance_id=None,
                topics=[("t", [(0, 5, -1, "")])], topic_exists=gc.topic_exists)
        await gc.stop()
        fresh = GroupCoordinator(b)
        fresh.sync_shards()  # hosted, and loading until the loop runs
        assert fresh.shard_for("g") == (None, errors.COORDINATOR_LOAD_IN_PROGRESS)
        assert fresh.list_groups() == (errors.COORDINATOR_LOAD_IN_PROGRESS, [])
        assert await fresh.delete_groups(["g"]) == {"results": [
            {"group_id": "g", "error_code": errors.COORDINATOR_LOAD_IN_PROGRESS}]}
        await fresh.start()
        assert fresh.shard_for("g")[1] == 0
        assert offsets_of(fresh, "g")[("t", 0)].offset == 5
        await fresh.stop()

    run(main())


def test_cancelled_waiter_does_not_leak():
    async def main():
        b = await make_broker(**{"group.initial.rebalance.delay.ms": "60000"})
        gc = GroupCoordinator(b)
        await gc.start()
        await gc.ensure_topic()
        res = execute(gc, "g", "join_group", member_id="", instance_id=None,
                      session_timeout=10000, rebalance_timeout=10000, protocol_type="consumer",
                         protocols=[("range", b"")], client_id="c", require_known_member_id=False)
        task = asyncio.ensure_future(gc.wait(res))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0)
        assert gc.waiters == {}
        await gc.stop()

    run(main())


def test_records_go_to_the_groups_partition():
    async def main():
        b = await make_broker(**{"offsets.topic.num.partitions": "7"})
        gc = GroupCoordinator(b)
        await gc.start()
        await gc.ensure_topic()
        for group in ("alpha", "beta", "gamma"):
            execute(gc, group, "commit_offsets", generation=-1, member_id="", instance_id=None,
                    topics=[("t", [(0, 1, -1, "")])], topic_exists=gc.topic_exists)
        topic = b.replicas.topics[OFFSETS_TOPIC]
        stored = {p.index: {r.key for _, r in iter_records(b"".join(p.log.read(0, 1 << 20).chunks))}
                  for p in topic.partitions}
        for group in ("alpha", "beta", "gamma"):
            assert [i for i, keys in stored.items() if rec.offset_key(group, "t", 0) in keys] == \
                [rec.partition_for(group, 7)]
        await gc.stop()

    run(main())


def test_a_partition_not_led_here_has_no_shard():
    async def main():
        b = await make_broker()
        gc = GroupCoordinator(b)
        await gc.start()
        assert gc.shard_for("g") == (None, errors.NOT_COORDINATOR)  # no __consumer_offsets yet
        assert gc.list_groups() == (0, [])
        await gc.ensure_topic()
        assert sorted(gc.hosted) == [0, 1, 2]
        execute(gc, "g", "commit_offsets", generation=-1, member_id="", instance_id=None,
                topics=[("t", [(0, 5, -1, "")])], topic_exists=gc.topic_exists)
        parked = execute(gc, "g", "join_group", member_id="", instance_id=None, session_timeout=10000,
                         rebalance_timeout=10000, protocol_type="consumer", protocols=[("range", b"")],
                         client_id="c", require_known_member_id=False)
        other = next(gid for gid in ("h", "i", "j", "k") if gc.partition_for(gid) != gc.partition_for("g"))
        part = gc.partition_for("g")
        p, _ = b.replicas.partition_or_error(OFFSETS_TOPIC, part)
        state = b.image.get(OFFSETS_TOPIC).partitions[part]
        p.leader = state.leader = b.config.node_id + 1  # led elsewhere now, in the image too
        assert gc.shard_for("g") == (None, errors.NOT_COORDINATOR)
        assert part not in gc.hosted and gc.shard_for(other)[1] == 0
        assert (await gc.wait(parked))["error_code"] == errors.NOT_COORDINATOR
        assert (await gc.delete_groups(["g"]))["results"][0]["error_code"] == errors.NOT_COORDINATOR
        p.leader = state.leader = b.config.node_id  # led here again: loaded anew
        assert gc.shard_for("g") == (None, errors.COORDINATOR_LOAD_IN_PROGRESS)
        await gc.hosted[part].load_task
        assert offsets_of(gc, "g")[("t", 0)].offset == 5
        await gc.stop()

    run(main())


def test_a_partition_the_image_says_is_led_here_but_not_hosted_yet_is_loading():
    """Between the metadata image naming this broker a partition's leader and
    the replica manager hosting it, a coordinator answers
    COORDINATOR_LOAD_IN_PROGRESS (ask here again), not NOT_COORDINATOR."""
    async def main():
        b = await make_broker()
        gc = GroupCoordinator(b)
        await gc.start()
        await gc.ensure_topic()
        part = gc.partition_for("g")
        p, _ = b.replicas.partition_or_error(OFFSETS_TOPIC, part)
        p.leader = b.config.node_id + 1  # the image says here; the partition has not caught up
        assert gc.shard_for("g") == (None, errors.COORDINATOR_LOAD_IN_PROGRESS)
        await gc.stop()

    run(main())


def replicated_to(b, group_id: str, follower: int):
    """``group_id``'s ``__consumer_offsets`` partition, led here with ``follower``
    in its ISR too (not fetched yet): what is appended is not committed."""
    p, _ = b.replicas.partition_or_error(OFFSETS_TOPIC, rec.partition_for(group_id, 3))
    me = b.config.node_id
    p.apply_state(PartitionState(leader=me, leader_epoch=p.leader_epoch, replicas=[me, follower],
                                 isr=[me, follower]), int(time.time() * 1000))
    return p


def commit(gc, group_id: str, offset: int):
    shard, code = gc.shard_for(group_id)
    assert code == 0
    res = gc.execute(shard, shard.commit_offsets, group_id=group_id, generation=-1, member_id="",
                     instance_id=None, topics=[("t", [(0, offset, -1, "")])], topic_exists=gc.topic_exists)
    return asyncio.ensure_future(gc.answer(shard, res))


def codes(response: dict) -> set:
    return {p["error_code"] for t in response["topics"] for p in t["partitions"]}


def test_an_offset_commit_is_answered_once_replicated_to_the_isr():
    """Kafka answers OffsetCommit once its records are below the high
    watermark: a coordinator killed after answering must not lose it."""
    async def main():
        b = await make_broker()
        gc = GroupCoordinator(b)
        await gc.start()
        await gc.ensure_topic()
        p = replicated_to(b, "g", 2)
        answered = commit(gc, "g", 5)
        await asyncio.sleep(0.01)
        assert not answered.done() and p.high_watermark <= p.log_end_offset - 1
        p.on_follower_fetch(2, p.log_end_offset - 1, int(time.time() * 1000))  # not all of it yet
        await asyncio.sleep(0.01)
        assert not answered.done()
        p.on_follower_fetch(2, p.log_end_offset, int(time.time() * 1000))
        assert codes(await asyncio.wait_for(answered, 1)) == {0}
        await gc.stop()

    run(main())


def test_an_offset_commit_not_replicated_before_leadership_moves_is_not_coordinator():
    async def main():
        b = await make_broker()
        gc = GroupCoordinator(b)
        await gc.start()
        await gc.ensure_topic()
        p = replicated_to(b, "g", 2)
        answered = commit(gc, "g", 5)
        await asyncio.sleep(0.01)
        assert not answered.done()
        p.apply_state(PartitionState(leader=2, leader_epoch=p.leader_epoch + 1, replicas=[b.config.node_id, 2],
                                     isr=[2]), int(time.time() * 1000))
        assert codes(await asyncio.wait_for(answered, 1)) == {errors.NOT_COORDINATOR}
        await gc.stop()

    run(main())


def test_an_offset_commit_not_replicated_within_the_commit_timeout_is_coordinator_not_available():
    """offsets.commit.timeout.ms: a follower in the ISR that does not fetch
    cannot hold a commit forever; Kafka answers COORDINATOR_NOT_AVAILABLE
    and the client retries."""
    async def main():
        b = await make_broker()
        gc = GroupCoordinator(b)
        gc.config.commit_timeout_ms = 200
        await gc.start()
        await gc.ensure_topic()
        p = replicated_to(b, "g", 2)
        t0 = time.monotonic()
        response = await asyncio.wait_for(commit(gc, "g", 5), 2)
        assert codes(response) == {errors.COORDINATOR_NOT_AVAILABLE}
        assert 0.15 < time.monotonic() - t0 < 1.5
        assert not p._acks  # its wait was taken off the partition
        await gc.stop()

    run(main())


def offset_fetch(b, group_id: str, version: int = 8):
    """OffsetFetch of ``group_id``'s partition t-0 through its handler."""
    from types import SimpleNamespace

    from odradek.apis.groups import offset_fetch as handler
    from odradek.server.connection import RequestContext

    conn = SimpleNamespace(principal=None, listener="PLAINTEXT")
    ctx = RequestContext(b, conn, 9, version, 1, "test", {})
    request = {"groups": [{"group_id": group_id, "member_id": None, "member_epoch": -1,
                           "topics": [{"name": "t", "partition_indexes": [0]}]}], "require_stable": False}
    return asyncio.ensure_future(handler(ctx, request))


def test_an_offset_fetch_never_shows_a_commit_not_yet_replicated():
    """Kafka's coordinators answer reads from committed state only: a commit
    still below the ISR's reach could be lost by a failover, so OffsetFetch
    answers once it is committed (and then shows it), never before."""
    async def main():
        b = await make_broker()
        gc = GroupCoordinator(b)
        b.groups = gc
        await gc.start()
        await gc.ensure_topic()
        p = replicated_to(b, "g", 2)
        answered = commit(gc, "g", 5)
        fetched = offset_fetch(b, "g")
        await asyncio.sleep(0.02)
        assert not fetched.done() and not answered.done()
        p.on_follower_fetch(2, p.log_end_offset, int(time.time() * 1000))
        assert codes(await asyncio.wait_for(answered, 1)) == {0}
        group = (await asyncio.wait_for(fetched, 1))["groups"][0]
        assert group["error_code"] == 0
        assert group["topics"][0]["partitions"][0]["committed_offset"] == 5
        await gc.stop()

    run(main())


def test_an_offset_fetch_whose_pending_commit_loses_leadership_is_not_coordinator():
    async def main():
        b = await make_broker()
        gc = GroupCoordinator(b)
        b.groups = gc
        await gc.start()
        await gc.ensure_topic()
        p = replicated_to(b, "g", 2)
        answered = commit(gc, "g", 5)
        fetched = offset_fetch(b, "g")
        await asyncio.sleep(0.01)
        p.apply_state(PartitionState(leader=2, leader_epoch=p.leader_epoch + 1, replicas=[b.config.node_id, 2],
                                     isr=[2]), int(time.time() * 1000))
        assert codes(await asyncio.wait_for(answered, 1)) == {errors.NOT_COORDINATOR}
        group = (await asyncio.wait_for(fetched, 1))["groups"][0]
        assert group == {"group_id": "g", "topics": [], "error_code": errors.NOT_COORDINATOR}
        await gc.stop()

    run(main())
