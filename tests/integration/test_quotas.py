"""Client quotas over the wire: AlterClientQuotas and DescribeClientQuotas
(raw client), and enforcement with real clients."""

from __future__ import annotations

import pytest

from tests.integration.rawclient import RawClient

pytestmark = pytest.mark.timeout(120)
INVALID_REQUEST = 42


@pytest.fixture
def raw(odradek_broker_fn):
    c = RawClient(odradek_broker_fn.bootstrap)
    c.broker = odradek_broker_fn
    yield c
    c.close()


def entity(**names):
    return [{"entity_type": t.replace("_", "-"), "entity_name": n} for t, n in names.items()]


def alter(raw, entries, validate_only=False, version=1):
    r = raw.request("AlterClientQuotas", version, {"entries": [
        {"entity": e, "ops": [{"key": k, "value": v if v is not None else 0.0, "remove": v is None}
                              for k, v in ops.items()]} for e, ops in entries], "validate_only": validate_only})
    return [(x["error_code"], x["error_message"]) for x in r["entries"]]


def describe(raw, components, strict=False, version=1):
    r = raw.request("DescribeClientQuotas", version, {"components": [
        {"entity_type": t, "match_type": m, "match": n} for t, m, n in components], "strict": strict})
    assert r["error_code"] == 0, r
    return {tuple((e["entity_type"], e["entity_name"]) for e in x["entity"]):
            {v["key"]: v["value"] for v in x["values"]} for x in r["entries"]}


def test_alter_then_describe(raw):
    assert alter(raw, [(entity(user="alice", client_id="app"), {"producer_byte_rate": 1024, "request_percentage": 50}),
                       (entity(user=None), {"consumer_byte_rate": 2048}),
                       (entity(client_id="app"), {"producer_byte_rate": 4096})]) == [(0, None)] * 3
    everything = describe(raw, [])
    assert everything == {
        (("client-id", "app"),): {"producer_byte_rate": 4096.0},
        (("client-id", "app"), ("user", "alice")): {"producer_byte_rate": 1024.0, "request_percentage": 50.0},
        (("user", None),): {"consumer_byte_rate": 2048.0}}
    assert list(describe(raw, [("user", 0, "alice")])) == [(("client-id", "app"), ("user", "alice"))]
    assert describe(raw, [("user", 0, "alice")], strict=True) == {}
    assert list(describe(raw, [("user", 1, None)])) == [(("user", None),)]
    assert list(describe(raw, [("client-id", 2, None)], strict=True)) == [(("client-id", "app"),)]
    # Removing the last value removes the entity.
    assert alter(raw, [(entity(client_id="app"), {"producer_byte_rate": None})], version=0) == [(0, None)]
    assert (("client-id", "app"),) not in describe(raw, [], version=0)
    # The broker's lookup follows.
    q = raw.broker.broker.core.image.quotas.quota("alice", "app", "producer_byte_rate")
    assert q.bound == 1024.0


def test_alter_refuses_what_kafka_refuses_entry_by_entry(raw):
    results = alter(raw, [(entity(user="a"), {"producer_byte_rate": 10.5}),
                          (entity(user="b"), {"no_such_key": 1}),
                          ([], {"producer_byte_rate": 1}),
                          (entity(user="c") + entity(user="d"), {"producer_byte_rate": 1}),
                          (entity(user="e"), {"producer_byte_rate": -1}),
                          (entity(user="f"), {"producer_byte_rate": 100})])
    assert [c for c, _ in results] == [INVALID_REQUEST] * 5 + [0]
    assert list(describe(raw, [])) == [(("user", "f"),)]
    assert alter(raw, [(entity(user="g"), {"producer_byte_rate": 1})], validate_only=True) == [(0, None)]
    assert list(describe(raw, [])) == [(("user", "f"),)]


def test_describe_refuses_bad_filters(raw):
    for components in ([("user", 0, None)], [("user", 1, "x")], [("user", 2, None), ("user", 2, None)],
                       [("ip", 2, None), ("user", 2, None)], [("user", 7, None)]):
        r = raw.request("DescribeClientQuotas", 1, {"components": [
            {"entity_type": t, "match_type": m, "match": n} for t, m, n in components], "strict": False})
        assert r["error_code"] == INVALID_REQUEST, components
