"""Delegation tokens (KIP-48; the rules are odradek.security.delegation_tokens').

CreateDelegationToken (38) v1-3 (v3: a token for another owner),
RenewDelegationToken (39) v1-2, ExpireDelegationToken (40) v1-2,
DescribeDelegationToken (41) v1-3, answered as Kafka 4.4 answers them:
DELEGATION_TOKEN_REQUEST_NOT_ALLOWED on a PLAINTEXT listener, to an
anonymous TLS client and to a connection that logged in with a token;
DELEGATION_TOKEN_AUTH_DISABLED without ``delegation.token.secret.key``. The
ACL checks (CREATE_TOKENS on the other owner, what Describe may show) are
odradek.security.checks'.
"""

from __future__ import annotations

from dataclasses import replace

from odradek.clock import now_ms
from odradek.protocol import errors
from odradek.security.delegation_tokens import (TokenInfo, create_response, key_of, new_token_id, owner_of,
                                                requests_allowed)
from odradek.security.principal import USER, KafkaPrincipal
from odradek.server.registry import handles


def _sum(now: int, duration: int) -> int:
    return min(now + duration, 2**63 - 1)


async def _write(broker, token: TokenInfo | None, remove: list[str]) -> None:
    """Store ``token`` and remove the tokens ``remove`` names (expired ones,
    swept with every change), in one commit."""
    changes = {key_of(t): None for t in remove}
    if token is not None:
        changes[key_of(token.token_id)] = token.to_json()
    await broker.admin.replace_keys(changes)


@handles("CreateDelegationToken", 1, 3)
async def create_delegation_token(ctx, request: dict) -> dict:
    tokens, now = ctx.broker.tokens, now_ms()
    owner = owner_of(ctx, request)
    out = create_response(owner, ctx.principal)
    renewers = tuple(KafkaPrincipal(r["principal_type"], r["principal_name"]) for r in request["renewers"])
    if not requests_allowed(ctx):
        out["error_code"] = errors.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED
    elif any(r.type != USER for r in renewers):
        out["error_code"] = errors.INVALID_PRINCIPAL_TYPE
    elif not tokens.enabled:
        out["error_code"] = errors.DELEGATION_TOKEN_AUTH_DISABLED
    if out["error_code"]:
        return out
    max_lifetime = tokens.max_lifetime_ms
    if request["max_lifetime_ms"] > 0:
        max_lifetime = min(max_lifetime, request["max_lifetime_ms"])
    max_ms = _sum(now, max_lifetime)
    token = TokenInfo(new_token_id(), owner, ctx.principal, tuple(dict.fromkeys(renewers)), now,
                      min(max_ms, _sum(now, tokens.expiry_time_ms)), max_ms)
    await _write(ctx.broker, token, tokens.expired(now))
    out.update(issue_timestamp_ms=now, expiry_timestamp_ms=token.expiry_ms, max_timestamp_ms=max_ms,
               token_id=token.token_id, hmac=tokens.hmac(token.token_id))
    return out


def _token_for_change(ctx, request: dict) -> tuple[int, TokenInfo | None]:
    """The error (or 0) and token of a Renew or Expire request, before its own checks."""
    tokens = ctx.broker.tokens
    if not requests_allowed(ctx):
        return errors.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, None
    if not tokens.enabled:
        return errors.DELEGATION_TOKEN_AUTH_DISABLED, None
    token = tokens.by_hmac(request["hmac"])
    if token is None:
        return errors.DELEGATION_TOKEN_NOT_FOUND, None
    return 0, token


@handles("RenewDelegationToken", 1, 2)
async def renew_delegation_token(ctx, request: dict) -> dict:
    now = now_ms()
    error, token = _token_for_change(ctx, request)
    if not error and token.expired(now):
        error = errors.DELEGATION_TOKEN_EXPIRED
    elif not error and not token.owner_or_renewer(ctx.principal):
        error = errors.DELEGATION_TOKEN_OWNER_MISMATCH
    if error:
        return {"error_code": error, "expiry_timestamp_ms": -1 if error == errors.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED
                else 0}
    renew = ctx.broker.tokens.expiry_time_ms
    if request["renew_period_ms"] > 0:
        renew = min(renew, request["renew_period_ms"])
    expiry = min(token.max_ms, now + renew)
    await _write(ctx.broker, replace(token, expiry_ms=expiry), ctx.broker.tokens.expired(now))
    return {"error_code": 0, "expiry_timestamp_ms": expiry}


@handles("ExpireDelegationToken", 1, 2)
async def expire_delegation_token(ctx, request: dict) -> dict:
    now = now_ms()
    error, token = _token_for_change(ctx, request)
    if not error and not token.owner_or_renewer(ctx.principal):
        error = errors.DELEGATION_TOKEN_OWNER_MISMATCH
    if not error and request["expiry_time_period_ms"] >= 0 and token.expired(now):
        error = errors.DELEGATION_TOKEN_EXPIRED
    if error:
        return {"error_code": error, "expiry_timestamp_ms": -1 if error == errors.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED
                else 0}
    expired = ctx.broker.tokens.expired(now)
    if request["expiry_time_period_ms"] < 0:
        await _write(ctx.broker, None, expired + [token.token_id])
        return {"error_code": 0, "expiry_timestamp_ms": now}
    expiry = min(token.max_ms, _sum(now, request["expiry_time_period_ms"]))
    await _write(ctx.broker, replace(token, expiry_ms=expiry), expired)
    return {"error_code": 0, "expiry_timestamp_ms": expiry}


@handles("DescribeDelegationToken", 1, 3)
async def describe_delegation_token(ctx, request: dict) -> dict:
    """The live tokens owned or renewable by one of ``owners`` (null: every
    token; empty: none); which of them the caller may see is the ACL check's."""
    tokens, now = ctx.broker.tokens, now_ms()
    if not requests_allowed(ctx):
        return {"error_code": errors.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, "tokens": []}
    if not tokens.enabled:
        return {"error_code": errors.DELEGATION_TOKEN_AUTH_DISABLED, "tokens": []}
    owners = request["owners"]
    wanted = None if owners is None else [KafkaPrincipal(o["principal_type"], o["principal_name"]) for o in owners]
    out = []
    for t in sorted(tokens.cache.tokens.values(), key=lambda t: t.issue_ms):
        if t.expired(now) or (wanted is not None and not any(t.owner_or_renewer(p) for p in wanted)):
            continue
        out.append({"principal_type": t.owner.type, "principal_name": t.owner.name,
                    "token_requester_principal_type": t.requester.type,
                    "token_requester_principal_name": t.requester.name, "issue_timestamp": t.issue_ms,
                    "expiry_timestamp": t.expiry_ms, "max_timestamp": t.max_ms, "token_id": t.token_id,
                    "hmac": tokens.hmac(t.token_id),
                    "renewers": [{"principal_type": r.type, "principal_name": r.name} for r in t.renewers]})
    return {"error_code": 0, "tokens": out}
