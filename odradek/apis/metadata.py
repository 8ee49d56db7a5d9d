"""Metadata (key 3), versions 0-13; DescribeCluster (key 60), versions 0-2.

One broker leads every partition; replicas and ISR are that broker. Topics are
auto-created on Metadata when the request allows it (v4+, always before) and
the broker's ``auto.create.topics.enable`` is on; internal topics never are.
Authorized operations are not computed (no ACLs yet): the fields keep their
"not requested" default. Topic ids are stable UUIDs kept in the metadata
store; what is reported comes from the topic image read from it.
"""

from odradek.topic_admin import TopicError, validate_topic_name
from odradek.protocol import errors
from odradek.server.registry import handles


def broker_list(broker, listener: str | None) -> list[dict]:
    """This broker as seen through ``listener``, the one the request came in on."""
    rack = broker.config.get("broker.rack") or None
    host, port = broker.endpoint(listener)
    return [{"node_id": broker.config.node_id, "host": host, "port": port, "rack": rack}]


def topic_metadata(topic) -> dict:
    """A topic of the image (``odradek.metadata.topics.TopicState``) as Metadata reports it."""
    return {
        "error_code": 0,
        "name": topic.name,
        "topic_id": topic.topic_id,
        "is_internal": topic.internal,
        "partitions": [
            {"error_code": 0, "partition_index": i, "leader_id": p.leader,
             "leader_epoch": p.leader_epoch, "replica_nodes": list(p.replicas), "isr_nodes": list(p.isr),
             "offline_replicas": []}
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
    topics = []
    if wanted is None:
        topics = [topic_metadata(t) for t in broker.image]
    else:
        for entry in wanted:
            name = entry["name"]
            if name is None and ctx.version >= 10:
                t = broker.image.get(entry["topic_id"])
                if t is None:
                    topics.append({"error_code": errors.UNKNOWN_TOPIC_ID, "name": None,
                                   "topic_id": entry["topic_id"], "partitions": []})
                else:
                    topics.append(topic_metadata(t))
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
            topics.append(topic_metadata(t))
    return {
        "throttle_time_ms": 0,
        "brokers": broker_list(broker, ctx.connection.listener),
        "cluster_id": broker.cluster_id,
        "controller_id": broker.config.node_id,
        "topics": topics,
    }


@handles("DescribeCluster", 0, 2)
async def describe_cluster(ctx, request: dict) -> dict:
    broker = ctx.broker
    endpoint_type = request.get("endpoint_type", 1)
    if endpoint_type not in (1, 2):
        return {"error_code": errors.UNSUPPORTED_ENDPOINT_TYPE,
                "error_message": "Unsupported endpoint type", "cluster_id": broker.cluster_id}
    return {
        "throttle_time_ms": 0,
        "error_code": 0,
        "error_message": None,
        "endpoint_type": endpoint_type,
        "cluster_id": broker.cluster_id,
        "controller_id": broker.config.node_id,
        "brokers": [{"broker_id": b["node_id"], "host": b["host"], "port": b["port"], "rack": b["rack"],
                     "is_fenced": False}
                    for b in broker_list(broker, ctx.connection.listener)],
    }
