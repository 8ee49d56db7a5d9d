"""The broker's listeners: one server socket per ``listeners`` entry, each with
its security protocol (``odradek.security.config``).

PLAINTEXT and SASL_PLAINTEXT listeners are plain asyncio servers; SSL and
SASL_SSL ones hand asyncio the listener's SSLContext, so TLS lives in the
transport and the plaintext path carries no TLS code at all.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("odradek.listeners")

TLS_HANDSHAKE_TIMEOUT = 30.0


async def start_listeners(broker) -> None:
    """Bind every listener of ``broker.config``; fill ``broker.servers`` and
    ``broker.endpoints`` (name -> advertised host and port)."""
    from odradek.security.scram import ScramStore
    from odradek.server.connection import KafkaConnection

    loop = asyncio.get_running_loop()
    security = broker.config.security()
    for note in security.notes:
        log.info("%s", note)
    scram = ScramStore(broker.metadata)
    broker.endpoints = {}
    for listener in broker.config.listeners():
        sec = security.listeners[listener.name]
        tls = {}
        if sec.ssl_context is not None:
            tls = {"ssl": sec.ssl_context, "ssl_handshake_timeout": TLS_HANDSHAKE_TIMEOUT}
        server = await loop.create_server(
            lambda listener=listener, sec=sec: KafkaConnection(broker, listener.name, sec, scram.get),
            listener.host or None, listener.port, reuse_address=True, backlog=1024, **tls,
        )
        broker.servers.append(server)
        broker.endpoints[listener.name] = broker.config.advertised(
            listener, server.sockets[0].getsockname()[1])
