"""A user name and password checked against the broker's own SASL users, for
the HTTP listener's login (``http.authentication=sasl``).

The rule is a Kafka client's: the password is good if the user could log in
with it to one of the broker's SASL listeners, by one of the mechanisms that
listener enables. It is checked by the very mechanism servers the listeners
run (``odradek.security.sasl``), in process: PLAIN against the listener's
JAAS users, SCRAM by a full client/server exchange against the credentials
kept in the cluster metadata (``scramp`` plays the client). The inter-broker
listener is tried first, then the others in ``listeners`` order; the first
that takes the password gives the ``Login``: the user, and how to log in to
the brokers as that user (the listener's TLS, the mechanism), so the console
acts as that principal through the brokers' own authoriser. A refused
password costs ``connection.failed.authentication.delay.ms``, as a refused
SASL login does.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

from odradek.security.config import InterBrokerClient, SecurityConfig
from odradek.security.sasl import AuthenticationFailed, PlainServer, ScramServer
from odradek.security.scram import MECHANISMS as SCRAM_MECHANISMS
from odradek.security.tls import client_context

CACHE_SECONDS = 60.0  # a checked password is taken again without a new check (HTTP Basic)
CACHE_SIZE = 256


@dataclass
class Login:
    user: str
    listener: str
    security: InterBrokerClient = field(repr=False)  # the user's own login to the brokers

    @property
    def principal(self) -> str:
        return f"User:{self.user}"


async def _scram_ok(mechanism: str, lookup, user: str, password: str) -> bool:
    from scramp import ScramClient, ScramException

    server = ScramServer(mechanism, lookup)
    client = ScramClient([mechanism], user, password)
    try:
        client.set_server_first((await server.evaluate(client.get_client_first().encode())).decode())
        client.set_server_final((await server.evaluate(client.get_client_final().encode())).decode())
    except (AuthenticationFailed, ScramException):
        return False
    return server.complete


class PasswordCheck:
    """``await check(user, password)``: a ``Login``, or None when no listener
    takes the password. ``endpoint(listener)`` is where the broker serves it."""

    def __init__(self, security: SecurityConfig, scram_lookup, endpoint):
        self.security = security
        self.scram_lookup = scram_lookup
        self.endpoint = endpoint
        self.cache: dict[bytes, tuple[float, Login]] = {}

    def listeners(self):
        names = list(self.security.listeners)
        if self.security.inter_broker_listener in names:
            names.remove(self.security.inter_broker_listener)
            names.insert(0, self.security.inter_broker_listener)
        return [self.security.listeners[n] for n in names if self.security.listeners[n].sasl is not None]

    def servable(self) -> bool:
        return any(m == "PLAIN" or m in SCRAM_MECHANISMS for l in self.listeners() for m in l.sasl.mechanisms)

    async def check(self, user: str, password: str, cached: bool = False) -> Login | None:
        """``cached``: a password taken within ``CACHE_SECONDS`` is taken again
        without a new check (for ``/metrics`` scraped with HTTP Basic); a
        login for a session is always checked afresh."""
        if not user or not password:
            return None
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        hit = self.cache.get(key)
        if cached and hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        login = await self._check(user, password)
        if login is None:
            delay = max((l.sasl.failed_auth_delay_ms for l in self.listeners()), default=100)
            await asyncio.sleep(delay / 1000)
            return None
        self.cache[key] = (time.monotonic(), login)
        while len(self.cache) > CACHE_SIZE:
            del self.cache[next(iter(self.cache))]
        return login

    async def _check(self, user: str, password: str) -> Login | None:
        scram: dict[str, bool] = {}
        for sec in self.listeners():
            for mechanism in sec.sasl.mechanisms:
                if mechanism == "PLAIN":
                    try:
                        await PlainServer(sec.sasl.plain_users).evaluate(f"\0{user}\0{password}".encode())
                        ok = True
                    except AuthenticationFailed:
                        ok = False
                elif mechanism in SCRAM_MECHANISMS:
                    if mechanism not in scram:
                        scram[mechanism] = await _scram_ok(mechanism, self.scram_lookup, user, password)
                    ok = scram[mechanism]
                else:
                    continue
                if ok:
                    client = InterBrokerClient(sec.name, sec.protocol, mechanism=mechanism, username=user,
                                               password=password)
                    if sec.tls is not None:
                        client.ssl_context = client_context(sec.tls, sec.check_hostname)
                    return Login(user, sec.name, client)
        return None
