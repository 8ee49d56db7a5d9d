"""``odradek group``: list, describe, reset offsets of and delete consumer groups."""

from __future__ import annotations

import click

from odradek.cli.common import (
    EXIT_ERROR, EXIT_NOT_FOUND, CliError, NotFound, Output, client_options, kafka_error_name, kafka_error_text,
    note, parse_time, print_json,
)

_NO_OFFSET = -1001


@click.group()
def group() -> None:
    """List, describe, reset and delete consumer groups.

    \b
    Examples:
      odradek group list
      odradek group describe billing
      odradek group reset-offsets billing --topic orders --to-earliest            # dry run
      odradek group reset-offsets billing --topic orders --to-earliest --execute
      odradek group delete billing
    """


def _state_name(state) -> str:
    name = getattr(state, "name", str(state))
    return name.replace("_", " ").title().replace(" ", "") if name != "UNKNOWN" else "Unknown"


def _describe(conn, group_id: str):
    res = conn.wait(conn.admin().describe_consumer_groups([group_id], request_timeout=conn.timeout))
    d = res[group_id]
    if isinstance(d, Exception):
        raise d
    return d


def _committed(conn, group_id: str, partitions=None) -> dict[tuple[str, int], int]:
    from confluent_kafka import ConsumerGroupTopicPartitions

    res = conn.wait(conn.admin().list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group_id, partitions)], request_timeout=conn.timeout))
    r = res[group_id]
    if isinstance(r, Exception):
        raise r
    return {(tp.topic, tp.partition): tp.offset for tp in r.topic_partitions or ()
            if tp.offset != _NO_OFFSET and tp.error is None}


def _offsets(conn, keys, spec) -> dict[tuple[str, int], int]:
    from confluent_kafka import TopicPartition

    keys = list(keys)
    if not keys:
        return {}
    res = conn.wait(conn.admin().list_offsets({TopicPartition(t, p): spec for t, p in keys},
                                              request_timeout=conn.timeout))
    out = {}
    for tp, r in res.items():
        if isinstance(r, Exception):
            raise r
        out[(tp.topic, tp.partition)] = r.offset
    return out


def _node(node) -> str | None:
    if node is None:
        return None
    return f"{node.id} ({node.host}:{node.port})"


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@client_options
def list_(as_json, conn):
    """List the consumer groups the cluster knows.

    \b
    Examples:
      odradek group list
      odradek group list --json | jq -r '.[].group'
    """
    res = conn.admin().list_consumer_groups(request_timeout=conn.timeout).result()
    rows = []
    for g in sorted(res.valid, key=lambda g: g.group_id):
        gtype = getattr(g, "type", None)
        rows.append({"group": g.group_id, "state": _state_name(g.state),
                     "type": getattr(gtype, "name", "").lower() or None,
                     "simple": bool(g.is_simple_consumer_group)})
    for e in res.errors:
        note(f"warning: {kafka_error_text(e)}")
    if as_json:
        print_json(rows)
        return
    Output().table(["GROUP", "STATE"], [[r["group"], r["state"]] for r in rows])


def describe_doc(conn, group_id: str) -> dict:
    from confluent_kafka.admin import OffsetSpec

    d = _describe(conn, group_id)
    committed = _committed(conn, group_id)
    state = _state_name(d.state)
    if state == "Dead" and not committed and not d.members:
        raise NotFound(f"unknown group {group_id!r}")
    owner: dict[tuple[str, int], object] = {}
    members = []
    for m in d.members:
        tps = list(m.assignment.topic_partitions) if m.assignment else []
        for tp in tps:
            owner[(tp.topic, tp.partition)] = m
        members.append({"member_id": m.member_id, "group_instance_id": m.group_instance_id,
                        "client_id": m.client_id, "host": m.host,
                        "assignment": [{"topic": tp.topic, "partition": tp.partition} for tp in tps]})
    keys = sorted(set(committed) | set(owner))
    md = conn.metadata()
    known = [k for k in keys if k[0] in md.topics]
    ends = _offsets(conn, known, OffsetSpec.latest())
    partitions = []
    total = 0
    for k in keys:
        cur, end = committed.get(k), ends.get(k)
        lag = max(0, end - cur) if cur is not None and end is not None and end >= 0 else None
        total += lag or 0
        m = owner.get(k)
        partitions.append({"topic": k[0], "partition": k[1], "committed_offset": cur, "log_end_offset": end,
                           "lag": lag, "member_id": m.member_id if m else None,
                           "client_id": m.client_id if m else None, "host": m.host if m else None})
    gtype = getattr(d, "type", None)
    return {"group": d.group_id, "coordinator": _node(d.coordinator), "state": state,
            "type": getattr(gtype, "name", "").lower() or None, "protocol": d.partition_assignor or None,
            "simple": bool(d.is_simple_consumer_group), "members": members, "partitions": partitions,
            "total_lag": total}


@group.command("describe")
@click.argument("groups", nargs=-1, required=True, metavar="GROUP...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@client_options
def describe(groups, as_json, conn):
    """Show a group's state, members, committed offsets and lag.

    LAG is LOG-END-OFFSET minus CURRENT-OFFSET (the committed offset) per
    partition; TOTAL-LAG sums it. Exits 3 if the group is unknown.

    \b
    Examples:
      odradek group describe billing
      odradek group describe billing --json | jq '.[0].total_lag'
    """
    docs = [describe_doc(conn, g) for g in dict.fromkeys(groups)]
    if as_json:
        print_json(docs)
        return
    out = Output()
    for d in docs:
        out.pairs([("GROUP", d["group"]), ("COORDINATOR", d["coordinator"]), ("STATE", d["state"]),
                   ("PROTOCOL", d["protocol"]), ("MEMBERS", len(d["members"])), ("TOTAL-LAG", d["total_lag"])])
        if d["members"]:
            out.section("MEMBERS")
            out.table(["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"],
                      [[m["member_id"], m["client_id"], m["host"], _assignment_text(m["assignment"])]
                       for m in d["members"]])
        out.section("OFFSETS")
        if d["partitions"]:
            out.table(["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER-ID"],
                      [[p["topic"], p["partition"], p["committed_offset"], p["log_end_offset"], p["lag"],
                        p["member_id"]] for p in d["partitions"]])
        else:
            out.write("(no committed offsets)")


def _assignment_text(assignment) -> str:
    from odradek.cli.common import partitions_text

    by_topic: dict[str, list[int]] = {}
    for a in assignment:
        by_topic.setdefault(a["topic"], []).append(a["partition"])
    return " ".join(f"{t}[{partitions_text(ps)}]" for t, ps in sorted(by_topic.items())) or "-"


def _parse_topic_spec(spec: str) -> tuple[str, list[int] | None]:
    """``orders`` or ``orders:0,1,4``."""
    if ":" in spec:
        name, _, parts = spec.rpartition(":")
        try:
            return name, sorted({int(p) for p in parts.split(",") if p.strip()})
        except ValueError:
            raise click.BadParameter(f"{spec!r}: expected TOPIC or TOPIC:P[,P...]", param_hint="--topic") from None
    return spec, None


@group.command("reset-offsets")
@click.argument("group_id", metavar="GROUP")
@click.option("-t", "--topic", "topic_specs", multiple=True, required=True, metavar="TOPIC[:P,...]",
              help="Topic whose offsets to reset (all partitions, or the listed ones), repeatable.")
@click.option("--to-earliest", is_flag=True, help="To the log start offset.")
@click.option("--to-latest", is_flag=True, help="To the log end offset (skip everything).")
@click.option("--to-offset", type=int, default=None, metavar="N", help="To offset N (clamped to the log).")
@click.option("--to-datetime", default=None, metavar="TIME",
              help="To the first offset at or after TIME (ms, ISO 8601, or -1h style).")
@click.option("--shift-by", type=int, default=None, metavar="N", help="Move the committed offset by N (may be negative).")
@click.option("--execute", is_flag=True, help="Apply the change (without it: show the plan only).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@client_options
def reset_offsets(group_id, topic_specs, to_earliest, to_latest, to_offset, to_datetime, shift_by, execute, as_json, conn):
    """Move a group's committed offsets: a dry run unless --execute.

    The group must have no active members to --execute (stop its consumers
    first); new offsets are clamped to each partition's [log start, log end].

    \b
    Examples:
      odradek group reset-offsets billing -t orders --to-earliest
      odradek group reset-offsets billing -t orders --to-datetime 2024-05-01T00:00:00Z --execute
      odradek group reset-offsets billing -t orders:0,1 --to-offset 1000 --execute
      odradek group reset-offsets billing -t orders --shift-by -50 --execute
    """
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    mode = "earliest" if to_earliest else "latest" if to_latest else None
    chosen = [x for x in (to_earliest, to_latest, to_offset is not None, to_datetime is not None, shift_by is not None) if x]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by")
    ts = parse_time(to_datetime, "--to-datetime") if to_datetime is not None else None

    md = conn.metadata()
    keys: list[tuple[str, int]] = []
    for spec in topic_specs:
        name, parts = _parse_topic_spec(spec)
        t = conn.topic_metadata(name, md)
        for p in parts if parts is not None else sorted(t.partitions):
            if p not in t.partitions:
                raise NotFound(f"partition {p} does not exist: {name} has {len(t.partitions)} partition(s)")
            keys.append((name, p))
    keys = list(dict.fromkeys(keys))

    d = _describe(conn, group_id)
    state = _state_name(d.state)
    if execute and (d.members or state not in ("Empty", "Dead", "Unknown")):
        raise CliError(f"group {group_id!r} is not empty (state {state}, {len(d.members)} member(s)); "
                       "stop its consumers before resetting offsets")
    current = _committed(conn, group_id, [TopicPartition(t, p) for t, p in keys])
    low = _offsets(conn, keys, OffsetSpec.earliest())
    high = _offsets(conn, keys, OffsetSpec.latest())
    by_time = _offsets(conn, keys, OffsetSpec.for_timestamp(ts)) if ts is not None else {}

    plan = []
    for k in keys:
        lo, hi, cur = low[k], high[k], current.get(k)
        if mode == "earliest":
            new = lo
        elif mode == "latest":
            new = hi
        elif to_offset is not None:
            new = to_offset
        elif ts is not None:
            new = by_time.get(k, -1)
            if new is None or new < 0:
                new = hi
        else:
            new = (cur if cur is not None else lo) + shift_by
        new = min(max(new, lo), hi)
        plan.append({"topic": k[0], "partition": k[1], "current_offset": cur, "new_offset": new,
                     "log_start_offset": lo, "log_end_offset": hi})

    if execute:
        req = ConsumerGroupTopicPartitions(group_id, [TopicPartition(p["topic"], p["partition"], p["new_offset"])
                                                      for p in plan])
        res = conn.wait(conn.admin().alter_consumer_group_offsets([req], request_timeout=conn.timeout))
        r = res[group_id]
        if isinstance(r, Exception):
            if kafka_error_name(r.args[0]) in ("UNKNOWN_MEMBER_ID", "REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION"):
                raise CliError(f"group {group_id!r} became active; stop its consumers and retry")
            raise r
        failed = [tp for tp in r.topic_partitions if tp.error is not None]
        if failed:
            raise CliError("; ".join(f"{tp.topic}[{tp.partition}]: {kafka_error_text(tp.error)}" for tp in failed))
    if as_json:
        print_json({"group": group_id, "executed": execute, "partitions": plan})
    else:
        Output().table(["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
                       [[p["topic"], p["partition"], p["current_offset"], p["new_offset"]] for p in plan])
    if execute:
        note(f"reset {len(plan)} partition(s) of group {group_id}")
    else:
        note("dry run: nothing changed; add --execute to apply")


@group.command("delete")
@click.argument("groups", nargs=-1, required=True, metavar="GROUP...")
@client_options
def delete(groups, conn):
    """Delete consumer groups and their committed offsets (they must be empty).

    \b
    Examples:
      odradek group delete billing
      odradek group delete old-1 old-2
    """
    groups = list(dict.fromkeys(groups))
    res = conn.wait(conn.admin().delete_consumer_groups(groups, request_timeout=conn.timeout))
    rows, code = [], 0
    for g in groups:
        r = res[g]
        if isinstance(r, Exception):
            name = kafka_error_name(r.args[0]) if r.args else ""
            code = max(code, EXIT_NOT_FOUND if name == "GROUP_ID_NOT_FOUND" else EXIT_ERROR)
            rows.append([g, kafka_error_text(r)])
        else:
            rows.append([g, "OK"])
    Output().table(["GROUP", "STATUS"], rows)
    if code:
        raise SystemExit(code)
