"""Hosting a coordinator's shards: one per partition of its internal topic led here.

Theory of operation
-------------------
The group coordinator (``__consumer_offsets``) and the transaction
coordinator (``__transaction_state``) each *compose* a :class:`ShardHosting`,
given the topic's name and creation parameters and callbacks that build a
shard, load it, say it is loaded, unload it and run its timer. The hosting
owns what is the same for both:

- the topic, created on first use (:meth:`ShardHosting.ensure_topic`) as its
  own task, shielded from the request that asked for it; a replication
  factor refused as too large may fall back to the next one offered;
- which shards are hosted (``hosted``: partition index -> :class:`HostedShard`),
  following the replica manager's hosting changes and every routed request
  (:meth:`ShardHosting.hosted_for`: NOT_COORDINATOR for a partition not led
  here, COORDINATOR_LOAD_IN_PROGRESS while its shard loads);
- a shard's life: created *loading* (its ``load`` callback replays the
  partition, read from its log start with :func:`read_log`), then *active*,
  then unloaded when the partition is no longer led here;
- appending a shard's records to its partition (``append_as_leader``) as the
  :class:`~odradek.coordinator.runtime.ShardRunner`'s ``write``, and the
  future of their replication (:meth:`HostedShard.replicated`);
- each shard's timer, armed at the shard's ``next_deadline``.

What a coordinator does with records while loading (the group coordinator
holds transactional offsets until their marker, the transaction coordinator
skips control batches), what a shard's unloading answers, and the operations
themselves stay in each coordinator.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from odradek.clock import now_ms
from odradek.coordinator.runtime import ShardRunner
from odradek.protocol import errors
from odradek.protocol.batch import iter_batches
from odradek.protocol.records import build_batch, decode_batch

LOAD_READ_BYTES = 4 * 1024 * 1024


class HostedShard:
    """A shard hosted here: its partition, runner, state and timer."""

    __slots__ = ("index", "partition", "shard", "runner", "loading", "load_task", "timer", "timer_at",
                 "last_written")

    def __init__(self, index: int, partition, shard):
        self.index = index
        self.partition = partition  # the Partition it was loaded from
        self.shard = shard
        self.runner: ShardRunner | None = None
        self.loading = True
        self.load_task: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: int | None = None
        self.last_written = -1  # offset of the last record this shard appended

    def replicated(self) -> asyncio.Future | None:
        """The partition's future for everything this shard appended being
        committed (its result 0, or an error if leadership is lost first), or
        None if it never appended."""
        return self.partition.replicated(self.last_written) if self.last_written >= 0 else None


async def read_log(p, read_bytes: int = LOAD_READ_BYTES):
    """Yield ``(batch header, records, now)`` for every batch of partition
    ``p`` from its log start to its end when the read began, with only the
    records at or after the offset reached (a read may start inside a batch)."""
    offset, end = p.log_start_offset, p.log_end_offset  # what was written before loading began
    while offset < end:
        chunk = p.read_for_replica(offset, read_bytes, upto=end)
        if not chunk.size:
            break
        buf = b"".join(chunk.chunks)
        progressed = False
        now = now_ms()
        for pos, h in iter_batches(buf):
            if h.next_offset <= offset:
                continue
            yield h, [r for r in decode_batch(buf, pos)[1] if r.offset >= offset], now
            offset = h.next_offset
            progressed = True
        if not progressed:
            break
        await asyncio.sleep(0)


class ShardHosting:
    """The shards of ``topic`` this broker hosts, for one coordinator.

    ``build(index)`` makes a shard; ``load(hosted)`` replays its partition
    into it and returns how many records it applied; ``loaded(hosted, count,
    seconds)`` runs once it is active; ``unloaded(hosted, answer)`` when it
    is dropped; ``tick(hosted)`` when its timer fires. ``factors()`` are the
    replication factors to create the topic with, tried in turn while one is
    refused as invalid; ``noun`` names what a shard holds in logs."""

    def __init__(self, broker, topic: str, config, topic_configs: dict, *, factors: Callable[[], tuple],
                 build: Callable, load: Callable, loaded: Callable, unloaded: Callable, tick: Callable,
                 noun: str, size: Callable, log: logging.Logger, min_delay: float = 0.0):
        self.broker = broker
        self.topic = topic
        self.config = config  # its num_partitions follows the topic's
        self.topic_configs = topic_configs
        self.factors = factors
        self.build, self.load, self.loaded, self.unloaded, self.tick = build, load, loaded, unloaded, tick
        self.noun = noun
        self.size = size  # size(shard): how many of ``noun`` it holds
        self.log = log
        self.min_delay = min_delay  # seconds, the least a timer waits
        self.hosted: dict[int, HostedShard] = {}
        self.create_task: asyncio.Task | None = None
        self.stopped = False

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        """Follow the replica manager's hosting changes and load the shards
        of the partitions led here (and any still loading)."""
        started = time.monotonic()
        self.broker.replicas.listeners.append(self._on_hosting_changed)
        self.sync_shards()
        loads = [h.load_task for h in self.hosted.values() if h.loading]
        if loads:
            await asyncio.gather(*loads, return_exceptions=True)
            self.log.info("loaded %d %s from %d partitions of %s in %.3fs",
                          sum(self.size(h.shard) for h in self.hosted.values()), self.noun, len(loads),
                          self.topic, time.monotonic() - started)

    async def stop(self) -> None:
        """Unload every shard (not answering their parked requests) and end
        a topic creation under way."""
        self.stopped = True
        for index in list(self.hosted):
            self.unload(index, answer=False)
        if self.create_task is not None and not self.create_task.done():
            self.create_task.cancel()
            await asyncio.gather(self.create_task, return_exceptions=True)

    async def ensure_topic(self) -> bool:
        """Create the topic if it does not exist, and host its partitions led
        here; False if it cannot be.

        The creation runs as its own task, shielded from the request that asked
        for it: a client that disconnects mid-way must not leave the topic
        created in memory but missing from the broker's topic registry."""
        if self.topic not in self.broker.image:
            if self.create_task is None or self.create_task.done():
                self.create_task = asyncio.get_running_loop().create_task(self._create_topic())
            if await asyncio.shield(self.create_task) is None:
                return False
        loads = self.sync_shards()
        if loads:  # partitions new to this coordinator: a created topic's are empty
            await asyncio.shield(asyncio.gather(*loads, return_exceptions=True))
        return True

    async def _create_topic(self):
        """The topic as the image has it once created (by this broker or
        another), or None if it cannot be."""
        from odradek.topic_admin import TopicError

        state = self.broker.image.get(self.topic)
        if state is not None:
            return state
        factors = self.factors()
        for i, factor in enumerate(factors):
            try:
                return await self.broker.admin.create_topic(
                    self.topic, self.config.num_partitions, factor, dict(self.topic_configs))
            except TopicError as e:
                state = self.broker.image.get(self.topic)
                if state is not None:
                    return state
                if e.error_code != errors.INVALID_REPLICATION_FACTOR or i == len(factors) - 1:
                    self.log.error("cannot create %s: %s", self.topic, e)
                    return None
                self.log.info("%s: replication factor %d refused (%s); trying %d", self.topic, factor, e,
                              factors[i + 1])
        return None

    # -- hosting shards ---------------------------------------------------
    def hosted_for(self, index: int) -> tuple[HostedShard | None, int]:
        """The active shard of partition ``index``, checking that this broker
        still leads it (and hosting it if it does and was not yet); else
        (None, NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS)."""
        p, code = self.broker.replicas.partition_or_error(self.topic, index)
        h = self.hosted.get(index)
        if code:
            if h is not None:
                self.unload(index)
            return None, errors.NOT_COORDINATOR
        if h is None or h.partition is not p:
            h = self._host(index, p)
        if h.loading:
            return None, errors.COORDINATOR_LOAD_IN_PROGRESS
        return h, 0

    def sync_shards(self) -> list[asyncio.Task]:
        """Host a shard for every partition of the topic led here and drop
        those of partitions no longer led here (or gone); return the loads
        started."""
        state = self.broker.image.get(self.topic)  # all its partitions, led here or not
        count = len(state.partitions) if state is not None else 0
        if count:
            self.config.num_partitions = count
        started = []
        for index in range(count):
            p, code = self.broker.replicas.partition_or_error(self.topic, index)
            h = self.hosted.get(index)
            if code:
                if h is not None:
                    self.unload(index)
            elif h is None or h.partition is not p:
                started.append(self._host(index, p).load_task)
        for index in [i for i in self.hosted if i >= count]:
            self.unload(index)
        return started

    def _on_hosting_changed(self, gained: list, lost: list) -> None:
        """The replica manager hosts or drops partitions: follow those of the
        topic (leadership of a partition means its shard)."""
        if not self.stopped and any(p.topic.name == self.topic for p in gained + lost):
            self.sync_shards()

    def _host(self, index: int, partition) -> HostedShard:
        """Start hosting (and loading) the shard of partition ``index``."""
        if index in self.hosted:
            self.unload(index)
        h = HostedShard(index, partition, self.build(index))
        h.runner = ShardRunner(h.shard, lambda records, now, producer=None: self.append(h, records, now, producer))
        self.hosted[index] = h
        h.load_task = asyncio.get_running_loop().create_task(self._load(h))
        return h

    def unload(self, index: int, answer: bool = True) -> None:
        """Stop hosting the shard of partition ``index``; ``unloaded`` tells
        the coordinator (``answer``: whether its parked requests are answered)."""
        h = self.hosted.pop(index, None)
        if h is None:
            return
        if h.timer is not None:
            h.timer.cancel()
            h.timer = None
        if h.load_task is not None and not h.load_task.done():
            h.load_task.cancel()
        self.unloaded(h, answer)
        if not self.stopped:  # a broker stopping unloads every shard: not news
            self.log.info("%s-%d unloaded: its %s are no longer coordinated here", self.topic, index, self.noun)

    async def _load(self, h: HostedShard) -> None:
        started = time.monotonic()
        try:
            count = await self.load(h)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("loading %s-%d failed; its %s start empty", self.topic, h.index, self.noun)
            count = 0
        if self.hosted.get(h.index) is not h:
            return
        h.loading = False
        self.loaded(h, count, time.monotonic() - started)

    def active(self) -> list[HostedShard]:
        return [h for h in self.hosted.values() if not h.loading]

    # -- writing -----------------------------------------------------------
    def append(self, h: HostedShard, records: list, now: int, producer: tuple | None = None) -> None:
        """Append ``records`` ([(key, value)]) as one batch to ``h``'s
        partition, or raise if this broker no longer leads it. With a
        ``producer`` (id, epoch): one transactional batch of that producer,
        tracked by the partition as an open transaction until its marker."""
        p, code = self.broker.replicas.partition_or_error(self.topic, h.index)
        if code or p is not h.partition:
            raise RuntimeError(f"{self.topic}-{h.index}: error {code}")
        if producer is None:
            info = p.append_as_leader(bytearray(build_batch([(k, v, (), now) for k, v in records])), now)
        else:
            buf = bytearray(build_batch([(k, v, (), now) for k, v in records], producer_id=producer[0],
                                        producer_epoch=producer[1], base_sequence=-1, transactional=True))
            info = p.append_as_leader(buf, now, producer_batch=next(iter_batches(buf))[1])
        h.last_written = info.last_offset

    # -- timers ----------------------------------------------------------
    def reschedule(self, h: HostedShard) -> None:
        """Arm ``h``'s timer at its shard's next deadline, unless one is
        armed no later."""
        if self.stopped or h.loading or self.hosted.get(h.index) is not h:
            return
        deadline = h.shard.next_deadline()
        if deadline is None or (h.timer is not None and h.timer_at is not None and h.timer_at <= deadline):
            return
        if h.timer is not None:
            h.timer.cancel()
        delay = max(self.min_delay, (deadline - now_ms() + 1) / 1000)
        h.timer = asyncio.get_running_loop().call_later(delay, self._on_timer, h)
        h.timer_at = deadline

    def _on_timer(self, h: HostedShard) -> None:
        h.timer = None
        h.timer_at = None
        if self.hosted.get(h.index) is not h:
            return
        self.tick(h)
