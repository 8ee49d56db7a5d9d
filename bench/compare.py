#!/usr/bin/env python3
"""odradek next to Apache Kafka: the same workloads, one invocation, one report.

    python bench/compare.py            # full run: 5 repetitions (about 20-25 min here)
    python bench/compare.py --quick    # 2 repetitions, smaller counts (a few minutes)

Each repetition starts a fresh odradek (``python -m odradek serve`` on a
temporary data dir) and a fresh single-node KRaft Apache Kafka
(``bench/kafka_runtime.py``), one after the other; the side that goes first
alternates between repetitions.  Within a repetition every workload gets its
own new topic on that broker, so "fresh broker per repetition per side, fresh
topics per workload".  Before the two brokers, each repetition measures the
machine's physical limits (loopback TCP, page-cache writes, sendfile over
loopback) so that they share the noise of the run.

The same clients drive both brokers: confluent-kafka (librdkafka) from this
process and Kafka's own ProducerPerformance / ConsumerPerformance /
EndToEndLatency in a JVM.  Results: medians, min/max and odradek/Kafka
ratios on stdout; raw numbers as JSON (``--json``, default
``bench/results/compare-latest.json``); the Markdown report
``docs/performance.md`` and the chart ``docs/perf/compare.png``
(``--no-report`` leaves both alone).

``--profile`` adds, after the measured repetitions, an odradek-only pass with
py-spy attached (``pip install py-spy``) and puts the hottest functions per
workload into the report; it is never part of the measured numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
KEPT_MARK = "<!-- Below: sections from other scripts, kept when this report is regenerated. -->"
sys.path.insert(0, str(BENCH))

import broker_bench as bb  # noqa: E402
import kafka_runtime as kr  # noqa: E402

SIDES = ("odradek", "kafka")
#: Where ``python -m odradek`` runs from. main() points it at a copy of the
#: odradek package taken when the run starts, so that commits landing in the
#: work tree during a long run do not change the broker under measurement.
ODRADEK_CWD: Path = ROOT
#: Both brokers get these settings: groups form as soon as members join
#: (Kafka's benchmark broker in kafka_runtime.py sets the same).
COMMON_BROKER_PROPS = {"group.initial.rebalance.delay.ms": "0"}


# --------------------------------------------------------------------------
# Workload sizes
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Sizes:
    repetitions: int
    ck_records_1k: int          # confluent-kafka produce, 1 KiB records
    ck_records_100b: int        # confluent-kafka produce, 100 B records
    pp_records_1k: int          # ProducerPerformance, 1 KiB
    pp_records_100b: int        # ProducerPerformance, 100 B
    lat_rate: int               # ProducerPerformance --throughput for latency
    lat_records: int
    lat_warmup: int
    e2e_records: int            # EndToEndLatency round trips
    e2e_ck_samples: int         # confluent-kafka produce->consume samples
    scale_partitions: int       # partitions on one broker for the scale test
    scale_topics: int           # ... spread over this many topics
    rebalance_members: int
    rebalance_partitions: int
    limit_seconds: float        # duration of each physical-limit probe
    dd_mib: int


FULL = Sizes(repetitions=5, ck_records_1k=200_000, ck_records_100b=500_000,
             pp_records_1k=100_000, pp_records_100b=150_000,
             lat_rate=5000, lat_records=30_000, lat_warmup=10_000,
             e2e_records=1000, e2e_ck_samples=300,
             scale_partitions=10_000, scale_topics=10,
             rebalance_members=10, rebalance_partitions=20,
             limit_seconds=1.5, dd_mib=1024)
QUICK = Sizes(repetitions=2, ck_records_1k=30_000, ck_records_100b=60_000,
              pp_records_1k=20_000, pp_records_100b=40_000,
              lat_rate=5000, lat_records=10_000, lat_warmup=2_000,
              e2e_records=300, e2e_ck_samples=100,
              scale_partitions=2_000, scale_topics=2,
              rebalance_members=10, rebalance_partitions=20,
              limit_seconds=0.7, dd_mib=256)

#: confluent-kafka produce matrix: full for 1 KiB, a subset for 100 B.
CK_PRODUCE = [(1024, acks, parts, comp) for acks in ("1", "all") for parts in (1, 8)
              for comp in ("none", "lz4", "zstd")] + [
    (100, "1", 1, "none"), (100, "1", 8, "none"), (100, "all", 8, "none"), (100, "1", 8, "lz4")]
#: ProducerPerformance subset (each run costs a JVM start).
PP_PRODUCE = [(1024, "1", 1, "none"), (1024, "all", 8, "none"), (1024, "1", 8, "lz4"),
              (1024, "1", 8, "zstd"), (100, "1", 8, "none")]


def size_label(size: int) -> str:
    return "1KiB" if size == 1024 else f"{size}B"


def produce_key(tool: str, size: int, acks: str, parts: int, comp: str) -> str:
    return f"produce.{tool}.{size_label(size)}.acks{acks}.p{parts}.{comp}"


# --------------------------------------------------------------------------
# Metric catalogue: key -> (label, unit, better)
# --------------------------------------------------------------------------

METRICS: dict[str, tuple[str, str, str]] = {}


def _metric(key: str, label: str, unit: str, better: str) -> None:
    METRICS[key] = (label, unit, better)


for _s, _a, _p, _c in CK_PRODUCE:
    _metric(produce_key("ck", _s, _a, _p, _c),
            f"produce, confluent-kafka, {size_label(_s)}, acks={_a}, {_p}p, {_c}", "MB/s", "higher")
for _s, _a, _p, _c in PP_PRODUCE:
    _metric(produce_key("pp", _s, _a, _p, _c),
            f"produce, ProducerPerformance, {size_label(_s)}, acks={_a}, {_p}p, {_c}", "MB/s", "higher")
_metric("consume.ck.1KiB.p1", "consume, confluent-kafka, 1KiB, 1p", "MB/s", "higher")
_metric("consume.ck.1KiB.p8", "consume, confluent-kafka, 1KiB, 8p", "MB/s", "higher")
_metric("consume.raw.1KiB.p1", "consume, raw Fetch v4 requests (no client library), 1KiB, 1p",
        "MB/s", "higher")
_metric("consume.raw_vs_sendfile", "raw Fetch / sendfile limit of the same repetition", "fraction",
        "higher")
_metric("consume.cp.1KiB.p1.fetch", "consume, ConsumerPerformance, 1KiB, 1p (fetch phase)", "MB/s", "higher")
_metric("consume.cp.1KiB.p1.total", "consume, ConsumerPerformance, 1KiB, 1p (incl. group join)", "MB/s", "higher")
_metric("consume.cp.1KiB.p1.join_ms", "ConsumerPerformance group join (rebalance.time.ms)", "ms", "lower")
for _q in ("p50", "p99", "p999"):
    _metric(f"latency.pp.{_q}", f"produce latency @ fixed rate, {_q.replace('p999', 'p99.9')}", "ms", "lower")
for _q in ("p50", "p99", "p999"):
    _metric(f"latency.e2e.{_q}", f"end-to-end latency (EndToEndLatency), {_q.replace('p999', 'p99.9')}", "ms", "lower")
for _q in ("p50", "p99"):
    _metric(f"latency.e2e_ck.{_q}", f"end-to-end latency (confluent-kafka), {_q}", "ms", "lower")
_metric("startup.accept_s", "start-up to accepting TCP connections", "s", "lower")
_metric("startup.ready_s", "start-up to first Metadata answer", "s", "lower")
_metric("rss.idle_mb", "idle RSS after start-up", "MB", "lower")
_metric("rss.peak_mb", "peak RSS (VmHWM) over the repetition", "MB", "lower")
_metric("rss.after_scale_mb", "RSS holding the scale-test partitions", "MB", "lower")
_metric("scale.create_s", "scale: CreateTopics for all partitions", "s", "lower")
_metric("scale.visible_s", "scale: create until Metadata lists all with leaders", "s", "lower")
_metric("scale.metadata_ms", "scale: one Metadata request, all partitions", "ms", "lower")
_metric("scale.produce_each_s", "scale: produce one record to every partition", "s", "lower")
_metric("rebalance.s", "rebalance: 10 members join one group (20 partitions)", "s", "lower")
_metric("rebalance.first_s", "rebalance: first member holds partitions", "s", "lower")
_metric("rebalance.rounds", "rebalance: assignments handed out per member", "count", "lower")
_metric("cpu.produce_ck_1KiB_ms_per_mb", "broker CPU per MB, confluent-kafka produce 1KiB acks=1 1p", "ms/MB", "lower")
_metric("cpu.consume_ck_1KiB_ms_per_mb", "broker CPU per MB, confluent-kafka consume 1KiB 1p", "ms/MB", "lower")
_metric("limit.loopback_tcp", "loopback TCP (one stream)", "MB/s", "higher")
_metric("limit.pagecache_write", "page-cache write (dd conv=notrunc, no fsync)", "MB/s", "higher")
_metric("limit.sendfile", "sendfile() from page cache over loopback", "MB/s", "higher")


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def proc_status_kb(pid: int, field: str) -> float | None:
    """A ``VmRSS``/``VmHWM``-style field of /proc/<pid>/status, in kB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def run_text(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def make_admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})


def wait_topic_ready(admin, topic: str, partitions: int, timeout: float = 60.0) -> None:
    """Until Metadata lists ``topic`` with all partitions led."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(topic, timeout=5)
            t = md.topics.get(topic)
            if (t is not None and t.error is None and len(t.partitions) == partitions
                    and all(p.leader >= 0 and p.error is None for p in t.partitions.values())):
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"topic {topic} not ready after {timeout}s")


def new_topic(ctx: "Side", name: str, partitions: int) -> str:
    topic = f"{name}-{uuid.uuid4().hex[:8]}"
    kr.create_topic(ctx.bootstrap, topic, partitions=partitions, timeout=60)
    wait_topic_ready(ctx.admin, topic, partitions)
    return topic


# --------------------------------------------------------------------------
# Brokers
# --------------------------------------------------------------------------

class Side:
    """Common face of the two brokers: bootstrap, pid, start-up figures."""

    name: str
    bootstrap: str
    pid: int
    accept_s: float
    ready_s: float
    admin = None

    def rss_mb(self) -> float | None:
        kb = proc_status_kb(self.pid, "VmRSS")
        return kb / 1024 if kb is not None else None

    def hwm_mb(self) -> float | None:
        kb = proc_status_kb(self.pid, "VmHWM")
        return kb / 1024 if kb is not None else None

    def cpu_s(self) -> float | None:
        return proc_cpu_seconds(self.pid)

    def alive(self) -> bool:
        raise NotImplementedError


class OdradekSide(Side):
    """``python -m odradek serve`` on a free port and a temporary data dir."""

    name = "odradek"

    def __init__(self, memory: bool = False, props: dict | None = None):
        self.memory = memory
        self.props = {**COMMON_BROKER_PROPS, **(props or {})}
        self.port = bb.free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="odradek-compare-")
        self.proc: subprocess.Popen | None = None
        self.stderr_path = os.path.join(self.dir, "broker.err")

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "odradek", "serve", "--port", str(self.port),
               "--log-level", "WARNING"]
        cmd += ["--memory"] if self.memory else ["--data-dir", os.path.join(self.dir, "data")]
        for k, v in self.props.items():
            cmd += ["-o", f"{k}={v}"]
        return cmd

    def start(self) -> "OdradekSide":
        err = open(self.stderr_path, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.command(), cwd=ODRADEK_CWD, stdout=subprocess.DEVNULL,
                                     stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        err.close()
        self.pid = self.proc.pid
        deadline = t0 + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"odradek exited during start-up:\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError("odradek did not accept connections within 60 s")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    self.accept_s = time.monotonic() - t0
                    break
            except OSError:
                time.sleep(0.002)
        while not kr.metadata_ok(self.bootstrap, timeout=2.0):
            if time.monotonic() > deadline:
                raise TimeoutError("odradek answered no Metadata request within 60 s")
            time.sleep(0.02)
        self.ready_s = time.monotonic() - t0
        self.admin = make_admin(self.bootstrap)
        return self

    def stderr_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(Path(self.stderr_path).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        self.admin = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class KafkaSide(Side):
    """A fresh single-node KRaft Kafka (see kafka_runtime.KafkaBroker)."""

    name = "kafka"

    def __init__(self, props: dict | None = None):
        # a short stop timeout: after the scale test a clean shutdown takes long
        # and nothing here needs one (the run dir is deleted anyway)
        self.broker = kr.KafkaBroker(config={**COMMON_BROKER_PROPS, **(props or {})}, quiet=True,
                                     stop_timeout=5.0)

    def start(self) -> "KafkaSide":
        self.broker.start()
        self.bootstrap = self.broker.bootstrap
        self.pid = self.broker.pid
        self.accept_s = self.broker.accept_seconds
        self.ready_s = self.broker.startup_seconds
        self.format_s = self.broker.format_seconds
        self.admin = make_admin(self.bootstrap)
        return self

    def alive(self) -> bool:
        return self.broker.alive()

    def stop(self) -> None:
        self.admin = None
        self.broker.stop()


# --------------------------------------------------------------------------
# Physical limits of this machine
# --------------------------------------------------------------------------

_RECEIVER = r"""
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = memoryview(bytearray(1 << 20))
n, t0 = 0, None
while True:
    k = s.recv_into(buf)
    if not k:
        break
    if t0 is None:
        t0 = time.perf_counter()
    n += k
print(n, time.perf_counter() - t0)
"""


def _stream_to_receiver(send: Callable[[socket.socket, float], None], seconds: float) -> float:
    """Accept a receiver subprocess, let ``send`` push data; receiver-side MB/s."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        rcv = subprocess.Popen([sys.executable, "-c", _RECEIVER, str(port)],
                               stdout=subprocess.PIPE, text=True)
        conn, _ = srv.accept()
        with conn:
            send(conn, time.perf_counter() + seconds)
            conn.shutdown(socket.SHUT_WR)
        out, _ = rcv.communicate(timeout=60)
    nbytes, secs = out.split()
    return int(nbytes) / float(secs) / 1e6


def limit_loopback_tcp(seconds: float) -> float:
    buf = os.urandom(1 << 20)

    def send(conn: socket.socket, until: float) -> None:
        while time.perf_counter() < until:
            conn.sendall(buf)

    return _stream_to_receiver(send, seconds)


def limit_sendfile(path: str, seconds: float) -> float:
    size = os.path.getsize(path)

    def send(conn: socket.socket, until: float) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            while time.perf_counter() < until:
                off = 0
                while off < size and time.perf_counter() < until:
                    off += os.sendfile(conn.fileno(), fd, off, min(size - off, 8 << 20))
        finally:
            os.close(fd)

    return _stream_to_receiver(send, seconds)


_DD = re.compile(r"(\d+) bytes .* copied, ([\d.e+-]+) s")


def limit_pagecache_write(path: str, mib: int) -> float:
    """Rewrite ``path`` (already ``mib`` MiB in the page cache) with dd, no fsync."""
    p = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=notrunc"],
                       capture_output=True, text=True, timeout=120)
    m = _DD.search(p.stderr)
    if not m:
        raise RuntimeError(f"dd printed no summary: {p.stderr}")
    return int(m[1]) / float(m[2]) / 1e6


def physical_limits(sizes: Sizes) -> dict:
    out = {}
    fd, path = tempfile.mkstemp(prefix="odradek-limits-")
    os.close(fd)
    try:
        # create the file (allocating pages), then measure a rewrite in place
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={sizes.dd_mib}",
                        "conv=notrunc"], capture_output=True, check=True, timeout=120)
        out["limit.pagecache_write"] = limit_pagecache_write(path, sizes.dd_mib)
        out["limit.loopback_tcp"] = limit_loopback_tcp(sizes.limit_seconds)
        out["limit.sendfile"] = limit_sendfile(path, sizes.limit_seconds)
    finally:
        os.unlink(path)
    return out


# --------------------------------------------------------------------------
# Raw Metadata request (v4, all topics): the broker's cost, not a client's
# --------------------------------------------------------------------------

class MetadataProbe:
    """One TCP connection sending Metadata v4 requests for all topics."""

    def __init__(self, bootstrap: str):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.corr = 0

    def close(self) -> None:
        self.sock.close()

    def _request(self) -> bytes:
        self.corr += 1
        client = b"odradek-compare"
        header = struct.pack(">hhih", 3, 4, self.corr, len(client)) + client
        body = struct.pack(">ib", -1, 0)  # topics: null (all); allow_auto_topic_creation: false
        payload = header + body
        return struct.pack(">i", len(payload)) + payload

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if not k:
                raise ConnectionError("broker closed the connection")
            got += k
        return bytes(buf)

    def timed(self) -> tuple[float, bytes]:
        """Seconds from sending the request until the last response byte."""
        req = self._request()
        t0 = time.perf_counter()
        self.sock.sendall(req)
        size = struct.unpack(">i", self._recv_exact(4))[0]
        data = self._recv_exact(size)
        return time.perf_counter() - t0, data

    @staticmethod
    def count_partitions(data: bytes) -> tuple[int, int]:
        """(partitions listed with a leader and no error, all partitions)."""
        pos = 4 + 4  # correlation id, throttle time

        def i16():
            nonlocal pos
            v = struct.unpack_from(">h", data, pos)[0]
            pos += 2
            return v

        def i32():
            nonlocal pos
            v = struct.unpack_from(">i", data, pos)[0]
            pos += 4
            return v

        def string():
            nonlocal pos
            n = i16()
            pos += max(n, 0)

        for _ in range(i32()):  # brokers
            i32(); string(); i32(); string()
        string()  # cluster id
        i32()  # controller id
        good = total = 0
        for _ in range(i32()):  # topics
            i16(); string(); pos += 1
            for _ in range(i32()):  # partitions
                err = i16(); i32(); leader = i32()
                n_replicas = i32()
                pos += 4 * max(n_replicas, 0)
                n_isr = i32()
                pos += 4 * max(n_isr, 0)
                total += 1
                good += err == 0 and leader >= 0
        return good, total


class RawFetcher:
    """Fetch v4 requests over one TCP connection, reading responses into a
    reused buffer and walking only the batch headers: the broker's fetch path
    without a client library's record handling."""

    def __init__(self, bootstrap: str, topic: str, partition_max_bytes: int = 10 << 20, partition: int = 0):
        host, port = bootstrap.rsplit(":", 1)
        self.partition = partition
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.topic = topic.encode()
        self.pmax = partition_max_bytes
        self.buf = bytearray(64 << 20)
        self.corr = 0

    def close(self) -> None:
        self.sock.close()

    def fetch(self, offset: int) -> tuple[int, int]:
        """One Fetch at ``offset``: (records in complete batches, next offset)."""
        self.corr += 1
        client = b"odradek-compare"
        req = (struct.pack(">hhih", 1, 4, self.corr, len(client)) + client
               + struct.pack(">iiiibi", -1, 100, 1, 50 << 20, 0, 1)
               + struct.pack(">h", len(self.topic)) + self.topic
               + struct.pack(">iiqi", 1, self.partition, offset, self.pmax))
        self.sock.sendall(struct.pack(">i", len(req)) + req)
        view = memoryview(self.buf)
        got = 0
        while got < 4:
            got += self.sock.recv_into(view[got:4])
        size = struct.unpack_from(">i", self.buf, 0)[0]
        if size > len(self.buf):
            self.buf = bytearray(size + 4)
            self.buf[:4] = struct.pack(">i", size)
            view = memoryview(self.buf)
        end = size + 4
        while got < end:
            k = self.sock.recv_into(view[got:end])
            if not k:
                raise ConnectionError("broker closed the connection")
            got += k
        b = self.buf
        pos = 4 + 4 + 4  # size, correlation id, throttle time
        pos += 4  # topics count (1)
        tlen = struct.unpack_from(">h", b, pos)[0]
        pos += 2 + tlen + 4  # name, partitions count (1)
        _part, err, _hw, _lso = struct.unpack_from(">ihqq", b, pos)
        pos += 4 + 2 + 8 + 8
        if err:
            raise RuntimeError(f"Fetch error code {err}")
        n_aborted = struct.unpack_from(">i", b, pos)[0]
        pos += 4 + 16 * max(n_aborted, 0)
        rlen = struct.unpack_from(">i", b, pos)[0]
        pos += 4
        stop = pos + max(rlen, 0)
        records, nxt = 0, offset
        while pos + 12 <= stop:
            base, blen = struct.unpack_from(">qi", b, pos)
            if pos + 12 + blen > stop:
                break  # a partial batch at the end of the response
            last_delta = struct.unpack_from(">i", b, pos + 23)[0]
            if base + last_delta >= nxt:
                records += base + last_delta + 1 - max(base, nxt)
                nxt = base + last_delta + 1
            pos += 12 + blen
        return records, nxt


def raw_fetch(ctx: "Side", topic: str, records: int, size: int, min_seconds: float = 1.5,
              max_passes: int = 5) -> float:
    """MB/s of record values read with raw Fetch requests, in whole passes
    over the topic (1 partition) until ``min_seconds`` or ``max_passes``."""
    f = RawFetcher(ctx.bootstrap, topic)
    try:
        total, passes = 0, 0
        t0 = time.perf_counter()
        while passes < max_passes and (passes == 0 or time.perf_counter() - t0 < min_seconds):
            off = 0
            while off < records:
                n, off = f.fetch(off)
                if n == 0:
                    raise RuntimeError(f"empty Fetch at offset {off} of {records}")
                total += n
            passes += 1
        dt = time.perf_counter() - t0
    finally:
        f.close()
    return total * size / dt / 1e6


# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------

#: broker CPU seconds of the last ck_produce / ck_consume call (topic creation excluded)
LAST_CPU: dict[str, float] = {}


def _cpu_delta(ctx: Side, kind: str, fn: Callable[[], dict]) -> dict:
    c0 = ctx.cpu_s()
    r = fn()
    c1 = ctx.cpu_s()
    if c0 is not None and c1 is not None:
        LAST_CPU[kind] = c1 - c0
    return r


def ck_produce(ctx: Side, size: int, acks: str, parts: int, comp: str, records: int) -> tuple[float, str]:
    topic = new_topic(ctx, f"ck-{size}-{acks}-{parts}-{comp}", parts)
    r = _cpu_delta(ctx, "produce", lambda: bb.produce_throughput(
        ctx.bootstrap, topic, records, size, acks, comp))
    return r["mb_per_sec"], topic


def ck_consume(ctx: Side, topic: str, parts: int, records: int, size: int) -> float:
    r = _cpu_delta(ctx, "consume", lambda: bb.consume_throughput(
        ctx.bootstrap, topic, parts, records, size))
    if r["records"] < records:
        raise RuntimeError(f"consumed {r['records']} of {records} records")
    return r["mb_per_sec"]


def pp_produce(ctx: Side, size: int, acks: str, parts: int, comp: str, records: int) -> float:
    topic = new_topic(ctx, f"pp-{size}-{acks}-{parts}-{comp}", parts)
    props = {"compression.type": comp} if comp != "none" else {}
    r = kr.producer_perf(ctx.bootstrap, topic, records, size, acks, props, timeout=600)
    if r["records"] < records:
        raise RuntimeError(f"ProducerPerformance sent {r['records']} of {records}")
    return r["records_per_sec"] * size / 1e6


def cp_consume(ctx: Side, topic: str, records: int, size: int) -> dict:
    r = kr.consumer_perf(ctx.bootstrap, topic, records, timeout=600)
    if r["messages"] < records:
        raise RuntimeError(f"ConsumerPerformance read {r['messages']} of {records}")
    return {"consume.cp.1KiB.p1.fetch": (r["fetch_msgs_per_sec"] or 0) * size / 1e6,
            "consume.cp.1KiB.p1.total": (r["msgs_per_sec"] or 0) * size / 1e6,
            "consume.cp.1KiB.p1.join_ms": r["rebalance_ms"]}


def pp_latency(ctx: Side, sizes: Sizes) -> dict:
    topic = new_topic(ctx, "lat", 1)
    rt = kr.fetch(quiet=True)
    help_text = rt.tool_help(kr.PRODUCER_PERF_MAIN)
    if "--warmup-records" not in help_text:
        raise RuntimeError("this ProducerPerformance has no --warmup-records")
    # producer_perf has no warm-up knob: run the tool the same way it does.
    props = {"bootstrap.servers": ctx.bootstrap, "acks": "1"}
    props_file = kr._write_props(props, "latency-perf-")
    args = ["--topic", topic, "--num-records", str(sizes.lat_records), "--record-size", "1024",
            "--throughput", str(sizes.lat_rate), "--warmup-records", str(sizes.lat_warmup),
            "--bootstrap-server", ctx.bootstrap, "--command-config", str(props_file)]
    try:
        proc = kr._run_tool(rt, kr.PRODUCER_PERF_MAIN, args, "512M", 600)
    finally:
        props_file.unlink(missing_ok=True)
    r = kr.parse_producer_summary(proc.stdout)
    return {"latency.pp.p50": r["p50"], "latency.pp.p99": r["p99"], "latency.pp.p999": r["p999"]}


def e2e_latency(ctx: Side, sizes: Sizes) -> dict:
    topic = new_topic(ctx, "e2e", 1)
    r = kr.end_to_end_latency(ctx.bootstrap, topic, sizes.e2e_records, 1024, "1", timeout=600)
    return {"latency.e2e.p50": r["p50"], "latency.e2e.p99": r["p99"], "latency.e2e.p999": r["p999"]}


def e2e_ck_latency(ctx: Side, sizes: Sizes) -> dict:
    topic = new_topic(ctx, "e2eck", 1)
    r = bb.end_to_end_latency(ctx.bootstrap, topic, sizes.e2e_ck_samples)
    return {"latency.e2e_ck.p50": r["p50_ms"], "latency.e2e_ck.p99": r["p99_ms"]}


def rebalance(ctx: Side, members: int, partitions: int, timeout: float = 120.0,
              topic: str | None = None, config: dict | None = None) -> dict:
    """Seconds from the first subscribe until every member holds partitions
    and together they hold each partition once; also when the first member got
    partitions and how many assignments each member received on the way.
    ``config`` is added to each consumer's (e.g. ``group.protocol``); the
    callbacks add and remove partitions, so incremental assignments (KIP-848,
    cooperative) are followed as well as eager ones."""
    from confluent_kafka import Consumer

    topic = topic or new_topic(ctx, "rebalance", partitions)
    group = f"rebalance-{uuid.uuid4().hex[:8]}"
    consumers = [Consumer({"bootstrap.servers": ctx.bootstrap, "group.id": group,
                           "enable.auto.commit": False, "log_level": 2, **(config or {})})
                 for _ in range(members)]
    assigned: dict[int, frozenset] = {i: frozenset() for i in range(members)}
    lock = threading.Lock()
    done = threading.Event()
    stop = threading.Event()
    t_done: list[float] = []
    t_first: list[float] = []
    n_assign = [0]

    def check() -> None:
        parts = [p for s in assigned.values() for p in s]
        if all(assigned.values()) and len(parts) == partitions and len(set(parts)) == partitions:
            if not done.is_set():
                t_done.append(time.perf_counter())
                done.set()

    def member(i: int, c) -> None:
        def on_assign(_c, tps):
            with lock:
                assigned[i] = assigned[i] | {tp.partition for tp in tps}
                if tps:
                    n_assign[0] += 1
                    if not t_first:
                        t_first.append(time.perf_counter())
                check()

        def on_revoke(_c, tps):
            with lock:
                assigned[i] = assigned[i] - {tp.partition for tp in tps}

        c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        while not stop.is_set():
            c.poll(0.05)

    threads = [threading.Thread(target=member, args=(i, c), daemon=True)
               for i, c in enumerate(consumers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    ok = done.wait(timeout)
    stop.set()
    for t in threads:
        t.join(10)
    closers = [threading.Thread(target=c.close, daemon=True) for c in consumers]
    for t in closers:
        t.start()
    for t in closers:
        t.join(30)
    if not ok:
        raise TimeoutError(f"{members} members had no complete assignment after {timeout}s")
    return {"rebalance.s": t_done[0] - t0, "rebalance.first_s": t_first[0] - t0,
            "rebalance.rounds": n_assign[0] / members}


def scale_diagnosis(ctx: "OdradekSide") -> str:
    """Why odradek's disk-mode scale test failed, from its stderr and /proc."""
    parts = []
    try:
        parts.append(f"{len(os.listdir(f'/proc/{ctx.pid}/fd'))} open fds")
    except OSError:
        parts.append("broker not running" if not ctx.alive() else "fd count unknown")
    with contextlib.suppress(Exception):
        md = ctx.admin.list_topics(timeout=10)
        n = sum(len(t.partitions) for name, t in md.topics.items() if name.startswith("scale"))
        parts.append(f"{n} scale partitions exist")
    errs = [l.strip() for l in ctx.stderr_tail(200).splitlines()
            if re.match(r"\w*(Error|Exception):", l.strip())]
    if errs:
        parts.append(f"broker log: {Counter(errs).most_common(1)[0][0][:160]}")
    return "; ".join(parts)


def scale(ctx: Side, sizes: Sizes) -> dict:
    """Create ``scale_partitions`` partitions (over ``scale_topics`` topics: Kafka
    refuses more than 10,000 new partitions per request), time a Metadata
    request for all of them, then produce one record to each."""
    from confluent_kafka import Producer

    per_topic = sizes.scale_partitions // sizes.scale_topics
    topics = [f"scale{k}-{uuid.uuid4().hex[:6]}" for k in range(sizes.scale_topics)]
    out = {}
    t0 = time.perf_counter()
    for t in topics:
        kr.create_topic(ctx.bootstrap, t, partitions=per_topic, timeout=300)
    out["scale.create_s"] = time.perf_counter() - t0
    probe = MetadataProbe(ctx.bootstrap)
    try:
        deadline = time.monotonic() + 600
        while True:
            _, data = probe.timed()
            good, total = MetadataProbe.count_partitions(data)
            if good >= sizes.scale_partitions:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {good} of {sizes.scale_partitions} partitions led after 600 s")
            time.sleep(0.2)
        out["scale.visible_s"] = time.perf_counter() - t0
        samples = [probe.timed()[0] for _ in range(6)][1:]  # first one warms caches
        out["scale.metadata_ms"] = statistics.median(samples) * 1000
        out["scale.metadata_bytes"] = len(data)
    finally:
        probe.close()
    p = Producer({"bootstrap.servers": ctx.bootstrap, "acks": "1", "linger.ms": 20, "log_level": 2})
    failed = []

    def cb(err, _msg):
        if err is not None:
            failed.append(err)

    t1 = time.perf_counter()
    for t in topics:
        for i in range(per_topic):
            bb.produce_waiting(p, t, b"x" * 100, wait=0.01, partition=i, on_delivery=cb)
    left = p.flush(600)
    out["scale.produce_each_s"] = time.perf_counter() - t1
    if left or failed:
        raise RuntimeError(f"scale produce: {left} undelivered, {len(failed)} failed "
                           f"({failed[0] if failed else ''})")
    return out


# --------------------------------------------------------------------------
# One broker, one repetition
# --------------------------------------------------------------------------

class SideRun:
    """Runs workloads on one broker, recording metrics, broker CPU and errors."""

    def __init__(self, ctx: Side, rep: int):
        self.ctx = ctx
        self.rep = rep
        self.metrics: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def step(self, name: str, fn: Callable[[], object], metric: str | None = None):
        if not self.ctx.alive():
            self.errors[name] = "broker not running"
            return None
        cpu0, t0 = self.ctx.cpu_s(), time.monotonic()
        try:
            value = fn()
        except Exception as exc:  # record and carry on with the next workload
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.errors[name] = f"{type(exc).__name__}: {first}"[:300]
            log(f"  {self.ctx.name} {name}: FAILED {self.errors[name]}")
            if os.environ.get("COMPARE_DEBUG"):
                traceback.print_exc()
            return None
        finally:
            self.seconds[name] = time.monotonic() - t0
            cpu1 = self.ctx.cpu_s()
            if cpu0 is not None and cpu1 is not None:
                self.cpu[name] = cpu1 - cpu0
        if metric is not None and isinstance(value, (int, float)):
            self.metrics[metric] = float(value)
        elif isinstance(value, dict):
            self.metrics.update({k: float(v) for k, v in value.items() if v is not None})
        shown = value if not isinstance(value, float) else round(value, 3)
        log(f"  {self.ctx.name} {name}: {shown}  ({self.seconds[name]:.1f}s)")
        return value


def run_side(side: str, rep: int, sizes: Sizes) -> dict:
    ctx: Side = OdradekSide() if side == "odradek" else KafkaSide()
    log(f"rep {rep + 1}: starting {side}")
    t_side = time.monotonic()
    try:
        ctx.start()
    except BaseException:
        ctx.stop()
        raise
    run = SideRun(ctx, rep)
    run.metrics["startup.accept_s"] = ctx.accept_s
    run.metrics["startup.ready_s"] = ctx.ready_s
    if side == "kafka":
        run.metrics["startup.format_s"] = ctx.format_s
    time.sleep(1.0)
    idle = ctx.rss_mb()
    if idle is not None:
        run.metrics["rss.idle_mb"] = idle
    log(f"  {side} up: accept {ctx.accept_s:.3f}s, ready {ctx.ready_s:.3f}s, idle RSS {idle:.1f} MB")
    try:
        # Warm-up (both brokers alike): connections, JIT / import caches.
        def warm():
            mbps, topic = ck_produce(ctx, 1024, "1", 1, "none", 20_000)
            ck_consume(ctx, topic, 1, 20_000, 1024)
            return mbps
        run.step("warmup", warm)

        topics: dict[str, str] = {}
        cpu_ms_per_mb: dict[str, float] = {}
        for size, acks, parts, comp in CK_PRODUCE:
            key = produce_key("ck", size, acks, parts, comp)
            n = sizes.ck_records_1k if size == 1024 else sizes.ck_records_100b

            def do(size=size, acks=acks, parts=parts, comp=comp, n=n, key=key):
                LAST_CPU.clear()
                mbps, topic = ck_produce(ctx, size, acks, parts, comp, n)
                topics[key] = topic
                if "produce" in LAST_CPU:
                    cpu_ms_per_mb[key] = LAST_CPU["produce"] * 1000 / (n * size / 1e6)
                return mbps
            run.step(key, do, key)
        mb_1k = sizes.ck_records_1k * 1024 / 1e6
        k1 = produce_key("ck", 1024, "1", 1, "none")
        k8 = produce_key("ck", 1024, "1", 8, "none")
        if k1 in cpu_ms_per_mb:
            run.metrics["cpu.produce_ck_1KiB_ms_per_mb"] = cpu_ms_per_mb[k1]
        if k1 in topics:
            LAST_CPU.clear()
            run.step("consume.ck.1KiB.p1",
                     lambda: ck_consume(ctx, topics[k1], 1, sizes.ck_records_1k, 1024),
                     "consume.ck.1KiB.p1")
            if "consume" in LAST_CPU and "consume.ck.1KiB.p1" in run.metrics:
                run.metrics["cpu.consume_ck_1KiB_ms_per_mb"] = LAST_CPU["consume"] * 1000 / mb_1k
        if k1 in topics:
            run.step("consume.raw.1KiB.p1",
                     lambda: raw_fetch(ctx, topics[k1], sizes.ck_records_1k, 1024),
                     "consume.raw.1KiB.p1")
        if k8 in topics:
            run.step("consume.ck.1KiB.p8",
                     lambda: ck_consume(ctx, topics[k8], 8, sizes.ck_records_1k, 1024),
                     "consume.ck.1KiB.p8")

        for size, acks, parts, comp in PP_PRODUCE:
            key = produce_key("pp", size, acks, parts, comp)
            n = sizes.pp_records_1k if size == 1024 else sizes.pp_records_100b
            run.step(key, lambda size=size, acks=acks, parts=parts, comp=comp, n=n:
                     pp_produce(ctx, size, acks, parts, comp, n), key)
        if k1 in topics:
            run.step("consume.cp", lambda: cp_consume(ctx, topics[k1], sizes.ck_records_1k, 1024))

        run.step("latency.pp", lambda: pp_latency(ctx, sizes))
        run.step("latency.e2e", lambda: e2e_latency(ctx, sizes))
        run.step("latency.e2e_ck", lambda: e2e_ck_latency(ctx, sizes))
        run.step("rebalance", lambda: rebalance(ctx, sizes.rebalance_members, sizes.rebalance_partitions))
        scale_result = run.step("scale", lambda: scale(ctx, sizes))
        if scale_result is not None:
            rss = ctx.rss_mb()
            if rss is not None:
                run.metrics["rss.after_scale_mb"] = rss
        hwm = ctx.hwm_mb()
        if hwm is not None:
            run.metrics["rss.peak_mb"] = hwm
        if side == "odradek" and "scale" in run.errors:
            # disk mode could not hold the partitions: measure metadata in memory mode
            run.errors["scale"] += f" [disk mode; {scale_diagnosis(ctx)}; scale figures from --memory]"
            mem = OdradekSide(memory=True).start()
            try:
                sub = SideRun(mem, rep)
                sub.step("scale (memory mode)", lambda: scale(mem, sizes))
                for k, v in sub.metrics.items():
                    run.metrics[k] = v
                run.metrics["scale.memory_mode"] = 1.0
                rss = mem.rss_mb()
                if rss is not None and sub.metrics:
                    run.metrics["rss.after_scale_mb"] = rss
                run.errors.update({f"{k} (memory mode)": v for k, v in sub.errors.items()})
            finally:
                mem.stop()
    finally:
        ctx.stop()
    log(f"rep {rep + 1}: {side} done in {time.monotonic() - t_side:.0f}s")
    return {"metrics": run.metrics, "errors": run.errors, "seconds": run.seconds,
            "broker_cpu_seconds": run.cpu}


# --------------------------------------------------------------------------
# Environment description
# --------------------------------------------------------------------------

def snapshot_odradek() -> Path:
    """Copy the odradek package as it is now into a temporary directory."""
    dest = Path(tempfile.mkdtemp(prefix="odradek-snapshot-"))
    shutil.copytree(ROOT / "odradek", dest / "odradek",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    probe = subprocess.run([sys.executable, "-c", "import odradek, os; print(os.path.dirname(odradek.__file__))"],
                           cwd=dest, capture_output=True, text=True, timeout=60)
    if Path(probe.stdout.strip()).resolve() != (dest / "odradek").resolve():
        raise RuntimeError(f"the odradek snapshot is not the one imported: {probe.stdout}{probe.stderr}")
    return dest


def _version_string(v) -> str:
    """confluent_kafka.version() is a string in some releases, a (str, int) tuple in others."""
    return v[0] if isinstance(v, tuple) else str(v)


def environment() -> dict:
    import confluent_kafka

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = proc_status_kb_file("/proc/meminfo", "MemTotal")
    java = run_text([kr.java_executable(), "-version"]).splitlines()
    rt = kr.fetch(quiet=True)
    try:
        from importlib.metadata import version as dist_version
        odradek_version = dist_version("odradek")
    except Exception:
        odradek_version = "?"
    try:
        nofile = tuple(__import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE))
    except Exception:
        nofile = None
    return {
        "nproc": run_text(["nproc"]) or str(os.cpu_count()),
        "cpu_model": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1) if mem_kb else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "java": java[0] if java else "?",
        "java_runtime": java[1] if len(java) > 1 else "",
        "kafka_version": rt.version,
        "kafka_tools": f"Kafka {rt.version} ProducerPerformance / ConsumerPerformance / EndToEndLatency (kafka-clients {rt.version})",
        "confluent_kafka": _version_string(confluent_kafka.version()),
        "librdkafka": _version_string(confluent_kafka.libversion()),
        "odradek": odradek_version,
        "git_commit": run_text(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(run_text(["git", "-C", str(ROOT), "status", "--porcelain", "--", "odradek"])),
        "nofile_limit": nofile,
        "load_before": os.getloadavg(),
    }


def proc_status_kb_file(path: str, field: str) -> float | None:
    with contextlib.suppress(OSError):
        for line in open(path):
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return None


# --------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------

def collect(reps: list[dict]) -> dict[str, dict[str, list[float]]]:
    """metric -> side -> values over repetitions (side "machine" for limits)."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rep in reps:
        for k, v in rep.get("limits", {}).items():
            out[k]["machine"].append(v)
        for side in SIDES:
            metrics = rep.get(side, {}).get("metrics", {})
            for k, v in metrics.items():
                out[k][side].append(v)
            sendfile = rep.get("limits", {}).get("limit.sendfile")
            if sendfile and "consume.raw.1KiB.p1" in metrics:
                out["consume.raw_vs_sendfile"][side].append(metrics["consume.raw.1KiB.p1"] / sendfile)
    return out


def stats(values: list[float]) -> dict | None:
    if not values:
        return None
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values), "n": len(values),
            "spread": (max(values) - min(values)) / med if med else 0.0}


def summary_rows(values: dict) -> list[dict]:
    rows = []
    for key, (label, unit, better) in METRICS.items():
        if key.startswith("limit."):
            continue
        o = stats(values.get(key, {}).get("odradek", []))
        k = stats(values.get(key, {}).get("kafka", []))
        if o is None and k is None:
            continue
        ratio = o["median"] / k["median"] if o and k and k["median"] else None
        overlap = bool(o and k and o["min"] <= k["max"] and k["min"] <= o["max"])
        rows.append({"key": key, "label": label, "unit": unit, "better": better,
                     "odradek": o, "kafka": k, "ratio": ratio, "overlap": overlap})
    return rows


def fmt(v: float | None, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    a = abs(v)
    if a >= 1000:
        s = f"{v:,.0f}"
    elif a >= 100:
        s = f"{v:.0f}"
    elif a >= 10:
        s = f"{v:.1f}"
    elif a >= 1:
        s = f"{v:.2f}"
    else:
        s = f"{v:.3f}"
    return s


def print_summary(rows: list[dict], values: dict) -> None:
    print()
    print(f"{'metric':66} {'unit':6} {'odradek med [min-max]':>26} {'kafka med [min-max]':>26} {'o/k':>6}")
    for r in rows:
        def cell(s):
            return f"{fmt(s['median'])} [{fmt(s['min'])}-{fmt(s['max'])}]" if s else "—"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "—"
        print(f"{r['label'][:66]:66} {r['unit']:6} {cell(r['odradek']):>26} {cell(r['kafka']):>26} {ratio:>6}"
              + ("  ~" if r["overlap"] else ""))
    for key in ("limit.loopback_tcp", "limit.pagecache_write", "limit.sendfile"):
        s = stats(values.get(key, {}).get("machine", []))
        if s:
            print(f"{METRICS[key][0]:66} MB/s   {fmt(s['median'])} [{fmt(s['min'])}-{fmt(s['max'])}]")
    print("(~ : the two sides' min-max ranges overlap)")


def targets(rows: list[dict], values: dict, scale_partitions: int = 10_000) -> list[dict]:
    """Evaluate the project's performance targets on the medians; ``settled``
    says whether the run's spread leaves the verdict in doubt."""
    by = {r["key"]: r for r in rows}
    out = []

    def med(key, side):
        r = by.get(key)
        return r[side]["median"] if r and r.get(side) else None

    def ratio_rows(title, sel, want_ge):
        ok = [r for r in sel if (r["ratio"] >= 1.0 if want_ge else r["ratio"] <= 1.0)]
        bad = [r for r in sel if r not in ok]
        unsettled = [r for r in sel if r["overlap"]]
        head = (f"{len(ok)} of {len(sel)} at {'>=' if want_ge else '<='} 1.0"
                + (f"; {len(unsettled)} of {len(sel)} with overlapping ranges" if unsettled else ""))
        misses = "; ".join(f"{r['label']}: {r['ratio']:.2f}{' ~' if r['overlap'] else ''}" for r in bad)
        out.append({"target": title, "met": bool(sel) and not bad,
                    "settled": bool(sel) and (any(not r["overlap"] for r in bad) if bad
                                              else not unsettled),
                    "detail": head + (f". Below target: {misses}" if misses else "")})

    produce = [r for r in rows if r["key"].startswith("produce.") and r["ratio"] is not None]
    ratio_rows("produce throughput ratio >= 1.0", produce, True)
    head = by.get(produce_key("ck", 1024, "1", 1, "none"))
    if head and head["ratio"] is not None:
        out[-1]["detail"] += (f". Headline (confluent-kafka 1KiB acks=1 1p): {head['ratio']:.2f}")
    cons = [r for r in rows if r["key"] in ("consume.ck.1KiB.p1", "consume.ck.1KiB.p8", "consume.raw.1KiB.p1",
                                             "consume.cp.1KiB.p1.fetch") and r["ratio"] is not None]
    ratio_rows("consume throughput ratio >= 1.0", cons, True)
    frac = stats(values.get("consume.raw_vs_sendfile", {}).get("odradek", []))
    frac_k = stats(values.get("consume.raw_vs_sendfile", {}).get("kafka", []))
    if frac:
        out.append({"target": "consume >= 70% of the sendfile limit", "met": frac["median"] >= 0.7,
                    "settled": not (frac["min"] < 0.7 < frac["max"]),
                    "detail": f"raw Fetch from odradek / sendfile of the same repetition: median "
                              f"{frac['median']:.0%} (range {frac['min']:.0%}–{frac['max']:.0%}); Kafka "
                              + (f"{frac_k['median']:.0%} ({frac_k['min']:.0%}–{frac_k['max']:.0%})"
                                 if frac_k else "—")
                              + f". Through a client library odradek's best consume median is "
                              f"{fmt(max(v for v in (med('consume.ck.1KiB.p1', 'odradek'), med('consume.ck.1KiB.p8', 'odradek'), 0) if v is not None))} MB/s"})
    lat = [by[k] for k in ("latency.pp.p99", "latency.e2e.p99", "latency.e2e_ck.p99")
           if k in by and by[k]["ratio"] is not None]
    ratio_rows("p99 latency no worse than Kafka", lat, False)
    out[-1]["detail"] += ". " + "; ".join(
        f"{r['label']}: {fmt(r['odradek']['median'])} vs {fmt(r['kafka']['median'])} ms" for r in lat)
    for key, limit, label in (("startup.accept_s", 0.3, "start-up < 0.3 s"),
                              ("rss.idle_mb", 60.0, "idle RSS < 60 MB"),
                              ("scale.metadata_ms", 100.0,
                               "10k-partition Metadata < 100 ms" if scale_partitions == 10_000 else
                               f"{scale_partitions:,}-partition Metadata < 100 ms (target is for 10,000)")):
        v = med(key, "odradek")
        r = by.get(key)
        mode = ""
        if key == "scale.metadata_ms" and values.get("scale.memory_mode", {}).get("odradek"):
            mode = " (odradek in --memory mode: disk mode could not hold the partitions)"
        out.append({"target": label, "met": v is not None and v < limit,
                    "settled": v is not None and not (r["odradek"]["min"] < limit < r["odradek"]["max"]),
                    "detail": (f"odradek median {fmt(v)} (range {fmt(r['odradek']['min'])}–"
                               f"{fmt(r['odradek']['max'])}), Kafka {fmt(med(key, 'kafka'))}{mode}"
                               if v is not None else "no data")})
    return out


def verdict(t: dict) -> str:
    v = "met" if t["met"] else "**missed**"
    return v if t.get("settled", True) else v + " (within the spread: not settled by this run)"


# --------------------------------------------------------------------------
# Chart
# --------------------------------------------------------------------------

CHART_THROUGHPUT = [
    (produce_key("ck", 1024, "1", 1, "none"), "ck 1KiB\nacks=1 1p"),
    (produce_key("ck", 1024, "all", 8, "none"), "ck 1KiB\nacks=all 8p"),
    (produce_key("ck", 1024, "1", 8, "lz4"), "ck 1KiB\n8p lz4"),
    (produce_key("ck", 1024, "1", 8, "zstd"), "ck 1KiB\n8p zstd"),
    (produce_key("ck", 100, "1", 8, "none"), "ck 100B\nacks=1 8p"),
    (produce_key("pp", 1024, "1", 1, "none"), "PP 1KiB\nacks=1 1p"),
    (produce_key("pp", 1024, "all", 8, "none"), "PP 1KiB\nacks=all 8p"),
    (produce_key("pp", 100, "1", 8, "none"), "PP 100B\nacks=1 8p"),
    ("consume.ck.1KiB.p1", "consume ck\n1KiB 1p"),
    ("consume.ck.1KiB.p8", "consume ck\n1KiB 8p"),
    ("consume.cp.1KiB.p1.fetch", "consume CP\n1KiB 1p"),
]
CHART_LATENCY = [
    ("latency.pp.p50", "produce\np50"), ("latency.pp.p99", "produce\np99"),
    ("latency.pp.p999", "produce\np99.9"), ("latency.e2e.p50", "e2e\np50"),
    ("latency.e2e.p99", "e2e\np99"), ("latency.e2e.p999", "e2e\np99.9"),
    ("latency.e2e_ck.p50", "e2e ck\np50"), ("latency.e2e_ck.p99", "e2e ck\np99"),
]

CHART_RATIOS = [
    ("startup.accept_s", "start-up\n(accept)"), ("rss.idle_mb", "idle RSS"), ("rss.peak_mb", "peak RSS"),
    ("scale.visible_s", "scale: create\nto visible"), ("scale.metadata_ms", "scale:\nMetadata"),
    ("scale.produce_each_s", "scale: 1 record\nper partition"), ("rebalance.s", "rebalance\n10 members"),
    ("consume.cp.1KiB.p1.join_ms", "CP group\njoin"),
    ("cpu.produce_ck_1KiB_ms_per_mb", "broker CPU/MB\nproduce"),
    ("cpu.consume_ck_1KiB_ms_per_mb", "broker CPU/MB\nconsume"),
]


def draw_chart(values: dict, path: Path) -> str | None:
    """Write the PNG; return None on success or the reason it was skipped."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib), so no chart was drawn"
    colors = {"odradek": "#2a7ab0", "kafka": "#d9822b", "machine": "#8c8c8c"}
    fig, axes = plt.subplots(4, 1, figsize=(12, 17),
                             gridspec_kw={"height_ratios": [1, 0.7, 1, 0.8]})

    def grouped(ax, items, unit, title, log_scale=False):
        items = [(k, l) for k, l in items if values.get(k)]
        x = list(range(len(items)))
        for j, side in enumerate(SIDES):
            meds, lo, hi = [], [], []
            for key, _ in items:
                s = stats(values[key].get(side, []))
                m = s["median"] if s else 0.0
                meds.append(m)
                lo.append(m - s["min"] if s else 0)
                hi.append(s["max"] - m if s else 0)
            pos = [i + (j - 0.5) * 0.38 for i in x]
            ax.bar(pos, meds, 0.38, yerr=[lo, hi], capsize=3, label=side, color=colors[side])
        ax.set_xticks(x)
        ax.set_xticklabels([l for _, l in items], fontsize=8)
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        if log_scale:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
        ax.legend()

    grouped(axes[0], CHART_THROUGHPUT, "MB/s",
            "Throughput through client libraries (median, bars: min-max; higher is better)")
    # broker fetch ceiling next to the machine's limits
    ax = axes[1]
    bars = []
    for side in SIDES:
        s = stats(values.get("consume.raw.1KiB.p1", {}).get(side, []))
        if s:
            bars.append((f"raw Fetch\n{side}", s, colors[side]))
    for key, label in (("limit.sendfile", "sendfile\nover loopback"), ("limit.loopback_tcp", "loopback TCP"),
                       ("limit.pagecache_write", "page-cache\nwrite (dd)")):
        s = stats(values.get(key, {}).get("machine", []))
        if s:
            bars.append((label, s, colors["machine"]))
    if bars:
        ax.bar(range(len(bars)), [b[1]["median"] for b in bars], 0.6,
               yerr=[[b[1]["median"] - b[1]["min"] for b in bars], [b[1]["max"] - b[1]["median"] for b in bars]],
               capsize=3, color=[b[2] for b in bars])
        ax.set_xticks(range(len(bars)))
        ax.set_xticklabels([b[0] for b in bars], fontsize=8)
        ax.set_ylabel("MB/s")
        ax.set_title("Broker fetch ceiling (raw Fetch requests, 1KiB, 1p) and this machine's physical limits",
                     fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    grouped(axes[2], CHART_LATENCY, "ms", "Latency (median, bars: min-max; lower is better, log scale)", True)
    ax = axes[3]
    items = [(k, l) for k, l in CHART_RATIOS if values.get(k, {}).get("odradek") and values[k].get("kafka")]
    ratios = [statistics.median(values[k]["odradek"]) / statistics.median(values[k]["kafka"])
              for k, _ in items]
    ax.bar(range(len(items)), ratios, 0.6, color=[
        "#4c9a4c" if (r <= 1 if METRICS[k][2] == "lower" else r >= 1) else "#c0504d"
        for (k, _), r in zip(items, ratios)])
    ax.axhline(1.0, color="black", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(items)))
    ax.set_xticklabels([l for _, l in items], fontsize=8)
    ax.set_ylabel("odradek / Kafka")
    ax.set_title("Start-up, memory, scale, rebalance, broker CPU: ratio of medians (log scale; "
                 "green = odradek better, red = worse)", fontsize=10)
    for i, r in enumerate(ratios):
        ax.text(i, r, f"{r:.2g}", ha="center", va="bottom" if r >= 1 else "top", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle("odradek vs Apache Kafka on one 2-core machine (ck = confluent-kafka, PP/CP = "
                 "Kafka's ProducerPerformance/ConsumerPerformance)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------
# Markdown report
# --------------------------------------------------------------------------

PLANS = [
    "- **Consume ratios.** Through confluent-kafka both brokers serve a 200 MB topic in about 0.2 s, "
    "so one scheduling hiccup moves a figure by a third, and every range overlaps. The broker is not "
    "what bounds these rows: odradek spent about half of Kafka's CPU per MB consumed and its event "
    "loop was busy about a third of the time (profiles below), the rest being the Python client on "
    "the same two cores. `bench/consume_bench.py` (its section below) reads the same topics twice "
    "per repetition. Until this run the bench's consumer also used librdkafka's 64 MiB local queue "
    "and 1 s backoff, under which it stopped fetching for a second in some runs (ranges of about 100 "
    "to 550 MB/s on both brokers before); it now queues up to 1 GiB with a 10 ms backoff.",
    "- **Raw Fetch and the sendfile limit (met).** What did it was memory, not zero-copy: at glibc's "
    "defaults every response buffer of a few MiB was mapped afresh and its pages faulted in, on "
    "reads as on Produce frames (`odradek serve` now keeps freed memory for the next request: "
    "docs/performance.md, *Every core*; an A/B by hand on this machine, 3 repetitions of this "
    "page's raw Fetch loop: 2,391 MB/s median against 1,026 with `MALLOC_MMAP_THRESHOLD_=131072` in "
    "the broker's environment, which restores glibc's default; sendfile 2,512). Serving record chunks with sendfile "
    "was built and measured earlier and not kept: on loopback a bare sendfile ran no faster than "
    "pread and send, and odradek's raw Fetch was slower with it (about 2.0 against 3.2 GB/s, "
    "alternated in one run).",
    "- **Start-up under 0.3 s (met, just).** It is imports: the interpreter, click, the codec and the "
    "coordinator modules; the CLI loads a subcommand's module only when it is used.",
    "- **Many partitions in disk mode.** A segment keeps at most one file open, its log, while it is "
    "in use: the index entries live in memory, and the store closes the least recently used idle "
    "segments' files beyond the open-file limit and opens them again on demand. The scale rows above "
    "are now from disk mode. CreateTopics takes longer than Kafka's (it answers once every "
    "partition's directory and log file exist, about 0.75 ms each on this disk; Kafka's controller "
    "answers before its logs are created), while creation until Metadata lists every partition with "
    "a leader is shorter. 100,000 partitions: `bench/scale_bench.py`, its section below.",
    "- **Rebalance of 10 members.** Both brokers run the classic join the same way: with "
    "`group.initial.rebalance.delay.ms=0` the first generation completes at the first timer tick "
    "after which no member joined, and a member joining a stable group waits for the others' next "
    "heartbeat (3 s in librdkafka). Traced side by side (librdkafka `debug=cgrp`; odradek's "
    "JoinGroup, SyncGroup and Heartbeat with timestamps): on both, the ten JoinGroups arrived over "
    "about 10 ms; odradek completes the first member's join and sync in a few ms, before the others "
    "arrive, so they wait for its heartbeat; Kafka took about 100 ms or more to complete its first "
    "join, long enough for all ten to arrive in some repetitions and not in others. The difference "
    "is Kafka's slower first completion, not a rule odradek lacks; matching it would mean delaying "
    "the first generation beyond what the setting asks. `bench/rebalance_bench.py` (its sections "
    "below) measures 10 and 50 members: with the setting at Kafka's default of 3000 ms, and with "
    "KIP-848, the two brokers are within a few per cent; only the classic protocol at 0 ms is behind.",
]


def add_section_args(ap, json_default: str | None = None, json_help: str | None = None) -> None:
    """The options of a script that writes its section of docs/performance.md
    (``write_section``): where its JSON result goes, the report, no report,
    and rendering from an earlier result."""
    ap.add_argument("--json", default=json_default, help=json_help)
    ap.add_argument("--report", default=str(ROOT / "docs" / "performance.md"))
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--from-json", help="only render the section from an earlier JSON result")


def write_section(report: Path, begin: str, end: str, text: str) -> None:
    """Put another script's section ``text`` (from its ``begin`` mark to its
    ``end`` mark) into the report: in place of its earlier one, else first
    after ``KEPT_MARK`` (added at the end when missing), where regenerating
    the report keeps it."""
    old = report.read_text()
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + text + rest.split(end, 1)[1]
    else:
        if KEPT_MARK not in old:
            old = old.rstrip("\n") + "\n\n" + KEPT_MARK + "\n"
        head, tail = old.split(KEPT_MARK, 1)
        new = head + KEPT_MARK + "\n\n" + text + "\n" + tail
    report.write_text(new)


def render_report(result: dict, rows: list[dict], values: dict, chart_note: str | None,
                  chart_rel: str) -> str:
    env, sizes, args = result["environment"], result["sizes"], result["args"]
    quick = args["quick"]
    L: list[str] = []
    w = L.append
    w("# Performance: odradek next to Apache Kafka")
    w("")
    w("<!-- Generated by bench/compare.py from one run; do not edit the numbers by hand. -->")
    w("")
    w(f"Generated by `{result['command']}` on {result['started']} "
      f"(wall time {result['wall_seconds'] / 60:.1f} min, {sizes['repetitions']} repetitions"
      f"{', --quick' if quick else ''}). odradek commit `{env['git_commit']}`"
      f"{' with local changes under odradek/' if env['git_dirty'] else ''}, copied aside when the run "
      "started so that every repetition measures the same code"
      + (f" (the work tree had moved on to `{env['git_commit_at_end']}` by the end)"
         if env.get("git_commit_at_end") and env["git_commit_at_end"] != env["git_commit"] else "") + ".")
    w("")
    w("**Read these numbers as rough.** The machine has "
      f"{env['nproc']} cores that the broker, the load generator and other engineers' test runs share; "
      "every client (the Python/librdkafka driver and the JVM perf tools) runs on the same two cores "
      "as the broker it measures, so most throughput figures here are bounded by the client as much "
      "as by the broker. " + noise_statement(rows))
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| CPUs (`nproc`) | {env['nproc']} |")
    w(f"| CPU model | {env['cpu_model']} |")
    w(f"| memory | {env['memory_gib']} GiB |")
    w(f"| kernel | {env['kernel']} |")
    w(f"| Python | {env['python']} |")
    w(f"| Java | {env['java']} ({env['java_runtime']}) |")
    w(f"| Apache Kafka | {env['kafka_version']} (jars from Maven Central, single-node KRaft, heap 1 GiB, "
      "G1 flags of kafka-run-class.sh) |")
    w(f"| Kafka tools | {env['kafka_tools']} |")
    w(f"| confluent-kafka / librdkafka | {env['confluent_kafka']} / {env['librdkafka']} |")
    w(f"| odradek | {env['odradek']} (`python -m odradek serve --data-dir <tmp>`) |")
    w(f"| open-file limit (soft, hard) | {env['nofile_limit']} |")
    w(f"| load average before the run | {', '.join(f'{x:.2f}' for x in env['load_before'])} |")
    w("")
    w("## How to reproduce")
    w("")
    w("```")
    w("pip install -e '.[test]' psutil matplotlib   # psutil optional; matplotlib for the chart")
    w("python bench/compare.py            # this report (about 20 min on 2 cores)")
    w("python bench/compare.py --quick    # smoke run: 2 repetitions, small counts")
    w("```")
    w("")
    w("Needs Java 17+ and Maven on PATH the first time (Kafka's jars are fetched into "
      "`~/.cache/odradek-bench`). Raw numbers of this run: "
      f"`{result['json_path']}`.")
    w("")
    w("## Method")
    w("")
    w("- **Brokers.** Every repetition starts a fresh odradek and a fresh Kafka, one after the other; "
      "the first side alternates (odradek first in odd repetitions, Kafka first in even ones). "
      "Each workload then writes to its own new topic on that broker. Both brokers run with "
      "`group.initial.rebalance.delay.ms=0`; everything else is at its default. "
      "Kafka's start-up excludes `kafka-storage format` (reported separately below).")
    w("- **Warm-up.** On each broker, before anything is measured: 20,000 × 1 KiB records produced "
      "and consumed with confluent-kafka (both brokers alike; it gives the JVM its JIT and odradek its "
      "connections).")
    w(f"- **Produce, confluent-kafka** (`bench/broker_bench.py: produce_throughput`: linger.ms=5, "
      f"batch.size=1 MB, one Python thread producing as fast as librdkafka accepts): "
      f"{sizes['ck_records_1k']:,} × 1 KiB records for the full matrix acks ∈ {{1, all}} × "
      f"partitions ∈ {{1, 8}} × compression ∈ {{none, lz4, zstd}}; "
      f"{sizes['ck_records_100b']:,} × 100 B records for a subset (acks=1 1p, acks=1 8p, acks=all 8p, "
      "acks=1 8p lz4). Values are hex text, about 2:1 compressible.")
    w(f"- **Produce, ProducerPerformance** (Kafka's own tool, producer defaults: batch.size=16 KiB, "
      f"linger.ms=5): {sizes['pp_records_1k']:,} × 1 KiB for acks=1 1p, acks=all 8p, "
      f"acks=1 8p lz4, acks=1 8p zstd; {sizes['pp_records_100b']:,} × 100 B for acks=1 8p. "
      "Each run includes a JVM start of the tool, and the JIT warms up during the run.")
    w("- **Consume** from the page cache (the topics were just written): confluent-kafka reads "
      "back the 1 KiB acks=1 topics (1 and 8 partitions) with `assign()` from offset 0 "
      "(fetch.max.bytes 50 MB, max.partition.fetch.bytes 10 MB, queued.max.messages.kbytes 1 GiB, "
      "fetch.queue.backoff.ms 10: at librdkafka's 64 MiB queue and 1 s backoff the consumer paused "
      "for a second in some runs); ConsumerPerformance reads the 1-partition topic in a new group. "
      "The ConsumerPerformance fetch-phase rate excludes its group join, which is reported on its own. "
      "To see the broker's own fetch ceiling without a client library's per-record work, a raw "
      "Fetch v4 loop (one TCP connection, 10 MiB per partition per request, responses read into a "
      "reused buffer, only batch headers walked) reads the 1-partition topic in whole passes for at "
      "least 1.5 s (at most 5 passes); this is the figure compared with the sendfile limit.")
    w(f"- **Latency.** ProducerPerformance at a fixed {sizes['lat_rate']:,} records/s of 1 KiB "
      f"(acks=1, 1 partition), {sizes['lat_records']:,} records after {sizes['lat_warmup']:,} warm-up "
      "records, whose percentiles are not counted; its percentiles are whole milliseconds. "
      f"End-to-end: Kafka's EndToEndLatency ({sizes['e2e_records']:,} round trips of one 1 KiB "
      "record: produce, consume, commit, then the next) and a confluent-kafka loop "
      f"({sizes['e2e_ck_samples']} samples: a consumer waits in a long poll, one record is produced, "
      "time until it is consumed).")
    w("- **Start-up and memory.** Start-up is from process launch to the listener accepting a TCP "
      "connection, and to a Metadata request answered through librdkafka. Idle RSS is VmRSS of the "
      "broker process 1 s after start-up; peak RSS is VmHWM at the end of the repetition (after every "
      "workload, including the scale test).")
    w(f"- **Scale.** {sizes['scale_partitions']:,} partitions on the one broker, as "
      f"{sizes['scale_topics']} topics × {sizes['scale_partitions'] // sizes['scale_topics']:,} "
      "partitions (Kafka's controller refuses more than 10,000 new partitions in one request, with "
      "POLICY_VIOLATION \"Unable to perform excessively large batch operation\", so a single "
      "10,000-partition topic cannot be created on Kafka). Timed: the CreateTopics requests; "
      "creation until a Metadata request lists every partition with a leader; a raw Metadata v4 "
      "request for all topics over one TCP connection (request sent until the last response byte; "
      "median of 5 after one warm-up request); producing one 100 B record to every partition.")
    w(f"- **Rebalance.** {sizes['rebalance_members']} confluent-kafka consumers (classic protocol, "
      f"librdkafka defaults) subscribe to one {sizes['rebalance_partitions']}-partition topic in one "
      "group, each polling in its own thread; timed from the first subscribe until every member holds "
      "partitions and together they hold each partition exactly once. Also recorded: when the first "
      "member got partitions, and assignments handed out per member (1.0 = everyone joined in one "
      "generation; 1.1 = one member was first assigned alone, then all ten together).")
    w("- **Physical limits**, measured at the start of every repetition: one loopback TCP stream "
      "(Python `sendall` of 1 MiB buffers to a reader process), page-cache writes "
      f"(`dd if=/dev/zero bs=1M count={sizes['dd_mib']} conv=notrunc` over an existing file, no "
      "fsync), and `os.sendfile` of that cached file over loopback to a reader process.")
    w("- MB = 10^6 bytes of record values (keys, headers and protocol overhead not counted; "
      "Kafka's tools' MiB figures are converted). Broker CPU per MB is the broker process's "
      "user+system CPU time during the workload divided by the MB moved.")
    w("")
    w("## Results")
    w("")
    if chart_note:
        w(f"_Chart skipped: {chart_note}._")
    else:
        w(f"![odradek vs Kafka: throughput and latency]({chart_rel})")
    w("")
    w("Ratio = odradek median / Kafka median. For MB/s higher is better; for times, "
      "latencies and memory lower is better. ~ marks rows where the two sides' min–max ranges "
      "overlap (no clear difference in this run).")
    groups = [("Produce throughput", "produce."), ("Consume throughput", "consume."),
              ("Latency", "latency."), ("Start-up and memory", ("startup.", "rss.")),
              ("Scale", "scale."), ("Consumer-group rebalance", "rebalance."),
              ("Broker CPU cost", "cpu.")]
    for title, prefix in groups:
        sel = [r for r in rows if r["key"].startswith(prefix)]
        if not sel:
            continue
        w("")
        w(f"### {title}")
        w("")
        w("| workload | unit | better | odradek median | odradek min–max | Kafka median | Kafka min–max | ratio |")
        w("|---|---|---|---:|---:|---:|---:|---:|")
        for r in sel:
            o, k = r["odradek"], r["kafka"]
            ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "—"
            if r["overlap"]:
                ratio += " ~"
            w(f"| {r['label']} | {r['unit']} | {r['better']} | {fmt(o and o['median'])} | "
              f"{(fmt(o['min']) + '–' + fmt(o['max'])) if o else '—'} | {fmt(k and k['median'])} | "
              f"{(fmt(k['min']) + '–' + fmt(k['max'])) if k else '—'} | {ratio} |")
        if title == "Start-up and memory":
            fs = stats(values.get("startup.format_s", {}).get("kafka", []))
            if fs:
                w("")
                w(f"Kafka's `kafka-storage format` step before each start took a further "
                  f"{fmt(fs['median'])} s (median; {fmt(fs['min'])}–{fmt(fs['max'])}).")
        if title == "Scale" and values.get("scale.memory_mode", {}).get("odradek"):
            w("")
            w("odradek's scale figures come from a second odradek started with `--memory`: in disk mode "
              "it could not create all the partitions (see the errors below).")
    w("")
    w("### Physical limits of this machine")
    w("")
    w("| probe | median MB/s | min–max |")
    w("|---|---:|---:|")
    for key in ("limit.loopback_tcp", "limit.pagecache_write", "limit.sendfile"):
        s = stats(values.get(key, {}).get("machine", []))
        if s:
            w(f"| {METRICS[key][0]} | {fmt(s['median'])} | {fmt(s['min'])}–{fmt(s['max'])} |")
    w("")
    w("## Targets")
    w("")
    w("| target | verdict | detail |")
    w("|---|---|---|")
    for t in targets(rows, values, sizes["scale_partitions"]):
        w(f"| {t['target']} | {verdict(t)} | {t['detail']} |")
    saved = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "startup-latest.md")
    if os.path.exists(saved):
        w("")
        w("### odradek alone: start-up and idle memory, standalone and in-process")
        w("")
        w(open(saved).read().rstrip())
    w("")
    w("### Plans for the targets not met")
    w("")
    for line in PLANS:
        w(line)
    errors = [(i + 1, side, name, msg) for i, rep in enumerate(result["repetitions"])
              for side in SIDES for name, msg in rep.get(side, {}).get("errors", {}).items()]
    w("")
    w("## Failures during the run")
    w("")
    if errors:
        w("| repetition | broker | workload | error |")
        w("|---|---|---|---|")
        for rep, side, name, msg in errors:
            w(f"| {rep} | {side} | {name} | {msg.replace('|', '/')} |")
    else:
        w("None: every workload completed on both brokers in every repetition.")
    prof = result.get("profile")
    if prof:
        w("")
        w("## Where odradek spends its time")
        w("")
        w("An extra odradek-only pass after the measured repetitions (`--profile`; not part of the "
          "numbers above). Each workload ran again with `py-spy record --format raw "
          f"--rate {prof['rate']}` attached to the broker; only the main thread's non-idle samples "
          "count (the event loop at work; helper threads only wait on their queues), so the shares "
          "show where the broker's event loop spends its busy time. *Loop busy* is the share of "
          "the workload's wall time in which the loop was working; *broker CPU* is the process's "
          "CPU time over wall time (1.0 = one core). Time inside uvloop's C code (socket reads "
          "and writes, the loop itself) shows up as `run (odradek/server/serve.py)`; self time in "
          "`KafkaConnection.process` is mostly its `transport.write`/`writelines` call, i.e. uvloop "
          "copying the response into the socket.")
        for name, p in prof.get("workloads", {}).items():
            w("")
            cpu = f", broker CPU {p['broker_cpu_share']:.2f}" if p.get("broker_cpu_share") is not None else ""
            w(f"**{name}**: {p['samples']} samples over {p['wall_s']:.1f} s, loop busy "
              f"{p['busy_share']:.0%}{cpu}.")
            w("")
            w("| innermost function | share | | odradek function on the stack | share |")
            w("|---|---:|---|---|---:|")
            selfs, totals = p["self"], p["total"]
            for i in range(max(len(selfs), len(totals))):
                a = selfs[i] if i < len(selfs) else None
                b = totals[i] if i < len(totals) else None
                left = f"`{a[0]}` | {a[1]:.0%}" if a else " | "
                right = f"`{b[0]}` | {b[1]:.0%}" if b else " | "
                w(f"| {left} | | {right} |")
        st = prof.get("startup")
        if st:
            w("")
            w(f"**start-up**: the bare interpreter (`python -c pass`) takes {st['interpreter_s'] * 1000:.0f} ms "
              f"here ({st['interpreter_no_site_s'] * 1000:.0f} ms with `-S`, i.e. without site-packages' "
              f".pth hooks); `python -X importtime -m odradek serve --memory` spends "
              f"{st['imports_total_ms']:.0f} ms importing and accepted connections after "
              f"{st['accept_with_importtime_s'] * 1000:.0f} ms (importtime itself adds a little). "
              "Imports of 10 ms or more (cumulative, nested):")
            w("")
            w("| module | cumulative ms |")
            w("|---|---:|")
            for depth, mod, ms in reversed(st["import_tree"]):  # parents before children
                w(f"| {'&nbsp;&nbsp;' * 2 * depth}`{mod}` | {ms:.0f} |")
    w("")
    return "\n".join(L)


def noise_statement(rows: list[dict]) -> str:
    spreads = [s["spread"] for r in rows for s in (r["odradek"], r["kafka"])
               if s and s["n"] > 1 and s["median"]]
    if not spreads:
        return "With one repetition there is no spread to judge the noise by."
    med = statistics.median(spreads)
    hi = sorted(spreads)[int(0.9 * (len(spreads) - 1))]
    overlap = sum(r["overlap"] for r in rows)
    return (f"Across all metrics, the min–max spread of the repetitions is {med:.0%} of the median "
            f"in the typical case and {hi:.0%} or more for the noisiest tenth; "
            f"{overlap} of {len(rows)} rows have overlapping odradek and Kafka ranges. "
            "Treat a ratio within about ±" + f"{max(10, round(med * 100 / 2 / 5) * 5):.0f}% of 1.0 as a tie.")


# --------------------------------------------------------------------------
# Profiling pass (odradek only, not measured)
# --------------------------------------------------------------------------

def _parse_collapsed(path: str) -> tuple[int, Counter, Counter]:
    """Samples, self counts and inclusive counts (odradek frames) of py-spy raw output."""
    self_c: Counter = Counter()
    total_c: Counter = Counter()
    n = 0
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            c = int(count)
            frames = stack.split(";")
            if not any("odradek/__main__" in fr for fr in frames):
                continue  # helper threads (executors, cleaner) waiting on their queues
            n += c
            self_c[_short(frames[-1])] += c
            seen = set()
            for fr in frames:
                if "odradek" in fr and "__main__" not in fr and "cli/main" not in fr \
                        and "server/serve.py" not in fr:
                    s = _short(fr)
                    if s not in seen:
                        total_c[s] += c
                        seen.add(s)
    return n, self_c, total_c


def _short(frame: str) -> str:
    m = re.match(r"(.+?) \((.+?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    fn, path = m[1], m[2]
    if "odradek/" in path:
        path = "odradek/" + path.split("odradek/", 1)[1]
    else:
        path = os.path.basename(path)
    return f"{fn} ({path})"


def startup_profile(runs: int = 5) -> dict:
    """Where odradek's start-up goes: bare interpreter start, and the import
    tree of a real ``odradek serve --memory`` (python -X importtime)."""
    def launch(args: list[str]) -> float:
        t0 = time.monotonic()
        subprocess.run([sys.executable, *args], cwd=ODRADEK_CWD, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.monotonic() - t0

    bare = statistics.median(launch(["-c", "pass"]) for _ in range(runs))
    no_site = statistics.median(launch(["-S", "-c", "pass"]) for _ in range(runs))
    port = bb.free_port()
    err = tempfile.NamedTemporaryFile(prefix="odradek-importtime-", suffix=".txt", delete=False)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "odradek", "serve", "--memory",
                             "--port", str(port), "--log-level", "WARNING"], cwd=ODRADEK_CWD,
                            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    accept = bb.wait_accepting(port, t0, proc)
    proc.terminate()
    proc.wait(20)
    err.close()
    tree, total_us = [], 0
    for line in Path(err.name).read_text(errors="replace").splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        depth = (len(m[3]) - 1) // 2
        if depth == 0:
            total_us += int(m[2])
        if int(m[2]) >= 10_000 and depth <= 3:
            tree.append((depth, m[4], int(m[2]) / 1000))
    os.unlink(err.name)
    return {"interpreter_s": bare, "interpreter_no_site_s": no_site,
            "accept_with_importtime_s": accept, "imports_total_ms": total_us / 1000,
            "import_tree": tree}


def profile_pass(sizes: Sizes, rate: int = 250) -> dict:
    """odradek alone under py-spy for the workloads worth explaining; only the
    main thread's non-idle samples (the event loop at work) are counted."""
    out: dict = {"rate": rate, "workloads": {}}
    try:
        out["startup"] = startup_profile()
    except Exception as exc:
        log(f"start-up profile failed: {exc}")
    if not shutil.which("py-spy"):
        log("py-spy not found (pip install py-spy): no sampling profile")
        return out
    ctx: Side = OdradekSide().start()
    tmpdir = tempfile.mkdtemp(prefix="odradek-prof-")

    @contextlib.contextmanager
    def spy(name: str):
        raw = os.path.join(tmpdir, f"{len(out['workloads'])}.txt")
        p = subprocess.Popen(["py-spy", "record", "--format", "raw", "--rate", str(rate),
                              "--pid", str(ctx.pid), "-o", raw], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        c0, t0 = ctx.cpu_s(), time.monotonic()
        try:
            yield
        finally:
            wall = time.monotonic() - t0
            c1 = ctx.cpu_s()
            p.send_signal(signal.SIGINT)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.path.exists(raw):
            n, selfc, totalc = _parse_collapsed(raw)
            if n:
                out["workloads"][name] = {
                    "samples": n, "wall_s": wall,
                    "busy_share": min(1.0, n / (rate * (wall + 0.5))),
                    "broker_cpu_share": ((c1 - c0) / wall) if c0 is not None and c1 is not None else None,
                    "self": [(k, v / n) for k, v in selfc.most_common(10)],
                    "total": [(k, v / n) for k, v in totalc.most_common(10)],
                }

    try:
        _, t = ck_produce(ctx, 1024, "1", 1, "none", 20_000)  # warm-up as in the measured runs
        ck_consume(ctx, t, 1, 20_000, 1024)
        topics = [new_topic(ctx, "prof-ck", 1) for _ in range(3)]
        with spy("produce, confluent-kafka 1KiB acks=1 1p (3 runs)"):
            for t in topics:
                bb.produce_throughput(ctx.bootstrap, t, sizes.ck_records_1k, 1024, "1")
        with spy("consume, confluent-kafka 1KiB 1p (3 runs)"):
            for t in topics:
                ck_consume(ctx, t, 1, sizes.ck_records_1k, 1024)
        with spy("consume, raw Fetch requests 1KiB 1p (5 passes)"):
            raw_fetch(ctx, topics[0], sizes.ck_records_1k, 1024, min_seconds=60, max_passes=5)
        topic_pp = new_topic(ctx, "prof-pp", 8)
        with spy("produce, ProducerPerformance 1KiB acks=1 8p zstd"):
            kr.producer_perf(ctx.bootstrap, topic_pp, sizes.pp_records_1k, 1024, "1",
                             {"compression.type": "zstd"}, timeout=600)
        with spy("produce latency @ fixed rate (ProducerPerformance)"):
            pp_latency(ctx, sizes)
        rtopic = new_topic(ctx, "prof-rebalance", sizes.rebalance_partitions)
        with spy("rebalance, 10 members"):
            rebalance(ctx, sizes.rebalance_members, sizes.rebalance_partitions, topic=rtopic)
    except Exception as exc:
        log(f"profile pass stopped early: {exc}")
    finally:
        ctx.stop()
    # metadata at scale, in memory mode (disk mode may run out of file descriptors)
    ctx = OdradekSide(memory=True).start()
    try:
        per_topic = sizes.scale_partitions // sizes.scale_topics
        for k in range(sizes.scale_topics):
            kr.create_topic(ctx.bootstrap, f"scale{k}", partitions=per_topic, timeout=300)
        probe = MetadataProbe(ctx.bootstrap)
        probe.timed()
        with spy(f"Metadata for {sizes.scale_partitions:,} partitions (20 requests, --memory)"):
            for _ in range(20):
                probe.timed()
        probe.close()
    except Exception as exc:
        log(f"profile pass (metadata) failed: {exc}")
    finally:
        ctx.stop()
    shutil.rmtree(tmpdir, ignore_errors=True)
    return out


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 repetitions with small counts")
    ap.add_argument("--repetitions", type=int, help="override the number of repetitions")
    ap.add_argument("--json", default=str(BENCH / "results" / "compare-latest.json"),
                    help="where to write the raw results")
    ap.add_argument("--report", default=str(ROOT / "docs" / "performance.md"))
    ap.add_argument("--chart", default=str(ROOT / "docs" / "perf" / "compare.png"))
    ap.add_argument("--no-report", action="store_true", help="write neither report nor chart")
    ap.add_argument("--profile", action="store_true",
                    help="after measuring, profile odradek with py-spy and add it to the report")
    ap.add_argument("--from-json", help="only render report and chart from an earlier JSON result")
    args = ap.parse_args(argv)

    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        return write_outputs(result, args)

    sizes = QUICK if args.quick else FULL
    if args.repetitions:
        sizes = Sizes(**{**sizes.__dict__, "repetitions": args.repetitions})
    started = _dt.datetime.now().astimezone()
    t_start = time.monotonic()
    log("fetching Kafka jars (cached after the first run)")
    kr.fetch()
    env = environment()
    global ODRADEK_CWD
    ODRADEK_CWD = snapshot_odradek()
    log(f"odradek {env['git_commit']}{' + local changes' if env['git_dirty'] else ''} "
        f"copied to {ODRADEK_CWD} for this run")
    log(f"machine: {env['nproc']} cores, {env['cpu_model']}, {env['memory_gib']} GiB; "
        f"Kafka {env['kafka_version']}, confluent-kafka {env['confluent_kafka']}")
    cmd = "python bench/compare.py" + (" --quick" if args.quick else "") + \
          (f" --repetitions {args.repetitions}" if args.repetitions else "") + \
          (" --profile" if args.profile else "")
    result = {"command": cmd, "started": started.strftime("%Y-%m-%d %H:%M %Z"),
              "environment": env, "sizes": sizes.__dict__, "args": vars(args),
              "json_path": os.path.relpath(args.json, ROOT), "repetitions": []}
    for rep in range(sizes.repetitions):
        entry: dict = {}
        log(f"rep {rep + 1}/{sizes.repetitions}: physical limits")
        try:
            entry["limits"] = physical_limits(sizes)
            log("  " + ", ".join(f"{k.split('.')[1]} {v:,.0f} MB/s" for k, v in entry["limits"].items()))
        except Exception as exc:
            entry["limits_error"] = str(exc)
            log(f"  limits failed: {exc}")
        order = SIDES if rep % 2 == 0 else SIDES[::-1]
        entry["order"] = list(order)
        for side in order:
            try:
                entry[side] = run_side(side, rep, sizes)
            except Exception as exc:
                log(f"rep {rep + 1}: {side} failed: {exc}")
                entry[side] = {"metrics": {}, "errors": {"broker": f"{type(exc).__name__}: {exc}"[:300]}}
        result["repetitions"].append(entry)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        result["wall_seconds"] = time.monotonic() - t_start
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    if args.profile:
        log("profile pass (odradek only, py-spy)")
        result["profile"] = profile_pass(sizes)
    result["wall_seconds"] = time.monotonic() - t_start
    result["environment"]["git_commit_at_end"] = run_text(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    shutil.rmtree(ODRADEK_CWD, ignore_errors=True)
    Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    log(f"done in {result['wall_seconds'] / 60:.1f} min; raw results in {args.json}")
    return write_outputs(result, args)


def write_outputs(result: dict, args) -> int:
    values = collect(result["repetitions"])
    rows = summary_rows(values)
    print_summary(rows, values)
    print()
    for t in targets(rows, values, result["sizes"]["scale_partitions"]):
        print(f"{'MET   ' if t['met'] else 'MISSED'}{'' if t.get('settled', True) else ' (unsettled)'} "
              f"{t['target']}: {t['detail']}")
    if args.no_report:
        return 0
    chart = Path(args.chart)
    note = draw_chart(values, chart)
    report = Path(args.report)
    rel = os.path.relpath(chart, report.parent)
    report.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(result, rows, values, note, rel)
    if report.exists() and KEPT_MARK in report.read_text():
        # Sections measured by other scripts (say, bench/fetch_sessions.py) stay.
        text = text.rstrip("\n") + "\n\n" + KEPT_MARK + report.read_text().split(KEPT_MARK, 1)[1]
    report.write_text(text)
    log(f"wrote {report}" + (f" and {chart}" if not note else f" ({note})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
