"""Topic administration: create, delete, add partitions, change configs.

Each change is validated here and written to the metadata store as one
transaction; the request is acknowledged once this broker's image holds the
change and its hosted partitions follow it (``odradek.replica.manager``
opens and deletes logs as the image says), so a client that asks again sees
what it did. Any broker may make a change: the store serialises them, and
every broker applies them from its watch. Creating, deleting and adding
partitions are serialised on a broker by one lock, so a new topic of a
deleted one's name waits until the old files are gone; a config change
writes only its own key and takes no lock. New partitions are placed on the
live brokers not shutting down as Kafka places them
(``odradek.cluster.placement``: leaders round-robin from a random broker,
followers spread, racks alternated), or where a manual assignment says;
``replicas[0]`` is the preferred and initial leader and the ISR is every
replica. If this broker cannot open the logs
it is given for a new topic (e.g. out of file descriptors), the topic is
deleted again and the request answered KAFKA_STORAGE_ERROR.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from typing import Callable

from odradek.cluster.placement import assign_replicas, check_assignment
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


def _admit(quota, partitions: int) -> None:
    """Charge ``partitions`` to a request's controller mutation quota (KIP-599);
    raises THROTTLING_QUOTA_EXCEEDED when it refuses them."""
    if quota is not None:
        refused = quota.admit(partitions)
        if refused:
            raise TopicError(errors.THROTTLING_QUOTA_EXCEEDED, refused)


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

    def placement_brokers(self) -> list[tuple[int, str | None]]:
        """(node id, rack) of the brokers new replicas may go to: the live ones
        not shutting down (all live ones if every one is; this broker alone
        before any has registered)."""
        live = list(self.image.brokers.values())
        ready = [b for b in live if not b.shutting_down] or live
        if not ready:
            return [(self.config.node_id, self.config.get("broker.rack") or None)]
        return [(b.node_id, b.rack) for b in ready]

    def place(self, count: int, rf: int = 1, first_partition: int = 0,
              start: int | None = None) -> list[PartitionState]:
        """States of ``count`` new partitions of ``rf`` replicas each, placed
        as Kafka places them; each led by its first replica, with every
        replica in the ISR."""
        brokers = self.placement_brokers()
        return [PartitionState(r[0], 0, r, list(r))
                for r in assign_replicas(brokers, count, rf, first_partition=first_partition, start=start)]

    def live_ids(self) -> set[int]:
        return set(self.image.brokers) or {self.config.node_id}

    def offsets_replication_factor(self) -> int:
        """``offsets.topic.replication.factor`` (3) capped by the live brokers,
        as Kafka creates ``__consumer_offsets``."""
        wanted = self.config.get_int("offsets.topic.replication.factor", 3)
        return max(1, min(wanted, len(self.placement_brokers())))

    @staticmethod
    def check_replication_factor(rf: int, live: int) -> None:
        if rf <= 0:
            raise TopicError(errors.INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0.")
        if rf > live:
            raise TopicError(errors.INVALID_REPLICATION_FACTOR,
                             f"Replication factor: {rf} larger than available brokers: {live}.")

    def check_assignment(self, assignment: list[list[int]], rf: int | None = None) -> None:
        why = check_assignment(assignment, self.live_ids(), rf)
        if why is not None:
            raise TopicError(errors.INVALID_REPLICA_ASSIGNMENT, why)

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
                        configs: dict[str, str | None],
                        assignment: list[list[int]] | None = None) -> tuple[int, int, dict[str, str]]:
        """Validate a CreateTopics entry; return (partitions, replication
        factor, overrides). Raises TopicError."""
        validate_topic_name(name)
        if name in self.image:
            raise TopicError(errors.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        if assignment:
            self.check_assignment(assignment)
            num_partitions, replication_factor = len(assignment), len(assignment[0])
        if num_partitions == -1:
            num_partitions = self.config.get_int("num.partitions", 1)
        if num_partitions <= 0:
            raise TopicError(errors.INVALID_PARTITIONS, "Number of partitions must be larger than 0.")
        if num_partitions > MAX_PARTITIONS:
            raise TopicError(errors.INVALID_PARTITIONS, "Too many partitions.")
        if replication_factor == -1:
            replication_factor = self.config.get_int("default.replication.factor", 1)
        self.check_replication_factor(replication_factor, len(self.placement_brokers()))
        overrides = {}
        for k, v in configs.items():
            try:
                v = validate_topic_config(k, v)
            except ConfigError as e:
                raise TopicError(e.error_code, str(e)) from None
            if v is not None:
                overrides[k] = v
        return num_partitions, replication_factor, overrides

    async def create_topic(self, name: str, num_partitions: int = -1, replication_factor: int = -1,
                           configs: dict[str, str | None] | None = None,
                           validate_only: bool = False,
                           assignment: list[list[int]] | None = None, quota=None) -> TopicState | None:
        """Create the topic, placed by ``assignment`` (a replica list per
        partition) if given; return it as the image has it (None with
        ``validate_only``). ``quota`` (a controller mutation quota) admits
        its partitions once the topic is found valid."""
        async with self._lock:
            num_partitions, rf, overrides = self.check_new_topic(
                name, num_partitions, replication_factor, configs or {}, assignment)
            if validate_only:
                return None
            _admit(quota, len(assignment) if assignment else num_partitions)
            if assignment:
                parts = [PartitionState(r[0], 0, list(r), list(r)) for r in assignment]
            else:
                parts = self.place(num_partitions, rf)
            state = TopicState(name, uuid.uuid4().bytes, overrides, parts)
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

    async def delete_topic(self, name: str, quota=None) -> None:
        async with self._lock:
            if name not in self.image:
                raise TopicError(errors.UNKNOWN_TOPIC_OR_PARTITION)
            _admit(quota, len(self.image.get(name).partitions))
            # Under the lock until this broker's files are gone: a new topic of
            # the same name waits for that.
            await self._commit((), topic_records.delete_topic_ops(name))
            self.on_deleted(name)
            log.info("deleted topic %s", name)

    async def add_partitions(self, name: str, count: int, validate_only: bool = False,
                             assignment: list[list[int]] | None = None, quota=None) -> None:
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
            rf = len(state.partitions[0].replicas) if state.partitions else 1
            if assignment:
                if len(assignment) != count - current:
                    raise TopicError(errors.INVALID_REPLICA_ASSIGNMENT,
                                     f"Increasing the number of partitions by {count - current} but "
                                     f"{len(assignment)} assignments provided.")
                self.check_assignment(assignment, rf)
                added = [PartitionState(r[0], 0, list(r), list(r)) for r in assignment]
            else:
                brokers = self.placement_brokers()
                if rf > len(brokers):
                    raise TopicError(errors.INVALID_REPLICATION_FACTOR,
                                     f"Replication factor: {rf} larger than available brokers: {len(brokers)}.")
                # Kafka goes on from the broker of partition 0's preferred leader.
                ids = sorted(b for b, _ in brokers)
                first = state.partitions[0].replicas[0] if state.partitions and state.partitions[0].replicas else 0
                start = next((i for i, b in enumerate(ids) if b >= first), 0)
                added = self.place(count - current, rf, first_partition=current, start=start)
            if validate_only:
                return
            _admit(quota, count - current)
            done = await self._commit(*topic_records.add_partitions_txn(name, current, added))
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

    async def replace_keys(self, changes: dict[str, bytes | None]) -> None:
        """Write each key's new value (None deletes it) in one commit; return
        once this broker's image has them."""
        from odradek.metadata.store import Delete, Put

        await self._commit([], [Put(k, v) if v is not None else Delete(k) for k, v in changes.items()])

    async def _replace_configs(self, key: str, configs: dict[str, str]) -> None:
        """Replace the JSON object of configs at ``key`` (already validated; none deletes the key)."""
        await self.replace_keys({key: json.dumps(configs, sort_keys=True).encode() if configs else None})

    async def alter_group_config(self, group_id: str, overrides: dict[str, str]) -> None:
        """Replace a group's config overrides."""
        from odradek.metadata.group_configs import key_of

        await self._replace_configs(key_of(group_id), overrides)

    async def alter_client_metrics(self, name: str, configs: dict[str, str]) -> None:
        """Replace a client metrics subscription's configs (none deletes it)."""
        from odradek.metadata.client_metrics import key_of

        await self._replace_configs(key_of(name), configs)

    async def alter_broker_config(self, resource_name: str, configs: dict[str, str]) -> None:
        """Replace the dynamic configs of a broker (``resource_name`` its id)
        or of the cluster default (""); returns once this broker's logs follow them too."""
        from odradek.metadata.broker_configs import key_of

        await self._replace_configs(key_of(resource_name), configs)

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
