"""Apache Kafka's own TransactionalMessageCopier (kafka-tools 4.x, the tool of
Kafka's exactly-once system tests) copies a partition in transactions with
random aborts, while the broker and the copier are killed (-9) and restarted;
a read_committed consumer then reads every input record exactly once."""

from __future__ import annotations

import os
import random
import subprocess
import time

import pytest

from tests.integration.java_client import require_java

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

pytestmark = pytest.mark.timeout(300)

N = 2000
PROPS = {"transaction.state.log.num.partitions": "3", "offsets.topic.num.partitions": "3",
         "group.initial.rebalance.delay.ms": "0"}
COPIER = "org.apache.kafka.tools.TransactionalMessageCopier"


class Copier:
    def __init__(self, classpath: str, bootstrap: str, log_dir):
        self.cmd = ["java", "-cp", classpath, COPIER, "--broker-list", bootstrap, "--input-topic", "kin",
                    "--input-partition", "0", "--output-topic", "kout", "--transactional-id", "kafka-copier",
                    "--consumer-group", "kafka-copier-group", "--transaction-size", "50",
                    "--enable-random-aborts", "--use-group-metadata", "--max-messages", "-1"]
        self.log_dir = log_dir
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        out = open(os.path.join(self.log_dir, f"copier-{self.starts}.log"), "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.running():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()


def committed(bootstrap) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "kafka-copier-group"})
    try:
        return c.committed([TopicPartition("kin", 0)], timeout=10)[0].offset
    except Exception:
        return -2
    finally:
        c.close()


def test_kafka_transactional_message_copier_under_kills(broker_process, tmp_path):
    cp = require_java()
    b = broker_process(tmp_path / "d", props=PROPS)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic("kin", 1), NewTopic("kout", 1)]).values():
        f.result(30)
    sent = 0

    def feed(n):  # input in waves, so that every kill lands while the copier works
        nonlocal sent
        plain = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(sent, sent + n):
            plain.produce("kin", b"v-%d" % i)
        assert plain.flush(30) == 0
        sent += n

    copier = Copier(cp, b.bootstrap, str(tmp_path))
    rng = random.Random(5)
    kills = ["broker", "copier", "broker", "copier"]
    done = -1
    try:
        for what in kills:
            feed(N // len(kills))
            if not copier.running():  # it exits at the end offset it saw at start
                copier.start()
            start = time.monotonic()
            while committed(b.bootstrap) <= sent - N // len(kills) and time.monotonic() - start < 30:
                time.sleep(0.1)  # until it copies some of this wave
            time.sleep(rng.uniform(0.0, 0.3))
            if what == "broker":
                b.kill()
                b.start()
            else:
                copier.kill()
                copier.start()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            time.sleep(0.5)
            done = committed(b.bootstrap)
            if done >= N:
                break
            if not copier.running():  # done with what it saw, or an error it cannot recover from
                copier.start()
    finally:
        copier.kill()
    assert done == N, (done, copier.starts)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "verify", "isolation.level": "read_committed",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition("kout", 0, 0)])
    got = []
    end = time.monotonic() + 60
    while len(got) < N and time.monotonic() < end:
        got.extend(m.value() for m in c.consume(num_messages=1000, timeout=0.5) if not m.error())
    got.extend(m.value() for m in c.consume(num_messages=1000, timeout=1.5) if not m.error())
    c.close()
    assert len(got) == N and sorted(got) == sorted(b"v-%d" % i for i in range(N)), \
        (len(got), len(set(got)), copier.starts)
    assert got == [b"v-%d" % i for i in range(N)]  # one input partition: in order
