"""Delegation tokens (KIP-48) with Apache Kafka's Java client 4.x, as a
Kafka user runs them: a SCRAM user creates a token (with a renewer), a job
logs in with it (SCRAM with ``tokenauth``) and produces and consumes as the
token's owner under the owner's ACLs; the renewer renews it, a stranger may
not, a token login may not manage tokens, creating a token for someone else
needs CREATE_TOKENS on them, and once expired the token logs in no more.
Also Kafka's own ``kafka-delegation-tokens`` tool, the refusals on a
PLAINTEXT listener, and a token made through one broker of two (on etcd)
used and expired through the other."""

from __future__ import annotations

import pytest

from odradek.protocol import errors
from tests.integration.rawclient import RawClient

pytestmark = pytest.mark.timeout(240)

USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret", "admin": "admin-secret"}


@pytest.fixture(scope="module")
def broker():
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, NewTopic,
                                       ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)

    from odradek.embedded import EmbeddedBroker

    config = {
        "listeners": "INTERNAL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        "listener.security.protocol.map": "INTERNAL:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL",
        "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin;User:ANONYMOUS",  # ANONYMOUS: the PLAINTEXT listener, to set the test up
        "delegation.token.secret.key": "a-secret-every-broker-shares",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": "1",
    }
    with EmbeddedBroker(config=config) as b:
        b.addr = {name: f"127.0.0.1:{port}" for name, (_, port) in b.core.endpoints.items()}
        admin = AdminClient({"bootstrap.servers": b.addr["INTERNAL"]})
        for f in admin.alter_user_scram_credentials([
                UserScramCredentialUpsertion(u, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), p.encode())
                for u, p in USERS.items()]).values():
            f.result(15)
        admin.create_topics([NewTopic("java-token", 1, 1)])["java-token"].result(15)
        acls = [AclBinding(ResourceType.TOPIC, "java-token", ResourcePatternType.LITERAL, "User:alice", "*",
                           AclOperation.ALL, AclPermissionType.ALLOW),
                AclBinding(ResourceType.GROUP, "java-token", ResourcePatternType.LITERAL, "User:alice", "*",
                           AclOperation.READ, AclPermissionType.ALLOW)]
        for f in admin.create_acls(acls).values():
            f.result(15)
        yield b


JAVA_TOKENS = r"""
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.security.auth.KafkaPrincipal;
import org.apache.kafka.common.security.token.delegation.DelegationToken;
import org.apache.kafka.common.serialization.*;

public class JavaTokens {
  static String bs;
  static Properties scram(String user, String password, boolean token) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bs);
    p.put("security.protocol", "SASL_PLAINTEXT");
    p.put("sasl.mechanism", "SCRAM-SHA-256");
    p.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"" + user
          + "\" password=\"" + password + "\"" + (token ? " tokenauth=\"true\"" : "") + ";");
    p.put("default.api.timeout.ms", "20000");
    p.put("request.timeout.ms", "10000");
    p.put("max.block.ms", "10000");
    return p;
  }
  // A token made through broker bs, used and expired through broker other.
  static void across(String other) throws Exception {
    DelegationToken t;
    try (Admin one = Admin.create(scram("alice", "alice-secret", false))) {
      t = one.createDelegationToken().delegationToken().get();
    }
    bs = other;
    try (Admin two = Admin.create(scram(t.tokenInfo().tokenId(), t.hmacAsBase64String(), true))) {
      System.out.println("token login on the other broker: " + two.describeCluster().nodes().get().size() + " brokers");
    }
    try (Admin two = Admin.create(scram("alice", "alice-secret", false))) {
      two.expireDelegationToken(t.hmac(), new ExpireDelegationTokenOptions().expiryTimePeriodMs(-1)).expiryTimestamp().get();
      System.out.println("expired through the other broker");
    }
  }
  static String failure(Exception e) {
    Throwable t = e instanceof ExecutionException ? e.getCause() : e;
    return t.getClass().getSimpleName();
  }
  static User user(String name) { return new User(name); }
  record User(String name) {
    KafkaPrincipal principal() { return new KafkaPrincipal("User", name); }
  }
  public static void main(String[] a) throws Exception {
    bs = a[0];
    if (a.length == 2) { across(a[1]); return; }
    Map<String, String> pw = Map.of("alice", "alice-secret", "bob", "bob-secret", "carol", "carol-secret", "admin", "admin-secret");
    try (Admin alice = Admin.create(scram("alice", pw.get("alice"), false));
         Admin bob = Admin.create(scram("bob", pw.get("bob"), false));
         Admin carol = Admin.create(scram("carol", pw.get("carol"), false));
         Admin admin = Admin.create(scram("admin", pw.get("admin"), false))) {
      DelegationToken t = alice.createDelegationToken(new CreateDelegationTokenOptions()
          .renewers(List.of(user("bob").principal()))).delegationToken().get();
      System.out.println("created " + t.tokenInfo().owner() + " " + t.tokenInfo().tokenRequester() + " " + t.tokenInfo().renewers());
      List<DelegationToken> d = List.of();
      for (long end = System.currentTimeMillis() + 10000; d.isEmpty() && System.currentTimeMillis() < end; Thread.sleep(100))
        d = alice.describeDelegationToken(new DescribeDelegationTokenOptions()  // (Kafka's brokers learn it a little later)
            .owners(List.of(user("alice").principal()))).delegationTokens().get();
      System.out.println("described " + d.size() + " " + d.get(0).tokenInfo().tokenId().equals(t.tokenInfo().tokenId())
          + " " + Arrays.equals(d.get(0).hmac(), t.hmac()));
      System.out.println("carol sees " + carol.describeDelegationToken().delegationTokens().get().size());

      Properties tp = scram(t.tokenInfo().tokenId(), t.hmacAsBase64String(), true);
      try (KafkaProducer<String, String> p = new KafkaProducer<>(tp, new StringSerializer(), new StringSerializer())) {
        for (int i = 0; i < 5; i++) p.send(new ProducerRecord<>("java-token", "v" + i)).get();
      }
      Properties cp = new Properties();
      cp.putAll(tp);
      cp.put("group.id", "java-token");
      cp.put("auto.offset.reset", "earliest");
      int got = 0;
      try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
        c.subscribe(List.of("java-token"));
        long deadline = System.currentTimeMillis() + 30000;
        while (got < 5 && System.currentTimeMillis() < deadline) got += c.poll(Duration.ofMillis(200)).count();
      }
      System.out.println("token records " + got);
      try (Admin ta = Admin.create(tp)) {
        ta.describeDelegationToken().delegationTokens().get();
        System.out.println("token describes");
      } catch (Exception e) { System.out.println("token describe " + failure(e)); }

      try { carol.renewDelegationToken(t.hmac()).expiryTimestamp().get(); System.out.println("carol renewed"); }
      catch (Exception e) { System.out.println("carol renew " + failure(e)); }
      long expiry = bob.renewDelegationToken(t.hmac(), new RenewDelegationTokenOptions().renewTimePeriodMs(60000)).expiryTimestamp().get();
      System.out.println("bob renew " + (expiry <= System.currentTimeMillis() + 61000 && expiry > System.currentTimeMillis()));
      try { alice.createDelegationToken(new CreateDelegationTokenOptions().owner(user("bob").principal())).delegationToken().get(); System.out.println("alice created for bob"); }
      catch (Exception e) { System.out.println("alice for bob " + failure(e)); }
      DelegationToken forBob = admin.createDelegationToken(new CreateDelegationTokenOptions().owner(user("bob").principal())).delegationToken().get();
      System.out.println("admin for bob " + forBob.tokenInfo().owner() + " " + forBob.tokenInfo().tokenRequester());

      alice.expireDelegationToken(t.hmac(), new ExpireDelegationTokenOptions().expiryTimePeriodMs(-1)).expiryTimestamp().get();
      try (KafkaProducer<String, String> p = new KafkaProducer<>(tp, new StringSerializer(), new StringSerializer())) {
        p.send(new ProducerRecord<>("java-token", "late")).get();
        System.out.println("expired token produced");
      } catch (Exception e) { System.out.println("expired token " + failure(e)); }
      try { alice.renewDelegationToken(t.hmac()).expiryTimestamp().get(); System.out.println("renewed expired"); }
      catch (Exception e) { System.out.println("renew expired " + failure(e)); }
    }
  }
}
"""


def test_java_client_creates_logs_in_with_renews_and_expires_tokens(broker, tmp_path):
    """The same program against Apache Kafka 4.4 with the same users, ACLs and
    settings prints the same lines (side by side, 2026-12-07)."""
    from tests.integration.java_client import run_java

    out = run_java(tmp_path, "JavaTokens", JAVA_TOKENS, [broker.addr["SASL_PLAINTEXT"]], timeout=180)
    lines = [line for line in out.splitlines() if not line[:4].isdigit()]  # not the client's own log lines
    assert lines == [
        "created User:alice User:alice [User:bob]",
        "described 1 true true",
        "carol sees 0",  # neither owner nor renewer, no DESCRIBE on the token
        "token records 5",  # as alice, under alice's ACLs
        "token describe UnsupportedByAuthenticationException",
        "carol renew DelegationTokenOwnerMismatchException",
        "bob renew true",
        "alice for bob DelegationTokenAuthorizationException",  # no CREATE_TOKENS on User:bob
        "admin for bob User:bob User:admin",
        "expired token SaslAuthenticationException",
        "renew expired DelegationTokenNotFoundException",
    ], out


def test_token_requests_are_refused_on_a_plaintext_listener(broker):
    c = RawClient(broker.addr["INTERNAL"])
    try:
        r = c.request("CreateDelegationToken", 3, {"owner_principal_type": None, "owner_principal_name": None,
                                                   "renewers": [], "max_lifetime_ms": -1})
        assert r["error_code"] == errors.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED
        r = c.request("DescribeDelegationToken", 3, {"owners": None})
        assert (r["error_code"], r["tokens"]) == (errors.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, [])
        r = c.request("RenewDelegationToken", 2, {"hmac": b"x", "renew_period_ms": -1})
        assert (r["error_code"], r["expiry_timestamp_ms"]) == (errors.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, -1)
    finally:
        c.close()


def test_kafka_delegation_tokens_tool(broker, tmp_path):
    """kafka-delegation-tokens (org.apache.kafka.tools.DelegationTokenCommand)
    with a SCRAM login in its --command-config: create, describe by owner,
    expire."""
    import subprocess

    from tests.integration.test_acl_command import kafka_runtime

    rt = kafka_runtime()
    props = tmp_path / "bob.properties"
    props.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
                     "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                     'username="bob" password="bob-secret";\n')

    def tool(*args):
        return subprocess.run(rt.java_command("org.apache.kafka.tools.DelegationTokenCommand",
                                              ["--bootstrap-server", broker.addr["SASL_PLAINTEXT"],
                                               "--command-config", str(props), *args], heap="256M",
                                              jvm_opts=["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]),
                              capture_output=True, text=True, timeout=120)

    created = tool("--create", "--max-life-time-period", "-1", "--renewer-principal", "User:carol")
    assert created.returncode == 0, created.stdout + created.stderr
    token_id = created.stdout.split("Created delegation token with tokenId : ")[1].split()[0]
    row = next(line.split() for line in created.stdout.splitlines() if line.startswith(token_id + " "))
    hmac = row[1]
    assert row[2:5] == ["User:bob", "User:bob", "[User:carol]"]
    described = tool("--describe", "--owner-principal", "User:bob")
    assert described.returncode == 0 and f"{token_id} {hmac}" in described.stdout, described.stdout
    expired = tool("--expire", "--expiry-time-period", "-1", "--hmac", hmac)
    assert expired.returncode == 0 and "Completed expire operation" in expired.stdout, expired.stdout
    assert token_id not in tool("--describe", "--owner-principal", "User:bob").stdout


def test_a_token_made_on_one_broker_works_on_another(etcd, tmp_path):
    """Two brokers sharing one etcd: a token created through one logs in on
    the other, and is expired through it (each computes the HMAC from the
    shared secret; the token travels through the metadata store)."""
    from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    from odradek.embedded import EmbeddedBroker
    from tests.integration.java_client import run_java
    from tests.integration.waiting import wait_until

    config = {"metadata.store": etcd.url("tokens"), "broker.session.timeout.ms": "3000",
              "listeners": "SASL_PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
              "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT",
              "inter.broker.listener.name": "INTERNAL", "sasl.enabled.mechanisms": "SCRAM-SHA-256",
              "delegation.token.secret.key": "shared-by-both"}
    brokers = [EmbeddedBroker(data_dir=str(tmp_path / f"b{i}"), node_id=i, config=config).start() for i in (1, 2)]
    try:
        addr = {b: (f"127.0.0.1:{b.core.endpoints['SASL_PLAINTEXT'][1]}",
                    f"127.0.0.1:{b.core.endpoints['INTERNAL'][1]}") for b in brokers}
        wait_until(lambda: all(len(b.core.image.brokers) == 2 for b in brokers), what="2 registrations")
        admin = AdminClient({"bootstrap.servers": addr[brokers[0]][1]})
        for f in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
                "alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"alice-secret")]).values():
            f.result(15)
        out = run_java(tmp_path, "JavaTokens", JAVA_TOKENS, [addr[brokers[0]][0], addr[brokers[1]][0]], timeout=120)
        lines = [line for line in out.splitlines() if not line[:4].isdigit()]
        assert lines == ["token login on the other broker: 2 brokers", "expired through the other broker"], out
        wait_until(lambda: not brokers[0].core.image.tokens.tokens, what="the removal on broker 1")
    finally:
        for b in brokers:
            b.stop()
