"""When a broker writes producer snapshots (``odradek.producers``): as Kafka
does, when a partition's log rolls a segment (as of the new segment's base
offset, after the rolled segment's fsync) and at clean shutdown; never at the
periodic offset checkpoint. Tested on a broker over the fake filesystem,
driven through the wire protocol, crashed (kill and power loss) and
restarted: the rebuilt table is the one the log replays to, and duplicates
are still answered with their first offsets."""

from __future__ import annotations

import asyncio
import os

import pytest

from odradek.producers import SNAPSHOT_NAME, ProducerStateTable, decode_snapshot
from odradek.protocol.records import build_batch
from odradek.scheduler import Housekeeping
from odradek.storage.fs import FakeFileSystem
from tests.unit.test_broker_invariants import DATA, Client, new_broker

OUT_OF_ORDER_SEQUENCE_NUMBER = 45


async def init_producer(c: Client) -> int:
    res = await c.request("InitProducerId", 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                                "producer_id": -1, "producer_epoch": -1})
    assert res["error_code"] == 0 and res["producer_epoch"] == 0
    return res["producer_id"]


def batch(pid: int, seq: int, n: int = 1) -> bytes:
    return build_batch([(b"k", b"v%06d" % (seq + i) * 10, [], 1000) for i in range(n)],
                       producer_id=pid, producer_epoch=0, base_sequence=seq)


async def produce(c: Client, topic: str, partition: int, records: bytes) -> tuple[int, int]:
    res = await c.request("Produce", 9, {"acks": -1, "timeout_ms": 5000, "topic_data": [
        {"name": topic, "partition_data": [{"index": partition, "records": records}]}]})
    r = res["responses"][0]["partition_responses"][0]
    return r["error_code"], r["base_offset"]


def snapshot_files(fs: FakeFileSystem) -> dict[str, int]:
    """{log directory: offset} of every producer snapshot under the data directory."""
    out = {}
    for d in fs.listdir(DATA):
        path = os.path.join(DATA, d, SNAPSHOT_NAME)
        if fs.isdir(os.path.join(DATA, d)) and fs.exists(path):
            out[d] = decode_snapshot(fs.read_file(path))[0]
    return out


def table_state(t: ProducerStateTable) -> dict:
    return {pid: (e.epoch, list(e.batches), e.last_timestamp) for pid, e in t.producers.items()}


def test_a_checkpoint_writes_no_producer_snapshot_and_a_clean_shutdown_writes_all(tmp_path):
    """300 partitions that each got an idempotent batch: the offset checkpoint
    writes its checkpoint files and no producer snapshot (before, one fsynced
    file each); the clean shutdown writes one per partition at its log end."""
    fs = FakeFileSystem()
    n = 300

    async def main():
        b = new_broker(fs, tmp_path / "metadata.db")
        await b.start()
        c = await Client.connect(b)
        try:
            await c.create_topic("many", n)
            pid = await init_producer(c)
            for i in range(n):
                assert await produce(c, "many", i, batch(pid, 0)) == (0, 0)
            before = fs.counts["rename"]
            await Housekeeping(b.config, b.replicas).checkpoint()
            assert fs.counts["rename"] > before  # the offset checkpoints were written
            assert snapshot_files(fs) == {}
        finally:
            await c.close()
            await b.stop()

    asyncio.run(main())
    assert snapshot_files(fs) == {f"many-{i}": 1 for i in range(n)}


def _rolling_topic_run(fs: FakeFileSystem, metadata) -> dict:
    """Two idempotent producers write to a partition whose segments roll every
    ~2 KiB; returns what the crash test checks, with the broker left running
    (not stopped: the caller crashes the filesystem under it)."""
    out: dict = {}

    async def main():
        b = new_broker(fs, metadata)
        await b.start()
        c = await Client.connect(b)
        await c.create_topic("roll", 1, {"internal.segment.bytes": "2048"})
        pids = [await init_producer(c), await init_producer(c)]
        sent = []  # (pid, seq, records, offset)
        for k in range(60):
            pid = pids[k % 2]
            seq = sum(1 for s in sent if s[0] == pid) * 2
            records = batch(pid, seq, 2)
            code, offset = await produce(c, "roll", 0, records)
            assert code == 0
            sent.append((pid, seq, records, offset))
        await b.replicas.wait_for_flushes()  # the rolls' flushes, and their snapshots
        p = b.replicas.partition_or_error("roll", 0)[0]
        out["bases"] = p.log.segment_base_offsets()
        out["end"] = p.log.log_end_offset
        out["table"] = table_state(p.producers)
        out["sent"] = sent
        out["pids"] = pids
        out["snapshots"] = snapshot_files(fs)
        # What a kill leaves is the live state: no stop, no shutdown snapshot.
        await c.close()
        b.replicas.store = b.store = None  # stop() must not close (and snapshot) the logs
        await b.stop()

    asyncio.run(main())
    return out


@pytest.mark.parametrize("crash", ["kill", "power"])
def test_a_roll_snapshots_at_the_new_segment_and_a_crash_rebuilds_the_same_table(tmp_path, crash):
    fs = FakeFileSystem()
    run = _rolling_topic_run(fs, tmp_path / "metadata.db")
    bases, end = run["bases"], run["end"]
    assert len(bases) >= 5, bases  # it rolled
    # One snapshot, as of the newest segment's base offset (Kafka's <base>.snapshot).
    assert run["snapshots"] == {"roll-0": bases[-1]}
    assert bases[-1] < end
    fs.crash(crash)

    async def restart():
        b = new_broker(fs, tmp_path / "metadata.db")
        await b.start()
        c = await Client.connect(b)
        try:
            p = b.replicas.partition_or_error("roll", 0)[0]
            t = p.producers
            # Rebuilt from the snapshot at the last roll: only the active segment replayed.
            assert t.rebuild_stats["snapshot_offset"] == bases[-1], t.rebuild_stats
            assert t.rebuild_stats["from_offset"] == bases[-1]
            kept = p.log.log_end_offset
            if crash == "kill":
                assert kept == end and table_state(t) == run["table"]
            else:  # what was fsynced: the rolled segments at least
                assert bases[-1] <= kept <= end
            replay = ProducerStateTable()  # the log replayed from its start, without a snapshot
            for h in p.log.iter_headers(p.log.log_start_offset):
                if h.producer_id >= 0 and h.base_sequence >= 0 and not h.is_control:
                    replay.record(h, h.base_offset)
            assert table_state(t) == table_state(replay)
            # Every batch the log kept that is still cached is a duplicate, answered
            # with its first offset and not written again; a gap is refused.
            kept_sent = [s for s in run["sent"] if s[3] < kept]
            for pid, seq, records, offset in kept_sent[-6:]:
                assert await produce(c, "roll", 0, records) == (0, offset)
            assert p.log.log_end_offset == kept
            last = max(s[1] for s in kept_sent if s[0] == run["pids"][0])
            code, _ = await produce(c, "roll", 0, batch(run["pids"][0], last + 6))
            assert code == OUT_OF_ORDER_SEQUENCE_NUMBER
            code, offset = await produce(c, "roll", 0, batch(run["pids"][0], last + 2))
            assert (code, offset) == (0, kept)
        finally:
            await c.close()
            await b.stop()

    asyncio.run(restart())


def test_a_follower_roll_and_a_segment_ms_roll_snapshot_as_of_the_new_segment():
    """The partition layer, without a broker: a follower's appends that roll
    (a 1 KiB segment holds four batches) and a roll by segment.ms at a
    retention check each leave the snapshot as of the new segment's base for
    the flush they schedule; the table it holds is the one before that base."""
    from odradek.config import BrokerConfig, TopicConfig
    from odradek.metadata.topics import PartitionState
    from odradek.producers import write_snapshot
    from odradek.protocol.batch import set_base_offset
    from odradek.replica.partition import Partition, Topic
    from odradek.storage.memory import MemoryLogStore

    store = MemoryLogStore(auto_high_watermark=False)
    topic = Topic("t", b"\x01" * 16, TopicConfig(BrokerConfig(), {"internal.segment.bytes": "1024",
                                                                   "segment.ms": "60000"}))
    flushes = []
    p = Partition(topic, 0, store.open_log("t", 0, topic.config.log_config()), 2, flushes.append)
    p.apply_state(PartitionState(1, 0, [1, 2], [1, 2], revision=5), 1000)
    assert not p.is_leader
    seen = []
    for seq in range(0, 80, 2):
        records = bytearray(batch(7, seq, 2))
        set_base_offset(records, 0, p.log_end_offset)
        p.append_as_follower(records, 1000)
        if p.pending_snapshot is not None:
            offset, _, producers = decode_snapshot(p.pending_snapshot)
            assert offset == p.log.segment_base_offsets()[-1] == p.log_end_offset - 2
            assert producers[7].batches[-1][3] == offset - 1  # its last batch ends just before
            seen.append(offset)
            assert flushes[-1] is p  # the roll's flush writes it
            assert write_snapshot(p.log, p.pending_snapshot)
            p.pending_snapshot = None
    assert len(seen) >= 3 and seen == p.log.segment_base_offsets()[1:]
    end = p.log_end_offset
    flushes.clear()
    p.apply_retention(1000 + 120_000)  # the active segment is older than segment.ms: it rolls
    assert p.log.segment_base_offsets()[-1] == end and flushes == [p]
    offset, _, producers = decode_snapshot(p.pending_snapshot)
    assert offset == end and producers[7].batches[-1][3] == end - 1
