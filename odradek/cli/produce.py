"""``odradek produce``: one record per input line."""

from __future__ import annotations

import base64
import json
import os
import sys
import time

import click

from odradek.cli.common import (
    EXIT_ERROR, EXIT_INTERRUPTED, CliError, client_options, human_bytes, kafka_error_text, note, parse_kv,
    parse_time, unescape, warn,
)

_ACKS = {"all": "all", "-1": "all", "1": "1", "0": "0"}


class LineError(CliError):
    pass


def _json_bytes(obj: dict, name: str, lineno: int) -> bytes | None:
    v = obj.get(name)
    if v is None:
        return None
    enc = obj.get(name + "_encoding")
    if enc is not None:
        if enc != "base64":
            raise LineError(f"line {lineno}: unknown {name}_encoding {enc!r} (only base64)")
        if not isinstance(v, str):
            raise LineError(f"line {lineno}: base64 {name} must be a string")
        try:
            return base64.b64decode(v, validate=True)
        except ValueError:
            raise LineError(f"line {lineno}: {name} is not valid base64") from None
    if isinstance(v, str):
        return v.encode()
    return json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode()


def _json_headers(raw, lineno: int) -> list[tuple[str, bytes | None]]:
    """Headers as {"k": "v"}, [{"key": k, "value": v, "encoding"?: "base64"}] or [["k", "v"]]."""
    if raw is None:
        return []
    out = []
    if isinstance(raw, dict):
        items = [{"key": k, "value": v} for k, v in raw.items()]
    elif isinstance(raw, list):
        items = []
        for h in raw:
            if isinstance(h, (list, tuple)) and len(h) == 2:
                items.append({"key": h[0], "value": h[1]})
            elif isinstance(h, dict) and "key" in h:
                items.append(h)
            else:
                raise LineError(f"line {lineno}: a header must be {{\"key\": ..., \"value\": ...}} or [key, value]")
    else:
        raise LineError(f"line {lineno}: headers must be an object or a list")
    for h in items:
        if not isinstance(h["key"], str):
            raise LineError(f"line {lineno}: header keys must be strings")
        enc = h.get("encoding")
        if enc is not None:
            h = dict(h, value_encoding=enc)
        out.append((h["key"], _json_bytes(h, "value", lineno)))
    return out


def parse_json_line(line: bytes, lineno: int) -> dict:
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise LineError(f"line {lineno}: invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise LineError(f"line {lineno}: expected a JSON object with key/value/headers/partition/timestamp")
    unknown = set(obj) - {"key", "value", "headers", "partition", "timestamp", "topic", "offset",
                          "key_encoding", "value_encoding", "timestamp_type"}
    if unknown:
        raise LineError(f"line {lineno}: unknown field(s) {', '.join(sorted(unknown))}")
    rec = {"key": _json_bytes(obj, "key", lineno), "value": _json_bytes(obj, "value", lineno),
           "headers": _json_headers(obj.get("headers"), lineno)}
    p = obj.get("partition")
    if p is not None:
        if not isinstance(p, int) or isinstance(p, bool) or p < 0:
            raise LineError(f"line {lineno}: partition must be a non-negative integer")
        rec["partition"] = p
    ts = obj.get("timestamp")
    if ts is not None:
        if isinstance(ts, int) and not isinstance(ts, bool):
            rec["timestamp"] = ts
        elif isinstance(ts, str):
            try:
                rec["timestamp"] = parse_time(ts, "timestamp")
            except click.BadParameter:
                raise LineError(f"line {lineno}: timestamp {ts!r} is neither ms nor ISO 8601") from None
        else:
            raise LineError(f"line {lineno}: timestamp must be milliseconds or an ISO 8601 string")
    return rec


class _Progress:
    """A rich progress bar over the input file's bytes, with records and rate."""

    def __init__(self, path: str, total: int):
        from rich.console import Console
        from rich.progress import (
            BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TextColumn("{task.fields[records]:,} records ({task.fields[rate]:,.0f}/s)"), TimeRemainingColumn(),
            console=Console(file=sys.stderr), transient=False)
        self.task = self.progress.add_task(os.path.basename(path), total=total, records=0, rate=0.0)
        self.start = time.monotonic()
        self.last = 0.0

    def __enter__(self):
        self.progress.start()
        return self

    def update(self, pos: int, records: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= 0.1:
            self.last = now
            rate = records / max(now - self.start, 1e-6)
            self.progress.update(self.task, completed=pos, records=records, rate=rate)

    def __exit__(self, *exc):
        self.progress.stop()


@click.command()
@click.argument("topic")
@click.option("-f", "--file", "path", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              help="Read records from this file instead of stdin ('-' is stdin).")
@click.option("-k", "--key-separator", "key_sep", metavar="SEP",
              help=r"Split each line at the first SEP: key before, value after (\t allowed). "
                   "Lines without SEP get no key.")
@click.option("-H", "--header", "headers", multiple=True, metavar="KEY=VALUE",
              help="Add this header to every record, repeatable.")
@click.option("-p", "--partition", type=click.IntRange(min=0), default=None,
              help="Write every record to this partition (default: by key hash, murmur2 as the Java client).")
@click.option("-z", "--compression", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]),
              default="none", show_default=True, help="Compress batches with this codec.")
@click.option("--acks", type=click.Choice(["all", "-1", "1", "0"]), default="all", show_default=True,
              help="Acknowledgements the leader waits for before answering.")
@click.option("--json", "json_mode", is_flag=True,
              help="Each line is a JSON object: key, value, headers, partition, timestamp "
                   "(odradek consume --json output is accepted as is).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar when reading a --file [default: when stderr is a terminal].")
@click.option("--linger-ms", type=click.IntRange(min=0), default=5, show_default=True,
              help="How long to wait to fill a batch.")
@client_options
def produce(topic, path, key_sep, headers, partition, compression, acks, json_mode, progress, linger_ms, conn):
    """Write records to TOPIC, one per line of stdin or --file.

    Prints a summary (records, bytes, time) to stderr and exits 1 if any
    record could not be delivered.

    \b
    Examples:
      echo hello | odradek produce greetings
      printf 'user-1:clicked\\nuser-2:scrolled\\n' | odradek produce events -k :
      odradek produce events -f events.txt -z zstd -H source=import
      odradek produce events --json <<'EOF'
      {"key": "user-1", "value": {"action": "clicked"}, "headers": {"trace": "abc"}}
      {"key": "user-2", "value": "scrolled", "partition": 2, "timestamp": "2024-05-01T12:00:00Z"}
      EOF
    """
    from confluent_kafka import KafkaException, Producer

    fixed_headers = [(k, v.encode()) for k, v in parse_kv(headers, "--header")]
    sep = unescape(key_sep).encode() if key_sep else None
    if sep is not None and not sep:
        raise click.BadParameter("must not be empty", param_hint="--key-separator")

    errors: list[str] = []
    state = {"ok": 0, "failed": 0}

    def delivered(err, msg):
        if err is None:
            state["ok"] += 1
        else:
            state["failed"] += 1
            if len(errors) < 5:
                errors.append(kafka_error_text(err))

    cfg = conn.config(**{
        "acks": _ACKS[acks],
        "compression.type": compression,
        "linger.ms": linger_ms,
        "partitioner": "murmur2_random",
        "queue.buffering.max.messages": 200_000,
        "message.timeout.ms": max(30_000, int(conn.timeout * 3000)),
    })
    try:
        producer = Producer(cfg)
    except KafkaException as e:
        raise CliError(f"cannot create producer: {kafka_error_text(e)}") from None
    md = conn.check(producer)
    tmeta = conn.topic_metadata(topic, md)
    nparts = len(tmeta.partitions)
    if partition is not None and partition >= nparts:
        raise CliError(f"partition {partition} does not exist: {topic} has {nparts} partition(s)", 3)

    if path and path != "-":
        stream = open(path, "rb")
        total = os.path.getsize(path)
    else:
        stream = sys.stdin.buffer
        total = 0
        path = None
        if sys.stdin.isatty():
            note(f"reading records for {topic} from stdin, one per line; Ctrl-D to finish")
    if progress is None:
        progress = path is not None and sys.stderr.isatty()
    bar = _Progress(path, total) if progress and path is not None else None

    count = nbytes = pos = 0
    started = time.monotonic()
    interrupted = False
    line_error = None
    produce_fn = producer.produce
    poll = producer.poll
    try:
        if bar:
            bar.__enter__()
        lineno = 0
        for raw in stream:
            lineno += 1
            pos += len(raw)
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if line.endswith(b"\r"):
                line = line[:-1]
            kwargs = {}
            if json_mode:
                if not line.strip():
                    continue
                rec = parse_json_line(line, lineno)
                key, value = rec["key"], rec["value"]
                hdrs = rec["headers"] + fixed_headers
                p = rec.get("partition", partition)
                if p is not None and p >= nparts:
                    raise LineError(f"line {lineno}: partition {p} does not exist: {topic} has {nparts}")
                if "timestamp" in rec:
                    kwargs["timestamp"] = rec["timestamp"]
            else:
                key = None
                value = line
                if sep is not None:
                    i = line.find(sep)
                    if i >= 0:
                        key, value = line[:i], line[i + len(sep):]
                hdrs = fixed_headers
                p = partition
            if p is not None:
                kwargs["partition"] = p
            if hdrs:
                kwargs["headers"] = hdrs
            while True:
                try:
                    produce_fn(topic, value, key, on_delivery=delivered, **kwargs)
                    break
                except BufferError:
                    poll(0.05)
            count += 1
            nbytes += (len(key) if key else 0) + (len(value) if value else 0)
            if count % 1000 == 0:
                poll(0)
                if bar:
                    bar.update(pos, count)
        if bar:
            bar.update(pos, count, force=True)
    except LineError as e:
        line_error = e
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar:
            bar.__exit__(None, None, None)
        if stream is not sys.stdin.buffer:
            stream.close()
    try:
        remaining = producer.flush(cfg["message.timeout.ms"] / 1000 + 5)
    except KeyboardInterrupt:
        remaining = len(producer)
        interrupted = True
    elapsed = time.monotonic() - started
    failed = state["failed"] + remaining
    rate = state["ok"] / elapsed if elapsed > 0 else 0
    summary = (f"produced {state['ok']:,} record{'s' if state['ok'] != 1 else ''} "
               f"({human_bytes(nbytes)}) to {topic} in {elapsed:.2f}s ({rate:,.0f} records/s)")
    if failed:
        warn(f"{summary}; {failed:,} of {count:,} failed: " + "; ".join(dict.fromkeys(errors or ["not delivered"])))
    else:
        note(summary)
    if line_error is not None:
        raise line_error
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if failed:
        sys.exit(EXIT_ERROR)
