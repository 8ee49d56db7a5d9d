"""The layers hold: API handlers reach partitions only through the replica
manager's lookup and the Partition's methods, never a log, a producer table,
the log store or a hosted topic's partition list."""

from __future__ import annotations

import ast
import os

import odradek.apis

APIS = os.path.dirname(odradek.apis.__file__)
# Attributes that belong below the replica layer.
FORBIDDEN = {"log", "producers", "store", "waiters", "topics_by_id"}
# What a handler may ask of the replica manager.
REPLICA_CALLS = {"partition_or_error", "topic", "all_partitions", "leader_throttled", "sent_to_follower"}


def _violations(path: str) -> list[str]:
    tree = ast.parse(open(path).read(), path)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        where = f"{os.path.basename(path)}:{node.lineno}"
        if node.attr in FORBIDDEN:
            found.append(f"{where} .{node.attr}")
        if isinstance(node.value, ast.Attribute) and node.value.attr == "replicas" \
                and node.attr not in REPLICA_CALLS:
            found.append(f"{where} replicas.{node.attr}")
        if node.attr == "partitions" and isinstance(node.value, ast.Call) \
                and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "topic":
            found.append(f"{where} replicas.topic(...).partitions")
    return found


def test_api_handlers_go_through_the_replica_layer():
    modules = [os.path.join(APIS, f) for f in sorted(os.listdir(APIS)) if f.endswith(".py")]
    assert len(modules) >= 9
    found = [v for m in modules for v in _violations(m)]
    assert found == []


def test_the_check_finds_what_it_forbids(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(broker, p):\n"
                   "    p.log.append(b'')\n"
                   "    broker.replicas.topics['t']\n"
                   "    broker.replicas.topic('t').partitions[0]\n"
                   "    p.producers.check(None)\n")
    assert len(_violations(str(bad))) == 4


def test_throttle_time_is_set_in_one_place():
    """Handlers leave throttle_time_ms out; the connection sets it for every
    response (from the client quotas)."""
    for f in sorted(os.listdir(APIS)):
        if f.endswith(".py"):
            tree = ast.parse(open(os.path.join(APIS, f)).read())
            names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)} | \
                {k.arg for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords}
            assert "throttle_time_ms" not in names, f
