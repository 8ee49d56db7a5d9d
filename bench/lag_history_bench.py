"""What the broker's lag history costs (``odradek/lag_history.py``).

    python bench/lag_history_bench.py [--groups 1000] [--partitions 20]

Starts an in-memory broker (its own sampling off), creates a topic of
``--partitions`` partitions with a few records each, commits offset 0 on
every partition for ``--groups`` groups (so every partition lags and its
lag in time needs a batch-header read), then runs sampling passes on the
broker's loop and prints, per pass: the wall and CPU time, the longest
step between two yields to the event loop, and the memory the rings hold.
Nothing is asserted; it only measures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=20)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()

    import odradek
    from odradek.console.client import ClusterClient
    from odradek.lag_history import LagHistory

    with odradek.Broker(config={"http.listener": "127.0.0.1:0", "http.lag.history.interval.ms": "0",
                                "offsets.topic.num.partitions": "4"}) as b:
        host, port = b.bootstrap.rsplit(":", 1)

        async def setup():
            client = ClusterClient([(host, int(port))])
            await client.create_topic("lagging", args.partitions, -1, {})
            for p in range(args.partitions):
                await client.produce("lagging", p, None, b"x" * 100, [])
            t0 = time.perf_counter()
            for g in range(args.groups):
                await client.commit(f"group-{g:05d}", {("lagging", p): 0 for p in range(args.partitions)})
            client.close()
            return time.perf_counter() - t0

        took = asyncio.run(setup())
        print(f"{args.groups} groups x {args.partitions} partitions committed in {took:.1f} s")
        history = LagHistory()
        for i in range(args.passes):
            c0 = history.cpu_seconds
            history.longest_slice = 0.0
            t0 = time.perf_counter()
            b.call(history.sample, b.core)
            wall = time.perf_counter() - t0
            ring_bytes = sum(sys.getsizeof(r.at) + sys.getsizeof(r.lag) + sys.getsizeof(r.secs) + sys.getsizeof(r)
                             for r in history.rings.values())
            print(f"pass {i + 1}: wall {wall * 1000:.1f} ms, cpu {(history.cpu_seconds - c0) * 1000:.1f} ms, "
                  f"longest step {history.longest_slice * 1000:.2f} ms, groups kept {len(history.rings)}, "
                  f"rings {ring_bytes / 1024:.0f} KiB, stamps cached {len(history.stamps)}")


if __name__ == "__main__":
    main()
