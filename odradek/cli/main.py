"""The ``odradek`` command."""

from __future__ import annotations

import logging
import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="odradek")
def main() -> None:
    """odradek: a Kafka-compatible broker, and tools to talk to any Kafka."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=9092, show_default=True, type=int, help="Port to listen on (0: any free port).")
@click.option("--data-dir", default="./odradek-data", show_default=True, help="Where logs are kept.")
@click.option("--advertised-host", default=None, help="Host name clients are told to connect to.")
@click.option("--node-id", default=1, show_default=True, type=int)
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="A Kafka server.properties file (num.partitions, log.retention.hours, ...).")
@click.option("--memory", is_flag=True, help="Keep nothing on disk.")
@click.option("-o", "--override", multiple=True, metavar="KEY=VALUE", help="Set one broker property.")
@click.option("--log-level", default="INFO", show_default=True)
def serve(host, port, data_dir, advertised_host, node_id, config_file, memory, override, log_level):
    """Run a broker in the foreground; stops cleanly on SIGTERM or Ctrl-C.

    \b
    Examples:
      odradek serve
      odradek serve --port 19092 --data-dir /var/lib/odradek --config server.properties
      odradek serve --memory -o num.partitions=3
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
    if "node.id" in props and node_id == 1:
        node_id = int(props["node.id"])
    if "log.dirs" in props and data_dir == "./odradek-data":
        data_dir = props["log.dirs"].split(",")[0]
    config = BrokerConfig(node_id=node_id, host=host, port=port, advertised_host=advertised_host,
                          data_dir=None if memory else data_dir, props=props)
    run(config)


if __name__ == "__main__":
    main()
