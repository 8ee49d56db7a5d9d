"""The aborted-transaction index as Kafka lays it out: ``.txnindex`` per
segment, written at each abort marker, used for read_committed lookups,
rebuilt by recovery (kill, power loss, torn or missing files), and kept
through retention, truncation and compaction (through the filesystem seam)."""

from __future__ import annotations

import random
import struct

import pytest

from odradek.producers import ProducerStateTable
from odradek.storage.cleaner import CompactionConfig, clean_log
from odradek.txn_state import AbortedTxn
from tests.unit.test_txn_partition import Env

DIR = "/data/t-0"
ENTRY = struct.Struct(">hqqqq")


def txn_files(e) -> dict[str, bytes]:
    return {n: e.fs.read_file(f"{DIR}/{n}") for n in e.fs.listdir(DIR) if n.endswith(".txnindex")}


def entries(raw: bytes) -> list[AbortedTxn]:
    out = []
    for pos in range(0, len(raw) - ENTRY.size + 1, ENTRY.size):
        v, *a = ENTRY.unpack_from(raw, pos)
        assert v == 0
        out.append(AbortedTxn(*a))
    return out


def workload(e, n=30, seed=1):
    """Interleaved transactions of three producers, some aborted, some left
    open at the end; returns the aborted transactions as the in-memory
    index (the reference) has them."""
    rnd = random.Random(seed)
    open_ = set()
    for _ in range(n):
        pid = rnd.choice([7, 8, 9])
        if pid in open_ and rnd.random() < 0.5:
            e.marker(pid, commit=rnd.random() < 0.5)
            open_.discard(pid)
        else:
            e.write(pid, n=rnd.randint(1, 3))
            open_.add(pid)
        if rnd.random() < 0.2:
            e.plain()
    return list(e.p.producers.txns.aborted)


def test_layout_is_kafkas_abortedtxn():
    e = Env()
    e.plain()  # 0
    e.write(7, n=2)  # 1-2
    e.write(8)  # 3
    e.marker(8, commit=True)  # 4: a commit is not indexed
    assert txn_files(e) == {}
    e.marker(7, commit=False)  # 5
    raw = txn_files(e)["00000000000000000000.txnindex"]
    # version 0, producer id 7, first offset 1, last offset 5 (the marker), LSO 6
    assert raw == struct.pack(">hqqqq", 0, 7, 1, 5, 6)
    assert len(raw) == 34


def test_lookups_follow_the_overlap_rule():
    e = Env()
    aborted = workload(e, n=60)
    assert aborted  # the workload aborted something
    p = e.p
    lso = p.last_stable_offset
    for start in range(p.log_end_offset):
        if start >= lso:
            break
        got = p.read_committed(start, 1 << 20)[1]
        want = p.producers.txns.aborted_between(start, lso)
        assert got == want, start
    on_disk = [a for raw in txn_files(e).values() for a in entries(raw)]
    assert sorted(on_disk, key=lambda a: a.last_offset) == aborted


def small_segments(e):
    from odradek.storage.base import LogConfig
    e.fs_config = LogConfig(segment_bytes=400)
    e.store.close()
    from odradek.storage.disk import DiskLogStore
    e.store = DiskLogStore("/data", e.fs)

    def open_():
        from odradek.config import BrokerConfig, TopicConfig
        from odradek.metadata.topics import PartitionState
        from odradek.replica.partition import Partition, Topic
        e.topic = Topic("t", b"\x01" * 16, TopicConfig(BrokerConfig()))
        log = e.store.open_log("t", 0, e.fs_config)
        e.p = Partition(e.topic, 0, log, 1, lambda p: None)
        e.p.rebuild_producers()
        e.p.apply_state(PartitionState(1, 0, [1], [1]), e.now)
        return e.p

    e.open = open_
    return open_()


@pytest.mark.parametrize("how", ["clean", "kill", "power", "power-after-flush", "missing",
                                 "torn", "torn-below-recovery-point"])
def test_index_rebuilt_by_recovery(how):
    e = Env()
    small_segments(e)
    aborted = workload(e, n=80, seed=3)
    assert len(e.p.log.segment_base_offsets()) > 2 and len(aborted) >= 2
    if how in ("power-after-flush", "torn-below-recovery-point"):
        e.p.log.flush()
        e.store.write_checkpoints()
    files = txn_files(e)
    assert files
    if how == "clean":
        p = e.restart()
    elif how in ("kill", "power", "power-after-flush"):
        p = e.restart("kill" if how == "kill" else "power")
    else:
        name = sorted(files)[0]
        path = f"{DIR}/{name}"
        h = e.fs.open(path)
        e.fs.truncate(h, 0 if how == "missing" else len(files[name]) - 10)
        e.fs.close(h)
        if how == "missing":
            e.fs.remove(path)
        p = e.restart("kill")
    want = [a for a in aborted if a.last_offset < p.log_end_offset]
    on_disk = [a for raw in txn_files(e).values() for a in entries(raw)]
    if how != "missing" or not p.log.recovery_point:
        assert sorted(on_disk, key=lambda a: a.last_offset) == want
    lso = p.last_stable_offset
    for start in range(0, lso, 3):
        assert p.read_committed(start, 1 << 20)[1] == p.producers.txns.aborted_between(start, lso)


def test_retention_and_truncation():
    e = Env()
    small_segments(e)
    aborted = workload(e, n=80, seed=5)
    log = e.p.log
    bases = log.segment_base_offsets()
    # Retention (DeleteRecords) deletes whole segments with their .txnindex.
    log.delete_records_before(bases[2])
    names = {n[:20] for n in txn_files(e)}
    assert all(int(n) >= bases[2] for n in names)
    # Truncation drops the entries of markers it removes.
    last = aborted[-1]
    e.p.truncate_to(last.last_offset)
    on_disk = [a for raw in txn_files(e).values() for a in entries(raw)]
    assert last not in on_disk
    assert all(a.last_offset < last.last_offset for a in on_disk)


def test_compaction_keeps_the_entries_of_kept_markers():
    from odradek.storage.base import LogConfig
    from odradek.storage.disk import DiskLogStore
    from odradek.storage.fs import FakeFileSystem
    from odradek.protocol.records import build_batch, build_control_batch

    fs = FakeFileSystem()
    store = DiskLogStore("/data", fs)
    lg = store.open_log("t", 0, LogConfig(segment_bytes=600, cleanup_policy="compact"))
    table = ProducerStateTable()

    def append(b):
        info = lg.append(bytearray(b), 0, 5000)
        lg.set_high_watermark(info.last_offset + 1)
        return info.base_offset

    def txn(pid, k, v, seq):
        b = build_batch([(k, v, [], 1000)], transactional=True, producer_id=pid,
                        producer_epoch=0, base_sequence=seq)
        from odradek.protocol.batch import read_header
        off = append(b)
        table.record(read_header(b), off)

    def marker(pid, commit):
        off = append(build_control_batch(1 if commit else 0, pid, 0, 0, 1000))
        a = table.record_marker(pid, 0, off, commit)
        if a is not None:
            lg.append_aborted(a)
        return a

    txn(8, b"b", b"aborted", 0)
    a = marker(8, False)
    for i in range(60):
        append(build_batch([(b"k", b"v%d" % i, [], 1000)]))
    c = CompactionConfig(min_cleanable_ratio=0.0, segment_bytes=600, delete_retention_ms=10**9)
    kw = dict(producer_batches=set(), producer_markers={}, aborted=lg.aborted_between(0, 1 << 62))
    clean_log(lg, c, 10**12, **kw)
    # The data was walked (and removed): the marker and its entry stay.
    assert [x for raw in fs_txn(fs).values() for x in entries(raw)] == [a]
    assert lg.aborted_between(0, 1 << 62) == [a]
    kw["aborted"] = lg.aborted_between(0, 1 << 62)
    clean_log(lg, c, 10**12, force=True, **kw)
    # Its data is gone: the cleaned segment holds no entry any more.
    assert fs_txn(fs) == {} and lg.aborted_between(0, 1 << 62) == []
    lg = DiskLogStore("/data", fs).open_log("t", 0, LogConfig(segment_bytes=600,
                                                                cleanup_policy="compact"))
    assert lg.aborted_between(0, 1 << 62) == []


def fs_txn(fs):
    return {n: fs.read_file(f"{DIR}/{n}") for n in fs.listdir(DIR)
            if n.endswith(".txnindex") and fs.read_file(f"{DIR}/{n}")}


def test_dump_log_shows_the_txnindex(tmp_path):
    import json

    from click.testing import CliRunner

    from odradek.cli.main import main

    seg = tmp_path / "00000000000000000000.log"
    seg.write_bytes(b"")
    (tmp_path / "00000000000000000000.txnindex").write_bytes(
        ENTRY.pack(0, 7, 1, 5, 6) + ENTRY.pack(0, 9, 3, 8, 9))
    res = CliRunner().invoke(main, ["dump-log", str(seg)])
    assert res.exit_code == 0, res.output
    assert "producerId: 7 firstOffset: 1 lastOffset: 5 lastStableOffset: 6" in res.output.replace("  ", " ")
    res = CliRunner().invoke(main, ["dump-log", str(seg), "--json"])
    docs = [json.loads(l) for l in res.output.splitlines() if l.strip()]
    assert [d["aborted_txn"]["producer_id"] for d in docs if "aborted_txn" in d] == [7, 9]
