"""The ``odradek`` command."""

from __future__ import annotations

import logging
import sys

import click


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand is used, so that
    ``odradek serve`` does not pay for the client commands' imports."""

    lazy = {
        "topic": "odradek.cli.topic:topic",
        "produce": "odradek.cli.produce:produce",
        "consume": "odradek.cli.consume:consume",
        "group": "odradek.cli.group:group",
        "broker": "odradek.cli.broker:broker",
        "cluster": "odradek.cli.cluster:cluster",
        "dump-log": "odradek.cli.dump_log:dump_log",
        "user": "odradek.cli.user:user",
        "acl": "odradek.cli.acl:acl",
        "quota": "odradek.cli.quota:quota",
        "console": "odradek.cli.console:console",
    }

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy and name not in self.commands:
            import importlib

            module, attr = self.lazy[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="odradek")
@click.option("-b", "--bootstrap", default=None, metavar="HOST:PORT[,...]",
              help="Broker(s) for every client command [env ODRADEK_BOOTSTRAP; default localhost:9092].")
@click.option("-X", "--client-config", multiple=True, metavar="KEY=VALUE",
              help="Extra librdkafka client property for every client command, repeatable.")
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="How long client commands wait for the broker [env ODRADEK_TIMEOUT; default 10].")
@click.option("--debug", is_flag=True, hidden=True, help="Let librdkafka log to stderr.")
def main(bootstrap, client_config, timeout, debug) -> None:
    """odradek: a Kafka-compatible broker, and tools to talk to any Kafka.

    Client commands work against any Kafka-compatible cluster; point them at it
    with -b/--bootstrap (before or after the command) or ODRADEK_BOOTSTRAP.

    \b
    Examples:
      odradek serve --data-dir ./data
      odradek topic create orders -p 6 -c retention.ms=86400000
      seq 100 | odradek produce orders
      odradek consume orders --from-beginning -n 10
      odradek -b kafka-1:9092 group describe billing
    """


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=9092, show_default=True, type=int, help="Port to listen on (0: any free port).")
@click.option("--data-dir", default="./odradek-data", show_default=True, help="Where logs are kept.")
@click.option("--advertised-host", default=None, help="Host name clients are told to connect to.")
@click.option("--node-id", default=1, show_default=True, type=int)
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="A Kafka server.properties file (num.partitions, log.retention.hours, ...).")
@click.option("--memory", is_flag=True, help="Keep nothing on disk.")
@click.option("--metadata-store", default=None, metavar="URL",
              help="Where cluster metadata lives: etcd://HOST:PORT[,HOST:PORT...]/PREFIX "
                   "(needs odradek[cluster]); default: a file in the data dir.")
@click.option("--rack", default=None, help="This broker's rack (config broker.rack), for replica placement.")
@click.option("--http", "http_listener", default=None, metavar="HOST:PORT",
              help="Serve the web console at http://HOST:PORT/ and Prometheus metrics at /metrics "
                   "(config http.listener; https://HOST:PORT with http.ssl.* keys for TLS, "
                   "http.authentication=sasl for a login); off by default.")
@click.option("-o", "--override", multiple=True, metavar="KEY=VALUE", help="Set one broker property.")
@click.option("--log-level", default="INFO", show_default=True)
def serve(host, port, data_dir, advertised_host, node_id, config_file, memory, metadata_store, rack,
          http_listener, override, log_level):
    """Run a broker in the foreground; stops cleanly on SIGTERM or Ctrl-C.

    \b
    Examples:
      odradek serve
      odradek serve --port 19092 --data-dir /var/lib/odradek --config server.properties
      odradek serve --memory -o num.partitions=3
      odradek serve --memory --http 127.0.0.1:9100   # console at http://127.0.0.1:9100/, metrics at /metrics
      odradek serve --node-id 2 --port 9093 --data-dir d2 --rack r2 --metadata-store etcd://127.0.0.1:2379/prod
    """
    from odradek.config import BrokerConfig, parse_properties
    from odradek.server.serve import run

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    props = {}
    if config_file:
        with open(config_file) as f:
            props = parse_properties(f.read())
    for item in override:
        if "=" not in item:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--override")
        k, v = item.split("=", 1)
        props[k.strip()] = v.strip()
    if metadata_store:
        props["metadata.store"] = metadata_store
    if rack:
        props["broker.rack"] = rack
    if http_listener:
        props["http.listener"] = http_listener
    if props.get("http.listener"):
        from odradek.server.http import parse_address

        try:
            parse_address(props["http.listener"])
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--http") from None
    if "node.id" in props and node_id == 1:
        node_id = int(props["node.id"])
    if data_dir == "./odradek-data" and (props.get("log.dirs") or props.get("log.dir")):
        data_dir = (props.get("log.dirs") or props["log.dir"]).strip()  # log.dirs wins, as in Kafka
    from odradek.config import ConfigError

    config = BrokerConfig(node_id=node_id, host=host, port=port, advertised_host=advertised_host,
                          data_dir=None if memory else data_dir, props=props)
    try:
        listeners = config.listeners()
        config.security()
        config.served_notes()
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    ctx = click.get_current_context()
    if props.get("listeners") and ctx.get_parameter_source("port") == click.core.ParameterSource.COMMANDLINE \
            and port != listeners[0].port:
        raise click.UsageError(f"--port {port} disagrees with the first of the configured listeners "
                               f"({listeners[0].name} on port {listeners[0].port}); the listeners are "
                               f"authoritative: drop --port or make them agree")
    run(config)


