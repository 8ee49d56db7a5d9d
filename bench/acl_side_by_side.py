#!/usr/bin/env python3
"""The ACL cases of tests/integration/test_acls.py against Apache Kafka 4.4 and
odradek, side by side: the same clients, users, ACLs and questions, one
line of output per answer, and the lines that differ.

    PYTHONPATH=. python3 bench/acl_side_by_side.py

Then Kafka's own kafka-acls (AclCommand) grants and denies, and a client's
answers after each (tests/integration/test_acl_command.py's ``flow``).
The questions include the authorized operations (KIP-430) the Java Admin
is told for a topic, the cluster and a group, per user.

Kafka runs through bench/kafka_runtime.py (a PLAINTEXT listener for the
runtime's readiness check and the inter-broker traffic, whose ANONYMOUS
principal is therefore a super user there, and a SASL_PLAINTEXT listener
for the clients); odradek in-process with the tests' configuration.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
spec = importlib.util.spec_from_file_location("kafka_runtime", ROOT / "bench" / "kafka_runtime.py")
kr = importlib.util.module_from_spec(spec)
sys.modules["kafka_runtime"] = kr
spec.loader.exec_module(kr)

from tests.integration import test_acls as T  # noqa: E402


class Endpoint:
    def __init__(self, addr):
        self.addr = addr


def questions(b) -> list[str]:
    """Set up topics and ACLs as the tests do, then ask; one line per answer."""
    from confluent_kafka.admin import AdminClient

    T.create_topics(b, "a", "b", "open")
    admin = AdminClient(T.conf(b, "admin"))
    for f in admin.create_acls([T.acl("TOPIC", "a", "User:alice", "WRITE"), T.acl("TOPIC", "a", "User:bob", "READ"),
                                T.acl("GROUP", "g", "User:bob", "READ")]).values():
        f.result(timeout=15)
    time.sleep(1)
    out = [f"confluent alice produce a: {T.produce(b, 'alice', 'a', 2)}",
           f"confluent alice produce b: {T.produce(b, 'alice', 'b', 1)}",
           f"confluent carol produce open: {T.produce(b, 'carol', 'open', 1)}"]
    for user in ("alice", "bob", "carol", "admin"):
        out.append(f"confluent {user} sees: {sorted(T.topics_seen(b, user))}")
    with tempfile.TemporaryDirectory() as tmp:
        from tests.integration.java_client import run_java

        java = run_java(Path(tmp), "AclCheck", T.JAVA, [b.addr])
        out += [f"java {line}" for line in java.splitlines() if line.startswith(("alice", "bob"))]
        # KIP-430: the authorized operations the Java Admin is told (topics, cluster, groups).
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer(T.conf(b, "bob", **{"group.id": "g"}))
        c.commit(offsets=[TopicPartition("a", 0, 0)], asynchronous=False)
        c.close()
        ops = T.authorized_ops_lines(Path(tmp), b.addr)
        out += [f"java authorized operations {k}: {v}" for k, v in sorted(ops.items())]
    return out


def acl_command_flow(b) -> list[str]:
    """Acceptance 3 of the security issue: Kafka's own kafka-acls (AclCommand)
    makes a prefixed grant, a group grant and a DENY; a client's answers."""
    from tests.integration import test_acl_command as C

    with tempfile.TemporaryDirectory() as tmp:
        return [f"kafka-acls {line}" for line in C.flow(b, C.kafka_runtime(), Path(tmp))]


def consumer_heartbeat_flow(b) -> list[str]:
    """KIP-848's ConsumerGroupHeartbeat under ACLs: READ on the group, DESCRIBE
    on the topics subscribed by name; raw requests as carol (SASL PLAIN)."""
    from confluent_kafka.admin import AdminClient

    from tests.integration.test_security import Raw

    T.create_topics(b, "a", "b")
    r = Raw(b.addr)
    r.request("SaslHandshake", 1, {"mechanism": "PLAIN"})
    r.request("SaslAuthenticate", 2, {"auth_bytes": b"\0carol\0carol-secret"})

    def hb(topics, member):
        resp = r.request("ConsumerGroupHeartbeat", 0, {
            "group_id": "cg", "member_id": member, "member_epoch": 0, "rebalance_timeout_ms": 30000,
            "subscribed_topic_names": topics, "topic_partitions": []})
        return f"error {resp['error_code']}, message {resp['error_message']!r}, epoch {resp['member_epoch']}"

    out = [f"heartbeat [a] without ACLs: {hb(['a'], 'm-1')}"]
    admin = AdminClient(T.conf(b, "admin"))
    for f in admin.create_acls([T.acl("GROUP", "cg", "User:carol", "READ"), T.acl("GROUP", "cgr", "User:carol", "READ"),
                                T.acl("TOPIC", "a", "User:carol", "DESCRIBE")]).values():
        f.result(timeout=15)
    time.sleep(1)
    out += [f"heartbeat [a, b] with READ cg, DESCRIBE a: {hb(['a', 'b'], 'm-1')}",
            f"heartbeat [unknown]: {hb(['zz-unknown'], 'm-1')}"]
    deadline = time.monotonic() + 20
    while True:  # as clients do: find the coordinator (Kafka creates its offsets topic then), ask again while it loads
        r.request("FindCoordinator", 4, {"key_type": 0, "coordinator_keys": ["cg"]})
        joined = hb(['a'], 'm-1')
        if not joined.startswith(("error 14,", "error 15,", "error 16,")) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    out.append(f"heartbeat [a]: {joined.rsplit(',', 1)[0]}")
    # A regex subscription resolves to the topics the member may DESCRIBE only.
    names = {str(t["topic_id"]): t["name"] for t in r.request("Metadata", 12, {"topics": None})["topics"]}
    epoch, assigned, deadline = 0, None, time.monotonic() + 20
    while not assigned and time.monotonic() < deadline:
        r.request("FindCoordinator", 4, {"key_type": 0, "coordinator_keys": ["cgr"]})
        resp = r.request("ConsumerGroupHeartbeat", 1, {
            "group_id": "cgr", "member_id": "m-r", "member_epoch": epoch, "rebalance_timeout_ms": 30000,
            "instance_id": None, "rack_id": None, "server_assignor": None, "subscribed_topic_names": None,
            "subscribed_topic_regex": "^[ab]$" if epoch == 0 else None,
            "topic_partitions": [] if epoch == 0 else None})
        if resp["error_code"] in (14, 15, 16):
            time.sleep(0.2)
            continue
        if resp["error_code"]:
            assigned = f"error {resp['error_code']}"
            break
        epoch = resp["member_epoch"]
        if resp["assignment"] is not None and resp["assignment"]["topic_partitions"]:
            assigned = sorted(names.get(str(t["topic_id"]), "?") for t in resp["assignment"]["topic_partitions"])
        time.sleep(0.3)
    out.append(f"regex ^[ab]$ assigned: {assigned}")
    r.close()
    return out


def kafka(allow_everyone: bool, ask=None) -> list[str]:
    sasl = kr.free_port()
    k = kr.KafkaBroker()
    k.port, k.controller_port = kr.free_port(), kr.free_port()
    k.extra_config.update({
        "listeners": f"PLAINTEXT://127.0.0.1:{k.port},SASL_PLAINTEXT://127.0.0.1:{sasl},"
                     f"CONTROLLER://127.0.0.1:{k.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{k.port},SASL_PLAINTEXT://127.0.0.1:{sasl}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": T.JAAS,
        "authorizer.class.name": T.AUTHORIZER,
        "super.users": "User:admin;User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": str(allow_everyone).lower(),
        "auto.create.topics.enable": "false",
    })
    with k:
        return (ask or questions)(Endpoint(f"127.0.0.1:{sasl}"))


def odradek(allow_everyone: bool, ask=None) -> list[str]:
    b = T.start(T.broker_config(**{"allow.everyone.if.no.acl.found": str(allow_everyone).lower()}))
    try:
        return (ask or questions)(b)
    finally:
        b.__exit__(None, None, None)


def main() -> int:
    differ = 0
    only = sys.argv[1:]  # flow names to run (default: all)
    flows = [(False, None), (True, None), (False, acl_command_flow), (False, consumer_heartbeat_flow)]
    for allow_everyone, ask in flows:
        if only and (ask.__name__ if ask else "questions") not in only:
            continue
        print(f"== allow.everyone.if.no.acl.found={str(allow_everyone).lower()}"
              + (f" ({ask.__name__})" if ask else ""))
        theirs, ours = kafka(allow_everyone, ask), odradek(allow_everyone, ask)
        for k_line, o_line in zip(theirs, ours):
            same = k_line == o_line
            differ += not same
            print(f"{'  ' if same else '!='} kafka:   {k_line}")
            if not same:
                print(f"   odradek: {o_line}")
    print("same answers" if not differ else f"{differ} answers differ")
    return 1 if differ else 0


if __name__ == "__main__":
    os.environ.setdefault("ODRADEK_LOG_LEVEL", "WARNING")
    sys.exit(main())
