"""The consumer protocol embedded in classic groups: what a consumer puts in
JoinGroup's protocol metadata (ConsumerProtocolSubscription) and what its
leader puts in SyncGroup (ConsumerProtocolAssignment). Versions 0-3; each is
an int16 version, then the body. A version above 3 is read as 3 (a newer
client's fields are appended), as Kafka's ConsumerProtocol reads it.

Sans-IO; malformed bytes raise ValueError.
"""

from __future__ import annotations

import struct

from odradek.protocol.schema import DecodeError, codec

MAX_VERSION = 3
_I16 = struct.Struct(">h")


def _version(data: bytes) -> int:
    try:
        version = _I16.unpack_from(data, 0)[0]
    except struct.error:
        raise ValueError("the embedded consumer protocol is malformed") from None
    if version < 0:
        raise ValueError("the embedded consumer protocol is malformed")
    return min(version, MAX_VERSION)


def subscription_version(data: bytes) -> int:
    """The version a subscription was written in (capped at 3); 0 if unreadable."""
    try:
        return _version(data)
    except ValueError:
        return 0


def _body(name: str, data: bytes) -> dict:
    """``data``'s body as message ``name``, read in the version it names."""
    try:
        return codec(name, _version(data)).decode(data, 2)[0]
    except DecodeError:
        raise ValueError("the embedded consumer protocol is malformed") from None


def decode_subscription(data: bytes) -> dict:
    """``{"topics", "owned_partitions": {topic: [partitions]}, "rack_id", "user_data"}``."""
    body = _body("ConsumerProtocolSubscription", data)
    owned: dict[str, list[int]] = {}
    for t in body.get("owned_partitions") or ():
        owned.setdefault(t["topic"], []).extend(t["partitions"])
    return {"topics": [t for t in body["topics"] if t is not None], "owned_partitions": owned,
            "rack_id": body.get("rack_id"), "user_data": body.get("user_data")}


def decode_assignment(data: bytes) -> tuple[dict[str, list[int]], bytes | None]:
    """(partitions by topic, user data); empty bytes are an empty assignment."""
    if not data:
        return {}, None
    body = _body("ConsumerProtocolAssignment", data)
    out: dict[str, list[int]] = {}
    for t in body["assigned_partitions"]:
        out.setdefault(t["topic"], []).extend(t["partitions"])
    return out, body.get("user_data")


def encode_assignment(partitions: dict[str, list[int]], version: int = MAX_VERSION) -> bytes:
    """An assignment without user data, in ``version`` (0-3)."""
    version = min(max(version, 0), MAX_VERSION)
    body = codec("ConsumerProtocolAssignment", version).encode({
        "assigned_partitions": [{"topic": t, "partitions": sorted(ps)} for t, ps in sorted(partitions.items())],
        "user_data": None})
    return _I16.pack(version) + bytes(body)
