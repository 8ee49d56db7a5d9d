"""``ssl.cipher.suites`` as a Kafka config writes it (Java's suite names), on
listeners that real clients reach: a listener negotiates only its suites and
the versions they serve, clients whose suites it does not list fail the
handshake, and the Java client, confluent-kafka and Python's ssl module
round-trip over it."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.integration.certs import server_pki
from tests.integration.test_security import JAVA_LOGINS, failures_of, round_trip_confluent

pytestmark = pytest.mark.timeout(180)

TLS12_SUITE = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"  # the test certificates' keys are EC keys
TLS13_SUITE = "TLS_AES_256_GCM_SHA384"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return server_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def broker(pki):
    from odradek.embedded import EmbeddedBroker

    config = {
        "listeners": "INTERNAL://127.0.0.1:0,TLS12://127.0.0.1:0,TLS13://127.0.0.1:0",
        "listener.security.protocol.map": "INTERNAL:PLAINTEXT,TLS12:SSL,TLS13:SSL",
        "inter.broker.listener.name": "INTERNAL",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": pki.server["pem"],
        "listener.name.tls12.ssl.cipher.suites": f"{TLS12_SUITE},TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
        "listener.name.tls13.ssl.cipher.suites": TLS13_SUITE,
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": "2",
    }
    with EmbeddedBroker(config=config) as b:
        b.addr = {name: f"127.0.0.1:{port}" for name, (_, port) in b.core.endpoints.items()}
        yield b


def handshake(addr, ca_file, ciphers=None, max_version=None):
    """(version, cipher) a Python ssl client negotiates with ``addr``."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if ciphers:
        ctx.set_ciphers(ciphers)
    if max_version:
        ctx.maximum_version = max_version
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.version(), s.cipher()[0]


def test_a_listener_negotiates_only_the_suites_it_lists(broker, pki):
    # Clients offering every default suite and TLS 1.3 get the listed suite, at the version it serves.
    assert handshake(broker.addr["TLS12"], pki.ca_file) == ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")
    assert handshake(broker.addr["TLS13"], pki.ca_file) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384")
    # A client that offers only other suites, or only TLS 1.2 to the TLS 1.3 listener, is refused.
    with pytest.raises(ssl.SSLError):
        handshake(broker.addr["TLS12"], pki.ca_file, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256",
                  max_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        handshake(broker.addr["TLS13"], pki.ca_file, max_version=ssl.TLSVersion.TLSv1_2)


def test_confluent_kafka_over_both_listeners_and_refused_with_other_suites(broker, pki):
    for listener in ("TLS12", "TLS13"):
        conf = {"bootstrap.servers": broker.addr[listener], "security.protocol": "SSL",
                "ssl.ca.location": pki.ca_file}
        round_trip_confluent(conf, f"suites-{listener}".lower(), n=10)
    errors = failures_of({"bootstrap.servers": broker.addr["TLS12"], "security.protocol": "SSL",
                          "ssl.ca.location": pki.ca_file, "ssl.cipher.suites": "ECDHE-ECDSA-AES128-GCM-SHA256"})
    assert errors and any("SSL" in e.str() or "handshake" in e.str().lower() for e in errors), errors


JAVA_HANDSHAKE = r"""
import java.util.*;
import org.apache.kafka.clients.admin.*;

public class JavaHandshake {
  public static void main(String[] a) throws Exception {
    // args: bootstrap [key=value ...]: prints "ok <brokers>" or "failed <exception>"
    Properties p = new Properties();
    p.put("bootstrap.servers", a[0]);
    for (String kv : Arrays.copyOfRange(a, 1, a.length)) p.put(kv.substring(0, kv.indexOf('=')), kv.substring(kv.indexOf('=') + 1));
    try (Admin admin = Admin.create(p)) {
      System.out.println("ok " + admin.describeCluster().nodes().get().size());
    } catch (Exception e) {
      Throwable t = e.getCause() != null ? e.getCause() : e;
      System.out.println("failed " + t.getClass().getSimpleName());
    }
  }
}
"""


def test_java_client_with_kafkas_suite_names(broker, pki, tmp_path):
    """The Java client 4.x with ``ssl.cipher.suites`` set as a Kafka user sets
    it: 5 records produced and read back in a group over each listener; a
    client listing only another TLS 1.3 suite fails its handshake."""
    from tests.integration.java_client import run_java

    trust = ["security.protocol=SSL", "ssl.truststore.type=PEM", f"ssl.truststore.location={pki.ca_file}"]
    out = run_java(tmp_path, "JavaLogins", JAVA_LOGINS,
                   ["tls12", broker.addr["TLS12"], *trust, f"ssl.cipher.suites={TLS12_SUITE}", "--",
                    "tls13", broker.addr["TLS13"], *trust, f"ssl.cipher.suites={TLS13_SUITE}"])
    assert out.split("\n")[:2] == ["tls12 5", "tls13 5"], out
    out = run_java(tmp_path, "JavaHandshake", JAVA_HANDSHAKE,
                   [broker.addr["TLS13"], *trust, "ssl.cipher.suites=TLS_AES_128_GCM_SHA256",
                    "default.api.timeout.ms=10000", "request.timeout.ms=5000"])
    # The admin client retries a failed handshake until its timeout.
    assert out.strip() in ("failed SslAuthenticationException", "failed TimeoutException"), out
