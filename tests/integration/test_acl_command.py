"""Apache Kafka's own ``kafka-acls`` (org.apache.kafka.tools.AclCommand, from
the tools jar on Maven Central) against odradek with SASL PLAIN and Kafka's
StandardAuthorizer settings: a prefixed grant lets alice write ``orders-1``
but not ``audit``, a group needs READ, a DENY overrides an ALLOW, and the
listing is Kafka's. ``bench/acl_side_by_side.py`` runs the same ``flow``
against Apache Kafka 4.4; the answers asserted here are the ones it gives."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.integration import test_acls as T

pytestmark = pytest.mark.timeout(240)

TOPIC_DENIED, GROUP_DENIED = 29, 30


def kafka_runtime():
    """Kafka's jars through bench/kafka_runtime.py; skips where they cannot be had."""
    from tests.integration.java_client import require_java

    require_java()
    mod = sys.modules.get("kafka_runtime")
    if mod is None:
        spec = importlib.util.spec_from_file_location("kafka_runtime", os.path.join(ROOT, "bench", "kafka_runtime.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["kafka_runtime"] = mod
        spec.loader.exec_module(mod)
    return mod.fetch(quiet=True)


def acl_command(rt, addr: str, config: str, *args: str) -> str:
    main = next((c for c in ("org.apache.kafka.tools.AclCommand", "kafka.admin.AclCommand") if rt.has_class(c)), None)
    if main is None:
        pytest.skip(f"no AclCommand in Kafka {rt.version}'s jars")
    proc = subprocess.run(rt.java_command(main, ["--bootstrap-server", addr, "--command-config", config, *args],
                                          heap="256M", jvm_opts=["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def consume_error(b, user, group, topic) -> int | None:
    """The first error a group consumer of ``user`` gets, or None once it reads a record."""
    from confluent_kafka import Consumer

    c = Consumer(T.conf(b, user, **{"group.id": group, "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            return None if m.error() is None else m.error().code()
        return -1
    finally:
        c.close()


def listing(text: str) -> list[str]:
    """AclCommand's --list output, one line per ACL, resource first."""
    out, resource = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Current ACLs for resource"):
            resource = line.split("`")[1]
        elif line.startswith("(principal="):
            out.append(f"{resource} {line}")
    return sorted(out)


def flow(b, rt, tmp) -> list[str]:
    """The acceptance's steps, one line per answer (the same lines from Kafka and odradek)."""
    T.create_topics(b, "orders-1", "orders-2", "audit")
    config = tmp / "admin.properties"
    config.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.jaas.config="
                      "org.apache.kafka.common.security.plain.PlainLoginModule required "
                      'username="admin" password="admin-secret";\n')

    def acls(*args):
        out = acl_command(rt, b.addr, str(config), *args)
        time.sleep(0.5)  # Kafka applies ACLs through its metadata log
        return out

    out = [f"no ACL: alice writes orders-1: {T.produce(b, 'alice', 'orders-1', 1)}",
           f"no ACL: alice reads orders-1 in ga: {consume_error(b, 'alice', 'ga', 'orders-1')}"]
    acls("--add", "--allow-principal", "User:alice", "--operation", "Write", "--operation", "Read",
         "--topic", "orders-", "--resource-pattern-type", "prefixed")
    out += [f"prefixed WRITE: alice writes orders-1: {T.produce(b, 'alice', 'orders-1', 1)}",
            f"prefixed WRITE: alice writes audit: {T.produce(b, 'alice', 'audit', 1)}",
            f"no group ACL: alice reads orders-1 in ga: {consume_error(b, 'alice', 'ga', 'orders-1')}"]
    acls("--add", "--allow-principal", "User:alice", "--operation", "Read", "--group", "ga")
    out.append(f"group READ: alice reads orders-1 in ga: {consume_error(b, 'alice', 'ga', 'orders-1')}")
    acls("--add", "--deny-principal", "User:alice", "--operation", "Write", "--topic", "orders-2")
    out += [f"DENY orders-2: alice writes orders-2: {T.produce(b, 'alice', 'orders-2', 1)}",
            f"DENY orders-2: alice writes orders-1: {T.produce(b, 'alice', 'orders-1', 1)}"]
    out += [f"listed: {line}" for line in listing(acls("--list", "--principal", "User:alice"))]
    return out


EXPECTED = [  # what Apache Kafka 4.4 answered (bench/acl_side_by_side.py, 2026-12-06)
    f"no ACL: alice writes orders-1: [{TOPIC_DENIED}]",
    f"no ACL: alice reads orders-1 in ga: {GROUP_DENIED}",
    "prefixed WRITE: alice writes orders-1: [None]",
    f"prefixed WRITE: alice writes audit: [{TOPIC_DENIED}]",
    f"no group ACL: alice reads orders-1 in ga: {GROUP_DENIED}",
    "group READ: alice reads orders-1 in ga: None",
    f"DENY orders-2: alice writes orders-2: [{TOPIC_DENIED}]",
    "DENY orders-2: alice writes orders-1: [None]",
    "listed: ResourcePattern(resourceType=GROUP, name=ga, patternType=LITERAL) "
    "(principal=User:alice, host=*, operation=READ, permissionType=ALLOW)",
    "listed: ResourcePattern(resourceType=TOPIC, name=orders-, patternType=PREFIXED) "
    "(principal=User:alice, host=*, operation=READ, permissionType=ALLOW)",
    "listed: ResourcePattern(resourceType=TOPIC, name=orders-, patternType=PREFIXED) "
    "(principal=User:alice, host=*, operation=WRITE, permissionType=ALLOW)",
    "listed: ResourcePattern(resourceType=TOPIC, name=orders-2, patternType=LITERAL) "
    "(principal=User:alice, host=*, operation=WRITE, permissionType=DENY)",
]


def test_kafka_acls_against_odradek(tmp_path):
    rt = kafka_runtime()
    b = T.start(T.broker_config())
    try:
        assert flow(b, rt, tmp_path) == EXPECTED
    finally:
        b.__exit__(None, None, None)
