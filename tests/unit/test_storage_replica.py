"""The log as a follower writes it: batches copied from a leader keep their
offsets and leader epochs, the epoch cache follows them, and a follower
behind its leader's log start starts afresh."""

from __future__ import annotations

import pytest

from odradek.protocol.batch import InvalidBatch

from tests.unit.test_storage import BATCH_SIZE, bases_of, env, fake_env, fill, make_batch  # noqa: F401


def copied(leader, offset=0) -> bytearray:
    """The leader's batches from ``offset`` on, as a Fetch would carry them."""
    return bytearray(b"".join(leader.read(offset, 1 << 20, leader.log_end_offset).chunks))


def test_replicated_batches_keep_offsets_and_epochs(env):
    follower = env.open()
    leader = env.store.open_log("l", 0, env.config)
    fill(leader, 3, epoch=2)
    fill(leader, 2, epoch=5)
    info = follower.append_replicated(copied(leader), 6000)
    assert (info.base_offset, info.last_offset) == (0, 4)
    assert follower.log_end_offset == 5
    assert follower.leader_epochs() == [(2, 0), (5, 3)] == leader.leader_epochs()
    assert follower.latest_epoch == 5
    assert bytes(copied(follower)) == bytes(copied(leader))
    assert follower.end_offset_for_epoch(2) == (2, 3)


def test_replicated_batches_must_follow_the_log_end(env):
    follower = env.open()
    leader = env.store.open_log("l", 0, env.config)
    fill(leader, 4)
    with pytest.raises(InvalidBatch):
        follower.append_replicated(copied(leader, 2), 6000)  # starts at 2, the log ends at 0
    assert follower.log_end_offset == 0
    follower.append_replicated(copied(leader), 6000)
    assert follower.log_end_offset == 4


def test_high_watermark_is_set_not_implied(env):
    env.store.auto_high_watermark = False
    follower = env.open()
    leader = env.store.open_log("l", 0, env.config)
    fill(leader, 3)
    follower.append_replicated(copied(leader), 6000)
    assert follower.log_end_offset == 3 and follower.high_watermark == 0
    follower.set_high_watermark(2)
    assert bases_of(follower.read(0, 1 << 20)) == [0, 1]


def test_assign_epoch_marks_the_log_end(env):
    lg = env.open()
    fill(lg, 2, epoch=1)
    lg.assign_epoch(4)
    assert lg.leader_epochs() == [(1, 0), (4, 2)]
    assert lg.end_offset_for_epoch(1) == (1, 2)
    assert lg.end_offset_for_epoch(3) == (1, 2)


def test_reset_to_starts_afresh(env):
    lg = env.open(segment_bytes=BATCH_SIZE * 2)
    fill(lg, 5, epoch=1)
    lg.reset_to(100)
    assert (lg.log_start_offset, lg.log_end_offset, lg.high_watermark) == (100, 100, 100)
    assert lg.leader_epochs() == [] and lg.segment_base_offsets() == [100]
    assert lg.append(make_batch(), 3, 5000).base_offset == 100


def test_replicated_log_recovers_after_a_crash(fake_env):
    follower = fake_env.open()
    leader = fake_env.store.open_log("l", 0, fake_env.config)
    fill(leader, 3, epoch=2)
    fill(leader, 3, epoch=7)
    follower.append_replicated(copied(leader), 6000)
    follower.flush()
    fake_env.store.write_checkpoints()
    follower = fake_env.reopen(crash="power")
    assert follower.log_end_offset == 6
    assert follower.leader_epochs() == [(2, 0), (7, 3)]
