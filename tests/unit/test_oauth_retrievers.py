"""Kafka's JWT retrievers for a broker's own OAUTHBEARER login (odradek.security.oauth_retrievers),
and Kafka 4.4's rule that the JWKS validator checks audience and issuer unless told not to."""

import json
import os
import urllib.parse

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from odradek.security import oauth_retrievers as R
from odradek.security.oauthbearer import JwksValidator, load_validator

CC = "org.apache.kafka.common.security.oauthbearer.ClientCredentialsJwtRetriever"


def pem(key, passphrase=None):
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


class Clock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def sleep(self, s):
        self.slept.append(round(s, 3))
        self.now += s


def test_retry_backs_off_doubling_within_the_window():
    """Kafka's Retry: 100, 200, 400 ms ... cut to what is left of max; the first error is the one raised."""
    clock, calls = Clock(), []

    def failing():
        calls.append(clock.now)
        raise R._Retryable(f"down {len(calls)}")

    with pytest.raises(R.LoginFailed, match="down 1"):
        R.HttpRetry(100, 1000).run(failing, sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.slept == [0.1, 0.2, 0.4, 0.3] and len(calls) == 5

    clock, answers = Clock(), iter([R._Retryable("503"), R._Retryable("503"), "token"])

    def flaky():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    assert R.HttpRetry(100, 10_000).run(flaky, sleep=clock.sleep, clock=lambda: clock.now) == "token"
    assert clock.slept == [0.1, 0.2]

    clock = Clock()

    def refused():
        raise R._Final("HTTP 401")

    with pytest.raises(R.LoginFailed, match="401"):
        R.HttpRetry(100, 10_000).run(refused, sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.slept == []  # a final answer is not tried again


def test_http_settings_are_checked_as_kafka_checks_them():
    retry = R.HttpRetry.from_settings({"sasl.login.retry.backoff.ms": "50", "sasl.login.connect.timeout.ms": "2000"})
    assert (retry.backoff_ms, retry.backoff_max_ms, retry.connect_timeout_ms, retry.read_timeout_ms) == \
        (50, 10_000, 2000, None)
    for values, message in (({"sasl.login.retry.backoff.ms": "-1"}, "must be non-negative"),
                            ({"sasl.login.retry.backoff.max.ms": "50"}, "is less than"),
                            ({"sasl.login.read.timeout.ms": "1.5"}, "Not a number of type INT")):
        with pytest.raises(ValueError, match=message):
            R.HttpRetry.from_settings(values)


def test_the_token_in_the_answer_is_access_token_first():
    assert R.parse_token_response('{"id_token": "i", "access_token": " a "}') == "a"
    assert R.parse_token_response('{"id_token": "i", "access_token": ""}') == "i"
    with pytest.raises(R.LoginFailed, match="did not contain a valid JWT"):
        R.parse_token_response('{"token": "x"}')
    with pytest.raises(R.LoginFailed, match="not JSON"):
        R.parse_token_response("<html>")


def test_the_retriever_is_chosen_as_kafka_chooses_it(tmp_path, rsa_key):
    token = jwt.encode({"sub": "broker", "exp": 2_000_000_000}, rsa_key, algorithm="RS256")
    path = write(tmp_path, "token.jwt", token + "\n")
    url = "file://" + urllib.parse.quote(path)
    assert isinstance(R.load_retriever({"token.endpoint.url": url}, {}), R.FileRetriever)
    assert isinstance(R.load_retriever({"token.endpoint.url": url, "jwt.retriever.class": R.FILE_RETRIEVER}, {}),
                      R.FileRetriever)
    secret = R.load_retriever({"token.endpoint.url": "https://idp/t"}, {"clientId": "c", "clientSecret": "s"})
    assert isinstance(secret, R.HttpRetriever) and "Authorization" in secret.form()[0]
    for settings, message in (
            ({"token.endpoint.url": "https://idp/t", "jwt.retriever.class": "com.acme.Retriever"},
             "Java classes cannot be loaded"),
            ({"token.endpoint.url": "ftp://idp/t"}, 'invalid protocol \\(ftp\\)'),
            ({"token.endpoint.url": "https://idp/t", "jwt.retriever.class": R.FILE_RETRIEVER}, "must be a file: URL"),
            ({"token.endpoint.url": url, "jwt.retriever.class": CC}, "must be an https:// or http:// URL"),
            ({"token.endpoint.url": "file:///no/such/file"}, "doesn't exist"),
            ({"token.endpoint.url": "file://" + str(tmp_path)}, "references a directory"),
            ({"token.endpoint.url": "file://" + write(tmp_path, "junk", "not a jwt")}, "not a serialized JWT"),
            ({"token.endpoint.url": "file://" + write(tmp_path, "parts", "a.b.c")},
             "not a serialized JWT \\(its header or payload: malformed Base64 URL encoded value\\)"),
            ({"token.endpoint.url": "https://idp/t", "jwt.retriever.class": R.JWT_BEARER_RETRIEVER},
             "assertion.private.key.file value is required"),
            ({"token.endpoint.url": "https://idp/t", "jwt.retriever.class": R.JWT_BEARER_RETRIEVER,
              "assertion.private.key.file": write(tmp_path, "k.pem", pem(rsa_key)), "assertion.algorithm": "HS256"},
             "Unsupported signing algorithm: HS256"),
            ({"token.endpoint.url": "https://idp/t", "jwt.retriever.class": R.JWT_BEARER_RETRIEVER,
              "assertion.private.key.file": write(tmp_path, "k.pem", pem(rsa_key)), "assertion.algorithm": "ES256"},
             "not a key for ES256")):
        with pytest.raises(ValueError, match=message):
            R.load_retriever(settings, {"clientId": "c", "clientSecret": "s"})


def test_a_token_file_is_read_again_when_it_changes(tmp_path, rsa_key):
    first = jwt.encode({"sub": "broker", "n": 1}, rsa_key, algorithm="RS256")
    path = write(tmp_path, "token.jwt", first)
    retriever = R.load_retriever({"token.endpoint.url": "file:" + path}, {})
    assert retriever.retrieve() == first
    second = jwt.encode({"sub": "broker", "n": 2}, rsa_key, algorithm="RS256")
    with open(path, "w") as f:
        f.write(second)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 1_000_000))
    assert retriever.retrieve() == second
    with open(path, "w") as f:
        f.write("garbage")
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 2_000_000))
    with pytest.raises(R.LoginFailed, match="not a serialized JWT"):
        retriever.retrieve()


def form_of(retriever):
    headers, body = retriever.form()
    assert "Authorization" not in headers and headers["Content-Type"] == "application/x-www-form-urlencoded"
    return {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}


def test_the_jwt_bearer_assertion_is_layered_and_signed_as_kafkas(tmp_path, rsa_key):
    """The assertion's claims: aud/iss/sub from the keys, under the template
    file's, under alg/typ, iat, exp (+300 s), nbf (-60 s) and a jti when asked;
    signed RS256 with the PKCS#8 key, encrypted with its passphrase."""
    template = write(tmp_path, "template.json", json.dumps(
        {"header": {"kid": "k-7", "alg": "none"}, "payload": {"sub": "from-template", "tenant": "t1", "iat": 1}}))
    settings = {"token.endpoint.url": "https://idp/token", "jwt.retriever.class": R.JWT_BEARER_RETRIEVER,
                "assertion.private.key.file": write(tmp_path, "key.pem", pem(rsa_key, "pass word")),
                "assertion.private.key.passphrase": "pass word", "assertion.template.file": template,
                "assertion.claim.aud": "https://idp", "assertion.claim.iss": "broker-1", "assertion.claim.sub": "b1",
                "assertion.claim.jti.include": "true", "scope": "kafka"}
    retriever = R.load_retriever(settings, {"scope": "not-this-one"})
    form = form_of(retriever)
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer" and form["scope"] == "kafka"
    header = jwt.get_unverified_header(form["assertion"])
    assert header["alg"] == "RS256" and header["typ"] == "JWT" and header["kid"] == "k-7"
    claims = jwt.decode(form["assertion"], rsa_key.public_key(), algorithms=["RS256"], audience="https://idp")
    assert claims["iss"] == "broker-1" and claims["sub"] == "from-template" and claims["tenant"] == "t1"
    assert claims["exp"] - claims["iat"] == 300 and claims["iat"] - claims["nbf"] == 60 and claims["iat"] > 1
    assert len(claims["jti"]) == 36 and form_of(retriever)["assertion"] != form["assertion"]
    with pytest.raises(ValueError, match="not a private key"):
        R.load_retriever(dict(settings, **{"assertion.private.key.passphrase": "wrong"}), {})


def test_client_assertion_replaces_the_secret(tmp_path):
    """client_credentials with a client assertion (private_key_jwt) when
    ...assertion.claim.iss or ...assertion.file is set: ES256 here, the client id optional."""
    key = ec.generate_private_key(ec.SECP256R1())
    settings = {"token.endpoint.url": "https://idp/token", "assertion.algorithm": "ES256",
                "assertion.private.key.file": write(tmp_path, "ec.pem", pem(key)), "assertion.claim.iss": "c1",
                "assertion.claim.exp.seconds": "30"}
    form = form_of(R.load_retriever(settings, {"clientId": "c1", "scope": "s1"}))
    assert form["grant_type"] == "client_credentials" and form["client_id"] == "c1" and form["scope"] == "s1"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    claims = jwt.decode(form["client_assertion"], key.public_key(), algorithms=["ES256"])
    assert claims["iss"] == "c1" and claims["exp"] - claims["iat"] == 30
    made = jwt.encode({"iss": "pre-made"}, key, algorithm="ES256")
    form = form_of(R.load_retriever({"token.endpoint.url": "https://idp/token",
                                     "assertion.file": write(tmp_path, "assertion.jwt", made)}, {}))
    assert form["client_assertion"] == made and "client_id" not in form


def test_the_jwks_validator_wants_audience_and_issuer_unless_told_not_to():
    """Kafka 4.4's BrokerJwtValidator: no expected audience (or issuer) is
    refused at start unless sasl.oauthbearer.allow.unverified.audience (or
    ...issuer) is true; sasl.oauthbearer.jwt.validator.class may name Kafka's
    checking validators only."""
    base = {"jwks.endpoint.url": "https://idp/jwks"}
    with pytest.raises(ValueError, match='requires "sasl.oauthbearer.expected.audience"'):
        JwksValidator(dict(base, **{"expected.issuer": "https://idp"}))
    with pytest.raises(ValueError, match='requires "sasl.oauthbearer.expected.issuer"'):
        JwksValidator(dict(base, **{"expected.audience": "kafka"}))
    with pytest.raises(ValueError, match="either true or false"):
        JwksValidator(dict(base, **{"expected.issuer": "i", "allow.unverified.audience": "yes"}))
    v = JwksValidator(dict(base, **{"allow.unverified.audience": "true", "allow.unverified.issuer": "TRUE"}))
    assert v.audience == [] and v.issuer is None
    handler = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
    settings = dict(base, **{"expected.audience": "kafka", "expected.issuer": "https://idp"})
    for name in ("org.apache.kafka.common.security.oauthbearer.DefaultJwtValidator",
                 "org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator"):
        assert isinstance(load_validator(handler, {}, {}, dict(settings, **{"jwt.validator.class": name})),
                          JwksValidator)
    with pytest.raises(ValueError, match="only Kafka's signature-checking validators"):
        load_validator(handler, {}, {}, dict(settings, **{
            "jwt.validator.class": "org.apache.kafka.common.security.oauthbearer.ClientJwtValidator"}))
