"""The web console: server-rendered pages over the Kafka protocol.

``odradek serve --http HOST:PORT`` serves it at ``/`` beside ``/metrics``,
asking the broker through its own inter-broker listener (with that
listener's TLS and SASL login, as a follower would); ``odradek console
--bootstrap B --http HOST:PORT`` serves it alone against any
Kafka-compatible cluster. Both run the same code: ``client`` (an asyncio
Kafka client on odradek's codec) and ``app`` (routes and Jinja2 templates,
htmx from package data for live refresh). See docs/operations.md.
"""

from __future__ import annotations


def for_broker(broker):
    """The console of a started broker (``BrokerCore``); when its inter-broker
    listener's login cannot be served, an app that says why (503), the
    reason logged too."""
    import logging

    from odradek import __version__
    from odradek.console.app import Console, Unavailable
    from odradek.console.client import ClusterClient
    from odradek.security.config import SecurityConfigError

    try:
        security = broker.config.security().inter_broker_client()
    except SecurityConfigError as e:
        logging.getLogger("odradek.console").warning("console not served: %s", e)
        return Unavailable(f"The console is not served: it logs in as the broker does on its inter-broker "
                           f"listener, and {e}")
    host, port = broker.endpoint(broker.inter_broker_listener)
    client = ClusterClient([(host, port)], security, client_id=f"odradek-console-{broker.config.node_id}")
    sessions = None
    http = broker.config.http_security()
    if http.login:
        from odradek.console.sessions import Sessions

        check = broker.password_check()

        def new_client(login):
            return ClusterClient([broker.endpoint(login.listener)], login.security,
                                 client_id=f"odradek-console-{broker.config.node_id}-{login.user}")

        sessions = Sessions(check, new_client, http.session_ms, secure=http.ssl_context is not None)
    history = broker.lag_history.get if broker.lag_history is not None else None
    return Console(client, server_version=__version__, sessions=sessions, lag_history=history)


async def serve_standalone(bootstrap: list[tuple[str, int]], host: str, port: int, security=None, http=None):
    """Serve the console alone at ``host:port``; returns (HttpServer, Console, bound address).
    ``http``: an ``odradek.security.config.HttpSecurity`` (TLS; a login checked
    by logging in to the cluster as the user, ``security`` naming how)."""
    from odradek.console.app import Console
    from odradek.console.client import ClusterClient
    from odradek.server.http import HttpServer

    sessions = None
    if http is not None and http.login:
        from odradek.console.sessions import ClusterPasswordCheck, Sessions

        sessions = Sessions(ClusterPasswordCheck(bootstrap, security),
                            lambda login: ClusterClient(bootstrap, login.security,
                                                        client_id=f"odradek-console-{login.user}"),
                            http.session_ms, secure=http.ssl_context is not None)
    console = Console(ClusterClient(bootstrap, security), sessions=sessions)
    server = HttpServer(app=console)
    address = await server.start(host, port, http.ssl_context if http is not None else None)
    return server, console, address
