"""Topic administration: create, delete, add partitions, change configs.

Each change is validated here, written to the metadata store as one
transaction, and applied (to the topic image and to the partitions this
broker hosts) only once the store has committed it; the request is
acknowledged after that. Creating, deleting and adding partitions are
serialised by one lock, so a new topic of a deleted one's name waits until the
old files are gone; a config change writes only its own key and takes no lock.
New logs are opened before the change is written, so a failure to open them
(e.g. out of file descriptors) leaves nothing behind and is reported as
KAFKA_STORAGE_ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Callable

from odradek.config import BrokerConfig, ConfigError, TopicConfig, validate_topic_config
from odradek.metadata import topics as topic_records
from odradek.metadata.store import MetadataStore
from odradek.metadata.topics import PartitionState, TopicImage, TopicState
from odradek.protocol import errors
from odradek.replica.manager import ReplicaManager, in_worker
from odradek.replica.partition import Topic

log = logging.getLogger("odradek.topics")

LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
MAX_PARTITIONS = 100_000


class TopicError(Exception):
    def __init__(self, error_code: int, message: str = ""):
        super().__init__(message or str(error_code))
        self.error_code = error_code
        self.message = message


def validate_topic_name(name: str) -> None:
    if not name or name in (".", "..") or not LEGAL_TOPIC.match(name):
        raise TopicError(errors.INVALID_TOPIC_EXCEPTION, f"Topic name '{name}' is illegal")


def _storage_error(name: str, e: OSError) -> TopicError:
    return TopicError(errors.KAFKA_STORAGE_ERROR, f"Could not create the logs of {name}: {e} "
                                                  f"(raise the open-file limit, ulimit -n)")


class TopicAdmin:
    def __init__(self, config: BrokerConfig, store: MetadataStore, image: TopicImage,
                 replicas: ReplicaManager, on_deleted: Callable[[str], None]):
        self.config = config
        self.store = store
        self.image = image
        self.replicas = replicas
        self.on_deleted = on_deleted
        self._lock = asyncio.Lock()

    def new_partition_states(self, count: int) -> list[PartitionState]:
        """Partitions this broker leads alone, at leader epoch 0."""
        me = self.config.node_id
        return [PartitionState(me, 0, [me], [me]) for _ in range(count)]

    def check_new_topic(self, name: str, num_partitions: int, replication_factor: int,
                        configs: dict[str, str | None]) -> tuple[int, dict[str, str]]:
        """Validate a CreateTopics entry; return (partitions, overrides). Raises TopicError."""
        validate_topic_name(name)
        if name in self.image:
            raise TopicError(errors.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        if num_partitions == -1:
            num_partitions = self.config.get_int("num.partitions", 1)
        if num_partitions <= 0:
            raise TopicError(errors.INVALID_PARTITIONS, "Number of partitions must be larger than 0.")
        if num_partitions > MAX_PARTITIONS:
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
        async with self._lock:
            num_partitions, overrides = self.check_new_topic(
                name, num_partitions, replication_factor, configs or {})
            if validate_only:
                return None
            state = TopicState(name, uuid.uuid4().bytes, overrides,
                               self.new_partition_states(num_partitions))
            try:
                topic = await in_worker(self.replicas.open_topic, state)
            except OSError as e:  # e.g. EMFILE: every partition holds its active segment's files open
                raise _storage_error(name, e) from None
            try:
                done = await asyncio.shield(self.store.txn(*topic_records.create_topic_txn(state)))
            except BaseException:
                await self.replicas.discard(topic)
                raise
            if not done.succeeded:  # another writer of the store got there first
                await self.replicas.discard(topic)
                raise TopicError(errors.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
            self.image.apply_create(state)
            self.replicas.add(topic)
            log.info("created topic %s with %d partitions", name, num_partitions)
            return topic

    async def delete_topic(self, name: str) -> None:
        async with self._lock:
            if name not in self.image:
                raise TopicError(errors.UNKNOWN_TOPIC_OR_PARTITION)
            # Shielded: once asked of the store, the deletion is carried through.
            await asyncio.shield(self.store.txn((), topic_records.delete_topic_ops(name)))
            self.image.apply_delete(name)
            topic = self.replicas.remove(name)
            if topic is not None:
                # Still under the lock: a new topic of the same name waits for this.
                await self.replicas.discard(topic)
            self.on_deleted(name)
            log.info("deleted topic %s", name)

    async def add_partitions(self, name: str, count: int, validate_only: bool = False) -> None:
        async with self._lock:
            state = self.image.get(name)
            topic = self.replicas.topic(name)
            if state is None or topic is None:
                raise TopicError(errors.UNKNOWN_TOPIC_OR_PARTITION)
            current = len(state.partitions)
            if count <= current:
                raise TopicError(errors.INVALID_PARTITIONS,
                                 f"Topic currently has {current} partitions, which is higher than "
                                 f"or equal to the requested {count}.")
            if count > MAX_PARTITIONS:
                raise TopicError(errors.INVALID_PARTITIONS, "Too many partitions.")
            if validate_only:
                return
            states = self.new_partition_states(count - current)
            try:
                added = await in_worker(self.replicas.open_partitions, topic, current, states)
            except OSError as e:
                raise _storage_error(name, e) from None
            try:
                done = await asyncio.shield(self.store.txn(
                    *topic_records.add_partitions_txn(name, current, states)))
            except BaseException:
                await self.replicas.discard(topic, added)
                raise
            if not done.succeeded:
                await self.replicas.discard(topic, added)
                raise TopicError(errors.INVALID_PARTITIONS, f"Topic {name} changed meanwhile.")
            self.image.apply_add_partitions(name, states)
            lc = topic.config.log_config()  # an AlterConfigs may have run meanwhile
            for p in added:
                p.log.config = lc
            topic.partitions.extend(added)

    async def alter_topic_config(self, name: str, overrides: dict[str, str]) -> None:
        """Replace the topic's overrides (already validated) and apply them to its
        logs once the store has them."""
        done = await asyncio.shield(self.store.txn(*topic_records.set_configs_txn(name, overrides)))
        if not done.succeeded or name not in self.image:
            raise TopicError(errors.UNKNOWN_TOPIC_OR_PARTITION)
        self.image.apply_configs(name, overrides)
        topic = self.replicas.topic(name)
        if topic is not None:
            topic.set_config(TopicConfig(self.config, overrides))

    async def auto_create(self, name: str) -> Topic | None:
        """Create ``name`` with broker defaults if auto-creation is on; None otherwise."""
        if not self.config.get_bool("auto.create.topics.enable"):
            return None
        try:
            return await self.create_topic(name)
        except TopicError as e:
            if e.error_code == errors.TOPIC_ALREADY_EXISTS:
                return self.replicas.topic(name)
            raise

    def topic_config(self, name: str) -> TopicConfig | None:
        """The effective config of topic ``name`` (its overrides over the broker's defaults)."""
        state = self.image.get(name)
        return None if state is None else TopicConfig(self.config, state.configs)
