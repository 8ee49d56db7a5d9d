"""The Java client (kafka-clients 4.x) in a consumer group, and Kafka's own
record deserializer reading the __consumer_offsets that odradek wrote.

Skipped unless javac and the Kafka jars are in the local Maven repository
(~/.m2): kafka-clients, kafka-group-coordinator(-api), kafka-coordinator-common,
kafka-server-common and slf4j-api.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

from odradek.embedded import EmbeddedBroker
from tests.integration.java_client import OFFSETS_TOPIC_JAVA
from tests.integration.test_groups import BROKER_CONFIG, create_topic, group_state, produce

pytestmark = pytest.mark.timeout(120)

M2 = os.path.expanduser("~/.m2/repository")
JARS = [
    "org/apache/kafka/kafka-clients/4.*/kafka-clients-4.*[0-9].jar",
    "org/apache/kafka/kafka-group-coordinator/4.*/kafka-group-coordinator-4.*[0-9].jar",
    "org/apache/kafka/kafka-group-coordinator-api/4.*/kafka-group-coordinator-api-4.*[0-9].jar",
    "org/apache/kafka/kafka-coordinator-common/4.*/kafka-coordinator-common-4.*[0-9].jar",
    "org/apache/kafka/kafka-server-common/4.*/kafka-server-common-4.*[0-9].jar",
    "org/slf4j/slf4j-api/*/slf4j-api-*[0-9].jar",
]


def _classpath() -> str | None:
    found = []
    for pattern in JARS:
        matches = sorted(glob.glob(os.path.join(M2, pattern)))
        if not matches:
            return None
        found.append(matches[-1])
    return os.pathsep.join(found)


def _resolve_classpath() -> str | None:
    """The release jars bench/kafka_runtime.py fetches (Maven Central), else ~/.m2."""
    from tests.integration.java_client import classpath

    return classpath() or _classpath()


JAVA_SOURCE = r"""
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.*;

public class GroupsCheck {
  static Properties props(String bs, String group, String instance) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bs);
    if (group != null) p.put("group.id", group);
    p.put("key.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer");
    p.put("value.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer");
    p.put("auto.offset.reset", "earliest");
    p.put("enable.auto.commit", "false");
    p.put("heartbeat.interval.ms", "200");
    p.put("session.timeout.ms", "6000");
    if (instance != null) p.put("group.instance.id", instance);
    return p;
  }

  public static void main(String[] a) throws Exception {
    String bs = a[0], topic = a[1];
    int expected = Integer.parseInt(a[2]);
    List<KafkaConsumer<byte[], byte[]>> cs = new ArrayList<>();
    cs.add(new KafkaConsumer<>(props(bs, "g-java", null)));
    cs.add(new KafkaConsumer<>(props(bs, "g-java", "java-static")));
    for (KafkaConsumer<byte[], byte[]> c : cs) c.subscribe(List.of(topic));
    Set<String> seen = new HashSet<>();
    int total = 0;
    long deadline = System.currentTimeMillis() + 40000;
    while (System.currentTimeMillis() < deadline) {
      for (KafkaConsumer<byte[], byte[]> c : cs) {
        ConsumerRecords<byte[], byte[]> rs = c.poll(Duration.ofMillis(50));
        for (ConsumerRecord<byte[], byte[]> r : rs) { total++; seen.add(new String(r.value())); }
        if (!rs.isEmpty()) c.commitSync();
      }
      if (total >= expected && cs.get(0).assignment().size() == 2 && cs.get(1).assignment().size() == 2) break;
    }
    System.out.println("consumed=" + total + " distinct=" + seen.size());
    System.out.println("assigned=" + cs.get(0).assignment().size() + "+" + cs.get(1).assignment().size());
    try (Admin admin = Admin.create(Map.of("bootstrap.servers", bs))) {
      ConsumerGroupDescription d = admin.describeConsumerGroups(List.of("g-java")).all().get().get("g-java");
      System.out.println("describe=" + d.groupState() + "/" + d.partitionAssignor() + "/" + d.members().size());
      long sum = 0;
      for (OffsetAndMetadata o : admin.listConsumerGroupOffsets("g-java").partitionsToOffsetAndMetadata().get().values()) sum += o.offset();
      System.out.println("committed=" + sum);
      cs.get(0).close();
      cs.get(1).close();
      admin.removeMembersFromConsumerGroup("g-java", new RemoveMembersFromConsumerGroupOptions(
          List.of(new MemberToRemove("java-static")))).all().get();
      System.out.println("after-close=" + admin.describeConsumerGroups(List.of("g-java")).all().get().get("g-java").groupState());
      admin.deleteConsumerGroupOffsets("g-java", Set.of(new TopicPartition(topic, 0))).all().get();
      System.out.println("left=" + admin.listConsumerGroupOffsets("g-java").partitionsToOffsetAndMetadata().get().size());
      admin.deleteConsumerGroups(List.of("g-java")).all().get();
      System.out.println("groups=" + admin.listGroups().all().get().size());
    }
    for (Map.Entry<String, Integer> e : OffsetsTopic.kinds(bs, true).entrySet())
      System.out.println("record:" + e.getKey() + "=" + e.getValue());
  }
}
"""


def test_java_client_group_and_kafka_reads_our_records(tmp_path):
    CLASSPATH = _resolve_classpath() if shutil.which("javac") else None
    if CLASSPATH is None:
        pytest.skip("javac or the Kafka 4.x jars (Maven Central) are not available")
    src = tmp_path / "GroupsCheck.java"
    src.write_text(JAVA_SOURCE)
    subprocess.run(["javac", "-nowarn", "-cp", CLASSPATH, "-d", str(tmp_path), str(src), OFFSETS_TOPIC_JAVA], check=True,
                   capture_output=True, timeout=90)
    with EmbeddedBroker(config=BROKER_CONFIG) as b:
        create_topic(b, "jt")
        produce(b, "jt", 100)
        out = subprocess.run(["java", "-cp", CLASSPATH + os.pathsep + str(tmp_path), "GroupsCheck",
                              b.bootstrap, "jt", "100"], capture_output=True, text=True, timeout=100)
        assert out.returncode == 0, out.stderr[-3000:]
        assert group_state(b, "g-java") is None
    lines = dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)
    assert lines["consumed"] == "100" and lines["distinct"] == "100", out.stdout
    assert lines["assigned"] == "2+2"
    assert lines["describe"] == "Stable/range/2"
    assert lines["committed"] == "100"
    assert lines["after-close"] == "Empty"
    assert lines["left"] == "3"
    assert lines["groups"] == "0"
    # Kafka's GroupCoordinatorRecordSerde read every record: offsets (value
    # version 3), group metadata (version 3) and the tombstones of the deletions.
    assert int(lines["record:OffsetCommitKey-v3"]) >= 4
    assert int(lines["record:GroupMetadataKey-v3"]) >= 2
    assert lines["record:OffsetCommitKey-tombstone"] == "4"
    assert lines["record:GroupMetadataKey-tombstone"] == "1"
