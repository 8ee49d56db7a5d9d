"""Topic administration: create, delete, add partitions, change configs.

Each change is validated here and written to the metadata store as one
transaction; the request is acknowledged once this broker's image holds the
change and its hosted partitions follow it (``odradek.replica.manager``
opens and deletes logs as the image says), so a client that asks again sees
what it did. Any broker may make a change: the store serialises them, and
every broker applies them from its watch. Creating, deleting and adding
partitions are serialised on a broker by one lock, so a new topic of a
deleted one's name waits until the old files are gone; a config change
writes only its own key and takes no lock. New partitions go to the live
brokers round-robin from a random one, as Kafka places them, one replica
each (replication is not served yet). If this broker cannot open the logs
it is given for a new topic (e.g. out of file descriptors), the topic is
deleted again and the request answered KAFKA_STORAGE_ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import uuid
from typing import Callable

from odradek.config import BrokerConfig, ConfigError, TopicConfig, validate_topic_config
from odradek.metadata import topics as topic_records
from odradek.metadata.image import MetadataImage
from odradek.metadata.store import MetadataStore, TxnResult
from odradek.metadata.topics import PartitionState, TopicState
from odradek.protocol import errors
from odradek.replica.manager import ReplicaManager

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
    def __init__(self, config: BrokerConfig, store: MetadataStore, image: MetadataImage,
                 replicas: ReplicaManager, on_deleted: Callable[[str], None]):
        self.config = config
        self.store = store
        self.image = image
        self.replicas = replicas
        self.on_deleted = on_deleted
        self._lock = asyncio.Lock()

    def place(self, count: int) -> list[PartitionState]:
        """Leaders for ``count`` new partitions: the live brokers round-robin
        from a random one (this broker alone before any has registered)."""
        brokers = self.image.live_brokers() or [self.config.node_id]
        start = random.randrange(len(brokers))
        chosen = [brokers[(start + i) % len(brokers)] for i in range(count)]
        return [PartitionState(b, 0, [b], [b]) for b in chosen]

    async def _commit(self, compares, ops) -> TxnResult:
        """Write one change; once committed, wait until this broker's image and
        hosted partitions follow it."""
        # Shielded: once asked of the store, the change is carried through.
        done = await asyncio.shield(self.store.txn(compares, ops))
        if done.succeeded:
            await self.image.wait_for(done.revision)
            await self.replicas.wait_reconciled(done.revision)
        return done

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
        live = max(len(self.image.live_brokers()), 1)
        if replication_factor > live:
            raise TopicError(errors.INVALID_REPLICATION_FACTOR,
                             f"Replication factor: {replication_factor} larger than available brokers: {live}.")
        if replication_factor != 1:
            raise TopicError(errors.INVALID_REPLICATION_FACTOR,
                             f"Replication factor {replication_factor}: odradek does not replicate partitions "
                             f"yet; use 1.")
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
                           validate_only: bool = False) -> TopicState | None:
        """Create the topic; return it as the image has it (None with ``validate_only``)."""
        async with self._lock:
            num_partitions, overrides = self.check_new_topic(
                name, num_partitions, replication_factor, configs or {})
            if validate_only:
                return None
            state = TopicState(name, uuid.uuid4().bytes, overrides, self.place(num_partitions))
            done = await self._commit(*topic_records.create_topic_txn(state))
            if not done.succeeded:  # another broker got there first
                raise TopicError(errors.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
            failed = [self.replicas.failed[(state.topic_id, i)][1] for i in self.replicas.mine(state)
                      if (state.topic_id, i) in self.replicas.failed]
            if failed:
                await self._commit((), topic_records.delete_topic_ops(name))
                raise _storage_error(name, failed[0])
            log.info("created topic %s with %d partitions", name, num_partitions)
            return self.image.get(name)

    async def delete_topic(self, name: str) -> None:
        async with self._lock:
            if name not in self.image:
                raise TopicError(errors.UNKNOWN_TOPIC_OR_PARTITION)
            # Under the lock until this broker's files are gone: a new topic of
            # the same name waits for that.
            await self._commit((), topic_records.delete_topic_ops(name))
            self.on_deleted(name)
            log.info("deleted topic %s", name)

    async def add_partitions(self, name: str, count: int, validate_only: bool = False) -> None:
        async with self._lock:
            state = self.image.get(name)
            if state is None:
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
            done = await self._commit(*topic_records.add_partitions_txn(
                name, current, self.place(count - current)))
            if not done.succeeded:
                raise TopicError(errors.INVALID_PARTITIONS, f"Topic {name} changed meanwhile.")
            failed = [self.replicas.failed[(state.topic_id, i)][1] for i in self.replicas.mine(state)
                      if i >= current and (state.topic_id, i) in self.replicas.failed]
            if failed:  # the partitions exist, but not here: they are offline
                raise _storage_error(name, failed[0])

    async def alter_topic_config(self, name: str, overrides: dict[str, str]) -> None:
        """Replace the topic's overrides (already validated); return once this
        broker's logs use them."""
        done = await self._commit(*topic_records.set_configs_txn(name, overrides))
        if not done.succeeded:
            raise TopicError(errors.UNKNOWN_TOPIC_OR_PARTITION)

    async def auto_create(self, name: str) -> TopicState | None:
        """Create ``name`` with broker defaults if auto-creation is on; None otherwise."""
        if not self.config.get_bool("auto.create.topics.enable"):
            return None
        try:
            return await self.create_topic(name)
        except TopicError as e:
            if e.error_code == errors.TOPIC_ALREADY_EXISTS:
                return self.image.get(name)
            raise

    def topic_config(self, name: str) -> TopicConfig | None:
        """The effective config of topic ``name`` (its overrides over the broker's defaults)."""
        state = self.image.get(name)
        return None if state is None else TopicConfig(self.config, state.configs)
