"""The broker: topics, partitions, the listener and background duties.

Invariants:
- Topics (ids, config overrides, and per partition its leader, leader epoch
  and replicas) live in the metadata store (``odradek.metadata``; key layout
  in ``odradek.metadata.topics``), which serialises writes itself. Each admin
  change is one store transaction, acknowledged once committed (fsynced), and
  applied to the broker's topics only after it commits. At startup the logs
  found on disk are opened only for topics the store names; the others are
  deleted. A ``topics.json`` of an older odradek is imported into an empty
  store once.
- Creating, deleting and adding partitions to topics are serialized by the
  topic lock; AlterConfigs writes only the topic's config key, without it.
- Every partition's log is opened once, at startup or creation, and owned by
  its ``Partition``; appends, reads, retention, DeleteRecords and truncation
  happen on the event loop and never fsync.
- fsync never runs on the event loop: startup (recovery, ``meta.properties``),
  opening a new topic's logs, removing a deleted topic's files (its logs are
  abandoned, not flushed), flushes, checkpoints, producer snapshots and
  shutdown go to the default executor, metadata writes to the store's thread, compaction to the cleaner's
  thread. Work awaited there by a task that is cancelled (the broker
  stopping) is waited for first (``in_worker``), so none outlives ``stop()``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import time
import uuid
from typing import Iterable

from odradek.config import BrokerConfig, ConfigError, TopicConfig, validate_topic_config
from odradek.metadata import topics as topic_records
from odradek.metadata.store import MetadataStore
from odradek.metadata.topics import PartitionState, TopicState
from odradek.protocol import errors
from odradek.storage.base import LogStore, PartitionLog

log = logging.getLogger("odradek.broker")

LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
TOPICS_FILE = "topics.json"  # where odradek kept topics before the metadata store
METADATA_DIR = "metadata"  # under the data dir; never a partition's directory name (no "-N")
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
    system's); tests pass a ``FakeFileSystem`` to crash it or watch its calls.
    ``metadata_path`` is the metadata store's file: by default under the data
    dir on the operating system's filesystem, else (memory mode, or another
    ``fs``) in memory."""

    def __init__(self, config: BrokerConfig, fs=None, metadata_path: str | None = None):
        self.config = config
        self.fs = fs
        self.metadata: MetadataStore | None = None
        if metadata_path is None and fs is None and config.data_dir is not None:
            metadata_path = os.path.join(config.data_dir, METADATA_DIR, "metadata.db")
        self.metadata_path = metadata_path
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
        await self.load()
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
        if self.metadata is not None:
            metadata, self.metadata = self.metadata, None
            await metadata.close()

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
    async def load(self) -> None:
        """Open the metadata store and the logs: the broker's state, without
        its listeners and background tasks (``start`` runs this first)."""
        from odradek.metadata.sqlite import SqliteStore

        loop = asyncio.get_running_loop()
        self.metadata = await SqliteStore.open(self.metadata_path)
        # Recovery reads the logs and may fsync: in a worker thread, while
        # nothing else touches the broker's state yet.
        imported = await loop.run_in_executor(None, self.load_logs_and_meta)
        if imported:
            await self.import_topics(imported)
        kvs, _ = await self.metadata.range("")
        await loop.run_in_executor(None, self.load_topics, topic_records.read_image(kvs))

    def load_logs_and_meta(self) -> list[TopicState]:
        """Open the log store and load the cluster id (blocking); return the
        topics of an older odradek's ``topics.json``, if there is one."""
        self.store = self.open_store()
        self.load_meta()
        raw = self.store.read_metadata(TOPICS_FILE)
        return [] if raw is None else topic_records.import_registry(raw, self.config.node_id)

    async def import_topics(self, topics: list[TopicState]) -> None:
        """Write the topics of an older ``topics.json`` into a store never written
        before (after that, ``topics.json`` is ignored)."""
        _, revision = await self.metadata.range(topic_records.TOPICS)
        if revision == 0:
            for t in topics:
                await self.metadata.txn(*topic_records.create_topic_txn(t))
            log.info("imported %d topics from %s into the metadata store", len(topics), TOPICS_FILE)

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

    def load_topics(self, image: dict[str, TopicState]) -> None:
        """Open the logs of the topics in ``image`` (blocking)."""
        for t in image.values():
            self._register(self._open_logs(t.name, t.topic_id, t.configs,
                                           [p.leader_epoch for p in t.partitions]))
        # Logs on disk for topics not in the store are leftovers of a deletion.
        for name, index in self.store.existing_logs():
            t = self.topics.get(name)
            if t is None or index >= len(t.partitions):
                self.store.delete_log(name, index)

    def new_partition_states(self, count: int) -> list[PartitionState]:
        """Partitions this broker leads alone, at leader epoch 0."""
        me = self.config.node_id
        return [PartitionState(me, 0, [me], [me]) for _ in range(count)]

    async def _discard_logs(self, topic: Topic, partitions: list[Partition] | None = None) -> None:
        """Close (without a flush: their files are going) and delete the logs of
        ``partitions`` (default: all the topic's), waking their fetches."""
        parts = topic.partitions if partitions is None else partitions
        for p in parts:
            p.notify()
            p.log.abandon()
        store, name, indexes = self.store, topic.name, [p.index for p in parts]

        def delete_logs():
            for i in indexes:
                store.delete_log(name, i)

        await in_worker(delete_logs)

    def _register(self, topic: Topic) -> Topic:
        self.topics[topic.name] = topic
        self.topics_by_id[topic.topic_id] = topic
        return topic

    def _open_logs(self, name: str, topic_id: bytes, overrides: dict,
                   leader_epochs: list[int]) -> Topic:
        """A Topic with its logs opened (and recovered, if they exist), not yet
        registered. Blocking: recovery reads the logs and may fsync."""
        topic = Topic(name, topic_id, TopicConfig(self.config, overrides),
                      internal=name in INTERNAL_TOPICS)
        lc = topic.config.log_config()
        try:
            for i, epoch in enumerate(leader_epochs):
                topic.partitions.append(Partition(topic, i, self.store.open_log(name, i, lc), epoch))
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
            state = TopicState(name, uuid.uuid4().bytes, overrides,
                               self.new_partition_states(num_partitions))
            try:
                topic = await in_worker(self._open_logs, name, state.topic_id, overrides,
                                        [p.leader_epoch for p in state.partitions])
            except OSError as e:  # e.g. EMFILE: every partition holds its active segment's files open
                raise TopicError(errors.KAFKA_STORAGE_ERROR,
                                 f"Could not create the logs of {name}: {e} "
                                 f"(raise the open-file limit, ulimit -n)") from None
            try:
                done = await asyncio.shield(self.metadata.txn(*topic_records.create_topic_txn(state)))
            except BaseException:
                await self._discard_logs(topic)
                raise
            if not done.succeeded:  # not under this broker's lock: another writer of the store
                await self._discard_logs(topic)
                raise TopicError(errors.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
            self._register(topic)
            log.info("created topic %s with %d partitions", name, num_partitions)
            return topic

    async def delete_topic(self, name: str) -> None:
        async with self._topic_lock:
            topic = self.topics.get(name)
            if topic is None:
                raise TopicError(errors.UNKNOWN_TOPIC_OR_PARTITION)
            # Shielded: once asked of the store, the deletion is carried through.
            await asyncio.shield(self.metadata.txn((), topic_records.delete_topic_ops(name)))
            del self.topics[name]
            self.topics_by_id.pop(topic.topic_id, None)
            # Still under the topic lock: a new topic of the same name waits for this.
            await self._discard_logs(topic)
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
            states = self.new_partition_states(count - current)
            store, lc = self.store, topic.config.log_config()

            def open_logs():  # blocking: in a worker thread
                added = []
                try:
                    for i, state in enumerate(states, current):
                        added.append(Partition(topic, i, store.open_log(name, i, lc), state.leader_epoch))
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
            try:
                done = await asyncio.shield(self.metadata.txn(
                    *topic_records.add_partitions_txn(name, current, states)))
            except BaseException:
                await self._discard_logs(topic, added)
                raise
            if not done.succeeded:
                await self._discard_logs(topic, added)
                raise TopicError(errors.INVALID_PARTITIONS, f"Topic {name} changed meanwhile.")
            lc = topic.config.log_config()  # an AlterConfigs may have run meanwhile
            for p in added:
                p.log.config = lc
            topic.partitions.extend(added)

    async def alter_topic_config(self, name: str, overrides: dict[str, str]) -> None:
        """Replace the topic's overrides (already validated) and apply them to its
        logs once the store has them. Without the topic lock: it writes only the
        topic's config key."""
        done = await asyncio.shield(self.metadata.txn(*topic_records.set_configs_txn(name, overrides)))
        topic = self.topics.get(name)
        if not done.succeeded or topic is None:
            raise TopicError(errors.UNKNOWN_TOPIC_OR_PARTITION)
        topic.config = TopicConfig(self.config, overrides)
        lc = topic.config.log_config()
        for p in topic.partitions:
            p.log.config = lc

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
