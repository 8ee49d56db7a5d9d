"""KIP-932 share groups: ShareGroupHeartbeat, ShareGroupDescribe, and the
share group offsets.

Versions served:
  ShareGroupHeartbeat (76) 1: the member id is chosen by the client; epoch 0
    joins (SubscribedTopicNames required), -1 leaves. Partitions are
    assigned on the broker by the simple assignor (members may share a
    partition).
  ShareGroupDescribe (77) 1: members, their subscriptions and assignments;
    a group of another type answers GROUP_ID_NOT_FOUND ("Group g is not a
    share group.").
  DescribeShareGroupOffsets (90) 0-1: each share-partition's start offset,
    the leader epoch and (v1) the lag (records below the high watermark not
    yet acknowledged or archived), read from the share coordinators with
    ReadShareGroupStateSummary; -1 for a partition the group has not read;
    all the share-partitions of the group with a state when no topics are
    named.
  AlterShareGroupOffsets (91) 0: sets the start offset of share-partitions
    of an empty group (NON_EMPTY_GROUP otherwise), creating the group if
    missing, with InitializeShareGroupState to their share coordinators;
    the share-partition starts afresh there (within the log).
  DeleteShareGroupOffsets (92) 0: an empty group's share-partitions of the
    named topics are forgotten by their share coordinators
    (DeleteShareGroupState; the next read starts where
    share.auto.offset.reset says).

Behaviour lives in odradek/coordinator/share_groups.py, in the shard of the
group's ``__consumer_offsets`` partition, beside the classic and consumer
groups (ListGroups reports share groups with type "share", DeleteGroups
deletes an empty one and its share-partitions' state). The share-partitions
(what was acquired and acknowledged) are kept by the partitions' leader
(odradek/share/manager.py, odradek/apis/share_fetch.py) and written to
``__share_group_state`` by this broker's share coordinator
(odradek/coordinator/share_state.py); the offsets APIs read and change
them at their share coordinators, on this broker or another
(odradek/share/manager.py routes each share-partition's key). The lag is
computed from this broker's replica of the partition (-1 when it has
none).

Broker settings: group.share.heartbeat.interval.ms (5000),
group.share.session.timeout.ms (45000), group.share.max.size (200); the
group configs share.heartbeat.interval.ms and share.session.timeout.ms
override the first two per group.

Not implemented: the share-partition initialisation Kafka records in the
group (ShareGroupStatePartitionMetadata, key 15): Describe without topics
asks the share coordinators about every partition of every topic and
lists those with a state; rack-aware assignment.
"""

from __future__ import annotations

from odradek.apis.groups import _client_host, _coordinator, _heartbeat_unavailable, _shard
from odradek.protocol import errors
from odradek.security.authorizer import ResourceType
from odradek.security.checks import authorized_operations
from odradek.server.registry import handles


@handles("ShareGroupHeartbeat", 1, 1)
async def share_group_heartbeat(ctx, request: dict) -> dict:
    gc, shard, code = await _shard(ctx, request["group_id"], create=request["member_epoch"] == 0)
    if code:
        return _heartbeat_unavailable(code)
    res = gc.execute(
        shard, shard.share_group_heartbeat,
        group_id=request["group_id"],
        member_id=request["member_id"],
        member_epoch=request["member_epoch"],
        rack_id=request["rack_id"],
        subscribed_topic_names=request["subscribed_topic_names"],
        client_id=ctx.client_id or "",
        client_host=_client_host(ctx),
    )
    return dict(await ctx.wait(gc.answer(shard, res)))  # once what it wrote is committed


@handles("ShareGroupDescribe", 1, 1)
async def share_group_describe(ctx, request: dict) -> dict:
    gc = await _coordinator(ctx, create=False)
    groups = []
    for gid in request["group_ids"]:
        shard, code = gc.shard_for(gid) if gc is not None else (None, errors.COORDINATOR_NOT_AVAILABLE)
        if code:
            groups.append({"group_id": gid, "error_code": code})
        else:
            described = shard.share_group_describe([gid])
            if request["include_authorized_operations"]:
                for g in described:
                    g["authorized_operations"] = authorized_operations(ctx, ResourceType.GROUP, gid)
            groups.extend(described)
    return {"groups": groups}


# -- share group offsets -----------------------------------------------------

async def _offsets_check(ctx, group_id: str, mode: str) -> tuple[int, str | None]:
    """The group-level answer of a share group offsets request (``mode``:
    describe, alter, delete), from the group's coordinator shard."""
    gc, shard, code = await _shard(ctx, group_id, create=mode == "alter")
    if code:
        return code, None
    res = gc.execute(shard, shard.share_offsets_check, group_id, mode)
    response = await gc.answer(shard, res)
    return response["error_code"], response["error_message"]


def _replica(broker, name: str, index: int):
    """This broker's replica of a partition (leader or follower), or None."""
    p, code = broker.replicas.partition_or_error(name, index, leader_required=False)
    return None if code else p


@handles("DescribeShareGroupOffsets", 0, 1)
async def describe_share_group_offsets(ctx, request: dict) -> dict:
    broker = ctx.broker
    groups = []
    for rg in request["groups"]:
        gid = rg["group_id"]
        code, message = await _offsets_check(ctx, gid, "describe")
        entry = {"group_id": gid, "error_code": code, "error_message": message, "topics": []}
        groups.append(entry)
        if code:
            continue
        every = rg["topics"] is None
        if every:  # the share-partitions the share coordinators keep a state of
            requested = [(t.name, list(range(len(t.partitions)))) for t in broker.image if not t.internal]
        else:
            requested = [(t["topic_name"], t["partitions"]) for t in rg["topics"]]
        keys = []
        for name, indexes in requested:
            state = broker.image.get(name)
            if state is not None:
                keys += [(gid, state.topic_id, i) for i in indexes if 0 <= i < len(state.partitions)]
        summaries = await broker.share.summaries(gid, keys)
        for name, indexes in requested:
            state = broker.image.get(name)
            parts = []
            for index in indexes:
                part = {"partition_index": index, "start_offset": -1, "leader_epoch": -1, "lag": -1,
                        "error_code": 0, "error_message": None}
                if state is None or not 0 <= index < len(state.partitions):
                    part.update(error_code=errors.UNKNOWN_TOPIC_OR_PARTITION,
                                error_message="This server does not host this topic-partition.")
                    parts.append(part)
                    continue
                pcode, summary = summaries[(gid, state.topic_id, index)]
                if pcode:
                    part.update(error_code=pcode, error_message="The share coordinator is not available."
                                if pcode == errors.COORDINATOR_NOT_AVAILABLE else None)
                elif summary["start_offset"] >= 0:
                    start = summary["start_offset"]
                    part.update(start_offset=start, leader_epoch=summary["leader_epoch"])
                    p = _replica(broker, name, index)
                    if p is not None:  # the lag, from this broker's replica of the partition
                        if p.log_start_offset > start:
                            start, done = p.log_start_offset, 0
                        else:
                            done = max(0, summary["delivery_complete_count"])
                        part.update(start_offset=start, lag=max(0, p.high_watermark - start - done))
                elif every:
                    continue  # no state: not one of the group's
                parts.append(part)
            if parts or not every:
                entry["topics"].append({"topic_name": name, "topic_id": state.topic_id if state else bytes(16),
                                        "partitions": parts})
    return {"groups": groups}


@handles("AlterShareGroupOffsets", 0, 0)
async def alter_share_group_offsets(ctx, request: dict) -> dict:
    broker = ctx.broker
    gid = request["group_id"]
    code, message = await _offsets_check(ctx, gid, "alter")
    responses = []
    for t in request["topics"]:
        state = broker.image.get(t["topic_name"])
        parts = []
        for rp in t["partitions"]:
            pcode, pmessage = code, message
            index = rp["partition_index"]
            if not pcode and (state is None or not 0 <= index < len(state.partitions)):
                pcode, pmessage = errors.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition."
            if not pcode and rp["start_offset"] < 0:
                pcode, pmessage = errors.INVALID_REQUEST, "The start offset must not be negative."
            if not pcode:
                start = rp["start_offset"]
                p, _ = broker.replicas.partition_or_error(t["topic_name"], index)
                if p is not None:  # led here: within the log (elsewhere its leader moves it up to the log start)
                    start = min(max(start, p.log_start_offset), p.high_watermark)
                pcode = await broker.share.initialize(gid, (gid, state.topic_id, index), start)
                if pcode:
                    pmessage = "The share coordinator is not available." \
                        if pcode == errors.COORDINATOR_NOT_AVAILABLE else None
            parts.append({"partition_index": index, "error_code": pcode, "error_message": pmessage})
        responses.append({"topic_name": t["topic_name"], "topic_id": state.topic_id if state else bytes(16),
                          "partitions": parts})
    return {"error_code": code, "error_message": message, "responses": responses}


@handles("DeleteShareGroupOffsets", 0, 0)
async def delete_share_group_offsets(ctx, request: dict) -> dict:
    broker = ctx.broker
    gid = request["group_id"]
    code, message = await _offsets_check(ctx, gid, "delete")
    responses = []
    for t in request["topics"]:
        state = broker.image.get(t["topic_name"])
        tcode, tmessage = code, message
        if not tcode and state is None:
            tcode, tmessage = errors.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition."
        if not tcode:
            await broker.share.delete_states(gid, [(gid, state.topic_id, i) for i in range(len(state.partitions))])
        responses.append({"topic_name": t["topic_name"], "topic_id": state.topic_id if state else bytes(16),
                          "error_code": tcode, "error_message": tmessage})
    return {"error_code": code, "error_message": message, "responses": responses}
