"""Metadata (key 3), versions 0-13; DescribeCluster (key 60), versions 0-2;
DescribeTopicPartitions (key 75), v0.

Brokers are the live ones registered in the metadata store (this one always),
each on the listener the request came in on; the controller id is the
elected controller of the image (``odradek.cluster.controller``), or the
lowest live broker id while there is none. Partitions are reported with
their replicas and ISR as the store has them (ISR members and replicas not
live are left out of the ISR and listed offline); a partition whose leader
is not live, or that has none (-1), is reported without one
(LEADER_NOT_AVAILABLE), as Kafka reports an offline partition. Topics are
auto-created on Metadata when the request allows it (v4+, always before) and
the broker's ``auto.create.topics.enable`` is on; internal topics never are.
Under ACLs, unauthorised topics are left out of a full listing and named
ones refused (``odradek.security.checks``, around this handler). Authorized
operations (KIP-430: ``include_topic_authorized_operations``, v8+;
``include_cluster_authorized_operations``, Metadata v8-10 and
DescribeCluster) come from ``odradek.security.checks.authorized_operations``,
the authoriser's answer for each operation of the resource (all of them
without ACLs); a refused topic keeps the "not requested" value, and the
cluster's field is 0 without DESCRIBE on it, as in Kafka. Topic ids are stable UUIDs kept in the metadata
store; what is reported comes from the topic image read from it.

Each topic's entry is kept encoded between requests (``encoded_topic``), on
the image's topic (``TopicState.derived``), under the version, the live
brokers and the authorized operations asked for; the image drops it whenever
it changes the topic (leaders, ISR, replicas, epochs, partitions added; a
deleted topic goes with its entry), so a Metadata request for topics that
did not change only copies their bytes (10,000 partitions: well under a
millisecond; docs/performance.md).

DescribeTopicPartitions (KIP-966; the Java admin client's describeTopics
prefers it) reports the same partitions in name order, paged: at most
``response_partition_limit`` partitions (capped by the broker's
``max.request.partition.size.limit``, 2000) from the cursor on, with the
cursor of the next partition when more are left. It never creates topics.
Eligible leader replicas are not kept (KIP-966's ELR is off, as on a Kafka
cluster without ``eligible.leader.replicas.version``): both ELR lists are empty.
Each topic found carries its authorized operations (the request has no flag
for them: Kafka always fills them in).
"""

from odradek.topic_admin import TopicError, validate_topic_name
from odradek.protocol import errors
from odradek.protocol.schema import Encoded, codec
from odradek.security.checks import authorized_operations, cluster_authorized_operations
from odradek.security.authorizer import ResourceType
from odradek.server.registry import handles


def broker_list(broker, listener: str | None) -> list[dict]:
    """The live brokers as seen through ``listener``, the one the request came in on."""
    out = {}
    for b in broker.image.brokers.values():
        ep = b.endpoint(listener)
        if ep is not None:
            out[b.node_id] = {"node_id": b.node_id, "host": ep[0], "port": ep[1], "rack": b.rack}
    if broker.config.node_id not in out:  # not registered yet (starting): itself
        host, port = broker.endpoint(listener)
        out[broker.config.node_id] = {"node_id": broker.config.node_id, "host": host, "port": port,
                                      "rack": broker.config.get("broker.rack") or None}
    return [out[k] for k in sorted(out)]


def controller_id(broker, live) -> int:
    """The image's controller, else (none elected yet) the lowest live broker id."""
    c = broker.image.controller_id
    return c if c >= 0 else min(live)


def topic_metadata(topic, live: set[int]) -> dict:
    """A topic of the image (``odradek.metadata.topics.TopicState``) as Metadata
    reports it; a partition whose leader is not live has none
    (LEADER_NOT_AVAILABLE), as Kafka reports an offline partition. The ISR is
    reported as stored (never empty), the replicas not live as offline."""
    return {
        "error_code": 0,
        "name": topic.name,
        "topic_id": topic.topic_id,
        "is_internal": topic.internal,
        "partitions": [
            {"error_code": 0 if p.leader in live else errors.LEADER_NOT_AVAILABLE,
             "partition_index": i, "leader_id": p.leader if p.leader in live else -1,
             "leader_epoch": p.leader_epoch, "replica_nodes": list(p.replicas),
             "isr_nodes": list(p.isr),
             "offline_replicas": [r for r in p.replicas if r not in live]}
            for i, p in enumerate(topic.partitions)
        ],
    }


def encoded_topic(ctx, topic, live: set[int], live_key: tuple, with_ops: bool) -> Encoded:
    """A topic's Metadata entry, encoded for the request's version. The bytes
    are kept on the topic (``TopicState.derived``, emptied by the image when
    the topic changes) under what else they depend on: the version, the live
    brokers and the topic's authorized operations when asked for (v8+).
    ``fields`` has its error code, name and id, for the ACL filter."""
    ops = authorized_operations(ctx, ResourceType.TOPIC, topic.name) if with_ops else None
    key = ("Metadata", ctx.version, live_key, ops)
    cache = topic.derived
    found = cache.get(key)
    if found is None:
        if len(cache) >= 32:  # versions, live sets, principals' operations: drop the oldest
            del cache[next(iter(cache))]
        entry = topic_metadata(topic, live)
        if ops is not None:
            entry["topic_authorized_operations"] = ops
        raw = codec("MetadataResponse", ctx.version).encode_element(("topics",), entry)
        found = cache[key] = Encoded(raw, {"error_code": 0, "name": topic.name, "topic_id": topic.topic_id})
    return found


@handles("Metadata", 0, 13)
async def metadata(ctx, request: dict) -> dict:
    broker = ctx.broker
    wanted = request["topics"]
    if ctx.version == 0 and not wanted:
        wanted = None
    allow_auto = request["allow_auto_topic_creation"] if ctx.version >= 4 else True
    brokers = broker_list(broker, ctx.connection.listener)
    live = {b["node_id"] for b in brokers}
    live_key = tuple(sorted(live))
    with_ops = ctx.version >= 8 and bool(request.get("include_topic_authorized_operations"))
    topics = []
    if wanted is None:
        topics = [encoded_topic(ctx, t, live, live_key, with_ops) for t in broker.image]
    else:
        for entry in wanted:
            name = entry["name"]
            if name is None and ctx.version >= 10:
                t = broker.image.get(entry["topic_id"])
                if t is None:
                    topics.append({"error_code": errors.UNKNOWN_TOPIC_ID, "name": None,
                                   "topic_id": entry["topic_id"], "partitions": []})
                else:
                    topics.append(encoded_topic(ctx, t, live, live_key, with_ops))
                continue
            t = broker.image.get(name)
            if t is None:
                code = errors.UNKNOWN_TOPIC_OR_PARTITION
                try:
                    validate_topic_name(name)
                    if allow_auto and not name.startswith("__") and await broker.admin.auto_create(name):
                        t = broker.image.get(name)
                except TopicError as e:
                    code = e.error_code
                if t is None:
                    topics.append({"error_code": code, "name": name, "partitions": []})
                    continue
            topics.append(encoded_topic(ctx, t, live, live_key, with_ops))
    response = {
        "brokers": brokers,
        "cluster_id": broker.cluster_id,
        "controller_id": controller_id(broker, live),
        "topics": topics,
    }
    if ctx.version >= 8:
        if with_ops:  # the topics found carry theirs (encoded_topic)
            for t in topics:
                if type(t) is dict and t.get("name") is not None:
                    t["topic_authorized_operations"] = authorized_operations(ctx, ResourceType.TOPIC, t["name"])
        if ctx.version <= 10 and request.get("include_cluster_authorized_operations"):
            response["cluster_authorized_operations"] = cluster_authorized_operations(ctx)
    return response


@handles("DescribeCluster", 0, 2)
async def describe_cluster(ctx, request: dict) -> dict:
    broker = ctx.broker
    brokers = broker_list(broker, ctx.connection.listener)
    endpoint_type = request.get("endpoint_type", 1)
    if endpoint_type not in (1, 2):
        return {"error_code": errors.UNSUPPORTED_ENDPOINT_TYPE,
                "error_message": "Unsupported endpoint type", "cluster_id": broker.cluster_id}
    return {
        "error_code": 0,
        "error_message": None,
        "endpoint_type": endpoint_type,
        "cluster_id": broker.cluster_id,
        "controller_id": controller_id(broker, {b["node_id"] for b in brokers}),
        "brokers": [{"broker_id": b["node_id"], "host": b["host"], "port": b["port"], "rack": b["rack"],
                     "is_fenced": False}
                    for b in brokers],
        **({"cluster_authorized_operations": cluster_authorized_operations(ctx)}
           if request.get("include_cluster_authorized_operations") else {}),
    }


DESCRIBE_TOPIC_PARTITIONS_LIMIT = "max.request.partition.size.limit"


@handles("DescribeTopicPartitions", 0, 0)
async def describe_topic_partitions(ctx, request: dict) -> dict:
    broker = ctx.broker
    live = {b["node_id"] for b in broker_list(broker, ctx.connection.listener)}
    limit = min(max(request["response_partition_limit"], 1),
                broker.config.get_int(DESCRIBE_TOPIC_PARTITIONS_LIMIT, 2000))
    names = sorted({t["name"] for t in request["topics"]}) if request["topics"] \
        else sorted(t.name for t in broker.image)
    cursor = request["cursor"]
    if cursor is not None:
        names = [n for n in names if n >= cursor["topic_name"]]
    topics, next_cursor, left = [], None, limit
    for name in names:
        t = broker.image.get(name)
        if t is None:
            topics.append({"error_code": errors.UNKNOWN_TOPIC_OR_PARTITION, "name": name,
                           "topic_id": bytes(16), "is_internal": False, "partitions": []})
            continue
        if left == 0:
            next_cursor = {"topic_name": name, "partition_index": 0}
            break
        entry = topic_metadata(t, live)
        first = cursor["partition_index"] if cursor is not None and name == cursor["topic_name"] else 0
        parts = [dict(p, eligible_leader_replicas=[], last_known_elr=[])
                 for p in entry["partitions"][first:]]
        if len(parts) > left:
            next_cursor = {"topic_name": name, "partition_index": parts[left]["partition_index"]}
            parts = parts[:left]
        left -= len(parts)
        entry["partitions"] = parts
        entry["topic_authorized_operations"] = authorized_operations(ctx, ResourceType.TOPIC, name)  # always, as Kafka
        topics.append(entry)
        if next_cursor is not None:
            break
    return {"topics": topics, "next_cursor": next_cursor}
