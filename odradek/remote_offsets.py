"""High watermarks of partitions this broker has no replica of, for the lag
of the consumer groups it coordinates.

Theory of operation: a group's committed offsets live on its coordinator,
the partitions they are for on their leaders, anywhere in the cluster. The
coordinator reads the high watermark of a partition it has a replica of
locally (a follower's trails the leader's by one fetch); for the others,
``RemoteHighWatermarks.run`` asks their leaders every ``interval`` with
ListOffsets (latest, read_uncommitted), one request per leader, over the
inter-broker listener, and keeps the answers, trusted for ``STALE_AFTER``
intervals (a leader that stops answering makes its partitions' lag unknown,
not stale). The lag in time needs the log, so it is known only for the
partitions with a replica here. Nothing is asked when every partition with
a committed offset has a replica here (one broker).
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("odradek.lag")

STALE_AFTER = 3  # intervals
LIST_OFFSETS_VERSION = 5
LATEST = -1


class RemoteHighWatermarks:
    def __init__(self, broker, interval_s: float, clients=None):
        from odradek.replica.peer import PeerClients

        self.broker = broker
        self.interval = interval_s
        self.clients = clients or PeerClients(broker, "odradek-lag", timeout_s=max(interval_s, 1.0))
        self.values: dict[tuple[str, int], tuple[int, float]] = {}  # (topic, partition) -> (hw, monotonic time)

    def get(self, topic: str, index: int) -> int | None:
        """The high watermark last answered by the partition's leader, if fresh."""
        v = self.values.get((topic, index))
        if v is None or time.monotonic() - v[1] > STALE_AFTER * self.interval:
            return None
        return v[0]

    def wanted(self) -> dict[int, set[tuple[str, int]]]:
        """Leader -> partitions with a committed offset here and no replica here."""
        from odradek.metrics import loaded_shards

        broker = self.broker
        lookup = broker.replicas.partition_or_error
        out: dict[int, set] = {}
        for shard in loaded_shards(broker):
            for offsets in list(shard.offsets.offsets.values()):
                for topic, index in list(offsets):
                    p, _ = lookup(topic, index, leader_required=False)
                    if p is not None:
                        continue
                    t = broker.image.get(topic)
                    if t is None or not 0 <= index < len(t.partitions):
                        continue
                    leader = t.partitions[index].leader
                    if leader >= 0 and leader != broker.config.node_id and leader in broker.image.brokers:
                        out.setdefault(leader, set()).add((topic, index))
        return out

    async def refresh(self) -> None:
        wanted = self.wanted()
        now = time.monotonic()
        known = {tp for tps in wanted.values() for tp in tps}
        for key in [k for k in self.values if k not in known]:
            del self.values[key]
        await asyncio.gather(*(self._ask(leader, tps, now) for leader, tps in wanted.items()))

    async def _ask(self, leader: int, tps: set, now: float) -> None:
        by_topic: dict[str, list[int]] = {}
        for topic, index in sorted(tps):
            by_topic.setdefault(topic, []).append(index)
        body = {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": t, "partitions": [{"partition_index": i, "current_leader_epoch": -1, "timestamp": LATEST}
                                       for i in ix]} for t, ix in by_topic.items()]}
        try:
            resp = await self.clients.call(leader, "ListOffsets", LIST_OFFSETS_VERSION, body)
        except Exception as e:  # OSError, a timeout, a refused login: this round's values for it stay unknown
            log.debug("ListOffsets to broker %d for lag failed: %s", leader, e)
            return
        for t in resp.get("topics", []):
            for part in t["partitions"]:
                if part["error_code"] == 0 and part["offset"] >= 0:
                    self.values[(t["name"], part["partition_index"])] = (part["offset"], now)

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.refresh()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("lag: asking leaders for high watermarks failed")
                await asyncio.sleep(self.interval)
        finally:
            self.clients.close()
