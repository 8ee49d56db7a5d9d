"""``odradek cluster``: what the cluster is made of and which APIs it speaks
(``info``), and a cluster of brokers on this machine (``up``)."""

from __future__ import annotations

import math
import os
import signal
import socket
import struct
import sys
import threading

import click

from odradek.cli.common import CliError, Output, client_options, note, parse_kv, print_json, warn
from odradek.cluster.local import recv_exact
from odradek.protocol.frames import decode_response, encode_request
from odradek.protocol.schema import api_names


def api_versions(host: str, port: int, timeout: float) -> list[dict]:
    """ApiVersions v0 over a plain socket: [{"key", "name", "min", "max"}].
    Raises OSError or ValueError (DecodeError is one)."""
    correlation_id = 0x0DAD
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(encode_request("ApiVersions", 0, {}, correlation_id, "odradek-cli"))
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        if not 4 <= size <= 1 << 20:
            raise ValueError(f"implausible ApiVersions response size {size}")
        corr, resp = decode_response("ApiVersions", 0, recv_exact(s, size))
    if corr != correlation_id:
        raise ValueError("correlation id mismatch")
    if resp["error_code"]:
        raise ValueError(f"ApiVersions error {resp['error_code']}")
    names = api_names()
    return sorted(({"key": a["api_key"], "name": names.get(a["api_key"], f"ApiKey{a['api_key']}"),
                    "min": a["min_version"], "max": a["max_version"]} for a in resp["api_keys"]),
                  key=lambda a: a["key"])


def _cgroup_quota(root: str) -> float | None:
    """The CPU quota, in cores, of this process's cgroup and its ancestors (the
    smallest; cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), None if none."""
    paths: list[str] = []
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controllers == "":  # v2
                    paths.append(path)
                elif "cpu" in controllers.split(","):  # v1
                    paths.append(path)
    except OSError:
        pass
    best = None
    for base in paths or ["/"]:
        parts = [x for x in base.split("/") if x]
        for i in range(len(parts), -1, -1):
            for d in (os.path.join(root, *parts[:i]), os.path.join(root, "cpu", *parts[:i]),
                      os.path.join(root, "cpu,cpuacct", *parts[:i])):
                quota = None
                try:
                    with open(os.path.join(d, "cpu.max")) as fh:
                        q, period = fh.read().split()[:2]
                    if q != "max":
                        quota = int(q) / int(period)
                except (OSError, ValueError):
                    try:
                        with open(os.path.join(d, "cpu.cfs_quota_us")) as fh:
                            q = int(fh.read())
                        with open(os.path.join(d, "cpu.cfs_period_us")) as fh:
                            period = int(fh.read())
                        if q > 0 and period > 0:
                            quota = q / period
                    except (OSError, ValueError):
                        pass
                if quota is not None and (best is None or quota < best):
                    best = quota
    return best


def cores_available(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The cores this process may use: its CPU affinity (taskset, a cpuset),
    and no more than its cgroup's CPU quota, rounded up. ``os.cpu_count()``
    counts every core of the machine, whatever this process is allowed."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        n = min(n, math.ceil(quota - 1e-9))
    return max(1, n)


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
    """Inspect the cluster (id, controller, brokers, supported APIs), or run one here.

    \b
    Examples:
      odradek cluster info
      odradek -b kafka-1:9092 cluster info --json
      odradek cluster up --brokers 3
    """


class _Stop(Exception):
    """SIGINT or SIGTERM arrived while the cluster was starting."""


@cluster.command("up")
@click.option("--brokers", "n", type=click.IntRange(min=1), default=None, metavar="N",
              help="How many brokers [default: one per core this process may use: its CPU "
                   "affinity, at most its cgroup's CPU quota].")
@click.option("--data-dir", default=None, metavar="DIR",
              help="Keep the brokers' data and etcd's here, across restarts [default: a temporary "
                   "directory, removed at exit].")
@click.option("--port", "first_port", type=click.IntRange(1, 65535), default=None, metavar="FIRST_PORT",
              help="Brokers listen on FIRST_PORT, FIRST_PORT+1, ... [default: free ports].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the brokers listen on.")
@click.option("-o", "--override", multiple=True, metavar="KEY=VALUE",
              help="A broker property for every broker, repeatable.")
@click.option("--log-level", default="INFO", show_default=True, help="The brokers' log level.")
def up(n, data_dir, first_port, host, override, log_level):
    """Run etcd and N brokers on this machine until Ctrl-C or SIGTERM.

    Prints the bootstrap string and the etcd URL on stdout once every broker
    serves; each broker logs to broker.log in its directory. On Ctrl-C or
    SIGTERM the brokers stop (cleanly), then etcd, and the exit code is 0.

    \b
    Examples:
      odradek cluster up --brokers 3
      odradek cluster up --data-dir ./cluster --port 19092 -o default.replication.factor=1
    """
    from odradek.cluster.etcd_server import find_etcd
    from odradek.cluster.local import BrokerStartError, Cluster

    if find_etcd() is None:
        raise CliError("no etcd 3.5.3+ found in $ODRADEK_ETCD, on PATH or in "
                       "~/.cache/odradek/etcd-<version>/ (see docs/cluster.md, Getting etcd)")
    n = n or cores_available()
    stop = threading.Event()
    starting = True

    def on_signal(signum, frame):
        stop.set()
        if starting:
            raise _Stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    cluster = None
    try:
        try:
            cluster = Cluster(n, hosts=[host] * n, data_dir=data_dir, first_port=first_port,
                              config=dict(parse_kv(override, "--override")), log_level=log_level)
        except (BrokerStartError, RuntimeError, OSError) as e:
            raise CliError(str(e)) from None
        finally:
            starting = False
        click.echo(f"bootstrap: {cluster.bootstrap}")
        click.echo(f"etcd: {cluster.etcd_url}")
        sys.stdout.flush()
        note(f"{n} broker(s), data and logs in {cluster.data_dir}; Ctrl-C stops them")
        reported = set()
        while not stop.wait(0.5):
            for b in cluster.brokers:
                if not b.alive and b.node_id not in reported:
                    reported.add(b.node_id)
                    warn(f"broker {b.node_id} exited with {b.returncode}; see {b.log_path}")
    except _Stop:
        pass
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # the stop itself is not interrupted
        if cluster is not None:
            note("stopping the brokers, then etcd")
            cluster.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
