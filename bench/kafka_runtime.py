#!/usr/bin/env python3
"""Reference Apache Kafka runtime for odradek benchmarks.

This module gives benchmarks a real Apache Kafka to compare odradek against,
and a way to drive *any* Kafka-protocol endpoint with Kafka's own perf tools:

* :func:`fetch` resolves released Kafka 4.x jars from Maven Central with Maven
  (a throwaway ``pom.xml`` plus ``dependency:copy-dependencies``) into
  ``~/.cache/odradek-bench/kafka-<version>/`` and writes a classpath file.
  Nothing of Kafka lives in the repository; a second call is served from the
  cache without running Maven.
* :class:`KafkaBroker` starts a single-node KRaft broker (combined
  broker+controller) on free loopback ports in a temporary directory, waits
  until a Metadata request through ``confluent_kafka.admin.AdminClient``
  succeeds, and stops it again (SIGTERM, then SIGKILL).
* :class:`KafkaCluster` starts ``n`` such combined nodes as one cluster (a
  static quorum of all ``n`` controllers, one cluster id formatted on every
  node), with handles to kill and restart a node.
* :func:`producer_perf`, :func:`consumer_perf` and :func:`end_to_end_latency`
  run ``org.apache.kafka.tools.ProducerPerformance``, ``ConsumerPerformance``
  and ``EndToEndLatency`` against an arbitrary bootstrap address and parse
  their summaries into dicts.

CLI (for manual use)::

    python bench/kafka_runtime.py fetch [--version 4.4.0]
    python bench/kafka_runtime.py start [--version V] [--heap 1G] [--port N]
    python bench/kafka_runtime.py perf  [--bootstrap HOST:PORT] [--records N]
                                        [--record-size B] [--acks 1]

``perf`` without ``--bootstrap`` starts a Kafka broker, benchmarks it and
stops it; with ``--bootstrap`` it benchmarks whatever listens there (e.g. an
odradek broker).

Environment:
    ``ODRADEK_BENCH_CACHE``   cache root (default ``~/.cache/odradek-bench``)
    ``ODRADEK_KAFKA_VERSION`` Kafka version to use when none is given
    ``JAVA_HOME``             Java installation to run (else ``java`` on PATH)
"""

from __future__ import annotations

import argparse
import atexit
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

__all__ = [
    "KAFKA_VERSIONS",
    "KafkaRuntime",
    "KafkaBroker",
    "KafkaCluster",
    "KafkaRuntimeError",
    "KafkaToolError",
    "fetch",
    "create_topic",
    "producer_perf",
    "consumer_perf",
    "end_to_end_latency",
]

#: Kafka 4.x releases served by the package registry, newest first.  With no
#: explicit version the first one that is cached, or else resolves, is used.
KAFKA_VERSIONS: tuple[str, ...] = (
    "4.4.0", "4.3.1", "4.3.0", "4.2.1", "4.2.0",
    "4.1.2", "4.1.1", "4.1.0", "4.0.2", "4.0.1", "4.0.0",
)

#: Kafka modules a KRaft broker plus the perf tools need; Maven brings the
#: rest (scala-library, jackson, zstd, ...) transitively.
KAFKA_ARTIFACTS: tuple[str, ...] = (
    "kafka_2.13",
    "kafka-clients",
    "kafka-tools",
    "kafka-server",
    "kafka-server-common",
    "kafka-storage",
    "kafka-metadata",
    "kafka-raft",
    "kafka-group-coordinator",
    "kafka-transaction-coordinator",
    "kafka-share-coordinator",
    "kafka-coordinator-common",
    "kafka-streams",
)

#: Logging backend.  Kafka's POMs only carry ``slf4j-api`` 1.7 and log4j2 core;
#: the release tarball adds a binding, so do the same (SLF4J 2 + log4j2).
SLF4J_VERSION = "2.0.17"
LOG4J_VERSION = "2.25.5"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"

BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_CLASSES = ("kafka.tools.StorageTool", "org.apache.kafka.tools.StorageTool")
PRODUCER_PERF_MAIN = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER_PERF_MAIN = "org.apache.kafka.tools.ConsumerPerformance"
END_TO_END_MAIN = "org.apache.kafka.tools.EndToEndLatency"

#: JVM flags of ``kafka-run-class.sh`` (KAFKA_JVM_PERFORMANCE_OPTS).
BROKER_JVM_OPTS: tuple[str, ...] = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


class KafkaRuntimeError(RuntimeError):
    """Kafka could not be fetched, started or stopped."""


class KafkaToolError(KafkaRuntimeError):
    """A Kafka command-line tool failed or printed no parsable summary."""

    def __init__(self, message: str, stdout: str = "", stderr: str = ""):
        tail = "\n".join(
            f"--- {name} (tail) ---\n{_tail(text, 40)}" for name, text in
            (("stdout", stdout), ("stderr", stderr)) if text.strip()
        )
        super().__init__(f"{message}\n{tail}" if tail else message)
        self.stdout = stdout
        self.stderr = stderr


# --------------------------------------------------------------------------
# Fetching and caching the jars
# --------------------------------------------------------------------------

def cache_root() -> Path:
    """Root of the benchmark cache (outside the repository)."""
    env = os.environ.get("ODRADEK_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "odradek-bench"


def java_executable() -> str:
    """The ``java`` binary: ``$JAVA_HOME/bin/java`` if set, else from PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise KafkaRuntimeError("no java executable found (install a JDK >= 17 or set JAVA_HOME)")
    return found


TOOLS_LOG4J2 = """\
# log4j2 config for Kafka command-line tools: warnings only, on stderr,
# so that stdout carries nothing but the tool's own report.
status = error
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = STDERR
"""

BROKER_LOG4J2 = """\
# log4j2 config for the benchmark broker: INFO to server.log in its run dir,
# warnings also to stderr (captured in broker.out).
status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
appender.err.filter.threshold.type = ThresholdFilter
appender.err.filter.threshold.level = warn
rootLogger.level = info
rootLogger.appenderRef.file.ref = FILE
rootLogger.appenderRef.err.ref = STDERR
logger.state.name = state.change.logger
logger.state.level = warn
"""


def _pom_xml(version: str) -> str:
    """A throwaway POM whose runtime dependencies are a KRaft broker + tools."""
    deps = "\n".join(
        f"    <dependency><groupId>org.apache.kafka</groupId>"
        f"<artifactId>{a}</artifactId><version>{version}</version></dependency>"
        for a in KAFKA_ARTIFACTS
    )
    log = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in (
            ("org.slf4j", "slf4j-api", SLF4J_VERSION),
            ("org.apache.logging.log4j", "log4j-api", LOG4J_VERSION),
            ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
            ("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J_VERSION),
        )
    )
    return textwrap.dedent("""\
        <?xml version="1.0" encoding="UTF-8"?>
        <!-- Generated by odradek bench/kafka_runtime.py; safe to delete. -->
        <project xmlns="http://maven.apache.org/POM/4.0.0">
          <modelVersion>4.0.0</modelVersion>
          <groupId>odradek.bench</groupId>
          <artifactId>kafka-runtime</artifactId>
          <version>{version}</version>
          <packaging>pom</packaging>
          <dependencyManagement>
            <dependencies>
        {log}
            </dependencies>
          </dependencyManagement>
          <dependencies>
        {deps}
        {log}
          </dependencies>
          <build>
            <pluginManagement>
              <plugins>
                <plugin>
                  <groupId>org.apache.maven.plugins</groupId>
                  <artifactId>maven-dependency-plugin</artifactId>
                  <version>{plugin}</version>
                </plugin>
              </plugins>
            </pluginManagement>
          </build>
        </project>
        """).format(version=version, deps=deps, log=log, plugin=DEPENDENCY_PLUGIN_VERSION)


@dataclass
class KafkaRuntime:
    """A resolved Kafka release: its cache directory and JVM classpath."""

    version: str
    home: Path
    classpath: str
    _classes: dict[str, bool] = field(default_factory=dict, repr=False)

    @property
    def libs(self) -> Path:
        """Directory holding the jars."""
        return Path(self.classpath.split(os.pathsep)[0]).parent

    @property
    def tools_log4j2(self) -> Path:
        """log4j2 config used for command-line tools (warnings to stderr)."""
        return self.home / "log4j2-tools.properties"

    def has_class(self, name: str) -> bool:
        """Whether a class (``a.b.C``) exists in one of the jars."""
        if name not in self._classes:
            entry = name.replace(".", "/") + ".class"
            found = False
            for jar in self.classpath.split(os.pathsep):
                try:
                    with zipfile.ZipFile(jar) as zf:
                        zf.getinfo(entry)
                    found = True
                    break
                except (KeyError, OSError, zipfile.BadZipFile):
                    continue
            self._classes[name] = found
        return self._classes[name]

    def storage_tool_class(self) -> str:
        """The StorageTool main class this Kafka version ships."""
        for name in STORAGE_TOOL_CLASSES:
            if self.has_class(name):
                return name
        raise KafkaRuntimeError(f"no StorageTool class in Kafka {self.version}")

    def java_command(self, main: str, args: Sequence[str] = (), *, heap: str | None = None,
                     jvm_opts: Sequence[str] = (), log4j2: Path | None = None) -> list[str]:
        """Command line running ``main`` on this runtime's classpath."""
        cmd = [java_executable()]
        if heap:
            cmd += [f"-Xms{heap}", f"-Xmx{heap}"]
        cmd += list(jvm_opts)
        cmd.append(f"-Dlog4j2.configurationFile={log4j2 or self.tools_log4j2}")
        cmd += ["-cp", self.classpath, main, *args]
        return cmd

    def tool_help(self, main: str) -> str:
        """``--help`` text of a tool (cached on disk: used to pick flags)."""
        path = self.home / f"help-{main.rsplit('.', 1)[-1]}.txt"
        if path.exists():
            return path.read_text()
        proc = subprocess.run(self.java_command(main, ["--help"], heap="256M"),
                              capture_output=True, text=True, timeout=120)
        text = proc.stdout + proc.stderr
        path.write_text(text)
        return text


def _runtime_from_cache(version: str, root: Path) -> KafkaRuntime | None:
    home = root / f"kafka-{version}"
    cp_file = home / "classpath.txt"
    if not cp_file.exists():
        return None
    classpath = cp_file.read_text().strip()
    jars = classpath.split(os.pathsep)
    if not jars or not all(os.path.exists(j) for j in jars):
        return None
    names = {Path(j).name for j in jars}
    if not all(f"{a}-{version}.jar" in names for a in KAFKA_ARTIFACTS):
        return None  # resolved before an artifact was added to the list
    return KafkaRuntime(version=version, home=home, classpath=classpath)


def _resolve(version: str, root: Path, quiet: bool) -> KafkaRuntime:
    """Run Maven to copy Kafka ``version`` and its runtime deps into the cache."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise KafkaRuntimeError("Maven (mvn) is required to fetch Kafka jars")
    home = root / f"kafka-{version}"
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_pom_xml(version))
    # One directory per artifact list: a cache resolved again for a longer
    # list leaves the jars of the previous one to whoever is running them.
    digest = uuid.uuid5(uuid.NAMESPACE_URL, ",".join(KAFKA_ARTIFACTS)).hex[:8]
    libs = home / f"libs-{digest}"
    if libs.exists():
        shutil.rmtree(libs)
    cmd = [mvn, "-B", "-q", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={libs}"]
    if not quiet:
        print(f"[kafka_runtime] resolving Kafka {version} with Maven into {home}", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(libs, ignore_errors=True)  # leave no half-filled cache entry
        raise KafkaToolError(f"Maven could not resolve Kafka {version}", proc.stdout, proc.stderr)
    jars = sorted(str(p) for p in libs.glob("*.jar"))
    if not any(Path(j).name == f"kafka_2.13-{version}.jar" for j in jars):
        raise KafkaRuntimeError(f"Maven finished but kafka_2.13-{version}.jar is missing in {libs}")
    (home / "log4j2-tools.properties").write_text(TOOLS_LOG4J2)
    tmp = home / "classpath.txt.tmp"
    tmp.write_text(os.pathsep.join(jars) + "\n")
    tmp.replace(home / "classpath.txt")  # written last: marks the cache complete
    return KafkaRuntime(version=version, home=home, classpath=os.pathsep.join(jars))


def fetch(version: str | None = None, *, quiet: bool = False) -> KafkaRuntime:
    """Return a cached Kafka runtime, resolving it with Maven on first use.

    With ``version=None`` (and no ``ODRADEK_KAFKA_VERSION``) the newest entry of
    :data:`KAFKA_VERSIONS` already in the cache is used; if none is cached, each
    is tried with Maven, newest first, until one resolves.
    """
    version = version or os.environ.get("ODRADEK_KAFKA_VERSION") or None
    root = cache_root()
    candidates = [version] if version else list(KAFKA_VERSIONS)
    for v in candidates:
        rt = _runtime_from_cache(v, root)
        if rt:
            return rt
    errors = []
    for v in candidates:
        try:
            return _resolve(v, root, quiet)
        except KafkaRuntimeError as exc:
            errors.append(f"{v}: {str(exc).splitlines()[0]}")
            if not quiet:
                print(f"[kafka_runtime] Kafka {v} did not resolve: {exc}", file=sys.stderr)
    raise KafkaRuntimeError("no Kafka version could be resolved:\n  " + "\n  ".join(errors))


# --------------------------------------------------------------------------
# Single-node KRaft broker
# --------------------------------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def random_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in Kafka's URL-safe base64 form."""
    while True:
        raw = uuid.uuid4().bytes
        cid = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if not cid.startswith("-"):  # would look like a command-line flag
            return cid


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def metadata_ok(bootstrap: str, timeout: float = 5.0) -> bool:
    """Whether a Metadata request to ``bootstrap`` returns at least one broker."""
    from confluent_kafka.admin import AdminClient  # imported lazily: CLI `fetch` needs no client

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
    try:
        md = admin.list_topics(timeout=timeout)
        return bool(md.brokers)
    except Exception:  # KafkaException on timeout / transport errors
        return False


_LIVE_BROKERS: "set[KafkaBroker]" = set()


@atexit.register
def _stop_leftover_brokers() -> None:
    for broker in list(_LIVE_BROKERS):
        broker.stop()


class KafkaBroker:
    """A single-node KRaft Apache Kafka broker (broker + controller) for benchmarks.

    Usage::

        with KafkaBroker() as kafka:
            print(kafka.bootstrap, kafka.pid, kafka.startup_seconds)

    Attributes after :meth:`start`:
        ``bootstrap``        ``"127.0.0.1:<port>"`` of the PLAINTEXT listener
        ``pid``              JVM process id
        ``startup_seconds``  JVM launch until a Metadata request succeeded
        ``accept_seconds``   JVM launch until the listener accepted a TCP connection
        ``format_seconds``   time spent in ``StorageTool format``
        ``run_dir``          temp dir with server.properties, data/, server.log
        ``runtime``          the :class:`KafkaRuntime` in use
    After :meth:`stop`: ``stop_seconds`` and ``exit_code``.
    """

    def __init__(self, version: str | None = None, heap: str = "1G", *,
                 host: str = "127.0.0.1", port: int | None = None,
                 controller_port: int | None = None,
                 config: Mapping[str, object] | None = None,
                 jvm_opts: Sequence[str] = (), startup_timeout: float = 120.0,
                 stop_timeout: float = 30.0, keep_run_dir: bool = False,
                 quiet: bool = True, command_prefix: Sequence[str] = ()):
        """``command_prefix``: put before the JVM's command line (e.g.
        ``["prlimit", "--nofile=1024:1024", "--"]``; it must exec the JVM)."""
        self.version = version
        self.heap = heap
        self.command_prefix = list(command_prefix)
        self.host = host
        self.port = port
        self.controller_port = controller_port
        self.extra_config = dict(config or {})
        self.jvm_opts = tuple(jvm_opts)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.keep_run_dir = keep_run_dir
        self.quiet = quiet
        self.runtime: KafkaRuntime | None = None
        self.run_dir: Path | None = None
        self.bootstrap: str | None = None
        self.pid: int | None = None
        self.startup_seconds: float | None = None
        self.accept_seconds: float | None = None
        self.format_seconds: float | None = None
        self.stop_seconds: float | None = None
        self.exit_code: int | None = None
        self._proc: subprocess.Popen | None = None
        self._out = None

    # -- configuration ----------------------------------------------------

    def server_properties(self) -> dict[str, str]:
        """The broker configuration written to ``server.properties``."""
        assert self.run_dir and self.port and self.controller_port
        props: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.run_dir / "data",
            "num.partitions": 1,
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "true",
        }
        props.update(self.extra_config)
        return {k: str(v) for k, v in props.items()}

    # -- lifecycle --------------------------------------------------------

    def start(self) -> "KafkaBroker":
        """Fetch jars if needed, format storage, launch the JVM, wait until ready."""
        if self._proc is not None:
            raise KafkaRuntimeError("broker already started")
        self.runtime = rt = fetch(self.version, quiet=self.quiet)
        self.version = rt.version
        self.port = self.port or free_port(self.host)
        self.controller_port = self.controller_port or free_port(self.host)
        while self.controller_port == self.port:
            self.controller_port = free_port(self.host)
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"odradek-kafka-{rt.version}-"))
        props_file = self.run_dir / "server.properties"
        props_file.write_text("".join(f"{k}={v}\n" for k, v in self.server_properties().items()))
        log4j2 = self.run_dir / "log4j2.properties"
        log4j2.write_text(BROKER_LOG4J2)
        self.bootstrap = f"{self.host}:{self.port}"

        t0 = time.monotonic()
        fmt = subprocess.run(
            rt.java_command(rt.storage_tool_class(),
                            ["format", "--config", str(props_file), "--cluster-id", random_cluster_id()],
                            heap="256M"),
            capture_output=True, text=True, timeout=120)
        self.format_seconds = time.monotonic() - t0
        if fmt.returncode != 0:
            self._cleanup_dir()
            raise KafkaToolError("StorageTool format failed", fmt.stdout, fmt.stderr)

        self._out = open(self.run_dir / "broker.out", "wb")
        t0 = self.relaunch()
        _LIVE_BROKERS.add(self)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def relaunch(self) -> float:
        """Launch the JVM on this broker's run dir (formatted by :meth:`start`),
        without waiting; return the launch time (``time.monotonic()``). After
        :meth:`kill9`, this restarts the broker on its data."""
        rt = self.runtime
        jvm_opts = [*BROKER_JVM_OPTS, f"-Dkafka.logs.dir={self.run_dir}", *self.jvm_opts]
        cmd = self.command_prefix + rt.java_command(
            BROKER_MAIN, [str(self.run_dir / "server.properties")], heap=self.heap,
            jvm_opts=jvm_opts, log4j2=self.run_dir / "log4j2.properties")
        t0 = time.monotonic()
        self._proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self._proc.pid
        return t0

    def kill9(self) -> None:
        """SIGKILL the broker (its process group) and reap it; the run dir stays."""
        if self._proc is not None:
            self._signal(signal.SIGKILL)
            self._proc.wait(30)

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.startup_timeout
        port_up = False
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise KafkaRuntimeError(
                    f"Kafka exited with code {self._proc.returncode} during startup\n{self.log_tail()}")
            if not port_up:
                port_up = _port_open(self.host, self.port)
                if not port_up:
                    time.sleep(0.01)  # fine-grained until the listener accepts
                    continue
                self.accept_seconds = time.monotonic() - t0
            if metadata_ok(self.bootstrap, timeout=2.0):
                return
            time.sleep(0.02)
        raise KafkaRuntimeError(
            f"Kafka not ready after {self.startup_timeout:.0f}s on {self.bootstrap}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the broker's stdout/stderr and server.log."""
        parts = []
        for name in ("broker.out", "server.log"):
            path = self.run_dir / name if self.run_dir else None
            if path and path.exists():
                parts.append(f"--- {name} ---\n" + _tail(path.read_text(errors="replace"), lines))
        return "\n".join(parts)

    def alive(self) -> bool:
        """Whether the broker JVM is still running."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the broker: SIGTERM (controlled shutdown), SIGKILL after ``stop_timeout``."""
        proc = self._proc
        if proc is not None:
            t0 = time.monotonic()
            if proc.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    proc.wait(10)
            # the JVM is the session leader; kill any stragglers in its group
            self._signal(signal.SIGKILL)
            self.stop_seconds = time.monotonic() - t0
            self.exit_code = proc.returncode
            self._proc = None
        _LIVE_BROKERS.discard(self)
        if self._out is not None:
            self._out.close()
            self._out = None
        self._cleanup_dir()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)  # start_new_session: pgid == pid
        except (ProcessLookupError, PermissionError):
            pass

    def _cleanup_dir(self) -> None:
        if self.run_dir and not self.keep_run_dir and self.run_dir.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"KafkaBroker(version={self.version!r}, bootstrap={self.bootstrap!r}, "
                f"pid={self.pid}, alive={self.alive()})")


# --------------------------------------------------------------------------
# A small multi-node KRaft cluster
# --------------------------------------------------------------------------

class KafkaNode:
    """One node of a :class:`KafkaCluster`: a combined broker+controller JVM
    with its own ports and data dir, which survive a kill and a restart."""

    def __init__(self, cluster: "KafkaCluster", node_id: int, port: int, controller_port: int):
        self.cluster = cluster
        self.node_id = node_id
        self.port = port
        self.controller_port = controller_port
        self.dir = cluster.run_dir / f"node-{node_id}"
        self.pid: int | None = None
        self._proc: subprocess.Popen | None = None
        self._out = None

    @property
    def address(self) -> str:
        return f"{self.cluster.host}:{self.port}"

    @property
    def props_file(self) -> Path:
        return self.dir / "server.properties"

    def server_properties(self) -> dict[str, str]:
        c = self.cluster
        host = c.host
        n = len(c.nodes_spec)
        props: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": ",".join(f"{i}@{host}:{cp}" for i, (_, cp) in c.nodes_spec.items()),
            "listeners": f"PLAINTEXT://{host}:{self.port},CONTROLLER://{host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.dir / "data",
            # Kafka's defaults ask for 3 replicas of its internal topics; a
            # smaller cluster gets as many as it has brokers.
            "offsets.topic.replication.factor": min(3, n),
            "transaction.state.log.replication.factor": min(3, n),
            "transaction.state.log.min.isr": min(2, n),
            "share.coordinator.state.topic.replication.factor": min(3, n),
            "share.coordinator.state.topic.min.isr": min(2, n),
            "group.initial.rebalance.delay.ms": 0,
        }
        props.update(c.extra_config)
        return {k: str(v) for k, v in props.items()}

    def format(self) -> None:
        """Write the config and format the storage with the cluster's id."""
        rt = self.cluster.runtime
        self.dir.mkdir(parents=True, exist_ok=True)
        self.props_file.write_text("".join(f"{k}={v}\n" for k, v in self.server_properties().items()))
        (self.dir / "log4j2.properties").write_text(BROKER_LOG4J2)
        fmt = subprocess.run(
            rt.java_command(rt.storage_tool_class(),
                            ["format", "--config", str(self.props_file),
                             "--cluster-id", self.cluster.cluster_id], heap="256M"),
            capture_output=True, text=True, timeout=120)
        if fmt.returncode != 0:
            raise KafkaToolError(f"StorageTool format failed on node {self.node_id}", fmt.stdout, fmt.stderr)

    def launch(self) -> None:
        """Start the JVM (data dir as it is); does not wait."""
        if self.alive():
            raise KafkaRuntimeError(f"node {self.node_id} is running")
        rt = self.cluster.runtime
        jvm_opts = [*BROKER_JVM_OPTS, f"-Dkafka.logs.dir={self.dir}", *self.cluster.jvm_opts]
        cmd = rt.java_command(BROKER_MAIN, [str(self.props_file)], heap=self.cluster.heap,
                              jvm_opts=jvm_opts, log4j2=self.dir / "log4j2.properties")
        self._out = open(self.dir / "broker.out", "ab")
        self._proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _end(self, sig: int, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(10)
        try:  # stragglers of its process group
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._proc = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def kill(self) -> None:
        """SIGKILL to the JVM's process group; returns once it has exited."""
        self._end(signal.SIGKILL, 10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after ``timeout``."""
        self._end(signal.SIGTERM, timeout)

    def start(self, timeout: float = 120.0) -> "KafkaNode":
        """Launch the JVM and wait until the cluster's Metadata lists it."""
        self.launch()
        self.cluster.wait_ready(timeout)
        return self

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for name in ("broker.out", "server.log"):
            path = self.dir / name
            if path.exists():
                parts.append(f"--- node {self.node_id} {name} ---\n" + _tail(path.read_text(errors="replace"), lines))
        return "\n".join(parts)


class KafkaCluster:
    """``n`` combined broker+controller KRaft nodes (node ids 1..n, every
    node a controller quorum voter, a static quorum) on free loopback ports:
    every node is formatted with the same cluster id and starts together.

    Usage::

        with KafkaCluster(3) as kc:
            kc.node(2).kill()
            kc.node(2).start()      # same ports and data dir; waits until listed

    ``config`` adds broker properties for every node. Kafka's defaults hold
    otherwise (``broker.session.timeout.ms`` 9000,
    ``broker.heartbeat.interval.ms`` 2000, ...), except that the internal
    topics' replication factors are capped by ``n``.
    """

    def __init__(self, n: int = 3, version: str | None = None, heap: str = "1G", *,
                 host: str = "127.0.0.1", config: Mapping[str, object] | None = None,
                 jvm_opts: Sequence[str] = (), startup_timeout: float = 180.0, quiet: bool = True):
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self.n = n
        self.version = version
        self.heap = heap
        self.host = host
        self.extra_config = dict(config or {})
        self.jvm_opts = tuple(jvm_opts)
        self.startup_timeout = startup_timeout
        self.quiet = quiet
        self.runtime: KafkaRuntime | None = None
        self.run_dir: Path | None = None
        self.cluster_id = random_cluster_id()
        self.nodes: list[KafkaNode] = []
        self.nodes_spec: dict[int, tuple[int, int]] = {}
        self.startup_seconds: float | None = None

    @property
    def bootstrap(self) -> str:
        return ",".join(nd.address for nd in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def start(self) -> "KafkaCluster":
        self.runtime = fetch(self.version, quiet=self.quiet)
        self.version = self.runtime.version
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"odradek-kafka-cluster-{self.version}-"))
        used: set[int] = set()
        for i in range(1, self.n + 1):
            ports = []
            while len(ports) < 2:
                p = free_port(self.host)
                if p not in used:
                    used.add(p)
                    ports.append(p)
            self.nodes_spec[i] = (ports[0], ports[1])
        self.nodes = [KafkaNode(self, i, *self.nodes_spec[i]) for i in range(1, self.n + 1)]
        _LIVE_CLUSTERS.add(self)
        try:
            for nd in self.nodes:
                nd.format()
            t0 = time.monotonic()
            for nd in self.nodes:
                nd.launch()
            self.wait_ready(self.startup_timeout)
            self.startup_seconds = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until Metadata, asked of each running node, lists every running node."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [nd for nd in self.nodes if nd.alive()]
            dead = [nd for nd in self.nodes if nd._proc is not None and not nd.alive()]
            if dead:
                raise KafkaRuntimeError(f"Kafka node {dead[0].node_id} exited\n{dead[0].log_tail()}")
            ok = True
            for nd in running:
                try:
                    md = AdminClient({"bootstrap.servers": nd.address, "log_level": 2}).list_topics(timeout=2)
                    if not {x.node_id for x in running} <= set(md.brokers):
                        ok = False
                except Exception:
                    ok = False
                if not ok:
                    break
            if ok:
                return
            time.sleep(0.1)
        raise KafkaRuntimeError(f"Kafka cluster not ready after {timeout:.0f}s\n"
                                + "\n".join(nd.log_tail(10) for nd in self.nodes))

    def active_controller(self, timeout: float = 60.0) -> int | None:
        """The node id of the active controller (the quorum's leader), from
        Kafka's MetadataQuorumCommand (a JVM start, about 2 s); None if unknown."""
        rt = self.runtime
        endpoints = ",".join(f"{self.host}:{nd.controller_port}" for nd in self.nodes if nd.alive())
        try:
            proc = subprocess.run(
                rt.java_command("org.apache.kafka.tools.MetadataQuorumCommand",
                                ["--bootstrap-controller", endpoints, "describe", "--status"], heap="256M"),
                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return None
        m = re.search(r"^LeaderId:\s+(-?\d+)", proc.stdout, re.M)
        return int(m[1]) if m and int(m[1]) >= 0 else None

    def stop(self) -> None:
        """SIGKILL every node (nothing of the run is kept) and remove the run dir."""
        for nd in self.nodes:
            nd.kill()
        _LIVE_CLUSTERS.discard(self)
        if self.run_dir and self.run_dir.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_LIVE_CLUSTERS: "set[KafkaCluster]" = set()


@atexit.register
def _stop_leftover_clusters() -> None:
    for c in list(_LIVE_CLUSTERS):
        c.stop()


# --------------------------------------------------------------------------
# Admin helper
# --------------------------------------------------------------------------

def create_topic(bootstrap: str, topic: str, partitions: int = 1, replication: int = 1,
                 config: Mapping[str, str] | None = None, timeout: float = 30.0) -> bool:
    """Create ``topic`` via AdminClient; return False if it already existed."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
    fut = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication,
                  config=dict(config or {}))],
        operation_timeout=timeout, request_timeout=timeout)[topic]
    try:
        fut.result(timeout)
    except Exception as exc:  # confluent_kafka.KafkaException wraps a KafkaError
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    return True


# --------------------------------------------------------------------------
# Kafka's perf tools against any bootstrap address
# --------------------------------------------------------------------------

def _write_props(props: Mapping[str, object], prefix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".properties")
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{k}={v}\n" for k, v in props.items())
    return Path(name)


def _run_tool(rt: KafkaRuntime, main: str, args: Sequence[str], heap: str,
              timeout: float | None) -> subprocess.CompletedProcess:
    cmd = rt.java_command(main, args, heap=heap, jvm_opts=BROKER_JVM_OPTS[1:])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise KafkaToolError(f"{main} timed out after {timeout}s",
                             _decode(exc.stdout), _decode(exc.stderr)) from None
    if proc.returncode != 0:
        raise KafkaToolError(f"{main} exited with code {proc.returncode}", proc.stdout, proc.stderr)
    return proc


def _decode(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


_PRODUCER_SUMMARY = re.compile(
    r"(?P<records>\d+) (?:steady state )?records sent, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, "
    r"(?P<p50>\d+) ms 50th, (?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99\.9th")


def parse_producer_summary(stdout: str) -> dict:
    """Parse the final summary line of ProducerPerformance.

    The line reads ``N records sent, R records/sec (M MB/sec), A ms avg latency,
    X ms max latency, P ms 50th, P ms 95th, P ms 99th, P ms 99.9th.``; interim
    progress lines lack the percentiles.  With ``--warmup-records`` a second,
    steady-state summary follows; the last one wins.
    """
    matches = list(_PRODUCER_SUMMARY.finditer(stdout))
    if not matches:
        raise KafkaToolError("no ProducerPerformance summary line found", stdout)
    m = matches[-1]
    return {
        "records": int(m["records"]),
        "records_per_sec": float(m["rps"]),
        "mb_per_sec": float(m["mbps"]),
        "avg_latency_ms": float(m["avg"]),
        "max_latency_ms": float(m["max"]),
        "p50": int(m["p50"]),
        "p95": int(m["p95"]),
        "p99": int(m["p99"]),
        "p999": int(m["p999"]),
    }


def producer_perf(bootstrap: str, topic: str, num_records: int, record_size: int,
                  acks: str | int = "1", extra_props: Mapping[str, object] | None = None, *,
                  throughput: int = -1, version: str | None = None, heap: str = "512M",
                  timeout: float | None = 900.0) -> dict:
    """Run Kafka's ProducerPerformance against ``bootstrap`` and parse its summary.

    Equivalent to ``kafka-producer-perf-test.sh --topic T --num-records N
    --record-size S --throughput -1 --producer-props bootstrap.servers=B acks=A``.
    Producer properties (``acks`` plus ``extra_props``) go through a properties
    file (``--command-config``, or ``--producer.config`` on older tools).

    Returns ``records, records_per_sec, mb_per_sec, avg_latency_ms,
    max_latency_ms, p50, p95, p99, p999`` (latencies in ms) plus
    ``wall_seconds`` and the tool's ``stdout``.
    """
    rt = fetch(version, quiet=True)
    help_text = rt.tool_help(PRODUCER_PERF_MAIN)
    props = {"bootstrap.servers": bootstrap, "acks": acks, **(extra_props or {})}
    props_file = _write_props(props, "producer-perf-")
    args = ["--topic", topic, "--num-records", str(num_records),
            "--record-size", str(record_size), "--throughput", str(throughput)]
    if "--bootstrap-server" in help_text:
        args += ["--bootstrap-server", bootstrap]
    args += ["--command-config" if "--command-config" in help_text else "--producer.config",
             str(props_file)]
    t0 = time.monotonic()
    try:
        proc = _run_tool(rt, PRODUCER_PERF_MAIN, args, heap, timeout)
    finally:
        props_file.unlink(missing_ok=True)
    result = parse_producer_summary(proc.stdout)
    result["wall_seconds"] = round(time.monotonic() - t0, 3)
    result["stdout"] = proc.stdout
    return result


def parse_consumer_summary(stdout: str) -> dict:
    """Parse ConsumerPerformance's CSV report (header line + one data line).

    Columns (Kafka 4.x): ``start.time, end.time, data.consumed.in.MB, MB.sec,
    data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms,
    fetch.MB.sec, fetch.nMsg.sec``.  ``MB.sec``/``nMsg.sec`` are over the whole
    run (including the group join); ``fetch.*`` exclude the rebalance.
    """
    lines = [l.strip() for l in stdout.splitlines() if l.strip()]
    header_idx = next((i for i, l in enumerate(lines) if l.startswith("start.time")), None)
    if header_idx is None or header_idx + 1 >= len(lines):
        raise KafkaToolError("no ConsumerPerformance report found", stdout)
    names = [c.strip() for c in lines[header_idx].split(",")]
    values = [c.strip() for c in lines[header_idx + 1].split(",")]
    row = dict(zip(names, values))

    def num(key: str) -> float | None:
        try:
            return float(row[key])
        except (KeyError, ValueError):
            return None

    return {
        "mb_per_sec": num("MB.sec"),
        "msgs_per_sec": num("nMsg.sec"),
        "data_mb": num("data.consumed.in.MB"),
        "messages": int(num("data.consumed.in.nMsg") or 0),
        "rebalance_ms": num("rebalance.time.ms"),
        "fetch_ms": num("fetch.time.ms"),
        "fetch_mb_per_sec": num("fetch.MB.sec"),
        "fetch_msgs_per_sec": num("fetch.nMsg.sec"),
        "start_time": row.get("start.time"),
        "end_time": row.get("end.time"),
    }


def consumer_perf(bootstrap: str, topic: str, messages: int,
                  extra_props: Mapping[str, object] | None = None, *, group: str | None = None,
                  timeout_ms: int = 10_000, version: str | None = None, heap: str = "512M",
                  timeout: float | None = 900.0) -> dict:
    """Run Kafka's ConsumerPerformance against ``bootstrap`` and parse its report.

    Consumes ``messages`` records of ``topic`` from the earliest offset in a
    fresh consumer group (``group`` or a random one).  Returns ``mb_per_sec,
    msgs_per_sec`` (whole run) plus ``data_mb, messages, rebalance_ms,
    fetch_ms, fetch_mb_per_sec, fetch_msgs_per_sec, wall_seconds, stdout``.
    ``timeout_ms`` is the tool's own ``--timeout`` between returned records;
    a consumer that runs dry before ``messages`` ends with fewer ``messages``.
    """
    rt = fetch(version, quiet=True)
    help_text = rt.tool_help(CONSUMER_PERF_MAIN)
    count_flag = "--num-records" if "--num-records" in help_text else "--messages"
    args = ["--bootstrap-server", bootstrap, "--topic", topic, count_flag, str(messages),
            "--timeout", str(timeout_ms),
            "--group", group or f"perf-consumer-{uuid.uuid4().hex[:12]}"]
    props_file = None
    if extra_props:
        props_file = _write_props(extra_props, "consumer-perf-")
        args += ["--command-config" if "--command-config" in help_text else "--consumer.config",
                 str(props_file)]
    t0 = time.monotonic()
    try:
        proc = _run_tool(rt, CONSUMER_PERF_MAIN, args, heap, timeout)
    finally:
        if props_file:
            props_file.unlink(missing_ok=True)
    result = parse_consumer_summary(proc.stdout)
    result["wall_seconds"] = round(time.monotonic() - t0, 3)
    result["stdout"] = proc.stdout
    return result


_E2E_AVG = re.compile(r"Avg latency: (?P<avg>[\d.]+) ms")
_E2E_PCT = re.compile(r"Percentiles: 50th = (?P<p50>[\d.]+), 99th = (?P<p99>[\d.]+), 99\.9th = (?P<p999>[\d.]+)")


def end_to_end_latency(bootstrap: str, topic: str, num_records: int, record_size: int = 100,
                       acks: str | int = "1", extra_props: Mapping[str, object] | None = None, *,
                       version: str | None = None, heap: str = "512M",
                       timeout: float | None = 900.0) -> dict:
    """Run Kafka's EndToEndLatency (one record in flight at a time).

    Returns ``avg_latency_ms, p50, p99, p999`` (ms) plus ``wall_seconds`` and
    ``stdout``.  The topic should exist with a single partition.
    """
    rt = fetch(version, quiet=True)
    args = [bootstrap, topic, str(num_records), str(acks), str(record_size)]
    props_file = None
    if extra_props:
        props_file = _write_props(extra_props, "e2e-latency-")
        args.append(str(props_file))
    t0 = time.monotonic()
    try:
        proc = _run_tool(rt, END_TO_END_MAIN, args, heap, timeout)
    finally:
        if props_file:
            props_file.unlink(missing_ok=True)
    avg, pct = _E2E_AVG.search(proc.stdout), _E2E_PCT.search(proc.stdout)
    if not (avg and pct):
        raise KafkaToolError("no EndToEndLatency summary found", proc.stdout, proc.stderr)
    return {
        "avg_latency_ms": float(avg["avg"]),
        "p50": float(pct["p50"]),
        "p99": float(pct["p99"]),
        "p999": float(pct["p999"]),
        "wall_seconds": round(time.monotonic() - t0, 3),
        "stdout": proc.stdout,
    }


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _cmd_fetch(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    rt = fetch(args.version)
    jars = rt.classpath.split(os.pathsep)
    print(json.dumps({
        "version": rt.version,
        "home": str(rt.home),
        "classpath_file": str(rt.home / "classpath.txt"),
        "jars": len(jars),
        "storage_tool": rt.storage_tool_class(),
        "seconds": round(time.monotonic() - t0, 2),
    }, indent=2))
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    broker = KafkaBroker(args.version, heap=args.heap, port=args.port,
                         keep_run_dir=args.keep, quiet=False)
    stop = {"now": False}

    def _handler(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    with broker:
        print(json.dumps({"version": broker.version, "bootstrap": broker.bootstrap,
                          "pid": broker.pid, "startup_seconds": round(broker.startup_seconds, 3),
                          "format_seconds": round(broker.format_seconds, 3),
                          "run_dir": str(broker.run_dir)}), flush=True)
        print("Kafka running; Ctrl-C (or SIGTERM) stops it.", file=sys.stderr, flush=True)
        while not stop["now"] and broker.alive():
            time.sleep(0.5)
    print(f"stopped in {broker.stop_seconds:.2f}s (exit code {broker.exit_code})", file=sys.stderr)
    return 0


def _perf(bootstrap: str, args: argparse.Namespace) -> dict:
    topic = args.topic or f"perf-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions=args.partitions)
    props = dict(kv.split("=", 1) for kv in args.producer_prop)
    prod = producer_perf(bootstrap, topic, args.records, args.record_size, args.acks, props,
                         version=args.version)
    cons = consumer_perf(bootstrap, topic, args.records, version=args.version)
    for r in (prod, cons):
        r.pop("stdout", None)
    return {"topic": topic, "producer": prod, "consumer": cons}


def _cmd_perf(args: argparse.Namespace) -> int:
    if args.bootstrap:
        out = {"target": args.bootstrap, **_perf(args.bootstrap, args)}
    else:
        with KafkaBroker(args.version, heap=args.heap, quiet=False) as broker:
            out = {"target": f"kafka-{broker.version}", "bootstrap": broker.bootstrap,
                   "startup_seconds": round(broker.startup_seconds, 3),
                   "format_seconds": round(broker.format_seconds, 3), **_perf(broker.bootstrap, args)}
        out["stop_seconds"] = round(broker.stop_seconds, 3)
    print(json.dumps(out, indent=2))
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    """Command-line entry point (see module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--version", help="Kafka version (default: newest cached, else newest "
                        f"resolvable of {', '.join(KAFKA_VERSIONS[:3])}, ...)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", parents=[common],
                   help="resolve and cache the Kafka jars, print the cache location")
    s = sub.add_parser("start", parents=[common], help="run a single-node KRaft broker until Ctrl-C")
    s.add_argument("--heap", default="1G")
    s.add_argument("--port", type=int, help="PLAINTEXT port (default: a free one)")
    s.add_argument("--keep", action="store_true", help="keep the run directory afterwards")
    b = sub.add_parser("perf", parents=[common], help="producer + consumer perf test (own Kafka, or --bootstrap)")
    b.add_argument("--bootstrap", help="benchmark this address instead of starting Kafka")
    b.add_argument("--heap", default="1G")
    b.add_argument("--topic", help="topic name (default: a new random one)")
    b.add_argument("--partitions", type=int, default=1)
    b.add_argument("--records", type=int, default=50_000)
    b.add_argument("--record-size", type=int, default=1024)
    b.add_argument("--acks", default="1")
    b.add_argument("--producer-prop", action="append", default=[], metavar="K=V")
    args = p.parse_args(list(argv) if argv is not None else None)
    try:
        return {"fetch": _cmd_fetch, "start": _cmd_start, "perf": _cmd_perf}[args.cmd](args)
    except KafkaRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
