"""The fetch session cache (odradek.fetch_sessions) on its own: the session
rules of KIP-227 and Kafka's eviction preferences, with the clock passed in."""

from __future__ import annotations

import random

from odradek.fetch_sessions import (INVALID_SESSION_ID, MAX_EPOCH, FetchPartition, FetchSessionCache,
                                    next_epoch)
from odradek.protocol import errors

TID = bytes(range(16))


def parts(n: int, topic: str = "t", offset: int = 0) -> list[FetchPartition]:
    return [FetchPartition(topic, TID, i, offset, 1 << 20) for i in range(n)]


def entry(index: int, hw: int = 10, lso: int = 0, records=b"", error: int = 0) -> dict:
    return {"partition_index": index, "error_code": error, "high_watermark": hw,
            "log_start_offset": lso, "records": records}


def create(cache, n=3, now=0, privileged=False, ids=False) -> int:
    ctx = cache.new_context(ids, 0, 0, privileged, parts(n), [], now)
    assert ctx.kind == "full"
    _, sid, _ = ctx.respond([(fp, entry(fp.index)) for fp in ctx.partitions], now)
    return sid


def incremental(cache, sid, epoch, fetch=(), forgotten=(), now=0, ids=False):
    return cache.new_context(ids, sid, epoch, False, list(fetch), list(forgotten), now)


def test_epochs_count_from_one_and_wrap():
    assert next_epoch(0) == 1 and next_epoch(7) == 8
    assert next_epoch(MAX_EPOCH) == 1 and next_epoch(-1) == -1


def test_sessionless_full_fetch_keeps_nothing():
    cache = FetchSessionCache()
    ctx = cache.new_context(False, 0, -1, False, parts(2), [], 0)
    assert ctx.kind == "sessionless" and len(ctx.partitions) == 2
    assert ctx.respond([(fp, entry(fp.index)) for fp in ctx.partitions], 0)[1] == INVALID_SESSION_ID
    assert len(cache) == 0


def test_incremental_session_sends_only_changes():
    cache = FetchSessionCache()
    sid = create(cache, 3)
    assert sid > 0 and len(cache) == 1
    ctx = incremental(cache, sid, 1)
    assert ctx.kind == "incremental" and [fp.index for fp in ctx.partitions] == [0, 1, 2]
    # Nothing changed: nothing sent.
    code, rsid, out = ctx.respond([(fp, entry(fp.index)) for fp in ctx.partitions], 0)
    assert (code, rsid, out) == (0, sid, [])
    # Records on 1, a new high watermark on 2: those two, and 1 goes to the back.
    ctx = incremental(cache, sid, 2)
    read = [(fp, entry(fp.index, records=[b"x"] if fp.index == 1 else b"", hw=11 if fp.index == 2 else 10))
            for fp in ctx.partitions]
    _, _, out = ctx.respond(read, 0)
    assert [e["partition_index"] for _, e in out] == [1, 2]
    assert [fp.index for fp in cache.sessions[sid].partitions.values()] == [0, 2, 1]
    # An error is always sent, and the partition again when it clears.
    ctx = incremental(cache, sid, 3)
    out = ctx.respond([(fp, entry(fp.index, hw=11 if fp.index == 2 else 10,
                                  error=errors.NOT_LEADER_OR_FOLLOWER if fp.index == 0 else 0))
                       for fp in ctx.partitions], 0)[2]
    assert [e["partition_index"] for _, e in out] == [0]
    ctx = incremental(cache, sid, 4)
    out = ctx.respond([(fp, entry(fp.index, hw=11 if fp.index == 2 else 10)) for fp in ctx.partitions], 0)[2]
    assert [e["partition_index"] for _, e in out] == [0]
    # A new log start offset is sent.
    ctx = incremental(cache, sid, 5)
    out = ctx.respond([(fp, entry(fp.index, hw=11 if fp.index == 2 else 10, lso=fp.index == 0 and 5))
                       for fp in ctx.partitions], 0)[2]
    assert [e["partition_index"] for _, e in out] == [0]


def test_incremental_request_adds_updates_and_forgets():
    cache = FetchSessionCache()
    sid = create(cache, 2)
    moved = FetchPartition("t", TID, 0, 42, 100)
    added = FetchPartition("u", TID, 0, 7, 100)
    ctx = incremental(cache, sid, 1, [moved, added], [("t", 1)])
    got = {(fp.topic, fp.index): fp.fetch_offset for fp in ctx.partitions}
    assert got == {("t", 0): 42, ("u", 0): 7}
    # A new partition is sent the first time even with nothing to say.
    out = ctx.respond([(fp, entry(fp.index)) for fp in ctx.partitions], 0)[2]
    assert [fp.topic for fp, _ in out] == ["u"]
    # Forgetting everything closes the session; the request is served sessionless.
    ctx = incremental(cache, sid, 2, [], [("t", 0), ("u", 0)])
    assert ctx.kind == "sessionless" and len(cache) == 0


def test_session_errors():
    cache = FetchSessionCache()
    sid = create(cache, 1)
    assert incremental(cache, sid + 1, 1).error == errors.FETCH_SESSION_ID_NOT_FOUND
    assert incremental(cache, sid, 2).error == errors.INVALID_FETCH_SESSION_EPOCH
    assert incremental(cache, sid, 1, ids=True).error == errors.FETCH_SESSION_TOPIC_ID_ERROR
    ctx = incremental(cache, sid, 1)
    assert ctx.error == 0
    # The same epoch again (a duplicate) is refused...
    assert incremental(cache, sid, 1).error == errors.INVALID_FETCH_SESSION_EPOCH
    # ... and a request that waited while its session moved on is refused at the end.
    incremental(cache, sid, 2)
    assert ctx.respond([], 0)[0] == errors.INVALID_FETCH_SESSION_EPOCH
    assert cache.counts["errors"] == 4


def test_full_fetch_closes_the_session_it_names():
    cache = FetchSessionCache()
    sid = create(cache, 1)
    ctx = cache.new_context(False, sid, -1, False, parts(1), [], 0)
    assert ctx.kind == "sessionless" and len(cache) == 0
    sid = create(cache, 1)
    ctx = cache.new_context(False, sid, 0, False, parts(1), [], 0)
    assert ctx.kind == "full" and len(cache) == 0
    new = ctx.respond([(fp, entry(fp.index)) for fp in ctx.partitions], 0)[1]
    assert new not in (0, sid) and len(cache) == 1


def test_no_slots_no_sessions():
    cache = FetchSessionCache(slots=0)
    assert create(cache, 5) == INVALID_SESSION_ID and len(cache) == 0


def test_eviction_prefers_stale_then_smaller_older_sessions():
    cache = FetchSessionCache(slots=2, eviction_ms=1000, rng=random.Random(1))
    a = create(cache, 5, now=0)
    b = create(cache, 3, now=0)
    # Full, and both sessions too young: no room, whatever the size.
    assert create(cache, 50, now=500) == INVALID_SESSION_ID
    incremental(cache, a, 1, now=900)
    # b unused for more than the eviction time: it goes, though smaller than a.
    c = create(cache, 1, now=1100)
    assert c and set(cache.sessions) == {a, c}
    # Nothing stale now (a used at 900, c at 1100); a is old enough and smaller
    # than the newcomer, c too young.
    incremental(cache, a, 2, now=1500)
    incremental(cache, c, 1, now=1500)
    assert create(cache, 5, now=1600) == INVALID_SESSION_ID  # not bigger than a
    d = create(cache, 6, now=1600)
    assert d and set(cache.sessions) == {c, d}
    assert cache.counts["evictions"] == 2


def test_privileged_sessions_evict_unprivileged_ones_at_once():
    cache = FetchSessionCache(slots=1, eviction_ms=1000)
    a = create(cache, 10, now=0)
    assert create(cache, 20, now=10) == INVALID_SESSION_ID
    f = create(cache, 1, now=10, privileged=True)
    assert f and set(cache.sessions) == {f}
    # A privileged session is safe from an unprivileged one, even a larger, old one.
    incremental(cache, f, 1, now=2000)
    assert create(cache, 100, now=2500) == INVALID_SESSION_ID
    assert a not in cache.sessions


def test_metrics():
    cache = FetchSessionCache()
    create(cache, 3)
    m = cache.metrics()
    assert m["NumIncrementalFetchSessions"] == 1 and m["NumIncrementalFetchPartitionsCached"] == 3
    assert m["full"] == 1 and m["created"] == 1


def test_a_followers_session_side_keeps_the_leaders_view():
    """odradek.replica.fetcher.LeaderSession against this cache: after the
    full fetch, each request names only what moved and forgets what is no
    longer fetched, and the leader's session then holds exactly the
    follower's positions; an error or an answer outside the session makes
    the next fetch a full one that closes the old session."""
    from odradek.replica.fetcher import LeaderSession

    cache, follower = FetchSessionCache(), LeaderSession()

    def fields(offsets: dict) -> dict:
        return {(TID, i): {"partition": i, "fetch_offset": o} for i, o in offsets.items()}

    def fetch(offsets: dict):
        wanted = fields(offsets)
        send, forget = follower.build(wanted)
        ctx = cache.new_context(True, follower.session_id, follower.epoch, True,
                                [FetchPartition("t", TID, k[1], wanted[k]["fetch_offset"], 100) for k in send],
                                forget, 0)
        code, sid, _ = ctx.respond([(fp, entry(fp.index)) for fp in ctx.partitions], 0)
        if code:
            follower.reset()
        else:
            follower.answered(sid)
        return sorted(k[1] for k in send), sorted(k[1] for k in forget), code

    def leader_view() -> dict:
        return {fp.index: fp.fetch_offset for fp in cache.sessions[follower.session_id].partitions.values()}

    assert fetch({0: 0, 1: 0, 2: 0}) == ([0, 1, 2], [], 0)
    assert follower.session_id > 0 and follower.epoch == 1
    assert fetch({0: 0, 1: 0, 2: 0}) == ([], [], 0)
    assert fetch({0: 5, 1: 0, 2: 0}) == ([0], [], 0)
    assert fetch({0: 5, 1: 3}) == ([1], [2], 0)  # 2 backs off: forgotten
    assert leader_view() == {0: 5, 1: 3}
    assert fetch({0: 5, 1: 3, 2: 0}) == ([2], [], 0)
    assert leader_view() == {0: 5, 1: 3, 2: 0}

    # The leader lost the session (a restart): refused, then a full fetch.
    old = follower.session_id
    del cache.sessions[old]
    assert fetch({0: 6, 1: 3, 2: 0}) == ([0], [], errors.FETCH_SESSION_ID_NOT_FOUND)
    assert fetch({0: 6, 1: 3, 2: 0}) == ([0, 1, 2], [], 0)
    assert follower.session_id != old and leader_view() == {0: 6, 1: 3, 2: 0}

    # An answer not applied (reset): the full fetch closes the session it replaces.
    follower.reset()
    old = follower.session_id
    assert fetch({0: 6, 1: 3, 2: 0}) == ([0, 1, 2], [], 0)
    assert old not in cache.sessions and len(cache) == 1

    # Everything forgotten: the leader drops the session and answers outside it.
    assert fetch({}) == ([], [0, 1, 2], 0)
    assert follower.epoch == 0 and len(cache) == 0
    assert fetch({1: 3}) == ([1], [], 0) and leader_view() == {1: 3}
