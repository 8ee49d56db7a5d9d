"""DescribeUserScramCredentials (key 50) v0, AlterUserScramCredentials (key 51) v0.

SCRAM credentials live in the metadata store (``odradek.security.scram``).
Describe lists each user's mechanisms and iteration counts, never a salt or
key: all users when ``users`` is null or empty, else the named ones
(RESOURCE_NOT_FOUND for a user without credentials, DUPLICATE_RESOURCE for a
name asked twice). Alter applies deletions and upsertions: the client sends
the salt and the salted password (never the password), from which the
broker derives the stored and server keys. As in Kafka: a user named twice
in one request fails with DUPLICATE_RESOURCE, an unknown mechanism with
UNSUPPORTED_SASL_MECHANISM, an iteration count outside 4096-16384 or an
empty name or salt with UNACCEPTABLE_CREDENTIAL, a deletion of a missing
credential with RESOURCE_NOT_FOUND; one result per user.

Under ACLs they need DESCRIBE / ALTER on the cluster (``odradek.security.checks``).
"""

from odradek.protocol import errors
from odradek.security import scram
from odradek.server.registry import handles


@handles("DescribeUserScramCredentials", 0, 0)
async def describe_user_scram_credentials(ctx, request: dict) -> dict:
    store = scram.ScramStore(ctx.broker.metadata)
    everyone = await store.all()
    results = []
    names = request["users"]
    if not names:  # null or empty: every user, as Kafka reads it
        wanted = sorted(everyone)
    else:
        wanted = [u["name"] for u in names]
    seen: dict[str, int] = {}
    for name in wanted:
        seen[name] = seen.get(name, 0) + 1
    for name in dict.fromkeys(wanted):
        if seen[name] > 1:
            results.append({"user": name, "error_code": errors.DUPLICATE_RESOURCE,
                            "error_message": f"Cannot describe SCRAM credentials for the same user twice "
                                             f"in a single request: {name}", "credential_infos": []})
        elif name not in everyone:
            results.append({"user": name, "error_code": errors.RESOURCE_NOT_FOUND,
                            "error_message": f"Attempt to describe a user credential that does not exist: {name}",
                            "credential_infos": []})
        else:
            infos = [{"mechanism": scram.MECHANISM_IDS[m], "iterations": c.iterations}
                     for m, c in sorted(everyone[name].items())]
            results.append({"user": name, "error_code": 0, "error_message": None, "credential_infos": infos})
    return {"error_code": 0, "error_message": None, "results": results}


@handles("AlterUserScramCredentials", 0, 0)
async def alter_user_scram_credentials(ctx, request: dict) -> dict:
    store = scram.ScramStore(ctx.broker.metadata)
    ops = [("delete", d) for d in request["deletions"]] + [("upsert", u) for u in request["upsertions"]]
    users = list(dict.fromkeys(op["name"] for _, op in ops))  # one result per user, in order
    pairs = [(op["name"], op["mechanism"]) for _, op in ops]
    duplicated = {name for name, mech in pairs if pairs.count((name, mech)) > 1}
    errors_by_user: dict[str, tuple[int, str]] = {}

    def fail(name, code, message):
        errors_by_user.setdefault(name, (code, message))

    for kind, op in ops:
        name, mech = op["name"], scram.MECHANISM_NAMES.get(op["mechanism"])
        if not name:
            fail(name, errors.UNACCEPTABLE_CREDENTIAL, "Username must not be empty")
        elif name in duplicated:
            fail(name, errors.DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request")
        elif mech is None:
            fail(name, errors.UNSUPPORTED_SASL_MECHANISM, f"Unknown SCRAM mechanism {op['mechanism']}")
        elif kind == "upsert" and not scram.MIN_ITERATIONS <= op["iterations"] <= scram.MAX_ITERATIONS:
            fail(name, errors.UNACCEPTABLE_CREDENTIAL,
                 f"Iterations {op['iterations']} outside {scram.MIN_ITERATIONS}-{scram.MAX_ITERATIONS}")
        elif kind == "upsert" and (not op["salt"] or not op["salted_password"]):
            fail(name, errors.UNACCEPTABLE_CREDENTIAL, "Salt and salted password must not be empty")
        elif kind == "delete" and await store.get(mech, name) is None:
            fail(name, errors.RESOURCE_NOT_FOUND,
                 f"Attempt to delete a user credential that does not exist: {name} {mech}")
    for kind, op in ops:
        name = op["name"]
        if name in errors_by_user:
            continue
        mech = scram.MECHANISM_NAMES[op["mechanism"]]
        if kind == "delete":
            await store.delete(mech, name)
        else:
            credential = scram.from_salted_password(mech, bytes(op["salted_password"]), bytes(op["salt"]),
                                                    op["iterations"])
            await store.put(mech, name, credential)
    results = []
    for name in users:
        code, message = errors_by_user.get(name, (0, None))
        results.append({"user": name, "error_code": code, "error_message": message})
    return {"results": results}
