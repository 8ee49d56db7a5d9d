"""The per-partition answer of the APIs that act on partitions one by one
(ListOffsets, OffsetForLeaderEpoch, DeleteRecords): each requested
(topic, partition) is looked up once, through the replica manager, and a
found partition is handed to the API's own ``answer``; the response keeps the
request's topic order and field names. Also the leader hints of KIP-951
that Produce and Fetch add to NOT_LEADER_OR_FOLLOWER answers. Serves no API
itself."""

from __future__ import annotations

from typing import Callable

from odradek.protocol import errors


def per_partition(broker, topics: list[dict], topic_field: str, index_field: str,
                  answer: Callable[[object, dict, dict], None], blank: dict,
                  epoch_field: str | None = None) -> list[dict]:
    """``[{topic_field: name, "partitions": [entry, ...]}]`` for the request's
    ``topics``: each entry starts as ``blank`` with its index and the lookup's
    error code, and ``answer(partition, requested, entry)`` fills in the rest
    when the partition was found (checking the request's leader epoch when
    ``epoch_field`` names it)."""
    out = []
    for t in topics:
        parts = []
        for requested in t["partitions"]:
            index = requested[index_field]
            epoch = requested[epoch_field] if epoch_field else -1
            p, code = broker.replicas.partition_or_error(t[topic_field], index, current_leader_epoch=epoch)
            entry = dict(blank, error_code=code)
            entry[index_field] = index
            if not code:
                answer(p, requested, entry)
            parts.append(entry)
        out.append({topic_field: t[topic_field], "partitions": parts})
    return out


LEADER_MOVED = (errors.NOT_LEADER_OR_FOLLOWER, errors.FENCED_LEADER_EPOCH)


class LeaderHints:
    """KIP-951: a partition answered NOT_LEADER_OR_FOLLOWER or
    FENCED_LEADER_EPOCH names its current leader and epoch, as the image has
    them (``hint``), and the response lists those leaders' endpoints on the
    request's listener (``node_endpoints``), so a client goes there without
    a Metadata round trip."""

    def __init__(self, broker, listener: str | None):
        self.broker = broker
        self.listener = listener
        self.leaders: set[int] = set()

    def hint(self, topic, index: int, entry: dict) -> None:
        if entry["error_code"] not in LEADER_MOVED:
            return
        state = self.broker.image.get(topic)
        if state is None or not 0 <= index < len(state.partitions):
            return
        s = state.partitions[index]
        if s.leader in self.broker.image.brokers:
            entry["current_leader"] = {"leader_id": s.leader, "leader_epoch": s.leader_epoch}
            self.leaders.add(s.leader)

    def node_endpoints(self) -> list[dict]:
        out = []
        for node_id in sorted(self.leaders):
            info = self.broker.image.brokers.get(node_id)
            ep = info.endpoint(self.listener) if info is not None else None
            if ep is not None:
                out.append({"node_id": node_id, "host": ep[0], "port": ep[1], "rack": info.rack})
        return out
