"""ACLs with real clients (confluent-kafka, the Java client) against a broker
with SASL PLAIN users and Kafka's StandardAuthorizer settings: alice may
write topic "a" only, bob may read "a" in group "g", admin is a super user."""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = pytest.mark.timeout(180)

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
        'password="admin-secret" user_admin="admin-secret" user_alice="alice-secret" user_bob="bob-secret" '
        'user_carol="carol-secret";')
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def broker_config(**extra):
    config = {
        "listeners": "SASL_PLAINTEXT://127.0.0.1:0",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:admin",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": "2",
        "auto.create.topics.enable": "false",
    }
    config.update(extra)
    return config


def conf(b, user, **extra):
    out = {"bootstrap.servers": b.addr, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
           "sasl.username": user, "sasl.password": f"{user}-secret"}
    out.update(extra)
    return out


def start(config):
    from odradek.embedded import EmbeddedBroker

    b = EmbeddedBroker(config=config)
    b.__enter__()
    b.addr = "127.0.0.1:%d" % b.core.endpoints["SASL_PLAINTEXT"][1]
    return b


def create_topics(b, *names):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(conf(b, "admin"))
    for f in admin.create_topics([NewTopic(n, 1, 1) for n in names]).values():
        f.result(timeout=15)


def acl(rtype, name, principal, op, perm="ALLOW", pattern="LITERAL"):
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)

    return AclBinding(ResourceType[rtype], name, ResourcePatternType[pattern], principal, "*",
                      AclOperation[op], AclPermissionType[perm])


@pytest.fixture(scope="module")
def secured():
    from confluent_kafka.admin import AdminClient

    b = start(broker_config())
    try:
        create_topics(b, "a", "b")
        admin = AdminClient(conf(b, "admin"))
        for f in admin.create_acls([
            acl("TOPIC", "a", "User:alice", "WRITE"),
            acl("TOPIC", "a", "User:bob", "READ"),
            acl("GROUP", "g", "User:bob", "READ"),
        ]).values():
            f.result(timeout=15)
        yield b
    finally:
        b.__exit__(None, None, None)


def produce(b, user, topic, n=5):
    """Produce ``n`` records; return the delivery error codes (None for success)."""
    from confluent_kafka import Producer

    p = Producer(conf(b, user, **{"message.timeout.ms": 10000}))
    codes = []
    for i in range(n):
        p.produce(topic, f"v{i}".encode(), on_delivery=lambda err, msg: codes.append(err and err.code()))
    p.flush(15)
    return codes


def topics_seen(b, user):
    from confluent_kafka.admin import AdminClient

    return set(AdminClient(conf(b, user)).list_topics(timeout=10).topics) - {"__consumer_offsets"}


def test_alice_writes_a_but_not_b(secured):
    from confluent_kafka import KafkaError

    assert produce(secured, "alice", "a") == [None] * 5
    assert set(produce(secured, "alice", "b")) == {KafkaError.TOPIC_AUTHORIZATION_FAILED}


def test_bob_consumes_a_in_group_g_and_not_in_another_group(secured):
    from confluent_kafka import Consumer, KafkaError

    produce(secured, "admin", "a", 3)
    c = Consumer(conf(secured, "bob", **{"group.id": "g", "auto.offset.reset": "earliest"}))
    c.subscribe(["a"])
    got, deadline = [], time.time() + 30
    while len(got) < 3 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.commit(asynchronous=False)
    c.close()
    assert len(got) >= 3

    c = Consumer(conf(secured, "bob", **{"group.id": "h", "auto.offset.reset": "earliest"}))
    c.subscribe(["a"])
    errors, deadline = [], time.time() + 20
    while not errors and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is not None:
            errors.append(m.error().code())
    c.close()
    assert KafkaError.GROUP_AUTHORIZATION_FAILED in errors


def test_metadata_hides_unauthorised_topics(secured):
    assert topics_seen(secured, "alice") == {"a"}
    assert topics_seen(secured, "bob") == {"a"}
    assert topics_seen(secured, "carol") == set()
    assert topics_seen(secured, "admin") >= {"a", "b"}


def test_the_super_user_does_everything(secured):
    from confluent_kafka.admin import AclBindingFilter, AdminClient, ResourcePatternType, ResourceType

    assert produce(secured, "admin", "b") == [None] * 5
    admin = AdminClient(conf(secured, "admin"))
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  __import__("confluent_kafka").admin.AclOperation.ANY,
                                  __import__("confluent_kafka").admin.AclPermissionType.ANY)
    listed = admin.describe_acls(everything).result(timeout=10)
    assert {(x.name, x.principal, x.operation.name) for x in listed} == {
        ("a", "User:alice", "WRITE"), ("a", "User:bob", "READ"), ("g", "User:bob", "READ")}


def test_acl_apis_need_the_cluster(secured):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    alice = AdminClient(conf(secured, "alice"))
    with pytest.raises(KafkaException, match="CLUSTER_AUTHORIZATION_FAILED|Cluster authorization"):
        for f in alice.create_acls([acl("TOPIC", "b", "User:alice", "WRITE")]).values():
            f.result(timeout=10)
    assert set(produce(secured, "alice", "b", 1)) != {None}


def test_acls_added_and_removed_take_effect(secured):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AclBindingFilter, AdminClient

    admin = AdminClient(conf(secured, "admin"))
    binding = acl("TOPIC", "b", "User:carol", "WRITE", pattern="PREFIXED")
    for f in admin.create_acls([binding]).values():
        f.result(timeout=10)
    assert produce(secured, "carol", "b", 2) == [None, None]
    deleted = admin.delete_acls([AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type,
                                                  binding.principal, binding.host, binding.operation,
                                                  binding.permission_type)])
    assert [len(f.result(timeout=10)) for f in deleted.values()] == [1]
    assert set(produce(secured, "carol", "b", 1)) == {KafkaError.TOPIC_AUTHORIZATION_FAILED}


def test_a_fetch_without_read_gets_the_authorisation_error(secured):
    """librdkafka 0119's case: DESCRIBE on the topic but not READ. Each
    partition's error comes with an empty record set; librdkafka reads a null
    one as a parse failure, drops the answer and never reports the error."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    from confluent_kafka.admin import AclBindingFilter, AdminClient

    admin = AdminClient(conf(secured, "admin"))
    binding = acl("TOPIC", "a", "User:carol", "DESCRIBE")
    for f in admin.create_acls([binding]).values():
        f.result(timeout=10)
    try:
        c = Consumer(conf(secured, "carol", **{"group.id": "carol-g", "enable.auto.commit": False}))
        c.assign([TopicPartition("a", 0, 0)])
        errors, deadline = [], time.time() + 20  # also GROUP_AUTHORIZATION_FAILED (FindCoordinator)
        while KafkaError.TOPIC_AUTHORIZATION_FAILED not in errors and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is not None:
                errors.append(m.error().code())
        c.close()
        assert KafkaError.TOPIC_AUTHORIZATION_FAILED in errors
    finally:
        for f in admin.delete_acls([AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type,
                                                     binding.principal, binding.host, binding.operation,
                                                     binding.permission_type)]).values():
            f.result(timeout=10)


def test_allow_everyone_if_no_acl_found():
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient

    b = start(broker_config(**{"allow.everyone.if.no.acl.found": "true"}))
    try:
        create_topics(b, "open", "closed")
        admin = AdminClient(conf(b, "admin"))
        for f in admin.create_acls([acl("TOPIC", "closed", "User:alice", "WRITE")]).values():
            f.result(timeout=10)
        assert produce(b, "carol", "open", 2) == [None, None]  # no ACL on "open": everyone
        assert set(produce(b, "carol", "closed", 1)) == {KafkaError.TOPIC_AUTHORIZATION_FAILED}
        assert produce(b, "alice", "closed", 1) == [None]
        assert topics_seen(b, "carol") == {"open"}
    finally:
        b.__exit__(None, None, None)


def test_without_an_authorizer_the_acl_apis_answer_security_disabled():
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    config = broker_config()
    del config["authorizer.class.name"]
    b = start(config)
    try:
        admin = AdminClient(conf(b, "admin"))
        with pytest.raises(KafkaException, match="SECURITY_DISABLED|[Ss]ecurity"):
            for f in admin.create_acls([acl("TOPIC", "a", "User:x", "READ")]).values():
                f.result(timeout=10)
    finally:
        b.__exit__(None, None, None)


JAVA = r"""
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.*;

public class AclCheck {
    static Properties props(String bootstrap, String user) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("security.protocol", "SASL_PLAINTEXT");
        p.put("sasl.mechanism", "PLAIN");
        p.put("sasl.jaas.config", "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"" + user
              + "\" password=\"" + user + "-secret\";");
        return p;
    }

    static String send(String bootstrap, String user, String topic) {
        Properties p = props(bootstrap, user);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("delivery.timeout.ms", "10000");
        p.put("request.timeout.ms", "5000");
        p.put("max.block.ms", "10000");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            producer.send(new ProducerRecord<>(topic, "k", "v")).get();
            return "ok";
        } catch (Exception e) {  // the root cause: a refused InitProducerId may surface from send() itself
            Throwable t = e;
            while (t.getCause() != null) t = t.getCause();
            return t.getClass().getSimpleName();
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        System.out.println("alice a " + send(bootstrap, "alice", "a"));
        System.out.println("alice b " + send(bootstrap, "alice", "b"));
        System.out.println("bob a " + send(bootstrap, "bob", "a"));
        try (Admin admin = Admin.create(props(bootstrap, "alice"))) {
            System.out.println("alice topics " + new TreeSet<>(admin.listTopics().names().get()));
        }
        Properties c = props(bootstrap, "bob");
        c.put("group.id", "g");
        c.put("auto.offset.reset", "earliest");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        int n = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.subscribe(List.of("a"));
            long end = System.currentTimeMillis() + 30000;
            while (n == 0 && System.currentTimeMillis() < end) {
                n += consumer.poll(Duration.ofMillis(500)).count();
            }
            consumer.commitSync();
        }
        System.out.println("bob consumed " + (n > 0));
    }
}
"""


def test_java_client(secured, tmp_path):
    from tests.integration.java_client import run_java

    out = run_java(tmp_path, "AclCheck", JAVA, [secured.addr])
    lines = dict(line.rsplit(" ", 1) for line in out.strip().splitlines() if line.startswith(("alice", "bob")))
    assert lines == {
        "alice a": "ok",  # an idempotent producer: WRITE on some topic is enough
        "alice b": "TopicAuthorizationException",
        "bob a": "ClusterAuthorizationException",  # idempotent, and no WRITE anywhere
        "alice topics": "[a]",
        "bob consumed": "true",
    }, out


def test_cli_acl_add_list_remove(secured):
    import json

    from tests.integration.test_cli import cli

    def sasl(user):
        return ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=PLAIN",
                "-X", f"sasl.username={user}", "-X", f"sasl.password={user}-secret"]

    cli(secured.addr, "acl", "add", "--principal", "User:dan", "--operation", "read", "--operation", "describe",
        "--topic", "dan-", "--prefixed", *sasl("admin"))
    listed = json.loads(cli(secured.addr, "acl", "list", "--topic", "dan-", "--prefixed", "--json",
                            *sasl("admin")).out)
    assert sorted((r["principal"], r["operation"], r["pattern"]) for r in listed) == [
        ("User:dan", "DESCRIBE", "PREFIXED"), ("User:dan", "READ", "PREFIXED")]
    refused = cli(secured.addr, "acl", "add", "--principal", "User:alice", "--operation", "all", "--cluster",
                  *sasl("alice"), expect=1)
    assert "CLUSTER_AUTHORIZATION_FAILED" in refused.out + refused.err
    out = cli(secured.addr, "acl", "remove", "--topic", "dan-", "--prefixed", "--operation", "read",
              *sasl("admin")).out
    assert "READ" in out and "DESCRIBE" not in out
    listed = json.loads(cli(secured.addr, "acl", "list", "--principal", "User:dan", "--json", *sasl("admin")).out)
    assert [r["operation"] for r in listed] == ["DESCRIBE"]


def test_cli_reads_a_kafka_client_properties_file(secured, tmp_path):
    """--command-config (or ODRADEK_COMMAND_CONFIG) takes the client.properties
    written for Kafka's tools: the JAAS login is used; a store type librdkafka
    cannot read is refused, not ignored."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.integration.test_cli import cli

    props = tmp_path / "admin.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n"
        "    username=\"admin\" password=\"admin-secret\";\nrequest.timeout.ms=20000\n")
    listed = cli(secured.addr, "topic", "list", "--command-config", str(props))
    assert "a" in listed.out.split() and "request.timeout.ms is not used" in listed.err

    def with_env(**env):  # tests.integration.test_cli.cli clears ODRADEK_* variables
        return subprocess.run([sys.executable, "-m", "odradek", "-b", secured.addr, "topic", "list"],
                              capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={**{k: v for k, v in os.environ.items() if not k.startswith("ODRADEK_")}, **env})

    assert "a" in with_env(ODRADEK_COMMAND_CONFIG=str(props)).stdout.split()
    assert "a" in with_env(ODRADEK_CLIENT_CONFIG="security.protocol=SASL_PLAINTEXT,sasl.mechanism=PLAIN,"
                                                 "sasl.username=admin,sasl.password=admin-secret").stdout.split()
    assert with_env().returncode != 0  # no login: refused
    jks = tmp_path / "jks.properties"
    jks.write_text("security.protocol=SSL\nssl.truststore.location=/etc/kafka/truststore.jks\n")
    refused = cli(secured.addr, "topic", "list", "--command-config", str(jks), expect=2)
    assert "Cannot read the SSL truststore /etc/kafka/truststore.jks" in refused.err


def test_cli_quota_set_list_remove(secured):
    """``odradek quota`` over SASL: set, list (the broker's image holds what
    was set), remove; a user without ALTER_CONFIGS on the cluster is refused."""
    import json

    from tests.integration.test_cli import cli

    def sasl(user):
        return ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=PLAIN",
                "-X", f"sasl.username={user}", "-X", f"sasl.password={user}-secret"]

    out = cli(secured.addr, "quota", "set", "--user", "dan", "producer_byte_rate=1048576",
              "consumer_byte_rate=2000000", *sasl("admin")).out
    assert "user=dan" in out and "1048576" in out
    cli(secured.addr, "quota", "set", "--user-default", "--client-id", "etl", "request_percentage=50",
        *sasl("admin"))
    listed = json.loads(cli(secured.addr, "quota", "list", "--json", *sasl("admin")).out)
    assert {(r["entity"], r["key"], r["value"]) for r in listed} >= {
        ("user=dan", "producer_byte_rate", 1048576), ("user=dan", "consumer_byte_rate", 2000000),
        ("user=<default>,client-id=etl", "request_percentage", 50)}
    cli(secured.addr, "quota", "remove", "--user", "dan", "producer_byte_rate", *sasl("admin"))
    listed = json.loads(cli(secured.addr, "quota", "list", "--user", "dan", "--json", *sasl("admin")).out)
    assert [(r["key"], r["value"]) for r in listed] == [("consumer_byte_rate", 2000000)]
    refused = cli(secured.addr, "quota", "set", "--user", "alice", "producer_byte_rate=1", *sasl("alice"), expect=1)
    assert "CLUSTER_AUTHORIZATION_FAILED" in refused.out + refused.err
    usage = cli(secured.addr, "quota", "set", "producer_byte_rate=1", *sasl("admin"), expect=2)
    assert "name an entity" in usage.out + usage.err


def test_admin_apis_answer_kafkas_authorisation_errors(secured):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    alice = AdminClient(conf(secured, "alice"))

    def code(future):
        try:
            future.result(timeout=10)
            return None
        except Exception as e:  # noqa: BLE001
            return e.args[0].code()

    assert code(alice.create_topics([NewTopic("alice-new", 1, 1)])["alice-new"]) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert code(alice.delete_topics(["a"])["a"]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    (f,) = alice.describe_configs([ConfigResource("TOPIC", "b")]).values()
    assert code(f) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    (f,) = alice.describe_configs([ConfigResource("BROKER", "1")]).values()
    assert code(f) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert code(alice.describe_consumer_groups(["g"])["g"]) == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert code(alice.delete_consumer_groups(["g"])["g"]) == KafkaError.GROUP_AUTHORIZATION_FAILED
    # bob may read group g (READ implies DESCRIBE); ListGroups shows him only that group
    bob = AdminClient(conf(secured, "bob"))
    assert code(bob.describe_consumer_groups(["g"])["g"]) is None
    listed = bob.list_consumer_groups().result(timeout=10)
    assert {g.group_id for g in listed.valid} <= {"g"}


def test_acls_are_kept_in_the_metadata_store_across_restarts(tmp_path):
    from confluent_kafka.admin import AdminClient

    config = broker_config()
    b = start_in(tmp_path, config)
    try:
        create_topics(b, "kept")
        admin = AdminClient(conf(b, "admin"))
        for f in admin.create_acls([acl("TOPIC", "kept", "User:alice", "WRITE")]).values():
            f.result(timeout=10)
        assert produce(b, "alice", "kept", 1) == [None]
    finally:
        b.__exit__(None, None, None)
    b = start_in(tmp_path, config)
    try:
        assert produce(b, "alice", "kept", 1) == [None]
        assert topics_seen(b, "alice") == {"kept"}
    finally:
        b.__exit__(None, None, None)


def start_in(data_dir, config):
    from odradek.embedded import EmbeddedBroker

    b = EmbeddedBroker(data_dir=str(data_dir), config=config)
    b.__enter__()
    b.addr = "127.0.0.1:%d" % b.core.endpoints["SASL_PLAINTEXT"][1]
    return b


JAVA_OPS = r"""
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.acl.AclOperation;

public class AuthorizedOps {
    static Properties props(String bootstrap, String user) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("security.protocol", "SASL_PLAINTEXT");
        p.put("sasl.mechanism", "PLAIN");
        p.put("sasl.jaas.config", "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"" + user
              + "\" password=\"" + user + "-secret\";");
        return p;
    }

    static String ops(Set<AclOperation> s) {
        if (s == null) return "null";
        TreeSet<String> t = new TreeSet<>();
        for (AclOperation o : s) t.add(o.name());
        return t.toString();
    }

    public static void main(String[] args) throws Exception {
        for (String user : new String[]{"alice", "bob", "admin"}) {
            try (Admin admin = Admin.create(props(args[0], user))) {
                TopicDescription t = admin.describeTopics(List.of("a"),
                    new DescribeTopicsOptions().includeAuthorizedOperations(true)).allTopicNames().get().get("a");
                System.out.println(user + " topic " + ops(t.authorizedOperations()));
                System.out.println(user + " cluster " + ops(admin.describeCluster(
                    new DescribeClusterOptions().includeAuthorizedOperations(true)).authorizedOperations().get()));
                System.out.println(user + " plain-topic " + ops(admin.describeTopics(List.of("a"))
                    .allTopicNames().get().get("a").authorizedOperations()));
                if (!user.equals("alice")) {
                    ConsumerGroupDescription g = admin.describeConsumerGroups(List.of("g"),
                        new DescribeConsumerGroupsOptions().includeAuthorizedOperations(true)).all().get().get("g");
                    System.out.println(user + " group " + ops(g.authorizedOperations()));
                }
            }
        }
    }
}
"""

TOPIC_OPS = "[ALTER, ALTER_CONFIGS, CREATE, DELETE, DESCRIBE, DESCRIBE_CONFIGS, READ, WRITE]"
AUTHORIZED_OPS = {  # what Apache Kafka 4.4 answers the same program (bench/acl_side_by_side.py)
    "alice topic": "[DESCRIBE, WRITE]", "alice cluster": "[]", "alice plain-topic": "null",
    "bob topic": "[DESCRIBE, READ]", "bob cluster": "[]", "bob plain-topic": "null",
    "bob group": "[DESCRIBE, READ]",
    "admin topic": TOPIC_OPS,
    "admin cluster": "[ALTER, ALTER_CONFIGS, CLUSTER_ACTION, CREATE, DESCRIBE, DESCRIBE_CONFIGS, IDEMPOTENT_WRITE]",
    "admin plain-topic": "null", "admin group": "[ALTER_CONFIGS, DELETE, DESCRIBE, DESCRIBE_CONFIGS, READ]",
}


def authorized_ops_lines(tmp_path, addr) -> dict:
    from tests.integration.java_client import run_java

    out = run_java(tmp_path, "AuthorizedOps", JAVA_OPS, [addr], timeout=60, jvm_opts=["-XX:TieredStopAtLevel=1"])
    return {" ".join(line.split(" ", 2)[:2]): line.split(" ", 2)[2] for line in out.strip().splitlines()}


def test_authorized_operations_java_admin(secured, tmp_path):
    """KIP-430: the Java Admin's includeAuthorizedOperations on topics, the
    cluster and groups, computed by the authoriser for each user."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(conf(secured, "bob", **{"group.id": "g"}))  # group g exists: bob commits in it
    c.commit(offsets=[TopicPartition("a", 0, 0)], asynchronous=False)
    c.close()
    assert authorized_ops_lines(tmp_path, secured.addr) == AUTHORIZED_OPS


def test_authorized_operations_follow_the_acls(secured):
    """DescribeTopics / DescribeCluster with include_authorized_operations: what
    the principal may do (WRITE on "a" implies DESCRIBE); nothing on the cluster
    without DESCRIBE on it; everything for a super user."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation, AdminClient

    alice = AdminClient(conf(secured, "alice"))
    a = alice.describe_topics(TopicCollection(["a"]), include_authorized_operations=True)["a"].result(10)
    assert set(a.authorized_operations) == {AclOperation.WRITE, AclOperation.DESCRIBE}
    assert not alice.describe_cluster(include_authorized_operations=True).result(10).authorized_operations
    admin = AdminClient(conf(secured, "admin"))
    assert len(admin.describe_cluster(include_authorized_operations=True).result(10).authorized_operations) == 7
