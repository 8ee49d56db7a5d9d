"""Streams groups (KIP-1071) with Kafka Streams 4.4 and ``group.protocol=streams``.

A word count (``groupBy`` through a repartition topic, ``count`` into a
store with a changelog) runs against odradek: the broker creates the
internal topics and assigns the tasks. Its input is produced by
confluent-kafka, its output read back by confluent-kafka and checked
exactly: with the record cache off every update is emitted, so each word's
counts are 1, 2, ..., n in order, none missing or repeated.

A second instance joins: both get tasks, none twice, each stateful task
has a standby on the other instance (the group config
``streams.num.standby.replicas=1``, set with confluent-kafka's admin
client), every instance knows which instance serves which partitions
(Interactive Queries' metadata, from the broker's endpoint information),
and the output of more input stays exact. The second stops (scaling in):
the first takes all the tasks, and the counts stay exact. It stops too,
and a third instance without local state restores the counts from the
changelog and goes on counting exactly. Kafka's ``kafka-streams-groups.sh``
(``org.apache.kafka.tools.streams.StreamsGroupCommand``) describes the
group's members and offsets, and deletes it with its internal topics.

The word count runs with processing.guarantee=exactly_once_v2 too (read
back with read_committed), across a restart of the broker.

Skipped, saying why, unless javac and the Kafka 4.4 jars (kafka-streams
among them, resolved by bench/kafka_runtime.py) can be had.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from odradek.embedded import EmbeddedBroker
from tests.integration.test_groups import create_topic

pytestmark = pytest.mark.timeout(240)

BROKER_CONFIG = {
    "offsets.topic.num.partitions": "4",
    "group.streams.heartbeat.interval.ms": "300",
    "group.streams.initial.rebalance.delay.ms": "0",
}

APP = "wordcount"
IN, OUT = "wc-in", "wc-out"

JAVA_SOURCE = r"""
import java.io.*;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.*;
import org.apache.kafka.streams.kstream.*;

public class WordCount {
  public static void main(String[] args) throws Exception {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    p.put("group.protocol", "streams");
    p.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "100");
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, "0");
    p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.String().getClass());
    p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.String().getClass());
    p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
    if (args.length > 5) p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, args[5]);
    if (args.length > 6) p.put(StreamsConfig.APPLICATION_SERVER_CONFIG, args[6]);
    StreamsBuilder b = new StreamsBuilder();
    b.<String, String>stream(args[2])
     .flatMapValues(v -> Arrays.asList(v.toLowerCase().split("\\W+")))
     .groupBy((k, w) -> w)
     .count(Materialized.as("counts"))
     .toStream()
     .to(args[3], Produced.with(Serdes.String(), Serdes.Long()));
    KafkaStreams s = new KafkaStreams(b.build(), p);
    s.setUncaughtExceptionHandler(e -> {
      System.out.println("ERROR " + e);
      System.out.flush();
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    s.start();
    Thread watch = new Thread(() -> {
      String last = "", lastClients = "";
      while (true) {
        try {
          TreeSet<String> tasks = new TreeSet<>(), standby = new TreeSet<>();
          for (ThreadMetadata t : s.metadataForLocalThreads()) {
            for (TaskMetadata tm : t.activeTasks()) tasks.add(tm.taskId().toString());
            for (TaskMetadata tm : t.standbyTasks()) standby.add(tm.taskId().toString());
          }
          String now = s.state() + " " + String.join(",", tasks) + " " + String.join(",", standby);
          if (!now.equals(last)) { System.out.println("STATE " + now); System.out.flush(); last = now; }
          TreeSet<String> clients = new TreeSet<>();
          for (StreamsMetadata m : s.metadataForAllStreamsClients()) {
            TreeSet<String> parts = new TreeSet<>();
            for (org.apache.kafka.common.TopicPartition tp : m.topicPartitions()) parts.add(tp.toString());
            clients.add(m.hostInfo().host() + ":" + m.hostInfo().port() + "=" + String.join(",", parts));
          }
          String c = String.join(" ", clients);
          if (!c.equals(lastClients)) { System.out.println("CLIENTS " + c); System.out.flush(); lastClients = c; }
          Thread.sleep(100);
        } catch (Exception e) { return; }
      }
    });
    watch.setDaemon(true);
    watch.start();
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
    while (in.readLine() != null) { }
    s.close(Duration.ofSeconds(30));
    System.out.println("CLOSED");
    System.out.flush();
  }
}
"""


class Instance:
    """One Kafka Streams process, its ``STATE <state> <active tasks>`` lines read as they come."""

    def __init__(self, classdir: Path, classpath: str, bootstrap: str, state_dir: Path, *extra: str):
        log4j2 = Path(classpath.split(os.pathsep)[0]).parent.parent / "log4j2-tools.properties"
        opts = [f"-Dlog4j2.configurationFile={log4j2}"] if log4j2.exists() else []
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", *opts, "-cp", f"{classdir}{os.pathsep}{classpath}", "WordCount",
             bootstrap, APP, IN, OUT, str(state_dir), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.state = ""
        self.tasks: set[str] = set()
        self.standby: set[str] = set()
        self.clients: dict[str, set[str]] = {}  # IQ: host:port -> the partitions of its active tasks
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.err: list[str] = []
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def poll(self) -> None:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            self.log.append(line)
            assert not line.startswith("ERROR"), f"{line}\n{''.join(self.err)[-3000:]}"
            if line.startswith("STATE "):
                parts = line.split(" ")
                self.state = parts[1]
                self.tasks = set(parts[2].split(",")) if len(parts) > 2 and parts[2] else set()
                self.standby = set(parts[3].split(",")) if len(parts) > 3 and parts[3] else set()
            elif line.startswith("CLIENTS"):
                self.clients = {}
                for entry in line.split(" ")[1:]:
                    endpoint, _, parts = entry.partition("=")
                    self.clients[endpoint] = set(parts.split(",")) if parts else set()

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _produce(bootstrap: str, lines: list[str]) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})  # no retried duplicate
    for i, line in enumerate(lines):
        p.produce(IN, key=f"k{i}", value=line)
    assert p.flush(20) == 0


class Output:
    """Every (word, count) the application wrote, in order per word."""

    def __init__(self, bootstrap: str, read_committed: bool = False):
        from confluent_kafka import Consumer, TopicPartition

        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wc-checker", "enable.auto.commit": False,
                           "isolation.level": "read_committed" if read_committed else "read_uncommitted"})
        self.c.assign([TopicPartition(OUT, p, 0) for p in range(4)])
        self.seen: dict[str, list[int]] = defaultdict(list)

    def until(self, expected: Counter, instances: list[Instance], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in instances:
                i.poll()
            for m in self.c.consume(500, 0.2):
                if m.error():
                    continue
                self.seen[m.key().decode()].append(int.from_bytes(m.value(), "big", signed=True))
            if {w: v[-1] for w, v in self.seen.items()} == dict(expected):
                break
        wrong = {w: (n, (self.seen.get(w) or [None])[-1]) for w, n in expected.items()
                 if self.seen.get(w) != list(range(1, n + 1))}
        assert not wrong and set(self.seen) == set(expected), (
            f"(expected, last seen) of the words whose counts are not 1..n: {wrong}\n"
            + "\n".join(f"instance {k}: {i.log[-5:]}\n{''.join(i.err)[-1500:]}" for k, i in enumerate(instances)))


def _text(seed: int, n: int) -> list[str]:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
    return [" ".join(words[(seed * 7 + i * 5 + j * 3) % len(words)] for j in range(1 + (i % 4))) for i in range(n)]


def _count(lines: list[str]) -> Counter:
    return Counter(w for line in lines for w in line.lower().split())


def _compiled(tmp_path) -> str:
    from tests.integration.java_client import classpath as java_classpath

    classpath = java_classpath() if shutil.which("javac") else None
    if classpath is None or "kafka-streams-" not in classpath:
        pytest.skip("javac or the Kafka 4.x jars (kafka-streams) are not available")
    src = tmp_path / "WordCount.java"
    src.write_text(JAVA_SOURCE)
    subprocess.run(["javac", "-nowarn", "-cp", classpath, "-d", str(tmp_path), str(src)], check=True,
                   capture_output=True, timeout=120)
    return classpath


def _split(one: Instance, two: Instance, standby: set) -> None:
    """Wait until both instances run and share the 8 tasks, with ``standby`` among them."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for i in (one, two):
            i.poll()
        if one.tasks and two.tasks and one.state == two.state == "RUNNING" and \
                len(one.tasks | two.tasks) == 8 and one.standby | two.standby == standby:
            break
        time.sleep(0.1)
    assert one.tasks and two.tasks, (one.log[-5:], two.log[-5:])
    assert not one.tasks & two.tasks
    assert one.tasks | two.tasks == {f"{s}_{p}" for s in (0, 1) for p in range(4)}


def test_kafka_streams_word_count_exactly_once_across_a_broker_restart(tmp_path):
    """The same with processing.guarantee=exactly_once_v2 (the output
    written and the offsets committed in transactions, TxnOffsetCommit at
    the member's epoch), and the broker restarted on its data directory in
    between: the group, replayed from ``__consumer_offsets``, takes the
    member back at its epoch, and the counts go on exactly."""
    classpath = _compiled(tmp_path)
    data = tmp_path / "data"
    config = dict(BROKER_CONFIG)
    del config["group.streams.initial.rebalance.delay.ms"]  # Kafka's default, 3 s, before the first assignment
    b = EmbeddedBroker(data_dir=str(data), config=config).start()
    create_topic(b, IN, 4)
    create_topic(b, OUT, 4)
    first = _text(4, 150)
    _produce(b.bootstrap, first)
    out = Output(b.bootstrap, read_committed=True)
    one = Instance(tmp_path, classpath, b.bootstrap, tmp_path / "state-1", "exactly_once_v2")
    try:
        out.until(_count(first), [one])
        before = _described(b)
        port = b.port
        b.stop()
        b = EmbeddedBroker(data_dir=str(data), port=port, config=config).start()
        second = _text(5, 150)
        _produce(b.bootstrap, second)
        out.until(_count(first) + _count(second), [one])
        one.poll()
        assert one.state == "RUNNING" and len(one.tasks) == 8, one.log[-5:]
        assert _described(b) == before  # the same member at the same epochs: nothing was rebalanced
    finally:
        one.stop()
        out.c.close()
        b.stop()


def test_kafka_streams_word_count(tmp_path):
    classpath = _compiled(tmp_path)
    with EmbeddedBroker(config=BROKER_CONFIG) as b:
        create_topic(b, IN, 4)
        create_topic(b, OUT, 4)
        _set_group_config(b.bootstrap, "streams.num.standby.replicas", "1")
        first = _text(1, 200)
        _produce(b.bootstrap, first)
        out = Output(b.bootstrap)
        one = Instance(tmp_path, classpath, b.bootstrap, tmp_path / "state-1", "at_least_once", "localhost:7001")
        instances = [one]
        try:
            out.until(_count(first), instances)
            # the internal topics, created by the broker
            for name in (f"{APP}-counts-repartition", f"{APP}-counts-changelog"):
                assert name in b.core.replicas.topics, sorted(b.core.replicas.topics)
            two = Instance(tmp_path, classpath, b.bootstrap, tmp_path / "state-2", "at_least_once", "localhost:7002")
            instances.append(two)
            _split(one, two, {"1_0", "1_1", "1_2", "1_3"})
            # Interactive Queries: each instance knows where every task's partitions are served
            expected = {"localhost:7001": _task_partitions(one.tasks), "localhost:7002": _task_partitions(two.tasks)}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not one.clients == two.clients == expected:
                time.sleep(0.1)
                one.poll()
                two.poll()
            assert one.clients == two.clients == expected, (one.clients, two.clients, expected)
            # a standby of each stateful task, on the other instance
            assert one.standby | two.standby == {"1_0", "1_1", "1_2", "1_3"}, (one.log[-3:], two.log[-3:])
            assert not one.standby & one.tasks and not two.standby & two.tasks
            second = _text(2, 300)
            _produce(b.bootstrap, second)
            out.until(_count(first) + _count(second), instances)
            _describe_with_tool(b.bootstrap, classpath, one, two)
            # scaled in: the second stops, the first takes its tasks back and
            # the counts go on exactly
            two.stop()
            third = _text(3, 100)
            _produce(b.bootstrap, third)
            out.until(_count(first) + _count(second) + _count(third), instances)
            one.poll()
            assert len(one.tasks) == 8, one.log[-5:]
            # the first stops too; a third instance, with no local state,
            # restores the counts from the changelog topic and goes on counting
            one.stop()
            three = Instance(tmp_path, classpath, b.bootstrap, tmp_path / "state-3")
            instances.append(three)
            fourth = _text(7, 100)
            _produce(b.bootstrap, fourth)
            out.until(_count(first) + _count(second) + _count(third) + _count(fourth), instances)
            three.poll()
            assert len(three.tasks) == 8, three.log[-5:]
            three.stop()
            assert _group_types(b) == ["streams"]
            _delete_with_tool(b.bootstrap, classpath)
            assert _group_types(b) == []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and f"{APP}-counts-changelog" in b.core.replicas.topics:
                time.sleep(0.1)
            assert not {f"{APP}-counts-repartition", f"{APP}-counts-changelog"} & set(b.core.replicas.topics)
        finally:
            for i in instances:
                i.stop()
            out.c.close()


def _described(b: EmbeddedBroker) -> tuple:
    """(group epoch, state, {member id: (member epoch, active tasks)}) of the application's group."""
    async def described():
        shard, _ = b.core.groups.shard_for(APP)
        g = shard.streams_group_describe([APP])[0]
        return g["group_epoch"], g["group_state"], {
            m["member_id"]: (m["member_epoch"], str(m["assignment"]["active_tasks"])) for m in g["members"]}
    return b.call(described)


def _task_partitions(tasks: set[str]) -> set[str]:
    """The source partitions of word count tasks: subtopology 0 reads the
    input, 1 the repartition topic."""
    topics = {"0": IN, "1": f"{APP}-counts-repartition"}
    return {f"{topics[t.split('_')[0]]}-{t.split('_')[1]}" for t in tasks}


def _group_types(b: EmbeddedBroker) -> list[str]:
    async def listed():
        return [g["group_type"] for g in b.core.groups.list_groups()[1] if g["group_id"] == APP]
    return b.call(listed)


def _set_group_config(bootstrap: str, name: str, value: str) -> None:
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)

    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ResourceType.GROUP, APP,
                         incremental_configs=[ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(20)


def _tool(bootstrap: str, classpath: str, *args) -> str:
    main = "org.apache.kafka.tools.streams.StreamsGroupCommand"
    log4j2 = Path(classpath.split(os.pathsep)[0]).parent.parent / "log4j2-tools.properties"
    opts = [f"-Dlog4j2.configurationFile={log4j2}"] if log4j2.exists() else []
    proc = subprocess.run(["java", "-Xmx256m", *opts, "-cp", classpath, main, "--bootstrap-server", bootstrap,
                           *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _delete_with_tool(bootstrap: str, classpath: str) -> None:
    out = _tool(bootstrap, classpath, "--delete", "--group", APP, "--delete-all-internal-topics")
    assert "was successful" in out, out


def _describe_with_tool(bootstrap: str, classpath: str, *instances: Instance) -> None:
    def run(*args):
        return _tool(bootstrap, classpath, *args)

    members = run("--describe", "--group", APP, "--members")
    lines = [line for line in members.splitlines() if line.startswith(APP + " ")]
    assert len(lines) == 2, members
    def tasks(kind):
        out = set()
        for line in lines:
            m = re.search(kind + r":((?:\s*\w+:\[[\d,]*\];)*)", line)
            for sid, ps in re.findall(r"(\w+):\[([\d,]*)\]", m.group(1) if m else ""):
                out.update(f"{sid}_{p}" for p in ps.split(",") if p)
        return out

    assert tasks("ACTIVE") == instances[0].tasks | instances[1].tasks, members
    assert tasks("STANDBY") == instances[0].standby | instances[1].standby, members
    # committed offsets of the source and repartition topics, and their lag
    offsets = run("--describe", "--group", APP)
    rows = {tuple(line.split()[1:3]): line.split()[3] for line in offsets.splitlines() if line.startswith(APP + " ")}
    assert set(rows) == {(t, str(p)) for t in (IN, f"{APP}-counts-repartition") for p in range(4)}, offsets
    assert set(rows.values()) == {"0"}, offsets
