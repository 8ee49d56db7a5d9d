"""franz-go (the Go client) produces and consumes over secured listeners:
TLS with a client certificate, SASL PLAIN and SCRAM-SHA-512 over TLS,
SCRAM-SHA-256 in plaintext, and
OAUTHBEARER (an unsecured JWS, Kafka's default validator) over TLS, with the
host name checked (tests/integration/franz/sasl). Skipped without Go."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.test_franz_go import build
from tests.integration.test_oauthbearer import broker as oauth_broker  # noqa: F401  (fixtures)
from tests.integration.test_security import pki, secured  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def franz_sasl(tmp_path_factory):
    return build(tmp_path_factory, "./sasl", "franz-sasl")


def run(binary, addr, mechanism, user, password, ca, topic):
    proc = subprocess.run([binary, addr, mechanism, user, password, ca or "-", topic, "5"],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split("\n")[:2] == ["produced 5", "consumed 5"], proc.stdout


@pytest.mark.parametrize("listener, mechanism, user, password", [
    ("SASL_TLS", "PLAIN", "alice", "alice-secret"),
    ("SASL_TLS", "SCRAM-SHA-512", "bob", "bob-512"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256", "bob", "bob-secret"),
])
def test_franz_go_plain_and_scram(secured, pki, franz_sasl, listener, mechanism, user, password):
    run(franz_sasl, secured.addr[listener], mechanism, user, password,
        pki.ca_file if listener == "SASL_TLS" else None, f"franz-{mechanism}".lower())


def test_franz_go_oauthbearer_over_tls(oauth_broker, pki, franz_sasl):  # noqa: F811
    run(franz_sasl, oauth_broker.addr["OAUTH_TLS"], "OAUTHBEARER", "franz", "", pki.ca_file, "franz-oauth")


def test_franz_go_over_tls_with_a_client_certificate(secured, pki, franz_sasl):
    run(franz_sasl, secured.addr["TLS"], "NONE", pki.alice["crt"], pki.alice["key"], pki.ca_file, "franz-tls")
