"""``odradek serve`` keeps the memory of freed request frames for the next
ones (``odradek.server.serve.keep_freed_memory``): at glibc's defaults each
Produce frame of a few hundred KiB was mapped afresh and its pages faulted in,
90-300 page faults per MB produced, about a third of the broker's CPU."""

from __future__ import annotations

import platform
import socket
import struct
from pathlib import Path

import pytest

from odradek.protocol.frames import decode_response, encode_request
from odradek.protocol.records import build_batch

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    return bytes(buf)


def test_produce_frames_do_not_fault_their_pages_in_afresh(broker_process, monkeypatch):
    for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(k, raising=False)
    b = broker_process()
    port = b.port
    topic, partitions = "frames", 8
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(encode_request("CreateTopics", 4, {"topics": [
            {"name": topic, "num_partitions": partitions, "replication_factor": 1, "assignments": [],
             "configs": []}], "timeout_ms": 10_000, "validate_only": False}, 1, "t"))
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        _, resp = decode_response("CreateTopics", 4, recv_exact(s, size))
        assert resp["topics"][0]["error_code"] == 0, resp
    batch = build_batch([(None, b"v" * 1024, [], None)] * 64)
    frame = encode_request("Produce", 9, {"transactional_id": None, "acks": 1, "timeout_ms": 10_000,
                                          "topic_data": [{"name": topic, "partition_data": [
                                              {"index": q, "records": batch} for q in range(partitions)]}]},
                           2, "t")  # about 530 KB, as a batching producer sends to one broker

    def produce(requests: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            sent = got = 0
            while got < requests:
                while sent < requests and sent - got < 4:  # 4 in flight
                    s.sendall(frame)
                    sent += 1
                (size,) = struct.unpack(">i", recv_exact(s, 4))
                _, resp = decode_response("Produce", 9, recv_exact(s, size))
                assert all(p["error_code"] == 0 for t in resp["responses"] for p in t["partition_responses"])
                got += 1

    produce(40)  # warm-up: the heap grows to its working size
    f0 = minor_faults(b.proc.pid)
    produce(100)
    per_mb = (minor_faults(b.proc.pid) - f0) / (100 * len(frame) / 1e6)
    assert per_mb < 30, f"{per_mb:.0f} page faults per MB produced"
