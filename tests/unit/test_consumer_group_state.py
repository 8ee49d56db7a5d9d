"""The KIP-848 consumer group state machine: joining, target assignment,
reconciliation through revocation, epochs and fencing, leaving, timeouts."""

from __future__ import annotations

import random
import time

from odradek.coordinator import records as rec
from odradek.coordinator.consumer_groups import (
    MEMBER_STABLE,
    UNRELEASED_PARTITIONS,
    UNREVOKED_PARTITIONS,
    ConsumerGroup,
)
from odradek.protocol import errors

from tests.unit.consumer_group_harness import Client, ConsumerHarness

ALL_T = {"t": {0, 1, 2, 3}}


def kinds(log) -> list[int]:
    return [rec.decode_key(key).kind if isinstance(rec.decode_key(key), rec.ConsumerKey) else -1
            for key, _ in log]


def owned_disjoint(clients) -> bool:
    seen = set()
    for c in clients:
        for t, ps in c.owned.items():
            for p in ps:
                if (t, p) in seen:
                    return False
                seen.add((t, p))
    return True


def server_disjoint(h, group="g") -> bool:
    g = h.group(group)
    if g is None:
        return True
    seen = set()
    for m in g.members.values():
        for tp in m.owned():
            if tp in seen:
                return False
            seen.add(tp)
    return set(g.partition_epochs) == seen


def test_first_member_joins_and_gets_everything():
    h = ConsumerHarness()
    resp = h.hb("a", 0)
    assert resp["error_code"] == 0 and resp["member_id"] == "a"
    assert resp["member_epoch"] == 1 and resp["heartbeat_interval_ms"] == 5000
    assert resp["assignment"] == ALL_T
    g = h.group()
    assert isinstance(g, ConsumerGroup) and g.state == "Stable"
    assert (g.group_epoch, g.assignment_epoch) == (1, 1)
    # member, topic metadata, group epoch, target (member + epoch), current assignment
    assert kinds(h.log) == [rec.CG_MEMBER_METADATA, rec.CG_PARTITION_METADATA, rec.CG_METADATA,
                            rec.CG_TARGET_MEMBER, rec.CG_TARGET_METADATA, rec.CG_CURRENT_ASSIGNMENT]
    # A plain heartbeat changes nothing and carries no assignment.
    before = len(h.log)
    resp = h.hb("a", 1)
    assert resp["error_code"] == 0 and resp["member_epoch"] == 1 and resp["assignment"] is None
    assert len(h.log) == before


def test_second_member_gets_partitions_only_after_the_first_revokes_them():
    h = ConsumerHarness()
    h.hb("a", 0)
    resp_b = h.hb("b", 0)
    g = h.group()
    assert g.group_epoch == 2 and g.assignment_epoch == 2 and g.state == "Reconciling"
    target_b = {h.name(t): set(ps) for t, ps in g.target["b"].items()}
    assert sum(map(len, target_b.get("t", set()) and [target_b["t"]])) == 2
    # b moves to the new epoch but gets nothing yet: a still owns its partitions.
    assert resp_b["member_epoch"] == 2 and resp_b["assignment"] == {}
    assert h.member("b").state == UNRELEASED_PARTITIONS
    # a is asked to revoke: it keeps its epoch and is told its reduced assignment.
    resp_a = h.hb("a", 1)
    kept = resp_a["assignment"]
    assert resp_a["member_epoch"] == 1 and sum(map(len, kept.values())) == 2
    assert h.member("a").state == UNREVOKED_PARTITIONS
    # Still owning the revoked partitions: no progress, for a or for b.
    assert h.hb("a", 1, owned=ALL_T)["member_epoch"] == 1
    assert h.hb("b", 2)["assignment"] is None
    assert h.member("b").assigned == {}
    assert server_disjoint(h)
    # a reports it gave them up: it moves to epoch 2, and b gets them.
    resp_a = h.hb("a", 1, owned=kept)
    assert resp_a["member_epoch"] == 2 and h.member("a").state == MEMBER_STABLE
    resp_b = h.hb("b", 2)
    assert resp_b["assignment"] == target_b and h.member("b").state == MEMBER_STABLE
    assert g.state == "Stable" and server_disjoint(h)
    assert set().union(*h.assigned("a").values(), *h.assigned("b").values()) == {0, 1, 2, 3}


def test_member_that_already_dropped_partitions_skips_revocation():
    h = ConsumerHarness()
    h.hb("a", 0)
    h.hb("b", 0)
    target_a = {h.name(t): set(ps) for t, ps in h.group().target["a"].items()}
    resp = h.hb("a", 1, owned=target_a)
    assert resp["member_epoch"] == 2 and resp["assignment"] == target_a


def test_epoch_checks_fence_members():
    h = ConsumerHarness()
    h.hb("a", 0)
    h.hb("b", 0)
    kept = h.hb("a", 1)["assignment"]
    h.hb("a", 1, owned=kept)  # a: epoch 2, previous 1
    assert h.member("a").member_epoch == 2
    assert h.hb("a", 3)["error_code"] == errors.FENCED_MEMBER_EPOCH
    # The previous epoch is accepted when the member owns nothing beyond its assignment
    # (the answer that moved it on was lost)...
    resp = h.hb("a", 1, owned=kept)
    assert resp["error_code"] == 0 and resp["member_epoch"] == 2
    # ...but not with partitions it no longer has, nor an older epoch.
    assert h.hb("a", 1, owned=ALL_T)["error_code"] == errors.FENCED_MEMBER_EPOCH
    assert h.hb("a", 1)["error_code"] == errors.FENCED_MEMBER_EPOCH  # owned unknown
    h.hb("c", 0)
    assert h.hb("zzz", 2)["error_code"] == errors.UNKNOWN_MEMBER_ID
    assert h.hb("a", 2, group="nope")["error_code"] == errors.GROUP_ID_NOT_FOUND


def test_requests_are_validated():
    h = ConsumerHarness()
    sm = h.sm

    def call(**kw):
        base = dict(group_id="g", member_id="m", member_epoch=0, rebalance_timeout_ms=1000,
                    subscribed_topic_names=["t"], topic_partitions=[], version=1)
        base.update(kw)
        return sm.consumer_group_heartbeat(h.now, **base).response

    assert call(member_id="")["error_code"] == errors.INVALID_REQUEST
    assert call(group_id="")["error_code"] == errors.INVALID_REQUEST
    assert call(rebalance_timeout_ms=-1)["error_code"] == errors.INVALID_REQUEST
    assert call(topic_partitions=None)["error_code"] == errors.INVALID_REQUEST
    assert call(subscribed_topic_names=None)["error_code"] == errors.INVALID_REQUEST
    assert call(instance_id="")["error_code"] == errors.INVALID_REQUEST
    assert call(member_epoch=-2)["error_code"] == errors.INVALID_REQUEST  # static leave needs an instance id
    assert call(member_epoch=-3)["error_code"] == errors.INVALID_REQUEST
    r = call(server_assignor="sticky")
    assert r["error_code"] == errors.UNSUPPORTED_ASSIGNOR and "uniform, range" in r["error_message"]
    assert call(subscribed_topic_regex="(unclosed")["error_code"] == errors.INVALID_REGULAR_EXPRESSION
    assert not h.sm.groups  # nothing was created
    # v0: the coordinator picks the member id.
    r = h.apply(sm.consumer_group_heartbeat(h.now, group_id="g", member_id="", member_epoch=0,
                                            rebalance_timeout_ms=1000, subscribed_topic_names=["t"],
                                            topic_partitions=[], version=0)).response
    assert r["error_code"] == 0 and len(r["member_id"]) == 36 and r["member_id"] in h.group().members


def test_leave_bumps_the_epoch_and_the_other_member_takes_all():
    h = ConsumerHarness()
    a, b = Client(h, "a"), Client(h, "b")
    for _ in range(4):
        a.step(), b.step()
    assert h.group().state == "Stable"
    epoch = h.group().group_epoch
    resp = b.leave()
    assert resp == dict(resp, error_code=0, member_id="b", member_epoch=-1)
    g = h.group()
    assert "b" not in g.members and g.group_epoch == epoch + 1 and g.state == "Assigning"
    assert a.step()["assignment"] == ALL_T
    assert g.state == "Stable" and g.assignment_epoch == epoch + 1
    # The last member leaving leaves an empty group.
    a.leave()
    assert g.state == "Empty" and not g.members and not g.target


def test_session_expiry_fences_the_member():
    h = ConsumerHarness(session_timeout_ms=3000)
    a, b = Client(h, "a"), Client(h, "b")
    for _ in range(4):
        a.step(), b.step()
    for _ in range(3):
        h.advance(1000)
        a.step()
    assert "b" not in h.group().members
    assert a.owned == ALL_T
    assert b.step()["error_code"] == errors.UNKNOWN_MEMBER_ID
    # b rejoins under the same id with epoch 0.
    for _ in range(4):
        b.step(), a.step()
    assert h.group().state == "Stable" and len(h.group().members) == 2


def test_revocation_timeout_fences_a_member_that_keeps_its_partitions():
    h = ConsumerHarness(session_timeout_ms=60000)
    a = Client(h, "a", lazy=10**6, rebalance=2000)
    a.step()
    b = Client(h, "b")
    b.step()
    a.step()
    assert h.member("a").state == UNREVOKED_PARTITIONS
    h.advance(1999)
    assert "a" in h.group().members
    h.advance(2)
    assert "a" not in h.group().members
    b.step()
    assert b.step()["error_code"] == 0 and b.owned == ALL_T


def test_static_member_leaves_for_now_and_comes_back_with_its_partitions():
    h = ConsumerHarness()
    s1 = Client(h, "s-1", instance="inst")
    other = Client(h, "o")
    for _ in range(4):
        s1.step(), other.step()
    mine = dict(s1.owned)
    epoch = h.group().group_epoch
    resp = h.hb("s-1", -2, instance="inst")
    assert resp["error_code"] == 0 and resp["member_epoch"] == -2
    g = h.group()
    assert h.member("s-1").member_epoch == -2 and h.assigned("s-1") == mine
    assert g.group_epoch == epoch  # no rebalance: its partitions wait for it
    # The instance id is still held: another member cannot take it while it is active...
    s2 = Client(h, "s-2", instance="inst")
    resp = s2.step()
    assert resp["error_code"] == 0 and resp["assignment"] == mine  # released by -2: taken over
    assert "s-1" not in g.members and g.static_members["inst"] == "s-2"
    assert resp["member_epoch"] == g.assignment_epoch
    # ...and a third one is refused while s-2 is there.
    assert h.hb("s-3", 0, instance="inst")["error_code"] == errors.UNRELEASED_INSTANCE_ID
    assert h.hb("s-1", 3, instance="inst")["error_code"] == errors.FENCED_INSTANCE_ID
    assert h.hb("x", 3, instance="nobody")["error_code"] == errors.UNKNOWN_MEMBER_ID
    # A static member leaving for good (-1) is removed at once.
    assert h.hb("s-2", -1, instance="inst")["member_epoch"] == -1
    assert "s-2" not in g.members and "inst" not in g.static_members


def test_static_member_away_too_long_is_fenced():
    h = ConsumerHarness(session_timeout_ms=3000)
    s1 = Client(h, "s-1", instance="inst")
    s1.step()
    h.hb("s-1", -2, instance="inst")
    h.advance(3001)
    assert not h.group().members and h.group().state == "Empty"


def test_group_max_size_and_assignor_choice():
    h = ConsumerHarness(max_size=1)
    assert h.hb("a", 0)["error_code"] == 0
    assert h.hb("b", 0)["error_code"] == errors.GROUP_MAX_SIZE_REACHED
    h = ConsumerHarness(topics={"t": 4, "u": 4})
    a = Client(h, "a", topics=["t", "u"], assignor="range")
    b = Client(h, "b", topics=["t", "u"], assignor="range")
    for _ in range(4):
        a.step(), b.step()
    # range: the same partition numbers of both topics for each member.
    assert a.owned["t"] == a.owned["u"] and b.owned["t"] == b.owned["u"]
    assert a.owned["t"] | b.owned["t"] == {0, 1, 2, 3}
    d = h.sm.consumer_group_describe(["g"])[0]
    assert d["assignor_name"] == "range" and d["group_state"] == "Stable"


def test_topic_metadata_changes_rebalance():
    h = ConsumerHarness(topics={"t": 2})
    a = Client(h, "a", topics=["t", "v"])
    a.step()
    assert a.owned == {"t": {0, 1}}
    epoch = h.group().group_epoch
    h.set_topic("t", 3)
    h.set_topic("v", 1)
    a.step()
    assert h.group().group_epoch == epoch + 1
    assert a.owned == {"t": {0, 1, 2}, "v": {0}}
    del h.topic_view.topics["v"]
    a.step()
    assert a.owned == {"t": {0, 1, 2}}


def test_regex_subscription_follows_new_topics():
    h = ConsumerHarness(topics={"t": 1, "tx": 1, "u": 1}, regex_refresh_ms=1000)
    resp = h.hb("a", 0, topics=None, regex="t.*")
    assert resp["assignment"] == {"t": {0}, "tx": {0}}
    assert h.group().resolved_regexes == {"t.*": frozenset({"t", "tx"})}
    h.set_topic("ty", 2)
    assert h.hb("a", 1, owned=resp["assignment"])["assignment"] is None  # not refreshed yet
    h.now += 1000
    resp = h.hb("a", 1, owned={"t": {0}, "tx": {0}})
    assert resp["assignment"] == {"t": {0}, "tx": {0}, "ty": {0, 1}}
    # Switching to a topic list drops the resolved regex.
    resp = h.hb("a", resp["member_epoch"], topics=["u"], regex="", owned=resp["assignment"])
    g = h.group()
    assert g.resolved_regexes == {} and g.subscribed_topics() == {"u"}


def test_regex_matches_internal_topics_as_kafka_does():
    # Kafka's coordinator matches a regex against every topic name, internal
    # ones included (only ACLs hide topics from it).
    h = ConsumerHarness(topics={"__consumer_offsets": 3, "orders": 1, "orders-v2": 1})
    resp = h.hb("a", 0, topics=None, regex="orders|__consumer_offsets")
    assert resp["error_code"] == 0
    assert resp["assignment"] == {"__consumer_offsets": {0, 1, 2}, "orders": {0}}
    assert h.group().resolved_regexes == {"orders|__consumer_offsets":
                                          frozenset({"__consumer_offsets", "orders"})}


def test_regex_is_read_with_re2j_syntax():
    h = ConsumerHarness(topics={"a.b": 1, "axb": 1, "t1": 1, "u": 1})
    # RE2/J syntax that Python's re does not know.
    resp = h.hb("a", 0, topics=None, regex=r"\Qa.b\E|t\pN\z")
    assert resp["error_code"] == 0 and resp["assignment"] == {"a.b": {0}, "t1": {0}}
    # `{,2}` is literal text in RE2/J, a repetition in Python's re.
    resp = h.hb("b", 0, group="g2", topics=None, regex="u{,2}")
    assert resp["error_code"] == 0 and resp["assignment"] == {}


def test_regex_outside_re2j_is_invalid_regular_expression():
    h = ConsumerHarness()
    cases = {
        r"(?=t)t": "invalid or unsupported Perl syntax",  # lookahead
        r"(t)\1": "invalid escape sequence",  # backreference
        r"t++": "invalid nested repetition operator",  # possessive
        r"(?>t)": "invalid or unsupported Perl syntax",  # atomic group
        r"t\Z": "invalid escape sequence",
        r"t\C": "invalid escape sequence",  # any byte: RE2 has it, RE2/J not
        r"t{1001}": "invalid repeat count",
        "(t": "missing closing )",
        "[t": "missing closing ]",
    }
    for pattern, description in cases.items():
        r = h.sm.consumer_group_heartbeat(
            h.now, group_id="g", member_id="m", member_epoch=0, rebalance_timeout_ms=1000,
            subscribed_topic_names=None, subscribed_topic_regex=pattern, topic_partitions=[],
            version=1).response
        assert r["error_code"] == errors.INVALID_REGULAR_EXPRESSION == 128, pattern
        assert r["error_message"] == (f"SubscribedTopicRegex `{pattern}` is not a valid regular "
                                      f"expression: {description}."), pattern
    assert not h.sm.groups
    # \C inside \Q...\E is literal text.
    assert h.hb("a", 0, topics=None, regex=r"\Qt\C\E|t")["error_code"] == 0


def test_regex_matching_cannot_backtrack():
    # Python's re needs minutes for this pattern on this name; RE2 is linear.
    name = "a" * 30 + "b"
    h = ConsumerHarness(topics={name: 1, "a" * 30: 1})
    start = time.monotonic()
    resp = h.hb("a", 0, topics=None, regex="(a+)+")
    assert time.monotonic() - start < 5
    assert resp["assignment"] == {"a" * 30: {0}}


def test_offset_commit_and_fetch_check_the_member_epoch():
    h = ConsumerHarness()
    h.hb("a", 0)
    assert h.commit("a", 1, {("t", 0): 5}) == [0]
    assert h.commit("a", 2, {("t", 0): 6}) == [errors.STALE_MEMBER_EPOCH]
    assert h.commit("zz", 1, {("t", 0): 6}) == [errors.UNKNOWN_MEMBER_ID]
    assert h.commit("a", 1, {("t", 0): 6}, version=8) == [errors.UNSUPPORTED_VERSION]
    assert h.commit("", -1, {("t", 0): 6}) == [errors.UNKNOWN_MEMBER_ID]  # not empty: members only
    sm = h.sm
    assert sm.fetch_offsets("g", [("t", [0])], member_id="a", member_epoch=1)["topics"][0]["partitions"][0][
        "committed_offset"] == 5
    assert sm.fetch_offsets("g", None, member_id="a", member_epoch=0)["error_code"] == errors.STALE_MEMBER_EPOCH
    assert sm.fetch_offsets("g", None, member_id="b", member_epoch=1)["error_code"] == errors.UNKNOWN_MEMBER_ID
    assert sm.fetch_offsets("g", None)["error_code"] == 0  # admin: no member
    h.hb("a", -1)
    assert h.commit("", -1, {("t", 0): 7}) == [0]  # empty group: anyone may commit


def test_invariants_under_random_churn():
    """Clients that join, leave, die and revoke slowly never own a partition
    at the same time, and the group settles with every partition assigned."""
    rng = random.Random(848)
    for round_ in range(20):
        h = ConsumerHarness(topics={"t": rng.randint(1, 8), "u": rng.randint(1, 5)},
                            session_timeout_ms=5000)
        clients: list[Client] = []
        for step in range(60):
            if rng.random() < 0.15 or not clients:
                topics = rng.choice([["t"], ["u"], ["t", "u"]])
                clients.append(Client(h, f"m{step}", topics=topics, lazy=rng.randint(0, 2),
                                      assignor=rng.choice([None, "uniform", "range"]),
                                      rebalance=3000))
            alive = [c for c in clients if c.alive]
            if alive and rng.random() < 0.05:
                rng.choice(alive).leave()
            if alive and rng.random() < 0.03:
                rng.choice(alive).alive = False  # dies: its session will expire
            for c in clients:
                if c.alive and rng.random() < 0.8:
                    c.step()
                    assert owned_disjoint([x for x in clients if x.alive]), (round_, step)
            h.advance(rng.randint(0, 400))
            assert server_disjoint(h), (round_, step)
        # Let the dead expire and the living settle.
        for _ in range(40):
            h.advance(300)
            for c in clients:
                if c.alive:
                    c.step()
        g = h.group()
        alive = [c for c in clients if c.alive]
        assert set(g.members) == {c.member_id for c in alive}
        if alive:
            assert g.state == "Stable", round_
            subscribed = set().union(*(c.topics for c in alive))
            owned = {(t, p) for c in alive for t, ps in c.owned.items() for p in ps}
            expected = {(t, p) for t in subscribed for p in range(h.topic_view.get(t)[1])}
            assert owned == expected, round_
            assert owned_disjoint(alive)
