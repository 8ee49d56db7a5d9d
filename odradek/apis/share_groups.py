"""KIP-932 share groups: ShareGroupHeartbeat and ShareGroupDescribe.

Versions served:
  ShareGroupHeartbeat (76) 1: the member id is chosen by the client; epoch 0
    joins (SubscribedTopicNames required), -1 leaves. Partitions are
    assigned on the broker by the simple assignor (members may share a
    partition).
  ShareGroupDescribe (77) 1: members, their subscriptions and assignments;
    a group of another type answers GROUP_ID_NOT_FOUND ("Group g is not a
    share group.").

Behaviour lives in odradek/coordinator/share_groups.py, in the shard of the
group's ``__consumer_offsets`` partition, beside the classic and consumer
groups (ListGroups reports share groups with type "share", DeleteGroups
deletes an empty one). The records of a share-partition (what was acquired
and acknowledged) are kept by the partition's leader: see
odradek/apis/share_fetch.py.

Broker settings: group.share.heartbeat.interval.ms (5000),
group.share.session.timeout.ms (45000), group.share.max.size (200).

Not implemented: the share-partition initialisation Kafka records in the
group (ShareGroupStatePartitionMetadata, key 15) and its calls to the share
coordinator; rack-aware assignment; group configs (share.auto.offset.reset
and the others).
"""

from __future__ import annotations

from odradek.apis.groups import _client_host, _coordinator, _shard
from odradek.protocol import errors
from odradek.server.registry import handles


def _unavailable(code: int) -> dict:
    return {"error_code": code, "error_message": None, "member_id": None,
            "member_epoch": 0, "heartbeat_interval_ms": 0, "assignment": None}


@handles("ShareGroupHeartbeat", 1, 1)
async def share_group_heartbeat(ctx, request: dict) -> dict:
    gc, shard, code = await _shard(ctx, request["group_id"], create=request["member_epoch"] == 0)
    if code:
        return _unavailable(code)
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
    return dict(res.response)


@handles("ShareGroupDescribe", 1, 1)
async def share_group_describe(ctx, request: dict) -> dict:
    gc = await _coordinator(ctx, create=False)
    groups = []
    for gid in request["group_ids"]:
        shard, code = gc.shard_for(gid) if gc is not None else (None, errors.COORDINATOR_NOT_AVAILABLE)
        if code:
            groups.append({"group_id": gid, "error_code": code})
        else:
            groups.extend(shard.share_group_describe([gid], request["include_authorized_operations"]))
    return {"groups": groups}
