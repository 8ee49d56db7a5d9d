"""ACLs and the one authorisation decision, with Kafka's model and rules.

Theory of operation: an ACL binds a resource pattern (resource type, pattern
type, name) to an entry (principal, host, operation, permission).
``Authorizer.authorize(principal, host, operation, resource)`` answers for a
concrete resource (type and name) in this order, as Kafka's
StandardAuthorizer does:

1. a principal in ``super.users`` is allowed everything;
2. the ACLs whose pattern matches the resource are gathered: LITERAL with the
   same name, LITERAL ``*``, PREFIXED with a prefix of the name;
3. an entry applies when its principal is the caller's or ``User:*``, and its
   host is the caller's or ``*``;
4. a DENY that applies for the operation (or ALL) wins;
5. else an ALLOW that applies for the operation, for ALL, or for an
   operation that implies it (READ, WRITE, DELETE and ALTER imply DESCRIBE;
   ALTER_CONFIGS implies DESCRIBE_CONFIGS) allows;
6. else, if no ACL at all matched the resource (whoever it names),
   ``allow.everyone.if.no.acl.found`` decides; otherwise denied.

``authorize_any(principal, host, operation, resource_type)`` is Kafka's
"by resource type" question (may this principal do ``operation`` on some
resource of that type?), used by InitProducerId for an idempotent producer.

The ACLs themselves are cluster metadata: the image (``odradek.metadata.image``)
keeps an ``AclCache`` built from the store's ``acls/`` keys, one key per
binding (``acls/<type>/<pattern type>/<name>/<entry>``, the binding in the
value as JSON); this module owns their key and value formats.

Not implemented: the Kafka host match by resolved address (hosts are compared
as text, the client's IP as the broker sees it), and the audit log.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Iterable

from odradek.security.principal import KafkaPrincipal

PREFIX = "acls/"
WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14
    TWO_PHASE_COMMIT = 15


class Permission(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


# An ALLOW for the key also allows each operation in its value.
IMPLIED = {
    Operation.DESCRIBE: {Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER},
    Operation.DESCRIBE_CONFIGS: {Operation.ALTER_CONFIGS},
}

CLUSTER_NAME = "kafka-cluster"

# The operations each resource type has (Kafka's AclEntry.supportedOperations): the
# bits of the authorized_operations fields of Metadata, DescribeCluster and
# DescribeGroups (KIP-430).
SUPPORTED_OPERATIONS = {
    ResourceType.TOPIC: (Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DESCRIBE, Operation.DELETE,
                         Operation.ALTER, Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS),
    ResourceType.GROUP: (Operation.READ, Operation.DESCRIBE, Operation.DELETE, Operation.DESCRIBE_CONFIGS,
                         Operation.ALTER_CONFIGS),
    ResourceType.CLUSTER: (Operation.CREATE, Operation.CLUSTER_ACTION, Operation.DESCRIBE_CONFIGS,
                           Operation.ALTER_CONFIGS, Operation.IDEMPOTENT_WRITE, Operation.ALTER, Operation.DESCRIBE),
    ResourceType.TRANSACTIONAL_ID: (Operation.DESCRIBE, Operation.WRITE),
    ResourceType.DELEGATION_TOKEN: (Operation.DESCRIBE,),
    ResourceType.USER: (Operation.CREATE_TOKENS, Operation.DESCRIBE_TOKENS),
}


def operations_field(ops) -> int:
    """A set of operations as the 32-bit field Kafka sends (bit n: operation code n)."""
    out = 0
    for op in ops:
        out |= 1 << int(op)
    return out


@dataclass(frozen=True)
class Resource:
    type: ResourceType
    name: str


CLUSTER = Resource(ResourceType.CLUSTER, CLUSTER_NAME)


@dataclass(frozen=True)
class AclBinding:
    resource_type: ResourceType
    name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: Operation
    permission: Permission

    # -- the store's form ------------------------------------------------------
    def key(self) -> str:
        entry = json.dumps([self.principal, self.host, self.operation.name, self.permission.name],
                           separators=(",", ":"))
        return f"{PREFIX}{self.resource_type.name}/{self.pattern_type.name}/{self.name}/{entry}"

    def value(self) -> bytes:
        """The store's value: the whole binding (the key is for listing and
        uniqueness; names and principals may hold any character, '/' too)."""
        return json.dumps({"resource_type": self.resource_type.name, "name": self.name,
                           "pattern_type": self.pattern_type.name, "principal": self.principal,
                           "host": self.host, "operation": self.operation.name,
                           "permission": self.permission.name}).encode()

    @classmethod
    def from_value(cls, value: bytes) -> "AclBinding":
        d = json.loads(value)
        return cls(ResourceType[d["resource_type"]], d["name"], PatternType[d["pattern_type"]], d["principal"],
                   d["host"], Operation[d["operation"]], Permission[d["permission"]])

    def validate(self) -> str | None:
        """Why Kafka would refuse to create this binding, or None."""
        if self.resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
            return "Resource type must be concrete"
        if self.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
            return "Pattern type must be LITERAL or PREFIXED"
        if self.operation in (Operation.UNKNOWN, Operation.ANY):
            return "Operation must be concrete"
        if self.permission not in (Permission.ALLOW, Permission.DENY):
            return "Permission type must be ALLOW or DENY"
        if not self.name:
            return "Resource name must not be empty"
        if self.resource_type == ResourceType.CLUSTER and (self.name != CLUSTER_NAME
                                                           or self.pattern_type != PatternType.LITERAL):
            return f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        if self.pattern_type == PatternType.PREFIXED and self.name == WILDCARD:
            return "A PREFIXED pattern may not be the wildcard '*'"
        try:
            KafkaPrincipal.parse(self.principal)
        except ValueError as e:
            return str(e)
        if not self.host:
            return "Host must not be empty"
        return None


@dataclass(frozen=True)
class AclFilter:
    """DescribeAcls / DeleteAcls' filter: None (or ANY) matches anything."""
    resource_type: ResourceType = ResourceType.ANY
    name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: Operation = Operation.ANY
    permission: Permission = Permission.ANY

    def invalid(self) -> str | None:
        if ResourceType.UNKNOWN in (self.resource_type,) or self.pattern_type == PatternType.UNKNOWN \
                or self.operation == Operation.UNKNOWN or self.permission == Permission.UNKNOWN:
            return "The filter contains UNKNOWN elements"
        return None

    def matches(self, b: AclBinding) -> bool:
        if self.resource_type != ResourceType.ANY and b.resource_type != self.resource_type:
            return False
        if self.pattern_type == PatternType.MATCH:
            if self.name is not None and not _pattern_matches(b.pattern_type, b.name, self.name):
                return False
        else:
            if self.pattern_type != PatternType.ANY and b.pattern_type != self.pattern_type:
                return False
            if self.name is not None and b.name != self.name:
                return False
        if self.principal is not None and b.principal != self.principal:
            return False
        if self.host is not None and b.host != self.host:
            return False
        if self.operation != Operation.ANY and b.operation != self.operation:
            return False
        if self.permission != Permission.ANY and b.permission != self.permission:
            return False
        return True


def _pattern_matches(pattern_type: PatternType, pattern: str, name: str) -> bool:
    if pattern_type == PatternType.LITERAL:
        return pattern == name or pattern == WILDCARD
    if pattern_type == PatternType.PREFIXED:
        return name.startswith(pattern)
    return False


class AclCache:
    """Every binding the store holds, indexed for ``matching``: LITERAL ones by
    (resource type, name), PREFIXED ones by resource type (scanned)."""

    def __init__(self):
        self.bindings: dict[str, AclBinding] = {}  # store key -> binding
        self.by_type: dict[ResourceType, set[AclBinding]] = {}
        self.literal: dict[tuple[ResourceType, str], set[AclBinding]] = {}
        self.prefixed: dict[ResourceType, set[AclBinding]] = {}

    def _index(self, b: AclBinding):
        if b.pattern_type == PatternType.LITERAL:
            return self.literal, (b.resource_type, b.name)
        return self.prefixed, b.resource_type

    def put(self, key: str, value: bytes) -> None:
        b = AclBinding.from_value(value)
        self.bindings[key] = b
        self.by_type.setdefault(b.resource_type, set()).add(b)
        index, k = self._index(b)
        index.setdefault(k, set()).add(b)

    def delete(self, key: str) -> None:
        b = self.bindings.pop(key, None)
        if b is not None:
            self.by_type.get(b.resource_type, set()).discard(b)
            index, k = self._index(b)
            index.get(k, set()).discard(b)

    def clear(self) -> None:
        self.bindings.clear()
        self.by_type.clear()
        self.literal.clear()
        self.prefixed.clear()

    def matching(self, resource: Resource) -> Iterable[AclBinding]:
        yield from self.literal.get((resource.type, resource.name), ())
        if resource.name != WILDCARD:
            yield from self.literal.get((resource.type, WILDCARD), ())
        for b in self.prefixed.get(resource.type, ()):
            if resource.name.startswith(b.name):
                yield b

    def __iter__(self):
        return iter(list(self.bindings.values()))

    def __len__(self) -> int:
        return len(self.bindings)


def _applies(b: AclBinding, principal: str, host: str) -> bool:
    return (b.principal == principal or b.principal == WILDCARD_PRINCIPAL) and (b.host == host or b.host == WILDCARD)


class Authorizer:
    """Kafka's decision over an ``AclCache`` (see the module docstring)."""

    def __init__(self, acls: AclCache, super_users: Iterable[KafkaPrincipal] = (),
                 allow_if_no_acl: bool = False):
        self.acls = acls
        self.super_users = {str(p) for p in super_users}
        self.allow_if_no_acl = allow_if_no_acl

    def authorize(self, principal, host: str, operation: Operation, resource: Resource) -> bool:
        principal = str(principal)
        if principal in self.super_users:
            return True
        found = False
        allowed = False
        allowing = {operation, Operation.ALL} | IMPLIED.get(operation, set())
        for b in self.acls.matching(resource):
            found = True
            if not _applies(b, principal, host):
                continue
            if b.permission == Permission.DENY:
                if b.operation in (operation, Operation.ALL):
                    return False
            elif b.permission == Permission.ALLOW and b.operation in allowing:
                allowed = True
        if allowed:
            return True
        return not found and self.allow_if_no_acl

    def authorized_operations(self, principal, host: str, resource: Resource) -> int:
        """The operations of ``resource``'s type that are allowed on it, as Kafka's bit field."""
        return operations_field(op for op in SUPPORTED_OPERATIONS[resource.type]
                                if self.authorize(principal, host, op, resource))

    def authorize_any(self, principal, host: str, operation: Operation, resource_type: ResourceType) -> bool:
        """Whether ``operation`` is allowed on at least one resource of ``resource_type``:
        an applying ALLOW on some pattern that no applying DENY covers whole."""
        principal = str(principal)
        # A made-up name: super users, and allow.everyone.if.no.acl.found with no ACL of the type.
        if self.authorize(principal, host, operation, Resource(resource_type, "hardcode")):
            return True
        denies_literal, denies_prefixed = set(), []
        allows: list[AclBinding] = []
        for b in self.acls.by_type.get(resource_type, ()):
            if not _applies(b, principal, host):
                continue
            if b.permission == Permission.DENY and b.operation in (operation, Operation.ALL):
                if b.pattern_type == PatternType.LITERAL:
                    if b.name == WILDCARD:
                        return False
                    denies_literal.add(b.name)
                else:
                    if b.name == "":
                        return False
                    denies_prefixed.append(b.name)
            elif b.permission == Permission.ALLOW and b.operation in (operation, Operation.ALL):
                allows.append(b)
        for b in allows:
            if any(b.name.startswith(p) for p in denies_prefixed):
                continue
            if b.pattern_type == PatternType.LITERAL and b.name in denies_literal:
                continue
            return True
        return False
