"""A minimal Kafka request/response over a socket, using odradek's own codec."""

from __future__ import annotations

import socket
import struct

from odradek.protocol.schema import codec, read_tags
from odradek.server.registry import load_all


class RawClient:
    def __init__(self, bootstrap: str):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.correlation = 0
        self.apis = load_all()

    def request(self, name: str, version: int, body: dict) -> dict:
        api = next(a for a in self.apis.values() if a.name == name)
        flexible = api.is_flexible(version)
        self.correlation += 1
        out = bytearray()
        codec("RequestHeader", 2 if flexible else 1).encode(
            {"request_api_key": api.key, "request_api_version": version,
             "correlation_id": self.correlation, "client_id": "raw"}, out)
        codec(name + "Request", version).encode(body, out)
        self.sock.sendall(struct.pack(">i", len(out)) + out)
        size = struct.unpack(">i", self._recv(4))[0]
        data = self._recv(size)
        corr = struct.unpack(">i", data[:4])[0]
        assert corr == self.correlation
        pos = 4
        if flexible and name != "ApiVersions":
            _, _, pos = read_tags(data, pos, {})  # response header v1
        return codec(name + "Response", version).decode(data, pos)[0]

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def close(self):
        self.sock.close()
