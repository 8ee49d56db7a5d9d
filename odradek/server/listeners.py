"""The broker's listeners: one server socket per ``listeners`` entry, each with
its security protocol (``odradek.security.config``), and the one place
connections are accepted.

Theory of operation: each listener's sockets are bound here and each gets an
accept task (``Listener``), so the broker decides when to accept, as Kafka's
acceptor does. Before accepting it waits for a connection slot
(``ConnectionLimits``, Kafka's ConnectionQuotas): while ``max.connections``
(broker-wide) or ``listener.name.<l>.max.connections`` is reached, the
listener accepts nothing, and clients wait in the kernel's backlog until a
connection closes. The inter-broker listener is protected, when there are
several listeners: only its own limit holds it back, and a connection it
takes over the broker-wide limit closes the least recently active
connection of another listener. A connection from an address already
holding ``max.connections.per.ip`` (or its entry in
``max.connections.per.ip.overrides``) is closed at once, on any listener.

An accepted socket becomes a ``KafkaConnection`` through the loop's
``connect_accepted_socket``: PLAINTEXT and SASL_PLAINTEXT as they are, SSL and
SASL_SSL with the listener's SSLContext, so TLS lives in the transport and the
plaintext path carries no TLS code at all.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time

log = logging.getLogger("odradek.listeners")

TLS_HANDSHAKE_TIMEOUT = 30.0
BACKLOG = 1024


class ConnectionLimits:
    """Open connections counted per listener, per address and in all, against
    Kafka's limits (``odradek.security.config.ConnectionLimitSettings``). A
    connection holds its slot from its accept until it is released (closed,
    or its TLS handshake failed); ``release`` is idempotent."""

    def __init__(self, settings, listeners: list[str], inter_broker: str | None, metrics):
        self.broker_max = settings.max_connections
        self.listener_max = dict(settings.listener_max)
        self.per_ip = settings.per_ip
        self.per_ip_overrides = dict(settings.per_ip_overrides)
        # As Kafka: the inter-broker listener is protected only beside others.
        self.protected = inter_broker if len(listeners) > 1 else None
        self.total = 0
        self.by_listener = {name: 0 for name in listeners}
        self.by_ip: dict[str, int] = {}
        self.waiters: list[asyncio.Future] = []
        self.metrics = metrics

    def slot_available(self, listener: str) -> bool:
        limit = self.listener_max.get(listener)
        if limit is not None and self.by_listener.get(listener, 0) >= limit:
            return False
        if listener == self.protected or self.broker_max is None:
            return True
        return self.total < self.broker_max

    async def wait_slot(self, listener: str) -> None:
        """Until ``listener`` may accept a connection."""
        if self.slot_available(listener):
            return
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        while not self.slot_available(listener):
            fut = loop.create_future()
            self.waiters.append(fut)
            await fut
        self.metrics.acceptor_blocked(listener, time.monotonic() - t0)

    def admit(self, conn, listener: str, ip: str) -> int | None:
        """Count a connection just accepted; the limit it breaks (it is then not
        counted and must be closed), or None."""
        held = self.by_ip.get(ip, 0)
        limit = self.per_ip_overrides.get(ip, self.per_ip)
        if limit is not None and held >= limit:
            return limit
        self.by_ip[ip] = held + 1
        self.by_listener[listener] = self.by_listener.get(listener, 0) + 1
        self.total += 1
        conn.slot = (listener, ip)
        return None

    def release(self, conn) -> None:
        slot, conn.slot = conn.slot, None
        if slot is None:
            return
        listener, ip = slot
        self.total -= 1
        self.by_listener[listener] -= 1
        if self.by_ip[ip] == 1:
            del self.by_ip[ip]
        else:
            self.by_ip[ip] -= 1
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def close_excess(self, connections) -> None:
        """Over the broker-wide limit (a protected listener's connection took it
        there): close the least recently active connections of other listeners."""
        if self.broker_max is None or self.total <= self.broker_max:
            return
        others = sorted((c for c in connections if c.listener != self.protected and c.slot is not None),
                        key=lambda c: c.active_at)
        for conn in others[:self.total - self.broker_max]:
            log.info("closing %s on %s: over max.connections, for an inter-broker connection",
                     conn.peer, conn.listener)
            self.metrics.connection_refused(conn.listener, "max_connections")
            self.release(conn)
            conn.abort()


class Listener:
    """One listener's bound sockets and their accept tasks; closed like an
    ``asyncio.Server``."""

    def __init__(self, broker, name: str, sockets: list[socket.socket], factory, ssl_context):
        self.broker = broker
        self.name = name
        self.sockets = sockets
        self.factory = factory
        self.ssl = ssl_context
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self.accept(s)) for s in sockets]

    async def accept(self, sock: socket.socket) -> None:
        broker, name = self.broker, self.name
        limits = broker.connection_limits
        loop = asyncio.get_running_loop()
        while True:
            await limits.wait_slot(name)
            try:
                client, address = await loop.sock_accept(sock)
            except OSError as e:  # out of file descriptors and the like: as asyncio's server, wait and retry
                log.error("listener %s: accept failed: %s", name, e)
                await asyncio.sleep(1)
                continue
            conn = self.factory()
            refused = limits.admit(conn, name, address[0])
            if refused is not None:
                log.info("Rejected connection from %s on %s: the address already has the configured maximum "
                         "of %d connections (max.connections.per.ip)", address[0], name, refused)
                broker.metrics.connection_refused(name, "max_connections_per_ip")
                client.close()
                continue
            limits.close_excess(broker.connections)
            task = loop.create_task(self.serve(client, conn))
            broker.workers.add(task)
            task.add_done_callback(broker.workers.discard)

    async def serve(self, client: socket.socket, conn) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.ssl is None:
                await loop.connect_accepted_socket(lambda: conn, client)
            else:
                await loop.connect_accepted_socket(lambda: conn, client, ssl=self.ssl,
                                                   ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        except Exception as e:  # a failed TLS handshake: no connection
            log.info("listener %s: connection not made: %s", self.name, e)
            self.broker.connection_limits.release(conn)
            client.close()
        except asyncio.CancelledError:
            self.broker.connection_limits.release(conn)
            client.close()
            raise

    def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for s in self.sockets:
            s.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(*self.tasks, return_exceptions=True)


def bind(host: str | None, port: int) -> list[socket.socket]:
    """Listening sockets for ``host`` (None or empty: every interface, IPv4 and
    IPv6, as asyncio's create_server binds them; with port 0 they share the
    first one's port)."""
    infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    seen, out, failed = set(), [], None
    try:
        for family, kind, proto, _, address in infos:
            if (family, address[0]) in seen:
                continue
            seen.add((family, address[0]))
            if out and port == 0:
                address = (address[0], out[0].getsockname()[1], *address[2:])
            try:
                s = socket.socket(family, kind, proto)
            except OSError as e:  # a family this host does not have (IPv6 off)
                failed = failed or e
                continue
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind(address)
            except OSError as e:
                s.close()
                if host or e.errno == errno.EADDRINUSE:
                    raise
                failed = failed or e  # one family of "every interface" unavailable: serve the others
                continue
            s.listen(BACKLOG)
            s.setblocking(False)
            out.append(s)
    except BaseException:
        for s in out:
            s.close()
        raise
    if not out:
        raise failed or OSError(f"cannot listen on {host or '*'}:{port}")
    return out


async def start_listeners(broker) -> None:
    """Bind every listener of ``broker.config``; fill ``broker.servers`` and
    ``broker.endpoints`` (name -> advertised host and port)."""
    from odradek.security.scram import ScramStore
    from odradek.server.connection import KafkaConnection

    security = broker.config.security()
    for note in security.notes + broker.config.served_notes():
        log.info("%s", note)
    scram = ScramStore(broker.metadata)
    listeners = broker.config.listeners()
    broker.connection_limits = ConnectionLimits(security.limits, [l.name for l in listeners],
                                                getattr(broker, "inter_broker_listener", None), broker.metrics)
    broker.endpoints = {}
    for listener in listeners:
        sec = security.listeners[listener.name]
        server = Listener(broker, listener.name, bind(listener.host or None, listener.port),
                          lambda name=listener.name, sec=sec: KafkaConnection(broker, name, sec, scram.get,
                                                                              broker.tokens.scram_login),
                          sec.ssl_context)
        broker.servers.append(server)
        broker.endpoints[listener.name] = broker.config.advertised(
            listener, server.sockets[0].getsockname()[1])
