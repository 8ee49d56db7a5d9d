"""The transaction coordinator's state machine: transitions, fencing, timeouts, replay."""

from __future__ import annotations

import struct

import pytest

from odradek.coordinator.runtime import ShardRunner
from odradek.coordinator.transactions import records as rec
from odradek.coordinator.transactions.records import TxnState as S, TxnValue
from odradek.coordinator.transactions.shard import EPOCH_MAX, TRANSITIONS, TransactionShard, TxnConfig
from odradek.protocol import errors

T0 = 1_700_000_000_000


class Harness:
    """A TransactionShard driven by the ShardRunner; records go to ``log``."""

    def __init__(self, **config):
        self.now = T0
        self.log: list = []
        self.shard = TransactionShard(TxnConfig(**config))
        self.runner = ShardRunner(self.shard, lambda records, now: self.log.extend(records))

    def run(self, op, *args):
        res, _ = self.runner.execute(self.now, op, *args)
        return res.response

    def init(self, txn="t", timeout=60000, pid=-1, epoch=-1, new_pid=1000):
        return self.run(self.shard.init_producer_id, txn, timeout, pid, epoch, new_pid)

    def replayed(self) -> TransactionShard:
        fresh = TransactionShard(self.shard.config)
        r = ShardRunner(fresh, lambda records, now: None)
        for k, v in self.log:
            assert r.load(k, v, self.now)
        return fresh

    def state(self, txn="t") -> S:
        return self.shard.txns[txn].state


def test_records_are_kafkas_format():
    key = rec.txn_key("my-txn")
    assert key == struct.pack(">hh", 0, 6) + b"my-txn"
    v = TxnValue(7, 3, 60000, S.ONGOING, frozenset({("a", 1), ("a", 0), ("b", 2)}), 20, 10)
    raw = rec.txn_value(v)
    # version 0, producer id, epoch, timeout, status, then the partitions grouped by topic
    assert raw[:17] == struct.pack(">hqhib", 0, 7, 3, 60000, 1)
    assert raw[17:] == (struct.pack(">i", 2) + struct.pack(">h", 1) + b"a" + struct.pack(">iii", 2, 0, 1)
                        + struct.pack(">h", 1) + b"b" + struct.pack(">ii", 1, 2) + struct.pack(">qq", 20, 10))
    back = rec.decode_value(raw)
    assert back == v
    assert rec.decode_key(key) == "my-txn"
    empty = rec.txn_value(TxnValue(7, 3, 60000, S.EMPTY))
    assert empty[17:21] == struct.pack(">i", -1)  # null partitions in Empty, as Kafka writes


def test_partition_for_is_kafkas_hash():
    # Java: Math.abs("txn-1".hashCode()) % 50
    h = 0
    for ch in "txn-1":
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    h = h - (1 << 32) if h & 0x80000000 else h
    assert rec.partition_for("txn-1", 50) == abs(h) % 50


def test_commit_cycle():
    t = Harness()
    assert t.init() == {"error_code": 0, "producer_id": 1000, "producer_epoch": 0}
    assert t.state() == S.EMPTY
    assert t.run(t.shard.add_partitions, "t", 1000, 0, {("a", 0)}) == {"error_code": 0}
    assert t.state() == S.ONGOING and t.shard.txns["t"].start_ms == T0
    n = len(t.log)
    assert t.run(t.shard.add_partitions, "t", 1000, 0, {("a", 0)}) == {"error_code": 0}
    assert len(t.log) == n  # already in: nothing written
    t.now += 5
    t.run(t.shard.add_partitions, "t", 1000, 0, {("b", 1)})
    assert t.shard.txns["t"].partitions == {("a", 0), ("b", 1)}
    assert t.shard.txns["t"].start_ms == T0
    assert t.run(t.shard.end_txn, "t", 1000, 0, True) == {"error_code": 0}
    assert t.state() == S.PREPARE_COMMIT
    job = t.shard.markers["t"]
    assert job.commit and job.partitions == {("a", 0), ("b", 1)} and job.producer_epoch == 0
    # While the markers are written: retries and other requests
    assert t.run(t.shard.end_txn, "t", 1000, 0, True)["error_code"] == errors.CONCURRENT_TRANSACTIONS
    assert t.run(t.shard.end_txn, "t", 1000, 0, False)["error_code"] == errors.INVALID_TXN_STATE
    assert t.init(pid=1000, epoch=0)["error_code"] == errors.CONCURRENT_TRANSACTIONS
    assert t.run(t.shard.add_partitions, "t", 1000, 0, {("c", 0)})["error_code"] == errors.CONCURRENT_TRANSACTIONS
    t.run(t.shard.complete, job)
    assert t.state() == S.COMPLETE_COMMIT and not t.shard.markers
    assert t.shard.txns["t"].partitions == frozenset()
    assert t.run(t.shard.end_txn, "t", 1000, 0, True) == {"error_code": 0}  # a retry after completion
    # The next transaction starts from CompleteCommit
    t.run(t.shard.add_partitions, "t", 1000, 0, {("a", 0)})
    assert t.state() == S.ONGOING


def test_errors_of_unknown_and_stale_producers():
    t = Harness()
    assert t.run(t.shard.add_partitions, "nope", 1, 0, {("a", 0)})["error_code"] == errors.INVALID_PRODUCER_ID_MAPPING
    t.init()
    assert t.run(t.shard.add_partitions, "t", 999, 0, {("a", 0)})["error_code"] == errors.INVALID_PRODUCER_ID_MAPPING
    assert t.run(t.shard.end_txn, "t", 1000, 0, True)["error_code"] == errors.INVALID_TXN_STATE  # Empty
    t.init(pid=1000, epoch=0)
    assert t.shard.txns["t"].producer_epoch == 1
    assert t.run(t.shard.add_partitions, "t", 1000, 0, {("a", 0)})["error_code"] == errors.PRODUCER_FENCED
    assert t.init(timeout=0)["error_code"] == errors.INVALID_TRANSACTION_TIMEOUT
    assert t.init(timeout=900001)["error_code"] == errors.INVALID_TRANSACTION_TIMEOUT
    # KIP-360: an unknown epoch is fenced; a retry of the last bump gets the same answer
    assert t.init(pid=1000, epoch=7)["error_code"] == errors.PRODUCER_FENCED
    assert t.init(pid=1000, epoch=0) == {"error_code": 0, "producer_id": 1000, "producer_epoch": 1}
    # a new id needed and none given: retriable
    assert t.init(txn="other", new_pid=None)["error_code"] == errors.CONCURRENT_TRANSACTIONS
    assert "other" not in t.shard.txns


def test_fencing_aborts_the_open_transaction_with_a_bumped_epoch():
    t = Harness()
    t.init()
    t.run(t.shard.add_partitions, "t", 1000, 0, {("a", 0)})
    # A second producer with the same transactional id
    assert t.init()["error_code"] == errors.CONCURRENT_TRANSACTIONS
    m = t.shard.txns["t"]
    assert (m.state, m.producer_epoch) == (S.PREPARE_ABORT, 1)
    job = t.shard.markers["t"]
    assert not job.commit and job.producer_epoch == 1  # the markers fence epoch 0
    # The zombie is fenced
    assert t.run(t.shard.end_txn, "t", 1000, 0, True)["error_code"] == errors.PRODUCER_FENCED
    assert t.init()["error_code"] == errors.CONCURRENT_TRANSACTIONS  # until the abort completes
    t.run(t.shard.complete, job)
    assert t.state() == S.COMPLETE_ABORT
    assert t.init() == {"error_code": 0, "producer_id": 1000, "producer_epoch": 2}


def test_timeout_aborts_and_expiry_removes_idle_ids():
    t = Harness(id_expiration_ms=3_600_000)
    t.init(timeout=1000)
    t.run(t.shard.add_partitions, "t", 1000, 0, {("a", 0)})
    assert t.shard.next_deadline() == T0 + 1000
    t.now += 999
    t.runner.tick(t.now)
    assert t.state() == S.ONGOING
    t.now += 1
    t.runner.tick(t.now)
    assert t.state() == S.PREPARE_ABORT and t.shard.txns["t"].producer_epoch == 1
    assert t.shard.next_deadline() is None  # a Prepare state waits for its markers, not the clock
    t.run(t.shard.complete, t.shard.markers["t"])
    assert t.shard.next_deadline() == t.now + 3_600_000
    t.now += 3_600_000
    t.runner.tick(t.now)
    assert "t" not in t.shard.txns
    assert t.log[-1] == (rec.txn_key("t"), None)
    assert t.init(new_pid=2000) == {"error_code": 0, "producer_id": 2000, "producer_epoch": 0}


def test_epoch_exhaustion_takes_a_new_producer_id():
    t = Harness()
    t.init()
    m = t.shard.txns["t"]
    t.log.append((rec.txn_key("t"), rec.txn_value(m.value(producer_epoch=EPOCH_MAX - 1))))
    t.shard.replay(*t.log[-1], t.now)
    assert t.shard.needs_producer_id("t")
    assert t.init(new_pid=None)["error_code"] == errors.CONCURRENT_TRANSACTIONS
    assert t.init(new_pid=3000) == {"error_code": 0, "producer_id": 3000, "producer_epoch": 0}
    assert t.shard.txns["t"].previous_producer_id == 1000


def test_verification_of_transactional_writes():
    t = Harness()
    t.init()
    assert t.shard.verify("t", 1000, 0, ("a", 0)) == errors.INVALID_TXN_STATE
    t.run(t.shard.add_partitions, "t", 1000, 0, {("a", 0)})
    assert t.shard.verify("t", 1000, 0, ("a", 0)) == 0
    assert t.shard.verify("t", 1000, 0, ("a", 1)) == errors.INVALID_TXN_STATE
    assert t.shard.verify("t", 1000, 1, ("a", 0)) == errors.PRODUCER_FENCED
    assert t.shard.verify("t", 5, 0, ("a", 0)) == errors.INVALID_PRODUCER_ID_MAPPING
    t.run(t.shard.end_txn, "t", 1000, 0, False)
    assert t.shard.verify("t", 1000, 0, ("a", 0)) == errors.CONCURRENT_TRANSACTIONS


def test_replay_rebuilds_equal_state_and_owed_markers():
    t = Harness()
    for i, txn in enumerate(["a", "b", "c"]):
        t.init(txn=txn, new_pid=100 + i)
        t.run(t.shard.add_partitions, txn, 100 + i, 0, {("x", i)})
    t.run(t.shard.end_txn, "a", 100, 0, True)
    t.run(t.shard.complete, t.shard.markers["a"])
    t.run(t.shard.end_txn, "b", 101, 0, False)  # the broker 'stops' before b's markers
    fresh = t.replayed()
    assert fresh.durable_view() == t.shard.durable_view()
    assert fresh.markers == t.shard.markers == {"b": t.shard.markers["b"]}
    assert fresh.txns["c"].state == S.ONGOING


def test_a_failed_append_changes_nothing():
    t = Harness()
    t.init()
    before = t.shard.durable_view()

    def fail(records, now):
        raise OSError("disk full")

    t.runner.write = fail
    res, _ = t.runner.execute(t.now, t.shard.add_partitions, "t", 1000, 0, {("a", 0)})
    assert res.response["error_code"] == errors.COORDINATOR_NOT_AVAILABLE
    assert t.shard.durable_view() == before


@pytest.mark.parametrize("state", list(S))
def test_transition_table_is_kafkas(state):
    # Every state can be reached from somewhere, and only Ongoing can be prepared.
    assert TRANSITIONS[state]
    if state in (S.PREPARE_COMMIT, S.PREPARE_EPOCH_FENCE):
        assert TRANSITIONS[state] == {S.ONGOING}
