"""``odradek quota``: set, list and remove client quotas on a running cluster.

Through the DescribeClientQuotas and AlterClientQuotas APIs (as Kafka's
``kafka-configs --entity-type users/clients/ips``), so they work against any
Kafka-compatible cluster. confluent-kafka has no calls for these APIs: the
requests go through the console's Kafka client (odradek's own codec), which
logs in with the librdkafka-style ``-X`` properties it knows (security
protocol, SASL PLAIN or SCRAM, TLS files). The client must be allowed
ALTER_CONFIGS (set, remove) or DESCRIBE_CONFIGS (list) on the cluster.
"""

from __future__ import annotations

import asyncio

import click

from odradek.cli.common import EXIT_ERROR, CliError, Output, client_options, print_json

KEYS = ("producer_byte_rate", "consumer_byte_rate", "request_percentage", "controller_mutation_rate",
        "connection_creation_rate")
# The entity options: (option name, entity type on the wire).
ENTITIES = (("user", "user"), ("client_id", "client-id"), ("ip", "ip"))
MATCH_EXACT, MATCH_DEFAULT, MATCH_ANY = 0, 1, 2
COLUMNS = ["ENTITY", "KEY", "VALUE"]


def _entity_options(fn):
    for opt in reversed([
        click.option("--user", metavar="NAME", help="A user (the principal's name, e.g. alice)."),
        click.option("--user-default", is_flag=True, help="Every user without a quota of its own."),
        click.option("--client-id", "client_id", metavar="ID", help="A client id."),
        click.option("--client-id-default", "client_id_default", is_flag=True,
                     help="Every client id without a quota of its own."),
        click.option("--ip", metavar="ADDRESS", help="A client IP address (connection_creation_rate)."),
        click.option("--ip-default", "ip_default", is_flag=True, help="Every IP address without its own."),
    ]):
        fn = opt(fn)
    return fn


def _entity(options: dict) -> list[dict]:
    """The request's entity: [{entity_type, entity_name}] (None: the default one)."""
    out = []
    for name, wire in ENTITIES:
        if options.get(name) and options.get(name + "_default"):
            raise CliError(f"give --{name.replace('_', '-')} or --{name.replace('_', '-')}-default, not both", 2)
        if options.get(name):
            out.append({"entity_type": wire, "entity_name": options[name]})
        elif options.get(name + "_default"):
            out.append({"entity_type": wire, "entity_name": None})
    return out


def _entity_text(entity: list[dict]) -> str:
    """``user=alice,client-id=<default>``: user, client id, ip, in that order."""
    order = [wire for _, wire in ENTITIES]
    ordered = sorted(entity, key=lambda e: order.index(e["entity_type"]) if e["entity_type"] in order else 9)
    return ",".join(f"{e['entity_type']}={e['entity_name'] if e['entity_name'] is not None else '<default>'}"
                    for e in ordered)


def _number(value: float) -> int | float:
    """A quota's value as written: 1048576, not 1.04858e+06."""
    return int(value) if value == int(value) else value


def _client(conn):
    from odradek.cli.console import SECURITY_KEYS, client_security
    from odradek.console.client import ClusterClient

    unknown = sorted(set(conn.extra) - set(SECURITY_KEYS))
    if unknown:
        raise CliError(f"odradek quota does not use: {', '.join(unknown)} (it reads {', '.join(SECURITY_KEYS)})", 2)
    servers = []
    for part in conn.bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise CliError(f"bad bootstrap address {part!r} (HOST:PORT)", 2)
        servers.append((host.strip("[]"), int(port)))
    return ClusterClient(servers, client_security(conn.extra), client_id="odradek-cli")


def _call(conn, name: str, body: dict) -> dict:
    from odradek.console.client import KafkaError

    async def go():
        client = _client(conn)
        try:
            return await asyncio.wait_for(client.any_broker(name, body, timeout=conn.timeout), conn.timeout + 1)
        finally:
            client.close()

    try:
        return asyncio.run(go())
    except KafkaError as e:
        raise CliError(f"cannot reach broker at {conn.bootstrap} ({e})", 2) from None
    except asyncio.TimeoutError:
        raise CliError(f"cannot reach broker at {conn.bootstrap} (no answer in {conn.timeout:g} s)", 2) from None


def _error_text(code: int, message: str | None) -> str:
    from odradek.console.client import error_name

    return f"{error_name(code)}: {message}" if message else error_name(code)


def _alter(conn, entity: list[dict], ops: list[dict]) -> None:
    if not entity:
        raise CliError("name an entity: --user, --client-id, --ip (or their -default)", 2)
    response = _call(conn, "AlterClientQuotas", {"entries": [{"entity": entity, "ops": ops}],
                                                 "validate_only": False})
    (entry,) = response["entries"]
    if entry["error_code"]:
        raise CliError(_error_text(entry["error_code"], entry["error_message"]))


@click.group()
def quota() -> None:
    """Set, list and remove client quotas (as kafka-configs does for users, clients and ips).

    \b
    Keys: producer_byte_rate, consumer_byte_rate (bytes per second),
    request_percentage (percent of a request thread), controller_mutation_rate
    (partitions created or deleted per second), connection_creation_rate (ips).

    \b
    Examples:
      odradek quota set --user alice producer_byte_rate=1048576 consumer_byte_rate=2097152
      odradek quota set --user-default request_percentage=50
      odradek quota set --user alice --client-id etl producer_byte_rate=4194304
      odradek quota set --ip 10.0.0.7 connection_creation_rate=10
      odradek quota list
      odradek quota remove --user alice producer_byte_rate
    """


@quota.command("set")
@_entity_options
@click.argument("settings", nargs=-1, required=True, metavar="KEY=VALUE...")
@client_options
def set_(user, user_default, client_id, client_id_default, ip, ip_default, settings, conn):
    """Set quotas of one entity (a user, a client id, both, or an ip).

    \b
    Examples:
      odradek quota set --user alice producer_byte_rate=1048576
      odradek quota set --user-default --client-id etl request_percentage=50
      odradek quota set --ip-default connection_creation_rate=20
    """
    ops = []
    for s in settings:
        key, sep, value = s.partition("=")
        if not sep or key not in KEYS:
            raise CliError(f"{s!r}: expected KEY=VALUE with KEY one of {', '.join(KEYS)}", 2)
        try:
            number = float(value)
        except ValueError:
            raise CliError(f"{s!r}: the value must be a number", 2) from None
        ops.append({"key": key, "value": number, "remove": False})
    entity = _entity(locals())
    _alter(conn, entity, ops)
    Output().table(COLUMNS, [[_entity_text(entity), op["key"], str(_number(op["value"]))] for op in ops])


@quota.command("remove")
@_entity_options
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@client_options
def remove(user, user_default, client_id, client_id_default, ip, ip_default, keys, conn):
    """Remove quotas of one entity (the keys named).

    \b
    Examples:
      odradek quota remove --user alice producer_byte_rate consumer_byte_rate
      odradek quota remove --user-default request_percentage
    """
    bad = [k for k in keys if k not in KEYS]
    if bad:
        raise CliError(f"not a quota key: {', '.join(bad)} (one of {', '.join(KEYS)})", 2)
    _alter(conn, _entity(locals()), [{"key": k, "value": 0.0, "remove": True} for k in keys])


@quota.command("list")
@_entity_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@client_options
def list_(user, user_default, client_id, client_id_default, ip, ip_default, as_json, conn):
    """List quotas: all, or of the entities matching the options given.

    \b
    Examples:
      odradek quota list
      odradek quota list --user alice --json
    """
    components = []
    for e in _entity(locals()):
        if e["entity_name"] is None:
            components.append({"entity_type": e["entity_type"], "match_type": MATCH_DEFAULT, "match": None})
        else:
            components.append({"entity_type": e["entity_type"], "match_type": MATCH_EXACT,
                               "match": e["entity_name"]})
    response = _call(conn, "DescribeClientQuotas", {"components": components, "strict": False})
    if response["error_code"]:
        raise CliError(_error_text(response["error_code"], response.get("error_message")), EXIT_ERROR)
    rows = sorted((_entity_text(entry["entity"]), v["key"], _number(v["value"]))
                  for entry in response["entries"] or [] for v in entry["values"])
    if as_json:
        print_json([dict(zip(("entity", "key", "value"), r)) for r in rows])
    else:
        Output().table(COLUMNS, [[e, k, str(v)] for e, k, v in rows])
