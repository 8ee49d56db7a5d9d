"""What per-request accounting costs: the dispatch path of one connection
(``KafkaConnection.handle``: decode, handler, encode), timed in process on an
in-memory broker, for a tree with the accounting and one without.

    python bench/dispatch_overhead.py --with . --without /path/to/older/tree [--rounds 7]

Each round runs both trees one after the other, in fresh processes (so the
machine's noise falls on both alike), and prints the median time per request
of each API measured, then the medians over the rounds and their difference.
Nothing is asserted; it only measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import asyncio, json, sys, time
from odradek.broker import BrokerCore
from odradek.config import BrokerConfig
from odradek.protocol.frames import encode_request
from odradek.protocol.records import build_batch
from odradek.server.connection import KafkaConnection
from odradek.server.registry import load_all

N = int(sys.argv[1])

class Transport:
    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1) if name == "peername" else default
    def write(self, data): pass
    def writelines(self, data): pass
    def abort(self): pass
    def close(self): pass
    def pause_reading(self): pass
    def resume_reading(self): pass

async def main():
    load_all()
    broker = BrokerCore(BrokerConfig(node_id=1, host="127.0.0.1", port=0, data_dir=None, props={}))
    await broker.load()
    broker.endpoints = {"PLAINTEXT": ("127.0.0.1", 9092)}  # not listening: nothing is sent
    conn = KafkaConnection(broker)
    conn.connection_made(Transport())
    frames = {
        "ApiVersions": encode_request("ApiVersions", 3, {"client_software_name": "b",
                                      "client_software_version": "1"}, 1, "bench")[4:],
        "Metadata": encode_request("Metadata", 12, {"topics": [], "allow_auto_topic_creation": False,
                                   "include_topic_authorized_operations": False}, 1, "bench")[4:],
        "Produce": encode_request("Produce", 9, {"transactional_id": None, "acks": 1, "timeout_ms": 1000,
                                  "topic_data": [{"name": "bench", "partition_data": [
                                      {"index": 0, "records": build_batch([(b"k", b"v" * 100, [], None)])}]}]},
                                  1, "bench")[4:],
    }
    out = {}
    for name, frame in frames.items():
        for _ in range(2000):  # warm up
            await conn.handle(bytearray(frame))
        samples = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(N):
                await conn.handle(bytearray(frame))
            samples.append((time.perf_counter() - t0) / N * 1e6)
        out[name] = min(samples)
    print(json.dumps(out))

asyncio.run(main())
"""


def run(tree: str, n: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))  # -P: not the working directory
    out = subprocess.run([sys.executable, "-P", "-c", CHILD, str(n)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--with", dest="with_", default=".")
    ap.add_argument("--without", required=True)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--requests", type=int, default=20000)
    args = ap.parse_args()
    runs = {"with": [], "without": []}
    for r in range(args.rounds):
        runs["without"].append(run(args.without, args.requests))
        runs["with"].append(run(args.with_, args.requests))
        print(f"round {r + 1}: without {runs['without'][-1]}  with {runs['with'][-1]}", flush=True)
    for api in runs["with"][0]:
        a = statistics.median(x[api] for x in runs["without"])
        b = statistics.median(x[api] for x in runs["with"])
        print(f"{api}: without {a:.2f} us/request, with {b:.2f} us/request, "
              f"difference {b - a:+.2f} us ({(b - a) / a * 100:+.1f}%) over {args.rounds} rounds")


if __name__ == "__main__":
    main()
