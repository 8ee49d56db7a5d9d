"""Finding and running an etcd server, for ``odradek cluster`` and tests.

The binary is taken from ``$ODRADEK_ETCD``, else ``etcd`` on PATH, else the
one ``.ci/run`` builds into ``~/.cache/odradek/etcd-<version>/etcd`` (etcd
3.6 from the Go module proxy: a two-file wrapper module around
``etcdmain.Main``). Versions before 3.5.3 can lose committed data when killed
under load and are refused.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Sequence

MIN_VERSION = (3, 5, 3)
CACHE = os.path.expanduser("~/.cache/odradek")


def etcd_version(binary: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"etcd Version: (\d+)\.(\d+)\.(\d+)", out)
    return tuple(map(int, m.groups())) if m else None


def find_etcd() -> str | None:
    """The etcd binary to run (3.5.3 or newer), or None."""
    candidates = [os.environ.get("ODRADEK_ETCD"), shutil.which("etcd")]
    candidates += sorted(glob.glob(os.path.join(CACHE, "etcd-*", "etcd")), reverse=True)
    for c in candidates:
        if c and os.access(c, os.X_OK) and (etcd_version(c) or (0,)) >= MIN_VERSION:
            return c
    return None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EtcdServer:
    """One etcd member on loopback, in a directory of its own, for as long as
    it is needed. ``unsafe_no_fsync`` makes it fast for tests that do not kill
    it; never use it where etcd's own durability is under test.
    ``extra_hosts``: more addresses it serves clients on, at the same port
    (``endpoint_on(host)``), so that a test can give each broker an etcd
    address of its own and cut one broker off etcd with a firewall rule."""

    def __init__(self, binary: str | None = None, data_dir: str | None = None, host: str = "127.0.0.1",
                 unsafe_no_fsync: bool = False, extra_hosts: Sequence[str] = ()):
        self.binary = binary or find_etcd()
        if self.binary is None:
            raise FileNotFoundError("no etcd 3.5.3+ found ($ODRADEK_ETCD, PATH or ~/.cache/odradek)")
        self._tmp = None if data_dir else tempfile.mkdtemp(prefix="odradek-etcd-")
        self.data_dir = data_dir or os.path.join(self._tmp, "data")
        # etcd's own log goes to a file: a pipe nobody reads would stop etcd once full.
        self.log_path = os.path.join(self._tmp, "etcd.log") if self._tmp else data_dir.rstrip("/") + ".log"
        self.host = host
        self.client_port = _free_port(host)
        self.peer_port = _free_port(host)
        self.unsafe_no_fsync = unsafe_no_fsync
        self.extra_hosts = list(extra_hosts)
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    def endpoint_on(self, host: str) -> str:
        """The endpoint on one of ``extra_hosts`` (or the main host)."""
        if host != self.host and host not in self.extra_hosts:
            raise ValueError(f"etcd does not listen on {host}")
        return f"{host}:{self.client_port}"

    def url(self, prefix: str) -> str:
        """The ``etcd://`` URL of a cluster under ``prefix`` in this etcd."""
        return f"etcd://{self.endpoint}/{prefix.strip('/')}"

    def start(self, timeout: float = 20.0) -> "EtcdServer":
        client = f"http://{self.endpoint}"
        listen = ",".join([client] + [f"http://{h}:{self.client_port}" for h in self.extra_hosts])
        peer = f"http://{self.host}:{self.peer_port}"
        args = [self.binary, "--name", "odradek-etcd", "--data-dir", self.data_dir,
                "--listen-client-urls", listen, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"odradek-etcd={peer}", "--log-level", "error"]
        if self.unsafe_no_fsync:
            args.append("--unsafe-no-fsync")
        # A session of its own: Ctrl-C in a terminal reaches the process that owns
        # it, which stops the brokers before etcd.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.client_port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError("etcd did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of etcd's log (its errors: it runs at ``--log-level error``)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - chars))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "EtcdServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
