"""The broker's HTTP listener (``http.listener``, ``odradek serve --http HOST:PORT``).

Theory of operation: one asyncio server on the broker's own event loop; each
connection is an ``asyncio.Protocol`` around an ``h11.Connection`` (sans-IO:
bytes in, events out). ``GET /metrics`` (and HEAD) answers the Prometheus
text rendered from the broker's state (``odradek.metrics.render``); any other
path is 404, any other method 405. Off unless configured.

Never harming the Kafka listeners: a connection's buffered request head is
capped (``MAX_HEAD``), a request body is read and dropped up to ``MAX_BODY``
(beyond: 413 and close), a connection is closed when a request has not
been read and answered within ``IDLE_TIMEOUT`` seconds of the connection or
of the previous response (slow senders included), at most ``MAX_CONNECTIONS`` are open (more are closed at
once), and bytes that are not HTTP/1.1 get a 400 and a close. Responses are
small and rendered in one step; keep-alive and pipelining follow h11.
"""

from __future__ import annotations

import asyncio
import logging

import h11

log = logging.getLogger("odradek.http")

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
IDLE_TIMEOUT = 30.0
MAX_CONNECTIONS = 64
METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``, ``:PORT`` for every address) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"http.listener: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


class HttpConnection(asyncio.Protocol):
    def __init__(self, server: "HttpServer"):
        self.server = server
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.body = 0

    # -- asyncio.Protocol ------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        if len(self.server.connections) >= MAX_CONNECTIONS:
            transport.abort()
            return
        self.server.connections.add(self)
        self._arm()

    def connection_lost(self, exc):
        self.server.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
            self._events()
        except h11.RemoteProtocolError as e:
            self._fail(e.error_status_hint, str(e))
        except h11.LocalProtocolError as e:  # our own mistake: close rather than carry on
            log.warning("http: %s", e)
            self.close()

    def eof_received(self):
        try:
            self.conn.receive_data(b"")
            self._events()
        except h11.ProtocolError:
            pass
        self.close()

    # -- requests ----------------------------------------------------------
    def _events(self) -> None:
        conn = self.conn
        while self.transport is not None and not self.transport.is_closing():
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                    self.body = 0
                    continue
                return
            if isinstance(event, h11.Request):
                self.request = event
            elif isinstance(event, h11.Data):
                self.body += len(event.data)
                if self.body > MAX_BODY:
                    self._fail(413, "request body too large")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._respond(self.request)
                self._arm()  # the next request has IDLE_TIMEOUT from now
                if conn.our_state is h11.MUST_CLOSE:
                    self.close()
                    return
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return

    def _respond(self, req: h11.Request) -> None:
        path = req.target.split(b"?", 1)[0]
        if req.method not in (b"GET", b"HEAD"):
            status, body, ctype, extra = 405, b"method not allowed\n", b"text/plain", [(b"allow", b"GET, HEAD")]
        elif path != b"/metrics":
            status, body, ctype, extra = 404, b"not found\n", b"text/plain", []
        else:
            try:
                body = self.server.render()
            except Exception:
                log.exception("http: rendering the metrics failed")
                status, body, ctype, extra = 500, b"internal error\n", b"text/plain", []
            else:
                status, ctype, extra = 200, METRICS_TYPE, []
        self._send(status, body, ctype, extra, head_only=req.method == b"HEAD")

    def _send(self, status: int, body: bytes, ctype: bytes, extra: list, head_only: bool = False) -> None:
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *extra]
        out = [self.conn.send(h11.Response(status_code=status, headers=headers))]
        if body and not head_only:
            out.append(self.conn.send(h11.Data(data=body)))
        out.append(self.conn.send(h11.EndOfMessage()))
        self.transport.writelines(out)

    def _fail(self, status: int, reason: str) -> None:
        """A bad request: answer ``status`` if a response can still be sent, then close."""
        log.debug("http: closing a connection: %s", reason)
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                body = (reason + "\n").encode()
                self._send(status, body, b"text/plain", [(b"connection", b"close")])
            except h11.ProtocolError:
                pass
        self.close()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self.close)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class HttpServer:
    """The listener and its open connections; ``render`` makes a scrape's body."""

    def __init__(self, render):
        self.render = render
        self.connections: set[HttpConnection] = set()
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: HttpConnection(self), host or None, port,
                                               reuse_address=True, backlog=128)
        return self.server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        if self.server is None:
            return
        self.server.close()
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.abort()
        await self.server.wait_closed()
        self.server = None
