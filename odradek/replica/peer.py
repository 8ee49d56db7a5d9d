"""A connection from this broker to another, for inter-broker requests.

One request at a time, framed with odradek's own codec
(``odradek.protocol.frames``), so a caller awaits each answer before it
sends the next; that is all a replica fetcher needs. Plaintext only: a
cluster's inter-broker listener must be a PLAINTEXT one until inter-broker
security is served (the broker refuses other settings at start).
"""

from __future__ import annotations

import asyncio
import struct

from odradek.protocol.frames import decode_response, encode_request

_SIZE = struct.Struct(">i")
MAX_RESPONSE = 256 * 1024 * 1024


class PeerConnection:
    def __init__(self, host: str, port: int, client_id: str, local_host: str | None = None):
        """``local_host``: the address to connect from (this broker's own, when
        it listens on one), so peers see, and firewall rules can match, it."""
        self.host = host
        self.port = port
        self.client_id = client_id
        self.local_host = local_host
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._correlation = 0

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self, timeout: float) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port,
                                    local_addr=(self.local_host, 0) if self.local_host else None), timeout)

    async def request(self, name: str, version: int, body: dict, timeout: float) -> dict:
        """Send one request and return its response body. Raises OSError,
        asyncio.TimeoutError or ValueError (a response that cannot be read);
        after any of them the connection is closed."""
        try:
            return await asyncio.wait_for(self._request(name, version, body), timeout)
        except BaseException:
            self.close()
            raise

    async def _request(self, name: str, version: int, body: dict) -> dict:
        if not self.connected:
            raise ConnectionError("not connected")
        self._correlation = (self._correlation + 1) & 0x7FFFFFFF
        self._writer.write(encode_request(name, version, body, self._correlation, self.client_id))
        await self._writer.drain()
        (size,) = _SIZE.unpack(await self._reader.readexactly(4))
        if not 4 <= size <= MAX_RESPONSE:
            raise ValueError(f"implausible response size {size} from {self.host}:{self.port}")
        correlation, response = decode_response(name, version, await self._reader.readexactly(size))
        if correlation != self._correlation:
            raise ValueError(f"correlation id {correlation}, expected {self._correlation}")
        return response

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
