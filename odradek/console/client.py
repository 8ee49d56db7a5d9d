"""The console's Kafka client: the cluster seen through the Kafka protocol only.

Theory of operation: requests are framed by odradek's own codec over
``PeerConnection`` (``odradek.replica.peer``, with its TLS and SASL login),
one connection per broker, each used by one request at a time (a lock), plus
throwaway connections for the long polls of a live tail. The first broker
answering from the bootstrap list gives the metadata; requests for a
partition go to its leader, those for a group to its coordinator. Versions
are fixed per API, chosen so that Apache Kafka 4.x and odradek both serve
them (topics by name, not by id); a broker that serves less is told in
the error. Nothing here reads a broker's internals, so the same code serves
the console embedded in ``odradek serve`` and ``odradek console --bootstrap``
against any Kafka-compatible cluster.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from odradek.protocol import errors
from odradek.protocol.records import build_batch, iter_records
from odradek.replica.peer import AuthenticationError, PeerConnection

TIMEOUT = 10.0

# API -> the version sent (Kafka 4.x serves each; odradek too).
VERSIONS = {
    "ApiVersions": 3, "Metadata": 12, "DescribeCluster": 0, "CreateTopics": 7, "DeleteTopics": 6,
    "CreatePartitions": 3, "DescribeConfigs": 4, "IncrementalAlterConfigs": 1, "ListOffsets": 7,
    "Fetch": 12, "Produce": 9, "FindCoordinator": 3, "ListGroups": 4, "DescribeGroups": 5,
    "OffsetFetch": 7, "OffsetCommit": 8, "DeleteGroups": 2, "DescribeLogDirs": 4,
    "DescribeClientQuotas": 1, "AlterClientQuotas": 1,  # odradek quota
    "DescribeAcls": 3, "CreateAcls": 3, "DeleteAcls": 3,  # odradek acl
    "DescribeUserScramCredentials": 0, "AlterUserScramCredentials": 0,  # kafka-configs --entity-type users
}

EARLIEST, LATEST = -2, -1
# Answers that say "ask again in a moment" (leadership or a coordinator moving,
# a topic just created): retried with backoff for up to RETRY_FOR seconds.
RETRIABLE = {errors.LEADER_NOT_AVAILABLE, errors.NOT_LEADER_OR_FOLLOWER, errors.COORDINATOR_LOAD_IN_PROGRESS,
             errors.COORDINATOR_NOT_AVAILABLE, errors.NOT_COORDINATOR, errors.FENCED_LEADER_EPOCH,
             errors.UNKNOWN_LEADER_EPOCH}
RETRY_FOR = 5.0


class KafkaError(Exception):
    """A request answered with an error code (or the cluster not reached)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


_NAMES = {v: k for k, v in vars(errors).items() if k.isupper() and isinstance(v, int)}


def error_name(code: int) -> str:
    return _NAMES.get(code, f"error {code}")


def check(code: int, what: str, message: str | None = None) -> None:
    if code:
        raise KafkaError(f"{what}: {error_name(code)}" + (f" ({message})" if message else ""), code)


@dataclass
class PartitionInfo:
    index: int
    leader: int
    replicas: list[int]
    isr: list[int]
    offline: list[int]
    error: int = 0


@dataclass
class TopicInfo:
    name: str
    internal: bool
    partitions: list[PartitionInfo]
    error: int = 0


@dataclass
class ClusterInfo:
    cluster_id: str | None
    controller: int
    brokers: dict[int, tuple[str, int, str | None]]  # node -> (host, port, rack)
    topics: dict[str, TopicInfo]
    fetched: float = field(default_factory=time.monotonic)


def murmur2(data: bytes) -> int:
    """Kafka's default partitioner hash (the Java client's ``Utils.murmur2``)."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


class ClusterClient:
    def __init__(self, bootstrap: list[tuple[str, int]], security=None, client_id: str = "odradek-console"):
        self.bootstrap = bootstrap
        self.security = security  # an InterBrokerClient-shaped login (TLS context, SASL), or None
        self.client_id = client_id
        self.conns: dict[int | tuple, PeerConnection] = {}
        self.locks: dict[int | tuple, asyncio.Lock] = {}
        self.cluster: ClusterInfo | None = None
        self.api_versions: dict[str, tuple[int, int]] = {}
        self.features: dict[str, int] = {}

    # -- connections ---------------------------------------------------------
    def _address(self, node) -> tuple[str, int]:
        if isinstance(node, tuple):
            return node
        if self.cluster is None or node not in self.cluster.brokers:
            raise KafkaError(f"broker {node} is not in the cluster's metadata")
        host, port, _ = self.cluster.brokers[node]
        return host, port

    async def request(self, node, name: str, body: dict, timeout: float = TIMEOUT, slot=None) -> dict:
        """Send ``name`` to ``node`` (a broker id, or a (host, port)) and return
        its answer; over the connection kept as ``slot`` when given (a long poll's own)."""
        slot = node if slot is None else slot
        lock = self.locks.setdefault(slot, asyncio.Lock())
        async with lock:
            conn = self.conns.get(slot)
            if conn is None or not conn.connected:
                host, port = self._address(node)
                conn = PeerConnection(host, port, self.client_id, security=self.security)
                try:
                    await conn.connect(timeout)
                except (OSError, asyncio.TimeoutError) as e:
                    raise KafkaError(f"cannot reach {host}:{port}: {e or type(e).__name__}") from None
                except AuthenticationError as e:
                    raise KafkaError(f"{host}:{port}: {e}", errors.SASL_AUTHENTICATION_FAILED) from None
                self.conns[slot] = conn
            try:
                return await conn.request(name, VERSIONS[name], body, timeout)
            except (OSError, asyncio.TimeoutError, ValueError) as e:
                raise KafkaError(f"{name} to {conn.host}:{conn.port} failed: {e or type(e).__name__}") from None

    async def any_broker(self, name: str, body: dict, timeout: float = TIMEOUT) -> dict:
        """Send to a known broker, trying the bootstrap addresses when none answers."""
        nodes: list = list(self.cluster.brokers) if self.cluster else []
        nodes += list(self.bootstrap)
        last = None
        for node in nodes:
            try:
                return await self.request(node, name, body, timeout)
            except KafkaError as e:
                last = e
        raise last or KafkaError("no broker to ask")

    async def retrying(self, op):
        """``await op()``, again after a retriable error (with fresh metadata)."""
        deadline = time.monotonic() + RETRY_FOR
        delay = 0.05
        while True:
            try:
                return await op()
            except KafkaError as e:
                if e.code not in RETRIABLE or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            await self.metadata()

    def close(self) -> None:
        for c in self.conns.values():
            c.close()
        self.conns.clear()

    # -- metadata ------------------------------------------------------------
    async def metadata(self, max_age: float = 0.0) -> ClusterInfo:
        """Every topic's partitions, the brokers and the controller."""
        if self.cluster is not None and time.monotonic() - self.cluster.fetched <= max_age:
            return self.cluster
        if not self.api_versions:
            r = await self.any_broker("ApiVersions", {"client_software_name": "odradek-console",
                                                      "client_software_version": "1"})
            check(r["error_code"], "ApiVersions")
            self.api_versions = {_api_name(a["api_key"]): (a["min_version"], a["max_version"])
                                 for a in r["api_keys"]}
            self.features = {f["name"]: f["max_version_level"] for f in r.get("finalized_features") or []}
        r = await self.any_broker("Metadata", {"topics": None, "allow_auto_topic_creation": False})
        topics = {}
        for t in r["topics"]:
            parts = [PartitionInfo(p["partition_index"], p["leader_id"], list(p["replica_nodes"]),
                                   list(p["isr_nodes"]), list(p["offline_replicas"]), p["error_code"])
                     for p in t["partitions"]]
            parts.sort(key=lambda p: p.index)
            topics[t["name"]] = TopicInfo(t["name"], t["is_internal"], parts, t["error_code"])
        self.cluster = ClusterInfo(r["cluster_id"], r["controller_id"],
                                   {b["node_id"]: (b["host"], b["port"], b["rack"]) for b in r["brokers"]},
                                   dict(sorted(topics.items())))
        return self.cluster

    async def partition_count(self, name: str) -> int | None:
        """How many partitions ``name`` has now (None: no such topic), asking
        for that topic alone."""
        r = await self.any_broker("Metadata", {"topics": [{"name": name, "topic_id": b"\0" * 16}],
                                               "allow_auto_topic_creation": False})
        t = r["topics"][0] if r["topics"] else None
        if t is None or t["error_code"] == errors.UNKNOWN_TOPIC_OR_PARTITION:
            return None
        check(t["error_code"], f"Metadata of {name!r}")
        return len(t["partitions"])

    def serves(self, name: str) -> bool:
        lo, hi = self.api_versions.get(name, (1, 0))
        return lo <= VERSIONS.get(name, -1) <= hi

    async def topic(self, name: str) -> TopicInfo:
        """``name``'s partitions, from metadata at most a second old (fresh
        when the topic is not in it; after a retriable error it is fresh too)."""
        cluster = await self.metadata(max_age=1.0)
        if name not in cluster.topics:
            cluster = await self.metadata()
        t = cluster.topics.get(name)
        if t is None:
            raise KafkaError(f"Unknown topic {name!r}", errors.UNKNOWN_TOPIC_OR_PARTITION)
        return t

    # -- offsets -------------------------------------------------------------
    async def list_offsets(self, parts: list[tuple[str, int]],
                           timestamp: int) -> dict[tuple[str, int], tuple[int, int]]:
        """(topic, partition) -> (offset, timestamp) for ``timestamp`` (EARLIEST,
        LATEST, or ms: the first offset at or after it; -1 when none)."""
        cluster = self.cluster or await self.metadata()
        by_leader: dict[int, dict[str, list[int]]] = {}
        for topic, p in parts:
            t = cluster.topics.get(topic)
            if t is None or p >= len(t.partitions):
                raise KafkaError(f"Unknown partition {topic}-{p}", errors.UNKNOWN_TOPIC_OR_PARTITION)
            by_leader.setdefault(t.partitions[p].leader, {}).setdefault(topic, []).append(p)
        out: dict[tuple[str, int], tuple[int, int]] = {}

        async def ask(leader, topics):
            if leader < 0:
                for topic, ps in topics.items():
                    for p in ps:
                        out[(topic, p)] = (-1, -1)
                return
            r = await self.request(leader, "ListOffsets", {
                "replica_id": -1, "isolation_level": 0,
                "topics": [{"name": topic, "partitions": [{"partition_index": p, "timestamp": timestamp,
                                                           "current_leader_epoch": -1} for p in ps]}
                           for topic, ps in topics.items()]})
            for t in r["topics"]:
                for p in t["partitions"]:
                    if p["error_code"]:
                        out[(t["name"], p["partition_index"])] = (-1, -1)
                    else:
                        out[(t["name"], p["partition_index"])] = (p["offset"], p["timestamp"])

        await asyncio.gather(*(ask(leader, topics) for leader, topics in by_leader.items()))
        return out

    async def watermarks(self, topics: list[str] | None = None) -> dict[tuple[str, int], tuple[int, int]]:
        """(topic, partition) -> (log start, high watermark) of ``topics`` (all: None)."""
        cluster = self.cluster or await self.metadata()
        names = list(cluster.topics) if topics is None else topics
        parts = [(n, p.index) for n in names for p in cluster.topics[n].partitions]
        if not parts:
            return {}
        start, end = await asyncio.gather(self.list_offsets(parts, EARLIEST), self.list_offsets(parts, LATEST))
        return {k: (start[k][0], end[k][0]) for k in parts}

    async def log_dirs(self) -> tuple[dict[int, list[dict]], dict[tuple[str, int], int]] | None:
        """Disk use, when the cluster serves DescribeLogDirs (None when not):
        ({broker: [{dir, error, size, total, usable}], or None when it did not
        answer}, {(topic, partition): bytes of its largest replica}, or None
        when no broker has a log directory)."""
        cluster = self.cluster or await self.metadata()
        if not self.serves("DescribeLogDirs"):
            return None
        dirs: dict[int, list[dict]] = {}
        sizes: dict[tuple[str, int], int] = {}

        async def ask(node):
            try:
                r = await self.request(node, "DescribeLogDirs", {"topics": None})
            except KafkaError:
                dirs[node] = None  # not answered
                return
            out = []
            for d in r["results"]:
                used = 0
                for t in d["topics"]:
                    for p in t["partitions"]:
                        if p["is_future_key"]:
                            continue
                        used += p["partition_size"]
                        k = (t["name"], p["partition_index"])
                        sizes[k] = max(sizes.get(k, 0), p["partition_size"])
                out.append({"dir": d["log_dir"], "error": d["error_code"], "size": used,
                            "total": d["total_bytes"], "usable": d["usable_bytes"]})
            dirs[node] = out

        await asyncio.gather(*(ask(n) for n in cluster.brokers))
        if not any(dirs.values()):  # no broker keeps a log directory (odradek --memory): sizes unknown
            return dirs, None
        return dirs, sizes

    # -- records ---------------------------------------------------------------
    async def fetch(self, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20,
                    max_wait_ms: int = 0) -> tuple[list, int, int]:
        """Records from ``offset`` (as many as one Fetch brings): ([Record], high
        watermark, log start). Control records are left out."""
        return await self.retrying(lambda: self._fetch(topic, partition, offset, max_bytes, max_wait_ms))

    async def _fetch(self, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20,
                     max_wait_ms: int = 0) -> tuple[list, int, int]:
        t = await self.topic(topic)
        if not 0 <= partition < len(t.partitions):
            raise KafkaError(f"Unknown partition {topic}-{partition}", errors.UNKNOWN_TOPIC_OR_PARTITION)
        leader = t.partitions[partition].leader
        if leader < 0:
            raise KafkaError(f"{topic}-{partition} has no leader", errors.LEADER_NOT_AVAILABLE)
        r = await self.request(leader, "Fetch", {
            "replica_id": -1, "max_wait_ms": max_wait_ms, "min_bytes": 1, "max_bytes": max_bytes,
            "isolation_level": 0, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": topic, "partitions": [{"partition": partition, "fetch_offset": offset,
                                                        "log_start_offset": -1, "partition_max_bytes": max_bytes,
                                                        "current_leader_epoch": -1}]}]},
            timeout=TIMEOUT + max_wait_ms / 1000)
        check(r["error_code"], "Fetch")
        p = r["responses"][0]["partitions"][0]
        check(p["error_code"], f"Fetch {topic}-{partition} at {offset}")
        records = [rec for h, rec in iter_records(p["records"] or b"") if not h.is_control and rec.offset >= offset]
        return records, p["high_watermark"], p["log_start_offset"]

    async def fetch_many(self, topic: str, offsets: dict[int, int], max_wait_ms: int, slot,
                         max_bytes: int = 256 * 1024) -> tuple[dict[int, list], dict[int, int]]:
        """Records from each partition's offset, one Fetch per leader (all at
        once; each waits up to ``max_wait_ms`` for something to arrive), over
        connections kept apart as ``slot``: ({partition: [Record]}, {partition:
        where to go on} for those whose offset is out of range: the log start
        when before it, else the high watermark)."""
        t = await self.topic(topic)
        by_leader: dict[int, list[int]] = {}
        for p in offsets:
            leader = t.partitions[p].leader if p < len(t.partitions) else -1
            if leader < 0:
                raise KafkaError(f"{topic}-{p} has no leader", errors.LEADER_NOT_AVAILABLE)
            by_leader.setdefault(leader, []).append(p)
        out: dict[int, list] = {}
        moved: dict[int, int] = {}

        async def ask(leader, parts):
            r = await self.request(leader, "Fetch", {
                "replica_id": -1, "max_wait_ms": max_wait_ms, "min_bytes": 1, "max_bytes": max_bytes,
                "isolation_level": 0, "session_id": 0, "session_epoch": -1,
                "topics": [{"topic": topic, "partitions": [
                    {"partition": p, "fetch_offset": offsets[p], "log_start_offset": -1,
                     "partition_max_bytes": max_bytes // len(parts) or 1, "current_leader_epoch": -1}
                    for p in parts]}]},
                timeout=TIMEOUT + max_wait_ms / 1000, slot=(*slot, leader))
            check(r["error_code"], "Fetch")
            for p in r["responses"][0]["partitions"]:
                i = p["partition_index"]
                if p["error_code"] == errors.OFFSET_OUT_OF_RANGE and p["high_watermark"] >= 0:
                    start = p["log_start_offset"]
                    moved[i] = start if 0 <= start and offsets[i] < start else p["high_watermark"]
                    continue
                check(p["error_code"], f"Fetch {topic}-{i} at {offsets[i]}")
                out[i] = [rec for h, rec in iter_records(p["records"] or b"")
                          if not h.is_control and rec.offset >= offsets[i]]

        await asyncio.gather(*(ask(leader, parts) for leader, parts in by_leader.items()))
        return out, moved

    async def produce(self, topic: str, partition: int | None, key: bytes | None, value: bytes | None,
                      headers: list[tuple[str, bytes]]) -> tuple[int, int]:
        """Append one record (acks=all); (partition, offset). Without a partition:
        by the key's murmur2 hash as the Java client does, else partition 0."""
        return await self.retrying(lambda: self._produce(topic, partition, key, value, headers))

    async def _produce(self, topic: str, partition: int | None, key: bytes | None, value: bytes | None,
                       headers: list[tuple[str, bytes]]) -> tuple[int, int]:
        t = await self.topic(topic)
        n = len(t.partitions)
        if partition is None:
            partition = (murmur2(key) & 0x7FFFFFFF) % n if key is not None else 0
        if not 0 <= partition < n:
            raise KafkaError(f"{topic} has no partition {partition}", errors.UNKNOWN_TOPIC_OR_PARTITION)
        leader = t.partitions[partition].leader
        if leader < 0:
            raise KafkaError(f"{topic}-{partition} has no leader", errors.LEADER_NOT_AVAILABLE)
        batch = build_batch([(key, value, headers, None)])
        r = await self.request(leader, "Produce", {
            "transactional_id": None, "acks": -1, "timeout_ms": 10000,
            "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": batch}]}]})
        p = r["responses"][0]["partition_responses"][0]
        check(p["error_code"], f"Produce to {topic}-{partition}", p.get("error_message"))
        return partition, p["base_offset"]

    # -- topics ------------------------------------------------------------------
    async def settle(self, done, timeout: float = RETRY_FOR) -> None:
        """Refresh the metadata until ``done(cluster)`` (a change the controller
        accepted reaches every broker's metadata a moment later), or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done(await self.metadata()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def controller(self) -> int:
        cluster = await self.metadata()
        return cluster.controller if cluster.controller in cluster.brokers else next(iter(cluster.brokers))

    async def create_topic(self, name: str, partitions: int, replication: int, configs: dict[str, str]) -> None:
        r = await self.request(await self.controller(), "CreateTopics", {
            "topics": [{"name": name, "num_partitions": partitions, "replication_factor": replication,
                        "assignments": [], "configs": [{"name": k, "value": v} for k, v in configs.items()]}],
            "timeout_ms": 10000, "validate_only": False})
        t = r["topics"][0]
        check(t["error_code"], f"Creating topic {name!r}", t.get("error_message"))
        await self.settle(lambda c: name in c.topics and all(p.leader >= 0 for p in c.topics[name].partitions))

    async def delete_topic(self, name: str) -> None:
        r = await self.request(await self.controller(), "DeleteTopics", {
            "topics": [{"name": name, "topic_id": b"\0" * 16}], "timeout_ms": 10000})
        t = r["responses"][0]
        check(t["error_code"], f"Deleting topic {name!r}", t.get("error_message"))
        await self.settle(lambda c: name not in c.topics)

    async def add_partitions(self, name: str, count: int) -> None:
        r = await self.request(await self.controller(), "CreatePartitions", {
            "topics": [{"name": name, "count": count, "assignments": None}], "timeout_ms": 10000,
            "validate_only": False})
        t = r["results"][0]
        check(t["error_code"], f"Adding partitions to {name!r}", t.get("error_message"))
        await self.settle(lambda c: name in c.topics and len(c.topics[name].partitions) >= count)

    async def topic_configs(self, name: str) -> list[dict]:
        """[{name, value, source, read_only, default}] of the topic."""
        await self.topic(name)
        r = await self.any_broker("DescribeConfigs", {
            "resources": [{"resource_type": 2, "resource_name": name, "configuration_keys": None}],
            "include_synonyms": False, "include_documentation": False})
        res = r["results"][0]
        check(res["error_code"], f"Configs of {name!r}", res.get("error_message"))
        return [{"name": c["name"], "value": c["value"], "source": c["config_source"],
                 "read_only": c["read_only"], "default": c["config_source"] == 5}
                for c in sorted(res["configs"], key=lambda c: c["name"])]

    async def alter_topic_config(self, name: str, key: str, value: str | None) -> None:
        """Set ``key`` (``value`` None: back to its default)."""
        r = await self.any_broker("IncrementalAlterConfigs", {
            "resources": [{"resource_type": 2, "resource_name": name,
                           "configs": [{"name": key, "config_operation": 0 if value is not None else 1,
                                        "value": value}]}], "validate_only": False})
        res = r["responses"][0]
        check(res["error_code"], f"Setting {key} of {name!r}", res.get("error_message"))

    # -- groups ----------------------------------------------------------------------
    async def coordinator(self, group: str) -> int:
        r = await self.any_broker("FindCoordinator", {"key": group, "key_type": 0})
        check(r["error_code"], f"Coordinator of group {group!r}", r.get("error_message"))
        cluster = await self.metadata(max_age=5.0)
        if r["node_id"] not in cluster.brokers:
            cluster = await self.metadata()
        return r["node_id"]

    async def list_groups(self) -> list[dict]:
        """[{group_id, state, protocol_type}] from every broker."""
        cluster = self.cluster or await self.metadata()
        out = []

        async def ask(node):
            r = await self.request(node, "ListGroups", {"states_filter": []})
            check(r["error_code"], "ListGroups")
            out.extend(r["groups"])

        await asyncio.gather(*(ask(n) for n in cluster.brokers))
        return sorted(out, key=lambda g: g["group_id"])

    async def describe_group(self, group: str) -> dict:
        return await self.retrying(lambda: self._describe_group(group))

    async def _describe_group(self, group: str) -> dict:
        node = await self.coordinator(group)
        r = await self.request(node, "DescribeGroups", {"groups": [group], "include_authorized_operations": False})
        g = r["groups"][0]
        check(g["error_code"], f"Group {group!r}")
        return g

    async def committed(self, group: str) -> dict[tuple[str, int], int]:
        return await self.retrying(lambda: self._committed(group))

    async def _committed(self, group: str) -> dict[tuple[str, int], int]:
        node = await self.coordinator(group)
        r = await self.request(node, "OffsetFetch", {"group_id": group, "topics": None, "require_stable": False})
        check(r["error_code"], f"Offsets of group {group!r}")
        out = {}
        for t in r["topics"]:
            for p in t["partitions"]:
                if not p["error_code"] and p["committed_offset"] >= 0:
                    out[(t["name"], p["partition_index"])] = p["committed_offset"]
        return out

    async def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        """Commit as an admin (no generation): the group must have no members."""
        return await self.retrying(lambda: self._commit(group, offsets))

    async def _commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        node = await self.coordinator(group)
        topics: dict[str, list] = {}
        for (t, p), off in sorted(offsets.items()):
            topics.setdefault(t, []).append({"partition_index": p, "committed_offset": off,
                                             "committed_leader_epoch": -1, "committed_metadata": ""})
        r = await self.request(node, "OffsetCommit", {
            "group_id": group, "generation_id_or_member_epoch": -1, "member_id": "", "group_instance_id": None,
            "retention_time_ms": -1, "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()]})
        for t in r["topics"]:
            for p in t["partitions"]:
                check(p["error_code"], f"Committing {t['name']}-{p['partition_index']} for {group!r}")

    async def delete_group(self, group: str) -> None:
        return await self.retrying(lambda: self._delete_group(group))

    async def _delete_group(self, group: str) -> None:
        node = await self.coordinator(group)
        r = await self.request(node, "DeleteGroups", {"groups_names": [group]})
        res = r["results"][0]
        check(res["error_code"], f"Deleting group {group!r}")


    # -- security: ACLs, SCRAM users, client quotas ----------------------------------
    async def acls(self) -> list[dict]:
        """Every ACL binding: [{resource_type, resource_name, pattern_type, principal,
        host, operation, permission_type}] (Kafka's codes)."""
        r = await self.any_broker("DescribeAcls", {
            "resource_type_filter": 1, "resource_name_filter": None, "pattern_type_filter": 1,
            "principal_filter": None, "host_filter": None, "operation": 1, "permission_type": 1})
        check(r["error_code"], "Listing ACLs", r.get("error_message"))
        return [{"resource_type": res["resource_type"], "resource_name": res["resource_name"],
                 "pattern_type": res["pattern_type"], **{k: a[k] for k in ("principal", "host", "operation",
                                                                              "permission_type")}}
                for res in r["resources"] for a in res["acls"]]

    async def create_acl(self, binding: dict) -> None:
        creation = {k: v for k, v in binding.items() if k != "pattern_type"}
        r = await self.any_broker("CreateAcls", {"creations": [{**creation,
                                                                "resource_pattern_type": binding["pattern_type"]}]})
        res = r["results"][0]
        check(res["error_code"], "Creating the ACL", res.get("error_message"))

    async def delete_acl(self, binding: dict) -> int:
        """Delete the ACLs matching ``binding`` exactly; how many went."""
        r = await self.any_broker("DeleteAcls", {"filters": [{
            "resource_type_filter": binding["resource_type"], "resource_name_filter": binding["resource_name"],
            "pattern_type_filter": binding["pattern_type"], "principal_filter": binding["principal"],
            "host_filter": binding["host"], "operation": binding["operation"],
            "permission_type": binding["permission_type"]}]})
        res = r["filter_results"][0]
        check(res["error_code"], "Deleting the ACL", res.get("error_message"))
        for m in res["matching_acls"]:
            check(m["error_code"], "Deleting the ACL", m.get("error_message"))
        return len(res["matching_acls"])

    async def scram_users(self) -> list[dict]:
        """[{user, mechanisms: [(mechanism name, iterations)]}] of every SCRAM user."""
        from odradek.security.scram import MECHANISM_NAMES

        r = await self.any_broker("DescribeUserScramCredentials", {"users": None})
        check(r["error_code"], "Listing SCRAM users", r.get("error_message"))
        out = []
        for res in r["results"]:
            check(res["error_code"], f"SCRAM credentials of {res['user']!r}", res.get("error_message"))
            out.append({"user": res["user"], "mechanisms": [
                (MECHANISM_NAMES.get(c["mechanism"], str(c["mechanism"])), c["iterations"])
                for c in res["credential_infos"]]})
        return sorted(out, key=lambda u: u["user"])

    async def alter_scram(self, user: str, mechanism: str, password: str | None, iterations: int = 4096) -> None:
        """Set ``user``'s ``mechanism`` credential to ``password`` (salted here:
        the password never crosses the network), or delete it (``password`` None)."""
        import os

        from odradek.security.scram import MECHANISM_IDS, salted_password

        body: dict = {"deletions": [], "upsertions": []}
        if password is None:
            body["deletions"].append({"name": user, "mechanism": MECHANISM_IDS[mechanism]})
        else:
            salt = os.urandom(32)
            body["upsertions"].append({"name": user, "mechanism": MECHANISM_IDS[mechanism],
                                       "iterations": iterations, "salt": salt,
                                       "salted_password": salted_password(mechanism, password, salt, iterations)})
        r = await self.any_broker("AlterUserScramCredentials", body)
        res = r["results"][0]
        check(res["error_code"], f"SCRAM credential of {user!r}", res.get("error_message"))

    async def quotas(self) -> list[dict]:
        """[{entity: [{entity_type, entity_name}], key, value}] of every client quota."""
        r = await self.any_broker("DescribeClientQuotas", {"components": [], "strict": False})
        check(r["error_code"], "Listing client quotas", r.get("error_message"))
        return [{"entity": e["entity"], "key": v["key"], "value": v["value"]}
                for e in r["entries"] or [] for v in e["values"]]

    async def alter_quota(self, entity: list[dict], key: str, value: float | None) -> None:
        """Set a quota (``value`` None: remove it)."""
        r = await self.any_broker("AlterClientQuotas", {"entries": [{"entity": entity, "ops": [
            {"key": key, "value": value or 0.0, "remove": value is None}]}], "validate_only": False})
        e = r["entries"][0]
        check(e["error_code"], "Altering the quota", e.get("error_message"))


def _api_name(key: int) -> str:
    from odradek.protocol.schema import api_names

    return api_names().get(key, str(key))
