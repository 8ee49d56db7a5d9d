import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Codecs generated from here on (in this process and in brokers started by
# tests, which inherit the environment) refuse a dict key that is no field of
# its message: a misspelled response field fails the test instead of sending
# the field's default (odradek.protocol.schema, strict mode).
os.environ.setdefault("ODRADEK_STRICT_CODEC", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"port {port} not accepting connections")


class BrokerProcess:
    """``odradek serve`` in a child process, for tests that kill it."""

    def __init__(self, data_dir: str, port: int | None = None, props: dict | None = None,
                 open_files: int | None = None):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.props = props or {}
        self.open_files = open_files  # the child's open-file limit (soft and hard), if given
        self.proc = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self):
        args = [sys.executable, "-m", "odradek", "serve", "--port", str(self.port),
                "--data-dir", self.data_dir, "--log-level", "WARNING"]
        for k, v in self.props.items():
            args += ["-o", f"{k}={v}"]
        limit = self.open_files

        def set_limit():
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.proc = subprocess.Popen(args, cwd=ROOT, preexec_fn=set_limit if limit else None)
        wait_port(self.port, proc=self.proc)
        return self

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def broker_process(tmp_path):
    started = []

    def start(data_dir=None, **kw):
        b = BrokerProcess(str(data_dir or tmp_path / "data"), **kw).start()
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


def have_kcat() -> bool:
    return shutil.which("kcat") is not None or shutil.which("kafkacat") is not None


@pytest.fixture(scope="session")
def etcd():
    """One etcd 3.5.3+ for the session (tests use prefixes of their own);
    skipped, saying why, without it or without etcd3aio."""
    try:
        import etcd3aio  # noqa: F401
    except ImportError:
        pytest.skip("etcd3aio is not installed (pip install 'odradek[cluster]')")
    from odradek.cluster.etcd_server import EtcdServer, find_etcd

    if find_etcd() is None:
        pytest.skip("no etcd 3.5.3+ found ($ODRADEK_ETCD, PATH or ~/.cache/odradek; .ci/run builds one)")
    with EtcdServer(unsafe_no_fsync=True) as server:
        yield server
