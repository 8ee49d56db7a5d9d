"""How commit and abort markers reach a partition's leader.

The coordinator hands a :class:`MarkerWriter` one transaction's markers
(producer id, epoch, coordinator epoch, commit or abort, partitions) and
gets back an error code per partition; partitions answering a retriable
error are sent again. A partition this broker leads gets its marker at once
through ``Partition.append_marker`` (``write_marker``); the others are sent
WriteTxnMarkers (v1), one request per leader, over a connection to its
inter-broker listener -- the receiving broker's handler appends through the
same ``write_marker``. A partition with no leader answers
LEADER_NOT_AVAILABLE and waits.

``write_marker`` is the one place a marker is appended: after a marker on a
``__consumer_offsets`` partition the group coordinator materialises (commit)
or drops (abort) that producer's pending transactional offsets, as Kafka's
WriteTxnMarkers handler does. ``write_markers`` writes them as Kafka does,
acks=all: refused NOT_ENOUGH_REPLICAS while a partition's ISR is below its
``min.insync.replicas``, and answered only once the marker is replicated
(REQUEST_TIMED_OUT, or NOT_LEADER_OR_FOLLOWER when leadership is lost first:
the coordinator sends it again, to the new leader). So a transaction is
never recorded complete with a marker that a failover may still lose.
"""

from __future__ import annotations

import asyncio
import logging

from odradek.clock import now_ms
from odradek.protocol import errors

log = logging.getLogger("odradek.transactions")
OFFSETS_TOPIC = "__consumer_offsets"
MARKER_TIMEOUT_S = 30.0  # how long a marker may take to replicate (Kafka: request.timeout.ms)


def write_marker(broker, p, producer_id: int, producer_epoch: int, coordinator_epoch: int,
                 commit: bool) -> int:
    """Append one marker to partition ``p`` (led here); 0 or the error."""
    code = p.append_marker(producer_id, producer_epoch, coordinator_epoch, commit, now_ms())
    if not code and p.topic.name == OFFSETS_TOPIC and getattr(broker, "groups", None) is not None:
        broker.groups.complete_transaction(p.index, producer_id, commit)
    return code


async def write_markers(broker, partitions: list, producer_id: int, producer_epoch: int, coordinator_epoch: int,
                        commit: bool, timeout_s: float) -> dict:
    """Markers for ``partitions`` ((topic, index) -> partition, led here),
    acks=all (see the module): {(topic, index): error code}."""
    out: dict = {}
    waits = []
    for tp, p in partitions:
        if p.is_leader and p.under_min_isr:
            out[tp] = errors.NOT_ENOUGH_REPLICAS
            continue
        out[tp] = code = write_marker(broker, p, producer_id, producer_epoch, coordinator_epoch, commit)
        if not code:  # replicated up to the end: the marker, or the one written before (sent again)
            waits.append((tp, p.wait_replicated(p.log_end_offset - 1, timeout_s)))
    if waits:
        for (tp, _), code in zip(waits, await asyncio.gather(*(w for _, w in waits))):
            out[tp] = errors.REQUEST_TIMED_OUT if code is None else code
    return out


class MarkerWriter:
    """Markers for this broker's partitions, appended at once, and for other
    leaders' partitions, sent to them as WriteTxnMarkers."""

    def __init__(self, broker, timeout_s: float = MARKER_TIMEOUT_S):
        from odradek.replica.peer import PeerClients

        self.broker = broker
        self.timeout_s = timeout_s
        self.peers = PeerClients(broker, "odradek-txn-markers", timeout_s + 5)  # the receiver waits timeout_s

    async def write(self, producer_id: int, producer_epoch: int, coordinator_epoch: int, commit: bool,
                    partitions) -> dict:
        broker = self.broker
        out: dict = {}
        local = []
        remote: dict[int, list] = {}
        for topic, index in partitions:
            p, code = broker.replicas.partition_or_error(topic, index)
            if not code:
                local.append(((topic, index), p))
                continue
            t = broker.image.get(topic)
            if t is None or not 0 <= index < len(t.partitions):
                out[(topic, index)] = errors.UNKNOWN_TOPIC_OR_PARTITION
                continue
            leader = t.partitions[index].leader
            if leader < 0 or leader == broker.config.node_id or leader not in broker.image.brokers:
                out[(topic, index)] = errors.LEADER_NOT_AVAILABLE if leader < 0 else code
                continue
            remote.setdefault(leader, []).append((topic, index))
        jobs = [write_markers(broker, local, producer_id, producer_epoch, coordinator_epoch, commit, self.timeout_s)]
        jobs += [self._send(leader, producer_id, producer_epoch, coordinator_epoch, commit, tps)
                 for leader, tps in remote.items()]
        for done in await asyncio.gather(*jobs):
            out.update(done)
        return out

    async def _send(self, leader: int, producer_id: int, producer_epoch: int, coordinator_epoch: int,
                    commit: bool, tps: list) -> dict:
        by_topic: dict[str, list[int]] = {}
        for topic, index in tps:
            by_topic.setdefault(topic, []).append(index)
        body = {"markers": [{"producer_id": producer_id, "producer_epoch": producer_epoch,
                             "transaction_result": commit, "coordinator_epoch": coordinator_epoch,
                             "topics": [{"name": t, "partition_indexes": ix} for t, ix in by_topic.items()]}]}
        try:
            resp = await self.peers.call(leader, "WriteTxnMarkers", 1, body)
        except (OSError, asyncio.TimeoutError, ValueError, ConnectionError) as e:
            log.info("WriteTxnMarkers to broker %d failed (%s); retrying", leader, e)
            return {tp: errors.NETWORK_EXCEPTION for tp in tps}
        out = {tp: errors.UNKNOWN_SERVER_ERROR for tp in tps}
        for m in resp["markers"]:
            for t in m["topics"]:
                for part in t["partitions"]:
                    out[(t["name"], part["partition_index"])] = part["error_code"]
        return out

    def close(self) -> None:
        self.peers.close()
