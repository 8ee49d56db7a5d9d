"""Transaction markers written as Kafka writes them, acks=all
(``odradek.coordinator.transactions.markers.write_markers``), with fake partitions."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from odradek.coordinator.transactions.markers import write_markers
from odradek.protocol import errors
from odradek.replica.partition import Partition


class FakePartition:
    under_min_isr = Partition.under_min_isr  # the rule itself, over this fake's ISR and config

    def __init__(self, name, isr=(1, 2), min_isr=1, replicated=0):
        self.topic = SimpleNamespace(name=name)
        self.isr = list(isr)
        self.config = SimpleNamespace(get_int=lambda key: min_isr)
        self.is_leader = True
        self.log_end_offset = 10
        self.replicated = replicated  # what wait_replicated answers: 0, an error code, or None (timed out)
        self.markers = []
        self.waited = []

    def append_marker(self, producer_id, epoch, coordinator_epoch, commit, now):
        self.markers.append((producer_id, epoch, commit))
        self.log_end_offset += 1
        return 0

    async def wait_replicated(self, offset, timeout_s):
        self.waited.append(offset)
        await asyncio.sleep(0)
        return self.replicated


def test_markers_are_answered_once_replicated_and_refused_below_min_isr():
    ok = FakePartition("a")
    lagging = FakePartition("b", replicated=None)
    moved = FakePartition("c", replicated=errors.NOT_LEADER_OR_FOLLOWER)
    short = FakePartition("d", isr=(1,), min_isr=2)
    broker = SimpleNamespace(groups=None)
    out = asyncio.run(write_markers(broker, [(("a", 0), ok), (("b", 0), lagging), (("c", 0), moved),
                                             (("d", 0), short)], 7, 1, 3, True, 5.0))
    assert out == {("a", 0): 0, ("b", 0): errors.REQUEST_TIMED_OUT, ("c", 0): errors.NOT_LEADER_OR_FOLLOWER,
                   ("d", 0): errors.NOT_ENOUGH_REPLICAS}
    assert ok.markers == [(7, 1, True)] and ok.waited == [10]  # the marker's offset: the end before it plus 0
    assert short.markers == [] and short.waited == []  # refused before anything was appended
