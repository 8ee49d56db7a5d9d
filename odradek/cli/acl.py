"""``odradek acl``: add, list and remove ACLs on a running cluster.

Through the CreateAcls, DescribeAcls and DeleteAcls APIs (as Kafka's
``kafka-acls --bootstrap-server``), so they work against any Kafka-compatible
cluster with an authoriser; the client must be allowed ALTER (add, remove)
or DESCRIBE (list) on the cluster, as a super user is.
"""

from __future__ import annotations

import click

from odradek.cli.common import EXIT_ERROR, CliError, Output, client_options, kafka_error_text, print_json

# What confluent-kafka's Admin can name (no delegation-token or user resources, no token operations).
OPERATIONS = ("all", "read", "write", "create", "delete", "alter", "describe", "cluster-action",
              "describe-configs", "alter-configs", "idempotent-write")


def _resource(options: dict):
    """(ResourceType name, resource name) from exactly one of the resource options."""
    given = [(k, v) for k, v in options.items() if v]
    if len(given) != 1:
        raise CliError("name exactly one resource: --topic, --group, --cluster or --transactional-id", 2)
    kind, name = given[0]
    if kind == "cluster":  # confluent-kafka calls Kafka's CLUSTER resource type BROKER
        return "BROKER", "kafka-cluster"
    return kind.upper(), name


def _resource_options(fn):
    for opt in reversed([
        click.option("--topic", metavar="NAME", help="A topic (or prefix with --prefixed; '*' for all)."),
        click.option("--group", metavar="NAME", help="A consumer group."),
        click.option("--cluster", is_flag=True, help="The cluster."),
        click.option("--transactional-id", "transactional_id", metavar="ID", help="A transactional id."),
        click.option("--prefixed", is_flag=True, help="The name is a prefix (PREFIXED pattern)."),
    ]):
        fn = opt(fn)
    return fn


def _entry_options(fn):
    for opt in reversed([
        click.option("--principal", "principals", multiple=True, required=True, metavar="TYPE:NAME",
                     help="Principal, repeatable (User:alice, User:* for everyone)."),
        click.option("--operation", "operations", multiple=True, required=True,
                     type=click.Choice(OPERATIONS, case_sensitive=False), help="Operation, repeatable."),
        click.option("--host", default="*", show_default=True, help="Client host (IP address) or '*'."),
        click.option("--deny", is_flag=True, help="A DENY rule (default: ALLOW)."),
    ]):
        fn = opt(fn)
    return fn


def _bindings(resource, prefixed, principals, operations, host, deny):
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)

    rtype, name = resource
    return [AclBinding(ResourceType[rtype], name,
                       ResourcePatternType.PREFIXED if prefixed else ResourcePatternType.LITERAL,
                       p, host, AclOperation[op.upper().replace("-", "_")],
                       AclPermissionType.DENY if deny else AclPermissionType.ALLOW)
            for p in principals for op in operations]


def _rows(bindings):
    return [["CLUSTER" if b.restype.name == "BROKER" else b.restype.name, b.name, b.resource_pattern_type.name, b.principal, b.host, b.operation.name,
             b.permission_type.name] for b in bindings]


COLUMNS = ["RESOURCE", "NAME", "PATTERN", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"]


@click.group()
def acl() -> None:
    """Add, list and remove ACLs (needs a cluster with an authoriser).

    \b
    Examples:
      odradek acl add --principal User:alice --operation write --topic orders
      odradek acl add --principal User:bob --operation read --topic orders --group billing
      odradek acl add --principal User:etl --operation all --topic logs- --prefixed
      odradek acl list
      odradek acl list --topic orders
      odradek acl remove --principal User:alice --operation write --topic orders
    """


@acl.command("add")
@_resource_options
@_entry_options
@client_options
def add(topic, group, cluster, transactional_id, prefixed, principals, operations, host, deny, conn):
    """Add ACLs: each principal x each operation on one resource.

    \b
    Examples:
      odradek acl add --principal User:alice --operation write --topic orders
      odradek acl add --principal User:bob --operation read --group billing
      odradek acl add --principal User:* --operation describe --topic '*'
      odradek acl add --principal User:mallory --operation all --topic orders --deny
    """
    resource = _resource({"topic": topic, "group": group, "cluster": cluster,
                          "transactional_id": transactional_id})
    bindings = _bindings(resource, prefixed, principals, operations, host, deny)
    results = conn.wait(conn.admin().create_acls(bindings, request_timeout=conn.timeout))
    failed = [kafka_error_text(r) for r in results.values() if isinstance(r, Exception)]
    Output().table(COLUMNS + ["STATUS"], [row + ["OK" if not isinstance(results[b], Exception)
                                                 else kafka_error_text(results[b])]
                                          for b, row in zip(bindings, _rows(bindings))])
    if failed:
        raise SystemExit(EXIT_ERROR)


def _filter(topic, group, cluster, transactional_id, prefixed, principal, operation):
    from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)

    options = {"topic": topic, "group": group, "cluster": cluster, "transactional_id": transactional_id}
    if any(options.values()):
        rtype, name = _resource(options)
        rtype = ResourceType[rtype]
        pattern = ResourcePatternType.PREFIXED if prefixed else ResourcePatternType.LITERAL
    else:
        rtype, name, pattern = ResourceType.ANY, None, ResourcePatternType.ANY
    op = AclOperation[operation.upper().replace("-", "_")] if operation else AclOperation.ANY
    return AclBindingFilter(rtype, name, pattern, principal, None, op, AclPermissionType.ANY)


@acl.command("list")
@_resource_options
@click.option("--principal", default=None, metavar="TYPE:NAME", help="Only this principal's ACLs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@client_options
def list_(topic, group, cluster, transactional_id, prefixed, principal, as_json, conn):
    """List ACLs, all or those on one resource.

    \b
    Examples:
      odradek acl list
      odradek acl list --topic orders
      odradek acl list --principal User:alice --json
    """
    f = _filter(topic, group, cluster, transactional_id, prefixed, principal, None)
    try:
        bindings = conn.admin().describe_acls(f, request_timeout=conn.timeout).result()
    except Exception as exc:  # noqa: BLE001
        raise CliError(kafka_error_text(exc)) from None
    rows = sorted(_rows(bindings))
    if as_json:
        print_json([dict(zip([c.lower() for c in COLUMNS], r)) for r in rows])
    else:
        Output().table(COLUMNS, rows)


@acl.command("remove")
@_resource_options
@click.option("--principal", default=None, metavar="TYPE:NAME", help="Only this principal's ACLs.")
@click.option("--operation", default=None, type=click.Choice(OPERATIONS, case_sensitive=False),
              help="Only ACLs of this operation.")
@client_options
def remove(topic, group, cluster, transactional_id, prefixed, principal, operation, conn):
    """Remove the ACLs on one resource (optionally only a principal's or an operation's).

    \b
    Examples:
      odradek acl remove --topic orders
      odradek acl remove --topic orders --principal User:alice --operation write
      odradek acl remove --topic logs- --prefixed
    """
    _resource({"topic": topic, "group": group, "cluster": cluster, "transactional_id": transactional_id})
    # (a resource is required: never remove every ACL by accident)
    f = _filter(topic, group, cluster, transactional_id, prefixed, principal, operation)
    results = conn.wait(conn.admin().delete_acls([f], request_timeout=conn.timeout))
    (result,) = results.values()
    if isinstance(result, Exception):
        raise CliError(kafka_error_text(result))
    Output().table(COLUMNS, sorted(_rows(result)))
