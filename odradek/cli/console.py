"""``odradek console``: the web console alone, against any Kafka-compatible cluster."""

from __future__ import annotations

import logging
import os
import sys

import click

from odradek.cli.common import DEFAULT_BOOTSTRAP, parse_kv

SECURITY_KEYS = ("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password", "ssl.ca.location",
                 "ssl.certificate.location", "ssl.key.location", "ssl.key.password",
                 "ssl.endpoint.identification.algorithm")


def client_security(props: dict[str, str]):
    """The console's login from librdkafka-style properties (None: plaintext)."""
    import ssl

    from odradek.security.config import InterBrokerClient

    unknown = sorted(set(props) - set(SECURITY_KEYS))
    if unknown:
        raise click.BadParameter(f"not a property the console uses: {', '.join(unknown)} "
                                 f"(it reads {', '.join(SECURITY_KEYS)})", param_hint="-X")
    protocol = props.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise click.BadParameter(f"security.protocol={protocol} is not one of PLAINTEXT, SSL, "
                                 f"SASL_PLAINTEXT, SASL_SSL", param_hint="-X")
    if protocol == "PLAINTEXT":
        return None
    sec = InterBrokerClient("console", protocol)
    if protocol.endswith("SSL"):
        try:
            ctx = ssl.create_default_context(cafile=props.get("ssl.ca.location"))
            if props.get("ssl.certificate.location"):
                ctx.load_cert_chain(props["ssl.certificate.location"], props.get("ssl.key.location"),
                                    props.get("ssl.key.password"))
        except (OSError, ssl.SSLError) as e:
            raise click.BadParameter(f"cannot load the TLS files: {e}", param_hint="-X") from None
        if props.get("ssl.endpoint.identification.algorithm", "https").lower() in ("", "none"):
            ctx.check_hostname = False
        sec.ssl_context = ctx
    if protocol.startswith("SASL"):
        sec.mechanism = props.get("sasl.mechanism", "PLAIN").upper()
        if sec.mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise click.BadParameter(f"sasl.mechanism={sec.mechanism}: the console logs in with PLAIN or SCRAM",
                                     param_hint="-X")
        sec.username, sec.password = props.get("sasl.username"), props.get("sasl.password")
        if not sec.username or sec.password is None:
            raise click.BadParameter("SASL needs sasl.username and sasl.password", param_hint="-X")
    return sec


@click.command()
@click.option("-b", "--bootstrap", default=None, metavar="HOST:PORT[,...]",
              help=f"The cluster [env ODRADEK_BOOTSTRAP; default {DEFAULT_BOOTSTRAP}].")
@click.option("--http", "http_address", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Where to serve the console.")
@click.option("-X", "--client-config", multiple=True, metavar="KEY=VALUE",
              help="Login to the cluster, librdkafka's names: security.protocol, sasl.mechanism, "
                   "sasl.username, sasl.password, ssl.ca.location, ...")
@click.option("--log-level", default="INFO", show_default=True)
def console(bootstrap, http_address, client_config, log_level):
    """Serve the web console for any Kafka-compatible cluster.

    \b
    Examples:
      odradek console --bootstrap kafka-1:9092 --http 127.0.0.1:8080
      odradek console -b kafka:9093 -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-256 \\
          -X sasl.username=admin -X sasl.password=secret -X ssl.ca.location=ca.pem
    """
    import asyncio
    import signal

    from odradek.server.http import parse_address

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    root = click.get_current_context().find_root().params
    bootstrap = bootstrap or root.get("bootstrap") or os.environ.get("ODRADEK_BOOTSTRAP") or DEFAULT_BOOTSTRAP
    servers = []
    for item in bootstrap.split(","):
        try:
            servers.append(parse_address(item.strip()))
        except ValueError:
            raise click.BadParameter(f"expected HOST:PORT, got {item!r}", param_hint="--bootstrap") from None
    try:
        host, port = parse_address(http_address)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--http") from None
    security = client_security(dict(parse_kv(list(root.get("client_config") or ()) + list(client_config), "-X")))

    async def run():
        from odradek.console import serve_standalone

        server, app, address = await serve_standalone(servers, host, port, security)
        logging.getLogger("odradek").info("console for %s at http://%s:%d/", bootstrap, *address)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
        app.client.close()

    from odradek.embedded import new_event_loop

    loop = new_event_loop()
    try:
        loop.run_until_complete(run())
    except OSError as e:
        raise click.ClickException(f"cannot serve the console at {http_address}: {e}") from None
    finally:
        loop.close()
