#!/usr/bin/env python3
"""Consume throughput with confluent-kafka, odradek next to Apache Kafka.

    python bench/consume_bench.py               # 3 repetitions, 2 reads per topic each
    python bench/consume_bench.py --quick       # 1 repetition, small topics

The consume rows of ``bench/compare.py`` alone, for a quicker look. Each
repetition starts a fresh odradek (disk mode) and a fresh single-node Kafka,
one after the other, the side that goes first alternating; on each, a 1- and
an 8-partition topic are written with ``broker_bench.produce_throughput``
(1 KiB records, acks=1), and each is read back from offset 0 by
``broker_bench.consume_throughput`` (``assign()``, fetch.max.bytes 50 MB,
max.partition.fetch.bytes 10 MB, a 1 GiB local queue and a 10 ms queue
backoff: at librdkafka's 64 MiB and 1 s a consumer paused for a second in
some runs and not others), twice. MB/s of record values, as in compare.py.

Raw results go to ``bench/results/consume-latest.json``; a section of
``docs/performance.md`` between this script's markers is rewritten
(``--no-report`` prints it instead).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import broker_bench as bb  # noqa: E402
import compare  # noqa: E402

BEGIN, END = "<!-- consume_bench.py: begin -->", "<!-- consume_bench.py: end -->"
PARTITIONS = (1, 8)
SIZE = 1024


def one_side(side: str, records: int, reads: int) -> dict:
    ctx = compare.OdradekSide() if side == "odradek" else compare.KafkaSide()
    ctx.start()
    out: dict[str, list[float]] = {}
    try:
        for parts in PARTITIONS:
            topic = compare.new_topic(ctx, f"consume{parts}", parts)
            bb.produce_throughput(ctx.bootstrap, topic, records, SIZE, "1")
            for _ in range(reads):
                r = bb.consume_throughput(ctx.bootstrap, topic, parts, records, SIZE)
                if r["records"] < records:
                    raise RuntimeError(f"{side}: read {r['records']} of {records} records")
                out.setdefault(str(parts), []).append(r["mb_per_sec"])
                compare.log(f"{side} {parts}p: {r['mb_per_sec']:.0f} MB/s")
    finally:
        ctx.stop()
    return out


def section(result: dict) -> str:
    env = result["environment"]
    L = [BEGIN, "", "## Consume with confluent-kafka, the client's queue made large", "",
         f"Measured by `{result['command']}` on {result['started']} (odradek commit `{env['git_commit']}`, "
         f"Apache Kafka {env['kafka_version']}, confluent-kafka {env['confluent_kafka']} / librdkafka "
         f"{env['librdkafka']}; load average before the run {env['loadavg']}); {result['repetitions']} "
         f"repetitions, {result['reads']} reads of each topic in each, {result['records']:,} records of 1 KiB. "
         "Method: `bench/consume_bench.py` (its docstring). The consume rows of the table at the top of "
         "this page were measured with librdkafka's defaults for its local queue (64 MiB, 1 s backoff), "
         "under which a consumer stops fetching a partition for a second when its queue fills (seen in "
         "`bench/cluster_bench.py`'s scaling loads); their ranges were about 100 to 550 MB/s on both "
         "brokers.", "",
         "| partitions | odradek MB/s median | min–max | Kafka MB/s median | min–max | ratio |",
         "|---:|---:|---:|---:|---:|---:|"]
    for parts in PARTITIONS:
        o = [v for r in result["runs"] for v in r["odradek"].get(str(parts), [])]
        k = [v for r in result["runs"] for v in r["kafka"].get(str(parts), [])]
        if not o or not k:
            continue
        om, km = statistics.median(o), statistics.median(k)
        overlap = min(o) <= max(k) and min(k) <= max(o)
        L.append(f"| {parts} | {om:,.0f} | {min(o):,.0f}–{max(o):,.0f} | {km:,.0f} | {min(k):,.0f}–{max(k):,.0f} "
                 f"| {om / km:.2f}{' ~' if overlap else ''} |")
    L += ["", END]
    return "\n".join(L)


def environment() -> dict:
    import confluent_kafka

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return {"git_commit": commit, "kafka_version": compare.kr.fetch(quiet=True).version,
            "confluent_kafka": confluent_kafka.version(), "librdkafka": confluent_kafka.libversion()[0],
            "loadavg": ", ".join(f"{x:.2f}" for x in os.getloadavg())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repetition of 20,000 records")
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--reads", type=int, default=2, help="reads of each topic per repetition")
    ap.add_argument("--records", type=int, default=200_000)
    compare.add_section_args(ap, str(BENCH / "results" / "consume-latest.json"))
    args = ap.parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
    else:
        if args.quick:
            args.repetitions, args.records = 1, 20_000
        result = {"command": "python bench/consume_bench.py" + "".join(" " + a for a in (argv or sys.argv[1:])),
                  "started": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  "environment": environment(), "repetitions": args.repetitions, "reads": args.reads,
                  "records": args.records, "runs": []}
        for rep in range(args.repetitions):
            order = compare.SIDES if rep % 2 == 0 else tuple(reversed(compare.SIDES))
            result["runs"].append({side: one_side(side, args.records, args.reads) for side in order})
        Path(args.json).write_text(json.dumps(result, indent=1))
    text = section(result)
    if not args.no_report:
        compare.write_section(Path(args.report), BEGIN, END, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
