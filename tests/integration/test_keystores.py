"""PKCS12 keystores and truststores (``ssl.keystore.type=PKCS12``,
``ssl.truststore.type=PKCS12`` with their passwords), made at test time by
cryptography and by Java's keytool, serving TLS to confluent-kafka and
kafka-python; JKS (Kafka's default type) and a wrong password are refused at
start with a message that says what to do."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from odradek.config import BrokerConfig, ConfigError
from tests.integration.certs import make_pki
from tests.integration.test_security import ALICE_DN, principals, round_trip_confluent

pytestmark = pytest.mark.timeout(180)


def keytool(*args):
    if shutil.which("keytool") is None:
        pytest.skip("keytool (Java) is not installed")
    subprocess.run(["keytool", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("stores")
    pki = make_pki(d)
    pki.server = pki.issue("server", "CN=localhost,O=odradek", server=True)
    pki.alice = pki.issue("alice", ALICE_DN)
    key = serialization.load_pem_private_key(open(pki.server["key"], "rb").read(), None)
    chain = x509.load_pem_x509_certificates(open(pki.server["crt"], "rb").read())
    (d / "server.p12").write_bytes(pkcs12.serialize_key_and_certificates(
        b"server", key, chain[0], chain[1:], serialization.BestAvailableEncryption(b"ks-secret")))
    # Java's own truststore: a trusted-certificate entry, which has no key.
    keytool("-importcert", "-noprompt", "-alias", "ca", "-file", pki.ca_file, "-keystore", str(d / "trust.p12"),
            "-storetype", "PKCS12", "-storepass", "ts-secret")
    # A keystore made by keytool (a self-signed certificate for localhost), and a JKS one.
    keytool("-genkeypair", "-alias", "broker", "-keyalg", "EC", "-groupname", "secp256r1",
            "-dname", "CN=localhost,O=odradek", "-ext", "SAN=dns:localhost,ip:127.0.0.1", "-validity", "2",
            "-keystore", str(d / "java.p12"), "-storetype", "PKCS12", "-storepass", "java-secret")
    keytool("-exportcert", "-rfc", "-alias", "broker", "-keystore", str(d / "java.p12"), "-storepass",
            "java-secret", "-file", str(d / "java-ca.pem"))
    keytool("-importkeystore", "-srckeystore", str(d / "java.p12"), "-srcstoretype", "PKCS12", "-srcstorepass",
            "java-secret", "-destkeystore", str(d / "java.jks"), "-deststoretype", "JKS", "-deststorepass",
            "java-secret")
    pki.d = d
    return pki


def tls_listener(**extra):
    config = {"listeners": "INTERNAL://127.0.0.1:0,TLS://127.0.0.1:0",
              "listener.security.protocol.map": "INTERNAL:PLAINTEXT,TLS:SSL",
              "inter.broker.listener.name": "INTERNAL",
              "group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "2"}
    config.update(extra)
    return config


def test_pkcs12_keystore_and_truststore_with_client_certificates(odradek_broker_factory, stores):
    b = odradek_broker_factory(config=tls_listener(**{
        "ssl.keystore.type": "PKCS12", "ssl.keystore.location": str(stores.d / "server.p12"),
        "ssl.keystore.password": "ks-secret", "ssl.key.password": "ks-secret",
        "ssl.truststore.type": "PKCS12", "ssl.truststore.location": str(stores.d / "trust.p12"),
        "ssl.truststore.password": "ts-secret", "ssl.client.auth": "required"}))
    b.addr = {name: f"127.0.0.1:{port}" for name, (_, port) in b.broker.core.endpoints.items()}
    conf = {"bootstrap.servers": b.addr["TLS"], "security.protocol": "SSL", "ssl.ca.location": stores.ca_file,
            "ssl.certificate.location": stores.alice["crt"], "ssl.key.location": stores.alice["key"]}
    round_trip_confluent(conf, "p12", n=5, while_connected=lambda: principals(b.broker, "TLS") == {
        f"User:{ALICE_DN}"} or pytest.fail(str(principals(b.broker, "TLS"))))


def test_a_keytool_pkcs12_keystore(odradek_broker_factory, stores):
    from kafka import KafkaConsumer, KafkaProducer

    b = odradek_broker_factory(config=tls_listener(**{
        "ssl.keystore.type": "PKCS12", "ssl.keystore.location": str(stores.d / "java.p12"),
        "ssl.keystore.password": "java-secret"}))
    addr = {name: f"127.0.0.1:{port}" for name, (_, port) in b.broker.core.endpoints.items()}["TLS"]
    kw = dict(bootstrap_servers=addr, security_protocol="SSL", ssl_cafile=str(stores.d / "java-ca.pem"))
    p = KafkaProducer(**kw)
    p.send("p12-java", b"hello").get(20)
    p.close()
    c = KafkaConsumer("p12-java", auto_offset_reset="earliest", consumer_timeout_ms=15000, **kw)
    assert next(c).value == b"hello"
    c.close()


@pytest.mark.parametrize("extra, message", [
    ({"ssl.keystore.type": "JKS", "ssl.keystore.location": "java.jks", "ssl.keystore.password": "java-secret"},
     "keytool -importkeystore"),
    ({"ssl.keystore.location": "java.jks", "ssl.keystore.password": "java-secret"},  # Kafka's default type
     "JKS \\(Kafka's default\\) is not served"),
    ({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": "java.p12", "ssl.keystore.password": "wrong"},
     "wrong ssl.keystore.password"),
    ({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": "server.p12", "ssl.keystore.password": "ks-secret",
      "ssl.truststore.type": "PKCS12", "ssl.truststore.location": "trust.p12", "ssl.truststore.password": "no"},
     "PKCS12 truststore"),
    ({"ssl.keystore.type": "PKCS12"}, "needs ssl.keystore.location"),
])
def test_refused_keystores(stores, extra, message):
    props = tls_listener(**{k: str(stores.d / v) if k.endswith("location") else v for k, v in extra.items()})
    with pytest.raises(ConfigError, match=message):
        BrokerConfig(props=props).security()
