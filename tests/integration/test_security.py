"""Secured listeners with real clients over real sockets: TLS with client
certificates, SASL PLAIN and SCRAM on plaintext and TLS, and the ways a login
fails (each closing its own connection while other clients keep working)."""

from __future__ import annotations

import socket
import ssl
import struct
import time

import pytest

from odradek.protocol.frames import decode_response, encode_request
from tests.integration.certs import make_pki

pytestmark = pytest.mark.timeout(180)

ALICE_DN = "CN=alice,OU=eng,O=acme,C=US"
PLAIN = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
         'password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = make_pki(tmp_path_factory.mktemp("pki"))
    p.server = p.issue("server", "CN=localhost,O=odradek", server=True)
    p.alice = p.issue("alice", ALICE_DN)
    return p


@pytest.fixture(scope="module")
def secured(pki):
    """One broker with four listeners, configured with Kafka's keys."""
    from odradek.embedded import EmbeddedBroker

    config = {
        "listeners": "INTERNAL://127.0.0.1:0,TLS://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,"
                     "SASL_TLS://127.0.0.1:0",
        "listener.security.protocol.map": "INTERNAL:PLAINTEXT,TLS:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                          "SASL_TLS:SASL_SSL",
        "inter.broker.listener.name": "INTERNAL",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": pki.server["pem"],
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": pki.ca_file,
        "ssl.client.auth": "requested",
        "listener.name.tls.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_tls.sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN,
        "listener.name.sasl_tls.plain.sasl.jaas.config": PLAIN,
        "super.users": f"User:admin;User:{ALICE_DN}",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": "2",
        "connection.failed.authentication.delay.ms": "20",
    }
    with EmbeddedBroker(config=config) as b:
        b.addr = {name: f"127.0.0.1:{port}" for name, (_, port) in b.core.endpoints.items()}
        from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                           UserScramCredentialUpsertion)

        admin = AdminClient(sasl_conf(b, "SASL_PLAINTEXT", "PLAIN", "admin", "admin-secret"))
        fs = admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"bob-secret"),
            UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"bob-512"),
        ])
        for f in fs.values():
            f.result(timeout=15)
        yield b


def sasl_conf(b, listener, mechanism, user, password, **extra):
    proto = "SASL_SSL" if listener == "SASL_TLS" else "SASL_PLAINTEXT"
    conf = {"bootstrap.servers": b.addr[listener], "security.protocol": proto, "sasl.mechanism": mechanism,
            "sasl.username": user, "sasl.password": password}
    conf.update(extra)
    return conf


def tls_conf(b, pki, listener="TLS", cert=True, **extra):
    conf = {"bootstrap.servers": b.addr[listener], "security.protocol": "SSL", "ssl.ca.location": pki.ca_file}
    if cert:
        conf.update({"ssl.certificate.location": pki.alice["crt"], "ssl.key.location": pki.alice["key"]})
    conf.update(extra)
    return conf


def round_trip_confluent(conf, topic, n=20, while_connected=None):
    """Produce ``n`` records and read them back in a group; ``while_connected()``
    runs while the producer's connections are open."""
    from confluent_kafka import Consumer, Producer

    p = Producer(dict(conf, **{"linger.ms": 5}))
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), key=b"k")
    assert p.flush(30) == 0
    if while_connected is not None:
        while_connected()
    c = Consumer(dict(conf, **{"group.id": f"g-{topic}", "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.commit(asynchronous=False)
    c.close()
    assert got == [f"v{i}".encode() for i in range(n)]


def failures_of(conf, seconds=3.0):
    """The errors a producer reports when it cannot log in."""
    from confluent_kafka import Producer

    errors = []
    p = Producer(dict(conf, error_cb=lambda e: errors.append(e)))
    p.produce("never", b"x")
    deadline = time.monotonic() + seconds
    while not errors and time.monotonic() < deadline:
        p.poll(0.05)
    p.purge()
    return errors


def principals(b, listener):
    return {str(c.principal) for c in list(b.core.connections) if c.listener == listener}


# -- TLS ---------------------------------------------------------------------------

def test_tls_with_a_client_certificate_confluent(secured, pki):
    def check():
        assert principals(secured, "TLS") == {f"User:{ALICE_DN}"}

    round_trip_confluent(tls_conf(secured, pki), "tls-confluent", while_connected=check)


def test_tls_with_a_client_certificate_kafka_python(secured, pki):
    from kafka import KafkaConsumer, KafkaProducer

    kw = dict(bootstrap_servers=secured.addr["TLS"], security_protocol="SSL", ssl_cafile=pki.ca_file,
              ssl_certfile=pki.alice["crt"], ssl_keyfile=pki.alice["key"])
    p = KafkaProducer(**kw)
    for i in range(5):
        p.send("tls-kp", f"m{i}".encode())
    p.flush(20)
    p.close()
    c = KafkaConsumer("tls-kp", auto_offset_reset="earliest", consumer_timeout_ms=15000, **kw)
    assert [m.value for _, m in zip(range(5), c)] == [f"m{i}".encode() for i in range(5)]
    c.close()


def test_tls_required_client_auth_refuses_a_client_without_certificate(secured, pki):
    errors = failures_of(tls_conf(secured, pki, cert=False))
    assert errors, "a client without a certificate logged in"
    round_trip_confluent(tls_conf(secured, pki), "tls-after-refusal", n=3)


def test_a_plaintext_client_on_a_tls_port_fails_cleanly(secured, pki):
    with socket.create_connection(("127.0.0.1", int(secured.addr["TLS"].split(":")[1])), timeout=10) as s:
        s.sendall(encode_request("ApiVersions", 0, {}, 1, "plain"))
        s.settimeout(10)
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"\x00\x00")  # a TLS alert or a close, never a Kafka response
    errors = failures_of({"bootstrap.servers": secured.addr["TLS"]}, seconds=2)
    assert errors
    round_trip_confluent(tls_conf(secured, pki), "tls-after-plaintext", n=3)


# -- SASL ----------------------------------------------------------------------------

@pytest.mark.parametrize("listener, mechanism, user, password", [
    ("SASL_PLAINTEXT", "PLAIN", "alice", "alice-secret"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256", "bob", "bob-secret"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512", "bob", "bob-512"),
    ("SASL_TLS", "SCRAM-SHA-512", "bob", "bob-512"),
    ("SASL_TLS", "PLAIN", "admin", "admin-secret"),
])
def test_sasl_logins_confluent(secured, pki, listener, mechanism, user, password):
    extra = {"ssl.ca.location": pki.ca_file} if listener == "SASL_TLS" else {}
    topic = f"sasl-{listener}-{mechanism}".lower()
    round_trip_confluent(sasl_conf(secured, listener, mechanism, user, password, **extra), topic,
                         while_connected=lambda: f"User:{user}" in principals(secured, listener) or pytest.fail(
                             f"User:{user} not among {principals(secured, listener)}"))


@pytest.mark.parametrize("listener, mechanism, user, password", [
    ("SASL_PLAINTEXT", "PLAIN", "alice", "alice-secret"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256", "bob", "bob-secret"),
    ("SASL_TLS", "SCRAM-SHA-512", "bob", "bob-512"),
])
def test_sasl_logins_kafka_python(secured, pki, listener, mechanism, user, password):
    from kafka import KafkaConsumer, KafkaProducer

    kw = dict(bootstrap_servers=secured.addr[listener], sasl_mechanism=mechanism,
              sasl_plain_username=user, sasl_plain_password=password,
              security_protocol="SASL_SSL" if listener == "SASL_TLS" else "SASL_PLAINTEXT")
    if listener == "SASL_TLS":
        kw["ssl_cafile"] = pki.ca_file
    topic = f"kp-{listener}-{mechanism}".lower()
    p = KafkaProducer(**kw)
    p.send(topic, b"hello").get(20)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=15000, **kw)
    assert next(c).value == b"hello"
    c.close()


@pytest.mark.parametrize("listener, mechanism, user, password, expected", [
    ("SASL_PLAINTEXT", "PLAIN", "alice", "wrong", "Invalid username or password"),
    ("SASL_PLAINTEXT", "PLAIN", "nobody", "x", "Invalid username or password"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256", "bob", "wrong", "invalid credentials"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256", "nobody", "x", "Invalid user credentials"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512", "bob", "bob-secret", "invalid credentials"),  # the 256 password
    ("SASL_TLS", "SCRAM-SHA-256", "bob", "bob-secret", "mechanism"),  # not enabled on SASL_TLS
])
def test_failed_logins_fail_cleanly(secured, pki, listener, mechanism, user, password, expected):
    extra = {"ssl.ca.location": pki.ca_file} if listener == "SASL_TLS" else {}
    errors = failures_of(sasl_conf(secured, listener, mechanism, user, password, **extra))
    assert errors and any(expected in e.str() for e in errors), [e.str() for e in errors]
    round_trip_confluent(sasl_conf(secured, "SASL_PLAINTEXT", "PLAIN", "alice", "alice-secret"),
                         f"after-{mechanism}-{user}".lower(), n=2)


# -- the pre-authentication rules, byte by byte -----------------------------------------

class Raw:
    def __init__(self, addr):
        host, port = addr.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.corr = 0

    def send(self, name, version, body):
        self.corr += 1
        self.sock.sendall(encode_request(name, version, body, self.corr, "raw"))

    def recv_frame(self) -> bytes | None:
        head = self._recv(4)
        if head is None:
            return None
        return self._recv(struct.unpack(">i", head)[0])

    def request(self, name, version, body):
        self.send(name, version, body)
        frame = self.recv_frame()
        return None if frame is None else decode_response(name, version, frame)[1]

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def closed(self) -> bool:
        self.sock.settimeout(5)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def test_only_api_versions_and_sasl_before_login(secured):
    r = Raw(secured.addr["SASL_PLAINTEXT"])
    assert r.request("ApiVersions", 3, {"client_software_name": "raw", "client_software_version": "1"})[
        "error_code"] == 0
    md = r.request("DescribeCluster", 0, {})
    assert md["error_code"] == 34  # ILLEGAL_SASL_STATE
    assert r.closed()
    r = Raw(secured.addr["SASL_PLAINTEXT"])
    r.send("Metadata", 9, {"topics": None})  # no top-level error code: just the close
    assert r.recv_frame() is None
    r = Raw(secured.addr["SASL_PLAINTEXT"])
    assert r.request("SaslHandshake", 1, {"mechanism": "PLAIN"})["error_code"] == 0
    assert r.request("ApiVersions", 0, {})["error_code"] == 34 and r.closed()


def test_handshake_v0_then_raw_tokens(secured):
    r = Raw(secured.addr["SASL_PLAINTEXT"])
    hs = r.request("SaslHandshake", 0, {"mechanism": "PLAIN"})
    assert hs["error_code"] == 0 and set(hs["mechanisms"]) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
    token = b"\0alice\0alice-secret"
    r.sock.sendall(struct.pack(">i", len(token)) + token)
    assert r.recv_frame() == b""
    md = r.request("Metadata", 9, {"topics": None})
    assert md["brokers"][0]["port"] == int(secured.addr["SASL_PLAINTEXT"].split(":")[1])
    r.close()


def test_garbage_and_oversized_frames_before_login_close_only_their_connection(secured):
    r = Raw(secured.addr["SASL_PLAINTEXT"])
    r.sock.sendall(struct.pack(">i", 512 * 1024 + 1) + b"x" * 100)  # over the 512 KiB cap
    assert r.closed()
    r = Raw(secured.addr["SASL_PLAINTEXT"])
    r.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.closed()
    r = Raw(secured.addr["SASL_PLAINTEXT"])
    r.sock.sendall(struct.pack(">i", 12) + b"\x00\x11\x00\x01\x00\x00\x00\x01\xff\xff\xff\xff")  # truncated
    assert r.closed()
    r = Raw(secured.addr["SASL_PLAINTEXT"])
    r.request("SaslHandshake", 1, {"mechanism": "PLAIN"})
    resp = r.request("SaslAuthenticate", 1, {"auth_bytes": b"\xff\xfe garbage"})
    assert resp["error_code"] == 58 and r.closed()  # SASL_AUTHENTICATION_FAILED
    r = Raw(secured.addr["SASL_PLAINTEXT"])
    r.request("SaslHandshake", 1, {"mechanism": "PLAIN"})
    assert r.request("SaslAuthenticate", 2, {"auth_bytes": b"\0alice\0alice-secret"})["error_code"] == 0
    # After the login the frame cap is socket.request.max.bytes again.
    big = r.request("Produce", 9, {"acks": 1, "timeout_ms": 1000, "topic_data": [
        {"name": "big-after-login", "partition_data": [{"index": 0, "records": None}]}]})
    assert big is not None
    r.close()


def test_sasl_apis_on_a_listener_without_sasl(secured):
    r = Raw(secured.addr["INTERNAL"])
    assert r.request("SaslHandshake", 1, {"mechanism": "PLAIN"})["error_code"] == 34
    assert r.request("Metadata", 9, {"topics": None})["brokers"]
    assert principals(secured, "INTERNAL") == {"User:ANONYMOUS"}
    r.close()


# -- re-authentication (KIP-368) ----------------------------------------------------------

def test_reauthentication(odradek_broker_factory):
    b = odradek_broker_factory(config={
        "listeners": "SASL_PLAINTEXT://127.0.0.1:0",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN,
        "connections.max.reauth.ms": "800",
        "connection.failed.authentication.delay.ms": "0",
    })
    addr = b.bootstrap
    r = Raw(addr)
    r.request("SaslHandshake", 1, {"mechanism": "PLAIN"})
    auth = r.request("SaslAuthenticate", 1, {"auth_bytes": b"\0alice\0alice-secret"})
    assert auth["error_code"] == 0 and 0 < auth["session_lifetime_ms"] <= 800
    time.sleep(0.9)
    assert r.request("SaslHandshake", 1, {"mechanism": "PLAIN"})["error_code"] == 0
    assert r.request("SaslAuthenticate", 1, {"auth_bytes": b"\0alice\0alice-secret"})["error_code"] == 0
    assert r.request("Metadata", 9, {"topics": None})["brokers"]
    time.sleep(0.9)  # expired, not re-authenticated: the next request closes the connection
    r.send("Metadata", 9, {"topics": None})
    assert r.recv_frame() is None
    # librdkafka re-authenticates by itself and keeps producing past several lifetimes.
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": addr, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                  "sasl.username": "alice", "sasl.password": "alice-secret"})
    p.produce("reauth", b"x")
    assert p.flush(10) == 0
    before = set(b.broker.core.connections)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        p.produce("reauth", b"x")
        assert p.flush(10) == 0
        time.sleep(0.1)
    assert before & set(b.broker.core.connections), "librdkafka reconnected instead of re-authenticating"


# -- aiokafka and kcat ---------------------------------------------------------------

@pytest.mark.parametrize("listener, mechanism, user, password", [
    ("TLS", None, None, None),
    ("SASL_PLAINTEXT", "PLAIN", "alice", "alice-secret"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256", "bob", "bob-secret"),
    ("SASL_TLS", "SCRAM-SHA-512", "bob", "bob-512"),
    ("SASL_TLS", "PLAIN", "admin", "admin-secret"),
])
def test_aiokafka_over_tls_and_sasl(secured, pki, listener, mechanism, user, password):
    """aiokafka 0.14 produces and consumes over SSL (a client certificate,
    the host name checked), and with PLAIN and SCRAM over SASL_PLAINTEXT and
    SASL_SSL; the broker sees its principal."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    kw = dict(bootstrap_servers=secured.addr[listener])
    if listener in ("TLS", "SASL_TLS"):
        kw["ssl_context"] = create_ssl_context(
            cafile=pki.ca_file, **({"certfile": pki.alice["crt"], "keyfile": pki.alice["key"]}
                                   if listener == "TLS" else {}))
    if mechanism is None:
        kw["security_protocol"], expected = "SSL", f"User:{ALICE_DN}"
    else:
        kw.update(security_protocol="SASL_SSL" if listener == "SASL_TLS" else "SASL_PLAINTEXT",
                  sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password)
        expected = f"User:{user}"
    topic = f"aio-{listener}-{mechanism}".lower()

    async def main():
        p = AIOKafkaProducer(**kw)
        await p.start()
        try:
            await p.send_and_wait(topic, b"hello")
            seen = principals(secured, listener)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **kw)
        await c.start()
        try:
            m = await asyncio.wait_for(c.getone(), 20)
        finally:
            await c.stop()
        return m.value, seen

    value, seen = asyncio.run(main())
    assert value == b"hello" and expected in seen, seen


@pytest.mark.parametrize("listener", ["TLS", "SASL_TLS"])
def test_kcat_over_tls_and_sasl_plain(secured, pki, listener):
    """kcat (Debian's, librdkafka 2.0.2) produces and consumes over SSL with a
    client certificate and over SASL_SSL with PLAIN, host names checked."""
    import shutil
    import subprocess

    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.skip("kcat is not installed")
    if listener == "TLS":
        opts = ["-X", "security.protocol=SSL", "-X", f"ssl.certificate.location={pki.alice['crt']}",
                "-X", f"ssl.key.location={pki.alice['key']}"]
    else:
        opts = ["-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=alice",
                "-X", "sasl.password=alice-secret"]
    opts += ["-X", f"ssl.ca.location={pki.ca_file}", "-X", "ssl.endpoint.identification.algorithm=https",
             "-b", secured.addr[listener].replace("127.0.0.1", "localhost")]
    topic = f"kcat-{listener}".lower()
    subprocess.run([kcat, "-P", "-t", topic, "-p", "0", *opts], input=b"a\nb\nc\n", check=True, timeout=30)
    got = subprocess.run([kcat, "-C", "-t", topic, "-p", "0", "-e", "-q", *opts],
                         capture_output=True, check=True, timeout=30).stdout.decode().split()
    assert got == ["a", "b", "c"]


JAVA_LOGINS = r"""
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.*;

public class JavaLogins {
  public static void main(String[] a) throws Exception {
    // args: name bootstrap security.protocol [key=value ...], repeated after "--"
    List<String> args = new ArrayList<>(Arrays.asList(a));
    while (!args.isEmpty()) {
      int end = args.indexOf("--");
      List<String> one = end < 0 ? args : args.subList(0, end);
      Properties p = new Properties();
      String name = one.get(0);
      p.put("bootstrap.servers", one.get(1));
      for (String kv : one.subList(2, one.size())) p.put(kv.substring(0, kv.indexOf('=')), kv.substring(kv.indexOf('=') + 1));
      try (KafkaProducer<String, String> pr = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
        for (int i = 0; i < 5; i++) pr.send(new ProducerRecord<>("java-" + name, "v" + i)).get();
      }
      p.put("group.id", "java-" + name);
      p.put("auto.offset.reset", "earliest");
      int got = 0;
      try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
        c.subscribe(List.of("java-" + name));
        long deadline = System.currentTimeMillis() + 30000;
        while (got < 5 && System.currentTimeMillis() < deadline) got += c.poll(Duration.ofMillis(200)).count();
      }
      System.out.println(name + " " + got);
      args = end < 0 ? List.of() : new ArrayList<>(args.subList(end + 1, args.size()));
    }
  }
}
"""


def test_java_client_over_tls_and_scram_sha_256(secured, pki, tmp_path):
    """The Java client 4.x over SSL with a client certificate (PEM keystore
    and truststore, host names checked), with SCRAM-SHA-256 over
    SASL_PLAINTEXT and PLAIN over SASL_SSL: each produces 5 records and reads
    them back in a group."""
    from tests.integration.java_client import run_java

    trust = ["ssl.truststore.type=PEM", f"ssl.truststore.location={pki.ca_file}"]
    args = ["tls", secured.addr["TLS"], "security.protocol=SSL", "ssl.keystore.type=PEM",
            f"ssl.keystore.location={pki.alice['pem']}", *trust, "--",
            "scram256", secured.addr["SASL_PLAINTEXT"], "security.protocol=SASL_PLAINTEXT",
            "sasl.mechanism=SCRAM-SHA-256", "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
            'required username="bob" password="bob-secret";', "--",
            "plain", secured.addr["SASL_TLS"], "security.protocol=SASL_SSL", "sasl.mechanism=PLAIN",
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
            'username="alice" password="alice-secret";', *trust]
    out = run_java(tmp_path, "JavaLogins", JAVA_LOGINS, args)
    assert out.split("\n")[:3] == ["tls 5", "scram256 5", "plain 5"], out


def test_describe_configs_never_shows_a_secret(secured):
    """As Kafka: a broker's PASSWORD settings (the JAAS lines with their users'
    passwords, keystore passwords) are described as sensitive with no value,
    their synonyms too; other settings keep their values."""
    from tests.integration.rawclient import RawClient

    c = RawClient(secured.addr["INTERNAL"])
    try:
        r = c.request("DescribeConfigs", 4, {"resources": [
            {"resource_type": 4, "resource_name": str(secured.core.config.node_id), "configuration_keys": None}],
            "include_synonyms": True, "include_documentation": False})
    finally:
        c.close()
    configs = {x["name"]: x for x in r["results"][0]["configs"]}
    jaas = configs["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    assert jaas["is_sensitive"] and jaas["value"] is None
    assert all(s["value"] is None for s in jaas["synonyms"])
    assert "admin-secret" not in repr(r)
    assert not configs["sasl.enabled.mechanisms"]["is_sensitive"]
    assert configs["sasl.enabled.mechanisms"]["value"] == "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
