"""Apache Kafka's own command-line tools against odradek, and side by side
against Apache Kafka 4.4 with the same steps: their output has the same shape.

The tools (kafka-topics, kafka-configs, kafka-consumer-groups, the console
producer and consumer, kafka-get-offsets, kafka-delete-records,
kafka-log-dirs, kafka-broker-api-versions, kafka-dump-log, kafka-groups,
kafka-cluster, kafka-transactions, kafka-leader-election) are the main
classes of the kafka-tools jar from Maven Central; ToolRunner.java runs them
one after the other in one JVM. Skipped where Java, Maven or the jars cannot
be had.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import BrokerProcess, free_port
from tests.integration.java_client import require_java

HERE = os.path.dirname(os.path.abspath(__file__))
T = "org.apache.kafka.tools."
TOPICS, GROUPS, CONFIGS = T + "TopicCommand", T + "consumer.group.ConsumerGroupCommand", T + "ConfigCommand"


def steps(bootstrap: str, data_dir: str, scratch: str) -> list[tuple[str, str, str, list[str]]]:
    """(name, stdin, main class, args) of one operator's session, in order."""
    b = ["--bootstrap-server", bootstrap]
    delete_json = os.path.join(scratch, "delete-records.json")
    with open(delete_json, "w") as f:
        json.dump({"partitions": [{"topic": "tools", "partition": 0, "offset": 1}], "version": 1}, f)
    segment = os.path.join(data_dir, "tools-1", "00000000000000000000")
    records = "".join(f"k{i}:v{i}\n" for i in range(1, 7))
    return [
        ("create", "-", TOPICS, b + ["--create", "--topic", "tools", "--partitions", "2",
                                     "--replication-factor", "1"]),
        ("alter", "-", TOPICS, b + ["--alter", "--topic", "tools", "--partitions", "3"]),
        ("list", "-", TOPICS, b + ["--list", "--exclude-internal"]),
        ("produce", records, T + "ConsoleProducer",
         b + ["--topic", "tools", "--reader-property", "parse.key=true", "--reader-property", "key.separator=:",
              "--producer-property", "partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner"]),
        ("consume", "-", T + "consumer.ConsoleConsumer",
         b + ["--topic", "tools", "--from-beginning", "--max-messages", "6", "--group", "tg",
              "--formatter-property", "print.key=true", "--formatter-property", "print.partition=true",
              "--formatter-property", "print.offset=true"]),
        # Described after produce and consume: Apache Kafka's own metadata can lag an alter.
        ("describe", "-", TOPICS, b + ["--describe", "--topic", "tools"]),
        ("groups list", "-", GROUPS, b + ["--list"]),
        ("groups describe", "-", GROUPS, b + ["--describe", "--group", "tg"]),
        ("groups members", "-", GROUPS, b + ["--describe", "--group", "tg", "--members"]),
        ("groups state", "-", GROUPS, b + ["--describe", "--group", "tg", "--state"]),
        ("reset dry run", "-", GROUPS, b + ["--reset-offsets", "--group", "tg", "--topic", "tools",
                                           "--to-earliest", "--dry-run"]),
        ("reset execute", "-", GROUPS, b + ["--reset-offsets", "--group", "tg", "--topic", "tools:0",
                                            "--to-offset", "1", "--execute"]),
        ("groups describe after reset", "-", GROUPS, b + ["--describe", "--group", "tg", "--offsets"]),
        ("config alter", "-", CONFIGS, b + ["--entity-type", "topics", "--entity-name", "tools",
                                            "--alter", "--add-config", "retention.ms=3600000"]),
        ("config describe", "-", CONFIGS, b + ["--entity-type", "topics", "--entity-name", "tools",
                                               "--describe"]),
        ("quota alter", "-", CONFIGS, b + ["--entity-type", "users", "--entity-name", "alice",
                                           "--alter", "--add-config", "producer_byte_rate=1024"]),
        ("quota describe", "-", CONFIGS, b + ["--entity-type", "users", "--entity-name", "alice",
                                              "--describe"]),
        # Dynamic broker configs: the cluster default (min.insync.replicas=1 is one on a formatted
        # Kafka already), one broker's own, described, and a read-only setting refused.
        ("broker default alter", "-", CONFIGS, b + ["--entity-type", "brokers", "--entity-default", "--alter",
                                                    "--add-config", "log.retention.ms=7200000,min.insync.replicas=1"]),
        ("broker config alter", "-", CONFIGS, b + ["--entity-type", "brokers", "--entity-name", "1", "--alter",
                                                   "--add-config", "log.retention.ms=3600000"]),
        ("broker config describe", "-", CONFIGS, b + ["--entity-type", "brokers", "--entity-name", "1",
                                                      "--describe"]),
        ("broker default describe", "-", CONFIGS, b + ["--entity-type", "brokers", "--entity-default",
                                                       "--describe"]),
        ("broker config refused", "-", CONFIGS, b + ["--entity-type", "brokers", "--entity-name", "1", "--alter",
                                                     "--add-config", "num.partitions=3"]),
        ("group config alter", "-", CONFIGS, b + ["--entity-type", "groups", "--entity-name", "tg", "--alter",
                                                  "--add-config", "consumer.session.timeout.ms=50000"]),
        ("group config describe", "-", CONFIGS, b + ["--entity-type", "groups", "--entity-name", "tg",
                                                     "--describe"]),
        ("offsets latest", "-", T + "GetOffsetShell", b + ["--topic", "tools"]),
        ("delete records", "-", T + "DeleteRecordsCommand", b + ["--offset-json-file", delete_json]),
        ("offsets earliest", "-", T + "GetOffsetShell", b + ["--topic", "tools", "--time", "-2"]),
        ("log dirs", "-", T + "LogDirsCommand", b + ["--describe", "--topic-list", "tools"]),
        ("api versions", "-", T + "BrokerApiVersionsCommand", b),
        ("dump log", "-", T + "DumpLogSegments", ["--files", segment + ".log", "--print-data-log"]),
        ("groups of every type", "-", T + "GroupsCommand", b + ["--list"]),
        ("cluster id", "-", T + "ClusterTool", ["cluster-id"] + b),
        ("transactions", "-", T + "TransactionsCommand", b + ["list"]),
        ("preferred leaders", "-", T + "LeaderElectionCommand",
         b + ["--election-type", "preferred", "--topic", "tools", "--partition", "0"]),
        ("delete group", "-", GROUPS, b + ["--delete", "--group", "tg"]),
        ("delete topic", "-", TOPICS, b + ["--delete", "--topic", "tools"]),
        ("list after delete", "-", TOPICS, b + ["--list", "--exclude-internal"]),
    ]


@pytest.fixture(scope="module")
def tool_runner(tmp_path_factory):
    """A function running ``steps`` in one JVM: {name: (exit code, output)}."""
    cp = require_java()
    classes = tmp_path_factory.mktemp("tool-runner")
    subprocess.run(["javac", "-cp", cp, "-d", str(classes), os.path.join(HERE, "ToolRunner.java")],
                   check=True, capture_output=True, timeout=120)

    def run(session: list) -> dict[str, tuple[int, str]]:
        script = classes / "session.tsv"
        with open(script, "w") as f:
            for name, stdin, main, args in session:
                assert "\t" not in "".join(args)
                f.write("\t".join([name, stdin.replace("\n", "\\n"), main, *args]) + "\n")
        log4j = classes / "log4j2.properties"
        log4j.write_text("rootLogger.level = off\n")
        proc = subprocess.run(["java", "-Xmx256M", f"-Dlog4j2.configurationFile={log4j}",
                               "-cp", f"{classes}{os.pathsep}{cp}", "ToolRunner", str(script)],
                              capture_output=True, text=True, timeout=300)
        assert "=== end" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
        out = {}
        for block in re.split(r"^=== ", proc.stdout, flags=re.M)[1:]:
            head, _, body = block.partition("\n")
            if head == "end":
                break
            name, _, code = head.rpartition(" exit=")
            out[name] = (int(code), body)
        return out

    return run


@pytest.fixture(scope="module")
def odradek_session(tool_runner, tmp_path_factory):
    """The session run against ``odradek serve`` (a child process, logs on disk)."""
    data = tmp_path_factory.mktemp("tools-broker")
    broker = BrokerProcess(str(data / "data"), props={"group.initial.rebalance.delay.ms": "0"}).start()
    try:
        result = tool_runner(steps(broker.bootstrap, broker.data_dir, str(data)))
    finally:
        broker.stop()
    return broker, result


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a whitespace-aligned table."""
    rows = [line.split() for line in lines(text)]
    start = next(i for i, r in enumerate(rows) if r and r[0] == "GROUP")
    return rows[start], rows[start + 1:]


def test_each_tool_runs_against_odradek(odradek_session):
    broker, out = odradek_session
    failed = {name: body for name, (code, body) in out.items() if code != 0 and name != "broker config refused"}
    assert not failed, failed

    assert "Created topic tools." in out["create"][1]
    assert lines(out["list"][1]) == ["tools"]
    describe = lines(out["describe"][1])
    assert describe[0].startswith("Topic: tools\tTopicId: ") and "PartitionCount: 3" in describe[0]
    assert [line.split("\t")[2] for line in describe[1:]] == [f"Partition: {i}" for i in range(3)]
    assert all("Leader: 1\tReplicas: 1\tIsr: 1\tElr: \tLastKnownElr: " in line for line in describe[1:])

    consumed = [line.split("\t") for line in lines(out["consume"][1]) if "\t" in line]
    assert sorted(c[2:] for c in consumed) == [[f"k{i}", f"v{i}"] for i in range(1, 7)]
    assert sorted(c[0] for c in consumed) == ["Partition:0"] * 2 + ["Partition:1"] * 2 + ["Partition:2"] * 2
    assert "Processed a total of 6 messages" in out["consume"][1]

    assert "tg" in lines(out["groups list"][1])
    header, rows = table(out["groups describe"][1])
    assert header == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                      "CONSUMER-ID", "HOST", "CLIENT-ID"]
    assert sorted((r[2], r[3], r[5]) for r in rows) == [("0", "2", "0"), ("1", "2", "0"), ("2", "2", "0")]
    header, rows = table(out["groups state"][1])
    assert header[:5] == ["GROUP", "COORDINATOR", "(ID)", "ASSIGNMENT-STRATEGY", "STATE"]
    assert rows[0][-2:] == ["Empty", "0"]
    header, rows = table(out["reset dry run"][1])
    assert header == ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]
    assert sorted((r[2], r[3]) for r in rows) == [("0", "0"), ("1", "0"), ("2", "0")]
    header, rows = table(out["reset execute"][1])
    assert rows == [["tg", "tools", "0", "1"]]
    _, rows = table(out["groups describe after reset"][1])
    assert sorted((r[2], r[3], r[5]) for r in rows) == [("0", "1", "1"), ("1", "2", "0"), ("2", "2", "0")]

    assert "Completed updating config for topic tools." in out["config alter"][1]
    assert "retention.ms=3600000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=3600000}" \
        in out["config describe"][1]
    assert "Quota configs for user-principal 'alice' are producer_byte_rate=1024.0" in out["quota describe"][1]
    assert out["broker default alter"] == (0, "Completed updating default config for brokers in the cluster.\n")
    assert out["broker config alter"] == (0, "Completed updating config for broker 1.\n")
    assert lines(out["broker config describe"][1]) == [
        "Dynamic configs for broker 1 are:",
        "  log.retention.ms=3600000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:log.retention.ms=3600000, "
        "DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=7200000, DEFAULT_CONFIG:log.retention.hours=168}"]
    assert lines(out["broker default describe"][1]) == [
        "Default configs for brokers in the cluster are:",
        "  log.retention.ms=7200000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=7200000}",
        "  min.insync.replicas=1 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:min.insync.replicas=1}"]
    assert out["broker config refused"][0] == 1
    assert "InvalidRequestException: Cannot update these configs dynamically: [num.partitions]" \
        in out["broker config refused"][1]
    assert lines(out["group config describe"][1]) == [
        "Dynamic configs for group tg are:",
        "  consumer.session.timeout.ms=50000 sensitive=false synonyms={DYNAMIC_GROUP_CONFIG:"
        "consumer.session.timeout.ms=50000, DEFAULT_CONFIG:group.consumer.session.timeout.ms=45000}"]

    assert sorted(lines(out["offsets latest"][1])) == ["tools:0:2", "tools:1:2", "tools:2:2"]
    assert "partition: tools-0\tlow_watermark: 1" in out["delete records"][1]
    assert sorted(lines(out["offsets earliest"][1])) == ["tools:0:1", "tools:1:0", "tools:2:0"]

    log_dirs = json.loads(lines(out["log dirs"][1])[-1])
    (entry,) = log_dirs["brokers"]
    (log_dir,) = entry["logDirs"]
    assert entry["broker"] == 1 and log_dir["error"] is None
    assert log_dir["logDir"] == os.path.abspath(broker.data_dir)
    sizes = {p["partition"]: p["size"] for p in log_dir["partitions"]}
    assert sorted(sizes) == ["tools-0", "tools-1", "tools-2"] and all(s > 0 for s in sizes.values())

    versions = out["api versions"][1]
    assert re.search(r"\(id: 1 rack: null isFenced: false\) -> \(", versions)
    assert re.search(r"Produce\(0\): \d+ to \d+ \[usable: \d+\]", versions)
    assert "DescribeLogDirs(35): 1 to 5 [usable: " in versions

    dump = lines(out["dump log"][1])
    assert dump[1] == "Log starting offset: 0"
    assert dump[2].startswith("baseOffset: 0 lastOffset: 1 count: 2 ")
    assert [line.rsplit("payload: ", 1)[-1] for line in dump[3:]] and all(
        line.startswith("| offset: ") for line in dump[3:])

    assert "tg                   Classic              consumer" in out["groups of every type"][1]
    assert out["cluster id"][1].strip() == f"Cluster ID: {cluster_id(broker.data_dir)}"
    assert out["transactions"][1].split() == ["TransactionalId", "Coordinator", "ProducerId", "TransactionState"]
    assert "Valid replica already elected for partitions tools-0" in out["preferred leaders"][1]
    assert "Deletion of requested consumer groups ('tg') was successful." in out["delete group"][1]
    assert lines(out["list after delete"][1]) == []


def cluster_id(data_dir: str) -> str:
    """The cluster id the broker wrote in its data dir's meta.properties."""
    with open(os.path.join(data_dir, "meta.properties")) as f:
        return next(line.split("=", 1)[1].strip() for line in f if line.startswith("cluster.id="))


# Steps whose output holds values that differ by nature between two brokers
# (ids, paths, timestamps, the APIs each serves) are compared by shape: digits,
# ids and paths masked, lines sorted.
NOT_COMPARED = {"api versions"}  # odradek serves fewer APIs: same line form, checked above


def shape(text: str, bootstrap: str, data_dir: str) -> list[str]:
    text = text.replace(os.path.abspath(data_dir), "DATA").replace(bootstrap, "HOST")
    text = re.sub(r"(TopicId|Cluster ID): \S+", r"\1: ID", text)
    text = re.sub(r"(CONSUMER-ID|consumer-tg-\d+-)[\w-]*", r"\1", text)
    text = re.sub(r"\d+", "N", text)
    text = re.sub(r"Configs: .*", "Configs:", text)  # static broker settings differ
    return sorted(re.sub(r"\s+", " ", line).strip() for line in lines(text))


def test_same_output_shape_as_apache_kafka(odradek_session, tool_runner, tmp_path):
    kafka_runtime = pytest.importorskip("kafka_runtime")  # loaded by require_java from bench/
    try:
        kafka = kafka_runtime.KafkaBroker(heap="512M").start()
    except Exception as e:  # noqa: BLE001 - no release resolvable, no Java to run it
        pytest.skip(f"could not start Apache Kafka: {e}")
    try:
        kafka_data = str(kafka.run_dir / "data")
        theirs = tool_runner(steps(kafka.bootstrap, kafka_data, str(tmp_path)))
    finally:
        kafka.stop()
    broker, ours = odradek_session
    assert list(ours) == list(theirs)
    for name in ours:
        if name in NOT_COMPARED:
            continue
        assert ours[name][0] == theirs[name][0], (name, ours[name], theirs[name])
        assert shape(ours[name][1], broker.bootstrap, broker.data_dir) == \
            shape(theirs[name][1], kafka.bootstrap, kafka_data), name
