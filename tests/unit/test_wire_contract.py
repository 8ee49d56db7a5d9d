"""The wire contract is odradek's own: the advertised API table is pinned here,
it does not depend on any installed Kafka client library, every served
version has a codec from the vendored specs, and each API module's header
states the versions the registry serves."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys

import pytest

from odradek.apis.api_versions import api_version_list
from odradek.protocol.schema import codec, kafka_version, load_spec, parse_versions
from odradek.server.registry import load_all

# What ApiVersions advertises: change it only together with a handler.
PINNED = {
    "Produce": (0, 0, 13),
    "Fetch": (1, 4, 18),
    "ListOffsets": (2, 1, 11),
    "Metadata": (3, 0, 13),
    "OffsetCommit": (8, 2, 10),
    "OffsetFetch": (9, 1, 10),
    "FindCoordinator": (10, 0, 6),
    "JoinGroup": (11, 0, 9),
    "Heartbeat": (12, 0, 4),
    "LeaveGroup": (13, 0, 5),
    "SyncGroup": (14, 0, 5),
    "DescribeGroups": (15, 0, 6),
    "ListGroups": (16, 0, 5),
    "SaslHandshake": (17, 0, 1),
    "ApiVersions": (18, 0, 4),
    "CreateTopics": (19, 2, 7),
    "DeleteTopics": (20, 1, 6),
    "DeleteRecords": (21, 0, 2),
    "DescribeLogDirs": (35, 1, 5),
    "ListConfigResources": (74, 0, 1),
    "DescribeTopicPartitions": (75, 0, 0),
    "InitProducerId": (22, 0, 6),
    "AddPartitionsToTxn": (24, 0, 5),
    "AddOffsetsToTxn": (25, 0, 4),
    "EndTxn": (26, 0, 4),
    "WriteTxnMarkers": (27, 1, 2),
    "TxnOffsetCommit": (28, 0, 4),
    "DescribeProducers": (61, 0, 0),
    "DescribeTransactions": (65, 0, 0),
    "ListTransactions": (66, 0, 2),
    "OffsetForLeaderEpoch": (23, 2, 4),
    "DescribeAcls": (29, 1, 3),
    "CreateAcls": (30, 1, 3),
    "DeleteAcls": (31, 1, 3),
    "DescribeConfigs": (32, 1, 4),
    "AlterConfigs": (33, 0, 2),
    "CreatePartitions": (37, 0, 3),
    "CreateDelegationToken": (38, 1, 3),
    "RenewDelegationToken": (39, 1, 2),
    "ExpireDelegationToken": (40, 1, 2),
    "DescribeDelegationToken": (41, 1, 3),
    "SaslAuthenticate": (36, 0, 2),
    "DeleteGroups": (42, 0, 2),
    "ElectLeaders": (43, 0, 2),
    "IncrementalAlterConfigs": (44, 0, 1),
    "AlterPartitionReassignments": (45, 0, 1),
    "ListPartitionReassignments": (46, 0, 0),
    "OffsetDelete": (47, 0, 0),
    "DescribeClientQuotas": (48, 0, 1),
    "AlterClientQuotas": (49, 0, 1),
    "DescribeUserScramCredentials": (50, 0, 0),
    "AlterUserScramCredentials": (51, 0, 0),
    "DescribeCluster": (60, 0, 2),
    "ConsumerGroupHeartbeat": (68, 0, 1),
    "ConsumerGroupDescribe": (69, 0, 1),
    "ShareGroupHeartbeat": (76, 1, 1),
    "ShareGroupDescribe": (77, 1, 1),
    "ShareFetch": (78, 1, 2),
    "ShareAcknowledge": (79, 1, 2),
    "InitializeShareGroupState": (83, 0, 0),
    "ReadShareGroupState": (84, 0, 0),
    "WriteShareGroupState": (85, 0, 1),
    "DeleteShareGroupState": (86, 0, 0),
    "ReadShareGroupStateSummary": (87, 0, 1),
    "StreamsGroupHeartbeat": (88, 0, 1),
    "StreamsGroupDescribe": (89, 0, 1),
    "DescribeShareGroupOffsets": (90, 0, 1),
    "AlterShareGroupOffsets": (91, 0, 0),
    "DeleteShareGroupOffsets": (92, 0, 0),
}

_ADVERTISED = """
import json
from odradek.server.registry import load_all
from odradek.apis.api_versions import api_version_list
from odradek.protocol.schema import codec
for api in load_all().values():
    for v in range(api.min_version, api.max_version + 1):
        codec(api.name + "Request", v), codec(api.name + "Response", v)
print(json.dumps(api_version_list()))
"""


def _pinned_list():
    return sorted(({"api_key": k, "min_version": lo, "max_version": hi}
                   for k, lo, hi in PINNED.values()), key=lambda a: a["api_key"])


def test_advertised_table_is_pinned():
    load_all()
    assert api_version_list() == _pinned_list()
    assert {a.name: (a.key, a.min_version, a.max_version) for a in load_all().values()} == PINNED


def test_advertised_table_does_not_depend_on_kafka_python():
    # A fresh interpreter in which the kafka package cannot be imported at all
    # (as if kafka-python were absent, or any other version of it).
    blocker = "import sys; sys.modules['kafka'] = None\n"
    out = subprocess.run([sys.executable, "-c", blocker + _ADVERTISED], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert json.loads(out) == _pinned_list()


def test_codec_reads_only_vendored_specs():
    assert kafka_version() == "4.4.0"
    with pytest.raises(KeyError):
        load_spec("NoSuchRequest")


@pytest.mark.parametrize("api", sorted(PINNED))
def test_every_served_version_has_codecs(api):
    key, lo, hi = PINNED[api]
    spec = load_spec(api + "Request")
    assert spec["apiKey"] == key
    for v in range(lo, hi + 1):
        codec(api + "Request", v)
        codec(api + "Response", v)


def test_served_ranges_lie_within_the_pinned_specs():
    for api in load_all().values():
        lo, hi = parse_versions(load_spec(api.name + "Request")["validVersions"])
        assert api.max_version <= hi, api.name
        assert api.min_version >= lo or api.name == "Produce", api.name


def test_a_range_outside_the_spec_is_refused():
    from odradek.server.registry import handles

    with pytest.raises(ValueError):
        handles("Fetch", 4, 99)
    with pytest.raises(ValueError):
        handles("Fetch", 0, 18)  # Kafka 4 dropped Fetch v0-3


def test_module_headers_state_the_served_versions():
    for api in load_all().values():
        module = importlib.import_module(api.handler.__module__)
        doc = " ".join((module.__doc__ or "").split())
        versions = f"{api.min_version}(?:-{api.max_version})?" if api.min_version == api.max_version \
            else f"{api.min_version}-{api.max_version}"
        pattern = rf"\b{api.name} \((?:key )?{api.key}\),? (?:versions |v)?{versions}\b"
        assert re.search(pattern, doc), f"{module.__name__} header does not state {api.name} {versions}"


def test_request_frame_golden_bytes():
    from odradek.protocol.frames import encode_request

    # ApiVersions v0: size, api key 18, version 0, correlation 7, client id "cli", no body.
    assert encode_request("ApiVersions", 0, {}, 7, "cli") == (
        b"\x00\x00\x00\x0d" b"\x00\x12" b"\x00\x00" b"\x00\x00\x00\x07" b"\x00\x03cli")
    # A flexible version takes request header v2: an empty tag section after the client id.
    frame = encode_request("Metadata", 12, {"topics": None}, 1, "c")
    assert frame[4:15] == b"\x00\x03\x00\x0c\x00\x00\x00\x01\x00\x01c" and frame[15] == 0


def test_response_frame_decoding():
    from odradek.protocol.frames import decode_response
    from odradek.protocol.schema import DecodeError

    body = {"error_code": 0, "api_keys": [{"api_key": 18, "min_version": 0, "max_version": 4}],
            "throttle_time_ms": 0}
    # ApiVersions keeps response header v0 even at flexible versions.
    frame = b"\x00\x00\x00\x09" + bytes(codec("ApiVersionsResponse", 3).encode(body))
    corr, decoded = decode_response("ApiVersions", 3, frame)
    assert corr == 9 and decoded["api_keys"] == body["api_keys"]
    for cut in range(len(frame)):
        with pytest.raises(DecodeError):
            decode_response("ApiVersions", 3, frame[:cut])
    with pytest.raises(DecodeError):
        decode_response("ApiVersions", 3, frame + b"\x00")
