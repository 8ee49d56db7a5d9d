"""Client quotas over the wire: AlterClientQuotas and DescribeClientQuotas
(raw client), and enforcement with real clients."""

from __future__ import annotations

import os
import time

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


def produce(raw, topic, nbytes):
    from odradek.protocol.records import build_batch

    batch = build_batch([(None, os.urandom(10_000), [], 1000) for _ in range(nbytes // 10_000)])
    return raw.request("Produce", 9, {"acks": 1, "timeout_ms": 5000, "topic_data": [
        {"name": topic, "partition_data": [{"index": 0, "records": batch}]}]})


def test_a_throttled_request_is_answered_then_the_connection_muted(raw):
    """KIP-219: the response carries the throttle time and goes out at once;
    the next request of that connection waits it out, even from a client that
    ignores the field. Other clients are not slowed."""
    topic = raw.broker.create_topic("q")
    assert alter(raw, [(entity(client_id="raw"), {"producer_byte_rate": 10_000, "consumer_byte_rate": 10_000})]) \
        == [(0, None)]
    # 120 kB at once: 12 kB/s over the 10 s Kafka counts at least, 20% over the bound.
    t0 = time.monotonic()
    r = produce(raw, topic, 120_000)
    assert r["responses"][0]["partition_responses"][0]["error_code"] == 0
    throttle = r["throttle_time_ms"]
    assert 1500 <= throttle <= 2500, throttle
    assert time.monotonic() - t0 < 1.0  # answered before the throttle time, not after
    other = RawClient(raw.broker.bootstrap)  # another connection, client id "raw" too: shares the quota's rate
    try:
        t1 = time.monotonic()
        other.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
        assert time.monotonic() - t1 < 0.5  # a muted connection holds back only itself
    finally:
        other.close()
    raw.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
    assert time.monotonic() - t0 >= throttle / 1000 - 0.05
    # Fetch: the answer's bytes count against consumer_byte_rate; over it, the
    # answer is empty (as Kafka answers) and carries the throttle time.
    f = raw.request("Fetch", 12, {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 0, "max_bytes": 10**7,
                                  "topics": [{"topic": topic, "partitions": [
                                      {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 10**7}]}]})
    assert f["error_code"] == 0 and f["responses"] == [] and f["throttle_time_ms"] > 0, f
    from odradek.metrics import render

    text = render(raw.broker.broker.core).decode()
    assert 'odradek_quota_throttles_total{quota="producer_byte_rate"} 1' in text
    assert 'odradek_quota_throttles_total{quota="consumer_byte_rate"} 1' in text
    # Without a quota nothing is counted or throttled.
    assert alter(raw, [(entity(client_id="raw"), {"producer_byte_rate": None, "consumer_byte_rate": None})]) \
        == [(0, None)]
    raw.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
    assert produce(raw, topic, 120_000)["throttle_time_ms"] == 0


def test_a_throttled_fetch_is_answered_empty_and_keeps_its_session(odradek_broker_factory):
    """As Kafka: a consumer's Fetch asks for no more than its quota lets
    through over the windows but one (50 kB/s x 1 s here), one that would take
    the rate over the quota is answered empty with the throttle time, its
    bytes not counted, and an incremental fetch session carries on unchanged."""
    broker = odradek_broker_factory(config={"quota.window.num": "2"})
    topic = broker.create_topic("qf")
    raw = RawClient(broker.bootstrap)
    try:
        for _ in range(3):
            produce(raw, topic, 20_000)  # three batches of 20 kB, two records each
        assert alter(raw, [(entity(client_id="raw"), {"consumer_byte_rate": 50_000})]) == [(0, None)]

        def fetch(offset, session_id, epoch):
            return raw.request("Fetch", 12, {
                "replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 10**7, "isolation_level": 0,
                "session_id": session_id, "session_epoch": epoch, "forgotten_topics_data": [], "rack_id": "",
                "topics": [{"topic": topic, "partitions": [{"partition": 0, "fetch_offset": offset,
                                                            "partition_max_bytes": 10**7}]}]})

        full = fetch(0, 0, 0)  # capped at the 50 kB allowance: two of the three batches
        got = full["responses"][0]["partitions"][0]["records"]
        assert full["throttle_time_ms"] == 0 and full["session_id"] > 0 and 40_000 <= len(got) < 50_000
        session = full["session_id"]
        t0 = time.monotonic()
        throttled = fetch(4, session, 1)  # the third batch would make 60 kB in the 1 s counted
        assert throttled["error_code"] == 0 and throttled["session_id"] == session and throttled["responses"] == []
        assert 100 <= throttled["throttle_time_ms"] <= 400, throttled
        raw.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
        assert time.monotonic() - t0 >= throttled["throttle_time_ms"] / 1000 - 0.05  # muted meanwhile
        time.sleep(0.3)  # the windows have grown: the rate is back under the quota
        later = fetch(4, session, 2)  # now the batch comes, in the same session
        assert later["error_code"] == 0 and later["session_id"] == session and later["throttle_time_ms"] == 0, later
        assert len(later["responses"][0]["partitions"][0]["records"]) >= 20_000
    finally:
        raw.close()


def test_confluent_kafka_producer_is_held_near_its_client_id_quota(odradek_broker_factory):
    """librdkafka with a 50 kB/s producer_byte_rate on its client id: over the
    run its acknowledged bytes stay near the quota, it reports the throttle
    (throttle_cb), and a client without a quota is not slowed. Three windows
    of 1 s, so the rate settles within the test (Kafka's default is 11)."""
    from confluent_kafka import Producer

    broker = odradek_broker_factory(config={"quota.window.num": "3"})
    topic = broker.create_topic("rate")
    raw = RawClient(broker.bootstrap)
    try:
        assert alter(raw, [(entity(client_id="slow"), {"producer_byte_rate": 50_000})]) == [(0, None)]
    finally:
        raw.close()

    def run(client_id, seconds, throttles):
        acked = [0]

        def delivered(err, msg):
            if err is None:
                acked[0] += len(msg.value())

        p = Producer({"bootstrap.servers": broker.bootstrap, "client.id": client_id, "linger.ms": 5,
                      "batch.size": 16384, "queue.buffering.max.kbytes": 64,
                      "throttle_cb": lambda ev: throttles.append(ev.throttle_time)})
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            try:
                p.produce(topic, os.urandom(1000), on_delivery=delivered)
            except BufferError:
                p.poll(0.05)
            p.poll(0)
        assert p.flush(30) == 0
        return acked[0] / (time.monotonic() - t0)

    fast_throttles, slow_throttles = [], []
    fast = run("fast", 1.5, fast_throttles)
    slow = run("slow", 8, slow_throttles)
    print(f"fast {fast:.0f} B/s, slow {slow:.0f} B/s, {len(slow_throttles)} throttles")
    assert fast > 1_000_000 and fast_throttles == []
    assert 35_000 <= slow <= 65_000, slow
    assert slow_throttles and max(slow_throttles) > 0


JAVA_ADMIN = """
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.quota.*;

public class QuotaAdmin {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        try (Admin admin = Admin.create(p)) {
            Map<String, String> names = new HashMap<>();
            names.put(ClientQuotaEntity.USER, "alice");
            names.put(ClientQuotaEntity.CLIENT_ID, "app");
            ClientQuotaEntity both = new ClientQuotaEntity(names);
            ClientQuotaEntity anyClient = new ClientQuotaEntity(Collections.singletonMap(ClientQuotaEntity.CLIENT_ID, null));
            admin.alterClientQuotas(List.of(
                new ClientQuotaAlteration(both, List.of(new ClientQuotaAlteration.Op("producer_byte_rate", 1024.0),
                                                        new ClientQuotaAlteration.Op("consumer_byte_rate", 2048.0))),
                new ClientQuotaAlteration(anyClient, List.of(new ClientQuotaAlteration.Op("request_percentage", 25.0)))
            )).all().get();
            try {
                admin.alterClientQuotas(List.of(new ClientQuotaAlteration(both,
                    List.of(new ClientQuotaAlteration.Op("producer_byte_rate", 1.5))))).all().get();
                System.out.println("refused: no");
            } catch (Exception e) {
                System.out.println("refused: " + e.getCause().getClass().getSimpleName());
            }
            Map<ClientQuotaEntity, Map<String, Double>> all =
                admin.describeClientQuotas(ClientQuotaFilter.all()).entities().get();
            TreeMap<String, String> sorted = new TreeMap<>();
            all.forEach((e, v) -> sorted.put(new TreeMap<>(e.entries()).toString(), new TreeMap<>(v).toString()));
            sorted.forEach((e, v) -> System.out.println(e + " " + v));
            Map<ClientQuotaEntity, Map<String, Double>> alice = admin.describeClientQuotas(ClientQuotaFilter.contains(
                List.of(ClientQuotaFilterComponent.ofEntity(ClientQuotaEntity.USER, "alice")))).entities().get();
            System.out.println("alice: " + alice.size());
        }
    }
}
"""


def test_java_admin_alters_and_describes_client_quotas(odradek_broker_fn, tmp_path):
    from tests.integration.java_client import run_java

    out = run_java(tmp_path, "QuotaAdmin", JAVA_ADMIN, [odradek_broker_fn.bootstrap])
    assert out.splitlines() == [
        "refused: InvalidRequestException",
        "{client-id=app, user=alice} {consumer_byte_rate=2048.0, producer_byte_rate=1024.0}",
        "{client-id=null} {request_percentage=25.0}",
        "alice: 1",
    ]


def test_request_percentage_throttles_a_busy_client_for_at_most_one_window(raw):
    """Handler time counts against request_percentage (percent of one thread);
    the throttle is bounded at one window, as Kafka bounds it."""
    assert alter(raw, [(entity(client_id="raw"), {"request_percentage": 0.0001})]) == [(0, None)]
    for _ in range(200):
        throttle = raw.request("Metadata", 12, {"topics": None})["throttle_time_ms"]
        if throttle:
            break
    assert 0 < throttle <= 1000
    t0 = time.monotonic()
    raw.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})  # exempt, but muted
    assert time.monotonic() - t0 >= throttle / 1000 - 0.05


def test_a_fetch_throttled_by_request_percentage_alone_is_answered_empty(raw):
    """As Kafka (KafkaApis' fetch): whichever quota throttles a consumer's
    Fetch, consumer_byte_rate or request_percentage, the answer is empty with
    the throttle time; once the quota is lifted the same records come."""
    topic = raw.broker.create_topic("qr")
    produce(raw, topic, 20_000)
    assert alter(raw, [(entity(client_id="raw"), {"request_percentage": 0.0001})]) == [(0, None)]

    def fetch():
        return raw.request("Fetch", 12, {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 0, "max_bytes": 10**7,
                                         "topics": [{"topic": topic, "partitions": [
                                             {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 10**7}]}]})

    f = fetch()
    assert f["throttle_time_ms"] > 0 and f["error_code"] == 0 and f["responses"] == [], f
    assert alter(raw, [(entity(client_id="raw"), {"request_percentage": None})]) == [(0, None)]
    f = fetch()
    assert f["throttle_time_ms"] == 0 and len(f["responses"][0]["partitions"][0]["records"]) >= 20_000, f


def test_confluent_kafka_consumer_is_held_near_its_client_id_quota(odradek_broker_factory):
    """A consumer_byte_rate of 100 kB/s on a confluent-kafka consumer's client
    id: over the run the bytes it receives stay near the quota; one without a
    quota reads the same topic at full speed."""
    from confluent_kafka import Consumer

    broker = odradek_broker_factory(config={"quota.window.num": "3"})
    topic = broker.create_topic("read")
    raw = RawClient(broker.bootstrap)
    try:
        for _ in range(60):
            produce(raw, topic, 50_000)  # 3 MB
        assert alter(raw, [(entity(client_id="slowc"), {"consumer_byte_rate": 100_000})]) == [(0, None)]
    finally:
        raw.close()

    def run(client_id, seconds):
        c = Consumer({"bootstrap.servers": broker.bootstrap, "client.id": client_id, "group.id": client_id,
                      "auto.offset.reset": "earliest", "fetch.max.bytes": 65536, "message.max.bytes": 65536,
                      "max.partition.fetch.bytes": 65536, "enable.auto.commit": False})
        c.subscribe([topic])
        got, t0 = 0, None
        try:
            while t0 is None or time.monotonic() - t0 < seconds:
                m = c.poll(0.1)
                if m is not None and m.error() is None:
                    t0 = t0 or time.monotonic()
                    got += len(m.value())
                    if got >= 3_000_000:
                        break
            return got / (time.monotonic() - t0)
        finally:
            c.close()

    fast = run("fastc", 5)
    slow = run("slowc", 6)
    print(f"consumer: fast {fast:.0f} B/s, slow {slow:.0f} B/s")
    assert fast > 1_000_000
    assert 60_000 <= slow <= 150_000, slow


def test_user_quotas_follow_the_sasl_principal_and_the_quota_apis_need_the_cluster():
    """A user quota applies to that SASL user's clients, whatever their client
    id; the quota APIs need ALTER_CONFIGS / DESCRIBE_CONFIGS on the cluster."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    from tests.integration import test_acls as T

    b = T.start(T.broker_config(**{"listeners": "SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
                                   "allow.everyone.if.no.acl.found": "true", "quota.window.num": "2"}))
    try:
        T.create_topics(b, "q")
        raw = RawClient("127.0.0.1:%d" % b.core.endpoints["PLAINTEXT"][1])
        try:
            assert alter(raw, [(entity(user="alice"), {"producer_byte_rate": 20_000})]) == [(0, None)]
            admin = AdminClient(T.conf(b, "admin"))
            for f in admin.create_acls([T.acl("BROKER", "kafka-cluster", "User:ANONYMOUS", "ALTER_CONFIGS", "DENY"),
                                        T.acl("BROKER", "kafka-cluster", "User:ANONYMOUS", "DESCRIBE_CONFIGS",
                                              "DENY")]).values():
                f.result(timeout=10)
            assert [c for c, _ in alter(raw, [(entity(user="alice"), {"producer_byte_rate": 1})])] == [31]
            r = raw.request("DescribeClientQuotas", 1, {"components": [], "strict": False})
            assert r["error_code"] == 31 and r["entries"] is None
        finally:
            raw.close()

        def throttled(user, client_id):
            seen = []
            p = Producer(T.conf(b, user, **{"client.id": client_id, "linger.ms": 5,
                                            "throttle_cb": lambda ev: seen.append(ev.throttle_time)}))
            for _ in range(150):
                p.produce("q", os.urandom(1000))
                p.poll(0)
            assert p.flush(30) == 0
            p.poll(0.5)
            return bool(seen)

        assert throttled("alice", "any-client")
        assert not throttled("bob", "any-client")
    finally:
        b.__exit__(None, None, None)


def test_controller_mutation_rate(odradek_broker_factory):
    """KIP-599: 2 partitions per second, a bucket of 2 windows (4 partitions).
    CreateTopics v7, DeleteTopics v6 and CreatePartitions v3 refuse the topics
    past the point where the bucket is empty with THROTTLING_QUOTA_EXCEEDED
    and the throttle time; older versions (CreateTopics v5) are served and
    throttled."""
    broker = odradek_broker_factory(config={"quota.window.num": "2"})
    raw = RawClient(broker.bootstrap)
    try:
        assert alter(raw, [(entity(client_id="raw"), {"controller_mutation_rate": 2.0})]) == [(0, None)]

        def create(version, names, partitions=3):
            return raw.request("CreateTopics", version, {"timeout_ms": 5000, "validate_only": False, "topics": [
                {"name": n, "num_partitions": partitions, "replication_factor": 1, "assignments": [],
                 "configs": []} for n in names]})

        r = create(7, ["m1", "m2", "m3", "m4"])  # 4 tokens: m1 (4 -> 1), m2 (1 -> -2), then refused
        codes = [(t["name"], t["error_code"]) for t in r["topics"]]
        assert codes == [("m1", 0), ("m2", 0), ("m3", 89), ("m4", 89)], r
        assert r["topics"][2]["error_message"] == "The throttling quota has been exceeded."
        assert 900 <= r["throttle_time_ms"] <= 1000, r  # 2 tokens short at 2 a second
        t0 = time.monotonic()
        r = create(5, ["m5", "m6"])  # muted for the throttle, then served: an old version is not refused
        assert time.monotonic() - t0 >= 0.85
        assert [t["error_code"] for t in r["topics"]] == [0, 0] and r["throttle_time_ms"] > 0
        time.sleep(r["throttle_time_ms"] / 1000)
        raw.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
        time.sleep(1.0)  # two tokens: a topic of 3 partitions goes (the bucket was not below zero), the next not
        d = raw.request("DeleteTopics", 6, {"timeout_ms": 5000, "topics": [
            {"name": n, "topic_id": bytes(16)} for n in ("m1", "m2")]})
        assert [t["error_code"] for t in d["responses"]] == [0, 89] and d["throttle_time_ms"] > 0, d
        time.sleep(d["throttle_time_ms"] / 1000)
        raw.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
        time.sleep(1.0)
        p = raw.request("CreatePartitions", 3, {"timeout_ms": 5000, "validate_only": False, "topics": [
            {"name": n, "count": 6, "assignments": None} for n in ("m5", "m6")]})
        assert [t["error_code"] for t in p["results"]] == [0, 89] and p["throttle_time_ms"] > 0, p
        assert len(broker.broker.core.image.get("m5").partitions) == 6
        assert len(broker.broker.core.image.get("m6").partitions) == 3
    finally:
        raw.close()


JAVA_MUTATIONS = r"""
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.KafkaFuture;

public class Mutations {
  public static void main(String[] a) throws Exception {
    Properties p = new Properties();
    p.put("bootstrap.servers", a[0]);
    p.put("client.id", "java-admin");
    try (Admin admin = Admin.create(p)) {
      List<NewTopic> topics = new ArrayList<>();
      for (int i = 1; i <= 4; i++) topics.add(new NewTopic("j" + i, 3, (short) 1));
      Map<String, KafkaFuture<Void>> fs = admin.createTopics(topics,
          new CreateTopicsOptions().retryOnQuotaViolation(false)).values();
      for (String t : new TreeSet<>(fs.keySet())) {
        try { fs.get(t).get(); System.out.println(t + " created"); }
        catch (Exception e) { System.out.println(t + " " + e.getCause().getClass().getSimpleName()); }
      }
      List<NewTopic> more = new ArrayList<>();
      for (int i = 4; i <= 7; i++) more.add(new NewTopic("j" + i, 3, (short) 1));
      long t0 = System.currentTimeMillis();
      admin.createTopics(more).all().get();  // retried by the Admin after each throttle
      System.out.println("retried and created in " + (System.currentTimeMillis() - t0) + " ms");
    }
  }
}
"""


def test_java_admin_and_controller_mutation_rate(odradek_broker_factory, tmp_path):
    """The Java Admin (KIP-599): without retries the topics past the quota fail
    with ThrottlingQuotaExceededException; with them (its default) it waits
    the throttle time and creates them."""
    from tests.integration.java_client import run_java

    broker = odradek_broker_factory(config={"quota.window.num": "2"})
    raw = RawClient(broker.bootstrap)
    try:
        assert alter(raw, [(entity(client_id="java-admin"), {"controller_mutation_rate": 3.0})]) == [(0, None)]
    finally:
        raw.close()
    out = run_java(tmp_path, "Mutations", JAVA_MUTATIONS, [broker.bootstrap], timeout=90,
                   jvm_opts=["-XX:TieredStopAtLevel=1"]).splitlines()
    # 6 tokens: j1 (6 -> 3), j2 (3 -> 0), j3 (0 -> -3), then refused
    assert out[:4] == ["j1 created", "j2 created", "j3 created", "j4 ThrottlingQuotaExceededException"], out
    assert out[4].startswith("retried and created in ") and int(out[4].split()[-2]) >= 900, out
    assert all(broker.broker.core.image.get(f"j{i}") is not None for i in range(1, 8))


def test_ip_connection_creation_rate(odradek_broker_factory):
    """KIP-612: the default ip's connection_creation_rate of 2 a second (two
    windows): a third connection within the second is accepted but never
    served, and closed after the throttle time; an ip with a quota of its own
    is held to that one; other connections keep working."""
    import socket

    broker = odradek_broker_factory(config={"quota.window.num": "2"})
    host, port = broker.bootstrap.split(":")
    admin = RawClient(broker.bootstrap)  # before the quota: not counted
    try:
        assert alter(admin, [([{"entity_type": "ip", "entity_name": None}],
                              {"connection_creation_rate": 2})]) == [(0, None)]
        clients = [RawClient(broker.bootstrap) for _ in range(2)]
        for c in clients:
            assert c.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
        t0 = time.monotonic()
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"\0\0\0\x0a\0\x12\0\0\0\0\0\x07\xff\xff")  # ApiVersions v0, no client id
        assert s.recv(100) == b""  # closed, unanswered
        assert 0.3 <= time.monotonic() - t0 <= 1.5
        s.close()
        for c in clients:  # the connections already made are served
            assert c.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
            c.close()
        # An ip's own entity wins over the default.
        assert alter(admin, [([{"entity_type": "ip", "entity_name": "127.0.0.1"}],
                              {"connection_creation_rate": 100})]) == [(0, None)]
        more = [RawClient(broker.bootstrap) for _ in range(5)]
        for c in more:
            assert c.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
            c.close()
    finally:
        admin.close()
