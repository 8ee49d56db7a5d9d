"""Delegation tokens (KIP-48): short-lived credentials a SASL or TLS client
creates for itself (or, with CREATE_TOKENS on the other user, for someone
else) and hands to a job, which logs in with SCRAM as the token's owner.

A token is its id (a random Kafka Uuid, as text) and its HMAC, HMAC-SHA512 of
the id under ``delegation.token.secret.key``; the HMAC is never stored, every
broker computes it from the id with the secret they share (so the secret must
be the same on every broker, as in Kafka). One ``tokens/<id>`` key per token
in the metadata store (a JSON object: owner, requester, renewers, issue,
expiry and max timestamps), followed by the image (``TokenCache``).

Rules, as Kafka's controller applies them:
- no secret: every token API answers DELEGATION_TOKEN_AUTH_DISABLED;
- the expiry is ``delegation.token.expiry.time.ms`` after the issue or the
  last renewal (a renewal may ask for less), never past the max timestamp,
  ``delegation.token.max.lifetime.ms`` after the issue (a request may ask
  for less);
- the owner, and the renewers, may renew and expire a token; an expiry
  period below zero removes it at once;
- renewers are User principals (INVALID_PRINCIPAL_TYPE otherwise).

Logins: SCRAM-SHA-256/512 with the ``tokenauth=true`` extension, the token
id as user name and the base64 HMAC as password. The principal is the
owner's (always of type User, as Kafka's SASL principal builder makes it),
marked as authenticated by a token, which may not create, renew, expire or
describe tokens. A session lasts no longer than the token's expiry.

Expired tokens: a token past its expiry or max timestamp no longer logs in
and is not described; renewing it answers DELEGATION_TOKEN_EXPIRED. Its key
is removed by the next Create, Renew or Expire on any broker (Kafka's
controller sweeps them every ``delegation.token.expiry.check.interval.ms``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac as hmac_module
import json
import uuid
from dataclasses import dataclass

from odradek.clock import now_ms
from odradek.security.principal import ANONYMOUS, USER, KafkaPrincipal
from odradek.security.scram import ScramCredential, from_password

PREFIX = "tokens/"
MAX_LIFETIME_KEY = "delegation.token.max.lifetime.ms"
EXPIRY_TIME_KEY = "delegation.token.expiry.time.ms"
SECRET_KEY = "delegation.token.secret.key"
DEFAULTS = {MAX_LIFETIME_KEY: "604800000", EXPIRY_TIME_KEY: "86400000",
            "delegation.token.expiry.check.interval.ms": "3600000"}
SCRAM_ITERATIONS = 4096  # as Kafka derives a token's SCRAM credentials


def requests_allowed(ctx) -> bool:
    """Kafka's rule for who may manage tokens: an authenticated login that
    did not use a token (not PLAINTEXT, not an anonymous TLS client)."""
    conn = ctx.connection
    if conn.token_authenticated or conn.protocol == "PLAINTEXT":
        return False
    return not (conn.protocol == "SSL" and ctx.principal == ANONYMOUS)


def owner_of(ctx, request: dict) -> KafkaPrincipal:
    """A CreateDelegationToken's owner: the one it names (v3), else the requester."""
    name = request.get("owner_principal_name")
    return KafkaPrincipal(request.get("owner_principal_type") or USER, name) if name else ctx.principal


def create_response(owner: KafkaPrincipal, requester: KafkaPrincipal, error: int = 0) -> dict:
    """A CreateDelegationToken answer before (or instead of) a token: the owner and requester."""
    return {"error_code": error, "principal_type": owner.type, "principal_name": owner.name,
            "token_requester_principal_type": requester.type, "token_requester_principal_name": requester.name,
            "issue_timestamp_ms": 0, "expiry_timestamp_ms": 0, "max_timestamp_ms": 0, "token_id": "", "hmac": b""}


def key_of(token_id: str) -> str:
    return PREFIX + token_id


def new_token_id() -> str:
    """A Kafka Uuid as text: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def token_hmac(secret: str, token_id: str) -> bytes:
    return hmac_module.new(secret.encode(), token_id.encode(), hashlib.sha512).digest()


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    owner: KafkaPrincipal
    requester: KafkaPrincipal
    renewers: tuple[KafkaPrincipal, ...]
    issue_ms: int
    expiry_ms: int
    max_ms: int

    def expired(self, now: int) -> bool:
        return self.expiry_ms < now or self.max_ms < now

    def owner_or_renewer(self, principal: KafkaPrincipal) -> bool:
        return principal == self.owner or principal in self.renewers

    def to_json(self) -> bytes:
        return json.dumps({"owner": str(self.owner), "requester": str(self.requester),
                           "renewers": [str(r) for r in self.renewers], "issue": self.issue_ms,
                           "expiry": self.expiry_ms, "max": self.max_ms}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, token_id: str, raw: bytes | str) -> "TokenInfo":
        d = json.loads(raw)
        return cls(token_id, KafkaPrincipal.parse(d["owner"]), KafkaPrincipal.parse(d["requester"]),
                   tuple(KafkaPrincipal.parse(r) for r in d["renewers"]), int(d["issue"]), int(d["expiry"]),
                   int(d["max"]))


class TokenCache:
    """Every token, as the store holds them: token id -> TokenInfo (the image's)."""

    def __init__(self):
        self.tokens: dict[str, TokenInfo] = {}

    def put(self, key: str, value: bytes | str) -> None:
        token_id = key[len(PREFIX):]
        self.tokens[token_id] = TokenInfo.from_json(token_id, value)

    def delete(self, key: str) -> None:
        self.tokens.pop(key[len(PREFIX):], None)

    def clear(self) -> None:
        self.tokens.clear()


@dataclass(frozen=True)
class TokenLogin:
    """What a SCRAM login with a token needs: the credential its HMAC makes,
    and whom it logs in as, until when."""

    credential: ScramCredential
    owner_name: str
    expiry_ms: int


class DelegationTokens:
    """A broker's view of the tokens: the secret and lifetimes of its config,
    the tokens of its image. Stateless but for a cache of derived SCRAM
    credentials (a token's HMAC never changes)."""

    def __init__(self, config, cache: TokenCache):
        self.secret = (config.get(SECRET_KEY) or "") or None
        self.max_lifetime_ms = int(config.get(MAX_LIFETIME_KEY) or DEFAULTS[MAX_LIFETIME_KEY])
        self.expiry_time_ms = int(config.get(EXPIRY_TIME_KEY) or DEFAULTS[EXPIRY_TIME_KEY])
        self.cache = cache
        self._credentials: dict[tuple[str, str], ScramCredential] = {}

    @property
    def enabled(self) -> bool:
        return self.secret is not None

    def hmac(self, token_id: str) -> bytes:
        return token_hmac(self.secret, token_id)

    def by_hmac(self, mac: bytes) -> TokenInfo | None:
        for info in self.cache.tokens.values():
            if hmac_module.compare_digest(self.hmac(info.token_id), bytes(mac)):
                return info
        return None

    def expired(self, now: int) -> list[str]:
        return [t for t, info in self.cache.tokens.items() if info.expired(now)]

    def login(self, mechanism: str, token_id: str, now: int) -> TokenLogin | None:
        """The SCRAM login a token allows now; None for no such token, or an expired one."""
        info = self.cache.tokens.get(token_id) if self.enabled else None
        if info is None or info.expired(now):
            return None
        credential = self._credentials.get((mechanism, token_id))
        if credential is None:
            password = base64.b64encode(self.hmac(token_id)).decode()
            credential = from_password(mechanism, password, SCRAM_ITERATIONS)
            if len(self._credentials) > 10000:
                self._credentials.clear()
            self._credentials[(mechanism, token_id)] = credential
        return TokenLogin(credential, info.owner.name, min(info.expiry_ms, info.max_ms))

    def scram_login(self, mechanism: str, token_id: str) -> TokenLogin | None:
        return self.login(mechanism, token_id, now_ms())
