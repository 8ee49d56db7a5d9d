"""One client connection: framing, dispatch and ordered responses.

Theory of operation: bytes arrive in ``data_received``; complete frames
(int32 size + payload) are queued. A single worker task per connection takes
them in order, decodes the header and body, awaits the handler, and writes the
response before taking the next frame, as Kafka does by muting a channel while
a request is in flight. So responses go out in request order, a long-polling
Fetch holds back only its own connection, and a slow client can never make the
broker buffer more than ``MAX_QUEUED_BYTES`` of its requests (reading pauses).

A frame larger than ``socket.request.max.bytes`` is refused before any
allocation by closing the connection. A frame that does not decode, an unknown
API key, or a handler failure closes this connection only. ApiVersions with a
version we do not serve gets error 35 with a v0 body, per KIP-511.

Security: the listener's protocol decides who the connection is. TLS is the
transport's (asyncio's SSL protocol), so this class sees plaintext bytes
either way; on SSL the principal is the client certificate's, mapped by the
listener's rules, when the handshake is done. On SASL listeners a
``SaslAuthenticator`` gates every request until a login completes (see
``odradek.security.authenticator``): before that frames are capped at
``sasl.server.max.receive.size``, and a request it does not allow is
answered with ILLEGAL_SASL_STATE where the response has a top-level error
code, and the connection closed. Every request context carries the principal
and the listener; with an authoriser configured, requests go through
``odradek.security.checks`` (the one table of what each API must be allowed).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import struct
import time
from typing import TYPE_CHECKING

from odradek.clock import now_ms
from odradek.metrics import HANDLER_FAILED
from odradek.protocol import errors
from odradek.protocol.schema import DecodeError, codec
from odradek.security.checks import handle as authorized
from odradek.security.principal import ANONYMOUS
from odradek.security.quotas import CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE
from odradek.server.registry import REGISTRY

if TYPE_CHECKING:
    from odradek.broker import BrokerCore

log = logging.getLogger("odradek.connection")

_SIZE = struct.Struct(">i")
_HDR = struct.Struct(">hhi")
MAX_QUEUED_BYTES = 64 * 1024 * 1024
API_VERSIONS_KEY = 18
PRODUCE_KEY, FETCH_KEY = 0, 1


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


# Not counted against request_percentage: what a client needs before it is
# anyone (the version exchange, the SASL login).
_REQUEST_QUOTA_EXEMPT = {18, 17, 36}


class _Timed:
    """Await a coroutine and add up the time spent in its own steps only (not
    while it waits), for ``request_percentage``: the handler's share of the
    loop, as Kafka counts a request handler thread's time."""

    __slots__ = ("coro", "ns", "t")

    def __init__(self, coro):
        self.coro = coro
        self.ns = 0
        self.t = 0  # when the step under way began

    def take(self) -> int:
        """The time counted so far, the step under way included; counting
        starts again from zero (a Fetch records its time before it answers,
        the rest is recorded after it)."""
        now = time.perf_counter_ns()
        ns, self.ns, self.t = self.ns + now - self.t, 0, now
        return ns

    def __await__(self):
        coro, clock = self.coro, time.perf_counter_ns
        send, exc = None, None
        while True:
            self.t = clock()
            try:
                future = coro.send(send) if exc is None else coro.throw(exc)
            except StopIteration as done:
                self.ns += clock() - self.t
                return done.value
            except BaseException:
                self.ns += clock() - self.t
                raise
            self.ns += clock() - self.t
            try:
                send, exc = (yield future), None
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:
                send, exc = None, e


@functools.lru_cache(maxsize=None)
def _has_field(api_name: str, field: str, version: int) -> bool:
    """Whether the response of ``api_name`` at ``version`` has top-level ``field`` (spec name)."""
    from odradek.protocol.schema import load_spec, parse_versions

    for f in load_spec(api_name + "Response")["fields"]:
        if f["name"] == field:
            lo, hi = parse_versions(f.get("versions"))
            return lo <= version <= hi
    return False


class RequestContext:
    """What a handler knows about the request it serves."""

    __slots__ = ("broker", "connection", "api_key", "version", "correlation_id", "client_id", "header",
                 "principal", "listener", "waited")

    def __init__(self, broker, connection, api_key, version, correlation_id, client_id, header):
        self.broker = broker
        self.connection = connection
        self.api_key = api_key
        self.version = version
        self.correlation_id = correlation_id
        self.client_id = client_id
        self.header = header
        self.principal = connection.principal  # KafkaPrincipal: User:alice, User:ANONYMOUS
        self.listener = connection.listener  # the listener's name
        self.waited = 0.0  # seconds spent in wait(): long polls, acks=all, rebalances

    async def wait(self, awaitable):
        """Await what the request waits for (data for a long poll, replicas
        for acks=all, the other members for a rebalance), its time counted
        apart from the request's own work (odradek.metrics)."""
        t0 = time.perf_counter()
        try:
            return await awaitable
        finally:
            self.waited += time.perf_counter() - t0


class KafkaConnection(asyncio.Protocol):
    def __init__(self, broker: "BrokerCore", listener: str = "PLAINTEXT", security=None, scram_lookup=None,
                 token_lookup=None):
        self.broker = broker
        self.listener = listener
        self.security = security  # odradek.security.config.ListenerSecurity, or None: PLAINTEXT
        self.principal = ANONYMOUS
        self.sasl = None  # a SaslAuthenticator on SASL listeners
        self.max_frame = broker.config.get_int("socket.request.max.bytes")
        self.min_frame = 8
        if security is not None and security.sasl is not None:
            from odradek.security.authenticator import SaslAuthenticator

            self.sasl = SaslAuthenticator(security.sasl, scram_lookup, token_lookup)
            self.max_frame = min(self.max_frame, security.sasl.max_receive_size)
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.frames: collections.deque = collections.deque()
        self.queued_bytes = 0
        self.worker: asyncio.Task | None = None
        self.paused = False  # reading paused: too many bytes queued
        self.mute_ms = 0  # after this response, mute the connection this long (a quota's throttle)
        self.mutation = None  # the request's controller_mutation_rate, if it has one
        self.timed = None  # the request's handler time, while request_percentage is measured
        self.closed = False
        self.peer = None
        self.slot = None  # (listener, address) held in odradek.server.listeners.ConnectionLimits
        self.active_at = time.monotonic()  # last bytes read or answer sent (max.connections, connections.max.idle.ms)

    @property
    def protocol(self) -> str:
        """The listener's security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
        return self.security.protocol if self.security is not None else "PLAINTEXT"

    @property
    def token_authenticated(self) -> bool:
        """Logged in with a delegation token (which may not manage tokens)."""
        return self.sasl is not None and self.sasl.token_authenticated

    # -- asyncio.Protocol ------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.broker.connections.add(self)
        self.broker.metrics.connection_opened(self.listener)
        if self.broker.quotas.active and self.peer:
            throttle = self.broker.quotas.record_connection(self.peer[0], _monotonic_ms())
            if throttle:  # KIP-612: over its ip's connection_creation_rate: never served, closed after the throttle
                log.info("closing %s in %d ms: over its connection_creation_rate", self.peer, throttle)
                self.closed = True
                transport.pause_reading()
                asyncio.get_running_loop().call_later(throttle / 1000, transport.close)
                return
        if self.security is not None and self.security.mapper is not None and self.sasl is None:
            try:
                self.principal = self.security.mapper.principal(transport.get_extra_info("peercert"))
            except ValueError as e:
                log.info("closing %s: %s", self.peer, e)
                self.abort()

    def connection_lost(self, exc):
        # The request in flight is finished, not cancelled (as Kafka does): a
        # handler cut off between changing state and persisting it would leave
        # the two apart. Its response is dropped, and no further frame is taken.
        self.closed = True
        self.frames.clear()
        self.broker.connections.discard(self)
        self.broker.metrics.connection_closed(self.listener)
        if self.slot is not None:
            self.broker.connection_limits.release(self)
        share = getattr(self.broker, "share", None)
        if share is not None:
            share.connection_closed(self)  # its share sessions end, their records are released

    def data_received(self, data: bytes) -> None:
        self.active_at = time.monotonic()
        buf = self.buffer
        buf += data
        pos = 0  # frames are bytearrays, so decoded records can be patched in place
        n = len(buf)
        while n - pos >= 4:
            size = _SIZE.unpack_from(buf, pos)[0]
            if size < self.min_frame or size > self.max_frame:
                log.warning("closing %s: frame size %d out of bounds", self.peer, size)
                self.abort()
                return
            if n - pos - 4 < size:
                break
            self.queued_bytes += size
            if pos == 0 and size + 4 == n:
                # The buffer is exactly one frame: hand it over instead of copying.
                del buf[:4]
                self.frames.append(buf)
                self.buffer = buf = bytearray()
                pos = 0
                break
            self.frames.append(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
        if pos:
            del buf[:pos]
        if self.frames and (self.worker is None or self.worker.done()):
            self.worker = asyncio.get_running_loop().create_task(self.process())
            self.broker.workers.add(self.worker)
            self.worker.add_done_callback(self.broker.workers.discard)
        if self.queued_bytes + len(buf) > MAX_QUEUED_BYTES and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- request processing ----------------------------------------------
    async def process(self) -> None:
        frames = self.frames
        try:
            while frames and not self.closed:
                frame = frames.popleft()
                self.queued_bytes -= len(frame)
                if self.paused and self.queued_bytes < MAX_QUEUED_BYTES // 2:
                    self.paused = False
                    self.transport.resume_reading()
                out = await self.handle(frame)
                if out is not None and not self.closed:
                    if type(out) is list:
                        self.transport.writelines(out)
                    else:
                        self.transport.write(out)
                    self.active_at = time.monotonic()
                if self.mute_ms and not self.closed:
                    await self.mute()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("closing %s after an unexpected error", self.peer)
            self.abort()

    async def mute(self) -> None:
        """KIP-219: after a throttled response, read nothing more from the client
        (nor serve what it already sent) for the throttle time. This is what holds
        a client that ignores ``throttle_time_ms`` to its quota."""
        delay, self.mute_ms = self.mute_ms, 0
        self.transport.pause_reading()
        try:
            await asyncio.sleep(delay / 1000)
        finally:
            if not self.paused and not self.closed:
                self.transport.resume_reading()

    async def handle(self, frame: bytes):
        """Decode, dispatch and encode one request; return bytes to send or None."""
        if self.sasl is not None and self.sasl.raw_tokens:
            return await self.raw_sasl_token(frame)
        api_key, version, correlation_id = _HDR.unpack_from(frame, 0)
        api = REGISTRY.get(api_key)
        if api is None:
            log.info("closing %s: unknown api key %d", self.peer, api_key)
            self.abort()
            return None
        if not api.min_version <= version <= api.max_version:
            if api_key == API_VERSIONS_KEY:
                return self.unsupported_api_versions(correlation_id)
            log.info("closing %s: %s v%d not supported", self.peer, api.name, version)
            self.abort()
            return None
        flexible = api.is_flexible(version)
        try:
            header, pos = codec("RequestHeader", 2 if flexible else 1).decode(frame, 0)
            request, end = api.request_codec(version).decode(frame, pos)
        except DecodeError as e:
            log.info("closing %s: malformed %s v%d request: %s", self.peer, api.name, version, e)
            self.abort()
            return None
        sasl = self.sasl
        if sasl is not None and (refused := sasl.allows(api_key, now_ms())) is not None:
            log.info("closing %s: %s", self.peer, refused)
            return self.close_with(self.illegal_sasl_state(api, version, correlation_id, flexible))
        ctx = RequestContext(self.broker, self, api_key, version, correlation_id,
                             header.get("client_id"), header)
        # The one place requests are counted: per API, with errors and latency.
        stats = self.broker.metrics.api(api_key, api.name)
        quotas = self.broker.quotas
        t0 = time.perf_counter()
        try:
            if self.broker.authorizer is None:
                serve = api.handler(ctx, request)
            else:  # ACLs: what each API must be allowed is odradek.security.checks' table
                serve = authorized(api, ctx, request)
            if quotas.request_quotas and api_key not in _REQUEST_QUOTA_EXEMPT:
                timed = self.timed = _Timed(serve)
                try:
                    response = await timed
                finally:
                    self.timed = None
                self.mute_ms = max(self.mute_ms, quotas.record_request_time(
                    ctx.principal.name, ctx.client_id, timed.ns, _monotonic_ms()))
            else:
                response = await serve
        except Exception:
            stats.record(time.perf_counter() - t0, HANDLER_FAILED, version)
            raise
        stats.record(time.perf_counter() - t0, response.get("error_code", 0) if response is not None else 0,
                     version)
        if ctx.waited:
            stats.waits.observe(ctx.waited)
        # The one place a response's throttle time is set: handlers leave the
        # field out. Produce counts its request's bytes against the client's
        # byte-rate quota, a consumer's Fetch its records before it answers
        # (fetch_quota, below), the topic APIs their partitions against
        # controller_mutation_rate (mutation_quota), every request its handler time against
        # request_percentage (above); the larger throttle is answered and the
        # connection then muted for it (KIP-219), see process().
        if api_key == PRODUCE_KEY and quotas.active:
            self.mute_ms = max(self.mute_ms, quotas.record(PRODUCER_BYTE_RATE, ctx.principal.name, ctx.client_id,
                                                           len(frame) + 4, _monotonic_ms()))
        if self.mutation is not None:
            self.mute_ms = max(self.mute_ms, self.mutation.throttle_ms)
            self.mutation = None
        if response is None:
            return None
        if _has_field(api.name, "ThrottleTimeMs", version):  # not SaslHandshake, WriteTxnMarkers, ...
            response["throttle_time_ms"] = self.mute_ms
        pieces = self.encode_response(api, version, correlation_id, flexible, response)
        if sasl is not None and sasl.state == "FAILED":
            return await self.fail_authentication(pieces)
        return pieces

    def mutation_quota(self, ctx, strict: bool):
        """The ``controller_mutation_rate`` of a CreateTopics, CreatePartitions or
        DeleteTopics (``odradek.security.quotas.MutationQuota``; None: no quota);
        its throttle time is answered, and the connection muted for it, after
        the handler."""
        quotas = self.broker.quotas
        if not quotas.active:
            return None
        quota = quotas.mutation(ctx.principal.name, ctx.client_id, strict, _monotonic_ms)
        self.mutation = quota
        return quota

    def fetch_allowance(self, ctx) -> int | None:
        """The most a consumer's Fetch may ask for under its ``consumer_byte_rate``
        (None: no quota), as Kafka caps ``max_bytes``."""
        quotas = self.broker.quotas
        if not quotas.active:
            return None
        allowance = quotas.window_allowance(CONSUMER_BYTE_RATE, ctx.principal.name, ctx.client_id)
        return None if allowance is None else int(allowance)

    def fetch_quota(self, ctx, size: int) -> int:
        """The quotas of a consumer's Fetch about to send ``size`` bytes: the
        throttle time (0: send it). Its bytes count against
        ``consumer_byte_rate`` and its handler time so far against
        ``request_percentage``; over either, as in Kafka, the Fetch is answered
        empty, so its bytes are taken back out. The connection is muted after
        the answer for the larger throttle."""
        quotas = self.broker.quotas
        if not quotas.active:
            return 0
        user, client_id, now = ctx.principal.name, ctx.client_id, _monotonic_ms()
        throttle = quotas.record(CONSUMER_BYTE_RATE, user, client_id, size, now, keep_if_throttled=False)
        if self.timed is not None:  # the rest of the handler's time is recorded after it, in handle()
            request = quotas.record_request_time(user, client_id, self.timed.take(), now)
            if request and not throttle:
                quotas.unrecord(CONSUMER_BYTE_RATE, user, client_id, size, now)
            throttle = max(throttle, request)
        self.mute_ms = max(self.mute_ms, throttle)
        return throttle

    @staticmethod
    def encode_response(api, version, correlation_id, flexible, response):
        out = bytearray(4)
        out += _SIZE.pack(correlation_id)
        if flexible and api.key != API_VERSIONS_KEY:
            out.append(0)  # response header v1: empty tagged fields
        pieces, size = api.response_codec(version).encode_parts(response, out)
        _SIZE.pack_into(out, 0, size - 4)
        return pieces

    # -- authentication ----------------------------------------------------
    def authenticated(self, principal) -> None:
        """A SASL login (or re-login) completed: lift the pre-authentication frame cap."""
        self.principal = principal
        self.max_frame = self.broker.config.get_int("socket.request.max.bytes")
        self.min_frame = 8

    def illegal_sasl_state(self, api, version, correlation_id, flexible):
        """An ILLEGAL_SASL_STATE response to a request not allowed before login, if
        the response has a top-level error code; else None (the close says it)."""
        if not _has_field(api.name, "ErrorCode", version):
            return None
        response = {"error_code": errors.ILLEGAL_SASL_STATE}
        if _has_field(api.name, "ErrorMessage", version):
            response["error_message"] = "Authenticate first (SaslHandshake, SaslAuthenticate)"
        return self.encode_response(api, version, correlation_id, flexible, response)

    def close_with(self, pieces):
        """Send ``pieces`` (if any), then close; no further request is taken."""
        self.closed = True
        self.frames.clear()
        if self.transport is not None:
            if pieces is not None:
                self.transport.writelines(pieces)
            self.transport.close()
        return None

    async def fail_authentication(self, pieces):
        """A failed login: the response goes out after ``connection.failed.authentication.delay.ms``
        (as Kafka delays it, to slow password guessing), then the connection closes."""
        self.closed = True
        self.frames.clear()
        delay = self.security.sasl.failed_auth_delay_ms if self.security is not None else 0
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        return self.close_with(pieces)

    async def raw_sasl_token(self, frame):
        """A SASL token after a SaslHandshake v0: size-prefixed, without a Kafka header."""
        out = await self.sasl.raw_token(bytes(frame), now_ms())
        if out is None:
            return await self.fail_authentication(None)
        if self.sasl.authenticated:
            self.authenticated(self.sasl.principal)
        return [_SIZE.pack(len(out)), out]

    @property
    def busy(self) -> bool:
        """A request is being served, or waits to be."""
        return bool(self.frames) or (self.worker is not None and not self.worker.done())

    def unsupported_api_versions(self, correlation_id: int) -> bytes:
        from odradek.apis.api_versions import api_version_list

        body = {"error_code": errors.UNSUPPORTED_VERSION, "api_keys": api_version_list()}
        out = bytearray(4)
        out += _SIZE.pack(correlation_id)
        codec("ApiVersionsResponse", 0).encode(body, out)
        _SIZE.pack_into(out, 0, len(out) - 4)
        return bytes(out)


async def close_idle_connections(broker, idle_ms: int) -> None:
    """Kafka's ``connections.max.idle.ms``: a client connection that has read
    nothing and been sent nothing for that long, with no request being served,
    is closed (a negative value: never). Runs until cancelled."""
    if idle_ms < 0:
        return
    idle_s = idle_ms / 1000
    every = min(max(idle_s / 4, 0.05), 30.0)
    while True:
        await asyncio.sleep(every)
        cutoff = time.monotonic() - idle_s
        for conn in [c for c in broker.connections if c.active_at < cutoff and not c.closed and not c.busy]:
            log.debug("closing %s: idle for over %d ms (connections.max.idle.ms)", conn.peer, idle_ms)
            conn.closed = True
            if conn.transport is not None:
                conn.transport.close()
