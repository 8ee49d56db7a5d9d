"""Replication between brokers on one etcd prefix, with Kafka's protocol:
followers fetch from their leader, the leader moves the high watermark over
the ISR, acks=all waits for it, a lagging follower leaves the ISR and comes
back once caught up, and a former leader truncates the tail its successor
never had (KIP-320's diverging epoch). Leaders are changed here by writing
the partition state as a controller would, so the data path is tested on its
own. Skipped, saying why, without etcd 3.5.3+ or etcd3aio."""

from __future__ import annotations

import time
import uuid

import pytest

from odradek.embedded import EmbeddedBroker
from odradek.metadata.store import Compare
from odradek.metadata.topics import PartitionState, TopicState, create_topic_txn, update_partition_txn
from tests.integration.oidc import idp  # noqa: F401  (a fixture)
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


def start_brokers(etcd, tmp_path, name, n=3, **extra):
    config = {"metadata.store": etcd.url(name), "broker.session.timeout.ms": "3000",
              "replica.lag.time.max.ms": "1500", "replica.fetch.wait.max.ms": "200",
              "replica.fetch.backoff.ms": "100", **extra}
    brokers = [EmbeddedBroker(data_dir=str(tmp_path / f"b{i}"), node_id=i, config=config).start()
               for i in range(1, n + 1)]
    wait_until(lambda: all(len(b.core.image.brokers) == n for b in brokers), what=f"{n} registrations")
    return brokers


def create_replicated(broker, name, placements, configs=None):
    """Create topic ``name`` with one partition per (leader, replicas), all in the ISR."""
    state = TopicState(name, uuid.uuid4().bytes, configs or {},
                       [PartitionState(replicas[0], 0, list(replicas), list(replicas)) for replicas in placements])

    async def create():
        done = await broker.core.metadata.txn(*create_topic_txn(state))
        assert done.succeeded
        return done.revision

    return broker.call(create)


def write_state(broker, name, index, change):
    """Rewrite a partition's state as a controller would (compared with its revision)."""
    async def write():
        s = broker.core.image.get(name).partitions[index]
        new = PartitionState(s.leader, s.leader_epoch, list(s.replicas), list(s.isr))
        change(new)
        done = await broker.core.metadata.txn(*update_partition_txn(
            name, index, new, s.revision, Compare("topics/" + name, "version", ">", 0)))
        assert done.succeeded
        return done.revision

    return broker.call(write)


def hosted(broker, name, index):
    t = broker.core.replicas.topic(name)
    return t.by_index.get(index) if t is not None else None


def offsets(broker, name, index):
    p = hosted(broker, name, index)
    return None if p is None else (p.log_end_offset, p.high_watermark)


def log_bytes(broker, name, index):
    p = hosted(broker, name, index)
    return b"".join(bytes(c) for c in p.log.read(p.log_start_offset, 1 << 30, p.log_end_offset).chunks)


def produce(bootstrap, topic, values, partition=0, acks="all", **conf):
    """Produce ``values``; ``conf`` keys are librdkafka's with "_" for "."."""
    from confluent_kafka import Producer

    results = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
                         **{k.replace("_", "."): v for k, v in conf.items()}})
    for v in values:
        producer.produce(topic, v, partition=partition,
                         on_delivery=lambda err, msg: results.append((err, msg.offset())))
    assert producer.flush(60) == 0
    return results


def test_followers_copy_the_leader_and_acks_all_waits_for_the_isr(etcd, tmp_path):
    brokers = start_brokers(etcd, tmp_path, "copy")
    try:
        create_replicated(brokers[0], "r", [(1, 2, 3), (2, 3, 1), (3, 1, 2)], {"min.insync.replicas": "2"})
        for b in brokers:
            wait_until(lambda: all(hosted(b, "r", i) is not None for i in range(3)), what="hosting")
        for i in range(3):
            results = produce(brokers[0].bootstrap, "r", [b"v%d-%d" % (i, n) for n in range(200)], partition=i,
                              enable_idempotence=True)
            assert all(err is None for err, _ in results) and len(results) == 200
            # acks=all answered only once the high watermark covered the records.
            leader = brokers[i]
            assert offsets(leader, "r", i) == (200, 200)
            for b in brokers:
                wait_until(lambda: offsets(b, "r", i) == (200, 200), what=f"broker {b.core.config.node_id} "
                                                                          f"to copy partition {i}")
                assert log_bytes(b, "r", i) == log_bytes(leader, "r", i)
        # Idempotent producers' state is copied too: the follower knows their sequences.
        p0 = hosted(brokers[1], "r", 0)
        assert p0.producers.producers, "the follower rebuilt no producer state"
    finally:
        for b in brokers:
            b.stop()


def test_followers_fetch_in_sessions_naming_only_what_moved(etcd, tmp_path):
    """Each follower keeps one fetch session (KIP-227) with its leader: after
    the first full fetch, a round names only the partitions that moved, so a
    write to one partition of forty does not cost a request of all forty."""
    brokers = start_brokers(etcd, tmp_path, "sessions")
    try:
        create_replicated(brokers[0], "s", [(1, 2, 3)] * 40)
        for b in brokers:
            wait_until(lambda: all(hosted(b, "s", i) is not None for i in range(40)), what="hosting")
        leader = brokers[0].core
        wait_until(lambda: leader.fetch_sessions.metrics()["NumIncrementalFetchPartitionsCached"] == 80,
                   what="a session of 40 partitions for each follower")
        before = dict(leader.fetch_sessions.counts)
        for n in range(5):
            results = produce(brokers[0].bootstrap, "s", [b"v%d" % n], partition=n)
            assert [err for err, _ in results] == [None]
        assert offsets(brokers[0], "s", 4) == (1, 1)
        after = leader.fetch_sessions.counts
        assert after["incremental"] - before["incremental"] >= 10  # each follower, each write
        assert after["full"] == before["full"] and after["sessionless"] == before["sessionless"]
        assert leader.fetch_sessions.metrics()["NumIncrementalFetchSessions"] == 2
    finally:
        for b in brokers:
            b.stop()


def test_a_lagging_follower_leaves_the_isr_and_comes_back(etcd, tmp_path):
    brokers = start_brokers(etcd, tmp_path, "lag")
    try:
        create_replicated(brokers[0], "lag", [(1, 2, 3)], {"min.insync.replicas": "2"})
        wait_until(lambda: all(hosted(b, "lag", 0) is not None for b in brokers), what="hosting")
        assert all(err is None for err, _ in produce(brokers[0].bootstrap, "lag", [b"a"] * 10))

        # Broker 3 stops fetching (as if paused): the leader drops it from the ISR
        # after replica.lag.time.max.ms, and acks=all goes on with two.
        brokers[2].call(lambda: _async(brokers[2].core.fetchers.follow, [], [hosted(brokers[2], "lag", 0)]))
        wait_until(lambda: brokers[0].core.image.get("lag").partitions[0].isr == [1, 2], timeout=10,
                   what="the ISR to shrink to [1, 2]")
        assert all(err is None for err, _ in produce(brokers[0].bootstrap, "lag", [b"b"] * 10))
        assert offsets(brokers[2], "lag", 0)[0] == 10

        # Broker 2 too: the ISR is [1], below min.insync.replicas=2, so acks=all is refused.
        brokers[1].call(lambda: _async(brokers[1].core.fetchers.follow, [], [hosted(brokers[1], "lag", 0)]))
        wait_until(lambda: brokers[0].core.image.get("lag").partitions[0].isr == [1], timeout=10,
                   what="the ISR to shrink to [1]")
        refused = produce(brokers[0].bootstrap, "lag", [b"c"], retries=0, message_timeout_ms=3000)
        assert refused[0][0] is not None and "NOT_ENOUGH_REPLICAS" in refused[0][0].name()
        ok = produce(brokers[0].bootstrap, "lag", [b"d"] * 5, acks="1")
        assert all(err is None for err, _ in ok)

        # Both fetch again: they catch up and are back in the ISR.
        for b in brokers[1:]:
            b.call(lambda b=b: _async(b.core.fetchers.follow, [hosted(b, "lag", 0)], []))
        wait_until(lambda: brokers[0].core.image.get("lag").partitions[0].isr == [1, 2, 3], timeout=10,
                   what="the ISR to grow back to [1, 2, 3]")
        for b in brokers:
            wait_until(lambda: offsets(b, "lag", 0) == (25, 25), what="every replica to catch up")
            assert log_bytes(b, "lag", 0) == log_bytes(brokers[0], "lag", 0)

        # The leader counted its ISR changes (Kafka's IsrShrinksPerSec, IsrExpandsPerSec),
        # and exactly one broker says it is the controller.
        scraped = [scrape_metrics(b) for b in brokers]
        assert scraped[0]["odradek_isr_shrinks_total"] == 2
        assert scraped[0]["odradek_isr_expands_total"] in (1, 2)  # both back at once, or one by one
        assert [s["odradek_controller_active"] for s in scraped].count(1) == 1
    finally:
        for b in brokers:
            b.stop()


def test_a_former_leader_truncates_what_its_successor_never_had(etcd, tmp_path):
    brokers = start_brokers(etcd, tmp_path, "diverge")
    try:
        create_replicated(brokers[0], "d", [(1, 2, 3)])
        wait_until(lambda: all(hosted(b, "d", 0) is not None for b in brokers), what="hosting")
        assert all(err is None for err, _ in produce(brokers[0].bootstrap, "d", [b"x%d" % i for i in range(20)]))
        for b in brokers:
            wait_until(lambda: offsets(b, "d", 0) == (20, 20), what="replication")
        # The followers stop fetching; the leader takes 5 records with acks=1 that nobody copies.
        for b in brokers[1:]:
            b.call(lambda b=b: _async(b.core.fetchers.follow, [], [hosted(b, "d", 0)]))
        assert all(err is None for err, _ in produce(brokers[0].bootstrap, "d", [b"lost"] * 5, acks="1"))
        assert offsets(brokers[0], "d", 0)[0] == 25
        # A controller makes broker 2 leader at epoch 1 (1 stays a replica).
        write_state(brokers[0], "d", 0, lambda s: (setattr(s, "leader", 2), setattr(s, "leader_epoch", 1),
                                                   setattr(s, "isr", [2, 3])))
        wait_until(lambda: hosted(brokers[1], "d", 0).is_leader, what="broker 2 to lead")
        brokers[2].call(lambda: _async(brokers[2].core.fetchers.follow, [hosted(brokers[2], "d", 0)], []))
        results = produce(brokers[1].bootstrap, "d", [b"y%d" % i for i in range(7)])
        assert all(err is None for err, _ in results)
        assert [o for _, o in results] == list(range(20, 27))
        # Broker 1 follows 2: its 5 unreplicated records go, 2's come, all logs agree.
        for b in brokers:
            wait_until(lambda: offsets(b, "d", 0) == (27, 27), what=f"broker {b.core.config.node_id} to agree")
        assert log_bytes(brokers[0], "d", 0) == log_bytes(brokers[1], "d", 0) == log_bytes(brokers[2], "d", 0)
        assert b"lost" not in log_bytes(brokers[0], "d", 0)
        assert hosted(brokers[0], "d", 0).log.leader_epochs() == [(0, 0), (1, 20)]
        # Broker 1 caught up, so it is back in the ISR.
        wait_until(lambda: brokers[1].core.image.get("d").partitions[0].isr == [2, 3, 1] or
                   sorted(brokers[1].core.image.get("d").partitions[0].isr) == [1, 2, 3],
                   what="broker 1 back in the ISR")
    finally:
        for b in brokers:
            b.stop()


async def _async(fn, *args):
    return fn(*args)


def scrape_metrics(b) -> dict[str, float]:
    """A broker's unlabelled series, rendered on its loop and parsed as Prometheus does."""
    from prometheus_client.parser import text_string_to_metric_families

    from odradek.metrics import render

    text = b.call(lambda: _async(render, b.core)).decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def test_a_follower_names_the_leader_and_a_new_leader_withholds_offsets(etcd, tmp_path):
    """KIP-951: Produce and Fetch to a follower get NOT_LEADER_OR_FOLLOWER with
    the leader and its endpoint. A new leader answers ListOffsets latest once
    its followers have fetched in its epoch (OFFSET_NOT_AVAILABLE before
    that: tests/unit/test_partition_roles.py)."""
    from odradek.protocol import errors
    from odradek.protocol.records import build_batch
    from tests.integration.rawclient import RawClient

    brokers = start_brokers(etcd, tmp_path, "hints")
    try:
        create_replicated(brokers[0], "h", [(1, 2, 3)])
        wait_until(lambda: all(hosted(b, "h", 0) is not None for b in brokers), what="hosting")
        assert all(err is None for err, _ in produce(brokers[0].bootstrap, "h", [b"a"] * 3))
        client = RawClient(brokers[1].bootstrap)
        batch = bytes(build_batch([(None, b"x", (), 1000)]))
        r = client.request("Produce", 11, {"acks": -1, "timeout_ms": 5000, "topic_data": [
            {"name": "h", "partition_data": [{"index": 0, "records": batch}]}]})
        entry = r["responses"][0]["partition_responses"][0]
        assert entry["error_code"] == errors.NOT_LEADER_OR_FOLLOWER
        assert entry["current_leader"] == {"leader_id": 1, "leader_epoch": 0}
        assert [(n["node_id"], n["port"]) for n in r["node_endpoints"]] == [(1, brokers[0].port)]
        topic_id = brokers[0].core.image.get("h").topic_id
        r = client.request("Fetch", 16, {"max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20,
                                         "session_epoch": -1, "topics": [
            {"topic_id": topic_id, "partitions": [{"partition": 0, "fetch_offset": 0,
                                                   "partition_max_bytes": 1 << 20}]}]})
        entry = r["responses"][0]["partitions"][0]
        assert entry["error_code"] == errors.NOT_LEADER_OR_FOLLOWER
        assert entry["current_leader"] == {"leader_id": 1, "leader_epoch": 0}
        assert [n["node_id"] for n in r["node_endpoints"]] == [1]
        client.close()

        # Followers stop; broker 2 is made leader.
        for b in brokers:
            b.call(lambda b=b: _async(b.core.fetchers.follow, [], [hosted(b, "h", 0)]))
        assert all(err is None for err, _ in produce(brokers[0].bootstrap, "h", [b"b"] * 2, acks="1"))
        write_state(brokers[0], "h", 0, lambda s: (setattr(s, "leader", 2), setattr(s, "leader_epoch", 1)))
        wait_until(lambda: hosted(brokers[1], "h", 0).is_leader, what="broker 2 to lead")
        client = RawClient(brokers[1].bootstrap)

        def latest():
            r = client.request("ListOffsets", 7, {"replica_id": -1, "isolation_level": 0, "topics": [
                {"name": "h", "partitions": [{"partition_index": 0, "current_leader_epoch": 1, "timestamp": -1}]}]})
            return r["topics"][0]["partitions"][0]

        assert latest()["error_code"] in (0, errors.OFFSET_NOT_AVAILABLE)
        # Once the followers fetch in epoch 1, it is answered.
        for b in (brokers[0], brokers[2]):
            b.call(lambda b=b: _async(b.core.fetchers.follow, [hosted(b, "h", 0)], []))
        wait_until(lambda: latest()["error_code"] == 0, what="the new leader's high watermark")
        assert latest()["offset"] == 3
        client.close()
    finally:
        for b in brokers:
            b.stop()


def test_replication_over_sasl_ssl_with_acls(etcd, tmp_path):
    """Brokers whose only listener is SASL_SSL (PLAIN) with ACLs on: each logs
    in to its leader as the broker user of its JAAS line (a super user, so
    its replica fetches have CLUSTER_ACTION) over TLS checked against the
    truststore, and replication works as on PLAINTEXT."""
    from confluent_kafka import Producer

    from tests.integration.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    pki.server = pki.issue("server", "CN=localhost,O=odradek", server=True)
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" '
            'password="broker-secret" user_broker="broker-secret" user_alice="alice-secret";')
    secured = {"listeners": "SASL_SSL://127.0.0.1:0", "sasl.enabled.mechanisms": "PLAIN",
               "sasl.mechanism.inter.broker.protocol": "PLAIN",
               "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
               "ssl.keystore.type": "PEM", "ssl.keystore.location": pki.server["pem"],
               "ssl.truststore.type": "PEM", "ssl.truststore.location": pki.ca_file,
               "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
               "super.users": "User:broker;User:alice"}
    brokers = start_brokers(etcd, tmp_path, "sasl-ssl", **secured)
    try:
        create_replicated(brokers[0], "s", [(1, 2, 3)], {"min.insync.replicas": "3"})
        wait_until(lambda: all(hosted(b, "s", 0) is not None for b in brokers), what="hosting")
        address = "127.0.0.1:%d" % brokers[0].core.endpoints["SASL_SSL"][1]
        acked = []
        producer = Producer({"bootstrap.servers": address, "security.protocol": "SASL_SSL",
                             "sasl.mechanisms": "PLAIN", "sasl.username": "alice", "sasl.password": "alice-secret",
                             "ssl.ca.location": pki.ca_file, "acks": "all", "enable.idempotence": True})
        for i in range(50):
            producer.produce("s", b"v%d" % i, partition=0, on_delivery=lambda err, msg: acked.append(err))
        assert producer.flush(60) == 0
        assert acked == [None] * 50  # min.insync.replicas=3: every replica had them
        for b in brokers:
            wait_until(lambda: offsets(b, "s", 0) == (50, 50), what="replication over SASL_SSL")
            assert log_bytes(b, "s", 0) == log_bytes(brokers[0], "s", 0)
    finally:
        for b in brokers:
            b.stop()


def test_replication_and_transactions_with_an_oauthbearer_inter_broker_login(etcd, tmp_path):
    """sasl.mechanism.inter.broker.protocol=OAUTHBEARER: each broker logs in to
    the others with Kafka's unsecured login (unsecuredLoginStringClaim_sub=
    "broker", 4-second tokens, an extension) under ACLs with
    super.users=User:broker. Followers replicate acks=all writes, a
    transaction's markers reach the leaders on other brokers, and with
    connections.max.reauth.ms=3000 the followers' connections re-authenticate
    (KIP-368) with renewed tokens instead of being cut off."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    jaas = ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
            'unsecuredLoginStringClaim_sub="broker" unsecuredLoginLifetimeSeconds="4" '
            'unsecuredLoginExtension_traceId="ib-1";')
    secured = {"listeners": "INTERNAL://127.0.0.1:0", "listener.security.protocol.map": "INTERNAL:SASL_PLAINTEXT",
               "inter.broker.listener.name": "INTERNAL", "sasl.enabled.mechanisms": "OAUTHBEARER",
               "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
               "listener.name.internal.oauthbearer.sasl.jaas.config": jaas,
               "listener.name.internal.connections.max.reauth.ms": "3000",
               "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
               "super.users": "User:broker;User:alice", "transaction.state.log.num.partitions": "2"}
    brokers = start_brokers(etcd, tmp_path, "oauth-ib", **secured)
    client = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "OAUTHBEARER",
              "enable.sasl.oauthbearer.unsecure.jwt": True, "sasl.oauthbearer.config": "principal=alice"}
    try:
        create_replicated(brokers[0], "o", [(1, 2, 3), (2, 3, 1)], {"min.insync.replicas": "3"})
        wait_until(lambda: all(hosted(b, "o", i) is not None for b in brokers for i in (0, 1)), what="hosting")
        address = "127.0.0.1:%d" % brokers[0].core.endpoints["INTERNAL"][1]
        acked = produce(address, "o", [b"v%d" % i for i in range(20)], partition=1, **{
            k.replace(".", "_"): v for k, v in client.items()})
        assert [e for e, _ in acked] == [None] * 20  # min.insync.replicas=3: both followers had them
        leader = brokers[0]  # leads partition 0: its followers' connections, logged in as User:broker
        peers = [c for c in leader.core.connections if str(c.principal) == "User:broker"]
        assert len(peers) >= 2, peers
        p = Producer({"bootstrap.servers": address, "transactional.id": "oauth-txn", **client})
        p.init_transactions(60)
        p.begin_transaction()
        for i in range(2):
            p.produce("o", b"t%d" % i, partition=i)
        p.commit_transaction(60)  # its markers go to both leaders, one on another broker than the coordinator
        time.sleep(4)  # past connections.max.reauth.ms and the first token's refresh
        acked = produce(address, "o", [b"late"], partition=0, **{k.replace(".", "_"): v for k, v in client.items()})
        assert acked == [(None, 20)] or acked[0][0] is None, acked
        assert all(not c.closed for c in peers)  # the same connections, logged in again, still serve
        c = Consumer({"bootstrap.servers": address, "group.id": "oauth-check", "isolation.level": "read_committed",
                      "enable.auto.commit": False, **client})
        c.assign([TopicPartition("o", i, OFFSET_BEGINNING) for i in (0, 1)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 23 and time.monotonic() < deadline:
            got.extend(m.value() for m in c.consume(num_messages=100, timeout=0.5) if not m.error())
        c.close()
        assert sorted(got) == sorted([b"v%d" % i for i in range(20)] + [b"t0", b"t1", b"late"])
        for i in (0, 1):
            first = next(b for b in brokers if b.core.config.node_id == (1, 2)[i])
            for b in brokers:
                wait_until(lambda: offsets(b, "o", i) == offsets(first, "o", i), what="replication")
                assert log_bytes(b, "o", i) == log_bytes(first, "o", i)
    finally:
        for b in brokers:
            b.stop()


def test_replication_with_an_oidc_client_credentials_inter_broker_login(etcd, tmp_path, idp):
    """Kafka's OAuthBearerLoginCallbackHandler as the brokers' own login:
    each broker asks the token endpoint for a token with its client id and
    secret (HTTP Basic, grant_type=client_credentials, its scope), the others
    verify it against the key set (Kafka's JWKS validator), and as the
    4-second tokens near their end the broker asks for new ones and its
    connections to leaders re-authenticate with them."""
    secured = {"listeners": "INTERNAL://127.0.0.1:0", "listener.security.protocol.map": "INTERNAL:SASL_PLAINTEXT",
               "inter.broker.listener.name": "INTERNAL", "sasl.enabled.mechanisms": "OAUTHBEARER",
               "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
               "listener.name.internal.oauthbearer.sasl.jaas.config":
                   "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
                   'clientId="broker" clientSecret="broker-secret" scope="kafka";',
               "listener.name.internal.oauthbearer.sasl.server.callback.handler.class":
                   "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
               "listener.name.internal.oauthbearer.sasl.login.callback.handler.class":
                   "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
               "sasl.oauthbearer.jwks.endpoint.url": idp["jwks"], "sasl.oauthbearer.expected.audience": "kafka",
               "sasl.oauthbearer.allow.unverified.issuer": "true",  # Kafka 4.4 refuses an unchecked issuer otherwise
               "sasl.oauthbearer.token.endpoint.url": idp["token"], "sasl.oauthbearer.clock.skew.seconds": "0",
               "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
               "super.users": "User:broker;User:alice"}
    brokers = start_brokers(etcd, tmp_path, "oidc-ib", **secured)
    try:
        create_replicated(brokers[0], "d", [(1, 2, 3)], {"min.insync.replicas": "3"})
        wait_until(lambda: all(hosted(b, "d", 0) is not None for b in brokers), what="hosting")
        address = "127.0.0.1:%d" % brokers[0].core.endpoints["INTERNAL"][1]
        from confluent_kafka import Producer

        def send(values):
            acked = []
            p = Producer({"bootstrap.servers": address, "acks": "all", "security.protocol": "SASL_PLAINTEXT",
                          "sasl.mechanisms": "OAUTHBEARER",
                          "oauth_cb": lambda _c: (idp["sign"]("alice", 600), time.time() + 600, "alice")})
            for v in values:
                p.produce("d", v, partition=0, on_delivery=lambda err, msg: acked.append(err))
            assert p.flush(60) == 0
            return acked

        assert send([b"a%d" % i for i in range(10)]) == [None] * 10
        assert idp["asked"] and all(a == ("broker:broker-secret", {"grant_type": ["client_credentials"],
                                                                   "scope": ["kafka"]},
                                          "application/x-www-form-urlencoded") for a in idp["asked"])
        first = len(idp["asked"])
        peers = [c for c in brokers[0].core.connections if str(c.principal) == "User:broker"]
        assert len(peers) == 2, peers
        time.sleep(5)  # past the first tokens' lives
        assert send([b"b"]) == [None]
        assert len(idp["asked"]) > first  # new tokens were asked for
        assert all(not c.closed for c in peers)  # and the same connections logged in again with them
        for b in brokers:
            wait_until(lambda: offsets(b, "d", 0) == (11, 11), what="replication")
    finally:
        for b in brokers:
            b.stop()


def test_replication_with_a_jwt_bearer_inter_broker_login_retried(etcd, tmp_path, idp):
    """Kafka 4.1's JwtBearerJwtRetriever as the brokers' own login: each broker
    signs an assertion with its private key file (RS256; aud, iss and sub from
    the sasl.oauthbearer.assertion.* keys) and trades it for a token by the
    jwt-bearer grant. The token endpoint is unavailable (HTTP 503) for the
    first two requests: they are tried again after sasl.login.retry.backoff.ms."""
    from cryptography.hazmat.primitives import serialization

    key_file = tmp_path / "broker-key.pem"
    key_file.write_bytes(idp["state"]["trusted"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    idp["state"]["unavailable"] = 2
    secured = {"listeners": "INTERNAL://127.0.0.1:0", "listener.security.protocol.map": "INTERNAL:SASL_PLAINTEXT",
               "inter.broker.listener.name": "INTERNAL", "sasl.enabled.mechanisms": "OAUTHBEARER",
               "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
               "listener.name.internal.oauthbearer.sasl.jaas.config":
                   "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;",
               "listener.name.internal.oauthbearer.sasl.server.callback.handler.class":
                   "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
               "listener.name.internal.oauthbearer.sasl.login.callback.handler.class":
                   "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
               "sasl.oauthbearer.jwt.retriever.class":
                   "org.apache.kafka.common.security.oauthbearer.JwtBearerJwtRetriever",
               "sasl.oauthbearer.assertion.private.key.file": str(key_file),
               "sasl.oauthbearer.assertion.claim.aud": idp["token"], "sasl.oauthbearer.assertion.claim.iss": "broker",
               "sasl.oauthbearer.assertion.claim.sub": "broker", "sasl.oauthbearer.scope": "kafka",
               "sasl.login.retry.backoff.ms": "50", "sasl.login.retry.backoff.max.ms": "5000",
               "sasl.oauthbearer.jwks.endpoint.url": idp["jwks"], "sasl.oauthbearer.expected.audience": "kafka",
               "sasl.oauthbearer.allow.unverified.issuer": "true",
               "sasl.oauthbearer.token.endpoint.url": idp["token"], "sasl.oauthbearer.clock.skew.seconds": "0"}
    brokers = start_brokers(etcd, tmp_path, "jwt-bearer-ib", n=2, **secured)
    try:
        create_replicated(brokers[0], "j", [(1, 2)], {"min.insync.replicas": "2"})
        wait_until(lambda: all(hosted(b, "j", 0) is not None for b in brokers), what="hosting")
        wait_until(lambda: any(str(c.principal) == "User:broker" for c in brokers[0].core.connections),
                   what="the follower's login")
        assert len(idp["asked"]) >= 3 and idp["state"]["unavailable"] == 0  # two refused with 503, then tried again
        assert all(user is None and form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
                   and form["scope"] == ["kafka"] for user, form, _type in idp["asked"])
        from confluent_kafka import Producer

        address = "127.0.0.1:%d" % brokers[0].core.endpoints["INTERNAL"][1]
        acked = []
        p = Producer({"bootstrap.servers": address, "acks": "all", "security.protocol": "SASL_PLAINTEXT",
                      "sasl.mechanisms": "OAUTHBEARER",
                      "oauth_cb": lambda _c: (idp["sign"]("broker", 600), time.time() + 600, "broker")})
        for i in range(5):
            p.produce("j", b"v%d" % i, partition=0, on_delivery=lambda err, msg: acked.append(err))
        assert p.flush(60) == 0 and acked == [None] * 5
        wait_until(lambda: offsets(brokers[1], "j", 0) == (5, 5), what="replication")
    finally:
        for b in brokers:
            b.stop()


def test_a_cluster_broker_without_a_login_of_its_own_is_refused(etcd, tmp_path):
    from tests.integration import test_acls as T

    config = dict(T.broker_config(), **{
        "metadata.store": etcd.url("no-login"), "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": T.JAAS.replace(
            'username="admin" password="admin-secret" ', "")})
    with pytest.raises(Exception) as refused:
        EmbeddedBroker(data_dir=str(tmp_path / "b1"), node_id=1, config=config).start(timeout=30)
    assert "has no username and password for this broker's own login" in str(refused.value)


def test_leadership_moves_under_load_without_loss_or_duplicates(etcd, tmp_path):
    """An idempotent acks=all producer and a consumer run while each
    partition's leadership moves to another ISR member, three times, as a
    controller moves it: nothing acknowledged is lost, nothing is stored
    twice, every (partition, offset) has one value."""
    from tests.integration.workload import Workload

    brokers = start_brokers(etcd, tmp_path, "moves")
    bootstrap = ",".join(b.bootstrap for b in brokers)
    try:
        create_replicated(brokers[0], "m", [(1, 2, 3), (2, 3, 1), (3, 1, 2)], {"min.insync.replicas": "2"})
        wait_until(lambda: all(hosted(b, "m", i) is not None for b in brokers for i in range(3)), what="hosting")
        work = Workload(bootstrap, "m", 3).start()
        work.wait_acked(100)
        for round_ in range(3):
            for i in range(3):
                def move(s):
                    s.leader = next(r for r in s.replicas[s.replicas.index(s.leader) + 1:] + s.replicas
                                    if r in s.isr and r != s.leader)
                    s.leader_epoch += 1
                write_state(brokers[0], "m", i, move)
            work.wait_acked(100, timeout=30)
        work.stop()
        assert not [f for f in work.failed if f[1] != "_MSG_TIMED_OUT"], work.failed[:5]
        work.final_read()
        assert work.check() == []
        assert len(work.acked) >= 400
        assert {e for _, _, e, _ in work.leaders} >= {0, 3}, "the sampler saw no moves"
    finally:
        for b in brokers:
            b.stop()


def test_replication_with_a_scram_login_created_after_start(etcd, tmp_path):
    """The inter-broker listener wants SCRAM-SHA-256; the brokers' user is
    created (through the other listener) only after they started: their
    logins fail until then, and replication begins once it exists."""
    from confluent_kafka.admin import AdminClient, UserScramCredentialUpsertion, ScramCredentialInfo, ScramMechanism

    jaas = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="b-pw";'
    config = {"listeners": "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
              "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_PLAINTEXT",
              "inter.broker.listener.name": "INTERNAL", "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256",
              "listener.name.internal.sasl.enabled.mechanisms": "SCRAM-SHA-256",
              "listener.name.internal.scram-sha-256.sasl.jaas.config": jaas}
    brokers = start_brokers(etcd, tmp_path, "scram", n=2, **config)
    try:
        create_replicated(brokers[0], "sc", [(1, 2)])
        wait_until(lambda: all(hosted(b, "sc", 0) is not None for b in brokers), what="hosting")
        bootstrap = "127.0.0.1:%d" % brokers[0].core.endpoints["PLAINTEXT"][1]
        assert all(err is None for err, _ in produce(bootstrap, "sc", [b"early"] * 5, acks="1"))
        time.sleep(0.5)
        assert offsets(brokers[1], "sc", 0)[0] == 0  # broker 2 cannot log in yet
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            "broker", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"b-pw")])["broker"].result(30)
        wait_until(lambda: offsets(brokers[1], "sc", 0) == (5, 5), what="replication once the login exists")
        assert log_bytes(brokers[1], "sc", 0) == log_bytes(brokers[0], "sc", 0)
    finally:
        for b in brokers:
            b.stop()
