"""Apache Kafka's Java client (kafka-clients 4.x): admin, idempotent produce under
every codec, and a group consumer reading it back; Python clients read the same."""

from __future__ import annotations

import pytest

from tests.integration.clients import consume_confluent
from tests.integration.java_client import run_java

pytestmark = pytest.mark.timeout(300)

SOURCE = r"""
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.*;

public class JavaRoundTrip {
  public static void main(String[] a) throws Exception {
    String bs = a[0], topic = a[1];
    int n = Integer.parseInt(a[2]);
    Properties ap = new Properties();
    ap.put("bootstrap.servers", bs);
    try (Admin admin = Admin.create(ap)) {
      admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get();
      TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
      System.out.println("partitions " + d.partitions().size() + " id " + d.topicId());
      System.out.println("cluster " + admin.describeCluster().clusterId().get());
    }
    String[] codecs = {"none", "gzip", "snappy", "lz4", "zstd"};
    long base = System.currentTimeMillis() - 60000;
    int sent = 0;
    for (String codec : codecs) {
      Properties pp = new Properties();
      pp.put("bootstrap.servers", bs);
      pp.put("compression.type", codec);
      pp.put("acks", "all");
      pp.put("enable.idempotence", "true");
      pp.put("linger.ms", "5");
      try (KafkaProducer<String, String> p = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
        List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
        for (int i = 0; i < n; i++, sent++) {
          ProducerRecord<String, String> r = new ProducerRecord<>(topic, null, base + sent, "key-" + (sent % 7), codec + "-" + sent);
          r.headers().add("h", ("v" + sent).getBytes());
          fs.add(p.send(r));
        }
        for (java.util.concurrent.Future<RecordMetadata> f : fs) {
          RecordMetadata md = f.get();
          System.out.println("acked " + md.partition() + " " + md.offset());
        }
      }
    }
    Properties cp = new Properties();
    cp.put("bootstrap.servers", bs);
    cp.put("group.id", "java-roundtrip");
    cp.put("auto.offset.reset", "earliest");
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
      c.subscribe(List.of(topic));
      int got = 0;
      long deadline = System.currentTimeMillis() + 60000;
      while (got < sent && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
          Header h = r.headers().lastHeader("h");
          System.out.println("record " + r.partition() + " " + r.offset() + " " + r.timestamp() + " " + r.key() + " " + r.value() + " " + new String(h.value()));
          got++;
        }
      }
      c.commitSync();
    }
  }
}
"""


def test_java_client_round_trip(odradek_broker, tmp_path):
    n = 20
    out = run_java(tmp_path, "JavaRoundTrip", SOURCE, [odradek_broker.bootstrap, "java-topic", str(n)])
    lines = out.splitlines()
    assert lines[0].startswith("partitions 3 id ")
    acked = [tuple(map(int, l.split()[1:])) for l in lines if l.startswith("acked ")]
    records = [l.split()[1:] for l in lines if l.startswith("record ")]
    assert len(acked) == 5 * n and len(set(acked)) == 5 * n
    assert len(records) == 5 * n
    by_pos = {(int(r[0]), int(r[1])): r for r in records}
    assert set(by_pos) == set(acked)
    for r in records:
        sent = int(r[4].rsplit("-", 1)[1])
        assert r[3] == f"key-{sent % 7}" and r[5] == f"v{sent}"
    # Same key, same partition.
    part_of = {}
    for r in records:
        assert part_of.setdefault(r[3], r[0]) == r[0]
    # What Java wrote, librdkafka reads.
    got = consume_confluent(odradek_broker.bootstrap, "java-topic", 3, 5 * n)
    assert {(g["partition"], g["offset"]) for g in got} == set(acked)
