"""Replica fetchers: how a follower copies its leader's log.

One ``ReplicaFetcher`` per leader broker fetches every partition this broker
follows from that leader, with Kafka's own Fetch (v15: the replica id and
this broker's epoch in ReplicaState, the last fetched epoch per partition),
one request in flight, in a fetch session (KIP-227, ``LeaderSession``): after
the first full fetch, a request names only the partitions whose fetch
position changed and the answer carries only partitions with news, so a
round costs what moved, not every partition followed. For each partition of
an answer:

- records are appended as they came (``Partition.append_as_follower``), and
  the follower's high watermark becomes the leader's, capped by its log end;
  the leader's log start, when higher, moves the follower's (up to its high
  watermark);
- a diverging epoch (the follower's log has a tail the leader does not)
  truncates the log to where it agrees with the leader, as KIP-320 describes;
  the next fetch asks again from there;
- OFFSET_OUT_OF_RANGE below the leader's log start starts the log afresh
  there (at the first batch's base offset when that start falls inside a
  batch, as Kafka's follower does); otherwise the log is truncated to its
  high watermark;
- a leader behind the follower (UNKNOWN_LEADER_EPOCH: it does not know the
  follower's epoch yet; NOT_LEADER_OR_FOLLOWER: it does not know it leads)
  is asked again soon, 50 ms then doubling up to ``replica.fetch.backoff.ms``:
  its image is about to catch up, and acks=all waits for this follower;
- other errors (a follower behind the leader, an unknown topic) back the
  partition off for ``replica.fetch.backoff.ms`` while the image catches up
  (when the follower's own image moves, the partition is fetched at once).

A partition answered for an epoch or leader it no longer has is passed over:
the image moved it, and ``FetcherManager.follow`` with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from odradek.clock import now_ms
from odradek.config import BrokerConfig
from odradek.fetch_sessions import INITIAL_EPOCH, INVALID_SESSION_ID, next_epoch
from odradek.metadata.image import MetadataImage
from odradek.protocol import errors
from odradek.protocol.batch import InvalidBatch, iter_batches
from odradek.replica.partition import Partition
from odradek.replica.peer import AuthenticationError, PeerConnection
from odradek.replica.throttle import ReplicationQuota

log = logging.getLogger("odradek.replica.fetcher")

Key = tuple[bytes, int]  # a partition: (topic id, index)

FETCH_VERSION = 15
BACKOFF_ERRORS = {errors.NOT_LEADER_OR_FOLLOWER, errors.FENCED_LEADER_EPOCH, errors.UNKNOWN_LEADER_EPOCH,
                  errors.UNKNOWN_TOPIC_ID, errors.UNKNOWN_TOPIC_OR_PARTITION, errors.KAFKA_STORAGE_ERROR,
                  errors.OFFSET_NOT_AVAILABLE}
# The leader's image is behind the follower's: retried sooner (RETRY_FIRST, doubling).
LEADER_BEHIND = {errors.UNKNOWN_LEADER_EPOCH, errors.NOT_LEADER_OR_FOLLOWER}
RETRY_FIRST = 0.05
# Every partition's fetch fields are computed again at least this often (s);
# in between only those of partitions the fetcher touched: its own appends and
# truncations move a follower's log, retention moves its log start.
FIELDS_REFRESH = 5.0
# Answers that end the fetch session; the next fetch is a full one, at once.
SESSION_ERRORS = {errors.FETCH_SESSION_ID_NOT_FOUND, errors.INVALID_FETCH_SESSION_EPOCH,
                  errors.FETCH_SESSION_TOPIC_ID_ERROR}


class LeaderSession:
    """The follower's side of its fetch session with one leader (KIP-227).

    ``known`` is what the leader's session holds for each partition: the
    fields last sent for it. A full fetch (epoch 0, naming the session to
    close, if any) sends every partition wanted; an incremental one (the
    session's id and next epoch) sends those whose fields differ from
    ``known`` and forgets those no longer wanted. ``answered`` moves the
    session on after an answer without error; ``reset`` (an error, a lost
    connection, an answer not applied) makes the next fetch a full one, so
    the leader's view is rebuilt from what the follower has. No I/O here."""

    def __init__(self) -> None:
        self.session_id = INVALID_SESSION_ID
        self.epoch = INITIAL_EPOCH
        self.known: dict[Key, dict] = {}
        self._sent: dict[Key, dict] = {}

    def build(self, wanted: dict[Key, dict]) -> tuple[list[Key], list[Key]]:
        """(keys to send, keys to forget) for a fetch of ``wanted`` (key -> request fields)."""
        self._sent = wanted
        if self.epoch == INITIAL_EPOCH:
            return list(wanted), []
        known = self.known
        send = [k for k, f in wanted.items() if (old := known.get(k)) is not f and old != f]
        return send, [k for k in self.known if k not in wanted]

    def answered(self, session_id: int) -> None:
        if self.epoch == INITIAL_EPOCH or session_id == self.session_id:
            self.known = self._sent if session_id != INVALID_SESSION_ID else {}
            self.epoch = next_epoch(self.epoch) if session_id != INVALID_SESSION_ID else INITIAL_EPOCH
            self.session_id = session_id
        else:  # the leader answered outside the session
            self.reset()

    def reset(self) -> None:
        self.epoch = INITIAL_EPOCH
        self.known = {}


def truncation_offset(p: Partition, epoch: int, end_offset: int) -> int:
    """Where a follower's log agrees with its leader's, told by the leader
    that its epoch ``epoch`` (the largest at or below the follower's last
    fetched one) ends at ``end_offset``."""
    leo = p.log_end_offset
    if epoch < 0:
        return min(end_offset, leo) if end_offset >= 0 else min(p.high_watermark, leo)
    own_epoch, own_end = p.end_offset_for_epoch(epoch)
    if own_epoch < 0:  # nothing of that epoch or before it here
        return min(end_offset, leo)
    if own_epoch != epoch:  # the follower's epoch below it ends here; look again from there
        return min(own_end, leo)
    return min(end_offset, own_end, leo)


class ReplicaFetcher:
    """Fetches the partitions this broker follows from one leader."""

    def __init__(self, leader_id: int, node_id: int, image: MetadataImage, config: BrokerConfig,
                 broker_epoch: Callable[[], int], listener: str | None = None,
                 local_host: str | None = None, security=None, throttle: ReplicationQuota | None = None):
        self.leader_id = leader_id
        self.throttle = throttle  # the broker's follower-side replication throttle (KIP-73)
        self.local_host = local_host
        self.security = security
        self.node_id = node_id
        self.image = image
        self.config = config
        self.broker_epoch = broker_epoch
        self.partitions: dict[Key, Partition] = {}
        self.delayed: dict[Key, float] = {}  # key -> monotonic time to fetch again
        self.retry_in: dict[Key, float] = {}  # key -> next delay while the leader is behind
        self.changed = asyncio.Event()
        self.session = LeaderSession()
        self.fields: dict[Key, dict] = {}  # each partition's fetch fields, as last computed
        self.stale: set[Key] = set()  # partitions whose fields must be computed again
        self.refreshed = 0.0  # when every partition's fields were last computed (monotonic)
        self.task: asyncio.Task | None = None
        self.listener = listener  # the inter-broker listener (None: the leader's first)
        self.backoff = config.get_int("replica.fetch.backoff.ms", 1000) / 1000
        self.max_wait_ms = config.get_int("replica.fetch.wait.max.ms", 500)
        self.min_bytes = config.get_int("replica.fetch.min.bytes", 1)
        self.partition_max_bytes = config.get_int("replica.fetch.max.bytes", 1048576)
        self.max_bytes = config.get_int("replica.fetch.response.max.bytes", 10485760)
        self.timeout = config.get_int("replica.socket.timeout.ms", 30000) / 1000 + self.max_wait_ms / 1000

    def add(self, p: Partition) -> None:
        key = (p.topic.topic_id, p.index)
        self.partitions[key] = p
        self.delayed.pop(key, None)
        self.retry_in.pop(key, None)
        self.session.reset()  # a partition added anew (a new epoch, perhaps): the leader hears all again
        self.stale.add(key)
        self.changed.set()

    def remove(self, p: Partition) -> None:
        key = (p.topic.topic_id, p.index)
        if self.partitions.get(key) is p:
            del self.partitions[key]
            self.fields.pop(key, None)
            self.delayed.pop(key, None)
            self.retry_in.pop(key, None)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Cancel the fetch loop and wait for it to end; cancelled again while it
        runs on (a cancellation can be lost inside ``asyncio.wait_for`` on 3.11)."""
        task, self.task = self.task, None
        if task is not None:
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.1)

    def _endpoint(self) -> tuple[str, int] | None:
        info = self.image.brokers.get(self.leader_id)
        return info.endpoint(self.listener) if info is not None else None

    async def run(self) -> None:
        """Fetch until cancelled. An unexpected error in one round is logged
        and the round retried after the backoff: the loop never ends by
        itself, since a follower whose fetcher died would silently leave
        every ISR of that leader."""
        while True:
            try:
                await self._run()
            except Exception:
                log.exception("broker %d: fetcher for leader %d failed; fetching again", self.node_id,
                              self.leader_id)
                await asyncio.sleep(self.backoff)

    async def _run(self) -> None:
        conn: PeerConnection | None = None
        try:
            while True:
                now = time.monotonic()
                delayed = self.delayed
                for key in [k for k, t in delayed.items() if t <= now]:
                    del delayed[key]  # backed off long enough
                ready = [k for k in self.partitions if k not in delayed] if delayed else list(self.partitions)
                held = self.throttled(ready)
                if held:
                    ready = [k for k in ready if k not in held]
                if not ready and held:
                    await asyncio.sleep(self.backoff)  # the throttle's rate comes down as its samples age
                    continue
                if not ready:
                    self.changed.clear()
                    wait = min(self.delayed.values(), default=now + 3600) - now
                    try:
                        await asyncio.wait_for(self.changed.wait(), max(wait, 0.01))
                    except asyncio.TimeoutError:
                        pass
                    continue
                if conn is None or not conn.connected:
                    endpoint = self._endpoint()
                    if endpoint is None:  # not registered (yet, or any more)
                        await asyncio.sleep(self.backoff)
                        continue
                    conn = PeerConnection(endpoint[0], endpoint[1], f"odradek-replica-{self.node_id}",
                                          self.local_host, self.security)
                    try:
                        await conn.connect(self.timeout)
                    except AuthenticationError as e:
                        log.error("broker %d: cannot log in to leader %d: %s", self.node_id, self.leader_id, e)
                        conn = None
                        await asyncio.sleep(self.backoff)
                        continue
                    except (OSError, asyncio.TimeoutError, ValueError) as e:
                        log.debug("broker %d: cannot reach leader %d at %s: %s",
                                  self.node_id, self.leader_id, endpoint, e)
                        conn = None
                        await asyncio.sleep(self.backoff)
                        continue
                request, sent = self.request(ready)
                try:
                    response = await conn.request("Fetch", FETCH_VERSION, request, self.timeout)
                except AuthenticationError as e:  # a re-authentication (KIP-368) refused
                    log.error("broker %d: cannot log in again to leader %d: %s", self.node_id, self.leader_id, e)
                    conn = None
                    await asyncio.sleep(self.backoff)
                    continue
                except (OSError, EOFError, ValueError, asyncio.TimeoutError) as e:
                    log.debug("broker %d: fetch from leader %d failed: %s", self.node_id, self.leader_id, e)
                    conn = None
                    self.session.reset()
                    await asyncio.sleep(self.backoff)
                    continue
                code = response["error_code"]
                if code:
                    self.session.reset()
                    if code in SESSION_ERRORS:  # the leader lost the session (a restart, an eviction)
                        log.debug("broker %d: fetch session with leader %d ended: error %d",
                                  self.node_id, self.leader_id, code)
                        continue
                    log.warning("broker %d: fetch from leader %d: error %d", self.node_id, self.leader_id, code)
                    await asyncio.sleep(self.backoff)
                    continue
                self.session.answered(response["session_id"])
                if not self.handle(response, sent):
                    self.session.reset()
        finally:
            if conn is not None:
                conn.close()

    def throttled(self, ready: list[Key]) -> set[Key]:
        """The partitions of ``ready`` the follower-side throttle holds back
        now: listed, this broker out of their ISR, the rate over its bound."""
        t = self.throttle
        if t is None or not t.exceeded(now_ms()):
            return set()
        partitions = self.partitions
        return {k for k in ready if t.listed(partitions[k]) and self.node_id not in partitions[k].isr}

    def _fields(self, p: Partition) -> dict:
        return {"partition": p.index, "current_leader_epoch": p.leader_epoch,
                "fetch_offset": p.log_end_offset, "last_fetched_epoch": p.log.latest_epoch,
                "log_start_offset": p.log_start_offset, "partition_max_bytes": self.partition_max_bytes}

    def request(self, ready: list[Key]) -> tuple[dict, dict[Key, dict]]:
        """The Fetch for the partitions ``ready`` in the session (those whose
        fields the leader's session does not hold yet, those to forget), and
        the fields of each partition it fetches."""
        fields, partitions = self.fields, self.partitions
        now = time.monotonic()
        if self.session.epoch == INITIAL_EPOCH or now - self.refreshed >= FIELDS_REFRESH:
            self.refreshed = now
            fields.update((k, self._fields(p)) for k, p in partitions.items())
        else:
            fields.update((k, self._fields(partitions[k])) for k in self.stale if k in partitions)
        self.stale.clear()
        wanted = {k: fields[k] for k in ready}
        send, forget = self.session.build(wanted)
        topics: dict[bytes, list] = {}
        for key in send:
            topics.setdefault(key[0], []).append(wanted[key])
        forgotten: dict[bytes, list] = {}
        for topic_id, index in forget:
            forgotten.setdefault(topic_id, []).append(index)
        return {"replica_state": {"replica_id": self.node_id, "replica_epoch": self.broker_epoch()},
                "max_wait_ms": self.max_wait_ms, "min_bytes": self.min_bytes, "max_bytes": self.max_bytes,
                "isolation_level": 0, "session_id": self.session.session_id, "session_epoch": self.session.epoch,
                "topics": [{"topic_id": tid, "partitions": ps} for tid, ps in topics.items()],
                "forgotten_topics_data": [{"topic_id": tid, "partitions": ps} for tid, ps in forgotten.items()],
                "rack_id": ""}, wanted

    def handle(self, response: dict, sent: dict) -> bool:
        """Apply the answer; False when a partition's entry was passed over
        (it moved or changed meanwhile), so the session must start afresh."""
        applied = True
        now = now_ms()
        for t in response["responses"]:
            for entry in t["partitions"]:
                key = (t["topic_id"], entry["partition_index"])
                f = sent.get(key)
                if f is None:
                    continue
                self.stale.add(key)  # what it answers may move the partition
                p = self.partitions.get(key)
                if (p is None or p.leader != self.leader_id or p.leader_epoch != f["current_leader_epoch"]
                        or p.log_end_offset != f["fetch_offset"]):
                    applied = False  # moved, or changed meanwhile: the next fetch asks again
                    continue
                try:
                    self.handle_partition(p, entry, now)
                except (InvalidBatch, OSError, ValueError) as e:
                    log.error("%s: cannot follow leader %d: %s", p, self.leader_id, e)
                    self.delayed[key] = time.monotonic() + self.backoff
        return applied

    def handle_partition(self, p: Partition, entry: dict, now: int) -> None:
        code = entry["error_code"]
        key = (p.topic.topic_id, p.index)
        if code == errors.OFFSET_OUT_OF_RANGE:
            leader_start = entry["log_start_offset"]
            if leader_start >= 0 and p.log_end_offset < leader_start:
                log.info("%s: log ends before the leader's log start %d; starting afresh there", p, leader_start)
                p.reset_to(leader_start)
            else:
                target = min(p.high_watermark, max(entry["high_watermark"], 0))
                log.warning("%s: offset %d out of range on leader %d; truncating to %d",
                            p, p.log_end_offset, self.leader_id, target)
                p.truncate_to(target)
            return
        if code:
            if code not in BACKOFF_ERRORS:
                log.warning("%s: leader %d answers error %d", p, self.leader_id, code)
            delay = self.backoff
            if code in LEADER_BEHIND:
                delay = min(self.retry_in.get(key, RETRY_FIRST), self.backoff)
                self.retry_in[key] = delay * 2
            self.delayed[key] = time.monotonic() + delay
            return
        self.retry_in.pop(key, None)
        diverging = entry.get("diverging_epoch") or {}
        if diverging.get("epoch", -1) >= 0 or diverging.get("end_offset", -1) >= 0:
            target = truncation_offset(p, diverging["epoch"], diverging["end_offset"])
            log.info("%s: diverges from leader %d at epoch %d (ends at %d); truncating to %d",
                     p, self.leader_id, diverging["epoch"], diverging["end_offset"], target)
            p.truncate_to(target)
            return
        records = entry["records"]
        if records and self.throttle is not None and self.throttle.listed(p):
            self.throttle.record(len(records), now)
        if records:
            buf = bytearray(records)
            leo = p.log_end_offset
            start = 0
            for pos, h in iter_batches(buf):  # whole batches the follower already has are skipped
                if h.next_offset > leo:
                    start = pos
                    if h.base_offset < leo and leo == p.log_start_offset:
                        # An empty log started at the leader's log start, which falls
                        # inside this batch (records deleted up to the middle of it):
                        # the log starts again at the batch, as Kafka's follower does.
                        log.info("%s: the leader's log start %d is inside a batch; starting at %d",
                                 p, leo, h.base_offset)
                        p.reset_to(h.base_offset)
                    break
            else:
                start = len(buf)
            if start < len(buf):
                p.append_as_follower(buf[start:] if start else buf, now)
        p.follow_high_watermark(entry["high_watermark"])
        leader_start = entry["log_start_offset"]
        if leader_start > p.log_start_offset:
            p.delete_records_before(min(leader_start, p.high_watermark))


class FetcherManager:
    """The replica fetchers of this broker, one per leader it follows."""

    def __init__(self, node_id: int, image: MetadataImage, config: BrokerConfig,
                 broker_epoch: Callable[[], int], listener: str | None = None,
                 local_host: str | None = None, security=None, throttle: ReplicationQuota | None = None):
        self.node_id = node_id
        self.throttle = throttle
        self.listener = listener
        self.local_host = local_host
        self.security = security
        self.image = image
        self.config = config
        self.broker_epoch = broker_epoch
        self.fetchers: dict[int, ReplicaFetcher] = {}
        self.assigned: dict[Key, ReplicaFetcher] = {}

    def follow(self, changed: list[Partition], lost: list[Partition]) -> None:
        """Partitions whose role or leader changed (``changed``) fetch from
        their new leader, if they follow one; ``lost`` ones stop fetching."""
        for p in lost:
            self._unassign(p)
        for p in changed:
            self._unassign(p)
            if not p.is_leader and p.leader >= 0:
                f = self.fetchers.get(p.leader)
                if f is None:
                    f = self.fetchers[p.leader] = ReplicaFetcher(
                        p.leader, self.node_id, self.image, self.config, self.broker_epoch, self.listener,
                        self.local_host, self.security, self.throttle)
                    f.start()
                f.add(p)
                self.assigned[(p.topic.topic_id, p.index)] = f

    def _unassign(self, p: Partition) -> None:
        f = self.assigned.pop((p.topic.topic_id, p.index), None)
        if f is not None:
            f.remove(p)

    async def stop(self) -> None:
        fetchers, self.fetchers = list(self.fetchers.values()), {}
        self.assigned.clear()
        for f in fetchers:
            await f.stop()
