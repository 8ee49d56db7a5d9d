"""``odradek cluster``: what the cluster is made of and which APIs it speaks."""

from __future__ import annotations

import socket
import struct

import click

from odradek.cli.common import Output, client_options, print_json
from odradek.protocol.frames import decode_response, encode_request
from odradek.protocol.schema import api_names

def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def api_versions(host: str, port: int, timeout: float) -> list[dict]:
    """ApiVersions v0 over a plain socket: [{"key", "name", "min", "max"}].
    Raises OSError or ValueError (DecodeError is one)."""
    correlation_id = 0x0DAD
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(encode_request("ApiVersions", 0, {}, correlation_id, "odradek-cli"))
        (size,) = struct.unpack(">i", _recv_exact(s, 4))
        if not 4 <= size <= 1 << 20:
            raise ValueError(f"implausible ApiVersions response size {size}")
        corr, resp = decode_response("ApiVersions", 0, _recv_exact(s, size))
    if corr != correlation_id:
        raise ValueError("correlation id mismatch")
    if resp["error_code"]:
        raise ValueError(f"ApiVersions error {resp['error_code']}")
    names = api_names()
    return sorted(({"key": a["api_key"], "name": names.get(a["api_key"], f"ApiKey{a['api_key']}"),
                    "min": a["min_version"], "max": a["max_version"]} for a in resp["api_keys"]),
                  key=lambda a: a["key"])


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
        except (OSError, ValueError):
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
