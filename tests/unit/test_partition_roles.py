"""The partition as leader and follower, without a network: the high
watermark over the ISR, follower catch-up and ISR proposals, acks=all
waiters, roles from the image's state, and what ListOffsets answers while
a new leader's high watermark catches up."""

from __future__ import annotations

import asyncio

import pytest

from odradek.apis.offsets import OffsetNotAvailable, list_offset
from odradek.config import BrokerConfig, TopicConfig
from odradek.metadata.topics import PartitionState
from odradek.protocol import errors
from odradek.protocol.records import build_batch
from odradek.replica.partition import Partition, Topic
from odradek.storage.memory import MemoryLogStore


def make(node_id=1, state=PartitionState(1, 0, [1, 2, 3], [1, 2, 3], revision=5), now=1000):
    store = MemoryLogStore(auto_high_watermark=False)
    topic = Topic("t", b"\x01" * 16, TopicConfig(BrokerConfig(), {}))
    p = Partition(topic, 0, store.open_log("t", 0, topic.config.log_config()), node_id, lambda p: None)
    proposals = []
    p._isr_changes = lambda part, isr: proposals.append(isr)
    p.apply_state(state, now)
    topic.host([p])
    return p, proposals


def append(p, n=1):
    return p.append_as_leader(bytearray(build_batch([(None, b"v", (), 1000)] * n)), 1000)


def test_high_watermark_is_the_lowest_log_end_over_the_isr():
    p, _ = make()
    append(p, 10)
    assert (p.log_end_offset, p.high_watermark) == (10, 0)
    p.on_follower_fetch(2, 10, 1001)
    assert p.high_watermark == 0  # 3 has not fetched
    p.on_follower_fetch(3, 4, 1001)
    assert p.high_watermark == 4
    p.on_follower_fetch(3, 10, 1002)
    assert p.high_watermark == 10
    p.on_follower_fetch(2, 3, 1003)  # a fetch offset lower than before never lowers it
    assert p.high_watermark == 10


def test_alone_in_the_isr_the_leader_commits_at_once():
    p, _ = make(state=PartitionState(1, 0, [1, 2], [1], revision=5))
    append(p, 3)
    assert p.high_watermark == 3 and p.replicated(2) is None


def test_acks_waiters_complete_in_order_and_fail_on_lost_leadership():
    async def run():
        p, _ = make()
        append(p, 5)
        first = p.replicated(2)
        second = p.replicated(4)
        p.on_follower_fetch(2, 5, 1001)
        p.on_follower_fetch(3, 3, 1001)
        await asyncio.sleep(0)
        assert first.done() and first.result() == 0 and not second.done()
        p.apply_state(PartitionState(2, 1, [1, 2, 3], [1, 2, 3], revision=6), 1002)
        assert second.result() == errors.NOT_LEADER_OR_FOLLOWER
        assert not p.is_leader and p.followers == {}

    asyncio.run(run())


def test_a_follower_out_of_the_isr_is_proposed_back_once_caught_up():
    p, proposals = make(state=PartitionState(1, 0, [1, 2, 3], [1, 2], revision=5))
    append(p, 4)
    p.on_follower_fetch(2, 4, 1001)
    assert p.high_watermark == 4
    p.on_follower_fetch(3, 2, 1001)  # behind the high watermark: not yet
    assert proposals == []
    p.on_follower_fetch(3, 4, 1002)
    assert proposals == [[1, 2, 3]] and p.pending_isr == [1, 2, 3]
    # While the expansion is written, the high watermark counts 3 (the maximal ISR).
    append(p, 2)
    p.on_follower_fetch(2, 6, 1003)
    assert p.high_watermark == 4
    p.on_follower_fetch(3, 6, 1003)
    assert p.high_watermark == 6
    # The image brings the new ISR: the change is no longer pending.
    p.apply_state(PartitionState(1, 0, [1, 2, 3], [1, 2, 3], revision=7), 1004)
    assert p.pending_isr is None and p.isr == [1, 2, 3]


def test_a_failed_expansion_gives_the_high_watermark_of_the_isr_without_it():
    p, proposals = make(state=PartitionState(1, 0, [1, 2, 3], [1, 2], revision=5))
    append(p, 4)
    p.on_follower_fetch(2, 4, 1001)
    p.on_follower_fetch(3, 4, 1002)
    assert p.pending_isr == [1, 2, 3]
    append(p, 2)
    p.on_follower_fetch(2, 6, 1003)
    assert p.high_watermark == 4  # 3, counted while its expansion is written, is at 4
    p.isr_change_failed()
    assert p.high_watermark == 6  # over [1, 2], as it stands


def test_fetches_after_which_nothing_moved_keep_the_high_watermark_and_the_clocks():
    """Whatever the order of appends, fetches (many that move nothing), ISR
    changes and failed expansions: the high watermark is the highest the
    ISR has had (the lowest log end over the maximal ISR), and a follower is
    caught up at every fetch that reaches the log end."""
    import random
    rng = random.Random(7)
    for _ in range(200):
        p, _ = make(state=PartitionState(1, 0, [1, 2, 3], [1, 2, 3], revision=5))
        ends = {2: -1, 3: -1}
        hw, now, revision = 0, 1000, 5
        for _ in range(40):
            now += 1
            op = rng.random()
            if op < 0.25:
                append(p, rng.randint(1, 3))
            elif op < 0.85:
                r = rng.choice([2, 3])
                offset = rng.choice([ends[r], ends[r], p.log_end_offset, rng.randint(0, p.log_end_offset)])
                offset = max(offset, 0)
                p.on_follower_fetch(r, offset, now)
                ends[r] = min(offset, p.log_end_offset)
                if ends[r] >= p.log_end_offset:
                    assert p.followers[r].caught_up_ms == now
            elif op < 0.95:
                revision += 1
                isr = [1] + sorted(rng.sample([2, 3], rng.randint(0, 2)))
                p.apply_state(PartitionState(1, 0, [1, 2, 3], isr, revision=revision), now)
            else:
                p.isr_change_failed()
            over = [ends[r] for r in p.maximal_isr if r != 1]
            hw = max(hw, min([p.log_end_offset] + over))
            assert p.high_watermark == hw


def test_lagging_followers_by_caught_up_time():
    p, _ = make()
    append(p, 4)
    p.on_follower_fetch(2, 4, 2000)
    p.on_follower_fetch(3, 1, 2000)
    # In the ISR at the leadership's start: counted as caught up then (1000).
    assert p.lagging_followers(12_000, 10_000) == [3]
    assert p.lagging_followers(11_000, 10_000) == []


def test_leader_epoch_check_and_new_leadership_marks_the_epoch():
    p, _ = make()
    append(p, 2)
    p.apply_state(PartitionState(1, 3, [1, 2, 3], [1, 2, 3], revision=6), 2000)
    assert p.epoch_start_offset == 2 and p.log.latest_epoch == 3
    assert p.check_leader_epoch(2) == errors.FENCED_LEADER_EPOCH
    assert p.check_leader_epoch(4) == errors.UNKNOWN_LEADER_EPOCH
    assert p.check_leader_epoch(3) == 0


def test_list_offsets_waits_for_a_new_leaders_high_watermark():
    p, _ = make()
    append(p, 3)
    p.on_follower_fetch(2, 3, 1001)
    p.on_follower_fetch(3, 3, 1001)
    append(p, 2)  # not yet replicated
    assert p.high_watermark == 3
    # A new leadership (epoch 1) begins at the log end 5, above the high watermark.
    p.apply_state(PartitionState(1, 1, [1, 2, 3], [1, 2, 3], revision=6), 2000)
    with pytest.raises(OffsetNotAvailable):
        list_offset(p, -1)
    with pytest.raises(OffsetNotAvailable):
        list_offset(p, 5000)  # a timestamp past everything committed
    assert list_offset(p, -2)["offset"] == 0
    p.on_follower_fetch(2, 5, 2001)
    p.on_follower_fetch(3, 5, 2001)
    assert list_offset(p, -1)["offset"] == 5


def test_a_follower_appends_the_leaders_batches_and_follows_its_high_watermark():
    leader, _ = make()
    append(leader, 3)
    follower, _ = make(node_id=2)
    assert not follower.is_leader
    records = bytearray(b"".join(bytes(c) for c in leader.read_for_replica(0, 1 << 20).chunks))
    follower.append_as_follower(records, 1001)
    assert follower.log_end_offset == 3 and follower.high_watermark == 0
    follower.follow_high_watermark(2)
    assert follower.high_watermark == 2
    follower.follow_high_watermark(10)  # capped by its own log end
    assert follower.high_watermark == 3
