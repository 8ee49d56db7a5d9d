"""Which transaction protocol clients choose, odradek beside Apache Kafka.

odradek serves the original protocol (transactions v1) and does not advertise
the `transaction.version` feature (KIP-890 part 2, transactions v2), so
clients must use it: AddPartitionsToTxn before a partition's first write,
EndTxn below v5. Apache Kafka 4.4, formatted with its defaults, finalizes
`transaction.version=2`; the Java client and franz-go then send EndTxn v5 and
no AddPartitionsToTxn, librdkafka 2.16 (which has no transactions v2) the
original protocol still. The versions each client sends are read from its
own request log (the Java client's NetworkClient at DEBUG, librdkafka's
`debug=protocol`, franz-go's debug logger) and, on odradek, from the broker's
per-version request counts."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess

import pytest

from tests.integration.java_client import require_java, run_java
from tests.integration.rawclient import RawClient

pytestmark = pytest.mark.timeout(300)

SOURCE = r"""
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.*;

public class TxnProtocol {
  public static void main(String[] a) throws Exception {
    String bs = a[0], topic = a[1];
    Properties ap = new Properties();
    ap.put("bootstrap.servers", bs);
    try (Admin admin = Admin.create(ap)) {
      admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get();
    }
    Properties pp = new Properties();
    pp.put("bootstrap.servers", bs);
    pp.put("transactional.id", "txn-protocol");
    try (KafkaProducer<String, String> p = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
      p.initTransactions();
      for (int i = 0; i < 3; i++) {
        p.beginTransaction();
        p.send(new ProducerRecord<>(topic, i % 2, null, "v" + i)).get();
        if (i == 1) p.abortTransaction(); else p.commitTransaction();
        System.out.println("done " + i);
      }
    }
  }
}
"""

LOG4J2 = """
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = %m%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = OUT
logger.net.name = org.apache.kafka.clients.NetworkClient
logger.net.level = debug
"""

SENT = re.compile(r"Sending (\w+) request with header RequestHeader\(apiKey=\w+, apiVersion=(\d+)")


def run_client(tmp_path, bootstrap: str) -> dict[str, set[int]]:
    """Run the transactional producer; the versions it sent, per API."""
    config = tmp_path / "log4j2.properties"
    config.write_text(LOG4J2)
    out = run_java(tmp_path, "TxnProtocol", SOURCE, [bootstrap, "txn-protocol"],
                   jvm_opts=[f"-Dlog4j2.configurationFile={config}"])
    assert [l for l in out.splitlines() if l.startswith("done ")] == ["done 0", "done 1", "done 2"], out[-3000:]
    sent: dict[str, set[int]] = {}
    for api, version in SENT.findall(out):
        sent.setdefault(api, set()).add(int(version))
    return sent


def run_librdkafka(bootstrap: str) -> dict[str, set[int]] | None:
    """confluent-kafka's transactional producer, three transactions; the versions it sent."""
    ck = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("rdk-protocol", 2, 1)])["rdk-protocol"].result(30)
    lines: list[str] = []
    log = logging.getLogger("txn-protocol-librdkafka")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    log.addHandler(handler)
    p = ck.Producer({"bootstrap.servers": bootstrap, "transactional.id": "rdk-protocol", "linger.ms": 0,
                     "debug": "protocol"}, logger=log)
    p.init_transactions(30)
    for i in range(3):
        p.begin_transaction()
        p.produce("rdk-protocol", b"v%d" % i, partition=i % 2)
        p.flush(30)
        (p.abort_transaction if i == 1 else p.commit_transaction)(30)
    p.poll(0.2)
    sent: dict[str, set[int]] = {}
    for line in lines:
        for api, version in re.findall(r"Sent (\w+)Request \(v(\d+)", line):
            sent.setdefault(api, set()).add(int(version))
    return sent


def run_franz(tmp_path, bootstrap: str) -> dict[str, set[int]] | None:
    """franz-go's transactional producer (franz/txnwrite), three transactions;
    the versions it wrote, or None without Go or the module proxy."""
    if shutil.which("go") is None:
        return None
    binary = tmp_path / "txnwrite"
    if not binary.exists():
        build = subprocess.run(["go", "build", "-o", str(binary), "./txnwrite"],
                               cwd=os.path.join(os.path.dirname(__file__), "franz"),
                               capture_output=True, text=True, timeout=360)
        if build.returncode != 0:
            return None
    proc = subprocess.run([str(binary), bootstrap, "franz-protocol"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert [l for l in proc.stdout.splitlines() if l.startswith("done ")] == ["done 0", "done 1", "done 2"]
    sent: dict[str, set[int]] = {}
    for api, version in re.findall(r"wrote (\w+) v(\d+)", proc.stdout):
        sent.setdefault(api, set()).add(int(version))
    return sent


def finalized_features(bootstrap: str) -> dict[str, int]:
    raw = RawClient(bootstrap)
    try:
        r = raw.request("ApiVersions", 3, {"client_software_name": "odradek-test", "client_software_version": "0"})
    finally:
        raw.close()
    return {f["name"]: f["max_version_level"] for f in r.get("finalized_features") or []}


def test_clients_use_transactions_v1_against_odradek(odradek_broker_factory, tmp_path):
    b = odradek_broker_factory(config={"transaction.state.log.num.partitions": "3"})
    assert "transaction.version" not in finalized_features(b.bootstrap)
    sent = run_client(tmp_path, b.bootstrap)
    assert sent["ADD_PARTITIONS_TO_TXN"] and max(sent["ADD_PARTITIONS_TO_TXN"]) <= 3, sent
    assert sent["END_TXN"] and max(sent["END_TXN"]) < 5 and max(sent["PRODUCE"]) < 12, sent
    # the broker counted the same versions
    apis = {s.name: s.versions for s in b.broker.core.metrics.apis.values()}
    assert set(apis["AddPartitionsToTxn"]) == sent["ADD_PARTITIONS_TO_TXN"]
    assert set(apis["EndTxn"]) == sent["END_TXN"] and sum(apis["EndTxn"].values()) == 3
    rdk = run_librdkafka(b.bootstrap)
    assert rdk["AddPartitionsToTxn"] == {0} and rdk["EndTxn"] == {1}, rdk
    franz = run_franz(tmp_path, b.bootstrap)
    if franz is not None:
        assert franz["AddPartitionsToTxn"] and franz["EndTxn"] == {4}, franz
        assert max(franz["Produce"]) < 12, franz  # Produce v12+ is for transactions v2 clients
    print("odradek:", {"java": sent, "librdkafka": rdk, "franz-go": franz})


def test_clients_choose_side_by_side_against_kafka(tmp_path):
    """The same clients against Apache Kafka 4.4 (single node, its defaults):
    the side-by-side reference for the test above."""
    require_java()
    kafka_runtime = pytest.importorskip("kafka_runtime")  # loaded by require_java from bench/
    try:
        kafka = kafka_runtime.KafkaBroker(heap="512M").start()
    except Exception as e:  # noqa: BLE001 - no release resolvable, no Java to run it
        pytest.skip(f"could not start Apache Kafka: {e}")
    try:
        assert finalized_features(kafka.bootstrap).get("transaction.version") == 2
        sent = run_client(tmp_path, kafka.bootstrap)
        rdk = run_librdkafka(kafka.bootstrap)
        franz = run_franz(tmp_path, kafka.bootstrap)
    finally:
        kafka.stop()
    assert "ADD_PARTITIONS_TO_TXN" not in sent, sent
    assert sent["END_TXN"] == {5}, sent
    assert rdk["AddPartitionsToTxn"] == {0} and rdk["EndTxn"] == {1}, rdk  # librdkafka: v1 everywhere
    if franz is not None:
        assert "AddPartitionsToTxn" not in franz and franz["EndTxn"] == {5}, franz
    print("kafka", kafka.version, {"java": sent, "librdkafka": rdk, "franz-go": franz})
