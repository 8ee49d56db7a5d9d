"""The Java client (kafka-clients 4.x) with ``group.protocol=consumer`` (KIP-848):
two consumers split a topic, one leaves and the other takes everything, the
admin client describes and lists the group as a consumer group, and Kafka's
own record deserializer reads the consumer group records odradek wrote.

Skipped, saying why, unless javac and the Kafka 4.x jars can be had (the same
jars and lookup as test_groups_java.py: Maven Central through
bench/kafka_runtime.py, else ~/.m2).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from odradek.embedded import EmbeddedBroker
from tests.integration.test_consumer_protocol import BROKER_CONFIG, create_topic, produce
from tests.integration.java_client import OFFSETS_TOPIC_JAVA
from tests.integration.test_groups_java import _resolve_classpath

pytestmark = pytest.mark.timeout(120)

JAVA_SOURCE = r"""
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.*;

public class ConsumerProtocolCheck {
  static KafkaConsumer<byte[], byte[]> consumer(String bs, String group, String assignor) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bs);
    p.put("group.id", group);
    p.put("group.protocol", "consumer");
    if (assignor != null) p.put("group.remote.assignor", assignor);
    p.put("key.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer");
    p.put("value.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer");
    p.put("auto.offset.reset", "earliest");
    p.put("enable.auto.commit", "false");
    return new KafkaConsumer<>(p);
  }

  static int poll(List<KafkaConsumer<byte[], byte[]>> cs, Map<Integer, List<String>> got) {
    int n = 0;
    for (int i = 0; i < cs.size(); i++) {
      ConsumerRecords<byte[], byte[]> rs = cs.get(i).poll(Duration.ofMillis(50));
      for (ConsumerRecord<byte[], byte[]> r : rs) { got.get(i).add(new String(r.value())); n++; }
      if (!rs.isEmpty()) cs.get(i).commitSync();
    }
    return n;
  }

  public static void main(String[] a) throws Exception {
    String bs = a[0], topic = a[1];
    int expected = Integer.parseInt(a[2]);
    List<KafkaConsumer<byte[], byte[]>> cs = new ArrayList<>();
    cs.add(consumer(bs, "g-java-848", null));
    cs.add(consumer(bs, "g-java-848", null));
    for (KafkaConsumer<byte[], byte[]> c : cs) c.subscribe(List.of(topic));
    Map<Integer, List<String>> got = new HashMap<>();
    got.put(0, new ArrayList<>());
    got.put(1, new ArrayList<>());
    int total = 0;
    long deadline = System.currentTimeMillis() + 30000;
    while (System.currentTimeMillis() < deadline) {
      total += poll(cs, got);
      if (total >= expected && cs.get(0).assignment().size() == 2 && cs.get(1).assignment().size() == 2) break;
    }
    Set<String> distinct = new HashSet<>(got.get(0));
    distinct.addAll(got.get(1));
    System.out.println("consumed=" + total + " distinct=" + distinct.size());
    System.out.println("split=" + got.get(0).size() + "+" + got.get(1).size());
    System.out.println("assigned=" + cs.get(0).assignment().size() + "+" + cs.get(1).assignment().size());
    try (Admin admin = Admin.create(Map.of("bootstrap.servers", bs))) {
      ConsumerGroupDescription d = admin.describeConsumerGroups(List.of("g-java-848")).all().get().get("g-java-848");
      System.out.println("describe=" + d.type() + "/" + d.groupState() + "/" + d.partitionAssignor() + "/" + d.members().size());
      for (GroupListing l : admin.listGroups().all().get())
        if (l.groupId().equals("g-java-848")) System.out.println("listed=" + l.type().orElse(null) + "/" + l.groupState().orElse(null));
      long sum = 0;
      for (OffsetAndMetadata o : admin.listConsumerGroupOffsets("g-java-848").partitionsToOffsetAndMetadata().get().values()) sum += o.offset();
      System.out.println("committed=" + sum);

      // The second consumer leaves: the first one takes all the partitions.
      cs.get(1).close();
      List<KafkaConsumer<byte[], byte[]>> one = List.of(cs.get(0));
      Map<Integer, List<String>> more = new HashMap<>();
      more.put(0, new ArrayList<>());
      deadline = System.currentTimeMillis() + 30000;
      while (System.currentTimeMillis() < deadline && cs.get(0).assignment().size() != 4) poll(one, more);
      System.out.println("after-leave=" + cs.get(0).assignment().size());
      cs.get(0).close();
      System.out.println("after-close=" + admin.describeConsumerGroups(List.of("g-java-848")).all().get().get("g-java-848").groupState());
    }
    for (Map.Entry<String, Integer> e : OffsetsTopic.kinds(bs, false).entrySet())
      System.out.println("record:" + e.getKey() + "=" + e.getValue());
  }
}
"""


def _run(tmp_path, class_name: str, source: str, topic: str, *args: str):
    """Compile and run ``class_name`` against a broker whose ``topic`` holds 100
    records; (its ``key=value`` lines, its output)."""
    CLASSPATH = _resolve_classpath() if shutil.which("javac") else None
    if CLASSPATH is None:
        pytest.skip("javac or the Kafka 4.x jars (kafka-clients, kafka-group-coordinator, ...; Maven Central "
                    "or ~/.m2) are not available: the Java client's consumer protocol is not exercised")
    src = tmp_path / f"{class_name}.java"
    src.write_text(source)
    subprocess.run(["javac", "-nowarn", "-cp", CLASSPATH, "-d", str(tmp_path), str(src), OFFSETS_TOPIC_JAVA], check=True,
                   capture_output=True, timeout=90)
    with EmbeddedBroker(config=BROKER_CONFIG) as b:
        create_topic(b, topic)
        produce(b, topic, 100)
        out = subprocess.run(["java", "-cp", CLASSPATH + os.pathsep + str(tmp_path), class_name,
                              b.bootstrap, topic, *args], capture_output=True, text=True, timeout=100)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return dict(line.split("=", 1) for line in out.stdout.split() if "=" in line), out


def test_java_consumer_protocol_group(tmp_path):
    lines, out = _run(tmp_path, "ConsumerProtocolCheck", JAVA_SOURCE, "jt848", "100")
    assert lines["consumed"] == "100" and lines["distinct"] == "100", out.stdout
    assert lines["assigned"] == "2+2", out.stdout
    assert lines["describe"] == "Consumer/Stable/uniform/2", out.stdout
    assert lines["listed"] == "Consumer/Stable", out.stdout
    assert lines["committed"] == "100", out.stdout
    assert lines["after-leave"] == "4", out.stdout
    assert lines["after-close"] == "Empty", out.stdout
    # Kafka's GroupCoordinatorRecordSerde read every consumer group record we wrote.
    for kind in ("ConsumerGroupMetadataKey", "ConsumerGroupPartitionMetadataKey",
                 "ConsumerGroupMemberMetadataKey", "ConsumerGroupTargetAssignmentMetadataKey",
                 "ConsumerGroupTargetAssignmentMemberKey", "ConsumerGroupCurrentMemberAssignmentKey",
                 "ConsumerGroupMemberMetadataKey-tombstone"):
        assert int(lines.get(f"record:{kind}", 0)) >= 1, (kind, out.stdout)


MIGRATION_SOURCE = r"""
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.coordinator.common.runtime.CoordinatorRecord;
import org.apache.kafka.coordinator.group.generated.ConsumerGroupMemberMetadataValue;

public class MigrationCheck {
  static KafkaConsumer<byte[], byte[]> consumer(String bs, String group, String protocol) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bs);
    p.put("group.id", group);
    p.put("group.protocol", protocol);
    if (protocol.equals("classic")) { p.put("session.timeout.ms", "6000"); p.put("heartbeat.interval.ms", "200"); }
    p.put("key.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer");
    p.put("value.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer");
    p.put("auto.offset.reset", "earliest");
    p.put("enable.auto.commit", "false");
    return new KafkaConsumer<>(p);
  }

  static Set<String> got = new HashSet<>();

  static void poll(List<KafkaConsumer<byte[], byte[]>> cs) {
    for (KafkaConsumer<byte[], byte[]> c : cs) {
      ConsumerRecords<byte[], byte[]> rs = c.poll(Duration.ofMillis(50));
      for (ConsumerRecord<byte[], byte[]> r : rs) got.add(new String(r.value()));
      if (!rs.isEmpty()) { try { c.commitSync(); } catch (KafkaException e) { /* rebalancing: next time */ } }
    }
  }

  static boolean split(List<KafkaConsumer<byte[], byte[]>> cs) {
    Set<TopicPartition> all = new HashSet<>();
    int sum = 0;
    for (KafkaConsumer<byte[], byte[]> c : cs) { if (c.assignment().isEmpty()) return false; all.addAll(c.assignment()); sum += c.assignment().size(); }
    return all.size() == 4 && sum == 4;
  }

  public static void main(String[] a) throws Exception {
    String bs = a[0], topic = a[1], group = "g-java-migration";
    List<KafkaConsumer<byte[], byte[]>> cs = new ArrayList<>();
    for (int i = 0; i < 2; i++) { KafkaConsumer<byte[], byte[]> c = consumer(bs, group, "classic"); c.subscribe(List.of(topic)); cs.add(c); }
    long deadline = System.currentTimeMillis() + 30000;
    while (System.currentTimeMillis() < deadline && !split(cs)) poll(cs);
    System.out.println("classic-split=" + split(cs));
    try (Admin admin = Admin.create(Map.of("bootstrap.servers", bs))) {
      System.out.println("before=" + admin.describeConsumerGroups(List.of(group)).all().get().get(group).type());
      KafkaConsumer<byte[], byte[]> up = consumer(bs, group, "consumer");
      up.subscribe(List.of(topic));
      cs.add(up);
      deadline = System.currentTimeMillis() + 30000;
      while (System.currentTimeMillis() < deadline && !(split(cs) && got.size() >= 100)) poll(cs);
      System.out.println("mixed-split=" + split(cs) + " consumed=" + got.size());
      ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
      System.out.println("after=" + d.type() + "/" + d.groupState() + "/" + d.members().size());
      // The consumer-protocol member leaves: the group is classic again, and its
      // members rebalance and split the partitions between them.
      up.close();
      List<KafkaConsumer<byte[], byte[]>> rest = List.of(cs.get(0), cs.get(1));
      deadline = System.currentTimeMillis() + 30000;
      while (System.currentTimeMillis() < deadline && !(split(rest)
             && admin.describeConsumerGroups(List.of(group)).all().get().get(group).type() == GroupType.CLASSIC)) poll(rest);
      d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
      System.out.println("downgraded=" + split(rest) + "/" + d.type() + "/" + d.groupState() + "/" + d.members().size());
      for (KafkaConsumer<byte[], byte[]> c : rest) c.close();
    }
    Set<Integer> sessions = new TreeSet<>();
    for (CoordinatorRecord cr : OffsetsTopic.readAll(bs))
      if (cr.value() != null && cr.value().message() instanceof ConsumerGroupMemberMetadataValue v
          && v.classicMemberMetadata() != null)
        sessions.add(v.classicMemberMetadata().sessionTimeoutMs());
    System.out.println("classic-sessions=" + sessions);
  }
}
"""


def test_java_classic_consumers_upgrade_online(tmp_path):
    """Kafka 4's online migration with the Java client: two classic consumers,
    then a consumer-protocol one joins the same group without it being
    emptied; the three split the partitions; when it leaves, the group is a
    classic group again. Kafka's own record reader finds the classic members'
    metadata in the consumer group's records."""
    lines, out = _run(tmp_path, "MigrationCheck", MIGRATION_SOURCE, "jtmig")
    assert lines["classic-split"] == "true", out.stdout
    assert lines["before"] == "Classic", out.stdout
    assert lines["mixed-split"] == "true" and lines["consumed"] == "100", out.stdout
    assert lines["after"] == "Consumer/Stable/3", out.stdout
    assert lines["downgraded"] == "true/Classic/Stable/2", out.stdout
    assert lines["classic-sessions"] == "[6000]", out.stdout
