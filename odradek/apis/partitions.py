"""The per-partition answer of the APIs that act on partitions one by one
(ListOffsets, OffsetForLeaderEpoch, DeleteRecords): each requested
(topic, partition) is looked up once, through the replica manager, and a
found partition is handed to the API's own ``answer``; the response keeps the
request's topic order and field names. Serves no API itself."""

from __future__ import annotations

from typing import Callable


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
