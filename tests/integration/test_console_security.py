"""The console on a secured broker: embedded, it logs in as the broker does
on its inter-broker listener (SASL PLAIN over TLS, a super user under ACLs);
alone, ``odradek console`` logs in with librdkafka's property names
(SASL_PLAINTEXT, SASL_SSL with a CA file), and what the authorizer refuses
shows as an error page."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from odradek.embedded import EmbeddedBroker
from tests.conftest import free_port, wait_port
from tests.integration.certs import make_pki
from tests.integration.test_console import Web, assert_readable_error

pytestmark = pytest.mark.timeout(60)

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
        'password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')
CONFIG = {
    "listeners": "SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
    "inter.broker.listener.name": "SASL_SSL",
    "sasl.enabled.mechanisms": "PLAIN",
    "sasl.mechanism.inter.broker.protocol": "PLAIN",
    "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
    "listener.name.sasl_ssl.plain.sasl.jaas.config": JAAS,
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "super.users": "User:admin",
    "auto.create.topics.enable": "false",
    "offsets.topic.num.partitions": "2",
    "http.listener": "127.0.0.1:0",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = make_pki(tmp_path_factory.mktemp("pki"))
    p.server = p.issue("server", "CN=localhost,O=odradek", server=True)
    return p


def tls(pki):
    return {"ssl.keystore.type": "PEM", "ssl.keystore.location": pki.server["pem"],
            "ssl.truststore.type": "PEM", "ssl.truststore.location": pki.ca_file}


@pytest.fixture(scope="module")
def broker(pki):
    with EmbeddedBroker(config={**CONFIG, **tls(pki)}) as b:
        b.addr = "127.0.0.1:%d" % b.core.endpoints["SASL_PLAINTEXT"][1]
        b.tls_addr = "127.0.0.1:%d" % b.core.endpoints["SASL_SSL"][1]
        yield b


def test_embedded_console_logs_in_as_the_broker(broker):
    web = Web(broker.http_address)
    assert web.post("/topics", {"name": "guarded", "partitions": "2"}).status == 303
    r = web.post("/topics/guarded/produce", {"partition": "0", "value": "inside"})
    assert r.status == 303, r.text
    assert "inside" in web.get(r.getheader("location")).text
    assert re.search(r'<span class="n">1</span> brokers', web.get("/").text)


def run_console(broker, tmp_path, *props, bootstrap=None):
    port = free_port()
    args = [sys.executable, "-m", "odradek", "console", "-b", bootstrap or broker.addr,
            "--http", f"127.0.0.1:{port}"]
    for p in props:
        args += ["-X", p]
    log = open(tmp_path / "console.log", "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, proc=proc)
    return proc, Web(("127.0.0.1", port))


def test_odradek_console_logs_in_and_meets_the_authorizer(broker, pki, tmp_path):
    Web(broker.http_address).post("/topics", {"name": "guarded", "partitions": "2"})
    login = ["security.protocol=SASL_PLAINTEXT", "sasl.mechanism=PLAIN", "sasl.username=alice"]
    proc, web = run_console(broker, tmp_path, *login, "sasl.password=alice-secret")
    try:
        page = web.get("/topics")
        assert page.status == 200 and "guarded" not in page.text  # alice may not describe it
        assert_readable_error(web.post("/topics", {"name": "alices"}), 403, "AUTHORIZATION_FAILED")
    finally:
        proc.terminate()
        proc.wait(10)
    proc, web = run_console(broker, tmp_path, *login, "sasl.password=wrong")
    try:
        assert_readable_error(web.get("/"), 502, "SASL login refused")
    finally:
        proc.terminate()
        proc.wait(10)
    proc, web = run_console(broker, tmp_path, "security.protocol=SASL_SSL", "sasl.mechanism=PLAIN",
                            "sasl.username=admin", "sasl.password=admin-secret", f"ssl.ca.location={pki.ca_file}",
                            bootstrap=broker.tls_addr)
    try:
        assert "guarded" in web.get("/topics").text
    finally:
        proc.terminate()
        proc.wait(10)


def test_without_a_login_for_itself_the_console_says_why(pki):
    config = {k: v for k, v in {**CONFIG, **tls(pki)}.items()
              if k not in ("sasl.mechanism.inter.broker.protocol", "inter.broker.listener.name")}
    with EmbeddedBroker(config=config) as b:
        web = Web(b.http_address)
        r = web.get("/")
        assert r.status == 503 and "sasl.mechanism.inter.broker.protocol" in r.text
        assert web.get("/metrics").status == 200
