"""Produce with invalid records (KIP-467): the partition is refused, but the
answer names each invalid record, so clients fail only those and report the
others as failed because of a different record.

librdkafka: records named in ``record_errors`` get INVALID_RECORD, the rest
of the batch _INVALID_DIFFERENT_RECORD (its test 0011 expects 10 and 90).
The Java producer: InvalidRecordException for the named records, a plain
KafkaException for the others.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, Producer

from odradek.protocol import errors
from tests.integration.java_client import run_java
from tests.integration.rawclient import RawClient

pytestmark = pytest.mark.timeout(300)

COMPACTED = {"cleanup.policy": "compact"}


def produce_one_batch(bootstrap: str, topic: str, n: int, keyless_every: int) -> list:
    """Send ``n`` records to partition 0 in one batch, every ``keyless_every``-th
    without a key; return each record's error code (None when written)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 500, "batch.num.messages": 10000,
                  "retries": 0, "acks": "all"})
    results: list = [Ellipsis] * n

    def cb(i):
        def done(err, msg):
            results[i] = None if err is None else err.code()
        return done

    for i in range(n):
        key = None if i % keyless_every == 0 else b"k%d" % i
        p.produce(topic, key=key, value=b"v%d" % i, partition=0, on_delivery=cb(i))
    assert p.flush(30) == 0
    assert Ellipsis not in results
    return results


def test_librdkafka_fails_only_the_invalid_records(odradek_broker):
    odradek_broker.create_topic("kip467-rdk", 1, config=COMPACTED)
    results = produce_one_batch(odradek_broker.bootstrap, "kip467-rdk", 100, 10)
    assert [i for i, c in enumerate(results) if c == KafkaError.INVALID_RECORD] == list(range(0, 100, 10))
    assert results.count(KafkaError._INVALID_DIFFERENT_RECORD) == 90


def produce_raw(bootstrap: str, topic: str, batch, version: int = 9) -> dict:
    c = RawClient(bootstrap)
    try:
        resp = c.request("Produce", version, {
            "transactional_id": None, "acks": -1, "timeout_ms": 5000,
            "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": bytes(batch)}]}]})
    finally:
        c.close()
    return resp["responses"][0]["partition_responses"][0]


def test_record_errors_on_the_wire(odradek_broker):
    """The response itself: record_errors in order and error_message (v8+)."""
    from odradek.protocol.records import build_batch

    odradek_broker.create_topic("kip467-raw", 1, config=COMPACTED)
    batch = build_batch([(None if i in (1, 4) else b"k", b"v", (), None) for i in range(6)])
    for version in (7, 9):
        part = produce_raw(odradek_broker.bootstrap, "kip467-raw", batch, version)
        assert part["error_code"] == errors.INVALID_RECORD
        if version >= 8:
            assert [e["batch_index"] for e in part["record_errors"]] == [1, 4]
            assert all("without a key" in e["batch_index_error_message"] for e in part["record_errors"])
            assert "2 invalid record" in part["error_message"]


def test_timestamps_are_checked_per_record(odradek_broker):
    """message.timestamp.before.max.ms applies to every record, not only to
    the batch header's (first and max) timestamps; the one record outside
    the window is named."""
    from odradek.protocol.records import build_batch

    odradek_broker.create_topic("kip467-ts", 1, config={"message.timestamp.before.max.ms": "3600000"})
    now = int(time.time() * 1000)
    batch = build_batch([(b"k", b"v", (), now - 7200_000 if i == 2 else now) for i in range(5)])
    part = produce_raw(odradek_broker.bootstrap, "kip467-ts", batch)
    assert part["error_code"] == errors.INVALID_TIMESTAMP
    assert [e["batch_index"] for e in part["record_errors"]] == [2]
    assert odradek_broker.records("kip467-ts") == []


JAVA = r"""
import java.util.*;
import java.util.concurrent.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.*;

public class InvalidRecords {
  public static void main(String[] a) throws Exception {
    Properties pp = new Properties();
    pp.put("bootstrap.servers", a[0]);
    pp.put("linger.ms", "500");
    pp.put("retries", "0");
    pp.put("enable.idempotence", "false");
    try (KafkaProducer<String, String> p = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
      List<Future<RecordMetadata>> fs = new ArrayList<>();
      for (int i = 0; i < 10; i++)
        fs.add(p.send(new ProducerRecord<>(a[1], 0, i % 4 == 1 ? null : "k" + i, "v" + i)));
      p.flush();
      for (int i = 0; i < fs.size(); i++) {
        try {
          fs.get(i).get();
          System.out.println("record " + i + " ok");
        } catch (ExecutionException e) {
          Throwable c = e.getCause();
          System.out.println("record " + i + " " + c.getClass().getSimpleName() + " " + c.getMessage());
        }
      }
    }
  }
}
"""


def test_java_producer_reads_record_errors(odradek_broker, tmp_path):
    odradek_broker.create_topic("kip467-java", 1, config=COMPACTED)
    out = run_java(tmp_path, "InvalidRecords", JAVA, [odradek_broker.bootstrap, "kip467-java"])
    lines = {int(l.split()[1]): l.split(" ", 2)[2] for l in out.splitlines() if l.startswith("record ")}
    assert sorted(lines) == list(range(10))
    for i, line in lines.items():
        if i % 4 == 1:
            # Its own message, from record_errors.
            assert line.startswith("InvalidRecordException ") and "without a key" in line, line
        else:
            assert line.startswith("KafkaException ") and "invalid records" in line, line
