"""The controller on etcd: election and re-election, leader failover from
the ISR with the epoch bumped, controlled shutdown moving leaderships before
the broker goes, fencing of a stale controller's writes, preferred-leader
rebalancing and ElectLeaders from a real client. These tests look at
leadership (data replication: test_replication.py and
test_cluster_faults.py). Skipped, saying why, without etcd 3.5.3+ or
etcd3aio."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from odradek.embedded import EmbeddedBroker
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

FAST = {"broker.session.timeout.ms": "2000"}


@pytest.fixture
def cluster(etcd, tmp_path, request):
    """start(n, prefix, racks=None, **config) -> n brokers (node ids 1..n) on one prefix,
    all registered; stopped at the end."""
    started = []

    def start(n, prefix, racks=None, **config):
        conf = dict(FAST, **{"metadata.store": etcd.url(prefix)}, **config)
        brokers = [EmbeddedBroker(data_dir=str(tmp_path / f"{prefix}-b{i}"), node_id=i,
                                  config=dict(conf, **({"broker.rack": racks[i - 1]} if racks else {}))).start()
                   for i in range(1, n + 1)]
        started.extend(brokers)
        wait_until(lambda: all(len(b.core.image.brokers) == n for b in brokers), what=f"{n} registrations")
        wait_until(lambda: all(b.core.image.controller_id != -1 for b in brokers), what="a controller")
        return brokers

    yield start
    for b in started:
        b.stop()


def by_id(brokers, node_id):
    return next(b for b in brokers if b.core.config.node_id == node_id)


def states(broker, topic):
    t = broker.core.image.get(topic)
    return [(p.leader, p.leader_epoch, list(p.replicas), list(p.isr)) for p in t.partitions]


def client_view(bootstrap, topic):
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return md, {i: (p.leader, list(p.replicas), list(p.isrs)) for i, p in md.topics[topic].partitions.items()}


def test_one_controller_is_elected_and_another_when_it_stops(cluster):
    from confluent_kafka.admin import AdminClient

    brokers = cluster(3, "elect", **{"controlled.shutdown.enable": "false"})
    first = {(b.core.image.controller_id, b.core.image.controller_epoch) for b in brokers}
    assert len(first) == 1
    (cid, epoch), = first
    assert [b.core.config.node_id for b in brokers if b.core.controller.active] == [cid]
    md = AdminClient({"bootstrap.servers": brokers[0].bootstrap}).list_topics(timeout=10)
    assert md.controller_id == cid
    admin = AdminClient({"bootstrap.servers": brokers[1].bootstrap})
    desc = admin.describe_cluster().result(10)
    assert desc.controller.id == cid

    t0 = time.monotonic()
    by_id(brokers, cid).stop()
    rest = [b for b in brokers if b.core.config.node_id != cid]
    wait_until(lambda: all(b.core.image.controller_id not in (-1, cid) for b in rest), timeout=10,
               what="a new controller")
    assert time.monotonic() - t0 < 5
    second = {(b.core.image.controller_id, b.core.image.controller_epoch) for b in rest}
    assert len(second) == 1
    (cid2, epoch2), = second
    assert epoch2 > epoch
    assert [b.core.config.node_id for b in rest if b.core.controller.active] == [cid2]
    wait_until(lambda: AdminClient({"bootstrap.servers": rest[0].bootstrap}).list_topics(
        timeout=10).controller_id == cid2, what="Metadata to name the new controller")


def test_a_leader_that_stops_is_replaced_from_the_isr(cluster):
    from confluent_kafka.admin import AdminClient, NewTopic

    brokers = cluster(3, "failover", **{"controlled.shutdown.enable": "false", "replica.lag.time.max.ms": "1000"})
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic("rep", 6, 3)])["rep"].result(30)
    before = states(brokers[0], "rep")
    for leader, epoch, replicas, isr in before:
        assert leader == replicas[0] and isr == replicas and epoch == 0 and len(set(replicas)) == 3
    assert {s[0] for s in before} == {1, 2, 3}  # leaders balanced

    # A clean stop without controlled shutdown: its registration goes at once.
    victim = brokers[0].core.image.controller_id % 3 + 1  # not the controller: it stays
    t0 = time.monotonic()
    by_id(brokers, victim).stop()
    rest = [b for b in brokers if b.core.config.node_id != victim]

    def moved():
        return all(leader != victim and victim not in isr for leader, _, _, isr in states(rest[0], "rep"))

    wait_until(moved, timeout=10, what="leaderships to move")
    elapsed = time.monotonic() - t0
    assert elapsed < 3, elapsed
    for (l0, e0, r0, i0), (l1, e1, r1, i1) in zip(before, states(rest[0], "rep")):
        assert r1 == r0
        assert i1 == [r for r in i0 if r != victim]
        if l0 == victim:
            assert l1 == next(r for r in r0 if r != victim) and e1 == e0 + 1
        else:
            assert (l1, e1) == (l0, e0)
    # as a real client sees it
    _, view = client_view(rest[0].bootstrap, "rep")
    for i, (leader, _, replicas, isr) in enumerate(states(rest[0], "rep")):
        assert view[i] == (leader, replicas, isr)

    # The lease of a leader's broker vanishing (as when its process dies) does the same.
    victim2 = next(leader for leader, *_ in states(rest[0], "rep") if leader != rest[0].core.image.controller_id)
    b2 = by_id(rest, victim2)
    mid = states(rest[0], "rep")
    led = [i for i, s in enumerate(mid) if s[0] == victim2]
    b2.call(b2.core.metadata.revoke_lease, b2.core.registration.lease)
    other = next(b for b in rest if b is not b2)

    def moved2():
        st = states(other, "rep")
        return all(st[i][0] not in (victim2,) for i in led)

    wait_until(moved2, timeout=10, what="leaderships of the lapsed broker to move")
    st = states(other, "rep")
    me = other.core.config.node_id
    for i in led:
        assert st[i][0] == me and st[i][1] == mid[i][1] + 1 and st[i][3] == [me]

    # The lapsed broker registers again, catches up and is back in the ISR.
    wait_until(lambda: victim2 in other.core.image.brokers, what="the lapsed broker to register again")
    wait_until(lambda: all(sorted(s[3]) == sorted([me, victim2]) for s in states(other, "rep")),
               what="the lapsed broker back in the ISR")
    # It stops fetching: the leader drops it from the ISR after replica.lag.time.max.ms.
    b2.call(lambda: _async(b2.core.fetchers.follow, [], list(b2.core.replicas.topic("rep").partitions)))
    wait_until(lambda: all(s[3] == [me] for s in states(other, "rep")), what="the ISR to shrink")
    # The last ISR member stopping too: offline, its ISR kept as it was.
    other.stop()
    survivor = b2
    wait_until(lambda: all(s[0] == -1 for s in states(survivor, "rep")), timeout=10, what="offline partitions")
    for leader, epoch, replicas, isr in states(survivor, "rep"):
        assert isr == [me]
    md, view = client_view(survivor.bootstrap, "rep")
    assert all(v[0] == -1 for v in view.values())


@pytest.mark.parametrize("who", ["controller", "another broker"])
def test_controlled_shutdown_moves_leaderships_before_the_broker_goes(cluster, etcd, who):
    from confluent_kafka.admin import AdminClient, NewTopic

    from odradek.metadata.store import open_store

    prefix = "controlled-" + who.replace(" ", "-")
    brokers = cluster(3, prefix)
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic("cs", 6, 3)])["cs"].result(30)
    cid = brokers[0].core.image.controller_id
    victim = cid if who == "controller" else cid % 3 + 1
    led = [i for i, s in enumerate(states(brokers[0], "cs")) if s[0] == victim]
    assert led
    start = brokers[0].core.image.revision + 1
    t0 = time.monotonic()
    by_id(brokers, victim).stop()
    assert time.monotonic() - t0 < 5

    async def history():
        store = await open_store(etcd.url(prefix))
        out = []
        try:
            async for batch in store.watch("", start):
                out += batch
                if any(e.kind == "delete" and e.kv.key == f"brokers/{victim}" for e in batch):
                    return out
        finally:
            await store.close()

    events = asyncio.run(asyncio.wait_for(history(), 10))
    gone = next(e.revision for e in events if e.kind == "delete" and e.kv.key == f"brokers/{victim}")
    marked = next(e.revision for e in events if e.kind == "put" and e.kv.key == f"brokers/{victim}"
                  and b'"shutting_down": true' in e.kv.value)
    moved = {}  # partition led by the victim -> revision of the write that moved it
    last = {}  # partition -> its state as of the victim's registration going
    for e in events:
        if e.kind == "put" and e.kv.key.startswith("partitions/cs/") and e.revision < gone:
            st = json.loads(e.kv.value)
            i = int(e.kv.key.rsplit("/", 1)[1])
            last[i] = st
            if st["leader"] != victim and i in led and i not in moved:
                moved[i] = e.revision
    assert sorted(moved) == led
    assert all(marked < r < gone for r in moved.values())
    # ... and it had left every ISR (others remained in each) before it went
    assert len(last) == 6 and all(victim not in st["isr"] and st["isr"] for st in last.values())
    rest = [b for b in brokers if b.core.config.node_id != victim]
    wait_until(lambda: rest[0].core.image.revision >= gone, what="the image to follow")
    for leader, epoch, replicas, isr in states(rest[0], "cs"):
        assert leader != victim and victim not in isr and leader in isr


def test_a_stale_controller_epoch_cannot_write(cluster):
    from odradek.cluster.controller import CONTROLLER, Change, Controller, NotController
    from odradek.metadata.store import Compare
    from odradek.metadata.topics import update_partition_txn

    brokers = cluster(2, "fence")
    old = brokers[0].core.image.controller_epoch
    holder = by_id(brokers, brokers[0].core.image.controller_id)
    b = next(x for x in brokers if x is not holder)
    # "f" lives on the broker that stays, so the controller has nothing to do with it
    b.call(b.core.admin.create_topic, "f", -1, -1, None, False, [[b.core.config.node_id]])
    holder.call(holder.core.metadata.revoke_lease, holder.core.registration.lease)
    wait_until(lambda: b.core.image.controller_epoch > old, timeout=10, what="a new controller epoch")
    s = b.core.image.get("f").partitions[0]
    assert s.leader == b.core.config.node_id
    changed = type(s)(s.leader, s.leader_epoch + 5, list(s.replicas), list(s.isr))

    stale = Controller(b.core.config, b.core.metadata, b.core.image, b.core.registration)
    stale.epoch = old
    with pytest.raises(NotController):
        b.call(stale.write, Change("f", 0, changed, s.revision))
    assert b.core.image.get("f").partitions[0].leader_epoch == s.leader_epoch

    async def txn(epoch):
        compares, ops = update_partition_txn("f", 0, changed, s.revision,
                                             Compare(CONTROLLER, "create_revision", "==", epoch))
        return (await b.core.metadata.txn(compares, ops)).succeeded

    assert b.call(txn, old) is False
    assert b.call(txn, b.core.image.controller_epoch) is True  # the same write under the live epoch


def test_elect_leaders_preferred_from_a_real_client(cluster):
    from confluent_kafka import ElectionType, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from odradek.metadata.topics import PartitionState, partition_key

    from tests.integration.rawclient import RawClient

    brokers = cluster(3, "preferred", **{"auto.leader.rebalance.enable": "false"})
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic("pl", 3, -1, replica_assignment=[[1, 2], [2, 3], [3, 1]])])["pl"].result(30)
    assert [s[0] for s in states(brokers[0], "pl")] == [1, 2, 3]

    def move_leader(index, to):  # as if a failover had happened: the ISR keeps both
        b = brokers[0]
        s = b.core.image.get("pl").partitions[index]
        b.call(b.core.metadata.put, partition_key("pl", index),
               PartitionState(to, s.leader_epoch + 1, list(s.replicas), list(s.isr)).to_json())

    move_leader(0, 2)
    wait_until(lambda: states(brokers[0], "pl")[0][0] == 2, what="the moved leader")
    epoch = states(brokers[0], "pl")[0][1]
    result = admin.elect_leaders(ElectionType.PREFERRED,
                                 [TopicPartition("pl", 0), TopicPartition("pl", 1)]).result(30)
    errs = {tp.partition: e for tp, e in result.items()}
    assert errs[0] is None
    assert "ELECTION_NOT_NEEDED" in str(errs[1])
    # answered once written: the controller's image has it, and the others follow
    controller = by_id(brokers, brokers[0].core.image.controller_id)
    assert states(controller, "pl")[0][:2] == (1, epoch + 1)
    wait_until(lambda: all(states(b, "pl")[0][0] == 1 for b in brokers), what="every image")

    # Another broker than the controller answers NOT_CONTROLLER.
    other = next(b for b in brokers if b is not controller)
    raw = RawClient(other.bootstrap)
    try:
        res = raw.request("ElectLeaders", 2, {"election_type": 0, "timeout_ms": 1000,
                                              "topic_partitions": [{"topic": "pl", "partitions": [0]}]})
    finally:
        raw.close()
    assert res["error_code"] == 41
    assert res["replica_election_results"][0]["partition_result"][0]["error_code"] == 41


def test_automatic_preferred_leader_rebalancing(cluster):
    from odradek.metadata.topics import PartitionState, partition_key

    brokers = cluster(2, "rebalance", **{"leader.imbalance.check.interval.seconds": "1"})
    b = brokers[0]
    b.call(b.core.admin.create_topic, "rb", 4, 2)
    s = b.core.image.get("rb").partitions[0]
    other = s.replicas[1]
    b.call(b.core.metadata.put, partition_key("rb", 0),
           PartitionState(other, s.leader_epoch + 1, list(s.replicas), list(s.isr)).to_json())
    # 1 of 2 partitions preferring that broker is not led by it: 50% > 10%; within the
    # check interval (1 s) leadership goes back (the epoch bumped by the move, then back)
    t0 = time.monotonic()

    def back():
        p = b.core.image.get("rb").partitions[0]
        return p.leader == s.replicas[0] and p.leader_epoch == s.leader_epoch + 2

    wait_until(back, timeout=10, what="the preferred leader back")
    assert time.monotonic() - t0 < 4
    assert b.core.image.get("rb").partitions[0].leader_epoch == s.leader_epoch + 2


def test_replicated_topics_are_spread_over_brokers_and_racks(cluster):
    from collections import Counter

    from tests.integration.rawclient import RawClient

    racks = ["r1", "r1", "r2", "r2"]
    brokers = cluster(4, "racks", racks=racks)
    b = brokers[0]
    b.call(b.core.admin.create_topic, "spread", 8, 2)
    st = states(b, "spread")
    for leader, epoch, replicas, isr in st:
        assert leader == replicas[0] and isr == replicas and epoch == 0
        assert {racks[r - 1] for r in replicas} == {"r1", "r2"}
    assert set(Counter(s[0] for s in st).values()) == {2}  # leaders balanced
    assert set(Counter(r for s in st for r in s[2]).values()) == {4}  # replicas too
    b.call(b.core.admin.add_partitions, "spread", 12)
    assert all(len(s[2]) == 2 and len({racks[r - 1] for r in s[2]}) == 2 for s in states(b, "spread"))

    # __consumer_offsets, created by the first FindCoordinator, gets offsets.topic.replication.factor (3).
    raw = RawClient(b.bootstrap)
    try:
        def found():
            res = raw.request("FindCoordinator", 3, {"key": "g", "key_type": 0})
            return res["error_code"] == 0
        wait_until(found, what="the coordinator")
    finally:
        raw.close()
    offsets = b.core.image.get("__consumer_offsets")
    assert {len(p.replicas) for p in offsets.partitions} == {3}


def test_offsets_topic_replication_is_capped_by_live_brokers(cluster):
    brokers = cluster(2, "capped")
    assert brokers[0].core.admin.offsets_replication_factor() == 2


def test_a_broker_that_registers_again_claims_with_its_new_lease(cluster):
    from odradek.cluster.controller import CONTROLLER

    b, = cluster(1, "reclaim")
    core = b.core
    epoch, lease = core.image.controller_epoch, core.registration.lease
    b.call(core.metadata.revoke_lease, lease)
    wait_until(lambda: core.registration.lease not in (0, lease) and core.image.controller_epoch > epoch,
               timeout=10, what="a new registration and controller epoch")
    assert core.image.controller_id == 1 and core.controller.active
    kv = b.call(core.metadata.get, CONTROLLER)
    assert kv.lease == core.registration.lease and kv.create_revision == core.controller.epoch


def test_a_killed_leader_process_is_replaced_once_its_lease_lapses(cluster, etcd, tmp_path):
    """kill -9 of a broker process: its lease lapses after
    broker.session.timeout.ms (2 s here) and the controller moves what it led."""
    import subprocess
    import sys

    from confluent_kafka.admin import AdminClient, NewTopic

    from tests.conftest import ROOT, free_port, wait_port

    brokers = cluster(2, "killed")  # one of these two is the controller
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "odradek", "serve", "--node-id", "3", "--port", str(port),
                             "--data-dir", str(tmp_path / "killed-b3"), "--metadata-store", etcd.url("killed"),
                             "--log-level", "WARNING", "-o", "broker.session.timeout.ms=2000"], cwd=ROOT)
    try:
        wait_port(port, proc=proc)
        wait_until(lambda: 3 in brokers[0].core.image.brokers, what="broker 3 to register")
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        admin.create_topics([NewTopic("k", 6, 3)])["k"].result(30)
        led = [i for i, s in enumerate(states(brokers[0], "k")) if s[0] == 3]
        assert led
        t0 = time.monotonic()
        proc.kill()
        proc.wait()

        def moved():
            _, view = client_view(brokers[1].bootstrap, "k")
            return all(view[i][0] not in (3, -1) and 3 not in view[i][2] for i in led)

        wait_until(moved, timeout=15, what="new leaders in Metadata")
        elapsed = time.monotonic() - t0
        assert elapsed < 5, elapsed
        for i in led:
            assert states(brokers[1], "k")[i][1] == 1  # epoch 0 -> 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _async(fn, *args):
    return fn(*args)
