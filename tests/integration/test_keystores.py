"""Java keystores and truststores, made at test time by cryptography and by
Java's keytool: PKCS12 (``ssl.keystore.type=PKCS12`` with its password) and
JKS, Kafka's default type, in the settings Kafka's documentation gives (no
type, ``.jks`` files: real JKS stores, and the PKCS12 ones keytool makes by
default under those names), serving TLS to confluent-kafka and kafka-python
with client certificates; the CLI's ``--command-config`` reading a JKS
truststore and a PKCS12 keystore. JCEKS and wrong passwords are refused at
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
    for kind in ("JKS", "JCEKS"):
        keytool("-importkeystore", "-srckeystore", str(d / "java.p12"), "-srcstoretype", "PKCS12",
                "-srcstorepass", "java-secret", "-destkeystore", str(d / f"java.{kind.lower()}"),
                "-deststoretype", kind, "-deststorepass", "java-secret")
    # The CA of the client certificates, in a JKS truststore, and in one keytool makes by default (PKCS12).
    keytool("-importcert", "-noprompt", "-alias", "ca", "-file", pki.ca_file, "-keystore", str(d / "trust.jks"),
            "-storetype", "JKS", "-storepass", "ts-secret")
    keytool("-importcert", "-noprompt", "-alias", "ca", "-file", pki.ca_file, "-keystore",
            str(d / "default-trust.jks"), "-storepass", "ts-secret")
    # Kafka's documentation: keytool -keystore server.keystore.jks -genkey, no -storetype (PKCS12 since JDK 9).
    keytool("-genkeypair", "-alias", "localhost", "-keyalg", "RSA", "-dname", "CN=localhost,O=odradek",
            "-ext", "SAN=dns:localhost,ip:127.0.0.1", "-validity", "2", "-keystore", str(d / "server.keystore.jks"),
            "-storepass", "test1234")
    keytool("-exportcert", "-rfc", "-alias", "localhost", "-keystore", str(d / "server.keystore.jks"),
            "-storepass", "test1234", "-file", str(d / "server-ca.pem"))
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
    round_trip_as_alice(b, stores.ca_file, stores, "p12")


def round_trip_as_alice(b, cafile, stores, topic: str) -> None:
    """confluent-kafka with alice's certificate, trusting ``cafile``: five records
    written and read back, the broker seeing alice's principal meanwhile."""
    conf = {"bootstrap.servers": addresses(b)["TLS"], "security.protocol": "SSL", "ssl.ca.location": str(cafile),
            "ssl.certificate.location": stores.alice["crt"], "ssl.key.location": stores.alice["key"]}
    round_trip_confluent(conf, topic, n=5, while_connected=lambda: principals(b.broker, "TLS") == {
        f"User:{ALICE_DN}"} or pytest.fail(str(principals(b.broker, "TLS"))))


def test_a_keytool_pkcs12_keystore(odradek_broker_factory, stores):
    b = odradek_broker_factory(config=tls_listener(**{
        "ssl.keystore.type": "PKCS12", "ssl.keystore.location": str(stores.d / "java.p12"),
        "ssl.keystore.password": "java-secret"}))
    round_trip_kafka_python(addresses(b)["TLS"], stores.d / "java-ca.pem", "p12-java")


def addresses(b) -> dict:
    return {name: f"127.0.0.1:{port}" for name, (_, port) in b.broker.core.endpoints.items()}


def round_trip_kafka_python(addr: str, cafile, topic: str) -> None:
    """kafka-python over SSL, trusting ``cafile``: one record written and read back."""
    from kafka import KafkaConsumer, KafkaProducer

    kw = dict(bootstrap_servers=addr, security_protocol="SSL", ssl_cafile=str(cafile))
    p = KafkaProducer(**kw)
    p.send(topic, b"hello").get(20)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=15000, **kw)
    assert next(c).value == b"hello"
    c.close()


@pytest.mark.parametrize("keystore, truststore", [("java.jks", "trust.jks"), ("java.jks", "default-trust.jks")])
def test_jks_stores_in_kafkas_settings(odradek_broker_factory, stores, keystore, truststore):
    """No ssl.*.type (Kafka's default, JKS), the key's password given apart:
    a real JKS keystore, and a JKS or keytool's default truststore requiring
    client certificates."""
    b = odradek_broker_factory(config=tls_listener(**{
        "ssl.keystore.location": str(stores.d / keystore), "ssl.keystore.password": "java-secret",
        "ssl.key.password": "java-secret", "ssl.truststore.location": str(stores.d / truststore),
        "ssl.truststore.password": "ts-secret", "ssl.client.auth": "required"}))
    round_trip_as_alice(b, stores.d / "java-ca.pem", stores, "jks")


def test_the_keystore_of_kafkas_documentation(odradek_broker_factory, stores):
    """``keytool -keystore server.keystore.jks -genkey`` (a PKCS12 file under a
    .jks name, as keytool makes since JDK 9) with Kafka's documented
    settings, ssl.keystore.type also said to be JKS, and the documentation's
    ``ssl.enabled.protocols=TLSv1.2,TLSv1.1,TLSv1`` (Java accepts the old
    names and never negotiates them; so here): kafka-python connects, over
    TLS 1.2."""
    import socket
    import ssl

    b = odradek_broker_factory(config=tls_listener(**{
        "ssl.keystore.type": "JKS", "ssl.keystore.location": str(stores.d / "server.keystore.jks"),
        "ssl.keystore.password": "test1234", "ssl.key.password": "test1234",
        "ssl.enabled.protocols": "TLSv1.2,TLSv1.1,TLSv1"}))
    round_trip_kafka_python(addresses(b)["TLS"], stores.d / "server-ca.pem", "jks-docs")
    host, port = addresses(b)["TLS"].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(stores.d / "server-ca.pem"))
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() == "TLSv1.2"


def test_the_cli_reads_java_stores_in_a_command_config(odradek_broker_factory, stores, tmp_path):
    """``--command-config`` as Kafka's tools take it: a JKS truststore (no
    type) and a PKCS12 keystore holding the client's certificate, with
    client certificates required."""
    from tests.integration.test_cli import cli

    b = odradek_broker_factory(config=tls_listener(**{
        "ssl.keystore.location": str(stores.d / "java.jks"), "ssl.keystore.password": "java-secret",
        "ssl.truststore.location": str(stores.d / "trust.jks"), "ssl.truststore.password": "ts-secret",
        "ssl.client.auth": "required"}))
    key = serialization.load_pem_private_key(open(stores.alice["key"], "rb").read(), None)
    cert = x509.load_pem_x509_certificate(open(stores.alice["crt"], "rb").read())
    (tmp_path / "alice.p12").write_bytes(pkcs12.serialize_key_and_certificates(
        b"alice", key, cert, None, serialization.BestAvailableEncryption(b"alice-secret")))
    keytool("-importcert", "-noprompt", "-alias", "broker", "-file", str(stores.d / "java-ca.pem"), "-keystore",
            str(tmp_path / "client-trust.jks"), "-storetype", "JKS", "-storepass", "ct-secret")
    props = tmp_path / "client.properties"
    props.write_text(f"security.protocol=SSL\nssl.truststore.location={tmp_path / 'client-trust.jks'}\n"
                     f"ssl.truststore.password=ct-secret\nssl.keystore.type=PKCS12\n"
                     f"ssl.keystore.location={tmp_path / 'alice.p12'}\nssl.keystore.password=alice-secret\n")
    cli(addresses(b)["TLS"], "topic", "create", "jks-cli", "-p", "1", "--command-config", str(props))
    assert "jks-cli" in cli(addresses(b)["TLS"], "topic", "list", "--command-config", str(props)).out.split()
    props.write_text(props.read_text().replace("alice-secret", "wrong"))
    refused = cli(addresses(b)["TLS"], "topic", "list", "--command-config", str(props), expect=2)
    assert "wrong ssl.keystore.password" in refused.err


@pytest.mark.parametrize("extra, message", [
    ({"ssl.keystore.location": "java.jceks", "ssl.keystore.password": "java-secret"}, "keytool -importkeystore"),
    ({"ssl.keystore.location": "java.jks", "ssl.keystore.password": "wrong"}, "password is incorrect"),
    ({"ssl.keystore.location": "java.jks", "ssl.keystore.password": "java-secret", "ssl.key.password": "no"},
     "wrong ssl.key.password"),
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
