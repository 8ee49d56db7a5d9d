"""What TLS costs, odradek beside Apache Kafka in the same run.

    python bench/tls_bench.py [--repeat 3] [--records 50000] [--size 1024] [--no-kafka]

Each broker serves a PLAINTEXT and an SSL listener at once (a PEM keystore
made here: a test CA and a certificate for 127.0.0.1; host names checked by
the client). For each repetition, in turn on each broker and listener,
confluent-kafka produces ``--records`` records of ``--size`` bytes (acks=1,
one partition, a fresh topic) and a consumer reads them back from offset 0.
Prints medians (min-max) in MB/s and the SSL/PLAINTEXT ratio per broker, and
writes bench/results/tls-latest.json. Nothing is asserted; it only measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]

from broker_bench import (OdradekProcess, consume_throughput, create_topic, free_port,  # noqa: E402
                          produce_throughput)
from tests.integration.certs import make_pki  # noqa: E402


def run_one(bootstrap: str, client: dict, args, label: str) -> dict:
    topic = f"tls-{label}-{time.monotonic_ns()}"
    create_topic(bootstrap, topic, 1, client)
    produced = produce_throughput(bootstrap, topic, args.records, args.size, "1", client=client)
    consumed = consume_throughput(bootstrap, topic, 1, args.records, args.size, client=client)
    return {"produce": produced["mb_per_sec"], "consume": consumed["mb_per_sec"]}


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--no-kafka", action="store_true", help="odradek only")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="tls-bench-")
    pki = make_pki(Path(tmp.name) / "pki")
    server = pki.issue("server", "CN=localhost", server=True)
    ssl_client = {"security.protocol": "SSL", "ssl.ca.location": pki.ca_file}

    brokers = {}
    ssl_port = free_port()
    odr = OdradekProcess(props={
        "listeners": f"PLAINTEXT://127.0.0.1:{{port}},SSL://127.0.0.1:{ssl_port}",
        "ssl.keystore.type": "PEM", "ssl.keystore.location": server["pem"]})
    odr.props["listeners"] = odr.props["listeners"].format(port=odr.port)
    brokers["odradek"] = (odr, ssl_port)
    if not args.no_kafka:
        import kafka_runtime

        kport, kssl, kctl = free_port(), free_port(), free_port()
        kafka = kafka_runtime.KafkaBroker(heap="1G", port=kport, controller_port=kctl, config={
            "listeners": f"PLAINTEXT://127.0.0.1:{kport},SSL://127.0.0.1:{kssl},CONTROLLER://127.0.0.1:{kctl}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{kport},SSL://127.0.0.1:{kssl}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,CONTROLLER:PLAINTEXT",
            "ssl.keystore.type": "PEM", "ssl.keystore.location": server["pem"]})
        brokers["kafka"] = (kafka, kssl)

    results: dict = {name: {"PLAINTEXT": [], "SSL": []} for name in brokers}
    started = []
    try:
        for name, (b, _) in brokers.items():
            b.__enter__() if name == "odradek" else b.start()
            started.append((name, b))
        for rep in range(args.repeat):
            for name, (b, ssl_p) in brokers.items():
                plain = b.bootstrap
                for listener, bootstrap, client in (("PLAINTEXT", plain, {}),
                                                    ("SSL", f"127.0.0.1:{ssl_p}", ssl_client)):
                    r = run_one(bootstrap, client, args, f"{name}-{listener}-{rep}")
                    results[name][listener].append(r)
                    print(f"rep {rep + 1} {name:8} {listener:9} produce {r['produce']:7.1f} MB/s  "
                          f"consume {r['consume']:7.1f} MB/s", flush=True)
    finally:
        for name, b in started:
            b.__exit__(None, None, None) if name == "odradek" else b.stop()

    out = {"records": args.records, "size": args.size, "repeat": args.repeat, "brokers": {}}
    print(f"\n| broker | listener | produce MB/s | consume MB/s |\n|---|---|---|---|")
    for name in brokers:
        out["brokers"][name] = {}
        for listener in ("PLAINTEXT", "SSL"):
            runs = results[name][listener]
            s = {k: summary([r[k] for r in runs]) for k in ("produce", "consume")}
            out["brokers"][name][listener] = s
            print(f"| {name} | {listener} | {s['produce']['median']:.1f} ({s['produce']['min']:.1f}-"
                  f"{s['produce']['max']:.1f}) | {s['consume']['median']:.1f} ({s['consume']['min']:.1f}-"
                  f"{s['consume']['max']:.1f}) |")
        for k in ("produce", "consume"):
            ratio = out["brokers"][name]["SSL"][k]["median"] / out["brokers"][name]["PLAINTEXT"][k]["median"]
            out["brokers"][name][f"ssl_ratio_{k}"] = ratio
        print(f"| {name} | SSL / PLAINTEXT | {out['brokers'][name]['ssl_ratio_produce']:.2f} | "
              f"{out['brokers'][name]['ssl_ratio_consume']:.2f} |")
    path = os.path.join(ROOT, "bench", "results", "tls-latest.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
