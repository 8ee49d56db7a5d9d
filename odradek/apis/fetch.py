"""Fetch (key 1), versions 4-18, for consumers and followers (replica fetches).

Long poll: when fewer than ``min_bytes`` are available the request waits up
to ``max_wait_ms`` and is woken at once by an append to any partition it
reads (in an incremental session: any partition of the session), after which
the partitions that changed are read again (those that notified the wait, and
any after them whose limits moved with the bytes before them; the others keep
their reading, which is what a full pass would give); at the timeout, nothing
having been appended, the last reading is answered. A partition answered with an error (an offset
out of range, a leader elsewhere) or a diverging epoch ends the wait at once,
as in Kafka. Limits:
``partition_max_bytes`` per partition and ``max_bytes`` per response, except
that the first partition with data always gets at least one whole batch
(KIP-74), so a large message is never stuck; after it, a batch that does not
fit in what is left of either limit is not sent (Kafka would send its first
bytes, which the client drops). Records are handed out as the stored batches,
whole; clients skip records before their offset.

Fetch sessions (KIP-227, v7+) are kept by ``odradek.fetch_sessions``: a full
fetch with epoch 0 gets a session id when the cache
(``max.incremental.fetch.session.cache.slots``) has room, and the client's
incremental fetches then name only changed partitions and get back only
partitions with records, errors, or a new high watermark or log start offset.
Session errors (FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH,
FETCH_SESSION_TOPIC_ID_ERROR) are answered at the top level with no
partitions. From v13 topics are named by id; an unknown id is UNKNOWN_TOPIC_ID
for its partitions, which are listed after the others.

Replica fetches (a replica id in ``replica_id``, or from v15 in
``replica_state`` with the follower's broker epoch) are a follower copying
the leader (``odradek.replica.fetcher``): they read up to the log end, not
the high watermark; each tells the leader the follower's log end (its fetch
offset), which moves the high watermark and may bring the follower into the
ISR; and from v12, a ``last_fetched_epoch`` the leader's log does not agree
with is answered with ``diverging_epoch`` (the largest epoch at or below it
and where it ends) and no records, so the follower truncates (KIP-320).
A replica fetch needs CLUSTER_ACTION on the cluster when ACLs are on.
A partition this broker does not lead is answered NOT_LEADER_OR_FOLLOWER
with, from v12, its current leader, and from v16 that leader's endpoint
(KIP-951).

isolation_level=1 (read_committed) reads below the partition's last stable
offset (the first offset of its earliest unstable transaction) and lists the
aborted transactions overlapping what it returns (``Partition.read_committed``,
docs/transactions.md); read_uncommitted reads below the high watermark.

Not implemented: reads from follower replicas (KIP-392) are not served:
consumers fetch from leaders.
"""

from __future__ import annotations

import asyncio
import time

from odradek.apis.partitions import LeaderHints
from odradek.clock import now_ms
from odradek.fetch_sessions import FetchPartition, partition_key
from odradek.protocol import errors
from odradek.server.registry import handles
from odradek.storage.base import OffsetOutOfRange
from odradek.storage.coldreads import off_loop

# What a partition adds to a Fetch response besides its records (index, error,
# offsets, aborted list, preferred replica, sizes): counted with the records
# against consumer_byte_rate.
PARTITION_OVERHEAD = 48


def partition_error(index: int, code: int) -> dict:
    """A Fetch partition answered with ``code`` and an empty record set, as
    Kafka sends: librdkafka takes a null one for a protocol error."""
    return {"partition_index": index, "error_code": code, "high_watermark": -1,
            "last_stable_offset": -1, "log_start_offset": -1, "records": b""}


def requested(request: dict, uses_topic_ids: bool) -> tuple[list[FetchPartition], list[tuple]]:
    """The request's partitions, and the keys of those it forgets."""
    fetch = []
    for ft in request["topics"]:
        name, topic_id = ft["topic"], ft["topic_id"]
        for fp in ft["partitions"]:
            fetch.append(FetchPartition(name, topic_id, fp["partition"], fp["fetch_offset"],
                                        fp["partition_max_bytes"], fp["current_leader_epoch"],
                                        fp.get("last_fetched_epoch", -1)))
    forgotten = [(ft["topic_id"] if uses_topic_ids else ft["topic"], index)
                 for ft in request["forgotten_topics_data"] for index in ft["partitions"]]
    return fetch, forgotten


def diverging_epoch(p, fp: FetchPartition) -> tuple[int, int] | None:
    """(epoch, end offset) when a follower's last fetched epoch and fetch
    offset do not agree with this leader's log, else None (KIP-320)."""
    if fp.last_fetched_epoch < 0:
        return None
    epoch, end = p.end_offset_for_epoch(fp.last_fetched_epoch)
    if epoch < 0 or end < 0:
        return None  # older than anything this log knows: let the offset check decide
    if epoch < fp.last_fetched_epoch or end < fp.fetch_offset:
        return epoch, end
    return None


def moving_partitions(session, replica_id: int, now: int) -> list[FetchPartition]:
    """A follower's incremental fetch: the partitions of its session to serve.
    Those standing still (``session.idle``: the follower had caught up and
    been sent everything, and nothing changed since) are left out: their
    caught-up clocks move, which is all a fetch of them would do
    (``Partition.on_follower_fetch``'s first case). So a round costs what
    moved, not what the session holds."""
    idle = session.idle
    out = []
    for key, fp in session.partitions.items():
        held = idle.get(key)
        if held is not None:
            p, f, seen = held
            if p.changes == seen and p.followers.get(replica_id) is f:
                f.caught_up_ms = f.last_fetch_ms = now
                continue
            del idle[key]
        out.append(fp)
    return out


def park_standing_still(session, parts: list[FetchPartition], reads: list, sent: list, replica_id: int) -> None:
    """After a follower's incremental fetch is answered: the partitions read
    and not sent whose follower holds all of this log (its log end, this log's
    end and the end at its last fetch agree, it is in the ISR) and was sent the
    current high watermark and log start join ``session.idle``, with the
    partition's ``changes`` now (any change after takes them out again)."""
    idle, sent_now = session.idle, {id(fp) for fp, _ in sent}
    for fp, read in zip(parts, reads):
        p = read[0]
        if p is None or id(fp) in sent_now or replica_id not in p.isr:
            continue
        f = p.followers.get(replica_id)
        end = p.log_end_offset
        if f is not None and fp.fetch_offset == f.log_end_offset == end == f.leader_end_at_last_fetch \
                and fp.high_watermark == p.high_watermark and fp.log_start_offset == p.log_start_offset:
            idle[partition_key(fp, session.uses_topic_ids)] = (p, f, p.changes)


def follower_fetched(broker, parts: list[FetchPartition], replica_id: int, uses_topic_ids: bool) -> list:
    """A follower's fetch offsets are its log ends: tell the partitions led
    here (once per request; those it diverges from are left out). Returns
    the partitions found, in order (None where the lookup failed), for the
    first read of the same request."""
    now = now_ms()
    lookup = broker.replicas.partition_or_error
    found = []
    for fp in parts:
        p, code = lookup(fp.topic_id if uses_topic_ids else fp.topic, fp.index,
                         current_leader_epoch=fp.leader_epoch)
        found.append(p)
        if not code and diverging_epoch(p, fp) is None:
            p.on_follower_fetch(replica_id, fp.fetch_offset, now)
    return found


def read_partitions(broker, parts: list[FetchPartition], max_bytes: int, uses_topic_ids: bool,
                    skip_unchanged: bool = False, replica: bool = False, committed: bool = False,
                    last: list | None = None, changed: set | None = None,
                    found: list | None = None, throttled=None) -> tuple[list, list, int, list]:
    """One pass over ``parts``: (readings, [(part, response partition)], bytes,
    partitions read). A reading, per partition in order: (the partition, or
    None for an error; its response partition, or None when it is not sent;
    the bytes of its records; the bytes of records before it in the pass, or
    None when its reading does not depend on them: nothing to read, an error).
    With ``skip_unchanged`` (an incremental session), a partition with nothing
    to read whose high watermark and log start offset are those it was last
    sent gets no response partition: it would not be sent. A ``replica``
    (follower) reads up to the log end.

    A pass after a wait gives ``last``, the previous pass, and ``changed``, the
    partitions that woke the fetch or changed since (``Partition.notify``): a
    partition not among them, read last time with the same bytes before it
    (or with nothing to read), would read the same again (what it reads
    changes only with a notification; its limit and KIP-74's "first with
    data" only with the bytes before it), so its reading is kept; any other
    is read again. The answer is the one a full pass would give.

    ``found`` is the partitions ``follower_fetched`` looked up for the same
    request with nothing awaited since (None where it failed: looked up
    again, for its error). A partition ``throttled(p)`` holds back (a
    replication throttle, ``odradek.replica.throttle``) is answered without
    records."""
    total = 0
    out = []
    entries = []
    touched = []
    lookup = broker.replicas.partition_or_error
    for i, fp in enumerate(parts):
        if last is not None:
            was = last[i]
            if (was[3] is None or was[3] == total) and was[0] is not None and was[0] not in changed:
                out.append(was)
                touched.append(was[0])
                if was[1] is not None:
                    entries.append((fp, was[1]))
                total += was[2]
                continue
        index = fp.index
        p = found[i] if found is not None else None
        code = 0
        if p is None:
            p, code = lookup(fp.topic_id if uses_topic_ids else fp.topic, index,
                             current_leader_epoch=fp.leader_epoch)
        if code:
            entry = partition_error(index, code)
            out.append((None, entry, 0, None))
            entries.append((fp, entry))
            continue
        touched.append(p)
        hw = p.high_watermark
        log_start = p.log_start_offset
        offset = fp.fetch_offset
        if replica:
            diverging = diverging_epoch(p, fp)
            if diverging is not None:
                entry = {"partition_index": index, "error_code": 0, "high_watermark": hw,
                         "last_stable_offset": p.last_stable_offset, "log_start_offset": log_start,
                         "diverging_epoch": {"epoch": diverging[0], "end_offset": diverging[1]},
                         "aborted_transactions": None, "records": b""}
                out.append((p, entry, 0, None))
                entries.append((fp, entry))
                continue
            hw = p.log_end_offset  # what a follower may read
        if skip_unchanged and hw == fp.high_watermark and log_start == fp.log_start_offset \
                and log_start <= offset and hw <= offset <= p.log_end_offset:
            out.append((p, None, 0, None))
            continue
        entry = {"partition_index": index, "error_code": 0, "high_watermark": p.high_watermark,
                 "last_stable_offset": p.last_stable_offset, "log_start_offset": log_start,
                 "aborted_transactions": None, "records": b""}
        limit = min(fp.max_bytes, max_bytes - total)
        size, before = 0, None
        if committed:
            entry["aborted_transactions"] = []
            hw = entry["last_stable_offset"]  # what a read_committed consumer may read
        if offset < hw and throttled is not None and throttled(p):
            hw = offset  # held back: nothing to read
        if offset < hw:
            before = total  # what it may read depends on what is before it
        if offset < hw and (limit > 0 or total == 0):
            try:
                # Only the first partition with data may exceed its limit.
                if replica:
                    result = p.read_for_replica(offset, max(limit, 1), min_one=total == 0)
                elif committed:
                    result, aborted = p.read_committed(offset, max(limit, 1), min_one=total == 0)
                    entry["aborted_transactions"] = [
                        {"producer_id": a.producer_id, "first_offset": a.first_offset} for a in aborted]
                else:
                    result = p.read_for_consumer(offset, max(limit, 1), min_one=total == 0)
            except OffsetOutOfRange:
                entry["error_code"] = errors.OFFSET_OUT_OF_RANGE
            else:
                if result.size:
                    entry["records"] = result.chunks
                    size = result.size
        elif offset > p.log_end_offset or offset < log_start:
            entry["error_code"] = errors.OFFSET_OUT_OF_RANGE
        out.append((p, entry, size, before))
        entries.append((fp, entry))
        total += size
    return out, entries, total, touched


def by_topic(entries: list, uses_topic_ids: bool) -> list[dict]:
    """Response topics: runs of partitions of one topic, in the order read."""
    responses = []
    last = None
    for fp, entry in entries:
        key = fp.topic_id if uses_topic_ids else fp.topic
        if key != last or not responses:
            responses.append({"topic": fp.topic, "topic_id": fp.topic_id, "partitions": []})
            last = key
        responses[-1]["partitions"].append(entry)
    return responses


@handles("Fetch", 4, 18)
async def fetch(ctx, request: dict) -> dict:
    broker = ctx.broker
    uses_topic_ids = ctx.version >= 13
    fetch, forgotten = requested(request, uses_topic_ids)
    replica_id = max(request["replica_id"], request["replica_state"]["replica_id"])
    privileged = replica_id >= 0
    context = broker.fetch_sessions.new_context(
        uses_topic_ids, request["session_id"], request["session_epoch"], privileged, fetch, forgotten,
        int(time.monotonic() * 1000))
    if context.error:
        return {"error_code": context.error, "session_id": 0, "responses": []}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(request["max_wait_ms"], 0) / 1000
    max_bytes = request["max_bytes"]
    allowance = None if privileged else ctx.connection.fetch_allowance(ctx)
    if allowance is not None:  # as Kafka: never ask for more than the quota lets through
        max_bytes = min(max_bytes, allowance)
    min_bytes = min(request["min_bytes"], max_bytes)
    incremental = context.kind == "incremental"
    # A follower's session: partitions standing still are not read (moving_partitions).
    session = context.session if privileged and incremental else None
    parts = moving_partitions(session, replica_id, now_ms()) if session is not None else context.partitions
    found = follower_fetched(broker, parts, replica_id, uses_topic_ids) if privileged else None
    throttled = broker.replicas.leader_throttled(replica_id, now_ms()) if privileged else None
    committed = request["isolation_level"] == 1 and not privileged
    reads, changed = None, None
    while True:
        # After a wait, only the partitions that changed (and those after a
        # change in the bytes before them) are read again: read_partitions.
        # A pass that had to wait for pages read in on a thread (off_loop) is
        # then a full one: a partition that changed meanwhile held no waiter.
        passes = 0

        def read_pass():
            nonlocal passes
            passes += 1
            return read_partitions(broker, parts, max_bytes, uses_topic_ids, incremental, privileged, committed,
                                   reads if passes == 1 else None, changed if passes == 1 else None,
                                   found if passes == 1 else None, throttled)

        reads, entries, total, touched = await off_loop(broker.background.run, read_pass)
        found = None  # what follows an await looks up again
        remaining = deadline - loop.time()
        if total >= min_bytes or remaining <= 0 or not (touched or session is not None and session.idle) \
                or ctx.connection.closed or any(e["error_code"] or "diverging_epoch" in e for _, e in entries):
            break  # as Kafka: an error or a diverging epoch is answered at once, not after the wait
        still = list(session.idle.items()) if session is not None else ()  # those waited on, standing still
        fut = loop.create_future()
        for p in touched:
            p.add_waiter(fut)
        for _, (p, _, _) in still:
            p.add_waiter(fut)
        try:
            await ctx.wait(asyncio.wait_for(fut, remaining))
        except asyncio.TimeoutError:
            break  # nothing was appended: the last pass stands
        finally:
            # A partition's notification takes the future: those that no longer hold it changed.
            changed = {p for p in touched if not p.discard_waiter(fut)}
            woken = [key for key, (p, _, _) in still if not p.discard_waiter(fut)]
        if woken:  # a partition standing still changed: it is read again, with a full pass
            for key in woken:
                session.idle.pop(key, None)
            parts = parts + [session.partitions[key] for key in woken if key in session.partitions]
            reads, changed = None, None
    sent = [(r[0], r[2]) for r in reads if r[2]]
    if uses_topic_ids and any(e["error_code"] == errors.UNKNOWN_TOPIC_ID for _, e in entries):
        # As in Kafka, partitions of unknown topic ids come after the others.
        entries = sorted(entries, key=lambda x: x[1]["error_code"] == errors.UNKNOWN_TOPIC_ID)
    # consumer_byte_rate (odradek.security.quotas): counted on the records and
    # each partition's header, before the answer; over the quota the answer
    # is empty, with the throttle time, as Kafka answers (replicas are not
    # client-quota'd).
    if not privileged and ctx.connection.fetch_quota(ctx, total + PARTITION_OVERHEAD * len(entries)) > 0:
        code, session_id = context.throttled()
        return {"error_code": code, "session_id": session_id, "responses": []}
    for p, size in sent:  # what goes out (odradek.metrics: BytesOutPerSec)
        p.topic.bytes_out += size
    if privileged and sent:
        broker.replicas.sent_to_follower(sent, now_ms())
    code, session_id, entries = context.respond(entries, int(time.monotonic() * 1000))
    if session is not None and not code:
        park_standing_still(session, parts, reads, entries, replica_id)
    response = {"error_code": code, "session_id": session_id, "responses": by_topic(entries, uses_topic_ids)}
    if ctx.version >= 12:
        hints = LeaderHints(broker, ctx.connection.listener)
        for fp, entry in entries:
            hints.hint(fp.topic_id if uses_topic_ids else fp.topic, fp.index, entry)
        if hints.leaders and ctx.version >= 16:
            response["node_endpoints"] = hints.node_endpoints()
    return response
