"""Metrics over HTTP (``http.listener``): a real broker, confluent-kafka
producing and a group consuming, then ``/metrics`` fetched over HTTP and parsed
with prometheus-client's text parser; and HTTP input that is not a good
request, which must never harm the Kafka listener."""

from __future__ import annotations

import http.client
import socket
import time

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

import odradek

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def broker():
    with odradek.Broker(config={"http.listener": "127.0.0.1:0", "http.metrics.compat": "kafka-exporter",
                                "group.initial.rebalance.delay.ms": "0"}) as b:
        yield b


def get(broker, path: str, method: str = "GET") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(*broker.http_address, timeout=10)
    conn.request(method, path)
    resp = conn.getresponse()
    resp.body = resp.read()
    conn.close()
    return resp


def scrape(broker) -> dict:
    """{(sample name, frozenset of labels): value}, parsed by prometheus-client;
    every series is odradek's own or kafka-exporter's (the compatibility mode)."""
    resp = get(broker, "/metrics")
    assert resp.status == 200
    assert resp.getheader("content-type").startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(resp.body.decode()):
        assert family.name.startswith(("odradek_", "kafka_", "process_"))
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, frozenset((k, str(v)) for k, v in labels.items()))]


def test_metrics_count_produce_fetch_and_group_lag(broker):
    n, committed = 100, 60
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(n):
        producer.produce("metered", f"message {i:03d}".encode())
    assert producer.flush(15) == 0

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "meter-readers",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["metered"])
    got = 0
    deadline = time.monotonic() + 30
    while got < n and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            got += 1
    assert got == n
    assert consumer.poll(1.5) is None  # caught up: its fetches now long-poll (fetch.wait.max.ms 500)
    consumer.commit(offsets=[TopicPartition("metered", 0, committed)], asynchronous=False)
    try:
        s = scrape(broker)
        assert value(s, "odradek_topic_messages_in_total", topic="metered") == n
        assert value(s, "odradek_topic_bytes_in_total", topic="metered") > n * len("message 000")
        assert value(s, "odradek_topic_bytes_out_total", topic="metered") >= \
            value(s, "odradek_topic_bytes_in_total", topic="metered")
        assert value(s, "odradek_log_end_offset", topic="metered", partition=0) == n
        assert value(s, "odradek_log_size_bytes", topic="metered", partition=0) > 0
        lag = {"group": "meter-readers", "topic": "metered", "partition": 0}
        assert value(s, "odradek_consumer_group_lag", **lag) == n - committed
        assert value(s, "odradek_consumer_group_members", group="meter-readers") == 1
        assert value(s, "odradek_consumer_group_state", group="meter-readers", state="Stable") == 1
        for api in ("Produce", "Fetch", "JoinGroup", "SyncGroup", "OffsetCommit", "Metadata"):
            assert value(s, "odradek_requests_total", api=api) >= 1, api
            assert value(s, "odradek_request_duration_seconds_count", api=api) == \
                value(s, "odradek_requests_total", api=api)
            assert value(s, "odradek_request_duration_seconds_bucket", api=api, le="+Inf") == \
                value(s, "odradek_requests_total", api=api)
        assert value(s, "odradek_request_errors_total", api="Produce") == 0
        # A consumer's long polls and its join waited: counted apart, within the durations.
        for api in ("Fetch", "JoinGroup"):
            assert value(s, "odradek_request_wait_seconds_count", api=api) >= 1, api
            assert 0 < value(s, "odradek_request_wait_seconds_sum", api=api) <= \
                value(s, "odradek_request_duration_seconds_sum", api=api), api
        assert value(s, "odradek_request_wait_seconds_count", api="Produce") == 0  # one replica: no wait
        assert not any(name == "odradek_request_wait_seconds_count" and ("api", "Metadata") in labels
                       for name, labels in s)
        assert value(s, "odradek_connections", listener="PLAINTEXT") >= 2
        assert value(s, "odradek_partitions", state="online") >= 1
        assert value(s, "odradek_partitions", state="offline") == 0
        assert value(s, "odradek_partitions_under_replicated") == 0
        assert sum(value(s, "odradek_fetch_session_events_total", event=k)
                   for k in ("full", "incremental", "sessionless")) >= 1  # librdkafka: sessionless
        assert ("odradek_event_loop_lag_seconds_count", frozenset()) in s

        # kafka-exporter's names and labels, as its dashboards query them.
        where = {"topic": "metered", "partition": 0}
        assert value(s, "kafka_brokers") == 1
        assert value(s, "kafka_topic_partitions", topic="metered") == 1
        assert value(s, "kafka_topic_partition_current_offset", **where) == n
        assert value(s, "kafka_topic_partition_oldest_offset", **where) == 0
        assert value(s, "kafka_topic_partition_in_sync_replica", **where) == 1
        assert value(s, "kafka_topic_partition_leader", **where) == 1
        assert value(s, "kafka_topic_partition_leader_is_preferred", **where) == 1
        assert value(s, "kafka_topic_partition_replicas", **where) == 1
        assert value(s, "kafka_topic_partition_under_replicated_partition", **where) == 0
        group = {"consumergroup": "meter-readers", "topic": "metered"}
        assert value(s, "kafka_consumergroup_current_offset", partition=0, **group) == committed
        assert value(s, "kafka_consumergroup_current_offset_sum", **group) == committed
        assert value(s, "kafka_consumergroup_lag", partition=0, **group) == n - committed
        assert value(s, "kafka_consumergroup_lag_sum", **group) == n - committed
        assert value(s, "kafka_consumergroup_members", consumergroup="meter-readers") == 1
    finally:
        consumer.close()
        producer.flush(1)


def test_group_lag_in_seconds_connections_controller_and_process(broker):
    """The lag in time is the age of the group's next record; caught up, 0."""
    now_ms = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i, age_s in enumerate((600, 120, 30)):
        producer.produce("aged", f"r{i}".encode(), timestamp=now_ms - age_s * 1000)
        producer.flush(10)  # one batch per record, each with its own timestamp
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "aged-readers"})
    try:
        lag = {"group": "aged-readers", "topic": "aged", "partition": 0}
        for committed, age_s in ((1, 120), (2, 30), (3, 0)):
            consumer.commit(offsets=[TopicPartition("aged", 0, committed)], asynchronous=False)
            s = scrape(broker)
            assert value(s, "odradek_consumer_group_lag", **lag) == 3 - committed
            assert age_s <= value(s, "odradek_consumer_group_lag_seconds", **lag) < age_s + 15
    finally:
        consumer.close()

    before = scrape(broker)
    with socket.create_connection(broker.bootstrap.split(":")) as c:
        c.sendall(b"")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = scrape(broker)
        if value(after, "odradek_connections_closed_total", listener="PLAINTEXT") > \
                value(before, "odradek_connections_closed_total", listener="PLAINTEXT"):
            break
        time.sleep(0.05)
    assert value(after, "odradek_connections_accepted_total", listener="PLAINTEXT") >= \
        value(before, "odradek_connections_accepted_total", listener="PLAINTEXT") + 1
    assert value(after, "odradek_connections_closed_total", listener="PLAINTEXT") >= \
        value(before, "odradek_connections_closed_total", listener="PLAINTEXT") + 1
    assert value(after, "odradek_controller_active") == 1  # one broker: it is the controller
    assert value(after, "odradek_isr_shrinks_total") == value(after, "odradek_isr_expands_total") == 0
    assert 0 < value(after, "odradek_event_loop_cpu_seconds_total") <= value(after, "process_cpu_seconds_total")
    assert value(after, "process_resident_memory_bytes") > 10 * 2**20
    assert 0 < value(after, "process_open_fds") < value(after, "process_max_fds")
    assert abs(value(after, "process_start_time_seconds") - time.time()) < 3600


def test_a_second_scrape_sees_more_requests(broker):
    before = scrape(broker)
    Producer({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    after = scrape(broker)
    assert value(after, "odradek_requests_total", api="Metadata") > \
        value(before, "odradek_requests_total", api="Metadata")


def test_other_paths_and_methods(broker):
    assert get(broker, "/").status == 200  # the console (tests/integration/test_console.py)
    assert get(broker, "/metricsx").status == 404
    resp = get(broker, "/metrics", "POST")
    assert resp.status == 405 and resp.getheader("allow") == "GET, HEAD"
    resp = get(broker, "/metrics", "HEAD")
    assert resp.status == 200 and resp.body == b"" and int(resp.getheader("content-length")) > 0
    assert get(broker, "/metrics?name=x").status == 200


def raw(broker, data: bytes, shutdown: bool = False) -> bytes:
    """Send ``data`` and read until the broker closes (or 5 s pass)."""
    with socket.create_connection(broker.http_address, timeout=5) as s:
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


@pytest.mark.parametrize("data, status", [
    (b"\x00\x00\x00\x14\x00\x12\x00\x03garbage that is Kafka, not HTTP\r\n\r\n", b"400"),
    (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
    (b"GET /metrics HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without a Host
    # a request head that does not end within 16 KiB
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000, b"431"),
    # a body over 64 KiB (sent only in part: the broker answers before the rest)
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" + b"a" * 70000, b"413"),
])
def test_bad_requests_are_refused_and_closed(broker, data, status):
    out = raw(broker, data)
    assert out.startswith(b"HTTP/1.1 " + status), out[:100]
    # The Kafka listener and the HTTP listener still serve.
    assert Producer({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).brokers
    assert get(broker, "/metrics").status == 200


def test_pipelined_requests_and_a_half_request(broker):
    # The first answered by the console (awaited), the second by /metrics: in order.
    out = raw(broker, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 404") and out.count(b"HTTP/1.1 200") == 1
    assert out.index(b"HTTP/1.1 200") > out.index(b"</html>")
    assert raw(broker, b"GET /metr", shutdown=True) == b""  # closed with nothing to answer
    assert get(broker, "/metrics").status == 200


def test_a_slow_or_idle_connection_is_closed(broker, monkeypatch):
    import odradek.server.http as http_server

    monkeypatch.setattr(http_server, "IDLE_TIMEOUT", 0.3)
    with socket.create_connection(broker.http_address, timeout=5) as s:
        t0 = time.monotonic()
        for piece in (b"GET /metrics HTTP/1.1\r\n", b"Host: x\r\n"):  # never ends its head
            s.sendall(piece)
            time.sleep(0.1)
        assert s.recv(100) == b""  # closed, without an answer
        assert time.monotonic() - t0 < 3
    assert get(broker, "/metrics").status == 200


def test_serve_with_http(tmp_path):
    """``odradek serve --http HOST:PORT``, as a user runs it."""
    import subprocess
    import sys

    from tests.conftest import ROOT, free_port, wait_port

    port, http_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "odradek", "serve", "--memory", "--port", str(port),
                             "--http", f"127.0.0.1:{http_port}", "--log-level", "WARNING"], cwd=ROOT)
    try:
        wait_port(port, proc=proc)
        wait_port(http_port, proc=proc)
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        assert resp.status == 200
        names = {f.name for f in text_string_to_metric_families(resp.read().decode())}
        assert {"odradek_requests", "odradek_connections", "odradek_topic_bytes_in"} <= names
        conn.request("GET", "/")  # the console, on the same connection
        resp = conn.getresponse()
        assert resp.status == 200 and b"<span class=\"n\">1</span> brokers" in resp.read()
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_serve_refuses_a_bad_http_address():
    from odradek.cli.main import main

    result = CliRunner().invoke(main, ["serve", "--memory", "--http", "nonsense"])
    assert result.exit_code == 2 and "HOST:PORT" in result.output


def test_without_the_compatibility_mode_only_odradek_series():
    """odradek's own series and the process ones every Prometheus client serves."""
    with odradek.Broker(config={"http.listener": "127.0.0.1:0"}) as b:
        names = {name for name, _ in scrape(b)}
    assert names and all(n.startswith(("odradek_", "process_")) for n in names)
    assert "process_cpu_seconds_total" in names


def test_flush_time_is_counted(tmp_path):
    with odradek.Broker(data_dir=str(tmp_path), config={"http.listener": "127.0.0.1:0",
                                                        "log.flush.interval.messages": "1"}) as b:
        producer = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
        for i in range(5):
            producer.produce("flushed", b"x")
            producer.flush(10)
        deadline = time.monotonic() + 10
        while True:
            s = scrape(b)
            flushes = value(s, "odradek_log_flush_seconds_count")
            if flushes >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert flushes >= 5
        assert value(s, "odradek_log_flush_seconds_sum") > 0


def test_errors_are_counted_per_error_code(broker):
    import asyncio

    from odradek.console.client import ClusterClient, KafkaError

    async def ask_acls(n):
        host, port = broker.bootstrap.rsplit(":", 1)
        client = ClusterClient([(host, int(port))])
        try:
            for _ in range(n):
                with pytest.raises(KafkaError, match="SECURITY_DISABLED"):  # no authoriser here
                    await client.acls()
        finally:
            client.close()

    before = scrape(broker)
    label = {"api": "DescribeAcls", "error": "SECURITY_DISABLED"}
    was = before.get(("odradek_request_errors_by_code_total", frozenset(label.items())), 0)
    asyncio.run(ask_acls(3))
    s = scrape(broker)
    assert value(s, "odradek_request_errors_by_code_total", **label) == was + 3
    assert value(s, "odradek_request_errors_total", api="DescribeAcls") == \
        sum(v for (name, labels), v in s.items()
            if name == "odradek_request_errors_by_code_total" and ("api", "DescribeAcls") in labels)
