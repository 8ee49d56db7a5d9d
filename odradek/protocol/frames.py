"""Client-side framing of one request and its response, sans-IO.

A request frame is an int32 size, the request header (v2 for flexible
versions of the API, else v1) and the body; a response frame (after its size)
is the response header (v1 with tagged fields for flexible versions, except
ApiVersions whose response header is always v0) and the body. Used by the
CLI and the tests to speak to any broker with odradek's own codec.
"""

from __future__ import annotations

import struct

from odradek.protocol.schema import DecodeError, api_names, codec, read_tags

_SIZE = struct.Struct(">i")


def api_key(name: str) -> int:
    for key, api in api_names().items():
        if api == name:
            return key
    raise KeyError(name)


def encode_request(name: str, version: int, body: dict, correlation_id: int,
                   client_id: str | None = "odradek") -> bytes:
    """The size-prefixed frame of request ``name`` (e.g. 'Metadata') at ``version``."""
    request = codec(name + "Request", version)
    out = bytearray(4)
    codec("RequestHeader", 2 if request.flexible else 1).encode(
        {"request_api_key": api_key(name), "request_api_version": version,
         "correlation_id": correlation_id, "client_id": client_id}, out)
    request.encode(body, out)
    _SIZE.pack_into(out, 0, len(out) - 4)
    return bytes(out)


def decode_response(name: str, version: int, frame: bytes) -> tuple[int, dict]:
    """(correlation id, body) of a response frame given without its size."""
    response = codec(name + "Response", version)
    if len(frame) < 4:
        raise DecodeError("response shorter than its header")
    (correlation_id,) = _SIZE.unpack_from(frame, 0)
    pos = 4
    if response.flexible and name != "ApiVersions":
        _, _, pos = read_tags(frame, pos, {})
    body, end = response.decode(frame, pos)
    if end != len(frame):
        raise DecodeError(f"{len(frame) - end} bytes after the {name} response")
    return correlation_id, body
