"""Apache Kafka's own ``kafka-configs`` (org.apache.kafka.tools.ConfigCommand)
where it needs more than DescribeConfigs and AlterConfigs: the broker's
loggers as Kafka's BROKER_LOGGER resource (``--entity-type broker-loggers``:
described with the levels they follow, a level set and taken back, so that
the logger follows its ancestors again, and Kafka's refusals: an unknown
level, the root's level removed), ``--describe`` of every group's
configs, which lists them with ListConfigResources, and client metrics
subscriptions (KIP-714's CLIENT_METRICS resources) with
``kafka-client-metrics`` (org.apache.kafka.tools.ClientMetricsCommand)."""

from __future__ import annotations

import logging
import subprocess

import pytest

from tests.integration.test_acl_command import kafka_runtime

pytestmark = pytest.mark.timeout(180)


def configs(rt, addr: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(rt.java_command("org.apache.kafka.tools.ConfigCommand", ["--bootstrap-server", addr, *args],
                                          heap="256M", jvm_opts=["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]),
                          capture_output=True, text=True, timeout=120)


def described(out: str) -> dict:
    return dict(line.strip().split(" ")[0].split("=", 1) for line in out.splitlines() if "sensitive=" in line)


def test_kafka_configs_broker_loggers(odradek_broker):
    rt = kafka_runtime()
    addr, me = odradek_broker.bootstrap, str(odradek_broker.broker.core.config.node_id)
    fetcher = logging.getLogger("odradek.replica.fetcher")
    loggers = ["--entity-type", "broker-loggers", "--entity-name", me]
    before = described(configs(rt, addr, "--describe", *loggers).stdout)
    assert before["root"] == logging.getLevelName(logging.getLogger().level).replace("WARNING", "WARN")
    assert before["odradek.replica.fetcher"] == before["odradek.replica"] == before["root"]
    try:
        out = configs(rt, addr, "--alter", *loggers, "--add-config", "odradek.replica=TRACE")
        assert out.returncode == 0, out.stdout + out.stderr
        assert fetcher.getEffectiveLevel() == 5 and logging.getLevelName(5) == "TRACE"
        after = described(configs(rt, addr, "--describe", *loggers).stdout)
        assert after["odradek.replica"] == after["odradek.replica.fetcher"] == "TRACE"
        assert after["root"] == before["root"]
        refused = configs(rt, addr, "--alter", *loggers, "--add-config", "odradek.replica=LOUD")
        assert refused.returncode != 0 and "not a supported log level" in refused.stderr + refused.stdout
        refused = configs(rt, addr, "--alter", *loggers, "--delete-config", "root")
        assert refused.returncode != 0 and "root logger is not allowed" in refused.stderr + refused.stdout
        # (the tool checks a broker id it is given itself: another broker's is refused in test_admin_apis)
        out = configs(rt, addr, "--alter", *loggers, "--delete-config", "odradek.replica")
        assert out.returncode == 0, out.stdout + out.stderr
        assert described(configs(rt, addr, "--describe", *loggers).stdout)["odradek.replica.fetcher"] == before["root"]
    finally:
        logging.getLogger("odradek.replica").setLevel(logging.NOTSET)
    assert logging.getLogger("odradek.replica").level == logging.NOTSET


def test_kafka_configs_describes_every_group_with_configs(odradek_broker):
    rt = kafka_runtime()
    addr = odradek_broker.bootstrap
    for group, value in (("configured-a", "50000"), ("configured-b", "60000")):
        out = configs(rt, addr, "--alter", "--entity-type", "groups", "--entity-name", group,
                      "--add-config", f"consumer.session.timeout.ms={value}")
        assert out.returncode == 0, out.stdout + out.stderr
    out = configs(rt, addr, "--describe", "--entity-type", "groups")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Dynamic configs for group configured-a are:" in out.stdout
    assert "Dynamic configs for group configured-b are:" in out.stdout
    assert "consumer.session.timeout.ms=60000" in out.stdout


def client_metrics(rt, addr: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(rt.java_command("org.apache.kafka.tools.ClientMetricsCommand",
                                          ["--bootstrap-server", addr, *args], heap="256M",
                                          jvm_opts=["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]),
                          capture_output=True, text=True, timeout=120)


def test_kafka_client_metrics_subscriptions(odradek_broker):
    """kafka-client-metrics as on Kafka 4.4 (outputs compared side by side):
    a subscription altered, listed, described with its defaults filled in,
    Kafka's refusals with Kafka's messages, and deleted."""
    rt = kafka_runtime()
    addr = odradek_broker.bootstrap
    ok = client_metrics(rt, addr, "--alter", "--name", "prod", "--metrics",
                        "org.apache.kafka.producer.,org.apache.kafka.producer.", "--interval", "60000",
                        "--match", "client_id=abc.*,client_software_name=apache-kafka-java")
    assert ok.returncode == 0 and "Altered client metrics config for prod." in ok.stdout, ok.stdout + ok.stderr
    assert client_metrics(rt, addr, "--alter", "--name", "all", "--metrics", "*").returncode == 0
    assert {"all", "prod"} <= set(client_metrics(rt, addr, "--list").stdout.split())  # (the broker is shared)
    assert client_metrics(rt, addr, "--describe", "--name", "prod").stdout.splitlines() == [
        "Client metrics configs for prod are:", "  interval.ms=60000",
        "  match=client_id=abc.*,client_software_name=apache-kafka-java",
        "  metrics=org.apache.kafka.producer."]  # a repeated prefix counts once, as on Kafka
    assert client_metrics(rt, addr, "--describe", "--name", "all").stdout.splitlines()[1:] == [
        "  interval.ms=300000", "  match=", "  metrics=*"]
    for args, message in ((["--interval", "50"], "interval must be between 100 and 3600000 (1 hour)"),
                          (["--match", "client_nope=x"], "Illegal client matching pattern: client_nope=x"),
                          (["--match", "client_id=["], "Illegal client matching pattern: client_id=[")):
        refused = client_metrics(rt, addr, "--alter", "--name", "prod", *args)
        assert refused.returncode != 0 and message in refused.stdout, refused.stdout + refused.stderr
    refused = configs(rt, addr, "--alter", "--entity-type", "client-metrics", "--entity-name", "all",
                      "--add-config", "interval.ms=1000,bogus=1")
    assert refused.returncode != 0 and "Unknown client metrics configuration: bogus" in refused.stdout + refused.stderr
    assert described(configs(rt, addr, "--describe", "--entity-type", "client-metrics", "--entity-name", "all",
                             "--all").stdout) == {"interval.ms": "300000", "match": "", "metrics": "*"}
    assert client_metrics(rt, addr, "--delete", "--name", "prod").returncode == 0
    gone = client_metrics(rt, addr, "--describe", "--name", "prod")
    assert "The client metric resource prod doesn't exist" in gone.stdout, gone.stdout
    listed = client_metrics(rt, addr, "--list").stdout.split()
    assert "all" in listed and "prod" not in listed
    assert client_metrics(rt, addr, "--delete", "--name", "all").returncode == 0
