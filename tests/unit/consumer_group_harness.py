"""Drives a GroupShard's consumer groups synchronously through
the runtime's ShardRunner: records are "appended" to an in-memory log and replayed.
Partitions are given by topic name here ({"t": [0, 1]}) and translated to
topic ids on the way in and out."""

from __future__ import annotations

import hashlib

from odradek.coordinator.config import ConsumerGroupConfig, GroupConfig
from odradek.coordinator.consumer_groups import DictTopics
from odradek.coordinator.shard import GroupShard
from tests.unit.group_harness import T0, ShardHarness
TID = {"t": b"T" * 16, "u": b"U" * 16, "v": b"V" * 16}


def tid(name: str) -> bytes:
    if name in TID:
        return TID[name]
    raw = name.encode()
    return raw.ljust(16, b"_") if len(raw) <= 16 else hashlib.md5(raw).digest()


NAMES = {}


class ConsumerHarness(ShardHarness):
    def __init__(self, topics=None, **consumer_config):
        self.topic_view = DictTopics({name: (tid(name), n) for name, n in (topics or {"t": 4, "u": 2}).items()})
        NAMES.update({tid(name): name for name in self.topic_view.topics})
        defaults = dict(session_timeout_ms=45000, heartbeat_interval_ms=5000)
        defaults.update(consumer_config)
        super().__init__(GroupShard(GroupConfig(num_partitions=4), ConsumerGroupConfig(**defaults),
                                    self.topic_view))

    def set_topic(self, name: str, partitions: int) -> None:
        self.topic_view.topics[name] = (tid(name), partitions)
        NAMES[tid(name)] = name

    def name(self, topic_id: bytes) -> str:
        return NAMES[topic_id]

    def ids(self, parts: dict | None):
        if parts is None:
            return None
        return [{"topic_id": tid(t), "partitions": sorted(ps)} for t, ps in parts.items() if ps]

    def named(self, entries) -> dict:
        out = {}
        for e in entries:
            out.setdefault(self.name(e["topic_id"]), set()).update(e["partitions"])
        return out

    # -- operations ------------------------------------------------------
    def hb(self, member_id: str, epoch: int, topics=None, owned=None, group="g", instance=None,
           regex=None, assignor=None, rebalance=None, version=1) -> dict:
        """One heartbeat; a join (epoch 0) fills what a client must send. The
        answer's assignment is translated to {topic name: set}."""
        if epoch == 0:
            if topics is None and regex is None:
                topics = ["t"]
            if owned is None:
                owned = {}
            if rebalance is None:
                rebalance = 30000
        res = self.apply(self.sm.consumer_group_heartbeat(
            self.now, group_id=group, member_id=member_id, member_epoch=epoch, instance_id=instance,
            rack_id=None, rebalance_timeout_ms=-1 if rebalance is None else rebalance,
            subscribed_topic_names=topics, subscribed_topic_regex=regex, server_assignor=assignor,
            topic_partitions=self.ids(owned), client_id="c", client_host="/127.0.0.1", version=version))
        resp = dict(res.response)
        if resp.get("assignment") is not None:
            resp["assignment"] = self.named(resp["assignment"]["topic_partitions"])
        return resp

    def group(self, group="g"):
        return self.sm.groups.get(group)

    def member(self, member_id, group="g"):
        return self.group(group).members.get(member_id)

    def assigned(self, member_id, group="g") -> dict:
        m = self.member(member_id, group)
        return {self.name(tid): set(ps) for tid, ps in m.assigned.items()}

    def commit(self, member_id, epoch, offsets, group="g", version=9) -> list[int]:
        topics = {}
        for (t, p), off in offsets.items():
            topics.setdefault(t, []).append((p, off, -1, ""))
        res = self.apply(self.sm.commit_offsets(
            self.now, group_id=group, generation=epoch, member_id=member_id, instance_id=None,
            topics=list(topics.items()), topic_exists=lambda n, p: self.topic_view.get(n) is not None,
            version=version))
        return [p["error_code"] for t in res.response["topics"] for p in t["partitions"]]


class Client:
    """A well-behaved consumer: reports what it owns, gives up revoked
    partitions (at once, or after ``lazy`` heartbeats), takes new ones."""

    def __init__(self, h: ConsumerHarness, member_id: str, topics=("t",), lazy: int = 0, **join):
        self.h = h
        self.member_id = member_id
        self.topics = list(topics)
        self.lazy = lazy
        self.join = join
        self.epoch = 0
        self.owned: dict[str, set] = {}
        self.target: dict[str, set] | None = None
        self.waited = 0
        self.alive = True

    def step(self) -> dict:
        if self.epoch == 0:
            resp = self.h.hb(self.member_id, 0, topics=self.topics, **self.join)
        else:
            resp = self.h.hb(self.member_id, self.epoch, owned={t: set(ps) for t, ps in self.owned.items()})
        if resp["error_code"]:
            self.epoch, self.owned, self.target = 0, {}, None
            return resp
        self.epoch = resp["member_epoch"]
        if resp["assignment"] is not None:
            self.target = resp["assignment"]
        if self.target is not None:
            revoking = any(self.owned.get(t, set()) - self.target.get(t, set()) for t in self.owned)
            if revoking and self.waited < self.lazy:
                self.waited += 1  # still busy giving them up
            else:
                self.waited = 0
                self.owned = {t: set(ps) for t, ps in self.target.items() if ps}
        return resp

    def leave(self) -> dict:
        self.alive = False
        return self.h.hb(self.member_id, -1)
