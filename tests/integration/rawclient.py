"""A minimal Kafka request/response over a socket, using odradek's own codec."""

from __future__ import annotations

import socket
import struct

from odradek.protocol.frames import decode_response, encode_request


class RawClient:
    def __init__(self, bootstrap: str):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.correlation = 0

    def request(self, name: str, version: int, body: dict) -> dict:
        self.correlation += 1
        self.sock.sendall(encode_request(name, version, body, self.correlation, "raw"))
        size = struct.unpack(">i", self._recv(4))[0]
        corr, response = decode_response(name, version, self._recv(size))
        assert corr == self.correlation
        return response

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
