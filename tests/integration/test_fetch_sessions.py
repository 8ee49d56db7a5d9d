"""Fetch sessions (KIP-227) over the wire: the session rules with a raw
client, and real clients that open sessions reading many partitions."""

from __future__ import annotations

import threading
import time

import pytest

from odradek.protocol import errors
from tests.integration.rawclient import RawClient
from tests.integration.test_franz_go import franz_binary  # noqa: F401  (a fixture)

pytestmark = pytest.mark.timeout(180)


class Fetcher:
    """Fetch requests over one connection, by topic name (v12) or id (v13+)."""

    def __init__(self, bootstrap: str, topic: str, version: int = 12):
        self.c = RawClient(bootstrap)
        self.topic = topic
        self.version = version
        self.topic_id = bytes(16)
        if version >= 13:
            md = self.c.request("Metadata", 12, {"topics": [{"topic_id": None, "name": topic}],
                                                 "allow_auto_topic_creation": False})
            self.topic_id = md["topics"][0]["topic_id"]

    def fetch(self, session_id: int, epoch: int, offsets: dict[int, int], forget=(), max_wait_ms=0,
              version: int | None = None) -> dict:
        body = {"replica_id": -1, "max_wait_ms": max_wait_ms, "min_bytes": 1, "max_bytes": 1 << 20,
                "isolation_level": 0, "session_id": session_id, "session_epoch": epoch,
                "topics": [{"topic": self.topic, "topic_id": self.topic_id, "partitions": [
                    {"partition": i, "current_leader_epoch": -1, "fetch_offset": off, "log_start_offset": -1,
                     "partition_max_bytes": 1 << 16} for i, off in offsets.items()]}] if offsets else [],
                "forgotten_topics_data": [{"topic": self.topic, "topic_id": self.topic_id,
                                           "partitions": list(forget)}] if forget else [],
                "rack_id": ""}
        return self.c.request("Fetch", version or self.version, body)

    def close(self):
        self.c.close()


def answered(resp: dict) -> dict[int, int]:
    """partition -> bytes of records, for the partitions a response carries."""
    return {p["partition_index"]: len(p["records"] or b"") for t in resp["responses"] for p in t["partitions"]}


@pytest.mark.parametrize("version", [12, 13, 18])
def test_session_rules(odradek_broker_fn, version):
    b = odradek_broker_fn
    topic = f"sessions-{version}"
    b.create_topic(topic, 4)
    for i in range(4):
        b.produce(topic, [b"a", b"b"], partition=i)
    f = Fetcher(b.bootstrap, topic, version)
    try:
        # A full fetch with epoch 0 creates a session and answers every partition.
        r = f.fetch(0, 0, {i: 0 for i in range(4)})
        sid = r["session_id"]
        assert r["error_code"] == 0 and sid != 0
        assert set(answered(r)) == {0, 1, 2, 3} and all(answered(r).values())
        # The client moves to the end of the logs: the partitions it names answer
        # (nothing new, but the session learns the offsets); then nothing does.
        r = f.fetch(sid, 1, {i: 2 for i in range(4)})
        assert r["error_code"] == 0 and r["session_id"] == sid and answered(r) == {}
        t0 = time.monotonic()
        r = f.fetch(sid, 2, {}, max_wait_ms=300)
        assert answered(r) == {} and time.monotonic() - t0 >= 0.25
        # Records on one partition: only it answers.
        b.produce(topic, [b"c"], partition=2)
        r = f.fetch(sid, 3, {})
        assert list(answered(r)) == [2] and answered(r)[2] > 0
        assert r["responses"][0]["topic_id" if version >= 13 else "topic"] == (f.topic_id if version >= 13 else topic)
        # A long poll on a session wakes on any of its partitions.
        timer = threading.Timer(0.3, b.produce, (topic, [b"d"]), {"partition": 3})
        timer.start()
        t0 = time.monotonic()
        r = f.fetch(sid, 4, {2: 3}, max_wait_ms=5000)
        assert list(answered(r)) == [3] and time.monotonic() - t0 < 4
        # A forgotten partition is no longer read.
        r = f.fetch(sid, 5, {3: 3}, forget=[0])
        assert answered(r) == {}
        b.produce(topic, [b"e"], partition=0)
        b.produce(topic, [b"e"], partition=1)
        r = f.fetch(sid, 6, {})
        assert list(answered(r)) == [1]
        # A wrong epoch, an unknown id, names vs ids across v12/v13.
        r = f.fetch(sid, 6, {})
        assert (r["error_code"], r["session_id"], r["responses"]) == (errors.INVALID_FETCH_SESSION_EPOCH, 0, [])
        r = f.fetch(sid ^ 0x5A5A, 7, {})
        assert r["error_code"] == errors.FETCH_SESSION_ID_NOT_FOUND
        if version in (12, 13):
            r = f.fetch(sid, 7, {}, version=25 - version)
            assert r["error_code"] == errors.FETCH_SESSION_TOPIC_ID_ERROR
        # The session survives its connection.
        f.close()
        f = Fetcher(b.bootstrap, topic, version)
        r = f.fetch(sid, 7, {1: 3})
        assert r["error_code"] == 0 and answered(r) == {}
        # Epoch -1 closes it, and is served as a sessionless full fetch.
        r = f.fetch(sid, -1, {0: 0})
        assert r["session_id"] == 0 and list(answered(r)) == [0]
        assert f.fetch(sid, 8, {})["error_code"] == errors.FETCH_SESSION_ID_NOT_FOUND
        assert len(b.broker.core.fetch_sessions) == 0
    finally:
        f.close()


@pytest.mark.parametrize("version", [4, 12, 16])
def test_a_partition_error_carries_an_empty_record_set(odradek_broker_fn, version):
    """As in Kafka, a partition answered with an error has an empty record
    set, never a null one: librdkafka takes a null one (size -1) for a
    protocol error and drops the connection (seen on NOT_LEADER_OR_FOLLOWER
    while a partition moved)."""
    b = odradek_broker_fn
    b.create_topic("errs", 1)
    f = Fetcher(b.bootstrap, "errs", version)
    try:
        r = f.fetch(0, -1, {0: 0, 7: 0})
        got = {p["partition_index"]: (p["error_code"], p["records"]) for p in r["responses"][0]["partitions"]}
        assert got[7] == (errors.UNKNOWN_TOPIC_OR_PARTITION, b"")
    finally:
        f.close()


def test_unknown_topic_id_in_a_session(odradek_broker_fn):
    b = odradek_broker_fn
    b.create_topic("ids", 1)
    f = Fetcher(b.bootstrap, "ids", 13)
    try:
        known = f.topic_id
        f.topic_id = b"\x01" * 16
        r = f.fetch(0, 0, {0: 0})
        sid = r["session_id"]
        assert sid and r["responses"][0]["partitions"][0]["error_code"] == errors.UNKNOWN_TOPIC_ID
        # Errors are sent in every incremental response until forgotten.
        r = f.fetch(sid, 1, {})
        assert r["responses"][0]["partitions"][0]["error_code"] == errors.UNKNOWN_TOPIC_ID
        f.topic_id = known
        r = f.fetch(sid, 2, {0: 0})
        # As in Kafka 4.4: partitions of unknown topic ids come last.
        assert [(t["topic_id"], p["error_code"]) for t in r["responses"] for p in t["partitions"]] == \
            [(known, 0), (b"\x01" * 16, errors.UNKNOWN_TOPIC_ID)]
        r = f.fetch(sid, 3, {})
        assert [(t["topic_id"], p["error_code"]) for t in r["responses"] for p in t["partitions"]] == \
            [(b"\x01" * 16, errors.UNKNOWN_TOPIC_ID)]
        f.topic_id = b"\x01" * 16
        r = f.fetch(sid, 4, {}, forget=[0])
        assert r["error_code"] == 0 and r["responses"] == []
    finally:
        f.close()


def test_eviction_and_disabled_sessions(odradek_broker_factory):
    b = odradek_broker_factory(config={"max.incremental.fetch.session.cache.slots": "2",
                                       "min.incremental.fetch.session.eviction.ms": "200"})
    b.create_topic("evict", 8)
    f = Fetcher(b.bootstrap, "evict")
    try:
        small = f.fetch(0, 0, {0: 0})["session_id"]
        large = f.fetch(0, 0, {i: 0 for i in range(4)})["session_id"]
        assert small and large
        # Full, and nothing old enough to give way.
        assert f.fetch(0, 0, {i: 0 for i in range(8)})["session_id"] == 0
        time.sleep(0.3)
        assert f.fetch(large, 1, {})["error_code"] == 0  # keeps large in use
        # small, unused for longer than the eviction time, gives way.
        bigger = f.fetch(0, 0, {i: 0 for i in range(6)})["session_id"]
        assert bigger
        assert f.fetch(small, 1, {})["error_code"] == errors.FETCH_SESSION_ID_NOT_FOUND
        assert f.fetch(large, 2, {})["error_code"] == 0
        assert b.broker.core.fetch_sessions.counts["evictions"] == 1
    finally:
        f.close()
    off = odradek_broker_factory(config={"max.incremental.fetch.session.cache.slots": "0"})
    off.create_topic("off", 2)
    f = Fetcher(off.bootstrap, "off")
    try:
        r = f.fetch(0, 0, {0: 0, 1: 0})
        assert r["error_code"] == 0 and r["session_id"] == 0 and set(answered(r)) == {0, 1}
    finally:
        f.close()


JAVA_SOURCE = r"""
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.*;

public class JavaSessions {
  static int consume(KafkaConsumer<String, String> c, int want, long ms) {
    int got = 0;
    long deadline = System.currentTimeMillis() + ms;
    while (got < want && System.currentTimeMillis() < deadline) {
      for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
        System.out.println("record " + r.partition() + " " + r.offset() + " " + r.value());
        got++;
      }
    }
    return got;
  }

  public static void main(String[] a) throws Exception {
    String bs = a[0], topic = a[1];
    int parts = Integer.parseInt(a[2]), per = Integer.parseInt(a[3]);
    Properties pp = new Properties();
    pp.put("bootstrap.servers", bs);
    pp.put("linger.ms", "20");
    Properties cp = new Properties();
    cp.put("bootstrap.servers", bs);
    cp.put("group.id", "java-sessions");
    cp.put("auto.offset.reset", "earliest");
    cp.put("isolation.level", "read_committed");
    try (KafkaProducer<String, String> p = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer());
         KafkaConsumer<String, String> c = new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
      for (int i = 0; i < per; i++)
        for (int q = 0; q < parts; q++)
          p.send(new ProducerRecord<>(topic, q, null, q + "-" + i));
      p.flush();
      c.subscribe(List.of(topic));
      consume(c, parts * per, 90000);
      System.out.println("phase 2");
      // Idle polls, then records on two partitions of the many.
      consume(c, 1, 1000);
      p.send(new ProducerRecord<>(topic, 7, null, "late-7"));
      p.send(new ProducerRecord<>(topic, parts - 1, null, "late-last"));
      p.flush();
      consume(c, 2, 30000);
      c.commitSync();
    }
  }
}
"""


def test_java_consumer_of_many_partitions_uses_a_session(odradek_broker_fn, tmp_path):
    from tests.integration.java_client import run_java

    b = odradek_broker_fn
    parts, per = 1000, 2
    b.create_topic("java-sessions", parts)
    out = run_java(tmp_path, "JavaSessions", JAVA_SOURCE, [b.bootstrap, "java-sessions", str(parts), str(per)],
                   timeout=170)
    lines = out.splitlines()
    split = lines.index("phase 2")
    first = [tuple(l.split()[1:]) for l in lines[:split] if l.startswith("record ")]
    late = [tuple(l.split()[1:]) for l in lines[split:] if l.startswith("record ")]
    # Everything, exactly once.
    assert sorted(first) == sorted((str(q), str(i), f"{q}-{i}") for q in range(parts) for i in range(per))
    assert sorted(late) == [("7", str(per), "late-7"), (str(parts - 1), str(per), "late-last")]
    counts = b.broker.core.fetch_sessions.counts
    # One full fetch opened a session; the idle polls and the late records came
    # through incremental fetches.
    assert counts["created"] == counts["full"] >= 1 and counts["incremental"] >= 2
    assert counts["errors"] == 0


def test_kafka_python_consumer_uses_a_session(odradek_broker_fn):
    from kafka import KafkaConsumer, TopicPartition

    b = odradek_broker_fn
    parts = 50
    b.create_topic("kp-sessions", parts)
    for q in range(parts):
        b.produce("kp-sessions", [f"{q}-0".encode(), f"{q}-1".encode()], partition=q)
    c = KafkaConsumer(bootstrap_servers=b.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                      fetch_max_wait_ms=200)
    try:
        c.assign([TopicPartition("kp-sessions", q) for q in range(parts)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 2 * parts + 1 and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=200).values():
                got += [(r.partition, r.offset, r.value) for r in records]
            if len(got) == 2 * parts:
                b.produce("kp-sessions", [b"late"], partition=parts // 2)
    finally:
        c.close()
    expected = [(q, i, f"{q}-{i}".encode()) for q in range(parts) for i in range(2)] + [(parts // 2, 2, b"late")]
    assert sorted(got) == sorted(expected)
    counts = b.broker.core.fetch_sessions.counts
    assert counts["created"] >= 1 and counts["incremental"] >= 1 and counts["errors"] == 0


def test_franz_go_consumer_uses_a_session(odradek_broker_fn, franz_binary):
    import subprocess

    proc = subprocess.run([franz_binary, odradek_broker_fn.bootstrap, "franz-sessions", "10"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len([l for l in proc.stdout.splitlines() if l.startswith("record ")]) == 50
    counts = odradek_broker_fn.broker.core.fetch_sessions.counts
    assert counts["created"] >= 1 and counts["incremental"] >= 1 and counts["errors"] == 0
