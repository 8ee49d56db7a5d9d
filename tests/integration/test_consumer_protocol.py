"""KIP-848 consumer groups with librdkafka (confluent-kafka, ``group.protocol=consumer``)
against an in-process broker, plus raw requests for what clients do not show.

Brokers here use a 300 ms consumer-group heartbeat interval (the server tells
the clients how often to heartbeat), so assignments settle in about a second.
"""

from __future__ import annotations

import time

import pytest

from odradek.embedded import EmbeddedBroker
from tests.integration.rawclient import RawClient
from tests.integration.test_groups import BROKER_CONFIG as CLASSIC_CONFIG
from tests.integration.test_groups import create_topic, produce
from tests.integration.waiting import wait_until

BROKER_CONFIG = dict(CLASSIC_CONFIG, **{
    "group.consumer.heartbeat.interval.ms": "300",
    "group.consumer.session.timeout.ms": "6000",
})

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def broker():
    with EmbeddedBroker(config=BROKER_CONFIG) as b:
        yield b


def consumer(b, group, **extra):
    from confluent_kafka import Consumer

    conf = {"bootstrap.servers": b.bootstrap, "group.id": group, "group.protocol": "consumer",
            "auto.offset.reset": "earliest", "enable.auto.commit": False}
    conf.update(extra)
    return Consumer(conf)


def cgroup(b, group):
    """(state, group epoch, assignment epoch, {member id: (epoch, {topic: partitions})})."""
    async def read():
        g = b.core.groups.group(group)
        if g is None or not hasattr(g, "group_epoch"):
            return None
        names = {t.topic_id: t.name for t in b.core.replicas.topics.values()}
        return g.state, g.group_epoch, g.assignment_epoch, {
            m.member_id: (m.member_epoch, {names.get(tid): sorted(ps) for tid, ps in m.assigned.items()})
            for m in g.members.values()}
    return b.call(read)


class Polled:
    """Round-robin polling of consumers, committing what each consumed."""

    def __init__(self, consumers, batch=500):
        self.consumers = consumers
        self.batch = batch
        self.got = {id(c): [] for c in consumers}
        self.dirty: set[int] = set()

    def step(self):
        from confluent_kafka import KafkaException

        for c in self.consumers:
            msgs = [m for m in c.consume(num_messages=self.batch, timeout=0.05) if m.error() is None]
            if msgs:
                self.got[id(c)].extend(msgs)
                self.dirty.add(id(c))
            if id(c) in self.dirty:
                try:
                    c.commit(asynchronous=False)
                    self.dirty.discard(id(c))
                except KafkaException:
                    pass  # epoch moving on: commit again on the next step

    def values(self, c=None):
        cs = [c] if c is not None else self.consumers
        return [m.value() for x in cs for m in self.got[id(x)]]


def parts(c) -> set:
    return {(tp.topic, tp.partition) for tp in c.assignment()}


def test_two_members_split_four_partitions_without_duplicates(broker):
    from confluent_kafka.admin import AdminClient

    create_topic(broker, "cp-split")
    a, b = consumer(broker, "g-cp-split"), consumer(broker, "g-cp-split")
    a.subscribe(["cp-split"])
    b.subscribe(["cp-split"])
    poll = Polled([a, b])
    try:
        wait_until(lambda: len(parts(a)) == 2 and len(parts(b)) == 2
                   and cgroup(broker, "g-cp-split")[0] == "Stable", step=poll.step, what="2+2 split")
        assert not parts(a) & parts(b)
        values = produce(broker, "cp-split", 200)
        wait_until(lambda: len(poll.values()) >= 200, step=poll.step, what="all messages")
        for _ in range(3):
            poll.step()
        assert sorted(poll.values()) == sorted(values), "duplicates or losses within the group"
        for c in (a, b):
            assert {("cp-split", m.partition()) for m in poll.got[id(c)]} <= parts(c)
        state, epoch, assignment_epoch, members = cgroup(broker, "g-cp-split")
        assert epoch == assignment_epoch and all(e == epoch for e, _ in members.values())

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        desc = admin.describe_consumer_groups(["g-cp-split"])["g-cp-split"].result(10)
        assert str(desc.type).endswith("CONSUMER") and str(desc.state).endswith("STABLE")
        assert desc.partition_assignor == "uniform" and len(desc.members) == 2
        listed = admin.list_consumer_groups().result(10).valid
        assert [str(g.type) for g in listed if g.group_id == "g-cp-split"][0].endswith("CONSUMER")
    finally:
        a.close()
        b.close()
    assert cgroup(broker, "g-cp-split")[0] == "Empty"


def test_member_leaves_and_the_other_takes_all(broker):
    create_topic(broker, "cp-leave")
    a, b = consumer(broker, "g-cp-leave"), consumer(broker, "g-cp-leave")
    a.subscribe(["cp-leave"])
    b.subscribe(["cp-leave"])
    poll = Polled([a, b])
    try:
        wait_until(lambda: len(parts(a)) == 2 and len(parts(b)) == 2, step=poll.step, what="2+2 split")
        first = produce(broker, "cp-leave", 40)
        wait_until(lambda: len(poll.values()) >= 40, step=poll.step, what="first batch")
        epoch_before = cgroup(broker, "g-cp-leave")[1]
        b.close()
        rest = Polled([a])
        wait_until(lambda: len(parts(a)) == 4, step=rest.step, what="takeover")
        state, epoch, _, members = cgroup(broker, "g-cp-leave")
        assert len(members) == 1 and epoch > epoch_before
        second = produce(broker, "cp-leave", 60, start=40)
        wait_until(lambda: len(rest.values()) >= 60, step=rest.step, what="second batch")
        assert sorted(poll.values()) == sorted(first)
        assert sorted(rest.values()) == sorted(second)
    finally:
        a.close()


def test_offsets_committed_and_resumed(broker):
    from confluent_kafka import TopicPartition

    create_topic(broker, "cp-resume")
    values = produce(broker, "cp-resume", 100)
    c = consumer(broker, "g-cp-resume")
    c.subscribe(["cp-resume"])
    first = Polled([c], batch=10)
    wait_until(lambda: len(first.values()) >= 40, step=first.step, what="first part")
    committed = c.committed([TopicPartition("cp-resume", i) for i in range(4)], timeout=10)
    c.close()
    seen = first.values()
    assert sum(max(tp.offset, 0) for tp in committed) == len(seen)
    c2 = consumer(broker, "g-cp-resume")
    c2.subscribe(["cp-resume"])
    second = Polled([c2])
    wait_until(lambda: len(seen) + len(second.values()) >= 100, step=second.step, what="the rest")
    for _ in range(5):
        second.step()
    c2.close()
    assert not set(seen) & set(second.values()), "repeated messages"
    assert sorted(seen + second.values()) == sorted(values), "gap"


def test_regex_subscription_and_range_assignor(broker):
    create_topic(broker, "cp-rx-a", 2)
    create_topic(broker, "cp-rx-b", 2)
    create_topic(broker, "cp-other", 2)
    a = consumer(broker, "g-cp-rx", **{"group.remote.assignor": "range"})
    b = consumer(broker, "g-cp-rx", **{"group.remote.assignor": "range"})
    a.subscribe(["^cp-rx-.*"])
    b.subscribe(["^cp-rx-.*"])
    poll = Polled([a, b])
    try:
        # range: each member gets one partition of each topic.
        wait_until(lambda: len(parts(a)) == 2 and len(parts(b)) == 2, step=poll.step, what="range split")
        assert {t for t, _ in parts(a)} == {"cp-rx-a", "cp-rx-b"} == {t for t, _ in parts(b)}
        assert {p for _, p in parts(a)} | {p for _, p in parts(b)} == {0, 1}
        values = produce(broker, "cp-rx-a", 20, partitions=2) + produce(broker, "cp-rx-b", 20, partitions=2)
        produce(broker, "cp-other", 10, partitions=2)
        wait_until(lambda: len(poll.values()) >= 40, step=poll.step, what="regex topics")
        for _ in range(3):
            poll.step()
        assert sorted(poll.values()) == sorted(values)
        rc = RawClient(broker.bootstrap)
        try:
            g = rc.request("ConsumerGroupDescribe", 0, {"group_ids": ["g-cp-rx"],
                                                        "include_authorized_operations": False})["groups"][0]
        finally:
            rc.close()
        assert g["error_code"] == 0 and g["assignor_name"] == "range" and g["group_state"] == "Stable"
        assert {m["subscribed_topic_regex"] for m in g["members"]} == {"(^cp-rx-.*)"}  # as librdkafka sends it
    finally:
        a.close()
        b.close()


def test_regex_is_resolved_as_kafka_does(broker):
    # Kafka matches a broker-side regex (RE2/J syntax) against every topic,
    # internal ones included.
    for name in ("cp-re2-orders", "cp-re2.x", "cp-re2-x"):
        create_topic(broker, name, 2)
    rc = RawClient(broker.bootstrap)
    try:
        rc.request("FindCoordinator", 3, {"key": "g-cp-re2", "key_type": 0})
    finally:
        rc.close()
    wait_until(lambda: "__consumer_offsets" in broker.core.replicas.topics, what="__consumer_offsets")
    values = produce(broker, "cp-re2-orders", 10, partitions=2) + produce(broker, "cp-re2.x", 10, partitions=2)
    produce(broker, "cp-re2-x", 10, partitions=2)
    c = consumer(broker, "g-cp-re2")
    c.subscribe([r"^(__consumer_offsets|cp-re2-orders|\Qcp-re2.x\E)$"])
    poll = Polled([c])
    try:
        wait_until(lambda: {t for t, _ in parts(c)} == {"__consumer_offsets", "cp-re2-orders", "cp-re2.x"},
                   step=poll.step, what="the regex's topics")
        assert {p for t, p in parts(c) if t == "__consumer_offsets"} == {0, 1, 2, 3}
        wait_until(lambda: set(values) <= set(poll.values()), step=poll.step, what="their records")
        assert not {m.topic() for m in poll.got[id(c)]} - {"__consumer_offsets", "cp-re2-orders", "cp-re2.x"}
    finally:
        c.close()


def test_regex_outside_re2j_is_refused(broker):
    # librdkafka and Python's re take \Z (end of text); RE2/J, and so the
    # coordinator, do not.
    create_topic(broker, "cp-bad-oo", 1)
    c = consumer(broker, "g-cp-bad")
    c.subscribe([r"^cp-bad-oo\Z"])
    failures = []

    def step():
        failures.extend(m.error() for m in c.consume(10, timeout=0.1) if m.error() is not None)

    try:
        wait_until(lambda: failures, step=step, what="the heartbeat's error")
        assert "regular expression is not valid" in failures[0].str()
        assert not parts(c)
    finally:
        c.close()
    assert cgroup(broker, "g-cp-bad") is None


def test_classic_and_consumer_groups_coexist(broker):
    create_topic(broker, "cp-mixed")
    c = consumer(broker, "g-cp-mixed")
    c.subscribe(["cp-mixed"])
    poll = Polled([c])
    rc = RawClient(broker.bootstrap)
    try:
        wait_until(lambda: len(parts(c)) == 4, step=poll.step, what="assignment")
        rc.request("OffsetCommit", 8, {"group_id": "g-classic-simple", "generation_id_or_member_epoch": -1,
                                       "member_id": "", "topics": [{"name": "cp-mixed", "partitions": [
                                           {"partition_index": 0, "committed_offset": 1}]}]})
        # A classic member may join a consumer group (online migration), but not
        # with a subscription that does not decode.
        join = rc.request("JoinGroup", 5, {
            "group_id": "g-cp-mixed", "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000,
            "member_id": "", "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": b""}]})
        assert join["error_code"] == 79 and join["member_id"]  # MEMBER_ID_REQUIRED
        join = rc.request("JoinGroup", 5, {
            "group_id": "g-cp-mixed", "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000,
            "member_id": join["member_id"], "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": b""}]})
        assert join["error_code"] == 23  # INCONSISTENT_GROUP_PROTOCOL
        listed = rc.request("ListGroups", 5, {"states_filter": [], "types_filter": []})["groups"]
        kinds = {g["group_id"]: (g["group_type"], g["protocol_type"], g["group_state"]) for g in listed}
        assert kinds["g-cp-mixed"] == ("consumer", "consumer", "Stable")
        assert kinds["g-classic-simple"] == ("classic", "", "Empty")
        only = rc.request("ListGroups", 5, {"states_filter": [], "types_filter": ["consumer"]})["groups"]
        assert [g["group_id"] for g in only] == ["g-cp-mixed"]
        old = rc.request("DescribeGroups", 5, {"groups": ["g-cp-mixed"]})["groups"][0]
        assert old["error_code"] == 0 and old["group_state"] == "Dead"
        new = rc.request("DescribeGroups", 6, {"groups": ["g-cp-mixed"]})["groups"][0]
        assert new["error_code"] == 69 and "not a classic group" in new["error_message"]
        described = rc.request("ConsumerGroupDescribe", 1, {"group_ids": ["g-cp-mixed", "g-classic-simple",
                                                                         "nope"]})["groups"]
        assert [g["error_code"] for g in described] == [0, 69, 69]
        assert described[0]["members"][0]["member_type"] == 1
        assert sum(len(t["partitions"]) for t in described[0]["members"][0]["assignment"]["topic_partitions"]) == 4
        # A consumer-protocol heartbeat for a classic group that is not empty is refused;
        # for an empty one, the group turns into a consumer group and keeps its offsets.
        hb = rc.request("ConsumerGroupHeartbeat", 1, {
            "group_id": "g-classic-simple", "member_id": "raw-member", "member_epoch": 0,
            "rebalance_timeout_ms": 5000, "subscribed_topic_names": ["cp-mixed"], "topic_partitions": []})
        assert hb["error_code"] == 0 and hb["member_epoch"] == 1
        assert len(hb["assignment"]["topic_partitions"][0]["partitions"]) == 4
        fetched = rc.request("OffsetFetch", 9, {"groups": [{"group_id": "g-classic-simple", "member_id": "raw-member",
                                                            "member_epoch": 1, "topics": None}]})["groups"][0]
        assert fetched["error_code"] == 0 and fetched["topics"][0]["partitions"][0]["committed_offset"] == 1
        stale = rc.request("OffsetFetch", 9, {"groups": [{"group_id": "g-classic-simple", "member_id": "raw-member",
                                                          "member_epoch": 7, "topics": None}]})["groups"][0]
        assert stale["error_code"] == 113  # STALE_MEMBER_EPOCH
        left = rc.request("ConsumerGroupHeartbeat", 1, {"group_id": "g-classic-simple", "member_id": "raw-member",
                                                        "member_epoch": -1})
        assert left["error_code"] == 0 and left["member_epoch"] == -1
    finally:
        rc.close()
        c.close()


def test_consumer_group_survives_a_restart(tmp_path):
    from confluent_kafka import TopicPartition

    def view(b):
        async def read():
            return {k: v for k, v in b.core.groups.durable_view().items() if k == "g-cp-restart"}
        return b.call(read)

    with EmbeddedBroker(data_dir=str(tmp_path), config=BROKER_CONFIG) as b:
        create_topic(b, "cp-restart")
        produce(b, "cp-restart", 40)
        c = consumer(b, "g-cp-restart", **{"group.instance.id": "static-1"})
        c.subscribe(["cp-restart"])
        poll = Polled([c])
        wait_until(lambda: len(poll.values()) >= 40 and not poll.dirty, step=poll.step, what="consumed")
        committed = c.committed([TopicPartition("cp-restart", i) for i in range(4)], timeout=10)
        assert sum(tp.offset for tp in committed) == 40
        member_id = next(iter(cgroup(b, "g-cp-restart")[3]))
        c.close()  # a static member leaves "for now" (epoch -2) and keeps its partitions
        wait_until(lambda: cgroup(b, "g-cp-restart")[3][member_id][0] == -2, what="static leave")
        before = view(b)
    with EmbeddedBroker(data_dir=str(tmp_path), config=BROKER_CONFIG) as b:
        after = view(b)
        assert after == before
        g = after["g-cp-restart"]
        assert len(g["members"]) == 1 and sum(v.offset for v in g["offsets"].values()) == 40
        # The instance comes back under a new member id and gets its partitions back.
        c = consumer(b, "g-cp-restart", **{"group.instance.id": "static-1"})
        c.subscribe(["cp-restart"])
        poll = Polled([c])
        try:
            wait_until(lambda: len(parts(c)) == 4, step=poll.step, what="rejoin")
            members = cgroup(b, "g-cp-restart")[3]
            assert list(members) != [member_id] and len(members) == 1
            produce(b, "cp-restart", 8, start=40)
            wait_until(lambda: len(poll.values()) >= 8, step=poll.step, what="new messages only")
            assert sorted(poll.values()) == sorted(f"m{i}".encode() for i in range(40, 48))
        finally:
            c.close()


def test_silent_member_is_fenced_by_the_runtime_timer():
    config = dict(BROKER_CONFIG, **{"group.consumer.session.timeout.ms": "800"})
    with EmbeddedBroker(config=config) as b:
        create_topic(b, "cp-silent")
        rc = RawClient(b.bootstrap)
        try:
            join = {"group_id": "g-cp-silent", "member_epoch": 0, "rebalance_timeout_ms": 5000,
                    "subscribed_topic_names": ["cp-silent"], "topic_partitions": []}
            a = rc.request("ConsumerGroupHeartbeat", 1, dict(join, member_id="a"))
            assert a["member_epoch"] == 1 and a["heartbeat_interval_ms"] == 300
            bb = rc.request("ConsumerGroupHeartbeat", 1, dict(join, member_id="b"))
            assert bb["member_epoch"] == 2 and bb["assignment"]["topic_partitions"] == []  # a still owns them
            # b keeps heartbeating; a falls silent and is fenced after its session: b gets everything.
            state = {"epoch": 2, "assignment": []}

            def heartbeat_b():
                r = rc.request("ConsumerGroupHeartbeat", 1, {"group_id": "g-cp-silent", "member_id": "b",
                                                             "member_epoch": state["epoch"]})
                assert r["error_code"] == 0
                state["epoch"] = r["member_epoch"]
                if r["assignment"] is not None:
                    state["assignment"] = r["assignment"]["topic_partitions"]
                time.sleep(0.1)

            wait_until(lambda: state["assignment"], timeout=10, step=heartbeat_b, what="takeover")
            assert "a" not in cgroup(b, "g-cp-silent")[3] and state["epoch"] == 3
            assert sorted(state["assignment"][0]["partitions"]) == [0, 1, 2, 3]
            gone = rc.request("ConsumerGroupHeartbeat", 1, {"group_id": "g-cp-silent", "member_id": "a",
                                                            "member_epoch": 1})
            assert gone["error_code"] == 25  # UNKNOWN_MEMBER_ID: it must rejoin
        finally:
            rc.close()


def _rolling_switch(broker, topic, group, strategy, old, new, static=False):
    """Two ``old``-protocol consumers, then one ``new``-protocol consumer joins;
    then each old one leaves and a new one comes (``static``: with the
    instance id of the one it replaces, as a restart), while records are
    produced and consumed. Returns what the group was described as along the way."""
    from confluent_kafka.admin import AdminClient

    create_topic(broker, topic)
    classic_conf = {"partition.assignment.strategy": strategy, "session.timeout.ms": 6000,
                    "heartbeat.interval.ms": 200}

    instances = iter(range(100))

    def member(protocol, instance=None):
        conf = {"group.protocol": "classic", **classic_conf} if protocol == "classic" else \
            {"group.protocol": "consumer"}
        if static:
            conf["group.instance.id"] = instance or f"{group}-{next(instances)}"
        return consumer(broker, group, **conf)

    olds = [member(old) for _ in range(2)]
    for c in olds:
        c.subscribe([topic])
    members = list(olds)
    poll = Polled(members)
    expected = []
    seen = []

    def split(n):
        owned = [parts(c) for c in members]
        return (len(members) == n and all(owned) and sum(map(len, owned)) == 4
                and len(set().union(*owned)) == 4)

    def consumed():  # by every member, those that left too
        return {m.value() for got in poll.got.values() for m in got}

    def produce_more(count):
        expected.extend(produce(broker, topic, count, start=len(expected)))
        wait_until(lambda: consumed() >= set(expected), step=poll.step, what="every record")

    def join(protocol, instance=None):
        c = member(protocol, instance)
        c.subscribe([topic])
        members.append(c)
        poll.got[id(c)] = []

    def described():
        rc = RawClient(broker.bootstrap)
        try:
            listed = rc.request("ListGroups", 5, {"states_filter": [], "types_filter": []})["groups"]
            kind = [x["group_type"] for x in listed if x["group_id"] == group][0]
            if kind == "consumer":
                d = rc.request("ConsumerGroupDescribe", 1, {"group_ids": [group]})["groups"][0]
                return kind, sorted(m["member_type"] for m in d["members"])
            d = rc.request("DescribeGroups", 5, {"groups": [group]})["groups"][0]
            return kind, d["group_state"], len(d["members"])
        finally:
            rc.close()

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    try:
        wait_until(lambda: split(2), step=poll.step, what=f"the {old} members' split")
        seen.append(described())
        produce_more(100)
        join(new)
        wait_until(lambda: split(3), step=poll.step, timeout=30, what="the split among old and new members")
        seen.append(described())
        produce_more(100)
        for i, c in enumerate(olds):  # (static: the olds' instance ids are {group}-0 and {group}-1)
            c.close()
            members.remove(c)
            join(new, f"{group}-{i}" if static else None)
            wait_until(lambda: split(len(members)), step=poll.step, timeout=30,
                       what="the split after an old member left")
            produce_more(50)
        wait_until(lambda: described()[1] in ("Stable", [1, 1, 1], [0, 0, 0]), step=poll.step,
                   what="the group settled")
        seen.append(described())
        assert len(admin.describe_consumer_groups([group])[group].result(10).members) == 3
        assert consumed() == set(expected), "records lost in the migration"
    finally:
        for c in members:
            c.close()
    return seen


@pytest.mark.parametrize("strategy", ["range", "roundrobin"])
def test_rolling_upgrade_from_the_classic_protocol(broker, strategy):
    """Kafka 4's online migration: classic consumers are replaced one by one
    with consumer-protocol ones while the group keeps consuming. The first
    consumer-protocol member turns the classic group into a consumer group;
    the classic members stay in it (JoinGroup, SyncGroup, Heartbeat), give up
    partitions for it, and leave it with LeaveGroup. Nothing is lost, and each
    time the group settles its members' assignments cover the partitions
    without overlap. (Not librdkafka's cooperative-sticky: it sometimes puts
    user data in its assignments, and the upgrade is then refused, on Kafka
    4.4 as here: measured 2 of 6 times on Kafka. Cooperative classic members
    are driven by the state-machine tests and by the downgrade below.)"""
    seen = _rolling_switch(broker, f"cp-upgrade-{strategy}", f"g-cp-upgrade-{strategy}", strategy,
                           "classic", "consumer")
    assert seen == [("classic", "Stable", 2), ("consumer", [0, 0, 1]), ("consumer", [1, 1, 1])]


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_rolling_downgrade_to_the_classic_protocol(broker, strategy):
    """The way back: classic consumers join a consumer group as classic
    members; when the last consumer-protocol member leaves, the group becomes
    a classic group again (``group.consumer.migration.policy`` bidirectional,
    Kafka's default), rebalances, and its leader assigns."""
    seen = _rolling_switch(broker, f"cp-downgrade-{strategy}", f"g-cp-downgrade-{strategy}", strategy,
                           "consumer", "classic")
    assert seen == [("consumer", [1, 1]), ("consumer", [0, 1, 1]), ("classic", "Stable", 3)]


def test_rolling_upgrade_of_static_members(broker):
    """Static members (group.instance.id) restarted one by one with the
    consumer protocol: each takes its classic instance's place at once."""
    seen = _rolling_switch(broker, "cp-upgrade-static", "g-cp-upgrade-static", "range", "classic", "consumer",
                           static=True)
    assert seen == [("classic", "Stable", 2), ("consumer", [0, 0, 1]), ("consumer", [1, 1, 1])]


def test_rolling_downgrade_of_static_members(broker):
    """Static members restarted one by one with the classic protocol: each
    takes its instance's place; the last one turns the group classic."""
    seen = _rolling_switch(broker, "cp-downgrade-static", "g-cp-downgrade-static", "range", "consumer", "classic",
                           static=True)
    assert seen == [("consumer", [1, 1]), ("consumer", [0, 1, 1]), ("classic", "Stable", 3)]
