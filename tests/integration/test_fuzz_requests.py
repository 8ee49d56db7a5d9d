"""Seeded fuzzing of every served API over real sockets: valid headers with
random or mutated bodies. The broker must answer or close that connection,
and keep serving everyone else with its data intact."""

from __future__ import annotations

import random
import socket
import struct

from odradek.protocol.schema import codec
from odradek.server.registry import load_all
from tests.integration.rawclient import RawClient


def _send(port: int, frame: bytes) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        try:
            s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            pass
    finally:
        s.close()


def test_fuzzed_requests_leave_the_broker_serving(odradek_broker_fn):
    b = odradek_broker_fn
    b.create_topic("fuzz-keep", partitions=2)
    b.produce("fuzz-keep", [b"a", b"b", b"c"])
    port = int(b.bootstrap.rsplit(":", 1)[1])
    rng = random.Random(20261127)
    apis = load_all()
    for api in sorted(apis.values(), key=lambda a: a.key):
        for version in (api.min_version, api.max_version):
            flexible = api.is_flexible(version)
            header = bytearray()
            codec("RequestHeader", 2 if flexible else 1).encode(
                {"request_api_key": api.key, "request_api_version": version,
                 "correlation_id": 7, "client_id": "fuzz"}, header)
            # A default-valued body, then mutations of it, then noise.
            base = bytes(codec(api.name + "Request", version).encode({}))
            bodies = [base, b"", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))]
            for _ in range(6):
                m = bytearray(base + bytes(rng.getrandbits(8) for _ in range(8)))
                for _ in range(rng.randint(1, 4)):
                    m[rng.randrange(len(m))] = rng.getrandbits(8)
                bodies.append(bytes(m))
            for body in bodies:
                _send(port, bytes(header) + body)
    # Still serving, and the data is intact.
    c = RawClient(b.bootstrap)
    try:
        versions = c.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
        assert versions["error_code"] == 0
    finally:
        c.close()
    assert [r.value for r in b.records("fuzz-keep")] == [b"a", b"b", b"c"]
