"""Keys and values of the records in ``__consumer_offsets``, in Kafka's formats.

Every key starts with a big-endian int16 record type (the spec's ``apiKey``),
followed by version 0 of that key's spec; every value starts with an int16
version, followed by the fields of that version (Kafka's specs, vendored in
``odradek/protocol/specs``):

- key type 0 or 1: an offset commit, ``group, topic, partition``; we write 1.
- key type 2: group metadata, ``group``.
- offset commit value: version 1 when the commit carries an explicit expiry
  (OffsetCommit v2-4 with a retention time), else version 3 (with the leader
  epoch); versions 0-4 are read.
- group metadata value: version 3 is written; versions 0-4 are read.
- a null value is a tombstone: the offset, or the group, is deleted.
- key types 3-8 and 16: KIP-848 consumer groups (``ConsumerKey``): the
  group epoch (3), the subscribed topics' metadata (4), a member's
  subscription (5), the target assignment's epoch (6) and each member's
  target (7), each member's current assignment (8), a resolved regular
  expression (16). Their values are version 0 of their specs.
- key types 10-14: KIP-932 share groups (``ShareKey``): a member's
  subscription (10), the group epoch (11), the target assignment's epoch
  (12) and each member's target (13), each member's assignment (14); values
  version 0. (Type 15, the share-partition initialisation state, is not
  written: share-partition state is not persisted yet.)

So Kafka's own tools (kafka-console-consumer with the offsets formatter,
kafka-dump-log --offsets-decoder) can read what odradek writes, and odradek
can load a ``__consumer_offsets`` written by Kafka.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from odradek.protocol.schema import DecodeError, codec

OFFSET_COMMIT_KEY_TYPE = 1  # 0 is read too: the same fields
GROUP_METADATA_KEY_TYPE = 2
GROUP_METADATA_VALUE_VERSION = 3

_I16 = struct.Struct(">h")


@dataclass(frozen=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True)
class GroupKey:
    group: str


@dataclass(frozen=True)
class OffsetValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    expire_timestamp: int = -1


class RecordFormatError(ValueError):
    """A key or value of ``__consumer_offsets`` we cannot read."""


def offset_key(group: str, topic: str, partition: int) -> bytes:
    out = bytearray(_I16.pack(OFFSET_COMMIT_KEY_TYPE))
    codec("OffsetCommitKey", 0).encode(
        {"group": group, "topic": topic, "partition": partition}, out)
    return bytes(out)


def group_key(group: str) -> bytes:
    out = bytearray(_I16.pack(GROUP_METADATA_KEY_TYPE))
    codec("GroupMetadataKey", 0).encode({"group": group}, out)
    return bytes(out)


def offset_value(v: OffsetValue) -> bytes:
    version = 1 if v.expire_timestamp >= 0 else 3
    out = bytearray(_I16.pack(version))
    codec("OffsetCommitValue", version).encode({
        "offset": v.offset, "leader_epoch": v.leader_epoch, "metadata": v.metadata,
        "commit_timestamp": v.commit_timestamp, "expire_timestamp": v.expire_timestamp,
    }, out)
    return bytes(out)


def group_value(value: dict) -> bytes:
    """Encode a GroupMetadataValue given as a dict of its snake_case fields."""
    out = bytearray(_I16.pack(GROUP_METADATA_VALUE_VERSION))
    codec("GroupMetadataValue", GROUP_METADATA_VALUE_VERSION).encode(value, out)
    return bytes(out)


def _version(data: bytes) -> int:
    if data is None or len(data) < 2:
        raise RecordFormatError("record too short for a version")
    return _I16.unpack_from(data, 0)[0]


def decode_key(data: bytes) -> "OffsetKey | GroupKey | ConsumerKey":
    version = _version(data)
    if version in CONSUMER_RECORD_NAMES:
        return decode_consumer_key(version, data)
    if version in SHARE_RECORD_NAMES:
        return decode_share_key(version, data)
    if version in STREAMS_RECORD_NAMES:
        return decode_streams_key(version, data)
    try:
        if version in (0, OFFSET_COMMIT_KEY_TYPE):
            d, _ = codec("OffsetCommitKey", 0).decode(data, 2)
            return OffsetKey(d["group"], d["topic"], d["partition"])
        if version == GROUP_METADATA_KEY_TYPE:
            d, _ = codec("GroupMetadataKey", 0).decode(data, 2)
            return GroupKey(d["group"])
    except DecodeError as e:
        raise RecordFormatError(str(e)) from None
    raise RecordFormatError(f"unknown key version {version}")


def decode_offset_value(data: bytes | None) -> OffsetValue | None:
    if data is None:
        return None
    version = _version(data)
    if not 0 <= version <= 4:
        raise RecordFormatError(f"unknown offset commit value version {version}")
    try:
        d, _ = codec("OffsetCommitValue", version).decode(data, 2)
    except DecodeError as e:
        raise RecordFormatError(str(e)) from None
    return OffsetValue(d["offset"], d["leader_epoch"], d["metadata"], d["commit_timestamp"],
                       d["expire_timestamp"])


def decode_group_value(data: bytes | None) -> dict | None:
    if data is None:
        return None
    version = _version(data)
    if not 0 <= version <= 4:
        raise RecordFormatError(f"unknown group metadata value version {version}")
    try:
        d, _ = codec("GroupMetadataValue", version).decode(data, 2)
    except DecodeError as e:
        raise RecordFormatError(str(e)) from None
    return d


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode``: over UTF-16 code units, wrapping at 32 bits."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(group: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition of ``group``, as Kafka computes it
    (its ``Utils.abs`` maps Integer.MIN_VALUE to 0)."""
    h = java_string_hash(group)
    h = 0 if h == -(1 << 31) else abs(h)
    return h % partitions


# -- records of the group types (3-8, 10-14, 16, 17, 19-23): one codec each ---------
# A key is the record type (int16) then the "<Name>Key" message v0; a value is
# version 0 (int16) then "<Name>Value" v0. The group types differ only in
# their names and in which key field names the member (``sub``).

def _typed_key(name: str, kind: int, fields: dict) -> bytes:
    out = bytearray(_I16.pack(kind))
    codec(name + "Key", 0).encode(fields, out)
    return bytes(out)


def _typed_value(name: str, value: dict) -> bytes:
    out = bytearray(_I16.pack(0))
    codec(name + "Value", 0).encode(value, out)
    return bytes(out)


def _decode_typed_key(name: str, data: bytes) -> dict:
    try:
        d, _ = codec(name + "Key", 0).decode(data, 2)
    except DecodeError as e:
        raise RecordFormatError(str(e)) from None
    return d


def _decode_typed_value(name: str, data: bytes | None) -> dict | None:
    if data is None:
        return None
    version = _version(data)
    if version != 0:
        raise RecordFormatError(f"unknown {name} value version {version}")
    try:
        d, _ = codec(name + "Value", 0).decode(data, 2)
    except DecodeError as e:
        raise RecordFormatError(str(e)) from None
    return d


def _member_fields(group: str, sub: str | None, member_keyed: bool) -> dict:
    fields = {"group_id": group}
    if member_keyed:
        fields["member_id"] = sub
    return fields


# -- KIP-848 consumer groups ------------------------------------------------

CG_METADATA = 3  # ConsumerGroupMetadata: the group epoch
CG_PARTITION_METADATA = 4  # ConsumerGroupPartitionMetadata: subscribed topics' metadata
CG_MEMBER_METADATA = 5  # ConsumerGroupMemberMetadata: a member's subscription
CG_TARGET_METADATA = 6  # ConsumerGroupTargetAssignmentMetadata: the target's epoch
CG_TARGET_MEMBER = 7  # ConsumerGroupTargetAssignmentMember: a member's target partitions
CG_CURRENT_ASSIGNMENT = 8  # ConsumerGroupCurrentMemberAssignment: a member's reconciliation
CG_REGEX = 16  # ConsumerGroupRegularExpression: topics a regex resolved to

CONSUMER_RECORD_NAMES = {
    CG_METADATA: "ConsumerGroupMetadata",
    CG_PARTITION_METADATA: "ConsumerGroupPartitionMetadata",
    CG_MEMBER_METADATA: "ConsumerGroupMemberMetadata",
    CG_TARGET_METADATA: "ConsumerGroupTargetAssignmentMetadata",
    CG_TARGET_MEMBER: "ConsumerGroupTargetAssignmentMember",
    CG_CURRENT_ASSIGNMENT: "ConsumerGroupCurrentMemberAssignment",
    CG_REGEX: "ConsumerGroupRegularExpression",
}
_MEMBER_KEYED = (CG_MEMBER_METADATA, CG_TARGET_MEMBER, CG_CURRENT_ASSIGNMENT)


@dataclass(frozen=True)
class ConsumerKey:
    """Key of a consumer group record: its type (3-8, 16), the group, and the
    member id (types 5, 7, 8) or the regular expression (type 16)."""
    kind: int
    group: str
    sub: str | None = None


def consumer_key(kind: int, group: str, sub: str | None = None) -> bytes:
    fields = _member_fields(group, sub, kind in _MEMBER_KEYED)
    if kind == CG_REGEX:
        fields["regular_expression"] = sub
    return _typed_key(CONSUMER_RECORD_NAMES[kind], kind, fields)


def consumer_value(kind: int, value: dict) -> bytes:
    """Encode the value of a consumer group record (version 0) from its snake_case fields."""
    return _typed_value(CONSUMER_RECORD_NAMES[kind], value)


def decode_consumer_key(kind: int, data: bytes) -> ConsumerKey:
    d = _decode_typed_key(CONSUMER_RECORD_NAMES[kind], data)
    return ConsumerKey(kind, d["group_id"], d.get("member_id", d.get("regular_expression")))


def decode_consumer_value(kind: int, data: bytes | None) -> dict | None:
    return _decode_typed_value(CONSUMER_RECORD_NAMES[kind], data)


# -- KIP-932 share groups ---------------------------------------------------

SG_MEMBER_METADATA = 10  # ShareGroupMemberMetadata: a member's subscription
SG_METADATA = 11  # ShareGroupMetadata: the group epoch and its topics' metadata hash
SG_TARGET_METADATA = 12  # ShareGroupTargetAssignmentMetadata: the target's epoch
SG_TARGET_MEMBER = 13  # ShareGroupTargetAssignmentMember: a member's target partitions
SG_CURRENT_ASSIGNMENT = 14  # ShareGroupCurrentMemberAssignment: a member's assignment

SHARE_RECORD_NAMES = {
    SG_MEMBER_METADATA: "ShareGroupMemberMetadata",
    SG_METADATA: "ShareGroupMetadata",
    SG_TARGET_METADATA: "ShareGroupTargetAssignmentMetadata",
    SG_TARGET_MEMBER: "ShareGroupTargetAssignmentMember",
    SG_CURRENT_ASSIGNMENT: "ShareGroupCurrentMemberAssignment",
}
_SHARE_MEMBER_KEYED = (SG_MEMBER_METADATA, SG_TARGET_MEMBER, SG_CURRENT_ASSIGNMENT)


@dataclass(frozen=True)
class ShareKey:
    """Key of a share group record: its type (10-14), the group, and the
    member id (types 10, 13, 14)."""
    kind: int
    group: str
    sub: str | None = None


def share_key(kind: int, group: str, sub: str | None = None) -> bytes:
    return _typed_key(SHARE_RECORD_NAMES[kind], kind, _member_fields(group, sub, kind in _SHARE_MEMBER_KEYED))


def share_value(kind: int, value: dict) -> bytes:
    return _typed_value(SHARE_RECORD_NAMES[kind], value)


def decode_share_key(kind: int, data: bytes) -> ShareKey:
    d = _decode_typed_key(SHARE_RECORD_NAMES[kind], data)
    return ShareKey(kind, d["group_id"], d.get("member_id"))


def decode_share_value(kind: int, data: bytes | None) -> dict | None:
    return _decode_typed_value(SHARE_RECORD_NAMES[kind], data)


# -- KIP-1071 streams groups ------------------------------------------------

STG_METADATA = 17  # StreamsGroupMetadata: the group epoch, its topics' metadata hash
STG_MEMBER_METADATA = 19  # StreamsGroupMemberMetadata: a member's process, endpoint, topology epoch
STG_TARGET_METADATA = 20  # StreamsGroupTargetAssignmentMetadata: the target's epoch
STG_TARGET_MEMBER = 21  # StreamsGroupTargetAssignmentMember: a member's target tasks
STG_CURRENT_ASSIGNMENT = 22  # StreamsGroupCurrentMemberAssignment: a member's reconciliation
STG_TOPOLOGY = 23  # StreamsGroupTopology: the group's topology

STREAMS_RECORD_NAMES = {
    STG_METADATA: "StreamsGroupMetadata",
    STG_MEMBER_METADATA: "StreamsGroupMemberMetadata",
    STG_TARGET_METADATA: "StreamsGroupTargetAssignmentMetadata",
    STG_TARGET_MEMBER: "StreamsGroupTargetAssignmentMember",
    STG_CURRENT_ASSIGNMENT: "StreamsGroupCurrentMemberAssignment",
    STG_TOPOLOGY: "StreamsGroupTopology",
}
_STREAMS_MEMBER_KEYED = (STG_MEMBER_METADATA, STG_TARGET_MEMBER, STG_CURRENT_ASSIGNMENT)


@dataclass(frozen=True)
class StreamsKey:
    """Key of a streams group record: its type (17, 19-23), the group, and
    the member id (types 19, 21, 22)."""
    kind: int
    group: str
    sub: str | None = None


def streams_key(kind: int, group: str, sub: str | None = None) -> bytes:
    return _typed_key(STREAMS_RECORD_NAMES[kind], kind, _member_fields(group, sub, kind in _STREAMS_MEMBER_KEYED))


def streams_value(kind: int, value: dict) -> bytes:
    return _typed_value(STREAMS_RECORD_NAMES[kind], value)


def decode_streams_key(kind: int, data: bytes) -> StreamsKey:
    d = _decode_typed_key(STREAMS_RECORD_NAMES[kind], data)
    return StreamsKey(kind, d["group_id"], d.get("member_id"))


def decode_streams_value(kind: int, data: bytes | None) -> dict | None:
    return _decode_typed_value(STREAMS_RECORD_NAMES[kind], data)
