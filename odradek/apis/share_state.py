"""The share coordinator's inter-broker APIs: share-partition leaders read and
write share-partition state in ``__share_group_state``.

Versions served:
  ReadShareGroupState (84) 0: the start offset, state epoch and state
    batches of each (group, topic id, partition); UNKNOWN_TOPIC_OR_PARTITION
    for one with no state yet, FENCED_LEADER_EPOCH for a leader older than
    the last writer.
  WriteShareGroupState (85) 0-1: a whole new state (a snapshot) of each;
    FENCED_LEADER_EPOCH from a leader older than the last writer.
  DeleteShareGroupState (86) 0: forget the state of each.
  InitializeShareGroupState (83) 0: each starts again at a start offset
    (-1: where its leader's share.auto.offset.reset says) with nothing in
    flight, in a new state epoch (FENCED_STATE_EPOCH unless above the
    current one); a leader that read the state before is fenced
    (FENCED_STATE_EPOCH on its next write) and reads it again.
  ReadShareGroupStateSummary (87) 0-1: the state epoch, leader epoch and
    start offset of each (-1 for one with no state), and (v1) the number of
    offsets from the start whose delivery is complete; what the group
    coordinator's DescribeShareGroupOffsets reads.

Writes (Write, Initialize, Delete) are answered once committed: appended
and replicated to the in-sync replicas of their partition of
``__share_group_state`` (REQUEST_TIMED_OUT after
share.coordinator.write.timeout.ms, 5000). Each partition answers
NOT_COORDINATOR when this broker does not lead the
partition of ``__share_group_state`` its key hashes to. Behaviour lives in
odradek/coordinator/share_state.py; the callers are the share-partition
leaders of odradek/share/manager.py (on this broker directly, on others
through these APIs), and the group coordinators of
odradek/apis/share_groups.py (the share group offsets APIs). Needs
CLUSTER_ACTION on the cluster when ACLs are on.

Not implemented: the initialisation of a share-partition by the group
coordinator when a member first subscribes to its topic (Kafka's
ShareGroupStatePartitionMetadata): its leader writes its first state.
"""

from __future__ import annotations

from odradek.protocol import errors
from odradek.server.registry import handles


async def _each(ctx, request: dict, answer) -> dict:
    """Run ``answer(shard, key, requested partition, entry)`` for every
    requested partition, whose shard is this broker's."""
    coordinator = getattr(ctx.broker.share, "coordinator", None)
    results = []
    for t in request["topics"]:
        tid = bytes(t["topic_id"])
        parts = []
        for rp in t["partitions"]:
            key = (request["group_id"], tid, rp["partition"])
            entry = {"partition": rp["partition"], "error_code": 0, "error_message": None}
            shard = await coordinator.shard_for(key) if coordinator is not None and request["group_id"] else None
            if shard is None:
                entry["error_code"] = errors.NOT_COORDINATOR
                entry["error_message"] = "This is not the correct coordinator."
            else:
                await answer(coordinator, shard, key, rp, entry)
            parts.append(entry)
        results.append({"topic_id": tid, "partitions": parts})
    return {"results": results}


@handles("ReadShareGroupState", 0, 0)
async def read_share_group_state(ctx, request: dict) -> dict:
    async def answer(coordinator, shard, key, rp, entry):
        code, found = shard.read_checked(key, rp["leader_epoch"])
        entry.update(state_epoch=0, start_offset=-1, state_batches=[])
        if code:
            entry["error_code"] = code
        elif found is None:
            entry["error_code"] = errors.UNKNOWN_TOPIC_OR_PARTITION
            entry["error_message"] = "The share-partition has no state."
        else:
            start, batches = found
            entry.update(state_epoch=shard.state_epoch(key), start_offset=start, state_batches=[
                {"first_offset": f, "last_offset": la, "delivery_state": s, "delivery_count": c}
                for f, la, s, c in batches])
    return await _each(ctx, request, answer)


@handles("WriteShareGroupState", 0, 1)
async def write_share_group_state(ctx, request: dict) -> dict:
    async def answer(coordinator, shard, key, rp, entry):
        batches = [(b["first_offset"], b["last_offset"], b["delivery_state"], b["delivery_count"])
                   for b in rp["state_batches"]]
        res = coordinator.execute(shard, shard.write, key, rp["leader_epoch"], rp["start_offset"], batches,
                                  rp["state_epoch"])
        entry["error_code"] = res.response["error_code"] or await coordinator.committed(shard)
    return await _each(ctx, request, answer)


@handles("InitializeShareGroupState", 0, 0)
async def initialize_share_group_state(ctx, request: dict) -> dict:
    async def answer(coordinator, shard, key, rp, entry):
        res = coordinator.execute(shard, shard.initialize, key, rp["state_epoch"], rp["start_offset"])
        entry["error_code"] = res.response["error_code"] or await coordinator.committed(shard)
    return await _each(ctx, request, answer)


@handles("ReadShareGroupStateSummary", 0, 1)
async def read_share_group_state_summary(ctx, request: dict) -> dict:
    async def answer(coordinator, shard, key, rp, entry):
        entry.update(state_epoch=0, leader_epoch=-1, start_offset=-1, delivery_complete_count=-1)
        code, _ = shard.read_checked(key, rp["leader_epoch"])
        if code:
            entry["error_code"] = code
        else:
            entry.update(shard.summary(key))
    return await _each(ctx, request, answer)


@handles("DeleteShareGroupState", 0, 0)
async def delete_share_group_state(ctx, request: dict) -> dict:
    async def answer(coordinator, shard, key, rp, entry):
        code = coordinator.execute(shard, shard.delete, [key]).response["error_code"]
        entry["error_code"] = code or await coordinator.committed(shard)
    return await _each(ctx, request, answer)
