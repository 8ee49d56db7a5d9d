"""KIP-1071 streams groups in a coordinator shard (odradek/coordinator/streams_groups.py):
StreamsGroupHeartbeat, the topology configured against the topics (statuses,
internal topics to create), task assignment, reconciliation revoking before
reassigning, StreamsGroupDescribe, group id collisions, and replay
rebuilding the same groups."""

from __future__ import annotations

import struct

from odradek.coordinator import records as rec
from odradek.coordinator.config import ConsumerGroupConfig, GroupConfig
from odradek.coordinator.consumer_groups import DictTopics
from odradek.coordinator.shard import GroupShard
from odradek.coordinator.streams_groups import (
    INCORRECTLY_PARTITIONED_TOPICS,
    MISSING_INTERNAL_TOPICS,
    MISSING_SOURCE_TOPICS,
    UNREVOKED_TASKS,
    StreamsGroupConfig,
    StreamsMember,
    assign,
)
from odradek.protocol import errors

from tests.unit.consumer_group_harness import tid
from tests.unit.group_harness import ShardHarness


def info(name, partitions=0):
    return {"name": name, "partitions": partitions, "replication_factor": 0, "topic_configs": []}


def word_count(source="in"):
    """Kafka Streams' word count: subtopology 0 reads the source and writes a
    repartition topic that subtopology 1 reads and counts into a store."""
    return {"epoch": 0, "subtopologies": [
        {"subtopology_id": "0", "source_topics": [source], "source_topic_regex": [], "state_changelog_topics": [],
         "repartition_sink_topics": ["app-rep"], "repartition_source_topics": [], "copartition_groups": []},
        {"subtopology_id": "1", "source_topics": [], "source_topic_regex": [],
         "state_changelog_topics": [info("app-cl")], "repartition_sink_topics": [],
         "repartition_source_topics": [info("app-rep")], "copartition_groups": []}]}


class StreamsHarness(ShardHarness):
    def __init__(self, topics=None, **config):
        self.topic_view = DictTopics({n: (tid(n), p) for n, p in (topics or {"in": 4}).items()})
        self.streams_config = StreamsGroupConfig(**{"initial_rebalance_delay_ms": 0, **config})
        super().__init__(self._shard())

    def _shard(self) -> GroupShard:
        return GroupShard(GroupConfig(num_partitions=4), ConsumerGroupConfig(), self.topic_view,
                          streams_config=self.streams_config)

    def hb(self, member, epoch, group="app", topology=None, process=None, owned=None, **kw) -> dict:
        req = dict(group_id=group, member_id=member, member_epoch=epoch, endpoint_information_epoch=0,
                   instance_id=None, rack_id=None, rebalance_timeout_ms=300000 if epoch == 0 else -1,
                   topology=(topology or word_count()) if epoch == 0 else topology,
                   active_tasks=None, standby_tasks=None, warmup_tasks=None,
                   process_id=process or (f"p-{member}" if epoch == 0 else None), user_endpoint=None,
                   client_tags=None, task_offsets=None, task_end_offsets=None, shutdown_application=False)
        if epoch == 0:
            req.update(active_tasks=[], standby_tasks=[], warmup_tasks=[])
        if owned is not None:
            active, standby = owned if isinstance(owned, tuple) else (owned, {})
            req.update(active_tasks=[{"subtopology_id": s, "partitions": sorted(ps)} for s, ps in active.items()],
                       standby_tasks=[{"subtopology_id": s, "partitions": sorted(ps)} for s, ps in standby.items()],
                       warmup_tasks=[])
        req.update(kw)
        return dict(self.apply(self.sm.streams_group_heartbeat(self.now, request=req)).response)

    def create_internal(self, resp):
        for name, partitions, _, _ in resp["internal_topics_to_create"]:
            self.topic_view.topics[name] = (tid(name), partitions)

    def replayed(self) -> GroupShard:
        sm = self._shard()
        for key, value in self.log:
            sm.replay(key, value, self.now)
        return sm


def tasks(entries) -> dict:
    return {e["subtopology_id"]: set(e["partitions"]) for e in entries or ()}


def ready_member(h, member="a"):
    first = h.hb(member, 0)
    h.create_internal(first)
    return h.hb(member, first["member_epoch"])


def test_streams_record_keys_use_kafka_numbering():
    for kind, sub in ((17, None), (19, "m"), (20, None), (21, "m"), (22, "m"), (23, None)):
        key = rec.streams_key(kind, "grp", sub)
        assert struct.unpack(">h", key[:2])[0] == kind
        assert rec.decode_key(key) == rec.StreamsKey(kind, "grp", sub)


def test_internal_topics_are_asked_for_then_tasks_assigned():
    h = StreamsHarness()
    first = h.hb("a", 0)
    assert first["error_code"] == 0 and first["member_epoch"] == 1
    assert [s["status_code"] for s in first["status"]] == [MISSING_INTERNAL_TOPICS]
    assert sorted((n, p) for n, p, _, _ in first["internal_topics_to_create"]) == [("app-cl", 4), ("app-rep", 4)]
    assert tasks(first["active_tasks"]) == {}
    h.create_internal(first)
    second = h.hb("a", 1)
    assert second["status"] == [] and second["member_epoch"] == 2
    assert tasks(second["active_tasks"]) == {"0": {0, 1, 2, 3}, "1": {0, 1, 2, 3}}
    assert h.sm.list_groups() == [{"group_id": "app", "protocol_type": "streams", "group_state": "Stable",
                                   "group_type": "streams"}]


def test_a_new_groups_first_assignment_is_delayed():
    h = StreamsHarness(initial_rebalance_delay_ms=3000)
    first = h.hb("a", 0)
    assert first["member_epoch"] == 1 and [s["status_code"] for s in first["status"]] == [5, 3]
    h.create_internal(first)
    b = h.hb("b", 0)
    assert [s["status_code"] for s in b["status"]] == [5] and tasks(b["active_tasks"]) == {}
    a = h.hb("a", 1)
    assert a["member_epoch"] == 1 and [s["status_code"] for s in a["status"]] == [5]
    h.advance(3000)  # the timer assigns the tasks
    a = h.hb("a", 1)
    b = h.hb("b", b["member_epoch"])
    assert a["status"] == [] and a["member_epoch"] == b["member_epoch"] == h.sm.streams.groups["app"].group_epoch
    got = [(s, p) for r in (a, b) for e in r["active_tasks"] for s, p in [(e["subtopology_id"], q)
                                                                         for q in e["partitions"]]]
    assert len(got) == len(set(got)) == 8
    assert h.replayed().durable_view() == h.sm.durable_view()


def test_source_topic_regexes_match_whole_names():
    from odradek.coordinator.streams_groups import configure

    topo = {"epoch": 0, "subtopologies": [{
        "subtopology_id": "0", "source_topics": [], "source_topic_regex": ["in.*"], "state_changelog_topics": [],
        "repartition_sink_topics": [], "repartition_source_topics": [], "copartition_groups": []}]}
    view = DictTopics({n: (tid(n), p) for n, p in {"in": 4, "input2": 6, "xin": 9}.items()})
    configured = configure(topo, view)
    assert configured.ready and configured.tasks == {"0": 6}
    assert sorted(configured.topics_by_subtopology["0"]) == ["in", "input2"]
    nothing = configure(dict(topo, subtopologies=[dict(topo["subtopologies"][0], source_topic_regex=["(a+)+$"])]),
                        view)
    assert [st["status_code"] for st in nothing.statuses] == [MISSING_SOURCE_TOPICS]


def test_missing_source_and_incorrectly_partitioned_topics():
    h = StreamsHarness()
    r = h.hb("a", 0, topology=word_count("nope"))
    assert [s["status_code"] for s in r["status"]] == [MISSING_SOURCE_TOPICS]
    assert "nope" in r["status"][0]["status_detail"] and not r["internal_topics_to_create"]
    assert h.sm.list_groups()[0]["group_state"] == "NotReady"
    assert h.sm.streams_group_describe(["app"])[0]["topology"] == {"epoch": 0, "subtopologies": None}
    h2 = StreamsHarness({"in": 4, "app-cl": 2, "app-rep": 4})
    r = h2.hb("a", 0)
    assert [s["status_code"] for s in r["status"]] == [INCORRECTLY_PARTITIONED_TOPICS]
    assert "app-cl" in r["status"][0]["status_detail"]
    assert tasks(r["active_tasks"]) == {}


def test_a_second_member_gets_tasks_once_the_first_revoked_them():
    h = StreamsHarness()
    a = ready_member(h)
    everything = tasks(a["active_tasks"])
    a = h.hb("a", a["member_epoch"], owned=everything)
    b = h.hb("b", 0)
    assert tasks(b["active_tasks"]) == {}  # its tasks are still a's
    a2 = h.hb("a", a["member_epoch"])
    kept = tasks(a2["active_tasks"])
    assert a2["member_epoch"] == a["member_epoch"]  # revoking at its epoch
    assert h.sm.streams.groups["app"].members["a"].state == UNREVOKED_TASKS
    assert sum(len(p) for p in kept.values()) == 4
    b2 = h.hb("b", b["member_epoch"])
    assert tasks(b2["active_tasks"]) == {}  # a has not revoked yet
    a3 = h.hb("a", a2["member_epoch"], owned=kept)
    assert a3["member_epoch"] == b["member_epoch"]
    b3 = h.hb("b", b2["member_epoch"])
    got = tasks(b3["active_tasks"])
    flat = {(s, p) for s, ps in got.items() for p in ps} | {(s, p) for s, ps in kept.items() for p in ps}
    assert len(flat) == 8 and not any(p in kept.get(s, ()) for s, ps in got.items() for p in ps)
    d = h.sm.streams_group_describe(["app"])[0]
    assert d["group_state"] == "Stable" and len(d["members"]) == 2
    assert d["topology"]["subtopologies"][1]["repartition_source_topics"][0]["name"] == "app-rep"


def test_iq_endpoints_follow_the_members_current_tasks():
    h = StreamsHarness()
    ep = {"host": "h1", "port": 1}
    first = h.hb("a", 0, user_endpoint=ep)
    h.create_internal(first)
    a = h.hb("a", 1)
    assert a["endpoint_information_epoch"] > 0
    [entry] = a["partitions_by_user_endpoint"]
    assert entry["user_endpoint"] == ep
    assert {(t["topic"], tuple(t["partitions"])) for t in entry["active_partitions"]} == {
        ("in", (0, 1, 2, 3)), ("app-rep", (0, 1, 2, 3))}
    same = h.hb("a", a["member_epoch"], endpoint_information_epoch=a["endpoint_information_epoch"])
    assert same["partitions_by_user_endpoint"] is None  # the member's copy is up to date
    h.hb("b", 0, user_endpoint={"host": "h2", "port": 2})
    h.hb("a", same["member_epoch"], owned=tasks(a["active_tasks"]))  # a revokes half
    moved = h.hb("a", same["member_epoch"], endpoint_information_epoch=a["endpoint_information_epoch"])
    assert moved["endpoint_information_epoch"] != a["endpoint_information_epoch"]
    assert [e["user_endpoint"]["host"] for e in moved["partitions_by_user_endpoint"]] == ["h1", "h2"]


def test_standby_tasks_go_to_another_process():
    members = {m: StreamsMember(m, process_id=p) for m, p in (("a", "p1"), ("b", "p1"), ("c", "p2"))}
    out = assign(members, {}, {"0": 2}, 1)
    for mid, a in out.items():
        for sid, ps in a.standby.items():
            for p in ps:
                owner = next(m for m, x in out.items() if p in x.active.get(sid, ()))
                assert members[owner].process_id != members[mid].process_id
    assert sum(len(ps) for a in out.values() for ps in a.standby.values()) == 2


def test_epochs_and_invalid_heartbeats():
    h = StreamsHarness()
    a = ready_member(h)
    assert h.hb("a", a["member_epoch"] + 5)["error_code"] == errors.FENCED_MEMBER_EPOCH
    assert h.hb("zz", 3)["error_code"] == errors.UNKNOWN_MEMBER_ID
    assert h.hb("b", 0, process="p", rebalance_timeout_ms=-1)["error_code"] == errors.INVALID_REQUEST
    r = h.hb("b", 0, process="p", active_tasks=[{"subtopology_id": "0", "partitions": [1]}])
    assert (r["error_code"], r["error_message"]) == (errors.INVALID_REQUEST,
                                                     "ActiveTasks must be empty when (re-)joining.")
    r = h.hb("b", -3)
    assert r["error_message"] == "MemberEpoch is -3, but must be greater than or equal to -2."
    r = h.hb("b", a["member_epoch"], active_tasks=[], standby_tasks=None, warmup_tasks=[])
    assert r["error_message"] == "If one task-type is non-null, all must be non-null."
    bad = word_count()
    bad["subtopologies"][1]["state_changelog_topics"] = [info("app-cl", 3)]
    r = h.hb("b", 0, topology=bad)
    assert (r["error_code"], r["error_message"]) == (
        errors.STREAMS_INVALID_TOPOLOGY,
        "Changelog topic app-cl must have an undefined partition count, but it is set to 3.")
    assert h.hb("a", -1)["member_epoch"] == -1
    assert h.sm.list_groups()[0]["group_state"] == "Empty"


def test_the_topology_stays_the_groups():
    h = StreamsHarness({"in": 4, "other": 4})
    ready_member(h)
    changed = word_count("other")
    assert h.hb("b", 0, topology=changed)["error_message"] == "Topology updates are not supported yet."
    later = dict(changed, epoch=1)
    assert h.hb("b", 0, topology=later)["error_code"] == errors.INVALID_REQUEST
    h.hb("a", -1)
    assert h.hb("b", 0, topology=changed)["error_code"] == errors.INVALID_REQUEST  # even when empty
    older = h.hb("c", 0, topology=dict(word_count(), epoch=-1))
    assert older["error_code"] == 0 and older["status"][0]["status_code"] == 0  # STALE_TOPOLOGY


def test_session_expiry_removes_a_member():
    h = StreamsHarness(session_timeout_ms=1000)
    ready_member(h)
    h.advance(1500)
    assert h.sm.streams.groups["app"].members == {}


def test_a_member_that_does_not_revoke_in_time_is_fenced():
    h = StreamsHarness()
    first = h.hb("a", 0, rebalance_timeout_ms=1000)
    h.create_internal(first)
    a = h.hb("a", 1)
    h.hb("a", a["member_epoch"], owned=tasks(a["active_tasks"]))
    b = h.hb("b", 0)
    h.hb("a", a["member_epoch"])  # told to revoke half; it never does
    assert h.sm.streams.groups["app"].members["a"].state == UNREVOKED_TASKS
    h.advance(500)
    assert "a" in h.sm.streams.groups["app"].members
    h.advance(600)  # past its rebalance timeout, well within its session
    assert set(h.sm.streams.groups["app"].members) == {"b"}
    b = h.hb("b", b["member_epoch"])
    assert sum(len(p) for p in tasks(b["active_tasks"]).values()) == 8


def test_a_group_id_is_of_one_type_but_empty_classic_groups_convert():
    h = StreamsHarness()
    h.hb("a", 0)
    # a streams group with members is not taken over
    j = h.apply(h.sm.join_group(h.now, group_id="app", member_id="", instance_id=None, session_timeout=10000,
                                rebalance_timeout=10000, protocol_type="consumer", protocols=[("range", b"")]))
    assert j.response["error_code"] == errors.INCONSISTENT_GROUP_PROTOCOL
    h.hb("a", -1)
    # an empty one is not taken over by a consumer group
    r = h.apply(h.sm.consumer_group_heartbeat(
        h.now, group_id="app", member_id="m", member_epoch=0, rebalance_timeout_ms=30000,
        subscribed_topic_names=["in"], topic_partitions=[]))
    assert (r.response["error_code"], r.response["error_message"]) == (
        errors.GROUP_ID_NOT_FOUND, "Group app is not a consumer group.")
    # ... but by a classic group (JoinGroup), as in Kafka
    j = h.apply(h.sm.join_group(h.now, group_id="app", member_id="", instance_id=None, session_timeout=10000,
                                rebalance_timeout=10000, protocol_type="consumer", protocols=[("range", b"")]))
    assert j.response["error_code"] == errors.MEMBER_ID_REQUIRED
    assert h.sm.groups["app"].group_type == "classic"
    # and an empty classic group (here with committed offsets) becomes a streams group, its offsets kept
    h.apply(h.sm.commit_offsets(h.now, group_id="simple", generation=-1, member_id="", instance_id=None,
                                topics=[("in", [(0, 5, -1, "")])], version=8, topic_exists=lambda n, p: True))
    s = h.hb("a", 0, group="simple")
    assert s["error_code"] == 0 and h.sm.groups["simple"].group_type == "streams"
    assert [v.offset for v in h.sm.durable_view()["simple"]["offsets"].values()] == [5]
    # (the classic group a JoinGroup answered MEMBER_ID_REQUIRED is in memory only, as in Kafka)
    assert h.replayed().durable_view()["simple"] == h.sm.durable_view()["simple"]
    # a consumer group's id is not taken by a streams group, even empty
    h.apply(h.sm.consumer_group_heartbeat(
        h.now, group_id="c", member_id="m", member_epoch=0, rebalance_timeout_ms=30000,
        subscribed_topic_names=["in"], topic_partitions=[]))
    s = h.hb("a", 0, group="c")
    assert (s["error_code"], s["error_message"]) == (errors.GROUP_ID_NOT_FOUND, "Group c is not a streams group.")
    d = h.sm.streams_group_describe(["c", "zz"])
    assert [x["error_code"] for x in d] == [errors.GROUP_ID_NOT_FOUND] * 2
    assert h.sm.describe_group("simple", 6)["error_code"] == errors.GROUP_ID_NOT_FOUND


def test_replay_rebuilds_the_same_groups():
    h = StreamsHarness()
    a = ready_member(h)
    a = h.hb("a", a["member_epoch"], owned=tasks(a["active_tasks"]))
    b = h.hb("b", 0)
    h.hb("a", a["member_epoch"])  # revoking
    h.hb("b", b["member_epoch"])
    h.hb("c", 0)
    h.hb("c", -1)
    assert h.replayed().durable_view() == h.sm.durable_view()
