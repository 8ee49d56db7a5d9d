"""Fetch sessions (KIP-227): the partitions a fetcher reads, kept between its
Fetch requests so that each request names only what changed and each response
carries only what is new.

Theory of operation. A Fetch request (v7+) carries a session id and an epoch;
``FetchSessionCache.new_context`` turns them into a ``FetchContext``, which
says which partitions to read and, once they are read, which of them to send:

| session id | epoch   | what it is                  | context                                   |
|------------|---------|-----------------------------|-------------------------------------------|
| 0          | -1      | a sessionless full fetch    | sessionless: read and send the request's  |
| 0          | 0       | a full fetch asking for one | full: as sessionless, then keep a session |
|            |         |                             | if the cache has room; respond with its id|
| S          | 0 or -1 | S is finished with          | drop S, then as (0, epoch)                |
| S          | n > 0   | incremental fetch in S      | the checks below, then incremental        |

An incremental request fails, with no partitions, when S is unknown
(FETCH_SESSION_ID_NOT_FOUND), when n is not S's epoch (INVALID_FETCH_SESSION_EPOCH),
or when S was made with topic ids (v13+) and this request names topics (v12-)
or the other way round (FETCH_SESSION_TOPIC_ID_ERROR). Otherwise the request's
partitions are added to S or replace S's fetch positions and limits, its
``forgotten_topics_data`` are removed, and S's epoch moves on (1, 2, ...
2**31-1, then 1). If S is left empty it is dropped and the request is served
sessionless. An incremental context reads every partition of S, in S's order
(a long poll wakes on any of them), and sends one only if it has records, an
error, or a high watermark or log start offset other than the one last sent
in S; after an error the remembered high watermark is -1, so the partition is
sent again once the error clears. A partition that sent records moves to the
end of S's order, so that under ``max_bytes`` the others come first next time.
If S's epoch moved on while the request waited (a duplicate request), the
response is INVALID_FETCH_SESSION_EPOCH.

Sessions belong to the broker, not to a connection: a client may carry on in a
session over a new connection. The cache holds at most
``max.incremental.fetch.session.cache.slots`` sessions (Kafka's default 1000;
0 turns sessions off: every full fetch is answered with session id 0). When it
is full, a new session may take the place of an old one: first the least
recently used, if unused for longer than
``min.incremental.fetch.session.eviction.ms`` (120000 by default, a constant
in Kafka, settable here for tests); otherwise the
least valuable evictable session, if the newcomer is worth at least as much.
Value orders by (privileged, partition count, session id), and the newcomer's
id counts as 0, so it needs more partitions to win. A privileged newcomer
(a follower replica's fetch) may evict any unprivileged session; others only
sessions created longer than the eviction time ago. As in Kafka, sessions are
evicted only to make room, never by a timer.

Deliberately different from Kafka: one cache, not shards (Kafka 4 splits the
slots over 8 shards and evicts within a shard, so below 8 slots it keeps no
sessions at all); eviction looks over
the sessions (at most the slot count) instead of keeping sorted indexes, and
judges whether a session is old enough to evict when it looks rather than when
the session was last used (the same outcome for sessions in use). No code here
touches sockets or the clock: callers pass ``now_ms``.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict

from odradek.protocol import errors

log = logging.getLogger("odradek.fetch_sessions")

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
MAX_EPOCH = 2**31 - 1

DEFAULT_SLOTS = 1000
DEFAULT_EVICTION_MS = 120_000


def next_epoch(epoch: int) -> int:
    """The epoch after ``epoch``: 1 after 0, and 1 again after the largest."""
    if epoch < 0:
        return FINAL_EPOCH
    return 1 if epoch == MAX_EPOCH else epoch + 1


class FetchPartition:
    """One partition of a fetch: what the fetcher asked for and, in a session,
    what it was last sent. ``key`` is (topic id or name, index)."""

    __slots__ = ("topic", "topic_id", "index", "fetch_offset", "max_bytes", "leader_epoch",
                 "high_watermark", "log_start_offset", "last_fetched_epoch")

    def __init__(self, topic: str, topic_id: bytes, index: int, fetch_offset: int, max_bytes: int,
                 leader_epoch: int = -1, last_fetched_epoch: int = -1):
        self.topic = topic
        self.topic_id = topic_id
        self.index = index
        self.fetch_offset = fetch_offset
        self.max_bytes = max_bytes
        self.leader_epoch = leader_epoch
        self.last_fetched_epoch = last_fetched_epoch  # a follower's (v12+), -1 otherwise
        self.high_watermark = -1  # last sent; -1: never, or an error since
        self.log_start_offset = -1

    def update_request(self, other: "FetchPartition") -> None:
        self.fetch_offset = other.fetch_offset
        self.max_bytes = other.max_bytes
        self.leader_epoch = other.leader_epoch
        self.last_fetched_epoch = other.last_fetched_epoch

    def must_send(self, entry: dict) -> bool:
        """Whether an incremental response carries ``entry`` (a response
        partition read for this one); remember what it carries."""
        send = bool(entry["records"])
        if entry["error_code"]:
            self.high_watermark = -1
            return True
        if entry["high_watermark"] != self.high_watermark:
            self.high_watermark = entry["high_watermark"]
            send = True
        if entry["log_start_offset"] != self.log_start_offset:
            self.log_start_offset = entry["log_start_offset"]
            send = True
        return send

    def __repr__(self) -> str:
        return f"FetchPartition({self.topic or self.topic_id.hex()}-{self.index}@{self.fetch_offset})"


def partition_key(fp: FetchPartition, uses_topic_ids: bool) -> tuple:
    return (fp.topic_id if uses_topic_ids else fp.topic, fp.index)


class FetchSession:
    """``idle``: in a follower's session, the partitions that stand still (the
    follower caught up, sent everything, nothing changed since): key ->
    (partition, its state of this follower, the partition's ``changes`` then).
    Kept by odradek.apis.fetch; a partition the follower names again leaves it."""

    __slots__ = ("id", "privileged", "uses_topic_ids", "partitions", "epoch", "created_ms",
                 "last_used_ms", "idle")

    def __init__(self, session_id: int, privileged: bool, uses_topic_ids: bool,
                 partitions: "OrderedDict[tuple, FetchPartition]", now_ms: int):
        self.id = session_id
        self.privileged = privileged
        self.uses_topic_ids = uses_topic_ids
        self.partitions = partitions
        self.epoch = next_epoch(INITIAL_EPOCH)
        self.created_ms = now_ms
        self.last_used_ms = now_ms
        self.idle: dict[tuple, tuple] = {}

    def value(self) -> tuple:
        """What eviction weighs: the least valuable session goes first."""
        return (self.privileged, len(self.partitions), self.id)

    def update(self, fetch: list[FetchPartition], forgotten: list[tuple]) -> None:
        parts, idle = self.partitions, self.idle
        for fp in fetch:
            key = partition_key(fp, self.uses_topic_ids)
            idle.pop(key, None)
            cached = parts.get(key)
            if cached is None:
                parts[key] = fp
            else:
                cached.update_request(fp)
        for key in forgotten:
            idle.pop(key, None)
            parts.pop(key, None)


class FetchContext:
    """How one Fetch request is served: ``partitions`` to read, in order, and
    ``respond`` to choose what of them the response carries. ``error`` (with no
    partitions) when the request's session is refused."""

    kind = "sessionless"

    def __init__(self, partitions: list[FetchPartition], error: int = 0):
        self.partitions = partitions
        self.error = error

    def respond(self, entries: list[tuple[FetchPartition, dict]], now_ms: int):
        """(error code, session id, entries to send) for the partitions read."""
        return self.error, INVALID_SESSION_ID, entries if not self.error else []

    def throttled(self) -> tuple[int, int]:
        """(error code, session id) of a quota-throttled answer, which sends no
        partitions and changes nothing the session remembers (Kafka's
        getThrottledResponse): a full fetch gets no session."""
        return self.error, INVALID_SESSION_ID


class FullContext(FetchContext):
    kind = "full"

    def __init__(self, cache: "FetchSessionCache", partitions: list[FetchPartition],
                 uses_topic_ids: bool, privileged: bool):
        super().__init__(partitions)
        self.cache = cache
        self.uses_topic_ids = uses_topic_ids
        self.privileged = privileged

    def respond(self, entries, now_ms):
        parts = OrderedDict()
        for fp, entry in entries:
            fp.high_watermark = -1 if entry["error_code"] else entry["high_watermark"]
            fp.log_start_offset = entry["log_start_offset"]
            parts[partition_key(fp, self.uses_topic_ids)] = fp
        session = self.cache.maybe_create(now_ms, self.privileged, self.uses_topic_ids, parts)
        return 0, session.id if session else INVALID_SESSION_ID, entries

    def throttled(self):
        return 0, INVALID_SESSION_ID


class IncrementalContext(FetchContext):
    kind = "incremental"

    def __init__(self, session: FetchSession, request_epoch: int):
        self.error = 0
        self.session = session
        self.expected_epoch = next_epoch(request_epoch)

    @property
    def partitions(self) -> list[FetchPartition]:
        """Every partition of the session, in its order (made when asked: a
        follower's fetch asks only for those that move)."""
        return list(self.session.partitions.values())

    def respond(self, entries, now_ms):
        session = self.session
        if session.epoch != self.expected_epoch:
            log.info("fetch session %d: epoch %d, expected %d; a duplicate request?",
                     session.id, session.epoch, self.expected_epoch)
            return errors.INVALID_FETCH_SESSION_EPOCH, session.id, []
        parts = session.partitions
        out = []
        for fp, entry in entries:
            if fp.must_send(entry):
                out.append((fp, entry))
                if entry["records"]:
                    key = partition_key(fp, session.uses_topic_ids)
                    if key in parts:
                        parts.move_to_end(key)
        return 0, session.id, out

    def throttled(self):
        if self.session.epoch != self.expected_epoch:
            return errors.INVALID_FETCH_SESSION_EPOCH, self.session.id
        return 0, self.session.id


class FetchSessionCache:
    """The broker's fetch sessions, by id; see the module's docstring."""

    def __init__(self, slots: int = DEFAULT_SLOTS, eviction_ms: int = DEFAULT_EVICTION_MS,
                 rng: random.Random | None = None):
        self.slots = slots
        self.eviction_ms = eviction_ms
        self.sessions: dict[int, FetchSession] = {}
        self.rng = rng or random.Random()
        # Counters, as Kafka's metrics name them where it has one.
        self.counts = {"full": 0, "incremental": 0, "sessionless": 0, "errors": 0,
                       "created": 0, "evictions": 0}

    @classmethod
    def from_config(cls, config) -> "FetchSessionCache":
        return cls(config.get_int("max.incremental.fetch.session.cache.slots", DEFAULT_SLOTS),
                   config.get_int("min.incremental.fetch.session.eviction.ms", DEFAULT_EVICTION_MS))

    def metrics(self) -> dict:
        """NumIncrementalFetchSessions, NumIncrementalFetchPartitionsCached and
        the counters of contexts made, sessions created and evicted."""
        return {"NumIncrementalFetchSessions": len(self.sessions),
                "NumIncrementalFetchPartitionsCached": sum(len(s.partitions) for s in self.sessions.values()),
                **self.counts}

    # -- requests ----------------------------------------------------------------------
    def new_context(self, uses_topic_ids: bool, session_id: int, epoch: int, privileged: bool,
                    fetch: list[FetchPartition], forgotten: list[tuple], now_ms: int) -> FetchContext:
        """The context of a request with (``session_id``, ``epoch``) asking for
        ``fetch`` and forgetting ``forgotten`` (keys as ``partition_key``)."""
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
            if session_id != INVALID_SESSION_ID and self.sessions.pop(session_id, None):
                log.debug("fetch session %d closed by a full fetch", session_id)
            if epoch == FINAL_EPOCH:
                self.counts["sessionless"] += 1
                return FetchContext(fetch)
            self.counts["full"] += 1
            return FullContext(self, fetch, uses_topic_ids, privileged)
        session = self.sessions.get(session_id)
        if session is None:
            return self._error(errors.FETCH_SESSION_ID_NOT_FOUND, session_id, epoch)
        if session.epoch != epoch:
            return self._error(errors.INVALID_FETCH_SESSION_EPOCH, session_id, epoch)
        if session.uses_topic_ids != uses_topic_ids:
            return self._error(errors.FETCH_SESSION_TOPIC_ID_ERROR, session_id, epoch)
        session.update(fetch, forgotten)
        if not session.partitions:
            log.debug("fetch session %d closed: no partitions left", session_id)
            del self.sessions[session_id]
            self.counts["sessionless"] += 1
            return FetchContext(fetch)
        session.last_used_ms = now_ms
        session.epoch = next_epoch(session.epoch)
        self.counts["incremental"] += 1
        return IncrementalContext(session, epoch)

    def _error(self, code: int, session_id: int, epoch: int) -> FetchContext:
        log.debug("fetch session %d epoch %d refused: error %d", session_id, epoch, code)
        self.counts["errors"] += 1
        return FetchContext([], code)

    # -- the cache -----------------------------------------------------------------------
    def maybe_create(self, now_ms: int, privileged: bool, uses_topic_ids: bool,
                     partitions: "OrderedDict[tuple, FetchPartition]") -> FetchSession | None:
        """A new session of ``partitions``, if there is room or room can be made."""
        if len(self.sessions) >= self.slots and not self._evict_for(privileged, len(partitions), now_ms):
            return None
        session_id = self.rng.randint(1, MAX_EPOCH)
        while session_id in self.sessions:
            session_id = self.rng.randint(1, MAX_EPOCH)
        session = FetchSession(session_id, privileged, uses_topic_ids, partitions, now_ms)
        self.sessions[session_id] = session
        self.counts["created"] += 1
        log.debug("fetch session %d created with %d partitions", session_id, len(partitions))
        return session

    def _evict_for(self, privileged: bool, size: int, now_ms: int) -> bool:
        if not self.sessions:
            return False
        victim = min(self.sessions.values(), key=lambda s: (s.last_used_ms, s.id))
        if now_ms - victim.last_used_ms <= self.eviction_ms:
            old_enough = [s for s in self.sessions.values()
                          if now_ms - s.created_ms > self.eviction_ms or (privileged and not s.privileged)]
            if not old_enough:
                return False
            victim = min(old_enough, key=FetchSession.value)
            if (privileged, size, 0) < victim.value():
                return False
        del self.sessions[victim.id]
        self.counts["evictions"] += 1
        log.debug("fetch session %d evicted (%d partitions)", victim.id, len(victim.partitions))
        return True

    def remove(self, session_id: int) -> FetchSession | None:
        return self.sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self.sessions)
