"""KIP-932 share consumers' reads: ShareFetch and ShareAcknowledge.

Versions served:
  ShareFetch (78) 1-2: in a share session (epoch 0 opens it with the
    partitions named, then 1, 2, ...; -1 closes it and fetches nothing), on
    the partitions' leader. Acknowledgements ride along per partition and are
    applied before fetching (their outcome in ``acknowledge_error_code``).
    Each partition acquires for the member what is available from its next
    fetch offset: records released or whose lock expired first, then new
    whole record batches below the high watermark (``max_records`` may be
    exceeded to finish a batch; v2's record-limit acquire mode, 1, does not).
    The answer carries the stored batches holding acquired records and the
    ``acquired_records`` ranges with their delivery counts; the client hands
    out only those. Long poll: fewer than ``min_bytes`` acquired waits up to
    ``max_wait_ms``, woken by appends and by records made available again.
    The answer lists the partitions with records, an error or an
    acknowledgement, as Kafka's (the opening one included). Of the
    share-partitions a fetch starts (first read, state read from the share
    coordinator), only the first with records is read in its answer, as
    Kafka's answers once the first of them has initialised; the others are
    read from the next fetch on.
    v2 ``is_renew_ack``: renew acknowledgements (type 4) extend locks, and
    nothing is fetched.
  ShareAcknowledge (79) 1-2: acknowledgements only, in the same session
    (epoch 0 is INVALID_SHARE_SESSION_EPOCH; -1 closes the session).

Acknowledgement types: 0 gap, 1 accept, 2 release, 3 reject (4 renew with
``is_renew_ack``). Each partition's acknowledgements apply all or nothing:
INVALID_RECORD_STATE if an offset is not held by the member (its lock
expired, or another member holds it).

State: odradek/share/partition.py (one share-partition),
odradek/share/sessions.py (share sessions), odradek/share/manager.py (the
share-partitions this broker leads, the lock timer, and their state in
``__share_group_state``, odradek/coordinator/share_state.py: read when a
share-partition starts here, written before acknowledgements are answered
and after records are released or their locks expire). Broker settings:
group.share.record.lock.duration.ms (30000), group.share.delivery.count.limit
(5), group.share.partition.max.record.locks (2000),
group.share.max.share.sessions (2000).

Group configs (odradek/metadata/group_configs.py): share.auto.offset.reset
(latest, earliest, by_duration) places a share-partition's start when the
group first reads it; share.record.lock.duration.ms sets the group's locks;
share.isolation.level=read_committed reads below the last stable offset and
archives the records of aborted transactions (transaction markers are never
delivered).

A share-partition whose share coordinator is not available yet (its
partition of ``__share_group_state`` being elected or loaded, or
unreachable) is not read: it is left out of the answer, as Kafka leaves out
one still initialising, and tried again by the next request.

Acquisitions are not written: after a restart or a change of leader,
records that were only acquired are delivered again.
"""

from __future__ import annotations

import asyncio

from odradek.apis.partitions import LeaderHints
from odradek.clock import now_ms
from odradek.protocol import errors
from odradek.protocol.batch import iter_batches
from odradek.server.registry import handles
from odradek.share.sessions import FINAL_EPOCH, INITIAL_EPOCH
from odradek.storage.base import OffsetOutOfRange

RECORD_LIMIT_MODE = 1


def _acks(batches) -> list[tuple[int, int, list[int]]]:
    return [(b["first_offset"], b["last_offset"], list(b["acknowledge_types"])) for b in batches or ()]


def _requested(request: dict) -> dict:
    """(topic id, index) -> acknowledgement batches, in the request's order."""
    out: dict = {}
    for t in request["topics"]:
        for p in t["partitions"]:
            out[(bytes(t["topic_id"]), p["partition_index"])] = _acks(p["acknowledgement_batches"])
    return out


def partition_entry(index: int, code: int = 0) -> dict:
    """A ShareFetch partition's answer: ``code``, no records (an empty set, not null)."""
    return {"partition_index": index, "error_code": code, "error_message": None,
            "acknowledge_error_code": 0, "acknowledge_error_message": None,
            "current_leader": {"leader_id": -1, "leader_epoch": -1}, "records": b"", "acquired_records": []}


def _acknowledge(broker, group_id: str, member_id: str, requested: dict, renew: bool) -> dict:
    """Apply the acknowledgements of ``requested``: (topic id, index) -> error code."""
    out = {}
    for (tid, index), batches in requested.items():
        if not batches:
            continue
        p, code = broker.replicas.partition_or_error(tid, index)
        if not code:
            code = broker.share.acknowledge(group_id, member_id, p, batches, renew)
        out[(tid, index)] = code
    return out


def _unwritten(ack_codes: dict, failed: dict) -> None:
    """Acknowledgements are answered once the new state is committed by the
    share coordinator; those whose state could not be written answer its
    error (the client may see those records again)."""
    for key, code in failed.items():
        if not ack_codes.get(key, -1):
            ack_codes[key] = code


def _by_topic(entries: list[tuple[tuple[bytes, int], dict]]) -> list[dict]:
    out: list[dict] = []
    for (tid, _), entry in entries:
        if not out or out[-1]["topic_id"] != tid:
            out.append({"topic_id": tid, "partitions": []})
        out[-1]["partitions"].append(entry)
    return out


def _deliverable(batches, aborted) -> list[tuple[int, int, bool]]:
    """``(base, last, deliver)`` of each batch read: transaction markers, and
    with read_committed the batches of aborted transactions, are not delivered."""
    starts = sorted((a.first_offset, a.producer_id) for a in aborted)
    active: set[int] = set()
    i = 0
    out = []
    for _, _, h in batches:
        while i < len(starts) and starts[i][0] <= h.base_offset:
            active.add(starts[i][1])
            i += 1
        if h.is_control:
            active.discard(h.producer_id)
            out.append((h.base_offset, h.last_offset, False))
        else:
            out.append((h.base_offset, h.last_offset, not (h.is_transactional and h.producer_id in active)))
    return out


def _acquire(broker, group_id: str, member_id: str, p, sp, entry: dict, limit: int, records_left: int,
             first: bool, strict: bool) -> tuple[int, int]:
    """Acquire what is available of ``p`` (share-partition ``sp``) into ``entry``: (bytes, records)."""
    share = broker.share
    now = now_ms()
    if sp.expire(now):
        p.notify()
    if not sp.can_acquire():
        return 0, 0
    offset = sp.next_fetch_offset()
    committed = share.read_committed(group_id)
    if offset >= (p.last_stable_offset if committed else p.high_watermark):
        return 0, 0
    aborted = []
    try:
        if committed:
            result, aborted = p.read_committed(offset, max(limit, 1), min_one=first)
        else:
            result = p.read_for_consumer(offset, max(limit, 1), min_one=first)
    except OffsetOutOfRange:
        sp.log_start_moved(p.log_start_offset)
        return 0, 0
    batches = []  # (buffer, position, header)
    for chunk in result.chunks:
        for pos, h in iter_batches(chunk):
            batches.append((chunk, pos, h))
    acquired = sp.acquire(member_id, _deliverable(batches, aborted), now, records_left, strict=strict)
    if not acquired:
        return 0, 0
    share.arm(now + sp.config.lock_duration_ms)
    chunks = []
    size = 0
    for buf, pos, h in batches:
        if h.is_control:
            continue
        if any(first_off <= h.last_offset and h.base_offset <= last_off for first_off, last_off, _ in acquired):
            chunks.append(memoryview(buf)[pos:pos + h.size])
            size += h.size
    entry["records"] = (entry["records"] or []) + chunks
    entry["acquired_records"] += [{"first_offset": a, "last_offset": b, "delivery_count": c}
                                  for a, b, c in acquired]
    return size, sum(b - a + 1 for a, b, _ in acquired)


@handles("ShareFetch", 1, 2)
async def share_fetch(ctx, request: dict) -> dict:
    broker = ctx.broker
    share = broker.share
    lock_ms = share.lock_duration_ms(request["group_id"] or "")

    def top(code: int, message: str | None = None) -> dict:
        return {"error_code": code, "error_message": message, "acquisition_lock_timeout_ms": lock_ms,
                "responses": []}

    group_id, member_id, epoch = request["group_id"], request["member_id"], request["share_session_epoch"]
    if not group_id:
        return top(errors.INVALID_GROUP_ID, "The group id is missing.")
    if not member_id:
        return top(errors.INVALID_REQUEST, "The member id is missing.")
    requested = _requested(request)
    renew = ctx.version >= 2 and request["is_renew_ack"]
    if epoch == INITIAL_EPOCH:
        if any(requested.values()):
            return top(errors.INVALID_REQUEST, "Acknowledgements are not allowed when opening a share session.")
        code, session, replaced = share.sessions.open(group_id, member_id, requested, ctx.connection)
        if code:
            return top(code)
        if replaced is not None:
            share.release_session(replaced)
    else:
        code, session = share.sessions.advance(group_id, member_id, epoch)
        if code:
            return top(code)
        if epoch != FINAL_EPOCH:
            for key in requested:
                session.partitions.setdefault(key, None)
            for t in request["forgotten_topics_data"]:
                for index in t["partitions"]:
                    session.partitions.pop((bytes(t["topic_id"]), index), None)

    fetching = [] if epoch == FINAL_EPOCH or renew else list(session.partitions)
    waiting = set()  # share-partitions whose share coordinator is not available yet: nothing to read
    starting = set()  # share-partitions this fetch starts
    for key in fetching:  # share-partitions starting here read their persisted state
        p, code = broker.replicas.partition_or_error(*key)
        if not code and share.find(group_id, p) is None:
            starting.add(key)
        if not code and await share.load(group_id, p) is None:
            waiting.add(key)
    ack_codes = _acknowledge(broker, group_id, member_id, requested, renew)
    _unwritten(ack_codes, await share.written(group_id, ack_codes))
    if epoch == FINAL_EPOCH:
        share.close_session(session)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(request["max_wait_ms"], 0) / 1000
    max_records = request["max_records"] if request["max_records"] > 0 else 500
    strict = ctx.version >= 2 and request["share_acquire_mode"] == RECORD_LIMIT_MODE
    entries: dict = {}
    total = records = 0
    started_read = False
    while True:
        touched = []
        for key in fetching:
            tid, index = key
            p, code = broker.replicas.partition_or_error(tid, index)
            if key not in entries or code:
                entries[key] = partition_entry(index, code)
            entry = entries[key]
            if code:
                continue
            touched.append(p)
            if key in waiting:  # not read until its share coordinator answers (as Kafka's initialising)
                continue
            if records >= max_records or total >= request["max_bytes"]:
                continue
            if key in starting and started_read:  # as Kafka's: the first one starting with records answers
                continue
            # Through load(), never a bare get(): a share-partition that starts here
            # meanwhile (a new leader epoch during a long poll) reads its state first.
            sp = await share.load(group_id, p)
            if sp is None:
                continue  # its share coordinator is not available (yet): nothing to read
            size, n = _acquire(broker, group_id, member_id, p, sp, entry, request["max_bytes"] - total,
                               max_records - records, total == 0, strict)
            started_read = started_read or (key in starting and n > 0)
            total += size
            records += n
        remaining = deadline - loop.time()
        if total >= max(request["min_bytes"], 1) or records >= max_records or remaining <= 0 or not touched \
                or ctx.connection.closed:
            break
        fut = loop.create_future()
        for p in touched:
            p.add_waiter(fut)
        try:
            await asyncio.wait_for(fut, remaining)
        except asyncio.TimeoutError:
            pass  # one last pass: a lock may have expired meanwhile
        finally:
            for p in touched:
                p.discard_waiter(fut)
        if loop.time() >= deadline:
            deadline = loop.time()  # the next pass answers, whatever it finds

    out = []
    for key, entry in entries.items():
        if key in ack_codes:
            entry["acknowledge_error_code"] = ack_codes[key]
        if entry["error_code"] or entry["acquired_records"] or key in ack_codes:
            out.append((key, entry))
    for key, code in ack_codes.items():
        if key not in entries:
            e = partition_entry(key[1])
            e["acknowledge_error_code"] = code
            out.append((key, e))
    hints = LeaderHints(broker, ctx.connection.listener)
    for (tid, index), entry in out:
        hints.hint(tid, index, entry)
    response = {"error_code": 0, "error_message": None, "acquisition_lock_timeout_ms": lock_ms,
                "responses": _by_topic(out)}
    if hints.leaders:
        response["node_endpoints"] = hints.node_endpoints()
    return response


@handles("ShareAcknowledge", 1, 2)
async def share_acknowledge(ctx, request: dict) -> dict:
    broker = ctx.broker
    share = broker.share

    def top(code: int, message: str | None = None) -> dict:
        return {"error_code": code, "error_message": message,
                "acquisition_lock_timeout_ms": share.lock_duration_ms(group_id or ""), "responses": []}

    group_id, member_id, epoch = request["group_id"], request["member_id"], request["share_session_epoch"]
    if not group_id:
        return top(errors.INVALID_GROUP_ID, "The group id is missing.")
    if not member_id:
        return top(errors.INVALID_REQUEST, "The member id is missing.")
    if epoch == INITIAL_EPOCH:
        return top(errors.INVALID_SHARE_SESSION_EPOCH, "ShareAcknowledge cannot open a share session.")
    code, session = share.sessions.advance(group_id, member_id, epoch)
    if code:
        return top(code)
    requested = _requested(request)
    ack_codes = _acknowledge(broker, group_id, member_id, requested, ctx.version >= 2 and request["is_renew_ack"])
    _unwritten(ack_codes, await share.written(group_id, ack_codes))
    if epoch == FINAL_EPOCH:
        share.close_session(session)
    out = []
    hints = LeaderHints(broker, ctx.connection.listener)
    for key in requested:
        tid, index = key
        entry = {"partition_index": index, "error_code": ack_codes.get(key, 0), "error_message": None,
                 "current_leader": {"leader_id": -1, "leader_epoch": -1}}
        hints.hint(tid, index, entry)
        out.append((key, entry))
    response = {"error_code": 0, "error_message": None,
                "acquisition_lock_timeout_ms": share.lock_duration_ms(group_id),
                "responses": _by_topic(out)}
    if hints.leaders:
        response["node_endpoints"] = hints.node_endpoints()
    return response
