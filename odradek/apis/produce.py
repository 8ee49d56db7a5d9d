"""Produce (key 0), versions 0-13; advertised from 0 as Apache Kafka 4 does.

Versions 0-2 are framed and answered, but their message sets (magic 0/1) are
refused with UNSUPPORTED_FOR_MESSAGE_FORMAT: only magic-2 record batches are
stored. Old librdkafka (kcat) needs v0 in the advertised range to enable
compression, and then produces v7 with magic 2.

Per partition: every batch's framing and CRC-32C are checked (no record is
decoded), batches over ``max.message.bytes`` get MESSAGE_TOO_LARGE,
idempotent batches are checked against the producer's sequence state
(duplicates answered with their first offsets, gaps with
OUT_OF_ORDER_SEQUENCE_NUMBER), LogAppendTime topics are stamped, and the bytes
are appended as they came. acks=all answers NOT_ENOUGH_REPLICAS when the
topic's ``min.insync.replicas`` exceeds the one in-sync replica.

A topic whose ``compression.type`` names a codec (not ``producer``) has
batches in any other codec decoded and re-encoded in its codec before they are
stored, as Kafka does; that is the one produce path with per-record work.

Record-level checks (KIP-467): on a compacted topic (cleanup.policy with
``compact``) every record must have a key, and a batch whose header
timestamps fall outside ``message.timestamp.before/after.max.ms`` has each of
its records checked. These are the paths that decode records. A partition
with invalid records is refused whole, as Kafka does, but the answer lists
each invalid record (``record_errors``: its index among the partition's
records, and why) with a summary in ``error_message``, so clients fail only
those records and may retry the others. The partition error is
INVALID_TIMESTAMP if any record has a bad timestamp, else INVALID_RECORD.

A partition this broker does not lead is answered NOT_LEADER_OR_FOLLOWER
with, from v10, its current leader and that leader's endpoint (KIP-951).

Transactional batches (one per partition, from an idempotent producer) are
accepted only for a partition that is part of the open transaction of their
producer id and epoch, as Kafka 4 verifies them (KIP-890 part 1): a
producer with no transaction open at the partition is checked with the
transaction coordinator (``broker.transactions.verify``; one on another
broker is asked first with AddPartitionsToTxn v4, ``prepare_verify``), and refused with
its answer (INVALID_TXN_STATE when the partition was not added,
INVALID_PRODUCER_EPOCH for a fenced producer, as Kafka maps the coordinator's
PRODUCER_FENCED, INVALID_PRODUCER_ID_MAPPING, CONCURRENT_TRANSACTIONS), so
no transaction is left hanging. Control batches are written by the broker
only (INVALID_RECORD from a client).
"""

from __future__ import annotations

import asyncio

from odradek.apis.partitions import LeaderHints
from odradek.clock import now_ms
from odradek.protocol import errors
from odradek.protocol.batch import InvalidBatch, iter_batches, validate, MAGIC_OFFSET, HEADER_SIZE
from odradek.protocol.records import decode_batch
from odradek.server.registry import handles
from odradek.topic_admin import TopicError

LONG_MAX = 2**63 - 1
TOPIC_CODECS = {"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
MAX_DECOMPRESSED_DEFAULT = 2147483639  # max.decompressed.message.bytes unset: nothing to check


def recompress(records, headers: list, codec: int, level: int | None = None) -> tuple[bytearray, list]:
    """Re-encode the batches not already in ``codec`` (at ``level``, the codec's
    default when None); return (bytes, their headers)."""
    from odradek.protocol.records import build_batch, decode_batch

    out = bytearray()
    pos = 0
    for h in headers:
        if h.compression == codec:
            out += records[pos:pos + h.size]
        else:
            _, recs = decode_batch(records, pos)
            out += build_batch(recs, base_offset=h.base_offset, compression=codec, compression_level=level,
                               producer_id=h.producer_id, producer_epoch=h.producer_epoch,
                               base_sequence=h.base_sequence, transactional=h.is_transactional,
                               base_timestamp=h.base_timestamp, max_timestamp=h.max_timestamp,
                               preserve_offsets=True, last_offset_delta=h.last_offset_delta)
        pos += h.size
    return out, [h for _, h in iter_batches(out)]


def _error(index: int, code: int, message: str | None = None) -> dict:
    return {"index": index, "error_code": code, "base_offset": -1, "log_append_time_ms": -1,
            "log_start_offset": -1, "error_message": message}


def check_batches(records, max_message_bytes: int) -> list:
    """Validate every batch in ``records``; return their headers. Raises InvalidBatch."""
    headers = []
    pos = 0
    end = len(records)
    if end == 0:
        raise InvalidBatch("empty record set", errors.INVALID_RECORD)
    while pos < end:
        if end - pos > MAGIC_OFFSET and records[pos + MAGIC_OFFSET] != 2:
            raise InvalidBatch("only magic 2 record batches are supported",
                               errors.UNSUPPORTED_FOR_MESSAGE_FORMAT)
        if end - pos >= HEADER_SIZE:
            size = int.from_bytes(records[pos + 8:pos + 12], "big", signed=True) + 12
            if size > max_message_bytes + 12 and pos + size <= end:
                raise InvalidBatch(f"batch of {size} bytes exceeds max.message.bytes",
                                   errors.MESSAGE_TOO_LARGE)
        h = validate(records, pos, end)
        headers.append(h)
        pos += h.size
    return headers


def _record_sizes(records, pos: int, h) -> list[int]:
    """The size of each record of the compressed batch ``h`` at ``pos``, decompressed
    (its length varint and body, as Kafka sizes a record). Raises InvalidBatch."""
    from odradek.protocol import compression
    from odradek.protocol.records import decode_varint

    try:
        data = compression.decompress(h.compression, memoryview(records)[pos + HEADER_SIZE:pos + h.size])
    except compression.CompressionError as e:
        raise InvalidBatch(f"cannot decompress batch: {e}", errors.CORRUPT_MESSAGE) from None
    sizes, at = [], 0
    for _ in range(h.records_count):
        length, body = decode_varint(data, at)
        sizes.append(body - at + length)
        at = body + length
    return sizes


def _record_errors(records, headers, where: str, compacted: bool, ts_range,
                   max_record: int | None = None) -> dict | None:
    """The error entry fields for records that cannot be appended, or None.

    ``ts_range`` is (lowest, highest) allowed CreateTime timestamp, or None
    when timestamps are not checked; ``max_record`` the largest record of a
    compressed batch, decompressed (max.decompressed.message.bytes), or None.
    Records are decoded only for a compacted topic, a lower timestamp bound,
    a batch whose max timestamp is above the range, or a compressed batch
    under ``max_record``; indexes count records from the first batch of the
    partition's data (one batch, from every client)."""
    found = []  # (index, code, message)
    index = 0
    pos = 0
    for h in headers:
        # The header's max timestamp bounds every record; its base timestamp
        # (the first record's) does not, so a lower bound means decoding.
        check_ts = ts_range is not None and (
            ts_range[0] > -LONG_MAX or h.max_timestamp > ts_range[1])
        check_size = max_record is not None and h.compression != 0
        if not (compacted or check_ts or check_size):
            index += h.last_offset_delta + 1
            pos += h.size
            continue
        try:
            recs = decode_batch(records, pos, verify_crc=False)[1]
            sizes = _record_sizes(records, pos, h) if check_size else None
        except (InvalidBatch, IndexError) as e:
            return {"error_code": getattr(e, "error_code", errors.CORRUPT_MESSAGE), "error_message": f"{where}: {e}"}
        for i, r in enumerate(recs):
            if sizes is not None and sizes[i] > max_record:
                found.append((index, errors.INVALID_RECORD,
                              f"record of {sizes[i]} bytes decompressed, over max.decompressed.message.bytes "
                              f"({max_record}), in {where}"))
            elif compacted and r.key is None:
                found.append((index, errors.INVALID_RECORD,
                              f"a record without a key cannot be written to compacted "
                              f"topic partition {where}"))
            elif check_ts and r.timestamp >= 0 and not ts_range[0] <= r.timestamp <= ts_range[1]:
                found.append((index, errors.INVALID_TIMESTAMP,
                              f"timestamp {r.timestamp} is outside [{ts_range[0]}, {ts_range[1]}] "
                              f"(message.timestamp.before/after.max.ms) in {where}"))
            index += 1
        pos += h.size
    if not found:
        return None
    code = errors.INVALID_TIMESTAMP if any(c == errors.INVALID_TIMESTAMP for _, c, _ in found) \
        else errors.INVALID_RECORD
    shown = "; ".join(f"record {i}: {m}" for i, _, m in found[:3])
    return {"error_code": code,
            "error_message": f"{len(found)} invalid record(s), batch refused (first ones: {shown})",
            "record_errors": [{"batch_index": i, "batch_index_error_message": m}
                              for i, _, m in found]}


def verify_transactional(p, h, transactional_id: str | None, transactions) -> int:
    """0 if the transactional batch ``h`` may be written to ``p``, else the error."""
    if h.producer_id < 0 or h.base_sequence < 0:
        return errors.INVALID_RECORD
    if p.in_txn(h.producer_id):
        return 0  # verified when its transaction began here; the epoch is checked with the sequence
    if transactional_id is None or transactions is None:
        return errors.INVALID_TXN_STATE
    return transactions.verify(transactional_id, h.producer_id, h.producer_epoch, p.topic.name, p.index)


def produce_partition(p, records, acks: int, version: int, transactional_id: str | None = None,
                      transactions=None) -> dict:
    """Validate and append one partition's records; return its response entry."""
    topic = p.topic
    cfg = topic.config
    if records is None:
        return _error(p.index, errors.INVALID_RECORD, "null records")
    if version < 3:
        return _error(p.index, errors.UNSUPPORTED_FOR_MESSAGE_FORMAT,
                      "Produce v0-2 message sets are not supported")
    max_message_bytes = cfg.get_int("max.message.bytes")
    try:
        headers = check_batches(records, max_message_bytes)
    except InvalidBatch as e:
        return _error(p.index, e.error_code, str(e))
    if acks == -1 and p.under_min_isr:
        return _error(p.index, errors.NOT_ENOUGH_REPLICAS,
                      f"in-sync replicas ({len(p.isr)}) below min.insync.replicas "
                      f"({cfg.get_int('min.insync.replicas')})")
    now = now_ms()
    first = headers[0]
    for h in headers:
        if h.is_control:
            return _error(p.index, errors.INVALID_RECORD, "control batches cannot be produced")
        if h.is_transactional and len(headers) != 1:
            return _error(p.index, errors.INVALID_RECORD, "transactional produce must carry exactly one batch")
    if first.is_transactional:
        code = verify_transactional(p, first, transactional_id, transactions)
        if code:
            return _error(p.index, code, "the partition is not part of the producer's open transaction"
                          if code == errors.INVALID_TXN_STATE else None)
    before = cfg.get_int("message.timestamp.before.max.ms")
    after = cfg.get_int("message.timestamp.after.max.ms")
    log_append_time = cfg.get("message.timestamp.type") == "LogAppendTime"
    ts_range = None
    if not log_append_time and (before != LONG_MAX or after != LONG_MAX):
        ts_range = (now - before if before != LONG_MAX else -LONG_MAX,
                    now + after if after != LONG_MAX else LONG_MAX)
    compacted = p.compacted
    max_record = cfg.get_int("max.decompressed.message.bytes")
    max_record = max_record if max_record < MAX_DECOMPRESSED_DEFAULT else None
    if compacted or ts_range is not None or max_record is not None:
        refused = _record_errors(records, headers, f"{topic.name}-{p.index}", compacted, ts_range, max_record)
        if refused is not None:
            return dict(_error(p.index, refused["error_code"]), **refused)
    idempotent = first.producer_id >= 0 and first.base_sequence >= 0
    if idempotent:
        if len(headers) != 1:
            return _error(p.index, errors.INVALID_RECORD,
                          "idempotent produce must carry exactly one batch")
        code, duplicate_offset = p.check_producer(first)
        if code:
            return _error(p.index, code)
        if duplicate_offset is not None:
            return {"index": p.index, "error_code": 0, "base_offset": duplicate_offset,
                    "log_append_time_ms": -1, "log_start_offset": p.log_start_offset,
                    "_last_offset": duplicate_offset + first.last_offset_delta}
    codec_name = cfg.get("compression.type")
    target = TOPIC_CODECS.get(codec_name)
    if target is not None and any(h.compression != target for h in headers):
        level = None
        if codec_name in ("gzip", "lz4", "zstd"):
            level = cfg.get_int(f"compression.{codec_name}.level")
            level = None if level == -1 else level  # gzip's -1: the codec's default
        try:
            buf, headers = recompress(records, headers, target, level)
        except InvalidBatch as e:
            return _error(p.index, e.error_code, str(e))
        first = headers[0]
    else:
        buf = records if type(records) is bytearray else bytearray(records)
    info = p.append_as_leader(buf, now, log_append_time, first if idempotent else None)
    return {"index": p.index, "error_code": 0, "base_offset": info.base_offset,
            "log_append_time_ms": now if log_append_time else -1,
            "log_start_offset": p.log_start_offset, "_last_offset": info.last_offset}


async def wait_replicated(waits: list, timeout_ms: int) -> None:
    """acks=all: wait until the high watermark passes each appended entry's
    last offset, as long as the request's timeout; then answer each entry as
    Kafka does: NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR fell below
    ``min.insync.replicas`` meanwhile, REQUEST_TIMED_OUT if not replicated
    in time, NOT_LEADER_OR_FOLLOWER if leadership was lost first."""
    futures = [(p, entry, fut) for p, entry, fut in waits if fut is not None]
    if futures:
        done, _ = await asyncio.wait([f for _, _, f in futures], timeout=max(timeout_ms, 0) / 1000)
    for p, entry, fut in waits:
        code = 0
        if fut is not None:
            if fut.done():
                code = fut.result()
            else:
                p.discard_ack(fut)
                code = errors.REQUEST_TIMED_OUT
        if not code and p.under_min_isr:
            code = errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        if code:
            entry.update(error_code=code, base_offset=-1, log_append_time_ms=-1, log_start_offset=-1)


@handles("Produce", 0, 13, below_spec=True)
async def produce(ctx, request: dict) -> dict | None:
    broker = ctx.broker
    acks = request["acks"]
    version = ctx.version
    responses = []
    waits = []  # acks=all: (partition, response entry, replication future or None)
    for td in request["topic_data"]:
        key = td["topic_id"] if version >= 13 else td["name"]
        create_error = 0
        if version < 13 and broker.replicas.topic(key) is None and not key.startswith("__"):
            try:
                await broker.admin.auto_create(key)
            except TopicError as e:
                create_error = e.error_code
        parts = []
        for pd in td["partition_data"]:
            index = pd["index"]
            p, code = broker.replicas.partition_or_error(key, index)
            if acks not in (0, 1, -1):
                parts.append(_error(index, errors.INVALID_REQUIRED_ACKS))
            elif code:
                parts.append(_error(index, create_error or code))
            elif p.topic.internal:
                parts.append(_error(index, errors.INVALID_TOPIC_EXCEPTION,
                                    "cannot produce to an internal topic"))
            else:
                transactions = getattr(broker, "transactions", None)
                if transactions is not None:  # a remote coordinator's verification, if one is needed
                    await transactions.prepare_verify(request.get("transactional_id"), p, pd["records"])
                entry = produce_partition(p, pd["records"], acks, version, request.get("transactional_id"),
                                          transactions)
                last = entry.pop("_last_offset", None)
                if acks == -1 and last is not None and not (len(p.isr) == 1 and p.pending_isr is None):
                    waits.append((p, entry, p.replicated(last)))
                parts.append(entry)
        responses.append({"name": td["name"], "topic_id": td["topic_id"], "partition_responses": parts})
    if waits:
        await ctx.wait(wait_replicated(waits, request["timeout_ms"]))
    if version >= 10:
        hints = LeaderHints(broker, ctx.connection.listener)
        for td, r in zip(request["topic_data"], responses):
            for entry in r["partition_responses"]:
                hints.hint(td["topic_id"] if version >= 13 else td["name"], entry["index"], entry)
        if hints.leaders:
            return {"responses": responses, "node_endpoints": hints.node_endpoints()}
    if acks == 0:
        # No response to carry an error: as Kafka does, close the connection
        # so that the client notices and refreshes its metadata.
        if any(pr["error_code"] for r in responses for pr in r["partition_responses"]):
            ctx.connection.abort()
        return None
    return {"responses": responses}
