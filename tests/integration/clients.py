"""Produce and consume with each real client, in one shape, for the client matrix.

A message is a dict: key (bytes), value (bytes), headers (list of (str, bytes)),
timestamp (ms). What comes back adds partition and offset.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def _hdrs(headers):
    return [(k, bytes(v) if v is not None else None) for k, v in (headers or [])]


# -- confluent-kafka (librdkafka 2.16) ------------------------------------------

def produce_confluent(bootstrap, topic, messages, codec="none", acks="all", extra=None):
    from confluent_kafka import Producer

    conf = {"bootstrap.servers": bootstrap, "compression.type": codec, "acks": acks,
            "linger.ms": 5}
    conf.update(extra or {})
    p = Producer(conf)
    results = [None] * len(messages)
    errors = []

    def cb(i):
        def done(err, msg):
            if err is not None:
                errors.append(err)
            else:
                results[i] = (msg.partition(), msg.offset())
        return done

    for i, m in enumerate(messages):
        p.produce(topic, value=m["value"], key=m["key"], headers=m.get("headers") or None,
                  timestamp=m.get("timestamp", 0), on_delivery=cb(i))
        p.poll(0)
    assert p.flush(30) == 0, "messages left unflushed"
    assert not errors, errors
    return results


def consume_confluent(bootstrap, topic, partitions, count, timeout=30):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "matrix-confluent",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append({"partition": msg.partition(), "offset": msg.offset(), "key": msg.key(),
                        "value": msg.value(), "headers": _hdrs(msg.headers()),
                        "timestamp": msg.timestamp()[1]})
    finally:
        c.close()
    return out


# -- kafka-python 3 ---------------------------------------------------------------

def produce_kafka_python(bootstrap, topic, messages, codec="none", acks="all", extra=None):
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks=-1 if acks == "all" else int(acks),
                      compression_type=None if codec == "none" else codec, linger_ms=5,
                      **(extra or {}))
    futures = [p.send(topic, value=m["value"], key=m["key"], headers=_hdrs(m.get("headers")),
                      timestamp_ms=m.get("timestamp")) for m in messages]
    p.flush(30)
    results = []
    for f in futures:
        md = f.get(timeout=30)
        results.append((md.partition, md.offset))
    p.close(5)
    return results


def consume_kafka_python(bootstrap, topic, partitions, count, timeout=30):
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                      auto_offset_reset="earliest")
    c.assign([TopicPartition(topic, p) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for tp, msgs in c.poll(500).items():
                for msg in msgs:
                    out.append({"partition": msg.partition, "offset": msg.offset, "key": msg.key,
                                "value": msg.value, "headers": _hdrs(msg.headers),
                                "timestamp": msg.timestamp})
    finally:
        c.close()
    return out


# -- aiokafka ---------------------------------------------------------------------

def produce_aiokafka(bootstrap, topic, messages, codec="none", acks="all", extra=None):
    from aiokafka import AIOKafkaProducer

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1 if acks == "all" else int(acks),
                             compression_type=None if codec == "none" else codec, linger_ms=5,
                             **(extra or {}))
        await p.start()
        try:
            futs = [await p.send(topic, value=m["value"], key=m["key"],
                                 headers=_hdrs(m.get("headers")), timestamp_ms=m.get("timestamp"))
                    for m in messages]
            mds = [await f for f in futs]
        finally:
            await p.stop()
        return [(md.partition, md.offset) for md in mds]

    return asyncio.run(run())


def consume_aiokafka(bootstrap, topic, partitions, count, timeout=30):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        out = []
        try:
            c.assign([TopicPartition(topic, p) for p in range(partitions)])
            await c.seek_to_beginning()
            deadline = time.monotonic() + timeout
            while len(out) < count and time.monotonic() < deadline:
                batches = await c.getmany(timeout_ms=500)
                for tp, msgs in batches.items():
                    for msg in msgs:
                        out.append({"partition": msg.partition, "offset": msg.offset, "key": msg.key,
                                    "value": msg.value, "headers": _hdrs(msg.headers),
                                    "timestamp": msg.timestamp})
        finally:
            await c.stop()
        return out

    return asyncio.run(run())


# -- kcat (Debian, librdkafka 2.0.2) ---------------------------------------------

def kcat_path():
    return shutil.which("kcat") or shutil.which("kafkacat")


def produce_kcat(bootstrap, topic, messages, codec="none", acks="all", extra=None):
    """kcat cannot set timestamps or report offsets per message; it reads key\\tvalue lines."""
    lines = b"".join(m["key"] + b"\t" + m["value"] + b"\n" for m in messages)
    args = [kcat_path(), "-b", bootstrap, "-P", "-t", topic, "-K", "\t", "-z", codec,
            "-X", f"acks={acks}"]
    for m in messages[:1]:  # kcat sets the same headers on every message
        for k, v in m.get("headers") or []:
            if v.isascii() and v.decode().isprintable():
                args += ["-H", f"{k}={v.decode()}"]
    subprocess.run(args, input=lines, check=True, timeout=60)
    return None


def consume_kcat(bootstrap, topic, partitions, count, timeout=30):
    fmt = "%p\\t%o\\t%T\\t%k\\t%s\\n"
    proc = subprocess.run([kcat_path(), "-b", bootstrap, "-C", "-t", topic, "-o", "beginning",
                           "-c", str(count), "-e", "-q", "-f", fmt],
                          capture_output=True, check=True, timeout=timeout)
    out = []
    for line in proc.stdout.decode().splitlines():
        p, o, ts, k, v = line.split("\t", 4)
        out.append({"partition": int(p), "offset": int(o), "key": k.encode(), "value": v.encode(),
                    "headers": None, "timestamp": int(ts)})
    return out


PRODUCERS = {"confluent": produce_confluent, "kafka-python": produce_kafka_python,
             "aiokafka": produce_aiokafka, "kcat": produce_kcat}
CONSUMERS = {"confluent": consume_confluent, "kafka-python": consume_kafka_python,
             "aiokafka": consume_aiokafka, "kcat": consume_kcat}
