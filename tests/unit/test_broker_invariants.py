"""The broker's stated invariants (odradek/broker.py), tested on a broker that
runs over the fake filesystem and is driven through the wire protocol: the
topic registry is written by one writer, in order; fsync never runs on the
event loop."""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import time

from odradek.broker import TOPICS_FILE, Broker
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
    async def connect(cls, broker: Broker) -> "Client":
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


def new_broker(fs: FakeFileSystem, **props) -> Broker:
    props = {"log.retention.check.interval.ms": "3600000", **props}
    return Broker(BrokerConfig(data_dir=DATA, host="127.0.0.1", port=0,
                               props={k: str(v) for k, v in props.items()}), fs=fs)


def registry(fs: FakeFileSystem) -> dict:
    return json.loads(fs.contents(f"{DATA}/{TOPICS_FILE}"))


# -- the topic registry: one writer, in order ----------------------------------------

def hold_registry_writes(fs: FakeFileSystem, n: int, seconds: float) -> None:
    """The next ``n`` writes of topics.json start ``seconds`` late, as if the
    thread writing each were descheduled (the hook runs in that thread)."""
    fs.on("open", lambda op, path: time.sleep(seconds), path_contains=TOPICS_FILE + ".tmp",
          times=n)


def test_admin_changes_racing_each_other_all_survive_a_restart():
    """AlterConfigs whose registry writes are held up, then CreateTopics and
    DeleteTopics while they are: once acknowledged, every change is in
    topics.json, and a restart finds every created topic with its logs and
    every altered config, and no deleted topic. (Before the fix the alters'
    older registries landed last: the created topics' logs were deleted at
    the restart as leftovers, and the deleted topic came back, empty.)"""
    fs = FakeFileSystem()

    async def first():
        b = new_broker(fs)
        await b.start()
        c = await Client.connect(b)
        try:
            for i in range(4):
                await c.create_topic(f"old-{i}", 2)
            hold_registry_writes(fs, 3, 0.3)
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
            return registry(fs)  # acknowledged: on disk already
        finally:
            await c.close()
            await b.stop()

    acked = asyncio.run(first())
    expected = {f"old-{i}" for i in range(3)} | {f"new-{i}" for i in range(4)}
    assert set(acked) == expected

    async def second():
        b = new_broker(fs)
        await b.start()
        try:
            assert set(b.topics) == expected
            for i in range(3):
                assert b.topics[f"old-{i}"].config.overrides == {"retention.ms": str(1000 + i)}
            for i in range(4):
                assert len(b.topics[f"new-{i}"].partitions) == 2
            assert {n for n, _ in b.store.existing_logs()} == expected
        finally:
            await b.stop()

    asyncio.run(second())


def test_older_registry_never_lands_last():
    """The race itself: an AlterConfigs whose registry write is held up while a
    CreateTopics is made and written. The registry on disk afterwards (and
    after a restart) must hold both changes; before the fix the alter's older
    snapshot landed last and the restart deleted the new topic's logs as
    leftovers of a deletion."""
    fs = FakeFileSystem()
    release = threading.Event()

    async def first():
        b = new_broker(fs)
        await b.start()
        c = await Client.connect(b)
        try:
            await c.create_topic("x")
            fs.on("open", lambda op, path: release.wait(5), path_contains=TOPICS_FILE + ".tmp")
            c2 = await Client.connect(b)
            alter = asyncio.ensure_future(c.alter_configs("x", {"retention.ms": "1234"}))
            await asyncio.sleep(0.1)  # its write is held up in a worker thread
            create = asyncio.ensure_future(c2.create_topic("y"))
            await asyncio.sleep(0.1)
            release.set()
            await asyncio.wait_for(asyncio.gather(alter, create), 10)
            on_disk = registry(fs)
            assert set(on_disk) == {"x", "y"}
            assert on_disk["x"]["configs"] == {"retention.ms": "1234"}
            await c2.close()
        finally:
            await c.close()
            await b.stop()

    asyncio.run(first())

    async def second():
        b = new_broker(fs)
        await b.start()
        try:
            assert set(b.topics) == {"x", "y"}
            assert b.topics["x"].config.overrides == {"retention.ms": "1234"}
            assert ("y", 0) in b.store.existing_logs()
        finally:
            await b.stop()

    asyncio.run(second())
