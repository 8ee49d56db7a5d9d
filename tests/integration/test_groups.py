"""Consumer groups with real clients against an in-process broker.

Brokers here use group.initial.rebalance.delay.ms=0 and a low minimum session
timeout, and clients heartbeat every few hundred ms, so rebalances settle in
well under a second.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest

from odradek.embedded import EmbeddedBroker
from tests.integration.rawclient import RawClient
from tests.integration.waiting import wait_until

BROKER_CONFIG = {
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "500",
    "offsets.topic.num.partitions": "4",
    "auto.create.topics.enable": "false",
}
FAST = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 200}

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def broker():
    with EmbeddedBroker(config=BROKER_CONFIG) as b:
        yield b


def create_topic(b: EmbeddedBroker, name: str, partitions: int = 4) -> None:
    async def create():
        if name not in b.core.replicas.topics:
            await b.core.admin.create_topic(name, partitions, 1)
    b.call(create)


def produce(b: EmbeddedBroker, topic: str, count: int, start: int = 0, partitions: int = 4) -> list[bytes]:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 2})
    values = [f"m{i}".encode() for i in range(start, start + count)]
    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=(start + i) % partitions)
    assert p.flush(20) == 0
    return values


def group_state(b: EmbeddedBroker, group: str):
    async def read():
        g = b.core.groups.group(group)
        if g is None:
            return None
        return g.state, g.generation, sorted(g.members)
    return b.call(read)


# -- confluent-kafka (librdkafka) ------------------------------------------------

def confluent_consumer(b, group, **extra):
    from confluent_kafka import Consumer

    conf = {"bootstrap.servers": b.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, **FAST}
    conf.update(extra)
    return Consumer(conf)


class Polled:
    """Round-robin polling of several confluent consumers, recording what each got."""

    def __init__(self, consumers, batch=500):
        self.consumers = consumers
        self.batch = batch
        self.uncommitted: set[int] = set()
        self.got = {id(c): [] for c in consumers}

    def step(self):
        from confluent_kafka import KafkaException

        for c in self.consumers:
            msgs = [m for m in c.consume(num_messages=self.batch, timeout=0.05) if m.error() is None]
            if msgs:
                self.got[id(c)].extend(msgs)
                self.uncommitted.add(id(c))
            if id(c) in self.uncommitted:
                try:
                    c.commit(asynchronous=False)
                    self.uncommitted.discard(id(c))
                except KafkaException:
                    pass  # a rebalance is under way: commit again on the next step

    def values(self, c=None):
        cs = [c] if c is not None else self.consumers
        return [m.value() for x in cs for m in self.got[id(x)]]


def assigned(consumers) -> bool:
    parts = [tp for c in consumers for tp in c.assignment()]
    return all(c.assignment() for c in consumers) and len(parts) == len(set((p.topic, p.partition) for p in parts))


def test_confluent_group_splits_partitions_and_second_group_sees_all(broker):
    create_topic(broker, "split")
    cs = [confluent_consumer(broker, "g-split") for _ in range(3)]
    for c in cs:
        c.subscribe(["split"])
    poll = Polled(cs)
    try:
        wait_until(lambda: assigned(cs) and sum(len(c.assignment()) for c in cs) == 4
                   and group_state(broker, "g-split")[0] == "Stable", step=poll.step, what="3-way split")
        values = produce(broker, "split", 200)
        wait_until(lambda: len(poll.values()) >= 200, step=poll.step, what="all messages")
        got = poll.values()
        assert sorted(got) == sorted(values), "duplicates or losses within the group"
        assert all(poll.got[id(c)] for c in cs), "every member consumed something"
        # A second group sees everything, independently.
        other = confluent_consumer(broker, "g-split-2")
        other.subscribe(["split"])
        p2 = Polled([other])
        wait_until(lambda: len(p2.values()) >= 200, step=p2.step, what="second group")
        assert sorted(p2.values()) == sorted(values)
        other.close()
    finally:
        for c in cs:
            c.close()
    state, _, members = group_state(broker, "g-split")
    assert state == "Empty" and members == []


def test_confluent_commit_close_resume_no_gap_no_repeat(broker):
    from confluent_kafka import TopicPartition

    create_topic(broker, "resume")
    values = produce(broker, "resume", 100)
    c = confluent_consumer(broker, "g-resume")
    c.subscribe(["resume"])
    first = Polled([c], batch=10)
    wait_until(lambda: len(first.values()) >= 40, step=first.step, what="first half")
    committed = c.committed([TopicPartition("resume", i) for i in range(4)], timeout=10)
    c.close()
    seen = first.values()
    assert sum(max(tp.offset, 0) for tp in committed) == len(seen)
    c2 = confluent_consumer(broker, "g-resume")
    c2.subscribe(["resume"])
    second = Polled([c2])
    wait_until(lambda: len(seen) + len(second.values()) >= 100, step=second.step, what="rest")
    for _ in range(5):
        second.step()
    c2.close()
    assert not set(seen) & set(second.values()), "repeated messages"
    assert sorted(seen + second.values()) == sorted(values), "gap"


def test_confluent_member_leaves_and_others_take_over(broker):
    create_topic(broker, "leave")
    a, b = confluent_consumer(broker, "g-leave"), confluent_consumer(broker, "g-leave")
    a.subscribe(["leave"])
    b.subscribe(["leave"])
    poll = Polled([a, b])
    wait_until(lambda: assigned([a, b]) and group_state(broker, "g-leave")[0] == "Stable"
               and len(group_state(broker, "g-leave")[2]) == 2, step=poll.step, what="2 members")
    first = produce(broker, "leave", 40)
    wait_until(lambda: len(poll.values()) >= 40, step=poll.step, what="first batch")
    b.close()
    rest = Polled([a])
    rest.got[id(a)] = []
    wait_until(lambda: len(a.assignment()) == 4, step=rest.step, what="takeover")
    second = produce(broker, "leave", 60, start=40)
    wait_until(lambda: len(rest.values()) >= 60, step=rest.step, what="second batch")
    a.close()
    assert sorted(poll.values()) == sorted(first)
    assert sorted(rest.values()) == sorted(second)


def test_confluent_cooperative_sticky(broker):
    create_topic(broker, "coop")
    revoked = []

    def on_revoke(consumer, parts):
        revoked.append([p.partition for p in parts])

    extra = {"partition.assignment.strategy": "cooperative-sticky"}
    a = confluent_consumer(broker, "g-coop", **extra)
    a.subscribe(["coop"], on_revoke=on_revoke)
    pa = Polled([a])
    wait_until(lambda: len(a.assignment()) == 4, step=pa.step, what="first member owns all")
    values = produce(broker, "coop", 40)
    wait_until(lambda: len(pa.values()) >= 40, step=pa.step, what="first batch")
    b = confluent_consumer(broker, "g-coop", **extra)
    b.subscribe(["coop"])
    poll = Polled([a, b])
    wait_until(lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2
               and group_state(broker, "g-coop")[0] == "Stable", step=poll.step, what="incremental split")
    # Cooperative: a gave up only the two partitions that moved, never all four.
    assert all(len(r) <= 2 for r in revoked), revoked
    more = produce(broker, "coop", 80, start=40)
    wait_until(lambda: len(poll.values()) >= 80, step=poll.step, what="second batch")
    for _ in range(5):
        poll.step()
    assert sorted(poll.values()) == sorted(more)
    assert poll.values(a) and poll.values(b)
    a.close()
    b.close()
    assert sorted(pa.values()) == sorted(values)


def test_confluent_static_membership_rejoin_without_rebalance(broker):
    create_topic(broker, "static")
    extra = {"session.timeout.ms": 10000}
    a = confluent_consumer(broker, "g-static", **{"group.instance.id": "inst-a", **extra})
    b = confluent_consumer(broker, "g-static", **{"group.instance.id": "inst-b", **extra})
    a.subscribe(["static"])
    b.subscribe(["static"])
    poll = Polled([a, b])
    wait_until(lambda: assigned([a, b]) and group_state(broker, "g-static")[0] == "Stable"
               and len(group_state(broker, "g-static")[2]) == 2, step=poll.step, what="static group")
    _, generation, members = group_state(broker, "g-static")
    b_parts = sorted(p.partition for p in b.assignment())
    b.close()  # a static member does not leave the group on close
    b2 = confluent_consumer(broker, "g-static", **{"group.instance.id": "inst-b", **extra})
    b2.subscribe(["static"])
    poll2 = Polled([a, b2])
    wait_until(lambda: len(b2.assignment()) > 0, step=poll2.step, what="static rejoin")
    state, generation2, members2 = group_state(broker, "g-static")
    assert (state, generation2) == ("Stable", generation), "no rebalance for a returning static member"
    assert members2 != members and len(members2) == 2
    assert sorted(p.partition for p in b2.assignment()) == b_parts
    a.close()
    b2.close()


def test_confluent_static_members_starting_together_share_the_first_generation():
    """librdkafka test 0102's first step: two static members of a new group,
    subscribing at once, are both in its first generation, and no second
    rebalance takes the partitions back. The join delay gathers them; each
    consumer finds its coordinator first (librdkafka's lookup can take a
    second), as 0102's do with the delay at Kafka's default."""
    from confluent_kafka import TopicPartition

    config = {**BROKER_CONFIG, "group.initial.rebalance.delay.ms": "1000"}
    with EmbeddedBroker(config=config) as b:
        create_topic(b, "static-first", partitions=3)
        events = {"a": [], "b": []}
        consumers = {}
        for name in events:
            c = consumers[name] = confluent_consumer(b, "g-static-first", **{"group.instance.id": f"inst-{name}"})
            c.committed([TopicPartition("static-first", 0)], timeout=10)  # the coordinator is known
        for name, c in consumers.items():
            c.subscribe(["static-first"],
                        on_assign=lambda c, parts, n=name: events[n].append(("assign", len(parts))),
                        on_revoke=lambda c, parts, n=name: events[n].append(("revoke", len(parts))))
        poll = Polled(list(consumers.values()))
        wait_until(lambda: all(events.values()), step=poll.step, what="both assigned")
        deadline = time.monotonic() + 1.5  # several heartbeats: a second rebalance would show
        while time.monotonic() < deadline:
            poll.step()
        assert group_state(b, "g-static-first")[:2] == ("Stable", 1)
        assert sorted(e for evs in events.values() for e in evs) == [("assign", 1), ("assign", 2)], events
        for c in consumers.values():
            c.close()


def test_confluent_admin_describe_list_delete(broker):
    from confluent_kafka import ConsumerGroupState, TopicPartition
    from confluent_kafka.admin import AdminClient
    from confluent_kafka import ConsumerGroupTopicPartitions

    create_topic(broker, "adm")
    produce(broker, "adm", 20)
    c = confluent_consumer(broker, "g-admin", **{"client.id": "admin-test-client"})
    c.subscribe(["adm"])
    poll = Polled([c])
    wait_until(lambda: len(poll.values()) >= 20, step=poll.step, what="consume")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    listed = admin.list_consumer_groups(request_timeout=10).result()
    assert "g-admin" in {g.group_id for g in listed.valid}
    stable = admin.list_consumer_groups(request_timeout=10, states={ConsumerGroupState.STABLE}).result()
    assert [g.group_id for g in stable.valid] == ["g-admin"]

    desc = admin.describe_consumer_groups(["g-admin", "nope"], request_timeout=10)
    d = desc["g-admin"].result()
    assert d.state == ConsumerGroupState.STABLE
    assert d.partition_assignor == "range"
    assert len(d.members) == 1 and d.members[0].client_id == "admin-test-client"
    assert sorted(tp.partition for tp in d.members[0].assignment.topic_partitions) == [0, 1, 2, 3]
    assert d.coordinator.port == broker.port

    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("g-admin")])
    got = offsets["g-admin"].result()
    assert sum(tp.offset for tp in got.topic_partitions) == 20

    busy = admin.delete_consumer_groups(["g-admin"], request_timeout=10)["g-admin"]
    with pytest.raises(Exception) as e:
        busy.result()
    assert "NON_EMPTY_GROUP" in str(e.value)
    c.close()
    admin.delete_consumer_groups(["g-admin"], request_timeout=10)["g-admin"].result()
    assert group_state(broker, "g-admin") is None
    missing = admin.delete_consumer_groups(["g-never"], request_timeout=10)["g-never"]
    with pytest.raises(Exception) as e:
        missing.result()
    assert "GROUP_ID_NOT_FOUND" in str(e.value)
    # Offsets went with the group.
    again = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("g-admin", [TopicPartition("adm", 0)])])["g-admin"].result()
    assert again.topic_partitions[0].offset < 0


# -- kafka-python -------------------------------------------------------------------

def test_kafka_python_group(broker):
    from kafka import KafkaConsumer
    from kafka.errors import CommitFailedError, RebalanceInProgressError

    create_topic(broker, "kp")
    kw = dict(bootstrap_servers=broker.bootstrap, group_id="g-kp", auto_offset_reset="earliest",
              enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=200,
              max_poll_interval_ms=10000)
    cs = []
    for i in range(2):
        c = KafkaConsumer(client_id=f"kp{i}", **kw)
        # Learn the topic before joining: a kafka-python leader that assigns
        # before it has the topic's metadata hands out an empty assignment and
        # rejoins, a client-side path that can stall kafka-python 3.0.12.
        assert c.partitions_for_topic("kp") == {0, 1, 2, 3}
        c.subscribe(["kp"])
        cs.append(c)
    got = {0: [], 1: []}

    def step(consumers=cs):
        for c in consumers:
            i = cs.index(c)
            for recs in c.poll(timeout_ms=50).values():
                got[i].extend(r.value for r in recs)
            try:
                c.commit()
            except (RebalanceInProgressError, CommitFailedError):
                pass  # the client saw a rebalance start; the next poll rejoins

    try:
        wait_until(lambda: all(c.assignment() for c in cs)
                   and sum(len(c.assignment()) for c in cs) == 4
                   and group_state(broker, "g-kp")[0] == "Stable", step=step, what="kafka-python split")
        values = produce(broker, "kp", 100)
        wait_until(lambda: len(got[0]) + len(got[1]) >= 100, step=step, what="kafka-python consume")
        assert sorted(got[0] + got[1]) == sorted(values)
        assert got[0] and got[1]
        cs[1].close()
        wait_until(lambda: len(cs[0].assignment()) == 4 and group_state(broker, "g-kp")[0] == "Stable",
                   step=lambda: step([cs[0]]), what="takeover")
        got[0] = []
        more = produce(broker, "kp", 20, start=100)
        wait_until(lambda: len(got[0]) >= 20, step=lambda: step([cs[0]]), what="takeover consume")
        assert sorted(got[0]) == sorted(more)
    finally:
        for c in cs:
            c.close()
    # The commits are where a resuming member would start: after everything.
    from kafka import TopicPartition

    c = KafkaConsumer(**kw)
    tps = [TopicPartition("kp", i) for i in range(4)]
    c.assign(tps)
    assert {tp.partition: c.committed(tp) for tp in tps} == {0: 30, 1: 30, 2: 30, 3: 30}
    assert {tp.partition: c.position(tp) for tp in tps} == {0: 30, 1: 30, 2: 30, 3: 30}
    assert c.poll(timeout_ms=200) == {}
    c.close()


def test_kafka_python_admin_offsets(broker):
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.structs import OffsetAndMetadata

    create_topic(broker, "kpa", 2)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.alter_group_offsets("g-kpa", {TopicPartition("kpa", 0): OffsetAndMetadata(5, "meta", -1),
                                            TopicPartition("kpa", 1): OffsetAndMetadata(7, "", -1)})
        got = admin.list_group_offsets("g-kpa")["g-kpa"]
        assert {tp.partition: (o.offset, o.metadata) for tp, o in got.items()} == {0: (5, "meta"), 1: (7, "")}
        admin.delete_group_offsets("g-kpa", [TopicPartition("kpa", 0)])
        got = admin.list_group_offsets("g-kpa")["g-kpa"]
        assert {tp.partition: o.offset for tp, o in got.items()} == {1: 7}
        assert {"group_id": "g-kpa", "protocol_type": "", "group_state": "Empty",
                "group_type": "classic"} in admin.list_groups()
        described = admin.describe_groups(["g-kpa"])["g-kpa"]
        assert (described["group_state"], described["members"], described["error"]) == ("Empty", [], None)
        admin.delete_groups(["g-kpa"])
        assert group_state(broker, "g-kpa") is None
    finally:
        admin.close()


# -- aiokafka ---------------------------------------------------------------------

def test_aiokafka_group(broker):
    from aiokafka import AIOKafkaConsumer

    create_topic(broker, "aio")
    values = produce(broker, "aio", 100)

    async def run():
        kw = dict(bootstrap_servers=broker.bootstrap, group_id="g-aio", auto_offset_reset="earliest",
                  enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=200)
        cs = [AIOKafkaConsumer("aio", **kw) for _ in range(2)]
        for c in cs:
            await c.start()
        got: dict[int, list] = {0: [], 1: []}
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                for i, c in enumerate(cs):
                    batch = await c.getmany(timeout_ms=50)
                    for recs in batch.values():
                        got[i].extend(r.value for r in recs)
                    if batch:
                        await c.commit()
                if (len(got[0]) + len(got[1]) >= 100 and all(c.assignment() for c in cs)
                        and sum(len(c.assignment()) for c in cs) == 4):
                    break
        finally:
            for c in cs:
                await c.stop()
        # Resume: a new member finds nothing left.
        c = AIOKafkaConsumer("aio", **kw)
        await c.start()
        try:
            left = {}
            deadline = time.monotonic() + 10
            while not c.assignment() and time.monotonic() < deadline:
                left.update(await c.getmany(timeout_ms=50))
            left.update(await c.getmany(timeout_ms=200))
        finally:
            await c.stop()
        return got, left

    got, left = asyncio.run(run())
    all_got = got[0] + got[1]
    assert sorted(set(all_got)) == sorted(values)
    assert not any(left.values())


# -- kcat (librdkafka 2.0.2: old protocol versions) ---------------------------------

@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
def test_kcat_balanced_consumer(broker):
    create_topic(broker, "kc", 2)
    values = produce(broker, "kc", 30, partitions=2)
    out = subprocess.run(
        ["kcat", "-b", broker.bootstrap, "-G", "g-kcat", "-X", "auto.offset.reset=earliest",
         "-X", "heartbeat.interval.ms=200", "-e", "-q", "-f", "%s\\n", "kc"],
        capture_output=True, timeout=45, text=True)
    got = sorted(x.encode() for x in out.stdout.split())
    assert got == sorted(values), out.stderr[-2000:]
    state = group_state(broker, "g-kcat")
    assert state is not None and state[0] == "Empty"


# -- durability ---------------------------------------------------------------------

def test_committed_offsets_survive_restart(tmp_path):
    from confluent_kafka import TopicPartition

    data = str(tmp_path / "data")
    with EmbeddedBroker(data_dir=data, config=BROKER_CONFIG) as b:
        create_topic(b, "dur")
        values = produce(b, "dur", 60)
        c = confluent_consumer(b, "g-dur")
        c.subscribe(["dur"])
        p = Polled([c])
        wait_until(lambda: len(p.values()) >= 30, step=p.step, what="first part")
        committed = {tp.partition: tp.offset
                     for tp in c.committed([TopicPartition("dur", i) for i in range(4)], timeout=10)}
        c.close()
        _, generation, _ = group_state(b, "g-dur")
    with EmbeddedBroker(data_dir=data, config=BROKER_CONFIG) as b:
        assert group_state(b, "g-dur") == ("Empty", generation, [])
        c = confluent_consumer(b, "g-dur")
        assert {tp.partition: tp.offset for tp in c.committed(
            [TopicPartition("dur", i) for i in range(4)], timeout=10)} == committed
        c.subscribe(["dur"])
        p2 = Polled([c])
        wait_until(lambda: len(p.values()) + len(p2.values()) >= 60, step=p2.step, what="resume")
        c.close()
        assert sorted(p.values() + p2.values()) == sorted(values)


_BROKER_SCRIPT = """
import json, sys, time
from odradek.embedded import EmbeddedBroker
EmbeddedBroker(data_dir=sys.argv[1], port=int(sys.argv[2]), config=json.loads(sys.argv[3])).start()
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def _spawn_broker(data_dir: str, port: int) -> subprocess.Popen:
    import json
    import os
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-c", _BROKER_SCRIPT, data_dir, str(port),
                             json.dumps(BROKER_CONFIG)], cwd=root, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def test_committed_offsets_survive_kill(tmp_path):
    """kill -9 of the broker process: commits acknowledged before the kill are kept."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from tests.conftest import free_port

    data, port = str(tmp_path / "data"), free_port()
    bootstrap = f"127.0.0.1:{port}"
    proc = _spawn_broker(data, port)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("killed", 2, 1)])["killed"].result(10)
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "g-kill", "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition("killed", 0, 11, "m0"), TopicPartition("killed", 1, 22)],
                 asynchronous=False)
        c.close()
    finally:
        proc.kill()
        proc.wait()
    proc = _spawn_broker(data, port)
    try:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "g-kill"})
        got = c.committed([TopicPartition("killed", 0), TopicPartition("killed", 1)], timeout=10)
        c.close()
        assert [(tp.offset, tp.metadata) for tp in got] == [(11, "m0"), (22, None)]
    finally:
        proc.kill()
        proc.wait()


# -- raw protocol: old and new versions ------------------------------------------

def test_raw_v0_group_flow_and_batched_find_coordinator(broker):
    create_topic(broker, "raw")
    rc = RawClient(broker.bootstrap)
    try:
        fc = rc.request("FindCoordinator", 0, {"key": "g-raw"})
        assert fc["error_code"] == 0 and fc["port"] == broker.port
        fc = rc.request("FindCoordinator", 4, {"key_type": 0, "coordinator_keys": ["a", "b"]})
        assert [c["key"] for c in fc["coordinators"]] == ["a", "b"]
        assert {(c["error_code"], c["error_message"]) for c in fc["coordinators"]} == {(0, "")}  # as Kafka 4.4
        fc = rc.request("FindCoordinator", 2, {"key": "g-raw", "key_type": 0})
        assert (fc["error_code"], fc["error_message"]) == (0, "NONE")  # Kafka 4.4's words before v4
        txn = rc.request("FindCoordinator", 4, {"key_type": 1, "coordinator_keys": ["t"]})
        assert txn["coordinators"][0]["error_code"] == 0  # the transaction coordinator
        assert txn["coordinators"][0]["port"] == broker.port
        join = rc.request("JoinGroup", 0, {"group_id": "g-raw", "session_timeout_ms": 6000, "member_id": "",
                                           "protocol_type": "consumer",
                                           "protocols": [{"name": "range", "metadata": b"meta"}]})
        assert join["error_code"] == 0 and join["generation_id"] == 1
        member = join["member_id"]
        assert join["leader"] == member and join["members"][0]["metadata"] == b"meta"
        sync = rc.request("SyncGroup", 0, {"group_id": "g-raw", "generation_id": 1, "member_id": member,
                                           "assignments": [{"member_id": member, "assignment": b"asg"}]})
        assert sync == {"error_code": 0, "throttle_time_ms": 0, "protocol_type": None,
                        "protocol_name": None, "assignment": b"asg"}
        assert rc.request("Heartbeat", 0, {"group_id": "g-raw", "generation_id": 1,
                                           "member_id": member})["error_code"] == 0
        assert rc.request("Heartbeat", 0, {"group_id": "g-raw", "generation_id": 9,
                                           "member_id": member})["error_code"] == 22
        dg = rc.request("DescribeGroups", 0, {"groups": ["g-raw"]})["groups"][0]
        assert dg["group_state"] == "Stable" and dg["members"][0]["member_assignment"] == b"asg"
        assert rc.request("LeaveGroup", 0, {"group_id": "g-raw", "member_id": member})["error_code"] == 0
        assert rc.request("LeaveGroup", 0, {"group_id": "g-raw", "member_id": member})["error_code"] == 25
        lg = rc.request("ListGroups", 4, {"states_filter": ["Empty"]})
        assert [(g["group_id"], g["group_state"]) for g in lg["groups"]] == [("g-raw", "Empty")]
        dg6 = rc.request("DescribeGroups", 6, {"groups": ["nope"]})["groups"][0]
        assert dg6["error_code"] == 69
    finally:
        rc.close()


def test_raw_offsets_by_topic_id_and_multi_group_fetch(broker):
    create_topic(broker, "ids", 2)
    topic_id = broker.core.replicas.topics["ids"].topic_id
    rc = RawClient(broker.bootstrap)
    try:
        oc = rc.request("OffsetCommit", 10, {
            "group_id": "g-ids", "generation_id_or_member_epoch": -1, "member_id": "",
            "topics": [{"topic_id": topic_id, "partitions": [
                {"partition_index": 0, "committed_offset": 3, "committed_metadata": "x"}]},
                {"topic_id": b"\x01" * 16, "partitions": [
                    {"partition_index": 0, "committed_offset": 3, "committed_metadata": None}]}]})
        assert oc["topics"][0]["topic_id"] == topic_id
        assert oc["topics"][0]["partitions"][0]["error_code"] == 0
        assert oc["topics"][1]["partitions"][0]["error_code"] == 100  # UNKNOWN_TOPIC_ID
        rc.request("OffsetCommit", 2, {"group_id": "g-other", "generation_id_or_member_epoch": -1,
                                       "member_id": "", "retention_time_ms": -1, "topics": [
                                           {"name": "ids", "partitions": [
                                               {"partition_index": 1, "committed_offset": 9,
                                                "committed_metadata": ""}]}]})
        of = rc.request("OffsetFetch", 10, {"groups": [
            {"group_id": "g-ids", "topics": [{"topic_id": topic_id, "partition_indexes": [0, 1]}]},
            {"group_id": "g-other", "topics": None}]})
        g1, g2 = of["groups"]
        assert [(p["partition_index"], p["committed_offset"], p["metadata"])
                for p in g1["topics"][0]["partitions"]] == [(0, 3, "x"), (1, -1, "")]
        assert g2["topics"][0]["topic_id"] == topic_id
        assert [(p["partition_index"], p["committed_offset"]) for p in g2["topics"][0]["partitions"]] == [(1, 9)]
        of8 = rc.request("OffsetFetch", 8, {"groups": [{"group_id": "g-ids", "topics": None}]})
        assert of8["groups"][0]["topics"][0]["name"] == "ids"
        of1 = rc.request("OffsetFetch", 1, {"group_id": "g-ids", "topics": [
            {"name": "ids", "partition_indexes": [0]}]})
        assert of1["topics"][0]["partitions"][0]["committed_offset"] == 3
        od = rc.request("OffsetDelete", 0, {"group_id": "g-ids", "topics": [
            {"name": "ids", "partitions": [{"partition_index": 0}]}]})
        assert od["error_code"] == 0 and od["topics"][0]["partitions"][0]["error_code"] == 0
        broker.call(broker.core.admin.delete_topic, "ids")
        of = rc.request("OffsetFetch", 8, {"groups": [{"group_id": "g-other", "topics": None}]})
        assert of["groups"][0]["topics"] == []  # offsets of a deleted topic are dropped
    finally:
        rc.close()
