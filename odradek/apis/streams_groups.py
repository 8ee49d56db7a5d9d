"""KIP-1071 streams groups: StreamsGroupHeartbeat and StreamsGroupDescribe.

Versions served:
  StreamsGroupHeartbeat (88) 0-1: the member id is chosen by the client;
    epoch 0 joins with the topology (subtopologies, source topics or
    regular expressions, repartition and changelog topics, copartition
    groups), -1 leaves (-2, a static member leaving for a while, is
    treated as leaving). Tasks (active and standby) are assigned on the
    broker; the statuses MISSING_SOURCE_TOPICS, MISSING_INTERNAL_TOPICS,
    INCORRECTLY_PARTITIONED_TOPICS, STALE_TOPOLOGY and SHUTDOWN_APPLICATION
    are answered; the internal topics (repartition, changelog) are created
    by the broker if the member may CREATE them (on the cluster, else each
    topic; else the status says so), and a member joining must be allowed to
    DESCRIBE every topic its topology names (else TOPIC_AUTHORIZATION_FAILED)
    and name neither Kafka's internal topics nor illegal names (else
    STREAMS_INVALID_TOPOLOGY). v1's TopologyDescriptionRequired is always false.
  StreamsGroupDescribe (89) 0-1: members (process, endpoint, task offsets
    reported, current and target tasks) and the configured topology; v1's
    topology description is NOT_REQUESTED/NOT_STORED (not kept), the
    assignor name "sticky". A group of another type answers
    GROUP_ID_NOT_FOUND ("Group g is not a streams group.").

Behaviour lives in odradek/coordinator/streams_groups.py, in the shard of
the group's ``__consumer_offsets`` partition, beside the classic, consumer
and share groups (ListGroups reports streams groups with type and protocol
type "streams"; DescribeGroups answers them as not classic groups;
DeleteGroups deletes an empty one; OffsetCommit v9+ checks the member
epoch as for consumer groups).

Broker settings: group.streams.heartbeat.interval.ms (5000),
group.streams.session.timeout.ms (45000), group.streams.max.size
(unbounded), group.streams.num.standby.replicas (0),
group.streams.initial.rebalance.delay.ms (3000, before a new group's first
assignment; ASSIGNMENT_DELAYED meanwhile); the group configs
streams.heartbeat.interval.ms, streams.session.timeout.ms and
streams.num.standby.replicas override the first two and the last per group.

Not implemented: warm-up tasks (never assigned; acceptable recovery lag
answered 10000), StreamsGroupTopologyDescriptionUpdate (93), rack-aware
(client tags) standby placement, topology updates (INVALID_REQUEST, as
Kafka 4.4), static membership beyond recording the instance id.
"""

from __future__ import annotations

from odradek.apis.groups import _client_host, _coordinator, _shard
from odradek.coordinator.streams_groups import MISSING_INTERNAL_TOPICS, _hb_error
from odradek.metadata.topics import INTERNAL_TOPICS
from odradek.protocol import errors
from odradek.security.authorizer import Operation as Op, ResourceType
from odradek.security.authorizer import ResourceType as T
from odradek.security.checks import allowed, authorized_operations
from odradek.server.registry import handles
from odradek.topic_admin import TopicError, validate_topic_name


def _topology_topics(topology: dict) -> set[str]:
    out: set[str] = set()
    for sub in topology["subtopologies"]:
        out.update(sub["source_topics"] or ())
        out.update(sub["repartition_sink_topics"] or ())
        out.update(t["name"] for t in sub["repartition_source_topics"] or ())
        out.update(t["name"] for t in sub["state_changelog_topics"] or ())
    return out


def _check_topology_topics(ctx, topology: dict) -> dict | None:
    """The answer refusing a topology's topics, as Kafka checks them before
    its coordinator sees the request, or None: Kafka's internal topics and
    illegal names are STREAMS_INVALID_TOPOLOGY, a topic the member may not
    DESCRIBE is TOPIC_AUTHORIZATION_FAILED."""
    names = _topology_topics(topology)
    internal = sorted(n for n in names if n in INTERNAL_TOPICS)
    if internal:
        return _hb_error(errors.STREAMS_INVALID_TOPOLOGY,
                         f"Use of Kafka internal topics {', '.join(internal)} in a Kafka Streams topology is prohibited.")
    invalid = []
    for n in sorted(names):
        try:
            validate_topic_name(n)
        except TopicError:
            invalid.append(n)
    if invalid:
        return _hb_error(errors.STREAMS_INVALID_TOPOLOGY, f"Topic names {', '.join(invalid)} are not valid topic names.")
    if any(not allowed(ctx, Op.DESCRIBE, T.TOPIC, n) for n in names):
        return _hb_error(errors.TOPIC_AUTHORIZATION_FAILED)
    return None


@handles("StreamsGroupHeartbeat", 0, 1)
async def streams_group_heartbeat(ctx, request: dict) -> dict:
    if request["topology"] is not None:
        refused = _check_topology_topics(ctx, request["topology"])
        if refused is not None:
            return refused
    gc, shard, code = await _shard(ctx, request["group_id"], create=request["member_epoch"] == 0)
    if code:
        return _hb_error(code)
    res = gc.execute(shard, shard.streams_group_heartbeat, request=request,
                     client_id=ctx.client_id or "", client_host=_client_host(ctx))
    to_create = (res.response or {}).pop("internal_topics_to_create", None)
    if to_create:
        _create_internal_topics(ctx, gc, res.response, to_create)
    return dict(await ctx.wait(gc.answer(shard, res)))  # once what it wrote is committed


def _create_internal_topics(ctx, gc, response: dict, to_create: list) -> None:
    """Create the missing internal topics in the background, as Kafka's
    broker does: all of them, if the member may CREATE them (on the cluster,
    else on each topic), else none, the status saying which it may not;
    a creation that failed lately is told in the status too."""
    if allowed(ctx, Op.CREATE, T.CLUSTER, ""):
        denied = []
    else:
        denied = [t[0] for t in to_create if not allowed(ctx, Op.CREATE, T.TOPIC, t[0])]
    if denied:
        note = "Unauthorized to CREATE on topics " + ", ".join(denied) + "."
    else:
        gc.create_internal_topics(to_create)
        failures = gc.internal_topic_errors([t[0] for t in to_create])
        note = "; ".join(f"{name}: {message}" for name, message in failures) if failures else None
    if note:
        for st in response["status"]:
            if st["status_code"] == MISSING_INTERNAL_TOPICS:
                st["status_detail"] += " " + note


@handles("StreamsGroupDescribe", 0, 1)
async def streams_group_describe(ctx, request: dict) -> dict:
    gc = await _coordinator(ctx, create=False)
    groups = []
    for gid in request["group_ids"]:
        shard, code = gc.shard_for(gid) if gc is not None else (None, errors.COORDINATOR_NOT_AVAILABLE)
        if code:
            groups.append({"group_id": gid, "error_code": code})
        else:
            described = shard.streams_group_describe([gid])
            for g in described:
                if request["include_authorized_operations"]:
                    g["authorized_operations"] = authorized_operations(ctx, ResourceType.GROUP, gid)
                if ctx.version >= 1 and not g["error_code"] and request.get("include_topology_description"):
                    g["topology_description_status"] = 1  # NOT_STORED: odradek keeps no description
            groups.extend(described)
    return {"groups": groups}
