"""Records inside magic-2 record batches: building, decoding, control records.

The batch header is handled by :mod:`odradek.protocol.batch`; this module deals
with what follows it. After the 61-byte header come ``records_count`` records
(compressed as one block when the batch's codec is not 0), each::

    length          varint   bytes that follow, up to the end of this record
    attributes      int8     unused, 0
    timestamp_delta varlong  relative to the batch's base timestamp
    offset_delta    varint   relative to the batch's base offset
    key_length      varint   -1 for a null key
    key             bytes
    value_length    varint   -1 for a null value
    value           bytes
    header_count    varint
    headers         header_count x (key_length varint, utf-8 key,
                                    value_length varint (-1 = null), value)

Varints are zigzag-encoded base-128 little-endian groups (protobuf ``sint``):
at most 5 bytes for a varint (32-bit) and 10 for a varlong (64-bit).

Control batches (attribute bit 5) carry one record whose key is
``version int16, type int16`` (0 abort, 1 commit) and, for transaction
markers, whose value is ``version int16, coordinator_epoch int32``.

Decoding treats its input as hostile: every length is checked against the
bytes that actually remain, loops consume at least one byte per step, and any
malformation raises :class:`~odradek.protocol.batch.InvalidBatch`
(``error_code`` 2 CORRUPT_MESSAGE for framing, CRC and decompression
failures; 87 INVALID_RECORD for bad record structure). A buffer that merely
ends before the batch does raises :class:`IncompleteBatch`, a subclass.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

from odradek.clock import now_ms

from . import compression as _compression
from .batch import (
    _HEADER,
    _UI,
    COMPRESSION_MASK,
    CONTROL_FLAG,
    CRC_OFFSET,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_OFFSET,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_FLAG,
    BatchHeader,
    InvalidBatch,
    compute_crc,
    iter_batches,
    peek_size,
    read_header,
)

__all__ = [
    "Record",
    "IncompleteBatch",
    "ControlKey",
    "EndTxnMarker",
    "CONTROL_ABORT",
    "CONTROL_COMMIT",
    "build_batch",
    "build_control_batch",
    "decode_batch",
    "iter_records",
    "decode_control_key",
    "decode_end_txn_marker",
    "encode_varint",
    "encode_varlong",
    "write_varint",
    "decode_varint",
    "decode_varlong",
    "size_of_varint",
    "zigzag_encode",
    "zigzag_decode",
]

CORRUPT_MESSAGE = 2
INVALID_RECORD = 87

# Control record types (key "type" field).
CONTROL_ABORT = 0
CONTROL_COMMIT = 1

_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1

# Smallest possible record: length, attributes, ts delta, offset delta, key len,
# value len and header count, one byte each.
_MIN_RECORD_SIZE = 7

_CONTROL_KEY = struct.Struct(">hh")
_END_TXN_VALUE = struct.Struct(">hi")


class IncompleteBatch(InvalidBatch):
    """The buffer ends before the batch does (a partial batch, not a corrupt one)."""


@dataclass(slots=True)
class Record:
    """One record with absolute offset and timestamp."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


class ControlKey(NamedTuple):
    version: int
    type: int  # CONTROL_ABORT or CONTROL_COMMIT (others exist for KRaft)


class EndTxnMarker(NamedTuple):
    version: int
    coordinator_epoch: int


# --------------------------------------------------------------------------- varints


def zigzag_encode(n: int) -> int:
    """Map a signed 64-bit integer onto an unsigned one (0, -1, 1, -2 -> 0, 1, 2, 3)."""
    return (n << 1) ^ (n >> 63)


def zigzag_decode(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def write_varint(out: bytearray, value: int) -> None:
    """Append the zigzag varint/varlong encoding of ``value`` to ``out`` (no range check)."""
    v = (value << 1) ^ (value >> 63)
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _encode(value: int) -> bytes:
    v = (value << 1) ^ (value >> 63)
    if v < 0x80:
        return _SMALL[v]
    out = bytearray()
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(128)]


def encode_varint(value: int) -> bytes:
    """Zigzag varint of a 32-bit signed integer."""
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise ValueError(f"varint out of range: {value}")
    return _encode(value)


def encode_varlong(value: int) -> bytes:
    """Zigzag varlong of a 64-bit signed integer."""
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"varlong out of range: {value}")
    return _encode(value)


def size_of_varint(value: int) -> int:
    """Bytes the zigzag encoding of ``value`` takes (works for varints and varlongs)."""
    v = (value << 1) ^ (value >> 63)
    return (v.bit_length() + 6) // 7 or 1


def decode_varint(buf, pos: int = 0) -> tuple[int, int]:
    """Read a zigzag varint (at most 5 bytes, 32-bit) at ``pos``; return (value, next_pos)."""
    try:
        b = buf[pos]
        if b < 0x80:
            return (b >> 1) ^ -(b & 1), pos + 1
        result = b & 0x7F
        shift = 7
        pos += 1
        while True:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift > 28:
                raise InvalidBatch("varint longer than 5 bytes", INVALID_RECORD)
    except IndexError:
        raise InvalidBatch("truncated varint", INVALID_RECORD) from None
    if result > 0xFFFFFFFF:
        raise InvalidBatch("varint overflows 32 bits", INVALID_RECORD)
    return (result >> 1) ^ -(result & 1), pos


def decode_varlong(buf, pos: int = 0) -> tuple[int, int]:
    """Read a zigzag varlong (at most 10 bytes, 64-bit) at ``pos``; return (value, next_pos)."""
    try:
        b = buf[pos]
        if b < 0x80:
            return (b >> 1) ^ -(b & 1), pos + 1
        result = b & 0x7F
        shift = 7
        pos += 1
        while True:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift > 63:
                raise InvalidBatch("varlong longer than 10 bytes", INVALID_RECORD)
    except IndexError:
        raise InvalidBatch("truncated varlong", INVALID_RECORD) from None
    if result > 0xFFFFFFFFFFFFFFFF:
        raise InvalidBatch("varlong overflows 64 bits", INVALID_RECORD)
    return (result >> 1) ^ -(result & 1), pos


# --------------------------------------------------------------------------- building


def _as_bytes(x, what: str):
    if x is None or type(x) is bytes:
        return x
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    raise TypeError(f"record {what} must be bytes or None, not {type(x).__name__}")


def build_batch(
    records: Iterable,
    *,
    base_offset: int = 0,
    compression: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
    control: bool = False,
    log_append_time: bool = False,
    partition_leader_epoch: int = -1,
    base_timestamp: int | None = None,
    preserve_offsets: bool = False,
    last_offset_delta: int | None = None,
    max_timestamp: int | None = None,
    compression_level: int | None = None,
) -> bytes:
    """Encode ``records`` as one magic-2 batch (header, CRC-32C and all).

    ``records`` holds ``(key, value, headers, timestamp)`` tuples or
    :class:`Record` objects. Offset deltas are 0, 1, 2, ... unless
    ``preserve_offsets`` is set, in which case each Record's absolute offset
    is kept (delta = offset - base_offset; they must increase), as the log
    cleaner needs. A ``None`` timestamp means "now". ``base_timestamp``
    defaults to the first record's timestamp; ``max_timestamp`` and
    ``last_offset_delta`` default to what the records imply and may be given
    explicitly for batches that lost records (e.g. an empty compacted batch).
    ``log_append_time`` only sets the timestamp-type attribute.
    """
    codec = _compression.codec_id(compression)
    now = None
    items = []
    prev_delta = -1
    for i, rec in enumerate(records):
        if isinstance(rec, Record):
            key, value, headers, ts = rec.key, rec.value, rec.headers, rec.timestamp
            if preserve_offsets:
                delta = rec.offset - base_offset
                if delta <= prev_delta:
                    raise ValueError(f"record offsets must increase from base_offset ({rec.offset})")
            else:
                delta = i
        else:
            key, value, headers, ts = rec
            delta = i
        if ts is None:
            if now is None:
                now = now_ms()
            ts = now
        prev_delta = delta
        items.append((delta, ts, key, value, headers or ()))

    if items:
        first_ts = items[0][1]
        computed_max = max(it[1] for it in items)
        computed_last = items[-1][0]
    else:
        first_ts = computed_max = -1
        computed_last = 0
    if base_timestamp is None:
        base_timestamp = first_ts
    if max_timestamp is None:
        max_timestamp = computed_max
    if last_offset_delta is None:
        last_offset_delta = computed_last
    if computed_last > _INT32_MAX or last_offset_delta < computed_last or last_offset_delta > _INT32_MAX:
        raise ValueError(f"last offset delta {last_offset_delta} out of range")

    body = bytearray()
    rec_buf = bytearray()
    for delta, ts, key, value, headers in items:
        rec_buf.clear()
        rec_buf.append(0)  # attributes
        ts_delta = ts - base_timestamp
        if not _INT64_MIN <= ts_delta <= _INT64_MAX:
            raise ValueError(f"timestamp {ts} too far from base timestamp {base_timestamp}")
        write_varint(rec_buf, ts_delta)
        write_varint(rec_buf, delta)
        key = _as_bytes(key, "key")
        if key is None:
            rec_buf.append(1)  # zigzag(-1)
        else:
            write_varint(rec_buf, len(key))
            rec_buf += key
        value = _as_bytes(value, "value")
        if value is None:
            rec_buf.append(1)
        else:
            write_varint(rec_buf, len(value))
            rec_buf += value
        write_varint(rec_buf, len(headers))
        for h_key, h_value in headers:
            if isinstance(h_key, str):
                h_key = h_key.encode("utf-8")
            else:
                h_key = _as_bytes(h_key, "header key")
                if h_key is None:
                    raise TypeError("header key must not be None")
            write_varint(rec_buf, len(h_key))
            rec_buf += h_key
            h_value = _as_bytes(h_value, "header value")
            if h_value is None:
                rec_buf.append(1)
            else:
                write_varint(rec_buf, len(h_value))
                rec_buf += h_value
        write_varint(body, len(rec_buf))
        body += rec_buf

    payload = _compression.compress(codec, body, compression_level) if codec else body

    attributes = codec
    if log_append_time:
        attributes |= TIMESTAMP_TYPE_MASK
    if transactional:
        attributes |= TRANSACTIONAL_FLAG
    if control:
        attributes |= CONTROL_FLAG

    size = HEADER_SIZE + len(payload)
    out = bytearray(HEADER_SIZE)
    _HEADER.pack_into(
        out,
        0,
        base_offset,
        size - LOG_OVERHEAD,
        partition_leader_epoch,
        2,
        0,  # CRC, filled in below
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(items),
    )
    out += payload
    _UI.pack_into(out, CRC_OFFSET, compute_crc(out, 0, size))
    return bytes(out)


def build_control_batch(
    kind: int,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp: int,
    *,
    base_offset: int = 0,
    partition_leader_epoch: int = -1,
) -> bytes:
    """A transaction marker batch: ``kind`` is CONTROL_ABORT (0) or CONTROL_COMMIT (1)."""
    if kind not in (CONTROL_ABORT, CONTROL_COMMIT):
        raise ValueError(f"transaction marker kind must be 0 (abort) or 1 (commit), not {kind!r}")
    key = _CONTROL_KEY.pack(0, kind)
    value = _END_TXN_VALUE.pack(0, coordinator_epoch)
    return build_batch(
        [(key, value, (), timestamp)],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=-1,
        transactional=True,
        control=True,
        partition_leader_epoch=partition_leader_epoch,
    )


def decode_control_key(key: bytes | None) -> ControlKey:
    """Parse a control record's key into (version, type)."""
    if key is None or len(key) < 4:
        raise InvalidBatch("control record key shorter than 4 bytes", INVALID_RECORD)
    version, kind = _CONTROL_KEY.unpack_from(key)
    if version < 0:
        raise InvalidBatch(f"invalid control record key version {version}", INVALID_RECORD)
    return ControlKey(version, kind)


def decode_end_txn_marker(value: bytes | None) -> EndTxnMarker:
    """Parse a transaction marker's value into (version, coordinator_epoch)."""
    if value is None or len(value) < 6:
        raise InvalidBatch("transaction marker value shorter than 6 bytes", INVALID_RECORD)
    version, epoch = _END_TXN_VALUE.unpack_from(value)
    if version < 0:
        raise InvalidBatch(f"invalid transaction marker version {version}", INVALID_RECORD)
    return EndTxnMarker(version, epoch)


# --------------------------------------------------------------------------- decoding


def decode_batch(
    buf,
    pos: int = 0,
    *,
    verify_crc: bool = True,
    max_decompressed: int | None = _compression.DEFAULT_MAX_DECOMPRESSED,
) -> tuple[BatchHeader, list[Record]]:
    """Decode the batch at ``pos``: its header and its records (decompressed).

    Raises IncompleteBatch if ``buf`` ends before the batch does, InvalidBatch
    for anything malformed. Record offsets/timestamps are absolute; under
    LogAppendTime every record gets the batch's max timestamp.
    """
    mv = memoryview(buf)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    n = mv.nbytes
    if pos < 0 or n - pos < LOG_OVERHEAD:
        raise IncompleteBatch("incomplete batch: length field missing")
    size = peek_size(mv, pos)
    if size < HEADER_SIZE:
        raise InvalidBatch(f"batch length {size - LOG_OVERHEAD} smaller than the header", CORRUPT_MESSAGE)
    if pos + size > n:
        raise IncompleteBatch(f"incomplete batch: {size} bytes declared, {n - pos} available")
    if mv[pos + MAGIC_OFFSET] != 2:
        raise InvalidBatch(f"unsupported magic {mv[pos + MAGIC_OFFSET]}", CORRUPT_MESSAGE)
    h = read_header(mv, pos)
    if verify_crc and compute_crc(mv, pos, size) != h.crc:
        raise InvalidBatch("CRC mismatch", CORRUPT_MESSAGE)
    count = h.records_count
    if count < 0:
        raise InvalidBatch(f"negative record count {count}", INVALID_RECORD)
    codec = h.attributes & COMPRESSION_MASK
    payload = mv[pos + HEADER_SIZE : pos + size]
    if codec:
        try:
            data = _compression.decompress(codec, payload, max_decompressed)
        except _compression.CompressionError as exc:
            raise InvalidBatch(f"cannot decompress batch: {exc}", CORRUPT_MESSAGE) from exc
    else:
        data = payload.tobytes()
    if count * _MIN_RECORD_SIZE > len(data):
        raise InvalidBatch(f"{count} records cannot fit in {len(data)} bytes", INVALID_RECORD)
    ts_fixed = h.max_timestamp if h.attributes & TIMESTAMP_TYPE_MASK else None
    return h, _decode_records(data, count, h.base_offset, h.base_timestamp, ts_fixed)


def _decode_records(data: bytes, count: int, base_offset: int, base_ts: int, ts_fixed) -> list[Record]:
    records: list[Record] = []
    append = records.append
    dv = decode_varint
    dvl = decode_varlong
    end = len(data)
    p = 0
    try:
        for _ in range(count):
            # Single-byte varints are by far the most common; decode them inline.
            b = data[p]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                p += 1
            else:
                length, p = dv(data, p)
            rec_end = p + length
            if length < _MIN_RECORD_SIZE - 1 or rec_end > end:
                raise InvalidBatch(f"record length {length} out of bounds", INVALID_RECORD)
            p += 1  # attributes: unused
            b = data[p]
            if b < 0x80:
                ts_delta = (b >> 1) ^ -(b & 1)
                p += 1
            else:
                ts_delta, p = dvl(data, p)
            b = data[p]
            if b < 0x80:
                off_delta = (b >> 1) ^ -(b & 1)
                p += 1
            else:
                off_delta, p = dv(data, p)

            b = data[p]
            if b < 0x80:
                klen = (b >> 1) ^ -(b & 1)
                p += 1
            else:
                klen, p = dv(data, p)
            if klen >= 0:
                q = p + klen
                if q > rec_end:
                    raise InvalidBatch(f"record key length {klen} out of bounds", INVALID_RECORD)
                key = data[p:q]
                p = q
            elif klen == -1:
                key = None
            else:
                raise InvalidBatch(f"invalid record key length {klen}", INVALID_RECORD)

            b = data[p]
            if b < 0x80:
                vlen = (b >> 1) ^ -(b & 1)
                p += 1
            else:
                vlen, p = dv(data, p)
            if vlen >= 0:
                q = p + vlen
                if q > rec_end:
                    raise InvalidBatch(f"record value length {vlen} out of bounds", INVALID_RECORD)
                value = data[p:q]
                p = q
            elif vlen == -1:
                value = None
            else:
                raise InvalidBatch(f"invalid record value length {vlen}", INVALID_RECORD)

            b = data[p]
            if b == 0:
                headers = []
                p += 1
            else:
                hcount, p = dv(data, p)
                # Each header takes at least two bytes.
                if hcount < 0 or hcount * 2 > rec_end - p:
                    raise InvalidBatch(f"header count {hcount} out of bounds", INVALID_RECORD)
                headers = []
                for _ in range(hcount):
                    b = data[p]
                    if b < 0x80:
                        hklen = (b >> 1) ^ -(b & 1)
                        p += 1
                    else:
                        hklen, p = dv(data, p)
                    q = p + hklen
                    if hklen < 0 or q > rec_end:
                        raise InvalidBatch(f"header key length {hklen} out of bounds", INVALID_RECORD)
                    hkey = data[p:q].decode("utf-8")
                    p = q
                    b = data[p]
                    if b < 0x80:
                        hvlen = (b >> 1) ^ -(b & 1)
                        p += 1
                    else:
                        hvlen, p = dv(data, p)
                    if hvlen >= 0:
                        q = p + hvlen
                        if q > rec_end:
                            raise InvalidBatch(f"header value length {hvlen} out of bounds", INVALID_RECORD)
                        hval = data[p:q]
                        p = q
                    elif hvlen == -1:
                        hval = None
                    else:
                        raise InvalidBatch(f"invalid header value length {hvlen}", INVALID_RECORD)
                    headers.append((hkey, hval))
            if p != rec_end:
                raise InvalidBatch(
                    f"record length {length} does not match its contents ({length + p - rec_end})",
                    INVALID_RECORD,
                )
            append(
                Record(
                    base_offset + off_delta,
                    base_ts + ts_delta if ts_fixed is None else ts_fixed,
                    key,
                    value,
                    headers,
                )
            )
    except IndexError:
        raise InvalidBatch("record data truncated", INVALID_RECORD) from None
    except UnicodeDecodeError:
        raise InvalidBatch("header key is not valid UTF-8", INVALID_RECORD) from None
    if p != end:
        raise InvalidBatch(f"{end - p} bytes left after the last record", INVALID_RECORD)
    return records


def iter_records(buf, pos: int = 0, end: int | None = None, **kwargs) -> Iterator[tuple[BatchHeader, Record]]:
    """Yield (header, record) for every record of every whole batch in ``buf[pos:end]``.

    A trailing partial batch is ignored (as in a fetch response); a corrupt
    batch raises InvalidBatch. ``kwargs`` go to :func:`decode_batch`.
    """
    mv = memoryview(buf)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    if end is not None:
        mv = mv[:end]
    for bpos, _ in iter_batches(mv, pos):
        h, records = decode_batch(mv, bpos, **kwargs)
        for r in records:
            yield h, r

