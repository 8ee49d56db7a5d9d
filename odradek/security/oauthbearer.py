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
- A Python class, named ``package.module:Class``: built with the JAAS options
  and the broker's properties, and asked ``await validate(token_value)``, which
  returns an ``OAuthBearerToken`` or raises ``TokenInvalid``.

SASL extensions are parsed (and must be well formed) but are not used, as with
Kafka's unsecured validator, which accepts any.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import inspect
import json
import logging
import re
import time
from dataclasses import dataclass, field

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


def load_validator(name: str, options: dict[str, str], props: dict[str, str]):
    """The validator a callback handler class names; raises ValueError saying why not."""
    name = (name or "").strip() or UNSECURED_VALIDATOR
    if name == UNSECURED_VALIDATOR:
        return UnsecuredValidator(options, props)
    if name in JWKS_VALIDATORS:
        raise ValueError(f"{name} (JWKS-based validation) is not served; use a Python validator "
                         f"(package.module:Class) or Kafka's unsecured validator for tests")
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

    @property
    def credential_expiry_ms(self) -> int | None:
        return self.token.lifetime_ms if self.token is not None else None

    async def evaluate(self, token: bytes) -> bytes:
        if self.complete:
            raise AuthenticationFailed("Authentication failed: OAUTHBEARER takes one message")
        if bytes(token) == SEP.encode() and self.error is not None:
            raise AuthenticationFailed(self.error)
        self.error = None
        authzid, value, _extensions = parse_client_first(token)
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
        self.token = found
        self.principal_name = found.principal_name
        self.complete = True
        return b""
