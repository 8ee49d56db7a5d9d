"""Record batch headers (magic 2), read and patched in place.

Theory of operation: the broker never needs the records inside a batch on the
produce or fetch path. It reads the 61-byte header, checks the CRC-32C (which
covers everything from ``attributes`` to the end), and patches the two fields
that lie *outside* the CRC: the base offset and the partition leader epoch.
LogAppendTime is the one case that changes CRC-covered bytes (attributes and
max timestamp), and then the CRC is recomputed.

Layout (big-endian)::

    0  base_offset            int64
    8  batch_length           int32   (bytes after this field)
    12 partition_leader_epoch int32
    16 magic                  int8    (2)
    17 crc                    uint32  (CRC-32C of bytes 21..end)
    21 attributes             int16
    23 last_offset_delta      int32
    27 base_timestamp         int64
    35 max_timestamp          int64
    43 producer_id            int64
    51 producer_epoch         int16
    53 base_sequence          int32
    57 records_count          int32
    61 records...
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from crc32c import crc32c

from odradek.protocol import errors

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # base_offset + batch_length: bytes not counted by batch_length
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08  # 1 = LogAppendTime
TRANSACTIONAL_FLAG = 0x10
CONTROL_FLAG = 0x20
DELETE_HORIZON_FLAG = 0x40

NO_PRODUCER_ID = -1
NO_SEQUENCE = -1
NO_TIMESTAMP = -1

_HEADER = struct.Struct(">qiibIhiqqqhii")
_QI = struct.Struct(">qi")
_I = struct.Struct(">i")
_Q = struct.Struct(">q")
_H = struct.Struct(">h")
_UI = struct.Struct(">I")


class InvalidBatch(ValueError):
    """A batch that cannot be accepted. ``error_code`` is the Kafka error to answer."""

    def __init__(self, message: str, error_code: int = errors.CORRUPT_MESSAGE):
        super().__init__(message)
        self.error_code = error_code


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG)

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_MASK)

    @property
    def last_sequence(self) -> int:
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


def read_header(buf, pos: int = 0) -> BatchHeader:
    """Parse the header at ``pos``. The caller guarantees HEADER_SIZE bytes are there."""
    return BatchHeader._make(_HEADER.unpack_from(buf, pos))


def peek_size(buf, pos: int = 0) -> int:
    """Total size of the batch at ``pos`` from its first 12 bytes."""
    return _I.unpack_from(buf, pos + 8)[0] + LOG_OVERHEAD


def compute_crc(buf, pos: int, size: int) -> int:
    return crc32c(memoryview(buf)[pos + ATTRIBUTES_OFFSET : pos + size])


def validate(buf, pos: int = 0, end: int | None = None, dense: bool = True) -> BatchHeader:
    """Check one batch's framing, magic, counts and CRC; return its header.

    ``dense`` (for batches from producers) also requires an uncompressed batch
    to hold one record per offset; batches read back from a compacted log have
    gaps. Raises InvalidBatch with CORRUPT_MESSAGE or INVALID_RECORD.
    """
    if end is None:
        end = len(buf)
    if end - pos < HEADER_SIZE:
        raise InvalidBatch("truncated batch header")
    h = read_header(buf, pos)
    if h.magic != 2:
        raise InvalidBatch(f"unsupported magic {h.magic}", errors.CORRUPT_MESSAGE)
    if h.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + h.size > end:
        raise InvalidBatch("batch length out of bounds")
    if compute_crc(buf, pos, h.size) != h.crc:
        raise InvalidBatch("CRC mismatch")
    if h.records_count < 0 or h.last_offset_delta < 0:
        raise InvalidBatch("negative record count", errors.INVALID_RECORD)
    if dense and not h.is_control and h.records_count != h.last_offset_delta + 1 and h.compression == 0:
        # Uncompressed batches from producers are dense; compacted ones only come from the cleaner.
        raise InvalidBatch("records count does not match last offset delta", errors.INVALID_RECORD)
    return h


def iter_batches(buf, pos: int = 0, end: int | None = None):
    """Yield (position, header) for each whole batch in ``buf[pos:end]``; stop at a partial one."""
    if end is None:
        end = len(buf)
    while end - pos >= HEADER_SIZE:
        h = read_header(buf, pos)
        size = h.size
        if size < HEADER_SIZE or pos + size > end:
            return
        yield pos, h
        pos += size


def set_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    _Q.pack_into(buf, pos, base_offset)


def set_leader_epoch(buf: bytearray | memoryview, pos: int, epoch: int) -> None:
    _I.pack_into(buf, pos + 12, epoch)


def set_log_append_time(buf: bytearray | memoryview, pos: int, size: int, now_ms: int) -> None:
    """Mark the batch LogAppendTime with ``now_ms`` as its max timestamp, and re-sign it."""
    attrs = _H.unpack_from(buf, pos + ATTRIBUTES_OFFSET)[0]
    _H.pack_into(buf, pos + ATTRIBUTES_OFFSET, attrs | TIMESTAMP_TYPE_MASK)
    _Q.pack_into(buf, pos + 35, now_ms)
    _UI.pack_into(buf, pos + CRC_OFFSET, compute_crc(buf, pos, size))
