"""Partition reassignments (KIP-455) on brokers sharing one etcd prefix:
AlterPartitionReassignments and ListPartitionReassignments over the wire,
served by the controller only; a partition of a replicated topic moved from
brokers [1, 2] to [2, 3] while an idempotent acks=all producer writes to it
loses no acknowledged record, the new broker catches up from the leader,
the old replica's log leaves broker 1's data dir; a reassignment cancelled
reverts; invalid targets are refused. Skipped, saying why, without etcd
3.5.3+ or etcd3aio. (confluent-kafka's AdminClient has no reassignment
calls: the requests are sent with the raw client.)"""

from __future__ import annotations

import os
import threading
import time

import pytest

from odradek.protocol import errors
from tests.integration.rawclient import RawClient
from tests.integration.test_replication import create_replicated, hosted, start_brokers
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


def controller_of(brokers):
    wait_until(lambda: any(b.core.controller is not None and b.core.controller.active for b in brokers),
               what="an active controller")
    return next(b for b in brokers if b.core.controller.active)


def by_id(brokers, node_id):
    return next(b for b in brokers if b.core.config.node_id == node_id)


def alter(broker, topic, targets: dict[int, list[int] | None], version=1, allow=True):
    raw = RawClient(broker.bootstrap)
    try:
        res = raw.request("AlterPartitionReassignments", version, {
            "timeout_ms": 10000, "allow_replication_factor_change": allow,
            "topics": [{"name": topic, "partitions": [{"partition_index": i, "replicas": r}
                                                      for i, r in targets.items()]}]})
    finally:
        raw.close()
    return res, {p["partition_index"]: p["error_code"] for t in res["responses"] for p in t["partitions"]}


def listed(broker, topics=None):
    raw = RawClient(broker.bootstrap)
    try:
        res = raw.request("ListPartitionReassignments", 0, {"timeout_ms": 10000, "topics": topics})
    finally:
        raw.close()
    assert res["error_code"] == 0, res
    return {(t["name"], p["partition_index"]): (p["replicas"], p["adding_replicas"], p["removing_replicas"])
            for t in res["topics"] for p in t["partitions"]}


def state(broker, topic, index=0):
    s = broker.core.image.get(topic).partitions[index]
    return s.leader, s.leader_epoch, list(s.replicas), list(s.isr)


def hold_fetches(broker):
    """Keep ``broker`` from fetching partitions it starts hosting (until ``release``)."""
    fetchers = broker.core.replicas.fetchers

    async def hold():
        broker.core.replicas.fetchers = None
    broker.call(hold)
    return fetchers


def release(broker, fetchers, topic, index=0):
    async def go():
        broker.core.replicas.fetchers = fetchers
        p = hosted(broker, topic, index)
        if p is not None:
            fetchers.follow([p], [])
    broker.call(go)


def test_a_partition_moves_while_produced_to_and_loses_nothing(etcd, tmp_path):
    from confluent_kafka import Consumer, Producer, TopicPartition

    brokers = start_brokers(etcd, tmp_path, "reassign-move")
    try:
        create_replicated(brokers[0], "mv", [[1, 2]], {"min.insync.replicas": "1"})
        b1, b2, b3 = (by_id(brokers, i) for i in (1, 2, 3))
        wait_until(lambda: hosted(b1, "mv", 0) is not None and hosted(b2, "mv", 0) is not None, what="hosting")
        controller = controller_of(brokers)
        bootstrap = ",".join(b.bootstrap for b in brokers)

        acked, failed, stop = [], [], threading.Event()

        def produce():
            p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                          "linger.ms": 5, "message.timeout.ms": 60000})

            def report(err, msg):
                (failed if err else acked).append(msg.value() if not err else err)
            n = 0
            while not stop.is_set():
                p.produce("mv", f"v{n}".encode(), partition=0, on_delivery=report)
                n += 1
                p.poll(0.002 if n % 50 else 0.05)
            assert p.flush(60) == 0

        producer = threading.Thread(target=produce)
        producer.start()
        wait_until(lambda: len(acked) > 300, what="records acknowledged before the move")

        # Broker 3 is held from fetching, so the reassignment is seen in progress.
        fetchers = hold_fetches(b3)
        res, codes = alter(controller, "mv", {0: [2, 3]})
        assert res["error_code"] == 0 and codes == {0: 0}, res
        leader, epoch, replicas, isr = state(controller, "mv")
        assert (leader, replicas, isr) == (1, [2, 3, 1], [1, 2])
        assert listed(controller) == {("mv", 0): ([2, 3, 1], [3], [1])}
        assert listed(controller, [{"name": "mv", "partition_indexes": [0, 7]}]) == {("mv", 0): ([2, 3, 1], [3], [1])}
        assert listed(controller, [{"name": "other", "partition_indexes": [0]}]) == {}
        wait_until(lambda: hosted(b3, "mv", 0) is not None, what="broker 3 to host the new replica")
        time.sleep(0.5)
        assert listed(controller) == {("mv", 0): ([2, 3, 1], [3], [1])}

        release(b3, fetchers, "mv")
        wait_until(lambda: listed(controller) == {}, timeout=30, what="the reassignment to complete")
        leader, epoch2, replicas, isr = state(controller, "mv")
        assert replicas == [2, 3] and sorted(isr) == [2, 3] and leader == 2 and epoch2 == epoch + 1
        wait_until(lambda: hosted(b1, "mv", 0) is None, what="broker 1 to drop its replica")
        log_dir = os.path.join(b1.core.replicas.store.data_dir, "mv-0")
        wait_until(lambda: not os.path.exists(log_dir), what="broker 1's log of mv-0 to be deleted")

        n_before = len(acked)
        wait_until(lambda: len(acked) > n_before + 300, timeout=30, what="records acknowledged after the move")
        stop.set()
        producer.join(90)
        assert not producer.is_alive() and not failed, failed[:5]

        # Everything acknowledged is read back from the new replicas, once each.
        wait_until(lambda: hosted(b3, "mv", 0).high_watermark == hosted(b2, "mv", 0).log_end_offset,
                   what="broker 3 to catch up")
        for b in (b2, b3):
            p = hosted(b, "mv", 0)
            assert p.log_start_offset == 0
        c = Consumer({"bootstrap.servers": f"{b2.bootstrap},{b3.bootstrap}", "group.id": "mv-check",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        try:
            c.assign([TopicPartition("mv", 0, 0)])
            read, deadline = [], time.monotonic() + 30
            while len(read) < len(acked) and time.monotonic() < deadline:
                for m in c.consume(500, 1.0):
                    assert not m.error(), m.error()
                    read.append(m.value())
        finally:
            c.close()
        assert len(read) == len(set(read)), "duplicates"
        assert set(acked) <= set(read), sorted(set(acked) - set(read))[:5]
        assert len(read) == len(acked)
    finally:
        for b in brokers:
            b.stop()


def test_cancel_reverts_and_invalid_targets_are_refused(etcd, tmp_path):
    brokers = start_brokers(etcd, tmp_path, "reassign-cancel")
    try:
        create_replicated(brokers[0], "cx", [[1, 2], [2, 3]])
        b1, b2, b3 = (by_id(brokers, i) for i in (1, 2, 3))
        controller = controller_of(brokers)
        others = [b for b in brokers if b is not controller]

        # Only the controller serves them.
        res, codes = alter(others[0], "cx", {0: [2, 3]})
        assert res["error_code"] == errors.NOT_CONTROLLER and codes == {0: errors.NOT_CONTROLLER}
        raw = RawClient(others[1].bootstrap)
        try:
            assert raw.request("ListPartitionReassignments", 0, {"timeout_ms": 1000, "topics": None}
                               )["error_code"] == errors.NOT_CONTROLLER
        finally:
            raw.close()

        # Invalid targets.
        res, codes = alter(controller, "cx", {0: [], 1: [2, 2]})
        assert codes == {0: errors.INVALID_REPLICA_ASSIGNMENT, 1: errors.INVALID_REPLICA_ASSIGNMENT}
        res, codes = alter(controller, "cx", {0: [1, 9], 1: None, 5: [1]})
        assert codes == {0: errors.INVALID_REPLICA_ASSIGNMENT, 1: errors.NO_REASSIGNMENT_IN_PROGRESS,
                         5: errors.UNKNOWN_TOPIC_OR_PARTITION}
        res, codes = alter(controller, "nope", {0: [1]}, version=0)
        assert codes == {0: errors.UNKNOWN_TOPIC_OR_PARTITION}
        held = hold_fetches(b1)  # so that the move of partition 1 stays in progress
        res, codes = alter(controller, "cx", {0: [1, 2, 3], 1: [3, 1]}, allow=False)
        assert res["allow_replication_factor_change"] is False
        assert codes == {0: errors.INVALID_REPLICATION_FACTOR, 1: 0}
        res, codes = alter(controller, "cx", {1: None})
        assert codes == {1: 0} and listed(controller) == {}
        wait_until(lambda: hosted(b1, "cx", 1) is None, what="broker 1 to drop the cancelled replica")
        release(b1, held, "cx", 1)
        assert [state(controller, "cx", i) for i in (0, 1)] == [(1, 0, [1, 2], [1, 2]), (2, 0, [3, 2], [2, 3])]

        # Started, held in progress, then cancelled: back to [1, 2]; broker 3 drops what it began.
        fetchers = hold_fetches(b3)
        res, codes = alter(controller, "cx", {0: [3, 2]})
        assert codes == {0: 0}
        assert listed(controller) == {("cx", 0): ([3, 2, 1], [3], [1])}
        wait_until(lambda: hosted(b3, "cx", 0) is not None, what="broker 3 to host the new replica")
        assert os.path.exists(os.path.join(b3.core.replicas.store.data_dir, "cx-0"))
        res, codes = alter(controller, "cx", {0: None})
        assert codes == {0: 0}
        assert listed(controller) == {}
        assert state(controller, "cx") == (1, 0, [2, 1], [1, 2])
        wait_until(lambda: hosted(b3, "cx", 0) is None, what="broker 3 to drop the cancelled replica")
        wait_until(lambda: not os.path.exists(os.path.join(b3.core.replicas.store.data_dir, "cx-0")),
                   what="broker 3's log of cx-0 to be deleted")
        assert hosted(b3, "cx", 1) is not None  # its other partition stays
        release(b3, fetchers, "cx")

        # Shrinking a partition's replicas completes at once.
        res, codes = alter(controller, "cx", {1: [3]})
        assert codes == {1: 0}
        assert listed(controller) == {}
        assert state(controller, "cx", 1) == (3, 1, [3], [3])
        wait_until(lambda: hosted(b2, "cx", 1) is None, what="broker 2 to drop its replica")
    finally:
        for b in brokers:
            b.stop()


def test_a_new_replica_starts_at_the_leaders_log_start(etcd, tmp_path):
    from confluent_kafka import Producer, TopicPartition
    from confluent_kafka.admin import AdminClient

    brokers = start_brokers(etcd, tmp_path, "reassign-start")
    try:
        create_replicated(brokers[0], "ls", [[1, 2]])
        b1, b2, b3 = (by_id(brokers, i) for i in (1, 2, 3))
        wait_until(lambda: hosted(b1, "ls", 0) is not None, what="hosting")
        p = Producer({"bootstrap.servers": b1.bootstrap, "acks": "all", "linger.ms": 0})
        for i in range(200):
            p.produce("ls", f"v{i}".encode(), partition=0)
            if i % 20 == 19:
                p.flush(10)
        assert p.flush(10) == 0
        admin = AdminClient({"bootstrap.servers": b1.bootstrap})
        done = admin.delete_records([TopicPartition("ls", 0, 150)])
        for f in done.values():
            assert f.result(10).low_watermark == 150
        wait_until(lambda: hosted(b2, "ls", 0).log_start_offset == 150, what="the follower's log start")

        res, codes = alter(controller_of(brokers), "ls", {0: [1, 3]})
        assert codes == {0: 0}
        wait_until(lambda: listed(controller_of(brokers)) == {}, what="the reassignment to complete")
        assert state(b1, "ls")[2] == [1, 3]
        new = hosted(b3, "ls", 0)
        assert (new.log_start_offset, new.log_end_offset) == (150, 200)
        wait_until(lambda: hosted(b2, "ls", 0) is None, what="broker 2 to drop its replica")
    finally:
        for b in brokers:
            b.stop()


JAVA_REASSIGN = r"""
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.*;

public class Reassign {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        try (Admin admin = Admin.create(props)) {
            TopicPartition tp0 = new TopicPartition("jv", 0), tp1 = new TopicPartition("jv", 1);
            Map<TopicPartition, Optional<NewPartitionReassignment>> moves = new HashMap<>();
            moves.put(tp0, Optional.of(new NewPartitionReassignment(Arrays.asList(2, 3))));
            admin.alterPartitionReassignments(moves).all().get();
            System.out.println("altered");
            for (int i = 0; i < 200; i++) {
                if (admin.listPartitionReassignments().reassignments().get().isEmpty()) break;
                Thread.sleep(100);
            }
            System.out.println("listed " + admin.listPartitionReassignments().reassignments().get());
            TopicDescription d = admin.describeTopics(Collections.singleton("jv")).allTopicNames().get().get("jv");
            System.out.println("replicas " + d.partitions().get(0).replicas().stream().map(Node::id).toList());
            Map<TopicPartition, Optional<NewPartitionReassignment>> bad = new HashMap<>();
            bad.put(tp1, Optional.empty());
            try {
                admin.alterPartitionReassignments(bad).all().get();
                System.out.println("cancel: none");
            } catch (Exception e) {
                System.out.println("cancel: " + e.getCause().getClass().getSimpleName());
            }
            bad.put(tp1, Optional.of(new NewPartitionReassignment(Arrays.asList(1, 1))));
            try {
                admin.alterPartitionReassignments(bad).all().get();
                System.out.println("dup: none");
            } catch (Exception e) {
                System.out.println("dup: " + e.getCause().getClass().getSimpleName());
            }
        }
    }
}
"""


def test_the_java_admin_moves_a_partition(etcd, tmp_path):
    """Kafka's own admin client, bootstrapped on a broker that is not the
    controller, finds the controller and reassigns with it."""
    from tests.integration.java_client import require_java, run_java

    require_java()
    brokers = start_brokers(etcd, tmp_path, "reassign-java")
    try:
        create_replicated(brokers[0], "jv", [[1, 2], [1, 2]])
        controller = controller_of(brokers)
        other = next(b for b in brokers if b is not controller)
        out = run_java(tmp_path, "Reassign", JAVA_REASSIGN, [other.bootstrap])
        assert "altered" in out and "listed {}" in out and "replicas [2, 3]" in out, out
        assert "cancel: NoReassignmentInProgressException" in out, out
        assert "dup: InvalidReplicaAssignmentException" in out, out
    finally:
        for b in brokers:
            b.stop()
