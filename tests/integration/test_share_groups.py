"""KIP-932 share groups against an in-process broker: raw requests for the
group side (ShareGroupHeartbeat, ShareGroupDescribe, ListGroups,
DescribeGroups, DeleteGroups)."""

from __future__ import annotations

import time
import uuid

import pytest

from odradek.embedded import EmbeddedBroker
from tests.integration.rawclient import RawClient
from tests.integration.test_groups import create_topic, produce

BROKER_CONFIG = {
    "offsets.topic.num.partitions": "4",
    "auto.create.topics.enable": "false",
    "group.share.heartbeat.interval.ms": "300",
    "group.share.session.timeout.ms": "6000",
    "group.share.record.lock.duration.ms": "1000",
}

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker(config=BROKER_CONFIG) as b:
        yield b


def test_share_group_heartbeat_describe_list_and_delete(broker):
    create_topic(broker, "sg-raw", 2)
    rc = RawClient(broker.bootstrap)
    try:
        found = rc.request("FindCoordinator", 4, {"key_type": 0, "coordinator_keys": ["sg-raw-g"]})
        assert found["coordinators"][0]["error_code"] == 0
        members = [str(uuid.uuid4()) for _ in range(3)]
        epochs = {}
        for m in members:
            hb = rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-raw-g", "member_id": m, "member_epoch": 0,
                                                       "subscribed_topic_names": ["sg-raw"]})
            assert hb["error_code"] == 0, hb
            assert hb["heartbeat_interval_ms"] == 300
            assert hb["assignment"]["topic_partitions"]
            epochs[m] = hb["member_epoch"]
        assert sorted(epochs.values()) == [1, 2, 3]
        d = rc.request("ShareGroupDescribe", 1, {"group_ids": ["sg-raw-g", "sg-nope"],
                                                 "include_authorized_operations": False})["groups"]
        assert d[0]["error_code"] == 0 and d[0]["group_state"] == "Stable" and d[0]["assignor_name"] == "simple"
        assert sorted(x["member_id"] for x in d[0]["members"]) == sorted(members)
        parts = set()
        for x in d[0]["members"]:
            for t in x["assignment"]["topic_partitions"]:
                assert t["topic_name"] == "sg-raw"
                parts |= set(t["partitions"])
        assert parts == {0, 1}
        assert d[1]["error_code"] == 69 and d[1]["error_message"] == "Group sg-nope not found."
        listed = rc.request("ListGroups", 5, {"states_filter": [], "types_filter": ["share"]})["groups"]
        assert [(g["group_id"], g["group_type"], g["protocol_type"], g["group_state"]) for g in listed] == \
            [("sg-raw-g", "share", "share", "Stable")]
        classic = rc.request("DescribeGroups", 6, {"groups": ["sg-raw-g"]})["groups"][0]
        assert classic["error_code"] == 69 and classic["error_message"] == "Group sg-raw-g is not a classic group."
        # the id is taken: a consumer group heartbeat is refused
        cg = rc.request("ConsumerGroupHeartbeat", 1, {
            "group_id": "sg-raw-g", "member_id": "x", "member_epoch": 0, "rebalance_timeout_ms": 5000,
            "subscribed_topic_names": ["sg-raw"], "topic_partitions": []})
        assert cg["error_code"] == 69
        # a non-empty group cannot be deleted; once everyone left it can
        assert rc.request("DeleteGroups", 2, {"groups_names": ["sg-raw-g"]})["results"][0]["error_code"] == 68
        for m in members:
            left = rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-raw-g", "member_id": m, "member_epoch": -1})
            assert left["error_code"] == 0 and left["member_epoch"] == -1
        d = rc.request("ShareGroupDescribe", 1, {"group_ids": ["sg-raw-g"]})["groups"][0]
        assert d["group_state"] == "Empty" and d["members"] == []
        assert rc.request("DeleteGroups", 2, {"groups_names": ["sg-raw-g"]})["results"][0]["error_code"] == 0
        listed = rc.request("ListGroups", 5, {"states_filter": [], "types_filter": ["share"]})["groups"]
        assert listed == []
    finally:
        rc.close()


def _fetch(rc, member, epoch, tid=None, acks=None, wait=0, group="sg-fetch-g", **kw):
    topics = []
    if tid is not None:
        topics = [{"topic_id": tid, "partitions": [{"partition_index": 0, "acknowledgement_batches": acks or []}]}]
    body = {"group_id": group, "member_id": member, "share_session_epoch": epoch, "max_wait_ms": wait,
            "min_bytes": 1, "max_bytes": 1 << 20, "max_records": 500, "batch_size": 500, "topics": topics,
            "forgotten_topics_data": []}
    body.update(kw)
    return rc.request("ShareFetch", 1, body)


def _acquired(resp) -> list[tuple[int, int, int]]:
    return [(a["first_offset"], a["last_offset"], a["delivery_count"])
            for t in resp["responses"] for p in t["partitions"] for a in p["acquired_records"]]


def test_share_fetch_sessions_acquire_and_acknowledge(broker):
    create_topic(broker, "sg-fetch", 1)
    tid = topic_id(broker, "sg-fetch")
    a, b = RawClient(broker.bootstrap), RawClient(broker.bootstrap)
    try:
        for rc, m in ((a, "ma"), (b, "mb")):
            hb = rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-fetch-g", "member_id": m, "member_epoch": 0,
                                                       "subscribed_topic_names": ["sg-fetch"]})
            assert hb["error_code"] == 0
        # opening sessions starts the share-partition at the high watermark (latest)
        first = _fetch(a, "ma", 0, tid)
        assert first["error_code"] == 0 and first["acquisition_lock_timeout_ms"] == 1000
        assert _acquired(first) == []
        assert _fetch(b, "mb", 0, tid)["error_code"] == 0
        produce(broker, "sg-fetch", 10, partitions=1)
        got = _fetch(a, "ma", 1, wait=2000)
        acquired = _acquired(got)
        assert acquired and acquired[0][0] == 0 and acquired[0][2] == 1
        last = acquired[-1][1]
        assert got["responses"][0]["partitions"][0]["records"]
        # b cannot acquire what a holds, nor acknowledge it
        other = _fetch(b, "mb", 1, wait=0)
        assert all(first > last for first, _, _ in _acquired(other))
        bad = _fetch(b, "mb", 2, tid, acks=[{"first_offset": 0, "last_offset": 0, "acknowledge_types": [1]}])
        assert bad["responses"][0]["partitions"][0]["acknowledge_error_code"] == 121  # INVALID_RECORD_STATE
        # a accepts offset 0 and releases offset 1; b gets offset 1 again, with delivery count 2
        ack = a.request("ShareAcknowledge", 1, {
            "group_id": "sg-fetch-g", "member_id": "ma", "share_session_epoch": 2, "topics": [
                {"topic_id": tid, "partitions": [{"partition_index": 0, "acknowledgement_batches": [
                    {"first_offset": 0, "last_offset": 1, "acknowledge_types": [1, 2]}]}]}]})
        assert ack["error_code"] == 0 and ack["responses"][0]["partitions"][0]["error_code"] == 0
        again = _fetch(b, "mb", 3, wait=2000)
        assert (1, 1, 2) in _acquired(again)
        # session epochs are checked
        assert _fetch(a, "ma", 7)["error_code"] == 123  # INVALID_SHARE_SESSION_EPOCH
        assert _fetch(a, "nobody", 1)["error_code"] == 122  # SHARE_SESSION_NOT_FOUND
        assert a.request("ShareAcknowledge", 1, {"group_id": "sg-fetch-g", "member_id": "ma",
                                                 "share_session_epoch": 0, "topics": []})["error_code"] == 123
        # a's locks expire (1 s): b acquires the records a did not acknowledge, delivery count 2
        held_by_a = [r for r in acquired if r[1] >= 2]
        assert held_by_a
        late = _fetch(b, "mb", 4, wait=3000, min_bytes=1)
        assert any(c == 2 for _, _, c in _acquired(late))
        # closing a's session (-1) is accepted
        assert _fetch(a, "ma", -1)["error_code"] == 0
        assert _fetch(a, "ma", 3)["error_code"] == 122
    finally:
        a.close()
        b.close()


def topic_id(b, name) -> bytes:
    async def read():
        return b.core.replicas.topics[name].topic_id
    return b.call(read)


def _configs(rc, group):
    r = rc.request("DescribeConfigs", 4, {"resources": [{"resource_type": 32, "resource_name": group,
                                                         "configuration_keys": None}],
                                          "include_synonyms": False, "include_documentation": False})
    res = r["results"][0]
    assert res["error_code"] == 0, res
    return {c["name"]: (c["value"], c["config_source"]) for c in res["configs"]}


def _alter(rc, group, *ops):
    r = rc.request("IncrementalAlterConfigs", 1, {"resources": [{
        "resource_type": 32, "resource_name": group,
        "configs": [{"name": n, "config_operation": op, "value": v} for n, op, v in ops]}],
        "validate_only": False})
    return r["responses"][0]


def test_group_configs_set_where_a_share_group_starts_and_its_locks(broker):
    create_topic(broker, "sg-cfg", 1)
    produce(broker, "sg-cfg", 5, partitions=1)
    tid = topic_id(broker, "sg-cfg")
    rc = RawClient(broker.bootstrap)
    try:
        # defaults: Kafka's (source 5), or the broker's own setting (source 4)
        described = _configs(rc, "sg-cfg-g")
        assert {k: v for k, v in described.items() if k.startswith("streams.")} == {
            "streams.heartbeat.interval.ms": ("5000", 5), "streams.session.timeout.ms": ("45000", 5),
            "streams.num.standby.replicas": ("0", 5)}
        assert _alter(rc, "sg-cfg-g", ("streams.num.standby.replicas", 0, "3"))["error_code"] == 40
        assert {k: v for k, v in described.items() if k.startswith("share.")} == {"share.auto.offset.reset": ("latest", 5),
                                            "share.isolation.level": ("read_uncommitted", 5),
                                            "share.record.lock.duration.ms": ("1000", 4),
                                            "share.delivery.count.limit": ("5", 5),
                                            "share.partition.max.record.locks": ("2000", 5),
                                            "share.heartbeat.interval.ms": ("300", 4),
                                            "share.session.timeout.ms": ("6000", 4)}
        assert _alter(rc, "sg-cfg-g", ("share.delivery.count.limit", 0, "11"))["error_code"] == 40
        assert _alter(rc, "sg-cfg-g", ("share.heartbeat.interval.ms", 0, "100"))["error_code"] == 40
        bad = _alter(rc, "sg-cfg-g", ("share.auto.offset.reset", 0, "somewhere"))
        assert bad["error_code"] == 40, bad  # INVALID_CONFIG
        assert _alter(rc, "sg-cfg-g", ("consumer.assignment.interval.ms", 0, "1000"))["error_code"] == 40
        assert _alter(rc, "sg-cfg-g", ("share.record.lock.duration.ms", 0, "10"))["error_code"] == 40
        ok = _alter(rc, "sg-cfg-g", ("share.auto.offset.reset", 0, "earliest"),
                    ("share.record.lock.duration.ms", 0, "20000"))
        assert ok["error_code"] == 0, ok
        cfg = _configs(rc, "sg-cfg-g")
        assert cfg["share.auto.offset.reset"] == ("earliest", 8) and cfg["share.record.lock.duration.ms"] == ("20000", 8)
        rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-cfg-g", "member_id": "m", "member_epoch": 0,
                                              "subscribed_topic_names": ["sg-cfg"]})
        assert _alter(rc, "sg-cfg-g", ("share.heartbeat.interval.ms", 0, "7000"))["error_code"] == 0
        hb = rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-cfg-g", "member_id": "m", "member_epoch": 1})
        assert hb["heartbeat_interval_ms"] == 7000
        got = _fetch(rc, "m", 0, tid, group="sg-cfg-g", wait=1000)
        assert got["acquisition_lock_timeout_ms"] == 20000
        assert _acquired(got) == [(0, 4, 1)]  # from the log start, not the high watermark
        assert _alter(rc, "sg-cfg-g", ("share.auto.offset.reset", 1, None),
                      ("share.record.lock.duration.ms", 1, None))["error_code"] == 0
        assert _configs(rc, "sg-cfg-g")["share.auto.offset.reset"] == ("latest", 5)
    finally:
        rc.close()


def test_read_committed_share_group_skips_aborted_records(broker):
    from confluent_kafka import Producer

    create_topic(broker, "sg-txn", 1)
    tid = topic_id(broker, "sg-txn")
    rc = RawClient(broker.bootstrap)
    try:
        for name, value in (("share.auto.offset.reset", "earliest"), ("share.isolation.level", "read_committed")):
            assert _alter(rc, "sg-txn-g", (name, 0, value))["error_code"] == 0
        p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "sg-txn-p"})
        p.init_transactions(10)
        p.begin_transaction()
        p.produce("sg-txn", b"aborted-1", partition=0)
        p.produce("sg-txn", b"aborted-2", partition=0)
        p.flush()
        p.abort_transaction(10)
        p.begin_transaction()
        p.produce("sg-txn", b"committed", partition=0)
        p.commit_transaction(10)
        rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-txn-g", "member_id": "m", "member_epoch": 0,
                                              "subscribed_topic_names": ["sg-txn"]})
        got = _fetch(rc, "m", 0, tid, group="sg-txn-g", wait=1000)
        acquired = _acquired(got)
        # aborted records (offsets 0-1) and both markers (2, 4) are archived; only 3 is delivered
        assert acquired == [(3, 3, 1)], acquired
    finally:
        rc.close()


def test_a_member_leaving_the_group_releases_its_records_and_deleting_the_group_forgets_them(broker):
    create_topic(broker, "sg-leave", 1)
    tid = topic_id(broker, "sg-leave")
    produce(broker, "sg-leave", 4, partitions=1)
    a, b = RawClient(broker.bootstrap), RawClient(broker.bootstrap)
    try:
        assert _alter(a, "sg-leave-g", ("share.auto.offset.reset", 0, "earliest"),
                      ("share.record.lock.duration.ms", 0, "60000"))["error_code"] == 0
        for rc, m in ((a, "ma"), (b, "mb")):
            rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-leave-g", "member_id": m, "member_epoch": 0,
                                                  "subscribed_topic_names": ["sg-leave"]})
        assert _acquired(_fetch(a, "ma", 0, tid, group="sg-leave-g", wait=1000)) == [(0, 3, 1)]
        assert _acquired(_fetch(b, "mb", 0, tid, group="sg-leave-g", wait=0)) == []
        # a leaves the group (its share session still open): its records go to b at once, not in 60 s
        left = a.request("ShareGroupHeartbeat", 1, {"group_id": "sg-leave-g", "member_id": "ma", "member_epoch": -1})
        assert left["error_code"] == 0
        assert _acquired(_fetch(b, "mb", 1, group="sg-leave-g", wait=2000)) == [(0, 3, 2)]
        b.request("ShareGroupHeartbeat", 1, {"group_id": "sg-leave-g", "member_id": "mb", "member_epoch": -1})
        assert b.request("DeleteGroups", 2, {"groups_names": ["sg-leave-g"]})["results"][0]["error_code"] == 0

        async def states():
            return [k for k in broker.core.share.states if k[0] == "sg-leave-g"]
        assert broker.call(states) == []
    finally:
        a.close()
        b.close()


def test_a_fetch_starting_share_partitions_answers_with_the_first_that_has_records(broker):
    """As Kafka's ShareFetch answers once the first share-partition it starts
    has initialised: of two partitions with records, the session's first
    fetch reads one, the next fetch the other (librdkafka's tests count on
    it)."""
    create_topic(broker, "sg-two", 2)
    tid = topic_id(broker, "sg-two")
    produce(broker, "sg-two", 10, partitions=2)
    rc = RawClient(broker.bootstrap)

    def fetch(epoch):
        r = rc.request("ShareFetch", 1, {
            "group_id": "sg-two-g", "member_id": "m", "share_session_epoch": epoch, "max_wait_ms": 500,
            "min_bytes": 1, "max_bytes": 1 << 20, "max_records": 500, "batch_size": 500,
            "topics": [{"topic_id": tid, "partitions": [{"partition_index": i, "acknowledgement_batches": []}
                                                         for i in (0, 1)]}] if epoch == 0 else [],
            "forgotten_topics_data": []})
        return {q["partition_index"]: sum(a["last_offset"] - a["first_offset"] + 1 for a in q["acquired_records"])
                for t in r["responses"] for q in t["partitions"] if q["acquired_records"]}
    try:
        assert _alter(rc, "sg-two-g", ("share.auto.offset.reset", 0, "earliest"))["error_code"] == 0
        rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-two-g", "member_id": "m", "member_epoch": 0,
                                              "subscribed_topic_names": ["sg-two"]})
        first = fetch(0)
        assert len(first) == 1 and list(first.values()) == [5], first
        second = fetch(1)
        assert second == {1 - next(iter(first)): 5}, second
    finally:
        rc.close()


def test_the_last_acknowledgements_of_a_closing_member_are_answered_after_its_leave(broker):
    """A closing consumer (librdkafka) sends its leave to the group coordinator
    and its last acknowledgements to the leader at once, on two connections:
    the leave arriving first does not make them INVALID_RECORD_STATE."""
    create_topic(broker, "sg-close", 1)
    tid = topic_id(broker, "sg-close")
    produce(broker, "sg-close", 4, partitions=1)
    a, b = RawClient(broker.bootstrap), RawClient(broker.bootstrap)
    try:
        assert _alter(a, "sg-close-g", ("share.auto.offset.reset", 0, "earliest"))["error_code"] == 0
        a.request("ShareGroupHeartbeat", 1, {"group_id": "sg-close-g", "member_id": "ma", "member_epoch": 0,
                                             "subscribed_topic_names": ["sg-close"]})
        assert _acquired(_fetch(a, "ma", 0, tid, group="sg-close-g", wait=1000)) == [(0, 3, 1)]
        b.request("ShareGroupHeartbeat", 1, {"group_id": "sg-close-g", "member_id": "ma", "member_epoch": -1})
        ack = a.request("ShareAcknowledge", 1, {
            "group_id": "sg-close-g", "member_id": "ma", "share_session_epoch": -1, "topics": [
                {"topic_id": tid, "partitions": [{"partition_index": 0, "acknowledgement_batches": [
                    {"first_offset": 0, "last_offset": 3, "acknowledge_types": [1]}]}]}]})
        assert ack["error_code"] == 0 and ack["responses"][0]["partitions"][0]["error_code"] == 0, ack
        b.request("ShareGroupHeartbeat", 1, {"group_id": "sg-close-g", "member_id": "mb", "member_epoch": 0,
                                             "subscribed_topic_names": ["sg-close"]})
        assert _acquired(_fetch(b, "mb", 0, tid, group="sg-close-g", wait=700)) == []  # all accepted
    finally:
        a.close()
        b.close()


def test_share_group_offsets_describe_alter_delete(broker):
    create_topic(broker, "sg-off", 1)
    tid = topic_id(broker, "sg-off")
    produce(broker, "sg-off", 10, partitions=1)
    rc = RawClient(broker.bootstrap)

    def describe(topics=None):
        body = {"groups": [{"group_id": "sg-off-g", "topics": topics}]}
        return rc.request("DescribeShareGroupOffsets", 1, body)["groups"][0]

    def alter(group, offset):
        return rc.request("AlterShareGroupOffsets", 0, {"group_id": group, "topics": [
            {"topic_name": "sg-off", "partitions": [{"partition_index": 0, "start_offset": offset}]}]})

    try:
        missing = describe()
        assert missing["error_code"] == 69 and missing["error_message"] == "Group sg-off-g not found."
        # Alter creates the empty group and sets where it starts
        done = alter("sg-off-g", 4)
        assert done["error_code"] == 0 and done["responses"][0]["partitions"][0]["error_code"] == 0
        listed = rc.request("ListGroups", 5, {"states_filter": [], "types_filter": ["share"]})["groups"]
        assert ("sg-off-g", "Empty") in [(g["group_id"], g["group_state"]) for g in listed]
        d = describe()
        part = d["topics"][0]["partitions"][0]
        assert (d["topics"][0]["topic_name"], part["start_offset"], part["lag"]) == ("sg-off", 4, 6)
        unread = describe([{"topic_name": "sg-off", "partitions": [0]}])["topics"][0]["partitions"][0]
        assert unread["start_offset"] == 4
        # a member reads from there; its group is no longer empty
        rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-off-g", "member_id": "m", "member_epoch": 0,
                                              "subscribed_topic_names": ["sg-off"]})
        got = _fetch(rc, "m", 0, tid, group="sg-off-g", wait=1000)
        assert _acquired(got) == [(4, 9, 1)]
        _fetch(rc, "m", 1, tid, group="sg-off-g",
               acks=[{"first_offset": 4, "last_offset": 6, "acknowledge_types": [1]}])
        part = describe()["topics"][0]["partitions"][0]
        assert (part["start_offset"], part["lag"]) == (7, 3)
        busy = alter("sg-off-g", 0)
        assert busy["error_code"] == 68 and busy["error_message"] == "The group is not empty."
        assert busy["responses"][0]["partitions"][0]["error_code"] == 68
        assert rc.request("DeleteShareGroupOffsets", 0, {"group_id": "sg-off-g", "topics": [
            {"topic_name": "sg-off"}]})["error_code"] == 68
        # a consumer group's id is not a share group's
        rc.request("ConsumerGroupHeartbeat", 1, {"group_id": "sg-off-cg", "member_id": "x", "member_epoch": 0,
                                                 "rebalance_timeout_ms": 5000, "subscribed_topic_names": ["sg-off"],
                                                 "topic_partitions": []})
        other = alter("sg-off-cg", 0)
        assert other["error_code"] == 69 and other["error_message"] == "Group sg-off-cg is not a share group."
        # once the member left: delete forgets the share-partition
        rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-off-g", "member_id": "m", "member_epoch": -1})
        deleted = rc.request("DeleteShareGroupOffsets", 0, {"group_id": "sg-off-g", "topics": [
            {"topic_name": "sg-off"}, {"topic_name": "sg-nope"}]})
        assert deleted["error_code"] == 0
        assert [r["error_code"] for r in deleted["responses"]] == [0, 3]
        assert describe()["topics"] == []
    finally:
        rc.close()


def test_acknowledged_records_stay_acknowledged_across_kill_minus_nine(broker_process, tmp_path):
    """The share-partition state is in __share_group_state: after kill -9 and
    a restart, what was accepted or rejected is not delivered again, what was
    only acquired (or released) is, and its delivery count goes on."""
    props = {"offsets.topic.num.partitions": 2, "share.coordinator.state.topic.num.partitions": 2}
    b = broker_process(data_dir=tmp_path / "data", props=props)
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("sg-kill", 1, 1)])["sg-kill"].result(10)
    p = Producer({"bootstrap.servers": b.bootstrap})
    for i in range(10):
        p.produce("sg-kill", f"k{i}".encode(), partition=0)
    assert p.flush(10) == 0

    def join(rc, member):
        for _ in range(50):
            hb = rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-kill-g", "member_id": member,
                                                       "member_epoch": 0, "subscribed_topic_names": ["sg-kill"]})
            if hb["error_code"] == 0:
                return
            time.sleep(0.1)
        raise AssertionError(hb)

    rc = RawClient(b.bootstrap)
    try:
        assert _alter(rc, "sg-kill-g", ("share.auto.offset.reset", 0, "earliest"))["error_code"] == 0
        md = rc.request("Metadata", 12, {"topics": [{"topic_id": bytes(16), "name": "sg-kill"}],
                                         "allow_auto_topic_creation": False,
                                         "include_topic_authorized_operations": False})
        tid = md["topics"][0]["topic_id"]
        join(rc, "m1")
        got = _fetch(rc, "m1", 0, tid, group="sg-kill-g", wait=2000)
        assert _acquired(got) == [(0, 9, 1)]
        # accept 0-3, reject 4, release 5; 6-9 stay acquired
        acked = _fetch(rc, "m1", 1, tid, group="sg-kill-g", acks=[
            {"first_offset": 0, "last_offset": 5, "acknowledge_types": [1, 1, 1, 1, 3, 2]}])
        assert acked["responses"][0]["partitions"][0]["acknowledge_error_code"] == 0
        # the released record comes back at once: delivery count 2, and it stays acquired
        assert _acquired(acked) == [(5, 5, 2)]
        # Killed with the member's connection open: a closed connection would release
        # its records first (and write their delivery counts), a race with the kill.
        b.kill()
    finally:
        rc.close()
    b.start()
    rc = RawClient(b.bootstrap)
    try:
        join(rc, "m2")
        again = []
        deadline = time.monotonic() + 20
        epoch = 0
        while time.monotonic() < deadline and not again:
            got = _fetch(rc, "m2", epoch, tid if epoch == 0 else None, group="sg-kill-g", wait=500)
            epoch += 1
            again = _acquired(got)
        # 0-4 were done with; 5 (released) and 6-9 (only acquired) come again, each
        # counted as delivered once before (what was last written; acquisitions are not)
        assert again == [(5, 9, 2)], again
        d = rc.request("DescribeShareGroupOffsets", 1, {"groups": [{"group_id": "sg-kill-g", "topics": None}]})
        assert d["groups"][0]["topics"][0]["partitions"][0]["start_offset"] == 5
    finally:
        rc.close()


def test_a_share_partition_restarted_during_a_long_poll_reads_its_state_first(broker):
    """A new leader epoch while a ShareFetch waits (a restart's re-election,
    a leader moving back): the share-partition starts again here, and what
    it acquires comes after what was acknowledged, read from its stored
    state, never from share.auto.offset.reset."""
    import threading

    from odradek.metadata.topics import PartitionState

    create_topic(broker, "sg-epoch", 1)
    tid = topic_id(broker, "sg-epoch")
    rc = RawClient(broker.bootstrap)
    try:
        assert _alter(rc, "sg-epoch-g", ("share.auto.offset.reset", 0, "earliest"))["error_code"] == 0
        hb = rc.request("ShareGroupHeartbeat", 1, {"group_id": "sg-epoch-g", "member_id": "m1", "member_epoch": 0,
                                                   "subscribed_topic_names": ["sg-epoch"]})
        assert hb["error_code"] == 0
        produce(broker, "sg-epoch", 4, partitions=1)
        got = _fetch(rc, "m1", 0, tid, group="sg-epoch-g", wait=2000)
        assert _acquired(got) == [(0, 3, 1)]
        acked = _fetch(rc, "m1", 1, tid, group="sg-epoch-g",
                       acks=[{"first_offset": 0, "last_offset": 3, "acknowledge_types": [1]}])
        assert acked["responses"][0]["partitions"][0]["acknowledge_error_code"] == 0
        polled = {}
        poll = threading.Thread(target=lambda: polled.update(r=_fetch(rc, "m1", 2, group="sg-epoch-g", wait=5000)))
        poll.start()
        time.sleep(0.5)  # the fetch waits: nothing to acquire

        async def new_epoch():
            p, _ = broker.core.replicas.partition_or_error("sg-epoch", 0)
            me = broker.core.config.node_id
            p.apply_state(PartitionState(leader=me, leader_epoch=p.leader_epoch + 1, replicas=[me], isr=[me]),
                          int(time.time() * 1000))

        broker.call(new_epoch)
        produce(broker, "sg-epoch", 1, start=4, partitions=1)
        poll.join(10)
        assert _acquired(polled["r"]) == [(4, 4, 1)]
    finally:
        rc.close()
