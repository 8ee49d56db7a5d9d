"""Start-up time and idle memory of odradek, in-process and standalone.

    python bench/startup_memory.py [--repeat 10]

- standalone: `python -m odradek serve` as a child process; start-up is the
  time from spawning it until its port accepts a TCP connection (interpreter
  start and imports included); idle RSS is read from /proc after 2 s idle.
- in-process: a fresh interpreter runs `import odradek; odradek.Broker().start()`;
  start-up is measured inside it from before the import until the broker
  accepts connections; idle RSS is the whole interpreter's, with the RSS of a
  bare interpreter (before the import) shown beside it.
Prints medians with min and max over the repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker_bench import ROOT, free_port, wait_accepting  # noqa: E402

SAVED = os.path.join(ROOT, "bench", "results", "startup-latest.md")

IN_PROCESS = r"""
import json, os, socket, time
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
bare = rss_mb()
t0 = time.perf_counter()
import odradek
b = odradek.Broker().start()
host, port = b.bootstrap.rsplit(":", 1)
socket.create_connection((host, int(port))).close()
startup = time.perf_counter() - t0
time.sleep(2)
print(json.dumps({"startup_s": startup, "idle_rss_mb": rss_mb(), "bare_interpreter_rss_mb": bare}))
b.stop()
"""


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def standalone(memory: bool) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        args = [sys.executable, "-m", "odradek", "serve", "--port", str(port), "--data-dir", d,
                "--log-level", "WARNING"] + (["--memory"] if memory else [])
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, cwd=ROOT)
        try:
            startup = wait_accepting(port, t0, proc)
            time.sleep(2)
            return {"startup_s": startup, "idle_rss_mb": rss_mb(proc.pid)}
        finally:
            proc.terminate()
            proc.wait(20)


def in_process() -> dict:
    out = subprocess.run([sys.executable, "-c", IN_PROCESS], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--save", action="store_true",
                    help=f"write the table to {os.path.relpath(SAVED, ROOT)} for docs/performance.md")
    args = ap.parse_args()
    kinds = {"standalone (disk)": lambda: standalone(False),
             "standalone (--memory)": lambda: standalone(True),
             "in-process odradek.Broker()": in_process}
    results = {k: [] for k in kinds}
    for _ in range(args.repeat):
        for name, fn in kinds.items():  # interleaved, so drift hits all alike
            results[name].append(fn())
    rows = []
    for name, runs in results.items():
        for key in runs[0]:
            vals = [r[key] for r in runs]
            unit = 1000 if key.endswith("_s") else 1
            label = key.replace("_s", "_ms") if key.endswith("_s") else key
            rows.append((name, label, statistics.median(vals) * unit, min(vals) * unit, max(vals) * unit))
    print(f"{'broker':30} {'metric':26} {'median':>8} {'min':>8} {'max':>8}")
    for name, label, med, lo, hi in rows:
        print(f"{name:30} {label:26} {med:8.1f} {lo:8.1f} {hi:8.1f}")
    if args.save:
        import datetime

        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip()
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines = [f"Measured by `python bench/startup_memory.py --repeat {args.repeat} --save` on {when}, "
                 f"commit `{commit}`; medians over the repetitions, interleaved.", "",
                 "| broker | metric | median | min | max |", "|---|---|---:|---:|---:|"]
        lines += [f"| {n} | {l} | {m:.1f} | {a:.1f} | {b:.1f} |" for n, l, m, a, b in rows]
        with open(SAVED, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"wrote {SAVED}")


if __name__ == "__main__":
    main()
