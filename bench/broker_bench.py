"""odradek's own figures with confluent-kafka: produce and consume throughput,
produce-to-consume latency, and start-up time.

    python bench/broker_bench.py [--bootstrap HOST:PORT] [--repeat 5] [--records 100000]

Without --bootstrap it starts `odradek serve` on a free port and a temporary
data dir for each repetition. Prints medians (and min/max) over the
repetitions; nothing here is asserted, it only measures.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OdradekProcess:
    """`odradek serve` on a free port and a temporary data dir."""

    def __init__(self, memory: bool = False, props: dict | None = None):
        self.port = free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="odradek-bench-")
        self.memory = memory
        self.props = props or {}
        self.proc = None
        self.startup_seconds = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        args = [sys.executable, "-m", "odradek", "serve", "--port", str(self.port),
                "--data-dir", os.path.join(self.dir.name, "data"), "--log-level", "WARNING"]
        if self.memory:
            args.append("--memory")
        for k, v in self.props.items():
            args += ["-o", f"{k}={v}"]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(args, cwd=ROOT)
        self.startup_seconds = wait_accepting(self.port, t0, self.proc)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()


def wait_accepting(port: int, t0: float, proc=None, timeout: float = 30) -> float:
    """Seconds from ``t0`` until ``port`` accepts a TCP connection."""
    while time.perf_counter() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("broker exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return time.perf_counter() - t0
        except OSError:
            time.sleep(0.002)
    raise TimeoutError(port)


def create_topic(bootstrap: str, topic: str, partitions: int, client: dict | None = None) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, **(client or {})})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)


def produce_waiting(p, topic: str, value: bytes, wait: float = 0.001, **kw) -> None:
    """``p.produce(topic, value, **kw)``, polling ``wait`` seconds at a time
    while the producer's local queue is full (BufferError) until it is taken."""
    while True:
        try:
            p.produce(topic, value, **kw)
            return
        except BufferError:
            p.poll(wait)


def produce_throughput(bootstrap: str, topic: str, records: int, size: int, acks: str,
                       compression: str = "none", client: dict | None = None) -> dict:
    """``client``: more client properties (a TLS login, for instance)."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
                  "batch.size": 1_000_000, "compression.type": compression,
                  "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 1_048_576,
                  **(client or {})})
    payload = os.urandom(size // 2).hex().encode()[:size]
    failed = []

    def cb(err, msg):
        if err is not None:
            failed.append(err)

    t0 = time.perf_counter()
    for _ in range(records):
        produce_waiting(p, topic, payload, on_delivery=cb)
    p.flush(120)
    dt = time.perf_counter() - t0
    if failed:
        raise RuntimeError(f"{len(failed)} deliveries failed: {failed[0]}")
    return {"records_per_sec": records / dt, "mb_per_sec": records * size / dt / 1e6, "seconds": dt}


def consume_throughput(bootstrap: str, topic: str, partitions: int, records: int, size: int,
                       client: dict | None = None) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    # librdkafka stops fetching a partition for fetch.queue.backoff.ms (1 s at
    # its default) once its local queue holds queued.max.messages.kbytes (64 MiB
    # at its default): a few 10 MB responses overfill that, and a consumer of
    # 200 MB then sat idle for a second in some runs and not others. The queue
    # is made large and the backoff short, alike for every broker measured.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                  "enable.auto.commit": False, "fetch.max.bytes": 52_428_800,
                  "max.partition.fetch.bytes": 10_485_760, "fetch.wait.max.ms": 100,
                  "queued.max.messages.kbytes": 1 << 20, "fetch.queue.backoff.ms": 10, **(client or {})})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + 120
    while n < records and time.perf_counter() < deadline:
        msgs = c.consume(10000, 0.5)
        n += sum(1 for m in msgs if m.error() is None)
    dt = time.perf_counter() - t0
    c.close()
    return {"records_per_sec": n / dt, "mb_per_sec": n * size / dt / 1e6, "seconds": dt, "records": n}


def end_to_end_latency(bootstrap: str, topic: str, samples: int = 300) -> dict:
    """A consumer waits in a long poll; one message at a time is produced and
    timed until the consumer has it."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 0})
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lat-{uuid.uuid4()}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 500, "fetch.min.bytes": 1,
                  "fetch.error.backoff.ms": 0})
    c.assign([TopicPartition(topic, 0, 0)])  # a fresh topic: offset 0 is the first message
    # Warm up: connections open and the consumer waiting at the end of the partition.
    p.produce(topic, b"warmup", partition=0)
    p.flush(10)
    deadline = time.perf_counter() + 30
    while c.poll(1.0) is None:
        if time.perf_counter() > deadline:
            raise TimeoutError("the consumer never saw the warm-up message")
    latencies = []
    for i in range(samples):
        t0 = time.perf_counter()
        p.produce(topic, b"%d" % i, partition=0)
        p.poll(0)
        deadline = t0 + 10
        while True:
            m = c.poll(2.0)
            if m is not None and m.error() is None:
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"message {i} not consumed within 10 s")
        latencies.append((time.perf_counter() - t0) * 1000)
        p.poll(0)
    c.close()
    latencies.sort()
    return {"p50_ms": statistics.median(latencies),
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
            "max_ms": latencies[-1]}


def summarize(runs: list[dict], key: str) -> dict:
    values = [r[key] for r in runs]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def one_repetition(args, bootstrap: str | None) -> dict:
    out = {}
    ctx = OdradekProcess() if bootstrap is None else None
    if ctx is not None:
        ctx.__enter__()
        bootstrap = ctx.bootstrap
        out["startup_seconds"] = ctx.startup_seconds
    try:
        for acks in ("1", "all"):
            for partitions in (1, 8):
                topic = f"bench-{acks}-{partitions}-{uuid.uuid4().hex[:6]}"
                create_topic(bootstrap, topic, partitions)
                r = produce_throughput(bootstrap, topic, args.records, args.size, acks)
                out[f"produce_acks{acks}_p{partitions}_mb_s"] = r["mb_per_sec"]
                if acks == "1" and partitions == 1:
                    c = consume_throughput(bootstrap, topic, partitions, args.records, args.size)
                    out["consume_p1_mb_s"] = c["mb_per_sec"]
        topic = f"lat-{uuid.uuid4().hex[:6]}"
        create_topic(bootstrap, topic, 1)
        lat = end_to_end_latency(bootstrap, topic, args.latency_samples)
        out["e2e_p50_ms"] = lat["p50_ms"]
        out["e2e_p99_ms"] = lat["p99_ms"]
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="measure a running broker instead of starting odradek")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--latency-samples", type=int, default=300)
    ap.add_argument("--json", action="store_true", help="print the raw runs as JSON")
    args = ap.parse_args()
    runs = []
    for i in range(args.repeat):
        runs.append(one_repetition(args, args.bootstrap))
        print(f"run {i + 1}/{args.repeat}: " + ", ".join(f"{k}={v:.4g}" for k, v in runs[-1].items()),
              file=sys.stderr)
    if args.json:
        print(json.dumps(runs, indent=1))
    print(f"{'metric':34} {'median':>10} {'min':>10} {'max':>10}")
    for key in runs[0]:
        s = summarize(runs, key)
        print(f"{key:34} {s['median']:10.4g} {s['min']:10.4g} {s['max']:10.4g}")


if __name__ == "__main__":
    main()
