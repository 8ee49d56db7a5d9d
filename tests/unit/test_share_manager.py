"""This broker's share-partitions (odradek/share/manager.py): where a
share-partition starts (share.auto.offset.reset), starting afresh when
leadership comes back, and what members leaving and the offsets APIs do."""

from __future__ import annotations

import asyncio
import json

from odradek.coordinator.config import ShareGroupConfig
from odradek.metadata.group_configs import GroupConfigCache, key_of, parse_duration_ms
from odradek.share.manager import SharePartitions


class FakeTopic:
    topic_id = b"T" * 16


class FakePartition:
    topic = FakeTopic()
    index = 0

    def __init__(self, log_start=2, hw=10, epoch=0):
        self.log_start_offset = log_start
        self.high_watermark = hw
        self.leader_epoch = epoch
        self.notified = 0

    def notify(self):
        self.notified += 1

    def offset_for_timestamp(self, ts):
        return (6, ts) if ts > 0 else None


def manager(**group_configs) -> SharePartitions:
    cache = GroupConfigCache()
    for group, values in group_configs.items():
        cache.put(key_of(group), json.dumps(values))
    return SharePartitions(ShareGroupConfig(record_lock_duration_ms=1000), cache)


def test_where_a_share_partition_starts():
    m = manager(early={"share.auto.offset.reset": "earliest"},
                dur={"share.auto.offset.reset": "by_duration:PT1H"},
                lock={"share.record.lock.duration.ms": "20000", "share.delivery.count.limit": "3"})
    p = FakePartition()
    assert m.get("plain", p).start == 10
    assert m.get("early", p).start == 2
    assert m.get("dur", p).start == 6
    sp = m.get("lock", p)
    assert (sp.config.lock_duration_ms, sp.config.delivery_count_limit) == (20000, 3)
    assert m.lock_duration_ms("plain") == 1000


def test_a_partition_led_here_again_starts_afresh():
    m = manager()
    p = FakePartition()
    sp = m.get("g", p)
    sp.acquire("a", [(10, 12)], 0)
    p.high_watermark = 13
    assert m.get("g", p) is sp
    p.leader_epoch = 2  # another broker led it meanwhile
    assert m.find("g", p) is None
    fresh = m.get("g", p)
    assert fresh is not sp and fresh.start == 13 and fresh.acquired_by("a") == []


def test_members_leaving_and_offsets():
    m = manager()
    p = FakePartition()
    sp = m.get("g", p)
    p.high_watermark = 15
    sp.acquire("a", [(10, 14)], 0)
    m.member_left("g", "a")
    assert sp.acquired_by("a") == [] and p.notified == 1
    key = ("g", FakeTopic.topic_id, 0)

    async def offsets():
        assert await m.initialize("g", key, 4) == 0
        assert m.get("g", p).start == 4
        assert (await m.summaries("g", [key]))[key] == (0, {"state_epoch": 0, "leader_epoch": -1,
                                                           "start_offset": 4, "delivery_complete_count": 0})
        await m.delete_states("g", [key])
        assert m.find("g", p) is None
    asyncio.run(offsets())
    m.get("g", p)
    m.member_left("g", None)  # the group was deleted
    assert m.states == {}


def test_durations():
    assert parse_duration_ms("PT1H") == 3600000
    assert parse_duration_ms("P1DT0.5S") == 86400500
