"""DescribeClientQuotas (key 48) v0-1, AlterClientQuotas (key 49) v0-1.

Client quotas are cluster metadata: one key per entity in the metadata store
(``odradek.security.quotas``), read by every broker through its image.
Describe answers the entities a filter matches, with their values: each
filter component names an entity type (``user``, ``client-id``, ``ip``) and
matches an exact name, the default, or any specified name; with ``strict``
an entity must have no other type. Alter applies each entry's set and
remove operations to its entity, all entries in one store transaction
(compared against the entities as read, so that alterations through two
brokers at once cannot lose one another's values); an
entry Kafka would refuse (an empty or repeated entity type, ``ip`` with
another type, an unknown key, a fractional byte rate, a value not above
zero) gets INVALID_REQUEST in its own result and changes nothing.
``validate_only`` checks without writing. What each needs (DESCRIBE_CONFIGS
or ALTER_CONFIGS on the cluster) is in ``odradek.security.checks``.

``ip`` entities (``connection_creation_rate``) are stored and described but
not enforced.
"""

from __future__ import annotations

import json

from odradek.metadata.store import Compare, Delete, Put
from odradek.protocol import errors
from odradek.security.quotas import CLIENT_ID, IP, USER, entity_key, validate_entity, validate_value
from odradek.server.registry import handles

EXACT, DEFAULT, SPECIFIED = 0, 1, 2
ATTEMPTS = 5


def _filter_error(components: list[dict]) -> str | None:
    seen = set()
    for c in components:
        t = c["entity_type"]
        if t in seen:
            return f"Entity type {t} cannot appear more than once in the filter."
        seen.add(t)
        if t not in (USER, CLIENT_ID, IP):
            return f"Unknown entity type {t}"
        if c["match_type"] == EXACT and c["match"] is None:
            return "Request specified MATCH_TYPE_EXACT, but set match string to null."
        if c["match_type"] in (DEFAULT, SPECIFIED) and c["match"] is not None:
            return "Request specified a match string with a match type that takes none."
        if c["match_type"] not in (EXACT, DEFAULT, SPECIFIED):
            return f"Unknown match type {c['match_type']}"
    if IP in seen and len(seen) > 1:
        return "Invalid entity filter component combination: ip with user or client-id"
    return None


def _matches(entity: dict, components: list[dict], strict: bool) -> bool:
    for c in components:
        t = c["entity_type"]
        if t not in entity:
            return False
        name = entity[t]
        if c["match_type"] == EXACT and name != c["match"]:
            return False
        if c["match_type"] == DEFAULT and name is not None:
            return False
        if c["match_type"] == SPECIFIED and name is None:
            return False
    return not strict or len(entity) == len(components)


@handles("DescribeClientQuotas", 0, 1)
async def describe_client_quotas(ctx, request: dict) -> dict:
    components = request["components"]
    why = _filter_error(components)
    if why is not None:
        return {"error_code": errors.INVALID_REQUEST, "error_message": why, "entries": None}
    entries = []
    for entity, values in sorted(ctx.broker.image.quotas, key=lambda e: entity_key(e[0])):
        if values and _matches(dict(entity), components, request["strict"]):
            entries.append({"entity": [{"entity_type": t, "entity_name": n} for t, n in entity],
                            "values": [{"key": k, "value": v} for k, v in sorted(values.items())]})
    return {"error_code": 0, "error_message": None, "entries": entries}


def _altered(current: dict[str, float], entity: list, ops: list[dict]) -> tuple[str | None, dict]:
    types = {t for t, _ in entity}
    values = dict(current)
    seen = set()
    for op in ops:
        key = op["key"]
        if key in seen:
            return f"Duplicate quota key {key}", {}
        seen.add(key)
        if op["remove"]:
            why = validate_value(types, key, 1.0)
            if why is not None:
                return why, {}
            values.pop(key, None)
        else:
            why = validate_value(types, key, op["value"])
            if why is not None:
                return why, {}
            values[key] = float(op["value"])
    return None, values


@handles("AlterClientQuotas", 0, 1)
async def alter_client_quotas(ctx, request: dict) -> dict:
    """Read each entity from the store, apply the entries, and write them all
    in one transaction that holds only if none of them changed meanwhile
    (another broker's alteration); else read and apply again."""
    broker = ctx.broker
    for _ in range(ATTEMPTS):
        results, writes, compares = [], {}, {}
        for entry in request["entries"]:
            entity = [(e["entity_type"], e["entity_name"]) for e in entry["entity"]]
            why = validate_entity(entity)
            if why is None:
                key = entity_key(tuple(entity))
                if key not in compares:
                    kv = await broker.metadata.get(key)
                    compares[key] = Compare(key, "mod_revision", "==", 0 if kv is None else kv.mod_revision)
                    writes[key] = {} if kv is None else {k: float(v) for k, v in json.loads(kv.value).items()}
                why, values = _altered(writes[key], entity, entry["ops"])
            if why is not None:
                results.append({"error_code": errors.INVALID_REQUEST, "error_message": why,
                                "entity": entry["entity"]})
                continue
            results.append({"error_code": 0, "error_message": None, "entity": entry["entity"]})
            writes[key] = values
        changed = {k for k, c in compares.items() if c.operand or writes[k]}
        if not changed or request["validate_only"]:
            return {"entries": results}
        result = await broker.metadata.txn(
            [compares[k] for k in changed],
            [Put(k, json.dumps(writes[k]).encode()) if writes[k] else Delete(k) for k in changed])
        if result.succeeded:
            await broker.image.wait_for(result.revision)
            return {"entries": results}
    return {"entries": [{"error_code": errors.UNKNOWN_SERVER_ERROR, "error_message": "Concurrent alterations; retry",
                         "entity": entry["entity"]} for entry in request["entries"]]}
