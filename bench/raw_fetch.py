"""How fast each broker serves Fetch, with a client that does no record work.

    python bench/raw_fetch.py [--repeat 3] [--mb 256]

The consume figures in docs/performance.md are bounded by the client: librdkafka
and the JVM consumer parse every record. This measures the broker side alone:
one partition of 1 KiB records is written with confluent-kafka, then a raw
socket client sends Fetch v12 requests (50 MB per response) built with
odradek's codec and only counts the response bytes (``recv_into`` a reused
buffer). Both brokers run in the same invocation, alternating, against the
sendfile() limit of this machine measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker_bench import OdradekProcess, create_topic, produce_throughput  # noqa: E402


def raw_fetch_mb_s(bootstrap: str, topic: str, total_bytes: int) -> float:
    from odradek.protocol.schema import codec

    host, port = bootstrap.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(64 * 1024 * 1024)
    view = memoryview(buf)
    offset = 0
    got = 0
    corr = 0
    req_codec = codec("FetchRequest", 12)
    resp_codec = codec("FetchResponse", 12)
    t0 = time.perf_counter()
    while got < total_bytes:
        corr += 1
        body = {"replica_id": -1, "max_wait_ms": 500, "min_bytes": 1, "max_bytes": 50_000_000,
                "isolation_level": 0, "session_id": 0, "session_epoch": -1,
                "topics": [{"topic": topic, "partitions": [
                    {"partition": 0, "fetch_offset": offset, "partition_max_bytes": 50_000_000}]}]}
        out = bytearray()
        codec("RequestHeader", 2).encode({"request_api_key": 1, "request_api_version": 12,
                                          "correlation_id": corr, "client_id": "raw-fetch"}, out)
        req_codec.encode(body, out)
        s.sendall(struct.pack(">i", len(out)) + out)
        # Read the 4-byte size, then the body into the reused buffer.
        n = 0
        while n < 4:
            n += s.recv_into(view[n:4])
        size = struct.unpack(">i", buf[:4])[0]
        n = 0
        while n < size:
            n += s.recv_into(view[n:size])
        got += size
        # Find where the next fetch starts: decode only the response's fixed
        # parts (the records field is the bulk and is sliced, not parsed).
        resp, _ = resp_codec.decode(view[:size], 5)
        part = resp["responses"][0]["partitions"][0]
        records = part["records"] or b""
        if not records:
            break
        # The last whole batch's next offset.
        pos = last = 0
        while pos + 61 <= len(records):
            blen = struct.unpack_from(">i", records, pos + 8)[0]
            if pos + 12 + blen > len(records):
                break
            last = struct.unpack_from(">q", records, pos)[0] + struct.unpack_from(">i", records, pos + 23)[0] + 1
            pos += 12 + blen
        offset = last
    dt = time.perf_counter() - t0
    s.close()
    return got / dt / 1e6


def sendfile_mb_s(size_mb: int = 256) -> float:
    import tempfile
    import threading

    with tempfile.NamedTemporaryFile() as f:
        f.write(os.urandom(1 << 20) * size_mb)
        f.flush()
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def drain():
            c, _ = srv.accept()
            b = bytearray(1 << 20)
            while c.recv_into(b):
                pass
            c.close()

        t = threading.Thread(target=drain)
        t.start()
        s = socket.create_connection(srv.getsockname())
        t0 = time.perf_counter()
        sent = 0
        total = size_mb << 20
        while sent < total:
            sent += os.sendfile(s.fileno(), f.fileno(), sent, total - sent)
        s.close()
        t.join()
        srv.close()
        return total / (time.perf_counter() - t0) / 1e6


def one(side: str, mb: int) -> float:
    records = mb * 1000
    if side == "odradek":
        with OdradekProcess() as o:
            return measure(o.bootstrap, records)
    from kafka_runtime import KafkaBroker

    with KafkaBroker() as k:
        return measure(k.bootstrap, records)


def measure(bootstrap: str, records: int) -> float:
    topic = f"raw-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic, 1)
    produce_throughput(bootstrap, topic, records, 1024, "1")
    raw_fetch_mb_s(bootstrap, topic, records * 1024)  # warm-up pass
    return raw_fetch_mb_s(bootstrap, topic, records * 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mb", type=int, default=256, help="MB of 1 KiB records to write and fetch")
    args = ap.parse_args()
    results = {"odradek": [], "kafka": [], "sendfile": []}
    for i in range(args.repeat):
        order = ["odradek", "kafka"] if i % 2 == 0 else ["kafka", "odradek"]
        for side in order:
            results[side].append(one(side, args.mb))
        results["sendfile"].append(sendfile_mb_s(args.mb))
        print(f"run {i + 1}: " + ", ".join(f"{k}={v[-1]:.0f} MB/s" for k, v in results.items()), file=sys.stderr)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{'':10} {'median MB/s':>12} {'min':>8} {'max':>8}")
    for k, v in results.items():
        print(f"{k:10} {med[k]:12.0f} {min(v):8.0f} {max(v):8.0f}")
    print(f"odradek/kafka {med['odradek'] / med['kafka']:.2f}; odradek/sendfile {med['odradek'] / med['sendfile']:.2f}")


if __name__ == "__main__":
    main()
