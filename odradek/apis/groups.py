"""Consumer groups: the classic group protocol and committed offsets.

Versions served:
  FindCoordinator (10) 0-6: key types 0 (group) and 1 (transactional id,
    the leader of its ``__transaction_state`` partition); batched keys from v4.
  JoinGroup (11) 0-9: MEMBER_ID_REQUIRED from v4, static membership from v5,
    skip_assignment for a static leader rejoining a stable group from v9.
  SyncGroup (14) 0-5, Heartbeat (12) 0-4, LeaveGroup (13) 0-5 (batched from v3).
  OffsetCommit (8) 2-10 (topic ids from v10), OffsetFetch (9) 1-10 (several
    groups per request from v8, topic ids from v10).
  DescribeGroups (15) 0-6 (v6: GROUP_ID_NOT_FOUND for unknown groups),
  ListGroups (16) 0-5 (states filter v4, types filter v5: "classic",
  "consumer", "share" or "streams"), DeleteGroups (42) 0-2, OffsetDelete (47) 0.

Behaviour lives in odradek/coordinator/ (docs/coordinator.md): classic
groups in classic_groups.py, offsets in offsets.py, both in the shard of the
group's ``__consumer_offsets`` partition (shard.py), which the group
coordinator (group_coordinator.py) finds; this module only maps requests and
responses to it, version by version. A group whose shard is still loading gets
COORDINATOR_LOAD_IN_PROGRESS, one whose partition this broker does not lead
NOT_COORDINATOR; FindCoordinator names this broker for a group whose
partition it leads, else answers COORDINATOR_NOT_AVAILABLE (as Kafka does
when it knows no leader: other brokers are not known yet).

KIP-848 consumer groups (ConsumerGroupHeartbeat, ConsumerGroupDescribe) are
served by odradek/apis/consumer_groups.py and share the group table: their
OffsetCommit (v9+) checks the member epoch (STALE_MEMBER_EPOCH), as does
OffsetFetch v9+ given a member id and epoch; ListGroups reports them with
type "consumer"; DescribeGroups answers Dead for them (v6: GROUP_ID_NOT_FOUND,
"not a classic group"); a JoinGroup for one with members answers
INCONSISTENT_GROUP_PROTOCOL (an empty one turns classic).

OffsetFetch v7+ with ``require_stable`` answers UNSTABLE_OFFSET_COMMIT for a
partition whose transactional offset (TxnOffsetCommit, odradek/apis/transactions.py)
awaits its transaction's marker.

Share groups (odradek/apis/share_groups.py) and streams groups
(odradek/apis/streams_groups.py) share the table too: ListGroups
reports them with type "share" / "streams", DescribeGroups as not classic
groups; OffsetCommit and OffsetFetch answer GROUP_ID_NOT_FOUND for share
groups, and check a streams group member's epoch as a consumer group's.

Not implemented: ACLs (authorized operations report READ,
DELETE and DESCRIBE), OffsetCommit v0-1.
"""

from __future__ import annotations

from odradek.protocol import errors
from odradek.security.authorizer import ResourceType
from odradek.security.checks import authorized_operations
from odradek.server.registry import handles

GROUP_KEY, TRANSACTION_KEY = 0, 1


def _heartbeat_unavailable(code: int) -> dict:
    """A ConsumerGroupHeartbeat or ShareGroupHeartbeat answer with only an error
    (no coordinator here, loading, not available)."""
    return {"error_code": code, "error_message": None, "member_id": None,
            "member_epoch": 0, "heartbeat_interval_ms": 0, "assignment": None}


def _client_host(ctx) -> str:
    peer = getattr(ctx.connection, "peer", None)
    if isinstance(peer, tuple) and peer:
        return "/" + str(peer[0])
    return ""


async def _coordinator(ctx, create: bool = True):
    """The group coordinator, with ``__consumer_offsets`` in place; None if unavailable."""
    gc = getattr(ctx.broker, "groups", None)
    if gc is None:
        return None
    if create and not await gc.ensure_topic():
        return None
    return gc


async def _shard(ctx, group_id: str | None, create: bool = True):
    """(coordinator, shard of ``group_id``, 0), or (coordinator or None, None,
    the error the request gets: COORDINATOR_NOT_AVAILABLE,
    COORDINATOR_LOAD_IN_PROGRESS or NOT_COORDINATOR)."""
    gc = await _coordinator(ctx, create)
    if gc is None:
        return None, None, errors.COORDINATOR_NOT_AVAILABLE
    shard, code = gc.shard_for(group_id)
    return gc, shard, code


# -- FindCoordinator ---------------------------------------------------------

@handles("FindCoordinator", 0, 6)
async def find_coordinator(ctx, request: dict) -> dict:
    broker = ctx.broker
    version = ctx.version
    keys = request["coordinator_keys"] if version >= 4 else [request["key"]]
    key_type = request["key_type"]
    code, message = 0, None
    gc = None
    if key_type == GROUP_KEY:
        gc = await _coordinator(ctx)
        if gc is None:
            code, message = errors.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available."
    elif key_type == TRANSACTION_KEY:
        tc = getattr(broker, "transactions", None)
        if tc is None or not await tc.ensure_topic():
            code, message = errors.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available."
    else:
        code, message = errors.INVALID_REQUEST, f"Unsupported key type {key_type}."
    nowhere = {"node_id": -1, "host": "", "port": -1}
    entries = []
    for k in keys:
        # A group's coordinator is the live leader of its __consumer_offsets
        # partition, on the listener the request came in on; none is known
        # while that partition is offline.
        if code:
            node = None
        elif key_type == TRANSACTION_KEY:
            node = tc.coordinator_node(k, ctx.connection.listener)
        else:
            node = coordinator_node(broker, gc, k, ctx.connection.listener)
        c, m = (code, message) if node is not None or code else \
            (errors.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
        entries.append(dict(node or nowhere, key=k, error_code=c, error_message=m if c else ""))
    if version >= 4:
        return {"coordinators": entries}
    e = entries[0]  # before v4, Kafka's success message is Errors.NONE's: "NONE"
    return {"error_code": e["error_code"], "error_message": e["error_message"] or "NONE",
            "node_id": e["node_id"], "host": e["host"], "port": e["port"]}


def coordinator_node(broker, gc, group_id: str, listener: str | None) -> dict | None:
    """The live broker leading ``group_id``'s ``__consumer_offsets`` partition, or None."""
    from odradek.coordinator.group_coordinator import OFFSETS_TOPIC

    state = broker.image.get(OFFSETS_TOPIC)
    index = gc.partition_for(group_id)
    if state is None or index >= len(state.partitions):
        return None
    leader = state.partitions[index].leader
    if leader == broker.config.node_id:
        host, port = broker.endpoint(listener)
        return {"node_id": leader, "host": host, "port": port}
    info = broker.image.brokers.get(leader)
    endpoint = info.endpoint(listener) if info is not None else None
    if endpoint is None:
        return None
    return {"node_id": leader, "host": endpoint[0], "port": endpoint[1]}


# -- JoinGroup / SyncGroup / Heartbeat / LeaveGroup -------------------------

def _join_out(resp: dict, version: int) -> dict:
    out = dict(resp)
    if version < 7 and out.get("protocol_name") is None:
        out["protocol_name"] = ""
    if out.get("leader") is None:
        out["leader"] = ""
    return out


@handles("JoinGroup", 0, 9)
async def join_group(ctx, request: dict) -> dict:
    gc, shard, code = await _shard(ctx, request["group_id"])
    if code:
        return _join_out({"error_code": code, "generation_id": -1,
                          "member_id": request["member_id"], "members": []}, ctx.version)
    res = gc.execute(
        shard, shard.join_group,
        group_id=request["group_id"],
        member_id=request["member_id"] or "",
        instance_id=request["group_instance_id"],
        session_timeout=request["session_timeout_ms"],
        rebalance_timeout=request["rebalance_timeout_ms"],
        protocol_type=request["protocol_type"],
        protocols=[(p["name"], p["metadata"]) for p in request["protocols"]],
        client_id=ctx.client_id or "",
        client_host=_client_host(ctx),
        require_known_member_id=ctx.version >= 4,
        supports_skip_assignment=ctx.version >= 9,
    )
    return _join_out(await ctx.wait(gc.wait(res)), ctx.version)


@handles("SyncGroup", 0, 5)
async def sync_group(ctx, request: dict) -> dict:
    gc, shard, code = await _shard(ctx, request["group_id"])
    if code:
        return {"error_code": code, "assignment": b""}
    res = gc.execute(
        shard, shard.sync_group,
        group_id=request["group_id"],
        generation=request["generation_id"],
        member_id=request["member_id"],
        instance_id=request["group_instance_id"],
        protocol_type=request["protocol_type"],
        protocol_name=request["protocol_name"],
        assignments=[(a["member_id"], a["assignment"]) for a in request["assignments"]],
    )
    return dict(await ctx.wait(gc.wait(res)))


@handles("Heartbeat", 0, 4)
async def heartbeat(ctx, request: dict) -> dict:
    gc, shard, code = await _shard(ctx, request["group_id"], create=False)
    if code:
        return {"error_code": code}
    res = gc.execute(shard, shard.heartbeat, group_id=request["group_id"], generation=request["generation_id"],
                     member_id=request["member_id"], instance_id=request["group_instance_id"])
    return dict(await ctx.wait(gc.answer(shard, res)))


@handles("LeaveGroup", 0, 5)
async def leave_group(ctx, request: dict) -> dict:
    version = ctx.version
    if version >= 3:
        members = [(m["member_id"], m["group_instance_id"]) for m in request["members"]]
    else:
        members = [(request["member_id"], None)]
    gc, shard, code = await _shard(ctx, request["group_id"], create=False)
    if code:
        return {"error_code": code, "members": []}
    res = gc.execute(shard, shard.leave_group, group_id=request["group_id"], members=members)
    resp = await ctx.wait(gc.answer(shard, res))
    if version < 3 and resp["error_code"] == 0 and resp["members"]:
        return {"error_code": resp["members"][0]["error_code"]}
    return dict(resp)


# -- OffsetCommit / OffsetFetch ---------------------------------------------

@handles("OffsetCommit", 2, 10)
async def offset_commit(ctx, request: dict) -> dict:
    broker = ctx.broker
    by_id = ctx.version >= 10
    topics = []
    for t in request["topics"]:
        if by_id:
            topic = broker.image.get(t["topic_id"])
            name = topic.name if topic is not None else None
        else:
            name = t["name"]
        parts = [(p["partition_index"], p["committed_offset"], p["committed_leader_epoch"],
                  p["committed_metadata"]) for p in t["partitions"]]
        topics.append((name, parts))
    gc, shard, code = await _shard(ctx, request["group_id"])
    if code:
        resp = {"topics": [{"name": name, "partitions": [
            {"partition_index": p[0], "error_code": code} for p in parts]}
            for name, parts in topics]}
    else:
        res = gc.execute(
            shard, shard.commit_offsets,
            group_id=request["group_id"],
            generation=request["generation_id_or_member_epoch"],
            member_id=request["member_id"],
            instance_id=request["group_instance_id"],
            topics=topics,
            topic_exists=gc.topic_exists,
            retention_ms=request["retention_time_ms"],
            version=ctx.version,
        )
        resp = await ctx.wait(gc.answer(shard, res))
    if by_id:
        for t, rt in zip(request["topics"], resp["topics"]):
            rt["topic_id"] = t["topic_id"]
            if rt["name"] is None:
                for p in rt["partitions"]:
                    if p["error_code"] == errors.UNKNOWN_TOPIC_OR_PARTITION:
                        p["error_code"] = errors.UNKNOWN_TOPIC_ID
    return dict(resp)


async def _fetch_group(ctx, gc, group_id, topics, by_id: bool, member: tuple | None = None,
                       require_stable: bool = False) -> dict:
    """One group's OffsetFetch answer: {"error_code", "topics"} (topics by id when ``by_id``).
    ``member``: (member id, member epoch) sent from v9, checked for consumer groups.
    Answered once what the shard had written when it was read is committed,
    so a commit that a failover may still lose is never shown."""
    broker = ctx.broker
    if topics is not None:
        wanted = []
        for t in topics:
            if by_id:
                topic = broker.image.get(t["topic_id"])
                wanted.append((topic.name if topic is not None else None, t["partition_indexes"], t["topic_id"]))
            else:
                wanted.append((t["name"], t["partition_indexes"], None))
    if gc is None:
        return {"error_code": errors.COORDINATOR_NOT_AVAILABLE, "topics": []}
    shard, code = gc.shard_for(group_id)
    if code:
        return {"error_code": code, "topics": []}
    wanted_topics = None if topics is None else [(n, ps) for n, ps, _ in wanted]
    if member is not None and (member[0] is not None or member[1] >= 0):
        resp = shard.fetch_offsets(group_id, wanted_topics, member_id=member[0], member_epoch=member[1])
    else:
        resp = shard.fetch_offsets(group_id, wanted_topics)
    if require_stable:  # v7+: a pending transactional offset is not answered (KIP-447)
        for rt in resp["topics"]:
            for p in rt["partitions"]:
                if shard.offsets.unstable(group_id, rt["name"], p["partition_index"]):
                    p.update(error_code=errors.UNSTABLE_OFFSET_COMMIT, committed_offset=-1)
    code = await ctx.wait(gc.settled(shard))
    if code:
        return {"error_code": code, "topics": []}
    if not by_id:
        return resp
    out = []
    if topics is None:
        for rt in resp["topics"]:
            topic = broker.image.get(rt["name"])
            if topic is not None:
                out.append({"topic_id": topic.topic_id, "partitions": rt["partitions"]})
    else:
        for (name, _, topic_id), rt in zip(wanted, resp["topics"]):
            if name is None:
                for p in rt["partitions"]:
                    p["error_code"] = errors.UNKNOWN_TOPIC_ID
            out.append({"topic_id": topic_id, "partitions": rt["partitions"]})
    return {"error_code": resp["error_code"], "topics": out}


@handles("OffsetFetch", 1, 10)
async def offset_fetch(ctx, request: dict) -> dict:
    version = ctx.version
    gc = await _coordinator(ctx, create=False)
    if version >= 8:
        groups = []
        for g in request["groups"]:
            member = (g["member_id"], g["member_epoch"]) if version >= 9 else None
            r = await _fetch_group(ctx, gc, g["group_id"], g["topics"], version >= 10, member,
                             require_stable=request["require_stable"])
            groups.append({"group_id": g["group_id"], "topics": r["topics"], "error_code": r["error_code"]})
        return {"groups": groups}
    topics = request["topics"]
    r = await _fetch_group(ctx, gc, request["group_id"], topics, False,
                     require_stable=version >= 7 and request["require_stable"])
    if version >= 2:
        return {"error_code": r["error_code"], "topics": r["topics"]}
    # v1 has no top-level error: put it on every partition asked for.
    if r["error_code"]:
        r["topics"] = [{"name": t["name"], "partitions": [
            {"partition_index": i, "committed_offset": -1, "metadata": "", "error_code": r["error_code"]}
            for i in t["partition_indexes"]]} for t in (topics or [])]
    return {"topics": r["topics"]}


# -- DescribeGroups / ListGroups / DeleteGroups / OffsetDelete --------------

@handles("DescribeGroups", 0, 6)
async def describe_groups(ctx, request: dict) -> dict:
    gc = await _coordinator(ctx, create=False)
    out = []
    for gid in request["groups"]:
        shard, code = gc.shard_for(gid) if gc is not None else (None, errors.COORDINATOR_NOT_AVAILABLE)
        if code:
            out.append({"group_id": gid, "error_code": code, "group_state": "",
                        "protocol_type": "", "protocol_data": "", "members": []})
        else:
            group = shard.describe_group(gid, ctx.version)
            if request["include_authorized_operations"]:
                group["authorized_operations"] = authorized_operations(ctx, ResourceType.GROUP, gid)
            out.append(group)
    return {"groups": out}


@handles("ListGroups", 0, 5)
async def list_groups(ctx, request: dict) -> dict:
    gc = await _coordinator(ctx, create=False)
    if gc is None:
        return {"error_code": 0, "groups": []}
    code, groups = gc.list_groups(request["states_filter"], request["types_filter"])
    return {"error_code": code, "groups": groups}


@handles("DeleteGroups", 0, 2)
async def delete_groups(ctx, request: dict) -> dict:
    gc = await _coordinator(ctx, create=False)
    if gc is None:
        return {"results": [
            {"group_id": g, "error_code": errors.COORDINATOR_NOT_AVAILABLE} for g in request["groups_names"]]}
    return dict(await ctx.wait(gc.delete_groups(request["groups_names"])))


@handles("OffsetDelete", 0, 0)
async def offset_delete(ctx, request: dict) -> dict:
    gc, shard, code = await _shard(ctx, request["group_id"], create=False)
    if code:
        return {"error_code": code, "topics": []}
    topics = [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in request["topics"]]
    res = gc.execute(shard, shard.delete_offsets, group_id=request["group_id"], topics=topics,
                     topic_exists=gc.topic_exists)
    return dict(await ctx.wait(gc.answer(shard, res)))
