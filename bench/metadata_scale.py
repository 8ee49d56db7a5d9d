"""One Metadata request for many partitions, odradek beside Apache Kafka.

    python bench/metadata_scale.py [--topics 10] [--partitions 1000] [--requests 5]
                                   [--rounds 3] [--version 12] [--baseline DIR] [--kafka]

Starts ``python -m odradek serve --memory`` from this tree, and with
``--baseline DIR`` the odradek in DIR (say, ``git archive`` of an older
commit), and with ``--kafka`` a single-node Apache Kafka
(bench/kafka_runtime.py); creates ``--topics`` topics of ``--partitions``
partitions on each, waits until a Metadata request lists all of them with a
leader, then times raw Metadata requests (topics: null, all of them) over
one connection per broker: from sending the request to the last byte of the
answer. Each round visits the brokers in turn (the order rotating between
rounds) and takes one warm-up request and then ``--requests`` timed ones;
reported: the median of all timed requests per broker, with min and max.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import compare  # noqa: E402
from broker_bench import free_port, wait_accepting  # noqa: E402

from odradek.protocol.frames import decode_response, encode_request  # noqa: E402


class Probe(compare.MetadataProbe):
    """compare.py's probe, asking with Metadata at ``version`` (the codec's encoding)."""

    def __init__(self, bootstrap: str, version: int):
        super().__init__(bootstrap)
        self.version = version

    def _request(self) -> bytes:
        self.corr += 1
        return encode_request("Metadata", self.version, {"topics": None, "allow_auto_topic_creation": False},
                              self.corr, "metadata-scale")

    def led(self, data: bytes) -> int:
        """Partitions listed with a leader and no error."""
        _, body = decode_response("Metadata", self.version, data)
        return sum(1 for t in body["topics"] for p in t["partitions"]
                   if p["error_code"] == 0 and p["leader_id"] >= 0)


def start_odradek(root: str):
    port = free_port()
    cmd = [sys.executable, "-m", "odradek", "serve", "--memory", "--port", str(port), "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, cwd=root, env=dict(os.environ, PYTHONPATH=root))
    wait_accepting(port, time.perf_counter(), proc)
    return proc, f"127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--topics", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=1000, help="per topic")
    ap.add_argument("--requests", type=int, default=5, help="timed requests per broker and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--version", type=int, default=12, help="Metadata version (4-12: Kafka 4 serves 0-13)")
    ap.add_argument("--baseline", help="an odradek tree to measure beside this one")
    ap.add_argument("--kafka", action="store_true", help="measure Apache Kafka too")
    args = ap.parse_args()

    from kafka_runtime import KafkaBroker, create_topic

    sides, stops = {}, []
    try:
        proc, boot = start_odradek(ROOT)
        stops.append(lambda p=proc: (p.terminate(), p.wait(15)))
        sides["odradek"] = boot
        if args.baseline:
            proc, boot = start_odradek(os.path.abspath(args.baseline))
            stops.append(lambda p=proc: (p.terminate(), p.wait(15)))
            sides["baseline"] = boot
        if args.kafka:
            kafka = KafkaBroker(heap="1G").start()
            stops.append(kafka.stop)
            sides["kafka"] = kafka.bootstrap
        want = args.topics * args.partitions
        probes = {}
        for name, boot in sides.items():
            t0 = time.perf_counter()
            for k in range(args.topics):
                create_topic(boot, f"scale{k}-{uuid.uuid4().hex[:6]}", partitions=args.partitions, timeout=300)
            probe = probes[name] = Probe(boot, args.version)
            deadline = time.monotonic() + 600
            while probe.led(probe.timed()[1]) < want:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: not all {want} partitions led after 600 s")
                time.sleep(0.2)
            print(f"{name}: {want} partitions listed with leaders {time.perf_counter() - t0:.1f} s after "
                  f"the first create", flush=True)
        samples = {name: [] for name in sides}
        sizes = {}
        names = list(sides)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                probe = probes[name]
                probe.timed()  # warm-up
                for _ in range(args.requests):
                    seconds, data = probe.timed()
                    samples[name].append(seconds * 1000)
                    sizes[name] = len(data)
        print(f"\nMetadata v{args.version}, all of {args.topics} topics x {args.partitions} partitions, "
              f"{args.rounds} rounds x {args.requests} requests; load average {os.getloadavg()[0]:.2f}")
        print("| broker | median ms | min-max ms | answer bytes |")
        print("|---|---:|---:|---:|")
        for name, ms in samples.items():
            print(f"| {name} | {statistics.median(ms):.1f} | {min(ms):.1f}-{max(ms):.1f} | {sizes[name]:,} |")
    finally:
        for stop in reversed(stops):
            try:
                stop()
            except Exception as e:  # keep stopping the others
                print(f"stopping: {e}", file=sys.stderr)


if __name__ == "__main__":
    main()
