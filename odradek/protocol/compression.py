"""Kafka record-batch compression codecs.

The codec id lives in the low three bits of a batch's attributes:

    0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd

What each codec means on the wire (what the Java client and librdkafka write):

* gzip: an ordinary gzip stream (RFC 1952). Several concatenated members are
  accepted when reading.
* snappy: the "xerial" block framing used by snappy-java's
  ``SnappyOutputStream``: a 16-byte header (``\\x82SNAPPY\\x00`` followed by two
  big-endian int32s, version and minimum compatible version, both 1), then
  chunks of ``[int32 compressed length][raw snappy block]``, each block holding
  at most 32 KiB of input. Some producers write the two header ints
  little-endian, so reading looks only at the 8-byte magic. Data that does not
  start with the magic is taken as one raw snappy block.
* lz4: the LZ4 *frame* format with independent blocks (the Java reader does not
  support linked blocks), no content checksum and 64 KiB blocks.
* zstd: zstd frames. Streaming writers such as zstd-jni do not record the
  content size in the frame header, so reading never depends on it.

Decompression is bounded: ``max_size`` caps the decompressed size (a 1 MiB
batch can otherwise expand to gigabytes) and exceeding it raises
``CompressionError``. Every failure surfaces as ``CompressionError`` (or its
subclass ``UnsupportedCodec``), never as a library-specific exception.
"""

from __future__ import annotations

import struct
import zlib

import cramjam

__all__ = [
    "NONE",
    "GZIP",
    "SNAPPY",
    "LZ4",
    "ZSTD",
    "CODEC_NAMES",
    "DEFAULT_MAX_DECOMPRESSED",
    "CompressionError",
    "UnsupportedCodec",
    "codec_id",
    "compress",
    "decompress",
]

NONE = 0
GZIP = 1
SNAPPY = 2
LZ4 = 3
ZSTD = 4

CODEC_NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}
_BY_NAME = {name: cid for cid, name in CODEC_NAMES.items()}

#: Default ceiling on the size of one decompressed payload.
DEFAULT_MAX_DECOMPRESSED = 256 * 1024 * 1024

XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
XERIAL_BLOCK_SIZE = 32 * 1024

_GZIP_DEFAULT_LEVEL = 6
_ZSTD_DEFAULT_LEVEL = 3

_BE_I32 = struct.Struct(">i")
_LE_U32 = struct.Struct("<I")
_LE_U64 = struct.Struct("<Q")

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LZ4_MAGIC = b"\x04\x22\x4d\x18"

# Smallest output buffer tried when the decompressed size is not known upfront.
_MIN_GUESS = 64 * 1024


class CompressionError(ValueError):
    """Data could not be compressed or decompressed with the requested codec."""


class UnsupportedCodec(CompressionError):
    """The codec id (or name) is not one Kafka defines."""


def codec_id(codec: int | str) -> int:
    """Normalise a codec given as id or name ("gzip", "snappy", ...) to its id."""
    if isinstance(codec, str):
        try:
            return _BY_NAME[codec.lower()]
        except KeyError:
            raise UnsupportedCodec(f"unknown compression codec {codec!r}") from None
    if isinstance(codec, int) and codec in CODEC_NAMES:
        return codec
    raise UnsupportedCodec(f"unknown compression codec id {codec!r}")


# --------------------------------------------------------------------------- compress


def compress(codec: int, data, level: int | None = None) -> bytes:
    """Compress ``data`` as Kafka's ``codec`` expects it inside a record batch."""
    codec = codec_id(codec)
    try:
        if codec == NONE:
            return bytes(data)
        if codec == GZIP:
            c = zlib.compressobj(_GZIP_DEFAULT_LEVEL if level is None else level, zlib.DEFLATED, 31)
            return c.compress(data) + c.flush()
        if codec == SNAPPY:
            return _xerial_compress(data)
        if codec == LZ4:
            c = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
            if len(data):
                c.compress(data if type(data) is bytes else bytes(data))
            return bytes(c.finish())
        # ZSTD
        return bytes(cramjam.zstd.compress(data, level=_ZSTD_DEFAULT_LEVEL if level is None else level))
    except CompressionError:
        raise
    except Exception as exc:  # cramjam.CompressionError, zlib.error, TypeError ...
        raise CompressionError(f"{CODEC_NAMES[codec]} compression failed: {exc}") from exc


def _xerial_compress(data) -> bytes:
    view = memoryview(data).cast("B")
    parts = [XERIAL_HEADER]
    pack = _BE_I32.pack
    raw = cramjam.snappy.compress_raw
    for start in range(0, len(view), XERIAL_BLOCK_SIZE):
        block = bytes(raw(view[start : start + XERIAL_BLOCK_SIZE]))
        parts.append(pack(len(block)))
        parts.append(block)
    return b"".join(parts)


# --------------------------------------------------------------------------- decompress


def decompress(codec: int, data, max_size: int | None = DEFAULT_MAX_DECOMPRESSED) -> bytes:
    """Decompress a batch payload written with ``codec``.

    ``max_size`` bounds the output (``None`` for no bound); a larger result
    raises ``CompressionError`` without materialising more than ``max_size``
    bytes (plus one output buffer of slack).
    """
    codec = codec_id(codec)
    if max_size is None:
        max_size = 1 << 62
    try:
        if codec == NONE:
            out = bytes(data)
            if len(out) > max_size:
                raise CompressionError(f"payload of {len(out)} bytes exceeds limit {max_size}")
            return out
        if codec == GZIP:
            return _gzip_decompress(data, max_size)
        if codec == SNAPPY:
            return _snappy_decompress(data, max_size)
        if codec == LZ4:
            return _bounded(cramjam.lz4.decompress_into, data, _lz4_content_size(data), max_size, "lz4")
        return _bounded(cramjam.zstd.decompress_into, data, _zstd_content_size(data), max_size, "zstd")
    except CompressionError:
        raise
    except Exception as exc:  # cramjam.DecompressionError, zlib.error, struct.error, ...
        raise CompressionError(f"{CODEC_NAMES[codec]} decompression failed: {exc}") from exc


def _gzip_decompress(data, max_size: int) -> bytes:
    view = memoryview(data).cast("B")
    if not len(view):
        raise CompressionError("gzip decompression failed: empty input")
    out = []
    total = 0
    while True:
        d = zlib.decompressobj(31)
        chunk = d.decompress(view, max_size - total + 1)
        total += len(chunk)
        out.append(chunk)
        if total > max_size:
            raise CompressionError(f"gzip payload expands beyond limit {max_size}")
        if not d.eof:
            if d.unconsumed_tail:  # stopped by max_length only if the limit was hit
                raise CompressionError(f"gzip payload expands beyond limit {max_size}")
            raise CompressionError("gzip decompression failed: truncated stream")
        rest = d.unused_data
        if not rest:
            break
        # Another member may follow. Trailing zero padding is tolerated like gzip(1) does.
        if not rest.strip(b"\x00"):
            break
        view = memoryview(rest)
    return out[0] if len(out) == 1 else b"".join(out)


def _snappy_decompress(data, max_size: int) -> bytes:
    view = memoryview(data).cast("B")
    if view[:8] != XERIAL_MAGIC or len(view) < 16:
        return _snappy_block(view, max_size)
    # Version and compat ints are ignored on purpose (some writers get their byte order wrong).
    pos = 16
    end = len(view)
    parts = []
    total = 0
    unpack = _BE_I32.unpack_from
    while pos < end:
        if end - pos < 4:
            raise CompressionError("snappy decompression failed: truncated xerial chunk length")
        (n,) = unpack(view, pos)
        pos += 4
        if n < 0 or n > end - pos:
            raise CompressionError(f"snappy decompression failed: xerial chunk length {n} out of bounds")
        block = _snappy_block(view[pos : pos + n], max_size - total)
        total += len(block)
        parts.append(block)
        pos += n
    return b"".join(parts)


def _snappy_block(view, max_size: int) -> bytes:
    if not len(view):
        raise CompressionError("snappy decompression failed: empty block")
    n = cramjam.snappy.decompress_raw_len(view)
    if n > max_size:
        raise CompressionError(f"snappy block declares {n} bytes, beyond limit {max_size}")
    return bytes(cramjam.snappy.decompress_raw(view))


def _bounded(decompress_into, data, declared: int | None, max_size: int, name: str) -> bytes:
    """Decompress into a growing buffer; never allocate much beyond ``max_size``."""
    if declared is not None and declared > max_size:
        raise CompressionError(f"{name} frame declares {declared} bytes, beyond limit {max_size}")
    if declared is not None:
        # Exact for a single frame; if more frames follow we grow below.
        size = max(declared, 1)
    else:
        size = min(max(_MIN_GUESS, len(data) * 4), max_size)
    while True:
        out = bytearray(size)
        # The backends fail with "failed to write whole buffer" when the output does not
        # fit, so a successful return (even one filling ``out`` exactly) is complete.
        try:
            n = decompress_into(data, out)
        except cramjam.DecompressionError as exc:
            if "failed to write whole buffer" not in str(exc):
                raise
            if size >= max_size:
                raise CompressionError(f"{name} payload expands beyond limit {max_size}") from None
            size = min(max(size * 4, _MIN_GUESS, len(data) * 4), max_size)
            continue
        del out[n:]
        return bytes(out)


def _zstd_content_size(data) -> int | None:
    """Frame content size from the first zstd frame header, if recorded."""
    view = memoryview(data).cast("B")
    if len(view) < 6 or view[:4] != _ZSTD_MAGIC:
        return None
    fhd = view[4]
    fcs_flag = fhd >> 6
    single_segment = (fhd >> 5) & 1
    did_size = (0, 1, 2, 4)[fhd & 3]
    fcs_size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    if fcs_size == 0:
        return None
    pos = 5 + (0 if single_segment else 1) + did_size
    if len(view) < pos + fcs_size:
        return None
    raw = bytes(view[pos : pos + fcs_size])
    value = int.from_bytes(raw, "little")
    if fcs_size == 2:
        value += 256
    return value


def _lz4_content_size(data) -> int | None:
    """Content size from an LZ4 frame header, if the writer recorded it."""
    view = memoryview(data).cast("B")
    if len(view) < 15 or view[:4] != _LZ4_MAGIC:
        return None
    if not view[4] & 0x08:
        return None
    return _LE_U64.unpack_from(view, 6)[0]
