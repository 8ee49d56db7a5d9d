"""The console's logins: who a request is, by its session cookie or HTTP Basic.

Theory of operation: with a login (``http.authentication=sasl``), a user
logs in with a SASL user name and password of the broker
(``odradek.security.login.PasswordCheck``). The console then talks to the
cluster as that user: each session has its own ``ClusterClient``, logged in
to the brokers with the user's credentials over the listener that took the
password, so what a page lists and what it changes pass the brokers' own
authoriser as any Kafka client of that user would. The password is kept in
memory with the session's client (to reconnect) and nowhere else.

The cookie is ``<session id>.<expiry, s>.<HMAC-SHA256 of both>``, signed
with a key made at start (a restart logs everyone out), ``HttpOnly``,
``SameSite=Strict``, ``Secure`` over https. A session ends at its expiry
(``http.session.max.age.ms``), at logout, or when more than
``MAX_SESSIONS`` are open (the oldest goes). HTTP Basic (scripts,
Prometheus) is taken on every path, a session kept per user and password.
Each session has its own CSRF token for the forms.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "odradek_session"
MAX_SESSIONS = 256


@dataclass
class Session:
    sid: str
    user: str
    client: object  # ClusterClient
    expires: float  # time.time()
    csrf: str

    @property
    def principal(self) -> str:
        return f"User:{self.user}"


def basic_credentials(headers: dict[str, str]) -> tuple[str, str] | None:
    raw = headers.get("authorization", "")
    scheme, _, value = raw.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def cookie_value(headers: dict[str, str], name: str = COOKIE) -> str | None:
    for item in headers.get("cookie", "").split(";"):
        k, sep, v = item.strip().partition("=")
        if sep and k == name:
            return v
    return None


class Sessions:
    def __init__(self, check, new_client, max_age_ms: int, secure: bool):
        """``check``: ``PasswordCheck``; ``new_client(login)``: a ClusterClient
        logged in as ``login``'s user."""
        self.check = check
        self.new_client = new_client
        self.max_age = max_age_ms / 1000
        self.secure = secure
        self.key = secrets.token_bytes(32)
        self.sessions: dict[str, Session] = {}

    def _mac(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def _open(self, sid: str, login) -> Session:
        s = Session(sid, login.user, self.new_client(login), time.time() + self.max_age,
                    self._mac("csrf:" + sid)[:32])
        self.sessions[sid] = s
        while len(self.sessions) > MAX_SESSIONS:
            self._close(next(iter(self.sessions)))
        return s

    def _close(self, sid: str) -> None:
        s = self.sessions.pop(sid, None)
        if s is not None:
            s.client.close()

    async def login(self, user: str, password: str) -> Session | None:
        login = await self.check.check(user, password)
        if login is None:
            return None
        return self._open(secrets.token_urlsafe(24), login)

    def cookie(self, s: Session) -> str:
        value = f"{s.sid}.{int(s.expires)}"
        attrs = f"; Path=/; HttpOnly; SameSite=Strict; Max-Age={max(int(s.expires - time.time()), 0)}"
        return f"{COOKIE}={value}.{self._mac(value)}" + attrs + ("; Secure" if self.secure else "")

    def clear_cookie(self) -> str:
        return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0" + ("; Secure" if self.secure else "")

    def logout(self, s: Session) -> None:
        self._close(s.sid)

    async def find(self, headers: dict[str, str]) -> tuple[Session | None, bool]:
        """The request's session (by cookie, else HTTP Basic) and whether it
        offered HTTP Basic credentials (refused ones are answered 401)."""
        now = time.time()
        for sid in [k for k, s in self.sessions.items() if s.expires <= now]:
            self._close(sid)
        raw = cookie_value(headers)
        if raw:
            value, _, mac = raw.rpartition(".")
            sid, _, expires = value.partition(".")
            if hmac.compare_digest(mac, self._mac(value)) and expires.isdigit() and int(expires) > now:
                s = self.sessions.get(sid)
                if s is not None:
                    return s, False
        basic = basic_credentials(headers)
        if basic is None:
            return None, False
        sid = "basic:" + hashlib.sha256(f"{basic[0]}\0{basic[1]}".encode()).hexdigest()
        s = self.sessions.get(sid)
        if s is not None:
            return s, True
        login = await self.check.check(*basic)
        return (self._open(sid, login) if login is not None else None), True

    def close(self) -> None:
        for sid in list(self.sessions):
            self._close(sid)


@dataclass
class ClusterLogin:
    user: str
    security: object = dataclasses.field(repr=False)  # the user's own login to the brokers


class ClusterPasswordCheck:
    """For ``odradek console --login``: a password is good if the cluster takes
    it, by a SASL login to a bootstrap broker with the console's own options
    (``security.protocol``, ``sasl.mechanism``, TLS) and that user name and
    password; the cluster's own mechanism servers decide, Apache Kafka's as
    well as odradek's."""

    def __init__(self, bootstrap: list[tuple[str, int]], security):
        self.bootstrap = bootstrap
        self.security = security

    async def check(self, user: str, password: str, cached: bool = False) -> ClusterLogin | None:
        from odradek.console.client import KafkaError
        from odradek.replica.peer import AuthenticationError, PeerConnection

        if not user or not password:
            return None
        sec = dataclasses.replace(self.security, username=user, password=password)
        last = None
        for host, port in self.bootstrap:
            conn = PeerConnection(host, port, "odradek-console-login", security=sec)
            try:
                await conn.connect(10.0)
            except AuthenticationError:
                return None
            except (OSError, asyncio.TimeoutError) as e:
                last = e
                continue
            finally:
                conn.close()
            return ClusterLogin(user, sec)
        raise KafkaError(f"cannot reach the cluster to check the password: {last}")
