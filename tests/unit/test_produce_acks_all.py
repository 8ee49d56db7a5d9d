"""acks=all answers (``odradek.apis.produce.wait_replicated``) with fake
partitions: each outcome of the wait is mapped to Kafka's error code."""

from __future__ import annotations

import asyncio

from odradek.apis.produce import wait_replicated
from odradek.replica.partition import Partition
from odradek.protocol import errors


class FakeConfig:
    def __init__(self, min_isr: int):
        self.min_isr = min_isr

    def get_int(self, key: str) -> int:
        assert key == "min.insync.replicas"
        return self.min_isr


class FakePartition:
    def __init__(self, isr, min_isr=2):
        self.isr = list(isr)
        self.config = FakeConfig(min_isr)
        self.discarded = []

    def discard_ack(self, fut):
        self.discarded.append(fut)

    under_min_isr = Partition.under_min_isr  # the rule itself, over this fake's ISR and config


def entry() -> dict:
    return {"index": 0, "error_code": 0, "base_offset": 5, "log_append_time_ms": -1, "log_start_offset": 0}


def answer(partition, outcome, timeout_ms=50) -> dict:
    async def go():
        fut = asyncio.get_running_loop().create_future()
        if outcome is not None:
            fut.set_result(outcome)
        e = entry()
        await wait_replicated([(partition, e, fut)], timeout_ms)
        return e
    return asyncio.run(go())


def test_replicated_with_enough_in_sync_replicas_is_a_success():
    assert answer(FakePartition([1, 2, 3]), 0)["error_code"] == errors.NONE


def test_replicated_after_the_isr_fell_below_min_insync_replicas():
    e = answer(FakePartition([1]), 0)
    assert e["error_code"] == errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND == 20
    assert e["base_offset"] == -1


def test_not_replicated_in_time_is_a_timeout_and_the_wait_is_discarded():
    p = FakePartition([1, 2, 3])
    assert answer(p, None)["error_code"] == errors.REQUEST_TIMED_OUT
    assert len(p.discarded) == 1


def test_leadership_lost_first():
    assert answer(FakePartition([1, 2]), errors.NOT_LEADER_OR_FOLLOWER)["error_code"] == \
        errors.NOT_LEADER_OR_FOLLOWER
