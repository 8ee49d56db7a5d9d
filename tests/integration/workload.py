"""A Jepsen-style workload and checker for fault tests of a cluster.

``Workload`` runs, in threads, while a test injures the cluster: an
idempotent acks=all producer writing unique values round-robin over a
topic's partitions (recording every acknowledgement; confluent-kafka by
default, or ``producer="kafka-python"`` or ``"java"``: Apache Kafka's own
client in a JVM, see ``JAVA_PRODUCER``), a consumer reading
every partition from the start (recording every record it sees), and a
sampler of each partition's leader, leader epoch and ISR from Metadata. After
healing, ``final_read`` reads everything again, and ``check`` holds the
history to what Jepsen checks of Kafka-like systems:

- no acknowledged record lost: each acknowledged (partition, offset, value)
  is in the final read;
- no duplicates: each value is stored at most once;
- one value per (partition, offset) across everything acknowledged and read
  (which catches reads of data later truncated);
- a consumer's offsets only increase, per partition;
- leader epochs: one leader per (partition, epoch), and an observer never
  sees an epoch go back;
- the ISR is never empty.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict

from odradek.protocol import errors


class Workload:
    def __init__(self, bootstrap: str, topic: str, partitions: int, *, producer_conf: dict | None = None,
                 rate: float = 200.0, producer: str = "confluent", java_dir=None):
        self.producer = producer
        self.java_dir = java_dir  # a directory to compile the Java producer in
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.producer_conf = producer_conf or {}
        self.rate = rate
        self.acked: dict[tuple[int, int], bytes] = {}  # (partition, offset) -> value
        self.failed: list[tuple[bytes, str]] = []  # values whose delivery failed, and why
        self.ack_times: list[float] = []  # monotonic time of each acknowledgement
        self.reads: list[tuple[int, int, bytes]] = []  # (partition, offset, value), in order seen
        self.leaders: list[tuple[str, int, int, int]] = []  # (observer, partition, epoch, leader) samples
        self.isr_samples: list[tuple[int, list[int]]] = []
        self.sent = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- running ------------------------------------------------------------------
    def start(self) -> "Workload":
        for fn in (self._produce, self._consume, self._sample):
            t = threading.Thread(target=fn, daemon=True, name=f"workload-{fn.__name__}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_acked(self, more: int, timeout: float = 30.0) -> float:
        """Wait until ``more`` further records are acknowledged; return the seconds it took."""
        start = time.monotonic()
        target = self.acked_count() + more
        while self.acked_count() < target:
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{more} more acknowledgements did not come within {timeout}s "
                                     f"(failures: {self.failed[-3:]})")
            time.sleep(0.02)
        return time.monotonic() - start

    def _delivered(self, partition: int, offset: int, value: bytes, error: str | None) -> None:
        with self._lock:
            if error is None:
                key = (partition, offset)
                if key in self.acked and self.acked[key] != value:
                    self.failed.append((value, f"offset {key} acknowledged twice"))
                self.acked[key] = value
                self.ack_times.append(time.monotonic())
            else:
                self.failed.append((value, error))

    def _produce(self) -> None:
        if self.producer == "kafka-python":
            return self._produce_kafka_python()
        if self.producer == "java":
            return self._produce_java()
        from confluent_kafka import Producer

        conf = {"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
                "linger.ms": 2, "message.timeout.ms": 120000, "retry.backoff.ms": 50,
                "topic.metadata.refresh.interval.ms": 1000, **self.producer_conf}
        producer = Producer(conf)

        def delivered(err, msg):
            self._delivered(msg.partition(), msg.offset(), msg.value(), None if err is None else err.name())

        n = 0
        interval = 1.0 / self.rate
        while not self._stop.is_set():
            value = b"w-%d" % n
            try:
                producer.produce(self.topic, value, partition=n % self.partitions, on_delivery=delivered)
                n += 1
            except BufferError:
                pass
            producer.poll(interval)
        self.sent = n
        producer.flush(120)

    def _produce_kafka_python(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap.split(","), acks="all",
                                 enable_idempotence=True, linger_ms=2, retries=2**31 - 1,
                                 delivery_timeout_ms=120000, metadata_max_age_ms=1000)
        n = 0
        interval = 1.0 / self.rate
        while not self._stop.is_set():
            value = b"w-%d" % n
            p = n % self.partitions
            fut = producer.send(self.topic, value, partition=p)
            fut.add_callback(lambda md, v=value: self._delivered(md.partition, md.offset, v, None))
            fut.add_errback(lambda e, v=value: self._delivered(-1, -1, v, type(e).__name__))
            n += 1
            time.sleep(interval)
        self.sent = n
        producer.flush(120)
        producer.close()

    def _produce_java(self) -> None:
        import subprocess

        from tests.integration.java_client import require_java

        cp = require_java()
        src = os.path.join(self.java_dir, "WorkloadProducer.java")
        with open(src, "w") as f:
            f.write(JAVA_PRODUCER)
        subprocess.run(["javac", "-cp", cp, "-d", self.java_dir, src], check=True, capture_output=True,
                       timeout=120)
        stop_file = os.path.join(self.java_dir, "stop")
        proc = subprocess.Popen(["java", "-cp", f"{self.java_dir}{os.pathsep}{cp}", "WorkloadProducer",
                                 self.bootstrap, self.topic, str(self.partitions), str(int(self.rate)),
                                 stop_file], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        stopper = threading.Thread(target=lambda: (self._stop.wait(), open(stop_file, "w").close()),
                                   daemon=True)
        stopper.start()
        for line in proc.stdout:
            parts = line.split()
            if parts[:1] == ["ack"]:
                self._delivered(int(parts[1]), int(parts[2]), parts[3].encode(), None)
            elif parts[:1] == ["fail"]:
                self._delivered(-1, -1, parts[1].encode(), " ".join(parts[2:]))
            elif parts[:1] == ["sent"]:
                self.sent = int(parts[1])
        proc.wait(180)

    def _consume(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"workload-{id(self)}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "topic.metadata.refresh.interval.ms": 1000, "fetch.wait.max.ms": 100})
        consumer.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    with self._lock:
                        self.reads.append((msg.partition(), msg.offset(), msg.value()))
        finally:
            consumer.close()

    def _sample(self) -> None:
        while not self._stop.is_set():
            observer, states = metadata_states(self.bootstrap, self.topic)
            with self._lock:
                for p, epoch, leader, isr in states:
                    self.leaders.append((observer, p, epoch, leader))
                    self.isr_samples.append((p, isr))
            self._stop.wait(0.2)

    # -- after healing ----------------------------------------------------------------
    def final_read(self, timeout: float = 30.0) -> dict[tuple[int, int], bytes]:
        """Everything stored, read from the start until every acknowledged
        record is there (or ``timeout`` passes)."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"final-{id(self)}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        consumer.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
        got: dict[tuple[int, int], bytes] = {}
        wanted = set(self.acked)
        deadline = time.monotonic() + timeout
        idle_since = None
        try:
            while time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    got[(msg.partition(), msg.offset())] = msg.value()
                    idle_since = None
                elif wanted <= set(got):
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 1.0:
                        break
        finally:
            consumer.close()
        self.final = got
        return got

    def check(self) -> list[str]:
        """The violations found (empty: the history is valid)."""
        problems = []
        final = self.final
        lost = [(k, v) for k, v in self.acked.items() if final.get(k) != v]
        if lost:
            problems.append(f"{len(lost)} acknowledged records lost or changed, e.g. {lost[:3]}")
        where = defaultdict(list)
        for k, v in final.items():
            where[v].append(k)
        dupes = {v: ks for v, ks in where.items() if len(ks) > 1}
        if dupes:
            problems.append(f"{len(dupes)} values stored more than once, e.g. {list(dupes.items())[:3]}")
        seen: dict[tuple[int, int], bytes] = dict(final)
        for p, o, v in list(self.reads) + [(k[0], k[1], v) for k, v in self.acked.items()]:
            if seen.setdefault((p, o), v) != v:
                problems.append(f"two values at {p}:{o}: {seen[(p, o)]!r} and {v!r}")
                break
        last: dict[int, int] = {}
        for p, o, _ in self.reads:
            if o <= last.get(p, -1):
                problems.append(f"a consumer's offset went from {last[p]} to {o} on partition {p}")
                break
            last[p] = o
        leader_of: dict[tuple[int, int], int] = {}
        newest: dict[tuple[str, int], int] = {}
        for observer, p, epoch, leader in self.leaders:
            if leader >= 0 and leader_of.setdefault((p, epoch), leader) != leader:
                problems.append(f"two leaders of partition {p} in epoch {epoch}: "
                                f"{leader_of[(p, epoch)]} and {leader}")
            if epoch < newest.get((observer, p), -1):
                problems.append(f"partition {p}'s leader epoch went back from {newest[(observer, p)]} "
                                f"to {epoch} at {observer}")
            newest[(observer, p)] = max(newest.get((observer, p), -1), epoch)
        empty = [p for p, isr in self.isr_samples if not isr]
        if empty:
            problems.append(f"an empty ISR was reported for partitions {sorted(set(empty))}")
        return problems


def metadata_states(bootstrap: str, topic: str) -> tuple[str, list[tuple[int, int, int, list[int]]]]:
    """(the broker that answered, [(partition, leader epoch, leader, ISR)] of
    ``topic``), from Metadata v12 to the first broker of ``bootstrap`` that answers."""
    from tests.integration.rawclient import RawClient

    for address in bootstrap.split(","):
        try:
            client = RawClient(address)
        except OSError:
            continue
        try:
            client.sock.settimeout(2)
            r = client.request("Metadata", 12, {"topics": [{"name": topic, "topic_id": bytes(16)}],
                                                "allow_auto_topic_creation": False})
        except (OSError, ConnectionError, ValueError):
            continue
        finally:
            client.close()
        out = []
        for t in r["topics"]:
            if t["error_code"] == errors.NONE:
                for p in t["partitions"]:
                    out.append((p["partition_index"], p["leader_epoch"], p["leader_id"], list(p["isr_nodes"])))
        return address, out
    return "", []


JAVA_PRODUCER = """
import java.nio.file.*;
import java.util.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.StringSerializer;

// Writes w-0, w-1, ... round-robin over the partitions, idempotent with
// acks=all, printing each acknowledgement ("ack P O VALUE") or failure
// ("fail VALUE ERROR"), until the stop file exists; then "sent N".
public class WorkloadProducer {
    public static void main(String[] a) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", a[0]);
        props.put("acks", "all");
        props.put("enable.idempotence", "true");
        props.put("linger.ms", "2");
        props.put("delivery.timeout.ms", "120000");
        props.put("metadata.max.age.ms", "1000");
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        String topic = a[1];
        int partitions = Integer.parseInt(a[2]);
        long pause = 1000L / Math.max(1, Integer.parseInt(a[3]));
        Path stop = Paths.get(a[4]);
        int n = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            while (!Files.exists(stop)) {
                String value = "w-" + n;
                producer.send(new ProducerRecord<>(topic, n % partitions, null, value), (md, e) -> {
                    synchronized (System.out) {
                        if (e == null) System.out.println("ack " + md.partition() + " " + md.offset() + " " + value);
                        else System.out.println("fail " + value + " " + e.getClass().getSimpleName());
                        System.out.flush();
                    }
                });
                n++;
                Thread.sleep(pause);
            }
            producer.flush();
        }
        synchronized (System.out) {
            System.out.println("sent " + n);
            System.out.flush();
        }
    }
}
"""
