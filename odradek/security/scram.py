"""SCRAM credentials (RFC 5802, as Kafka keeps them) and their home in the
metadata store.

A credential is what the server needs to verify a client's proof without
knowing the password: the salt, the iteration count, StoredKey = H(ClientKey)
and ServerKey, where ClientKey = HMAC(SaltedPassword, "Client Key") and
ServerKey = HMAC(SaltedPassword, "Server Key"). It is stored under
``scram/<mechanism>/<user>`` in Kafka's text form
``salt=<b64>,stored_key=<b64>,server_key=<b64>,iterations=<n>``.

Written by AlterUserScramCredentials (which sends the salted password, never
the password) and by ``odradek user add``; read at each authentication, so a
change counts from the next login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

PREFIX = "scram/"
MECHANISMS = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}
# The int8 the Describe/AlterUserScramCredentials APIs use for each mechanism.
MECHANISM_IDS = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
MECHANISM_NAMES = {v: k for k, v in MECHANISM_IDS.items()}
MIN_ITERATIONS = 4096
MAX_ITERATIONS = 16384
DEFAULT_ITERATIONS = 4096


@dataclass(frozen=True)
class ScramCredential:
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def to_bytes(self) -> bytes:
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        return (f"salt={b64(self.salt)},stored_key={b64(self.stored_key)},"
                f"server_key={b64(self.server_key)},iterations={self.iterations}").encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "ScramCredential":
        f = dict(item.split("=", 1) for item in raw.decode().split(","))
        return cls(base64.b64decode(f["salt"]), base64.b64decode(f["stored_key"]),
                   base64.b64decode(f["server_key"]), int(f["iterations"]))


def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    """Hi(password, salt, i) of RFC 5802 (PBKDF2 with the mechanism's HMAC)."""
    name = MECHANISMS[mechanism]().name
    return hashlib.pbkdf2_hmac(name, password.encode(), salt, iterations)


def from_salted_password(mechanism: str, salted: bytes, salt: bytes, iterations: int) -> ScramCredential:
    hf = MECHANISMS[mechanism]
    client_key = hmac.new(salted, b"Client Key", hf).digest()
    server_key = hmac.new(salted, b"Server Key", hf).digest()
    return ScramCredential(salt, hf(client_key).digest(), server_key, iterations)


def from_password(mechanism: str, password: str, iterations: int = DEFAULT_ITERATIONS,
                  salt: bytes | None = None) -> ScramCredential:
    salt = os.urandom(32) if salt is None else salt
    return from_salted_password(mechanism, salted_password(mechanism, password, salt, iterations),
                                salt, iterations)


def key(mechanism: str, user: str) -> str:
    return f"{PREFIX}{mechanism}/{user}"


def parse_key(k: str) -> tuple[str, str]:
    """(mechanism, user) of a store key under PREFIX."""
    mechanism, _, user = k[len(PREFIX):].partition("/")
    return mechanism, user


class ScramStore:
    """SCRAM credentials in a ``MetadataStore``, through its get/put/range/delete."""

    def __init__(self, metadata):
        self.metadata = metadata

    async def get(self, mechanism: str, user: str) -> ScramCredential | None:
        kv = await self.metadata.get(key(mechanism, user))
        return None if kv is None else ScramCredential.from_bytes(kv.value)

    async def put(self, mechanism: str, user: str, credential: ScramCredential) -> None:
        await self.metadata.put(key(mechanism, user), credential.to_bytes())

    async def delete(self, mechanism: str, user: str) -> bool:
        if await self.metadata.get(key(mechanism, user)) is None:
            return False
        await self.metadata.delete(key(mechanism, user))
        return True

    async def all(self) -> dict[str, dict[str, ScramCredential]]:
        """user -> mechanism -> credential."""
        kvs, _ = await self.metadata.range(PREFIX)
        out: dict[str, dict[str, ScramCredential]] = {}
        for kv in kvs:
            mechanism, user = parse_key(kv.key)
            if mechanism in MECHANISMS:
                out.setdefault(user, {})[mechanism] = ScramCredential.from_bytes(kv.value)
        return out
