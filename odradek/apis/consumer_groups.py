"""KIP-848 consumer groups: ConsumerGroupHeartbeat and ConsumerGroupDescribe.

Versions served:
  ConsumerGroupHeartbeat (68) 0-1: v1 requires the client's member id and
    takes a server-side regular expression subscription (matched in full
    against every topic name, internal ones included, with RE2 as Kafka's
    RE2/J reads it; see odradek/coordinator/topic_regex.py). With ACLs the
    regex keeps only the topics the heartbeat's principal may DESCRIBE, as
    Kafka resolves it (its authorisation: odradek/security/checks.py).
  ConsumerGroupDescribe (69) 0-1: v1 reports each member's type (always
    1, consumer protocol: classic-protocol members cannot join a consumer
    group here). A classic or unknown group answers GROUP_ID_NOT_FOUND, which
    makes the admin clients fall back to DescribeGroups.

Behaviour lives in odradek/coordinator/consumer_groups.py, in the shard of
the group's ``__consumer_offsets`` partition (see odradek/apis/groups.py for
the errors of a shard loading or not led here); offsets of consumer groups
go through OffsetCommit/OffsetFetch (odradek/apis/groups.py), which check
the member epoch from OffsetCommit v9 and OffsetFetch v9.

Broker settings: group.consumer.heartbeat.interval.ms (5000),
group.consumer.session.timeout.ms (45000), group.consumer.max.size
(unbounded), group.consumer.assignors (uniform,range; the first is the
default).
"""

from __future__ import annotations

from odradek.apis.groups import _client_host, _coordinator, _heartbeat_unavailable, _shard
from odradek.protocol import errors
from odradek.security.authorizer import Operation as Op, ResourceType
from odradek.security.checks import allowed, authorized_operations
from odradek.server.registry import handles


@handles("ConsumerGroupHeartbeat", 0, 1)
async def consumer_group_heartbeat(ctx, request: dict) -> dict:
    gc, shard, code = await _shard(ctx, request["group_id"], create=request["member_epoch"] == 0)
    if code:
        return _heartbeat_unavailable(code)
    res = gc.execute(
        shard, shard.consumer_group_heartbeat,
        group_id=request["group_id"],
        member_id=request["member_id"],
        member_epoch=request["member_epoch"],
        instance_id=request["instance_id"],
        rack_id=request["rack_id"],
        rebalance_timeout_ms=request["rebalance_timeout_ms"],
        subscribed_topic_names=request["subscribed_topic_names"],
        subscribed_topic_regex=request["subscribed_topic_regex"],
        server_assignor=request["server_assignor"],
        topic_partitions=request["topic_partitions"],
        client_id=ctx.client_id or "",
        client_host=_client_host(ctx),
        version=ctx.version,
        topic_filter=_describable(ctx),
    )
    return dict(await ctx.wait(gc.answer(shard, res)))


def _describable(ctx):
    """With ACLs, the filter keeping the topics the request's principal may
    DESCRIBE (what a regex subscription may resolve to, as in Kafka); else None."""
    if ctx.broker.authorizer is None:
        return None
    return lambda names: [n for n in names if allowed(ctx, Op.DESCRIBE, ResourceType.TOPIC, n)]


@handles("ConsumerGroupDescribe", 0, 1)
async def consumer_group_describe(ctx, request: dict) -> dict:
    gc = await _coordinator(ctx, create=False)
    groups = []
    for gid in request["group_ids"]:
        shard, code = gc.shard_for(gid) if gc is not None else (None, errors.COORDINATOR_NOT_AVAILABLE)
        if code:
            groups.append({"group_id": gid, "error_code": code})
        else:
            described = shard.consumer_group_describe([gid])
            if request["include_authorized_operations"]:
                for g in described:
                    g["authorized_operations"] = authorized_operations(ctx, ResourceType.GROUP, gid)
            groups.extend(described)
    return {"groups": groups}
