"""Delegation tokens: the HMAC (golden, from Java's HmacSHA512), the SCRAM
exchange with Kafka's ``tokenauth`` extension, and the Create, Renew, Expire
and Describe rules of Kafka's controller, on a fake broker whose store
applies writes to the image at once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from types import SimpleNamespace

import pytest

from odradek.apis import delegation_tokens as api
from odradek.protocol import errors
from odradek.security.delegation_tokens import DelegationTokens, TokenCache, token_hmac
from odradek.security.principal import ANONYMOUS, KafkaPrincipal
from odradek.security.sasl import ScramServer
from odradek.security.scram import salted_password

ALICE, BOB, CAROL = (KafkaPrincipal("User", n) for n in ("alice", "bob", "carol"))


def test_the_hmac_is_kafkas():
    # javax.crypto.Mac HmacSHA512, key "a-secret" (UTF-8), message the token id (UTF-8)
    assert base64.b64encode(token_hmac("a-secret", "XaKXt2DMThK8LKyJHrEgvA")).decode() == (
        "c4LDBNQzOjz7A4YTaxoEp2vwBWQzc8WHGtQ0dO/vILWwOv/Sfvs92gCDFeRhSmi0z82vrj1NFyeIGAR00YK86A==")


class FakeAdmin:
    def __init__(self, cache: TokenCache):
        self.cache = cache

    async def replace_keys(self, changes):
        for k, v in changes.items():
            self.cache.put(k, v) if v is not None else self.cache.delete(k)


def broker(secret="s3cret", max_lifetime=10_000_000, expiry=1_000_000):
    cache = TokenCache()
    config = {"delegation.token.secret.key": secret, "delegation.token.max.lifetime.ms": str(max_lifetime),
              "delegation.token.expiry.time.ms": str(expiry)}
    return SimpleNamespace(tokens=DelegationTokens(SimpleNamespace(get=config.get), cache), admin=FakeAdmin(cache))


def ctx(b, principal=ALICE, protocol="SASL_PLAINTEXT", token=False):
    return SimpleNamespace(broker=b, principal=principal,
                           connection=SimpleNamespace(protocol=protocol, token_authenticated=token))


def run(coro):
    return asyncio.run(coro)


def create(b, principal=ALICE, renewers=(), max_lifetime=-1, **kw):
    return run(api.create_delegation_token(ctx(b, principal, **kw), {
        "renewers": [{"principal_type": r.type, "principal_name": r.name} for r in renewers],
        "max_lifetime_ms": max_lifetime}))


def test_who_may_ask_for_tokens():
    b = broker()
    assert create(b, protocol="PLAINTEXT")["error_code"] == errors.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED
    assert create(b, principal=ANONYMOUS, protocol="SSL")["error_code"] == errors.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED
    assert create(b, token=True)["error_code"] == errors.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED
    assert create(b, principal=KafkaPrincipal("User", "CN=x"), protocol="SSL")["error_code"] == 0
    assert create(broker(secret=None))["error_code"] == errors.DELEGATION_TOKEN_AUTH_DISABLED
    assert create(b, renewers=[KafkaPrincipal("Group", "g")])["error_code"] == errors.INVALID_PRINCIPAL_TYPE


def test_lifetimes(monkeypatch):
    monkeypatch.setattr(api, "now_ms", lambda: 1000)
    b = broker(max_lifetime=500_000, expiry=100_000)
    r = create(b, renewers=[BOB])
    assert (r["issue_timestamp_ms"], r["expiry_timestamp_ms"], r["max_timestamp_ms"]) == (1000, 101_000, 501_000)
    assert r["hmac"] == b.tokens.hmac(r["token_id"]) and len(r["token_id"]) == 22
    assert create(b, max_lifetime=50_000)["expiry_timestamp_ms"] == 51_000  # the max caps the expiry
    renew = lambda who, period: run(api.renew_delegation_token(ctx(b, who), {"hmac": r["hmac"],
                                                                             "renew_period_ms": period}))
    monkeypatch.setattr(api, "now_ms", lambda: 450_000)
    assert renew(CAROL, -1)["error_code"] == errors.DELEGATION_TOKEN_EXPIRED  # expired at 101_000 already
    monkeypatch.setattr(api, "now_ms", lambda: 90_000)
    assert renew(CAROL, -1)["error_code"] == errors.DELEGATION_TOKEN_OWNER_MISMATCH
    assert renew(BOB, 5_000) == {"error_code": 0, "expiry_timestamp_ms": 95_000}
    assert renew(ALICE, -1) == {"error_code": 0, "expiry_timestamp_ms": 190_000}
    monkeypatch.setattr(api, "now_ms", lambda: 450_000)
    assert renew(ALICE, -1) == {"error_code": errors.DELEGATION_TOKEN_EXPIRED, "expiry_timestamp_ms": 0}
    unknown = run(api.renew_delegation_token(ctx(b), {"hmac": b"nope", "renew_period_ms": -1}))
    assert unknown["error_code"] == errors.DELEGATION_TOKEN_NOT_FOUND


def test_expire_and_describe(monkeypatch):
    monkeypatch.setattr(api, "now_ms", lambda: 1000)
    b = broker()
    mine, bobs = create(b, renewers=[BOB]), create(b, principal=BOB)
    describe = lambda owners, who=ALICE: [t["token_id"] for t in run(api.describe_delegation_token(
        ctx(b, who), {"owners": owners}))["tokens"]]
    assert describe(None) == [mine["token_id"], bobs["token_id"]]  # which of them one may see: the ACL check's
    assert describe([]) == []
    assert describe([{"principal_type": "User", "principal_name": "bob"}]) == [mine["token_id"], bobs["token_id"]]
    expire = lambda who, token, period: run(api.expire_delegation_token(ctx(b, who), {
        "hmac": token["hmac"], "expiry_time_period_ms": period}))
    assert expire(CAROL, mine, -1)["error_code"] == errors.DELEGATION_TOKEN_OWNER_MISMATCH
    assert expire(BOB, mine, 500) == {"error_code": 0, "expiry_timestamp_ms": 1500}
    monkeypatch.setattr(api, "now_ms", lambda: 2000)
    assert describe(None) == [bobs["token_id"]]  # an expired token is not described
    assert expire(ALICE, mine, 500)["error_code"] == errors.DELEGATION_TOKEN_EXPIRED
    assert b.tokens.login("SCRAM-SHA-256", mine["token_id"], 2000) is None  # nor logs in
    assert b.tokens.login("SCRAM-SHA-256", bobs["token_id"], 2000).owner_name == "bob"
    create(b)  # any change sweeps the expired tokens out of the store
    assert mine["token_id"] not in b.tokens.cache.tokens
    assert expire(BOB, bobs, -1) == {"error_code": 0, "expiry_timestamp_ms": 2000}
    assert bobs["token_id"] not in b.tokens.cache.tokens  # below zero: removed at once


def client_final(mechanism, password, client_first_bare, server_first):
    hf = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}[mechanism]
    attrs = dict(a.split("=", 1) for a in server_first.split(","))
    salted = salted_password(mechanism, password, base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hf).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(hf(client_key).digest(), auth, hf).digest()
    return without_proof + ",p=" + base64.b64encode(bytes(x ^ y for x, y in zip(client_key, signature))).decode()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_scram_login_with_a_token_is_its_owners(mechanism):
    b = broker()
    token = create(b)
    password = base64.b64encode(token["hmac"]).decode()

    async def login(password, extension="tokenauth=true"):
        async def no_user(mechanism, user):
            return None

        server = ScramServer(mechanism, no_user, b.tokens.scram_login)
        bare = f"n={token['token_id']},r=fyko+d2lbbFgONRv9qkxdawL" + (f",{extension}" if extension else "")
        server_first = (await server.evaluate(f"n,,{bare}".encode())).decode()
        await server.evaluate(client_final(mechanism, password, bare, server_first).encode())
        return server

    server = run(login(password))
    assert (server.complete, server.principal_name, server.token_authenticated) == (True, "alice", True)
    assert server.credential_expiry_ms == token["expiry_timestamp_ms"]  # the session ends with the token
    from odradek.security.sasl import AuthenticationFailed

    with pytest.raises(AuthenticationFailed):
        run(login(base64.b64encode(b"x" * 64).decode()))  # a wrong HMAC
    with pytest.raises(AuthenticationFailed):
        run(login(password, extension=None))  # the token id is no user
