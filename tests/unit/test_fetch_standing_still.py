"""A follower's incremental fetch serves only the partitions that move: one
whose follower caught up and was sent everything stands still (its clocks
move, nothing is read) until anything changes it (``Partition.changes``) or
the follower names it again; then it is served as before."""

from __future__ import annotations

from collections import OrderedDict

from odradek.apis.fetch import moving_partitions, park_standing_still
from odradek.fetch_sessions import FetchPartition, FetchSession
from tests.unit.test_partition_roles import append, make


def caught_up(p, follower, now):
    """``p`` (a leader) as follower ``follower`` left it after a fetch that
    caught up, and that follower's session partition, sent everything."""
    p.on_follower_fetch(follower, p.log_end_offset, now)
    fp = FetchPartition("t", b"\x01" * 16, 0, p.log_end_offset, 1 << 20)
    fp.high_watermark, fp.log_start_offset = p.high_watermark, p.log_start_offset
    return fp


def session_of(fp):
    return FetchSession(1, True, True, OrderedDict({(fp.topic_id, fp.index): fp}), 0)


def parked():
    """A leader of 3 records both followers hold, and follower 2's session
    after a fetch that parked it: (partition, session partition, session)."""
    p, _ = make()
    append(p, 3)
    for r in (2, 3):
        caught_up(p, r, 1000)
    fp = caught_up(p, 2, 1001)
    s = session_of(fp)
    park_standing_still(s, [fp], [(p, None, 0, None)], [], 2)
    return p, fp, s


def test_a_caught_up_partition_stands_still_and_its_clocks_move():
    p, fp, s = parked()
    assert list(s.idle) == [(fp.topic_id, 0)]
    assert moving_partitions(s, 2, 5000) == []  # not read ...
    f = p.followers[2]
    assert (f.caught_up_ms, f.last_fetch_ms) == (5000, 5000)  # ... but the follower counts as caught up now
    assert p.lagging_followers(5000 + 1, 30_000) == []


def test_any_change_or_a_new_fetch_position_serves_it_again():
    p, fp, s = parked()
    append(p, 1)  # new records: notify()
    assert moving_partitions(s, 2, 6000) == [fp] and not s.idle
    f = p.followers[2]
    assert f.last_fetch_ms == 1001  # the clocks are the real fetch's to move now
    park_standing_still(s, [fp], [(p, None, 0, None)], [], 2)
    assert not s.idle  # behind the log end: never parked
    fp2 = caught_up(p, 2, 6001)
    fp.fetch_offset = fp2.fetch_offset
    fp.high_watermark = p.high_watermark
    park_standing_still(s, [fp], [(p, None, 0, None)], [], 2)
    assert s.idle
    s.update([FetchPartition("t", fp.topic_id, 0, fp.fetch_offset, 1 << 20)], [])  # named again
    assert not s.idle and moving_partitions(s, 2, 7000) == [fp]


def test_never_parked_when_sent_lagging_out_of_the_isr_or_the_high_watermark_not_sent():
    p, _ = make()
    append(p, 3)
    caught_up(p, 3, 1000)
    fp = caught_up(p, 2, 1000)
    s = session_of(fp)
    park_standing_still(s, [fp], [(p, None, 0, None)], [(fp, {})], 2)  # it was sent something
    assert not s.idle
    fp.high_watermark = p.high_watermark - 1  # the follower was not told the high watermark
    park_standing_still(s, [fp], [(p, None, 0, None)], [], 2)
    assert not s.idle
    fp.high_watermark = p.high_watermark
    q, _ = make()
    from odradek.metadata.topics import PartitionState

    q.apply_state(PartitionState(1, 0, [1, 2, 3], [1, 3], revision=6), 1000)  # 2 out of the ISR
    fq = caught_up(q, 2, 1000)
    sq = session_of(fq)
    park_standing_still(sq, [fq], [(q, None, 0, None)], [], 2)
    assert not sq.idle
    park_standing_still(s, [fp], [(None, {}, 0, None)], [], 2)  # an error: no partition
    assert not s.idle


def test_a_new_leadership_serves_it_again():
    p, fp, s = parked()
    from odradek.metadata.topics import PartitionState

    p.apply_state(PartitionState(1, 1, [1, 2, 3], [1, 2, 3], revision=7), 2000)  # a new epoch
    assert moving_partitions(s, 2, 3000) == [fp] and not s.idle
