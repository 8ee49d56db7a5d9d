"""Client quotas: Kafka's precedence, looked up per quota key, and who shares a quota."""

from __future__ import annotations

import json

import pytest

from odradek.metadata.image import MetadataImage
from odradek.metadata.store import Event, KeyValue
from odradek.security.quotas import (CLIENT_ID, USER, QuotaCache, entity_key, entity_of_key, validate_entity,
                                     validate_value)

P = "producer_byte_rate"
ALL = {
    "u+c": ((USER, "alice"), (CLIENT_ID, "app")),
    "u+dc": ((USER, "alice"), (CLIENT_ID, None)),
    "u": ((USER, "alice"),),
    "du+c": ((USER, None), (CLIENT_ID, "app")),
    "du+dc": ((USER, None), (CLIENT_ID, None)),
    "du": ((USER, None),),
    "c": ((CLIENT_ID, "app"),),
    "dc": ((CLIENT_ID, None),),
}
# Which entity wins, and the (user, client id) that share the quota.
SHARING = {"u+c": ("alice", "app"), "u+dc": ("alice", "app"), "u": ("alice", ""), "du+c": ("alice", "app"),
           "du+dc": ("alice", "app"), "du": ("alice", ""), "c": ("", "app"), "dc": ("", "app")}
ORDER = list(ALL)


def cache_with(names, key=P):
    cache = QuotaCache()
    for i, name in enumerate(names):
        cache.put(entity_key(ALL[name]), json.dumps({key: 1000.0 * (ORDER.index(name) + 1)}))
    return cache


@pytest.mark.parametrize("present", [ORDER[i:] for i in range(len(ORDER))] + [[n] for n in ORDER]
                         + [["dc", "u"], ["c", "du"], ["du+c", "u+dc"], ["c", "dc", "du+dc"]])
def test_precedence(present):
    winner = min(present, key=ORDER.index)
    q = cache_with(present).quota("alice", "app", P)
    assert q.bound == 1000.0 * (ORDER.index(winner) + 1)
    assert q.key == SHARING[winner]


def test_other_names_do_not_match():
    cache = cache_with(["u+c", "u", "c"])
    assert cache.quota("bob", "other", P) is None
    assert cache.quota("bob", "app", P).key == ("", "app")
    assert cache.quota("alice", "other", P).key == ("alice", "")


def test_lookup_is_per_key():
    cache = QuotaCache()
    cache.put(entity_key(ALL["u+c"]), json.dumps({"consumer_byte_rate": 5.0}))
    cache.put(entity_key(ALL["dc"]), json.dumps({P: 7.0}))
    assert cache.quota("alice", "app", P).bound == 7.0
    assert cache.quota("alice", "app", "consumer_byte_rate").bound == 5.0
    assert cache.quota("alice", "app", "request_percentage") is None


def test_keys_round_trip_odd_names():
    for entity in [((USER, "a/b=c"),), ((CLIENT_ID, "<default>"), (USER, None)), ((CLIENT_ID, "x y%"),)]:
        assert entity_of_key(entity_key(entity)) == tuple(sorted(entity))
    assert entity_key(((USER, "<default>"),)) != entity_key(((USER, None),))


def test_validation():
    assert validate_entity([]) is not None
    assert validate_entity([(USER, "a"), (USER, "b")]) is not None
    assert validate_entity([(USER, "a"), ("ip", "1.2.3.4")]) is not None
    assert validate_entity([("group", "g")]) is not None
    assert validate_entity([(USER, None), (CLIENT_ID, "c")]) is None
    assert validate_value({USER}, P, 1024) is None
    assert validate_value({USER}, P, 10.5) is not None
    assert validate_value({USER}, "request_percentage", 10.5) is None
    assert validate_value({USER}, "bogus", 1) is not None
    assert validate_value({USER}, "connection_creation_rate", 1) is not None


def test_image_follows_quota_keys():
    image = MetadataImage()
    key = entity_key(ALL["c"])
    kv = KeyValue(key, json.dumps({P: 100.0}).encode(), 5, 5, 1)
    image.load([kv], 5)
    assert image.quotas.quota("x", "app", P).bound == 100.0
    image.apply([Event("delete", KeyValue(key, b"", 5, 6, 0))])
    assert image.quotas.quota("x", "app", P) is None


def test_sampled_rate_counts_at_least_all_but_one_window():
    from odradek.security.quotas import SampledRate, throttle_ms

    r = SampledRate(11, 1000)
    r.record(1000, 0)
    assert r.window_size_ms(0) == 10_000
    assert r.rate(0) == 100.0
    # 2000 bytes over 10.5 s (10 windows plus the 0.5 s elapsed): 190.5 B/s;
    # at a bound of 100 B/s the client must stay quiet for (190.5 - 100) / 100 of 10.5 s.
    r.record(1000, 500)
    assert throttle_ms(r, 100, 500) == 9500
    assert throttle_ms(r, 200, 500) == 0
    # After all the windows, the old samples no longer count.
    r.record(10, 20_000)
    assert r.rate(20_000) == 1.0
    # Steady 50 B/s for 30 s: the rate reads 50.
    s = SampledRate(11, 1000)
    for t in range(0, 30_000, 100):
        s.record(5, t)
    assert abs(s.rate(29_999) - 50) < 3


def test_client_quotas_share_by_match_and_skip_unlimited():
    from odradek.security.quotas import ClientQuotas

    cache = cache_with(["u"])  # alice: 3000 B/s for all her clients
    q = ClientQuotas(cache)
    assert q.record(P, "bob", "x", 10**9, 0) == 0
    assert q.record(P, "alice", "one", 30_000, 0) == 0
    assert q.record(P, "alice", "two", 3_000, 0) > 0  # the same rate: shared
    assert list(q.rates) == [(P, ("alice", ""))]


def test_timed_counts_only_the_coroutines_own_steps():
    import asyncio
    import time

    from odradek.server.connection import _Timed

    async def handler():
        await asyncio.sleep(0.2)
        t = time.perf_counter()
        while time.perf_counter() - t < 0.05:
            pass
        return "done"

    async def main():
        timed = _Timed(handler())
        assert await timed == "done"
        return timed.ns

    ns = asyncio.run(main())
    assert 0.05e9 <= ns < 0.15e9


def test_timed_passes_exceptions_and_cancellation():
    import asyncio

    from odradek.server.connection import _Timed

    async def fails():
        await asyncio.sleep(0)
        raise KeyError("x")

    async def main():
        with pytest.raises(KeyError):
            await _Timed(fails())
        async def waits():
            return await _Timed(asyncio.sleep(10))

        task = asyncio.ensure_future(waits())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_request_percentage_throttle_is_bounded_at_one_window():
    from odradek.security.quotas import ClientQuotas

    cache = QuotaCache()
    cache.put(entity_key(ALL["c"]), json.dumps({"request_percentage": 1.0}))
    q = ClientQuotas(cache)
    assert q.request_quotas
    assert q.record_request_time("u", "app", 10**9, 0) == 1000  # a whole second of one thread: 10% > 1%
    assert q.record_request_time("u", "other", 10**9, 0) == 0
    assert q.throttles == {"request_percentage": [1, 1000]}


def test_quota_settings_checked_at_start():
    from odradek.security.config import SecurityConfigError, security_config

    security_config({"quota.window.num": "11", "quota.window.size.seconds": "1"}, [])
    for props in ({"client.quota.callback.class": "com.example.Quotas"}, {"quota.window.num": "0"},
                  {"quota.window.size.seconds": "x"}):
        with pytest.raises(SecurityConfigError):
            security_config(props, [])


def test_alter_reads_again_when_the_store_changed_meanwhile():
    import asyncio
    from types import SimpleNamespace

    from odradek.apis.quotas import alter_client_quotas
    from odradek.metadata.store import TxnResult

    key = entity_key(ALL["u"])

    class Store:
        def __init__(self):
            self.values = {}
            self.rev = 1
            self.txns = []

        async def get(self, k):
            v = self.values.get(k)
            return None if v is None else KeyValue(k, v[0], 1, v[1], 1)

        async def txn(self, compares, ops):
            self.txns.append((compares, ops))
            if len(self.txns) == 1:  # another broker wrote consumer_byte_rate first
                self.rev += 1
                self.values[key] = (json.dumps({"consumer_byte_rate": 5.0}).encode(), self.rev)
                return TxnResult(False, self.rev)
            assert all(c.operand == self.values.get(c.key, (None, 0))[1] for c in compares)
            for op in ops:
                self.rev += 1
                self.values[op.key] = (op.value, self.rev)
            return TxnResult(True, self.rev)

    async def wait_for(revision):
        return None

    store = Store()
    ctx = SimpleNamespace(broker=SimpleNamespace(metadata=store, image=SimpleNamespace(wait_for=wait_for)))
    request = {"validate_only": False, "entries": [{"entity": [{"entity_type": "user", "entity_name": "alice"}],
                                                    "ops": [{"key": P, "value": 7.0, "remove": False}]}]}
    response = asyncio.run(alter_client_quotas(ctx, request))
    assert response["entries"][0]["error_code"] == 0
    assert len(store.txns) == 2
    assert json.loads(store.values[key][0]) == {"consumer_byte_rate": 5.0, P: 7.0}


def test_a_throttled_value_can_be_taken_back_and_the_window_allowance():
    """A throttled Fetch is answered empty: its bytes are not counted. A Fetch
    asks for no more than the quota over all windows but one."""
    from odradek.security.quotas import ClientQuotas

    q = ClientQuotas(cache_with(["u"]))  # alice: 3000 B/s
    assert q.window_allowance(P, "alice", "x") == 3000 * 10 and q.window_allowance(P, "bob", "x") is None
    assert q.record(P, "alice", "x", 25_000, 0, keep_if_throttled=False) == 0
    assert q.record(P, "alice", "x", 25_000, 0, keep_if_throttled=False) > 0  # not kept
    assert q.record(P, "alice", "x", 5_000, 0) == 0  # 30 kB in 10 s: at the bound


def test_controller_mutation_token_bucket_strict_and_permissive():
    """KIP-599: the bucket starts full (samples x window x quota), refills at
    the quota; strict refuses once it is below zero, and everything after in
    the same request; permissive takes it and tells the throttle."""
    from odradek.security.quotas import CONTROLLER_MUTATION_RATE, ClientQuotas

    cache = QuotaCache()
    cache.put(entity_key(ALL["c"]), json.dumps({CONTROLLER_MUTATION_RATE: 2.0}))
    q = ClientQuotas(cache, samples=2)
    now = [0]
    strict = q.mutation("u", "app", True, lambda: now[0])
    assert [strict.admit(3), strict.admit(3), strict.admit(1)] == [None, None, "The throttling quota has been exceeded."]
    assert strict.throttle_ms == 1000 and strict.admit(0) is not None  # 4 -> 1 -> -2: a second at 2/s
    assert q.mutation("u", "other", True, lambda: 0) is None  # no quota for that client id
    now[0] = 1000
    permissive = q.mutation("u", "app", False, lambda: now[0])
    assert permissive.admit(5) is None and permissive.throttle_ms == 2500  # 0 -> -5
    assert q.throttles[CONTROLLER_MUTATION_RATE] == [2, 3500]


def test_ip_connection_creation_rate_own_entity_then_default():
    from odradek.security.quotas import CONNECTION_CREATION_RATE, IP, ClientQuotas, ip_quota

    cache = QuotaCache()
    cache.put(entity_key(((IP, None),)), json.dumps({CONNECTION_CREATION_RATE: 2}))
    cache.put(entity_key(((IP, "10.0.0.1"),)), json.dumps({CONNECTION_CREATION_RATE: 50}))
    assert ip_quota(cache, "10.0.0.1") == 50 and ip_quota(cache, "10.0.0.2") == 2
    q = ClientQuotas(cache, samples=2)
    assert [q.record_connection("10.0.0.2", 0) for _ in range(3)] == [0, 0, 500]
    assert q.record_connection("10.0.0.2", 0) == 500  # the refused one was not counted
    assert q.record_connection("10.0.0.3", 0) == 0  # each ip its own rate


def test_the_broker_wide_connection_rate_is_noted_at_start():
    from odradek.config import BrokerConfig

    notes = BrokerConfig(props={"max.connections.per.ip": "5", "max.connection.creation.rate": "3"}).security().notes
    assert not any(n.startswith("max.connections.per.ip") for n in notes)  # served: odradek.server.listeners
    assert any(n.startswith("max.connection.creation.rate has no effect") for n in notes)
