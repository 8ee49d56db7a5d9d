"""SASL/OAUTHBEARER, server side and sans-IO (RFC 7628 as Kafka speaks it, KIP-255).

Theory of operation: the client's one message is RFC 7628's initial response,
``n,[a=<authzid>],\\x01auth=Bearer <token>\\x01[key=value\\x01]*\\x01``. The
bearer token goes to the listener's *validator*; a valid token completes the
login with the token's principal, and the token's expiry bounds the session
(Kafka's ``credential lifetime``: the session lifetime told to the client is the
smaller of it and ``connections.max.reauth.ms``). An invalid token is answered,
as Kafka answers it, with a successful SaslAuthenticate whose bytes are the
JSON error of RFC 7628 (``{"status":"invalid_token"}``, with ``scope`` when a
required scope is missing); the client then sends ``\\x01`` and is refused with
SASL_AUTHENTICATION_FAILED carrying that JSON. A message that does not parse
fails at once.

Validators (``listener.name.<l>.oauthbearer.sasl.server.callback.handler.class``):

- Kafka's unsecured-JWS validator, the default as in Kafka
  (``org.apache.kafka.common.security.oauthbearer.internals.unsecured.
  OAuthBearerUnsecuredValidatorCallbackHandler``): tokens with ``alg`` none
  and no signature, for tests only. Its options come from the listener's
  OAUTHBEARER JAAS line: ``unsecuredValidatorPrincipalClaimName`` (default
  ``sub``), ``unsecuredValidatorScopeClaimName`` (``scope``),
  ``unsecuredValidatorRequiredScope`` (space separated),
  ``unsecuredValidatorAllowableClockSkewMs`` (0).
- Kafka's JWKS validator (``org.apache.kafka.common.security.oauthbearer.
  OAuthBearerValidatorCallbackHandler``): a signed JWT verified with a key of
  the JSON Web Key Set at ``sasl.oauthbearer.jwks.endpoint.url`` (https, http
  or file), ``exp`` and ``iat`` required, ``sasl.oauthbearer.expected.audience``
  and ``...expected.issuer`` checked (each required, as in Kafka 4.4, unless
  ``...allow.unverified.audience`` or ``...allow.unverified.issuer``), ``...clock.skew.seconds``
  (30), ``...sub.claim.name`` and ``...scope.claim.name``. PyJWT (with
  cryptography) verifies; the key set is fetched off the event loop, kept
  ``...jwks.endpoint.refresh.ms`` (an hour), and fetched again, at most every
  ten seconds, when a token names a key id it does not hold.
- A Python class, named ``package.module:Class``: built with the JAAS options
  and the broker's properties, and asked ``await validate(token_value)``, which
  returns an ``OAuthBearerToken`` or raises ``TokenInvalid``.

SASL extensions (KIP-342: the ``key=value`` pairs beside ``auth``) must be well
formed (a key of letters, a value of printable ASCII, spaces, tabs or line
ends), or the message does not parse. Once the token is valid they go to the
validator, as Kafka's ``OAuthBearerExtensionsValidatorCallback`` does: Kafka's
two validators accept every one, and so do these; a Python validator may
define ``validate_extensions(token, extensions)`` returning the refused ones
(name -> reason), which fail the login with Kafka's message ("Authentication
failed: 1 extensions are invalid! They are: name: reason"). The accepted
ones are kept with the session (``OAuthBearerServer.extensions``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import inspect
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field

from odradek.security.oauth_retrievers import HttpRetry, LoginFailed, load_retriever
from odradek.security.sasl import AuthenticationFailed, MechanismServer

log = logging.getLogger("odradek.security")

MECHANISM = "OAUTHBEARER"
LOGIN_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
UNSECURED_VALIDATOR = ("org.apache.kafka.common.security.oauthbearer.internals.unsecured."
                       "OAuthBearerUnsecuredValidatorCallbackHandler")
# Kafka's JWKS validator, under its current and its older name.
JWKS_VALIDATORS = ("org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
                   "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerValidatorCallbackHandler")

SEP = "\x01"
_SASLNAME = r"(?:[\x01-\x7F](?<![=,])|=2C|=3D)+"
_KEY = r"[A-Za-z]+"
_VALUE = r"[\x21-\x7E \t\r\n]+"
_FIRST = re.compile(rf"n,(?:a=(?P<authzid>{_SASLNAME}))?,{SEP}(?P<kv>(?:{_KEY}={_VALUE}{SEP})*){SEP}", re.S)
_AUTH = re.compile(r"(?P<scheme>\w+) +(?P<token>[-_~+/.a-zA-Z0-9]+=*)")
_SCOPE_ITEM = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")


class TokenInvalid(Exception):
    """A token the validator refuses. ``status`` is RFC 7628's error status
    (``invalid_token``, or ``insufficient_scope`` with the ``scope`` needed);
    ``str(e)`` is logged, never sent."""

    def __init__(self, message: str, status: str = "invalid_token", scope: str | None = None,
                 openid_configuration: str | None = None):
        super().__init__(message)
        self.status, self.scope, self.openid_configuration = status, scope, openid_configuration

    def json(self) -> str:
        """The error as Kafka words it (its own JSON, key order included)."""
        out = f'{{"status":"{self.status}"'
        if self.scope is not None:
            out += f', "scope":"{self.scope}"'
        if self.openid_configuration is not None:
            out += f', "openid-configuration":"{self.openid_configuration}"'
        return out + "}"


@dataclass(frozen=True)
class OAuthBearerToken:
    value: str = field(repr=False)
    principal_name: str
    lifetime_ms: int  # when the token expires, in ms since the epoch
    scope: frozenset[str] = frozenset()
    start_time_ms: int | None = None


def parse_client_first(message: bytes) -> tuple[str, str, dict[str, str]]:
    """(authzid, token, extensions) of the client's initial response; raises
    AuthenticationFailed (Kafka's generic words) when it does not parse."""
    try:
        text = bytes(message).decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    m = _FIRST.fullmatch(text)
    if m is None:
        raise AuthenticationFailed("Authentication failed during authentication due to invalid credentials "
                                   "with SASL mechanism OAUTHBEARER")
    pairs = dict(kv.split("=", 1) for kv in m.group("kv").split(SEP) if kv)
    auth = pairs.pop("auth", None)
    a = _AUTH.fullmatch(auth or "")
    if a is None or a.group("scheme").lower() != "bearer":
        raise AuthenticationFailed("Authentication failed during authentication due to invalid credentials "
                                   "with SASL mechanism OAUTHBEARER")
    return m.group("authzid") or "", a.group("token"), pairs


# -- Kafka's unsecured-JWS validator ---------------------------------------------------

def _b64url_json(part: str) -> dict:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise TokenInvalid("malformed Base64 URL encoded value") from None
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise TokenInvalid("malformed JSON") from None
    if not isinstance(value, dict):
        raise TokenInvalid("malformed JSON")
    return value


def _number(claims: dict, name: str) -> float | None:
    v = claims.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TokenInvalid(f"The '{name}' claim was not of type Number")
    return float(v)


def parse_scope(text: str) -> list[str]:
    items = [s for s in text.split(" ") if s]
    for s in items:
        if not _SCOPE_ITEM.fullmatch(s):
            raise ValueError(f"Invalid scope value: {s}")
    return items


class UnsecuredValidator:
    """Kafka's ``OAuthBearerUnsecuredValidatorCallbackHandler``: an unsigned
    JWS (``alg`` none, empty signature) whose ``exp`` has not passed, whose
    ``iat`` (if any) is not in the future, whose principal claim is a
    non-empty string and whose scope holds every required item. For tests."""

    def __init__(self, options: dict[str, str], props: dict[str, str] | None = None, clock=time.time):
        self.principal_claim = (options.get("unsecuredValidatorPrincipalClaimName") or "").strip() or "sub"
        self.scope_claim = (options.get("unsecuredValidatorScopeClaimName") or "").strip() or "scope"
        self.required_scope = parse_scope((options.get("unsecuredValidatorRequiredScope") or "").strip())
        skew = (options.get("unsecuredValidatorAllowableClockSkewMs") or "").strip() or "0"
        try:
            self.skew_ms = int(skew)
        except ValueError:
            raise ValueError(f"unsecuredValidatorAllowableClockSkewMs={skew} is not an integer") from None
        if self.skew_ms < 0:
            raise ValueError(f"Allowable clock skew millis must not be negative: {skew}")
        self.clock = clock

    async def validate(self, value: str) -> OAuthBearerToken:
        return self.check(value, int(self.clock() * 1000))

    def check(self, value: str, now_ms: int) -> OAuthBearerToken:
        if ".." in value:
            raise TokenInvalid("Malformed compact serialization contains '..'")
        parts = value.split(".")
        if len(parts) != 3:
            raise TokenInvalid("Unsecured JWS compact serializations must have 3 dot-separated "
                               "Base64URL-encoded values")
        header, claims = _b64url_json(parts[0]), _b64url_json(parts[1])
        if header.get("alg") != "none":
            raise TokenInvalid("Unsecured JWS must have 'none' for an algorithm")
        if parts[2]:
            raise TokenInvalid("Unsecured JWS must not contain a digital signature")
        scope = self._scope(claims)
        exp = _number(claims, "exp")
        if exp is None:
            raise TokenInvalid("No expiration time in JWT")
        principal = claims.get(self.principal_claim)
        if principal is not None and not isinstance(principal, str):
            raise TokenInvalid(f"The {self.principal_claim} claim had the incorrect type")
        if not principal or not principal.strip():
            raise TokenInvalid(f"No principal name in JWT claim: {self.principal_claim}")
        iat = _number(claims, "iat")
        if iat is not None and 1000 * iat > now_ms + self.skew_ms:
            raise TokenInvalid(f"The Issued At value ({iat} seconds) was after the indicated time ({now_ms} ms) "
                               f"plus allowable clock skew ({self.skew_ms} ms)")
        if now_ms - self.skew_ms >= 1000 * exp:
            raise TokenInvalid(f"The indicated time ({now_ms} ms) minus allowable clock skew ({self.skew_ms} ms) "
                               f"was on or after the Expiration Time value ({exp} seconds)")
        if iat is not None and exp <= iat:
            raise TokenInvalid(f"The Expiration Time time ({exp} seconds) was not after the Issued At time "
                               f"({iat} seconds)")
        for item in self.required_scope:
            if item not in scope:
                raise TokenInvalid(f"The provided scope ({sorted(scope)}) was missing a required scope ({item})",
                                   status="insufficient_scope", scope="[" + ", ".join(self.required_scope) + "]")
        return OAuthBearerToken(value, principal, round(exp * 1000), scope,
                                None if iat is None else round(iat * 1000))

    def _scope(self, claims: dict) -> frozenset[str]:
        v = claims.get(self.scope_claim)
        if v is None:
            return frozenset()
        if isinstance(v, str):  # one item, as Kafka reads a string scope claim
            return frozenset([v.strip()]) if v.strip() else frozenset()
        if isinstance(v, list):
            return frozenset(str(s).strip() for s in v if str(s).strip())
        raise TokenInvalid(f"The '{self.scope_claim}' claim was not of type List")


def unsecured_jws(claims: dict, header: dict | None = None) -> str:
    """An unsecured JWS (``alg`` none) carrying ``claims``: what Kafka's
    unsecured login module and librdkafka's ``enable.sasl.oauthbearer.unsecure.jwt``
    make. For tests and examples."""
    def enc(d):
        return base64.urlsafe_b64encode(json.dumps(d, separators=(",", ":")).encode()).rstrip(b"=").decode()

    return f"{enc(header or {'alg': 'none'})}.{enc(claims)}."


# -- Kafka's unsecured login (a broker's own login to another) -----------------------------

_LOGIN_RESERVED = ("iat", "exp")
_EXTENSION_KEY = re.compile(_KEY)
_EXTENSION_VALUE = re.compile(_VALUE)
# Kafka's sasl.login.refresh.* settings: name -> (default, least, most)
REFRESH_KEYS = {"sasl.login.refresh.window.factor": (0.8, 0.5, 1.0),
                "sasl.login.refresh.window.jitter": (0.05, 0.0, 0.25),
                "sasl.login.refresh.min.period.seconds": (60, 0, 900),
                "sasl.login.refresh.buffer.seconds": (300, 0, 3600)}


@dataclass(frozen=True)
class RefreshWindow:
    """When a broker's own OAUTHBEARER token is made anew, as Kafka's
    refreshing login decides it (``sasl.login.refresh.*``): at a random point
    between ``factor`` and ``factor + jitter`` of its life, but not within
    ``buffer_s`` of its expiry nor sooner than ``min_period_s`` from now;
    when the token is too short for both, at that fraction from now."""

    factor: float = 0.8
    jitter: float = 0.05
    min_period_s: float = 60
    buffer_s: float = 300

    def next_refresh(self, now: float, start: float, expire: float, rng=random.random) -> float:
        pct = self.factor + self.jitter * rng()
        if now + self.min_period_s + self.buffer_s > expire:
            return now + (expire - now) * pct
        proposed = start + (expire - start) * pct
        if proposed > expire - self.buffer_s:
            return expire - self.buffer_s
        return max(proposed, now + self.min_period_s)


def _list_claim(value: str) -> list[str]:
    """``unsecuredLoginListClaim_<name>``: the first character is the delimiter
    (``,a,b`` is ["a", "b"]), read as Kafka reads it (Java's split, then an
    empty item when the text starts or ends with the delimiter or holds it twice)."""
    if len(value) <= 1:
        return []
    delim, text = value[0], value[1:]
    items = text.split(delim)
    while items and items[-1] == "":
        items.pop()
    if not items:
        items = [""]
    if text.startswith(delim) or text.endswith(delim) or delim + delim in text:
        items.append("")
    return items


class UnsecuredLogin:
    """Kafka's ``OAuthBearerUnsecuredLoginCallbackHandler``, the default login of
    ``OAuthBearerLoginModule``: an unsigned JWS made from the JAAS options
    (``unsecuredLoginStringClaim_<name>``, ``unsecuredLoginNumberClaim_<name>``,
    ``unsecuredLoginListClaim_<name>``, ``unsecuredLoginPrincipalClaimName``
    (``sub``), ``unsecuredLoginScopeClaimName`` (``scope``),
    ``unsecuredLoginLifetimeSeconds`` (3600)) and the SASL extensions
    ``unsecuredLoginExtension_<name>``. A token is kept until its refresh
    point (``RefreshWindow``), then made anew. Raises ValueError, at start,
    for options Kafka refuses."""

    def __init__(self, options: dict[str, str], clock=time.time, window: RefreshWindow = RefreshWindow()):
        self.options = options
        self.clock = clock
        self.window = window
        self.principal_claim = (options.get("unsecuredLoginPrincipalClaimName") or "").strip() or "sub"
        self.scope_claim = (options.get("unsecuredLoginScopeClaimName") or "").strip() or "scope"
        lifetime = options.get("unsecuredLoginLifetimeSeconds", "3600")
        try:
            self.lifetime_s = int(lifetime)
        except ValueError:
            raise ValueError(f"unsecuredLoginLifetimeSeconds={lifetime} is not an integer") from None
        self.claims: dict = {}
        for key, value in options.items():
            for prefix, kind in (("unsecuredLoginStringClaim_", str), ("unsecuredLoginNumberClaim_", float),
                                 ("unsecuredLoginListClaim_", list)):
                if key.startswith(prefix) and len(key) > len(prefix):
                    name = key[len(prefix):]
                    if name in _LOGIN_RESERVED:
                        raise ValueError(f"Cannot explicitly set the '{name}' claim")
                    if kind is float:
                        try:
                            self.claims[name] = float(value)
                        except ValueError:
                            raise ValueError(f"{key}={value} is not a number") from None
                    else:
                        self.claims[name] = _list_claim(value) if kind is list else value
        principal = self.claims.get(self.principal_claim)
        if not isinstance(principal, str) or not principal.strip():
            raise ValueError(f"the broker's own OAUTHBEARER login needs a principal: set "
                             f"unsecuredLoginStringClaim_{self.principal_claim}=\"<name>\" in the JAAS line")
        scope = self.claims.get(self.scope_claim)
        if scope is not None and not isinstance(scope, (str, list)):
            raise ValueError(f"The '{self.scope_claim}' claim must be a string or a list")
        self.extensions = _login_extensions(options, "unsecuredLoginExtension_")
        self.principal_name = principal
        self._token: str | None = None
        self._refresh_at = 0.0
        self.token()  # made once at start, as Kafka's login does: a bad option fails here

    def token(self) -> str:
        """The token to log in with: the one held, or a new one once its refresh point has passed."""
        now = int(self.clock() * 1000) / 1000  # as Kafka: milliseconds, in seconds
        if self._token is None or now >= self._refresh_at:
            claims = {"exp": now + self.lifetime_s, "iat": now, **self.claims}
            self._token = unsecured_jws(claims)
            self._refresh_at = self.window.next_refresh(now, now, now + self.lifetime_s)
        return self._token

    def client_first(self) -> bytes:
        """The client's initial response (RFC 7628, as Kafka's client sends it)."""
        return client_first(self.token(), self.extensions)

    async def initial_response(self) -> bytes:
        return self.client_first()


def client_first(token: str, extensions: dict[str, str]) -> bytes:
    """RFC 7628's initial response as Kafka's client writes it: no authzid, the
    token, then the extensions."""
    ext = "".join(f"{SEP}{k}={v}" for k, v in extensions.items())
    return f"n,,{SEP}auth=Bearer {token}{ext}{SEP}{SEP}".encode()


def _login_extensions(options: dict[str, str], prefix: str) -> dict[str, str]:
    out = {}
    for key, value in options.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            if not _EXTENSION_KEY.fullmatch(name) or name == "auth":
                raise ValueError(f"Extension name {name} is invalid")
            if not _EXTENSION_VALUE.fullmatch(value):
                raise ValueError(f"Extension value ({value}) for extension {name} is invalid")
            out[name] = value
    return out


# -- Kafka's OIDC login (OAuthBearerLoginCallbackHandler) ------------------------------------

LOGIN_HANDLER = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler"
UNSECURED_LOGIN_HANDLER = ("org.apache.kafka.common.security.oauthbearer.internals.unsecured."
                           "OAuthBearerUnsecuredLoginCallbackHandler")


class JwtLogin:
    """Kafka's ``OAuthBearerLoginCallbackHandler``: a token from the retriever
    ``sasl.oauthbearer.jwt.retriever.class`` names (``odradek.security.oauth_retrievers``:
    a token endpoint's client-credentials or jwt-bearer grant, or a file), checked
    as Kafka's client checks it (a JWT whose ``exp`` is a number and whose
    ``sub``, or ``sasl.oauthbearer.sub.claim.name``, is a non-empty string; no
    signature check, which is the brokers' to make), and kept until its refresh
    point (``RefreshWindow``). SASL extensions come from the JAAS options
    ``extension_<name>``. Raises ValueError at construction for settings Kafka refuses."""

    def __init__(self, settings: dict[str, str], options: dict[str, str], clock=time.time,
                 window: RefreshWindow = RefreshWindow(), http: HttpRetry = HttpRetry()):
        self.retriever = load_retriever(settings, options, http)
        self.sub_claim = (settings.get("sub.claim.name") or "").strip() or "sub"
        self.extensions = _login_extensions(options, "extension_")
        self.clock = clock
        self.window = window
        self._token: str | None = None
        self._refresh_at = 0.0
        self.fetches = 0

    def _check(self, value: str) -> float:
        """Kafka's client-side check of the token; its expiry, in seconds."""
        parts = value.split(".")
        if len(parts) != 3:
            raise LoginFailed("the login's token is not a JWT (three dot-separated parts)")
        try:
            claims = _b64url_json(parts[1])
            exp = _number(claims, "exp")
        except TokenInvalid as e:
            raise LoginFailed(f"the login's token: {e}") from None
        if exp is None:
            raise LoginFailed("the login's token has no exp claim")
        sub = claims.get(self.sub_claim)
        if not isinstance(sub, str) or not sub.strip():
            raise LoginFailed(f"the login's token has no {self.sub_claim} claim")
        return exp

    async def token(self) -> str:
        now = self.clock()
        if self._token is None or now >= self._refresh_at:
            value = await asyncio.to_thread(self.retriever.retrieve)
            exp = self._check(value)
            self.fetches += 1
            now = self.clock()
            self._token, self._refresh_at = value, self.window.next_refresh(now, now, max(exp, now))
        return self._token

    async def initial_response(self) -> bytes:
        return client_first(await self.token(), self.extensions)


def load_login(handler: str | None, options: dict[str, str], settings: dict[str, str],
               window: RefreshWindow = RefreshWindow(), http: HttpRetry = HttpRetry()):
    """A broker's own OAUTHBEARER login: the login callback handler named (default
    Kafka's unsecured one), renewing its token in ``window``. Raises ValueError saying why not."""
    handler = (handler or "").strip() or UNSECURED_LOGIN_HANDLER
    if handler == LOGIN_HANDLER:
        return JwtLogin(settings, options, window=window, http=http)
    if handler != UNSECURED_LOGIN_HANDLER:
        raise ValueError(f"login callback handler {handler} is not served ({LOGIN_HANDLER} or "
                         f"{UNSECURED_LOGIN_HANDLER})")
    if settings:
        raise ValueError(f"sasl.oauthbearer.{next(iter(settings))} is read by {LOGIN_HANDLER}: set "
                         f"sasl.login.callback.handler.class to it")
    return UnsecuredLogin(options, window=window)


# -- Kafka's JWKS validator ---------------------------------------------------------------

JWKS_KEYS = ("jwks.endpoint.url", "jwks.endpoint.refresh.ms", "jwks.endpoint.retry.backoff.ms",
             "jwks.endpoint.retry.backoff.max.ms", "expected.audience", "expected.issuer",
             "allow.unverified.audience", "allow.unverified.issuer", "scope.claim.name", "sub.claim.name",
             "clock.skew.seconds", "jwt.validator.class")
# sasl.oauthbearer.jwt.validator.class values that mean this validator (Kafka 4.1's KIP-1139)
JWT_VALIDATORS = ("org.apache.kafka.common.security.oauthbearer.DefaultJwtValidator",
                  "org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator")
# The signature algorithms each kind of key may verify (never 'none').
_ALGORITHMS = {"RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
               "EC": ("ES256", "ES384", "ES512", "ES256K"), "OKP": ("EdDSA",), "oct": ("HS256", "HS384", "HS512")}
MISSING_KID_REFRESH_S = 10.0


class JwksValidator:
    """Kafka's ``OAuthBearerValidatorCallbackHandler``; ``settings`` maps the
    ``sasl.oauthbearer.*`` keys without that prefix."""

    def __init__(self, settings: dict[str, str], clock=time.time):
        try:
            import jwt  # noqa: F401  (PyJWT, with cryptography for RSA and EC keys)
        except ImportError:
            raise ValueError("JWKS validation needs PyJWT and cryptography (pip install 'PyJWT[crypto]')") from None
        self.url = (settings.get("jwks.endpoint.url") or "").strip()
        if not self.url.startswith(("https://", "http://", "file:")):
            raise ValueError("sasl.oauthbearer.jwks.endpoint.url must be set to an https://, http:// or file: URL "
                             "for Kafka's JWKS validator")

        def number(key, default):
            text = (settings.get(key) or "").strip()
            try:
                value = int(text) if text else default
            except ValueError:
                raise ValueError(f"sasl.oauthbearer.{key}={text} is not an integer") from None
            if value < 0:
                raise ValueError(f"sasl.oauthbearer.{key} must not be negative")
            return value

        self.refresh_s = number("jwks.endpoint.refresh.ms", 3_600_000) / 1000
        self.skew_s = number("clock.skew.seconds", 30)
        self.audience = [a.strip() for a in (settings.get("expected.audience") or "").split(",") if a.strip()]
        self.issuer = (settings.get("expected.issuer") or "").strip() or None

        def allowed(key):
            text = (settings.get(key) or "false").strip().lower()
            if text not in ("true", "false"):
                raise ValueError(f"Invalid value {text} for configuration sasl.oauthbearer.{key}: Expected value "
                                 f"to be either true or false")
            return text == "true"

        # Kafka 4.4: an unchecked audience or issuer must be asked for
        for claim, wanted, key, what in (("aud", self.audience, "audience", "the audience(s) that identify this "
                                          "cluster"),
                                         ("iss", self.issuer, "issuer", "the issuer URL of the OAuth/OIDC provider "
                                          "that signs the tokens")):
            if wanted:
                continue
            if not allowed(f"allow.unverified.{key}"):
                raise ValueError(f"The OAuth validator for the broker requires \"sasl.oauthbearer.expected.{key}\" "
                                 f"to be configured so that the token's {key} (\"{claim}\") claim can be verified, "
                                 f"but it was not set. Set \"sasl.oauthbearer.expected.{key}\" to {what}, or set "
                                 f"\"sasl.oauthbearer.allow.unverified.{key}\" to true to accept tokens regardless "
                                 f"of their {key}.")
            log.warning("the OAuth validator accepts a JWT whatever its %r claim (sasl.oauthbearer.allow.unverified.%s"
                        "=true)", claim, key)
        self.scope_claim = (settings.get("scope.claim.name") or "").strip() or "scope"
        self.sub_claim = (settings.get("sub.claim.name") or "").strip() or "sub"
        self.clock = clock
        self.keys: list[dict] = []
        self.fetched_at: float | None = None
        self.lock = asyncio.Lock()

    def _fetch(self) -> list[dict]:
        import urllib.request

        with urllib.request.urlopen(self.url, timeout=10) as r:
            doc = json.loads(r.read())
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, list):
            raise ValueError("not a JSON Web Key Set")
        return [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"]

    async def _key_set(self, kid: str | None, refresh_missing: bool) -> list[dict]:
        async with self.lock:
            now = time.monotonic()
            stale = self.fetched_at is None or now - self.fetched_at >= self.refresh_s
            missing = refresh_missing and kid is not None and all(k.get("kid") != kid for k in self.keys) \
                and (self.fetched_at is None or now - self.fetched_at >= MISSING_KID_REFRESH_S)
            if stale or missing:
                try:
                    self.keys = await asyncio.to_thread(self._fetch)
                    self.fetched_at = now
                except Exception as e:  # keep the keys held; this login fails if none fits
                    log.warning("could not fetch the JSON Web Key Set from %s: %s", self.url, e)
            return self.keys

    async def validate(self, value: str) -> OAuthBearerToken:
        import jwt

        try:
            header = jwt.get_unverified_header(value)
        except jwt.PyJWTError as e:
            raise TokenInvalid(f"Could not validate the access token: {e}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg == "none":
            raise TokenInvalid("Could not validate the access token: an unsigned token")
        keys = [k for k in await self._key_set(kid, True) if kid is None or k.get("kid") == kid]
        key = next((k for k in keys if alg in _ALGORITHMS.get(k.get("kty"), ()) and k.get("alg", alg) == alg), None)
        if key is None:
            raise TokenInvalid(f"Could not validate the access token: no key for kid {kid!r} and alg {alg}")
        try:
            claims = jwt.decode(value, jwt.PyJWK(key, algorithm=alg), algorithms=[alg],
                                audience=self.audience or None, issuer=self.issuer, leeway=self.skew_s,
                                options={"require": ["exp", "iat"], "verify_aud": bool(self.audience)})
        except (jwt.PyJWTError, ValueError, TypeError) as e:
            raise TokenInvalid(f"Could not validate the access token: {e}") from None
        sub = claims.get(self.sub_claim)
        if not isinstance(sub, str) or not sub.strip():
            raise TokenInvalid(f"The {self.sub_claim} claim is missing or empty")
        raw_scope = claims.get(self.scope_claim)
        items = [raw_scope] if isinstance(raw_scope, str) else raw_scope if isinstance(raw_scope, list) else []
        scope = frozenset(str(s).strip() for s in items if str(s).strip())
        return OAuthBearerToken(value, sub.strip(), round(float(claims["exp"]) * 1000), scope,
                                round(float(claims["iat"]) * 1000))


def load_validator(name: str, options: dict[str, str], props: dict[str, str],
                   oauth_settings: dict[str, str] | None = None):
    """The validator a callback handler class names; raises ValueError saying why not.
    ``oauth_settings``: the listener's ``sasl.oauthbearer.*`` keys, without that prefix."""
    name = (name or "").strip() or UNSECURED_VALIDATOR
    oauth_settings = oauth_settings or {}
    if name in JWKS_VALIDATORS:
        chosen = (oauth_settings.get("jwt.validator.class") or "").strip()
        if chosen and chosen not in JWT_VALIDATORS:
            raise ValueError(f"sasl.oauthbearer.jwt.validator.class={chosen}: only Kafka's signature-checking "
                             f"validators are served ({', '.join(JWT_VALIDATORS)})")
        return JwksValidator(oauth_settings)
    if oauth_settings:
        raise ValueError(f"sasl.oauthbearer.{next(iter(oauth_settings))} is read only by Kafka's JWKS validator: "
                         f"set the callback handler class to {JWKS_VALIDATORS[0]}")
    if name == UNSECURED_VALIDATOR:
        return UnsecuredValidator(options, props)
    if ":" not in name:
        raise ValueError(f"{name} cannot be loaded: Java classes are not served; name a Python "
                         f"validator as package.module:Class")
    module, _, attr = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load the validator {name}: {e}") from None
    validator = cls(options, props)
    if not inspect.iscoroutinefunction(getattr(validator, "validate", None)):
        raise ValueError(f"{name} has no 'async def validate(self, token)'")
    return validator


class OAuthBearerServer(MechanismServer):
    mechanism = MECHANISM

    def __init__(self, validator):
        super().__init__()
        self.validator = validator
        self.error: str | None = None  # the JSON error sent; the client answers it with %x01
        self.token: OAuthBearerToken | None = None
        self.extensions: dict[str, str] = {}  # the client's SASL extensions the validator accepted

    @property
    def credential_expiry_ms(self) -> int | None:
        return self.token.lifetime_ms if self.token is not None else None

    async def evaluate(self, token: bytes) -> bytes:
        if self.complete:
            raise AuthenticationFailed("Authentication failed: OAUTHBEARER takes one message")
        if bytes(token) == SEP.encode() and self.error is not None:
            raise AuthenticationFailed(self.error)
        self.error = None
        authzid, value, extensions = parse_client_first(token)
        try:
            found = await self.validator.validate(value)
        except TokenInvalid as e:
            log.info("OAUTHBEARER token refused: %s", e)
            self.error = e.json()
            return self.error.encode()
        if authzid and authzid != found.principal_name:
            raise AuthenticationFailed(f"Authentication failed: Client requested an authorization id ({authzid}) "
                                       f"that is different from the token's principal name "
                                       f"({found.principal_name})")
        self.extensions = await self._check_extensions(found, extensions)
        self.token = found
        self.principal_name = found.principal_name
        self.complete = True
        return b""

    async def _check_extensions(self, token: OAuthBearerToken, extensions: dict[str, str]) -> dict[str, str]:
        """Kafka's extensions callback: the validator's ``validate_extensions``
        (sync or async) names the refused ones; without it, all are accepted, as
        Kafka's own validators accept them."""
        check = getattr(self.validator, "validate_extensions", None)
        if check is None or not extensions:
            return dict(extensions)
        refused = check(token, dict(extensions))
        if inspect.isawaitable(refused):
            refused = await refused
        if refused:
            listed = "; ".join(f"{k}: {v}" for k, v in refused.items())
            raise AuthenticationFailed(f"Authentication failed: {len(refused)} extensions are invalid! "
                                       f"They are: {listed}")
        return dict(extensions)
