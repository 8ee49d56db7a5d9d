#!/usr/bin/env python3
"""Group formation: N consumers joining one group, odradek next to Apache Kafka.

    python bench/rebalance_bench.py              # 10 and 50 members, both protocols
    python bench/rebalance_bench.py --quick      # 10 members, 1 repetition

Each repetition starts a fresh odradek (disk mode) and a fresh single-node
Kafka (``kafka_runtime.KafkaBroker``), one after the other, the side that goes
first alternating between repetitions, both with
``group.initial.rebalance.delay.ms=0`` (``--initial-delay-ms``: Kafka's
default is 3000) and everything else at its default.
On each, for every (protocol, members) case, a new topic with twice as many
partitions as members, then ``compare.rebalance``: that many confluent-kafka
consumers, each polling in its own thread, subscribe to the topic in one new
group; timed from the first subscribe until every member holds partitions and
together they hold each partition exactly once. Before the cases, one
1-member group is formed on each broker, so the offsets topic exists, as on
any broker in use. *classic* is the JoinGroup /
SyncGroup protocol with librdkafka's defaults (eager range assignor);
*consumer* is KIP-848 (``group.protocol=consumer``), where the broker assigns
(its default ``uniform`` assignor) and members learn of changes at their
heartbeats (``group.consumer.heartbeat.interval.ms``, 5 s on both brokers).

Raw results go to ``bench/results/rebalance-latest.json`` (with a non-zero
delay, ``rebalance-delay<ms>-latest.json``); a section of
``docs/performance.md`` between this script's markers, one per delay, is
rewritten (``--no-report`` prints it instead).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import compare  # noqa: E402

def markers(delay_ms: int) -> tuple[str, str]:
    """This script's section of the report: one per initial delay measured."""
    tag = "rebalance_bench.py" + (f" delay={delay_ms}" if delay_ms else "")
    return f"<!-- {tag}: begin -->", f"<!-- {tag}: end -->"
PROTOCOLS = {"classic": {}, "consumer": {"group.protocol": "consumer"}}


def case_key(protocol: str, members: int) -> str:
    return f"{protocol}.{members}"


def one_side(side: str, cases: list[tuple[str, int]], timeout: float, props: dict) -> dict:
    ctx = compare.OdradekSide(props=props) if side == "odradek" else compare.KafkaSide(props=props)
    ctx.start()
    out: dict[str, dict] = {}
    try:
        # One group formed first, so that the offsets topic exists (a fresh
        # Kafka creates it on the first FindCoordinator and answers
        # COORDINATOR_NOT_AVAILABLE meanwhile, which librdkafka retries a
        # second later: every member would then join in step).
        compare.rebalance(ctx, 1, 1, timeout=timeout)
        for protocol, members in cases:
            key = case_key(protocol, members)
            try:
                out[key] = compare.rebalance(ctx, members, 2 * members, timeout=timeout,
                                             config=PROTOCOLS[protocol])
            except Exception as e:  # recorded, not hidden: the report lists it
                out[key] = {"error": f"{type(e).__name__}: {e}"}
            compare.log(f"{side} {key}: {out[key]}")
    finally:
        ctx.stop()
    return out


def stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def table(result: dict) -> list[str]:
    L = ["| protocol | members | partitions | odradek median (s) | min–max | Kafka median (s) | min–max "
         "| ratio | first member holds partitions, odradek / Kafka (s) | failures |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for protocol, members in result["cases"]:
        key = case_key(protocol, members)
        s = {side: stats([r[side][key]["rebalance.s"] for r in result["repetitions"]
                          if "rebalance.s" in r[side].get(key, {})]) for side in compare.SIDES}
        first = {side: stats([r[side][key]["rebalance.first_s"] for r in result["repetitions"]
                              if "rebalance.first_s" in r[side].get(key, {})]) for side in compare.SIDES}
        fails = [f"{side} rep {i + 1}: {r[side][key]['error'][:80]}"
                 for i, r in enumerate(result["repetitions"]) for side in compare.SIDES
                 if "error" in r[side].get(key, {})]
        o, k = s["odradek"], s["kafka"]
        ratio = f"{o['median'] / k['median']:.2f}" if o and k and k["median"] else "–"
        if o and k and o["min"] <= k["max"] and k["min"] <= o["max"]:
            ratio += " ~"
        fmt = lambda x: f"{x['median']:.3f}" if x else "–"  # noqa: E731
        rng = lambda x: f"{x['min']:.3f}–{x['max']:.3f}" if x else "–"  # noqa: E731
        L.append(f"| {protocol} | {members} | {2 * members} | {fmt(o)} | {rng(o)} | {fmt(k)} | {rng(k)} "
                 f"| {ratio} | {fmt(first['odradek'])} / {fmt(first['kafka'])} | {'; '.join(fails) or 'none'} |")
    return L


def section(result: dict) -> str:
    env = result["environment"]
    delay = int(result.get("broker_props", {}).get("group.initial.rebalance.delay.ms", 0))
    begin, end = markers(delay)
    title = "## Group formation: " + ", ".join(str(m) for m in sorted({m for _, m in result["cases"]})) + \
        " members, " + " and ".join(sorted({p for p, _ in result["cases"]}))
    L = [begin, "", title + f" (group.initial.rebalance.delay.ms={delay})", "",
         f"Measured by `{result['command']}` on {result['started']} (odradek commit `{env['git_commit']}`, "
         f"Apache Kafka {env['kafka_version']}, confluent-kafka {env['confluent_kafka']} / librdkafka "
         f"{env['librdkafka']}; load average before the run {env['loadavg']}), {result['repetitions_n']} "
         f"repetitions, both brokers with `group.initial.rebalance.delay.ms={delay}`, same machine and caveats "
         "as above. Method: `bench/rebalance_bench.py` (its docstring); seconds from the first subscribe until "
         "every member holds partitions and together they hold each partition once; ~: the two sides' ranges "
         "overlap.", ""]
    L += table(result)
    L += ["", end]
    return "\n".join(L)


def environment() -> dict:
    import confluent_kafka

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"git_commit": git("rev-parse", "--short", "HEAD"),
            "kafka_version": compare.kr.fetch(quiet=True).version,
            "confluent_kafka": confluent_kafka.version(), "librdkafka": confluent_kafka.libversion()[0],
            "loadavg": ", ".join(f"{x:.2f}" for x in __import__("os").getloadavg())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 members only, 1 repetition")
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--members", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--protocols", nargs="+", choices=sorted(PROTOCOLS), default=["classic", "consumer"])
    ap.add_argument("--initial-delay-ms", type=int, default=0,
                    help="group.initial.rebalance.delay.ms on both brokers (Kafka's default: 3000)")
    ap.add_argument("--timeout", type=float, default=120.0, help="per case, seconds")
    compare.add_section_args(ap, json_help="default: bench/results/rebalance[-delay<ms>]-latest.json")
    args = ap.parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        result["cases"] = [tuple(c) for c in result["cases"]]
        return report(result, args)
    if args.quick:
        args.repetitions, args.members = 1, [10]
    cases = [(p, m) for p in args.protocols for m in args.members]
    args.json = args.json or str(BENCH / "results" / ("rebalance" + (
        f"-delay{args.initial_delay_ms}" if args.initial_delay_ms else "") + "-latest.json"))
    props = {"group.initial.rebalance.delay.ms": str(args.initial_delay_ms)}
    result = {"command": "python bench/rebalance_bench.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
              "started": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "environment": environment(), "cases": cases, "broker_props": props, "repetitions_n": args.repetitions,
              "repetitions": []}
    for rep in range(args.repetitions):
        order = compare.SIDES if rep % 2 == 0 else tuple(reversed(compare.SIDES))
        result["repetitions"].append({side: one_side(side, cases, args.timeout, props) for side in order})
    Path(args.json).write_text(json.dumps(result, indent=1))
    return report(result, args)


def report(result: dict, args) -> int:
    text = section(result)
    if not args.no_report:
        delay = int(result.get("broker_props", {}).get("group.initial.rebalance.delay.ms", 0))
        compare.write_section(Path(args.report), *markers(delay), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
