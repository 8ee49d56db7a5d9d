"""Share groups (KIP-932) with the Java client's ``KafkaShareConsumer``
(kafka-clients 4.x): implicit acknowledgement; explicit accept, release and
reject; redelivery to another member after a lock expires; the delivery-count
limit archiving a record; three consumers on one partition sharing it, every
record delivered once. The admin client describes the group, and sets the
group config share.auto.offset.reset=earliest, with which a new group reads
what was produced before it.

The broker runs with 2 s record locks and a delivery-count limit of 2. Share
groups start reading at the high watermark when they first fetch
(share.auto.offset.reset=latest), so the Java program produces "warm"
records until a consumer gets one before producing what it checks.

Skipped, saying why, unless javac and the Kafka 4.x jars can be had.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from odradek.embedded import EmbeddedBroker
from tests.integration.test_groups import create_topic, produce
from tests.integration.test_groups_java import _resolve_classpath

pytestmark = pytest.mark.timeout(180)

BROKER_CONFIG = {
    "offsets.topic.num.partitions": "4",
    "group.share.heartbeat.interval.ms": "300",
    "group.share.record.lock.duration.ms": "2000",
    "group.share.delivery.count.limit": "2",
}

JAVA_SOURCE = r"""
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;

public class ShareCheck {
  static String bs;
  static KafkaProducer<String, String> producer;

  static KafkaShareConsumer<String, String> consumer(String group, String mode, int maxPoll) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bs);
    p.put("group.id", group);
    p.put("share.acknowledgement.mode", mode);
    p.put("max.poll.records", String.valueOf(maxPoll));
    p.put("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
    p.put("value.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
    return new KafkaShareConsumer<>(p);
  }

  static void send(String topic, String v) throws Exception {
    producer.send(new ProducerRecord<>(topic, 0, null, v)).get();
  }

  // Produce "warm" records until one of the consumers receives one: the
  // share-partition has started (its start offset is the high watermark when
  // the group first fetched), so what is produced next is delivered.
  static void warm(String topic, List<KafkaShareConsumer<String, String>> cs, boolean explicit) throws Exception {
    long deadline = System.currentTimeMillis() + 30000;
    while (System.currentTimeMillis() < deadline) {
      send(topic, "warm");
      for (KafkaShareConsumer<String, String> c : cs) {
        ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(100));
        boolean got = !rs.isEmpty();
        if (explicit) { for (ConsumerRecord<String, String> r : rs) c.acknowledge(r, AcknowledgeType.ACCEPT); }
        if (got) { if (explicit) c.commitSync(); return; }
      }
    }
    throw new RuntimeException("no warm-up record received");
  }

  // A 15 s lock for a group whose records must not be redelivered by a slow
  // machine (the broker's 2 s lock is for the lock-expiry phase).
  static void longLocks(String group) throws Exception {
    try (Admin admin = Admin.create(Map.of("bootstrap.servers", bs))) {
      ConfigResource g = new ConfigResource(ConfigResource.Type.GROUP, group);
      admin.incrementalAlterConfigs(Map.of(g, List.of(new AlterConfigOp(
          new org.apache.kafka.clients.admin.ConfigEntry("share.record.lock.duration.ms", "15000"),
          AlterConfigOp.OpType.SET)))).all().get();
    }
  }

  static String dc(ConsumerRecord<String, String> r) {
    return String.valueOf(r.deliveryCount().map(Short::intValue).orElse(-1));
  }

  public static void main(String[] a) throws Exception {
    bs = a[0];
    String topic = a[1];
    Properties pp = new Properties();
    pp.put("bootstrap.servers", bs);
    pp.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
    pp.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
    pp.put("linger.ms", "0");
    producer = new KafkaProducer<>(pp);

    // F: share.auto.offset.reset=earliest, set with the admin client (a GROUP
    // config), makes a new share group read what was produced before it.
    {
      String early = a[2];
      try (Admin admin = Admin.create(Map.of("bootstrap.servers", bs))) {
        ConfigResource g = new ConfigResource(ConfigResource.Type.GROUP, "sg-j-earliest");
        admin.incrementalAlterConfigs(Map.of(g, List.of(new AlterConfigOp(
            new org.apache.kafka.clients.admin.ConfigEntry("share.auto.offset.reset", "earliest"),
            AlterConfigOp.OpType.SET)))).all().get();
        Config cfg = admin.describeConfigs(List.of(g)).all().get().get(g);
        System.out.println("group-config=" + cfg.get("share.auto.offset.reset").value() + "/"
            + cfg.get("share.auto.offset.reset").source());
      }
      KafkaShareConsumer<String, String> c = consumer("sg-j-earliest", "implicit", 500);
      c.subscribe(List.of(early));
      Set<String> got = new HashSet<>();
      long deadline = System.currentTimeMillis() + 20000;
      while (got.size() < 7 && System.currentTimeMillis() < deadline)
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) got.add(r.value());
      System.out.println("earliest=" + got.size());
      c.close();
    }

    // A: implicit acknowledgement.
    {
      longLocks("sg-j-implicit");
      KafkaShareConsumer<String, String> c = consumer("sg-j-implicit", "implicit", 500);
      c.subscribe(List.of(topic));
      warm(topic, List.of(c), false);
      for (int i = 0; i < 20; i++) send(topic, "a-" + i);
      Set<String> got = new HashSet<>();
      long deadline = System.currentTimeMillis() + 20000;
      while (got.size() < 20 && System.currentTimeMillis() < deadline)
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200)))
          if (r.value().startsWith("a-")) got.add(r.value());
      c.commitSync();
      System.out.println("implicit=" + got.size());
      c.close();
    }

    // B: explicit accept, release, reject.
    {
      longLocks("sg-j-explicit");
      KafkaShareConsumer<String, String> c = consumer("sg-j-explicit", "explicit", 500);
      c.subscribe(List.of(topic));
      warm(topic, List.of(c), true);
      send(topic, "b-accept"); send(topic, "b-release"); send(topic, "b-reject"); send(topic, "b-end");
      List<String> seen = new ArrayList<>();
      long deadline = System.currentTimeMillis() + 20000;
      boolean end = false;
      while (!end && System.currentTimeMillis() < deadline) {
        ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(200));
        for (ConsumerRecord<String, String> r : rs) {
          if (!r.value().startsWith("b-")) { c.acknowledge(r, AcknowledgeType.ACCEPT); continue; }
          seen.add(r.value() + "/" + dc(r));
          if (r.value().equals("b-release") && dc(r).equals("1")) c.acknowledge(r, AcknowledgeType.RELEASE);
          else if (r.value().equals("b-reject")) c.acknowledge(r, AcknowledgeType.REJECT);
          else c.acknowledge(r, AcknowledgeType.ACCEPT);
          end = seen.contains("b-release/2") && seen.contains("b-end/1");
        }
        if (!rs.isEmpty()) c.commitSync();
      }
      // after b-release came back: b-after is delivered, and nothing before it again
      send(topic, "b-after");
      deadline = System.currentTimeMillis() + 20000;
      boolean after = false;
      while (!after && System.currentTimeMillis() < deadline) {
        ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(200));
        for (ConsumerRecord<String, String> r : rs) {
          if (r.value().startsWith("b-")) seen.add(r.value() + "/" + dc(r));
          if (r.value().equals("b-after")) after = true;
          c.acknowledge(r, AcknowledgeType.ACCEPT);
        }
        if (!rs.isEmpty()) c.commitSync();
      }
      System.out.println("explicit=" + String.join(",", seen));
      c.close();
    }

    // C: a lock that expires: the records go to the other member, delivery count 2.
    {
      KafkaShareConsumer<String, String> c1 = consumer("sg-j-lock", "explicit", 500);
      c1.subscribe(List.of(topic));
      warm(topic, List.of(c1), true);
      for (int i = 0; i < 5; i++) producer.send(new ProducerRecord<>(topic, 0, null, "c-" + i));
      producer.flush();
      List<String> held = new ArrayList<>();
      long deadline = System.currentTimeMillis() + 20000;
      while (held.isEmpty() && System.currentTimeMillis() < deadline) {
        ConsumerRecords<String, String> rs = c1.poll(Duration.ofMillis(200));
        for (ConsumerRecord<String, String> r : rs)
          if (r.value().startsWith("c-")) held.add(r.value() + "/" + dc(r)); else c1.acknowledge(r, AcknowledgeType.ACCEPT);
      }
      long t0 = System.currentTimeMillis();
      // If c1's last poll found those records already buffered, the fetch that poll asked for
      // goes on in c1's background thread (Kafka's share consumer fetches until it has records
      // buffered), and could take them again when their lock expires. A filler record ends
      // that fetch: a fetching c1 takes it and stops; otherwise c2 gets it.
      send(topic, "warm");
      Thread.sleep(500);
      // c1 neither acknowledges nor polls again: after the lock duration, c2 (joining
      // only now, so that its fetches cannot run ahead) gets what c1 held.
      KafkaShareConsumer<String, String> c2 = consumer("sg-j-lock", "explicit", 500);
      c2.subscribe(List.of(topic));
      List<String> redelivered = new ArrayList<>();
      Set<String> values = new HashSet<>();
      deadline = System.currentTimeMillis() + 20000;
      while (values.size() < 5 && System.currentTimeMillis() < deadline) {
        ConsumerRecords<String, String> rs = c2.poll(Duration.ofMillis(200));
        for (ConsumerRecord<String, String> r : rs) {
          if (r.value().startsWith("c-")) { redelivered.add(r.value() + "/" + dc(r)); values.add(r.value()); }
          c2.acknowledge(r, AcknowledgeType.ACCEPT);
        }
        if (!rs.isEmpty()) c2.commitSync();
      }
      System.out.println("lock-held=" + String.join(",", held));
      System.out.println("lock-redelivered=" + String.join(",", redelivered));
      System.out.println("lock-after-ms=" + (System.currentTimeMillis() - t0));
      if (values.size() < 5) {  // what the group looked like, for the failure's message
        try (Admin admin = Admin.create(Map.of("bootstrap.servers", bs))) {
          ShareGroupDescription d = admin.describeShareGroups(List.of("sg-j-lock")).all().get().get("sg-j-lock");
          List<String> ms = new ArrayList<>();
          for (ShareMemberDescription m : d.members()) ms.add(m.consumerId() + ":" + m.assignment().topicPartitions());
          System.out.println("lock-group=" + d.groupState() + ":" + String.join(";", ms).replace(" ", ""));
        }
      }
      c2.close();
      c1.close(Duration.ofSeconds(5));
    }

    // D: the delivery-count limit (2 on this broker) archives a record.
    {
      longLocks("sg-j-limit");
      KafkaShareConsumer<String, String> c = consumer("sg-j-limit", "explicit", 500);
      c.subscribe(List.of(topic));
      warm(topic, List.of(c), true);
      send(topic, "d-poison");
      List<String> seen = new ArrayList<>();
      int releases = 0;
      boolean sentinel = false, sent = false;
      long deadline = System.currentTimeMillis() + 20000;
      while (!sentinel && System.currentTimeMillis() < deadline) {
        ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(200));
        for (ConsumerRecord<String, String> r : rs) {
          if (r.value().equals("d-poison")) { seen.add(r.value() + "/" + dc(r)); c.acknowledge(r, AcknowledgeType.RELEASE); releases++; }
          else { if (r.value().equals("d-sentinel")) { seen.add(r.value() + "/" + dc(r)); sentinel = true; } c.acknowledge(r, AcknowledgeType.ACCEPT); }
        }
        if (!rs.isEmpty()) c.commitSync();
        if (releases == 2 && !sent) { send(topic, "d-sentinel"); sent = true; }
      }
      System.out.println("limit=" + String.join(",", seen));
      c.close();
    }

    // E: three consumers on one partition: every record once, none twice.
    {
      longLocks("sg-j-three");
      List<KafkaShareConsumer<String, String>> cs = new ArrayList<>();
      for (int i = 0; i < 3; i++) { KafkaShareConsumer<String, String> c = consumer("sg-j-three", "implicit", 10); c.subscribe(List.of(topic)); cs.add(c); }
      warm(topic, cs, false);
      for (KafkaShareConsumer<String, String> c : cs) c.poll(Duration.ofMillis(100));
      List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
      for (int i = 0; i < 300; i++) { fs.add(producer.send(new ProducerRecord<>(topic, 0, null, "e-" + i))); if (i % 5 == 4) producer.flush(); }
      for (java.util.concurrent.Future<RecordMetadata> f : fs) f.get();
      List<Set<String>> got = new ArrayList<>();
      for (int i = 0; i < 3; i++) got.add(new HashSet<>());
      int total = 0;
      Set<String> all = new HashSet<>();
      long deadline = System.currentTimeMillis() + 30000;
      while (all.size() < 300 && System.currentTimeMillis() < deadline)
        for (int i = 0; i < 3; i++)
          for (ConsumerRecord<String, String> r : cs.get(i).poll(Duration.ofMillis(20)))
            if (r.value().startsWith("e-")) { got.get(i).add(r.value()); all.add(r.value()); total++; }
      for (KafkaShareConsumer<String, String> c : cs) c.commitSync();
      System.out.println("three-total=" + total + " three-distinct=" + all.size());
      System.out.println("three-split=" + got.get(0).size() + "+" + got.get(1).size() + "+" + got.get(2).size());
      try (Admin admin = Admin.create(Map.of("bootstrap.servers", bs))) {
        ShareGroupDescription d = admin.describeShareGroups(List.of("sg-j-three")).all().get().get("sg-j-three");
        System.out.println("describe=" + d.groupState() + "/" + d.members().size());
      }
      for (KafkaShareConsumer<String, String> c : cs) c.close();
    }
    producer.close();
  }
}
"""


def test_java_share_consumers(tmp_path):
    classpath = _resolve_classpath() if shutil.which("javac") else None
    if classpath is None:
        pytest.skip("javac or the Kafka 4.x jars are not available: the Java share consumer is not exercised")
    src = tmp_path / "ShareCheck.java"
    src.write_text(JAVA_SOURCE)
    subprocess.run(["javac", "-nowarn", "-cp", classpath, "-d", str(tmp_path), str(src)], check=True,
                   capture_output=True, timeout=90)
    with EmbeddedBroker(config=BROKER_CONFIG) as b:
        create_topic(b, "sgj", 1)
        create_topic(b, "sgj-early", 1)
        produce(b, "sgj-early", 7, partitions=1)
        out = subprocess.run(["java", "-cp", classpath + os.pathsep + str(tmp_path), "ShareCheck", b.bootstrap,
                              "sgj", "sgj-early"], capture_output=True, text=True, timeout=150)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]

        async def states():
            for sp, _ in b.core.share.states.values():
                sp.check()
            # the share-partitions of groups with no session left are only in their share coordinator
            windows = {key[0]: (start, start + sum(last - first + 1 for first, last, _, _ in batches))
                       for h in b.core.share.coordinator.hosted.values()
                       for key, (start, batches) in ((k, h.shard.read(k)) for k in h.shard.states)}
            windows.update({key[0]: (sp.start, sp.end) for key, (sp, _) in b.core.share.states.items()})
            return windows

        async def lock_group():  # the lock-expiry group's records, for a failure's message
            return {key: [(off, sp.state_of(off)) for off in range(sp.start, sp.end)]
                    for key, (sp, _) in b.core.share.states.items() if key[0] == "sg-j-lock"}
        windows = b.call(states)
        lock_states = b.call(lock_group)
    lines = dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)
    assert lines["group-config"] == "earliest/DYNAMIC_GROUP_CONFIG", out.stdout
    assert lines["earliest"] == "7", out.stdout
    assert lines["implicit"] == "20", out.stdout
    # b-release comes again (delivery count 2) once released, before or after the records produced after it,
    # depending on whether they were fetched with it; the rejected one never again; b-after once, last
    explicit = lines["explicit"].split(",")
    assert sorted(explicit) == sorted("b-accept/1,b-release/1,b-reject/1,b-end/1,b-release/2,b-after/1".split(",")), \
        out.stdout
    assert explicit.index("b-release/1") < explicit.index("b-release/2") and explicit[-1] == "b-after/1", out.stdout
    # c1 held what it got (delivery count 1) without acknowledging; c2 got those again (2) once the lock expired
    held = lines["lock-held"].split(",")
    redelivered = lines["lock-redelivered"].split(",")
    assert held and all(h.endswith("/1") for h in held), out.stdout
    assert {h.replace("/1", "/2") for h in held} <= set(redelivered), (out.stdout, lock_states)
    assert sorted(r.split("/")[0] for r in redelivered) == [f"c-{i}" for i in range(5)], out.stdout
    assert 1500 <= int(lines["lock-after-ms"]) < 10000, out.stdout
    # released twice, then archived: the sentinel produced after it comes, the poison does not again
    assert lines["limit"] == "d-poison/1,d-poison/2,d-sentinel/1", out.stdout
    assert lines["three-total"] == "300" and lines["three-distinct"] == "300", out.stdout
    assert all(int(n) > 0 for n in lines["three-split"].split("+")), out.stdout
    assert lines["describe"] == "Stable/3", out.stdout
    # everything the implicit groups read was acknowledged: nothing left in flight
    for group in ("sg-j-implicit", "sg-j-three"):
        start, end = windows[group]
        assert start == end, (group, windows)


def test_kafka_share_groups_tool(tmp_path):
    """Kafka's own kafka-share-groups.sh (ShareGroupCommand): list, describe
    offsets with lag, describe members, reset offsets, delete the group."""
    classpath = _resolve_classpath() if shutil.which("java") else None
    if classpath is None:
        pytest.skip("java or the Kafka 4.x jars are not available: kafka-share-groups.sh is not exercised")
    from tests.integration.rawclient import RawClient

    def tool(bootstrap, *args) -> str:
        out = subprocess.run(["java", "-Xmx256M", "-cp", classpath,
                              "org.apache.kafka.tools.consumer.group.ShareGroupCommand",
                              "--bootstrap-server", bootstrap, *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        return out.stdout + out.stderr

    with EmbeddedBroker(config=BROKER_CONFIG) as b:
        create_topic(b, "sgt", 2)
        produce(b, "sgt", 10, partitions=2)
        rc = RawClient(b.bootstrap)
        try:
            altered = rc.request("AlterShareGroupOffsets", 0, {"group_id": "sgt-g", "topics": [
                {"topic_name": "sgt", "partitions": [{"partition_index": 0, "start_offset": 1}]}]})
            assert altered["error_code"] == 0
        finally:
            rc.close()
        assert [w for w in tool(b.bootstrap, "--list").split() if w.startswith("sgt")] == ["sgt-g"]
        rows = [line.split() for line in tool(b.bootstrap, "--describe", "--group", "sgt-g").splitlines()
                if line.startswith(("GROUP", "sgt-g"))]
        assert rows == [["GROUP", "TOPIC", "PARTITION", "START-OFFSET", "LAG"], ["sgt-g", "sgt", "0", "1", "4"]]
        assert "has no active members" in tool(b.bootstrap, "--describe", "--group", "sgt-g", "--members")
        reset = tool(b.bootstrap, "--reset-offsets", "--group", "sgt-g", "--topic", "sgt", "--to-earliest",
                     "--execute")
        assert sorted(line.split()[2:] for line in reset.splitlines() if line.startswith("sgt-g")) == \
            [["0", "0"], ["1", "0"]]
        rows = [line.split() for line in tool(b.bootstrap, "--describe", "--group", "sgt-g").splitlines()
                if line.startswith("sgt-g")]
        assert sorted(rows) == [["sgt-g", "sgt", "0", "0", "5"], ["sgt-g", "sgt", "1", "0", "5"]]
        assert "successful" in tool(b.bootstrap, "--delete", "--group", "sgt-g")
        assert [w for w in tool(b.bootstrap, "--list").split() if w.startswith("sgt")] == []
