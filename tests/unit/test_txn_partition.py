"""A partition's transactions: the last stable offset, the aborted-transaction
index, markers, and their rebuild after a restart or a crash (through the
filesystem seam)."""

from __future__ import annotations

import struct

import pytest
from crc32c import crc32c

from odradek.config import BrokerConfig, TopicConfig
from odradek.metadata.topics import PartitionState
from odradek.producers import ProducerStateTable, decode_snapshot_txns, encode_snapshot, write_snapshot
from odradek.protocol import errors
from odradek.protocol.batch import iter_batches, read_header
from odradek.protocol.records import CONTROL_ABORT, build_batch, decode_batch, \
    decode_control_key, decode_end_txn_marker
from odradek.replica.partition import Partition, Topic
from odradek.storage.base import LogConfig
from odradek.storage.disk import DiskLogStore
from odradek.storage.fs import FakeFileSystem
from odradek.txn_state import AbortedTxn, TxnIndex


class Env:
    """Partition ``t-0`` on a fake filesystem, restartable."""

    def __init__(self):
        self.fs = FakeFileSystem()
        self.store = DiskLogStore("/data", self.fs)
        self.seq: dict[int, int] = {}
        self.now = 5000
        self.open()

    def open(self):
        self.topic = Topic("t", b"\x01" * 16, TopicConfig(BrokerConfig()))
        log = self.store.open_log("t", 0, LogConfig())
        self.p = Partition(self.topic, 0, log, 1, lambda p: None)
        self.p.rebuild_producers()
        self.p.apply_state(PartitionState(1, 0, [1], [1]), self.now)  # the leader, alone in the ISR
        return self.p

    def write(self, pid, n=1, epoch=0, txn=True) -> int:
        seq = self.seq.get(pid, 0)
        b = bytearray(build_batch([(b"k", b"v%d" % i, [], 1000) for i in range(n)], producer_id=pid,
                                  producer_epoch=epoch, base_sequence=seq, transactional=txn))
        h = read_header(b)
        assert self.p.check_producer(h) == (0, None)
        self.seq[pid] = seq + n
        return self.p.append_as_leader(b, self.now, producer_batch=h).base_offset

    def plain(self) -> int:
        return self.p.append_as_leader(bytearray(build_batch([(b"k", b"p", [], 1000)])), self.now).base_offset

    def marker(self, pid, commit, epoch=0) -> int:
        end = self.p.log_end_offset
        assert self.p.append_marker(pid, epoch, 3, commit, self.now) == 0
        return end

    def restart(self, crash=None):
        if crash:
            self.fs.crash(crash)
        else:
            self.store.close()
        self.store = DiskLogStore("/data", self.fs)
        return self.open()


def test_index_overlap_rule():
    idx = TxnIndex()
    idx.begin(1, 0)
    idx.begin(2, 3)
    assert idx.last_stable_offset(10) == 0
    assert idx.end(1, 5, commit=False) == AbortedTxn(1, 0, 5, 3)
    assert idx.last_stable_offset(10) == 3
    idx.begin(1, 6)
    idx.end(2, 8, commit=True)
    idx.end(1, 9, commit=False)
    assert idx.last_stable_offset(10) == 10
    assert idx.aborted == [AbortedTxn(1, 0, 5, 3), AbortedTxn(1, 6, 9, 10)]
    # a transaction that ended before the fetch offset is not listed
    assert idx.aborted_between(6, 10) == [AbortedTxn(1, 6, 9, 10)]
    assert idx.aborted_between(5, 10) == idx.aborted
    # nor one that starts at or after the end of what was read
    assert idx.aborted_between(0, 6) == [AbortedTxn(1, 0, 5, 3)]
    idx.prune(6)
    assert idx.aborted == [AbortedTxn(1, 6, 9, 10)]


def test_lso_waits_for_the_marker_below_the_high_watermark():
    # With replication, a marker above the high watermark may be lost with
    # its leader: the transaction stays unstable until the marker is below it.
    idx = TxnIndex()
    idx.begin(1, 10)
    idx.end(1, 12, commit=True)
    assert idx.last_stable_offset(12) == 10  # the marker (12) is not below the HW
    assert idx.last_stable_offset(13) == 13
    assert idx.unreplicated == []


def test_lso_read_committed_and_markers():
    e = Env()
    p = e.p
    assert e.plain() == 0
    assert e.write(7, n=2) == 1  # open transaction of 7 at 1
    assert e.write(8) == 3  # and of 8 at 3
    e.plain()  # 4
    assert p.high_watermark == 5 and p.last_stable_offset == 1
    res, aborted = p.read_committed(0, 1 << 20)
    assert [h.base_offset for c in res.chunks for _, h in iter_batches(bytes(c))] == [0]
    assert aborted == []
    assert e.marker(7, commit=False) == 5
    assert p.last_stable_offset == 3
    e.write(7, n=1)  # 6: a second transaction of 7
    assert e.marker(8, commit=True) == 7
    assert p.last_stable_offset == 6
    assert e.marker(7, commit=True) == 8
    assert p.last_stable_offset == p.high_watermark == 9
    res, aborted = p.read_committed(0, 1 << 20)
    assert aborted == [AbortedTxn(7, 1, 5, 3)]
    assert p.read_committed(6, 1 << 20)[1] == []  # the abort ended before 6
    # the markers are Kafka's control batches
    buf = b"".join(bytes(c) for c in p.read_for_consumer(5, 1 << 20).chunks)
    _, h = next(iter_batches(buf))
    assert h.is_control and h.is_transactional and h.producer_id == 7
    recs = decode_batch(buf, 0)[1]
    assert decode_control_key(recs[0].key).type == CONTROL_ABORT
    assert decode_end_txn_marker(recs[0].value).coordinator_epoch == 3


def test_markers_fence_and_are_not_written_twice():
    e = Env()
    p = e.p
    e.write(7)
    e.marker(7, commit=False, epoch=1)  # a fencing abort: epoch bumped
    old = read_header(bytearray(build_batch([(b"k", b"z", [], 1)], producer_id=7, producer_epoch=0,
                                            base_sequence=1, transactional=True)))
    assert p.check_producer(old)[0] == errors.INVALID_PRODUCER_EPOCH
    assert p.append_marker(7, 0, 3, True, e.now) == errors.INVALID_PRODUCER_EPOCH
    end = p.log_end_offset
    assert p.append_marker(7, 1, 3, False, e.now) == 0  # sent again: nothing to end
    assert p.log_end_offset == end


@pytest.mark.parametrize("how", ["clean", "kill", "power-after-flush", "no-snapshot"])
def test_transactions_survive_restart(how):
    e = Env()
    e.plain()
    e.write(7, n=2)  # 1-2
    e.write(8)  # 3
    e.marker(7, commit=False)  # 4
    e.write(9)  # 5, left open
    e.marker(8, commit=True)  # 6
    before = (dict(e.p.producers.txns.ongoing), list(e.p.producers.txns.aborted), e.p.last_stable_offset)
    assert before == ({9: 5}, [AbortedTxn(7, 1, 4, 3)], 5)
    if how == "clean":
        write_snapshot(e.p.log, e.p.producers.snapshot(e.p.log, force=True))
        p = e.restart()
        assert p.producers.rebuild_stats["snapshot_offset"] == 7
    elif how == "kill":
        p = e.restart("kill")
    elif how == "power-after-flush":
        e.p.log.flush()
        p = e.restart("power")
    else:
        p = e.restart()
        assert p.producers.rebuild_stats["snapshot_offset"] is None
    after = (dict(p.producers.txns.ongoing), list(p.producers.txns.aborted), p.last_stable_offset)
    assert after == before
    e.marker(9, commit=False)
    assert p.last_stable_offset == p.high_watermark
    assert [a.producer_id for a in p.read_committed(0, 1 << 20)[1]] == [7, 9]


def test_snapshot_after_part_of_the_log():
    e = Env()
    e.write(7)  # 0
    write_snapshot(e.p.log, e.p.producers.snapshot(e.p.log, force=True))
    e.marker(7, commit=False)  # 1: after the snapshot, replayed from the log
    e.write(8)  # 2
    p = e.restart()
    assert p.producers.rebuild_stats["snapshot_offset"] == 1
    assert p.producers.txns.aborted == [AbortedTxn(7, 0, 1, 2)]
    assert p.producers.txns.ongoing == {8: 2}


def test_snapshot_format_versions():
    table = ProducerStateTable()
    table.txns.begin(5, 10)
    table.txns.aborted.append(AbortedTxn(4, 1, 3, 2))
    data = encode_snapshot(table.producers, 12, txns=table.txns)
    offset, _, producers, txns = decode_snapshot_txns(data)
    assert (offset, producers, txns) == (12, {}, table.txns)
    # version 1 (no transactions) is still read
    v1 = bytearray(data[:-4])
    struct.pack_into(">h", v1, 4, 1)
    v1 = v1[:-(4 + 16 + 4 + 32)]  # drop the transaction sections
    v1 += struct.pack(">I", crc32c(bytes(v1)))
    offset, _, producers, txns = decode_snapshot_txns(bytes(v1))
    assert offset == 12 and txns == TxnIndex()


@pytest.mark.parametrize("snapshot", [True, False])
def test_markers_of_an_older_coordinator_are_fenced(snapshot):
    e = Env()
    e.write(7)
    assert e.p.append_marker(7, 0, 5, True, e.now) == 0  # coordinator epoch 5
    e.write(7)
    assert e.p.append_marker(7, 0, 4, False, e.now) == errors.TRANSACTION_COORDINATOR_FENCED
    if snapshot:
        write_snapshot(e.p.log, e.p.producers.snapshot(e.p.log, force=True))
    p = e.restart()
    assert p.append_marker(7, 0, 4, False, e.now) == errors.TRANSACTION_COORDINATOR_FENCED
    assert p.describe_producers()[0]["coordinator_epoch"] == 5
    assert p.append_marker(7, 0, 5, False, e.now) == 0
    assert p.last_stable_offset == p.high_watermark


def test_a_follower_records_the_leaders_transactions():
    leader = Env()
    leader.write(7, n=2)  # 0-1
    leader.marker(7, commit=False)  # 2
    leader.write(8)  # 3, open
    buf = bytearray(b"".join(bytes(c) for c in leader.p.read_for_replica(0, 1 << 20).chunks))
    follower = Env()
    follower.p.apply_state(PartitionState(2, 1, [2, 1], [2, 1]), follower.now)  # led by broker 2
    follower.p.append_as_follower(buf, follower.now)
    follower.p.follow_high_watermark(4)
    assert follower.p.producers.txns == leader.p.producers.txns
    assert follower.p.last_stable_offset == 3
    assert follower.p.append_marker(8, 0, 0, True, follower.now) == errors.NOT_LEADER_OR_FOLLOWER
