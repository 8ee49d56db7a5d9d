"""The HTTP listener with TLS and a login (``http.listener=https://...``,
``http.ssl.*``, ``http.authentication=sasl``): the broker's SASL users (PLAIN
from the JAAS line, SCRAM from the cluster metadata) log in to the console
with a form (a signed session cookie) or HTTP Basic (``/metrics``, scripts),
and the console acts as that user: the brokers' authoriser decides what it
lists and what it may change."""

from __future__ import annotations

import base64
import os
import shutil
import http.client
import re
import socket
import ssl
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from odradek.embedded import EmbeddedBroker
from tests.integration.certs import server_pki
from tests.integration.test_console import assert_readable_error

pytestmark = pytest.mark.timeout(60)

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
        'password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')
CONFIG = {
    "listeners": "INTERNAL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
    "listener.security.protocol.map": "INTERNAL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT",
    "inter.broker.listener.name": "INTERNAL",
    "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
    "sasl.mechanism.inter.broker.protocol": "PLAIN",
    "listener.name.internal.plain.sasl.jaas.config": JAAS,
    "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "super.users": "User:admin",
    "auto.create.topics.enable": "false",
    "offsets.topic.num.partitions": "2",
    "connection.failed.authentication.delay.ms": "20",
    "http.listener": "https://127.0.0.1:0",
    "http.authentication": "sasl",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return server_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def broker(pki):
    tls = {"ssl.keystore.type": "PEM", "ssl.keystore.location": pki.server["pem"],
           "ssl.truststore.type": "PEM", "ssl.truststore.location": pki.ca_file,
           "http.ssl.keystore.type": "PEM", "http.ssl.keystore.location": pki.server["pem"]}
    with EmbeddedBroker(config={**CONFIG, **tls}) as b:
        b.addr = "127.0.0.1:%d" % b.core.endpoints["SASL_PLAINTEXT"][1]
        from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, NewTopic,
                                           ResourcePatternType, ResourceType, ScramCredentialInfo,
                                           ScramMechanism, UserScramCredentialUpsertion)

        admin = AdminClient({"bootstrap.servers": b.addr, "security.protocol": "SASL_PLAINTEXT",
                             "sasl.mechanism": "PLAIN", "sasl.username": "admin", "sasl.password": "admin-secret"})
        for f in admin.create_topics([NewTopic("open-topic", 1), NewTopic("secret-topic", 1)]).values():
            f.result(15)
        for f in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
                "bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"bob-secret")]).values():
            f.result(15)
        acls = [AclBinding(ResourceType.TOPIC, "open-topic", ResourcePatternType.LITERAL, "User:alice", "*",
                           AclOperation.DESCRIBE, AclPermissionType.ALLOW),
                AclBinding(ResourceType.TOPIC, "open-topic", ResourcePatternType.LITERAL, "User:bob", "*",
                           AclOperation.ALL, AclPermissionType.ALLOW),
                AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, "User:bob", "*",
                           AclOperation.DESCRIBE, AclPermissionType.ALLOW)]
        for f in admin.create_acls(acls).values():
            f.result(15)
        yield b


class Https:
    """An HTTPS client of the console that trusts the test CA and keeps its cookie."""

    def __init__(self, address, pki, basic=None):
        self.address = address
        self.ctx = ssl.create_default_context(cafile=pki.ca_file)
        self.cookie = None
        self.basic = basic

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPSConnection("localhost", self.address[1], context=self.ctx, timeout=15)
        headers = dict(headers or {})
        if self.cookie:
            headers["cookie"] = self.cookie
        if self.basic:
            headers["authorization"] = "Basic " + base64.b64encode(":".join(self.basic).encode()).decode()
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.body = resp.read()
        resp.text = resp.body.decode("utf-8", "replace")
        conn.close()
        set_cookie = resp.getheader("set-cookie")
        if set_cookie:
            self.cookie = set_cookie.split(";")[0]
        return resp

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, form):
        return self.request("POST", path, urlencode(form), {"content-type": "application/x-www-form-urlencoded"})

    def token(self, path="/topics"):
        return re.search(r'name="csrf" value="([^"]+)"', self.get(path).text).group(1)

    def login(self, user, password):
        return self.post("/login", {"csrf": self.token("/login"), "user": user, "password": password})


def test_https_with_the_test_ca_and_plain_http_refused(broker, pki):
    web = Https(broker.http_address, pki)
    r = web.get("/topics")
    assert r.status == 303 and r.getheader("location") == "/login?next=%2Ftopics"
    assert web.get("/login").status == 200
    plain = http.client.HTTPConnection(*broker.http_address, timeout=5)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        plain.request("GET", "/metrics")
        assert plain.getresponse().status != 200


def test_metrics_take_http_basic(broker, pki):
    r = Https(broker.http_address, pki).get("/metrics")
    assert r.status == 401 and r.getheader("www-authenticate").startswith("Basic")
    assert Https(broker.http_address, pki, basic=("alice", "wrong")).get("/metrics").status == 401
    r = Https(broker.http_address, pki, basic=("admin", "admin-secret")).get("/metrics")
    assert r.status == 200 and "odradek_requests_total" in r.text
    r = Https(broker.http_address, pki, basic=("alice", "alice-secret")).get("/metrics")
    assert r.status == 403 and "DESCRIBE the cluster" in r.text  # the series name every topic
    assert Https(broker.http_address, pki, basic=("bob", "bob-secret")).get("/metrics").status == 200  # SCRAM


def test_wrong_password_is_refused(broker, pki):
    web = Https(broker.http_address, pki)
    for user, password in (("alice", "wrong"), ("nobody", "x"), ("bob", "alice-secret"), ("alice", "")):
        r = web.login(user, password)
        assert r.status in (400, 401) and web.cookie is None
        assert "Wrong user name or password" in r.text or r.status == 400
    assert web.get("/topics").status == 303
    forged = Https(broker.http_address, pki)
    forged.cookie = "odradek_session=abc.99999999999.0000"
    assert forged.get("/topics").status == 303


def test_each_user_sees_and_changes_what_the_acls_allow(broker, pki):
    admin = Https(broker.http_address, pki)
    r = admin.login("admin", "admin-secret")
    assert r.status == 303 and "HttpOnly" in r.getheader("set-cookie") and "Secure" in r.getheader("set-cookie")
    topics = admin.get("/topics").text
    assert "open-topic" in topics and "secret-topic" in topics and "User:admin" in topics

    alice = Https(broker.http_address, pki)
    assert alice.login("alice", "alice-secret").status == 303
    topics = alice.get("/topics").text
    assert "open-topic" in topics and "secret-topic" not in topics and "User:alice" in topics
    assert alice.get("/topics/open-topic").status == 200
    assert alice.get("/").status == 200 and alice.get("/groups").status == 200  # what she may see of them
    assert alice.get("/topics/secret-topic").status in (403, 404)
    token = alice.token()
    assert_readable_error(alice.post("/topics/open-topic/partitions", {"csrf": token, "count": "3"}), 403,
                          "AUTHORIZATION_FAILED")
    assert_readable_error(alice.post("/topics", {"csrf": token, "name": "alices"}), 403, "AUTHORIZATION_FAILED")
    # another session's token is refused
    assert alice.post("/topics/open-topic/partitions", {"csrf": admin.token(), "count": "3"}).status == 403

    bob = Https(broker.http_address, pki)  # a SCRAM user, with ALL on open-topic
    assert bob.login("bob", "bob-secret").status == 303
    assert "secret-topic" not in bob.get("/topics").text
    r = bob.post("/topics/open-topic/partitions", {"csrf": bob.token(), "count": "2"})
    assert r.status == 303, r.text

    # scripted use: HTTP Basic on a page, as the user it names
    assert "secret-topic" not in Https(broker.http_address, pki, basic=("alice", "alice-secret")).get("/topics").text

    token = alice.token()
    r = alice.post("/logout", {"csrf": token})
    assert r.status == 303 and r.getheader("location") == "/login"
    assert alice.get("/topics").status == 303


def test_pkcs12_keystore_and_bad_settings(pki, tmp_path):
    key = serialization.load_pem_private_key(open(pki.server["key"], "rb").read(), None)
    from cryptography import x509

    cert = x509.load_pem_x509_certificates(open(pki.server["crt"], "rb").read())[0]
    (tmp_path / "http.p12").write_bytes(pkcs12.serialize_key_and_certificates(
        b"http", key, cert, None, serialization.BestAvailableEncryption(b"p12-secret")))
    config = {"http.listener": "https://127.0.0.1:0", "http.ssl.keystore.type": "PKCS12",
              "http.ssl.keystore.location": str(tmp_path / "http.p12"),
              "http.ssl.keystore.password": "p12-secret"}
    with EmbeddedBroker(config=config) as b:  # TLS without a login: the pages as before
        r = Https(b.http_address, pki).get("/topics")
        assert r.status == 200 and "Log out" not in r.text
    for bad, phrase in (({**config, "http.ssl.keystore.password": "wrong"}, "PKCS12"),
                        ({"http.listener": "127.0.0.1:0", "http.ssl.keystore.location": "x.pem"}, "https://"),
                        ({"http.listener": "127.0.0.1:0", "http.authentication": "sasl"}, "PLAIN or SCRAM"),
                        ({"http.listener": "127.0.0.1:0", "http.authentication": "ldap"}, "http.authentication")):
        out = subprocess.run([sys.executable, "-m", "odradek", "serve", "--memory", "--port", "0"]
                             + [a for k, v in bad.items() for a in ("-o", f"{k}={v}")],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode != 0 and phrase in out.stderr + out.stdout, out.stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_login_form_in_a_browser(broker, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    where = os.environ.get("ODRADEK_SCREENSHOTS") or str(tmp_path)
    os.makedirs(where, exist_ok=True)
    base = "https://localhost:%d" % broker.http_address[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            ctx = browser.new_context(viewport={"width": 1366, "height": 768}, ignore_https_errors=True)
            ctx.set_default_timeout(20_000)
            page = ctx.new_page()
            page.goto(base + "/topics")
            expect(page).to_have_url(re.compile(r"/login\?next=%2Ftopics$"))
            page.fill("input[name=user]", "alice")
            page.fill("input[name=password]", "wrong")
            page.click("form.login button[type=submit]")
            expect(page.locator("#error-message")).to_have_text("Wrong user name or password.")
            page.screenshot(path=os.path.join(where, "console-login.png"), full_page=True)
            page.fill("input[name=password]", "alice-secret")
            page.click("form.login button[type=submit]")
            expect(page).to_have_url(base + "/topics")
            expect(page.locator("#user")).to_have_text("User:alice")
            expect(page.locator("text=open-topic")).to_be_visible()
            expect(page.locator("text=secret-topic")).to_have_count(0)
            page.click("header .whoami button")
            expect(page).to_have_url(re.compile(r"/login$"))
            page.goto(base + "/topics")
            expect(page).to_have_url(re.compile(r"/login\?next="))
        finally:
            browser.close()


def test_security_pages_act_with_the_users_rights(broker, pki):
    alice = Https(broker.http_address, pki)
    assert alice.login("alice", "alice-secret").status == 303
    for path in ("/acls", "/users", "/quotas"):
        assert_readable_error(alice.get(path), 403, "AUTHORIZATION_FAILED")
    assert_readable_error(alice.post("/acls", {"csrf": alice.token(), "resource_type": "topic",
                                               "resource_name": "x", "principal": "User:alice",
                                               "operation": "write"}),
                          403, "AUTHORIZATION_FAILED")
    admin = Https(broker.http_address, pki)
    admin.login("admin", "admin-secret")
    token = admin.token()
    assert "User:bob" in admin.get("/acls").text and "open-topic" in admin.get("/acls").text
    assert_readable_error(admin.post("/acls", {"csrf": token, "resource_type": "planet", "resource_name": "x",
                                               "principal": "User:a"}), 400, "resource_type")
    assert_readable_error(admin.post("/acls", {"csrf": token, "resource_type": "topic", "resource_name": "x",
                                               "principal": "alice", "operation": "read"}), 400, "principal")
    assert_readable_error(admin.post("/quotas", {"csrf": token, "user": "carol", "key": "producer_byte_rate",
                                                 "value": "fast"}), 400, "value")
    # a SCRAM user made on the page logs in to the console (and to Kafka) with its password
    r = admin.post("/users", {"csrf": token, "user": "carol", "mechanism": "SCRAM-SHA-256",
                              "password": "carol-secret", "iterations": "4096"})
    assert r.status == 303, r.text
    assert "carol" in admin.get("/users").text
    carol = Https(broker.http_address, pki)
    assert carol.login("carol", "carol-secret").status == 303
    assert "open-topic" not in carol.get("/topics").text
    # carol deleted: her session ends when its Kafka connections log in again
    r = admin.post("/users/delete", {"csrf": token, "user": "carol", "mechanism": "SCRAM-SHA-256"})
    assert r.status == 303 and "carol" not in admin.get("/users").text
    for s in broker.core.console.sessions.sessions.values():
        if s.user == "carol":
            broker.loop.call_soon_threadsafe(s.client.close)
    time.sleep(0.2)
    assert carol.get("/topics").status == 303
    assert carol.login("carol", "carol-secret").status == 401


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_acl_user_and_quota_pages_in_a_browser(broker, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    where = os.environ.get("ODRADEK_SCREENSHOTS") or str(tmp_path)
    os.makedirs(where, exist_ok=True)
    base = "https://localhost:%d" % broker.http_address[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            ctx = browser.new_context(viewport={"width": 1366, "height": 768}, ignore_https_errors=True)
            ctx.set_default_timeout(20_000)
            page = ctx.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + "/acls")
            page.fill("input[name=user]", "admin")
            page.fill("input[name=password]", "admin-secret")
            page.click("form.login button[type=submit]")
            expect(page).to_have_url(base + "/acls")

            page.click("text=Add an ACL")
            page.select_option("#create-acl select[name=resource_type]", "group")
            page.fill("#create-acl input[name=resource_name]", "dave-")
            page.select_option("#create-acl select[name=pattern_type]", "prefixed")
            page.fill("#create-acl input[name=principal]", "User:dave")
            page.select_option("#create-acl select[name=operation]", "read")
            page.click("#create-acl button[type=submit]")
            expect(page.locator(".notice")).to_contain_text("Added: allow User:dave read on group dave-")
            row = page.locator("#acls tbody tr", has_text="User:dave")
            expect(row).to_have_count(1)
            expect(row).to_contain_text("prefixed")
            page.screenshot(path=os.path.join(where, "console-acls.png"), full_page=True)
            row.locator("button").click()
            expect(page.locator(".notice")).to_contain_text("Removed: allow User:dave")
            expect(page.locator("#acls tbody tr", has_text="User:dave")).to_have_count(0)

            page.click("nav >> text=Users")
            page.click("text=Add a user or change a password")
            page.fill("#set-user input[name=user]", "erin")
            page.select_option("#set-user select[name=mechanism]", "SCRAM-SHA-512")
            page.fill("#set-user input[name=password]", "erin-secret")
            page.click("#set-user button[type=submit]")
            expect(page.locator(".notice")).to_have_text("Set the SCRAM-SHA-512 password of erin")
            row = page.locator("#users tbody tr", has_text="erin")
            expect(row).to_contain_text("SCRAM-SHA-512")
            page.screenshot(path=os.path.join(where, "console-users.png"), full_page=True)
            row.locator("button").click()
            expect(page.locator("#users tbody tr", has_text="erin")).to_have_count(0)

            page.click("nav >> text=Quotas")
            page.click("text=Set a quota")
            page.fill("#set-quota input[name=user]", "frank")
            page.select_option("#set-quota select[name=key]", "producer_byte_rate")
            page.fill("#set-quota input[name=value]", "1048576")
            page.click("#set-quota button[type=submit]")
            row = page.locator("#quotas tbody tr", has_text="user=frank")
            expect(row).to_contain_text("1048576")
            page.screenshot(path=os.path.join(where, "console-quotas.png"), full_page=True)
            row.locator("button").click()
            expect(page.locator(".notice")).to_have_text("Removed producer_byte_rate of user=frank")
            expect(page.locator("#quotas tbody tr", has_text="user=frank")).to_have_count(0)
            assert not errors
        finally:
            browser.close()


def test_pipelined_requests_do_not_share_a_session(broker, pki):
    """Two requests on one connection (a proxy's), the first logged in, the
    second not: the second is not served as the first's user."""
    admin = Https(broker.http_address, pki)
    admin.login("admin", "admin-secret")
    raw = ssl.create_default_context(cafile=pki.ca_file).wrap_socket(
        socket.create_connection(("127.0.0.1", broker.http_address[1]), timeout=10),
        server_hostname="localhost")
    raw.sendall(f"GET /topics HTTP/1.1\r\nHost: x\r\nCookie: {admin.cookie}\r\n\r\n"
                "GET /login HTTP/1.1\r\nHost: x\r\n\r\nGET /topics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .encode())
    data = b""
    while True:
        chunk = raw.recv(65536)
        if not chunk:
            break
        data += chunk
    raw.close()
    text = data.decode("utf-8", "replace")
    first, second, third = [part for part in text.split("HTTP/1.1 ")[1:]]
    assert first.startswith("200") and "User:admin" in first
    assert second.startswith("200") and "User:admin" not in second and "Log in" in second
    assert third.startswith("303") and "/login" in third


def test_odradek_console_login_checks_passwords_with_the_cluster(broker, pki, tmp_path):
    from tests.conftest import free_port, wait_port

    port = free_port()
    log = open(tmp_path / "console.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "odradek", "console", "-b", broker.addr, "--login",
                             "--http", f"https://127.0.0.1:{port}", "-H",
                             f"http.ssl.keystore.location={pki.server['pem']}",
                             "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=PLAIN"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc=proc)
        address = ("127.0.0.1", port)
        web = Https(address, pki)
        assert web.get("/topics").status == 303
        assert web.login("alice", "wrong").status == 401 and web.cookie is None
        assert web.login("alice", "alice-secret").status == 303
        topics = web.get("/topics").text
        assert "open-topic" in topics and "secret-topic" not in topics and "User:alice" in topics
        admin = Https(address, pki)
        assert admin.login("admin", "admin-secret").status == 303 and "secret-topic" in admin.get("/topics").text
    finally:
        proc.terminate()
        proc.wait(10)
    out = subprocess.run([sys.executable, "-m", "odradek", "console", "-b", broker.addr, "--login"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "SASL" in out.stderr
