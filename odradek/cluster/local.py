"""A cluster of odradek brokers on this machine: ``odradek.Cluster``.

Theory of operation: one etcd (started here through ``EtcdServer``, or one
given) and ``n`` broker processes, ``python -m odradek serve``, node ids
1..n, each on a port of its own (kept across restarts), in a directory of
its own holding its data dir and its log file, all on one etcd prefix.

A broker counts as up when two things hold: its registration key in etcd
(``<prefix>/brokers/<id>``) was created after the process was started (a
broker restarted after a kill waits for its old lease to lapse, and until
then the old key is still there), and every running broker answers Metadata
listing every running broker. etcd is read through its JSON gateway
(``/v3/kv/range``) and Metadata asked over a plain socket with the package's
own codec, so the harness itself needs neither etcd3aio nor a client
library's threads.

Each broker runs in a session (process group) of its own: signals go to
the whole group, Ctrl-C in a terminal reaches only the process that owns
the cluster, and ``close()`` (or a finalizer at interpreter exit, when a
test failed before closing) stops every process started here.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from typing import NamedTuple, Sequence

from odradek.cluster.etcd_server import EtcdServer, _free_port

START_TIMEOUT = 30.0  # beyond the wait for an old registration's lease


class PartitionInfo(NamedTuple):
    """One partition as a broker's Metadata answer reports it."""

    leader: int | None  # None: no leader (LEADER_NOT_AVAILABLE)
    leader_epoch: int
    replicas: list[int]
    isr: list[int]


class BrokerStartError(RuntimeError):
    """A broker process exited, or did not come up in time; the message ends
    with the tail of its log."""


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from ``sock``; ConnectionError if it closes first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def metadata_request(host: str, port: int, timeout: float = 5.0, topics: list[str] | None = None) -> dict:
    """Metadata v12 over a plain socket: every topic (or ``topics``), no
    auto-creation. Raises OSError, or ValueError when the answer cannot be read."""
    from odradek.protocol.frames import decode_response, encode_request

    body = {"topics": None if topics is None else [{"topic_id": None, "name": t} for t in topics],
            "allow_auto_topic_creation": False, "include_topic_authorized_operations": False}
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(encode_request("Metadata", 12, body, 1, "odradek-cluster"))
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        if not 4 <= size <= 64 << 20:
            raise ValueError(f"implausible Metadata response size {size}")
        _, resp = decode_response("Metadata", 12, recv_exact(s, size))
    return resp


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _properties(config: dict) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.items()}


def _broker_env() -> dict[str, str]:
    """The environment of a broker process: this one's, with the directory this
    odradek was imported from first on PYTHONPATH unless it is a site-packages
    directory (the child has those), so that the brokers run the same code as
    the harness (and never a checkout that happens to be the working directory:
    they run in their own directories)."""
    import site

    import odradek

    where = os.path.dirname(os.path.dirname(os.path.abspath(odradek.__file__)))
    env = dict(os.environ)
    installed = {os.path.abspath(p) for p in site.getsitepackages() + [site.getusersitepackages()]}
    if where not in installed:
        rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.abspath(p) != where]
        env["PYTHONPATH"] = os.pathsep.join([where] + rest)
    return env


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the broker leads its own process group
    except (ProcessLookupError, PermissionError):
        pass


# The watchdog: a small process that SIGKILLs the process groups it was told
# of when its stdin reaches end of file, which happens when the process owning
# the cluster exits in any way, even by SIGKILL (the write end is inherited
# by no child: Python's pipes are not inheritable and Popen closes other fds).
_WATCHDOG = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
"""


class _Processes:
    """What must not outlive a Cluster, kept apart from it so that a
    finalizer can stop it without keeping the Cluster alive; a watchdog
    process kills the groups left if the owning process dies without
    stopping them."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.etcd: EtcdServer | None = None
        self.tmp: str | None = None
        self.watchdog: subprocess.Popen | None = None
        try:
            self.watchdog = subprocess.Popen([sys.executable, "-S", "-c", _WATCHDOG], stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, start_new_session=True, text=True)
        except OSError:
            pass

    def _tell(self, line: str) -> None:
        if self.watchdog is not None:
            try:
                self.watchdog.stdin.write(line + "\n")
                self.watchdog.stdin.flush()
            except (OSError, ValueError):
                pass

    def watch(self, pgid: int) -> None:
        """Kill process group ``pgid`` if the owner dies before ``unwatch``."""
        self._tell(f"+{pgid}")

    def unwatch(self, pgid: int) -> None:
        self._tell(f"-{pgid}")

    def add(self, proc: subprocess.Popen) -> None:
        self.procs.append(proc)
        self.watch(proc.pid)

    def remove(self, proc: subprocess.Popen) -> None:
        """``proc`` has exited and was reaped."""
        if proc in self.procs:
            self.procs.remove(proc)
            self.unwatch(proc.pid)

    def stop(self, timeout: float = 15.0) -> None:
        live = [p for p in self.procs if p.poll() is None]
        for p in live:  # a stopped process keeps a SIGTERM pending until continued
            _signal_group(p, signal.SIGTERM)
            _signal_group(p, signal.SIGCONT)
        deadline = time.monotonic() + timeout
        for p in live:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in list(self.procs):
            if p.poll() is None:  # never signal a reaped pid's group: the id may be reused
                _signal_group(p, signal.SIGKILL)
                p.wait()
            self.remove(p)
        if self.etcd is not None:
            self.etcd.stop()
            if self.etcd.proc is not None:
                self.unwatch(self.etcd.proc.pid)
            self.etcd = None
        if self.watchdog is not None:
            self.watchdog.stdin.close()
            self.watchdog.wait()
            self.watchdog = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


class ClusterBroker:
    """One broker process of a :class:`Cluster`. Its node id, host, port and
    data dir stay the same across ``kill``/``stop`` and ``start``."""

    def __init__(self, cluster: "Cluster", node_id: int, host: str, port: int, root: str, config: dict):
        self.cluster = cluster
        self.node_id = node_id
        self.host = host
        self.port = port
        self.dir = root
        self.data_dir = os.path.join(root, "data")
        self.log_path = os.path.join(root, "broker.log")
        self.config = dict(config)  # used at every start; change it before a restart to change the broker
        # The etcd endpoint(s) this broker is given, when not the cluster's
        # (``host:port[,...]``, same prefix); used at every start.
        self.etcd_endpoint: str | None = None
        self.proc: subprocess.Popen | None = None
        self.paused = False
        self._log_offset = 0
        self._started_revision = 0

    def __repr__(self) -> str:
        state = "paused" if self.paused else "alive" if self.alive else "down"
        return f"<ClusterBroker {self.node_id} {self.address} {state}>"

    @property
    def address(self) -> str:
        return f"{_connect_host(self.host)}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        """The process exists (a paused one too)."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    def args(self) -> list[str]:
        args = [sys.executable, "-m", "odradek", "serve", "--node-id", str(self.node_id),
                "--host", self.host, "--port", str(self.port), "--data-dir", self.data_dir,
                "--metadata-store", self.metadata_store, "--log-level", self.cluster.log_level]
        for k, v in self.config.items():
            args += ["-o", f"{k}={v}"]
        return args

    @property
    def metadata_store(self) -> str:
        """The ``etcd://`` URL this broker is started with."""
        if self.etcd_endpoint is None:
            return self.cluster.etcd_url
        return f"etcd://{self.etcd_endpoint}/{self.cluster.prefix}"

    def launch(self) -> None:
        """Start the process and return at once (``start`` also waits)."""
        if self.alive:
            raise RuntimeError(f"broker {self.node_id} is already running (pid {self.pid})")
        os.makedirs(self.data_dir, exist_ok=True)
        self._started_revision = self.cluster._etcd_revision()
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting broker {self.node_id}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         cwd=self.dir, env=_broker_env())
        self.paused = False
        self.cluster._processes.add(self.proc)

    def start(self, timeout: float | None = None) -> "ClusterBroker":
        """Start the process (same node id, port and data dir) and wait until it
        is registered and every running broker lists it."""
        self.launch()
        self.cluster.wait_ready(timeout)
        return self

    def restart(self, timeout: float | None = None, *, kill: bool = False) -> "ClusterBroker":
        """Stop it (``kill=True``: SIGKILL, so it waits for its old lease at
        start), then start it again and wait until it serves."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(timeout)

    def kill(self) -> int | None:
        """SIGKILL (its whole process group); waits for the exit."""
        return self._end(signal.SIGKILL, None)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, a clean stop; SIGKILL if it has not exited within ``timeout``."""
        return self._end(signal.SIGTERM, timeout)

    def _end(self, sig: int, timeout: float | None) -> int | None:
        if not self.alive:
            return self.returncode
        _signal_group(self.proc, sig)
        if self.paused:
            _signal_group(self.proc, signal.SIGCONT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc, signal.SIGKILL)
            self.proc.wait()
        self.paused = False
        self.cluster._processes.remove(self.proc)
        return self.proc.returncode

    def pause(self) -> None:
        """SIGSTOP: the process stays, does nothing, and its lease runs out.
        Returns once the process is stopped."""
        if not self.alive:
            raise RuntimeError(f"broker {self.node_id} is not running")
        _signal_group(self.proc, signal.SIGSTOP)
        self.paused = True
        self._wait_state(lambda s: s == "T")

    def resume(self) -> None:
        """SIGCONT after ``pause``; returns once the process runs again."""
        if self.alive:
            _signal_group(self.proc, signal.SIGCONT)
            self._wait_state(lambda s: s != "T")
        self.paused = False

    def _wait_state(self, ok, timeout: float = 5.0) -> None:
        """Wait until the process's state (Linux: /proc/PID/stat) satisfies ``ok``;
        signals are delivered asynchronously. Without /proc, return at once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    if ok(f.read().rpartition(")")[2].split()[0]):
                        return
            except (OSError, IndexError):
                return
            time.sleep(0.005)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of what this broker wrote since its last start."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(self._log_offset, f.tell() - chars))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def warnings(self, limit: int = 30) -> list[str]:
        """The last ``limit`` WARNING, ERROR and CRITICAL lines of this broker's
        log (all its starts): what to read first when a test on it failed."""
        try:
            with open(self.log_path, errors="replace") as f:
                found = [line.rstrip("\n") for line in f
                         if " WARNING " in line or " ERROR " in line or " CRITICAL " in line]
        except OSError:
            return []
        return found[-limit:]


class Cluster:
    """``n`` brokers (node ids 1..n) on one etcd prefix, on this machine.

    ``hosts``: ``None`` puts every broker on 127.0.0.1; ``True`` gives broker
    ``i`` the loopback address ``127.0.0.{i+1}`` (127.0.0.2, 127.0.0.3, ...);
    a sequence gives the addresses. ``data_dir``: where the brokers' dirs (and
    etcd's, when started here) go; kept at close. Without it a temporary
    directory is used and removed at close. ``config``: broker properties
    given to every broker (``-o key=value``); ``broker_config``: more for some
    brokers, by node id (``{1: {"broker.rack": "a"}}``). ``etcd``: an
    ``EtcdServer`` or an etcd endpoint ``host:port`` to use instead of
    starting one; a cluster then takes a fresh prefix unless ``prefix`` is
    given. ``first_port``: brokers on consecutive ports from it, else on free
    ports. ``timeout``: how long to wait for them to serve (default: 30 s
    plus ``broker.session.timeout.ms``).

    ``with Cluster(3) as c:`` starts everything and waits until it serves
    (``start=False``: only etcd, and ``start()`` starts the brokers);
    ``close()`` stops the brokers (SIGTERM, then SIGKILL), then etcd.
    """

    def __init__(self, n: int = 3, *, hosts: Sequence[str] | bool | None = None, data_dir: str | None = None,
                 config: dict | None = None, broker_config: dict[int, dict] | None = None,
                 etcd: EtcdServer | str | None = None, prefix: str | None = None, first_port: int | None = None,
                 log_level: str = "INFO", timeout: float | None = None, start: bool = True):
        if n < 1:
            raise ValueError("a cluster needs at least one broker")
        if hosts is True:
            hosts = [f"127.0.0.{i + 1}" for i in range(1, n + 1)]
        elif not hosts:
            hosts = ["127.0.0.1"] * n
        hosts = list(hosts)
        if len(hosts) != n:
            raise ValueError(f"{len(hosts)} hosts for {n} brokers")
        if importlib.util.find_spec("etcd3aio") is None:
            raise RuntimeError("brokers on etcd need the cluster extra: pip install 'odradek[cluster]'")
        self.log_level = log_level
        self._processes = _Processes()
        self._finalizer = weakref.finalize(self, self._processes.stop, 5.0)
        if data_dir is None:
            self._processes.tmp = tempfile.mkdtemp(prefix="odradek-cluster-")
        self.data_dir = os.path.abspath(data_dir or self._processes.tmp)
        os.makedirs(self.data_dir, exist_ok=True)
        try:
            if etcd is None:
                self.etcd = EtcdServer(data_dir=os.path.join(self.data_dir, "etcd"),
                                       unsafe_no_fsync=data_dir is None)
                self._processes.etcd = self.etcd
                self.etcd.start()
                self._processes.watch(self.etcd.proc.pid)
                self.etcd_endpoint = self.etcd.endpoint
                self.prefix = (prefix or "odradek").strip("/")
            else:
                self.etcd = etcd if isinstance(etcd, EtcdServer) else None
                endpoint = etcd.endpoint if isinstance(etcd, EtcdServer) else str(etcd)
                self.etcd_endpoint = endpoint.removeprefix("http://").rstrip("/")
                self.prefix = (prefix or f"odradek-{uuid.uuid4().hex[:8]}").strip("/")
            unknown = set(broker_config or {}) - set(range(1, n + 1))
            if unknown:
                raise ValueError(f"broker_config for node id(s) {sorted(unknown)} of a {n}-broker cluster")
            self.config = _properties(config or {})  # every broker's, added ones too
            self.brokers = []
            for i, host in enumerate(hosts):
                port = first_port + i if first_port else _free_port(host)
                own = dict(self.config, **_properties((broker_config or {}).get(i + 1, {})))
                self.brokers.append(ClusterBroker(self, i + 1, host, port,
                                                  os.path.join(self.data_dir, f"broker-{i + 1}"), own))
            if start:
                self.start(timeout)
        except BaseException:
            self.close()
            raise

    def start(self, timeout: float | None = None) -> "Cluster":
        """Start every broker that is not running, together, and wait until all serve."""
        for b in self.brokers:
            if not b.alive:
                b.launch()
        self.wait_ready(timeout)
        return self

    @property
    def etcd_url(self) -> str:
        """The ``etcd://host:port/prefix`` URL the brokers were given."""
        return f"etcd://{self.etcd_endpoint}/{self.prefix}"

    @property
    def bootstrap(self) -> str:
        """``host:port,...`` of every broker, for clients."""
        return ",".join(b.address for b in self.brokers)

    def broker(self, node_id: int) -> ClusterBroker:
        for b in self.brokers:
            if b.node_id == node_id:
                return b
        raise KeyError(f"no broker {node_id}")

    def add_broker(self, host: str = "127.0.0.1", config: dict | None = None, *, start: bool = True,
                   timeout: float | None = None) -> ClusterBroker:
        """One more broker, with the next node id, the cluster's config (and
        ``config``), on a free port of ``host``; started unless ``start=False``."""
        node_id = max(b.node_id for b in self.brokers) + 1
        own = dict(self.config, **_properties(config or {}))
        b = ClusterBroker(self, node_id, host, _free_port(host),
                          os.path.join(self.data_dir, f"broker-{node_id}"), own)
        self.brokers.append(b)
        if start:
            b.start(timeout)
        return b

    def running(self) -> list[ClusterBroker]:
        """The brokers whose process runs and is not paused."""
        return [b for b in self.brokers if b.alive and not b.paused]

    # -- readiness ---------------------------------------------------------

    def _etcd(self, method: str, body: dict) -> dict:
        import urllib.request

        req = urllib.request.Request(f"http://{self.etcd_endpoint.split(',')[0]}/v3/{method}",
                                     json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)

    def _etcd_revision(self) -> int:
        key = f"/{self.prefix}/".encode()
        return int(self._etcd("kv/range", {"key": base64.b64encode(key).decode(), "count_only": True})
                   ["header"]["revision"])

    def registrations(self) -> dict[int, int]:
        """{node id: create revision (the broker epoch)} of the brokers
        registered in etcd now."""
        key = f"/{self.prefix}/brokers/".encode()
        end = key[:-1] + bytes([key[-1] + 1])
        resp = self._etcd("kv/range", {"key": base64.b64encode(key).decode(),
                                       "range_end": base64.b64encode(end).decode()})
        out = {}
        for kv in resp.get("kvs", []):
            name = base64.b64decode(kv["key"])[len(key):].decode()
            if name.isdigit():
                out[int(name)] = int(kv["create_revision"])
        return out

    def _plaintext(self) -> bool:
        listeners = next(iter(self.brokers)).config.get("listeners")
        return not listeners or listeners.upper().startswith("PLAINTEXT:")

    def _not_ready(self) -> str | None:
        """Why the cluster does not serve yet, or None when it does."""
        running = self.running()
        try:
            registered = self.registrations()
        except (OSError, ValueError, KeyError) as e:
            return f"etcd does not answer: {e}"
        for b in running:
            if registered.get(b.node_id, 0) <= b._started_revision:
                return f"broker {b.node_id} is not registered yet"
        if not self._plaintext():
            return None
        want = {b.node_id for b in running}
        for b in running:
            try:
                md = metadata_request(_connect_host(b.host), b.port, timeout=2.0, topics=[])
            except (OSError, ValueError) as e:
                return f"broker {b.node_id} does not answer Metadata: {e}"
            missing = sorted(want - {x["node_id"] for x in md["brokers"]})
            if missing:
                return f"broker {b.node_id} does not list broker(s) {missing} yet"
        return None

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every running broker is registered (after its latest
        start) and every running broker's Metadata lists all of them. Raises
        BrokerStartError, with the log tail, when a broker started here has
        exited or the time runs out."""
        if timeout is None:
            ttl = max(int(b.config.get("broker.session.timeout.ms", 9000)) for b in self.brokers) / 1000
            timeout = START_TIMEOUT + ttl
        deadline = time.monotonic() + timeout
        while True:
            for b in self.brokers:
                if b.proc is not None and b.proc in self._processes.procs and not b.alive:
                    self._processes.remove(b.proc)
                    raise BrokerStartError(f"broker {b.node_id} exited with {b.returncode}; "
                                           f"its log ({b.log_path}) ends:\n{b.log_tail()}")
            why = self._not_ready()
            if why is None:
                return
            if time.monotonic() >= deadline:
                tails = "".join(f"\n--- broker {b.node_id} ({b.log_path}):\n{b.log_tail(1500)}"
                                for b in self.running())
                raise BrokerStartError(f"the cluster did not come up in {timeout:.0f} s: {why}{tails}")
            time.sleep(0.05)

    # -- what clients see --------------------------------------------------

    def metadata(self, node_id: int | None = None, timeout: float = 5.0) -> dict[tuple[str, int], PartitionInfo]:
        """{(topic, partition): PartitionInfo(leader, leader_epoch, replicas, isr)}
        as one broker's Metadata answers it (``node_id``, else the first
        running broker that answers). A leader of -1 is reported as None."""
        candidates = [self.broker(node_id)] if node_id is not None else self.running()
        error: Exception | None = None
        for b in candidates:
            try:
                md = metadata_request(_connect_host(b.host), b.port, timeout=timeout)
            except (OSError, ValueError) as e:
                error = e
                continue
            out = {}
            for t in md["topics"]:
                for p in t["partitions"]:
                    out[(t["name"], p["partition_index"])] = PartitionInfo(
                        p["leader_id"] if p["leader_id"] >= 0 else None, p["leader_epoch"],
                        list(p["replica_nodes"]), list(p["isr_nodes"]))
            return out
        raise ConnectionError(f"no broker answered Metadata: {error}")

    def leader(self, topic: str, partition: int, node_id: int | None = None) -> int | None:
        """The node id of the partition's leader, or None (unknown or no leader)."""
        info = self.metadata(node_id).get((topic, partition))
        return info.leader if info is not None else None

    # -- lifecycle ---------------------------------------------------------

    def close(self, timeout: float = 15.0) -> None:
        """Stop every broker (SIGTERM, SIGKILL after ``timeout``), then etcd if it
        was started here; remove the temporary directory if one was made."""
        for b in self.brokers if hasattr(self, "brokers") else []:
            b.paused = False
        self._processes.stop(timeout)
        self._finalizer.detach()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Cluster {self.etcd_url} {self.brokers!r}>"
