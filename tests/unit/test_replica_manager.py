"""The replica manager's one lookup, its reconciliation with the metadata
image, and the Partition's rules: what a request gets for an unknown topic
(by name or id), an unknown partition, a partition hosted or led elsewhere
and a stale or future leader epoch; hosting follows the image (new topics,
leader changes, deletions); appends as leader wake waiting fetches;
consumers read below the high watermark."""

from __future__ import annotations

import asyncio
import time

from odradek.config import BrokerConfig
from odradek.metadata.image import MetadataImage
from odradek.metadata.store import Event, KeyValue
from odradek.metadata.topics import PartitionState, TopicState, create_topic_txn, delete_topic_ops
from odradek.protocol import errors
from odradek.protocol.records import build_batch
from odradek.replica.manager import ReplicaManager
from odradek.storage.memory import MemoryLogStore

TOPIC_ID = bytes(range(16))


REVISION = [0]


def events(ops) -> list[Event]:
    """The events a store would send for ``ops`` (Puts and Deletes) at the next revision."""
    REVISION[0] += 1
    out = []
    for op in ops:
        if hasattr(op, "value"):
            out.append(Event("put", KeyValue(op.key, op.value, REVISION[0], REVISION[0], 1)))
        else:
            out.append(Event("delete", KeyValue(op.key, b"", 0, REVISION[0], 0)))
    return out


async def manager() -> ReplicaManager:
    m = ReplicaManager(BrokerConfig(node_id=1), MetadataImage())
    m.store = MemoryLogStore()
    state = TopicState("t", TOPIC_ID, {}, [PartitionState(1, 5, [1], [1]), PartitionState(2, 0, [2], [2]),
                                           PartitionState(1, 0, [1], [1])])
    m.image.apply(events(create_topic_txn(state)[1]))
    await m.reconcile()
    return m


def test_lookup_errors():
    asyncio.run(_lookup_errors())


async def _lookup_errors():
    m = await manager()
    p, code = m.partition_or_error("t", 0)
    assert code == 0 and (p.topic.name, p.index, p.leader_epoch) == ("t", 0, 5)
    assert m.partition_or_error(TOPIC_ID, 0)[0] is p
    assert m.partition_or_error("nope", 0) == (None, errors.UNKNOWN_TOPIC_OR_PARTITION)
    assert m.partition_or_error(bytes(16), 0) == (None, errors.UNKNOWN_TOPIC_ID)
    assert m.partition_or_error("t", 3) == (None, errors.UNKNOWN_TOPIC_OR_PARTITION)
    assert m.partition_or_error("t", -1) == (None, errors.UNKNOWN_TOPIC_OR_PARTITION)
    # Partition 1 is on node 2 only: not hosted here.
    assert [p.index for p in m.topic("t").partitions] == [0, 2]
    assert m.partition_or_error("t", 1) == (None, errors.NOT_LEADER_OR_FOLLOWER)
    assert m.partition_or_error(TOPIC_ID, 1) == (None, errors.NOT_LEADER_OR_FOLLOWER)
    # Leader epochs: -1 is not checked; older is fenced; newer is unknown.
    assert m.partition_or_error("t", 0, current_leader_epoch=-1)[1] == 0
    assert m.partition_or_error("t", 0, current_leader_epoch=5)[1] == 0
    assert m.partition_or_error("t", 0, current_leader_epoch=4) == (None, errors.FENCED_LEADER_EPOCH)
    assert m.partition_or_error("t", 0, current_leader_epoch=6) == (None, errors.UNKNOWN_LEADER_EPOCH)
    # A new leader epoch in the image reaches the partition.
    p = m.topic("t").by_index[0]
    m.image.apply(events([create_topic_txn(TopicState("t", TOPIC_ID, {}, [PartitionState(1, 6, [1], [1])]))[1][2]]))
    await m.reconcile({"t"})
    assert p.leader_epoch == 6 and m.partition_or_error("t", 0, current_leader_epoch=5)[1] == errors.FENCED_LEADER_EPOCH
    # Deleted: the logs go.
    m.image.apply(events(delete_topic_ops("t")))
    await m.reconcile({"t"})
    assert m.topic("t") is None and m.partition_or_error("t", 0)[1] == errors.UNKNOWN_TOPIC_OR_PARTITION
    assert m.store.existing_logs() == []


def test_append_as_leader_stamps_wakes_and_reads_below_the_high_watermark():
    async def main():
        m = await manager()
        p, _ = m.partition_or_error("t", 0)
        waiter = asyncio.get_running_loop().create_future()
        p.add_waiter(waiter)
        now = int(time.time() * 1000)
        info = p.append_as_leader(bytearray(build_batch([(b"k", b"v", [], now)] * 3)), now)
        assert info.base_offset == 0 and waiter.done()
        assert p.log.leader_epochs()[-1][0] == 5  # stamped with the leader's epoch
        assert p.high_watermark == p.log_end_offset == 3
        assert p.read_for_consumer(0, 1 << 20).size > 0
        p.append_as_leader(bytearray(build_batch([(b"k", b"w", [], now)])), now)
        p.truncate_to(3)  # at a batch boundary: the last batch goes
        assert p.log_end_offset == 3

    asyncio.run(main())


def test_an_unreadable_metadata_value_is_passed_over():
    """A value the image cannot read is logged and skipped: the other changes
    of the revision still apply, and the revision advances."""
    image = MetadataImage()
    state = TopicState("good", bytes(16), {}, [PartitionState(1, 0, [1], [1])])
    changes = events(create_topic_txn(state)[1])
    bad = Event("put", KeyValue("topics/bad", b"{not json", changes[0].revision, changes[0].revision, 1))
    acl = Event("put", KeyValue("acls/garbage", b"\xff", changes[0].revision, changes[0].revision, 1))
    touched = image.apply([bad, acl] + changes)
    assert touched == {"good"} and "bad" not in image and image.revision == changes[0].revision


def test_a_deleted_topics_fetches_stop_before_its_logs_close():
    """A follower's fetcher must never touch a closed log: the partitions of a
    deleted topic are taken from their fetchers before ``discard`` closes them
    (not once every topic is reconciled)."""
    async def go():
        m = await manager()
        order = []

        class Fetchers:
            def follow(self, changed, lost):
                order.append(("follow", sorted(p.index for p in lost)))

        m.fetchers = Fetchers()
        discard = m.discard

        async def recording_discard(topic, partitions=None):
            order.append(("discard", sorted(p.index for p in topic.partitions)))
            await discard(topic, partitions)

        m.discard = recording_discard
        hosted = sorted(p.index for p in m.topic("t").partitions)
        m.image.apply(events(delete_topic_ops("t")))
        await m.reconcile({"t"})
        assert order[:2] == [("follow", hosted), ("discard", hosted)]

    asyncio.run(go())


def test_a_fetcher_survives_an_unexpected_error(caplog):
    """An unexpected error in a replica fetcher's round is logged and the
    fetcher goes on: it never ends by itself."""
    import pytest

    from odradek.replica.fetcher import ReplicaFetcher

    f = ReplicaFetcher.__new__(ReplicaFetcher)
    f.node_id, f.leader_id, f.backoff = 1, 2, 0.01
    rounds = []

    async def failing_once():
        rounds.append(1)
        if len(rounds) == 1:
            raise RuntimeError("a closed log")
        await asyncio.sleep(3600)

    f._run = failing_once

    async def go():
        task = asyncio.get_running_loop().create_task(f.run())
        while len(rounds) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert "fetcher for leader 2 failed" in caplog.text and "a closed log" in caplog.text


def test_a_leader_behind_the_follower_is_asked_again_soon():
    """UNKNOWN_LEADER_EPOCH and NOT_LEADER_OR_FOLLOWER mean the leader's image
    is behind: the partition is fetched again after 50 ms, doubling up to
    replica.fetch.backoff.ms, and from 50 ms again after an answer with data;
    errors of a follower behind the leader wait the whole backoff."""
    from odradek.replica.fetcher import ReplicaFetcher

    async def go():
        m = await manager()
        followed = TopicState("f", bytes(range(1, 17)), {}, [PartitionState(2, 0, [2, 1], [2, 1])])
        m.image.apply(events(create_topic_txn(followed)[1]))
        await m.reconcile({"f"})
        p = m.topic("f").by_index[0]  # led by broker 2: followed here
        f = ReplicaFetcher(2, 1, m.image, BrokerConfig(node_id=1), lambda: 1)
        f.add(p)
        key = (p.topic.topic_id, p.index)

        def answer(code: int) -> float | None:
            f.delayed.pop(key, None)
            f.handle_partition(p, {"error_code": code, "high_watermark": 0, "log_start_offset": 0,
                                   "records": None}, 0)
            return round(f.delayed[key] - time.monotonic(), 2) if key in f.delayed else None

        assert [answer(errors.UNKNOWN_LEADER_EPOCH) for _ in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
        assert answer(errors.NONE) is None
        assert answer(errors.NOT_LEADER_OR_FOLLOWER) == 0.05
        assert answer(errors.FENCED_LEADER_EPOCH) == 1.0
        f.remove(p)
        f.add(p)
        assert answer(errors.UNKNOWN_LEADER_EPOCH) == 0.05

    asyncio.run(go())


def test_flushes_of_a_partition_run_one_at_a_time_and_write_snapshots_in_order():
    asyncio.run(_flushes_in_order())


async def _flushes_in_order():
    import threading

    m = await manager()
    p, _ = m.partition_or_error("t", 0)
    written = []
    running = []
    lock = threading.Lock()

    class SlowLog:
        """A log whose first fsync takes a while; records what is written."""
        def __init__(self, log):
            self.log = log
            self.slow = True

        def flush(self):
            with lock:
                running.append(1)
                assert len(running) == 1, "two flushes of one partition at once"
            if self.slow:
                self.slow = False
                time.sleep(0.2)
            with lock:
                running.pop()

        def write_aux(self, name, data):
            written.append(data)

        def __getattr__(self, name):
            return getattr(self.log, name)

    p.log = SlowLog(p.log)
    p.pending_snapshot = b"older"
    first = asyncio.ensure_future(m.flush(p))
    await asyncio.sleep(0.05)  # the first flush is in its fsync
    p.pending_snapshot = b"newer"
    await asyncio.gather(first, m.flush(p))
    assert written == [b"older", b"newer"]
