"""Kafka batch compression codecs: round trips, wire framing, interop and hostile input."""

from __future__ import annotations

import gzip
import os
import random
import struct
import zlib

import cramjam
import pytest

from odradek.protocol import compression as comp
from odradek.protocol.compression import (
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    ZSTD,
    CompressionError,
    UnsupportedCodec,
    compress,
    decompress,
)

CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
COMPRESSED = [GZIP, SNAPPY, LZ4, ZSTD]

XERIAL_HEADER = b"\x82SNAPPY\x00" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x01"

_rng = random.Random(1234)
PAYLOADS = {
    "empty": b"",
    "one": b"x",
    "text": b"the quick brown fox jumps over the lazy dog " * 40,
    "random": bytes(_rng.getrandbits(8) for _ in range(5000)),
    # Spans several 32 KiB xerial blocks and 64 KiB lz4 blocks, with a ragged tail.
    "big": (b"0123456789abcdef" * 4096 + bytes(range(256)) * 64) * 3 + b"tail",
}


@pytest.fixture
def kafka_python_snappy(monkeypatch):
    """Give kafka-python's own xerial framing code a raw snappy backend (via cramjam)."""
    import kafka.codec as kc

    class RawSnappy:
        @staticmethod
        def compress(data):
            return bytes(cramjam.snappy.compress_raw(data))

        @staticmethod
        def decompress(data):
            return bytes(cramjam.snappy.decompress_raw(data))

    monkeypatch.setattr(kc, "snappy", RawSnappy)
    return kc


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_round_trip(codec, name):
    data = PAYLOADS[name]
    packed = compress(codec, data)
    assert isinstance(packed, bytes)
    assert decompress(codec, packed) == data
    # Accepts any buffer, including a memoryview into a larger buffer.
    framed = bytearray(b"junk") + packed + b"more"
    assert decompress(codec, memoryview(framed)[4 : 4 + len(packed)]) == data
    assert compress(codec, bytearray(data)) is not None
    assert decompress(codec, compress(codec, memoryview(data))) == data


@pytest.mark.parametrize("codec", COMPRESSED)
def test_compressible_data_shrinks(codec):
    data = PAYLOADS["big"]
    assert len(compress(codec, data)) < len(data) // 4


def test_codec_names_and_ids():
    assert [comp.codec_id(n) for n in ("none", "gzip", "snappy", "lz4", "zstd")] == CODECS
    assert comp.codec_id("GZIP") == GZIP
    assert comp.codec_id(4) == 4


@pytest.mark.parametrize("bad", [5, 6, 7, -1, 8, "brotli", None, 1.0])
def test_unsupported_codec(bad):
    with pytest.raises(UnsupportedCodec):
        compress(bad, b"data")
    with pytest.raises(UnsupportedCodec):
        decompress(bad, b"data")
    assert issubclass(UnsupportedCodec, CompressionError)
    assert issubclass(CompressionError, ValueError)


def test_levels():
    data = PAYLOADS["big"]
    for codec in (GZIP, LZ4, ZSTD):
        for level in (1, 9):
            assert decompress(codec, compress(codec, data, level)) == data


# --------------------------------------------------------------------------- snappy (xerial)


def _xerial_chunks(blob: bytes) -> list[bytes]:
    assert blob[:16] == XERIAL_HEADER
    pos, chunks = 16, []
    while pos < len(blob):
        (n,) = struct.unpack_from(">i", blob, pos)
        chunks.append(blob[pos + 4 : pos + 4 + n])
        pos += 4 + n
    assert pos == len(blob)
    return chunks


def test_snappy_writes_xerial_framing_in_32k_blocks():
    data = PAYLOADS["big"]
    chunks = _xerial_chunks(compress(SNAPPY, data))
    assert len(chunks) == -(-len(data) // 32768)
    plain = [bytes(cramjam.snappy.decompress_raw(c)) for c in chunks]
    assert all(len(p) == 32768 for p in plain[:-1])
    assert b"".join(plain) == data


def test_snappy_empty_is_header_only():
    assert compress(SNAPPY, b"") == XERIAL_HEADER
    assert decompress(SNAPPY, XERIAL_HEADER) == b""


def test_snappy_golden_xerial_bytes():
    # Raw snappy block for b"hello": varint length 5, literal tag (5-1)<<2, the bytes.
    blob = XERIAL_HEADER + b"\x00\x00\x00\x07" + b"\x05\x10hello"
    assert decompress(SNAPPY, blob) == b"hello"
    assert compress(SNAPPY, b"hello") == blob
    # Two chunks.
    assert decompress(SNAPPY, blob + b"\x00\x00\x00\x07" + b"\x05\x10world") == b"helloworld"


def test_snappy_accepts_raw_block():
    for data in PAYLOADS.values():
        assert decompress(SNAPPY, bytes(cramjam.snappy.compress_raw(data))) == data


def test_snappy_ignores_xerial_version_byte_order():
    # Some producers write version/compat little-endian; only the magic matters.
    body = compress(SNAPPY, b"payload" * 100)[16:]
    blob = b"\x82SNAPPY\x00" + struct.pack("<ii", 1, 1) + body
    assert decompress(SNAPPY, blob) == b"payload" * 100


@pytest.mark.parametrize("blocksize", [32 * 1024, 4096, 100])
@pytest.mark.parametrize("name", ["text", "random", "big", "one"])
def test_snappy_interop_with_kafka_python(kafka_python_snappy, blocksize, name):
    kc = kafka_python_snappy
    data = PAYLOADS[name]
    theirs = kc.snappy_encode(data, xerial_compatible=True, xerial_blocksize=blocksize)
    assert theirs[:8] == b"\x82SNAPPY\x00"
    assert decompress(SNAPPY, theirs) == data
    assert decompress(SNAPPY, kc.snappy_encode(data, xerial_compatible=False)) == data
    ours = compress(SNAPPY, data)
    assert kc.snappy_decode(ours) == data
    if blocksize == 32 * 1024:
        assert ours == theirs  # same framing and same block boundaries


@pytest.mark.parametrize(
    "blob",
    [
        XERIAL_HEADER + b"\x00\x00\x00",  # truncated chunk length
        XERIAL_HEADER + b"\x00\x00\x00\x09\x05\x10hello",  # chunk longer than data
        XERIAL_HEADER + b"\xff\xff\xff\xff\x05\x10hello",  # negative chunk length
        XERIAL_HEADER + b"\x7f\xff\xff\xff\x05\x10hello",  # huge chunk length
        XERIAL_HEADER + b"\x00\x00\x00\x00",  # empty chunk
        XERIAL_HEADER + b"\x00\x00\x00\x07\x06\x10hello",  # block length mismatch
        b"",
        b"\x05\x10hel",
        b"\xff\xff\xff\xff\x0f\x00",  # raw block declaring 4 GiB
        b"\xff\xff\xff\xff\xff\xff",  # bad varint
    ],
)
def test_snappy_bad_input(blob):
    with pytest.raises(CompressionError):
        decompress(SNAPPY, blob)


# --------------------------------------------------------------------------- lz4


def test_lz4_frame_flags():
    blob = compress(LZ4, PAYLOADS["big"])
    assert blob[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic
    flg = blob[4]
    assert flg >> 6 == 1  # version 01
    assert flg & 0x20  # independent blocks (Kafka's Java reader needs these)
    assert not flg & 0x04  # no content checksum, like the Java client


def test_lz4_reads_linked_blocks_and_content_checksum():
    data = PAYLOADS["big"]
    linked = bytes(cramjam.lz4.compress(data))  # default frame: linked blocks + checksum
    assert not linked[4] & 0x20
    assert decompress(LZ4, linked) == data


def test_lz4_rejects_block_format():
    block = bytes(cramjam.lz4.compress_block(PAYLOADS["text"]))
    with pytest.raises(CompressionError):
        decompress(LZ4, block)


# --------------------------------------------------------------------------- zstd


def _zstd_stream(data: bytes, level: int = 3) -> bytes:
    c = cramjam.zstd.Compressor(level=level)
    c.compress(data)
    return bytes(c.finish())


def test_zstd_frame_without_content_size():
    data = PAYLOADS["big"]
    blob = _zstd_stream(data)
    assert blob[:4] == b"\x28\xb5\x2f\xfd"
    assert blob[4] >> 6 == 0 and not blob[4] & 0x20  # no frame content size recorded
    assert comp._zstd_content_size(blob) is None
    assert decompress(ZSTD, blob) == data
    # Small guesses must grow correctly.
    assert decompress(ZSTD, _zstd_stream(b"z" * 5_000_000, 1)) == b"z" * 5_000_000


def test_zstd_content_size_parsed():
    data = PAYLOADS["big"]
    blob = compress(ZSTD, data)
    assert comp._zstd_content_size(blob) == len(data)


def test_zstd_concatenated_frames():
    a, b = PAYLOADS["big"], PAYLOADS["text"]
    assert decompress(ZSTD, compress(ZSTD, a) + _zstd_stream(b)) == a + b
    assert decompress(ZSTD, compress(ZSTD, b) + compress(ZSTD, a)) == b + a


def test_zstd_declared_huge_content_size():
    # Single-segment frame header claiming 2**40 bytes, followed by nothing useful.
    blob = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + (1 << 40).to_bytes(8, "little") + b"\x01\x00\x00"
    with pytest.raises(CompressionError, match="beyond limit"):
        decompress(ZSTD, blob)
    with pytest.raises(CompressionError):
        decompress(ZSTD, blob, max_size=None)


# --------------------------------------------------------------------------- gzip


def test_gzip_is_standard():
    data = PAYLOADS["text"]
    assert gzip.decompress(compress(GZIP, data)) == data
    assert decompress(GZIP, gzip.compress(data, mtime=0)) == data
    assert compress(GZIP, data)[:3] == b"\x1f\x8b\x08"


def test_gzip_multi_member_and_padding():
    a, b = b"first " * 50, b"second " * 50
    assert decompress(GZIP, gzip.compress(a) + gzip.compress(b)) == a + b
    assert decompress(GZIP, gzip.compress(a) + b"\x00" * 8) == a


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x1f\x8b", gzip.compress(b"abc" * 100)[:-5], gzip.compress(b"x") + b"garbage", b"not gzip"],
)
def test_gzip_bad_input(blob):
    with pytest.raises(CompressionError):
        decompress(GZIP, blob)


def test_kafka_python_gzip_interop():
    import kafka.codec as kc

    data = PAYLOADS["big"]
    assert decompress(GZIP, kc.gzip_encode(data)) == data
    assert kc.gzip_decode(compress(GZIP, data)) == data


# --------------------------------------------------------------------------- limits and hostile input


@pytest.mark.parametrize("codec", CODECS)
def test_max_size_boundary(codec):
    data = PAYLOADS["big"]
    blob = compress(codec, data)
    assert decompress(codec, blob, max_size=len(data)) == data
    with pytest.raises(CompressionError, match="limit"):
        decompress(codec, blob, max_size=len(data) - 1)


def _bombs():
    zeros = bytes(8 << 20)
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    yield GZIP, z.compress(zeros) + z.flush()
    yield ZSTD, _zstd_stream(zeros, 1)
    yield ZSTD, compress(ZSTD, zeros, 1)
    yield LZ4, compress(LZ4, zeros, 1)
    yield SNAPPY, compress(SNAPPY, zeros)


@pytest.mark.parametrize("codec,blob", list(_bombs()), ids=lambda x: str(x)[:10])
def test_decompression_bomb_is_bounded(codec, blob):
    assert len(blob) < 500_000
    with pytest.raises(CompressionError, match="limit"):
        decompress(codec, blob, max_size=1 << 20)


@pytest.mark.parametrize("codec", COMPRESSED)
def test_truncations_and_garbage_only_raise_compression_error(codec):
    rng = random.Random(codec)
    data = PAYLOADS["text"] + PAYLOADS["random"][:300]
    blob = compress(codec, data)
    candidates = [blob[:i] for i in range(0, len(blob), max(1, len(blob) // 60))]
    for _ in range(150):
        mutated = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
        candidates.append(bytes(mutated))
    candidates += [os.urandom(rng.randint(0, 64)) for _ in range(50)]
    for c in candidates:
        try:
            out = decompress(codec, c, max_size=1 << 20)
        except CompressionError:
            continue
        assert isinstance(out, bytes) and len(out) <= 1 << 20
