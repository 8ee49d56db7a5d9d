"""The metadata store's contract (odradek.metadata.store), held by the SQLite
implementation on disk and in memory: versions and revisions, transactions
as compare-and-set, watches from a revision, leases, durability across
reopening and across kill -9, and serialised concurrent writers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading

import pytest

from odradek.metadata.sqlite import SqliteStore
from odradek.metadata.store import CompactedError, Compare, Delete, Get, LeaseNotFound, Put


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run(coro):
    return asyncio.run(coro)

async def increment_concurrently(store, key: str, writers: int) -> None:
    """``writers`` tasks each add 1 to ``key`` by compare-and-set, retrying on conflict."""
    async def increment():
        while True:
            kv = await store.get(key)
            n = int(kv.value) if kv else 0
            if await store.compare_and_set(key, str(n + 1).encode(), kv.version if kv else 0):
                return

    await asyncio.gather(*(increment() for _ in range(writers)))


async def flat(batches):
    """The events of a watch one by one (it yields a revision's events together)."""
    async for batch in batches:
        assert batch and len({e.revision for e in batch}) == 1
        for e in batch:
            yield e



@pytest.fixture(params=["disk", "memory"])
def path(request, tmp_path):
    return str(tmp_path / "metadata.db") if request.param == "disk" else None


def test_versions_and_revisions(path):
    async def main():
        s = await SqliteStore.open(path)
        assert await s.get("a") is None
        r1 = await s.put("a", b"1")
        r2 = await s.put("a", b"2")
        r3 = await s.put("b", b"x")
        assert (r1, r2, r3) == (1, 2, 3)
        a = await s.get("a")
        assert (a.value, a.create_revision, a.mod_revision, a.version) == (b"2", 1, 2, 2)
        assert await s.delete("a") == 4
        assert await s.get("a") is None
        # Deleting nothing writes nothing and keeps the revision.
        assert await s.delete("a") == 4
        r = await s.put("a", b"3")
        a = await s.get("a")
        assert (r, a.create_revision, a.version) == (5, 5, 1)
        await s.close()

    run(main())


def test_range_by_prefix_in_key_order(path):
    async def main():
        s = await SqliteStore.open(path)
        for k in ("topics/b", "topics/a", "topicsX", "brokers/1", "topics/a/0"):
            await s.put(k, k.encode())
        kvs, rev = await s.range("topics/")
        assert [kv.key for kv in kvs] == ["topics/a", "topics/a/0", "topics/b"]
        assert rev == 5
        assert await s.delete("topics/a", prefix=True) == 6
        assert [kv.key for kv in (await s.range(""))[0]] == ["brokers/1", "topics/b", "topicsX"]
        await s.close()

    run(main())


def test_transactions_compare_and_set(path):
    async def main():
        s = await SqliteStore.open(path)
        assert await s.compare_and_set("leader", b"1", version=0)
        assert not await s.compare_and_set("leader", b"2", version=0)
        assert await s.compare_and_set("leader", b"2", version=1)
        assert (await s.get("leader")).value == b"2"
        res = await s.txn([Compare("leader", "value", "==", b"2"), Compare("epoch", "version", "==", 0)],
                          [Put("leader", b"3"), Put("epoch", b"1"), Get("leader")],
                          [Get("leader")])
        assert res.succeeded and res.reads[0][0].value == b"3"
        # Both writes are at the transaction's one revision.
        assert (await s.get("leader")).mod_revision == (await s.get("epoch")).mod_revision == res.revision
        res = await s.txn([Compare("epoch", "mod_revision", "<", res.revision)], [Put("epoch", b"2")],
                          [Get("epoch")])
        assert not res.succeeded and res.reads[0][0].value == b"1"
        with pytest.raises(ValueError):
            Compare("x", "size", "==", 1)
        await s.close()

    run(main())


def test_concurrent_writers_are_serialised(path):
    async def main():
        s = await SqliteStore.open(path)

        await increment_concurrently(s, "n", 40)
        assert (await s.get("n")).value == b"40"
        await s.close()

    run(main())


def test_watch_replays_history_then_follows(path):
    async def main():
        s = await SqliteStore.open(path)
        await s.put("t/a", b"1")  # rev 1
        await s.put("other", b"x")  # rev 2
        await s.put("t/b", b"2")  # rev 3
        seen = []

        async def follow():
            async for e in flat(s.watch("t/", 2)):
                seen.append((e.kind, e.kv.key, e.revision))
                if len(seen) == 4:
                    return

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.05)
        await s.put("t/a", b"3")  # rev 4
        await s.delete("t/b")  # rev 5
        await s.put("nope", b"")  # rev 6
        await s.txn([], [Put("t/c", b"5")])  # rev 7
        await asyncio.wait_for(task, 5)
        assert seen == [("put", "t/b", 3), ("put", "t/a", 4), ("delete", "t/b", 5), ("put", "t/c", 7)]
        await s.close()

    run(main())


def test_watch_racing_writers_sees_each_change_once_in_order(path):
    async def main():
        s = await SqliteStore.open(path)

        async def write():
            for i in range(200):
                await s.put(f"k/{i % 7}", str(i).encode())

        writer = asyncio.create_task(write())
        await asyncio.sleep(0.01)
        revisions = []
        async for e in flat(s.watch("k/", 1)):
            revisions.append(e.revision)
            if e.revision == 200:
                break
        await writer
        assert revisions == list(range(1, 201))
        await s.close()

    run(main())


def test_watch_from_a_compacted_revision_is_refused(path):
    async def main():
        s = await SqliteStore.open(path, history=10)
        for i in range(30):
            await s.put("k", str(i).encode())
        with pytest.raises(CompactedError) as e:
            async for _ in flat(s.watch("k", 5)):
                pass
        assert e.value.compacted_revision == 20
        got = []
        async for ev in flat(s.watch("k", 21)):
            got.append(ev.revision)
            if ev.revision == 30:
                break
        assert got == list(range(21, 31))
        await s.close()

    run(main())


def test_leases_expire_and_take_their_keys(path):
    async def main():
        clock = FakeClock()
        s = await SqliteStore.open(path, clock=clock)
        lease = await s.grant_lease(6)
        await s.put("brokers/1", b"up", lease=lease)
        await s.put("topics/a", b"stays")
        clock.now += 5
        assert await s.keep_alive(lease) == 6
        clock.now += 5
        await s.expire_leases()
        assert (await s.get("brokers/1")).lease == lease
        clock.now += 1.5
        events = []

        async def follow():
            async for e in flat(s.watch("brokers/", 1)):
                events.append(e.kind)
                if e.kind == "delete":
                    return

        task = asyncio.create_task(follow())
        await s.expire_leases()
        await asyncio.wait_for(task, 5)
        assert events == ["put", "delete"]
        assert await s.get("brokers/1") is None and await s.get("topics/a") is not None
        with pytest.raises(LeaseNotFound):
            await s.keep_alive(lease)
        with pytest.raises(LeaseNotFound):
            await s.put("x", b"", lease=lease)
        with pytest.raises(LeaseNotFound):
            await s.revoke_lease(lease)
        other = await s.grant_lease(10)
        assert other != lease
        await s.put("y", b"", lease=other)
        await s.revoke_lease(other)
        assert await s.get("y") is None
        await s.close()

    run(main())


def test_state_survives_reopening_and_leases_do_not(tmp_path):
    path = str(tmp_path / "metadata.db")

    async def first():
        s = await SqliteStore.open(path)
        await s.put("a", b"1")
        await s.put("a", b"2")
        lease = await s.grant_lease(30)
        await s.put("b", b"leased", lease=lease)
        await s.close()
        return lease

    async def second(lease):
        clock = FakeClock()
        s = await SqliteStore.open(path, clock=clock)
        a = await s.get("a")
        assert (a.value, a.version, a.mod_revision) == (b"2", 2, 2)
        # The store lived in the previous process: its leases ended with it.
        assert await s.get("b") is None
        with pytest.raises(LeaseNotFound):
            await s.keep_alive(lease)
        assert await s.put("c", b"") == 5  # 4 was the leased key's deletion
        assert [(e.kind, e.revision) async for e in _take(flat(s.watch("", 1)), 5)] == [
            ("put", 1), ("put", 2), ("put", 3), ("delete", 4), ("put", 5)]
        await s.close()

    run(second(run(first())))


async def _take(it, n):
    async for e in it:
        yield e
        n -= 1
        if n == 0:
            return


def test_fsync_and_queries_run_off_the_event_loop(tmp_path):
    seen = set()

    async def main():
        s = await SqliteStore.open(str(tmp_path / "m.db"))
        loop_thread = threading.get_ident()
        original = s._write

        def spy(fn):
            seen.add(threading.get_ident())
            return original(fn)

        s._write = spy
        await s.put("a", b"1")
        await s.txn([], [Put("b", b"2"), Delete("a")])
        await s.close()
        return loop_thread

    loop_thread = run(main())
    assert seen and loop_thread not in seen


_WRITER = """
import asyncio, sys
from odradek.metadata.sqlite import SqliteStore

async def main():
    s = await SqliteStore.open(sys.argv[1])
    i = 0
    while True:
        rev = await s.put(f"k/{i % 50}", str(i).encode())
        print(i, rev, flush=True)
        i += 1

asyncio.run(main())
"""


def test_every_acknowledged_write_survives_kill_9(tmp_path):
    path = str(tmp_path / "m.db")
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, path], stdout=subprocess.PIPE, text=True)
    acked = []
    for line in proc.stdout:
        acked.append(tuple(map(int, line.split())))
        if len(acked) == 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()

    async def check():
        s = await SqliteStore.open(path)
        kvs, rev = await s.range("k/")
        assert rev >= acked[-1][1]
        last = {}
        for i, r in acked:
            last[f"k/{i % 50}"] = (i, r)
        for kv in kvs:
            i, r = last[kv.key]
            # The stored value is the last acknowledged one or a later write.
            assert kv.mod_revision >= r and int(kv.value) >= i
        assert {kv.key for kv in kvs} == set(last)
        await s.close()

    run(check())


def test_producer_id_blocks_are_never_handed_out_twice(tmp_path):
    from odradek.metadata.producer_ids import BLOCK, ProducerIdAllocator

    path = str(tmp_path / "m.db")

    async def first():
        s = await SqliteStore.open(path)
        a, b = ProducerIdAllocator(s), ProducerIdAllocator(s)  # two brokers sharing the store
        ids = [await a.allocate(), await b.allocate(), await a.allocate()]
        await s.close()
        return ids

    async def second():  # a restart: a new block, above every claimed one
        s = await SqliteStore.open(path)
        ids = [await ProducerIdAllocator(s).allocate()]
        # An older data dir's producer-ids file: claims start above its end.
        ids.append(await ProducerIdAllocator(s, floor=50 * BLOCK).allocate())
        await s.close()
        return ids

    ids = run(first())
    assert ids == [0, BLOCK, 1]
    assert run(second()) == [2 * BLOCK, 50 * BLOCK]


def test_store_urls():
    from odradek.metadata.store import open_store

    pytest.importorskip("etcd3aio")
    from odradek.metadata.etcd import parse_url

    assert parse_url("etcd://127.0.0.1:2379,127.0.0.2:2379/prod/a") == (
        ["127.0.0.1:2379", "127.0.0.2:2379"], "/prod/a/")
    for bad in ("etcd://127.0.0.1:2379", "etcd://127.0.0.1:2379/", "http://h:1/x", "etcd:///x"):
        with pytest.raises(ValueError):
            parse_url(bad)
    with pytest.raises(ValueError):
        run(open_store("zookeeper://h:2181/x"))

    async def memory():
        s = await open_store("memory://")
        assert await s.put("a", b"1") == 1
        await s.close()

    run(memory())


def test_a_transactions_changes_reach_a_watch_together(path):
    async def main():
        s = await SqliteStore.open(path)
        await s.txn([], [Put("a/1", b"x"), Put("a/2", b"y"), Put("b", b"z")])  # rev 1
        await s.put("a/3", b"w")  # rev 2
        batches = []
        async for batch in s.watch("a/", 1):
            batches.append([(e.kv.key, e.revision) for e in batch])
            if len(batches) == 2:
                break
        assert batches == [[("a/1", 1), ("a/2", 1)], [("a/3", 2)]]
        await s.close()

    run(main())
