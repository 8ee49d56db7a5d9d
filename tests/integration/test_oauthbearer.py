"""SASL/OAUTHBEARER with real clients: confluent-kafka (librdkafka's unsecured
JWT and an oauth_cb), kafka-python and aiokafka (token providers) and the Java
client (Kafka's unsecured login module) log in over SASL_SSL with unsecured
JWS tokens checked by Kafka's unsecured validator (named, and as the
default), configured with Kafka's keys. A bad
token, an expired one and one without the required scope are refused with
SASL_AUTHENTICATION_FAILED while others keep working; the token's expiry
bounds the session."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from odradek.protocol import errors
from odradek.security.oauthbearer import unsecured_jws
from tests.integration.certs import server_pki
from tests.integration.java_client import run_java
from tests.integration.oidc import idp  # noqa: F401  (a fixture)
from tests.integration.test_security import Raw, failures_of

pytestmark = pytest.mark.timeout(180)

JAAS = ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        'unsecuredValidatorRequiredScope="kafka" unsecuredValidatorAllowableClockSkewMs="0";')


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return server_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def broker(pki):
    """OAUTHBEARER on SASL_PLAINTEXT (OAUTH, for the byte-level checks) and on
    SASL_SSL (OAUTH_TLS, for the clients), Kafka's keys."""
    from odradek.embedded import EmbeddedBroker

    config = {
        "listeners": "INTERNAL://127.0.0.1:0,OAUTH://127.0.0.1:0,OAUTH_TLS://127.0.0.1:0",
        "listener.security.protocol.map": "INTERNAL:PLAINTEXT,OAUTH:SASL_PLAINTEXT,OAUTH_TLS:SASL_SSL",
        "inter.broker.listener.name": "INTERNAL",
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.oauth.oauthbearer.sasl.jaas.config": JAAS,
        "listener.name.oauth.oauthbearer.sasl.server.callback.handler.class":
            "org.apache.kafka.common.security.oauthbearer.internals.unsecured."
            "OAuthBearerUnsecuredValidatorCallbackHandler",
        "listener.name.oauth_tls.oauthbearer.sasl.jaas.config": JAAS,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": pki.server["pem"],
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": "2",
        "connection.failed.authentication.delay.ms": "10",
    }
    with EmbeddedBroker(config=config) as b:
        b.addr = {name: f"127.0.0.1:{port}" for name, (_, port) in b.core.endpoints.items()}
        yield b


def token(sub="alice", life=3600.0, scope=("kafka",), **claims):
    now = time.time()
    body = {"sub": sub, "iat": now - 1, "exp": now + life, "scope": list(scope)}
    body.update(claims)
    return unsecured_jws(body)


def oauth_principals(b):
    return {str(c.principal) for c in list(b.core.connections) if c.listener == "OAUTH"}


def confluent_conf(b, **extra):
    conf = {"bootstrap.servers": b.addr["OAUTH"], "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER"}
    conf.update(extra)
    return conf


def tls_conf(b, pki, **extra):
    """The same over SASL_SSL, the host name checked."""
    return confluent_conf(b, **{"bootstrap.servers": b.addr["OAUTH_TLS"], "security.protocol": "SASL_SSL",
                                "ssl.ca.location": pki.ca_file}, **extra)


def round_trip(conf, topic, n=5):
    from confluent_kafka import Consumer, Producer

    p = Producer(dict(conf, **{"linger.ms": 5}))
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode())
    assert p.flush(30) == 0
    c = Consumer(dict(conf, **{"group.id": f"g-{topic}", "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert got == [f"v{i}".encode() for i in range(n)]


def test_confluent_kafka_unsecured_jwt(broker, pki):
    """librdkafka makes the unsecured token itself (enable.sasl.oauthbearer.unsecure.jwt), over TLS."""
    conf = tls_conf(broker, pki, **{"enable.sasl.oauthbearer.unsecure.jwt": True,
                                     "sasl.oauthbearer.config": "principal=carol scope=kafka,other"})
    p = produce_one(conf, "oauth-librdkafka")
    assert "User:carol" in {str(c.principal) for c in list(broker.core.connections) if c.listener == "OAUTH_TLS"}
    del p
    round_trip(conf, "oauth-librdkafka-group")


def produce_one(conf, topic):
    from confluent_kafka import Producer

    p = Producer(conf)
    p.produce(topic, b"x")
    assert p.flush(20) == 0
    return p


def test_confluent_kafka_oauth_cb_and_the_principal(broker):
    p = produce_one(confluent_conf(broker, oauth_cb=lambda _cfg: (token("dave"), time.time() + 3600, "dave")),
                    "oauth-cb")
    seen = oauth_principals(broker)
    assert "User:dave" in seen, seen
    del p


@pytest.fixture(scope="module")
def other(broker):
    """A producer logged in with a good token, kept across the bad-token cases."""
    p = produce_one(confluent_conf(broker, oauth_cb=lambda _cfg: (token("erin"), time.time() + 3600, "erin")),
                    "before-bad-tokens")
    yield p
    p.flush(5)


@pytest.mark.parametrize("bad, expected", [
    (lambda: "not-a-jws", "invalid_token"),
    (lambda: token(life=-5), "invalid_token"),  # expired
    (lambda: token(scope=("other",)), "insufficient_scope"),
    (lambda: unsecured_jws({"sub": "a", "exp": time.time() + 60}, {"alg": "HS256"}), "invalid_token"),
])
def test_bad_tokens_are_refused_and_others_keep_working(broker, other, bad, expected):
    value = bad()
    errs = failures_of(confluent_conf(broker, oauth_cb=lambda _cfg: (value, time.time() + 3600, "x")))
    assert errs and any(expected in e.str() for e in errs), [e.str() for e in errs]
    # The same exchange byte by byte: Kafka's JSON, the client's %x01, SASL_AUTHENTICATION_FAILED.
    r = Raw(broker.addr["OAUTH"])
    assert r.request("SaslHandshake", 1, {"mechanism": "OAUTHBEARER"})["error_code"] == 0
    first = f"n,,\x01auth=Bearer {value}\x01\x01".encode()
    resp = r.request("SaslAuthenticate", 2, {"auth_bytes": first})
    assert resp["error_code"] == 0 and expected.encode() in resp["auth_bytes"], resp
    resp = r.request("SaslAuthenticate", 2, {"auth_bytes": b"\x01"})
    assert resp["error_code"] == errors.SASL_AUTHENTICATION_FAILED and expected in resp["error_message"]
    assert r.closed()
    other.produce("after-bad-token", b"x")  # a client logged in before goes on
    assert other.flush(10) == 0


def test_a_malformed_first_message_fails_at_once(broker):
    r = Raw(broker.addr["OAUTH"])
    r.request("SaslHandshake", 1, {"mechanism": "OAUTHBEARER"})
    resp = r.request("SaslAuthenticate", 2, {"auth_bytes": b"n,,auth=Bearer x"})
    assert resp["error_code"] == errors.SASL_AUTHENTICATION_FAILED and r.closed()


def test_the_token_expiry_bounds_the_session(broker):
    r = Raw(broker.addr["OAUTH"])
    r.request("SaslHandshake", 1, {"mechanism": "OAUTHBEARER"})
    resp = r.request("SaslAuthenticate", 2, {"auth_bytes": f"n,,\x01auth=Bearer {token(life=1.5)}\x01\x01".encode()})
    assert resp["error_code"] == 0 and 0 < resp["session_lifetime_ms"] <= 1510  # ms rounding
    assert r.request("Metadata", 9, {"topics": None})["brokers"]
    time.sleep(resp["session_lifetime_ms"] / 1000 + 0.1)  # the token has expired, no re-authentication: the next request closes the connection
    r.send("Metadata", 9, {"topics": None})
    assert r.recv_frame() is None


def test_librdkafka_renews_its_token_on_the_same_connection(broker):
    """Tokens of 8 s: librdkafka asks for a new one (at 80% of its life) and
    re-authenticates (KIP-368, at 90% of the session) before the session
    ends, so its connections stay. (With 3 s and then 5 s tokens on a loaded
    machine, librdkafka's timers slipped past the 10% between the two and it
    re-authenticated with the old token as it expired.)"""
    from confluent_kafka import Producer

    calls = []
    life = 8.0

    def cb(_cfg):
        calls.append(time.monotonic())
        return token("frank", life=life), time.time() + life, "frank"

    p = Producer(confluent_conf(broker, oauth_cb=cb))
    p.produce("oauth-renew", b"x")
    assert p.flush(10) == 0
    before = {c for c in broker.core.connections if str(c.principal) == "User:frank"}
    deadline = time.monotonic() + life + 1.5
    while time.monotonic() < deadline:
        p.produce("oauth-renew", b"x")
        assert p.flush(10) == 0
        time.sleep(0.2)
    assert len(calls) >= 2, "librdkafka did not refresh its token"
    assert before & set(broker.core.connections), "the connection was closed instead of re-authenticated"


def test_kafka_python_token_provider(broker, pki):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class Provider(AbstractTokenProvider):
        def token(self):
            return token("gina")

    kw = dict(bootstrap_servers=broker.addr["OAUTH_TLS"], security_protocol="SASL_SSL", ssl_cafile=pki.ca_file,
              sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=Provider())
    p = KafkaProducer(**kw)
    p.send("oauth-kp", b"hello").get(20)
    p.close()
    c = KafkaConsumer("oauth-kp", auto_offset_reset="earliest", consumer_timeout_ms=15000, **kw)
    assert next(c).value == b"hello"
    c.close()


def test_aiokafka_token_provider(broker, pki):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.abc import AbstractTokenProvider

    class Provider(AbstractTokenProvider):
        async def token(self):
            return token("hank")

    async def main():
        from aiokafka.helpers import create_ssl_context

        kw = dict(bootstrap_servers=broker.addr["OAUTH_TLS"], security_protocol="SASL_SSL",
                  ssl_context=create_ssl_context(cafile=pki.ca_file),
                  sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=Provider())
        p = AIOKafkaProducer(**kw)
        await p.start()
        try:
            await p.send_and_wait("oauth-aio", b"hello")
        finally:
            await p.stop()
        c = AIOKafkaConsumer("oauth-aio", auto_offset_reset="earliest", **kw)
        await c.start()
        try:
            m = await asyncio.wait_for(c.getone(), 20)
        finally:
            await c.stop()
        return m.value

    assert asyncio.run(main()) == b"hello"


JAVA = r"""
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.serialization.*;

public class JavaOAuth {
  static String ca;

  static Properties conf(String bs, String options) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bs);
    p.put("security.protocol", "SASL_SSL");
    p.put("ssl.truststore.type", "PEM");
    p.put("ssl.truststore.location", ca);
    p.put("sasl.mechanism", "OAUTHBEARER");
    p.put("sasl.jaas.config", "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        + options + ";");
    return p;
  }

  public static void main(String[] a) throws Exception {
    String bs = a[0], topic = "oauth-java";
    ca = a[1];
    String good = "unsecuredLoginStringClaim_sub=\"ivy\" unsecuredLoginListClaim_scope=\",kafka\"";
    try (KafkaProducer<String, String> p = new KafkaProducer<>(conf(bs, good), new StringSerializer(), new StringSerializer())) {
      for (int i = 0; i < 5; i++) p.send(new ProducerRecord<>(topic, "k" + i, "v" + i)).get();
      System.out.println("produced 5");
    }
    Properties cp = conf(bs, good);
    cp.put("group.id", "oauth-java");
    cp.put("auto.offset.reset", "earliest");
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
      c.subscribe(List.of(topic));
      int got = 0;
      long deadline = System.currentTimeMillis() + 60000;
      while (got < 5 && System.currentTimeMillis() < deadline) got += c.poll(Duration.ofMillis(500)).count();
      System.out.println("consumed " + got);
    }
    Properties bad = conf(bs, "unsecuredLoginStringClaim_sub=\"ivy\" unsecuredLoginListClaim_scope=\",other\"");
    bad.put("request.timeout.ms", "5000");
    bad.put("default.api.timeout.ms", "8000");
    try (Admin admin = Admin.create(bad)) {
      admin.describeCluster().nodes().get();
      System.out.println("wrong scope accepted");
    } catch (java.util.concurrent.ExecutionException e) {
      System.out.println("wrong scope " + (e.getCause() instanceof SaslAuthenticationException
          ? "refused " + e.getCause().getMessage() : e.getCause()));
    }
  }
}
"""


def test_java_client_unsecured_login_module(broker, pki, tmp_path):
    out = run_java(tmp_path, "JavaOAuth", JAVA, [broker.addr["OAUTH_TLS"], pki.ca_file],
                   jvm_opts=["-XX:TieredStopAtLevel=1"])
    lines = out.splitlines()
    assert "produced 5" in lines and "consumed 5" in lines, out
    refused = [l for l in lines if l.startswith("wrong scope")]
    assert refused and refused[0].startswith("wrong scope refused") and "insufficient_scope" in refused[0], out


# -- Kafka's JWKS validator: signed tokens, keys from an HTTP endpoint ----------------------

@pytest.fixture(scope="module")
def jwks():
    """An RSA key (kid k1) served as a JSON Web Key Set over HTTP, and a
    second key the server does not know."""
    import http.server
    import json
    import threading

    jwt = pytest.importorskip("jwt")
    from cryptography.hazmat.primitives.asymmetric import rsa

    keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("k1", "other")}
    doc = {"keys": [dict(json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys["k1"].public_key())),
                         kid="k1", use="sig", alg="RS256")]}
    body = json.dumps(doc).encode()
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", keys, hits
    server.shutdown()


def signed(keys, kid="k1", sign_with=None, **claims):
    import jwt

    now = time.time()
    body = {"sub": "jay", "iat": int(now) - 1, "exp": int(now) + 600, "aud": "kafka", "iss": "https://idp"}
    body.update(claims)
    return jwt.encode(body, keys[sign_with or kid], algorithm="RS256", headers={"kid": kid})


def test_jwks_validator(odradek_broker_factory, jwks):
    url, keys, hits = jwks
    b = odradek_broker_factory(config={
        "listeners": "OAUTH://127.0.0.1:0",
        "listener.security.protocol.map": "OAUTH:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.oauth.oauthbearer.sasl.jaas.config":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;",
        "listener.name.oauth.oauthbearer.sasl.server.callback.handler.class":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
        "sasl.oauthbearer.jwks.endpoint.url": url,
        "sasl.oauthbearer.expected.audience": "kafka,other-audience",
        "sasl.oauthbearer.expected.issuer": "https://idp",
        "sasl.oauthbearer.clock.skew.seconds": "0",
        "connection.failed.authentication.delay.ms": "0",
    })
    conf = {"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER"}
    good = signed(keys)
    p = produce_one(dict(conf, oauth_cb=lambda _c: (good, time.time() + 600, "jay")), "jwks")
    assert "User:jay" in {str(c.principal) for c in list(b.broker.core.connections)}
    assert hits, "the key set was not fetched"
    del p

    def login(value):
        r = Raw(b.bootstrap)
        r.request("SaslHandshake", 1, {"mechanism": "OAUTHBEARER"})
        resp = r.request("SaslAuthenticate", 2, {"auth_bytes": f"n,,\x01auth=Bearer {value}\x01\x01".encode()})
        if resp["error_code"] == 0 and resp["auth_bytes"]:
            resp = r.request("SaslAuthenticate", 2, {"auth_bytes": b"\x01"})
        r.close()
        return resp

    assert login(good)["error_code"] == 0
    for bad in (signed(keys, aud="elsewhere"), signed(keys, iss="https://evil"), signed(keys, sign_with="other"),
                signed(keys, kid="other"), signed(keys, exp=int(time.time()) - 5),
                unsecured_jws({"sub": "jay", "exp": time.time() + 60})):
        resp = login(bad)
        assert resp["error_code"] == errors.SASL_AUTHENTICATION_FAILED and "invalid_token" in resp["error_message"]
    assert login(good)["error_code"] == 0


class ExtensionChecking:
    """A Python validator that also checks SASL extensions (KIP-342): Kafka's
    unsecured validator for the token, and logicalCluster must be lkc-1."""

    def __init__(self, options, props):
        from odradek.security.oauthbearer import UnsecuredValidator

        self.tokens = UnsecuredValidator(options, props)
        self.seen = []

    async def validate(self, value):
        return await self.tokens.validate(value)

    def validate_extensions(self, token, extensions):
        self.seen.append((token.principal_name, extensions))
        if extensions.get("logicalCluster", "lkc-1") != "lkc-1":
            return {"logicalCluster": "unknown cluster"}
        return {}


def test_sasl_extensions_reach_the_validator(broker, odradek_broker_factory):
    """librdkafka's extensions (sasl.oauthbearer.config extension_<name>): Kafka's
    unsecured validator accepts any (the module's broker), and a validator that
    checks them refuses a bad one with Kafka's message, SASL_AUTHENTICATION_FAILED."""
    from confluent_kafka.admin import AdminClient

    ext = {"enable.sasl.oauthbearer.unsecure.jwt": True,
           "sasl.oauthbearer.config": "principal=erin scope=kafka extension_logicalCluster=lkc-2 "
                                      "extension_traceId=abc"}
    p = produce_one(confluent_conf(broker, **ext), "oauth-extensions")  # the default validator takes them
    del p
    b = odradek_broker_factory(config={
        "listeners": "OAUTH://127.0.0.1:0", "listener.security.protocol.map": "OAUTH:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.oauth.oauthbearer.sasl.server.callback.handler.class":
            "tests.integration.test_oauthbearer:ExtensionChecking",
        "connection.failed.authentication.delay.ms": "0"})
    validator = b.broker.core.config.security().listeners["OAUTH"].sasl.oauth_validator
    conf = {"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER"}
    good = dict(conf, **ext)
    good["sasl.oauthbearer.config"] = "principal=erin extension_logicalCluster=lkc-1"
    p = produce_one(good, "oauth-extensions")
    del p
    assert ("erin", {"logicalCluster": "lkc-1"}) in validator.seen
    errs = []
    admin = AdminClient(dict(conf, **ext, error_cb=lambda e: errs.append(e)))
    with pytest.raises(Exception):
        admin.list_topics(timeout=2)
    admin.poll(0.5)  # error callbacks are served by poll
    del admin
    assert any(e.code() == -169 and "1 extensions are invalid! They are: logicalCluster: unknown cluster"
               in e.str() for e in errs), errs  # -169: librdkafka's _AUTHENTICATION
    # Byte by byte: the answer Kafka's server gives
    r = Raw(b.bootstrap)
    r.request("SaslHandshake", 1, {"mechanism": "OAUTHBEARER"})
    resp = r.request("SaslAuthenticate", 2, {"auth_bytes": (
        f"n,,\x01auth=Bearer {token('erin')}\x01logicalCluster=lkc-9\x01\x01").encode()})
    r.close()
    assert resp["error_code"] == errors.SASL_AUTHENTICATION_FAILED
    assert resp["error_message"] == ("Authentication failed: 1 extensions are invalid! They are: "
                                     "logicalCluster: unknown cluster")


# -- The CLI's --command-config with Kafka's OAUTHBEARER client properties -----------------

def test_cli_reads_kafkas_unsecured_oauthbearer_properties(broker, pki, tmp_path):
    """A client.properties written for Kafka's tools, with Kafka's unsecured
    login module, TLS protocols and Java cipher suite names: kafka-topics 4.4
    lists the topics with it, and so does the CLI (librdkafka's unsecured
    JWT, the scope claim sent as Kafka's list); without the scope the
    broker's validator refuses the CLI's login."""
    from tests.integration.test_acl_command import kafka_runtime
    from tests.integration.test_cli import cli

    def write(scope):
        props = tmp_path / "client.properties"
        props.write_text(
            "security.protocol=SASL_SSL\nsasl.mechanism=OAUTHBEARER\n"
            "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \\\n"
            f'    unsecuredLoginStringClaim_sub="cli"{scope} unsecuredLoginLifetimeSeconds="600";\n'
            f"ssl.truststore.type=PEM\nssl.truststore.location={pki.ca_file}\n"
            "ssl.enabled.protocols=TLSv1.2,TLSv1.3\nssl.protocol=TLSv1.3\n"
            "ssl.cipher.suites=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256,"
            "TLS_AES_256_GCM_SHA384,TLS_CHACHA20_POLY1305_SHA256\n")
        return str(props)

    props = write(' unsecuredLoginListClaim_scope=",kafka,other"')
    cli(broker.addr["OAUTH_TLS"], "topic", "create", "cli-oauth", "-p", "1", "--command-config", props)
    listed = cli(broker.addr["OAUTH_TLS"], "topic", "list", "--command-config", props)
    assert "cli-oauth" in listed.out.split() and "warning" not in listed.err, listed.err
    rt = kafka_runtime()
    proc = subprocess.run(rt.java_command("org.apache.kafka.tools.TopicCommand",
                                          ["--bootstrap-server", broker.addr["OAUTH_TLS"], "--command-config", props,
                                           "--list"], heap="256M",
                                          jvm_opts=["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "cli-oauth" in proc.stdout.split(), proc.stdout + proc.stderr
    refused = cli(broker.addr["OAUTH_TLS"], "topic", "list", "--command-config", write(""), "--timeout", "5",
                  expect=None)
    assert refused.returncode != 0 and "cli-oauth" not in refused.out.split()


def test_cli_reads_kafkas_oidc_client_credentials_properties(odradek_broker_factory, idp, tmp_path):
    """Kafka's OAuthBearerLoginCallbackHandler in a client.properties becomes
    librdkafka's OIDC login: the CLI asks the token endpoint with the client
    id and secret of the JAAS line and logs in to a broker that checks the
    token against the provider's key set."""
    from tests.integration.test_cli import cli

    b = odradek_broker_factory(config={
        "listeners": "OAUTH://127.0.0.1:0", "listener.security.protocol.map": "OAUTH:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.oauth.oauthbearer.sasl.server.callback.handler.class":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
        "sasl.oauthbearer.jwks.endpoint.url": idp["jwks"], "sasl.oauthbearer.expected.audience": "kafka",
        "sasl.oauthbearer.allow.unverified.issuer": "true"})
    address = b.bootstrap
    props = tmp_path / "oidc.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n"
        "sasl.login.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler\n"
        f"sasl.oauthbearer.token.endpoint.url={idp['token']}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \\\n"
        '    clientId="broker" clientSecret="broker-secret" scope="kafka";\n')
    cli(address, "topic", "create", "oidc-cli", "-p", "1", "--command-config", str(props))
    assert "oidc-cli" in cli(address, "topic", "list", "--command-config", str(props)).out.split()
    assert idp["asked"] and all(user == "broker:broker-secret" and form.get("grant_type") == ["client_credentials"]
                                for user, form, _type in idp["asked"])
