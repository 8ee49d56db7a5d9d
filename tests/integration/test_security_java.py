"""Apache Kafka's Java client against ``odradek serve --config server.properties``,
the file written as one writes it for a secured Kafka 4.4 (KRaft) broker: an
internal SASL_PLAINTEXT listener, an external SASL_SSL one with SCRAM, a
controller listener, PEM keystore and truststore. The first admin is made
offline with ``odradek user add``; the Java Admin then adds a user through
AlterUserScramCredentials, who produces and consumes over TLS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, free_port, wait_port
from tests.integration.certs import make_pki
from tests.integration.java_client import require_java, run_java

pytestmark = pytest.mark.timeout(300)

SERVER_PROPERTIES = """\
# KRaft, one node
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
controller.listener.names=CONTROLLER
log.dirs={data}

listeners=INTERNAL://127.0.0.1:{internal},SASL_TLS://127.0.0.1:{external},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=INTERNAL://127.0.0.1:{internal},SASL_TLS://127.0.0.1:{external}
listener.security.protocol.map=INTERNAL:SASL_PLAINTEXT,SASL_TLS:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL

sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.internal.sasl.enabled.mechanisms=PLAIN
listener.name.internal.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\
    username="broker" password="broker-secret" user_broker="broker-secret";
listener.name.sasl_tls.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_tls.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;

ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={truststore}
ssl.client.auth=none
ssl.endpoint.identification.algorithm=https
super.users=User:broker;User:admin

num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
"""

SOURCE = r"""
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.serialization.*;

public class JavaSecured {
  static Properties conf(String bs, String ca, String user, String password) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bs);
    p.put("security.protocol", "SASL_SSL");
    p.put("sasl.mechanism", "SCRAM-SHA-512");
    p.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
        + user + "\" password=\"" + password + "\";");
    p.put("ssl.truststore.type", "PEM");
    p.put("ssl.truststore.location", ca);
    return p;
  }

  public static void main(String[] a) throws Exception {
    String bs = a[0], ca = a[1], topic = "secured";
    try (Admin admin = Admin.create(conf(bs, ca, "admin", "admin-secret"))) {
      System.out.println("cluster " + admin.describeCluster().nodes().get().size());
      admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get();
      admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("carol",
          new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), "carol-secret"))).all().get();
      for (UserScramCredentialsDescription d : admin.describeUserScramCredentials().all().get().values())
        for (ScramCredentialInfo i : d.credentialInfos())
          System.out.println("user " + d.name() + " " + i.mechanism() + " " + i.iterations());
    }
    Properties pp = conf(bs, ca, "carol", "carol-secret");
    try (KafkaProducer<String, String> p = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
      for (int i = 0; i < 10; i++) p.send(new ProducerRecord<>(topic, "k" + i, "v" + i)).get();
      System.out.println("produced 10");
    }
    Properties cp = conf(bs, ca, "carol", "carol-secret");
    cp.put("group.id", "secured-group");
    cp.put("auto.offset.reset", "earliest");
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
      c.subscribe(List.of(topic));
      int got = 0;
      long deadline = System.currentTimeMillis() + 60000;
      while (got < 10 && System.currentTimeMillis() < deadline) got += c.poll(Duration.ofMillis(500)).count();
      c.commitSync();
      System.out.println("consumed " + got);
    }
    Properties bad = conf(bs, ca, "carol", "wrong");
    bad.put("request.timeout.ms", "5000");
    bad.put("default.api.timeout.ms", "8000");
    try (Admin admin = Admin.create(bad)) {
      admin.describeCluster().nodes().get();
      System.out.println("bad password accepted");
    } catch (java.util.concurrent.ExecutionException e) {
      System.out.println("bad password " + (e.getCause() instanceof SaslAuthenticationException ? "refused" : e.getCause()));
    }
  }
}
"""


def test_java_client_with_a_kafka_server_properties(tmp_path):
    require_java()
    pki = make_pki(tmp_path / "pki")
    server = pki.issue("server", "CN=localhost,O=odradek", server=True)
    data = tmp_path / "data"
    ports = {"internal": free_port(), "external": free_port(), "controller": free_port()}
    conf = tmp_path / "server.properties"
    conf.write_text(SERVER_PROPERTIES.format(data=data, keystore=server["pem"], truststore=pki.ca_file, **ports))
    env = dict(os.environ, ODRADEK_USER_PASSWORD="admin-secret")
    subprocess.run([sys.executable, "-m", "odradek", "user", "add", "admin", "-m", "SCRAM-SHA-512",
                    "--config", str(conf)], check=True, cwd=ROOT, env=env, capture_output=True, timeout=60)
    proc = subprocess.Popen([sys.executable, "-m", "odradek", "serve", "--config", str(conf),
                             "--log-level", "WARNING"], cwd=ROOT)
    try:
        wait_port(ports["external"], proc=proc)
        out = run_java(tmp_path, "JavaSecured", SOURCE, [f"127.0.0.1:{ports['external']}", pki.ca_file])
    finally:
        proc.terminate()
        proc.wait(15)
    lines = out.splitlines()
    assert "cluster 1" in lines
    assert "user admin SCRAM_SHA_512 4096" in lines and "user carol SCRAM_SHA_512 8192" in lines
    assert "produced 10" in lines and "consumed 10" in lines
    assert "bad password refused" in lines
