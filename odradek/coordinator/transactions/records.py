"""Keys and values of ``__transaction_state`` records, in Kafka's formats.

A key is a big-endian int16 record type (0, the spec's ``apiKey``) followed
by version 0 of ``TransactionLogKey`` (the transactional id). A value is an
int16 version followed by ``TransactionLogValue`` of that version; version 0
is written (what Kafka writes for clients of transactions v1), versions 0-1
are read. A null value (tombstone) is an expired transactional id.

``TransactionPartitions`` is null in an Empty state, an empty list in the
Complete states, and the partitions of the transaction otherwise, grouped by
topic, as Kafka writes them; so Kafka's tools (kafka-dump-log
``--transaction-log-decoder``) can read what odradek writes, and odradek can
load a ``__transaction_state`` written by Kafka.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from odradek.coordinator.records import RecordFormatError, java_string_hash
from odradek.protocol.schema import DecodeError, codec

KEY_TYPE = 0
VALUE_VERSION = 0
_I16 = struct.Struct(">h")


class TxnState(IntEnum):
    """Kafka's ``TransactionState`` ids, as stored in ``TransactionStatus``."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7  # in memory only: never written

    @property
    def kafka_name(self) -> str:
        """The name Kafka's admin APIs use (DescribeTransactions, ListTransactions)."""
        return STATE_NAMES[self]


STATE_NAMES = {
    TxnState.EMPTY: "Empty", TxnState.ONGOING: "Ongoing", TxnState.PREPARE_COMMIT: "PrepareCommit",
    TxnState.PREPARE_ABORT: "PrepareAbort", TxnState.COMPLETE_COMMIT: "CompleteCommit",
    TxnState.COMPLETE_ABORT: "CompleteAbort", TxnState.DEAD: "Dead",
    TxnState.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}


@dataclass
class TxnValue:
    """What one record says about a transactional id."""

    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState
    partitions: frozenset = field(default_factory=frozenset)  # {(topic, partition)}
    last_update_ms: int = -1
    start_ms: int = -1
    previous_producer_id: int = -1


def partition_for(transactional_id: str, partitions: int) -> int:
    """The ``__transaction_state`` partition of ``transactional_id`` (Kafka's hash)."""
    h = java_string_hash(transactional_id)
    h = 0 if h == -(1 << 31) else abs(h)
    return h % partitions


def txn_key(transactional_id: str) -> bytes:
    out = bytearray(_I16.pack(KEY_TYPE))
    codec("TransactionLogKey", 0).encode({"transactional_id": transactional_id}, out)
    return bytes(out)


def txn_value(v: TxnValue) -> bytes:
    if v.state == TxnState.EMPTY:
        parts = None
    else:
        by_topic: dict[str, list[int]] = {}
        for topic, index in sorted(v.partitions):
            by_topic.setdefault(topic, []).append(index)
        parts = [{"topic": t, "partition_ids": ids} for t, ids in by_topic.items()]
    out = bytearray(_I16.pack(VALUE_VERSION))
    codec("TransactionLogValue", VALUE_VERSION).encode({
        "producer_id": v.producer_id, "producer_epoch": v.producer_epoch,
        "transaction_timeout_ms": v.timeout_ms, "transaction_status": int(v.state),
        "transaction_partitions": parts, "transaction_last_update_timestamp_ms": v.last_update_ms,
        "transaction_start_timestamp_ms": v.start_ms,
    }, out)
    return bytes(out)


def decode_key(data: bytes) -> str:
    if data is None or len(data) < 2:
        raise RecordFormatError("transaction log key too short")
    kind = _I16.unpack_from(data, 0)[0]
    if kind != KEY_TYPE:
        raise RecordFormatError(f"unknown transaction log key type {kind}")
    try:
        d, _ = codec("TransactionLogKey", 0).decode(data, 2)
    except DecodeError as e:
        raise RecordFormatError(str(e)) from None
    return d["transactional_id"]


def decode_value(data: bytes | None) -> TxnValue | None:
    if data is None:
        return None
    if len(data) < 2:
        raise RecordFormatError("transaction log value too short")
    version = _I16.unpack_from(data, 0)[0]
    if version not in (0, 1):
        raise RecordFormatError(f"unknown transaction log value version {version}")
    try:
        d, _ = codec("TransactionLogValue", version).decode(data, 2)
        state = TxnState(d["transaction_status"])
    except (DecodeError, ValueError) as e:
        raise RecordFormatError(str(e)) from None
    parts = frozenset((p["topic"], i) for p in d["transaction_partitions"] or () for i in p["partition_ids"])
    return TxnValue(d["producer_id"], d["producer_epoch"], d["transaction_timeout_ms"], state, parts,
                    d["transaction_last_update_timestamp_ms"], d["transaction_start_timestamp_ms"],
                    d.get("previous_producer_id", -1))
