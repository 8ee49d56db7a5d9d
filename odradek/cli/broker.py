"""``odradek broker``: describe and change broker configs on a running
cluster, through DescribeConfigs and IncrementalAlterConfigs on BROKER
resources (as Kafka's ``kafka-configs --entity-type brokers``), so they work
against any Kafka-compatible cluster: one broker's settings (its id), or the
cluster-wide default (``--default``). A broker's own settings are asked of
that broker. The requests go through the console's Kafka client (as
``odradek quota``: confluent-kafka cannot name the cluster default), with
the ``-X`` security properties it knows.
"""

from __future__ import annotations

import asyncio

import click

from odradek.cli.common import EXIT_ERROR, CliError, Output, client_options, parse_kv, print_json

BROKER = 4
SOURCES = {1: "TOPIC", 2: "DYNAMIC_BROKER", 3: "DYNAMIC_DEFAULT_BROKER", 4: "STATIC_BROKER", 5: "DEFAULT"}


def _resource(broker_id: int | None, cluster_default: bool) -> str:
    if (broker_id is None) == (not cluster_default):
        raise CliError("name a broker id, or --default for the cluster-wide default (not both)", 2)
    return "" if cluster_default else str(broker_id)


def _call(conn, node: int | None, name: str, body: dict) -> dict:
    from odradek.cli.quota import _client
    from odradek.console.client import KafkaError

    async def go():
        client = _client(conn)
        try:
            if node is None:
                return await asyncio.wait_for(client.any_broker(name, body, timeout=conn.timeout), conn.timeout + 1)
            await asyncio.wait_for(client.metadata(), conn.timeout)  # where the broker is
            return await asyncio.wait_for(client.request(node, name, body, timeout=conn.timeout), conn.timeout + 1)
        finally:
            client.close()

    try:
        return asyncio.run(go())
    except KafkaError as e:
        raise CliError(f"cannot reach broker {'' if node is None else node} at {conn.bootstrap} ({e})", 2) from None
    except asyncio.TimeoutError:
        raise CliError(f"cannot reach broker at {conn.bootstrap} (no answer in {conn.timeout:g} s)", 2) from None


def _check(result: dict) -> None:
    from odradek.cli.quota import _error_text

    if result["error_code"]:
        raise CliError(_error_text(result["error_code"], result.get("error_message")), EXIT_ERROR)


@click.group()
def broker() -> None:
    """Describe and change broker configs (dynamic broker configs).

    \b
    Examples:
      odradek broker config 1
      odradek broker config --default
      odradek broker alter-config 1 --set log.retention.ms=3600000
      odradek broker alter-config --default --set message.max.bytes=2097152
      odradek broker alter-config 1 --delete log.retention.ms
    """


@broker.command("config")
@click.argument("broker_id", type=int, required=False)
@click.option("--default", "cluster_default", is_flag=True, help="The cluster-wide default, not one broker.")
@click.option("-a", "--all-configs", is_flag=True, help="Every setting, not only the dynamic ones.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@client_options
def config(broker_id, cluster_default, all_configs, as_json, conn):
    """Show a broker's dynamic configs (all its settings with -a), or the cluster default's.

    \b
    Examples:
      odradek broker config 1
      odradek broker config 1 --all-configs --json
      odradek broker config --default
    """
    name = _resource(broker_id, cluster_default)
    response = _call(conn, broker_id, "DescribeConfigs", {
        "resources": [{"resource_type": BROKER, "resource_name": name, "configuration_keys": None}],
        "include_synonyms": False, "include_documentation": False})
    (result,) = response["results"]
    _check(result)
    rows = [c for c in result["configs"] if all_configs or c["config_source"] in (2, 3)]
    out = [{"name": c["name"], "value": "(sensitive)" if c["is_sensitive"] else c["value"],
            "source": SOURCES.get(c["config_source"], str(c["config_source"])),
            "read_only": bool(c["read_only"])} for c in sorted(rows, key=lambda c: c["name"])]
    if as_json:
        print_json(out)
    else:
        Output().table(["KEY", "VALUE", "SOURCE", "READ-ONLY"],
                       [[c["name"], c["value"], c["source"], "yes" if c["read_only"] else "no"] for c in out])


@broker.command("alter-config")
@click.argument("broker_id", type=int, required=False)
@click.option("--default", "cluster_default", is_flag=True, help="The cluster-wide default, not one broker.")
@click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a broker config, repeatable.")
@click.option("-d", "--delete", "deletes", multiple=True, metavar="KEY",
              help="Remove a dynamic config so the next source applies again, repeatable.")
@client_options
def alter_config(broker_id, cluster_default, sets, deletes, conn):
    """Set or remove dynamic broker configs (IncrementalAlterConfigs; others are untouched).

    Settings a broker cannot change while it runs are refused (INVALID_REQUEST).

    \b
    Examples:
      odradek broker alter-config 1 --set log.retention.ms=3600000
      odradek broker alter-config --default -s message.max.bytes=2097152 -s log.cleanup.policy=compact,delete
      odradek broker alter-config 1 --delete log.retention.ms
    """
    name = _resource(broker_id, cluster_default)
    if not sets and not deletes:
        raise click.UsageError("nothing to do: give --set KEY=VALUE and/or --delete KEY")
    pairs = parse_kv(sets, "--set")
    configs = [{"name": k, "config_operation": 0, "value": v} for k, v in pairs]
    configs += [{"name": k, "config_operation": 1, "value": None} for k in deletes]
    response = _call(conn, broker_id, "IncrementalAlterConfigs", {
        "resources": [{"resource_type": BROKER, "resource_name": name, "configs": configs}],
        "validate_only": False})
    (result,) = response["responses"]
    _check(result)
    Output().table(["KEY", "VALUE", "CHANGE"], [[k, v, "set"] for k, v in pairs] +
                   [[k, None, "deleted"] for k in deletes])
