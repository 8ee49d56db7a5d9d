"""The web console over plain HTTP (no browser): its pages against a real
broker, written to by confluent-kafka; escaping of untrusted payloads, error
pages, the CSRF check, the actions, the JSON-lines download, the live tail
(server-sent events, resumed by Last-Event-ID), and ``odradek console``
serving the same pages alone from another process."""

from __future__ import annotations

import ast
import html
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import odradek
from tests.conftest import free_port, wait_port

pytestmark = pytest.mark.timeout(60)
SCRIPT = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def broker():
    with odradek.Broker(config={"http.listener": "127.0.0.1:0", "group.initial.rebalance.delay.ms": "0",
                                "http.lag.history.interval.ms": "200"}) as b:
        yield b


class Web:
    """A tiny HTTP client of one console: GET and form POSTs with its token."""

    def __init__(self, address):
        self.address = address
        self._token = None

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(*self.address, timeout=15)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        resp.body = resp.read()
        resp.text = resp.body.decode("utf-8", "replace")
        conn.close()
        return resp

    def get(self, path):
        return self.request("GET", path)

    @property
    def token(self):
        if self._token is None:
            self._token = re.search(r'name="csrf" value="([^"]+)"', self.get("/topics").text).group(1)
        return self._token

    def post(self, path, form, token=True, headers=None):
        if token:
            form = {"csrf": self.token, **form}
        return self.request("POST", path, urlencode(form),
                            {"content-type": "application/x-www-form-urlencoded", **(headers or {})})


@pytest.fixture(scope="module")
def web(broker):
    return Web(broker.http_address)


def produce(broker, topic, records, partition=0):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for key, value, headers in records:
        p.produce(topic, key=key, value=value, headers=headers, partition=partition)
    assert p.flush(10) == 0


def assert_readable_error(resp, status, *phrases):
    assert resp.status == status, resp.text
    assert resp.getheader("content-type").startswith("text/html")
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    message = html.unescape(re.search(r'id="error-message">(.*?)</p>', resp.text, re.S).group(1))
    for phrase in phrases:
        assert phrase in message, message


def test_pages_show_the_cluster(broker, web):
    assert web.post("/topics", {"name": "shown", "partitions": "3", "configs": "retention.ms=3600000"}).status == 303
    produce(broker, "shown", [(b"k%d" % i, b"v%d" % i, None) for i in range(7)], partition=1)
    home = web.get("/")
    assert home.status == 200
    assert "<script src=\"/static/htmx.min.js\"" in home.text and "://" not in home.text.split("<main>")[0]
    assert re.search(r'<span class="n">1</span> brokers', home.text)
    assert f"odradek {odradek.__version__}" in home.text
    topics = web.get("/topics").text
    row = re.search(r'<a href="/topics/shown">shown</a>.*?</tr>', topics, re.S).group(0)
    assert re.findall(r'<td class="num">([\d,]+)</td>', row)[:3] == ["3", "1", "7"]  # partitions, replicas, records
    page = web.get("/topics/shown").text
    rows = re.findall(r"<tr class=\"\">(.*?)</tr>", page, re.S)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[1], re.S)]
    assert cells == ["1", "1", "1", "1", "0", "7", "7"]  # partition, leader, replicas, ISR, start, HW, records
    assert re.search(r"<td>retention.ms</td><td><code>3600000</code></td><td>topic</td>", page)
    assert web.get("/static/htmx.min.js").body.startswith(b"var htmx=")
    assert web.get("/metrics").status == 200  # beside the console, on the same listener


def test_untrusted_payloads_are_escaped(broker, web):
    web.post("/topics", {"name": "hostile"})
    produce(broker, "hostile", [(SCRIPT.encode(), SCRIPT.encode(), [(SCRIPT, SCRIPT.encode())]),
                                (b"j", json.dumps({"html": SCRIPT}).encode(), None),
                                (b"b", b"\x00\xff<script>", None)])
    group = "<img src=x onerror=alert(1)>"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    c.commit(offsets=[TopicPartition("hostile", 0, 1)], asynchronous=False)
    c.close()
    pages = [web.get(p) for p in ("/topics/hostile/messages", "/topics/hostile/messages?format=hex",
                                  "/topics/hostile/messages?format=text", "/groups",
                                  "/groups/" + group.replace(" ", "%20"))]
    for resp in pages:
        assert resp.status == 200, resp.text
        assert "<script>alert" not in resp.text and "<img src=x" not in resp.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in pages[0].text
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[3].text
    assert "00 ff 3c 73 63 72" in pages[1].text  # the binary value as hex
    assert web.get("/topics/hostile/messages?key=%3Cscript").text.count('data-offset=') == 1


@pytest.mark.parametrize("path,status,phrase", [
    ("/topics/absent", 404, "Unknown topic 'absent'"),
    ("/topics/absent/messages", 404, "Unknown topic 'absent'"),
    ("/topics/shown/messages?offset=twelve", 400, "'twelve' is not a whole number"),
    ("/topics/shown/messages?partition=9", 404, "partitions 0 to 2"),
    ("/topics/shown/messages?timestamp=yesterday", 400, "neither ms since the epoch nor an ISO date-time"),
    ("/topics/shown/messages?format=xml", 400, "is not one of auto"),
    ("/topics/shown/messages?offset=99999999999999999999", 400, "out of range"),
    ("/topics/shown/messages?timestamp=2026-13-45", 400, "neither ms"),
    ("/groups/nobody-home", 404, "Unknown group 'nobody-home'"),
    ("/no/such/page", 404, "No page at /no/such/page"),
    ("/static/../../etc/passwd", 404, "No such file"),
])
def test_bad_input_gets_a_readable_error_page(web, path, status, phrase):
    web.post("/topics", {"name": "shown", "partitions": "3"})
    assert_readable_error(web.get(path), status, phrase)


def test_forms_need_the_token_and_this_origin(broker, web):
    assert_readable_error(web.post("/topics", {"name": "forged"}, token=False), 403, "CSRF token")
    assert_readable_error(web.post("/topics", {"name": "forged", "csrf": "guess"}, token=False), 403, "CSRF")
    assert_readable_error(web.post("/topics", {"name": "forged"}, headers={"origin": "https://evil.example"}),
                          403, "another origin")
    assert "forged" not in web.get("/topics").text
    host = "%s:%d" % broker.http_address
    assert web.post("/topics", {"name": "forged"}, headers={"origin": f"http://{host}", "host": host}).status == 303
    assert_readable_error(web.request("PUT", "/topics"), 405, "PUT is not served")
    assert_readable_error(web.post("/topics", {"name": "bad name!"}), 502, "INVALID_TOPIC_EXCEPTION")


def test_topic_actions(broker, web):
    r = web.post("/topics", {"name": "acted", "partitions": "1"})
    assert r.status == 303 and r.getheader("location").startswith("/topics/acted?done=Created")
    assert web.post("/topics/acted/config", {"key": "retention.ms", "value": "120000"}).status == 303
    assert "<td>retention.ms</td><td><code>120000</code></td><td>topic</td>" in web.get("/topics/acted").text
    web.post("/topics/acted/config", {"key": "retention.ms", "reset": "1"})
    assert "<td>retention.ms</td><td><code>120000</code>" not in web.get("/topics/acted").text
    assert_readable_error(web.post("/topics/acted/config", {"key": "retention.ms", "value": "soon"}), 502,
                          "INVALID_CONFIG")
    assert web.post("/topics/acted/partitions", {"count": "3"}).status == 303
    assert len(re.findall(r"/topics/acted/messages\?partition=\d", web.get("/topics/acted").text)) == 3
    assert_readable_error(web.post("/topics/acted/partitions", {"count": "2"}), 502, "INVALID_PARTITIONS")
    assert_readable_error(web.post("/topics/acted/partitions", {"count": str(2**40)}), 400, "out of range")

    r = web.post("/topics/acted/produce", {"partition": "2", "key": "k", "value": '{"n": 1}', "headers": "h=v"})
    assert r.status == 303 and "partition=2" in r.getheader("location")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "acted-check", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("acted", 2, 0)])
    m = c.poll(10)
    c.close()
    assert (m.key(), m.value(), m.headers()) == (b"k", b'{"n": 1}', [("h", b"v")])
    page = web.get(r.getheader("location")).text
    assert "Produced to partition 2 at offset 0" in page and "&#34;n&#34;: 1" in page

    lines = web.get("/topics/acted/messages.jsonl?partition=2&offset=0")
    assert lines.getheader("content-disposition").startswith("attachment")
    rec = json.loads(lines.text.splitlines()[0])
    assert (rec["offset"], rec["key"], rec["value"], rec["headers"]) == \
        (0, {"value": "k"}, {"value": '{"n": 1}'}, [{"key": "h", "value": "v"}])

    assert_readable_error(web.post("/topics/acted/delete", {"confirm": "wrong"}), 400, "type its name")
    assert web.post("/topics/acted/delete", {"confirm": "acted"}).status == 303
    assert web.get("/topics/acted").status == 404


def test_group_lag_reset_and_delete(broker, web):
    web.post("/topics", {"name": "lagged", "partitions": "2"})
    for p in (0, 1):
        produce(broker, "lagged", [(None, b"x", None)] * 10, partition=p)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "laggers", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("lagged", 0, 4), TopicPartition("lagged", 1, 10)], asynchronous=False)
    c.close()
    page = web.get("/groups/laggers").text
    assert re.search(r'id="total-lag">6<', page) and re.search(r'id="group-state">Empty<', page)
    plan = web.post("/groups/laggers/reset", {"to": "shift", "value": "-3", "topic": "lagged"})
    assert plan.status == 200 and "dry run" in plan.text
    assert re.findall(r'class="num new-offset">(\d+)<', plan.text) == ["1", "7"]
    assert re.search(r'id="total-lag">6<', web.get("/groups/laggers").text)  # nothing changed
    applied = web.post("/groups/laggers/reset", {"to": "shift", "value": "-3", "topic": "lagged", "apply": "1"})
    assert applied.status == 303
    assert re.search(r'id="total-lag">12<', web.get("/groups/laggers").text)
    web.post("/groups/laggers/reset", {"to": "earliest", "apply": "1"})
    assert re.search(r'id="total-lag">20<', web.get("/groups/laggers").text)
    assert_readable_error(web.post("/groups/laggers/reset", {"to": "offset", "value": "x"}), 400, "not a whole")
    assert web.post("/groups/laggers/delete", {}).status == 303
    assert web.get("/groups/laggers").status == 404


def test_reset_is_refused_while_the_group_has_members(broker, web):
    web.post("/topics", {"name": "busy"})
    produce(broker, "busy", [(None, b"x", None)] * 3)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "busy-readers",
                  "auto.offset.reset": "earliest"})
    c.subscribe(["busy"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not c.assignment():
        c.poll(0.2)
    c.commit(offsets=[TopicPartition("busy", 0, 1)], asynchronous=False)
    try:
        page = web.get("/groups/busy-readers").text
        assert "Stable" in page and "busy: 0" in page  # the member's assignment, decoded
        assert web.post("/groups/busy-readers/reset", {"to": "earliest"}).status == 200  # a dry run is fine
        assert_readable_error(web.post("/groups/busy-readers/reset", {"to": "earliest", "apply": "1"}), 409,
                              "Stable", "stop its consumers")
    finally:
        c.close()


def read_events(sock, want: int, timeout: float = 10.0) -> list[dict]:
    """Server-sent events read off a raw socket (after the chunked head)."""
    sock.settimeout(timeout)
    buf, events = b"", []
    deadline = time.monotonic() + timeout
    while len(events) < want and time.monotonic() < deadline:
        buf += sock.recv(65536)
        # Drop the chunk-size lines of the chunked encoding; events end with a blank line.
        text = re.sub(rb"\r\n[0-9a-f]+\r\n", b"", b"\r\n" + buf.split(b"\r\n\r\n", 1)[1]) if b"\r\n\r\n" in buf else b""
        events = []
        for block in text.decode().split("\n\n"):
            fields = {}
            for line in block.splitlines():
                name, _, value = line.partition(": ")
                fields.setdefault(name, []).append(value)
            if fields.get("event") == ["record"]:
                events.append({"id": fields["id"][0], "data": "\n".join(fields["data"])})
    return events


def open_tail(address, path, last_event_id=None):
    sock = socket.create_connection(address, timeout=10)
    extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
    return sock


def test_live_tail_streams_and_resumes(broker, web):
    web.post("/topics", {"name": "tailed", "partitions": "2"})
    produce(broker, "tailed", [(b"old", b"before the tail", None)])
    sock = open_tail(broker.http_address, "/topics/tailed/tail")
    time.sleep(0.5)
    produce(broker, "tailed", [(b"k1", SCRIPT.encode(), None)], partition=1)
    produce(broker, "tailed", [(b"k2", b"second", None)], partition=0)
    events = read_events(sock, 2)
    sock.close()
    assert len(events) == 2
    assert "before the tail" not in "".join(e["data"] for e in events)  # from the end
    assert all("<script>" not in e["data"] for e in events)
    assert {e["id"] for e in events} >= {"0:2,1:1"}
    # Resuming from an id sends what came after it, and only that.
    produce(broker, "tailed", [(b"k3", b"while away", None)], partition=1)
    sock = open_tail(broker.http_address, "/topics/tailed/tail", last_event_id="0:1,1:1")
    events = read_events(sock, 2)
    sock.close()
    assert [re.search(r'class="key text">(\w+)<', e["data"]).group(1) for e in events] in (["k2", "k3"], ["k3", "k2"])
    # A tail whose client left stops, and closes its own connections to the brokers.
    def tails():
        return [k for k in broker.core.console.client.conns if isinstance(k, tuple) and k[0] == "tail"]

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and tails():
        time.sleep(0.05)
    assert not tails()
    # An offset past the end (the topic was recreated, say) goes on from the high watermark.
    sock = open_tail(broker.http_address, "/topics/tailed/tail?from=0:100,1:100")
    time.sleep(0.5)
    produce(broker, "tailed", [(b"k4", b"after a jump", None)], partition=0)
    events = read_events(sock, 1)
    sock.close()
    assert events and events[0]["id"] == "0:3,1:2"
    assert_readable_error(web.request("GET", "/topics/tailed/tail", headers={"last-event-id": "x"}), 400,
                          "PARTITION:OFFSET")
    head = web.request("HEAD", "/topics/tailed/tail")
    assert head.status == 200 and head.body == b"" and head.getheader("content-type").startswith("text/event-stream")


def test_console_code_reaches_the_cluster_only_through_the_kafka_protocol():
    import odradek.console

    root = os.path.dirname(odradek.console.__file__)
    allowed = ("odradek.console", "odradek.protocol", "odradek.replica.peer", "odradek.server.http",
               "odradek.security.config", "odradek.security.scram", "odradek.security.principal")  # pure helpers
    for name in sorted(os.listdir(root)):
        if name.endswith(".py"):
            tree = ast.parse(open(os.path.join(root, name)).read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("odradek."):
                    assert node.module.startswith(allowed), f"{name}: from {node.module}"


def test_odradek_console_serves_a_cluster_it_is_not_part_of(broker, tmp_path):
    port = free_port()
    log = open(tmp_path / "console.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "odradek", "console", "--bootstrap", broker.bootstrap,
                             "--http", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc=proc)
        web = Web(("127.0.0.1", port))
        assert web.post("/topics", {"name": "from-afar", "partitions": "2"}).status == 303
        assert web.post("/topics/from-afar/produce", {"key": "a", "value": "hello"}).status == 303
        page = web.get("/topics/from-afar")
        assert page.status == 200 and "<td class=\"num\">1</td>" in page.text
        assert "hello" in web.get("/topics/from-afar/messages?partition=" +
                                  re.search(r"partition=(\d)", web.post(
                                      "/topics/from-afar/produce", {"key": "a", "value": "hello"})
                                      .getheader("location")).group(1)).text
        assert web.get("/metrics").status == 404  # the broker's metrics are not the console's
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0, (tmp_path / "console.log").read_text()


def test_disk_use_and_sizes_of_a_broker_on_disk(web, tmp_path):
    """DescribeLogDirs: a broker keeping logs on disk shows its data directory
    and each topic's size; one in memory (the module's broker) shows none."""
    with odradek.Broker(data_dir=str(tmp_path / "d"), config={"http.listener": "127.0.0.1:0"}) as b:
        on_disk = Web(b.http_address)
        produce(b, "sized", [(b"k", b"x" * 1000, None)])
        home = on_disk.get("/").text
        assert 'id="disk"' in home and f"<code>{tmp_path / 'd'}</code>" in home
        page = on_disk.get("/topics/sized").text
        assert re.search(r"<th class=\"num\">size</th>", page)
        assert re.search(r'<td class="num">1(\.\d)? KiB</td></tr>', page), page
    assert "no log directory (logs kept in memory)" in web.get("/").text


def test_first_page_renders_in_under_200_ms_with_1000_topics():
    """The server's own time for the overview of 1,000 topics, from its
    Server-Timing header: the event loop's CPU time, which is what the
    console costs (its wall time also counts whatever else the machine runs,
    and is printed); bench/console_bench.py gives the figures in
    docs/operations.md."""
    import asyncio
    import statistics

    from odradek.console.client import ClusterClient

    with odradek.Broker(config={"http.listener": "127.0.0.1:0"}) as b:
        async def create():
            client = ClusterClient([(b.host, b.port)])
            r = await client.any_broker("CreateTopics", {
                "topics": [{"name": f"t{i:04d}", "num_partitions": 1, "replication_factor": -1}
                           for i in range(1000)], "timeout_ms": 60000, "validate_only": False}, timeout=60)
            client.close()
            assert not [t for t in r["topics"] if t["error_code"]]

        asyncio.run(create())
        web = Web(b.http_address)
        wall, cpu = [], []
        for _ in range(8):
            resp = web.get("/")
            assert resp.status == 200 and re.search(r'<span class="n">1000</span> topics', resp.text)
            timing = dict(re.findall(r"(\w+);dur=([\d.]+)", resp.getheader("server-timing")))
            wall.append(float(timing["app"]))
            cpu.append(float(timing["cpu"]))
        print(f"overview of 1,000 topics: wall median {statistics.median(wall[2:]):.1f} ms, "
              f"CPU median {statistics.median(cpu[2:]):.1f} ms")
        assert statistics.median(cpu[2:]) < 200, cpu


def test_odradek_console_against_apache_kafka(tmp_path):
    """The same console against Apache Kafka 4.4 (single node): the versions
    it sends are Kafka's too, and disk use shows, as Kafka serves DescribeLogDirs."""
    from tests.integration.java_client import require_java

    require_java()
    kafka_runtime = pytest.importorskip("kafka_runtime")  # loaded by require_java from bench/
    kafka = kafka_runtime.KafkaBroker(heap="512M")
    kafka.port, kafka.controller_port, sasl = free_port(), free_port(), free_port()
    kafka.extra_config.update({  # and a SASL listener, for `odradek console --login`
        "listeners": f"PLAINTEXT://127.0.0.1:{kafka.port},SASL_PLAINTEXT://127.0.0.1:{sasl},"
                     f"CONTROLLER://127.0.0.1:{kafka.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{kafka.port},SASL_PLAINTEXT://127.0.0.1:{sasl}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config":
            'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret";'})
    try:
        kafka.start()
    except Exception as e:  # noqa: BLE001 - no release resolvable, no Java to run it
        pytest.skip(f"could not start Apache Kafka: {e}")
    port = free_port()
    log = open(tmp_path / "console.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "odradek", "console", "--bootstrap", kafka.bootstrap,
                             "--http", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc=proc)
        web = Web(("127.0.0.1", port))
        assert web.post("/topics", {"name": "on-kafka", "partitions": "2", "configs": "retention.ms=600000"}
                        ).status == 303
        r = web.post("/topics/on-kafka/produce", {"partition": "1", "key": "k", "value": SCRIPT, "headers": "h=1"})
        assert r.status == 303, r.text
        page = web.get(r.getheader("location")).text
        assert "&lt;script&gt;alert" in page and "<script>alert" not in page and "h=1" in page
        home = web.get("/").text
        assert re.search(r'<span class="n">1</span> brokers', home) and 'id="disk"' in home
        assert "metadata.version=" in home
        topic = web.get("/topics/on-kafka").text
        assert "<td>retention.ms</td><td><code>600000</code></td><td>topic</td>" in topic
        assert re.search(r"<th class=\"num\">size</th>", web.get("/topics").text)
        assert web.post("/topics/on-kafka/partitions", {"count": "3"}).status == 303
        assert web.post("/topics/on-kafka/config", {"key": "retention.ms", "value": "700000"}).status == 303

        c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "kafka-readers", "enable.auto.commit": False})
        deadline = time.monotonic() + 30
        while True:  # Kafka creates __consumer_offsets on the first group's request
            try:
                c.commit(offsets=[TopicPartition("on-kafka", 1, 0)], asynchronous=False)
                break
            except Exception:  # noqa: BLE001 - NOT_COORDINATOR while it loads
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        c.close()
        assert re.search(r'id="total-lag">1<', web.get("/groups/kafka-readers").text)
        assert "kafka-readers" in web.get("/groups").text
        plan = web.post("/groups/kafka-readers/reset", {"to": "latest"})
        assert re.findall(r'class="num new-offset">(\d+)<', plan.text) == ["1"]
        assert web.post("/groups/kafka-readers/reset", {"to": "latest", "apply": "1"}).status == 303
        assert re.search(r'id="total-lag">0<', web.get("/groups/kafka-readers").text)
        assert web.post("/groups/kafka-readers/delete", {}).status == 303
        assert web.post("/topics/on-kafka/delete", {"confirm": "on-kafka"}).status == 303
        assert_readable_error(web.get("/topics/on-kafka"), 404, "Unknown topic")

        # --login: Kafka's own PLAIN server checks the password
        proc.terminate()
        proc.wait(10)
        assert proc.returncode == 0, (tmp_path / "console.log").read_text()
        proc = subprocess.Popen([sys.executable, "-m", "odradek", "console", "--bootstrap", f"127.0.0.1:{sasl}",
                                 "--http", f"127.0.0.1:{port}", "--login", "-X", "security.protocol=SASL_PLAINTEXT",
                                 "-X", "sasl.mechanism=PLAIN"], stdout=log, stderr=subprocess.STDOUT)
        wait_port(port, proc=proc)
        form = {"user": "alice", "password": "wrong", "csrf": re.search(
            r'name="csrf" value="([^"]+)"', web.get("/login").text).group(1)}
        assert web.post("/login", form, token=False).status == 401
        r = web.post("/login", {**form, "password": "alice-secret"}, token=False)
        assert r.status == 303
        cookie = r.getheader("set-cookie").split(";")[0]
        page = web.request("GET", "/topics", headers={"cookie": cookie})
        assert page.status == 200 and "User:alice" in page.text
    finally:
        proc.terminate()
        proc.wait(10)
        kafka.stop()
    assert proc.returncode == 0, (tmp_path / "console.log").read_text()


def test_retriable_answers_are_asked_again_and_others_are_not():
    import asyncio

    from odradek.console.client import ClusterClient, KafkaError
    from odradek.protocol import errors

    client = ClusterClient([("127.0.0.1", 1)])
    refreshed = []

    async def metadata(max_age=0.0):
        refreshed.append(1)

    client.metadata = metadata
    calls = []

    def op(code, fail_times):
        async def run():
            calls.append(code)
            if len([c for c in calls if c == code]) <= fail_times:
                raise KafkaError("moving", code)
            return "done"
        return run

    assert asyncio.run(client.retrying(op(errors.NOT_LEADER_OR_FOLLOWER, 2))) == "done"
    assert len(refreshed) == 2  # fresh metadata before each new try
    with pytest.raises(KafkaError):
        asyncio.run(client.retrying(op(errors.INVALID_CONFIG, 1)))
    assert calls.count(errors.INVALID_CONFIG) == 1


def test_message_browser_by_time_offset_and_key(broker, web):
    web.post("/topics", {"name": "timed"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    base = 1_780_000_000_000  # 2026-05-28T20:26:40Z
    for i in range(10):
        p.produce("timed", key=b"even" if i % 2 == 0 else b"odd", value=b"%d" % i, partition=0,
                  timestamp=base + i * 60_000)
    assert p.flush(10) == 0

    def offsets(query):
        return [int(o) for o in re.findall(r'data-offset="(\d+)"', web.get("/topics/timed/messages?" + query).text)]

    assert offsets(f"timestamp={base + 3 * 60_000}&limit=3") == [3, 4, 5]
    assert offsets(f"timestamp={base + 3 * 60_000 - 1}&limit=2") == [3, 4]  # the first at or after it
    assert offsets("timestamp=2026-05-28T20:30:40&limit=2") == [4, 5]  # ISO 8601, UTC unless it says
    assert offsets("timestamp=2026-05-28T22:30:40%2B02:00&limit=1") == [4]
    assert offsets("offset=-2") == [8, 9]
    assert offsets("limit=3") == [7, 8, 9]  # the last ones
    assert offsets("offset=0&key=odd&limit=3") == [1, 3, 5]
    assert offsets(f"timestamp={base + 3_600_000}") == []  # after the last record
    page = web.get("/topics/timed/messages?offset=0&limit=4").text
    assert "2026-05-28 20:26:40.000" in page and 'href="?limit=4&amp;offset=4">Next records from offset 4' in page
    # The page's download link holds what the page shows; without a range, the last records (all ten here).
    link = html.unescape(re.search(r'href="(/topics/timed/messages.jsonl[^"]*)"', page).group(1))
    resp = web.get(link)
    assert resp.getheader("transfer-encoding") == "chunked"  # streamed as it is read
    assert [json.loads(line)["offset"] for line in resp.text.splitlines()] == [0, 1, 2, 3]
    assert [json.loads(line)["offset"] for line in web.get("/topics/timed/messages.jsonl").text.splitlines()] == \
        list(range(10))
    assert [json.loads(line)["value"]["value"] for line in
            web.get("/topics/timed/messages.jsonl?offset=0&key=odd&limit=2").text.splitlines()] == ["1", "3"]


def test_lag_in_time_is_the_age_of_the_first_record_not_consumed(broker, web):
    web.post("/topics", {"name": "aged"})
    now = int(time.time() * 1000)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for age_s in (90, 30):
        p.produce("aged", value=b"x", partition=0, timestamp=now - age_s * 1000)
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "agers", "enable.auto.commit": False})
    for committed, low, high in ((0, 90, 95), (1, 30, 35), (2, None, None)):
        c.commit(offsets=[TopicPartition("aged", 0, committed)], asynchronous=False)
        row = re.search(r'<td class="num lag">(\d+)</td><td class="num">([^<]+)</td>',
                        web.get("/groups/agers").text)
        if low is None:
            assert row.groups() == ("0", "0 ms")
        else:
            lag, age = row.group(1), float(row.group(2).removesuffix(" s"))
            assert int(lag) == 2 - committed and low <= age < high, row.groups()
    c.close()


def test_a_tail_its_client_does_not_read_is_closed(broker, web, monkeypatch):
    import odradek.server.http as http_server

    monkeypatch.setattr(http_server, "MAX_STREAM_BUFFER", 64 * 1024)
    web.post("/topics", {"name": "flood"})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(broker.http_address)
    sock.sendall(b"GET /topics/flood/tail HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    for c in broker.core.http.connections:  # so that the kernel does not take it all
        if c.streaming:
            c.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    produce(broker, "flood", [(None, b"x" * 50_000, None)] * 40)  # 2 MB the client never reads
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(c.streaming for c in broker.core.http.connections):
        time.sleep(0.1)
    assert not any(c.streaming for c in broker.core.http.connections)
    sock.close()


def test_a_large_value_is_cut_on_the_page_and_whole_in_the_download(broker, web):
    web.post("/topics", {"name": "bulky"})
    value = json.dumps({"blob": "y" * 100_000}).encode()
    produce(broker, "bulky", [(b"big", value, None), (b"small", b"tiny", None)])
    page = web.get("/topics/bulky/messages").text
    assert f"… {len(value) - 64 * 1024} more bytes (download to see all)" in page and "tiny" in page
    lines = web.get("/topics/bulky/messages.jsonl?offset=0").text.splitlines()
    assert json.loads(lines[0])["value"]["value"].encode() == value


def test_a_download_waits_for_a_slow_client(broker, web):
    web.post("/topics", {"name": "heavy"})
    produce(broker, "heavy", [(None, b"z" * 50_000, None)] * 160)  # 8 MB: more than the kernel buffers (4 MB)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    sock.connect(broker.http_address)
    sock.sendall(b"GET /topics/heavy/messages.jsonl?offset=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(1.0)  # not reading: the server waits rather than buffers it all, or drops it
    buffered = [c.transport.get_write_buffer_size() for c in broker.core.http.connections if c.streaming]
    assert buffered and buffered[0] < 2 * 1024 * 1024  # about one piece (1 MiB) waits, not the 8 MB
    data = b""
    sock.settimeout(10)
    while chunk := sock.recv(1 << 20):
        data += chunk
    sock.close()
    body = re.sub(rb"\r\n[0-9a-f]+\r\n", b"", b"\r\n" + data.split(b"\r\n\r\n", 1)[1])
    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    assert [r["offset"] for r in lines] == list(range(160)) and all(len(r["value"]["value"]) == 50_000 for r in lines)


def test_a_tail_follows_added_partitions_and_ends_when_the_topic_goes(broker, web, monkeypatch):
    import odradek.console.app as console_app

    monkeypatch.setattr(console_app, "TAIL_CHECK", 0.2)
    web.post("/topics", {"name": "growing"})
    sock = open_tail(broker.http_address, "/topics/growing/tail")
    time.sleep(0.3)
    assert web.post("/topics/growing/partitions", {"count": "2"}).status == 303
    time.sleep(0.8)  # a check finds the new partition
    produce(broker, "growing", [(b"new", b"in the new partition", None)], partition=1)
    events = read_events(sock, 1)
    assert events and events[0]["id"] == "0:0,1:1"
    assert web.post("/topics/growing/delete", {"confirm": "growing"}).status == 303
    sock.settimeout(5)
    rest = b""
    while chunk := sock.recv(65536):
        rest += chunk
    sock.close()
    assert b"event: gone\ndata: topic growing was deleted" in rest
    assert rest.endswith(b"0\r\n\r\n")  # the stream ended


def test_acl_user_and_quota_pages_without_an_authoriser(broker, web):
    page = web.get("/acls")
    assert page.status == 200 and "no authoriser" in page.text
    assert web.get("/users").status == 200
    r = web.post("/quotas", {"client-id": "<default>", "key": "consumer_byte_rate", "value": "2048"})
    assert r.status == 303, r.text
    assert "client-id=&lt;default&gt;" in web.get("/quotas").text
    r = web.post("/quotas/delete", {"client-id": "<default>", "key": "consumer_byte_rate"})
    assert r.status == 303 and "client-id=&lt;default&gt;" not in web.get("/quotas").text
    assert_readable_error(web.post("/quotas", {"key": "consumer_byte_rate", "value": "1"}), 400, "name a user")


def test_lag_history_is_kept_while_no_page_watches(broker, web):
    web.post("/topics", {"name": "unwatched", "partitions": "2"})
    for p in (0, 1):
        produce(broker, "unwatched", [(None, b"x", None)] * 10, partition=p)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unwatched-group", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("unwatched", 0, 3), TopicPartition("unwatched", 1, 10)], asynchronous=False)
    c.close()
    time.sleep(1.5)  # no page open: the broker samples every 200 ms here
    kept = broker.core.lag_history.get("unwatched-group")
    assert len(kept) >= 4, kept
    assert [lag for _, lag, _ in kept[-3:]] == [7, 7, 7]
    assert all(secs > 0 for _, _, secs in kept[-3:])  # the first record not consumed is that old
    assert kept[-1][2] > kept[0][2]  # and ages as no one consumes
    page = web.get("/groups/unwatched-group").text
    points = int(re.search(r'id="lag-history" data-points="(\d+)"', page).group(1))
    assert points >= 4 and 'id="lag-time-history"' in page and "sampled by the broker" in page
    metrics = web.get("/metrics").text
    assert re.search(r"^odradek_consumer_group_lag_history_groups [1-9]", metrics, re.M)
    web.post("/groups/unwatched-group/delete", {})
    time.sleep(0.6)
    assert broker.core.lag_history.get("unwatched-group") == []
