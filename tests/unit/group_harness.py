"""Drives a GroupShard's classic groups synchronously through the runtime's ShardRunner:
each operation's records are "appended" to an in-memory log and replayed, and
parked responses are collected from the completions."""

from __future__ import annotations

import struct

from odradek.coordinator.config import GroupConfig
from odradek.coordinator.runtime import Result, ShardRunner
from odradek.coordinator.shard import GroupShard
from odradek.protocol.schema import codec

T0 = 1_700_000_000_000


def subscription(*topics: str) -> bytes:
    out = bytearray(struct.pack(">h", 0))
    codec("ConsumerProtocolSubscription", 0).encode({"topics": list(topics), "user_data": None}, out)
    return bytes(out)


class ShardHarness:
    """A GroupShard run by the runtime's ShardRunner at a clock the test moves:
    appended records go to ``log``, parked responses to ``responses``."""

    def __init__(self, shard: GroupShard):
        self.now = T0
        self.log: list[tuple[bytes, bytes | None]] = []
        self.responses: dict[int, dict] = {}
        self.sm = shard

    @property
    def sm(self):
        return self.runner.shard

    @sm.setter
    def sm(self, shard) -> None:
        self.runner = ShardRunner(shard, self._write)

    def _write(self, records: list, now: int) -> None:
        self.log.extend(records)

    def apply(self, res: Result) -> Result:
        for token, response in self.runner.apply(res, self.now):
            self.responses[token] = response
        return res

    def advance(self, ms: int) -> Result:
        self.now += ms
        return self.apply(self.sm.tick(self.now))


class Harness(ShardHarness):
    def __init__(self, **config):
        defaults = dict(num_partitions=4, min_session_timeout_ms=100, initial_rebalance_delay_ms=0)
        defaults.update(config)
        super().__init__(GroupShard(GroupConfig(**defaults)))
        self.topics = {"t": 4, "u": 2}

    def answer(self, res: Result) -> dict | None:
        if res.wait is None:
            return res.response
        return self.responses.get(res.wait)

    def topic_exists(self, name, partition) -> bool:
        return name in self.topics and 0 <= partition < self.topics[name]

    # -- operations ------------------------------------------------------
    def join(self, group="g", member_id="", instance_id=None, protocols=None, session=1000,
             rebalance=5000, version=7, client_id="c", protocol_type="consumer") -> Result:
        if protocols is None:
            protocols = [("range", subscription("t"))]
        return self.apply(self.sm.join_group(
            self.now, group_id=group, member_id=member_id, instance_id=instance_id,
            session_timeout=session, rebalance_timeout=rebalance, protocol_type=protocol_type,
            protocols=protocols, client_id=client_id, client_host="/127.0.0.1",
            require_known_member_id=version >= 4, supports_skip_assignment=version >= 9))

    def join_new(self, group="g", **kw) -> Result:
        """JoinGroup as a v4+ client does: take the member id, then join with it."""
        first = self.join(group, **kw)
        resp = self.answer(first)
        if resp is None or resp["error_code"] != 79:
            return first
        kw.pop("member_id", None)
        return self.join(group, member_id=resp["member_id"], **kw)

    def sync(self, member_id, generation, assignments=(), group="g", instance_id=None) -> Result:
        return self.apply(self.sm.sync_group(
            self.now, group_id=group, generation=generation, member_id=member_id,
            instance_id=instance_id, protocol_type=None, protocol_name=None,
            assignments=list(assignments)))

    def heartbeat(self, member_id, generation, group="g", instance_id=None) -> int:
        return self.apply(self.sm.heartbeat(self.now, group_id=group, generation=generation,
                                            member_id=member_id, instance_id=instance_id)).response["error_code"]

    def leave(self, *members, group="g") -> dict:
        return self.apply(self.sm.leave_group(self.now, group_id=group, members=list(members))).response

    def commit(self, offsets, group="g", generation=-1, member_id="", instance_id=None,
               retention_ms=-1, version=8) -> dict:
        topics = {}
        for (topic, partition), value in offsets.items():
            offset, metadata = value if isinstance(value, tuple) else (value, "")
            topics.setdefault(topic, []).append((partition, offset, -1, metadata))
        return self.apply(self.sm.commit_offsets(
            self.now, group_id=group, generation=generation, member_id=member_id,
            instance_id=instance_id, topics=list(topics.items()), topic_exists=self.topic_exists,
            retention_ms=retention_ms, version=version)).response

    def committed(self, group="g", topics=None) -> dict:
        resp = self.sm.fetch_offsets(group, topics)
        return {(t["name"], p["partition_index"]): p["committed_offset"]
                for t in resp["topics"] for p in t["partitions"]}

    def stable_group(self, n=1, group="g", **kw) -> tuple[list[str], int]:
        """n members joined and synced; returns (member ids, generation)."""
        ids = []
        waits = []
        for i in range(n):
            res = self.join_new(group, client_id=f"c{i}", **kw)
            waits.append(res)
        self.advance(0)
        # Members that joined after the first generation completed are parked in
        # a new rebalance: rejoin everyone until one generation holds them all.
        for _ in range(n + 1):
            answers = [self.answer(w) for w in waits]
            if all(a is not None and a["error_code"] == 0 for a in answers) and \
                    len({a["generation_id"] for a in answers}) == 1:
                break
            for i, a in enumerate(answers):
                if a is not None and a["error_code"] == 0:
                    waits[i] = self.join(group, member_id=a["member_id"], client_id=f"c{i}", **kw)
            self.advance(0)
        answers = [self.answer(w) for w in waits]
        ids = [a["member_id"] for a in answers]
        gen = answers[0]["generation_id"]
        leader = answers[0]["leader"]
        syncs = [self.sync(mid, gen, [(m, f"assign-{m}".encode()) for m in ids] if mid == leader else (), group)
                 for mid in ids]
        for s in syncs:
            assert self.answer(s)["error_code"] == 0, self.answer(s)
        return ids, gen
