"""ListOffsets (key 2), versions 1-11; OffsetForLeaderEpoch (key 23), versions 2-4.

ListOffsets answers the special timestamps -1 (latest: the high watermark, or
the last stable offset for read_committed: isolation_level 1, v2+),
-2 (earliest), -3 (max timestamp, KIP-734), -4 (earliest local, KIP-405: the
log start, as nothing is tiered) and -5 (earliest pending upload: none, so -1);
any other timestamp finds the first offset below the high watermark whose
timestamp is at or after it. While a new leader's high watermark is behind
the start of its epoch (its followers have not yet fetched), latest and
timestamp lookups answer OFFSET_NOT_AVAILABLE, as Kafka does, and clients retry.
The v0 "old style offsets" form is not served (its spec range starts at 1).
"""

from __future__ import annotations

from odradek.apis.partitions import per_partition
from odradek.protocol import errors
from odradek.server.registry import handles

LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, EARLIEST_PENDING_UPLOAD = -1, -2, -3, -4, -5


class OffsetNotAvailable(Exception):
    """A new leader's high watermark has not reached the start of its epoch:
    offsets below the log end may not be committed yet, so none is answered."""


def list_offset(p, timestamp: int, committed: bool = False) -> dict:
    """Raises ValueError for an unknown special timestamp, OffsetNotAvailable
    (as Kafka) for latest or timestamp lookups while a new leader's high
    watermark is behind the start of its epoch. ``committed``: read_committed."""
    epoch = p.leader_epoch
    lagging = p.epoch_start_offset > p.high_watermark
    if timestamp == LATEST:
        if lagging:
            raise OffsetNotAvailable()
        return {"timestamp": -1, "offset": p.last_stable_offset if committed else p.high_watermark,
                "leader_epoch": epoch}
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return {"timestamp": -1, "offset": p.log_start_offset, "leader_epoch": epoch}
    if timestamp == EARLIEST_PENDING_UPLOAD:
        return {"timestamp": -1, "offset": -1, "leader_epoch": -1}
    if timestamp == MAX_TIMESTAMP:
        offset, ts = p.max_timestamp()
        return {"timestamp": ts, "offset": offset, "leader_epoch": epoch if offset >= 0 else -1}
    if timestamp < 0:
        raise ValueError(timestamp)
    found = p.offset_for_timestamp(timestamp)
    if found is None or found[0] >= p.high_watermark:  # only what consumers can read
        if lagging:
            raise OffsetNotAvailable()
        return {"timestamp": -1, "offset": -1, "leader_epoch": -1}
    offset, ts = found
    return {"timestamp": ts, "offset": offset, "leader_epoch": epoch}


@handles("ListOffsets", 1, 11)
async def list_offsets(ctx, request: dict) -> dict:
    def answer(p, requested: dict, entry: dict) -> None:
        try:
            entry.update(list_offset(p, requested["timestamp"], request.get("isolation_level") == 1))
        except ValueError:
            entry["error_code"] = errors.INVALID_REQUEST
        except OffsetNotAvailable:
            entry["error_code"] = errors.OFFSET_NOT_AVAILABLE

    return {"topics": per_partition(ctx.broker, request["topics"], "name", "partition_index", answer,
                                    {}, epoch_field="current_leader_epoch")}


@handles("OffsetForLeaderEpoch", 2, 4)
async def offset_for_leader_epoch(ctx, request: dict) -> dict:
    def answer(p, requested: dict, entry: dict) -> None:
        entry["leader_epoch"], entry["end_offset"] = p.end_offset_for_epoch(requested["leader_epoch"])

    return {"topics": per_partition(ctx.broker, request["topics"], "topic", "partition", answer,
                                    {"leader_epoch": -1, "end_offset": -1},
                                    epoch_field="current_leader_epoch")}
