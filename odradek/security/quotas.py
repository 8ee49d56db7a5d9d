"""Client quotas: the model kept in the metadata store, and Kafka's precedence.

A quota entity is a user, a client id, or a user with a client id; either
name may be the default (``None``: every user, or every client id, that has
no quota of its own). Each entity has values for some of the quota keys
(``producer_byte_rate``, ``consumer_byte_rate``, ``request_percentage``,
``controller_mutation_rate``). One store key per entity,
``quotas/user=<name>/client-id=<name>`` (names percent-encoded, a default
written ``<default>``), with the values as JSON; every broker reads them
through its image (``QuotaCache``).

Which quota applies to a request of user U with client id C is Kafka's
order, looked up per quota key, the first entity with a value for that key
winning:

1. user U, client id C       5. default user, default client id
2. user U, default client id 6. default user
3. user U                    7. client id C
4. default user, client id C 8. default client id

The match also decides who shares the quota: a user-only quota (3, 6) is
shared by all that user's clients, a client-id-only one (7, 8) by every user
of that client id, the others by the one (user, client id) pair. This is the
``key`` of ``Quota``, under which the broker samples the rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote, unquote

PREFIX = "quotas/"
USER = "user"
CLIENT_ID = "client-id"
IP = "ip"
DEFAULT = "<default>"

PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
CONTROLLER_MUTATION_RATE = "controller_mutation_rate"
CONNECTION_CREATION_RATE = "connection_creation_rate"
# The keys a user / client-id entity may carry, with Kafka's types.
CLIENT_KEYS = {PRODUCER_BYTE_RATE: "long", CONSUMER_BYTE_RATE: "long", REQUEST_PERCENTAGE: "double",
               CONTROLLER_MUTATION_RATE: "double"}
IP_KEYS = {CONNECTION_CREATION_RATE: "int"}

# An entity: ((type, name or None), ...) sorted by type.
Entity = tuple


def entity_key(entity: Entity) -> str:
    return PREFIX + "/".join(f"{t}={DEFAULT if n is None else quote(n, safe='')}" for t, n in sorted(entity))


def entity_of_key(key: str) -> Entity:
    parts = []
    for part in key[len(PREFIX):].split("/"):
        t, _, n = part.partition("=")
        parts.append((t, None if n == DEFAULT else unquote(n)))
    return tuple(sorted(parts))


def validate_entity(entity: list[tuple[str, str | None]]) -> str | None:
    """Why Kafka refuses this entity (INVALID_REQUEST), or None."""
    if not entity:
        return "Invalid empty client quota entity"
    types = [t for t, _ in entity]
    if len(set(types)) != len(types):
        return "Invalid quota entity: duplicate entity type"
    for t, n in entity:
        if t not in (USER, CLIENT_ID, IP):
            return f"Unhandled client quota entity type: {t}"
        if n is not None and n == "":
            return f"Empty {t} not supported"
    if IP in types and len(types) > 1:
        return "Invalid quota entity combination"
    return None


def validate_value(entity_types: set[str], key: str, value: float) -> str | None:
    """Why Kafka refuses to set ``key`` to ``value`` on such an entity, or None."""
    keys = IP_KEYS if IP in entity_types else CLIENT_KEYS
    kind = keys.get(key)
    if kind is None:
        return f"Invalid configuration key {key}"
    if kind in ("long", "int") and value != int(value):
        return f"Configuration {key} must be a {'Long' if kind == 'long' else 'Integer'} value"
    if value <= 0:
        return f"Quota {key} must be greater than 0"
    return None


@dataclass(frozen=True)
class Quota:
    bound: float  # bytes per second, or percent of a thread
    key: tuple[str, str]  # (user, client id) sharing it; "" where not part of the match


# Kafka's lookup order: (user part, client part) with "U"/"C" the request's own
# name, "D" the default, None the part absent.
_ORDER = [("U", "C"), ("U", "D"), ("U", None), ("D", "C"), ("D", "D"), ("D", None), (None, "C"), (None, "D")]


class QuotaCache:
    """Every quota entity the store holds: entity -> {key: value}."""

    def __init__(self):
        self.entities: dict[Entity, dict[str, float]] = {}

    def put(self, key: str, value: bytes | str) -> None:
        values = {k: float(v) for k, v in json.loads(value).items()}
        self.entities[entity_of_key(key)] = values

    def delete(self, key: str) -> None:
        self.entities.pop(entity_of_key(key), None)

    def clear(self) -> None:
        self.entities.clear()

    def __iter__(self):
        return iter(list(self.entities.items()))

    def quota(self, user: str, client_id: str, quota_key: str) -> Quota | None:
        """The quota of ``quota_key`` for ``user`` (the principal's name) with
        ``client_id``, by Kafka's precedence; None: unlimited."""
        if not self.entities:
            return None
        for u, c in _ORDER:
            entity = []
            if c is not None:
                entity.append((CLIENT_ID, client_id if c == "C" else None))
            if u is not None:
                entity.append((USER, user if u == "U" else None))
            values = self.entities.get(tuple(entity))
            if values is not None and quota_key in values:
                return Quota(values[quota_key], (user if u else "", client_id if c else ""))
        return None
