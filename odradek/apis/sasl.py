"""SaslHandshake (key 17) v0-1, SaslAuthenticate (key 36) v0-2.

The login exchange itself is the connection's ``SaslAuthenticator``
(``odradek.security.authenticator``); these handlers relay to it and, when a
login completes, give the connection its principal. On a listener without
SASL, and on an authenticated connection that may not re-authenticate, both
answer ILLEGAL_SASL_STATE, as Kafka does.

After SaslHandshake v0 the tokens come as bare size-prefixed frames (no
SaslAuthenticate), which the connection relays. A failed login answers
SASL_AUTHENTICATION_FAILED (or UNSUPPORTED_SASL_MECHANISM) and closes the
connection after ``connection.failed.authentication.delay.ms``.

Not implemented: GSSAPI, delegation tokens.
"""

from odradek.clock import now_ms
from odradek.protocol import errors
from odradek.server.registry import handles


@handles("SaslHandshake", 0, 1)
async def sasl_handshake(ctx, request: dict) -> dict:
    sasl = ctx.connection.sasl
    if sasl is None:
        return {"error_code": errors.ILLEGAL_SASL_STATE, "mechanisms": []}
    response = sasl.handshake(request["mechanism"], ctx.version)
    if sasl.raw_tokens:
        ctx.connection.min_frame = 1  # a bare token may be shorter than a request header
    return response


@handles("SaslAuthenticate", 0, 2)
async def sasl_authenticate(ctx, request: dict) -> dict:
    sasl = ctx.connection.sasl
    if sasl is None:
        return {"error_code": errors.ILLEGAL_SASL_STATE,
                "error_message": f"Listener {ctx.listener} does not use SASL"}
    response = await sasl.authenticate(request["auth_bytes"], ctx.version, now_ms())
    if sasl.authenticated:
        ctx.connection.authenticated(sasl.principal)
    return response
