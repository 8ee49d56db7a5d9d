"""Kafka client properties as librdkafka properties (odradek.cli.client_properties)."""

import pytest

from odradek.cli.client_properties import PropertiesError, translate

OAUTH = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
OIDC = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler"


def run(props):
    warnings = []
    return translate(props, warnings.append), warnings


def test_logins():
    out, _ = run({"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                  "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required '
                                      'username="a" password="p";'})
    assert out == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "a",
                   "sasl.password": "p"}
    out, _ = run({"sasl.jaas.config": OAUTH + 'unsecuredLoginStringClaim_sub="cli" '
                                              'unsecuredLoginListClaim_scope="|a|b" unsecuredLoginLifetimeSeconds="60" '
                                              'unsecuredLoginExtension_traceId="t1";'})
    assert out == {"enable.sasl.oauthbearer.unsecure.jwt": "true",
                   "sasl.oauthbearer.config": "principal=cli scope=a,b lifeSeconds=60 extension_traceId=t1"}
    out, _ = run({"sasl.jaas.config": OAUTH + 'unsecuredLoginPrincipalClaimName="who" '
                                              'unsecuredLoginStringClaim_who="cli";'})
    assert out["sasl.oauthbearer.config"] == "principal=cli principalClaimName=who"
    out, _ = run({"sasl.login.callback.handler.class": OIDC, "sasl.oauthbearer.token.endpoint.url": "https://idp/t",
                  "sasl.oauthbearer.scope": "kafka",
                  "sasl.jaas.config": OAUTH + 'clientId="c" clientSecret="s" scope="no" extension_a="1";'})
    assert out == {"sasl.oauthbearer.method": "oidc", "sasl.oauthbearer.token.endpoint.url": "https://idp/t",
                   "sasl.oauthbearer.client.id": "c", "sasl.oauthbearer.client.secret": "s",
                   "sasl.oauthbearer.scope": "kafka", "sasl.oauthbearer.extensions": "a=1"}


def test_tls_settings():
    out, warnings = run({"ssl.cipher.suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256,"
                                              "TLS_AES_256_GCM_SHA384,TLS_CHACHA20_POLY1305_SHA256",
                         "ssl.enabled.protocols": "TLSv1.3,TLSv1.2", "ssl.protocol": "TLSv1.3",
                         "ssl.keymanager.algorithm": "SunX509", "request.timeout.ms": "1"})
    assert out == {"ssl.cipher.suites": "ECDHE-RSA-AES128-GCM-SHA256"}
    assert warnings == ["ssl.keymanager.algorithm has no effect: librdkafka has no such setting",
                        "request.timeout.ms is not used by odradek's client commands"]
    _, warnings = run({"ssl.cipher.suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                       "ssl.enabled.protocols": "TLSv1.2,TLSv1.1"})
    assert len(warnings) == 2 and all("TLS" in w for w in warnings)


@pytest.mark.parametrize("props, message", [
    ({"sasl.jaas.config": "com.sun.security.auth.module.Krb5LoginModule required;"}, "logins are read"),
    ({"sasl.jaas.config": OAUTH + ";"}, "needs unsecuredLoginStringClaim_sub"),
    ({"sasl.jaas.config": OAUTH + 'unsecuredLoginStringClaim_sub="a" unsecuredLoginStringClaim_role="x";'},
     "unsecuredLoginStringClaim_role cannot be sent"),
    ({"sasl.login.callback.handler.class": "com.acme.Login", "sasl.jaas.config": OAUTH + ";"}, "com.acme.Login"),
    ({"sasl.login.callback.handler.class": OIDC, "sasl.jaas.config": OAUTH + 'clientId="c";',
      "sasl.oauthbearer.token.endpoint.url": "https://idp/t"}, "clientSecret"),
    ({"sasl.oauthbearer.token.endpoint.url": "https://idp/t"}, "OAuthBearerLoginModule line"),
    ({"ssl.enabled.protocols": "TLSv1.3"}, "cannot keep to TLS 1.3 only"),
    ({"ssl.enabled.protocols": "TLSv1.1"}, "TLSv1.2 and TLSv1.3 only"),
    ({"ssl.cipher.suites": "TLS_AES_128_GCM_SHA256"}, "only TLS 1.3 suites"),
    ({"ssl.cipher.suites": "NOT_A_SUITE"}, "Unsupported CipherSuite"),
    ({"sasl.kerberos.service.name": "kafka"}, "does not translate"),
])
def test_refused(props, message):
    with pytest.raises(PropertiesError, match=message):
        run(props)
