"""Broker CPU of a long-polling Fetch woken by one record, for a consumer of
many partitions.

    python bench/fetch_woken.py [--partitions 1000] [--fetches 200] [--rounds 2] [--baseline DIR]

Starts ``python -m odradek serve --memory`` from this tree (and with
``--baseline DIR``, the odradek in DIR) with one topic of ``--partitions``
partitions. A raw consumer opens a fetch session (KIP-227) over all of them
at their end, then repeats: an incremental Fetch v12 (max_wait_ms 2000,
min_bytes 1) that waits, a Produce of one 100-byte record to a random
partition from a second connection while it waits, the Fetch's answer with
that record (the next Fetch sends that partition's new offset). Measured:
the broker process's CPU time (/proc) over ``--fetches`` such rounds,
divided by their number: per woken Fetch plus the one Produce that woke it.
With ``--idle``, no Produce: each Fetch waits out a max_wait_ms of 5 (the
CPU per Fetch that is never woken). The brokers take turns, ``--rounds``
times each, alternating.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
from broker_bench import free_port, wait_accepting  # noqa: E402

from odradek.protocol.frames import decode_response, encode_request  # noqa: E402
from odradek.protocol.records import build_batch  # noqa: E402

TOPIC = "woken"


class Conn:
    def __init__(self, addr: str):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.corr = 0

    def send(self, api: str, version: int, body: dict) -> None:
        self.corr += 1
        self.sock.sendall(encode_request(api, version, body, self.corr, "fetch-woken"))

    def receive(self, api: str, version: int) -> dict:
        size = struct.unpack(">i", self._recv(4))[0]
        return decode_response(api, version, self._recv(size))[1]

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return bytes(buf)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch_body(session_id: int, epoch: int, parts: dict[int, int], max_wait_ms: int) -> dict:
    return {"replica_id": -1, "max_wait_ms": max_wait_ms, "min_bytes": 1, "max_bytes": 50 << 20,
            "isolation_level": 0, "session_id": session_id, "session_epoch": epoch,
            "topics": [{"topic": TOPIC, "partitions": [
                {"partition": i, "current_leader_epoch": -1, "fetch_offset": off, "last_fetched_epoch": -1,
                 "log_start_offset": -1, "partition_max_bytes": 1 << 20} for i, off in parts.items()]}]
            if parts else [], "forgotten_topics_data": [], "rack_id": ""}


class Side:
    def __init__(self, name: str, root: str, partitions: int):
        self.name, self.partitions = name, partitions
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "odradek", "serve", "--memory", "--port", str(port), "--log-level", "WARNING"],
            cwd=root, env=dict(os.environ, PYTHONPATH=root))
        wait_accepting(port, time.perf_counter(), self.proc)
        self.addr = f"127.0.0.1:{port}"
        admin = Conn(self.addr)
        admin.send("CreateTopics", 5, {"topics": [{"name": TOPIC, "num_partitions": partitions,
                                                   "replication_factor": 1}], "timeout_ms": 30000})
        assert admin.receive("CreateTopics", 5)["topics"][0]["error_code"] == 0
        self.consumer, self.producer = Conn(self.addr), Conn(self.addr)
        self.consumer.send("Fetch", 12, fetch_body(0, 0, {i: 0 for i in range(partitions)}, 0))
        answer = self.consumer.receive("Fetch", 12)
        assert answer["session_id"] != 0, "no fetch session"
        self.session, self.epoch, self.next = answer["session_id"], 1, {}

    def round(self, fetches: int, rng: random.Random, idle: bool = False) -> float:
        """Broker CPU ms per woken fetch (with its Produce), or per idle fetch."""
        cpu0 = cpu_seconds(self.proc.pid)
        for _ in range(fetches):
            self.consumer.send("Fetch", 12, fetch_body(self.session, self.epoch, self.next, 5 if idle else 2000))
            self.epoch += 1
            if idle:
                answer = self.consumer.receive("Fetch", 12)
                assert answer["error_code"] == 0 and not answer["responses"], answer
                self.next = {}
                continue
            time.sleep(0.003)  # the fetch is waiting
            k = rng.randrange(self.partitions)
            self.producer.send("Produce", 8, {"transactional_id": None, "acks": 1, "timeout_ms": 5000,
                                              "topic_data": [{"name": TOPIC, "partition_data": [
                                                  {"index": k, "records": build_batch(
                                                      [(None, b"x" * 100, [], int(time.time() * 1000))])}]}]})
            self.producer.receive("Produce", 8)
            answer = self.consumer.receive("Fetch", 12)
            assert answer["error_code"] == 0, answer
            self.next = {p["partition_index"]: p["high_watermark"]
                         for t in answer["responses"] for p in t["partitions"] if p["records"]}
            assert self.next, "woken without the record"
        return 1000 * (cpu_seconds(self.proc.pid) - cpu0) / fetches

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--fetches", type=int, default=200, help="per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline", help="an odradek tree to measure beside this one")
    ap.add_argument("--idle", action="store_true", help="no Produce: each Fetch waits out max_wait_ms=5")
    args = ap.parse_args()
    sides = []
    try:
        sides.append(Side("odradek", ROOT, args.partitions))
        if args.baseline:
            sides.append(Side("baseline", os.path.abspath(args.baseline), args.partitions))
        rng = random.Random(1)
        for s in sides:
            s.round(20, rng)  # warm-up
        ms = {s.name: [] for s in sides}
        for r in range(args.rounds):
            for s in (sides if r % 2 == 0 else sides[::-1]):
                ms[s.name].append(s.round(args.fetches, rng, args.idle))
        what = "idle fetches (max_wait_ms=5)" if args.idle else "woken fetches"
        print(f"{args.partitions} partitions, {args.rounds} rounds of {args.fetches} {what}; "
              f"load average {os.getloadavg()[0]:.2f}")
        print(f"| broker | CPU per {'idle Fetch' if args.idle else 'woken Fetch + its Produce'}, ms (median) "
              f"| rounds |")
        print("|---|---:|---|")
        for name, values in ms.items():
            print(f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    finally:
        for s in sides:
            s.stop()


if __name__ == "__main__":
    main()
