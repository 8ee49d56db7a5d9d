#!/usr/bin/env python3
"""Many partitions on one broker in disk mode, under the default open-file limit.

    python bench/scale_bench.py                        # 100,000 partitions, odradek and Kafka
    python bench/scale_bench.py --partitions 10000 --no-kafka --no-report   # by hand

One broker of each system, in turn, with a data directory on disk and a soft
(and hard) open-file limit of ``--nofile`` (1024, the usual default, set with
``prlimit`` on the broker process alone). Timed, in order:

1. CreateTopics for all partitions, as ``--topics`` topics of equal size
   (Kafka's controller refuses more than 10,000 new partitions in one
   request), one request per topic, each answered before the next is sent;
2. from the first CreateTopics until a Metadata request lists every partition
   with a leader;
3. one raw Metadata v4 request for all topics over one TCP connection (request
   sent until the last response byte; median of 5 after one warm-up);
4. producing one 100 B record to every partition (confluent-kafka, acks=1,
   linger.ms=20, a producer per topic), until every delivery is acknowledged;
5. RSS (VmRSS) and open file descriptors of the broker after that; then, for
   65 s (one offset-checkpoint interval and more), an ApiVersions request
   every 10 ms: the longest round trip is how long the broker stopped
   answering while its periodic work over every partition ran;
6. ``kill -9`` of the broker, then a restart on the same data directory:
   from launch until it accepts a TCP connection, and until a Metadata request
   lists every partition with a leader (the recovery time); then a ListOffsets
   for every partition (latest), which must give 1 for each: every
   acknowledged record is still there.

A side that does not finish a step within ``--cap`` seconds (from its start)
is stopped and the report says how far it got. Raw results go to
``bench/results/scale-latest.json``; the section between the markers below in
``docs/performance.md`` is replaced (``--no-report`` leaves it alone).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import compare as cmp  # noqa: E402
import kafka_runtime as kr  # noqa: E402

SECTION_BEGIN = "<!-- scale_bench.py: begin -->"
SECTION_END = "<!-- scale_bench.py: end -->"
RESULTS = BENCH / "results" / "scale-latest.json"
REPORT = ROOT / "docs" / "performance.md"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def soft_nofile(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        return None
    return None


class CapExceeded(Exception):
    pass


class OdradekScale(cmp.OdradekSide):
    """``odradek serve --data-dir`` under ``prlimit --nofile``; restartable."""

    def __init__(self, nofile: int):
        super().__init__(memory=False)
        self.nofile = nofile

    def command(self) -> list[str]:
        return ["prlimit", f"--nofile={self.nofile}:{self.nofile}", "--"] + super().command()

    def launch(self) -> float:
        """Start the process; return the launch time (monotonic)."""
        err = open(self.stderr_path, "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.command(), cwd=cmp.ODRADEK_CWD, stdout=subprocess.DEVNULL,
                                     stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        err.close()
        self.pid = self.proc.pid  # prlimit execs the broker: same pid
        return t0

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(30)

    def exited(self) -> str | None:
        if self.proc.poll() is not None:
            return f"exited with {self.proc.returncode}: {self.stderr_tail(5)}"
        return None


class KafkaScale:
    """A single-node KRaft Kafka (kafka_runtime.KafkaBroker) under ``prlimit
    --nofile``, restartable on its data directory after kill -9."""

    name = "kafka"

    def __init__(self, nofile: int, heap: str):
        self.nofile = nofile
        self.broker = kr.KafkaBroker(config=cmp.COMMON_BROKER_PROPS, quiet=True, stop_timeout=5.0,
                                     heap=heap, startup_timeout=300.0,
                                     command_prefix=["prlimit", f"--nofile={nofile}:{nofile}", "--"])

    # the KafkaBroker does the launching; these mirror OdradekScale
    def start(self):
        self.broker.start()
        self.bootstrap = self.broker.bootstrap
        self.pid = self.broker.pid
        return self

    def launch(self) -> float:
        return self.broker.relaunch()

    def kill9(self) -> None:
        self.broker.kill9()

    def exited(self) -> str | None:
        return None if self.broker.alive() else "exited"

    def diagnose(self) -> str:
        """The first line of the broker's logs that says why it failed."""
        lines = self.broker.log_tail(2000).splitlines()
        for keys in (("Too many open files", "Map failed", "OutOfMemory"), ("ERROR",)):
            for line in lines:
                if any(k in line for k in keys):
                    return line.strip()[:300]
        return ""

    def rss_mb(self):
        kb = cmp.proc_status_kb(self.broker.pid, "VmRSS")
        return kb / 1024 if kb is not None else None

    def stop(self) -> None:
        self.broker.stop()


def wait_accept(bootstrap: str, side, deadline: float) -> None:
    host, port = bootstrap.rsplit(":", 1)
    while True:
        why = side.exited()
        if why:
            raise RuntimeError(f"broker {why}")
        if time.monotonic() > deadline:
            raise CapExceeded("no TCP accept")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return
        except OSError:
            time.sleep(0.01)


def wait_all_led(bootstrap: str, n: int, side, deadline: float, what: dict) -> None:
    """Until one Metadata request lists ``n`` partitions with leaders."""
    probe = None
    try:
        while True:
            why = side.exited()
            if why:
                raise RuntimeError(f"broker {why}")
            try:
                if probe is None:
                    probe = cmp.MetadataProbe(bootstrap)
                _, data = probe.timed()
                good, total = cmp.MetadataProbe.count_partitions(data)
                what["led"] = good
                if good >= n:
                    return
            except OSError:
                if probe is not None:
                    probe.close()
                probe = None
            if time.monotonic() > deadline:
                raise CapExceeded(f"only {what.get('led', 0):,} of {n:,} partitions led")
            time.sleep(0.2)
    finally:
        if probe is not None:
            probe.close()


def latest_offsets(bootstrap: str, topics: list[str], per_topic: int, timeout: float) -> dict[int, int]:
    """ListOffsets (latest) for every partition: a histogram of the offsets."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
    hist: dict[int, int] = {}
    for t in topics:
        req = {TopicPartition(t, i): OffsetSpec.latest() for i in range(per_topic)}
        futs = admin.list_offsets(req, request_timeout=timeout)
        for tp, fut in futs.items():
            off = fut.result(timeout).offset
            hist[off] = hist.get(off, 0) + 1
    return hist


def produce_one_each(bootstrap: str, topics: list[str], per_topic: int, timeout: float,
                     progress: dict) -> None:
    """One 100 B record to every partition: a producer per topic, one after
    the other (a single producer for all topics spends its time in Metadata
    requests: librdkafka asks for every topic it knows each time it meets a
    new one, so 100 topics cost 100 Metadata requests of up to all partitions)."""
    from confluent_kafka import Producer

    deadline = time.monotonic() + timeout
    failed = []

    def cb(err, _msg):
        if err is not None:
            failed.append(err)
        else:
            progress["produced_partitions"] = progress.get("produced_partitions", 0) + 1

    for t in topics:
        p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 20, "log_level": 2})
        for i in range(per_topic):
            cmp.bb.produce_waiting(p, t, b"x" * 100, wait=0.01, partition=i, on_delivery=cb)
        left = p.flush(max(1.0, min(120.0, deadline - time.monotonic())))
        if left or failed:
            raise RuntimeError(f"{t}: {left} undelivered, {len(failed)} failed "
                               f"({failed[0] if failed else ''})")


def longest_stall(bootstrap: str, seconds: float) -> float:
    """The longest round trip, in seconds, of ApiVersions requests sent every
    10 ms over one connection for ``seconds``: how long the broker stops
    answering while its periodic work (checkpoints) runs."""
    host, port = bootstrap.rsplit(":", 1)
    req = struct.pack(">hhih", 18, 0, 1, 3) + b"odr"
    frame = struct.pack(">i", len(req)) + req
    worst = 0.0
    with socket.create_connection((host, int(port)), timeout=60) as s:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.monotonic()
            s.sendall(frame)
            size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
            s.recv(size, socket.MSG_WAITALL)
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.01)
    return worst


def run_side(side, partitions: int, n_topics: int, cap: float, idle: float = 65.0) -> dict:
    """The steps of the module docstring on one broker; ``out`` says how far it got."""
    out: dict = {"steps_done": [], "partitions": partitions, "topics": n_topics}
    per_topic = partitions // n_topics
    t_start = time.monotonic()
    deadline = t_start + cap

    def left() -> float:
        r = deadline - time.monotonic()
        if r <= 0:
            raise CapExceeded("time cap reached")
        return r

    def done(step: str) -> None:
        out["steps_done"].append(step)
        log(f"{side.name}: {step} done; {', '.join(f'{k}={v}' for k, v in out.items() if k != 'steps_done')}")

    try:
        side.start()
        out["nofile_soft"] = soft_nofile(side.pid)
        bootstrap = side.bootstrap
        topics = [f"scale{k}-{uuid.uuid4().hex[:6]}" for k in range(n_topics)]
        t0 = time.perf_counter()
        created = 0
        for t in topics:
            kr.create_topic(bootstrap, t, partitions=per_topic, timeout=min(300, left()))
            created += per_topic
            out["created_partitions"] = created
        out["create_s"] = time.perf_counter() - t0
        done("create")
        what: dict = {}
        wait_all_led(bootstrap, partitions, side, deadline, what)
        out["visible_s"] = time.perf_counter() - t0
        done("visible")
        probe = cmp.MetadataProbe(bootstrap)
        try:
            samples = []
            for _ in range(6):
                left()
                dt, data = probe.timed()
                samples.append(dt)
            out["metadata_ms"] = statistics.median(samples[1:]) * 1000
            out["metadata_bytes"] = len(data)
        finally:
            probe.close()
        done("metadata")
        t1 = time.perf_counter()
        produce_one_each(bootstrap, topics, per_topic, left(), out)
        out["produce_each_s"] = time.perf_counter() - t1
        out["rss_mb"] = side.rss_mb()
        out["open_fds"] = open_fds(side.pid)
        done("produce")
        out["stall_after_produce_ms"] = longest_stall(bootstrap, min(idle, left())) * 1000
        done("idle")
        side.kill9()
        t2 = side.launch()
        wait_accept(bootstrap, side, deadline)
        out["restart_accept_s"] = time.monotonic() - t2
        wait_all_led(bootstrap, partitions, side, deadline, what)
        out["recovery_s"] = time.monotonic() - t2
        out["rss_after_recovery_mb"] = side.rss_mb()
        out["open_fds_after_recovery"] = open_fds(side.pid)
        done("recovery")
        t3 = time.perf_counter()
        hist = latest_offsets(bootstrap, topics, per_topic, left())
        out["list_offsets_s"] = time.perf_counter() - t3
        out["latest_offsets"] = {str(k): v for k, v in sorted(hist.items())}
        out["all_records_kept"] = hist == {1: partitions}
        done("verify")
    except CapExceeded as exc:
        out["error"] = f"stopped at the {cap / 60:.0f}-minute cap: {exc}"
        if hasattr(side, "diagnose"):
            out["broker_log"] = side.diagnose()
    except Exception as exc:  # recorded, not raised: the other side still runs
        out["error"] = f"{type(exc).__name__}: {exc}"
        gone = side.exited() if getattr(side, "pid", None) else None
        with_fds = open_fds(side.pid) if getattr(side, "pid", None) and not gone else None
        if gone:
            out["error"] += f" [the broker {gone}]"
        elif with_fds is not None:
            out["error"] += f" [{with_fds} open fds]"
        if hasattr(side, "diagnose"):
            out["broker_log"] = side.diagnose()
    finally:
        out["wall_s"] = time.monotonic() - t_start
        if "error" in out:
            log(f"{side.name}: {out['error']}")
        try:
            side.stop()
        except Exception as exc:
            log(f"{side.name}: stop failed: {exc}")
    return out


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=100_000)
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--nofile", type=int, default=1024, help="the brokers' open-file limit (soft and hard)")
    ap.add_argument("--cap", type=float, default=1200, help="seconds per side before it is stopped")
    ap.add_argument("--kafka-heap", default="4g", help="Kafka's -Xmx/-Xms")
    ap.add_argument("--kafka-nofile", type=int, help="Kafka's open-file limit, if not --nofile")
    ap.add_argument("--no-kafka", action="store_true")
    ap.add_argument("--no-odradek", action="store_true")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--from-json", help="render the report from an earlier result")
    args = ap.parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
    else:
        # a side not run now keeps its figures from the last result (each side
        # carries its own date, commit and load average)
        old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        result = {"partitions": args.partitions, "topics": args.topics,
                  "sides": {k: v for k, v in old.get("sides", {}).items()
                            if v.get("partitions") == args.partitions}}
        runs = []
        if not args.no_odradek:
            runs.append(("odradek", lambda: OdradekScale(args.nofile), args.nofile))
        if not args.no_kafka:
            kn = args.kafka_nofile or args.nofile
            runs.append(("kafka", lambda: KafkaScale(kn, args.kafka_heap), kn))
        for name, make, nofile in runs:
            if name == "kafka" and nofile != args.nofile:
                name = f"kafka-nofile-{nofile}"
            meta = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    "commit": commit(), "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                    "nofile": nofile, "cap_s": args.cap}
            if name == "kafka":
                meta["kafka_heap"] = args.kafka_heap
            r = run_side(make(), args.partitions, args.topics, args.cap)
            r.update(meta, loadavg_after=[round(x, 2) for x in os.getloadavg()])
            result["sides"][name] = r
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    if not args.no_report:
        write_report(result)
    return 0



#: (key, row label, unit, format) of the report's table, in step order.
ROWS = [
    ("create_s", "CreateTopics for all partitions (one request per topic)", "s", "{:.1f}"),
    ("visible_s", "from the first CreateTopics until Metadata lists all with leaders", "s", "{:.1f}"),
    ("metadata_ms", "one Metadata request, all topics (median of 5)", "ms", "{:.0f}"),
    ("produce_each_s", "produce one 100 B record to every partition", "s", "{:.1f}"),
    ("rss_mb", "broker RSS after producing", "MB", "{:.0f}"),
    ("open_fds", "broker's open file descriptors after producing", "", "{:,}"),
    ("stall_after_produce_ms", "longest ApiVersions round trip in the 65 s after producing", "ms", "{:.0f}"),
    ("restart_accept_s", "kill -9, restart: launch until the listener accepts", "s", "{:.1f}"),
    ("recovery_s", "kill -9, restart: launch until Metadata lists all with leaders (recovery)", "s", "{:.1f}"),
    ("rss_after_recovery_mb", "broker RSS after recovery", "MB", "{:.0f}"),
    ("list_offsets_s", "ListOffsets (latest) for every partition after recovery", "s", "{:.1f}"),
]


def side_label(name: str, r: dict) -> str:
    base = "odradek" if name.startswith("odradek") else f"Kafka 4.4 (heap {r.get('kafka_heap', '?')})"
    return f"{base}, open-file limit {r.get('nofile', '?'):,}"


def cell(r: dict, key: str, fmt: str) -> str:
    v = r.get(key)
    if v is not None:
        return fmt.format(v)
    return "not reached" if "error" in r else "—"


def section(result: dict) -> str:
    sides = result["sides"]
    names = sorted(sides, key=lambda n: (not n.startswith("odradek"), n))
    n, topics = result["partitions"], result["topics"]
    L = [SECTION_BEGIN, "", f"## {n:,} partitions on one broker, in disk mode", "",
         f"Measured by `python bench/scale_bench.py` ({n:,} partitions as {topics} topics of "
         f"{n // topics:,}; one run per broker, one broker after the other). Each broker runs with a "
         "data directory on disk and its open-file limit (soft and hard) set by `prlimit`; the steps "
         "and what they time are in the script's docstring; in short: CreateTopics, one per topic; "
         "until a Metadata request lists every partition with a leader; one raw Metadata v4 request for "
         "all topics; one record to every partition through confluent-kafka (a producer per topic, in "
         "turn: see below); `kill -9` of the broker and a restart on its data, timed until Metadata "
         "lists every partition with a leader again; then ListOffsets (latest) for every partition, "
         "which must be 1 for each: every acknowledged record is still there. Each side has a "
         f"{result['sides'][names[0]].get('cap_s', 1200) / 60:.0f}-minute cap.", ""]
    for name in names:
        r = sides[name]
        L.append(f"- {side_label(name, r)}: {r.get('date', '?')}, commit `{r.get('commit', '?')}`, load "
                 f"average {', '.join(str(x) for x in r.get('loadavg_before', []))} before and "
                 f"{', '.join(str(x) for x in r.get('loadavg_after', []))} after (other work shared the "
                 f"2 cores), wall time {r.get('wall_s', 0) / 60:.1f} min.")
    L += ["", "| step | unit | " + " | ".join(side_label(x, sides[x]) for x in names) + " |",
          "|---|---|" + "---:|" * len(names)]
    for key, label, unit, fmt in ROWS:
        L.append(f"| {label} | {unit} | " + " | ".join(cell(sides[x], key, fmt) for x in names) + " |")
    L.append("| every record there after recovery (offsets 1) | | " + " | ".join(
        ("yes" if sides[x].get("all_records_kept") else
         f"no: {sides[x].get('latest_offsets')}" if "latest_offsets" in sides[x] else "not reached")
        for x in names) + " |")
    L.append("")
    for name in names:
        r = sides[name]
        if "error" in r:
            got = ", ".join(r.get("steps_done", [])) or "none"
            L.append(f"- {side_label(name, r)} stopped: {r['error']} (steps done: {got}; "
                     f"{r.get('created_partitions', 0):,} partitions created, "
                     f"{r.get('produced_partitions', 0):,} produced to)"
                     + (f"; its log: `{r['broker_log']}`" if r.get("broker_log") else "") + ".")
    L += ["", "Notes on method. odradek answers CreateTopics once the partitions' logs exist on disk; "
          "Kafka's controller answers once the topic is in its metadata log, and the broker creates the "
          "logs afterwards (with the open-file limit reached, Kafka still lists with leaders partitions "
          "whose logs it could not create). One record per partition goes through a producer per topic: "
          "in a trial by hand with a single confluent-kafka producer for all 100 topics, odradek's event "
          "loop spent its time answering Metadata requests that named up to all the topics the producer "
          "knew (librdkafka asks again for its known topics as it meets new ones), each costing about "
          "the Metadata row above, and 50,962 of the 100,000 records timed out after 300 s "
          "(`message.timeout.ms`).", "", SECTION_END]
    return "\n".join(L)


def write_report(result: dict) -> None:
    cmp.write_section(REPORT, SECTION_BEGIN, SECTION_END, section(result))
    log(f"updated the scale section of {REPORT}")


if __name__ == "__main__":
    sys.exit(main())
