"""The controller's decisions, as pure functions of partition states, live
brokers, brokers shutting down and config: no store, no event loop."""

import random

from odradek.cluster.controller import (
    PREFERRED, UNCLEAN, Change, decide_partition, elect, leadership_changes, rebalance_changes,
)
from odradek.config import BrokerConfig
from odradek.metadata.topics import PartitionState, TopicState
from odradek.protocol import errors


def P(leader, epoch, replicas, isr, revision=7):
    return PartitionState(leader, epoch, list(replicas), list(isr), [], revision)


def topic(name, *parts, **configs):
    return TopicState(name, name.encode().ljust(16, b"\0"), dict(configs), list(parts))


def test_a_live_leader_with_a_live_isr_is_left_alone():
    assert decide_partition(P(1, 3, [1, 2, 3], [1, 2, 3]), {1, 2, 3}, set()) is None
    assert decide_partition(P(2, 3, [1, 2, 3], [2]), {1, 2, 3}, set()) is None  # not the controller's to grow


def test_departed_leader_gives_way_to_the_first_live_isr_replica_with_epoch_plus_one():
    new = decide_partition(P(1, 3, [1, 2, 3], [3, 1, 2]), {2, 3}, set())
    assert (new.leader, new.leader_epoch, new.isr) == (2, 4, [3, 2])  # replicas order; ISR minus 1
    assert new.replicas == [1, 2, 3]


def test_shutting_down_and_out_of_isr_replicas_are_not_elected():
    new = decide_partition(P(1, 0, [1, 2, 3], [1, 3]), {2, 3}, set())
    assert (new.leader, new.isr) == (3, [3])  # 2 is live but not in the ISR
    new = decide_partition(P(1, 0, [1, 2, 3], [1, 2, 3]), {2, 3}, {2})
    assert (new.leader, new.isr) == (3, [3])  # 2 is shutting down: leaves the ISR too


def test_no_eligible_leader_goes_offline_and_keeps_the_isr():
    new = decide_partition(P(1, 5, [1, 2], [1]), {2}, set())
    assert (new.leader, new.leader_epoch, new.isr) == (-1, 6, [1])
    assert decide_partition(new, {2}, set()) is None  # already offline: nothing more to write
    # both ISR members gone at once: the ISR is left as it was
    new = decide_partition(P(1, 5, [1, 2, 3], [1, 2]), {3}, set())
    assert (new.leader, new.isr) == (-1, [1, 2])


def test_unclean_election_takes_any_live_replica_and_resets_the_isr():
    new = decide_partition(P(1, 5, [1, 2, 3], [1]), {2, 3}, set(), unclean=True)
    assert (new.leader, new.leader_epoch, new.isr) == (2, 6, [2])
    # but a clean candidate is always preferred
    new = decide_partition(P(1, 5, [1, 2, 3], [1, 3]), {2, 3}, set(), unclean=True)
    assert (new.leader, new.isr) == (3, [3])


def test_offline_partition_comes_back_when_an_isr_member_returns():
    off = P(-1, 6, [1, 2], [1])
    assert decide_partition(off, {2}, set()) is None
    new = decide_partition(off, {1, 2}, set())
    assert (new.leader, new.leader_epoch, new.isr) == (1, 7, [1])


def test_departed_follower_leaves_the_isr_without_an_epoch_bump():
    new = decide_partition(P(1, 4, [1, 2, 3], [1, 2, 3]), {1, 2}, set())
    assert (new.leader, new.leader_epoch, new.isr) == (1, 4, [1, 2])


def test_controlled_shutdown_moves_leadership_and_isr_membership():
    new = decide_partition(P(1, 4, [1, 2, 3], [1, 2, 3]), {1, 2, 3}, {1})
    assert (new.leader, new.leader_epoch, new.isr) == (2, 5, [2, 3])
    new = decide_partition(P(2, 4, [1, 2, 3], [1, 2, 3]), {1, 2, 3}, {1})
    assert (new.leader, new.leader_epoch, new.isr) == (2, 4, [2, 3])  # follower: out of the ISR only
    # the only ISR member stays leader, and in the ISR
    assert decide_partition(P(1, 4, [1, 2], [1]), {1, 2}, {1}) is None
    # two shutting down at once, one of them leading: the other cannot take over,
    # and leaves the ISR, where the leader remains
    new = decide_partition(P(1, 4, [1, 2, 3], [1, 2]), {1, 2, 3}, {1, 2})
    assert (new.leader, new.leader_epoch, new.isr) == (1, 4, [1])


def test_the_invariants_hold_on_random_inputs():
    rng = random.Random(5)
    for _ in range(5000):
        n = rng.randint(1, 5)
        replicas = rng.sample(range(1, 7), n)
        isr = [r for r in replicas if rng.random() < 0.6] or [replicas[0]]
        leader = rng.choice(isr + [-1])
        s = P(leader, rng.randint(0, 9), replicas, isr)
        live = {b for b in range(1, 7) if rng.random() < 0.6}
        shutting = {b for b in live if rng.random() < 0.2}
        unclean = rng.random() < 0.3
        new = decide_partition(s, live, shutting, unclean)
        if new is None:
            continue
        assert new.isr, "an ISR is never emptied"
        assert new.replicas == s.replicas
        assert (new.leader_epoch == s.leader_epoch + 1) == (new.leader != s.leader)
        assert new.leader_epoch in (s.leader_epoch, s.leader_epoch + 1)
        if new.leader != -1:
            assert new.leader in new.isr and new.leader in live
            if new.leader != s.leader:
                assert new.leader not in shutting
                assert new.leader in s.isr or (unclean and new.isr == [new.leader])
        else:
            assert new.isr == s.isr
        assert set(new.isr) <= set(s.isr) or new.isr == [new.leader]
        assert decide_partition(new, live, shutting, unclean) is None, "a decision is stable"


def test_leadership_changes_per_topic_config_and_read_revision():
    config = BrokerConfig(props={})
    t1 = topic("a", P(1, 0, [1, 2], [1], revision=11), P(2, 0, [2, 1], [2, 1], revision=12))
    t2 = topic("b", P(1, 0, [1, 2], [1], revision=13), **{"unclean.leader.election.enable": "true"})
    changes = leadership_changes([t1, t2], {2}, set(), config)
    assert [(c.topic, c.index, c.state.leader, c.state.isr, c.read_at) for c in changes] == [
        ("a", 0, -1, [1], 11), ("a", 1, 2, [2], 12), ("b", 0, 2, [2], 13)]
    assert isinstance(changes[0], Change) and isinstance(changes[0], tuple)
    # the broker default applies where the topic sets nothing
    unclean = BrokerConfig(props={"unclean.leader.election.enable": "true"})
    assert leadership_changes([t1], {2}, set(), unclean)[0].state.leader == 2


def test_rebalancing_moves_leadership_back_to_the_preferred_replica_past_the_threshold():
    parts = [P(2, 1, [1, 2], [1, 2], revision=i) for i in range(3)] + \
            [P(1, 0, [1, 2], [1, 2], revision=3 + i) for i in range(7)]
    t = topic("t", *parts)
    changes = rebalance_changes([t], {1, 2}, set(), 10)  # 3 of 10 not led by 1: 30% > 10%
    assert [(c.index, c.state.leader, c.state.leader_epoch, c.state.isr) for c in changes] == [
        (0, 1, 2, [1, 2]), (1, 1, 2, [1, 2]), (2, 1, 2, [1, 2])]
    assert rebalance_changes([t], {1, 2}, set(), 30) == []  # exactly at the threshold
    assert rebalance_changes([t], {1, 2}, {1}, 10) == []  # shutting down
    assert rebalance_changes([topic("u", P(2, 1, [1, 2], [2]))], {1, 2}, set(), 10) == []  # not in the ISR


def test_elect_preferred():
    assert elect(P(1, 0, [1, 2], [1, 2]), PREFERRED, {1, 2}, set()) == (None, errors.ELECTION_NOT_NEEDED)
    new, code = elect(P(2, 3, [1, 2], [1, 2]), PREFERRED, {1, 2}, set())
    assert code == 0 and (new.leader, new.leader_epoch, new.isr) == (1, 4, [1, 2])
    assert elect(P(2, 3, [1, 2], [2]), PREFERRED, {1, 2}, set())[1] == errors.PREFERRED_LEADER_NOT_AVAILABLE
    assert elect(P(2, 3, [1, 2], [1, 2]), PREFERRED, {2}, set())[1] == errors.PREFERRED_LEADER_NOT_AVAILABLE
    assert elect(P(2, 3, [1, 2], [1, 2]), PREFERRED, {1, 2}, {1})[1] == errors.PREFERRED_LEADER_NOT_AVAILABLE


def test_elect_unclean():
    assert elect(P(1, 0, [1, 2], [1]), UNCLEAN, {1, 2}, set()) == (None, errors.ELECTION_NOT_NEEDED)
    new, code = elect(P(-1, 3, [1, 2], [1]), UNCLEAN, {2}, set())
    assert code == 0 and (new.leader, new.leader_epoch, new.isr) == (2, 4, [2])
    new, code = elect(P(-1, 3, [1, 2, 3], [1, 3]), UNCLEAN, {2, 3}, set())
    assert code == 0 and (new.leader, new.isr) == (3, [3])  # the ISR first
    assert elect(P(-1, 3, [1, 2], [1]), UNCLEAN, set(), set())[1] == errors.ELIGIBLE_LEADERS_NOT_AVAILABLE
