"""``odradek cluster``: what the cluster is made of and which APIs it speaks."""

from __future__ import annotations

import socket
import struct

import click

from odradek.cli.common import Output, client_options, print_json

API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 4: "LeaderAndIsr", 5: "StopReplica",
    6: "UpdateMetadata", 7: "ControlledShutdown", 8: "OffsetCommit", 9: "OffsetFetch", 10: "FindCoordinator",
    11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup", 15: "DescribeGroups", 16: "ListGroups",
    17: "SaslHandshake", 18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics", 21: "DeleteRecords",
    22: "InitProducerId", 23: "OffsetForLeaderEpoch", 24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn",
    26: "EndTxn", 27: "WriteTxnMarkers", 28: "TxnOffsetCommit", 29: "DescribeAcls", 30: "CreateAcls",
    31: "DeleteAcls", 32: "DescribeConfigs", 33: "AlterConfigs", 34: "AlterReplicaLogDirs",
    35: "DescribeLogDirs", 36: "SaslAuthenticate", 37: "CreatePartitions", 38: "CreateDelegationToken",
    39: "RenewDelegationToken", 40: "ExpireDelegationToken", 41: "DescribeDelegationToken", 42: "DeleteGroups",
    43: "ElectLeaders", 44: "IncrementalAlterConfigs", 45: "AlterPartitionReassignments",
    46: "ListPartitionReassignments", 47: "OffsetDelete", 48: "DescribeClientQuotas", 49: "AlterClientQuotas",
    50: "DescribeUserScramCredentials", 51: "AlterUserScramCredentials", 52: "Vote", 53: "BeginQuorumEpoch",
    54: "EndQuorumEpoch", 55: "DescribeQuorum", 56: "AlterPartition", 57: "UpdateFeatures", 58: "Envelope",
    59: "FetchSnapshot", 60: "DescribeCluster", 61: "DescribeProducers", 62: "BrokerRegistration",
    63: "BrokerHeartbeat", 64: "UnregisterBroker", 65: "DescribeTransactions", 66: "ListTransactions",
    67: "AllocateProducerIds", 68: "ConsumerGroupHeartbeat", 69: "ConsumerGroupDescribe",
    70: "ControllerRegistration", 71: "GetTelemetrySubscriptions", 72: "PushTelemetry",
    73: "AssignReplicasToDirs", 74: "ListConfigResources", 75: "DescribeTopicPartitions",
    76: "ShareGroupHeartbeat", 77: "ShareGroupDescribe", 78: "ShareFetch", 79: "ShareAcknowledge",
    80: "AddRaftVoter", 81: "RemoveRaftVoter", 82: "UpdateRaftVoter", 83: "InitializeShareGroupState",
    84: "ReadShareGroupState", 85: "WriteShareGroupState", 86: "DeleteShareGroupState",
    87: "ReadShareGroupStateSummary",
}


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def api_versions(host: str, port: int, timeout: float) -> list[dict]:
    """ApiVersions v0 over a plain socket: [{"key", "name", "min", "max"}]. Raises OSError/ValueError."""
    client_id = b"odradek-cli"
    body = struct.pack(">hhih", 18, 0, 0x0DAD, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(s, 4))
        if not 10 <= size <= 1 << 20:
            raise ValueError(f"implausible ApiVersions response size {size}")
        resp = _recv_exact(s, size)
    corr, err, n = struct.unpack_from(">ihi", resp, 0)
    if corr != 0x0DAD:
        raise ValueError("correlation id mismatch")
    if err:
        raise ValueError(f"ApiVersions error {err}")
    if not 0 <= n <= (size - 10) // 6:
        raise ValueError(f"implausible API count {n}")
    out = []
    for i in range(n):
        key, lo, hi = struct.unpack_from(">hhh", resp, 10 + 6 * i)
        out.append({"key": key, "name": API_NAMES.get(key, f"ApiKey{key}"), "min": lo, "max": hi})
    return sorted(out, key=lambda a: a["key"])


def _split_hostport(addr: str) -> tuple[str, int]:
    addr = addr.strip()
    for prefix in ("PLAINTEXT://", "plaintext://"):
        if addr.startswith(prefix):
            addr = addr[len(prefix):]
    host, _, port = addr.rpartition(":")
    if not host:
        return addr, 9092
    return host.strip("[]"), int(port)


@click.group()
def cluster() -> None:
    """Inspect the cluster: id, controller, brokers, supported APIs.

    \b
    Examples:
      odradek cluster info
      odradek -b kafka-1:9092 cluster info --json
    """


@cluster.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--no-api-versions", is_flag=True, help="Skip the ApiVersions table.")
@client_options
def info(as_json, no_api_versions, conn):
    """Show the cluster id, controller, brokers and the ApiVersions the broker serves.

    ApiVersions is asked of the first bootstrap broker over a plain socket, so
    it is skipped when -X security.protocol is set to something else.

    \b
    Examples:
      odradek cluster info
      odradek cluster info --json | jq '.api_versions[] | select(.name == "Fetch")'
    """
    admin = conn.admin()
    md = conn.metadata()
    cluster_id, controller = md.cluster_id, md.controller_id
    brokers = {b.id: {"id": b.id, "host": b.host, "port": b.port, "rack": None} for b in md.brokers.values()}
    try:
        d = admin.describe_cluster(request_timeout=conn.timeout).result()
        cluster_id = d.cluster_id or cluster_id
        if d.controller is not None:
            controller = d.controller.id
        for n in d.nodes:
            brokers[n.id] = {"id": n.id, "host": n.host, "port": n.port, "rack": n.rack}
    except Exception:  # noqa: BLE001 - DescribeCluster is optional (Kafka < 2.8); metadata suffices
        pass
    doc = {"cluster_id": cluster_id, "controller": controller if controller is not None and controller >= 0 else None,
           "brokers": [brokers[k] for k in sorted(brokers)], "topics": len(md.topics), "api_versions": None}
    if not no_api_versions and conn.plaintext:
        try:
            host, port = _split_hostport(conn.bootstrap.split(",")[0])
            doc["api_versions"] = api_versions(host, port, conn.timeout)
            doc["api_versions_from"] = f"{host}:{port}"
        except (OSError, ValueError, struct.error):
            pass
    if as_json:
        print_json(doc)
        return
    out = Output()
    out.section("CLUSTER")
    out.pairs([("CLUSTER-ID", doc["cluster_id"]), ("CONTROLLER", doc["controller"]), ("TOPICS", doc["topics"])])
    out.section("BROKERS")
    out.table(["ID", "HOST", "PORT", "RACK"],
              [[f"{b['id']}*" if b["id"] == doc["controller"] else b["id"], b["host"], b["port"], b["rack"]]
               for b in doc["brokers"]])
    if doc["api_versions"] is not None:
        out.section(f"API VERSIONS ({doc['api_versions_from']}, {len(doc['api_versions'])} APIs)")
        out.table(["KEY", "API", "MIN", "MAX"], [[a["key"], a["name"], a["min"], a["max"]]
                                                  for a in doc["api_versions"]])
    elif not no_api_versions:
        out.section("API VERSIONS")
        out.write("(not available)")
