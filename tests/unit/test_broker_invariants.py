"""The broker's stated invariants (odradek/broker.py), tested on a broker that
runs over the fake filesystem and is driven through the wire protocol: the
topics live in the metadata store, and concurrent admin changes all survive
a restart; fsync never runs on the event loop."""

from __future__ import annotations

import asyncio
import struct
import threading
import time

from odradek.broker import BrokerCore
from odradek.config import BrokerConfig
from odradek.protocol.schema import codec, read_tags
from odradek.server.registry import load_all
from odradek.storage.fs import FakeFileSystem

DATA = "/data"


class Client:
    """One connection speaking Kafka's protocol with odradek's own codec, on the
    broker's event loop. The broker handles a connection's requests one at a
    time: concurrent requests need a connection each."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.apis = {a.name: a for a in load_all().values()}
        self.correlation = 0
        self.pending: dict[int, tuple[asyncio.Future, str, int]] = {}
        self.reading = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, broker: BrokerCore) -> "Client":
        return cls(*await asyncio.open_connection("127.0.0.1", broker.port))

    async def request(self, name: str, version: int, body: dict) -> dict:
        api = self.apis[name]
        flexible = api.is_flexible(version)
        self.correlation += 1
        out = bytearray()
        codec("RequestHeader", 2 if flexible else 1).encode(
            {"request_api_key": api.key, "request_api_version": version,
             "correlation_id": self.correlation, "client_id": "test"}, out)
        codec(name + "Request", version).encode(body, out)
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.correlation] = (fut, name, version)
        self.writer.write(struct.pack(">i", len(out)) + out)
        return await fut

    async def _read(self) -> None:
        while True:
            try:
                size = struct.unpack(">i", await self.reader.readexactly(4))[0]
                data = await self.reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                for fut, _, _ in self.pending.values():
                    fut.set_exception(ConnectionError(f"connection closed: {e}"))
                return
            fut, name, version = self.pending.pop(struct.unpack(">i", data[:4])[0])
            pos = 4
            if self.apis[name].is_flexible(version):
                _, _, pos = read_tags(data, pos, {})
            fut.set_result(codec(name + "Response", version).decode(data, pos)[0])

    async def close(self) -> None:
        self.reading.cancel()
        self.writer.close()

    # -- the admin requests the tests use ----------------------------------------
    async def create_topic(self, name: str, partitions: int = 1, configs: dict | None = None):
        res = await self.request("CreateTopics", 5, {"timeout_ms": 30000, "topics": [
            {"name": name, "num_partitions": partitions, "replication_factor": 1,
             "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()]}]})
        assert res["topics"][0]["error_code"] == 0, res

    async def delete_topic(self, name: str):
        res = await self.request("DeleteTopics", 4, {"timeout_ms": 30000, "topic_names": [name]})
        assert res["responses"][0]["error_code"] == 0, res

    async def alter_configs(self, name: str, configs: dict):
        res = await self.request("AlterConfigs", 1, {"validate_only": False, "resources": [
            {"resource_type": 2, "resource_name": name,
             "configs": [{"name": k, "value": v} for k, v in configs.items()]}]})
        assert res["responses"][0]["error_code"] == 0, res


def new_broker(fs: FakeFileSystem, metadata_path=None, **props) -> BrokerCore:
    props = {"log.retention.check.interval.ms": "3600000", **props}
    return BrokerCore(BrokerConfig(data_dir=DATA, host="127.0.0.1", port=0,
                               props={k: str(v) for k, v in props.items()}), fs=fs,
                  metadata_path=None if metadata_path is None else str(metadata_path))


async def registry(metadata_path) -> dict:
    """The topics in the metadata store's file, read by a store of its own."""
    from odradek.metadata.sqlite import SqliteStore
    from odradek.metadata.image import MetadataImage

    store = await SqliteStore.open(str(metadata_path))
    try:
        image = MetadataImage()
        image.load(*await store.range(""))
        return image.topics
    finally:
        await store.close()


# -- concurrent admin changes all survive a restart ------------------------------------

def hold_metadata_writes(b: BrokerCore, n: int, action) -> None:
    """The next ``n`` metadata transactions run ``action()`` first, on the
    store's thread, as if that thread were descheduled (all later ones wait)."""
    original = b.metadata._txn
    left = [n]

    def held(*args):
        if left[0] > 0:
            left[0] -= 1
            action()
        return original(*args)

    b.metadata._txn = held


def test_admin_changes_racing_each_other_all_survive_a_restart(tmp_path):
    """AlterConfigs whose metadata writes are held up, then CreateTopics and
    DeleteTopics while they are: once acknowledged, every change is in the
    store, and a restart finds every created topic with its logs and every
    altered config, and no deleted topic. (With topics.json rewritten whole
    from snapshots, the alters' older registries landed last: the created
    topics' logs were deleted at the restart as leftovers, and the deleted
    topic came back, empty.)"""
    fs = FakeFileSystem()
    metadata = tmp_path / "metadata.db"

    async def first():
        b = new_broker(fs, metadata)
        await b.start()
        c = await Client.connect(b)
        try:
            for i in range(4):
                await c.create_topic(f"old-{i}", 2)
            hold_metadata_writes(b, 3, lambda: time.sleep(0.3))
            clients = [await Client.connect(b) for _ in range(8)]
            ops = [asyncio.ensure_future(clients[i].alter_configs(
                f"old-{i}", {"retention.ms": str(1000 + i)})) for i in range(3)]
            await asyncio.sleep(0.05)  # the alters' writes are under way
            ops.append(asyncio.ensure_future(clients[3].delete_topic("old-3")))
            for i in range(4):
                ops.append(asyncio.ensure_future(clients[4 + i].create_topic(f"new-{i}", 2)))
            await asyncio.wait_for(asyncio.gather(*ops), 10)
            for other in clients:
                await other.close()
            return await registry(metadata)  # acknowledged: on disk already
        finally:
            await c.close()
            await b.stop()

    acked = asyncio.run(first())
    expected = {f"old-{i}" for i in range(3)} | {f"new-{i}" for i in range(4)}
    assert set(acked) == expected

    async def second():
        b = new_broker(fs, metadata)
        await b.start()
        try:
            assert set(b.replicas.topics) == expected
            for i in range(3):
                assert b.replicas.topics[f"old-{i}"].config.overrides == {"retention.ms": str(1000 + i)}
            for i in range(4):
                assert len(b.replicas.topics[f"new-{i}"].partitions) == 2
            assert {n for n, _ in b.store.existing_logs()} == expected
        finally:
            await b.stop()

    asyncio.run(second())


def test_older_registry_never_lands_last(tmp_path):
    """The race of topics.json's days: an AlterConfigs whose metadata write is
    held up while a CreateTopics is made. The store afterwards (and after a
    restart) must hold both changes; when topics.json was rewritten whole, the
    alter's older snapshot landed last and the restart deleted the new topic's
    logs as leftovers of a deletion."""
    fs = FakeFileSystem()
    metadata = tmp_path / "metadata.db"
    release = threading.Event()

    async def first():
        b = new_broker(fs, metadata)
        await b.start()
        c = await Client.connect(b)
        try:
            await c.create_topic("x")
            hold_metadata_writes(b, 1, lambda: release.wait(5))
            c2 = await Client.connect(b)
            alter = asyncio.ensure_future(c.alter_configs("x", {"retention.ms": "1234"}))
            await asyncio.sleep(0.1)  # its write is held up in a worker thread
            create = asyncio.ensure_future(c2.create_topic("y"))
            await asyncio.sleep(0.1)
            release.set()
            await asyncio.wait_for(asyncio.gather(alter, create), 10)
            on_disk = await registry(metadata)
            assert set(on_disk) == {"x", "y"}
            assert on_disk["x"].configs == {"retention.ms": "1234"}
            await c2.close()
        finally:
            await c.close()
            await b.stop()

    asyncio.run(first())

    async def second():
        b = new_broker(fs, metadata)
        await b.start()
        try:
            assert set(b.replicas.topics) == {"x", "y"}
            assert b.replicas.topics["x"].config.overrides == {"retention.ms": "1234"}
            assert ("y", 0) in b.store.existing_logs()
        finally:
            await b.stop()

    asyncio.run(second())


# -- fsync never runs on the event loop ----------------------------------------------

def batch(values, key=None, **kw) -> bytes:
    from odradek.protocol.records import build_batch

    now = int(time.time() * 1000)
    return build_batch([(key(v) if key else None, v, [], now) for v in values], **kw)


async def produce(c: Client, topic: str, partition: int, records: bytes) -> int:
    res = await c.request("Produce", 9, {"acks": -1, "timeout_ms": 30000, "topic_data": [
        {"name": topic, "partition_data": [{"index": partition, "records": records}]}]})
    p = res["responses"][0]["partition_responses"][0]
    assert p["error_code"] == 0, p
    return p["base_offset"]


async def until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_fsync_never_runs_on_the_event_loop(tmp_path):
    """Drive a broker through everything that writes durably -- startup,
    produce (flush.messages=1, rolls, idempotent producers), create, alter and
    delete topic, add partitions, retention, DeleteRecords, truncation,
    compaction, group offset commits, the periodic checkpoints and producer
    snapshots, shutdown and a restart -- and check that no fsync ran on the
    event loop's thread. (Before the fix: the startup's meta.properties, the
    flush of a deleted topic's logs and truncation's epoch checkpoint did.)"""
    fs = FakeFileSystem()
    props = {"log.flush.interval.messages": 1, "log.retention.check.interval.ms": 50,
             "log.flush.offset.checkpoint.interval.ms": 50, "log.cleaner.enable": "true",
             "log.cleaner.backoff.ms": 20, "offsets.topic.num.partitions": 2,
             "group.initial.rebalance.delay.ms": 0}
    loop_threads = set()
    sync_threads = set()  # the names of the threads that fsynced
    for op in ("fsync", "fsync_dir"):
        fs.on(op, lambda op, path: sync_threads.add(threading.current_thread().name), times=-1)

    async def first():
        loop_threads.add(threading.get_ident())
        b = new_broker(fs, tmp_path / "metadata.db", **props)
        await b.start()
        c = await Client.connect(b)
        try:
            await c.create_topic("t", 2, {"internal.segment.bytes": "600"})
            for i in range(20):
                await produce(c, "t", i % 2, batch([b"x" * 50, b"y" * 50]))
            res = await c.request("InitProducerId", 4, {"transactional_id": None,
                                                        "transaction_timeout_ms": 60000})
            pid, epoch = res["producer_id"], res["producer_epoch"]
            for seq in range(0, 10, 2):
                await produce(c, "t", 0, batch([b"i", b"j"], producer_id=pid,
                                               producer_epoch=epoch, base_sequence=seq))
            t0 = b.replicas.topics["t"].partitions[0].log
            await until(lambda: fs.exists(f"{DATA}/recovery-point-offset-checkpoint")
                        and t0.read_aux("producer-state.snapshot") is not None)
            await c.alter_configs("t", {"internal.segment.bytes": "600", "retention.bytes": "700"})
            await until(lambda: t0.log_start_offset > 0)  # retention deleted segments
            res = await c.request("DeleteRecords", 2, {"timeout_ms": 30000, "topics": [
                {"name": "t", "partitions": [{"partition_index": 1,
                                              "offset": b.replicas.topics["t"].partitions[1].log.high_watermark - 2}]}]})
            assert res["topics"][0]["partitions"][0]["error_code"] == 0, res
            t0.truncate_to(t0.log_end_offset - 3)  # as a follower will (no API does yet)
            await produce(c, "t", 0, batch([b"after truncation"]))

            await c.create_topic("c", 1, {"cleanup.policy": "compact", "internal.segment.bytes": "400",
                                          "min.cleanable.dirty.ratio": "0.01"})
            for i in range(30):
                await produce(c, "c", 0, batch([b"%d" % (i % 3)], key=lambda v: v))
            await until(lambda: b.cleaner.passes >= 1)

            res = await c.request("OffsetCommit", 8, {
                "group_id": "g", "generation_id_or_member_epoch": -1, "member_id": "",
                "group_instance_id": None, "topics": [{"name": "t", "partitions": [
                    {"partition_index": 0, "committed_offset": 3, "committed_metadata": None}]}]})
            assert res["topics"][0]["partitions"][0]["error_code"] == 0, res

            await c.create_topic("d", 2, {"flush.messages": str(2**62)})
            for i in range(4):
                await produce(c, "d", i % 2, batch([b"unflushed"]))
            res = await c.request("CreatePartitions", 3, {"timeout_ms": 30000, "validate_only": False,
                                                          "topics": [{"name": "d", "count": 3,
                                                                      "assignments": None}]})
            assert res["results"][0]["error_code"] == 0, res
            await produce(c, "d", 2, batch([b"unflushed"]))
            await c.delete_topic("d")
            await c.delete_topic("t")
            await c.create_topic("t", 1)
            await produce(c, "t", 0, batch([b"again"]))
        finally:
            await c.close()
            await b.stop()

    async def second():
        loop_threads.add(threading.get_ident())
        b = new_broker(fs, tmp_path / "metadata.db", **props)
        await b.start()
        try:
            assert set(b.replicas.topics) == {"t", "c", "__consumer_offsets"}
            c = await Client.connect(b)
            await produce(c, "t", 0, batch([b"after restart"]))
            await c.close()
        finally:
            await b.stop()

    asyncio.run(first())
    asyncio.run(second())
    synced = {path.rsplit("/", 1)[-1] for _, path, _ in fs.syncs}
    for name in ("meta.properties.tmp", "producer-state.snapshot.tmp",
                 "recovery-point-offset-checkpoint.tmp", "cleaner-offset-checkpoint.tmp",
                 "leader-epoch-checkpoint.tmp", "00000000000000000000.log.cleaned",
                 "__consumer_offsets-0", "00000000000000000000.log"):
        assert name in synced, name  # the test did drive it
    on_loop = sorted({(op, path) for op, path, thread in fs.syncs if thread in loop_threads})
    assert on_loop == [], on_loop
    # ... but on the broker's background pool (background.threads), or the cleaner's own thread.
    assert {n.split("-p")[0] if n.startswith("odradek-background-") else n.split("_")[0]
            for n in sync_threads} == {"odradek-background-1", "odradek-cleaner"}, sync_threads


def test_logs_are_opened_off_the_event_loop(tmp_path):
    """Opening a partition's log creates, reads and (recovering an existing
    directory) may fsync its files: CreateTopics, CreatePartitions and
    startup do it in worker threads, not on the event loop."""
    fs = FakeFileSystem()
    opened = []  # (path, thread) of every open under a "many-N" directory
    fs.on("open", lambda op, path: opened.append((path, threading.get_ident())),
          path_contains="/many-", times=-1)
    loop_threads = set()

    async def run(first: bool):
        loop_threads.add(threading.get_ident())
        b = new_broker(fs, tmp_path / "metadata.db")
        await b.start()
        try:
            if first:
                c = await Client.connect(b)
                await c.create_topic("many", 4)
                res = await c.request("CreatePartitions", 3, {
                    "timeout_ms": 30000, "validate_only": False,
                    "topics": [{"name": "many", "count": 8, "assignments": None}]})
                assert res["results"][0]["error_code"] == 0, res
                await c.close()
            assert len(b.replicas.topics["many"].partitions) == 8
        finally:
            await b.stop()

    asyncio.run(run(True))
    asyncio.run(run(False))
    assert {p.split("/")[2] for p, _ in opened} == {f"many-{i}" for i in range(8)}
    assert [p for p, thread in opened if thread in loop_threads] == []


def test_stop_waits_for_a_topic_deletion_under_way():
    """A DeleteTopics whose files are being removed in a worker thread when
    the broker stops: stop() returns only once that work is done, so nothing
    touches the data dir after it (and the topic lock covered the work)."""
    fs = FakeFileSystem()
    removes = []  # time each remove under "gone-0" ended
    fs.on("remove", lambda op, path: (time.sleep(0.05), removes.append(time.monotonic())),
          path_contains="/gone-0/", times=-1)

    async def main():
        b = new_broker(fs)
        await b.start()
        c = await Client.connect(b)
        await c.create_topic("gone", 1)
        for _ in range(3):
            await produce(c, "gone", 0, batch([b"v"]))
        deleting = asyncio.ensure_future(c.delete_topic("gone"))
        await until(lambda: removes)  # the files are going, in a worker thread
        await b.stop()
        stopped = time.monotonic()
        deleting.cancel()
        await c.close()
        return stopped

    stopped = asyncio.run(main())
    assert removes and max(removes) <= stopped
    assert not fs.exists(f"{DATA}/gone-0")


def test_topics_json_of_an_older_odradek_is_imported_once(tmp_path):
    """A data dir written before the metadata store: its topics.json is read
    into the empty store at the first start (ids, partitions, configs), and
    ignored after that, so a topic deleted later stays deleted."""
    import json
    import uuid

    data = tmp_path / "data"
    data.mkdir()
    topic_id = uuid.uuid4().bytes
    (data / "topics.json").write_text(json.dumps({"old": {
        "id": topic_id.hex(), "partitions": 3, "configs": {"retention.ms": "5000"}, "leader_epoch": 0}}))

    def broker():
        return BrokerCore(BrokerConfig(data_dir=str(data), host="127.0.0.1", port=0))

    async def first():
        b = broker()
        await b.start()
        try:
            t = b.replicas.topics["old"]
            assert (t.topic_id, len(t.partitions), t.config.overrides) == (topic_id, 3, {"retention.ms": "5000"})
            c = await Client.connect(b)
            await produce(c, "old", 2, batch([b"kept"]))
            await c.delete_topic("old")
            await c.close()
        finally:
            await b.stop()

    async def second():
        b = broker()
        await b.start()
        try:
            assert "old" not in b.replicas.topics
        finally:
            await b.stop()

    asyncio.run(first())
    asyncio.run(second())


# -- a Fetch never waits for the disk on the event loop ------------------------------

def test_fetch_reads_a_cold_page_cache_off_the_event_loop(tmp_path, monkeypatch):
    """Fetch v4 and v12 (read_uncommitted and read_committed) of partitions
    whose files are out of the (fake) page cache: the
    reads that wait run on the background pool, and the answers are byte for
    byte those of the same fetches from a warm cache."""
    from odradek.storage import coldreads
    monkeypatch.setattr(coldreads, "WARM_TAIL", 0)  # it reads back what it wrote
    fs = FakeFileSystem()
    loop_threads = set()

    def fetch_body(version, offsets, isolation=0, replica=-1):
        return {"replica_id": replica, "replica_state": {"replica_id": -1, "replica_epoch": -1},
                "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 3000, "isolation_level": isolation,
                "session_id": 0, "session_epoch": -1, "rack_id": "", "forgotten_topics_data": [],
                "topics": [{"topic": "t", "topic_id": None, "partitions": [
                    {"partition": p, "fetch_offset": o, "partition_max_bytes": 1200,
                     "current_leader_epoch": -1, "last_fetched_epoch": -1, "log_start_offset": -1}
                    for p, o in enumerate(offsets)]}]}

    async def main():
        loop_threads.add(threading.get_ident())
        b = new_broker(fs, tmp_path / "metadata.db")
        await b.start()
        c = await Client.connect(b)
        try:
            await c.create_topic("t", 3, {"internal.segment.bytes": "700", "index.interval.bytes": "100"})
            for i in range(60):
                await produce(c, "t", i % 3, batch([b"record-%d" % i, b"x" * (i % 7)]))
            fetches = [(4, [0, 3, 7], 0), (12, [1, 0, 12], 0), (12, [5, 5, 5], 1), (4, [0, 0, 0], 0)]
            warm = [await c.request("Fetch", v, fetch_body(v, offs, iso)) for v, offs, iso in fetches]
            assert all(p["records"] for r in warm for p in r["responses"][0]["partitions"])
            fs.cold_preads.clear()
            for (v, offs, iso), want in zip(fetches, warm):
                fs.evict("/t-")
                assert await c.request("Fetch", v, fetch_body(v, offs, iso)) == want
            assert fs.cold_preads, "the test did read cold files"
            assert [p for p, t in fs.cold_preads if t in loop_threads] == []
        finally:
            await c.close()
            await b.stop()

    asyncio.run(main())


def test_a_woken_fetch_that_reads_in_cold_pages_reads_every_partition_again(tmp_path, monkeypatch):
    """A long poll woken by partition 0, whose new bytes are not in the page
    cache: while a thread reads them in, partition 1 gets a record (the fetch
    holds no waiter then). The pass after the read-in is a full one, so the
    answer carries partition 1's record too, as a fresh Fetch would; a pass
    that kept partition 1's earlier (empty) reading would leave it out."""
    from odradek.storage import coldreads
    monkeypatch.setattr(coldreads, "WARM_TAIL", 0)
    fs = FakeFileSystem()

    def fetch_body(offsets, session_id=0, epoch=-1):
        return {"replica_id": -1, "replica_state": {"replica_id": -1, "replica_epoch": -1},
                "max_wait_ms": 5000, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
                "session_id": session_id, "session_epoch": epoch, "rack_id": "", "forgotten_topics_data": [],
                "topics": [{"topic": "t", "topic_id": None, "partitions": [
                    {"partition": p, "fetch_offset": o, "partition_max_bytes": 1 << 19,
                     "current_leader_epoch": -1, "last_fetched_epoch": -1, "log_start_offset": -1}
                    for p, o in enumerate(offsets)]}]}

    async def main():
        loop = asyncio.get_running_loop()
        b = new_broker(fs, tmp_path / "metadata.db")
        await b.start()
        c, c2 = await Client.connect(b), await Client.connect(b)
        try:
            await c.create_topic("t", 2, {})
            for p in (0, 1):
                await produce(c2, "t", p, batch([b"old-%d" % p]))
            waiting = asyncio.ensure_future(c.request("Fetch", 12, fetch_body([1, 1])))
            await asyncio.sleep(0.2)
            assert not waiting.done()

            def append_to_partition_1(op, path):  # on the thread reading partition 0 in
                asyncio.run_coroutine_threadsafe(produce(c2, "t", 1, batch([b"new-1"])), loop).result(10)

            fs.on("pread", append_to_partition_1, path_contains="/t-0/")
            fs.evict("/t-0/")
            await produce(c2, "t", 0, batch([b"new-0"]))
            res = await asyncio.wait_for(waiting, 10)
            assert fs.cold_preads, "partition 0 was read in on a thread"
            parts = {p["partition_index"]: p for p in res["responses"][0]["partitions"]}
            assert parts[0]["records"] and parts[1]["records"], parts
            assert parts[1]["high_watermark"] == 2
        finally:
            await c.close()
            await c2.close()
            await b.stop()

    asyncio.run(main())
