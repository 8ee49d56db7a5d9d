"""ssl.cipher.suites: Java's names read into OpenSSL's, and a context enables
only the listed suites and the versions they serve."""

from __future__ import annotations

import ssl

import pytest

from odradek.config import BrokerConfig, ConfigError
from odradek.security.ciphers import TLS13, CipherSuiteError, CipherSuites, apply, parse


def context(low=ssl.TLSVersion.TLSv1_2, high=ssl.TLSVersion.TLSv1_3):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version, ctx.maximum_version = low, high
    return ctx


def enabled(ctx):
    """The suites a handshake can pick: TLS 1.3's only if TLS 1.3 is enabled."""
    tls13 = ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    return [c["name"] for c in ctx.get_ciphers() if tls13 or c["protocol"] != "TLSv1.3"]


def test_java_names_become_openssls_in_order():
    assert parse("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,"
                 "TLS_AES_256_GCM_SHA384") == CipherSuites(
        ("ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256"), ("TLS_AES_256_GCM_SHA384",))
    # Java's old SSL_ prefix names the same suite; a repeated name counts once.
    assert parse("SSL_RSA_WITH_AES_128_CBC_SHA,TLS_RSA_WITH_AES_128_CBC_SHA").tls12 == ("AES128-SHA",)
    assert parse("") is None and parse(" , ") is None


def test_every_suite_java_17_offers_is_known():
    java17 = """TLS_AES_256_GCM_SHA384 TLS_AES_128_GCM_SHA256 TLS_CHACHA20_POLY1305_SHA256
    TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    TLS_DHE_RSA_WITH_AES_256_GCM_SHA384 TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    TLS_DHE_DSS_WITH_AES_256_GCM_SHA384 TLS_DHE_RSA_WITH_AES_128_GCM_SHA256 TLS_DHE_DSS_WITH_AES_128_GCM_SHA256
    TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384 TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384
    TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256
    TLS_DHE_RSA_WITH_AES_256_CBC_SHA256 TLS_DHE_DSS_WITH_AES_256_CBC_SHA256 TLS_DHE_RSA_WITH_AES_128_CBC_SHA256
    TLS_DHE_DSS_WITH_AES_128_CBC_SHA256 TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA
    TLS_DHE_RSA_WITH_AES_256_CBC_SHA TLS_DHE_DSS_WITH_AES_256_CBC_SHA TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
    TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA TLS_DHE_RSA_WITH_AES_128_CBC_SHA TLS_DHE_DSS_WITH_AES_128_CBC_SHA
    TLS_RSA_WITH_AES_256_GCM_SHA384 TLS_RSA_WITH_AES_128_GCM_SHA256 TLS_RSA_WITH_AES_256_CBC_SHA256
    TLS_RSA_WITH_AES_128_CBC_SHA256 TLS_RSA_WITH_AES_256_CBC_SHA TLS_RSA_WITH_AES_128_CBC_SHA
    TLS_EMPTY_RENEGOTIATION_INFO_SCSV""".split()
    suites = parse(",".join(java17))
    assert len(suites.tls12) == 33 and set(suites.tls13) == set(TLS13)


@pytest.mark.parametrize("text, message", [
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA38", "Unsupported CipherSuite: TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA38"),
    ("ECDHE-RSA-AES256-GCM-SHA384", "Unsupported CipherSuite: ECDHE-RSA-AES256-GCM-SHA384"),  # OpenSSL's name
    ("TLS_EMPTY_RENEGOTIATION_INFO_SCSV", "no cipher suite is listed"),
])
def test_what_is_no_suite_is_refused(text, message):
    with pytest.raises(CipherSuiteError, match=message):
        parse(text)


def test_tls12_suites_alone_mean_tls12_only():
    ctx = context()
    apply(ctx, parse("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_RSA_WITH_AES_128_GCM_SHA256"))
    assert enabled(ctx) == ["ECDHE-RSA-AES256-GCM-SHA384", "AES128-GCM-SHA256"]
    assert (ctx.minimum_version, ctx.maximum_version) == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)


def test_tls13_suites_alone_mean_tls13_only_and_a_subset_is_enforced():
    ctx = context()
    apply(ctx, parse("TLS_AES_256_GCM_SHA384"))
    assert (ctx.minimum_version, ctx.maximum_version) == (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)
    assert [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"] == ["TLS_AES_256_GCM_SHA384"]


def test_both_kinds_keep_both_versions():
    ctx = context()
    apply(ctx, parse("TLS_CHACHA20_POLY1305_SHA256,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"))
    assert (ctx.minimum_version, ctx.maximum_version) == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert sorted(enabled(ctx)) == ["ECDHE-RSA-CHACHA20-POLY1305", "TLS_CHACHA20_POLY1305_SHA256"]


def test_suites_that_serve_no_enabled_version_are_refused():
    with pytest.raises(CipherSuiteError, match="serves an enabled protocol"):
        apply(context(ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3), parse("TLS_RSA_WITH_AES_128_GCM_SHA256"))
    with pytest.raises(CipherSuiteError, match="serves an enabled protocol"):
        apply(context(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2), parse("TLS_AES_128_GCM_SHA256"))


def test_a_listener_reads_the_key_and_names_it_when_it_is_wrong(tmp_path):
    from tests.integration.certs import make_pki

    pki = make_pki(tmp_path)
    server = pki.issue("server", "CN=localhost", server=True)
    props = {"listeners": "SSL://127.0.0.1:0", "ssl.keystore.type": "PEM", "ssl.keystore.location": server["pem"],
             "ssl.cipher.suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}
    sec = BrokerConfig(props=props).security()
    tls = sec.listeners["SSL"].tls
    assert tls.cipher_suites == CipherSuites(("ECDHE-RSA-AES128-GCM-SHA256",), ())
    ctx = sec.listeners["SSL"].ssl_context
    assert enabled(ctx) == ["ECDHE-RSA-AES128-GCM-SHA256"] and ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ConfigError, match="Listener SSL: ssl.cipher.suites: Unsupported CipherSuite: TLS_NOPE"):
        BrokerConfig(props=dict(props, **{"ssl.cipher.suites": "TLS_NOPE"})).security()
    with pytest.raises(ConfigError, match="ssl.cipher.suites: none of the listed cipher suites serves"):
        BrokerConfig(props=dict(props, **{"ssl.enabled.protocols": "TLSv1.3"})).security()


def test_a_brokers_own_connections_over_the_listener_use_its_suites(tmp_path):
    from tests.integration.certs import make_pki

    pki = make_pki(tmp_path)
    server = pki.issue("server", "CN=localhost", server=True)
    sec = BrokerConfig(props={
        "listeners": "SSL://127.0.0.1:0", "inter.broker.listener.name": "SSL", "ssl.keystore.type": "PEM",
        "ssl.keystore.location": server["pem"], "ssl.truststore.type": "PEM", "ssl.truststore.location": pki.ca_file,
        "ssl.cipher.suites": "TLS_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}).security()
    ctx = sec.inter_broker_client().ssl_context
    assert sorted(enabled(ctx)) == ["ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256"]
