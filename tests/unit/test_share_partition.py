"""The share-partition state machine (odradek/share/partition.py)."""

from __future__ import annotations

import random

from odradek.protocol import errors
from odradek.share.partition import (
    ACCEPT, ACKNOWLEDGED, ACQUIRED, ARCHIVED, AVAILABLE, GAP, REJECT, RELEASE, RENEW,
    SharePartition, SharePartitionConfig,
)


def sp(start=0, **kw) -> SharePartition:
    return SharePartition(start, SharePartitionConfig(**kw))


def test_fresh_batches_are_acquired_whole_with_delivery_count_one():
    p = sp(lock_duration_ms=1000)
    got = p.acquire("a", [(0, 4), (5, 9)], now=0, max_records=3)
    # max_records is exceeded to finish the first batch, and no second batch starts
    assert got == [(0, 4, 1)]
    assert (p.start, p.end) == (0, 5)
    assert p.state_of(2) == (ACQUIRED, 1, "a")
    assert p.next_fetch_offset() == 5
    p.check()


def test_a_record_is_never_acquired_twice():
    p = sp()
    assert p.acquire("a", [(0, 4)], 0) == [(0, 4, 1)]
    assert p.acquire("b", [(0, 4)], 0) == []
    assert p.acquire("b", [(0, 4), (5, 6)], 0) == [(5, 6, 1)]
    p.check()


def test_accept_moves_the_start_offset_and_forgets_the_records():
    p = sp()
    p.acquire("a", [(0, 4)], 0)
    assert p.acknowledge("a", [(0, 1, [ACCEPT])], 0) == 0
    assert (p.start, p.end) == (2, 5)
    assert p.acknowledge("a", [(2, 4, [ACCEPT, REJECT, GAP])], 0) == 0
    assert (p.start, p.end) == (5, 5)
    assert p.state_batches() == []
    p.check()


def test_out_of_order_acknowledgements_keep_the_start_offset_until_the_first_is_done():
    p = sp()
    p.acquire("a", [(0, 4)], 0)
    assert p.acknowledge("a", [(3, 4, [ACCEPT])], 0) == 0
    assert p.start == 0
    assert p.state_batches() == [(0, 2, AVAILABLE, 1), (3, 4, ACKNOWLEDGED, 1)]
    assert p.acknowledge("a", [(0, 2, [ACCEPT])], 0) == 0
    assert p.start == 5


def test_release_makes_records_available_again_with_a_higher_count():
    p = sp()
    p.acquire("a", [(0, 2)], 0)
    assert p.acknowledge("a", [(0, 2, [RELEASE, ACCEPT, RELEASE])], 0) == 0
    assert p.state_of(0) == (AVAILABLE, 1, None)
    assert p.next_fetch_offset() == 0
    assert p.acquire("b", [(0, 2)], 0) == [(0, 0, 2), (2, 2, 2)]
    p.check()


def test_acknowledging_what_one_does_not_hold_changes_nothing():
    p = sp()
    p.acquire("a", [(0, 4)], 0)
    before = p.state_batches()
    assert p.acknowledge("b", [(0, 0, [ACCEPT])], 0) == errors.INVALID_RECORD_STATE
    # the first range is valid, the second is not: neither is applied
    assert p.acknowledge("a", [(0, 0, [ACCEPT]), (7, 7, [ACCEPT])], 0) == errors.INVALID_RECORD_STATE
    assert p.acknowledge("a", [(0, 2, [ACCEPT, ACCEPT])], 0) == errors.INVALID_REQUEST
    assert p.acknowledge("a", [(0, 0, [9])], 0) == errors.INVALID_REQUEST
    assert p.acknowledge("a", [(0, 0, [RENEW])], 0) == errors.INVALID_REQUEST
    assert p.acknowledge("a", [(0, 1, [ACCEPT]), (1, 1, [ACCEPT])], 0) == errors.INVALID_REQUEST
    assert p.state_batches() == before
    assert p.state_of(0) == (ACQUIRED, 1, "a")
    assert p.acknowledge("a", [(0, 0, [ACCEPT])], 0) == 0
    assert p.acknowledge("a", [(0, 0, [ACCEPT])], 0) == errors.INVALID_RECORD_STATE


def test_an_expired_lock_makes_the_records_available():
    p = sp(lock_duration_ms=100)
    p.acquire("a", [(0, 1)], now=1000)
    assert p.next_deadline() == 1100
    assert p.expire(1099) == 0
    assert p.expire(1100) == 2
    assert p.state_of(0) == (AVAILABLE, 1, None)
    assert p.next_deadline() is None
    # the late acknowledgement of the former holder is refused
    assert p.acknowledge("a", [(0, 1, [ACCEPT])], 1200) == errors.INVALID_RECORD_STATE
    assert p.acquire("b", [(0, 1)], 1200) == [(0, 1, 2)]
    p.check()


def test_renew_extends_the_lock_when_asked_for():
    p = sp(lock_duration_ms=100)
    p.acquire("a", [(0, 0)], now=0)
    assert p.acknowledge("a", [(0, 0, [RENEW])], 80, renew=True) == 0
    assert p.expire(150) == 0
    assert p.state_of(0) == (ACQUIRED, 1, "a")
    assert p.expire(180) == 1


def test_the_delivery_count_limit_archives_a_record():
    p = sp(delivery_count_limit=3, lock_duration_ms=10)
    now = 0
    for count in (1, 2, 3):
        assert p.acquire("a", [(0, 0), (1, 1)], now, max_records=1) == [(0, 0, count)]
        if count < 3:
            assert p.acknowledge("a", [(0, 0, [RELEASE])], now) == 0
        else:
            now += 10
            assert p.expire(now) == 1  # an expired lock counts as a delivery too
    assert p.state_of(0)[0] == ACKNOWLEDGED  # archived, below the start offset now
    assert p.start == 1
    assert p.acquire("a", [(0, 0), (1, 1)], now) == [(1, 1, 1)]


def test_a_member_leaving_releases_its_records():
    p = sp()
    p.acquire("a", [(0, 1)], 0)
    p.acquire("b", [(2, 3)], 0)
    assert p.release_member("a") == 2
    assert p.acquired_by("a") == []
    assert p.acquired_by("b") == [2, 3]
    assert p.next_fetch_offset() == 0
    p.check()


def test_the_window_is_bounded_by_max_record_locks():
    p = sp(max_record_locks=4)
    assert p.acquire("a", [(0, 2), (3, 5), (6, 8)], 0, max_records=100) == [(0, 5, 1)]
    assert not p.can_acquire()
    assert p.acquire("b", [(6, 8)], 0) == []
    p.acknowledge("a", [(0, 0, [RELEASE])], 0)
    assert p.can_acquire()  # a record of the window is available again
    assert p.acquire("b", [(0, 2), (6, 8)], 0) == [(0, 0, 2)]
    p.acknowledge("a", [(1, 5, [ACCEPT])], 0)
    p.acknowledge("b", [(0, 0, [ACCEPT])], 0)
    assert p.can_acquire()
    assert p.acquire("b", [(6, 8)], 0) == [(6, 8, 1)]


def test_offsets_missing_from_the_log_are_archived():
    p = sp()
    # a compacted log: offsets 3-4 are gone
    assert p.acquire("a", [(0, 2), (5, 6)], 0) == [(0, 2, 1), (5, 6, 1)]
    assert p.state_of(3) == (ARCHIVED, 0, None)
    p.acknowledge("a", [(0, 2, [ACCEPT]), (5, 6, [ACCEPT])], 0)
    assert (p.start, p.end) == (7, 7)


def test_a_start_offset_past_the_log_start_skips_older_batches():
    p = sp(start=10)
    assert p.acquire("a", [(8, 12)], 0) == [(10, 12, 1)]
    p.log_start_moved(12)
    assert (p.start, p.end) == (12, 13)
    p.check()


def test_state_batches_round_trip_and_forget_the_holders():
    p = sp()
    p.acquire("a", [(0, 9)], 0)
    p.acknowledge("a", [(0, 9, [RELEASE, ACCEPT, ACCEPT, REJECT, RELEASE, ACCEPT, ACCEPT, ACCEPT,
                                 ACCEPT, ACCEPT])], 0)
    p.acquire("b", [(0, 9)], 0)  # 0 and 4, delivery count 2
    batches = p.state_batches()
    assert batches == [(0, 0, AVAILABLE, 2), (1, 2, ACKNOWLEDGED, 1), (3, 3, ARCHIVED, 1),
                       (4, 4, AVAILABLE, 2), (5, 9, ACKNOWLEDGED, 1)]
    q = SharePartition.restore(p.start, batches)
    q.check()
    assert q.state_batches() == batches
    assert q.acquire("c", [(0, 9)], 0) == [(0, 0, 3), (4, 4, 3)]


def test_many_members_never_hold_the_same_record_and_every_record_is_done_once():
    """Three members fetch, acknowledge at random (accept, release, reject),
    and lose locks; each record is held by at most one member at a time and
    ends acknowledged or archived."""
    rnd = random.Random(7)
    p = sp(lock_duration_ms=50, delivery_count_limit=4, max_record_locks=40)
    batches = []
    off = 0
    while off < 300:
        n = rnd.randint(1, 7)
        batches.append((off, off + n - 1))
        off += n
    held: dict[str, set[int]] = {m: set() for m in "abc"}
    accepted: set[int] = set()
    now = 0
    for _ in range(4000):
        now += rnd.randint(0, 5)
        for m in held:
            held[m] = set(p.acquired_by(m))
        for m in held:
            for other in held:
                if other != m:
                    assert not (held[m] & held[other])
        m = rnd.choice("abc")
        action = rnd.random()
        if action < 0.5:
            nxt = p.next_fetch_offset()
            read = [b for b in batches if b[1] >= nxt][:4]
            for first, last, _count in p.acquire(m, read, now, max_records=rnd.randint(1, 10)):
                for o in range(first, last + 1):
                    assert p.state_of(o)[2] == m
        elif held[m]:
            o = rnd.choice(sorted(held[m]))
            t = rnd.choices([ACCEPT, RELEASE, REJECT], [6, 3, 1])[0]
            assert p.acknowledge(m, [(o, o, [t])], now) == 0
            if t == ACCEPT:
                assert o not in accepted
                accepted.add(o)
        p.expire(now)
        p.check()
        if p.start >= 300:
            break
    assert p.start >= 300, p.start
    assert accepted  # and every other record was archived on the way


def test_the_record_limit_mode_splits_batches():
    p = sp()
    assert p.acquire("a", [(0, 4), (5, 9)], 0, max_records=3, strict=True) == [(0, 2, 1)]
    assert p.end == 3 and p.next_fetch_offset() == 3
    assert p.acquire("b", [(0, 4), (5, 9)], 0, max_records=3, strict=True) == [(3, 5, 1)]
    p.acknowledge("a", [(0, 2, [RELEASE])], 0)
    assert p.acquire("c", [(0, 4)], 0, max_records=2, strict=True) == [(0, 1, 2)]
    p.check()


def test_batches_not_to_deliver_are_archived():
    p = sp()
    # a transactional batch, its abort marker, then a plain batch
    got = p.acquire("a", [(0, 2, False), (3, 3, False), (4, 5)], 0)
    assert got == [(4, 5, 1)]
    assert p.start == 4
    # a marker at the end of what was read moves the window on
    p.acknowledge("a", [(4, 5, [ACCEPT])], 0)
    assert p.acquire("a", [(6, 6, False)], 0) == []
    assert (p.start, p.end) == (7, 7)
    p.check()


def test_wide_gaps_of_a_compacted_log_cost_nothing():
    p = sp(max_record_locks=10)
    assert p.acquire("a", [(0, 0), (10**12, 10**12)], 0) == [(0, 0, 1)]  # the gap waits
    assert len(p.state_batches()) == 1
    p.acknowledge("a", [(0, 0, [ACCEPT])], 0)
    assert p.acquire("a", [(10**12, 10**12)], 0) == [(10**12, 10**12, 1)]  # an empty window jumps
    assert (p.start, p.end) == (10**12, 10**12 + 1)
    assert p.acquire("a", [(2 * 10**12, 2 * 10**12, False)], 0) == []
    p.check()
