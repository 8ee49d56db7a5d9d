"""ElectLeaders (key 43) v0-2.

Served by the active controller (``odradek.cluster.controller``), to which
admin clients send it (the controller named in Metadata); any other broker
answers NOT_CONTROLLER (top level from v1, and for every partition asked),
so the client looks the controller up again. Election types: PREFERRED (0,
the only one before v1) moves leadership to ``replicas[0]`` if it is live,
in the ISR and not shutting down; UNCLEAN (1) elects a partition without a
live leader from its live ISR, else from any live replica (its ISR is then
itself). Per partition, as Kafka answers: ELECTION_NOT_NEEDED (the preferred
replica leads already; for UNCLEAN, a live leader exists),
PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE,
UNKNOWN_TOPIC_OR_PARTITION. A null partition list means every partition,
and then those that needed no election are left out of the answer. The
answer is sent once each election is written to the store (fenced by the
controller epoch) and is in the controller's image.

Not served: ``timeout_ms`` is not a bound of its own (the controller makes a
bounded number of write rounds; a partition still contended after them is
answered REQUEST_TIMED_OUT). Under ACLs it needs ALTER on the cluster
(``odradek.security.checks``).
"""

from __future__ import annotations

from odradek.cluster.controller import PREFERRED, UNCLEAN, NotController
from odradek.protocol import errors
from odradek.server.registry import handles


def _grouped(results: dict[tuple[str, int], tuple[int, str | None]]) -> list[dict]:
    by_topic: dict[str, list[dict]] = {}
    for (name, index), (code, message) in results.items():
        by_topic.setdefault(name, []).append({"partition_id": index, "error_code": code,
                                              "error_message": message})
    return [{"topic": name, "partition_result": parts} for name, parts in by_topic.items()]


@handles("ElectLeaders", 0, 2)
async def elect_leaders(ctx, request: dict) -> dict:
    broker = ctx.broker
    election_type = request.get("election_type", PREFERRED) if ctx.version >= 1 else PREFERRED
    asked = request["topic_partitions"]
    wanted: list[tuple[str, int]] = []
    if asked is not None:
        for t in asked:
            for index in t["partitions"]:
                if (t["topic"], index) not in wanted:
                    wanted.append((t["topic"], index))
    if election_type not in (PREFERRED, UNCLEAN):
        code = errors.INVALID_REQUEST
        return {"error_code": code, "replica_election_results": _grouped(
            {k: (code, f"Unknown election type {election_type}") for k in wanted})}
    controller = broker.controller
    try:
        if controller is None or not controller.active:
            raise NotController()
        if asked is None:
            wanted = [(t.name, i) for t in broker.image for i in range(len(t.partitions))]
        results = await controller.elect_leaders(wanted, election_type)
    except NotController:
        code = errors.NOT_CONTROLLER
        return {"error_code": code if ctx.version >= 1 else 0,
                "replica_election_results": _grouped({k: (code, None) for k in wanted})}
    if asked is None:
        results = {k: v for k, v in results.items() if v[0] != errors.ELECTION_NOT_NEEDED}
    return {"error_code": 0, "replica_election_results": _grouped(results)}
