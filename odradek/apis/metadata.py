"""Metadata (key 3), versions 0-13; DescribeCluster (key 60), versions 0-2.

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
ones refused (``odradek.security.checks``, around this handler). Authorised
operations, when asked for (topics: Metadata v8+; the cluster: Metadata
v8-10 and DescribeCluster), are the operations the principal may do to the
resource (``checks.authorized_operations``; all of them with no
authoriser); not asked for, the fields keep their "not requested" default.
Topic ids are stable UUIDs kept in the metadata store; what is reported
comes from the topic image read from it.
"""

from odradek.topic_admin import TopicError, validate_topic_name
from odradek.protocol import errors
from odradek.security.authorizer import ResourceType
from odradek.security.checks import authorized_operations, cluster_authorized_operations
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


@handles("Metadata", 0, 13)
async def metadata(ctx, request: dict) -> dict:
    broker = ctx.broker
    wanted = request["topics"]
    if ctx.version == 0 and not wanted:
        wanted = None
    allow_auto = request["allow_auto_topic_creation"] if ctx.version >= 4 else True
    brokers = broker_list(broker, ctx.connection.listener)
    live = {b["node_id"] for b in brokers}
    topics = []
    if wanted is None:
        topics = [topic_metadata(t, live) for t in broker.image]
    else:
        for entry in wanted:
            name = entry["name"]
            if name is None and ctx.version >= 10:
                t = broker.image.get(entry["topic_id"])
                if t is None:
                    topics.append({"error_code": errors.UNKNOWN_TOPIC_ID, "name": None,
                                   "topic_id": entry["topic_id"], "partitions": []})
                else:
                    topics.append(topic_metadata(t, live))
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
            topics.append(topic_metadata(t, live))
    response = {
        "brokers": brokers,
        "cluster_id": broker.cluster_id,
        "controller_id": controller_id(broker, live),
        "topics": topics,
    }
    if ctx.version >= 8 and request.get("include_topic_authorized_operations"):
        for t in topics:
            if t.get("name"):
                t["topic_authorized_operations"] = authorized_operations(ctx, ResourceType.TOPIC, t["name"])
    if 8 <= ctx.version <= 10 and request.get("include_cluster_authorized_operations"):
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
