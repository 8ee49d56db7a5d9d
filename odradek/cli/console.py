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


def client_security(props: dict[str, str], login: bool = False):
    """The console's login from librdkafka-style properties (None: plaintext);
    ``login``: users log in themselves, so no sasl.username is needed."""
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
    if login and not protocol.startswith("SASL"):
        raise click.BadParameter("--login checks passwords by a SASL login to the cluster: set "
                                 "security.protocol=SASL_PLAINTEXT or SASL_SSL and sasl.mechanism", param_hint="-X")
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
        if (not sec.username or sec.password is None) and not login:
            raise click.BadParameter("SASL needs sasl.username and sasl.password (or --login)", param_hint="-X")
    return sec


@click.command()
@click.option("-b", "--bootstrap", default=None, metavar="HOST:PORT[,...]",
              help=f"The cluster [env ODRADEK_BOOTSTRAP; default {DEFAULT_BOOTSTRAP}].")
@click.option("--http", "http_address", default="127.0.0.1:8080", show_default=True, metavar="[https://]HOST:PORT",
              help="Where to serve the console (https:// with -H http.ssl.keystore.location=...).")
@click.option("-H", "--http-config", multiple=True, metavar="KEY=VALUE",
              help="The HTTP listener's TLS, with odradek serve's keys: http.ssl.keystore.location, "
                   "http.ssl.keystore.type, http.ssl.keystore.password, ..., http.session.max.age.ms.")
@click.option("--login", is_flag=True,
              help="Ask for a login: each user gives a SASL user name and password of the cluster, checked by "
                   "logging in to it (with -X security.protocol and sasl.mechanism), and acts with its rights.")
@click.option("-X", "--client-config", multiple=True, metavar="KEY=VALUE",
              help="Login to the cluster, librdkafka's names: security.protocol, sasl.mechanism, "
                   "sasl.username, sasl.password, ssl.ca.location, ...")
@click.option("--log-level", default="INFO", show_default=True)
def console(bootstrap, http_address, http_config, login, client_config, log_level):
    """Serve the web console for any Kafka-compatible cluster.

    \b
    Examples:
      odradek console --bootstrap kafka-1:9092 --http 127.0.0.1:8080
      odradek console -b kafka:9093 -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-256 \\
          -X sasl.username=admin -X sasl.password=secret -X ssl.ca.location=ca.pem
      odradek console -b kafka:9093 --login -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-256 \\
          -X ssl.ca.location=ca.pem --http https://0.0.0.0:8443 -H http.ssl.keystore.location=console.pem
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
    security = client_security(dict(parse_kv(list(root.get("client_config") or ()) + list(client_config), "-X")),
                               login)
    from odradek.security.config import SecurityConfigError, http_security

    http_props = dict(parse_kv(list(http_config), "-H"))
    unknown = sorted(k for k in http_props if not k.startswith("http.ssl.") and k != "http.session.max.age.ms")
    if unknown:
        raise click.BadParameter(f"not a key the console's listener reads: {', '.join(unknown)}", param_hint="-H")
    try:
        http = http_security({**http_props, "http.listener": http_address,
                              "http.authentication": "sasl" if login else "none"})
    except SecurityConfigError as e:
        raise click.BadParameter(str(e), param_hint="--http/-H") from None
    scheme = "https" if http.ssl_context is not None else "http"

    async def run():
        from odradek.console import serve_standalone

        server, app, address = await serve_standalone(servers, host, port, security, http)
        logging.getLogger("odradek").info("console for %s at %s://%s:%d/", bootstrap, scheme, *address)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
        app.close()

    from odradek.embedded import new_event_loop

    loop = new_event_loop()
    try:
        loop.run_until_complete(run())
    except OSError as e:
        raise click.ClickException(f"cannot serve the console at {http_address}: {e}") from None
    finally:
        loop.close()
