"""``odradek dump-log``: print the batches (and records) of ``.log`` segment files."""

from __future__ import annotations

import json
import mmap
import os
import sys

import click

from odradek.cli.common import EXIT_ERROR, bytes_json, headers_json, human_bytes

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def _segment_files(paths) -> list[str]:
    out = []
    for p in paths:
        if os.path.isdir(p):
            logs = sorted(f for f in os.listdir(p) if f.endswith(".log"))
            if not logs:
                raise click.BadParameter(f"{p!r} holds no .log files", param_hint="PATH")
            out += [os.path.join(p, f) for f in logs]
        else:
            out.append(p)
    return out


def batch_doc(buf, pos: int, h) -> dict:
    from odradek.protocol.batch import InvalidBatch, compute_crc, validate

    crc_valid = h.magic == 2 and compute_crc(buf, pos, h.size) == h.crc
    error = None
    if h.magic != 2:
        error = f"magic {h.magic} (legacy message set) is not decoded"
    else:
        try:
            validate(buf, pos, pos + h.size)
        except InvalidBatch as e:
            error = str(e)
    return {
        "position": pos, "base_offset": h.base_offset, "last_offset": h.last_offset, "count": h.records_count,
        "size": h.size, "magic": h.magic, "crc": h.crc, "crc_valid": crc_valid, "valid": error is None,
        "error": error, "codec": CODECS.get(h.compression, f"codec-{h.compression}"),
        "timestamp_type": "LogAppendTime" if h.log_append_time else "CreateTime",
        "base_timestamp": h.base_timestamp, "max_timestamp": h.max_timestamp,
        "partition_leader_epoch": h.partition_leader_epoch, "producer_id": h.producer_id,
        "producer_epoch": h.producer_epoch, "base_sequence": h.base_sequence,
        "transactional": h.is_transactional, "control": h.is_control,
    }


def record_docs(buf, pos: int, is_control: bool) -> list[dict]:
    from odradek.protocol.batch import InvalidBatch
    from odradek.protocol.records import decode_batch, decode_control_key, decode_end_txn_marker

    _, records = decode_batch(buf, pos, verify_crc=False)
    out = []
    for r in records:
        d = {"offset": r.offset, "timestamp": r.timestamp}
        if is_control:
            try:
                ck = decode_control_key(r.key)
                d["control_type"] = {0: "ABORT", 1: "COMMIT"}.get(ck.type, f"type-{ck.type}")
                if ck.type in (0, 1):
                    d["coordinator_epoch"] = decode_end_txn_marker(r.value).coordinator_epoch
            except InvalidBatch as e:
                d["error"] = str(e)
        bytes_json(r.key, "key", d)
        bytes_json(r.value, "value", d)
        d["headers"] = headers_json(r.headers)
        out.append(d)
    return out


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _text_value(d: dict, name: str) -> str:
    v = d.get(name)
    if v is None:
        return "null"
    if d.get(name + "_encoding") == "base64":
        return "base64:" + v
    return json.dumps(v, ensure_ascii=False)


def _header_text(h: dict) -> str:
    v = h["value"]
    if v is None:
        return h["key"]
    return f"{h['key']}=" + ("base64:" + v if h.get("encoding") == "base64" else v)


_BATCH_FIELDS = [
    ("baseOffset", "base_offset"), ("lastOffset", "last_offset"), ("count", "count"), ("position", "position"),
    ("size", "size"), ("crcValid", "crc_valid"), ("codec", "codec"), ("timestampType", "timestamp_type"),
    ("baseTimestamp", "base_timestamp"), ("maxTimestamp", "max_timestamp"), ("producerId", "producer_id"),
    ("producerEpoch", "producer_epoch"), ("baseSequence", "base_sequence"), ("isTransactional", "transactional"),
    ("isControl", "control"), ("leaderEpoch", "partition_leader_epoch"),
]


class _Printer:
    def __init__(self):
        self.tty = sys.stdout.isatty()

    def line(self, parts: list[tuple[str, str]], prefix: str = "", bad: bool = False) -> None:
        if self.tty:
            text = prefix + " ".join(click.style(k + ":", dim=True) + " " + v for k, v in parts)
            click.echo(click.style(text, fg="red") if bad else text)
        else:
            click.echo(prefix + " ".join(f"{k}: {v}" for k, v in parts))

    def plain(self, text: str, bold: bool = False) -> None:
        click.echo(click.style(text, bold=True) if self.tty and bold else text)


@click.command("dump-log")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...",
                type=click.Path(exists=True, readable=True))
@click.option("-r", "--records", is_flag=True, help="Also print each record (offset, timestamp, key, value, headers).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per batch (JSON Lines); with --records each holds a records list.")
def dump_log(paths, records, as_json):
    """Print the record batches of Kafka/odradek .log segment files.

    PATH is a segment file (00000000000000000000.log) or a partition
    directory (all its .log files in order). Works offline, on any Kafka
    log segment with magic-2 batches. Exits 1 if a batch is corrupt (bad
    CRC or framing); an incomplete batch at the end (a torn write) is
    reported but is not an error.

    \b
    Examples:
      odradek dump-log data/orders-0/00000000000000000000.log
      odradek dump-log data/orders-0 --records
      odradek dump-log data/orders-0/00000000000000000000.log --json | jq 'select(.crc_valid | not)'
    """
    from odradek.protocol.batch import HEADER_SIZE, InvalidBatch, iter_batches

    pr = _Printer()
    any_invalid = False
    for path in _segment_files(paths):
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        try:
            n_batches = n_records = end = 0
            invalid = 0
            if not as_json:
                pr.plain(f"Dumping {path} ({human_bytes(size)})", bold=True)
            for pos, h in iter_batches(buf, 0, size):
                d = batch_doc(buf, pos, h)
                end = pos + h.size
                n_batches += 1
                n_records += h.records_count
                invalid += not d["valid"]
                recs = None
                rec_error = None
                if records and h.magic == 2:
                    try:
                        recs = record_docs(buf, pos, h.is_control)
                    except InvalidBatch as e:
                        rec_error = str(e)
                if as_json:
                    doc = dict(file=path, **d)
                    if records:
                        doc["records"] = recs
                        if rec_error:
                            doc["records_error"] = rec_error
                    sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
                    continue
                parts = [(k, _show(d[f])) for k, f in _BATCH_FIELDS]
                if d["error"]:
                    parts.append(("error", d["error"]))
                pr.line(parts, bad=not d["valid"])
                if rec_error:
                    pr.line([("error", f"cannot decode records: {rec_error}")], prefix="| ", bad=True)
                for r in recs or ():
                    rparts = [("offset", str(r["offset"])), ("timestamp", str(r["timestamp"]))]
                    if "control_type" in r:
                        rparts.append(("endTxnMarker", r["control_type"]))
                        if "coordinator_epoch" in r:
                            rparts.append(("coordinatorEpoch", str(r["coordinator_epoch"])))
                    else:
                        rparts += [("key", _text_value(r, "key")), ("value", _text_value(r, "value"))]
                        if r["headers"]:
                            rparts.append(("headers", ",".join(_header_text(h) for h in r["headers"])))
                    pr.line(rparts, prefix="| ")
            trailing = size - end
            torn = bool(trailing) and (trailing < HEADER_SIZE or _incomplete(buf, end, size))
            any_invalid |= invalid > 0 or (bool(trailing) and not torn)
            if as_json:
                if trailing:
                    sys.stdout.write(json.dumps({"file": path, "position": end, "trailing_bytes": trailing,
                                                 "incomplete": torn}) + "\n")
                continue
            summary = f"{n_batches:,} batches, {n_records:,} records, {human_bytes(end)}"
            summary += f", {invalid} invalid" if invalid else ", all valid"
            if trailing:
                kind = "an incomplete batch" if torn else "unreadable data"
                summary += f"; {trailing:,} trailing bytes at position {end} ({kind})"
            pr.plain(summary)
        finally:
            if isinstance(buf, mmap.mmap):
                buf.close()
            _dump_txn_index(path, pr, as_json)
    if any_invalid:
        sys.exit(EXIT_ERROR)


def _dump_txn_index(log_path: str, pr, as_json: bool) -> None:
    """The segment's ``.txnindex`` (Kafka's AbortedTxn entries), if it has one."""
    import struct

    path = log_path[: -len(".log")] + ".txnindex" if log_path.endswith(".log") else None
    if path is None or not os.path.exists(path):
        return
    with open(path, "rb") as f:
        raw = f.read()
    entry = struct.Struct(">hqqqq")
    n = len(raw) // entry.size
    if not as_json:
        pr.plain(f"Dumping {path} ({n} aborted transaction(s))", bold=True)
    for i in range(n):
        version, pid, first, last, lso = entry.unpack_from(raw, i * entry.size)
        doc = {"version": version, "producer_id": pid, "first_offset": first,
               "last_offset": last, "last_stable_offset": lso}
        if as_json:
            sys.stdout.write(json.dumps({"file": path, "aborted_txn": doc}) + "\n")
        else:
            pr.line([("version", str(version)), ("producerId", str(pid)),
                     ("firstOffset", str(first)), ("lastOffset", str(last)),
                     ("lastStableOffset", str(lso))])
    if len(raw) % entry.size and not as_json:
        pr.plain(f"{len(raw) % entry.size} trailing bytes (an incomplete entry)")


def _incomplete(buf, pos: int, size: int) -> bool:
    """Does the data at ``pos`` look like the start of a batch that runs past the end of the file?"""
    from odradek.protocol.batch import HEADER_SIZE, peek_size

    if size - pos < 12:
        return True
    declared = peek_size(buf, pos)
    return declared >= HEADER_SIZE and pos + declared > size
