"""Does a consumer reading from a cold page cache stall the broker's event loop?

    python bench/cold_read.py [--mb 1500] [--partitions 8] [--rounds 2] [--baseline DIR]

Writes ``--mb`` MB of 1 KiB records to one topic (round-robin over the
partitions) under ``--data-dir`` (default: a temporary directory in /tmp; put
it on a real block device), then, in each round, for each broker tree (this
one, and ``--baseline``, another odradek source tree such as a ``git archive``
of an older commit; their order alternates between rounds), starts
``odradek serve`` on that data and has a confluent-kafka consumer read the
whole topic from offset 0 twice: first *cold* (every file of the data
directory fsynced and dropped from the page cache with
``posix_fadvise(DONTNEED)``, checked with ``fincore``), then *warm* (the pages
the first read brought in). Meanwhile another process sends an ApiVersions
request every 5 ms on its own connection and times each round trip: the
event loop's stalls show as its p99 and max (on a shared machine, with every
other process's CPU use); and, where ``perf`` is installed, ``perf trace``
times every file read of the broker's main thread (the event loop): how long
the loop spent in reads, their p99 and max. Last, a raw Fetch v4 loop reads
partition 0 from the warm cache (10 MiB per request, as ``compare.py``) for
the fetch ceiling. Nothing is asserted; figures go to stdout (and ``--json``).
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import broker_bench as bb  # noqa: E402
from compare import RawFetcher  # noqa: E402


def start_broker(tree: str, data_dir: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=tree)
    proc = subprocess.Popen([sys.executable, "-m", "odradek", "serve", "--port", str(port),
                             "--data-dir", data_dir, "--log-level", "WARNING"], cwd=tree, env=env)
    bb.wait_accepting(port, time.perf_counter(), proc, timeout=120)
    return proc


def stop_broker(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def data_files(data_dir: str) -> list[str]:
    return [p for p in glob.glob(os.path.join(data_dir, "**", "*"), recursive=True) if os.path.isfile(p)]


def resident_bytes(paths: list[str]) -> int:
    out = subprocess.run(["fincore", "-b", "-n", "-r", "-o", "RES", *paths], capture_output=True, text=True)
    return sum(int(x) for x in out.stdout.split() if x.isdigit())


def evict(paths: list[str]) -> None:
    """Write back and drop from the page cache (clean pages only go: fsync first)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def pinger(port: int, go, stop, out, interval: float = 0.005) -> None:
    """ApiVersions v0 round trips every ``interval`` s while ``go`` is set and
    until ``stop``: their durations, in ms, put on ``out``."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = b"coldread-ping"
    rtts = []
    corr = 0
    go.wait()
    while not stop.is_set():
        corr += 1
        req = struct.pack(">hhih", 18, 0, corr, len(client)) + client
        t0 = time.perf_counter()
        s.sendall(struct.pack(">i", len(req)) + req)
        head = b""
        while len(head) < 4:
            head += s.recv(4 - len(head))
        n = struct.unpack(">i", head)[0]
        got = 0
        while got < n:
            got += len(s.recv(n - got))
        rtts.append((time.perf_counter() - t0) * 1e3)
        time.sleep(interval)
    s.close()
    out.put(rtts)


def consume_all(bootstrap: str, topic: str, partitions: int, records: int) -> float:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"coldread-{uuid.uuid4()}",
                  "enable.auto.commit": False, "fetch.max.bytes": 52_428_800,
                  "max.partition.fetch.bytes": 1_048_576, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + 600
    while n < records and time.perf_counter() < deadline:
        n += sum(1 for m in c.consume(10000, 0.5) if m.error() is None)
    dt = time.perf_counter() - t0
    c.close()
    if n < records:
        raise RuntimeError(f"consumed {n} of {records}")
    return n * 1024 / dt / 1e6


def trace_reads(pid: int, path: str):
    """``perf trace`` of the file reads (pread64, preadv2) of the broker's
    main thread, the one running its event loop (None without perf)."""
    if shutil.which("perf") is None:
        return None
    proc = subprocess.Popen(["perf", "trace", "-t", str(pid), "-e", "pread64,preadv2", "-o", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    return proc


def traced_reads(proc, path: str) -> dict:
    """Time the event loop spent in file reads: total, p99, max, and how many over 1 ms."""
    if proc is None:
        return {}
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    durations = []
    slow: dict = {}  # (call, outcome) -> [count, ms] of the reads over 1 ms
    with open(path) as f:
        for line in f:
            m = re.search(r"\(\s*([\d.]+) ms\): (pread64|preadv2)\(.*= (\S+)", line)
            if m:
                d = float(m.group(1))
                durations.append(d)
                if d > 1:
                    key = f"{m.group(2)} {'EAGAIN' if m.group(3) == '-1' else 'read'}"
                    c = slow.setdefault(key, [0, 0.0])
                    c[0] += 1
                    c[1] = round(c[1] + d, 1)
    os.remove(path)
    durations.sort()
    if not durations:
        return {"loop_reads": 0}
    return {"loop_reads": len(durations), "loop_read_total_ms": round(sum(durations), 1),
            "loop_read_p99_ms": round(durations[min(len(durations) - 1, int(0.99 * len(durations)))], 2),
            "loop_read_max_ms": round(durations[-1], 2),
            "loop_reads_over_1ms": sum(1 for d in durations if d > 1), "slow_reads": slow}


def measured_consume(port: int, pid: int, topic: str, partitions: int, records: int) -> dict:
    trace_path = tempfile.mktemp(prefix="coldread-trace-")
    tracer = trace_reads(pid, trace_path)
    ctx = mp.get_context("fork")
    go, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=pinger, args=(port, go, stop, out))
    proc.start()
    time.sleep(0.2)
    go.set()
    try:
        mbps = consume_all(f"127.0.0.1:{port}", topic, partitions, records)
    finally:
        stop.set()
        rtts = out.get(timeout=30)
        proc.join(10)
    reads = traced_reads(tracer, trace_path)
    rtts.sort()
    q = lambda f: rtts[min(len(rtts) - 1, int(f * len(rtts)))]  # noqa: E731
    return {"consume_mb_s": round(mbps, 1), "pings": len(rtts), "ping_p50_ms": round(q(0.5), 2),
            "ping_p99_ms": round(q(0.99), 2), "ping_max_ms": round(rtts[-1], 2),
            "pings_over_5ms": sum(1 for r in rtts if r > 5), **reads}


def raw_warm(port: int, topic: str, per_partition: int, passes: int = 3) -> float:
    f = RawFetcher(f"127.0.0.1:{port}", topic)
    try:
        total = 0
        t0 = time.perf_counter()
        for _ in range(passes):
            off = 0
            while off < per_partition:
                n, off = f.fetch(off)
                total += n
        dt = time.perf_counter() - t0
    finally:
        f.close()
    return total * 1024 / dt / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=1500)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--raw-rounds", type=int, default=0,
                    help="then this many more rounds of the warm raw Fetch loop alone")
    ap.add_argument("--baseline", help="another odradek source tree to run alternately")
    ap.add_argument("--data-dir", help="where the topic is written (default: a new dir in /tmp)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    trees = [("this", ROOT)] + ([("baseline", os.path.abspath(args.baseline))] if args.baseline else [])
    work = args.data_dir or tempfile.mkdtemp(prefix="odradek-coldread-", dir="/tmp")
    data = os.path.join(work, "data")
    parts = args.partitions
    per_partition = args.mb * 1_000_000 // 1024 // parts
    records = per_partition * parts
    topic = "coldread"
    print(f"load before: {os.getloadavg()}", flush=True)
    port = bb.free_port()
    proc = start_broker(ROOT, data, port)
    try:
        bb.create_topic(f"127.0.0.1:{port}", topic, parts)
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "acks": "1", "linger.ms": 5,
                      "batch.size": 1_000_000, "queue.buffering.max.kbytes": 1_048_576})
        payload = os.urandom(512).hex().encode()
        t0 = time.perf_counter()
        for i in range(records):
            bb.produce_waiting(p, topic, payload, partition=i % parts)
        p.flush(300)
        del p  # its connection goes now, before the broker stops
        print(f"wrote {records} records ({records * 1024 / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s",
              flush=True)
    finally:
        stop_broker(proc)
    files = data_files(data)
    rows = []
    for r in range(args.rounds):
        order = trees if r % 2 == 0 else trees[::-1]
        for name, tree in order:
            port = bb.free_port()
            proc = start_broker(tree, data, port)
            try:
                for state in ("cold", "warm"):
                    if state == "cold":
                        evict(files)
                    res = resident_bytes(files)
                    row = {"round": r + 1, "tree": name, "cache": state,
                           "resident_mb_before": round(res / 1e6), "load1": round(os.getloadavg()[0], 2)}
                    row.update(measured_consume(port, proc.pid, topic, parts, records))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                mb = raw_warm(port, topic, per_partition)
                row = {"round": r + 1, "tree": name, "cache": "warm", "raw_fetch_mb_s": round(mb),
                       "load1": round(os.getloadavg()[0], 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
            finally:
                stop_broker(proc)
    for r in range(args.raw_rounds):
        for name, tree in (trees if r % 2 == 0 else trees[::-1]):
            port = bb.free_port()
            proc = start_broker(tree, data, port)
            try:
                raw_warm(port, topic, per_partition, passes=1)  # the page cache, the broker's first reads
                mb = raw_warm(port, topic, per_partition)
            finally:
                stop_broker(proc)
            row = {"round": f"raw {r + 1}", "tree": name, "cache": "warm", "raw_fetch_mb_s": round(mb),
                   "load1": round(os.getloadavg()[0], 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"load after: {os.getloadavg()}")
    summary = {}
    for row in rows:
        for k in ("loop_read_total_ms", "loop_read_p99_ms", "loop_read_max_ms", "ping_p99_ms", "ping_max_ms", "consume_mb_s",
                  "raw_fetch_mb_s"):
            if k in row:
                summary.setdefault(f"{row['tree']} {row['cache']} {k}", []).append(row[k])
    for k, v in summary.items():
        print(f"{k}: median {statistics.median(v)}  all {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=1)
    if not args.data_dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
