#!/usr/bin/env python3
"""Clusters of odradek next to clusters of Apache Kafka, on this machine.

    python bench/cluster_bench.py            # full run (about 15 min on 2 cores; --scaling adds 7)
    python bench/cluster_bench.py --quick    # smoke run: small counts, 1 repetition
    python bench/cluster_bench.py --only scaling   # odradek 1 broker against 2 (about 7 min)

Two measurements, odradek and Kafka in the same invocation, and one of
odradek alone:

**Produce throughput, 1 broker against 2.** Each repetition starts, for each
system, a 1-broker and a 2-broker cluster (odradek: ``odradek.Cluster`` on
etcd; Kafka: ``kafka_runtime.KafkaCluster``, combined broker+controller
nodes), one after the other, a fresh cluster per repetition, the system that
goes first alternating between repetitions. On each: a warm-up, then, each
on a new 8-partition topic of 1 KiB records, confluent-kafka's produce loop
of ``bench/broker_bench.py`` (``produce_throughput``) with replication factor
1 (acks=1 and acks=all) and, on 2 brokers, replication factor 2 (acks=all
and acks=1).

**Failover time.** A 3-broker cluster of each system at its defaults
(odradek: ``broker.session.timeout.ms`` 9000; Kafka 4.x KRaft: the same key,
9000), plus odradek with ``broker.session.timeout.ms=3000`` (not the
default). One topic, one partition, replication factor 3,
``min.insync.replicas=2``; an idempotent acks=all confluent-kafka producer
sends a record every 5 ms throughout. Each repetition kill -9s the
partition's leader and measures, from the kill, the time to the first
acknowledgement of a record produced after the kill and to the first
acknowledgement of any record; then it restarts the killed broker and waits
until the ISR is full again.

**Every core** (``--only scaling``, or ``--scaling`` with the rest; a
run without it keeps the earlier result of this part). odradek
alone: a 1-broker and a 2-broker cluster, 8 partitions, replication factor
1, under loads that one Python client does not bound: Produce and Fetch
requests written by hand (the client's work per byte is a send or a
receive), and 1 or 2 confluent-kafka producer and consumer processes, each on
its own partitions, together too. With every load, the CPU of each broker,
of the clients and of the rest of the machine (from /proc), and, in one more
repetition under ``py-spy record --nonblocking``, each broker's event-loop
busy share. ``--worker SPEC`` runs one client process of these loads.

Raw results go to ``bench/results/cluster-latest.json``; the report to
``docs/performance-cluster.md`` (``--no-report`` leaves it alone).
``--from-json`` renders the report from an earlier result.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as _dt
import json
import os
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import broker_bench as bb  # noqa: E402
import kafka_runtime as kr  # noqa: E402

SIDES = ("odradek", "kafka")
RECORD_SIZE = 1024
PARTITIONS = 8
#: (brokers, replication factor, acks) of the throughput matrix.
THROUGHPUT_CASES = [(1, 1, "1"), (1, 1, "all"), (2, 1, "1"), (2, 1, "all"), (2, 2, "all"), (2, 2, "1")]
#: The failover rows: (row key, system, broker config, label).
FAILOVER_ROWS = [
    ("odradek", "odradek", {}, "odradek, defaults (broker.session.timeout.ms=9000)"),
    ("kafka", "kafka", {}, "Apache Kafka, defaults (broker.session.timeout.ms=9000)"),
    ("odradek_3s", "odradek", {"broker.session.timeout.ms": 3000},
     "odradek, broker.session.timeout.ms=3000 (not the default)"),
]
SEND_INTERVAL = 0.005


@dataclass(frozen=True)
class Sizes:
    throughput_repetitions: int
    records: int
    warmup_records: int
    failover_repetitions: int
    scaling_repetitions: int = 3
    scaling_records: int = 600_000


FULL = Sizes(throughput_repetitions=5, records=500_000, warmup_records=100_000, failover_repetitions=7)
QUICK = Sizes(throughput_repetitions=1, records=20_000, warmup_records=2_000, failover_repetitions=1,
              scaling_repetitions=1, scaling_records=20_000)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def case_key(brokers: int, rf: int, acks: str) -> str:
    return f"produce.b{brokers}.rf{rf}.acks{acks}"


def case_label(brokers: int, rf: int, acks: str) -> str:
    return f"{brokers} broker{'s' if brokers > 1 else ''}, RF {rf}, acks={acks}"


# --------------------------------------------------------------------------
# The two systems behind one face
# --------------------------------------------------------------------------

class OdradekCluster:
    """``odradek.Cluster`` (etcd plus n broker processes)."""

    system = "odradek"

    def __init__(self, n: int, config: dict | None = None, etcd=None):
        self.n, self.config, self.etcd = n, dict(config or {}), etcd
        self.c = None

    def start(self) -> "OdradekCluster":
        import odradek

        t0 = time.monotonic()
        self.c = odradek.Cluster(self.n, config=self.config, etcd=self.etcd, log_level="WARNING")
        self.startup_seconds = time.monotonic() - t0
        return self

    @property
    def bootstrap(self) -> str:
        return self.c.bootstrap

    def kill(self, node_id: int) -> None:
        self.c.broker(node_id).kill()

    def restart(self, node_id: int) -> None:
        self.c.broker(node_id).start()  # waits for the old lease to lapse, then until it serves

    def controller(self, admin) -> int | None:
        """The elected controller, as Metadata names it on every broker."""
        try:
            return admin.describe_cluster(request_timeout=5).result(6).controller.id
        except Exception:
            return None

    def close(self) -> None:
        if self.c is not None:
            self.c.close()


class KafkaClusterSide:
    """``kafka_runtime.KafkaCluster`` (n combined broker+controller nodes)."""

    system = "kafka"

    def __init__(self, n: int, config: dict | None = None):
        self.kc = kr.KafkaCluster(n, config=config)

    def start(self) -> "KafkaClusterSide":
        self.kc.start()
        self.startup_seconds = self.kc.startup_seconds
        return self

    @property
    def bootstrap(self) -> str:
        return self.kc.bootstrap

    def kill(self, node_id: int) -> None:
        self.kc.node(node_id).kill()

    def restart(self, node_id: int) -> None:
        self.kc.node(node_id).start()

    def controller(self, admin) -> int | None:
        """The active KRaft controller (Kafka's Metadata names a random broker
        as the controller to clients, so the quorum is asked)."""
        return self.kc.active_controller()

    def close(self) -> None:
        self.kc.stop()


def make_cluster(system: str, n: int, config: dict | None = None, etcd=None):
    if system == "odradek":
        return OdradekCluster(n, config, etcd).start()
    return KafkaClusterSide(n, config).start()


# --------------------------------------------------------------------------
# Topics and partition state, asked the same way of both
# --------------------------------------------------------------------------

def admin_for(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})


def partition_states(admin, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """partition -> (leader, replicas, isr) from a fresh Metadata request."""
    md = admin.list_topics(topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return {}
    return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in t.partitions.values()
            if p.error is None}


def wait_full_isr(admin, topic: str, partitions: int, rf: int, timeout: float = 120.0) -> None:
    """Until every partition has a leader and an ISR of all ``rf`` replicas."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = partition_states(admin, topic)
            if len(last) == partitions and all(ld >= 0 and len(isr) == rf for ld, _, isr in last.values()):
                return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{topic}: no full ISR within {timeout:.0f} s (last: {last})")


def new_topic(bootstrap: str, admin, name: str, partitions: int, rf: int, config: dict | None = None) -> str:
    topic = f"{name}-{uuid.uuid4().hex[:8]}"
    kr.create_topic(bootstrap, topic, partitions=partitions, replication=rf, config=config, timeout=60)
    wait_full_isr(admin, topic, partitions, rf)
    return topic


# --------------------------------------------------------------------------
# Produce throughput
# --------------------------------------------------------------------------

def throughput(system: str, brokers: int, sizes: Sizes, etcd=None) -> dict:
    """One fresh ``brokers``-broker cluster of ``system``: every case of the
    matrix for that many brokers, MB/s by case key (errors by case key too)."""
    out: dict = {"metrics": {}, "errors": {}}
    cl = make_cluster(system, brokers, etcd=etcd)
    try:
        out["startup_s"] = cl.startup_seconds
        admin = admin_for(cl.bootstrap)
        warm = new_topic(cl.bootstrap, admin, "warmup", PARTITIONS, 1)
        bb.produce_throughput(cl.bootstrap, warm, sizes.warmup_records, RECORD_SIZE, "1")
        for b, rf, acks in THROUGHPUT_CASES:
            if b != brokers:
                continue
            key = case_key(b, rf, acks)
            try:
                topic = new_topic(cl.bootstrap, admin, f"tput-rf{rf}", PARTITIONS, rf)
                r = bb.produce_throughput(cl.bootstrap, topic, sizes.records, RECORD_SIZE, acks)
                out["metrics"][key] = r["mb_per_sec"]
                log(f"  {system} {case_label(b, rf, acks)}: {r['mb_per_sec']:.1f} MB/s")
            except Exception as exc:
                out["errors"][key] = f"{type(exc).__name__}: {exc}"[:300]
                log(f"  {system} {case_label(b, rf, acks)} failed: {exc}")
    finally:
        cl.close()
    return out


# --------------------------------------------------------------------------
# Failover
# --------------------------------------------------------------------------

class SteadyProducer(threading.Thread):
    """An idempotent acks=all producer sending one record every ``interval``
    seconds to partition 0, noting when each was sent and acknowledged
    (time.monotonic; the delivery callbacks run inside this thread's polls,
    which wait at most until the next send)."""

    def __init__(self, bootstrap: str, topic: str, interval: float = SEND_INTERVAL):
        super().__init__(daemon=True)
        from confluent_kafka import Producer

        self.topic, self.interval = topic, interval
        self.p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                           "log_level": 2})
        self.lock = threading.Lock()
        self.sent: list[float] = []            # by sequence number
        self.acked: list[tuple[float, int]] = []  # (ack time, seq), in callback order
        self.failed: list[str] = []
        self.stopping = threading.Event()

    def _cb(self, seq: int):
        def cb(err, msg):
            now = time.monotonic()
            with self.lock:
                if err is None:
                    self.acked.append((now, seq))
                else:
                    self.failed.append(str(err))
        return cb

    def run(self) -> None:
        nxt = time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= nxt:
                seq = len(self.sent)
                with self.lock:
                    self.sent.append(now)
                try:
                    self.p.produce(self.topic, str(seq).encode(), partition=0, on_delivery=self._cb(seq))
                except BufferError:
                    pass
                nxt += self.interval
                if nxt < now:
                    nxt = now + self.interval
            self.p.poll(max(0.0, nxt - time.monotonic()))
        self.p.flush(60)

    def acks_since(self, t: float) -> list[tuple[float, int]]:
        with self.lock:
            return [a for a in self.acked if a[0] > t]

    def first_sent_after(self, t: float) -> int | None:
        """Sequence number of the first record sent after ``t`` (None: none yet)."""
        with self.lock:
            i = bisect.bisect_right(self.sent, t)
            return i if i < len(self.sent) else None

    def stop(self) -> None:
        self.stopping.set()
        self.join(90)


def wait_until(cond, timeout: float, what: str, step: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def failover(system: str, repetitions: int, config: dict | None = None, etcd=None,
             steady_seconds: float = 2.0) -> dict:
    """A fresh 3-broker cluster of ``system``; ``repetitions`` kills of the
    partition's leader. Per repetition: seconds from the kill to the first
    acknowledgement of a record produced after the kill (``after_s``) and of
    any record (``any_s``), which broker was killed and whether it was the
    controller."""
    out: dict = {"config": dict(config or {}), "repetitions": [], "errors": []}
    cl = make_cluster(system, 3, config, etcd=etcd)
    prod = None
    try:
        out["startup_s"] = cl.startup_seconds
        admin = admin_for(cl.bootstrap)
        topic = new_topic(cl.bootstrap, admin, "failover", 1, 3, {"min.insync.replicas": "2"})
        prod = SteadyProducer(cl.bootstrap, topic)
        prod.start()
        for rep in range(repetitions):
            try:
                ctl = cl.controller(admin)
                # steady state: acknowledgements flowing for a while
                t_ready = time.monotonic()
                wait_until(lambda: (prod.acks_since(t_ready + steady_seconds)), 60, "acknowledgements")
                leader, _, isr = partition_states(admin, topic)[0]
                t_kill = time.monotonic()
                cl.kill(leader)
                killed_at = time.monotonic()

                def after_kill():
                    first = prod.first_sent_after(t_kill)
                    if first is None:
                        return None
                    return next((a for a in prod.acks_since(t_kill) if a[1] >= first), None)

                a_after = wait_until(after_kill, 120, "an acknowledgement after the kill")
                any_ack = prod.acks_since(t_kill)[0]
                new_leader = partition_states(admin, topic).get(0, (None,))[0]
                r = {"after_s": a_after[0] - t_kill, "any_s": any_ack[0] - t_kill,
                     "kill_call_s": killed_at - t_kill, "killed": leader,
                     "killed_was_controller": ctl == leader if ctl is not None else None,
                     "isr_before": isr, "new_leader": new_leader}
                log(f"  {system}{' ' + str(config) if config else ''} rep {rep + 1}: killed {leader}"
                    f"{' (controller)' if r['killed_was_controller'] else ''}; first ack of a record sent "
                    f"after the kill {r['after_s']:.2f} s, of any record {r['any_s']:.2f} s")
                t0 = time.monotonic()
                cl.restart(leader)
                wait_full_isr(admin, topic, 1, 3, timeout=180)
                r["rejoin_s"] = time.monotonic() - t0
                out["repetitions"].append(r)
            except Exception as exc:
                out["errors"].append(f"rep {rep + 1}: {type(exc).__name__}: {exc}"[:500])
                log(f"  {system} rep {rep + 1} failed: {exc}")
                break
    finally:
        if prod is not None:
            prod.stop()
            out["records_sent"] = len(prod.sent)
            out["records_acked"] = len(prod.acked)
            out["delivery_failures"] = len(prod.failed)
            out["delivery_failure_examples"] = sorted(set(prod.failed))[:5]
        cl.close()
    return out


# --------------------------------------------------------------------------
# Scaling: 1 broker against 2 under loads that are not one client's bound
# --------------------------------------------------------------------------

#: (kind, client processes) of the scaling matrix, in the order they run.
SCALING_LOADS = [("raw", 1), ("raw", 2), ("produce", 1), ("produce", 2), ("rawfetch", 1), ("consume", 1),
                 ("consume", 2), ("both", 2)]
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: seconds from spawning a load's client processes to their common start
#: (Python, confluent_kafka's import and the connections, on a loaded machine)
START_DELAY = 4.0


def scaling_key(kind: str, procs: int) -> str:
    return f"{kind}.x{procs}"


def scaling_label(kind: str, procs: int) -> str:
    if kind == "both":
        return f"produce + consume together, {procs} + {procs} confluent-kafka processes"
    if kind == "raw":
        return f"produce, hand-written Produce requests, {procs} process{'es' if procs > 1 else ''}"
    if kind == "rawfetch":
        return f"consume, hand-written Fetch requests, {procs} process{'es' if procs > 1 else ''}"
    return f"{kind}, confluent-kafka, {procs} process{'es' if procs > 1 else ''}"


def proc_cpu_s(pid: int, system_only: bool = False) -> float | None:
    """user + system CPU seconds of a process (all its threads), from /proc;
    with ``system_only``, the system (kernel) part alone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[12]) + (0 if system_only else int(fields[11]))) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle (every core), from /proc/stat."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + vals[4]  # idle + iowait
    return (sum(vals[:8]) - idle) / CLK_TCK


def worker(spec: dict) -> dict:
    """One client process of the scaling load (``--worker``): produce
    ``records`` records round-robin to its partitions, or consume its
    partitions from offset 0 to their end, starting at ``start_at``
    (time.time()). Returns its own window and CPU (all its threads,
    librdkafka's included)."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic, parts, bootstrap = spec["topic"], spec["partitions"], spec["bootstrap"]
    if spec["kind"] == "produce":
        p = Producer({"bootstrap.servers": bootstrap, "acks": spec.get("acks", "1"), "linger.ms": 5,
                      "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000,
                      "queue.buffering.max.kbytes": 1_048_576, "log_level": 2})
        payload = os.urandom(RECORD_SIZE // 2).hex().encode()[:RECORD_SIZE]
        failed: list = []

        def cb(err, msg):
            if err is not None:
                failed.append(str(err))
        for q in parts:  # connect to every leader before the start
            p.produce(topic, payload, partition=q, on_delivery=cb)
        p.flush(60)
        n = spec["records"]
        time.sleep(max(0.0, spec["start_at"] - time.time()))
        c0, t0 = time.process_time(), time.time()
        k = len(parts)
        for i in range(n):
            bb.produce_waiting(p, topic, payload, partition=parts[i % k], on_delivery=cb)
        p.flush(120)
        t1, c1 = time.time(), time.process_time()
        return {"t0": t0, "t1": t1, "cpu_s": c1 - c0, "records": n, "bytes": n * RECORD_SIZE,
                "failed": len(failed), "failed_example": failed[:1]}
    if spec["kind"] == "raw":
        return raw_produce(spec)
    if spec["kind"] == "rawfetch":
        return raw_fetch(spec)
    # librdkafka stops fetching a partition for fetch.queue.backoff.ms (1 s) once its
    # local queue holds queued.max.messages.kbytes (64 MiB) or queued.min.messages
    # (100,000): two 50 MB responses (one from each of two brokers, or two in a
    # row) overfill it and the consumer sat idle for most of a second
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"scaling-{uuid.uuid4()}",
                  "enable.auto.commit": False, "fetch.max.bytes": 52_428_800,
                  "max.partition.fetch.bytes": 10_485_760, "fetch.wait.max.ms": 100,
                  "queued.max.messages.kbytes": CONSUMER_QUEUE_KB, "fetch.queue.backoff.ms": 10,
                  "log_level": 2})
    ends = {q: c.get_watermark_offsets(TopicPartition(topic, q), timeout=30)[1] for q in parts}
    if spec.get("until"):
        ends = {q: spec["until"][str(q)] for q in parts}
    time.sleep(max(0.0, spec["start_at"] - time.time()))
    c0, t0 = time.process_time(), time.time()
    c.assign([TopicPartition(topic, q, 0) for q in parts])  # librdkafka fetches from here on
    pos = {q: 0 for q in parts}
    n = nbytes = 0
    deadline = t0 + 180
    while any(pos[q] < ends[q] for q in parts) and time.time() < deadline:
        for m in c.consume(10000, 0.5):
            if m.error() is None:
                pos[m.partition()] = m.offset() + 1
                n += 1
                nbytes += len(m.value())
    t1, c1 = time.time(), time.process_time()
    c.close()
    return {"t0": t0, "t1": t1, "cpu_s": c1 - c0, "records": n, "bytes": nbytes,
            "complete": all(pos[q] >= ends[q] for q in parts)}


CONSUMER_QUEUE_KB = 1 << 20  # librdkafka's queued.max.messages.kbytes for the consumers (1 GiB)
RAW_BATCH_RECORDS = 64   # records per partition per request of the raw producer
RAW_IN_FLIGHT = 4        # requests in flight on each of its connections
RAW_FETCH_PASSES = 3     # times the raw consumer reads the topic


def raw_produce(spec: dict) -> dict:
    """Produce v9 requests written by hand, acks=1: the same pre-encoded
    batch of RAW_BATCH_RECORDS × 1 KiB for every partition, one connection
    per partition leader, RAW_IN_FLIGHT requests in flight on each. The
    client's work per byte is a send and a small response to decode, so the
    broker, not the client, bounds the rate."""
    import socket
    import struct

    from odradek.cluster.local import recv_exact
    from odradek.protocol.frames import decode_response, encode_request
    from odradek.protocol.records import build_batch

    topic, parts = spec["topic"], spec["partitions"]
    addr, leaders = _leaders(spec["bootstrap"], topic, parts)
    payload = os.urandom(RECORD_SIZE // 2).hex().encode()[:RECORD_SIZE]
    batch = build_batch([(None, payload, [], None)] * RAW_BATCH_RECORDS)
    per_request = {nid: len(ps) * RAW_BATCH_RECORDS for nid, ps in leaders.items()}
    total_per_request = sum(per_request.values())
    rounds = max(1, spec["records"] // total_per_request)
    errors: list = []

    def one_leader(nid: int, ps: list[int], ready: threading.Barrier) -> None:
        frame = encode_request("Produce", 9, {"transactional_id": None, "acks": 1, "timeout_ms": 30_000,
                                              "topic_data": [{"name": topic, "partition_data": [
                                                  {"index": q, "records": batch} for q in ps]}]}, 1, "raw")
        with socket.create_connection(addr[nid], timeout=60) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ready.wait()
            sent = got = 0
            while got < rounds:
                while sent < rounds and sent - got < RAW_IN_FLIGHT:
                    sock.sendall(frame)
                    sent += 1
                (size,) = struct.unpack(">i", recv_exact(sock, 4))
                _, resp = decode_response("Produce", 9, recv_exact(sock, size))
                got += 1
                for t in resp["responses"]:
                    for pr in t["partition_responses"]:
                        if pr["error_code"]:
                            errors.append(pr["error_code"])

    t0, t1, cpu_s = _per_leader(leaders, one_leader, spec["start_at"])
    n = rounds * total_per_request
    return {"t0": t0, "t1": t1, "cpu_s": cpu_s, "records": n, "bytes": n * RECORD_SIZE,
            "failed": len(errors), "failed_example": errors[:1]}


def _per_leader(leaders: dict, one_leader, start_at: float) -> tuple[float, float, float]:
    """Run ``one_leader(node id, partitions, barrier)`` on a thread per leader;
    they start together at ``start_at`` (wall clock), past the barrier. Returns
    (start, end, this process's CPU seconds in between)."""
    ready = threading.Barrier(len(leaders) + 1)
    threads = [threading.Thread(target=one_leader, args=(nid, ps, ready), daemon=True)
               for nid, ps in leaders.items()]
    for t in threads:
        t.start()
    time.sleep(max(0.0, start_at - time.time()))
    c0, t0 = time.process_time(), time.time()
    ready.wait()
    for t in threads:
        t.join()
    t1, c1 = time.time(), time.process_time()
    return t0, t1, c1 - c0


def _leaders(bootstrap: str, topic: str, parts: list[int]) -> tuple[dict, dict]:
    """(node id -> (host, port), node id -> the partitions of ``parts`` it leads)."""
    from odradek.cluster.local import metadata_request

    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    md = metadata_request(host, int(port), topics=[topic])
    addr = {b["node_id"]: (b["host"], b["port"]) for b in md["brokers"]}
    leaders: dict[int, list[int]] = {}
    for pm in md["topics"][0]["partitions"]:
        if pm["partition_index"] in parts:
            leaders.setdefault(pm["leader_id"], []).append(pm["partition_index"])
    return addr, leaders


def raw_fetch(spec: dict) -> dict:
    """Fetch v4 requests written by hand (``compare.RawFetcher``: 10 MiB per
    partition per request, only batch headers walked), one connection per
    partition, one thread per leader taking its partitions in turn, from
    offset 0 to the end offset, RAW_FETCH_PASSES times: the broker's fetch
    path without a client library's per-record work."""
    from confluent_kafka import Consumer, TopicPartition

    import compare

    topic, parts = spec["topic"], spec["partitions"]
    addr, leaders = _leaders(spec["bootstrap"], topic, parts)
    c = Consumer({"bootstrap.servers": spec["bootstrap"], "group.id": "scaling-ends", "log_level": 2})
    ends = {q: c.get_watermark_offsets(TopicPartition(topic, q), timeout=30)[1] for q in parts}
    c.close()
    totals: dict[int, int] = {}

    def one_leader(nid: int, ps: list[int], ready: threading.Barrier) -> None:
        fs = {q: compare.RawFetcher(f"{addr[nid][0]}:{addr[nid][1]}", topic, partition=q) for q in ps}
        ready.wait()
        n = 0
        for _ in range(RAW_FETCH_PASSES):
            pos = {q: 0 for q in ps}
            while any(pos[q] < ends[q] for q in ps):
                for q in ps:
                    if pos[q] < ends[q]:
                        k, pos[q] = fs[q].fetch(pos[q])
                        n += k
        for f_ in fs.values():
            f_.close()
        totals[nid] = n

    t0, t1, cpu_s = _per_leader(leaders, one_leader, spec["start_at"])
    n = sum(totals.values())
    return {"t0": t0, "t1": t1, "cpu_s": cpu_s, "records": n, "bytes": n * RECORD_SIZE,
            "complete": n >= RAW_FETCH_PASSES * sum(ends.values())}


def _spawn_worker(spec: dict):
    import subprocess

    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def py_spy() -> str | None:
    """The py-spy binary: on PATH, or where ``pip install --user py-spy`` puts it."""
    import shutil
    import site

    return shutil.which("py-spy") or shutil.which("py-spy", path=os.path.join(site.USER_BASE, "bin"))


def _spy(pid: int, path: str, rate: int):
    import subprocess

    binary = py_spy()
    if binary is None:
        return None
    return subprocess.Popen([binary, "record", "--nonblocking", "--format", "raw", "--rate", str(rate),
                             "--pid", str(pid), "-o", path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def loop_busy_samples(path: str) -> int:
    """The broker's event loop at work: py-spy's (non-idle) samples of the
    thread that runs ``odradek/__main__`` (helper threads only wait on queues)."""
    n = 0
    try:
        with open(path) as fh:
            for line in fh:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if "odradek/__main__" in stack:
                    n += int(count)
    except (OSError, ValueError):
        pass
    return n


def run_load(cl, topic: str, kind: str, procs: int, records: int, spy_rate: int = 0,
             produce_topic: str | None = None) -> dict:
    """``procs`` client processes (and, for ``both``, as many consumers of
    ``produce_topic``... of ``topic`` while producers write ``produce_topic``)
    on disjoint partition groups; MB/s over the union of their windows, and CPU
    (cores = CPU seconds / wall seconds) of each broker, etcd, the clients and
    the whole machine over the same span."""
    import signal
    import tempfile

    groups = [[q for q in range(PARTITIONS) if q % procs == i] for i in range(procs)]
    start_at = time.time() + START_DELAY
    specs = []
    for g in groups:
        if kind in ("produce", "both", "raw"):
            specs.append({"kind": "raw" if kind == "raw" else "produce", "bootstrap": cl.bootstrap, "topic": produce_topic or topic,
                          "partitions": g, "records": records // procs, "start_at": start_at})
        if kind in ("consume", "both", "rawfetch"):
            specs.append({"kind": "rawfetch" if kind == "rawfetch" else "consume", "bootstrap": cl.bootstrap, "topic": topic, "partitions": g,
                          "start_at": start_at})
    procs_ = [_spawn_worker(s) for s in specs]
    brokers = {b.node_id: b.pid for b in cl.c.brokers}
    etcd_pid = cl.c.etcd.proc.pid if getattr(cl.c, "etcd", None) is not None and cl.c.etcd.proc else None
    pids = {**{f"broker{nid}": pid for nid, pid in brokers.items()}, **({"etcd": etcd_pid} if etcd_pid else {})}
    sys_pids = {f"broker{nid}.sys": pid for nid, pid in brokers.items()}
    tmp = tempfile.mkdtemp(prefix="odradek-scaling-")
    spies = {}
    time.sleep(max(0.0, start_at - time.time() - 0.5))
    if spy_rate:
        spies = {nid: (_spy(pid, os.path.join(tmp, f"{nid}.txt"), spy_rate), os.path.join(tmp, f"{nid}.txt"))
                 for nid, pid in brokers.items()}
    samples: list[tuple[float, dict, float]] = []  # (time, CPU seconds by process, machine busy seconds)
    done = threading.Event()

    def sample() -> None:
        while True:
            samples.append((time.time(), {**{k: proc_cpu_s(v) for k, v in pids.items()},
                                          **{k: proc_cpu_s(v, True) for k, v in sys_pids.items()}},
                            machine_busy_s()))
            if done.wait(0.05):
                return
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    outs = []
    try:
        for p in procs_:
            out, err = p.communicate(300)
            if p.returncode != 0:
                raise RuntimeError(f"worker exited {p.returncode}: {err[-800:]}")
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        done.set()
        sampler.join()
        for sp, _ in spies.values():
            if sp is not None:
                sp.send_signal(signal.SIGINT)
        for sp, _ in spies.values():
            if sp is not None:
                try:
                    sp.wait(30)
                except Exception:
                    sp.kill()
    # the load's span: from the first client's start to the last one's end
    t0, t1 = min(o["t0"] for o in outs), max(o["t1"] for o in outs)
    s0 = max((x for x in samples if x[0] <= t0), key=lambda x: x[0], default=samples[0])
    s1 = min((x for x in samples if x[0] >= t1), key=lambda x: x[0], default=samples[-1])
    busy = {}
    for nid, (sp, path) in spies.items():
        if sp is not None:
            busy[str(nid)] = min(1.0, loop_busy_samples(path) / (spy_rate * (t1 - t0)))
    wall = t1 - t0
    r: dict = {"wall_s": wall}
    for direction in ("produce", "consume"):
        ws = [(s, o) for s, o in zip(specs, outs)
              if s["kind"] == direction or (s["kind"], direction) in (("raw", "produce"), ("rawfetch", "consume"))]
        if not ws:
            continue
        span = max(o["t1"] for _, o in ws) - min(o["t0"] for _, o in ws)
        total = sum(o["bytes"] for _, o in ws)
        r[f"{direction}_mb_s"] = total / span / 1e6
        r[f"{direction}_seconds"] = span
        r[f"{direction}_client_cores"] = sum(o["cpu_s"] for _, o in ws) / wall
        if direction == "produce" and any(o["failed"] for _, o in ws):
            raise RuntimeError(f"deliveries failed: {[o['failed_example'] for _, o in ws if o['failed']]}")
        if direction == "consume" and not all(o["complete"] for _, o in ws):
            raise RuntimeError("a consumer did not reach the end of its partitions")
    cw = s1[0] - s0[0]

    def cores(k: str) -> float | None:
        a, b = s0[1].get(k), s1[1].get(k)
        return (b - a) / cw if a is not None and b is not None and cw > 0 else None
    r["broker_cores"] = {str(nid): cores(f"broker{nid}") for nid in brokers}
    r["broker_system_cores"] = {str(nid): cores(f"broker{nid}.sys") for nid in brokers}
    r["etcd_cores"] = cores("etcd")
    r["machine_cores"] = (s1[2] - s0[2]) / cw if cw > 0 else None
    ours = sum(v for v in r["broker_cores"].values() if v is not None) + (r["etcd_cores"] or 0) + \
        r.get("produce_client_cores", 0) + r.get("consume_client_cores", 0)
    r["other_cores"] = max(0.0, r["machine_cores"] - ours) if r["machine_cores"] is not None else None
    if busy:
        r["loop_busy"] = busy
    return r


def scaling(brokers: int, sizes: Sizes, spy_rate: int = 0, etcd=None) -> dict:
    """A fresh odradek cluster of ``brokers``; every load of SCALING_LOADS on
    new 8-partition RF 1 topics (the consumers read the topic the producers
    just wrote)."""
    out: dict = {"loads": {}, "errors": {}}
    cl = make_cluster("odradek", brokers, etcd=etcd)
    try:
        admin = admin_for(cl.bootstrap)
        warm = new_topic(cl.bootstrap, admin, "warmup", PARTITIONS, 1)
        bb.produce_throughput(cl.bootstrap, warm, sizes.warmup_records, RECORD_SIZE, "1")
        last_written = None
        for kind, procs in SCALING_LOADS:
            key = scaling_key(kind, procs)
            try:
                if kind in ("produce", "raw"):
                    topic = new_topic(cl.bootstrap, admin, f"scale-p{procs}", PARTITIONS, 1)
                    r = run_load(cl, topic, kind, procs, sizes.scaling_records, spy_rate)
                    last_written = topic
                elif kind in ("consume", "rawfetch"):
                    r = run_load(cl, last_written, kind, procs, 0, spy_rate)
                else:
                    dst = new_topic(cl.bootstrap, admin, "scale-both", PARTITIONS, 1)
                    r = run_load(cl, last_written, kind, procs, sizes.scaling_records, spy_rate, produce_topic=dst)
                out["loads"][key] = r
                mbs = ", ".join(f"{d} {r[d + '_mb_s']:.0f} MB/s" for d in ("produce", "consume") if d + "_mb_s" in r)
                log(f"  {brokers} broker(s), {scaling_label(kind, procs)}: {mbs}; brokers "
                    f"{'+'.join(f'{v:.2f}' for v in r['broker_cores'].values())} cores, clients "
                    f"{r.get('produce_client_cores', 0) + r.get('consume_client_cores', 0):.2f}, machine "
                    f"{r['machine_cores']:.2f} (others {r['other_cores']:.2f})" + (f"; loop busy {r['loop_busy']}" if r.get('loop_busy') else ""))
            except Exception as exc:
                out["errors"][key] = f"{type(exc).__name__}: {exc}"[:500]
                log(f"  {brokers} broker(s), {scaling_label(kind, procs)} failed: {exc}")
    finally:
        cl.close()
    return out


# --------------------------------------------------------------------------
# Summaries and the report
# --------------------------------------------------------------------------

def stats(values: list[float]) -> dict | None:
    if not values:
        return None
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values), "n": len(values),
            "spread": (max(values) - min(values)) / med if med else 0.0}


def throughput_values(result: dict) -> dict[str, dict[str, list[float]]]:
    vals: dict = {}
    for rep in result["throughput"]:
        for side in SIDES:
            for run in rep.get(side, {}).values():
                for k, v in run.get("metrics", {}).items():
                    vals.setdefault(k, {}).setdefault(side, []).append(v)
    return vals


def f(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def rng(s: dict | None, digits: int = 0) -> str:
    return "—" if not s else f"{s['min']:.{digits}f}–{s['max']:.{digits}f}"


def throughput_table(result: dict) -> list[str]:
    L: list[str] = []
    w = L.append
    vals = throughput_values(result)
    w("| case | odradek MB/s median | min–max | Kafka MB/s median | min–max | ratio | odradek vs its 1 broker | Kafka vs its 1 broker |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for b, rf, acks in THROUGHPUT_CASES:
        key = case_key(b, rf, acks)
        o = stats(vals.get(key, {}).get("odradek", []))
        k = stats(vals.get(key, {}).get("kafka", []))
        ratio = f"{o['median'] / k['median']:.2f}" if o and k and k["median"] else "—"
        if o and k and o["min"] <= k["max"] and k["min"] <= o["max"]:
            ratio += " ~"
        base = case_key(1, 1, acks)

        def rel(side, s):
            bs = stats(vals.get(base, {}).get(side, []))
            return f"{s['median'] / bs['median']:.2f}" if s and bs and b != 1 else ""
        w(f"| {case_label(b, rf, acks)} | {f(o and o['median'])} | {rng(o)} | {f(k and k['median'])} | "
          f"{rng(k)} | {ratio} | {rel('odradek', o)} | {rel('kafka', k)} |")
    return L


def failover_table(result: dict) -> list[str]:
    L: list[str] = []
    w = L.append
    fo = result["failover"]
    w("| cluster | repetitions | after-kill median (s) | min–max | any median (s) | min–max | killed broker was controller | delivery failures |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, _, _, label in FAILOVER_ROWS:
        row = fo.get(key)
        if not row:
            continue
        reps = row["repetitions"]
        a = stats([r["after_s"] for r in reps])
        y = stats([r["any_s"] for r in reps])
        ctl = sum(1 for r in reps if r.get("killed_was_controller"))
        w(f"| {label} | {len(reps)} | {f(a and a['median'], 2)} | {rng(a, 2)} | {f(y and y['median'], 2)} | "
          f"{rng(y, 2)} | {ctl} of {len(reps)} | {row.get('delivery_failures', '—')} |")
    return L


def _median_of(runs: list[dict], f) -> float | None:
    vals = [v for v in (f(r) for r in runs) if v is not None]
    return statistics.median(vals) if vals else None


def scaling_runs(sc: dict, n: int, key: str) -> list[dict]:
    return [rep[str(n)]["loads"][key] for rep in sc.get("repetitions", [])
            if key in rep.get(str(n), {}).get("loads", {})]


def _mb(r: dict) -> float | None:
    return r.get("produce_mb_s") if "produce_mb_s" in r else r.get("consume_mb_s")


def _mb_total(r: dict) -> float:
    return r.get("produce_mb_s", 0.0) + r.get("consume_mb_s", 0.0)


def _brokers(r: dict) -> float:
    return sum(v for v in r["broker_cores"].values() if v is not None)


def _clients(r: dict) -> float:
    return r.get("produce_client_cores", 0.0) + r.get("consume_client_cores", 0.0)


def paired_ratios(sc: dict, key: str) -> list[float]:
    """2-broker over 1-broker MB/s within each repetition (the two clusters ran
    one after the other, so under much the same load from the rest of the machine)."""
    out = []
    for rep in sc.get("repetitions", []):
        a = rep.get("1", {}).get("loads", {}).get(key)
        b = rep.get("2", {}).get("loads", {}).get(key)
        if a and b and _mb_total(a):
            out.append(_mb_total(b) / _mb_total(a))
    return out


def scaling_table(sc: dict) -> list[str]:
    L = ["| load | 1 broker MB/s median | min–max | 2 brokers MB/s median | min–max | 2 / 1 | "
         "2 / 1 in each repetition | "
         "cores, 1 broker: broker · clients · others | cores, 2 brokers: brokers · clients · others | "
         "broker CPU ms per MB, 1 → 2 | client CPU ms per MB |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, procs in sc["loads"]:
        key = scaling_key(kind, procs)
        cols = []
        per = {}
        for n in (1, 2):
            runs = scaling_runs(sc, n, key)
            per[n] = runs
            if kind == "both":
                st = stats([_mb_total(r) for r in runs])
            else:
                st = stats([v for v in (_mb(r) for r in runs) if v is not None])
            cols.append(st)
        one, two = cols
        ratio = f"{two['median'] / one['median']:.2f}" if one and two else "—"
        if one and two and one["min"] <= two["max"] and two["min"] <= one["max"]:
            ratio += " ~"

        def cores(runs):
            if not runs:
                return "—"
            b = _median_of(runs, _brokers)
            c = _median_of(runs, _clients)
            o = _median_of(runs, lambda r: r.get("other_cores"))
            return f"{b:.2f} · {c:.2f} · {o:.2f}"

        def ms_per_mb(runs, part):
            return _median_of(runs, lambda r: part(r) * r["wall_s"] * 1000 / (_mb_total(r) * r["wall_s"])
                              if _mb_total(r) else None)
        b1, b2 = ms_per_mb(per[1], _brokers), ms_per_mb(per[2], _brokers)

        def kernel(runs):
            k = _median_of(runs, lambda r: sum(v for v in r.get("broker_system_cores", {}).values() if v)
                           / _brokers(r) if _brokers(r) and "broker_system_cores" in r else None)
            return f" ({k * 100:.0f}% kernel)" if k is not None else ""
        c12 = ms_per_mb(per[1] + per[2], _clients)
        label = scaling_label(kind, procs) + (" (MB/s: produced + consumed)" if kind == "both" else "")
        paired = ", ".join(f"{x:.2f}" for x in paired_ratios(sc, key)) or "—"
        L.append(f"| {label} | {f(one and one['median'])} | {rng(one)} | {f(two and two['median'])} | "
                 f"{rng(two)} | {ratio} | {paired} | {cores(per[1])} | {cores(per[2])} | "
                 f"{f(b1, 2)}{kernel(per[1])} → {f(b2, 2)}{kernel(per[2])} | {f(c12, 2)} |")
    return L


def profile_table(sc: dict) -> list[str]:
    prof = sc.get("profiled")
    if not prof:
        return []
    L = ["| load | 1 broker: loop busy · broker CPU (cores) | 2 brokers: loop busy · CPU, each broker | machine cores used, 1 · 2 |",
         "|---|---:|---:|---:|"]
    for kind, procs in sc["loads"]:
        key = scaling_key(kind, procs)
        cells = []
        for n in (1, 2):
            r = prof.get(str(n), {}).get("loads", {}).get(key)
            if not r or not r.get("loop_busy"):
                cells.append("—")
                continue
            cells.append(", ".join(f"{r['loop_busy'].get(nid, 0) * 100:.0f}% · {c:.2f}"
                                   for nid, c in sorted(r["broker_cores"].items()) if c is not None))
        m = [prof.get(str(n), {}).get("loads", {}).get(key, {}).get("machine_cores") for n in (1, 2)]
        L.append(f"| {scaling_label(kind, procs)} | {cells[0]} | {cells[1]} | "
                 f"{' · '.join(f(x, 2) for x in m)} |")
    return L


def scaling_verdict(sc: dict) -> str:
    """What the scaling runs say about the target (a 2-broker cluster beating
    one broker on produce to 8 partitions), from the figures themselves."""
    def med(n, key, fn):
        return _median_of(scaling_runs(sc, n, key), fn)

    def rel(key):
        a, b = med(1, key, _mb), med(2, key, _mb)
        return (b / a) if a and b else None

    def prof(n, key):
        return ((sc.get("profiled") or {}).get(str(n), {}).get("loads", {}).get(key)) or {}

    def per_mb(n, key, part):
        return med(n, key, lambda r: part(r) / _mb(r) * 1000 if _mb(r) else None)

    out = []
    raw = [k for k in (scaling_key("raw", 1), scaling_key("raw", 2)) if med(1, k, _mb) and med(2, k, _mb)]
    if raw:
        best = max(raw, key=lambda k: rel(k) or 0)

        def one_row(k: str) -> str:
            a = stats([_mb(r) for r in scaling_runs(sc, 1, k)])
            b = stats([_mb(r) for r in scaling_runs(sc, 2, k)])
            pr = paired_ratios(sc, k)
            return (f"from {k.split('.x')[1]} client process{'es' if k != scaling_key('raw', 1) else ''} "
                    f"{rel(k):.2f}× (median {b['median']:.0f} against {a['median']:.0f} MB/s, "
                    f"{'every repetition above every one of the single broker' if b['min'] > a['max'] else 'the ranges overlap'}; "
                    f"ahead in {sum(1 for x in pr if x > 1)} of {len(pr)} repetitions, each against the "
                    f"single broker of the same repetition, by {min(pr):.2f}–{max(pr):.2f}×)")
        s = (f"**Broker-bound produce.** With a load generator that costs the machine little "
             f"(hand-written Produce requests: {per_mb(1, best, _clients):.2f} ms of client CPU per MB "
             f"against {per_mb(1, best, _brokers):.2f} ms of broker CPU), 2 brokers produced, against "
             f"1 broker, " + "; ".join(one_row(k) for k in raw) + ".")
        cores_n = float(sc.get("environment", {}).get("nproc") or 2)

        def busy_parts(n: int) -> str:
            return (f"{med(n, best, lambda r: r.get('machine_cores')):.2f} of its {cores_n:.0f} cores: "
                    f"broker{'s' if n > 1 else ''} {med(n, best, _brokers):.2f}, client "
                    f"{med(n, best, _clients):.2f}, the rest {med(n, best, lambda r: r.get('other_cores')):.2f}")
        m1 = med(1, best, lambda r: r.get("machine_cores"))
        if m1 is not None and med(2, best, lambda r: r.get("machine_cores")) is not None:
            s += (f" In that load (from {best.split('.x')[1]} process{'es' if best != scaling_key('raw', 1) else ''})"
                  f" the machine was busy, with 1 broker, {busy_parts(1)}; with 2 brokers, {busy_parts(2)} "
                  "(medians; the rest is mostly the kernel writing the page cache back, and other "
                  f"engineers' runs). A second broker could only use the {max(0.0, cores_n - m1):.2f} "
                  "cores one broker left idle, less what a second set of connections costs the client "
                  "and the kernel" + (": that is what the margin above came from." if any(
                      stats([_mb(r) for r in scaling_runs(sc, 2, k)])["min"]
                      > stats([_mb(r) for r in scaling_runs(sc, 1, k)])["max"] for k in raw)
                      else f": on {cores_n:.0f} cores that left no room for a clear margin."))
        busiest = max(raw, key=lambda k: max((prof(1, k).get("loop_busy") or {"": 0}).values()))
        p1 = prof(1, busiest)
        if p1.get("loop_busy"):
            busy = max(p1["loop_busy"].values())
            s += (f" Under py-spy the single broker's event loop was busy up to {busy * 100:.0f}% of the "
                  f"time (hand-written requests from {busiest.split('.x')[1]} process"
                  f"{'es' if busiest != scaling_key('raw', 1) else ''}) while "
                  f"getting {_brokers(p1):.2f} cores: a broker's work runs on one event-loop thread, so "
                  "one broker cannot use more than one core, and a second broker could use another one "
                  "if the machine had it to spare.")
        out.append(s)
    ck = scaling_key("produce", 1)
    if med(1, ck, _mb) and med(2, ck, _mb):
        cb_, bb_ = per_mb(1, ck, _clients), per_mb(1, ck, _brokers)
        s = (f" **Client-bound produce.** With confluent-kafka in Python as the producer, 2 brokers made "
             f"{rel(ck):.2f}× of 1 broker")
        ck2 = scaling_key("produce", 2)
        if med(1, ck2, _mb) and med(2, ck2, _mb):
            s += f" (with 2 producer processes {rel(ck2):.2f}×)"
        pc = paired_ratios(sc, ck)
        s += (f"; ahead in {sum(1 for x in pc if x > 1)} of {len(pc)} repetitions, by "
              f"{min(pc):.2f}–{max(pc):.2f}×. That client spends {cb_:.1f} ms of CPU per MB against the "
              f"broker's {bb_:.1f} ms, so even with the whole machine to themselves client and broker "
              f"would split it about {cb_ / (cb_ + bb_) * 100:.0f}:{bb_ / (cb_ + bb_) * 100:.0f}: one "
              f"broker never needs a whole core here (it used {med(1, ck, _brokers):.2f}), and whatever "
              "a second broker gains with this client does not come from broker CPU; the two brokers "
              "compete with the client for the same 2 cores.")
        p1 = prof(1, ck)
        if p1.get("loop_busy"):
            s += (f" Its loop was busy {max(p1['loop_busy'].values()) * 100:.0f}% of the time with "
                  f"{_brokers(p1):.2f} cores: busy includes waiting for a core the producer holds.")
        out.append(s)
    rf, cc = scaling_key("rawfetch", 1), scaling_key("consume", 1)
    if med(1, rf, _mb) and med(2, rf, _mb) and med(1, cc, _mb) and med(2, cc, _mb):
        pf = paired_ratios(sc, rf)
        out.append(f" **Consume.** 2 brokers served hand-written Fetch requests at {rel(rf):.2f}× of 1 "
                   f"broker (median {med(2, rf, _mb):.0f} against {med(1, rf, _mb):.0f} MB/s; ahead in "
                   f"{sum(1 for x in pf if x > 1)} of {len(pf)} repetitions, by {min(pf):.2f}–{max(pf):.2f}×), a "
                   f"confluent-kafka consumer at {rel(cc):.2f}× ({med(2, cc, _mb):.0f} against "
                   f"{med(1, cc, _mb):.0f} MB/s; that client spends {per_mb(1, cc, _clients):.1f} ms of "
                   f"CPU per MB, the broker {per_mb(1, cc, _brokers):.1f} ms).")
    if out:
        out.append(" Not measured here: a machine with more cores, or clients on other machines. "
                   "The hand-written rows say what to expect there: once the clients do not take "
                   "the cores, one broker's event loop is the bound and a second broker adds a loop "
                   "of its own; these 2 cores can show at most one extra core's worth, and other "
                   "engineers' runs took part of them (*others*).")
    return "".join(out)


def scaling_section(sc: dict, heading: str = "##") -> list[str]:
    if not sc or not sc.get("repetitions"):
        return []
    env = sc["environment"]
    loads = [rep.get("load_before") for rep in sc["repetitions"]]
    L = [f"{heading} Every core: 1 broker against 2 under loads the client does not bound", "",
         f"Measured by `{sc['command']}` on {sc['started']} (odradek commit `{env['git_commit']}`"
         f"{' with local changes to odradek/' if env.get('git_dirty') else ''}), {env['nproc']} cores; "
         f"load average (1 min) before each repetition: "
         f"{', '.join(f'{x[0]:.2f}' for x in loads if x)}. {len(sc['repetitions'])} repetitions, "
         "each a fresh odradek 1-broker and 2-broker cluster (`odradek.Cluster`, etcd, defaults; the "
         "order alternating); on each, a topic of 8 partitions, replication factor 1 (on 2 brokers "
         "4 partitions lead on each), and one load after another, each load's client processes "
         "started together and given disjoint partition groups (partition p to process p mod k). "
         f"Produce loads write {sc['sizes']['scaling_records']:,} × 1 KiB records (acks=1) to a new topic; "
         "consumers (`assign()` from offset 0, to the end offset; `fetch.max.bytes` 50 MB, "
         "`max.partition.fetch.bytes` 10 MB, `queued.max.messages.kbytes` 1 GiB and "
         "`fetch.queue.backoff.ms` 10: at its defaults, 64 MiB and 1 s, librdkafka paused a "
         "partition's fetching for a second whenever two responses were queued) read the topic "
         "just written. "
         "*Hand-written Fetch requests*: Fetch v4 (`bench/compare.py: RawFetcher`, 10 MiB per "
         "partition per request, only batch headers walked), a connection per partition, a thread "
         f"per partition leader, the topic read {RAW_FETCH_PASSES} times. "
         "*Hand-written Produce requests*: Produce v9, one pre-encoded batch of "
         f"{RAW_BATCH_RECORDS} × 1 KiB per partition per request, a connection per partition leader, "
         f"{RAW_IN_FLIGHT} requests in flight on each (the broker validates, assigns offsets and "
         "appends each batch as from any client). *Cores* = CPU seconds / wall seconds over the "
         "load's span (first client's start to last client's end), read from /proc every 50 ms: "
         "the broker processes, the client processes (their own CPU time, librdkafka's threads "
         "included), and *others*: the rest of the machine's busy time (other engineers' runs, "
         "etcd, this script, the kernel's writeback of the page cache). *2 / 1 in each "
         "repetition*: the 2-broker cluster's MB/s over the 1-broker cluster's in the same "
         "repetition (run one after the other). *Broker CPU per MB*: the "
         "brokers' CPU seconds per MB moved, with the share of it spent in the kernel (system "
         "time: socket reads and writes, copies into the page cache). Medians over the "
         "repetitions.", ""]
    L += scaling_table(sc)
    prof = profile_table(sc)
    if prof:
        pb = sc["profiled"].get("load_before")
        L += ["", "One more repetition with `py-spy record --nonblocking --rate "
              f"{sc.get('spy_rate', 100)}` attached to every broker (its throughput not counted above"
              f"{f'; load average before it {pb[0]:.2f}' if pb else ''}). *Loop busy*: share of the "
              "load's wall time in which py-spy found the broker's event-loop thread not idle, i.e. "
              "running or waiting for a core (a loop that is busy but gets less CPU than its busy share "
              "waits for a core).", ""]
        L += prof
    v = scaling_verdict(sc)
    if v:
        L += ["", v]
    return L


def render(result: dict) -> str:
    env = result["environment"]
    sizes = result["sizes"]
    L: list[str] = []
    w = L.append
    w("# Performance: clusters of odradek next to clusters of Apache Kafka")
    w("")
    w("<!-- Generated by bench/cluster_bench.py from one run; do not edit the numbers by hand. -->")
    w("")
    w(f"Generated by `{result['command']}` on {result['started']} (wall time "
      f"{result['wall_seconds'] / 60:.1f} min). odradek commit `{env['git_commit']}`"
      f"{' with local changes to odradek/' if env['git_dirty'] else ''}; Apache Kafka "
      f"{env['kafka_version']}. Raw numbers: `bench/results/cluster-latest.json`. "
      "The single-broker comparison is in [performance.md](performance.md).")
    w("")
    w("**Read these numbers as rough.** The machine has "
      f"{env['nproc']} cores, shared by every broker of a cluster, etcd (odradek), the load "
      "generator and other engineers' test runs: a 2-broker cluster here gets no more CPU than "
      "one broker, so these figures show the cost of replication on one machine, not how a "
      "cluster scales across machines. Spreads (min–max) are given with every median.")
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    for k, label in (("nproc", "CPUs (`nproc`)"), ("cpu_model", "CPU model"), ("memory_gib", "memory (GiB)"),
                     ("kernel", "kernel"), ("python", "Python"), ("java", "Java"),
                     ("kafka_version", "Apache Kafka"), ("confluent_kafka", "confluent-kafka"),
                     ("librdkafka", "librdkafka"), ("etcd", "etcd (odradek's metadata store)")):
        w(f"| {label} | {env.get(k, '?')} |")
    w(f"| load average before the run | {', '.join(f'{x:.2f}' for x in env['load_before'])} |")
    w("")
    w("## How to reproduce")
    w("")
    w("```")
    w("pip install -e '.[test,cluster]'")
    w("python bench/cluster_bench.py            # this report")
    w("python bench/cluster_bench.py --quick    # smoke run: small counts, 1 repetition")
    w("python bench/cluster_bench.py --only scaling   # the Every core section alone (odradek, about 7 min)")
    w("```")
    w("")
    w("Needs an etcd binary (see [cluster.md](cluster.md#getting-etcd)), Java 17+ and, the first "
      "time, Maven (Kafka's jars are fetched into `~/.cache/odradek-bench`).")
    w("")
    w("## Method")
    w("")
    w("- **Clusters.** odradek: `odradek.Cluster(n)` (`odradek/cluster/local.py`): one etcd "
      "and n `odradek serve` processes on free ports, each with its own data dir, at odradek's "
      "defaults. Kafka: `KafkaCluster(n)` (`bench/kafka_runtime.py`): n combined "
      "broker+controller KRaft nodes (every node a voter of a static controller quorum; one "
      "cluster id formatted on every node), heap 1 GiB each, the G1 flags of kafka-run-class.sh, "
      "Kafka's defaults except that the internal topics' replication factors are capped by n and "
      "`group.initial.rebalance.delay.ms=0`. The 1-broker rows use the same runners with n = 1 "
      "(so odradek's single broker also keeps its metadata in etcd).")
    w(f"- **Produce throughput.** {sizes['throughput_repetitions']} repetitions; in each, for each "
      "system (the first alternating), a fresh 1-broker and then a fresh 2-broker cluster. On "
      f"each cluster: {sizes['warmup_records']:,} × 1 KiB records as warm-up (not counted), then "
      f"for every case a new {PARTITIONS}-partition topic and {sizes['records']:,} × 1 KiB records "
      "through `bench/broker_bench.py: produce_throughput` (confluent-kafka, linger.ms=5, "
      "batch.size=1 MB, one Python thread producing as fast as librdkafka accepts). Replication "
      "factor 2 places one replica of each partition on each broker; a case starts once every "
      "partition's ISR is full. MB = 10^6 bytes of record values.")
    w(f"- **Failover.** For each row a fresh 3-broker cluster; one topic with 1 partition, "
      "replication factor 3, `min.insync.replicas=2`. A confluent-kafka producer "
      "(`enable.idempotence=true`, `acks=all`, librdkafka's defaults otherwise) sends a record to "
      f"the partition every {SEND_INTERVAL * 1000:.0f} ms throughout the row. Each of "
      f"{sizes['failover_repetitions']} repetitions waits until acknowledgements have flowed for "
      "2 s, asks Metadata for the partition's leader, and SIGKILLs that broker's process group "
      "(the time is taken just before the signal). **after-kill**: time from the kill to the "
      "first acknowledgement of a record produced after the kill; **any**: to the first "
      "acknowledgement of any record (records in flight at the kill, retried by the producer, "
      "count). Acknowledgement times are when librdkafka's delivery callback runs in the "
      f"producer's poll loop (at most {SEND_INTERVAL * 1000:.0f} ms late). Then the killed broker is "
      "restarted on its data dir (odradek's waits first for its old registration lease to lapse) "
      "and the next repetition starts once the ISR holds all three replicas again. Whether the "
      "killed broker was also the controller is noted: for Kafka the active controller of the "
      "KRaft quorum (every node here is both broker and controller), asked with Kafka's "
      "MetadataQuorumCommand before each kill; for odradek the broker holding etcd's controller "
      "key, as DescribeCluster names it.")
    w("")
    w("## Produce throughput: 1 broker against 2")
    w("")
    w("Ratio = odradek median / Kafka median (higher is better for odradek). ~ marks rows where "
      "the two systems' min–max ranges overlap. The last columns compare each system with itself "
      "on 1 broker (RF 1, same acks).")
    w("")
    L += throughput_table(result)
    w("")
    su = {side: [run["startup_s"] for rep in result["throughput"] for n_, run in rep.get(side, {}).items()
                 if run.get("startup_s") is not None and n_ == "2"] for side in SIDES}
    so, sk = stats(su["odradek"]), stats(su["kafka"])
    if so and sk:
        w(f"Start-up of a 2-broker cluster until every broker serves (Metadata lists all): odradek "
          f"{so['median']:.1f} s ({rng(so, 1)}; includes etcd), Kafka {sk['median']:.1f} s "
          f"({rng(sk, 1)}; excludes `kafka-storage format`).")
        w("")
    sl = scaling_section(result.get("scaling") or {})
    if sl:
        L += sl
        w("")
    w("## Failover: kill -9 of the partition leader, 3 brokers")
    w("")
    L += failover_table(result)
    fo = result["failover"]
    w("")
    w("Every repetition, in seconds (after-kill / any):")
    w("")
    for key, _, _, label in FAILOVER_ROWS:
        row = fo.get(key)
        if not row:
            continue
        each = ", ".join(f"{r['after_s']:.2f} / {r['any_s']:.2f}" + (" (controller)" if r.get("killed_was_controller") else "")
                         for r in row["repetitions"])
        w(f"- {label}: {each or '—'}")
    w("")
    w(verdict(result))
    errs = [(f"throughput rep {i + 1} {side} {n} broker(s)", e) for i, rep in enumerate(result["throughput"])
            for side in SIDES for n, run in rep.get(side, {}).items() for e in run.get("errors", {}).items()]
    errs += [(f"failover {key}", e) for key, row in fo.items() for e in row.get("errors", [])]
    if errs:
        w("")
        w("## Failures during the run")
        w("")
        for where, e in errs:
            w(f"- {where}: {e if isinstance(e, str) else ': '.join(map(str, e))}")
    w("")
    return "\n".join(L)


def verdict(result: dict) -> str:
    fo = result["failover"]
    med = {k: stats([r["after_s"] for r in fo[k]["repetitions"]]) for k in fo if fo[k]["repetitions"]}
    o, k, o3 = med.get("odradek"), med.get("kafka"), med.get("odradek_3s")
    if not (o and k):
        return "No comparison of failover times: a row has no completed repetition (see below)."
    if o["max"] < k["min"]:
        word = "was shorter than Kafka's in every repetition"
    elif o["min"] > k["max"]:
        word = "was longer than Kafka's in every repetition"
    elif o["median"] < k["median"]:
        word = "had a shorter median than Kafka's, but the ranges overlap"
    else:
        word = "was not shorter than Kafka's: its median is the same or longer"
    s = (f"At the defaults, odradek's failover (kill to the first acknowledgement of a record sent "
         f"after the kill) {word}: median {o['median']:.2f} s against {k['median']:.2f} s. ")
    s += ("Both systems notice a dead broker when its session lapses, and both count "
          "`broker.session.timeout.ms` (9000 in both) from the broker's last sign of life: "
          "odradek's registration lease expires that long after its last keep-alive (sent every "
          "third of it), Kafka's controller fences a broker that has not sent a heartbeat "
          "(every `broker.heartbeat.interval.ms`, 2000) for that long. A kill is therefore noticed "
          "somewhat less than the timeout after it, and a failover adds to that the time to elect a "
          "leader and for the producer to find it.")
    if o3:
        s += (f" With `broker.session.timeout.ms=3000`, a non-default setting that lets a broker "
              f"paused for over 3 s (a long GC or a stalled disk) lose its leaderships, odradek's "
              f"median was {o3['median']:.2f} s.")
    return s


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def environment() -> dict:
    import compare

    env = compare.environment()
    try:
        from odradek.cluster.etcd_server import find_etcd

        path = find_etcd()
        env["etcd"] = compare.run_text([str(path), "--version"]).splitlines()[0] if path else "?"
    except Exception:
        env["etcd"] = "?"
    return env


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:  # one client process of the scaling load
        print(json.dumps(worker(json.loads(argv[1]))), flush=True)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts, 1 repetition")
    ap.add_argument("--repetitions", type=int, help="override every part's repetition count")
    ap.add_argument("--only", choices=("throughput", "failover", "scaling"),
                    help="run one part (with scaling, the other parts are kept from the earlier JSON)")
    ap.add_argument("--scaling", action="store_true",
                    help="run the scaling part too (about 7 min; without it the earlier one is kept)")
    ap.add_argument("--spy-rate", type=int, default=100,
                    help="py-spy's rate in the scaling part's profiled repetition (0: none)")
    ap.add_argument("--json", default=str(BENCH / "results" / "cluster-latest.json"))
    ap.add_argument("--report", default=str(ROOT / "docs" / "performance-cluster.md"))
    ap.add_argument("--performance", default=str(ROOT / "docs" / "performance.md"),
                    help="the report whose clusters' section is rewritten")
    ap.add_argument("--no-report", action="store_true", help="print the report, write no file")
    ap.add_argument("--from-json", help="only render the report from an earlier JSON result")
    args = ap.parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        return write_report(result, args)

    sizes = QUICK if args.quick else FULL
    if args.repetitions:
        sizes = Sizes(**{**sizes.__dict__, "throughput_repetitions": args.repetitions,
                         "failover_repetitions": args.repetitions,
                         "scaling_repetitions": args.repetitions})
    t_start = time.monotonic()
    kr.fetch()
    env = environment()
    log(f"odradek {env['git_commit']}, Kafka {env['kafka_version']}, {env['nproc']} cores")
    cmd = "python bench/cluster_bench.py" + (" --quick" if args.quick else "") + \
          (f" --repetitions {args.repetitions}" if args.repetitions else "") + \
          (f" --only {args.only}" if args.only else "")
    started = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    result = {"command": cmd, "started": started,
              "environment": env, "sizes": sizes.__dict__, "throughput": [], "failover": {}}
    merged = args.only == "scaling" and Path(args.json).exists()
    if merged:
        # the scaling part again: the other parts, with their provenance, stay as they were
        result = json.loads(Path(args.json).read_text())
    run_scaling = args.only == "scaling" or (args.only is None and args.scaling)
    if run_scaling:
        result["scaling"] = {"command": cmd, "started": started, "environment": env,
                             "sizes": sizes.__dict__, "loads": [list(x) for x in SCALING_LOADS],
                             "repetitions": [], "profiled": None, "spy_rate": args.spy_rate}
    elif args.only is None and Path(args.json).exists():
        # not run this time: the earlier scaling part stays, under its own header
        result["scaling"] = json.loads(Path(args.json).read_text()).get("scaling")

    def save() -> None:
        if merged:  # the earlier run's header stays; this part notes its own time
            result["scaling"]["wall_seconds"] = time.monotonic() - t_start
        else:
            result["wall_seconds"] = time.monotonic() - t_start
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))

    if args.only in (None, "throughput"):
        for rep in range(sizes.throughput_repetitions):
            entry: dict = {}
            order = SIDES if rep % 2 == 0 else SIDES[::-1]
            entry["order"] = list(order)
            for side in order:
                entry[side] = {}
                for n in (1, 2):
                    log(f"throughput rep {rep + 1}/{sizes.throughput_repetitions}: {side}, {n} broker(s)")
                    try:
                        entry[side][str(n)] = throughput(side, n, sizes)
                    except Exception as exc:
                        log(f"  failed: {exc}")
                        entry[side][str(n)] = {"metrics": {}, "errors": {"cluster": f"{type(exc).__name__}: {exc}"[:300]}}
            result["throughput"].append(entry)
            save()
    if args.only in (None, "failover"):
        for key, system, config, label in FAILOVER_ROWS:
            log(f"failover: {label}, {sizes.failover_repetitions} repetition(s)")
            try:
                result["failover"][key] = failover(system, sizes.failover_repetitions, config)
            except Exception as exc:
                log(f"  failed: {exc}")
                result["failover"][key] = {"config": config, "repetitions": [],
                                           "errors": [f"{type(exc).__name__}: {exc}"[:500]]}
            save()
    if run_scaling:
        sc = result["scaling"]
        for rep in range(sizes.scaling_repetitions + (1 if args.spy_rate and py_spy() else 0)):
            profiled = rep == sizes.scaling_repetitions
            entry: dict = {"load_before": os.getloadavg()}
            for n in ((1, 2) if rep % 2 == 0 else (2, 1)):
                log(f"scaling {'profiled repetition' if profiled else f'rep {rep + 1}/{sizes.scaling_repetitions}'}"
                    f": odradek, {n} broker(s)")
                try:
                    entry[str(n)] = scaling(n, sizes, args.spy_rate if profiled else 0)
                except Exception as exc:
                    log(f"  failed: {exc}")
                    entry[str(n)] = {"loads": {}, "errors": {"cluster": f"{type(exc).__name__}: {exc}"[:300]}}
            entry["load_after"] = os.getloadavg()
            if profiled:
                sc["profiled"] = entry
            else:
                sc["repetitions"].append(entry)
            save()
    at_end = compare_run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    if merged:
        result["scaling"]["environment"]["git_commit_at_end"] = at_end
    elif not merged:
        result["environment"]["git_commit_at_end"] = at_end
    save()
    log(f"done in {(time.monotonic() - t_start) / 60:.1f} min; raw results in {args.json}")
    return write_report(result, args)


def compare_run(cmd: list[str]) -> str:
    import compare

    return compare.run_text(cmd)


#: performance.md (written by compare.py) keeps what follows its KEPT_MARK
#: when it is regenerated; the clusters' summary lives there between these two.
SECTION_BEGIN = "<!-- cluster_bench.py: begin -->"
SECTION_END = "<!-- cluster_bench.py: end -->"


def summary_section(result: dict, report_name: str) -> str:
    """The clusters' section of performance.md: both tables and the verdict."""
    env = result["environment"]
    L = [SECTION_BEGIN, "", "## Clusters: 1 broker against 2, and failover", "",
         f"Measured by `{result['command']}` on {result['started']} (odradek commit "
         f"`{env['git_commit']}`, Apache Kafka {env['kafka_version']}), same machine and caveats as "
         f"above, and more so: every broker of a cluster shares the 2 cores. Method, machine and every "
         f"repetition: [{report_name}]({report_name}).", "",
         "Produce throughput, 1 KiB records, 8 partitions, confluent-kafka "
         f"({result['sizes']['throughput_repetitions']} repetitions; ratio = odradek / Kafka; ~: ranges overlap):", ""]
    L += throughput_table(result)
    sl = scaling_section(result.get("scaling") or {}, heading="###")
    if sl:
        L += [""] + sl
    L += ["", "Failover: kill -9 of a partition's leader in a 3-broker cluster, replication factor 3, "
          "`min.insync.replicas=2`, idempotent acks=all producer; seconds from the kill to the first "
          "acknowledgement of a record sent after it (*after-kill*) and of any record (*any*):", ""]
    L += failover_table(result)
    L += ["", verdict(result), "", SECTION_END]
    return "\n".join(L)


def write_report(result: dict, args) -> int:
    text = render(result)
    if args.no_report:
        print(text)
        return 0
    report = Path(args.report)
    report.write_text(text)
    log(f"wrote {report}")
    perf = Path(args.performance)
    if perf.exists():
        import compare

        compare.write_section(perf, SECTION_BEGIN, SECTION_END,
                              summary_section(result, os.path.relpath(report, perf.parent)))
        log(f"updated the clusters' section of {perf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
