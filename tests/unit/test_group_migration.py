"""Kafka 4's online migration between the classic and KIP-848 protocols: a
classic group with members becomes a consumer group when a
ConsumerGroupHeartbeat joins it, and its classic members go on with JoinGroup,
SyncGroup and Heartbeat inside it. Driven through the runtime's ShardRunner;
no partition is ever owned by two clients, and the records replay to the
same state."""

from __future__ import annotations

import struct

from odradek.coordinator.config import ConsumerGroupConfig, GroupConfig
from odradek.coordinator.consumer_groups import UNREVOKED_PARTITIONS
from odradek.coordinator.shard import GroupShard
from odradek.protocol import errors
from odradek.protocol.consumer_protocol import decode_assignment, encode_assignment
from odradek.protocol.schema import codec
from tests.unit.consumer_group_harness import Client, ConsumerHarness
from tests.unit.group_harness import Harness


def subscription(topics, owned=None, version=1) -> bytes:
    out = bytearray(struct.pack(">h", version))
    body = {"topics": list(topics), "user_data": None}
    if version >= 1:
        body["owned_partitions"] = [{"topic": t, "partitions": sorted(ps)} for t, ps in (owned or {}).items() if ps]
    codec("ConsumerProtocolSubscription", version).encode(body, out)
    return bytes(out)


class MigrationHarness(ConsumerHarness):
    """Classic operations (Harness's) and KIP-848 heartbeats on one shard."""

    join = Harness.join
    join_new = Harness.join_new
    sync = Harness.sync
    heartbeat = Harness.heartbeat
    leave = Harness.leave
    answer = Harness.answer

    def __init__(self, policy="bidirectional"):
        super().__init__(migration_policy=policy)
        self.sm = GroupShard(
            GroupConfig(num_partitions=4, min_session_timeout_ms=100, initial_rebalance_delay_ms=0),
            ConsumerGroupConfig(session_timeout_ms=45000, heartbeat_interval_ms=5000, migration_policy=policy),
            self.topic_view)
        self.topics = {"t": 4, "u": 2}


class ClassicClient:
    """A classic consumer: eager (gives up everything before joining again) or
    cooperative (reports what it owns; gives up only what it lost, then joins
    again)."""

    def __init__(self, h: MigrationHarness, name: str, cooperative=False, topics=("t",), instance=None):
        self.h, self.name, self.cooperative, self.topics = h, name, cooperative, list(topics)
        self.instance = instance
        self.member_id = ""
        self.generation = -1
        self.owned: dict[str, set] = {}
        self.must_join = True

    def protocols(self):
        owned = self.owned if self.cooperative else {}
        name = "cooperative-sticky" if self.cooperative else "range"
        return [(name, subscription(self.topics, owned))]

    def step(self) -> None:
        if self.must_join:
            if not self.cooperative:
                self.owned = {}
            res = self.h.join_new(member_id=self.member_id, protocols=self.protocols(), client_id=self.name,
                                  session=10000, instance_id=self.instance)
            a = self.h.answer(res)
            assert a is not None, "a classic member of a consumer group is answered at once"
            if a["error_code"]:
                assert a["error_code"] in (errors.REBALANCE_IN_PROGRESS, errors.UNKNOWN_MEMBER_ID), a
                if a["error_code"] == errors.UNKNOWN_MEMBER_ID:
                    self.member_id, self.owned = "", {}
                return
            assert a["leader"] == "" and a["members"] == [] and a["protocol_type"] == "consumer"
            self.member_id, self.generation = a["member_id"], a["generation_id"]
            s = self.h.answer(self.h.sync(self.member_id, self.generation, instance_id=self.instance))
            if s["error_code"]:
                assert s["error_code"] == errors.REBALANCE_IN_PROGRESS, s
                return
            given, _ = decode_assignment(s["assignment"])
            given = {t: set(ps) for t, ps in given.items() if ps}
            lost = any(self.owned.get(t, set()) - given.get(t, set()) for t in self.owned)
            self.owned = given
            self.must_join = self.cooperative and lost  # cooperative: join again after revoking
            return
        code = self.h.heartbeat(self.member_id, self.generation, instance_id=self.instance)
        if code == errors.REBALANCE_IN_PROGRESS:
            self.must_join = True
        else:
            assert code == 0, code


def owned_by(clients) -> dict:
    """Every (topic, partition) -> its owner; asserts none has two."""
    out = {}
    for c in clients:
        for t, ps in c.owned.items():
            for p in ps:
                assert (t, p) not in out, f"{t}-{p} owned by {out[(t, p)]} and {c.member_id}"
                out[(t, p)] = c.member_id
    return out


def run(h, clients, steps=12):
    for _ in range(steps):
        for c in clients:
            c.step()
            owned_by(clients)
        h.advance(100)
    return owned_by(clients)


def classic_group(h, n=2, cooperative=False, static=False):
    clients = [ClassicClient(h, f"c{i}", cooperative, instance=f"i{i}" if static else None) for i in range(n)]
    # The first generation: one member leads and assigns by range (t-0,1 / t-2,3).
    first = [h.join_new(member_id="", protocols=c.protocols(), client_id=c.name, session=10000,
                        instance_id=f"i{i}" if static else None) for i, c in enumerate(clients)]
    h.advance(0)
    answers = [h.answer(r) for r in first]
    assert all(a["error_code"] == 0 for a in answers), answers
    gen = answers[0]["generation_id"]
    ids = [a["member_id"] for a in answers]
    plan = {mid: {"t": [2 * i, 2 * i + 1]} for i, mid in enumerate(ids)}
    leader = answers[0]["leader"]
    syncs = [h.sync(mid, gen, [(m, encode_assignment(p, 0)) for m, p in plan.items()] if mid == leader else ())
             for mid in ids]
    for c, mid, s in zip(clients, ids, syncs):
        c.member_id, c.generation = mid, gen
        given, _ = decode_assignment(h.answer(s)["assignment"])
        c.owned = {t: set(ps) for t, ps in given.items()}
        c.must_join = False
    assert h.group().group_type == "classic" and h.group().state == "Stable"
    return clients, gen


def test_a_consumer_protocol_member_upgrades_a_classic_group_with_members():
    h = MigrationHarness()
    classic, gen = classic_group(h)
    new = Client(h, "k1")
    resp = new.step()
    assert resp["error_code"] == 0, resp
    g = h.group()
    assert g.group_type == "consumer"
    # The classic members were carried over at their generation, with their partitions.
    for c in classic:
        m = g.members[c.member_id]
        assert m.classic is not None and m.classic[0] == 10000
        assert h.assigned(c.member_id) == c.owned
    assert g.group_epoch == gen + 1 and new.epoch == gen + 1
    assert new.owned == {}, "the new member waits for partitions the classic members still hold"
    # The classic members are told to rebalance, join again, and give up what moves.
    assert h.heartbeat(classic[0].member_id, gen) == errors.REBALANCE_IN_PROGRESS
    final = run(h, classic + [new])
    assert set(final) == {("t", p) for p in range(4)}
    assert len(set(final.values())) == 3
    assert g.state == "Stable"
    described = {m["member_id"]: m["member_type"] for m in h.sm.consumer_group_describe(["g"])[0]["members"]}
    assert described == {classic[0].member_id: 0, classic[1].member_id: 0, "k1": 1}
    # DescribeGroups speaks of classic groups only, as Kafka 4.4.
    d = h.sm.describe_group("g", 6)
    assert d["error_code"] == errors.GROUP_ID_NOT_FOUND and d["group_state"] == "Dead"
    # The records rebuild the same group.
    again = GroupShard(h.sm.config, h.sm.consumer.config, h.topic_view)
    for key, value in h.log:
        again.replay(key, value, h.now)
    assert again.durable_view() == h.sm.durable_view()


def test_cooperative_classic_members_revoke_before_others_take():
    h = MigrationHarness()
    classic, gen = classic_group(h, cooperative=True)
    new = Client(h, "k1")
    new.step()
    # The new member's partition comes from the classic member that must give one up.
    loser = next(c for c in classic if h.group().target[c.member_id] != h.member(c.member_id).assigned)
    assert h.heartbeat(loser.member_id, gen) == errors.REBALANCE_IN_PROGRESS
    # Joining again with what it owns, it keeps its generation until it has given up what moves:
    # its SyncGroup leaves that partition out, and it joins once more.
    loser.must_join = True
    loser.step()
    m = h.member(loser.member_id)
    assert m.state == UNREVOKED_PARTITIONS and m.member_epoch == gen == loser.generation
    assert len(loser.owned["t"]) == 1 and loser.must_join
    new.step()
    assert new.owned == {}, "not before the classic member has given it up"
    loser.step()
    assert h.member(loser.member_id).member_epoch == gen + 1 == loser.generation
    new.step()
    assert new.owned
    final = run(h, classic + [new])
    assert set(final) == {("t", p) for p in range(4)} and len(set(final.values())) == 3


def test_classic_member_offsets_and_leaving():
    h = MigrationHarness()
    classic, gen = classic_group(h)
    new = Client(h, "k1")
    run(h, classic + [new])
    c0 = classic[0]
    # Classic members commit with their generation (any OffsetCommit version).
    assert h.commit(c0.member_id, c0.generation, {("t", 0): 5}, version=8) == [0]
    assert h.commit(c0.member_id, c0.generation + 1, {("t", 0): 6}, version=8) == [errors.ILLEGAL_GENERATION]
    assert h.commit(new.member_id, new.epoch, {("t", 0): 7}, version=8) == [errors.UNSUPPORTED_VERSION]
    # LeaveGroup removes a classic member by member id; the rest take its partitions.
    left = h.leave((c0.member_id, None))
    assert left["members"][0]["error_code"] == 0
    assert c0.member_id not in h.group().members
    assert h.leave(("nobody", None))["members"][0]["error_code"] == errors.UNKNOWN_MEMBER_ID
    final = run(h, [classic[1], new])
    assert set(final) == {("t", p) for p in range(4)}


def test_a_new_classic_member_joins_a_consumer_group_with_members():
    h = MigrationHarness()
    a, b = Client(h, "k1"), Client(h, "k2")
    run(h, [a, b], steps=3)
    c = ClassicClient(h, "c0")
    res = h.join(member_id="", protocols=c.protocols(), client_id="c0", session=10000)
    assert res.response["error_code"] == errors.MEMBER_ID_REQUIRED and res.response["member_id"]
    # Protocols the classic members do not all support are refused, and so is another protocol type.
    final = run(h, [a, b, c])
    assert set(final) == {("t", p) for p in range(4)} and len(set(final.values())) == 3
    bad = h.answer(h.join(member_id="", protocols=[("roundrobin", subscription(["t"]))], version=3))
    assert bad["error_code"] == errors.INCONSISTENT_GROUP_PROTOCOL
    other = h.answer(h.join(member_id="", protocol_type="connect", version=3))
    assert other["error_code"] == errors.INCONSISTENT_GROUP_PROTOCOL
    # Its session is its own: without heartbeats it is fenced after 10 s, not 45.
    h.advance(10_001)
    assert c.member_id not in h.group().members and "k1" in h.group().members


def test_migration_policy():
    h = MigrationHarness(policy="disabled")
    classic_group(h)
    resp = Client(h, "k1").step()
    assert resp["error_code"] == errors.GROUP_ID_NOT_FOUND and "upgrade is disabled" in resp["error_message"]
    assert h.group().group_type == "classic"
    h = MigrationHarness(policy="downgrade")
    classic_group(h)
    assert Client(h, "k1").step()["error_code"] == errors.GROUP_ID_NOT_FOUND
    # Disabled: a classic member cannot join a consumer group with members either.
    h = MigrationHarness(policy="disabled")
    run(h, [Client(h, "k1")], steps=2)
    res = h.join(member_id="", version=3)
    assert h.answer(res)["error_code"] == errors.INCONSISTENT_GROUP_PROTOCOL


def test_embedded_consumer_protocol_golden_and_truncated():
    # Version 0: int16 version, [topic: string, partitions: [int32]], user data (null).
    raw = bytes.fromhex("0000" "00000001" "0001" "74" "00000002" "00000000" "00000001" "ffffffff")
    assert encode_assignment({"t": [1, 0]}, 0) == raw
    assert decode_assignment(raw) == ({"t": [0, 1]}, None)
    assert decode_assignment(b"") == ({}, None)
    sub = subscription(["t", "u"], {"t": {2}}, version=1)
    from odradek.protocol.consumer_protocol import decode_subscription, subscription_version
    assert decode_subscription(sub) == {"topics": ["t", "u"], "owned_partitions": {"t": [2]},
                                        "rack_id": None, "user_data": None}
    assert subscription_version(sub) == 1
    # A newer version reads as version 3; a negative one, or cut bytes, are malformed.
    assert decode_assignment(b"\x00\x07" + encode_assignment({"t": [0]}, 3)[2:]) == ({"t": [0]}, None)
    for bad in (b"\xff\xff" + raw[2:], *(raw[:i] for i in range(1, len(raw)))):
        try:
            decode_assignment(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad.hex()} decoded")


def test_the_last_consumer_protocol_member_leaving_downgrades_the_group():
    h = MigrationHarness()
    classic, _ = classic_group(h)
    new = Client(h, "k1")
    run(h, classic + [new])
    g = h.group()
    epoch = g.group_epoch
    targets = {c.member_id: {h.name(t): sorted(ps) for t, ps in g.target[c.member_id].items()} for c in classic}
    # (With offsets, the group is an empty classic group for a moment in the replay: the rebalance still comes.)
    assert h.commit(classic[0].member_id, classic[0].generation, {("t", 0): 1}, version=8) == [0]
    assert new.leave()["error_code"] == 0
    cg = h.group()
    assert cg.group_type == "classic" and cg.generation == epoch and cg.leader_id is None
    assert cg.protocol_name == "range" and cg.protocol_type == "consumer"
    # Each member was given its target assignment, in its subscription's version.
    assert {mid: decode_assignment(m.assignment)[0] for mid, m in cg.members.items()} == targets
    # Then a rebalance: the members join again and the leader assigns as classic groups do.
    h.advance(0)
    assert cg.state == "PreparingRebalance"
    # DescribeGroups shows the assignments while rebalancing, without metadata (as Kafka 4.4).
    d = h.sm.describe_group("g", 5)
    assert d["group_state"] == "PreparingRebalance" and d["protocol_data"] == ""
    assert {m["member_id"]: decode_assignment(m["member_assignment"])[0] for m in d["members"]} == targets
    assert all(m["member_metadata"] == b"" for m in d["members"])
    for c in classic:
        assert h.heartbeat(c.member_id, c.generation) in (errors.REBALANCE_IN_PROGRESS, errors.ILLEGAL_GENERATION)
    joins = [h.join(member_id=c.member_id, protocols=c.protocols(), client_id=c.name, session=10000)
             for c in classic]
    answers = [h.answer(j) for j in joins]
    assert all(a is not None and a["error_code"] == 0 for a in answers), answers
    assert {a["generation_id"] for a in answers} == {epoch + 1}
    leader = answers[0]["leader"]
    assert leader in {c.member_id for c in classic}
    plan = {c.member_id: {"t": [2 * i, 2 * i + 1]} for i, c in enumerate(classic)}
    syncs = [h.sync(c.member_id, epoch + 1, [(m, encode_assignment(p)) for m, p in plan.items()]
                    if c.member_id == leader else ()) for c in classic]
    assert [decode_assignment(h.answer(s)["assignment"])[0] for s in syncs] == list(plan.values())
    assert cg.state == "Stable"
    again = GroupShard(h.sm.config, h.sm.consumer.config, h.topic_view)
    for key, value in h.log:
        again.replay(key, value, h.now)
    assert again.durable_view() == h.sm.durable_view()
    # Policy "upgrade" keeps the group a consumer group of classic members.
    h = MigrationHarness(policy="upgrade")
    classic, _ = classic_group(h)
    new = Client(h, "k1")
    run(h, classic + [new])
    new.leave()
    assert h.group().group_type == "consumer" and len(h.group().members) == 2
    final = run(h, classic)
    assert set(final) == {("t", p) for p in range(4)}


def test_a_static_classic_member_restarted_with_the_consumer_protocol_takes_its_place():
    """A rolling upgrade of static members: the classic instance stops without
    leaving, and comes back with the consumer protocol and the same instance
    id; it takes over at once (no UNRELEASED_INSTANCE_ID), with the partitions
    the classic instance held."""
    h = MigrationHarness()
    classic, gen = classic_group(h, static=True)
    k = Client(h, "k1", instance="i0")
    resp = k.step()
    assert resp["error_code"] == 0, resp
    g = h.group()
    assert g.group_type == "consumer" and g.static_members["i0"] == "k1"
    assert classic[0].member_id not in g.members
    assert k.owned == {"t": {0, 1}}, "the partitions the classic instance held"
    # The other classic member stays, and the group settles.
    final = run(h, [classic[1], k])
    assert set(final) == {("t", p) for p in range(4)}
    # A consumer-protocol member's instance id is not taken over while it is in use.
    other = Client(h, "k2", instance="i0")
    assert other.step()["error_code"] == errors.UNRELEASED_INSTANCE_ID


def test_the_last_consumer_protocol_instance_restarted_as_classic_downgrades_the_group():
    h = MigrationHarness()
    classic, _ = classic_group(h, static=True)
    k = Client(h, "k1", instance="i9")
    run(h, classic + [k])
    assert h.group().group_type == "consumer"
    # The i9 instance restarts as a classic consumer: the group becomes classic and rebalances.
    first = h.join(member_id="", instance_id="i9", protocols=[("range", subscription(["t"]))], session=10000)
    assert h.answer(first)["error_code"] == errors.REBALANCE_IN_PROGRESS
    g = h.group()
    assert g.group_type == "classic" and "k1" not in g.members and len(g.members) == 2
    again = h.join(member_id="", instance_id="i9", protocols=[("range", subscription(["t"]))], session=10000)
    h.advance(0)
    assert g.state == "PreparingRebalance" and h.answer(again) is None  # parked until the others join
    joins = [h.join(member_id=c.member_id, instance_id=f"i{i}", protocols=c.protocols(), session=10000)
             for i, c in enumerate(classic)]
    answers = [h.answer(j) for j in [again, *joins]]
    assert all(a is not None and a["error_code"] == 0 for a in answers), answers
    assert len({a["generation_id"] for a in answers}) == 1 and len(g.members) == 3


def test_a_classic_join_that_cannot_be_written_answers_coordinator_not_available():
    h = MigrationHarness()
    run(h, [Client(h, "k1")], steps=2)

    def refuse(records, now):
        raise OSError("the partition cannot be written")

    h.runner.write = refuse
    answer = h.answer(h.join(member_id="m-new", version=3))
    assert answer["error_code"] == errors.COORDINATOR_NOT_AVAILABLE and answer["member_id"] == "m-new"
    assert "m-new" not in h.group().members


def test_classic_members_must_join_and_sync_within_their_rebalance_timeout():
    """Kafka 4's join and sync timeouts: a classic member of a consumer group
    told to rebalance is fenced if it does not join within its rebalance
    timeout, although it keeps heartbeating; one that joined is fenced if it
    does not sync within it. Joining and syncing in time cancel them."""
    h = MigrationHarness()
    classic, gen = classic_group(h)  # rebalance timeout 5000 ms (the harness's JoinGroup)
    new = Client(h, "k1")
    new.step()
    c0, c1 = classic
    assert h.heartbeat(c0.member_id, gen) == errors.REBALANCE_IN_PROGRESS
    assert h.heartbeat(c1.member_id, gen) == errors.REBALANCE_IN_PROGRESS
    c1.must_join = True
    for _ in range(4):  # c0 heartbeats on but never joins; c1 joins and syncs
        h.advance(1000)
        assert h.heartbeat(c0.member_id, gen) == errors.REBALANCE_IN_PROGRESS
        c1.step()
        new.step()
    h.advance(1001)
    assert c0.member_id not in h.group().members, "fenced 5 s after it was first told to join"
    assert c1.member_id in h.group().members
    final = run(h, [c1, new])
    assert set(final) == {("t", p) for p in range(4)} and len(set(final.values())) == 2
    # A member that joins but never syncs is fenced too; one that syncs is not.
    late = ClassicClient(h, "c2")
    mid = h.answer(h.join(member_id="", protocols=late.protocols(), client_id="c2", session=10000))["member_id"]
    joined = h.answer(h.join(member_id=mid, protocols=late.protocols(), client_id="c2", session=10000))
    assert joined["error_code"] == 0
    for _ in range(5):
        h.advance(1000)
        h.heartbeat(mid, joined["generation_id"])
        c1.step()
        new.step()
    h.advance(1)
    assert mid not in h.group().members, "it joined but did not sync within 5 s"
    assert {c1.member_id, "k1"} <= set(h.group().members)
    # Replay knows nothing of these timers: they are the runtime's, as Kafka's are.
    again = GroupShard(h.sm.config, h.sm.consumer.config, h.topic_view)
    for key, value in h.log:
        again.replay(key, value, h.now)
    assert again.durable_view() == h.sm.durable_view()
