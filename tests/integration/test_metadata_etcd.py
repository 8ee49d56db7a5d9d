"""The metadata store's contract held by the etcd implementation against a
real etcd 3.6 (versions and revisions, transactions as compare-and-set,
prefix isolation, watches from a revision and their interruption, leases
that expire and take their keys), and a broker that keeps its topics in etcd
across a restart. Skipped, saying why, without etcd 3.5.3+ or etcd3aio
(``pip install 'odradek[cluster]'``; .ci/run provides both)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from odradek.metadata.store import (
    CompactedError, Compare, Delete, Get, LeaseNotFound, Put, WatchInterrupted, open_store,
)
from tests.unit.test_metadata_store import flat, increment_concurrently, run

pytestmark = pytest.mark.timeout(120)


def url(etcd) -> str:
    return etcd.url(f"test-{uuid.uuid4().hex[:8]}")


def test_versions_revisions_and_prefix_isolation(etcd):
    async def main():
        s = await open_store(url(etcd))
        other = await open_store(url(etcd))
        try:
            assert await s.get("a") is None
            r1 = await s.put("a", b"1")
            r2 = await s.put("a", b"2")
            a = await s.get("a")
            assert r2 > r1 and (a.value, a.create_revision, a.mod_revision, a.version) == (b"2", r1, r2, 2)
            await other.put("a", b"elsewhere")
            assert (await s.get("a")).value == b"2"  # another cluster's prefix is another key space
            for k in ("topics/b", "topics/a", "topicsX"):
                await s.put(k, k.encode())
            kvs, rev = await s.range("topics/")
            assert [kv.key for kv in kvs] == ["topics/a", "topics/b"] and rev >= r2
            await s.delete("topics/", prefix=True)
            assert [kv.key for kv in (await s.range(""))[0]] == ["a", "topicsX"]
        finally:
            await s.close()
            await other.close()

    run(main())


def test_transactions_compare_and_set(etcd):
    async def main():
        s = await open_store(url(etcd))
        try:
            assert await s.compare_and_set("leader", b"1", version=0)
            assert not await s.compare_and_set("leader", b"2", version=0)
            assert await s.compare_and_set("leader", b"2", version=1)
            res = await s.txn([Compare("leader", "value", "==", b"2"), Compare("epoch", "version", "==", 0)],
                              [Put("leader", b"3"), Put("epoch", b"1"), Get("leader")], [Get("leader")])
            assert res.succeeded and res.reads[0][0].value == b"3"
            assert (await s.get("leader")).mod_revision == (await s.get("epoch")).mod_revision == res.revision
            res = await s.txn([Compare("epoch", "mod_revision", "<", res.revision)], [Put("epoch", b"2")],
                              [Get("epoch")])
            assert not res.succeeded and res.reads[0][0].value == b"1"

            await increment_concurrently(s, "n", 20)
            assert (await s.get("n")).value == b"20"
        finally:
            await s.close()

    run(main())


def test_watch_from_a_revision_sees_each_change_once(etcd):
    async def main():
        s = await open_store(url(etcd))
        try:
            first = await s.put("t/a", b"1")
            await s.put("other", b"x")
            await s.put("t/b", b"2")
            seen = []

            async def follow():
                async for e in flat(s.watch("t/", first + 1)):
                    seen.append((e.kind, e.kv.key))
                    if len(seen) == 4:
                        return

            task = asyncio.create_task(follow())
            await asyncio.sleep(0.2)
            await s.put("t/a", b"3")
            await s.delete("t/b")
            await s.put("nope", b"")
            await s.txn([], [Put("t/c", b"5"), Delete("t/a")])
            await asyncio.wait_for(task, 10)
            assert seen == [("put", "t/b"), ("put", "t/a"), ("delete", "t/b"), ("put", "t/c")]
        finally:
            await s.close()

    run(main())


def test_watch_of_a_compacted_revision_and_of_a_closed_store(etcd):
    async def main():
        s = await open_store(url(etcd))
        try:
            first = await s.put("k", b"0")
            last = first
            for i in range(5):
                last = await s.put("k", str(i).encode())
            # Compact through etcd's own API: what the interface promises is the error.
            from etcd3aio._protobuf import CompactionRequest

            await s._kv.Compact(CompactionRequest(revision=last, physical=True))
            with pytest.raises(CompactedError):
                async for _ in flat(s.watch("k", first)):
                    pass
        finally:
            await s.close()

        s = await open_store(url(etcd))
        _, now = await s.range("")
        watching = asyncio.create_task(anext(aiter(flat(s.watch("k", now + 1)))))
        await asyncio.sleep(0.2)
        await s.close()
        with pytest.raises((WatchInterrupted, asyncio.CancelledError)):
            await asyncio.wait_for(watching, 10)

    run(main())


def test_leases_expire_and_take_their_keys(etcd):
    async def main():
        s = await open_store(url(etcd))
        try:
            lease = await s.grant_lease(2)
            await s.put("brokers/1", b"up", lease=lease)
            await s.put("topics/a", b"stays")
            assert (await s.get("brokers/1")).lease == lease
            assert await s.keep_alive(lease) >= 1
            deadline = time.monotonic() + 15
            while await s.get("brokers/1") is not None:
                assert time.monotonic() < deadline, "the lease did not expire"
                await asyncio.sleep(0.2)
            assert await s.get("topics/a") is not None
            with pytest.raises(LeaseNotFound):
                await s.keep_alive(lease)
            with pytest.raises(LeaseNotFound):
                await s.put("x", b"", lease=lease)
            other = await s.grant_lease(30)
            await s.put("y", b"", lease=other)
            await s.revoke_lease(other)
            assert await s.get("y") is None
            with pytest.raises(LeaseNotFound):
                await s.revoke_lease(other)
        finally:
            await s.close()

    run(main())


def test_broker_keeps_its_topics_in_etcd(etcd, tmp_path):
    """A broker started with an etcd metadata store: topics created through the
    wire protocol are in etcd, and a restart finds them there."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from odradek.embedded import EmbeddedBroker

    store_url = url(etcd)
    config = {"metadata.store": store_url}
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), config=config) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in admin.create_topics([NewTopic("in-etcd", 3, 1, config={"retention.ms": "7000"})]).values():
            f.result(30)

    async def keys():
        s = await open_store(store_url)
        try:
            return [kv.key for kv in (await s.range(""))[0]]
        finally:
            await s.close()

    stored = run(keys())
    assert "topics/in-etcd" in stored and "configs/topic/in-etcd" in stored
    assert [k for k in stored if k.startswith("partitions/in-etcd/")] == [
        "partitions/in-etcd/0", "partitions/in-etcd/1", "partitions/in-etcd/2"]
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), config=config) as b:
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
        assert len(md.topics["in-etcd"].partitions) == 3
        assert b.core.image.get("in-etcd").configs == {"retention.ms": "7000"}


def test_odradek_user_add_writes_to_the_clusters_store(etcd):
    """``odradek user add --metadata-store etcd://...`` puts the SCRAM user where
    brokers of that cluster look for it."""
    import subprocess
    import sys

    store_url = url(etcd)
    proc = subprocess.run([sys.executable, "-m", "odradek", "user", "add", "carol", "--metadata-store", store_url,
                           "-m", "SCRAM-SHA-256", "--password-file", "-"],
                          input="secret\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

    async def keys():
        s = await open_store(store_url)
        try:
            return [kv.key for kv in (await s.range("scram/"))[0]]
        finally:
            await s.close()

    assert run(keys()) == ["scram/SCRAM-SHA-256/carol"]
