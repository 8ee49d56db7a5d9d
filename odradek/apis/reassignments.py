"""AlterPartitionReassignments (key 45) v0-1 and ListPartitionReassignments
(key 46) v0: moving a partition's replicas between brokers (KIP-455).

Both are served by the active controller (``odradek.cluster.controller``),
to which admin clients send them (the controller named in Metadata); any
other broker answers NOT_CONTROLLER at the top level, so the client looks
the controller up again.

Alter, per partition: a target replica list starts (or replaces) a
reassignment, a null one cancels the ongoing one. Refused as Kafka refuses
them: INVALID_REPLICA_ASSIGNMENT (an empty list, duplicates, a broker that
is not registered), UNKNOWN_TOPIC_OR_PARTITION, NO_REASSIGNMENT_IN_PROGRESS
(cancelling none), INVALID_REPLICATION_FACTOR (v1, KIP-860: a target of
another size when ``allow_replication_factor_change`` is false). The answer is sent once the reassignment's first state
is written (fenced by the controller epoch) and is in the controller's
image; the data moves afterwards, and the controller completes the
reassignment when every added replica is in the ISR. List answers the
ongoing reassignments (all, or those of the partitions named): replicas,
adding and removing replicas.

Not served: ``timeout_ms`` is not a bound of its own (the controller makes
a bounded number of write rounds; a partition still contended after them
is answered REQUEST_TIMED_OUT); no replication throttles. Under ACLs Alter
needs ALTER and List DESCRIBE on the cluster (``odradek.security.checks``).
"""

from __future__ import annotations

from odradek.cluster.controller import NotController
from odradek.protocol import errors
from odradek.server.registry import handles


def _controller(ctx):
    controller = ctx.broker.controller
    if controller is None or not controller.active:
        raise NotController()
    return controller


@handles("AlterPartitionReassignments", 0, 1)
async def alter_partition_reassignments(ctx, request: dict) -> dict:
    wanted: list[tuple[str, int, list[int] | None]] = []
    for t in request["topics"]:
        for p in t["partitions"]:
            replicas = p["replicas"]
            wanted.append((t["name"], p["partition_index"], None if replicas is None else list(replicas)))
    allow = request.get("allow_replication_factor_change", True) if ctx.version >= 1 else True
    response = {"allow_replication_factor_change": allow, "error_code": 0, "error_message": None}
    try:
        results = await _controller(ctx).alter_reassignments(wanted, allow)
    except NotController:
        code = errors.NOT_CONTROLLER
        results = {(name, index): (code, None) for name, index, _ in wanted}
        response.update(error_code=code, error_message="This broker is not the controller.")
    by_topic: dict[str, list[dict]] = {}
    for (name, index), (code, message) in results.items():
        by_topic.setdefault(name, []).append({"partition_index": index, "error_code": code,
                                              "error_message": message})
    response["responses"] = [{"name": name, "partitions": parts} for name, parts in by_topic.items()]
    return response


@handles("ListPartitionReassignments", 0, 0)
async def list_partition_reassignments(ctx, request: dict) -> dict:
    asked = request["topics"]
    wanted = None if asked is None else [(t["name"], i) for t in asked for i in t["partition_indexes"]]
    try:
        ongoing = _controller(ctx).list_reassignments(wanted)
    except NotController:
        return {"error_code": errors.NOT_CONTROLLER, "error_message": "This broker is not the controller.",
                "topics": []}
    return {"error_code": 0, "error_message": None, "topics": [
        {"name": name, "partitions": [
            {"partition_index": i, "replicas": list(s.replicas), "adding_replicas": list(s.adding),
             "removing_replicas": list(s.removing)} for i, s in parts]}
        for name, parts in ongoing.items()]}
