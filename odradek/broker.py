"""The broker: topics, partitions, the listener and background duties.

Invariants:
- The topic registry (names, ids, partition counts, config overrides, leader
  epoch) is kept in the store's ``topics.json``, rewritten atomically after
  every change by one writer (``save_topics``): writes never overlap, each
  holds the registry as it was when it began, and a change is acknowledged
  only once a write that includes it is durable. At startup the logs found on
  disk are opened only for topics it names; the others are deleted.
- Creating, deleting and adding partitions to topics are serialized by the
  topic lock; AlterConfigs changes the config in memory at once, without it.
- Every partition's log is opened once, at startup or creation, and owned by
  its ``Partition``; appends, reads, retention, DeleteRecords and truncation
  happen on the event loop and never fsync.
- fsync never runs on the event loop: startup (recovery, ``meta.properties``),
  opening a new topic's logs, removing a deleted topic's files (its logs are
  abandoned, not flushed), flushes, checkpoints, producer snapshots, registry
  writes and shutdown go to the default executor, compaction to the cleaner's
  thread. Work awaited there by a task that is cancelled (the broker
  stopping) is waited for first (``in_worker``), so none outlives ``stop()``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import time
import uuid
from typing import Iterable

from odradek.config import BrokerConfig, ConfigError, TopicConfig, validate_topic_config
from odradek.protocol import errors
from odradek.storage.base import LogStore, PartitionLog

log = logging.getLogger("odradek.broker")

LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
TOPICS_FILE = "topics.json"
META_FILE = "meta.properties"
INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state")


def now_ms() -> int:
    return int(time.time() * 1000)


async def in_worker(fn, *args):
    """Run blocking ``fn(*args)`` in the default executor and return its result.
    If the caller is cancelled (the broker stopping), ``fn`` is waited for before
    the cancellation goes on: a lock held around the call still covers it, and
    no such work outlives ``stop()``."""
    fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        await asyncio.wait([fut])
        raise


class TopicError(Exception):
    def __init__(self, error_code: int, message: str = ""):
        super().__init__(message or str(error_code))
        self.error_code = error_code
        self.message = message


class Partition:
    """One partition this broker leads: its log, its waiters and its producers."""

    __slots__ = ("topic", "index", "log", "leader_epoch", "waiters", "producers")

    def __init__(self, topic: "Topic", index: int, log_: PartitionLog, leader_epoch: int = 0):
        from odradek.producers import ProducerStateTable

        self.topic = topic
        self.index = index
        self.log = log_
        self.leader_epoch = leader_epoch
        self.waiters: set[asyncio.Future] = set()
        self.producers = ProducerStateTable()

    def notify(self) -> None:
        """Wake the fetches waiting on this partition."""
        if self.waiters:
            for fut in self.waiters:
                if not fut.done():
                    fut.set_result(None)
            self.waiters.clear()


class Topic:
    __slots__ = ("name", "topic_id", "partitions", "config", "internal")

    def __init__(self, name: str, topic_id: bytes, config: TopicConfig, internal: bool = False):
        self.name = name
        self.topic_id = topic_id
        self.partitions: list[Partition] = []
        self.config = config
        self.internal = internal


def validate_topic_name(name: str) -> None:
    if not name or name in (".", "..") or not LEGAL_TOPIC.match(name):
        raise TopicError(errors.INVALID_TOPIC_EXCEPTION, f"Topic name '{name}' is illegal")


class Broker:
    """A single odradek broker. ``await start()``, then serve until ``await stop()``.

    ``fs`` is the filesystem under the data dir (default: the operating
    system's); tests pass a ``FakeFileSystem`` to crash it or watch its calls."""

    def __init__(self, config: BrokerConfig, fs=None):
        self.config = config
        self.fs = fs
        self.topics: dict[str, Topic] = {}
        self.topics_by_id: dict[bytes, Topic] = {}
        self.connections: set = set()
        self.workers: set[asyncio.Task] = set()  # request tasks, of open and closed connections
        self.store: LogStore | None = None
        self.server: asyncio.AbstractServer | None = None  # the first listener's
        self.servers: list[asyncio.AbstractServer] = []
        self.endpoints: dict[str, tuple[str, int]] = {}  # listener name -> advertised (host, port)
        self.port = config.port
        self.cluster_id = config.cluster_id or ""
        self.tasks: list[asyncio.Task] = []
        self.started_at = 0.0
        self.groups = None  # group coordinator, once loaded
        self.cleaner = None  # log cleaner (compaction), when log.cleaner.enable
        self._topic_lock = asyncio.Lock()
        self._registry_writer: asyncio.Task | None = None  # see save_topics
        self._registry_waiters: list[asyncio.Future] = []

    # -- lifecycle -------------------------------------------------------
    def open_store(self) -> LogStore:
        if self.config.data_dir is None:
            from odradek.storage.memory import MemoryLogStore

            return MemoryLogStore()
        from odradek.storage.disk import DiskLogStore

        if self.fs is None:
            os.makedirs(self.config.data_dir, exist_ok=True)
        return DiskLogStore(self.config.data_dir, self.fs)

    async def start(self) -> None:
        from odradek.server.registry import load_all
        from odradek.server.connection import KafkaConnection

        self.started_at = time.monotonic()
        load_all()
        loop = asyncio.get_running_loop()
        # Recovery reads the logs and may fsync: in a worker thread, while
        # nothing else touches the broker's state yet.
        await loop.run_in_executor(None, self.load)
        self.endpoints = {}
        for listener in self.config.listeners():
            server = await loop.create_server(
                lambda listener=listener: KafkaConnection(self, listener.name),
                listener.host or None, listener.port, reuse_address=True, backlog=1024,
            )
            self.servers.append(server)
            self.endpoints[listener.name] = self.config.advertised(
                listener, server.sockets[0].getsockname()[1])
        self.server = self.servers[0]
        self.port = self.server.sockets[0].getsockname()[1]
        self.tasks.append(loop.create_task(self.housekeeping()))
        if self.config.get_bool("log.cleaner.enable"):
            from odradek.storage.cleaner import LogCleaner

            self.cleaner = LogCleaner(self)
            self.tasks.append(loop.create_task(self.cleaner.run()))
        from odradek.coordinator import start_coordinators

        await start_coordinators(self)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self.tasks.clear()
        if self.server is not None:
            for server in self.servers:
                server.close()
            workers = [w for w in self.workers if not w.done()]
            for conn in list(self.connections):
                conn.abort()
            for w in workers:  # requests still waiting (long polls, joins) end with the broker
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for server in self.servers:
                await server.wait_closed()
            self.servers.clear()
            self.server = None
        if self.groups is not None:
            await self.groups.stop()
        if self._registry_writer is not None:  # changes made in memory reach topics.json
            await asyncio.gather(self._registry_writer, return_exceptions=True)
        loop = asyncio.get_running_loop()
        if self.store is not None:
            store = self.store
            self.store = None
            parts = [p for t in self.topics.values() for p in t.partitions]
            from odradek.producers import write_snapshot

            snapshots = [p.producers.snapshot(p.log) for p in parts]  # on the loop: consistent

            def close_all():
                for p, snapshot in zip(parts, snapshots):
                    try:
                        p.log.flush()
                        write_snapshot(p.log, snapshot)
                        p.log.close()
                    except Exception:  # keep closing the others
                        log.exception("closing %s-%d", p.topic.name, p.index)
                store.close()

            await loop.run_in_executor(None, close_all)

    @property
    def advertised_host(self) -> str:
        """The first listener's advertised host."""
        return next(iter(self.endpoints.values()))[0]

    def endpoint(self, listener: str | None = None) -> tuple[str, int]:
        """Advertised (host, port) of ``listener`` (the one a request came in on)."""
        if listener in self.endpoints:
            return self.endpoints[listener]
        return next(iter(self.endpoints.values()))

    # -- persistent metadata --------------------------------------------
    def load(self) -> None:
        """Open the store, then load the cluster id and the topics with their
        logs (blocking: recovery reads the logs and may fsync)."""
        self.store = self.open_store()
        self.load_meta()
        self.load_topics()

    def load_meta(self) -> None:
        raw = self.store.read_metadata(META_FILE)
        props = {}
        if raw:
            for line in raw.decode().splitlines():
                if "=" in line and not line.startswith("#"):
                    k, v = line.split("=", 1)
                    props[k.strip()] = v.strip()
        if props.get("cluster.id"):
            self.cluster_id = props["cluster.id"]
        if not self.cluster_id:
            self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if props.get("cluster.id") != self.cluster_id:
            text = f"version=1\ncluster.id={self.cluster_id}\nnode.id={self.config.node_id}\n"
            self.store.write_metadata(META_FILE, text.encode())

    def load_topics(self) -> None:
        raw = self.store.read_metadata(TOPICS_FILE)
        registry = json.loads(raw) if raw else {}
        for name, entry in registry.items():
            self._open_topic(name, bytes.fromhex(entry["id"]), entry["partitions"],
                             entry.get("configs", {}), entry.get("leader_epoch", 0))
        # Logs on disk for topics not in the registry are leftovers of a deletion.
        for name, index in self.store.existing_logs():
            t = self.topics.get(name)
            if t is None or index >= len(t.partitions):
                self.store.delete_log(name, index)

    def registry_bytes(self) -> bytes:
        return json.dumps({
            t.name: {"id": t.topic_id.hex(), "partitions": len(t.partitions),
                     "configs": t.config.overrides,
                     "leader_epoch": t.partitions[0].leader_epoch if t.partitions else 0}
            for t in self.topics.values()
        }, indent=1, sort_keys=True).encode()

    async def save_topics(self) -> None:
        """Persist the registry as it is now (call after changing it in memory);
        return once a write that includes the change is durable.

        One writer, in order: a single task writes ``topics.json``, taking the
        registry's snapshot (on the loop) just before each write, and every
        change made before that snapshot is acknowledged by that write; changes
        made while a write is under way go into the next one. So writes never
        overlap, each holds the newest state, and the last write holds them all.
        The write itself (fsync) runs in a worker thread."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._registry_waiters.append(done)
        if self._registry_writer is None or self._registry_writer.done():
            self._registry_writer = loop.create_task(self._write_registry())
        # Shielded: a request cancelled (the broker stopping) leaves the write
        # of a change already made in memory to go on; stop() waits for it.
        await asyncio.shield(done)

    async def _write_registry(self) -> None:
        loop = asyncio.get_running_loop()
        while self._registry_waiters:
            waiters, self._registry_waiters = self._registry_waiters, []
            data = self.registry_bytes()
            try:
                await loop.run_in_executor(None, self.store.write_metadata, TOPICS_FILE, data)
            except Exception as e:  # each waiter's request reports it
                for w in waiters:
                    if not w.done():
                        w.set_exception(e)
            else:
                for w in waiters:
                    if not w.done():
                        w.set_result(None)

    def _open_topic(self, name: str, topic_id: bytes, num_partitions: int,
                    overrides: dict, leader_epoch: int = 0) -> Topic:
        """Open the topic's logs and register it (blocking)."""
        return self._register(self._open_logs(name, topic_id, num_partitions, overrides,
                                               leader_epoch))

    def _register(self, topic: Topic) -> Topic:
        self.topics[topic.name] = topic
        self.topics_by_id[topic.topic_id] = topic
        return topic

    def _open_logs(self, name: str, topic_id: bytes, num_partitions: int,
                   overrides: dict, leader_epoch: int = 0) -> Topic:
        """A Topic with its logs opened (and recovered, if they exist), not yet
        registered. Blocking: recovery reads the logs and may fsync."""
        topic = Topic(name, topic_id, TopicConfig(self.config, overrides),
                      internal=name in INTERNAL_TOPICS)
        lc = topic.config.log_config()
        try:
            for i in range(num_partitions):
                topic.partitions.append(Partition(topic, i, self.store.open_log(name, i, lc), leader_epoch))
        except OSError:
            # Leave nothing half-created behind; delete_log closes without
            # flushing, which needs no new file descriptors.
            for i in range(len(topic.partitions) + 1):
                self.store.delete_log(name, i)
            raise
        for p in topic.partitions:
            p.producers.rebuild(p.log)
        return topic

    # -- topic administration -------------------------------------------
    def check_new_topic(self, name: str, num_partitions: int, replication_factor: int,
                        configs: dict[str, str | None]) -> tuple[int, dict[str, str]]:
        """Validate a CreateTopics entry; return (partitions, overrides). Raises TopicError."""
        validate_topic_name(name)
        if name in self.topics:
            raise TopicError(errors.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        if num_partitions == -1:
            num_partitions = self.config.get_int("num.partitions", 1)
        if num_partitions <= 0:
            raise TopicError(errors.INVALID_PARTITIONS, "Number of partitions must be larger than 0.")
        if num_partitions > 100_000:
            raise TopicError(errors.INVALID_PARTITIONS, "Too many partitions.")
        if replication_factor == -1:
            replication_factor = self.config.get_int("default.replication.factor", 1)
        if replication_factor != 1:
            raise TopicError(errors.INVALID_REPLICATION_FACTOR,
                             f"Replication factor: {replication_factor} larger than available brokers: 1.")
        overrides = {}
        for k, v in configs.items():
            try:
                v = validate_topic_config(k, v)
            except ConfigError as e:
                raise TopicError(e.error_code, str(e)) from None
            if v is not None:
                overrides[k] = v
        return num_partitions, overrides

    async def create_topic(self, name: str, num_partitions: int = -1, replication_factor: int = -1,
                           configs: dict[str, str | None] | None = None,
                           validate_only: bool = False) -> Topic | None:
        async with self._topic_lock:
            num_partitions, overrides = self.check_new_topic(
                name, num_partitions, replication_factor, configs or {})
            if validate_only:
                return None
            try:
                topic = await in_worker(self._open_logs, name, uuid.uuid4().bytes,
                                        num_partitions, overrides)
            except OSError as e:  # e.g. EMFILE: every partition holds its active segment's files open
                raise TopicError(errors.KAFKA_STORAGE_ERROR,
                                 f"Could not create the logs of {name}: {e} "
                                 f"(raise the open-file limit, ulimit -n)") from None
            self._register(topic)
            await self.save_topics()
            log.info("created topic %s with %d partitions", name, num_partitions)
            return topic

    async def delete_topic(self, name: str) -> None:
        async with self._topic_lock:
            topic = self.topics.pop(name, None)
            if topic is None:
                raise TopicError(errors.UNKNOWN_TOPIC_OR_PARTITION)
            self.topics_by_id.pop(topic.topic_id, None)
            await self.save_topics()
            for p in topic.partitions:
                p.notify()
                p.log.abandon()  # closed here, without a flush: its files are going
            store, indexes = self.store, [p.index for p in topic.partitions]

            def delete_logs():
                for i in indexes:
                    store.delete_log(name, i)

            # Still under the topic lock: a new topic of the same name waits for this.
            await in_worker(delete_logs)
            if self.groups is not None:
                self.groups.on_topic_deleted(name)
            log.info("deleted topic %s", name)

    async def add_partitions(self, name: str, count: int, validate_only: bool = False) -> None:
        async with self._topic_lock:
            topic = self.topics.get(name)
            if topic is None:
                raise TopicError(errors.UNKNOWN_TOPIC_OR_PARTITION)
            current = len(topic.partitions)
            if count <= current:
                raise TopicError(errors.INVALID_PARTITIONS,
                                 f"Topic currently has {current} partitions, which is higher than "
                                 f"or equal to the requested {count}.")
            if validate_only:
                return
            epoch = topic.partitions[0].leader_epoch if topic.partitions else 0
            store, lc = self.store, topic.config.log_config()

            def open_logs():  # blocking: in a worker thread
                added = []
                try:
                    for i in range(current, count):
                        added.append(Partition(topic, i, store.open_log(name, i, lc), epoch))
                except OSError:
                    for i in range(current, current + len(added) + 1):
                        store.delete_log(name, i)
                    raise
                return added

            try:
                added = await in_worker(open_logs)
            except OSError as e:
                raise TopicError(errors.KAFKA_STORAGE_ERROR,
                                 f"Could not create the logs of {name}: {e} "
                                 f"(raise the open-file limit, ulimit -n)") from None
            lc = topic.config.log_config()  # an AlterConfigs may have run meanwhile
            for p in added:
                p.log.config = lc
            topic.partitions.extend(added)
            await self.save_topics()

    async def alter_topic_config(self, name: str, overrides: dict[str, str]) -> None:
        """Replace the topic's overrides (already validated) and apply them to its
        logs. The change is made at once, in memory, without the topic lock (it
        touches no files but ``topics.json``, whose writes ``save_topics`` orders);
        return once it is written."""
        topic = self.topics[name]
        topic.config = TopicConfig(self.config, overrides)
        lc = topic.config.log_config()
        for p in topic.partitions:
            p.log.config = lc
        await self.save_topics()

    async def auto_create(self, name: str) -> Topic | None:
        """Create ``name`` with broker defaults if auto-creation is on; None otherwise."""
        if not self.config.get_bool("auto.create.topics.enable"):
            return None
        try:
            return await self.create_topic(name)
        except TopicError as e:
            if e.error_code == errors.TOPIC_ALREADY_EXISTS:
                return self.topics.get(name)
            raise

    def partition(self, topic: str, index: int) -> Partition | None:
        t = self.topics.get(topic)
        if t is None or not 0 <= index < len(t.partitions):
            return None
        return t.partitions[index]

    def all_partitions(self) -> Iterable[Partition]:
        for t in list(self.topics.values()):
            yield from t.partitions

    # -- background duties ----------------------------------------------
    async def flush_partition(self, p: Partition) -> None:
        await in_worker(p.log.flush)

    async def housekeeping(self) -> None:
        """Retention, time-based flushes and checkpoints, each on its own interval."""
        retention_every = self.config.get_int("log.retention.check.interval.ms", 300000) / 1000
        flush_every = min(self.config.get_int("log.flush.scheduler.interval.ms", 2**62), 2**31) / 1000
        checkpoint_every = self.config.get_int("log.flush.offset.checkpoint.interval.ms", 60000) / 1000
        tick = max(0.05, min(retention_every, flush_every, checkpoint_every, 1.0))
        last_retention = last_flush = last_checkpoint = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            mono = time.monotonic()
            try:
                if mono - last_retention >= retention_every:
                    last_retention = mono
                    self.apply_retention()
                if mono - last_flush >= flush_every:
                    last_flush = mono
                    await self.flush_due_by_time()
                if mono - last_checkpoint >= checkpoint_every and self.store is not None:
                    last_checkpoint = mono
                    checkpoint = getattr(self.store, "write_checkpoints", None)
                    if checkpoint is not None:
                        await in_worker(checkpoint)
                    from odradek.producers import take_snapshots, write_snapshots

                    snapshots = take_snapshots(self.all_partitions())  # on the loop
                    if snapshots:
                        await in_worker(write_snapshots, snapshots)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping failed")

    def apply_retention(self) -> int:
        deleted = 0
        now = now_ms()
        for p in self.all_partitions():
            if "delete" in p.log.config.cleanup_policy:
                deleted += p.log.apply_retention(now)
        return deleted

    async def flush_due_by_time(self) -> None:
        for p in list(self.all_partitions()):
            if getattr(p.log, "flush_due_by_time", None) and p.log.flush_due_by_time(now_ms()):
                await self.flush_partition(p)
