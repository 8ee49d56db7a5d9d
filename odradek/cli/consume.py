"""``odradek consume``: print records as they arrive (or up to the end with ``-e``)."""

from __future__ import annotations

import re
import secrets
import signal
import string
import sys
import time

import click

from odradek.cli.common import (
    EXIT_NOT_FOUND, CliError, bytes_json, client_options, dumps, headers_json, iso_time, kafka_error_name,
    kafka_error_text, note, parse_time, partitions_text, quiet_broken_pipe, unescape, warn,
)

FIELDS = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")
OFFSET_BEGINNING, OFFSET_END, OFFSET_STORED = -2, -1, -1000
_TAIL_BASE = -2000  # librdkafka's RD_KAFKA_OFFSET_TAIL(n) == -2000 - n


def parse_offset(text: str | None) -> int | None:
    """earliest/beginning/start, latest/end, N (absolute) or -N (N before the end)."""
    if text is None:
        return None
    t = text.strip().lower()
    if t in ("earliest", "beginning", "start", "oldest"):
        return OFFSET_BEGINNING
    if t in ("latest", "end", "newest"):
        return OFFSET_END
    if re.fullmatch(r"\d+", t):
        return int(t)
    if re.fullmatch(r"-\d+", t):
        n = int(t[1:])
        return _TAIL_BASE - n if n else OFFSET_END
    raise click.BadParameter(f"{text!r}: use earliest, latest, an offset N, or -N for N records before the end",
                             param_hint="--offset")


class Template:
    """A ``str.format``-style template rendered to bytes: key and value are written raw.

    Fields: {topic} {partition} {offset} {timestamp} {key} {value} {headers};
    ``{timestamp:iso}`` gives ISO 8601 (UTC); other format specs apply to
    numbers as in Python (``{offset:>8}``).
    """

    def __init__(self, text: str):
        self.parts = []
        try:
            parsed = list(string.Formatter().parse(unescape(text)))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--format") from None
        for literal, field, spec, conv in parsed:
            if literal:
                self.parts.append((literal.encode(), None, None))
            if field is None:
                continue
            if field not in FIELDS:
                raise click.BadParameter(f"unknown field {{{field}}}; fields are "
                                         + " ".join("{%s}" % f for f in FIELDS), param_hint="--format")
            if conv:
                raise click.BadParameter("conversions (!r, !s) are not supported", param_hint="--format")
            self.parts.append((None, field, spec or ""))

    def render(self, msg) -> bytes:
        out = []
        for literal, field, spec in self.parts:
            if literal is not None:
                out.append(literal)
                continue
            if field == "value" or field == "key":
                v = msg.value() if field == "value" else msg.key()
                if spec:
                    out.append(format((v or b"").decode("utf-8", "replace"), spec).encode())
                else:
                    out.append(v or b"")
            elif field == "headers":
                hs = msg.headers() or []
                text = ",".join(k if v is None else f"{k}={v.decode('utf-8', 'replace')}" for k, v in hs)
                out.append(format(text, spec).encode())
            elif field == "timestamp":
                ts = msg.timestamp()[1]
                out.append((iso_time(ts) if spec == "iso" else format(ts, spec)).encode())
            elif field == "topic":
                out.append(format(msg.topic(), spec).encode())
            else:
                out.append(format(msg.partition() if field == "partition" else msg.offset(), spec).encode())
        out.append(b"\n")
        return b"".join(out)


_TS_TYPES = {0: None, 1: "CreateTime", 2: "LogAppendTime"}


def to_json(msg) -> bytes:
    ts_type, ts = msg.timestamp()
    d = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
         "timestamp": ts if ts_type else None, "timestamp_type": _TS_TYPES.get(ts_type)}
    bytes_json(msg.key(), "key", d)
    bytes_json(msg.value(), "value", d)
    d["headers"] = headers_json(msg.headers())
    return (dumps(d) + "\n").encode()


def _tp_text(tps) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return " ".join(f"{t}[{partitions_text(ps)}]" for t, ps in sorted(by_topic.items())) or "(none)"


@click.command(short_help="Print records of topics as they arrive.")
@click.argument("topics", nargs=-1, required=True, metavar="TOPIC...")
@click.option("--from-beginning", is_flag=True,
              help="Start at the earliest offset when there is no committed offset (as kafka-console-consumer).")
@click.option("-o", "--offset", "offset_text", metavar="OFFSET",
              help="Start here in every partition, committed offsets notwithstanding: earliest, latest, "
                   "an offset N, or -N (N records before the end).")
@click.option("--from-time", metavar="TIME",
              help="Start at the first record at or after TIME: ms since the epoch, ISO 8601 "
                   "(2024-05-01T12:00:00Z; local time without a zone) or relative (-15m, -2h, -1d).")
@click.option("-n", "--count", type=click.IntRange(min=1), default=None, help="Exit after COUNT records.")
@click.option("-g", "--group", default=None,
              help="Consume as a member of consumer group GROUP and commit what was printed "
                   "[default: a new odradek-cli-<random> group that commits nothing].")
@click.option("-p", "--partition", "partitions", type=click.IntRange(min=0), multiple=True,
              help="Read only this partition (assign, no group rebalancing), repeatable.")
@click.option("--follow/--no-follow", " /-e", default=True, show_default=True,
              help="Keep waiting for new records; -e exits at the end of every partition.")
@click.option("-f", "--format", "fmt", metavar="TEMPLATE", default=None,
              help="How to print a record [default: {value}]. Fields: {key} {value} {partition} {offset} "
                   r"{timestamp} {headers} {topic}; {timestamp:iso} for ISO 8601; \t and \n work.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per record (topic, partition, offset, timestamp, key, value, "
                   "headers); bytes that are not UTF-8 come base64-encoded with key_encoding/value_encoding.")
@click.option("--isolation-level", type=click.Choice(["read_uncommitted", "read_committed"]),
              default="read_uncommitted", show_default=True, help="Whether to skip aborted transactions.")
@click.option("-q", "--quiet", is_flag=True, help="Print no summary line on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Report partition assignments and revocations on stderr.")
@client_options
def consume(topics, from_beginning, offset_text, from_time, count, group, partitions, follow, fmt, as_json,
            isolation_level, quiet, verbose, conn):
    """Print records of TOPIC as they arrive (from the latest offset unless told otherwise).

    Follows the topic until Ctrl-C, -n COUNT records, or (-e) the end of all
    partitions. Without --group the consumer joins a fresh group and commits
    nothing; with --group it commits the offsets of the records it printed.

    \b
    Examples:
      odradek consume orders
      odradek consume orders --from-beginning -e
      odradek consume orders -o -10 -e                  # the last 10 of each partition
      odradek consume orders --from-time 2024-05-01T12:00:00Z -n 100
      odradek consume orders -g billing                 # share the work with other members
      odradek consume orders -p 0 -p 1 -o 1500 -e
      odradek consume orders -f '{partition}/{offset}\\t{key}\\t{value}'
      odradek consume orders --json --from-beginning -e | jq .value
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    positions = [x for x in (from_beginning, offset_text is not None, from_time is not None) if x]
    if len(positions) > 1:
        raise click.UsageError("give at most one of --from-beginning, --offset and --from-time")
    if fmt is not None and as_json:
        raise click.UsageError("--format and --json exclude each other")
    start = parse_offset(offset_text)
    start_ms = parse_time(from_time, "--from-time") if from_time is not None else None
    template = None if as_json else Template(fmt if fmt is not None else "{value}")

    cfg = conn.config(**{
        "group.id": group or f"odradek-cli-{secrets.token_hex(4)}",
        "enable.auto.commit": bool(group),
        "enable.auto.offset.store": False,
        "auto.commit.interval.ms": 1000,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.partition.eof": True,
        "isolation.level": isolation_level,
    })
    try:
        consumer = Consumer(cfg)
    except KafkaException as e:
        raise CliError(f"cannot create consumer: {kafka_error_text(e)}") from None
    closed = False

    def close():
        nonlocal closed
        if not closed:
            closed = True
            try:
                consumer.close()
            except (KafkaException, RuntimeError):
                pass

    try:
        md = conn.check(consumer)
        nparts = {}
        for t in dict.fromkeys(topics):
            nparts[t] = len(conn.topic_metadata(t, md).partitions)
            for p in partitions:
                if p >= nparts[t]:
                    raise CliError(f"partition {p} does not exist: {t} has {nparts[t]} partition(s)", EXIT_NOT_FOUND)

        # Explicit start offsets, per (topic, partition); applied at (first) assignment.
        explicit: dict[tuple[str, int], int] = {}
        if start_ms is not None:
            want = [TopicPartition(t, p, start_ms) for t in nparts for p in range(nparts[t])]
            for tp in consumer.offsets_for_times(want, timeout=conn.timeout):
                explicit[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else OFFSET_END
        elif start is not None:
            explicit = {(t, p): start for t in nparts for p in range(nparts[t])}
        elif partitions:
            default = OFFSET_BEGINNING if from_beginning else (OFFSET_STORED if group else OFFSET_END)
            explicit = {(t, p): default for t in nparts for p in range(nparts[t])}

        assigned: set[tuple[str, int]] = set()
        at_eof: set[tuple[str, int]] = set()
        processed: dict[tuple[str, int], int] = {}  # next offset to commit
        positioned: set[tuple[str, int]] = set()

        def commit(keys) -> None:
            if not group:
                return
            offs = [TopicPartition(t, p, processed[(t, p)]) for t, p in keys if (t, p) in processed]
            if offs:
                try:
                    consumer.commit(offsets=offs, asynchronous=False)
                except KafkaException as e:
                    if kafka_error_name(e.args[0]) != "_NO_OFFSET":
                        warn(f"commit failed: {kafka_error_text(e)}")

        def on_assign(c, tps):
            for tp in tps:
                key = (tp.topic, tp.partition)
                if key in explicit and key not in positioned:
                    tp.offset = explicit[key]
                    positioned.add(key)
                assigned.add(key)
                at_eof.discard(key)
            c.assign(tps)
            if verbose:
                note(f"assigned: {_tp_text(tps)}")

        def on_revoke(c, tps):
            keys = [(tp.topic, tp.partition) for tp in tps]
            commit(keys)
            for k in keys:
                processed.pop(k, None)
                assigned.discard(k)
                at_eof.discard(k)
            if verbose:
                note(f"revoked: {_tp_text(tps)}")

        if partitions:
            tps = [TopicPartition(t, p, explicit[(t, p)]) for t in nparts for p in dict.fromkeys(partitions)]
            consumer.assign(tps)
            assigned.update((tp.topic, tp.partition) for tp in tps)
            if verbose:
                note(f"assigned: {_tp_text(tps)}")
        else:
            consumer.subscribe(list(nparts), on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    except BaseException:
        close()
        raise

    stop = {"flag": False}

    def on_signal(signum, frame):
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = True

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    out = sys.stdout.buffer
    n = 0
    started = time.monotonic()
    broken = False
    try:
        while not stop["flag"]:
            want = 500 if count is None else min(500, count - n)
            msgs = consumer.consume(want, 0.2)
            chunks = []
            to_store = {}
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add((m.topic(), m.partition()))
                        continue
                    if err.fatal():
                        raise KafkaException(err)
                    if kafka_error_name(err) in ("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC"):
                        raise CliError(f"unknown topic {m.topic()!r}", EXIT_NOT_FOUND)
                    warn(f"consumer error: {kafka_error_text(err)}")
                    continue
                key = (m.topic(), m.partition())
                at_eof.discard(key)
                chunks.append(to_json(m) if template is None else template.render(m))
                to_store[key] = m.offset() + 1
                n += 1
                if count is not None and n >= count:
                    break
            if chunks:
                try:
                    out.write(b"".join(chunks))
                    out.flush()
                except BrokenPipeError:
                    broken = True
                    break
                processed.update(to_store)
                if group:
                    # Local bookkeeping only; auto-commit sends stored offsets every second.
                    try:
                        consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in
                                                        to_store.items() if (t, p) in assigned])
                    except KafkaException:
                        pass
            if count is not None and n >= count:
                break
            if not follow and assigned and assigned <= at_eof:
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        try:
            commit([k for k in processed if k in assigned])
        finally:
            close()
        if broken:
            quiet_broken_pipe()
    if not quiet and not broken:
        elapsed = time.monotonic() - started
        note(f"consumed {n:,} record{'s' if n != 1 else ''} in {elapsed:.2f}s"
             + (f" (group {group})" if group else ""))

