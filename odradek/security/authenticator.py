"""One connection's SASL state machine (Kafka's server-side authenticator).

States, and the requests each allows (anything else is answered with
ILLEGAL_SASL_STATE where the response has a top-level error code, and the
connection is closed):

    HANDSHAKE     ApiVersions, SaslHandshake      -> AUTHENTICATE
    AUTHENTICATE  SaslAuthenticate (or, after a
                  SaslHandshake v0, raw tokens)   -> COMPLETE | FAILED
    COMPLETE      everything; a SaslHandshake starts re-authentication
                  (KIP-368) when the session has an end (below)
    FAILED        nothing: the connection closes after the failure response

A credential that expires (an OAUTHBEARER token) bounds the session too, as in
Kafka: the lifetime told to the client is the smaller of the token's remaining
life and ``connections.max.reauth.ms`` (when set).

Before COMPLETE, frames are capped at ``sasl.server.max.receive.size``
(512 KiB). A session told its lifetime (SaslAuthenticate v1+ with
``connections.max.reauth.ms`` > 0) that is used for anything but
re-authentication after it ends is closed. Re-authentication must keep the
mechanism and the principal.

Sans-IO: the connection asks ``allows(api_key, now)`` and relays the SASL
requests; this class never sees a socket.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from odradek.protocol import errors
from odradek.security.principal import USER, KafkaPrincipal
from odradek.security.sasl import AuthenticationFailed, MechanismServer, new_server

log = logging.getLogger("odradek.security")

HANDSHAKE, AUTHENTICATE, COMPLETE, FAILED = "HANDSHAKE", "AUTHENTICATE", "COMPLETE", "FAILED"
API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
ALLOWED = {HANDSHAKE: (API_VERSIONS, SASL_HANDSHAKE), AUTHENTICATE: (SASL_AUTHENTICATE,)}


class SaslAuthenticator:
    def __init__(self, settings, scram_lookup: Callable[..., Awaitable] | None, token_lookup=None):
        self.settings = settings  # odradek.security.config.SaslSettings
        self.scram_lookup = scram_lookup
        self.token_lookup = token_lookup  # SCRAM logins with a delegation token (odradek.security.delegation_tokens)
        self.token_authenticated = False
        self.state = HANDSHAKE
        self.mechanism: str | None = None
        self.server: MechanismServer | None = None
        self.raw_tokens = False  # after SaslHandshake v0: tokens come without Kafka headers
        self.principal: KafkaPrincipal | None = None
        self.reauthenticating = False
        self.client_supports_reauth = False
        self.expires_at_ms: int | None = None

    # -- the gate ---------------------------------------------------------
    def allows(self, api_key: int, now_ms: int) -> str | None:
        """None if a request of ``api_key`` may be served now, else why not."""
        if self.state == COMPLETE:
            if self.expires_at_ms is not None and now_ms > self.expires_at_ms \
                    and api_key != SASL_HANDSHAKE:
                return "the SASL session expired without re-authentication"
            return None
        if api_key in ALLOWED.get(self.state, ()):
            return None
        return f"request (key {api_key}) not allowed in SASL state {self.state}"

    @property
    def authenticated(self) -> bool:
        return self.state == COMPLETE and not self.reauthenticating

    # -- SaslHandshake ----------------------------------------------------
    def handshake(self, mechanism: str, version: int) -> dict:
        """The SaslHandshake response; state FAILED if the mechanism is not enabled."""
        enabled = list(self.settings.mechanisms)
        if self.state == COMPLETE:
            if self.expires_at_ms is None or version < 1:  # as Kafka: only a session that ends may renew
                return {"error_code": errors.ILLEGAL_SASL_STATE, "mechanisms": enabled}
            if mechanism != self.mechanism:
                log.info("re-authentication with %s refused: the session used %s", mechanism, self.mechanism)
                self.state = FAILED
                return {"error_code": errors.UNSUPPORTED_SASL_MECHANISM, "mechanisms": [self.mechanism]}
            self.reauthenticating = True
        elif self.state != HANDSHAKE:
            self.state = FAILED
            return {"error_code": errors.ILLEGAL_SASL_STATE, "mechanisms": enabled}
        if mechanism not in enabled:
            self.state = FAILED
            return {"error_code": errors.UNSUPPORTED_SASL_MECHANISM, "mechanisms": enabled}
        self.mechanism = mechanism
        self.server = new_server(mechanism, self.settings.plain_users, self.scram_lookup,
                                 self.settings.oauth_validator, self.token_lookup)
        self.raw_tokens = version == 0
        self.state = AUTHENTICATE
        return {"error_code": errors.NONE, "mechanisms": enabled}

    # -- SaslAuthenticate and raw tokens -----------------------------------
    async def authenticate(self, token: bytes, version: int, now_ms: int) -> dict:
        """The SaslAuthenticate response; state COMPLETE or FAILED when the exchange ends."""
        if self.state != AUTHENTICATE or self.raw_tokens:
            self.state = FAILED
            return {"error_code": errors.ILLEGAL_SASL_STATE,
                    "error_message": "SaslAuthenticate is not expected in this state"}
        if version > 0:
            self.client_supports_reauth = True
        try:
            out = await self.server.evaluate(token)
        except AuthenticationFailed as e:
            self.state = FAILED
            return {"error_code": errors.SASL_AUTHENTICATION_FAILED, "error_message": str(e)}
        lifetime = 0
        if self.server.complete:
            failure = self._complete(now_ms)
            if failure is not None:
                return failure
            if self.expires_at_ms is not None:
                lifetime = self.expires_at_ms - now_ms
        # The message of a step that succeeds is "", as Kafka answers it.
        return {"error_code": errors.NONE, "error_message": "", "auth_bytes": out,
                "session_lifetime_ms": lifetime}

    async def raw_token(self, token: bytes, now_ms: int) -> bytes | None:
        """The server's token after a SaslHandshake v0; None: the login failed."""
        try:
            out = await self.server.evaluate(token)
        except AuthenticationFailed as e:
            log.info("SASL/%s login failed: %s", self.mechanism, e)
            self.state = FAILED
            return None
        if self.server.complete and self._complete(now_ms) is not None:
            return None
        return out

    def _complete(self, now_ms: int) -> dict | None:
        principal = KafkaPrincipal(USER, self.server.principal_name)
        if self.reauthenticating and (principal != self.principal
                                      or self.server.token_authenticated != self.token_authenticated):
            self.state = FAILED
            return {"error_code": errors.SASL_AUTHENTICATION_FAILED,
                    "error_message": "Cannot change principals during re-authentication"}
        self.principal = principal
        self.token_authenticated = self.server.token_authenticated
        self.state = COMPLETE
        self.reauthenticating = False
        self.raw_tokens = False
        credential_expiry = self.server.credential_expiry_ms
        self.server = None
        self.expires_at_ms = None
        if self.client_supports_reauth:  # as Kafka: the smaller of the reauth bound and the credential's life
            reauth = self.settings.reauth_ms(self.mechanism)
            bounds = [now_ms + reauth] if reauth > 0 else []
            if credential_expiry is not None:
                bounds.append(max(now_ms, credential_expiry))
            if bounds:
                self.expires_at_ms = min(bounds)
        return None
