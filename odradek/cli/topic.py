"""``odradek topic``: create, list, describe, alter and delete topics."""

from __future__ import annotations

import fnmatch

import click

from odradek.cli.common import (
    EXIT_ERROR, EXIT_NOT_FOUND, Output, client_options, kafka_error_name, kafka_error_text, parse_kv,
    print_json,
)


@click.group()
def topic() -> None:
    """Create, list, describe, alter and delete topics.

    \b
    Examples:
      odradek topic create orders -p 6 -c retention.ms=86400000
      odradek topic list
      odradek topic describe orders
      odradek topic alter-config orders --set cleanup.policy=compact
      odradek topic add-partitions orders --count 2
      odradek topic delete orders
    """


def _status_table(out: Output, column: str, results: dict, ok_text: str = "OK") -> tuple[bool, bool]:
    """Print NAME/STATUS rows; return (any failed, any failed because unknown)."""
    rows, failed, unknown = [], False, False
    for name, res in results.items():
        if isinstance(res, Exception):
            failed = True
            err = res.args[0] if res.args else res
            unknown |= kafka_error_name(err) in ("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC", "UNKNOWN_TOPIC_ID")
            rows.append([name, kafka_error_text(res)])
        else:
            rows.append([name, ok_text])
    out.table([column, "STATUS"], rows)
    return failed, unknown


@topic.command("create")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("-p", "--partitions", type=int, default=-1, show_default=True,
              help="Number of partitions (-1: the broker's num.partitions).")
@click.option("-r", "--replication-factor", type=int, default=-1, show_default=True,
              help="Replicas per partition (-1: the broker's default.replication.factor).")
@click.option("-c", "--config", "configs", multiple=True, metavar="KEY=VALUE",
              help="Topic config, repeatable (retention.ms=..., cleanup.policy=compact, ...).")
@click.option("--dry-run", is_flag=True, help="Ask the broker to validate only; create nothing.")
@client_options
def create(names, partitions, replication_factor, configs, dry_run, conn):
    """Create one or more topics.

    \b
    Examples:
      odradek topic create orders
      odradek topic create orders payments -p 12 -r 3
      odradek topic create users -c cleanup.policy=compact -c min.compaction.lag.ms=60000
      odradek topic create big --dry-run -p 1000
    """
    from confluent_kafka.admin import NewTopic

    cfg = dict(parse_kv(configs, "--config", allow_empty_value=False))
    admin = conn.admin()
    new = [NewTopic(n, num_partitions=partitions, replication_factor=replication_factor, config=cfg)
           for n in dict.fromkeys(names)]
    results = conn.wait(admin.create_topics(new, validate_only=dry_run, request_timeout=conn.timeout,
                                            operation_timeout=conn.timeout))
    failed, _ = _status_table(Output(), "TOPIC", results, "OK (dry run)" if dry_run else "OK")
    if failed:
        raise SystemExit(EXIT_ERROR)


@topic.command("list")
@click.argument("patterns", nargs=-1, metavar="[PATTERN]...")
@click.option("-i", "--internal", is_flag=True, help="Include internal topics (__consumer_offsets, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@client_options
def list_(patterns, internal, as_json, conn):
    """List topics, optionally only those matching glob PATTERNs.

    \b
    Examples:
      odradek topic list
      odradek topic list 'orders-*' --json
      odradek topic list -i
    """
    md = conn.metadata()
    rows = []
    for name in sorted(md.topics):
        t = md.topics[name]
        if name.startswith("__") and not internal:
            continue
        if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        replicas = max((len(p.replicas) for p in t.partitions.values()), default=0)
        rows.append({"name": name, "partitions": len(t.partitions), "replicas": replicas,
                     "internal": name.startswith("__")})
    if as_json:
        print_json(rows)
        return
    Output().table(["NAME", "PARTITIONS", "REPLICAS"], [[r["name"], r["partitions"], r["replicas"]] for r in rows])



def _watermarks(conn, topic_name: str, partitions: list[int]) -> dict[int, tuple[int | None, int | None]]:
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    admin = conn.admin()
    out: dict[int, list] = {p: [None, None] for p in partitions}
    if not partitions:
        return {}
    for i, spec in enumerate((OffsetSpec.earliest(), OffsetSpec.latest())):
        res = conn.wait(admin.list_offsets({TopicPartition(topic_name, p): spec for p in partitions},
                                           request_timeout=conn.timeout))
        for tp, r in res.items():
            if not isinstance(r, Exception):
                out[tp.partition][i] = r.offset
    return {p: tuple(v) for p, v in out.items()}


def _configs(conn, topic_name: str, all_configs: bool) -> list[dict]:
    from confluent_kafka.admin import ConfigResource, ConfigSource

    res = conn.wait(conn.admin().describe_configs([ConfigResource("topic", topic_name)],
                                                  request_timeout=conn.timeout))
    (entries,) = res.values()
    if isinstance(entries, Exception):
        raise entries
    out = []
    for name in sorted(entries):
        e = entries[name]
        if e.is_default and not all_configs:
            continue
        try:
            source = ConfigSource(e.source).name
        except ValueError:
            source = str(e.source)
        out.append({"name": name, "value": "(sensitive)" if e.is_sensitive else e.value, "source": source,
                    "default": bool(e.is_default)})
    return out


@topic.command("describe")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("-a", "--all-configs", is_flag=True, help="Show every config, not only those that differ from defaults.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@client_options
def describe(names, all_configs, as_json, conn):
    """Show partitions (leader, replicas, ISR, watermarks) and non-default configs.

    \b
    Examples:
      odradek topic describe orders
      odradek topic describe orders --all-configs
      odradek topic describe orders --json | jq '.[0].partitions[].high_watermark'
    """
    md = conn.metadata()
    for n in names:
        conn.topic_metadata(n, md)
    docs = []
    for n in names:
        t = md.topics[n]
        parts = sorted(t.partitions)
        marks = _watermarks(conn, n, parts)
        partitions = []
        for p in parts:
            pm = t.partitions[p]
            lo, hi = marks.get(p, (None, None))
            partitions.append({"partition": p, "leader": pm.leader, "replicas": list(pm.replicas),
                               "isr": list(pm.isrs), "low_watermark": lo, "high_watermark": hi,
                               "error": kafka_error_text(pm.error) if pm.error else None})
        docs.append({"name": n, "internal": n.startswith("__"), "partitions": partitions,
                     "replication_factor": max((len(p["replicas"]) for p in partitions), default=0),
                     "configs": _configs(conn, n, all_configs)})
    if as_json:
        print_json(docs)
        return
    out = Output()
    for d in docs:
        out.section("SUMMARY")
        out.pairs([("NAME", d["name"]), ("PARTITIONS", len(d["partitions"])),
                   ("REPLICAS", d["replication_factor"]),
                   ("MESSAGES", sum((p["high_watermark"] or 0) - (p["low_watermark"] or 0) for p in d["partitions"]))])
        out.section("CONFIGS" if all_configs else "CONFIGS (non-default)")
        if d["configs"]:
            out.table(["KEY", "VALUE", "SOURCE"], [[c["name"], c["value"], c["source"]] for c in d["configs"]])
        else:
            out.write("(none)")
        out.section("PARTITIONS")
        cols = ["PARTITION", "LEADER", "REPLICAS", "ISR", "LOW-WATERMARK", "HIGH-WATERMARK"]
        rows = [[p["partition"], p["leader"], p["replicas"], p["isr"], p["low_watermark"], p["high_watermark"]]
                for p in d["partitions"]]
        if any(p["error"] for p in d["partitions"]):
            cols.append("ERROR")
            for r, p in zip(rows, d["partitions"]):
                r.append(p["error"])
        out.table(cols, rows)


@topic.command("delete")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@client_options
def delete(names, conn):
    """Delete topics and all their records.

    Exits 3 if a topic does not exist, 1 on any other failure.

    \b
    Examples:
      odradek topic delete orders
      odradek topic delete tmp-1 tmp-2 tmp-3
    """
    admin = conn.admin()
    results = conn.wait(admin.delete_topics(list(dict.fromkeys(names)), request_timeout=conn.timeout,
                                            operation_timeout=conn.timeout))
    failed, unknown = _status_table(Output(), "TOPIC", results)
    if unknown:
        raise SystemExit(EXIT_NOT_FOUND)
    if failed:
        raise SystemExit(EXIT_ERROR)


@topic.command("alter-config")
@click.argument("name")
@click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a topic config, repeatable.")
@click.option("-d", "--delete", "deletes", multiple=True, metavar="KEY",
              help="Remove an override so the broker default applies again, repeatable.")
@client_options
def alter_config(name, sets, deletes, conn):
    """Set or remove topic configs (IncrementalAlterConfigs; other configs are untouched).

    \b
    Examples:
      odradek topic alter-config orders --set retention.ms=3600000
      odradek topic alter-config orders -s cleanup.policy=compact -s segment.bytes=1048576
      odradek topic alter-config orders --delete retention.ms
    """
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    if not sets and not deletes:
        raise click.UsageError("nothing to do: give --set KEY=VALUE and/or --delete KEY")
    pairs = parse_kv(sets, "--set")
    conn.topic_metadata(name)
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in pairs]
    entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE) for k in deletes]
    res = conn.wait(conn.admin().incremental_alter_configs(
        [ConfigResource("topic", name, incremental_configs=entries)], request_timeout=conn.timeout))
    (r,) = res.values()
    if isinstance(r, Exception):
        raise r
    rows = [[k, v, "set"] for k, v in pairs] + [[k, None, "deleted"] for k in deletes]
    Output().table(["KEY", "VALUE", "CHANGE"], rows)


@topic.command("add-partitions")
@click.argument("name")
@click.option("-n", "--count", type=click.IntRange(min=1), required=True,
              help="How many partitions to add (not the new total).")
@client_options
def add_partitions(name, count, conn):
    """Add partitions to a topic (their number can only grow).

    Keys hash to other partitions afterwards, so per-key order is only kept
    for records produced after the change.

    \b
    Examples:
      odradek topic add-partitions orders --count 3
    """
    from confluent_kafka.admin import NewPartitions

    t = conn.topic_metadata(name)
    before = len(t.partitions)
    res = conn.wait(conn.admin().create_partitions([NewPartitions(name, before + count)],
                                                   request_timeout=conn.timeout, operation_timeout=conn.timeout))
    (r,) = res.values()
    if isinstance(r, Exception):
        raise r
    Output().table(["TOPIC", "PARTITIONS-BEFORE", "PARTITIONS-AFTER"], [[name, before, before + count]])

