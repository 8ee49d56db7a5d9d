"""The replica manager: every partition this broker hosts, and the one lookup
every API makes.

``partition_or_error(topic, index)`` is where a request's (topic name or id,
partition) becomes a Partition or a Kafka error code; API handlers and
coordinators call it and nothing below it. The manager also opens the logs of
partitions given to this broker (at startup, creation, new partitions),
closes and deletes them, and runs the flushes partitions ask for, off the
event loop.

Invariants: a partition is reachable through the lookup only once its log is
open and the metadata store holds it; its log is closed only after it is no
longer reachable. Blocking work (opening, recovering, deleting, flushing
logs) runs in worker threads through ``in_worker``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Iterable

from odradek.config import BrokerConfig, TopicConfig
from odradek.metadata.topics import TopicState
from odradek.protocol import errors
from odradek.replica.partition import Partition, Topic
from odradek.storage.base import LogStore

log = logging.getLogger("odradek.replicas")


async def in_worker(fn, *args):
    """Run blocking ``fn(*args)`` in the default executor and return its result.
    If the caller is cancelled (the broker stopping), ``fn`` is waited for before
    the cancellation goes on: a lock held around the call still covers it, and
    no such work outlives the broker's ``stop()``."""
    fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        await asyncio.wait([fut])
        raise


class ReplicaManager:
    def __init__(self, config: BrokerConfig):
        self.config = config
        self.node_id = config.node_id
        self.store: LogStore | None = None
        self.topics: dict[str, Topic] = {}
        self.topics_by_id: dict[bytes, Topic] = {}
        self._flushes: set[asyncio.Task] = set()

    # -- lookups -------------------------------------------------------------------
    def topic(self, name_or_id: str | bytes | None) -> Topic | None:
        if isinstance(name_or_id, (bytes, bytearray)):
            return self.topics_by_id.get(bytes(name_or_id))
        return self.topics.get(name_or_id)

    def partition_or_error(self, topic: str | bytes | None, index: int, *,
                           leader_required: bool = True,
                           current_leader_epoch: int = -1) -> tuple[Partition | None, int]:
        """(partition, 0), or (None, the error code a request gets): an unknown
        topic id is UNKNOWN_TOPIC_ID, an unknown name or partition
        UNKNOWN_TOPIC_OR_PARTITION, a partition this broker does not lead (with
        ``leader_required``) NOT_LEADER_OR_FOLLOWER, and a request's leader
        epoch other than the partition's FENCED_LEADER_EPOCH (older) or
        UNKNOWN_LEADER_EPOCH (newer)."""
        t = self.topic(topic)
        if t is None:
            by_id = isinstance(topic, (bytes, bytearray))
            return None, errors.UNKNOWN_TOPIC_ID if by_id else errors.UNKNOWN_TOPIC_OR_PARTITION
        if not 0 <= index < len(t.partitions):
            return None, errors.UNKNOWN_TOPIC_OR_PARTITION
        p = t.partitions[index]
        if leader_required and p.leader != self.node_id:
            return None, errors.NOT_LEADER_OR_FOLLOWER
        code = p.check_leader_epoch(current_leader_epoch)
        return (None, code) if code else (p, 0)

    def all_partitions(self) -> Iterable[Partition]:
        for t in list(self.topics.values()):
            yield from t.partitions

    # -- hosting: logs opened and closed ----------------------------------------------
    def open_topic(self, state: TopicState) -> Topic:
        """A Topic with the logs of ``state``'s partitions opened (and recovered,
        if they exist), not yet reachable. Blocking: recovery reads the logs and
        may fsync. On failure nothing is left half-created."""
        topic = Topic(state.name, state.topic_id, TopicConfig(self.config, state.configs))
        topic.partitions = self.open_partitions(topic, 0, state.partitions)
        return topic

    def open_partitions(self, topic: Topic, first: int, states) -> list[Partition]:
        """Open the logs of partitions ``first``.. of ``topic`` (blocking)."""
        lc = topic.config.log_config()
        opened: list[Partition] = []
        try:
            for i, s in enumerate(states, first):
                opened.append(Partition(topic, i, self.store.open_log(topic.name, i, lc), s.leader,
                                        s.leader_epoch, self.schedule_flush))
        except OSError:
            # delete_log closes without flushing, which needs no new file descriptors.
            for i in range(first, first + len(opened) + 1):
                self.store.delete_log(topic.name, i)
            raise
        for p in opened:
            p.producers.rebuild(p.log)
        return opened

    def add(self, topic: Topic) -> None:
        """Make ``topic``'s partitions reachable."""
        self.topics[topic.name] = topic
        self.topics_by_id[topic.topic_id] = topic

    def remove(self, name: str) -> Topic | None:
        """Make the topic unreachable (its logs stay open: see ``discard``)."""
        topic = self.topics.pop(name, None)
        if topic is not None:
            self.topics_by_id.pop(topic.topic_id, None)
        return topic

    async def discard(self, topic: Topic, partitions: list[Partition] | None = None) -> None:
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

    def load(self, image: dict[str, TopicState]) -> None:
        """Host the topics of ``image`` (blocking); delete the logs on disk of
        topics and partitions it does not name: leftovers of a deletion."""
        for state in image.values():
            self.add(self.open_topic(state))
        for name, index in self.store.existing_logs():
            t = self.topics.get(name)
            if t is None or index >= len(t.partitions):
                self.store.delete_log(name, index)

    # -- flushes ----------------------------------------------------------------------
    def schedule_flush(self, p: Partition) -> None:
        """Flush ``p`` soon, in a worker thread (a partition asks after an append)."""
        task = asyncio.get_running_loop().create_task(self.flush(p))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def flush(self, p: Partition) -> None:
        await in_worker(p.log.flush)

    async def wait_for_flushes(self) -> None:
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
