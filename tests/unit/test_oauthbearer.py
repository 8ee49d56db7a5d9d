"""SASL/OAUTHBEARER without sockets: the client's first message, Kafka's
unsecured-JWS validator (claims, times, scope), the error exchange, the
session bounded by the token, and the configuration keys."""

from __future__ import annotations

import asyncio

import pytest

from odradek.config import BrokerConfig, ConfigError
from odradek.protocol import errors
from odradek.security.authenticator import COMPLETE, FAILED, SaslAuthenticator
from odradek.security.config import SaslSettings
from odradek.security.oauthbearer import (LOGIN_MODULE, OAuthBearerServer, OAuthBearerToken, TokenInvalid, UnsecuredValidator,
                                          parse_client_first, unsecured_jws)
from odradek.security.sasl import AuthenticationFailed

NOW = 1_800_000_000_000  # ms


def run(coro):
    return asyncio.run(coro)


def first(token, authzid="", ext=""):
    return f"n,{'a=' + authzid if authzid else ''},\x01auth=Bearer {token}\x01{ext}\x01".encode()


def test_client_first_message():
    assert parse_client_first(first("abc.def.")) == ("", "abc.def.", {})
    assert parse_client_first(first("t", "alice", "traceId=1\x01")) == ("alice", "t", {"traceId": "1"})
    for bad in (b"", b"n,,auth=Bearer t", first("t").replace(b"Bearer", b"Basic"), b"y,,\x01auth=Bearer t\x01\x01",
                first("t", ext="bad key=1\x01"), b"\xff\xfe", first("t").replace(b"auth=", b"other=")):
        with pytest.raises(AuthenticationFailed, match="OAUTHBEARER"):
            parse_client_first(bad)


def check(claims, options=None, header=None, now=NOW):
    return UnsecuredValidator(options or {}).check(unsecured_jws(claims, header), now)


def test_the_unsecured_validator_as_kafka_reads_tokens():
    t = check({"sub": "alice", "iat": NOW / 1000 - 10, "exp": NOW / 1000 + 60, "scope": ["a", "b"]})
    assert (t.principal_name, t.lifetime_ms, t.scope) == ("alice", NOW + 60_000, frozenset({"a", "b"}))
    assert check({"sub": "x", "exp": NOW / 1000 + 1, "scope": "a b"}).scope == {"a b"}  # a string is one item
    assert check({"user": "bob", "exp": NOW / 1000 + 1},
                 {"unsecuredValidatorPrincipalClaimName": "user"}).principal_name == "bob"
    refused = [
        ({"sub": "a"}, None, None, "No expiration time"),
        ({"sub": "a", "exp": NOW / 1000}, None, None, "on or after the Expiration Time"),
        ({"exp": NOW / 1000 + 5}, None, None, "No principal name"),
        ({"sub": "", "exp": NOW / 1000 + 5}, None, None, "No principal name"),
        ({"sub": 7, "exp": NOW / 1000 + 5}, None, None, "incorrect type"),
        ({"sub": "a", "exp": "soon"}, None, None, "not of type Number"),
        ({"sub": "a", "exp": NOW / 1000 + 5, "iat": NOW / 1000 + 1}, None, None, "Issued At"),
        ({"sub": "a", "exp": NOW / 1000 + 5}, None, {"alg": "HS256"}, "'none'"),
        ({"sub": "a", "exp": NOW / 1000 + 5, "scope": ["a"]}, {"unsecuredValidatorRequiredScope": "a b"}, None,
         "missing a required scope"),
    ]
    for claims, options, header, message in refused:
        with pytest.raises(TokenInvalid, match=message):
            check(claims, options, header)
    # Clock skew lets a token a little past its expiry in, and one issued a little ahead.
    assert check({"sub": "a", "exp": NOW / 1000 - 1, "iat": NOW / 1000 - 10},
                 {"unsecuredValidatorAllowableClockSkewMs": "2000"})
    assert check({"sub": "a", "exp": NOW / 1000 + 10, "iat": NOW / 1000 + 1},
                 {"unsecuredValidatorAllowableClockSkewMs": "2000"})
    v = UnsecuredValidator({})
    for token in ("a.b", "a..b", "e30.e30.sig", "!!.e30."):
        with pytest.raises(TokenInvalid):
            v.check(token, NOW)
    with pytest.raises(TokenInvalid) as e:
        check({"sub": "a", "exp": NOW / 1000 + 5}, {"unsecuredValidatorRequiredScope": "x y"})
    assert e.value.json() == '{"status":"insufficient_scope", "scope":"[x, y]"}'
    with pytest.raises(ValueError):
        UnsecuredValidator({"unsecuredValidatorAllowableClockSkewMs": "-1"})


class Fixed:
    """A validator that knows one token."""

    def __init__(self, expiry_ms):
        self.expiry_ms = expiry_ms

    async def validate(self, value):
        if value != "good":
            raise TokenInvalid("unknown token")
        return OAuthBearerToken(value, "alice", self.expiry_ms)


def test_a_refused_token_gets_kafkas_json_then_fails_on_the_clients_0x01():
    s = OAuthBearerServer(Fixed(NOW))
    assert run(s.evaluate(first("bad"))) == b'{"status":"invalid_token"}' and not s.complete
    with pytest.raises(AuthenticationFailed, match='"status":"invalid_token"'):
        run(s.evaluate(b"\x01"))
    s = OAuthBearerServer(Fixed(NOW))
    assert run(s.evaluate(first("good"))) == b"" and s.complete and s.principal_name == "alice"
    with pytest.raises(AuthenticationFailed, match="authorization id"):
        run(OAuthBearerServer(Fixed(NOW)).evaluate(first("good", "bob")))


def test_the_token_bounds_the_session_and_lets_it_renew():
    settings = SaslSettings(mechanisms=("OAUTHBEARER",), oauth_validator=Fixed(NOW + 5000))
    a = SaslAuthenticator(settings, None)
    a.handshake("OAUTHBEARER", 1)
    r = run(a.authenticate(first("good"), 1, NOW))
    assert r["error_code"] == 0 and r["session_lifetime_ms"] == 5000 and a.state == COMPLETE
    assert a.allows(3, NOW + 5000) is None and a.allows(3, NOW + 5001) is not None
    assert a.handshake("OAUTHBEARER", 1)["error_code"] == 0  # re-authentication, with no reauth key set
    # connections.max.reauth.ms shorter than the token: it wins.
    settings.reauth_by_mechanism["OAUTHBEARER"] = 1000
    a = SaslAuthenticator(settings, None)
    a.handshake("OAUTHBEARER", 1)
    assert run(a.authenticate(first("good"), 1, NOW))["session_lifetime_ms"] == 1000
    # A client on SaslAuthenticate v0 is told nothing and not cut off (as Kafka).
    a = SaslAuthenticator(settings, None)
    a.handshake("OAUTHBEARER", 1)
    assert run(a.authenticate(first("good"), 0, NOW))["session_lifetime_ms"] == 0 and a.allows(3, NOW + 10**9) is None
    a = SaslAuthenticator(settings, None)
    a.handshake("OAUTHBEARER", 1)
    assert run(a.authenticate(first("bad"), 1, NOW))["error_code"] == 0
    r = run(a.authenticate(b"\x01", 1, NOW))
    assert r["error_code"] == errors.SASL_AUTHENTICATION_FAILED and a.state == FAILED


def listener(**extra):
    props = {"listeners": "SASL_PLAINTEXT://:1", "sasl.enabled.mechanisms": "OAUTHBEARER"}
    props.update(extra)
    return BrokerConfig(props=props).security().listeners["SASL_PLAINTEXT"].sasl


JAAS = ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        'unsecuredLoginStringClaim_sub="admin" unsecuredValidatorRequiredScope="kafka";')


def test_configured_as_kafka_reads_it():
    v = listener().oauth_validator
    assert isinstance(v, UnsecuredValidator) and v.required_scope == []
    v = listener(**{"listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": JAAS,
                    "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class":
                        "org.apache.kafka.common.security.oauthbearer.internals.unsecured."
                        "OAuthBearerUnsecuredValidatorCallbackHandler"}).oauth_validator
    assert v.required_scope == ["kafka"]
    v = listener(**{"listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class":
                    "tests.unit.test_oauthbearer:Configured"}).oauth_validator
    assert isinstance(v, Configured)


class Configured:
    def __init__(self, options, props):
        self.options = options

    async def validate(self, value):
        raise TokenInvalid("never")


@pytest.mark.parametrize("extra, message", [
    ({"listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class":
      "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"},
     "jwks.endpoint.url must be set"),
    ({"listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class":
      "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
      "sasl.oauthbearer.jwks.endpoint.url": "https://idp/jwks", "sasl.oauthbearer.clock.skew.seconds": "x"},
     "not an integer"),
    ({"sasl.oauthbearer.token.endpoint.url": "https://idp/token"}, "is read by .*OAuthBearerLoginCallbackHandler"),
    ({"sasl.login.callback.handler.class": "com.acme.Login"}, "Java classes cannot be loaded"),
    ({"sasl.oauthbearer.assertion.private.key.file": "k.pem"}, "is read by .*OAuthBearerLoginCallbackHandler"),
    ({"sasl.login.retry.backoff.ms": "200", "sasl.login.retry.backoff.max.ms": "100"},
     "sasl.login.retry.backoff.max.ms value \\(100\\) is less than sasl.login.retry.backoff.ms value \\(200\\)"),
    ({"sasl.login.connect.timeout.ms": "soon"}, "Not a number of type INT"),
    ({"listener.name.sasl_plaintext.oauthbearer.sasl.login.class": "com.acme.Login"}, "Java login classes"),
    ({"listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class": "com.acme.Validator"},
     "Java classes"),
    ({"listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class": "no.such.module:V"},
     "cannot load"),
    ({"sasl.oauthbearer.jwks.endpoint.url": "https://idp/jwks"}, "JWKS"),
    ({"listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": "x.Y required;"}, "OAuthBearerLoginModule"),
    ({"listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": JAAS.replace('"kafka"', '"a\\\\b"')},
     "Invalid scope"),
    ({"listener.name.sasl_plaintext.plain.sasl.server.callback.handler.class": "x"}, "callback handlers"),
])
def test_oauthbearer_settings_refused_with_a_reason(extra, message):
    with pytest.raises(ConfigError, match=message):
        listener(**extra)


def test_an_inter_broker_oauthbearer_login_needs_a_principal():
    sec = BrokerConfig(props={"listeners": "SASL_PLAINTEXT://:1", "sasl.enabled.mechanisms": "OAUTHBEARER",
                              "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER"}).security()
    with pytest.raises(ValueError, match="unsecuredLoginStringClaim_sub"):
        sec.inter_broker_client()
    sec = BrokerConfig(props={"listeners": "SASL_PLAINTEXT://:1", "sasl.enabled.mechanisms": "OAUTHBEARER",
                              "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
                              "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config":
                                  LOGIN_MODULE + ' required unsecuredLoginStringClaim_sub="broker";'}).security()
    client = sec.inter_broker_client()
    assert client.mechanism == "OAUTHBEARER" and client.oauth.principal_name == "broker"


def test_the_unsecured_login_makes_tokens_the_unsecured_validator_takes():
    """Kafka's unsecured login: claims from the JAAS options (string, number,
    delimiter-led lists), its own principal and scope claim names, extensions;
    renewed in Kafka's refresh window; options Kafka refuses are refused."""
    from odradek.security.oauthbearer import UnsecuredLogin

    clock = [NOW / 1000]
    login = UnsecuredLogin({"unsecuredLoginStringClaim_who": "broker-1", "unsecuredLoginPrincipalClaimName": "who",
                            "unsecuredLoginListClaim_roles": ",kafka,,ops", "unsecuredLoginNumberClaim_n": "2",
                            "unsecuredLoginLifetimeSeconds": "100", "unsecuredLoginExtension_traceId": "t-1"},
                           clock=lambda: clock[0])
    message = login.client_first()
    authzid, token, extensions = parse_client_first(message)
    assert authzid == "" and extensions == {"traceId": "t-1"}
    found = UnsecuredValidator({"unsecuredValidatorPrincipalClaimName": "who"}).check(token, NOW)
    assert found.principal_name == "broker-1" and found.lifetime_ms == NOW + 100_000
    import base64
    import json

    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    # Kafka's reading, quirk included: an empty item inside adds one more at the end
    assert claims["roles"] == ["kafka", "", "ops", ""] and claims["n"] == 2.0 and claims["iat"] == NOW / 1000
    clock[0] += 79
    assert login.token() == token  # held until 80-85% of its life (Kafka's window and jitter)
    clock[0] += 7
    assert login.token() != token
    for options, message in (({}, "needs a principal"),
                             ({"unsecuredLoginStringClaim_sub": "b", "unsecuredLoginNumberClaim_exp": "1"},
                              "Cannot explicitly set the 'exp' claim"),
                             ({"unsecuredLoginStringClaim_sub": "b", "unsecuredLoginExtension_auth": "x"},
                              "Extension name auth is invalid"),
                             ({"unsecuredLoginStringClaim_sub": "b", "unsecuredLoginExtension_a1": "x"},
                              "Extension name a1 is invalid"),
                             ({"unsecuredLoginStringClaim_sub": "b", "unsecuredLoginLifetimeSeconds": "x"},
                              "not an integer")):
        with pytest.raises(ValueError, match=message):
            UnsecuredLogin(options)


def test_kafkas_own_login_classes_and_http_keys_are_accepted():
    """sasl.login.class naming Kafka's own login (as Kafka would pick it) and
    the token endpoint's sasl.login.* keys: accepted; noted without effect
    where nothing reads them."""
    sec = BrokerConfig(props={"listeners": "PLAINTEXT://:1", "sasl.login.read.timeout.ms": "5000",
                              "sasl.login.class":
                                  "org.apache.kafka.common.security.oauthbearer.internals.OAuthBearerRefreshingLogin"}
                       ).security()
    assert any(n.startswith("sasl.login.class has no effect") for n in sec.notes)
    assert any(n.startswith("sasl.login.read.timeout.ms has no effect") for n in sec.notes)
    sec = BrokerConfig(props={"listeners": "SASL_PLAINTEXT://:1", "sasl.enabled.mechanisms": "OAUTHBEARER",
                              "listener.name.sasl_plaintext.oauthbearer.sasl.login.retry.backoff.ms": "20",
                              "sasl.login.retry.backoff.max.ms": "300",
                              "sasl.oauthbearer.assertion.algorithm": "ES256"}).security()
    http = sec.listeners["SASL_PLAINTEXT"].sasl.oauth_http
    assert (http.backoff_ms, http.backoff_max_ms) == (20, 300)
    assert any("sasl.oauthbearer.assertion.algorithm has no effect on listener SASL_PLAINTEXT" in n for n in sec.notes)


def test_jwks_keys_without_an_oauthbearer_listener_are_noted():
    sec = BrokerConfig(props={"listeners": "PLAINTEXT://:1",
                              "sasl.oauthbearer.jwks.endpoint.url": "https://idp/jwks"}).security()
    assert any("sasl.oauthbearer.jwks.endpoint.url has no effect" in n for n in sec.notes)


def test_jwks_settings_per_listener_as_kafka_names_them():
    from odradek.security.oauthbearer import JwksValidator

    v = listener(**{
        "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
        "listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.jwks.endpoint.url": "https://idp/jwks",
        "sasl.oauthbearer.expected.audience": "kafka, other",
        "listener.name.sasl_plaintext.sasl.oauthbearer.expected.issuer": "https://idp",
        "sasl.oauthbearer.clock.skew.seconds": "5"}).oauth_validator
    assert isinstance(v, JwksValidator)
    assert (v.url, v.audience, v.issuer, v.skew_s) == ("https://idp/jwks", ["kafka", "other"], "https://idp", 5)


class CheckingExtensions:
    def __init__(self, asynchronous):
        self.asynchronous = asynchronous

    async def validate(self, value):
        return UnsecuredValidator({}).check(value, NOW)

    def _refused(self, extensions):
        return {k: "not here" for k in extensions if k.startswith("bad")}

    def validate_extensions(self, token, extensions):
        if self.asynchronous:
            async def later():
                return self._refused(extensions)
            return later()
        return self._refused(extensions)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_sasl_extensions_go_to_the_validator_after_the_token(asynchronous):
    """KIP-342 as Kafka's server runs it: Kafka's own validators accept every
    extension; one that checks them names the refused ones, and the login
    fails with Kafka's words. Malformed extensions do not parse."""
    tok = unsecured_jws({"sub": "alice", "exp": NOW / 1000 + 60})
    server = OAuthBearerServer(UnsecuredValidator({}, clock=lambda: NOW / 1000))
    assert run(server.evaluate(first(tok, ext="traceId=a b\tc\x01"))) == b"" and server.complete
    assert server.extensions == {"traceId": "a b\tc"}
    server = OAuthBearerServer(CheckingExtensions(asynchronous))
    assert run(server.evaluate(first(tok, ext="good=1\x01"))) == b"" and server.extensions == {"good": "1"}
    server = OAuthBearerServer(CheckingExtensions(asynchronous))
    with pytest.raises(AuthenticationFailed, match=r"^Authentication failed: 2 extensions are invalid! "
                                                   r"They are: badA: not here; badB: not here$"):
        run(server.evaluate(first(tok, ext="badA=1\x01ok=2\x01badB=3\x01")))
    for ext in ("a1=b\x01", "k=\x01", "k=\x7f\x01"):
        with pytest.raises(AuthenticationFailed, match="invalid credentials"):
            run(OAuthBearerServer(UnsecuredValidator({})).evaluate(first(tok, ext=ext)))


def test_the_client_credentials_login_asks_as_kafka_asks():
    """Kafka's client-credentials request: HTTP Basic of clientId:clientSecret
    (URL-encoded only with sasl.oauthbearer.header.urlencode=true), the form
    body with the scope URL-encoded; the keys win over the JAAS options; the
    token it gets is checked for exp and sub before use."""
    import base64

    from odradek.security.oauthbearer import JwtLogin, LoginFailed, load_login

    login = JwtLogin({"token.endpoint.url": "https://idp/token", "scope": "kafka write"},
                     {"clientId": "b r", "clientSecret": "s:1", "scope": "ignored", "extension_traceId": "x"})
    headers, body = login.retriever.form()
    assert body == "grant_type=client_credentials&scope=kafka+write"
    assert base64.b64decode(headers["Authorization"].split()[1]) == b"b r:s:1"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert login.extensions == {"traceId": "x"}
    login = JwtLogin({"token.endpoint.url": "http://idp/token", "header.urlencode": "true",
                      "client.credentials.client.id": "b r", "client.credentials.client.secret": "s:1"}, {})
    headers, body = login.retriever.form()
    assert base64.b64decode(headers["Authorization"].split()[1]) == b"b+r:s%3A1"
    assert body == "grant_type=client_credentials"
    assert login._check(unsecured_jws({"sub": "broker", "exp": 5})) == 5
    for bad in ("abc", unsecured_jws({"sub": "broker"}), unsecured_jws({"exp": 5}), unsecured_jws({"sub": 1, "exp": 5})):
        with pytest.raises(LoginFailed):
            login._check(bad)
    with pytest.raises(ValueError, match="clientSecret"):
        JwtLogin({"token.endpoint.url": "https://idp/t"}, {"clientId": "b"})
    with pytest.raises(ValueError, match="token.endpoint.url value is required"):
        load_login("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
                   {"clientId": "b", "clientSecret": "s"}, {})


def test_the_refresh_point_is_kafkas():
    """ExpiringCredentialRefreshingLogin's rule, with its defaults (0.8, 0.05,
    60 s, 300 s): within factor..factor+jitter of the life, clamped by the
    buffer before expiry and the minimum period from now."""
    from odradek.security.oauthbearer import RefreshWindow

    w = RefreshWindow()
    assert w.next_refresh(0, 0, 3600, rng=lambda: 0) == 2880
    assert w.next_refresh(0, 0, 3600, rng=lambda: 1) == pytest.approx(3060)
    assert RefreshWindow(factor=1.0, jitter=0).next_refresh(0, 0, 3600) == 3300  # not within the buffer
    assert w.next_refresh(3000, 0, 3600, rng=lambda: 0) == 3060  # not sooner than the minimum period
    assert w.next_refresh(0, 0, 100, rng=lambda: 0) == 80  # too short for both: that fraction from now
    assert w.next_refresh(0, 0, 100, rng=lambda: 1) == pytest.approx(85)


def test_refresh_settings_as_kafka_reads_them():
    window = listener(**{"sasl.login.refresh.window.factor": "0.9",
                         "listener.name.sasl_plaintext.oauthbearer.sasl.login.refresh.buffer.seconds": "120",
                         "sasl.login.refresh.min.period.seconds": "30",
                         "sasl.login.refresh.window.jitter": "0"}).oauth_refresh
    assert (window.factor, window.jitter, window.min_period_s, window.buffer_s) == (0.9, 0.0, 30, 120)
    for key, value, message in (("sasl.login.refresh.window.factor", "0.4", "Value must be at least 0.5"),
                                ("sasl.login.refresh.window.jitter", "0.3", "Value must be no more than 0.25"),
                                ("sasl.login.refresh.buffer.seconds", "3601", "Value must be no more than 3600"),
                                ("sasl.login.refresh.min.period.seconds", "1.5", "Not a number of type SHORT"),
                                ("sasl.login.refresh.window.factor", "x", "Not a number of type DOUBLE")):
        with pytest.raises(ConfigError, match=f"Invalid value {value} for configuration {key}: {message}"):
            listener(**{key: value})
    sec = BrokerConfig(props={"listeners": "PLAINTEXT://:1", "sasl.login.refresh.window.factor": "0.8"}).security()
    assert "sasl.login.refresh.window.factor has no effect: no listener enables OAUTHBEARER" in sec.notes
