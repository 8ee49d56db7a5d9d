"""DescribeAcls (key 29) v1-3, CreateAcls (key 30) v1-3, DeleteAcls (key 31) v1-3.

ACLs are cluster metadata: one key per binding in the metadata store
(``odradek.security.authorizer.AclBinding.key`` and ``value``), read by every broker
through its image. Create writes each valid binding (creating one that
exists is a success, as in Kafka); a binding Kafka would refuse (an UNKNOWN
or ANY element, a CLUSTER resource not named ``kafka-cluster``, a malformed
principal) gets INVALID_REQUEST in its own result. Describe answers the
bindings a filter matches, grouped by resource pattern; Delete removes them,
in one store transaction per request, and lists what each filter removed.
A filter with UNKNOWN elements gets INVALID_REQUEST. Without
``authorizer.class.name`` the three answer SECURITY_DISABLED, as Kafka does.
What each needs (ALTER or DESCRIBE on the cluster) is in
``odradek.security.checks``.

Not implemented: v0 (removed in Kafka 4.0).
"""

from __future__ import annotations

from odradek.metadata.store import Delete, Put
from odradek.protocol import errors
from odradek.security.authorizer import (AclBinding, AclFilter, Operation, PatternType, Permission,
                                         ResourceType)
from odradek.server.registry import handles

DISABLED = "No Authorizer is configured on the broker"


def _enum(cls, value):
    try:
        return cls(value)
    except ValueError:
        return cls.UNKNOWN


def binding_of(c: dict) -> AclBinding:
    return AclBinding(_enum(ResourceType, c["resource_type"]), c["resource_name"],
                      _enum(PatternType, c["resource_pattern_type"]), c["principal"], c["host"],
                      _enum(Operation, c["operation"]), _enum(Permission, c["permission_type"]))


def filter_of(f: dict) -> AclFilter:
    return AclFilter(_enum(ResourceType, f["resource_type_filter"]), f["resource_name_filter"],
                     _enum(PatternType, f["pattern_type_filter"]), f["principal_filter"], f["host_filter"],
                     _enum(Operation, f["operation"]), _enum(Permission, f["permission_type"]))


def _binding_fields(b: AclBinding) -> dict:
    return {"resource_type": int(b.resource_type), "resource_name": b.name, "pattern_type": int(b.pattern_type),
            "principal": b.principal, "host": b.host, "operation": int(b.operation),
            "permission_type": int(b.permission)}


@handles("DescribeAcls", 1, 3)
async def describe_acls(ctx, request: dict) -> dict:
    if ctx.broker.authorizer is None:
        return {"error_code": errors.SECURITY_DISABLED, "error_message": DISABLED, "resources": []}
    f = filter_of(request)
    if (why := f.invalid()) is not None:
        return {"error_code": errors.INVALID_REQUEST, "error_message": why, "resources": []}
    resources: dict[tuple, list] = {}
    for b in sorted(ctx.broker.image.acls, key=lambda b: b.key()):
        if f.matches(b):
            resources.setdefault((int(b.resource_type), b.name, int(b.pattern_type)), []).append(
                {"principal": b.principal, "host": b.host, "operation": int(b.operation),
                 "permission_type": int(b.permission)})
    return {"error_code": 0, "error_message": None, "resources": [
        {"resource_type": rt, "resource_name": name, "pattern_type": pt, "acls": acls}
        for (rt, name, pt), acls in resources.items()]}


@handles("CreateAcls", 1, 3)
async def create_acls(ctx, request: dict) -> dict:
    broker = ctx.broker
    if broker.authorizer is None:
        return {"results": [{"error_code": errors.SECURITY_DISABLED, "error_message": DISABLED}
                            for _ in request["creations"]]}
    results, puts = [], []
    for c in request["creations"]:
        b = binding_of(c)
        why = b.validate()
        if why is not None:
            results.append({"error_code": errors.INVALID_REQUEST, "error_message": why})
        else:
            results.append({"error_code": 0, "error_message": None})
            puts.append(Put(b.key(), b.value()))
    if puts:
        revision = (await broker.metadata.txn((), puts)).revision
        await broker.image.wait_for(revision)
    return {"results": results}


@handles("DeleteAcls", 1, 3)
async def delete_acls(ctx, request: dict) -> dict:
    broker = ctx.broker
    if broker.authorizer is None:
        return {"filter_results": [{"error_code": errors.SECURITY_DISABLED, "error_message": DISABLED,
                                    "matching_acls": []} for _ in request["filters"]]}
    results, deletes = [], {}
    bindings = sorted(broker.image.acls, key=lambda b: b.key())
    for spec in request["filters"]:
        f = filter_of(spec)
        if (why := f.invalid()) is not None:
            results.append({"error_code": errors.INVALID_REQUEST, "error_message": why, "matching_acls": []})
            continue
        matched = [b for b in bindings if f.matches(b)]
        for b in matched:
            deletes[b.key()] = Delete(b.key())
        results.append({"error_code": 0, "error_message": None, "matching_acls": [
            {"error_code": 0, "error_message": None, **_binding_fields(b)} for b in matched]})
    if deletes:
        revision = (await broker.metadata.txn((), list(deletes.values()))).revision
        await broker.image.wait_for(revision)
    return {"filter_results": results}
