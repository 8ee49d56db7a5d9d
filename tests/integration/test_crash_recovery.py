"""Acceptance 2 and 7 of the broker core: kill -9 under an acks=all stream loses
nothing acknowledged; segments roll and retention deletes old ones."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from odradek.producers import SNAPSHOT_NAME, decode_snapshot


def read_all(bootstrap, topic, partitions, expected_min, timeout=30):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "crash-check",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                if len(got) >= expected_min:
                    break
                continue
            if m.error() is None:
                got[(m.partition(), m.offset())] = m.value()
    finally:
        c.close()
    return got


def test_kill_minus_nine_keeps_every_acknowledged_message(broker_process, tmp_path):
    broker = broker_process(data_dir=tmp_path / "data", props={"num.partitions": 2})
    topic = "crash"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(10)

    acked = {}
    stop = threading.Event()

    def stream():
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 1,
                      "message.timeout.ms": 3000, "retries": 0})

        def cb(err, msg):
            if err is None:
                acked[(msg.partition(), msg.offset())] = msg.value()

        i = 0
        while not stop.is_set():
            try:
                p.produce(topic, f"m{i:07d}".encode() * 4, key=str(i % 10).encode(), on_delivery=cb)
                i += 1
            except BufferError:
                pass
            p.poll(0.0005 if i % 50 == 0 else 0)
        p.flush(5)

    t = threading.Thread(target=stream)
    t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 3000 and time.monotonic() < deadline:
        time.sleep(0.05)
    broker.kill()  # SIGKILL mid-stream
    time.sleep(0.3)
    stop.set()
    t.join(20)
    assert len(acked) >= 3000
    snapshot = dict(acked)

    broker.start()  # same data dir, same port
    got = read_all(broker.bootstrap, topic, 2, len(snapshot))
    missing = [k for k in snapshot if k not in got]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"
    for k, v in snapshot.items():
        assert got[k] == v
    # Offsets are dense per partition, and producing continues after the last one.
    ends = {}
    for (p, o) in got:
        ends[p] = max(ends.get(p, -1), o)
    for p in range(2):
        offsets = sorted(o for (pp, o) in got if pp == p)
        assert offsets == list(range(len(offsets)))
    prod = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    result = {}
    prod.produce(topic, b"after restart", partition=0,
                 on_delivery=lambda err, msg: result.update(err=err, offset=msg.offset()))
    prod.flush(10)
    assert result["err"] is None and result["offset"] == ends[0] + 1


def test_clean_restart_keeps_topics_ids_and_data(odradek_broker_factory, tmp_path):
    b = odradek_broker_factory(data_dir=str(tmp_path / "d"))
    b.create_topic("keep", partitions=3, config={"retention.ms": 123456})
    for i in range(3):
        b.produce("keep", [f"v{i}-{j}" for j in range(5)], partition=i)
    topic_id = b.broker.core.replicas.topics["keep"].topic_id
    b.broker.stop()
    b2 = odradek_broker_factory(data_dir=str(tmp_path / "d"))
    t = b2.broker.core.replicas.topics["keep"]
    assert t.topic_id == topic_id and len(t.partitions) == 3
    assert t.config.get("retention.ms") == "123456"
    assert [r.value for r in b2.records("keep", 1)] == [f"v1-{j}".encode() for j in range(5)]


def test_segments_roll_and_retention_deletes_them(odradek_broker_factory, tmp_path):
    data = tmp_path / "ret"
    b = odradek_broker_factory(data_dir=str(data), config={"log.retention.check.interval.ms": "200"})
    b.create_topic("ret", partitions=1, config={"internal.segment.bytes": 2000, "retention.ms": 600000})
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
    for i in range(40):
        p.produce("ret", b"x" * 200, partition=0)
        p.flush(10)
    segments = sorted(f.name for f in (data / "ret-0").iterdir() if f.suffix == ".log")
    assert len(segments) >= 4, segments
    assert all(len(s) == len("00000000000000000000.log") for s in segments)
    # Shorten retention: everything but the active segment goes, log start moves.
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    res = ConfigResource("topic", "ret", incremental_configs=[
        ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    [f] = admin.incremental_alter_configs([res]).values()
    f.result(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = sorted(f.name for f in (data / "ret-0").iterdir() if f.suffix == ".log")
        if len(left) == 1:
            break
        time.sleep(0.1)
    assert len(left) == 1, left
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "ret"})
    low, high = c.get_watermark_offsets(TopicPartition("ret", 0), timeout=10)
    c.close()
    assert high == 40 and low == int(left[0].split(".")[0]) and low > 0


def test_idempotent_producer_survives_kill_without_duplicates(broker_process, tmp_path):
    """One idempotent librdkafka producer keeps sending while the broker is
    killed and restarted: every message ends up in the log exactly once, in order.
    Segments of 8 KiB (batches of 50) roll many times before the kill: the
    producer state is rebuilt from the snapshot the last roll wrote (as of
    the active segment's base offset) plus the active segment."""
    broker = broker_process(data_dir=tmp_path / "data")
    topic = "idem-crash"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                  config={"internal.segment.bytes": "8192"})])[topic].result(10)
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                  "linger.ms": 2, "message.timeout.ms": 60000, "reconnect.backoff.max.ms": 200,
                  "batch.num.messages": 50})
    errors = []
    acked = []

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked.append(msg.value())

    total = 6000
    for i in range(total):
        p.produce(topic, b"%06d" % i, partition=0, on_delivery=cb)
        p.poll(0)
        if i == 2000:
            p.flush(10)
            part = tmp_path / "data" / f"{topic}-0"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the last roll's flush wrote its snapshot
                bases = sorted(int(f.stem) for f in part.glob("*.log"))
                snap = part / SNAPSHOT_NAME
                if len(bases) >= 3 and snap.exists() and decode_snapshot(snap.read_bytes())[0] == bases[-1]:
                    break
                time.sleep(0.05)
            assert decode_snapshot(snap.read_bytes())[0] == bases[-1] > 0 and len(bases) >= 3, bases
            broker.kill()
        if i == 2400:
            broker.start()
    assert p.flush(60) == 0
    assert not errors, errors[:3]
    got = read_all(broker.bootstrap, topic, 1, total)
    values = [got[(0, o)] for o in sorted(o for (_, o) in got)]
    assert values == [b"%06d" % i for i in range(total)]
    assert len(list((tmp_path / "data" / f"{topic}-0").glob("*.log"))) > 10  # it rolled


def test_more_partitions_than_open_files_stay_writable_readable_and_durable(broker_process, tmp_path):
    """1,200 one-segment partitions under a 512 open-file limit (the broker
    keeps about 256 segment files open): every partition takes a write and
    serves it back, across a clean restart and a kill -9."""
    from confluent_kafka import TopicPartition as TP
    from confluent_kafka.admin import OffsetSpec

    n = 1200
    broker = broker_process(data_dir=tmp_path / "data", open_files=512)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("many", num_partitions=n, replication_factor=1)],
                        operation_timeout=60)["many"].result(90)

    def produce_one_each(tag):
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 20})
        failed = []
        for i in range(n):
            p.produce("many", f"{tag}{i}".encode(), partition=i,
                      on_delivery=lambda err, msg: err is not None and failed.append(err))
        assert p.flush(60) == 0 and not failed

    def ends():
        a = AdminClient({"bootstrap.servers": broker.bootstrap})
        fs = a.list_offsets({TP("many", i): OffsetSpec.latest() for i in range(n)}, request_timeout=30)
        return {tp.partition: f.result(30).offset for tp, f in fs.items()}

    produce_one_each("a")
    broker.stop()
    broker.start()
    assert set(ends().values()) == {1}
    produce_one_each("b")
    broker.kill()
    broker.start()
    assert set(ends().values()) == {2}
    got = read_all(broker.bootstrap, "many", n, expected_min=2 * n, timeout=60)
    assert len(got) == 2 * n
    assert all(got[(i, 0)] == f"a{i}".encode() and got[(i, 1)] == f"b{i}".encode() for i in range(n))
