"""Partition reassignments (KIP-455) without a store: the state's encoding
(``adding`` and ``removing``, old values without them), the controller's
pure decisions (start, replace, cancel, complete, refusals), the other
decisions keeping a reassignment's state, and the replica manager dropping
a partition moved away from its broker (log deleted, listeners told)."""

from __future__ import annotations

import asyncio
import json

from odradek.cluster.controller import (cancel_reassignment, complete_reassignment, decide_partition,
                                        reassignment_changes, start_reassignment)
from odradek.config import BrokerConfig
from odradek.metadata.image import MetadataImage
from odradek.metadata.topics import PartitionState, TopicState, create_topic_txn, partition_key
from odradek.metadata.store import Put
from odradek.protocol import errors
from odradek.replica.manager import ReplicaManager
from odradek.storage.memory import MemoryLogStore
from tests.unit.test_replica_manager import TOPIC_ID, events

LIVE = {1, 2, 3, 4}


def state(leader, epoch, replicas, isr, adding=(), removing=(), revision=7):
    return PartitionState(leader, epoch, list(replicas), list(isr), adding=list(adding),
                          removing=list(removing), revision=revision)


# -- encoding --------------------------------------------------------------------------
def test_state_round_trips_with_adding_and_removing():
    s = state(1, 3, [2, 3, 1], [1, 2], adding=[3], removing=[1])
    back = PartitionState.from_json(s.to_json(), 9)
    assert back == s and back.revision == 9
    assert (back.adding, back.removing, back.reassigning) == ([3], [1], True)
    assert (back.target, back.original) == ([2, 3], [2, 1])


def test_a_value_written_before_reassignments_still_reads():
    raw = json.dumps({"leader": 1, "leader_epoch": 2, "replicas": [1, 2], "isr": [1, 2], "elr": []}).encode()
    s = PartitionState.from_json(raw, 4)
    assert (s.leader, s.leader_epoch, s.replicas, s.isr, s.adding, s.removing) == (1, 2, [1, 2], [1, 2], [], [])
    assert not s.reassigning and s.target == s.original == [1, 2]
    oldest = json.dumps({"leader": 1, "leader_epoch": 0, "replicas": [1], "isr": [1]}).encode()
    assert PartitionState.from_json(oldest).elr == []


def test_the_image_keeps_a_reassignment():
    image = MetadataImage()
    t = TopicState("r", TOPIC_ID, {}, [state(1, 0, [2, 3, 1], [1, 2], adding=[3], removing=[1])])
    image.apply(events(create_topic_txn(t)[1]))
    s = image.get("r").partitions[0]
    assert (s.replicas, s.adding, s.removing) == ([2, 3, 1], [3], [1])


# -- decisions ---------------------------------------------------------------------------
def test_a_move_adds_the_target_first_then_the_removed_ones():
    s = state(1, 4, [1, 2], [1, 2])
    new, code, _ = start_reassignment(s, [2, 3], LIVE, set())
    assert code == 0
    assert (new.replicas, new.adding, new.removing) == ([2, 3, 1], [3], [1])
    assert (new.leader, new.leader_epoch, new.isr) == (1, 4, [1, 2])  # leader and ISR stay


def test_completion_waits_for_every_adding_replica_in_the_isr():
    s = state(1, 4, [2, 3, 4, 1], [1, 2, 3], adding=[3, 4], removing=[1])
    assert complete_reassignment(s, LIVE, set()) is None
    s = state(1, 4, [2, 3, 4, 1], [1, 2, 3, 4], adding=[3, 4], removing=[1])
    new = complete_reassignment(s, LIVE, set())
    # The leader was removed: the first target replica in the ISR leads, epoch + 1.
    assert (new.replicas, new.isr, new.leader, new.leader_epoch) == ([2, 3, 4], [2, 3, 4], 2, 5)
    assert (new.adding, new.removing) == ([], [])


def test_completion_keeps_a_leader_that_stays():
    s = state(2, 4, [2, 3, 1], [1, 2, 3], adding=[3], removing=[1])
    new = complete_reassignment(s, LIVE, set())
    assert (new.replicas, new.isr, new.leader, new.leader_epoch) == ([2, 3], [2, 3], 2, 4)


def test_completion_skips_a_new_leader_that_is_down_or_shutting_down():
    s = state(1, 4, [2, 3, 1], [1, 2, 3], adding=[3], removing=[1])
    new = complete_reassignment(s, {1, 3}, set())
    assert (new.leader, new.leader_epoch) == (3, 5)
    new = complete_reassignment(s, LIVE, {2})
    assert new.leader == 3
    assert complete_reassignment(s, {1}, set()) is None  # no one of the target can lead: wait


def test_removing_only_completes_at_once():
    s = state(1, 0, [1, 2, 3], [1, 2, 3])
    new, code, _ = start_reassignment(s, [2, 3], LIVE, set())
    assert code == 0
    assert (new.replicas, new.isr, new.leader, new.leader_epoch, new.reassigning) == ([2, 3], [2, 3], 2, 1, False)


def test_a_target_equal_to_the_assignment_changes_nothing():
    assert start_reassignment(state(1, 0, [1, 2], [1, 2]), [1, 2], LIVE, set()) == (None, 0, None)
    ongoing = state(1, 0, [2, 3, 1], [1, 2], adding=[3], removing=[1])
    assert start_reassignment(ongoing, [2, 3], LIVE, set()) == (None, 0, None)


def test_a_new_target_replaces_the_ongoing_reassignment():
    ongoing = state(1, 0, [2, 3, 1], [1, 2], adding=[3], removing=[1])
    new, code, _ = start_reassignment(ongoing, [2, 4], LIVE, set())
    # Computed from the replicas before the reassignment ([1, 2]): 3 is dropped.
    assert code == 0 and (new.replicas, new.adding, new.removing, new.isr) == ([2, 4, 1], [4], [1], [1, 2])


def test_invalid_targets_are_refused():
    s = state(1, 0, [1, 2], [1, 2])
    for target in ([], [2, 2], [2, 9], [-1]):
        new, code, message = start_reassignment(s, target, LIVE, set())
        assert new is None and code == errors.INVALID_REPLICA_ASSIGNMENT and message, target


def test_cancel_reverts_to_the_original_replicas():
    ongoing = state(1, 2, [2, 3, 1], [1, 2, 3], adding=[3], removing=[1])
    new, code, _ = cancel_reassignment(ongoing, LIVE, set())
    assert code == 0
    assert (new.replicas, new.isr, new.leader, new.leader_epoch, new.reassigning) == ([2, 1], [1, 2], 1, 2, False)
    # An added replica that leads meanwhile hands over to one of the original.
    ongoing = state(3, 3, [2, 3, 1], [3, 1], adding=[3], removing=[1])
    new, code, _ = cancel_reassignment(ongoing, LIVE, set())
    assert (new.replicas, new.isr, new.leader, new.leader_epoch) == ([2, 1], [1], 1, 4)
    assert cancel_reassignment(state(1, 0, [1, 2], [1, 2]), LIVE, set()) == (
        None, errors.NO_REASSIGNMENT_IN_PROGRESS, None)


def test_the_controller_completes_only_caught_up_reassignments():
    t = TopicState("r", TOPIC_ID, {}, [state(1, 0, [2, 3, 1], [1, 2], adding=[3], removing=[1], revision=5),
                                       state(1, 0, [2, 3, 1], [1, 2, 3], adding=[3], removing=[1], revision=6),
                                       state(1, 0, [1, 2], [1, 2], revision=7)])
    changes = reassignment_changes([t], LIVE, set())
    assert [(c.index, c.read_at, c.state.replicas, c.state.leader) for c in changes] == [(1, 6, [2, 3], 2)]


def test_leadership_decisions_keep_an_ongoing_reassignment():
    s = state(1, 0, [2, 3, 1], [1, 2], adding=[3], removing=[1])
    new = decide_partition(s, {2, 3}, set())
    assert (new.leader, new.isr, new.adding, new.removing) == (2, [2], [3], [1])


# -- the replica manager -----------------------------------------------------------------
def test_a_partition_moved_away_is_no_longer_hosted_and_its_log_goes():
    asyncio.run(_moved_away())


async def _moved_away():
    m = ReplicaManager(BrokerConfig(node_id=1), MetadataImage())
    m.store = MemoryLogStore()
    told = []
    m.listeners.append(lambda gained, lost: told.append(([p.index for p in gained], [p.index for p in lost])))
    t = TopicState("m", TOPIC_ID, {}, [PartitionState(1, 0, [1, 2], [1, 2]), PartitionState(2, 0, [2, 1], [2, 1])])
    m.image.apply(events(create_topic_txn(t)[1]))
    await m.reconcile()
    assert sorted(m.topic("m").by_index) == [0, 1] and m.store.has_log("m", 0)
    # Partition 0 moves to [2, 3]: while the reassignment runs, broker 1 keeps it.
    moving = state(1, 0, [2, 3, 1], [1, 2], adding=[3], removing=[1])
    m.image.apply(events([Put(partition_key("m", 0), moving.to_json())]))
    await m.reconcile()
    assert 0 in m.topic("m").by_index
    done = state(2, 1, [2, 3], [2, 3])
    m.image.apply(events([Put(partition_key("m", 0), done.to_json())]))
    told.clear()
    await m.reconcile()
    assert sorted(m.topic("m").by_index) == [1] and [p.index for p in m.topic("m").partitions] == [1]
    assert m.partition_or_error("m", 0, leader_required=False) == (None, errors.NOT_LEADER_OR_FOLLOWER)
    assert not m.store.has_log("m", 0) and m.store.has_log("m", 1)
    assert told == [([], [0])]
    # The last one moved away: the topic is no longer hosted at all.
    m.image.apply(events([Put(partition_key("m", 1), state(2, 1, [2, 3], [2, 3]).to_json())]))
    await m.reconcile()
    assert m.topic("m") is None and not m.store.has_log("m", 1)
    # And back: hosted afresh.
    m.image.apply(events([Put(partition_key("m", 1), state(2, 1, [2, 3, 1], [2, 3], adding=[1]).to_json())]))
    await m.reconcile()
    assert m.topic("m") is not None and sorted(m.topic("m").by_index) == [1]


def test_a_leader_never_adds_a_removed_replica_back_to_the_isr():
    from tests.unit.test_partition_roles import make

    p, proposals = make(state=PartitionState(1, 0, [1, 2, 3], [1, 2], revision=5))
    p.apply_state(PartitionState(1, 0, [1, 2], [1, 2], revision=6), 1001)  # 3 moved away
    assert 3 not in p.followers
    p.on_follower_fetch(3, p.log_end_offset, 1002)  # a fetch still in flight from it
    assert proposals == [] and p.pending_isr is None


def test_a_replication_factor_change_can_be_refused():
    s = state(1, 0, [1, 2], [1, 2])
    new, code, message = start_reassignment(s, [2, 3, 4], LIVE, set(), allow_rf_change=False)
    assert new is None and code == errors.INVALID_REPLICATION_FACTOR and "from 2 to 3" in message
    new, code, _ = start_reassignment(s, [2, 3], LIVE, set(), allow_rf_change=False)
    assert code == 0 and new.adding == [3]
    assert start_reassignment(s, [2, 3, 4], LIVE, set())[1] == 0
