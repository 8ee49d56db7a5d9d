"""Fetch (key 1), versions 4-18, for consumers (replica fetches come with clusters).

Long poll: when fewer than ``min_bytes`` are available the request waits up
to ``max_wait_ms`` and is woken at once by an append to any partition it
asked for. Limits: ``partition_max_bytes`` per partition and ``max_bytes`` per
response, except that the first partition with data always gets at least one
whole batch (KIP-74), so a large message is never stuck; after it, a batch
that does not fit in what is left of either limit is not sent (Kafka would
send its first bytes, which the client drops). Records are handed out as the
stored batches, whole; clients skip records before their offset.

Fetch sessions (KIP-227) are not kept: every response carries session id 0,
which tells the client to send full requests; a request naming a session gets
FETCH_SESSION_ID_NOT_FOUND. read_committed reads up to the last stable offset,
which equals the high watermark until transactions arrive. Reads from follower
replicas (KIP-392) and replica fetches are not served.
"""

from __future__ import annotations

import asyncio

from odradek.protocol import errors
from odradek.server.registry import handles
from odradek.storage.base import OffsetOutOfRange


def _partition_error(index: int, code: int) -> dict:
    return {"partition_index": index, "error_code": code, "high_watermark": -1,
            "last_stable_offset": -1, "log_start_offset": -1, "records": None}


def read_partitions(broker, request: dict, version: int) -> tuple[list, int, list]:
    """One pass over the requested partitions: (responses, bytes, partitions read)."""
    budget = request["max_bytes"]
    total = 0
    touched = []
    responses = []
    for ft in request["topics"]:
        key = ft["topic_id"] if version >= 13 else ft["topic"]
        parts = []
        for fp in ft["partitions"]:
            index = fp["partition"]
            p, code = broker.replicas.partition_or_error(
                key, index, current_leader_epoch=fp["current_leader_epoch"])
            if code:
                parts.append(_partition_error(index, code))
                continue
            hw = p.high_watermark
            entry = {"partition_index": index, "error_code": 0, "high_watermark": hw,
                     "last_stable_offset": p.last_stable_offset, "log_start_offset": p.log_start_offset,
                     "aborted_transactions": None, "records": b""}
            touched.append(p)
            offset = fp["fetch_offset"]
            limit = min(fp["partition_max_bytes"], budget - total)
            if offset < hw and (limit > 0 or total == 0):
                try:
                    # Only the first partition with data may exceed its limit.
                    result = p.read_for_consumer(offset, max(limit, 1), min_one=total == 0)
                except OffsetOutOfRange:
                    entry["error_code"] = errors.OFFSET_OUT_OF_RANGE
                else:
                    if result.size:
                        entry["records"] = result.chunks
                        total += result.size
            elif offset > p.log_end_offset or offset < p.log_start_offset:
                entry["error_code"] = errors.OFFSET_OUT_OF_RANGE
            parts.append(entry)
        responses.append({"topic": ft["topic"], "topic_id": ft["topic_id"], "partitions": parts})
    return responses, total, touched


@handles("Fetch", 4, 18)
async def fetch(ctx, request: dict) -> dict:
    broker = ctx.broker
    version = ctx.version
    if version >= 7 and request["session_id"] != 0:
        return {"throttle_time_ms": 0, "error_code": errors.FETCH_SESSION_ID_NOT_FOUND,
                "session_id": 0, "responses": []}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(request["max_wait_ms"], 0) / 1000
    min_bytes = request["min_bytes"]
    while True:
        responses, total, touched = read_partitions(broker, request, version)
        remaining = deadline - loop.time()
        if total >= min_bytes or remaining <= 0 or not touched or ctx.connection.closed:
            break
        fut = loop.create_future()
        for p in touched:
            p.add_waiter(fut)
        try:
            await asyncio.wait_for(fut, remaining)
        except asyncio.TimeoutError:
            pass
        finally:
            for p in touched:
                p.discard_waiter(fut)
    return {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": responses}
