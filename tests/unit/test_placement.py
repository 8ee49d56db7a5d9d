"""Replica placement (odradek.cluster.placement): spread, balance, racks, and
the checks of a manual assignment."""

import random
from collections import Counter

import pytest

from odradek.cluster.placement import assign_replicas, check_assignment, rack_alternated


def test_without_racks_leaders_go_round_and_followers_spread():
    brokers = [(b, None) for b in (1, 2, 3, 4, 5)]
    out = assign_replicas(brokers, 10, 3, start=0, shift=0)
    assert [r[0] for r in out] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]
    assert out[0] == [1, 2, 3] and out[5] == [1, 3, 4]  # the shift grows after each round
    for r in out:
        assert len(set(r)) == 3
    # balance: every broker holds the same number of replicas and of leaders
    assert set(Counter(b for r in out for b in r).values()) == {6}


def test_random_start_and_shift():
    brokers = [(b, None) for b in (1, 2, 3)]
    leaders = {assign_replicas(brokers, 1, 1, rng=random.Random(seed))[0][0] for seed in range(30)}
    assert leaders == {1, 2, 3}


def test_racks_alternate_and_each_partition_spans_racks():
    brokers = [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]
    assert rack_alternated(brokers) == [1, 3, 5, 2, 4, 6]
    rack = dict(brokers)
    for seed in range(20):
        for rf in (1, 2, 3, 4):
            out = assign_replicas(brokers, 12, rf, rng=random.Random(seed))
            for r in out:
                assert len(set(r)) == rf
                assert len({rack[b] for b in r}) == min(rf, 3)
            leaders = Counter(r[0] for r in out)
            assert set(leaders.values()) == {2}


def test_uneven_racks_still_spread():
    brokers = [(1, "a"), (2, "a"), (3, "a"), (4, "b")]
    rack = dict(brokers)
    for r in assign_replicas(brokers, 8, 2, rng=random.Random(1)):
        assert {rack[b] for b in r} == {"a", "b"}


def test_a_broker_without_a_rack_means_no_rack_awareness():
    out = assign_replicas([(1, "a"), (2, None), (3, "a")], 3, 2, start=0, shift=0)
    assert [r[0] for r in out] == [1, 2, 3]


def test_more_replicas_than_brokers_is_refused():
    with pytest.raises(ValueError):
        assign_replicas([(1, None)], 1, 2)


def test_manual_assignment_checks():
    live = {1, 2, 3}
    assert check_assignment([[1, 2], [2, 3]], live) is None
    assert "empty" in check_assignment([[1], []], live)
    assert "more than once" in check_assignment([[1, 1]], live)
    assert "broker 9" in check_assignment([[1, 9]], live)
    assert "not consistent" in check_assignment([[1, 2], [3]], live)
    assert "not consistent" in check_assignment([[1]], live, rf=2)
