#!/usr/bin/env python3
"""Clusters of odradek next to clusters of Apache Kafka, on this machine.

    python bench/cluster_bench.py            # full run (about 15 min on 2 cores)
    python bench/cluster_bench.py --quick    # smoke run: small counts, 1 repetition

Two measurements, odradek and Kafka in the same invocation:

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


FULL = Sizes(throughput_repetitions=5, records=500_000, warmup_records=100_000, failover_repetitions=7)
QUICK = Sizes(throughput_repetitions=1, records=20_000, warmup_records=2_000, failover_repetitions=1)


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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts, 1 repetition")
    ap.add_argument("--repetitions", type=int, help="override both repetition counts")
    ap.add_argument("--only", choices=("throughput", "failover"), help="run one of the two parts")
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
                         "failover_repetitions": args.repetitions})
    t_start = time.monotonic()
    kr.fetch()
    env = environment()
    log(f"odradek {env['git_commit']}, Kafka {env['kafka_version']}, {env['nproc']} cores")
    cmd = "python bench/cluster_bench.py" + (" --quick" if args.quick else "") + \
          (f" --repetitions {args.repetitions}" if args.repetitions else "") + \
          (f" --only {args.only}" if args.only else "")
    result = {"command": cmd, "started": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
              "environment": env, "sizes": sizes.__dict__, "throughput": [], "failover": {}}

    def save() -> None:
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
    result["environment"]["git_commit_at_end"] = compare_run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    save()
    log(f"done in {result['wall_seconds'] / 60:.1f} min; raw results in {args.json}")
    return write_report(result, args)


def compare_run(cmd: list[str]) -> str:
    import compare

    return compare.run_text(cmd)


#: performance.md (written by compare.py) keeps what follows this mark when
#: it is regenerated; the clusters' summary lives there between these two.
KEPT_MARK = "<!-- Below: sections from other scripts, kept when this report is regenerated. -->"
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
        old = perf.read_text()
        section = summary_section(result, os.path.relpath(report, perf.parent))
        if SECTION_BEGIN in old and SECTION_END in old:
            head, rest = old.split(SECTION_BEGIN, 1)
            new = head + section + rest.split(SECTION_END, 1)[1]
        else:
            if KEPT_MARK not in old:
                old = old.rstrip("\n") + "\n\n" + KEPT_MARK + "\n"
            head, tail = old.split(KEPT_MARK, 1)
            new = head + KEPT_MARK + "\n\n" + section + "\n" + tail
        perf.write_text(new)
        log(f"updated the clusters' section of {perf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
