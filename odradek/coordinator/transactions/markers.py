"""How commit and abort markers reach a partition's leader.

The coordinator hands a :class:`MarkerWriter` one transaction's markers
(producer id, epoch, coordinator epoch, commit or abort, partitions) and
gets back an error code per partition. The one implementation today,
:class:`LocalMarkerWriter`, appends to the partitions this broker leads
through ``Partition.append_marker`` -- the same call the WriteTxnMarkers
handler makes for a coordinator on another broker. A partition led by
another broker answers NOT_LEADER_OR_FOLLOWER and is retried: sending it
WriteTxnMarkers (batched per broker, as Kafka's marker channel manager does)
comes with the cluster work.

``write_marker`` is the one place a marker is appended: after a marker on a
``__consumer_offsets`` partition the group coordinator materialises (commit)
or drops (abort) that producer's pending transactional offsets, as Kafka's
WriteTxnMarkers handler does.
"""

from __future__ import annotations

import logging

from odradek.clock import now_ms
from odradek.protocol import errors

log = logging.getLogger("odradek.transactions")
OFFSETS_TOPIC = "__consumer_offsets"


def write_marker(broker, p, producer_id: int, producer_epoch: int, coordinator_epoch: int,
                 commit: bool) -> int:
    """Append one marker to partition ``p`` (led here); 0 or the error."""
    code = p.append_marker(producer_id, producer_epoch, coordinator_epoch, commit, now_ms())
    if not code and p.topic.name == OFFSETS_TOPIC and getattr(broker, "groups", None) is not None:
        broker.groups.complete_transaction(p.index, producer_id, commit)
    return code


class LocalMarkerWriter:
    """Markers for partitions this broker leads, appended at once."""

    def __init__(self, broker):
        self.broker = broker
        self._warned = False

    async def write(self, producer_id: int, producer_epoch: int, coordinator_epoch: int, commit: bool,
                    partitions) -> dict:
        out = {}
        for topic, index in partitions:
            p, code = self.broker.replicas.partition_or_error(topic, index)
            if code:
                t = self.broker.image.get(topic)
                if t is None or not 0 <= index < len(t.partitions):
                    code = errors.UNKNOWN_TOPIC_OR_PARTITION
                elif not self._warned:
                    self._warned = True
                    log.warning("markers for %s-%d wait: it is led by another broker, and sending "
                                "WriteTxnMarkers to other brokers is not served yet", topic, index)
                out[(topic, index)] = code
                continue
            out[(topic, index)] = write_marker(self.broker, p, producer_id, producer_epoch,
                                               coordinator_epoch, commit)
        return out
