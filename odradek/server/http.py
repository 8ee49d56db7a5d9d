"""The broker's HTTP listener (``http.listener``, ``odradek serve --http HOST:PORT``).

Theory of operation: one asyncio server on the broker's own event loop; each
connection is an ``asyncio.Protocol`` around an ``h11.Connection`` (sans-IO:
bytes in, events out). ``GET /metrics`` (and HEAD) answers the Prometheus
text rendered from the broker's state (``odradek.metrics.render``). Every
other request goes to the ``app`` when there is one (the web console,
``odradek.console``): an ``async def app(HttpRequest) -> HttpResponse``, awaited
while the connection reads no further (so pipelined requests are answered in
order); a response may be a stream, sent as chunks until it ends or the
client goes away: a live one (server-sent events) is dropped when more than
``MAX_STREAM_BUFFER`` bytes wait unread (the browser resumes it), any other
waits for the client to read (flow control), at most ``IDLE_TIMEOUT`` each
time. Without an app any other path is 404, any other method
405. Off unless configured.

TLS (``https://``) lives in the transport: ``start`` hands asyncio the
SSLContext built from ``http.ssl.*`` (``odradek.security.config.http_security``).
With a login, ``/metrics`` is answered only when ``authenticate`` says so
(HTTP Basic, checked off this module); the console checks its own pages.

Never harming the Kafka listeners: a connection's buffered request head is
capped (``MAX_HEAD``), a request body is read and dropped up to ``MAX_BODY``
(beyond: 413 and close), a connection is closed when a request has not
been read and answered within ``IDLE_TIMEOUT`` seconds of the connection or
of the previous response (slow senders included; a stream being sent is not
idle), at most ``MAX_CONNECTIONS`` are open (more are closed at
once), and bytes that are not HTTP/1.1 get a 400 and a close. Responses are
small and rendered in one step; keep-alive and pipelining follow h11.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qsl, unquote

import h11

log = logging.getLogger("odradek.http")

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
IDLE_TIMEOUT = 30.0
MAX_CONNECTIONS = 64
MAX_STREAM_BUFFER = 1024 * 1024
METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``, ``:PORT`` for every address; after
    ``http://`` or ``https://``) -> (host, port)."""
    scheme, sep, rest = value.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        value = rest
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"http.listener: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


@dataclass
class HttpRequest:
    method: str
    path: str  # percent-decoded
    query: dict[str, str]  # the first value of each name
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes = b""
    peer: str = ""  # the client's address

    def form(self) -> dict[str, str]:
        """An ``application/x-www-form-urlencoded`` body as a dict (first values)."""
        out: dict[str, str] = {}
        for k, v in parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True):
            out.setdefault(k, v)
        return out


@dataclass
class HttpResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: AsyncIterator[bytes] | None = None  # sent chunked after the head, instead of ``body``
    live: bool = False  # a stream that drops a client who falls behind rather than wait for it


def parse_request(req: h11.Request, body: bytes, peer: str = "") -> HttpRequest:
    target = req.target.decode("latin-1")
    path, _, qs = target.partition("?")
    query: dict[str, str] = {}
    for k, v in parse_qsl(qs, keep_blank_values=True):
        query.setdefault(k, v)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in req.headers}
    return HttpRequest(req.method.decode("latin-1"), unquote(path), query, headers, body, peer)


class HttpConnection(asyncio.Protocol):
    def __init__(self, server: "HttpServer"):
        self.server = server
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.body = bytearray()
        self.task: asyncio.Task | None = None  # the app answering the current request
        self.streaming = False
        self.writable = asyncio.Event()  # the transport's flow control (pause_writing/resume_writing)
        self.writable.set()

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
        if self.task is not None:
            self.task.cancel()
            self.task = None

    def pause_writing(self):
        self.writable.clear()

    def resume_writing(self):
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        if self.streaming:
            return  # nothing more is read from a connection sending a stream
        try:
            self.conn.receive_data(data)
            if self.task is None:
                self._events()
        except h11.RemoteProtocolError as e:
            self._fail(e.error_status_hint, str(e))
        except h11.LocalProtocolError as e:  # our own mistake: close rather than carry on
            log.warning("http: %s", e)
            self.close()

    def eof_received(self):
        if self.streaming:
            self.close()
            return False
        try:
            self.conn.receive_data(b"")
            if self.task is None:
                self._events()
        except h11.ProtocolError:
            pass
        if self.task is None:
            self.close()
        return self.task is not None  # half-closed: the answer being made is still sent

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
                    self.body = bytearray()
                    continue
                return
            if isinstance(event, h11.Request):
                self.request = event
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > MAX_BODY:
                    self._fail(413, "request body too large")
                    return
            elif isinstance(event, h11.EndOfMessage):
                is_metrics = self.request.target.split(b"?", 1)[0] == b"/metrics"
                if (self.server.app is not None and not is_metrics) or (is_metrics and self.server.authenticate):
                    # Answered by the app: read nothing more until it has.
                    self.transport.pause_reading()
                    peer = self.transport.get_extra_info("peername")
                    self.task = asyncio.get_running_loop().create_task(
                        self._answer(parse_request(self.request, bytes(self.body), peer[0] if peer else "")))
                    return
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
        elif path != b"/metrics" or self.server.render is None:
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

    async def _answer(self, req: HttpRequest) -> None:
        try:
            try:
                if req.path == "/metrics":
                    resp = await self._metrics(req)
                else:
                    resp = await self.server.app(req)
            except Exception:
                log.exception("http: %s %s failed", req.method, req.path)
                resp = HttpResponse(500, b"internal error\n", "text/plain")
            if self.transport is None or self.transport.is_closing():
                return
            head_only = req.method == "HEAD"
            extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
            if resp.stream is None:
                self._send(resp.status, resp.body, resp.content_type.encode(), extra, head_only)
            else:
                await self._stream(resp, extra)
                return
        except asyncio.CancelledError:
            return
        except h11.ProtocolError as e:
            log.warning("http: %s", e)
            self.close()
            return
        finally:
            if self.task is asyncio.current_task():
                self.task = None
        self._arm()
        if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.CLOSED:
            self.close()
            return
        self.transport.resume_reading()
        try:
            self._events()  # requests pipelined behind this one
        except h11.RemoteProtocolError as e:
            self._fail(e.error_status_hint, str(e))

    async def _metrics(self, req: HttpRequest) -> HttpResponse:
        """``/metrics`` behind the listener's login (HTTP Basic): ``authenticate``
        answers None to serve it, or the status and reason to refuse it."""
        refused = await self.server.authenticate(req)
        if refused is not None:
            status, reason = refused
            return HttpResponse(status, (reason + "\n").encode(), "text/plain",
                                [("www-authenticate", 'Basic realm="odradek", charset="UTF-8"')] if status == 401
                                else [])
        if req.method not in ("GET", "HEAD"):
            return HttpResponse(405, b"method not allowed\n", "text/plain", [("allow", "GET, HEAD")])
        if self.server.render is None:
            return HttpResponse(404, b"not found\n", "text/plain")
        return HttpResponse(200, self.server.render(), METRICS_TYPE.decode())

    async def _stream(self, resp: HttpResponse, extra: list) -> None:
        """Send the head, then each chunk as the stream yields it, until it
        ends or the client goes away; then close (streams are not reused)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        headers = [(b"content-type", resp.content_type.encode()), (b"cache-control", b"no-store"), *extra]
        self.transport.write(self.conn.send(h11.Response(status_code=resp.status, headers=headers)))
        self.streaming = True
        self.transport.resume_reading()  # to notice the client leaving
        try:
            async for chunk in resp.stream:
                if self.transport is None or self.transport.is_closing():
                    break
                if resp.live and self.transport.get_write_buffer_size() > MAX_STREAM_BUFFER:
                    log.debug("http: dropping a stream its client does not read")
                    self.transport.abort()  # close() would wait for the unread bytes to go
                    break
                self.transport.write(self.conn.send(h11.Data(data=chunk)))
                if not resp.live and not self.writable.is_set():
                    try:
                        await asyncio.wait_for(self.writable.wait(), IDLE_TIMEOUT)
                    except asyncio.TimeoutError:
                        self.transport.abort()
                        break
            else:
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.write(self.conn.send(h11.EndOfMessage()))
        finally:
            aclose = getattr(resp.stream, "aclose", None)
            if aclose is not None:
                await aclose()
            self.close()

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

    def __init__(self, render=None, app: Callable[[HttpRequest], Awaitable[HttpResponse]] | None = None,
                 authenticate: Callable[[HttpRequest], Awaitable[tuple[int, str] | None]] | None = None):
        self.render = render  # None: no /metrics
        self.app = app
        self.authenticate = authenticate  # None: /metrics is open; else it must say yes (HTTP Basic)
        self.connections: set[HttpConnection] = set()
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int, ssl_context=None) -> tuple[str, int]:
        """Listen at ``host:port``, over TLS with ``ssl_context`` when given (https)."""
        loop = asyncio.get_running_loop()
        tls = {"ssl": ssl_context, "ssl_handshake_timeout": 10.0} if ssl_context is not None else {}
        self.server = await loop.create_server(lambda: HttpConnection(self), host or None, port,
                                               reuse_address=True, backlog=128, **tls)
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
