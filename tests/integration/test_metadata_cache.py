"""Metadata's encoded topic entries are kept between requests
(``odradek.apis.metadata.encoded_topic``, on ``TopicState.derived``) and
dropped by the image when a topic changes. Every answer below is compared,
byte for byte, with the answer the same broker gives once every kept entry
is dropped (an encode from scratch), at every version served, after each
kind of change: partitions added, a topic deleted and made again, a leader
moved and a broker gone in a 3-broker cluster, a partition reassigned, an ACL added; and each change
is checked to show in the answer, so a stale entry cannot pass."""

from __future__ import annotations

import socket
import struct

import pytest

from odradek.embedded import EmbeddedBroker
from odradek.protocol.frames import decode_response, encode_request
from tests.integration.rawclient import RawClient
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

VERSIONS = range(0, 14)


class Wire:
    """Metadata requests over one connection; answers as their raw bytes."""

    def __init__(self, addr: str):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)

    def raw(self, version: int, body: dict) -> bytes:
        self.sock.sendall(encode_request("Metadata", version, body, 7, "meta-cache"))
        size = struct.unpack(">i", self._recv(4))[0]
        return self._recv(size)

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "broker closed the connection"
            buf += chunk
        return buf

    def close(self):
        self.sock.close()


def bodies(version: int, named: list[str], ids: list[bytes]) -> list[dict]:
    """A full listing, named topics, and (v10+) topics by id; with the topics'
    authorized operations from v8."""
    extra = {"allow_auto_topic_creation": False}
    if version >= 8:
        extra["include_topic_authorized_operations"] = True
    out = [dict(extra, topics=[] if version == 0 else None),
           dict(extra, topics=[{"name": n} for n in named])]
    if version >= 10:
        out.append(dict(extra, topics=[{"name": None, "topic_id": i} for i in ids]))
    if version >= 8:
        out.append({"allow_auto_topic_creation": False, "topics": None})
    return out


def drop_kept(broker: EmbeddedBroker) -> None:
    async def drop():
        for t in broker.core.image:
            t.derived.clear()
    broker.call(drop)


def answers(broker: EmbeddedBroker, addr: str, named: list[str], versions=VERSIONS) -> dict:
    """Every (version, request) answered twice, the second from kept entries,
    then once more with none kept: the three must be equal bytes."""
    ids = [broker.core.image.get(n).topic_id for n in named if n in broker.core.image]
    wire = Wire(addr)
    try:
        asked = [(v, i, b) for v in versions for i, b in enumerate(bodies(v, named, ids))]
        first = [wire.raw(v, b) for v, _, b in asked]
        kept = [wire.raw(v, b) for v, _, b in asked]
        assert all(broker.core.image.get(n).derived for n in named if n in broker.core.image)
        drop_kept(broker)
        fresh = [wire.raw(v, b) for v, _, b in asked]
    finally:
        wire.close()
    for (v, _, b), one, two, three in zip(asked, first, kept, fresh):
        assert one == two == three, f"v{v} {b}"
    # (version, which of bodies()) -> the answer
    return {(v, i): decode_response("Metadata", v, raw)[1] for (v, i, _), raw in zip(asked, kept)}


def topic(answer: dict, name: str) -> dict:
    return next(t for t in answer["topics"] if t["name"] == name)


def test_kept_entries_follow_partitions_added_and_topics_deleted(odradek_broker_factory):
    from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

    b = odradek_broker_factory()
    core = b.broker
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic("m1", 2, 1), NewTopic("m2", 3, 1)]).values():
        f.result(10)
    wait_until(lambda: "m1" in core.core.image and "m2" in core.core.image, what="topics")
    answers(core, b.bootstrap, ["m1", "m2"])

    admin.create_partitions([NewPartitions("m1", 5)])["m1"].result(10)
    wait_until(lambda: len(core.core.image.get("m1").partitions) == 5, what="new partitions")
    for (v, _), a in answers(core, b.bootstrap, ["m1", "m2"]).items():
        assert len(topic(a, "m1")["partitions"]) == 5, v
    assert len(admin.list_topics(timeout=10).topics["m1"].partitions) == 5  # a real client sees them

    old_id = core.core.image.get("m2").topic_id
    admin.delete_topics(["m2"])["m2"].result(10)
    wait_until(lambda: "m2" not in core.core.image, what="deletion")
    for (v, _), a in answers(core, b.bootstrap, ["m1"]).items():
        assert [t["name"] for t in a["topics"] if t["name"].startswith("m")] == ["m1"], v
    assert "m2" not in admin.list_topics(timeout=10).topics
    # Made again under the same name: a new id, one partition, nothing of the old entry.
    admin.create_topics([NewTopic("m2", 1, 1)])["m2"].result(10)
    wait_until(lambda: "m2" in core.core.image, what="m2 again")
    for (v, _), a in answers(core, b.bootstrap, ["m1", "m2"]).items():
        again = topic(a, "m2")
        assert len(again["partitions"]) == 1, v
        if v >= 10:
            assert again["topic_id"] != old_id


def test_kept_entries_follow_leaders_and_brokers_in_a_cluster(etcd, tmp_path):
    from confluent_kafka.admin import AdminClient, NewTopic

    config = {"metadata.store": etcd.url("metacache"), "broker.session.timeout.ms": "3000"}
    brokers = [EmbeddedBroker(data_dir=str(tmp_path / f"b{i}"), node_id=i, config=config).start()
               for i in (1, 2, 3)]
    try:
        first = brokers[0]
        wait_until(lambda: len(first.core.image.brokers) == 3, what="3 registrations")
        admin = AdminClient({"bootstrap.servers": first.bootstrap})
        admin.create_topics([NewTopic("led", 6, 3)])["led"].result(30)
        wait_until(lambda: "led" in first.core.image and all(
            p.leader > 0 and sorted(p.isr) == sorted(p.replicas) for p in first.core.image.get("led").partitions),
            what="the topic, led, its replicas in sync")
        before = answers(first, first.bootstrap, ["led"], versions=(1, 4, 9, 12, 13))
        on3 = [p["partition_index"] for p in topic(before[(12, 0)], "led")["partitions"] if p["leader_id"] == 3]
        assert on3

        brokers[2].stop()  # a controlled shutdown: its partitions get other leaders, it leaves the live set
        image = first.core.image
        wait_until(lambda: 3 not in image.brokers and all(p.leader != 3 and 3 not in p.isr
                                                           for p in image.get("led").partitions),
                   what="leaders and ISR away from broker 3")
        after = answers(first, first.bootstrap, ["led"], versions=(1, 4, 9, 12, 13))
        for (v, _), a in after.items():
            parts = topic(a, "led")["partitions"]
            assert all(p["leader_id"] in (1, 2) for p in parts), v
            assert all(p["leader_epoch"] > topic(before[(12, 0)], "led")["partitions"][p["partition_index"]]
                       ["leader_epoch"] for p in parts if p["partition_index"] in on3 and v >= 7), v
            if v >= 5:
                assert all(p["offline_replicas"] == [3] for p in parts), v
        md = AdminClient({"bootstrap.servers": brokers[1].bootstrap}).list_topics("led", timeout=10)
        assert all(p.leader in (1, 2) for p in md.topics["led"].partitions.values())

        # The same live brokers, a partition's replicas and leader changed (a reassignment).
        target = [2] if image.get("led").partitions[0].leader == 1 else [1]  # the leader is removed
        raw = RawClient(first.bootstrap)
        try:
            moved = raw.request("AlterPartitionReassignments", 0, {"timeout_ms": 10000, "topics": [
                {"name": "led", "partitions": [{"partition_index": 0, "replicas": target}]}]})
        finally:
            raw.close()
        assert moved["error_code"] == 0, moved
        wait_until(lambda: image.get("led").partitions[0].replicas == target
                   and image.get("led").partitions[0].leader == target[0], what="the reassignment")
        for (v, _), a in answers(first, first.bootstrap, ["led"], versions=(1, 4, 9, 12, 13)).items():
            p0 = topic(a, "led")["partitions"][0]
            assert (p0["replica_nodes"], p0["leader_id"]) == (target, target[0]), v
    finally:
        for b in brokers:
            b.stop()


def test_kept_entries_follow_acl_changes():
    from confluent_kafka.admin import AdminClient

    from tests.integration import test_acls as T

    config = T.broker_config(listeners="SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0")
    b = T.start(config)
    try:
        plain = "127.0.0.1:%d" % b.core.endpoints["PLAINTEXT"][1]
        T.create_topics(b, "a", "b")
        admin = AdminClient(T.conf(b, "admin"))

        def grant(op, name="a"):
            for f in admin.create_acls([T.acl("TOPIC", name, "User:ANONYMOUS", op)]).values():
                f.result(timeout=10)

        grant("DESCRIBE")
        wait_until(lambda: b.core.image.acls.bindings, what="the ACL")
        ops = {v: topic(a, "a")["topic_authorized_operations"]
               for (v, i), a in answers(b, plain, ["a"], versions=range(8, 14)).items() if i == 0}
        before = len(b.core.image.acls.bindings)
        grant("WRITE")
        wait_until(lambda: len(b.core.image.acls.bindings) > before, what="the new ACL")
        seen = answers(b, plain, ["a"], versions=range(8, 14))
        for (v, i), a in seen.items():
            if i == 0:
                assert topic(a, "a")["topic_authorized_operations"] != ops[v], v
                assert [t["name"] for t in a["topics"]] == ["a"], v  # "b" stays hidden
        grant("DESCRIBE", "b")  # now listed, with its own operations
        wait_until(lambda: len(b.core.image.acls.bindings) > before + 1, what="the ACL on b")
        for (v, i), a in answers(b, plain, ["a", "b"], versions=range(8, 14)).items():
            if i == 0:
                assert sorted(t["name"] for t in a["topics"]) == ["a", "b"], v
    finally:
        b.__exit__(None, None, None)
