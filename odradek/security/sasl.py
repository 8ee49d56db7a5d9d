"""SASL mechanisms, server side and sans-IO: ``await evaluate(token)`` takes the
client's token and returns the server's; ``complete`` and ``principal_name``
tell the outcome. A failed login raises ``AuthenticationFailed`` with the
message the client is told, which never says whether the user exists.

- PLAIN (RFC 4616): ``authzid NUL user NUL password``; users and passwords
  from the listener's JAAS line (``user_<name>="<password>"``), compared in
  constant time. An authorisation id other than the user is refused.
- SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, no channel binding), through
  scramp: two round trips; only a verified client proof completes. With
  Kafka's ``tokenauth=true`` extension the user is a delegation token's id
  and the login is its owner's (``odradek.security.delegation_tokens``);
  scramp refuses that extension's name, so that exchange is verified here,
  by RFC 5802's steps.
- OAUTHBEARER (RFC 7628): ``odradek.security.oauthbearer``.

A mechanism server may say when its credential expires
(``credential_expiry_ms``, ms since the epoch; None: never), which bounds the
session as Kafka's credential lifetime does.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from typing import TYPE_CHECKING, Awaitable, Callable

from odradek.security.scram import MECHANISMS as SCRAM_MECHANISMS, ScramCredential

if TYPE_CHECKING:
    from odradek.security.delegation_tokens import TokenLogin


class AuthenticationFailed(Exception):
    """The login failed; ``str(e)`` is what the client is told."""


class MechanismServer:
    mechanism = ""

    def __init__(self):
        self.complete = False
        self.principal_name: str | None = None
        self.token_authenticated = False  # logged in with a delegation token

    @property
    def credential_expiry_ms(self) -> int | None:
        return None

    async def evaluate(self, token: bytes) -> bytes:
        raise NotImplementedError


class PlainServer(MechanismServer):
    mechanism = "PLAIN"

    def __init__(self, users: dict[str, str]):
        super().__init__()
        self.users = users

    async def evaluate(self, token: bytes) -> bytes:
        if self.complete:
            raise AuthenticationFailed("Authentication failed: PLAIN takes one message")
        try:
            authzid, user, password = bytes(token).decode("utf-8").split("\0")
        except ValueError:
            raise AuthenticationFailed("Authentication failed: invalid SASL/PLAIN message") from None
        if not user or not password:
            raise AuthenticationFailed("Authentication failed: username or password not specified")
        expected = self.users.get(user)
        # Compare even for an unknown user, so that timing does not tell.
        ok = hmac.compare_digest((expected or "\0unknown").encode(), password.encode())
        if expected is None or not ok:
            raise AuthenticationFailed("Authentication failed: Invalid username or password")
        if authzid and authzid != user:
            raise AuthenticationFailed("Authentication failed: Client requested an authorization id "
                                       "that is different from username")
        self.complete = True
        self.principal_name = user
        return b""


def _saslname(escaped: str) -> str:
    """RFC 5802's saslname: '=2C' is ',' and '=3D' is '='; any other '=' is invalid."""
    if "=" in escaped.replace("=2C", "").replace("=3D", ""):
        raise AuthenticationFailed("Authentication failed: invalid user name encoding")
    return escaped.replace("=2C", ",").replace("=3D", "=")


class ScramServer(MechanismServer):
    """``lookup(mechanism, user)`` returns the user's credential or None."""

    def __init__(self, mechanism: str,
                 lookup: Callable[[str, str], Awaitable[ScramCredential | None]],
                 token_lookup: Callable[[str, str], "TokenLogin | None"] | None = None):
        super().__init__()
        assert mechanism in SCRAM_MECHANISMS
        self.mechanism = mechanism
        self.lookup = lookup
        self.token_lookup = token_lookup  # (mechanism, token id) -> TokenLogin, or None
        self.server = None
        self.user: str | None = None
        self.token: TokenScram | None = None  # a tokenauth exchange under way
        self.token_expiry_ms: int | None = None

    @property
    def credential_expiry_ms(self) -> int | None:
        return self.token_expiry_ms

    def _failed(self) -> AuthenticationFailed:
        return AuthenticationFailed("Authentication failed during authentication due to invalid "
                                    f"credentials with SASL mechanism {self.mechanism}")

    async def evaluate(self, token: bytes) -> bytes:
        from scramp import ScramException, ScramMechanism

        try:
            text = bytes(token).decode("utf-8")
        except UnicodeDecodeError:
            raise self._failed() from None
        if self.complete:
            raise self._failed()
        if self.server is None and self.token is None:  # client-first: gs2 header, n=user,r=nonce[,extensions]
            parts = text.split(",")
            if len(parts) < 4 or not parts[2].startswith("n=") or not parts[3].startswith("r="):
                raise self._failed()
            self.user = _saslname(parts[2][2:])
            if "tokenauth=true" in (p.lower() for p in parts[4:]):
                login = self.token_lookup(self.mechanism, self.user) if self.token_lookup and self.user else None
                if login is None:
                    raise self._failed()
                self.token = TokenScram(self.mechanism, login.credential, text)
                self.token_expiry_ms, self.principal_name = login.expiry_ms, login.owner_name
                return self.token.server_first().encode()
            credential = await self.lookup(self.mechanism, self.user) if self.user else None
            if credential is None:
                raise AuthenticationFailed("Authentication failed: Invalid user credentials")
            info = (credential.salt, credential.stored_key, credential.server_key, credential.iterations)
            try:
                self.server = ScramMechanism(self.mechanism).make_server(lambda _name: info)
                self.server.set_client_first(text)
                return self.server.get_server_first().encode()
            except ScramException:
                raise self._failed() from None
        if self.token is not None:
            final = self.token.client_final(text)
            if final is None:
                raise self._failed()
            self.complete = self.token_authenticated = True
            return final.encode()
        try:
            self.server.set_client_final(text)  # raises unless the client proof verifies
            final = self.server.get_server_final()
        except ScramException:
            raise self._failed() from None
        self.complete = True
        self.principal_name = self.user
        return final.encode()


class TokenScram:
    """RFC 5802's server steps for one exchange whose client-first message
    carries Kafka's ``tokenauth`` extension (the extension is part of the
    message the proofs sign)."""

    def __init__(self, mechanism: str, credential: ScramCredential, client_first: str):
        self.hash = SCRAM_MECHANISMS[mechanism]
        self.credential = credential
        header_end = client_first.index(",", client_first.index(",") + 1) + 1
        self.channel_binding = base64.b64encode(client_first[:header_end].encode()).decode()
        self.client_first_bare = client_first[header_end:]
        client_nonce = self.client_first_bare.split(",")[1][2:]
        self.nonce = client_nonce + base64.b64encode(os.urandom(18)).decode()
        self.server_first_message = (f"r={self.nonce},s={base64.b64encode(credential.salt).decode()},"
                                     f"i={credential.iterations}")

    def server_first(self) -> str:
        return self.server_first_message

    def client_final(self, text: str) -> str | None:
        """The server-final message, or None unless the client's proof verifies."""
        without_proof, sep, proof_text = text.rpartition(",p=")
        fields = without_proof.split(",")
        if not sep or len(fields) < 2 or fields[0] != f"c={self.channel_binding}" or fields[1] != f"r={self.nonce}":
            return None
        try:
            proof = base64.b64decode(proof_text, validate=True)
        except (binascii.Error, ValueError):
            return None
        auth_message = f"{self.client_first_bare},{self.server_first_message},{without_proof}".encode()
        signature = hmac.new(self.credential.stored_key, auth_message, self.hash).digest()
        if len(proof) != len(signature):
            return None
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(self.hash(client_key).digest(), self.credential.stored_key):
            return None
        server_signature = hmac.new(self.credential.server_key, auth_message, self.hash).digest()
        return "v=" + base64.b64encode(server_signature).decode()


def new_server(mechanism: str, plain_users: dict[str, str] | None,
               scram_lookup: Callable[[str, str], Awaitable[ScramCredential | None]] | None,
               oauth_validator=None, token_lookup=None) -> MechanismServer:
    if mechanism == "PLAIN":
        return PlainServer(plain_users or {})
    if mechanism in SCRAM_MECHANISMS:
        return ScramServer(mechanism, scram_lookup, token_lookup)
    if mechanism == "OAUTHBEARER" and oauth_validator is not None:
        from odradek.security.oauthbearer import OAuthBearerServer

        return OAuthBearerServer(oauth_validator)
    raise ValueError(f"unsupported mechanism {mechanism}")
