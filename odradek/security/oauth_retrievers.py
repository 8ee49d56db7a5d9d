"""Kafka's JWT retrievers, for a broker's own OAUTHBEARER login (KIP-768, Kafka 4.1's KIP-1139).

``sasl.oauthbearer.jwt.retriever.class`` picks how the login's token is had:

- ``DefaultJwtRetriever`` (the default): ``FileJwtRetriever`` when
  ``sasl.oauthbearer.token.endpoint.url`` is a ``file:`` URL, else
  ``ClientCredentialsJwtRetriever``;
- ``ClientCredentialsJwtRetriever``: an HTTP POST of
  ``grant_type=client_credentials`` to the token endpoint, authenticated by
  HTTP Basic ``clientId:clientSecret``, or, when ``...assertion.file`` or
  ``...assertion.claim.iss`` is set, by a client assertion (RFC 7523
  ``private_key_jwt``; the client id is then optional);
- ``JwtBearerJwtRetriever``: an HTTP POST of the jwt-bearer grant (RFC 7523),
  the assertion itself standing for the client;
- ``FileJwtRetriever``: the token in the file, read again whenever the file's
  modification time changes.

Each request is tried as Kafka's ``Retry`` tries it: again after
``sasl.login.retry.backoff.ms`` (100), doubling, for at most
``sasl.login.retry.backoff.max.ms`` (10,000) from the first try; an answer
Kafka deems final (400-407, 409-415, 501, 505) is not tried again.
``sasl.login.connect.timeout.ms`` and ``sasl.login.read.timeout.ms`` bound each
try (unset: 10 s each here, where Java waits without end). The answer's
``access_token``, else its ``id_token``, is the token.

An assertion is the file's (``sasl.oauthbearer.assertion.file``, a serialized
JWT, read again when it changes), else made and signed here with the PKCS#8
PEM key of ``...assertion.private.key.file`` (``...assertion.private.key.passphrase``
if encrypted) by ``...assertion.algorithm`` (RS256 or ES256, as Kafka). Its
claims are layered as Kafka layers them, each layer over the one before:
``aud``, ``iss`` and ``sub`` from ``...assertion.claim.*``; the header and
payload of the JSON ``...assertion.template.file``; then ``alg`` and ``typ``,
``iat``, ``exp`` (``...claim.exp.seconds`` after, 300), ``nbf``
(``...claim.nbf.seconds`` before, 60) and a random ``jti`` with
``...claim.jti.include``.

Leaves out: a retriever class of the user's own (Java classes cannot be loaded),
and a truststore for the token endpoint (https is checked against the system's CAs).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import ssl
import time
import urllib.parse
import uuid
from dataclasses import dataclass

log = logging.getLogger("odradek.security")

_PACKAGE = "org.apache.kafka.common.security.oauthbearer."
DEFAULT_RETRIEVER = _PACKAGE + "DefaultJwtRetriever"
CLIENT_CREDENTIALS_RETRIEVER = _PACKAGE + "ClientCredentialsJwtRetriever"
JWT_BEARER_RETRIEVER = _PACKAGE + "JwtBearerJwtRetriever"
FILE_RETRIEVER = _PACKAGE + "FileJwtRetriever"
RETRIEVERS = (DEFAULT_RETRIEVER, CLIENT_CREDENTIALS_RETRIEVER, JWT_BEARER_RETRIEVER, FILE_RETRIEVER)
# sasl.oauthbearer.<key> read by the retrievers
ASSERTION_KEYS = ("assertion.file", "assertion.algorithm", "assertion.private.key.file",
                  "assertion.private.key.passphrase", "assertion.template.file", "assertion.claim.aud",
                  "assertion.claim.iss", "assertion.claim.sub", "assertion.claim.exp.seconds",
                  "assertion.claim.nbf.seconds", "assertion.claim.jti.include")
RETRIEVER_KEYS = ("token.endpoint.url", "jwt.retriever.class", "client.credentials.client.id",
                  "client.credentials.client.secret", "scope", "header.urlencode") + ASSERTION_KEYS
# sasl.login.<key> of the token endpoint's HTTP requests: Kafka's default (None: none)
HTTP_KEYS = {"sasl.login.retry.backoff.ms": 100, "sasl.login.retry.backoff.max.ms": 10_000,
             "sasl.login.connect.timeout.ms": None, "sasl.login.read.timeout.ms": None}
DEFAULT_TIMEOUT_S = 10.0
UNRETRYABLE_STATUS = frozenset({400, 401, 402, 403, 404, 405, 406, 407, 409, 410, 411, 412, 413, 414, 415,
                                501, 505})
ASSERTION_ALGORITHMS = ("RS256", "ES256")
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class LoginFailed(Exception):
    """No token could be had for the broker's own login."""


class _Retryable(Exception):
    pass


class _Final(Exception):
    pass


def _require_file(key: str, path: str) -> str:
    """Kafka's check of a file named by an OAuth option, at start."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise ValueError(f"The OAuth configuration option sasl.oauthbearer.{key} contains a file ({path}) that "
                         f"doesn't exist")
    if os.path.isdir(path):
        raise ValueError(f"The OAuth configuration option sasl.oauthbearer.{key} references a directory ({path}), "
                         f"not a file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"The OAuth configuration option sasl.oauthbearer.{key} contains a file ({path}) that "
                         f"doesn't have read permission")
    return path


class CachedFile:
    """A file's contents made into a value by ``transform``, made again only
    when the file's modification time changes (Kafka's ``CachedFile``). The
    first read is at construction, where a bad file raises ValueError; later,
    LoginFailed."""

    def __init__(self, path: str, transform):
        self.path, self.transform = path, transform
        self._mtime: int | None = None
        self._value = None
        self._load()

    def _load(self):
        try:
            mtime = os.stat(self.path).st_mtime_ns
            if mtime != self._mtime:
                with open(self.path, encoding="utf-8") as f:
                    value = self.transform(f.read())
                self._mtime, self._value = mtime, value
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read {self.path}: {e}") from None
        return self._value

    def value(self):
        try:
            return self._load()
        except ValueError as e:
            raise LoginFailed(f"{self.path}: {e}") from None


def serialized_jwt(text: str) -> str:
    """``text`` stripped, once its header and payload parse (Kafka's check of a JWT read from a file)."""
    from odradek.security.oauthbearer import TokenInvalid, _b64url_json  # the one JWT part decoder

    text = text.strip()
    parts = text.split(".")
    if len(parts) != 3:
        raise ValueError("not a serialized JWT (three dot-separated parts)")
    try:
        _b64url_json(parts[0])
        _b64url_json(parts[1])
    except TokenInvalid as e:
        raise ValueError(f"not a serialized JWT (its header or payload: {e})") from None
    return text


@dataclass
class HttpRetry:
    """How the token endpoint is asked: Kafka's ``HttpJwtRetriever`` with its ``Retry``."""

    backoff_ms: int = 100
    backoff_max_ms: int = 10_000
    connect_timeout_ms: int | None = None
    read_timeout_ms: int | None = None

    @classmethod
    def from_settings(cls, values: dict[str, str]) -> HttpRetry:
        """From the ``sasl.login.*`` keys given (``HTTP_KEYS``); raises ValueError as Kafka refuses them."""
        out = {}
        for key, default in HTTP_KEYS.items():
            text = (values.get(key) or "").strip()
            try:
                value = int(text) if text else default
            except ValueError:
                raise ValueError(f"Invalid value {text} for configuration {key}: Not a number of type "
                                 f"{'LONG' if 'backoff' in key else 'INT'}") from None
            if value is not None and value < 0:
                raise ValueError(f"{key} value ({value}) must be non-negative")
            out[key] = value
        retry = cls(*out.values())
        if retry.backoff_max_ms < retry.backoff_ms:
            raise ValueError(f"sasl.login.retry.backoff.max.ms value ({retry.backoff_max_ms}) is less than "
                             f"sasl.login.retry.backoff.ms value ({retry.backoff_ms})")
        return retry

    def run(self, call, sleep=time.sleep, clock=time.monotonic):
        """``call()``'s answer, tried again on a retryable failure while the
        window lasts; raises LoginFailed with the first failure."""
        end = clock() + self.backoff_max_ms / 1000
        attempt, first = 0, None
        while clock() <= end:
            attempt += 1
            try:
                return call()
            except _Final as e:
                raise LoginFailed(str(first or e)) from None
            except _Retryable as e:
                first = first or e
                wait = min(self.backoff_ms * 2 ** (attempt - 1) / 1000, end - clock())
                if wait <= 0:
                    break
                log.warning("OAUTHBEARER login: attempt %d failed (%s); trying again in %d ms", attempt, e,
                            wait * 1000)
                sleep(wait)
        raise LoginFailed(str(first or "no attempt was made within sasl.login.retry.backoff.max.ms"))

    def post(self, url: str, headers: dict[str, str], body: str) -> str:
        """One POST; its body on 200 or 201. Raises _Final or _Retryable."""
        parts = urllib.parse.urlsplit(url)
        connect = DEFAULT_TIMEOUT_S if self.connect_timeout_ms is None else self.connect_timeout_ms / 1000 or None
        read = DEFAULT_TIMEOUT_S if self.read_timeout_ms is None else self.read_timeout_ms / 1000 or None
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=connect,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=connect)
        try:
            conn.connect()
            conn.sock.settimeout(read)
            conn.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                         body=body.encode(), headers=dict(headers, **{"Cache-Control": "no-cache"}))
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as e:
            raise _Retryable(f"the token endpoint could not be reached: {e}") from None
        finally:
            conn.close()
        if resp.status in (200, 201):
            if not text:
                raise _Retryable(f"the token endpoint's answer was empty (HTTP {resp.status})")
            return text
        detail = _error_detail(text)
        if resp.status in UNRETRYABLE_STATUS:
            raise _Final(f"the token endpoint answered HTTP {resp.status} {detail}; not tried again")
        raise _Retryable(f"the token endpoint answered HTTP {resp.status} {detail}")


def _error_detail(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return f"{{{text[:200]}}}" if text.strip() else "{}"
    if isinstance(doc, dict) and "error" in doc:
        return f"{{{doc.get('error')} - {doc.get('error_description')}}}"
    return text[:200]


def parse_token_response(text: str) -> str:
    """The token in the endpoint's answer: ``access_token``, else ``id_token`` (Kafka's order)."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise LoginFailed("the token endpoint's answer is not JSON") from None
    for key in ("access_token", "id_token"):
        value = doc.get(key) if isinstance(doc, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise LoginFailed(f"The token endpoint response did not contain a valid JWT. Response: ({text[:1000]})")


class AssertionSupplier:
    """The JWT assertion of RFC 7523: the file's, or one made and signed here (see the module)."""

    def __init__(self, settings: dict[str, str], clock=time.time):
        self.clock = clock
        self.file = None
        self.template = None
        path = (settings.get("assertion.file") or "").strip()
        if path:
            self.file = CachedFile(_require_file("assertion.file", path), serialized_jwt)
            return
        self.algorithm = (settings.get("assertion.algorithm") or "RS256").strip()
        if self.algorithm.upper() not in ASSERTION_ALGORITHMS:
            raise ValueError(f"Unsupported signing algorithm: {self.algorithm} (sasl.oauthbearer.assertion.algorithm: "
                             f"{' or '.join(ASSERTION_ALGORITHMS)})")
        self.algorithm = self.algorithm.upper()
        key_path = (settings.get("assertion.private.key.file") or "").strip()
        if not key_path:
            raise ValueError("The OAuth configuration option sasl.oauthbearer.assertion.private.key.file value is "
                             "required (or sasl.oauthbearer.assertion.file)")
        passphrase = settings.get("assertion.private.key.passphrase")
        self.key = CachedFile(_require_file("assertion.private.key.file", key_path),
                              lambda text: self._private_key(text, passphrase))

        def seconds(key, default):
            text = (settings.get(key) or "").strip()
            try:
                return int(text) if text else default
            except ValueError:
                raise ValueError(f"Invalid value {text} for configuration sasl.oauthbearer.{key}: Not a number of "
                                 f"type INT") from None

        self.exp_s = seconds("assertion.claim.exp.seconds", 300)
        self.nbf_s = seconds("assertion.claim.nbf.seconds", 60)
        jti = (settings.get("assertion.claim.jti.include") or "false").strip().lower()
        if jti not in ("true", "false"):
            raise ValueError(f"Invalid value {jti} for configuration sasl.oauthbearer.assertion.claim.jti.include: "
                             f"Expected value to be either true or false")
        self.include_jti = jti == "true"
        self.static = {c: settings[f"assertion.claim.{c}"].strip() for c in ("aud", "iss", "sub")
                       if (settings.get(f"assertion.claim.{c}") or "").strip()}
        template = (settings.get("assertion.template.file") or "").strip()
        if template:
            self.template = CachedFile(_require_file("assertion.template.file", template), self._template)

    def _private_key(self, text: str, passphrase: str | None):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        try:
            key = serialization.load_pem_private_key(text.encode(), passphrase.encode() if passphrase else None)
        except (ValueError, TypeError) as e:
            raise ValueError(f"sasl.oauthbearer.assertion.private.key.file: not a private key in PEM "
                             f"(with the passphrase given, if any): {e}") from None
        wanted = rsa.RSAPrivateKey if self.algorithm == "RS256" else ec.EllipticCurvePrivateKey
        if not isinstance(key, wanted):
            raise ValueError(f"sasl.oauthbearer.assertion.private.key.file: not a key for {self.algorithm}")
        return key

    @staticmethod
    def _template(text: str) -> tuple[dict, dict]:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k, {}), dict) for k in ("header", "payload")):
            raise ValueError("sasl.oauthbearer.assertion.template.file: expected a JSON object with objects "
                             "'header' and 'payload'")
        return doc.get("header", {}), doc.get("payload", {})

    def assertion(self) -> str:
        if self.file is not None:
            return self.file.value()
        import jwt

        header, payload = {}, dict(self.static)
        if self.template is not None:
            t_header, t_payload = self.template.value()
            header.update(t_header)
            payload.update(t_payload)
        now = int(self.clock())
        header.update(alg=self.algorithm, typ="JWT")
        payload.update(iat=now, exp=now + self.exp_s, nbf=now - self.nbf_s)
        if self.include_jti:
            payload["jti"] = str(uuid.uuid4())
        try:
            return jwt.encode(payload, self.key.value(), algorithm=self.algorithm, headers=header)
        except (jwt.PyJWTError, ValueError, TypeError) as e:
            raise LoginFailed(f"the assertion could not be signed: {e}") from None


class FileRetriever:
    """Kafka's ``FileJwtRetriever``: the token in a file, read again when it changes."""

    def __init__(self, path: str):
        self.file = CachedFile(_require_file("token.endpoint.url", path), serialized_jwt)

    def retrieve(self) -> str:
        return self.file.value()


class HttpRetriever:
    """Kafka's ``HttpJwtRetriever``: ``form()`` gives the request's headers and body, asked anew each time."""

    def __init__(self, url: str, form, http: HttpRetry):
        self.url, self.form, self.http = url, form, http
        self.requests = 0

    def retrieve(self) -> str:
        def once():
            self.requests += 1
            return self.http.post(self.url, *self.form())

        return parse_token_response(self.http.run(once))


FORM = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}


def _client_secret_form(client_id: str, secret: str, scope: str | None, urlencode: bool):
    if urlencode:
        client_id, secret = urllib.parse.quote_plus(client_id), urllib.parse.quote_plus(secret)
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    body = "grant_type=client_credentials" + (f"&scope={urllib.parse.quote_plus(scope)}" if scope else "")
    return lambda: (dict(FORM, Authorization=f"Basic {basic}"), body)


def _client_assertion_form(client_id: str | None, scope: str | None, assertions: AssertionSupplier):
    def form():
        body = urllib.parse.urlencode([("client_assertion_type", CLIENT_ASSERTION_TYPE),
                                       ("client_assertion", assertions.assertion()),
                                       ("grant_type", "client_credentials")]
                                      + ([("client_id", client_id)] if client_id else [])
                                      + ([("scope", scope)] if scope else []))
        return dict(FORM), body
    return form


def _jwt_bearer_form(scope: str | None, assertions: AssertionSupplier):
    def form():
        return dict(FORM), urllib.parse.urlencode([("grant_type", JWT_BEARER_GRANT),
                                                   ("assertion", assertions.assertion())]
                                                  + ([("scope", scope)] if scope else []))
    return form


def load_retriever(settings: dict[str, str], options: dict[str, str], http: HttpRetry = HttpRetry()):
    """The retriever ``sasl.oauthbearer.jwt.retriever.class`` names, built from
    the ``sasl.oauthbearer.*`` keys (``settings``, without that prefix) and the
    JAAS options (``clientId``, ``clientSecret``, ``scope``). Raises ValueError
    saying why not."""
    name = (settings.get("jwt.retriever.class") or "").strip() or DEFAULT_RETRIEVER
    if name not in RETRIEVERS:
        raise ValueError(f"sasl.oauthbearer.jwt.retriever.class={name}: Java classes cannot be loaded "
                         f"(served: {', '.join(RETRIEVERS)})")
    url = (settings.get("token.endpoint.url") or "").strip()
    if not url:
        raise ValueError("The OAuth configuration option sasl.oauthbearer.token.endpoint.url value is required")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"The OAuth configuration option sasl.oauthbearer.token.endpoint.url contains a URL ({url}) "
                         f"that contains an invalid protocol ({scheme or 'none'}); only \"http\", \"https\", and "
                         f"\"file\" protocol are supported")
    if name == DEFAULT_RETRIEVER:
        name = FILE_RETRIEVER if scheme == "file" else CLIENT_CREDENTIALS_RETRIEVER
    if name == FILE_RETRIEVER:
        if scheme != "file":
            raise ValueError(f"{FILE_RETRIEVER} reads a file: sasl.oauthbearer.token.endpoint.url must be a file: URL")
        return FileRetriever(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if scheme == "file":
        raise ValueError(f"{name} asks an HTTP token endpoint: sasl.oauthbearer.token.endpoint.url must be an "
                         f"https:// or http:// URL")

    def value(key, jaas=None):
        v = settings.get(key)
        v = v if v is not None else options.get(jaas) if jaas else None
        return v.strip() if v is not None and v.strip() else None

    scope = value("scope", "scope")
    if name == JWT_BEARER_RETRIEVER:
        return HttpRetriever(url, _jwt_bearer_form(value("scope"), AssertionSupplier(settings)), http)
    client_id = value("client.credentials.client.id", "clientId")
    if value("assertion.file") or value("assertion.claim.iss"):
        return HttpRetriever(url, _client_assertion_form(client_id, scope, AssertionSupplier(settings)), http)
    secret = value("client.credentials.client.secret", "clientSecret")
    for key, jaas, v in (("client.credentials.client.id", "clientId", client_id),
                         ("client.credentials.client.secret", "clientSecret", secret)):
        if v is None:
            raise ValueError(f"Could not find OAuth configuration for sasl.oauthbearer.{key} or OAuth JAAS "
                             f"configuration for {jaas}")
    encode = (settings.get("header.urlencode") or "false").strip().lower()
    if encode not in ("true", "false"):
        raise ValueError(f"sasl.oauthbearer.header.urlencode={encode}: expected true or false")
    return HttpRetriever(url, _client_secret_form(client_id, secret, scope, encode == "true"), http)
