"""The share coordinator's state machine (odradek/coordinator/share_state.py):
snapshots in Kafka's ShareSnapshot format, replayed into the same states."""

from __future__ import annotations

import struct

from odradek.coordinator import share_state as ss
from odradek.coordinator.runtime import ShardRunner
from odradek.protocol.schema import codec
from odradek.share.partition import ACCEPT, RELEASE, SharePartition

KEY = ("g", b"T" * 16, 3)


def run() -> tuple[ss.ShareStateShard, ShardRunner, list]:
    log = []
    shard = ss.ShareStateShard()
    return shard, ShardRunner(shard, lambda records, now: log.extend(records)), log


def replayed(log) -> ss.ShareStateShard:
    shard = ss.ShareStateShard()
    for k, v in log:
        shard.replay(k, v, 0)
    return shard


def test_snapshots_round_trip_a_share_partition():
    sp = SharePartition(0)
    sp.acquire("a", [(0, 9)], 0)
    sp.acknowledge("a", [(0, 9, [ACCEPT, ACCEPT, RELEASE, ACCEPT] + [RELEASE] * 6)], 0)
    shard, runner, log = run()
    runner.apply(shard.write(100, KEY, 4, sp.start, sp.state_batches()), 100)
    assert struct.unpack(">h", log[0][0][:2])[0] == 0  # ShareSnapshotKey
    assert shard.read(KEY) == (2, [(2, 2, 0, 1), (3, 3, 2, 1), (4, 9, 0, 1)])
    again = SharePartition.restore(*shard.read(KEY))
    assert again.state_batches() == sp.state_batches()
    runner.apply(shard.write(200, KEY, 4, 4, []), 200)
    value = replayed(log).states[KEY]
    assert (value["snapshot_epoch"], value["create_timestamp"], value["write_timestamp"]) == (1, 100, 200)
    assert replayed(log).states == shard.states
    runner.apply(shard.delete(300, [KEY]), 300)
    assert log[-1][1] is None and shard.read(KEY) is None and replayed(log).states == {}


def test_kafka_update_records_are_applied_over_the_snapshot():
    shard, runner, log = run()
    runner.apply(shard.write(0, KEY, 1, 10, [(10, 19, 0, 1)]), 0)
    key = bytearray(struct.pack(">h", 1))
    codec("ShareUpdateKey", 0).encode({"group_id": KEY[0], "topic_id": KEY[1], "partition": KEY[2]}, key)
    value = bytearray(struct.pack(">h", 0))
    codec("ShareUpdateValue", 0).encode({"snapshot_epoch": 0, "leader_epoch": 2, "start_offset": 12,
                                         "state_batches": [{"first_offset": 15, "last_offset": 15,
                                                            "delivery_state": 2, "delivery_count": 1}]}, value)
    shard.replay(bytes(key), bytes(value), 0)
    assert shard.read(KEY) == (12, [(12, 14, 0, 1), (15, 15, 2, 1), (16, 19, 0, 1)])


def test_keys_hash_as_kafka_names_them():
    assert ss.coordinator_key("g", bytes(16), 0) == "g:AAAAAAAAAAAAAAAAAAAAAA:0"
    assert 0 <= ss.partition_for("g", bytes(16), 0, 50) < 50


def test_initialize_fences_the_leaders_that_read_before_and_summary():
    from odradek.protocol import errors

    shard, runner, log = run()
    assert shard.summary(KEY)["start_offset"] == -1
    runner.apply(shard.write(0, KEY, 1, 10, [(10, 12, 2, 1), (13, 13, 4, 5), (14, 19, 0, 1)]), 0)
    assert shard.summary(KEY) == {"state_epoch": 0, "leader_epoch": 1, "start_offset": 10,
                                  "delivery_complete_count": 4}
    assert shard.initialize(0, KEY, 0, 3).response["error_code"] == errors.FENCED_STATE_EPOCH
    runner.apply(shard.initialize(0, KEY, 1, 3), 0)
    assert shard.summary(KEY) == {"state_epoch": 1, "leader_epoch": -1, "start_offset": 3,
                                  "delivery_complete_count": 0}
    assert shard.write(0, KEY, 1, 10, [], 0).response["error_code"] == errors.FENCED_STATE_EPOCH
    runner.apply(shard.write(0, KEY, 1, 5, [], 1), 0)
    assert shard.read(KEY) == (5, []) and shard.state_epoch(KEY) == 1
    assert replayed(log).states == shard.states
