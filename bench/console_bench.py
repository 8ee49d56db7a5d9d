"""How long the console's first page takes with many topics.

    python bench/console_bench.py [--topics 1000] [--partitions 1] [--requests 30]

Starts an in-memory broker with its HTTP listener, creates the topics (one
CreateTopics request), then fetches each page the given number of times over
HTTP and prints, per page, the median and 95th percentile of the server's
own time (the ``Server-Timing`` header the console sets: its wall time, the
Kafka requests and the rendering on the broker's event loop, and that
thread's CPU time meanwhile) and of the whole request as the client saw it.
Nothing is asserted; it only measures.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import statistics
import time


def timings(address, path: str, n: int) -> tuple[list[float], list[float], list[float]]:
    server, cpu, total = [], [], []
    conn = http.client.HTTPConnection(*address, timeout=30)
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        total.append((time.perf_counter() - t0) * 1000)
        assert resp.status == 200, (path, resp.status)
        timing = dict(part.strip().split(";dur=") for part in resp.getheader("server-timing").split(","))
        server.append(float(timing["app"]))
        cpu.append(float(timing["cpu"]))
    conn.close()
    return server, cpu, total


def create_topics(bootstrap: str, count: int, partitions: int) -> None:
    from odradek.console.client import ClusterClient

    async def go():
        host, port = bootstrap.rsplit(":", 1)
        client = ClusterClient([(host, int(port))])
        r = await client.any_broker("CreateTopics", {
            "topics": [{"name": f"topic-{i:04d}", "num_partitions": partitions, "replication_factor": -1}
                       for i in range(count)], "timeout_ms": 60000, "validate_only": False}, timeout=120)
        assert all(t["error_code"] == 0 for t in r["topics"]), r["topics"][:3]
        client.close()

    asyncio.run(go())


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--requests", type=int, default=30)
    args = ap.parse_args()
    import odradek

    with odradek.Broker(config={"http.listener": "127.0.0.1:0"}) as broker:
        create_topics(broker.bootstrap, args.topics, args.partitions)
        timings(broker.http_address, "/", 3)  # warm: templates compiled, connections open
        print(f"{args.topics} topics x {args.partitions} partition(s), {args.requests} requests per page")
        for path in ("/", "/topics", "/topics/topic-0000", "/groups"):
            server, cpu, total = timings(broker.http_address, path, args.requests)
            print(f"{path:20s} server median {statistics.median(server):6.1f} ms p95 {pct(server, .95):6.1f} ms"
                  f"  CPU median {statistics.median(cpu):6.1f} ms"
                  f"  request median {statistics.median(total):6.1f} ms p95 {pct(total, .95):6.1f} ms")


if __name__ == "__main__":
    main()
