"""The authoriser against a table of cases, with Kafka's rules (see
odradek/security/authorizer.py): patterns, implications, DENY over ALLOW,
principals and hosts, super users, allow.everyone.if.no.acl.found."""

import pytest

from odradek.security.authorizer import (CLUSTER, AclBinding, AclCache, AclFilter, Authorizer, Operation as O,
                                         PatternType as P, Permission, Resource, ResourceType as T)
from odradek.security.principal import KafkaPrincipal

ALLOW, DENY = Permission.ALLOW, Permission.DENY


def acl(rtype, name, ptype, principal, op, perm=ALLOW, host="*"):
    return AclBinding(rtype, name, ptype, principal, host, op, perm)


ACLS = [
    acl(T.TOPIC, "a", P.LITERAL, "User:alice", O.WRITE),
    acl(T.TOPIC, "a", P.LITERAL, "User:bob", O.READ),
    acl(T.GROUP, "g", P.LITERAL, "User:bob", O.READ),
    acl(T.TOPIC, "logs-", P.PREFIXED, "User:carol", O.ALL),
    acl(T.TOPIC, "logs-secret", P.LITERAL, "User:carol", O.READ, DENY),
    acl(T.TOPIC, "*", P.LITERAL, "User:*", O.DESCRIBE, host="10.0.0.9"),
    acl(T.TOPIC, "cfg", P.LITERAL, "User:dave", O.ALTER_CONFIGS),
    acl(T.TOPIC, "del", P.LITERAL, "User:dave", O.DELETE),
    acl(T.TOPIC, "only-host", P.LITERAL, "User:erin", O.READ, host="10.0.0.1"),
    acl(T.CLUSTER, "kafka-cluster", P.LITERAL, "User:ops", O.ALTER),
    acl(T.TRANSACTIONAL_ID, "tx-", P.PREFIXED, "User:alice", O.WRITE),
    acl(T.TOPIC, "everyone", P.LITERAL, "User:*", O.READ),
    acl(T.TOPIC, "everyone", P.LITERAL, "User:mallory", O.ALL, DENY),
]

CASES = [
    # principal, host, operation, resource, allowed, allowed with allow.everyone.if.no.acl.found
    ("User:alice", "1.2.3.4", O.WRITE, Resource(T.TOPIC, "a"), True, True),
    ("User:alice", "1.2.3.4", O.DESCRIBE, Resource(T.TOPIC, "a"), True, True),  # WRITE implies DESCRIBE
    ("User:alice", "1.2.3.4", O.READ, Resource(T.TOPIC, "a"), False, False),  # ACLs exist on "a"
    ("User:alice", "1.2.3.4", O.WRITE, Resource(T.TOPIC, "b"), False, False),  # the "*" ACL matches "b"
    ("User:alice", "1.2.3.4", O.WRITE, Resource(T.GROUP, "b"), False, True),  # no ACL on group "b"
    ("User:bob", "1.2.3.4", O.READ, Resource(T.TOPIC, "a"), True, True),
    ("User:bob", "1.2.3.4", O.DESCRIBE, Resource(T.GROUP, "g"), True, True),
    ("User:bob", "1.2.3.4", O.WRITE, Resource(T.TOPIC, "a"), False, False),
    ("User:bob", "1.2.3.4", O.READ, Resource(T.GROUP, "h"), False, True),
    ("User:carol", "1.2.3.4", O.WRITE, Resource(T.TOPIC, "logs-app"), True, True),  # prefixed, ALL
    ("User:carol", "1.2.3.4", O.READ, Resource(T.TOPIC, "logs-secret"), False, False),  # DENY wins
    ("User:carol", "1.2.3.4", O.WRITE, Resource(T.TOPIC, "logs-secret"), True, True),  # deny READ only
    ("User:carol", "1.2.3.4", O.WRITE, Resource(T.TOPIC, "log"), False, False),
    ("User:zed", "10.0.0.9", O.DESCRIBE, Resource(T.TOPIC, "anything"), True, True),  # '*' topic, User:*, host
    ("User:zed", "10.0.0.8", O.DESCRIBE, Resource(T.TOPIC, "anything"), False, False),  # '*' counts as an ACL
    ("User:dave", "1.2.3.4", O.DESCRIBE_CONFIGS, Resource(T.TOPIC, "cfg"), True, True),  # implied
    ("User:dave", "1.2.3.4", O.DESCRIBE, Resource(T.TOPIC, "cfg"), False, False),  # ALTER_CONFIGS does not
    ("User:dave", "1.2.3.4", O.DESCRIBE, Resource(T.TOPIC, "del"), True, True),  # DELETE implies DESCRIBE
    ("User:erin", "10.0.0.1", O.READ, Resource(T.TOPIC, "only-host"), True, True),
    ("User:erin", "10.0.0.2", O.READ, Resource(T.TOPIC, "only-host"), False, False),
    ("User:ops", "1.2.3.4", O.ALTER, CLUSTER, True, True),
    ("User:ops", "1.2.3.4", O.DESCRIBE, CLUSTER, True, True),
    ("User:ops", "1.2.3.4", O.ALTER_CONFIGS, CLUSTER, False, False),
    ("User:alice", "1.2.3.4", O.WRITE, Resource(T.TRANSACTIONAL_ID, "tx-1"), True, True),
    ("User:alice", "1.2.3.4", O.WRITE, Resource(T.TRANSACTIONAL_ID, "other"), False, True),
    ("User:anyone", "1.2.3.4", O.READ, Resource(T.TOPIC, "everyone"), True, True),
    ("User:mallory", "1.2.3.4", O.READ, Resource(T.TOPIC, "everyone"), False, False),
    ("User:admin", "1.2.3.4", O.READ, Resource(T.TOPIC, "logs-secret"), True, True),  # super user
    ("User:admin", "1.2.3.4", O.ALTER, CLUSTER, True, True),
    ("User:alice", "1.2.3.4", O.CREATE, Resource(T.DELEGATION_TOKEN, "t"), False, True),
]


@pytest.fixture
def cache():
    c = AclCache()
    for b in ACLS:
        c.put(b.key(), b.value())
    return c


@pytest.mark.parametrize("principal,host,op,resource,expected,expected_open", CASES,
                         ids=[f"{c[0]}-{c[2].name}-{c[3].type.name}:{c[3].name}-{c[1]}" for c in CASES])
def test_authorize(cache, principal, host, op, resource, expected, expected_open):
    supers = [KafkaPrincipal.parse("User:admin")]
    assert Authorizer(cache, supers).authorize(KafkaPrincipal.parse(principal), host, op, resource) is expected
    assert Authorizer(cache, supers, allow_if_no_acl=True).authorize(principal, host, op, resource) is expected_open


def test_values_round_trip_names_with_slashes_and_brackets():
    odd = [acl(T.TOPIC, "a/b/[x]", P.PREFIXED, "User:CN=a,O=b/[c", O.READ, host="::1"),
           acl(T.TOPIC, "a/b", P.LITERAL, "User:[\"/x", O.READ)]
    c = AclCache()
    for b in ACLS + odd:
        assert AclBinding.from_value(b.value()) == b
        c.put(b.key(), b.value())
    assert len({b.key() for b in ACLS + odd}) == len(c) == len(ACLS) + 2
    assert Authorizer(c).authorize("User:[\"/x", "h", O.READ, Resource(T.TOPIC, "a/b"))


def test_authorize_any_for_idempotent_producers(cache):
    a = Authorizer(cache, [KafkaPrincipal.parse("User:admin")])
    assert a.authorize_any("User:alice", "h", O.WRITE, T.TOPIC)  # WRITE on "a"
    assert a.authorize_any("User:carol", "h", O.WRITE, T.TOPIC)  # ALL on logs-
    assert not a.authorize_any("User:bob", "h", O.WRITE, T.TOPIC)
    assert a.authorize_any("User:admin", "h", O.WRITE, T.TOPIC)
    c = AclCache()
    for b in (acl(T.TOPIC, "a", P.LITERAL, "User:x", O.WRITE), acl(T.TOPIC, "a", P.LITERAL, "User:x", O.WRITE, DENY)):
        c.put(b.key(), b.value())
    assert not Authorizer(c).authorize_any("User:x", "h", O.WRITE, T.TOPIC)
    for b in (acl(T.TOPIC, "*", P.LITERAL, "User:*", O.WRITE, DENY), acl(T.TOPIC, "b", P.LITERAL, "User:x", O.WRITE)):
        c.put(b.key(), b.value())
    assert not Authorizer(c).authorize_any("User:x", "h", O.WRITE, T.TOPIC)
    assert Authorizer(AclCache(), allow_if_no_acl=True).authorize_any("User:x", "h", O.WRITE, T.TOPIC)
    assert not Authorizer(AclCache()).authorize_any("User:x", "h", O.WRITE, T.TOPIC)


def test_filters(cache):
    assert len([b for b in cache if AclFilter(T.TOPIC, "logs-secret", P.MATCH).matches(b)]) == 3  # prefixed, literal, "*"
    assert len([b for b in cache if AclFilter(principal="User:bob").matches(b)]) == 2
    assert len([b for b in cache if AclFilter(T.TOPIC, "a", P.LITERAL, operation=O.WRITE).matches(b)]) == 1
    assert len([b for b in cache if AclFilter().matches(b)]) == len(ACLS)


def test_validation():
    assert acl(T.CLUSTER, "other", P.LITERAL, "User:x", O.ALTER).validate()
    assert acl(T.TOPIC, "*", P.PREFIXED, "User:x", O.READ).validate()
    assert acl(T.TOPIC, "a", P.LITERAL, "nocolon", O.READ).validate()
    assert acl(T.TOPIC, "a", P.MATCH, "User:x", O.READ).validate()
    assert acl(T.TOPIC, "a", P.LITERAL, "User:x", O.ANY).validate()
    assert acl(T.TOPIC, "a", P.LITERAL, "User:x", O.READ).validate() is None


def test_the_index_follows_puts_and_deletes(cache):
    a = Authorizer(cache)
    assert a.authorize("User:alice", "h", O.WRITE, Resource(T.TOPIC, "a"))
    cache.delete(ACLS[0].key())
    assert not a.authorize("User:alice", "h", O.WRITE, Resource(T.TOPIC, "a"))
    assert a.authorize("User:carol", "h", O.WRITE, Resource(T.TOPIC, "logs-x"))
    cache.delete(ACLS[3].key())
    assert not a.authorize("User:carol", "h", O.WRITE, Resource(T.TOPIC, "logs-x"))
    cache.clear()
    assert list(cache.matching(Resource(T.TOPIC, "a"))) == [] and len(cache) == 0


def test_authorized_operations_are_kafkas_bit_field():
    """KIP-430: bit n set when operation code n is allowed, over the resource type's operations."""
    cache = AclCache()
    for b in ACLS:
        cache.put(b.key(), b.value())
    a = Authorizer(cache, [KafkaPrincipal("User", "admin")])
    bits = lambda *ops: sum(1 << int(o) for o in ops)  # noqa: E731
    assert a.authorized_operations("User:alice", "1.2.3.4", Resource(T.TOPIC, "a")) == bits(O.WRITE, O.DESCRIBE)
    assert a.authorized_operations("User:carol", "1.2.3.4", Resource(T.TOPIC, "logs-secret")) == bits(
        O.WRITE, O.CREATE, O.DESCRIBE, O.DELETE, O.ALTER, O.DESCRIBE_CONFIGS, O.ALTER_CONFIGS)  # READ denied
    assert a.authorized_operations("User:alice", "1.2.3.4", CLUSTER) == 0
    assert a.authorized_operations("User:admin", "1.2.3.4", Resource(T.GROUP, "x")) == bits(
        O.READ, O.DESCRIBE, O.DELETE, O.DESCRIBE_CONFIGS, O.ALTER_CONFIGS)
