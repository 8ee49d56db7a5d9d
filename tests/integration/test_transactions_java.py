"""Apache Kafka's Java client (kafka-clients 4.x) with transactions: commits and
aborts, offsets sent in a transaction, zombie fencing, read_committed reads."""

from __future__ import annotations

import pytest

from tests.integration.java_client import run_java

pytestmark = pytest.mark.timeout(300)

SOURCE = r"""
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.errors.*;
import org.apache.kafka.common.serialization.*;

public class JavaTxn {
  static KafkaProducer<String, String> producer(String bs, String id) {
    Properties pp = new Properties();
    pp.put("bootstrap.servers", bs);
    pp.put("transactional.id", id);
    KafkaProducer<String, String> p = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer());
    p.initTransactions();
    return p;
  }

  static List<String> read(String bs, String topic, String isolation, int expect) {
    Properties cp = new Properties();
    cp.put("bootstrap.servers", bs);
    cp.put("isolation.level", isolation);
    List<String> out = new ArrayList<>();
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
      List<TopicPartition> tps = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1));
      c.assign(tps);
      c.seekToBeginning(tps);
      long deadline = System.currentTimeMillis() + 20000;
      long quietUntil = Long.MAX_VALUE;
      while (System.currentTimeMillis() < deadline && System.currentTimeMillis() < quietUntil) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(300))) out.add(r.partition() + ":" + r.value());
        if (out.size() >= expect && quietUntil == Long.MAX_VALUE) quietUntil = System.currentTimeMillis() + 1500;
      }
    }
    return out;
  }

  public static void main(String[] a) throws Exception {
    String bs = a[0], topic = a[1];
    Properties ap = new Properties();
    ap.put("bootstrap.servers", bs);
    try (Admin admin = Admin.create(ap)) {
      admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1), new NewTopic(topic + "-in", 1, (short) 1))).all().get();
    }
    KafkaProducer<String, String> p = producer(bs, "java-txn");
    Properties gp = new Properties();
    gp.put("bootstrap.servers", bs);
    gp.put("group.id", "java-txn-group");
    KafkaConsumer<String, String> group = new KafkaConsumer<>(gp, new StringDeserializer(), new StringDeserializer());
    for (int i = 0; i < 4; i++) {
      p.beginTransaction();
      p.send(new ProducerRecord<>(topic, 0, null, "t" + i + "-p0"));
      p.send(new ProducerRecord<>(topic, 1, null, "t" + i + "-p1"));
      p.sendOffsetsToTransaction(Map.of(new TopicPartition(topic + "-in", 0), new OffsetAndMetadata(10 + i)),
                                 group.groupMetadata());
      if (i % 2 == 0) p.commitTransaction(); else { p.flush(); p.abortTransaction(); }
    }
    OffsetAndMetadata om = group.committed(Set.of(new TopicPartition(topic + "-in", 0))).get(new TopicPartition(topic + "-in", 0));
    System.out.println("committed " + (om == null ? -1 : om.offset()));
    group.close();
    // zombie fencing
    p.beginTransaction();
    p.send(new ProducerRecord<>(topic, 0, null, "zombie")).get();
    KafkaProducer<String, String> p2 = producer(bs, "java-txn");
    p2.beginTransaction();
    p2.send(new ProducerRecord<>(topic, 1, null, "fresh"));
    p2.commitTransaction();
    try {
      p.send(new ProducerRecord<>(topic, 0, null, "zombie-2"));
      p.commitTransaction();
      System.out.println("zombie committed");
    } catch (ProducerFencedException | InvalidProducerEpochException e) {
      System.out.println("fenced " + e.getClass().getSimpleName());
    } catch (KafkaException e) {
      System.out.println("fenced-other " + e);
    }
    p.close(Duration.ofSeconds(5));
    p2.close();
    for (String r : read(bs, topic, "read_committed", 5)) System.out.println("committed-record " + r);
    for (String r : read(bs, topic, "read_uncommitted", 10)) System.out.println("any-record " + r);
  }
}
"""


def test_java_transactions(odradek_broker_factory, tmp_path):
    b = odradek_broker_factory(config={"transaction.state.log.num.partitions": "3"})
    out = run_java(tmp_path, "JavaTxn", SOURCE, [b.bootstrap, "jtxn"])
    lines = out.splitlines()
    assert "committed 12" in lines, out
    assert any(line.startswith("fenced ") for line in lines), out
    committed = sorted(line.split(" ", 1)[1] for line in lines if line.startswith("committed-record "))
    assert committed == ["0:t0-p0", "0:t2-p0", "1:fresh", "1:t0-p1", "1:t2-p1"], out
    anything = [line.split(" ", 1)[1] for line in lines if line.startswith("any-record ")]
    assert {"0:t1-p0", "1:t3-p1", "0:zombie"} <= set(anything), out
