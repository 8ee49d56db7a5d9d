"""A connection from this broker to another, for inter-broker requests.

One request at a time, framed with odradek's own codec
(``odradek.protocol.frames``), so a caller awaits each answer before it
sends the next; that is all a replica fetcher needs. Over the inter-broker
listener's security (``odradek.security.config.InterBrokerClient``): TLS
with its truststore and keystore, then a SASL login (SaslHandshake v1 and
SaslAuthenticate v2; PLAIN, SCRAM or OAUTHBEARER with Kafka's unsecured
or client-credentials login) before any other request. When the other broker bounds the session
(KIP-368: its ``connections.max.reauth.ms``, or an OAUTHBEARER token's
expiry), the login is made again on the same connection, as Kafka's client
makes it, before the first request after 85-95% of the session lifetime.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time

from odradek.protocol.frames import decode_response, encode_request

_SIZE = struct.Struct(">i")
MAX_RESPONSE = 256 * 1024 * 1024


class AuthenticationError(Exception):
    """The other broker refused this broker's SASL login."""


class PeerConnection:
    def __init__(self, host: str, port: int, client_id: str, local_host: str | None = None, security=None):
        """``local_host``: the address to connect from (this broker's own, when
        it listens on one), so peers see, and firewall rules can match, it.
        ``security``: an ``InterBrokerClient`` (None: plaintext, no login)."""
        self.host = host
        self.port = port
        self.client_id = client_id
        self.local_host = local_host
        self.security = security
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._correlation = 0
        self.reauth_at: float | None = None  # monotonic time to log in again (KIP-368), if the peer bounds the session

    @property
    def connected(self) -> bool:
        """Open both ways: not closed here, nor ended by the other broker (which
        closes a connection idle for its connections.max.idle.ms)."""
        return self._writer is not None and not self._writer.is_closing() and not self._reader.at_eof()

    async def connect(self, timeout: float) -> None:
        """Connect, then log in if the listener wants SASL. Raises OSError,
        asyncio.TimeoutError, ssl.SSLError or AuthenticationError."""
        sec = self.security
        ctx = sec.ssl_context if sec is not None else None
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=ctx, server_hostname=self.host if ctx else None,
                                    local_addr=(self.local_host, 0) if self.local_host else None), timeout)
        if sec is not None and sec.mechanism is not None:
            await self._login(sec, timeout)

    async def _login(self, sec, timeout: float) -> None:
        self.reauth_at = None
        r = await self.request("SaslHandshake", 1, {"mechanism": sec.mechanism}, timeout)
        if r["error_code"]:
            self.close()
            raise AuthenticationError(f"SASL handshake for {sec.mechanism} refused (error {r['error_code']}; "
                                      f"the server offers {r['mechanisms']})")
        if sec.mechanism == "PLAIN":
            await self._authenticate(b"\0" + sec.username.encode() + b"\0" + sec.password.encode(), timeout)
            return
        if sec.mechanism == "OAUTHBEARER":
            from odradek.security.oauthbearer import LoginFailed

            try:
                first = await sec.oauth.initial_response()
            except LoginFailed as e:  # no token from the token endpoint
                self.close()
                raise AuthenticationError(f"OAUTHBEARER login: {e}") from None
            if await self._authenticate(first, timeout):
                # The token was refused: the server said why (RFC 7628's JSON); %x01 ends the exchange
                await self._authenticate(b"\x01", timeout)
                self.close()
                raise AuthenticationError("SASL login refused after an OAUTHBEARER error")
            return
        from scramp import ScramClient, ScramException

        scram = ScramClient([sec.mechanism], sec.username, sec.password)
        try:
            scram.set_server_first((await self._authenticate(scram.get_client_first().encode(), timeout)).decode())
            scram.set_server_final((await self._authenticate(scram.get_client_final().encode(), timeout)).decode())
        except ScramException as e:
            self.close()
            raise AuthenticationError(f"SCRAM login as {sec.username}: {e}") from None

    async def _authenticate(self, token: bytes, timeout: float) -> bytes:
        r = await self.request("SaslAuthenticate", 2, {"auth_bytes": token}, timeout)
        if r["error_code"]:
            self.close()
            raise AuthenticationError(f"SASL login refused: {r['error_message'] or r['error_code']}")
        if r["session_lifetime_ms"] > 0:
            self.reauth_at = time.monotonic() + r["session_lifetime_ms"] * random.uniform(0.85, 0.95) / 1000
        return r["auth_bytes"]

    async def request(self, name: str, version: int, body: dict, timeout: float) -> dict:
        """Send one request and return its response body. Raises OSError,
        asyncio.TimeoutError or ValueError (a response that cannot be read);
        after any of them the connection is closed. A login due again (KIP-368)
        is made first; raises AuthenticationError if it is refused."""
        if self.reauth_at is not None and time.monotonic() >= self.reauth_at and not name.startswith("Sasl"):
            await self._login(self.security, timeout)
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


class PeerClients:
    """This broker's connections to the others for inter-broker requests,
    over its inter-broker listener with its security: one request at a time
    per broker (each awaits the one before it); a connection that fails is
    dropped, and made again at the next request."""

    def __init__(self, broker, client_id: str, timeout_s: float = 10.0):
        self.broker = broker
        self.client_id = client_id
        self.timeout = timeout_s
        self.peers: dict[int, PeerConnection] = {}
        self.locks: dict[int, asyncio.Lock] = {}

    async def call(self, node: int, api: str, version: int, body: dict) -> dict:
        """One request to broker ``node``. Raises OSError,
        asyncio.TimeoutError, ValueError, ConnectionError or
        AuthenticationError (the connection is then dropped)."""
        lock = self.locks.setdefault(node, asyncio.Lock())
        async with lock:
            try:
                conn = await self._peer(node)
                return await conn.request(api, version, body, self.timeout)
            except BaseException:
                conn = self.peers.pop(node, None)
                if conn is not None:
                    conn.close()
                raise

    async def _peer(self, node: int) -> PeerConnection:
        conn = self.peers.get(node)
        if conn is not None and conn.connected:
            return conn
        broker = self.broker
        info = broker.image.brokers.get(node)
        endpoint = info.endpoint(getattr(broker, "inter_broker_listener", None)) if info else None
        if endpoint is None:
            raise ConnectionError(f"broker {node} has no endpoint")
        conn = PeerConnection(endpoint[0], endpoint[1], f"{self.client_id}-{broker.config.node_id}",
                              security=getattr(broker, "inter_broker_security", None))
        await conn.connect(self.timeout)
        self.peers[node] = conn
        return conn

    def close(self) -> None:
        for conn in self.peers.values():
            conn.close()
        self.peers.clear()
