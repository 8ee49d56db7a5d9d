"""Magic-2 record encoding: golden bytes, codecs, kafka-python interop, hostile input."""

from __future__ import annotations

import random
import struct

import cramjam
import pytest
from crc32c import crc32c

from odradek.protocol import batch as batch_mod
from odradek.protocol.batch import InvalidBatch, validate
from odradek.protocol.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD, compress
from odradek.protocol.records import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    ControlKey,
    EndTxnMarker,
    IncompleteBatch,
    Record,
    build_batch,
    build_control_batch,
    decode_batch,
    decode_control_key,
    decode_end_txn_marker,
    decode_varint,
    decode_varlong,
    encode_varint,
    encode_varlong,
    iter_records,
    size_of_varint,
    write_varint,
    zigzag_decode,
    zigzag_encode,
)

CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]

# --------------------------------------------------------------------------- golden batch

TS = 1_700_000_000_000  # 0x0000018BCFE56800

GOLDEN_RECORDS = [
    (b"k1", b"v1", [("h", b"x")], TS),
    (None, b"hello", [], TS + 5),
    (b"", None, [("a", None), ("\u00e9", b"")], TS - 2),
]
GOLDEN_KW = dict(base_offset=42, producer_id=7, producer_epoch=1, base_sequence=3, partition_leader_epoch=5)

GOLDEN = bytes.fromhex(
    # ---- batch header
    "000000000000002a"  # base offset 42
    "0000005a"  # batch length 90 = 49 + 41 bytes of records
    "00000005"  # partition leader epoch 5
    "02"  # magic 2
    "f2e80ebb"  # CRC-32C of everything from attributes on
    "0000"  # attributes: no codec, CreateTime, not transactional, not control
    "00000002"  # last offset delta
    "0000018bcfe56800"  # base timestamp = first record's
    "0000018bcfe56805"  # max timestamp
    "0000000000000007"  # producer id
    "0001"  # producer epoch
    "00000003"  # base sequence
    "00000003"  # records count
    # ---- record 0: length 14
    "1c"  # zigzag(14)
    "00"  # attributes
    "00"  # timestamp delta 0
    "00"  # offset delta 0
    "04" "6b31"  # key "k1"
    "04" "7631"  # value "v1"
    "02"  # 1 header
    "02" "68"  # "h"
    "02" "78"  # b"x"
    # ---- record 1: length 11
    "16"
    "00"
    "0a"  # timestamp delta +5
    "02"  # offset delta 1
    "01"  # null key (zigzag(-1))
    "0a" "68656c6c6f"  # "hello"
    "00"  # no headers
    # ---- record 2: length 13
    "1a"
    "00"
    "03"  # timestamp delta -2
    "04"  # offset delta 2
    "00"  # empty key
    "01"  # null value
    "04"  # 2 headers
    "02" "61" "01"  # "a": null
    "04" "c3a9" "00"  # "é": b""
)


def test_golden_build():
    assert build_batch(GOLDEN_RECORDS, **GOLDEN_KW) == GOLDEN
    # The CRC written is the CRC-32C of bytes 21..end.
    assert struct.unpack_from(">I", GOLDEN, 17)[0] == crc32c(GOLDEN[21:])
    validate(GOLDEN)


def test_golden_decode():
    h, records = decode_batch(GOLDEN)
    assert h == batch_mod.read_header(GOLDEN)
    assert (h.base_offset, h.batch_length, h.partition_leader_epoch, h.magic) == (42, 90, 5, 2)
    assert (h.attributes, h.last_offset_delta, h.records_count) == (0, 2, 3)
    assert (h.base_timestamp, h.max_timestamp) == (TS, TS + 5)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (7, 1, 3)
    assert records == [
        Record(42, TS, b"k1", b"v1", [("h", b"x")]),
        Record(43, TS + 5, None, b"hello", []),
        Record(44, TS - 2, b"", None, [("a", None), ("\u00e9", b"")]),
    ]


def test_golden_records_rebuild_from_record_objects():
    _, records = decode_batch(GOLDEN)
    assert build_batch(records, **GOLDEN_KW) == GOLDEN
    assert build_batch(records, preserve_offsets=True, **GOLDEN_KW) == GOLDEN


def test_golden_matches_kafka_python_builder():
    from kafka.record.default_records import DefaultRecordBatchBuilder

    b = DefaultRecordBatchBuilder(2, 0, False, 7, 1, 3, 1 << 20)
    for i, (k, v, hs, ts) in enumerate(GOLDEN_RECORDS):
        b.append(i, ts, k, v, hs)
    theirs = bytearray(b.build())
    # kafka-python leaves base offset and leader epoch at 0: both lie outside the CRC.
    batch_mod.set_base_offset(theirs, 0, 42)
    batch_mod.set_leader_epoch(theirs, 0, 5)
    assert bytes(theirs) == GOLDEN


# --------------------------------------------------------------------------- varints

VARINT_CASES = [
    (0, "00"),
    (-1, "01"),
    (1, "02"),
    (63, "7e"),
    (-64, "7f"),
    (64, "8001"),
    (-65, "8101"),
    (300, "d804"),
    (2**31 - 1, "feffffff0f"),
    (-(2**31), "ffffffff0f"),
]
VARLONG_CASES = VARINT_CASES + [
    (2**31, "8080808010"),
    (2**63 - 1, "feffffffffffffffff01"),
    (-(2**63), "ffffffffffffffffff01"),
]


@pytest.mark.parametrize("value,hexed", VARINT_CASES)
def test_varint_known_encodings(value, hexed):
    raw = bytes.fromhex(hexed)
    assert encode_varint(value) == raw
    assert decode_varint(raw) == (value, len(raw))
    assert decode_varint(b"\xaa" + raw + b"\xbb", 1) == (value, len(raw) + 1)
    assert size_of_varint(value) == len(raw)


@pytest.mark.parametrize("value,hexed", VARLONG_CASES)
def test_varlong_known_encodings(value, hexed):
    raw = bytes.fromhex(hexed)
    assert encode_varlong(value) == raw
    assert decode_varlong(raw) == (value, len(raw))
    assert size_of_varint(value) == len(raw)
    out = bytearray(b"x")
    write_varint(out, value)
    assert out == b"x" + raw


def test_varints_random_and_against_kafka_python():
    from kafka.record import util

    rng = random.Random(7)
    for _ in range(2000):
        v = rng.randint(-(2**63), 2**63 - 1) >> rng.randrange(64)
        raw = encode_varlong(v)
        assert decode_varlong(raw) == (v, len(raw))
        assert zigzag_decode(zigzag_encode(v)) == v
        theirs = bytearray()
        util.encode_varint(v, theirs.append)
        assert bytes(theirs) == raw
        assert util.decode_varint(raw, 0) == (v, len(raw))
        if -(2**31) <= v < 2**31:
            assert decode_varint(raw) == (v, len(raw))


def test_varint_range_checks():
    for bad in (2**31, -(2**31) - 1):
        with pytest.raises(ValueError):
            encode_varint(bad)
    for bad in (2**63, -(2**63) - 1):
        with pytest.raises(ValueError):
            encode_varlong(bad)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x80",
        b"\xff\xff",
        b"\x80\x80\x80\x80\x80\x00",  # 6 bytes
        b"\xff\xff\xff\xff\x1f",  # 5 bytes but more than 32 bits
        b"\xff" * 1000,
    ],
)
def test_bad_varints(raw):
    with pytest.raises(InvalidBatch) as exc:
        decode_varint(raw)
    assert exc.value.error_code == 87


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x80" * 9, b"\x80" * 10 + b"\x00", b"\xff" * 9 + b"\x03", b"\xff" * 1000],
)
def test_bad_varlongs(raw):
    with pytest.raises(InvalidBatch):
        decode_varlong(raw)


# --------------------------------------------------------------------------- round trips


def _sample_records(n=50, seed=1, big=False):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        key = None if i % 7 == 3 else b"key-%d" % (i % 5)
        value = None if i % 11 == 5 else (b"value %d " % i) * rng.randint(0, 40)
        headers = [("h%d" % j, None if j == 2 else bytes([j]) * j) for j in range(i % 4)]
        out.append((key, value, headers, TS + rng.randint(-5000, 5000)))
    if big:  # multi-byte length varints
        out.append((b"\x00" * 300, b"\xff" * 70_000, [("\u2603 unicode", b"\x00" * 200)], TS))
    return out


def _plain(records):
    return [(r.key, r.value, r.headers, r.timestamp) for r in records]


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_every_codec(codec):
    recs = _sample_records(big=True)
    raw = build_batch(
        recs, base_offset=1000, compression=codec, producer_id=99, producer_epoch=3, base_sequence=17
    )
    h = validate(raw)
    assert h.compression == codec
    assert h.records_count == h.last_offset_delta + 1 == len(recs)
    assert h.base_timestamp == recs[0][3]
    assert h.max_timestamp == max(r[3] for r in recs)
    assert h.last_sequence == 17 + len(recs) - 1
    h2, records = decode_batch(raw)
    assert h2 == h
    assert _plain(records) == [(k, v, list(hs), ts) for k, v, hs, ts in recs]
    assert [r.offset for r in records] == list(range(1000, 1000 + len(recs)))
    if codec:
        assert len(raw) < len(build_batch(recs)) // 2


@pytest.mark.parametrize("codec", CODECS)
def test_flags_and_log_append_time(codec):
    recs = _sample_records(5)
    raw = build_batch(
        recs,
        compression=codec,
        producer_id=5,
        producer_epoch=0,
        base_sequence=0,
        transactional=True,
        log_append_time=True,
        max_timestamp=TS + 10**6,
    )
    h, records = decode_batch(raw)
    assert h.is_transactional and h.log_append_time and not h.is_control
    assert h.max_timestamp == TS + 10**6
    # Under LogAppendTime every record carries the batch's max timestamp.
    assert [r.timestamp for r in records] == [TS + 10**6] * len(recs)


def test_explicit_base_timestamp_and_now_default():
    raw = build_batch([(b"k", b"v", [], TS + 100)], base_timestamp=TS)
    h, (r,) = decode_batch(raw)
    assert h.base_timestamp == TS and r.timestamp == TS + 100
    h, (r,) = decode_batch(build_batch([(b"k", b"v", None, None)]))
    assert r.timestamp == h.base_timestamp > TS and r.headers == []


def test_preserve_offsets_for_compacted_batches():
    _, records = decode_batch(build_batch(_sample_records(10), base_offset=500))
    kept = [r for r in records if r.offset % 3 == 0]  # 501, 504, 507
    raw = build_batch(kept, base_offset=500, preserve_offsets=True, last_offset_delta=9)
    h, again = decode_batch(raw)
    assert (h.records_count, h.last_offset_delta, h.next_offset) == (3, 9, 510)
    assert again == kept
    with pytest.raises(ValueError):
        build_batch(list(reversed(kept)), base_offset=500, preserve_offsets=True)
    with pytest.raises(ValueError):
        build_batch(kept, base_offset=502, preserve_offsets=True)


def test_empty_batch():
    raw = build_batch([], base_offset=10, producer_id=4, producer_epoch=2, base_sequence=0, last_offset_delta=4)
    h, records = decode_batch(raw)
    assert records == [] and h.records_count == 0 and h.next_offset == 15
    assert h.size == len(raw) == 61
    for codec in CODECS[1:]:
        h, records = decode_batch(build_batch([], compression=codec))
        assert records == [] and h.compression == codec


def test_build_rejects_bad_types():
    with pytest.raises(TypeError):
        build_batch([("str key", b"v", [], TS)])
    with pytest.raises(TypeError):
        build_batch([(b"k", 12, [], TS)])
    with pytest.raises(TypeError):
        build_batch([(b"k", b"v", [(None, b"x")], TS)])


def test_bytes_like_inputs_accepted():
    raw = build_batch([(bytearray(b"k"), memoryview(b"v"), [(b"h", bytearray(b"x"))], TS)])
    _, (r,) = decode_batch(raw)
    assert (r.key, r.value, r.headers) == (b"k", b"v", [("h", b"x")])


def test_decode_from_offset_and_memoryview():
    a = build_batch(_sample_records(3), base_offset=0)
    b = build_batch(_sample_records(4, seed=2), base_offset=3, compression=ZSTD)
    buf = bytearray(a + b)
    h, recs = decode_batch(memoryview(buf), len(a))
    assert h.base_offset == 3 and len(recs) == 4
    h, recs = decode_batch(bytes(buf), len(a), verify_crc=False)
    assert len(recs) == 4


# --------------------------------------------------------------------------- iter_records


def test_iter_records_over_buffer_with_partial_tail():
    batches = [
        build_batch(_sample_records(3, seed=s), base_offset=s * 10, compression=c)
        for s, c in ((0, NONE), (1, GZIP), (2, LZ4))
    ]
    tail = build_batch(_sample_records(2, seed=9), base_offset=30)
    buf = b"".join(batches) + tail[: len(tail) // 2]
    out = list(iter_records(buf))
    assert [r.offset for _, r in out] == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert [h.base_offset for h, _ in out] == [0] * 3 + [10] * 3 + [20] * 3
    assert list(iter_records(buf, end=len(batches[0]))) == out[:3]
    assert list(iter_records(buf, pos=len(batches[0]))) == out[3:]
    assert list(iter_records(b"")) == []


def test_iter_records_raises_on_corrupt_batch():
    good = build_batch(_sample_records(2))
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    with pytest.raises(InvalidBatch):
        list(iter_records(good + bytes(bad)))


# --------------------------------------------------------------------------- control batches


@pytest.mark.parametrize("kind", [CONTROL_ABORT, CONTROL_COMMIT])
def test_control_batch(kind):
    raw = build_control_batch(kind, 1234, 5, 17, TS, base_offset=77)
    h, (r,) = decode_batch(raw)
    assert h.is_control and h.is_transactional and h.compression == 0
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (1234, 5, -1)
    assert (h.base_offset, h.records_count, h.last_offset_delta) == (77, 1, 0)
    assert r.offset == 77 and r.timestamp == TS and r.headers == []
    assert r.key == bytes.fromhex("0000") + bytes([0, kind])  # version 0, type
    assert r.value == bytes.fromhex("0000" "00000011")  # version 0, coordinator epoch 17
    assert decode_control_key(r.key) == ControlKey(0, kind)
    assert decode_end_txn_marker(r.value) == EndTxnMarker(0, 17)
    validate(raw)


def test_control_key_decoding_errors_and_forward_compat():
    assert decode_control_key(b"\x00\x01\x00\x01extra") == (1, 1)
    for bad in (None, b"", b"\x00\x00\x00", b"\xff\xff\x00\x00"):
        with pytest.raises(InvalidBatch):
            decode_control_key(bad)
    for bad in (None, b"\x00\x00\x00\x00\x00", b"\x80\x00\x00\x00\x00\x00"):
        with pytest.raises(InvalidBatch):
            decode_end_txn_marker(bad)
    with pytest.raises(ValueError):
        build_control_batch(2, 1, 1, 1, TS)


# --------------------------------------------------------------------------- kafka-python interop


@pytest.fixture
def kafka_python(monkeypatch):
    """kafka-python's record classes with cramjam standing in for the codec libraries it lacks.

    kafka-python keeps its own xerial snappy framing (only raw snappy is stubbed).
    """
    import kafka.codec as kc
    from kafka.record import default_records as dr

    class RawSnappy:
        @staticmethod
        def compress(data):
            return bytes(cramjam.snappy.compress_raw(data))

        @staticmethod
        def decompress(data):
            return bytes(cramjam.snappy.decompress_raw(data))

    def lz4_encode(data):
        c = cramjam.lz4.Compressor(block_linked=False)
        c.compress(bytes(data))
        return bytes(c.finish())

    monkeypatch.setattr(kc, "snappy", RawSnappy)
    monkeypatch.setattr(kc, "has_lz4", lambda: True)
    monkeypatch.setattr(kc, "has_zstd", lambda: True)
    monkeypatch.setattr(dr, "lz4_encode", lz4_encode)
    monkeypatch.setattr(dr, "lz4_decode", lambda d: bytes(cramjam.lz4.decompress(d)))
    monkeypatch.setattr(dr, "zstd_encode", lambda d: bytes(cramjam.zstd.compress(d)))
    monkeypatch.setattr(dr, "zstd_decode", lambda d: bytes(cramjam.zstd.decompress(d)))
    return dr


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_builds_we_read(kafka_python, codec):
    recs = _sample_records(30, seed=codec, big=True)
    b = kafka_python.DefaultRecordBatchBuilder(2, codec, True, 42, 7, 100, 1 << 22)
    for i, (k, v, hs, ts) in enumerate(recs):
        assert b.append(i, ts, k, v, hs) is not None
    raw = bytes(b.build())
    h, records = decode_batch(raw)
    assert h.compression == codec
    assert h.is_transactional and (h.producer_id, h.producer_epoch, h.base_sequence) == (42, 7, 100)
    assert _plain(records) == [(k, v, list(hs), ts) for k, v, hs, ts in recs]
    assert [r.offset for r in records] == list(range(len(recs)))
    if codec == SNAPPY:
        assert raw[61:69] == b"\x82SNAPPY\x00"  # kafka-python's own xerial framing


@pytest.mark.parametrize("codec", CODECS)
def test_we_build_kafka_python_reads(kafka_python, codec):
    recs = _sample_records(30, seed=10 + codec, big=True)
    raw = build_batch(
        recs, base_offset=5000, compression=codec, producer_id=3, producer_epoch=1, base_sequence=9
    )
    theirs = kafka_python.DefaultRecordBatch(raw)
    assert theirs.validate_crc()
    assert theirs.compression_type == codec
    assert (theirs.base_offset, theirs.last_offset_delta, theirs.records_count) == (5000, 30, 31)
    assert (theirs.producer_id, theirs.producer_epoch, theirs.base_sequence) == (3, 1, 9)
    got = [(r.offset, r.key, r.value, r.headers, r.timestamp) for r in theirs]
    assert got == [(5000 + i, k, v, list(hs), ts) for i, (k, v, hs, ts) in enumerate(recs)]


def test_kafka_python_reads_our_control_batches(kafka_python):
    for kind in (CONTROL_ABORT, CONTROL_COMMIT):
        theirs = kafka_python.DefaultRecordBatch(build_control_batch(kind, 8, 2, 3, TS))
        assert theirs.validate_crc() and theirs.is_control_batch and theirs.is_transactional
        (rec,) = list(theirs)
        assert (rec.type, rec.version, rec.commit) == (kind, 0, kind == CONTROL_COMMIT)


# --------------------------------------------------------------------------- hostile input


def _reframe(raw: bytes, payload: bytes, count: int | None = None, attributes: int | None = None) -> bytes:
    """Same header with a new payload; length and CRC fixed up so only the payload is 'wrong'."""
    b = bytearray(raw[:61]) + payload
    struct.pack_into(">i", b, 8, len(b) - 12)
    if count is not None:
        struct.pack_into(">i", b, 57, count)
    if attributes is not None:
        struct.pack_into(">h", b, 21, attributes)
    struct.pack_into(">I", b, 17, crc32c(bytes(b[21:])))
    return bytes(b)


def _expect_invalid(raw, code=None, **kwargs):
    with pytest.raises(InvalidBatch) as exc:
        decode_batch(raw, **kwargs)
    assert exc.value.error_code in (2, 87)
    if code is not None:
        assert exc.value.error_code == code
    assert not isinstance(exc.value, IncompleteBatch)
    return exc.value


@pytest.mark.parametrize("codec", CODECS)
def test_every_prefix_is_incomplete(codec):
    raw = build_batch(_sample_records(4, seed=3), compression=codec, base_offset=9)
    for i in range(len(raw)):
        prefix = raw[:i]
        with pytest.raises(IncompleteBatch):
            decode_batch(prefix)
        assert list(iter_records(prefix)) == []
    assert len(decode_batch(raw)[1]) == 4


@pytest.mark.parametrize("codec", CODECS)
def test_every_truncated_payload_in_a_consistent_frame_is_invalid(codec):
    raw = build_batch(_sample_records(4, seed=4), compression=codec)
    payload = raw[61:]
    for i in range(len(payload)):
        _expect_invalid(_reframe(raw, payload[:i]))


def test_header_level_errors():
    raw = build_batch(_sample_records(3))
    bad_crc = bytearray(raw)
    bad_crc[17] ^= 1
    assert _expect_invalid(bytes(bad_crc)).error_code == 2
    assert len(decode_batch(bytes(bad_crc), verify_crc=False)[1]) == 3
    bad_magic = bytearray(raw)
    bad_magic[16] = 1
    _expect_invalid(bytes(bad_magic), 2)
    for length in (0, 48, -1, -(2**31)):
        tiny = bytearray(raw)
        struct.pack_into(">i", tiny, 8, length)
        _expect_invalid(bytes(tiny), 2)
    huge = bytearray(raw)
    struct.pack_into(">i", huge, 8, 2**31 - 1)
    with pytest.raises(IncompleteBatch):
        decode_batch(bytes(huge))
    assert list(iter_records(bytes(huge))) == []
    # Unknown codec ids 5..7.
    for codec in (5, 6, 7):
        _expect_invalid(_reframe(raw, raw[61:], attributes=codec), 2)
    # Declared compressed but the payload is garbage.
    for codec in (GZIP, SNAPPY, LZ4, ZSTD):
        _expect_invalid(_reframe(raw, b"\x00garbage" * 5, attributes=codec), 2)


def test_record_count_mismatches():
    raw = build_batch(_sample_records(3))
    payload = raw[61:]
    _expect_invalid(_reframe(raw, payload, count=5), 87)  # too few records in the data
    _expect_invalid(_reframe(raw, payload, count=2), 87)  # bytes left over
    _expect_invalid(_reframe(raw, payload, count=-1), 87)
    _expect_invalid(_reframe(raw, payload, count=2**31 - 1), 87)
    _expect_invalid(_reframe(raw, payload + b"\x00", count=4), 87)
    # Huge count inside a compressed batch must not spin either.
    z = build_batch(_sample_records(3), compression=ZSTD)
    _expect_invalid(_reframe(z, z[61:], count=2**31 - 1), 87)


def _record(body: bytes) -> bytes:
    out = bytearray()
    write_varint(out, len(body))
    return bytes(out) + body


@pytest.mark.parametrize(
    "records_bytes",
    [
        b"\xff\xff\xff\xff\xff\xff" + b"\x00" * 10,  # record length varint too long
        encode_varint(2**31 - 1) + b"\x00" * 10,  # record length far beyond the data
        encode_varint(-1) + b"\x00" * 10,  # negative record length
        encode_varint(3) + b"\x00" * 10,  # shorter than any record
        _record(b"\x00\x00\x00" + encode_varint(2**31 - 1) + b"k\x01\x00"),  # key length huge
        _record(b"\x00\x00\x00" + encode_varint(-2) + b"\x01\x00"),  # key length < -1
        _record(b"\x00\x00\x00\x01" + encode_varint(10**9) + b"\x00"),  # value length huge
        _record(b"\x00\x00\x00\x01" + encode_varint(-7) + b"\x00"),  # value length < -1
        _record(b"\x00\x00\x00\x01\x01" + encode_varint(2**31 - 1) + b"\x00\x00"),  # header count huge
        _record(b"\x00\x00\x00\x01\x01" + encode_varint(-1)),  # negative header count
        _record(b"\x00\x00\x00\x01\x01\x02" + encode_varint(-1) + b"\x00"),  # null header key
        _record(b"\x00\x00\x00\x01\x01\x02" + encode_varint(50) + b"ab\x00"),  # header key too long
        _record(b"\x00\x00\x00\x01\x01\x02\x02a" + encode_varint(-3)),  # header value length < -1
        _record(b"\x00\x00\x00\x01\x01\x02\x02a" + encode_varint(99) + b"x"),  # header value too long
        _record(b"\x00\x00\x00\x01\x01\x02\x04\xff\xfe\x00"),  # header key not UTF-8
        _record(b"\x00\x00\x00\x01\x01\x00\x00"),  # record longer than its fields
        _record(b"\x00\x00\x00\x01\x01\x02") + b"\x02a\x01",  # header lies past the record's end
        _record(b"\x00" + b"\xff" * 11 + b"\x01\x01\x00"),  # timestamp varlong too long
        _record(b"\x00\x00" + b"\xff" * 5 + b"\x01\x01\x01\x00"),  # offset varint too long
        _record(b"\x00\x00\x00\x01\x01\xff"),  # header count varint runs off the record
    ],
)
def test_corrupt_records(records_bytes):
    template = build_batch([(b"k", b"v", [], TS)])
    for codec in (NONE, ZSTD):
        payload = records_bytes if codec == NONE else compress(codec, records_bytes)
        err = _expect_invalid(_reframe(template, payload, count=1, attributes=codec))
        assert err.error_code == 87


def test_random_mutations_only_raise_invalid_batch():
    rng = random.Random(2024)
    templates = [
        build_batch(_sample_records(6, seed=c), compression=c, producer_id=1, producer_epoch=0, base_sequence=0)
        for c in CODECS
    ]
    plain_payloads = [t[61:] for t in [build_batch(_sample_records(6, seed=s)) for s in range(3)]]
    decoded = 0
    for i in range(3000):
        if i % 2:
            raw = templates[i % len(templates)]
            payload = bytearray(raw[61:])
        else:
            raw = templates[0]
            payload = bytearray(plain_payloads[i % 3])
        for _ in range(rng.randint(1, 3)):
            r = rng.random()
            if r < 0.6 and payload:
                payload[rng.randrange(len(payload))] = rng.getrandbits(8)
            elif r < 0.8 and payload:
                del payload[rng.randrange(len(payload)) :]
            else:
                payload[rng.randrange(len(payload) + 1) : 0] = bytes(rng.getrandbits(8) for _ in range(3))
        count = rng.choice([None, None, None, 0, 1, 5, 2**31 - 1])
        mutated = _reframe(raw, bytes(payload), count=count)
        try:
            h, records = decode_batch(mutated, max_decompressed=1 << 20)
        except IncompleteBatch:  # pragma: no cover - the frame is always whole
            raise AssertionError("consistent frame reported as incomplete")
        except InvalidBatch as exc:
            assert exc.error_code in (2, 87)
            continue
        decoded += 1
        assert len(records) == h.records_count
        assert all(isinstance(r, Record) for r in records)
    assert decoded < 3000


def test_decompression_bomb_in_batch_is_bounded():
    recs = [(None, bytes(4 << 20), [], TS)]
    raw = build_batch(recs, compression=ZSTD)
    assert len(raw) < 10_000
    _expect_invalid(raw, 2, max_decompressed=1 << 20)
    assert decode_batch(raw)[1][0].value == bytes(4 << 20)
