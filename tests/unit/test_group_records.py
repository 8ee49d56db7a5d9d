"""__consumer_offsets keys and values: golden bytes in Kafka's formats."""

from __future__ import annotations

import struct

import pytest

from odradek.coordinator import records as rec
from odradek.coordinator.records import GroupKey, OffsetKey, OffsetValue


def s16(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def test_offset_key_golden():
    key = rec.offset_key("g", "t", 3)
    assert key == b"\x00\x01" + b"\x00\x01g" + b"\x00\x01t" + b"\x00\x00\x00\x03"
    assert rec.decode_key(key) == OffsetKey("g", "t", 3)
    # Key version 0 (older brokers) reads the same way.
    assert rec.decode_key(b"\x00\x00" + key[2:]) == OffsetKey("g", "t", 3)


def test_group_key_golden():
    key = rec.group_key("my-group")
    assert key == b"\x00\x02" + s16("my-group")
    assert rec.decode_key(key) == GroupKey("my-group")


def test_offset_value_v3_golden():
    v = OffsetValue(100, 5, "md", 1000)
    data = rec.offset_value(v)
    assert data == (b"\x00\x03" + struct.pack(">q", 100) + struct.pack(">i", 5) + s16("md")
                    + struct.pack(">q", 1000))
    assert rec.decode_offset_value(data) == v


def test_offset_value_v1_golden_with_expiry():
    v = OffsetValue(100, -1, "", 1000, 2000)
    data = rec.offset_value(v)
    assert data == (b"\x00\x01" + struct.pack(">q", 100) + s16("") + struct.pack(">q", 1000)
                    + struct.pack(">q", 2000))
    assert rec.decode_offset_value(data) == v


def test_offset_value_v0_from_old_kafka():
    data = b"\x00\x00" + struct.pack(">q", 7) + s16("x") + struct.pack(">q", 99)
    assert rec.decode_offset_value(data) == OffsetValue(7, -1, "x", 99, -1)


def test_offset_value_v4_flexible():
    # Flexible version: compact string, then an empty tagged-field section.
    data = b"\x00\x04" + struct.pack(">q", 7) + struct.pack(">i", 2) + b"\x02x" + struct.pack(">q", 99) + b"\x00"
    assert rec.decode_offset_value(data) == OffsetValue(7, 2, "x", 99, -1)


GROUP_VALUE = {
    "protocol_type": "consumer", "generation": 1, "protocol": "range", "leader": "m",
    "current_state_timestamp": 2,
    "members": [{"member_id": "m", "group_instance_id": None, "client_id": "c", "client_host": "/h",
                 "rebalance_timeout": 3, "session_timeout": 4, "subscription": b"S", "assignment": b"A"}],
}

GROUP_VALUE_V3 = (
    b"\x00\x03" + s16("consumer") + struct.pack(">i", 1) + s16("range") + s16("m") + struct.pack(">q", 2)
    + struct.pack(">i", 1)
    + s16("m") + b"\xff\xff" + s16("c") + s16("/h") + struct.pack(">ii", 3, 4)
    + struct.pack(">i", 1) + b"S" + struct.pack(">i", 1) + b"A"
)


def test_group_value_v3_golden():
    assert rec.group_value(GROUP_VALUE) == GROUP_VALUE_V3
    assert rec.decode_group_value(GROUP_VALUE_V3) == GROUP_VALUE


def test_group_value_empty_group():
    data = rec.group_value({"protocol_type": "consumer", "generation": 4, "protocol": None, "leader": None,
                            "current_state_timestamp": 9, "members": []})
    assert data == (b"\x00\x03" + s16("consumer") + struct.pack(">i", 4) + b"\xff\xff\xff\xff"
                    + struct.pack(">q", 9) + struct.pack(">i", 0))


def test_group_value_v0_from_old_kafka():
    data = (b"\x00\x00" + s16("consumer") + struct.pack(">i", 2) + s16("range") + s16("m")
            + struct.pack(">i", 1) + s16("m") + s16("c") + s16("/h") + struct.pack(">i", 4)
            + struct.pack(">i", 1) + b"S" + struct.pack(">i", 1) + b"A")
    v = rec.decode_group_value(data)
    assert v["current_state_timestamp"] == -1
    assert v["members"][0]["rebalance_timeout"] == -1
    assert v["members"][0]["group_instance_id"] is None


def test_tombstones_and_bad_records():
    assert rec.decode_offset_value(None) is None
    assert rec.decode_group_value(None) is None
    with pytest.raises(rec.RecordFormatError):
        rec.decode_key(b"\x00\x07\x00\x01g")
    with pytest.raises(rec.RecordFormatError):
        rec.decode_key(b"\x00")
    with pytest.raises(rec.RecordFormatError):
        rec.decode_offset_value(b"\x00\x03\x00")
    with pytest.raises(rec.RecordFormatError):
        rec.decode_group_value(b"\x00\x09")


@pytest.mark.parametrize("text, expected", [
    ("", 0),
    ("a", 97),
    ("hello", 99162322),
    ("polygenelubricants", -(1 << 31)),  # Java's Integer.MIN_VALUE
    ("\U0001F600", 0xD83D * 31 + 0xDE00),  # UTF-16 surrogate pair
    ("consumer-group-with-a-rather-long-name", None),
])
def test_java_string_hash(text, expected):
    h = rec.java_string_hash(text)
    assert -(1 << 31) <= h < (1 << 31)
    if expected is not None:
        assert h == expected


def test_partition_for_matches_kafka():
    assert rec.partition_for("polygenelubricants", 50) == 0  # Utils.abs(MIN_VALUE) == 0
    assert rec.partition_for("hello", 50) == 99162322 % 50
    # "a" * 7 hashes negative in Java: abs, then modulo.
    h = rec.java_string_hash("aaaaaaa")
    assert h < 0
    assert rec.partition_for("aaaaaaa", 50) == (-h) % 50


def test_consumer_member_classic_metadata_golden():
    """ConsumerGroupMemberMetadataValue's ClassicMemberMetadata, a nullable struct in
    a tagged field: null is written as Kafka writes it (tag 0, size 1, varint 0),
    and an absent tag reads as Kafka reads it (an empty struct: no classic member)."""
    from odradek.coordinator.records import CG_MEMBER_METADATA

    base = {"instance_id": None, "rack_id": None, "client_id": "c", "client_host": "h",
            "subscribed_topic_names": ["t"], "subscribed_topic_regex": None, "rebalance_timeout_ms": 1,
            "server_assignor": None}
    head = "0000" "00" "00" "0263" "0268" "02" "0274" "00" "00000001" "00"
    null = rec.consumer_value(CG_MEMBER_METADATA, dict(base, classic_member_metadata=None))
    assert null.hex() == head + "01" "00" "01" "00"
    assert rec.decode_consumer_value(CG_MEMBER_METADATA, null)["classic_member_metadata"] is None
    classic = {"session_timeout_ms": 10, "supported_protocols": [{"name": "range", "metadata": b"\x00\x01"}]}
    present = rec.consumer_value(CG_MEMBER_METADATA, dict(base, classic_member_metadata=classic))
    assert present.hex() == head + "01" "00" "11" "01" "0000000a" "02" "0672616e6765" "03" "0001" "00" "00"
    assert rec.decode_consumer_value(CG_MEMBER_METADATA, present)["classic_member_metadata"] == classic
    absent = bytes.fromhex(head + "00")
    assert rec.decode_consumer_value(CG_MEMBER_METADATA, absent)["classic_member_metadata"] == \
        {"session_timeout_ms": 0, "supported_protocols": []}
