"""Dynamic broker configs and KIP-848 group configs through confluent-kafka's
AdminClient (librdkafka): IncrementalAlterConfigs and AlterConfigs on BROKER
resources (a broker, and the cluster default), refused for settings odradek
cannot change while it runs with Kafka's error and message, reported by
DescribeConfigs with Kafka's sources and synonyms, taking effect at once (a
topic's default retention, message.max.bytes refusing a larger record) and
kept across a restart; on GROUP resources, consumer.session.timeout.ms and
consumer.heartbeat.interval.ms within Kafka's bounds, honoured by the
consumer-group coordinator. Three brokers on etcd: a change made through one
is seen and applied by the others."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic, ResourceType,
)

from odradek.embedded import EmbeddedBroker
from tests.integration.rawclient import RawClient
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

SET, DELETE, APPEND = AlterConfigOpType.SET, AlterConfigOpType.DELETE, AlterConfigOpType.APPEND


def incremental(admin, rtype, name, *ops):
    r = ConfigResource(rtype, name, incremental_configs=[
        ConfigEntry(n, v, incremental_operation=op) for n, v, op in ops])
    admin.incremental_alter_configs([r])[r].result(10)


def refused(admin, rtype, name, *ops):
    with pytest.raises(KafkaException) as e:
        incremental(admin, rtype, name, *ops)
    return e.value.args[0]


def describe(admin, rtype, name):
    r = ConfigResource(rtype, name)
    return admin.describe_configs([r])[r].result(10)


def test_broker_configs_change_apply_and_survive_restart(tmp_path):
    data = str(tmp_path / "data")
    with EmbeddedBroker(data_dir=data, config={"log.retention.hours": "100"}) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        B = ResourceType.BROKER
        before = describe(admin, B, "1")
        assert before["log.retention.hours"].value == "100"
        assert before["log.retention.hours"].source == ConfigSource.STATIC_BROKER_CONFIG.value
        assert before["log.retention.hours"].is_read_only
        assert not before["log.retention.ms"].is_read_only and before["log.retention.ms"].value is None

        # Read-only settings, and values out of Kafka's bounds, are refused as Kafka refuses them.
        err = refused(admin, B, "1", ("num.partitions", "3", SET), ("log.retention.ms", "1000", SET))
        assert err.code() == 42 and err.str() == "Cannot update these configs dynamically: [num.partitions]"
        err = refused(admin, B, "1", ("log.segment.bytes", "10", SET))
        assert err.code() == 42
        assert err.str() == "Invalid value 10 for configuration log.segment.bytes: Value must be at least 1048576"
        err = refused(admin, B, "1", ("log.retention.ms", "abc", SET))
        assert err.str() == "Invalid value abc for configuration log.retention.ms: Not a number of type LONG"

        incremental(admin, B, "1", ("log.retention.ms", "3600000", SET), ("message.max.bytes", "2000", SET),
                    ("log.cleanup.policy", "compact", APPEND))
        after = describe(admin, B, "1")
        assert after["log.retention.ms"].value == "3600000"
        assert after["log.retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        assert after["log.cleanup.policy"].value == "delete,compact"
        # Synonyms in Kafka's order: this broker's dynamic value, then the static and default ones.
        rc = RawClient(b.bootstrap)
        try:
            raw = rc.request("DescribeConfigs", 4, {"resources": [
                {"resource_type": 4, "resource_name": "1", "configuration_keys": ["log.retention.ms"]}],
                "include_synonyms": True, "include_documentation": False})["results"][0]["configs"][0]
        finally:
            rc.close()
        assert [(s["name"], s["value"], s["source"]) for s in raw["synonyms"]] == [
            ("log.retention.ms", "3600000", 2), ("log.retention.hours", "100", 4), ("log.retention.hours", "168", 5)]

        # It takes effect: a new topic's retention, and the record size limit.
        admin.create_topics([NewTopic("dyn", 1, 1)])["dyn"].result(10)
        topic = describe(admin, ResourceType.TOPIC, "dyn")
        assert topic["retention.ms"].value == "3600000"
        assert topic["retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        assert topic["cleanup.policy"].value == "delete,compact"
        p = Producer({"bootstrap.servers": b.bootstrap, "message.max.bytes": 100000})
        results = []
        p.produce("dyn", b"x" * 5000, key=b"k", on_delivery=lambda e, m: results.append(e))
        p.flush(10)
        p.produce("dyn", b"y" * 100, key=b"k", on_delivery=lambda e, m: results.append(e))
        p.flush(10)
        assert [e.name() if e else None for e in results] == ["MSG_SIZE_TOO_LARGE", None]

        # DELETE goes back to the static value; the cluster default comes between.
        incremental(admin, B, "1", ("log.retention.ms", "", DELETE), ("message.max.bytes", "", DELETE))
        assert describe(admin, B, "1")["log.retention.ms"].value is None
        assert describe(admin, ResourceType.TOPIC, "dyn")["retention.ms"].value == str(100 * 3600000)
        b.call(lambda: b.core.admin.alter_broker_config("", {"log.retention.ms": "7200000"}))
        default = describe(admin, ResourceType.TOPIC, "dyn")["retention.ms"]
        assert (default.value, default.source) == ("7200000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)

    with EmbeddedBroker(data_dir=data, config={"log.retention.hours": "100"}) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        kept = describe(admin, ResourceType.BROKER, "1")
        assert kept["log.cleanup.policy"].value == "delete,compact"
        assert kept["log.cleanup.policy"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        assert kept["log.retention.ms"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
        assert b.core.replicas.topic("dyn").config.get("retention.ms") == "7200000"


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_background_threads_resize_the_broker_pool_and_kerberos_settings_are_stored(tmp_path):
    """background.threads sizes the broker's own background pool: a dynamic
    value resizes it at once (within Kafka's half and double), a delete goes
    back to the cluster default and then the static value, flushes keep
    running on it across the changes, and the stop joins its threads. Kafka's
    sasl.kerberos.* settings are stored per broker (AlterConfigs, as
    librdkafka's admin test sets one) and described, without effect."""
    config = {"background.threads": "4"}
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), config=config) as b:
        pool = b.core.background
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        B = ResourceType.BROKER
        admin.create_topics([NewTopic("bg", 1, 1, config={"flush.messages": "1"})])["bg"].result(10)
        producer = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
        flushes = b.core.replicas.flush_time

        def produce_and_flush(n=5):
            before = sum(flushes.counts)
            for i in range(n):
                producer.produce("bg", b"v%d" % i)
                producer.flush(10)
            wait_until(lambda: sum(flushes.counts) >= before + n, what="flushes on the pool")

        start = describe(admin, B, "1")["background.threads"]
        assert (pool.size, start.value, start.source, start.is_read_only) == (
            4, "4", ConfigSource.STATIC_BROKER_CONFIG.value, False)
        produce_and_flush()
        assert {t.name.rpartition("_")[0] for t in pool.threads()} == {pool.name + "-e1"}

        incremental(admin, B, "1", ("background.threads", "8", SET))
        wait_until(lambda: pool.size == 8, what="the pool resized")
        now = describe(admin, B, "1")["background.threads"]
        assert (now.value, now.source) == ("8", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
        produce_and_flush()
        assert any(t.name.startswith(pool.name + "-e2_") for t in pool.threads())
        err = refused(admin, B, "1", ("background.threads", "17", SET))
        assert (err.code(), err.str()) == (42, "Invalid value 17 for configuration background.threads: Dynamic "
                                               "thread count update validation failed for background.threads=17, "
                                               "value should not be greater than double the current value 8")
        assert refused(admin, B, "1", ("background.threads", "0", SET)).str() == \
            "Invalid value 0 for configuration background.threads: Value must be at least 1"

        # The cluster default applies once the broker's own value is deleted; then the static one.
        rc = RawClient(b.bootstrap)
        try:
            def alter_default(*configs):
                return rc.request("IncrementalAlterConfigs", 1, {"resources": [
                    {"resource_type": 4, "resource_name": "", "configs": [
                        {"name": n, "config_operation": 0, "value": v} for n, v in configs]}],
                    "validate_only": False})["responses"][0]

            assert alter_default(("background.threads", "5"))["error_code"] == 0
            incremental(admin, B, "1", ("background.threads", "", DELETE))
            wait_until(lambda: pool.size == 5, what="the cluster default")
            assert describe(admin, B, "1")["background.threads"].source == \
                ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
            produce_and_flush()
            refusal = alter_default(("sasl.kerberos.service.name", "kafka"), ("background.threads", "6"))
            assert (refusal["error_code"], refusal["error_message"]) == (
                42, "Cannot update these configs at default cluster level, broker id must be specified: "
                    "[sasl.kerberos.service.name]")
        finally:
            rc.close()
        b.call(lambda: b.core.admin.alter_broker_config("", {}))
        wait_until(lambda: pool.size == 4, what="the static value")

        # Kafka's dynamic sasl.kerberos.* settings: stored per broker, described, no effect.
        r = ConfigResource(B, "1", set_config={"sasl.kerberos.min.time.before.relogin": "58000"})
        admin.alter_configs([r])[r].result(10)
        relogin = describe(admin, B, "1")["sasl.kerberos.min.time.before.relogin"]
        assert (relogin.value, relogin.source, relogin.is_read_only) == (
            "58000", ConfigSource.DYNAMIC_BROKER_CONFIG.value, False)
        kinit = describe(admin, B, "1")["sasl.kerberos.kinit.cmd"]
        assert (kinit.value, kinit.source) == ("/usr/bin/kinit", ConfigSource.DEFAULT_CONFIG.value)
        err = refused(admin, B, "1", ("sasl.kerberos.ticket.renew.jitter", "x", SET))
        assert err.str() == "Invalid value x for configuration sasl.kerberos.ticket.renew.jitter: " \
                            "Not a number of type DOUBLE"
        produce_and_flush()
        producer.flush(10)
        assert pool.threads()
    assert pool.threads() == []  # the stop joined them, the replaced pools' too


def test_consumer_group_configs_are_bounded_described_and_honoured():
    config = {"group.consumer.min.session.timeout.ms": "500", "group.consumer.min.heartbeat.interval.ms": "100",
              "group.initial.rebalance.delay.ms": "0"}
    with EmbeddedBroker(config=config) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("cg-dyn", 2, 1)])["cg-dyn"].result(10)
        G = ResourceType.GROUP
        err = refused(admin, G, "g-dyn", ("consumer.session.timeout.ms", "70000", SET))
        assert err.code() == 40
        assert err.str() == "consumer.session.timeout.ms must be in the range 500 to 60000 inclusive."
        incremental(admin, G, "g-dyn", ("consumer.session.timeout.ms", "800", SET),
                    ("consumer.heartbeat.interval.ms", "200", SET))
        configs = describe(admin, G, "g-dyn")
        assert configs["consumer.session.timeout.ms"].value == "800"
        assert configs["consumer.session.timeout.ms"].source == ConfigSource.GROUP_CONFIG.value
        other = describe(admin, G, "g-other")["consumer.session.timeout.ms"]
        assert (other.value, other.source) == ("45000", ConfigSource.DEFAULT_CONFIG.value)

        rc = RawClient(b.bootstrap)
        try:
            join = {"group_id": "g-dyn", "member_epoch": 0, "rebalance_timeout_ms": 5000,
                    "subscribed_topic_names": ["cg-dyn"], "topic_partitions": []}
            a = rc.request("ConsumerGroupHeartbeat", 1, dict(join, member_id="a"))
            assert a["error_code"] == 0 and a["heartbeat_interval_ms"] == 200
            # Silent, the member is fenced after the group's 800 ms, not the broker's 45 s.
            started = time.monotonic()
            wait_until(lambda: rc.request("ConsumerGroupDescribe", 1, {"group_ids": ["g-dyn"]})
                       ["groups"][0]["members"] == [], timeout=10, what="the silent member to be fenced")
            assert time.monotonic() - started < 5
        finally:
            rc.close()


def test_a_change_through_one_broker_is_applied_by_all(etcd, tmp_path):
    config = {"metadata.store": etcd.url("dynconf"), "broker.session.timeout.ms": "3000"}
    brokers = [EmbeddedBroker(data_dir=str(tmp_path / f"b{i}"), node_id=i, config=config).start()
               for i in (1, 2, 3)]
    try:
        wait_until(lambda: all(len(b.core.image.brokers) == 3 for b in brokers), what="3 registrations")
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        # The cluster default, set through broker 1, and broker 3's own value.
        r = ConfigResource(ResourceType.BROKER, "3", incremental_configs=[
            ConfigEntry("message.max.bytes", "3000", incremental_operation=SET)])
        admin.incremental_alter_configs([r])[r].result(10)
        brokers[0].call(lambda: brokers[0].core.admin.alter_broker_config("", {"message.max.bytes": "2000"}))
        wait_until(lambda: all(b.core.config.get("message.max.bytes") == ("3000" if b.core.config.node_id == 3
                                                                         else "2000") for b in brokers),
                   what="every broker to follow")
        for b in brokers:
            one = AdminClient({"bootstrap.servers": b.bootstrap})
            entry = describe(one, ResourceType.BROKER, str(b.core.config.node_id))["message.max.bytes"]
            assert entry.source == (ConfigSource.DYNAMIC_BROKER_CONFIG.value if b.core.config.node_id == 3
                                    else ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
        # A topic on every broker: each leader refuses a record over its own limit.
        admin.create_topics([NewTopic("dyn-spread", 3, 1)])["dyn-spread"].result(30)
        wait_until(lambda: all(b.core.replicas.topic("dyn-spread") is not None for b in brokers),
                   what="the partitions to be hosted")
        p = Producer({"bootstrap.servers": brokers[0].bootstrap, "message.max.bytes": 100000})
        errors = {}
        for part in range(3):
            p.produce("dyn-spread", b"z" * 2500, partition=part,
                      on_delivery=lambda e, m: errors.__setitem__(m.partition(), e and e.name()))
        p.flush(15)
        leaders = {i: s.leader for i, s in enumerate(brokers[0].core.image.get("dyn-spread").partitions)}
        assert errors == {i: None if leaders[i] == 3 else "MSG_SIZE_TOO_LARGE" for i in range(3)}
    finally:
        for b in brokers:
            b.stop()


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_odradek_broker_cli_alters_and_shows_broker_configs():
    from tests.integration.test_cli import cli, cli_json

    with EmbeddedBroker() as b:
        bs = b.bootstrap
        cli(bs, "broker", "alter-config", "1", "--set", "log.retention.ms=3600000")
        cli(bs, "broker", "alter-config", "--default", "--set", "log.retention.ms=7200000",
            "--set", "message.max.bytes=2000000")
        assert cli_json(bs, "broker", "config", "1", "--json") == [
            {"name": "log.retention.ms", "value": "3600000", "source": "DYNAMIC_BROKER", "read_only": False},
            {"name": "message.max.bytes", "value": "2000000", "source": "DYNAMIC_DEFAULT_BROKER",
             "read_only": False}]
        assert [c["name"] for c in cli_json(bs, "broker", "config", "--default", "--json")] == [
            "log.retention.ms", "message.max.bytes"]
        refused = cli(bs, "broker", "alter-config", "1", "--set", "num.partitions=3", expect=1)
        assert "INVALID_REQUEST: Cannot update these configs dynamically: [num.partitions]" in refused.err
        cli(bs, "broker", "alter-config", "1", "--delete", "log.retention.ms")
        every = {c["name"]: c for c in cli_json(bs, "broker", "config", "1", "-a", "--json")}
        assert every["log.retention.ms"]["source"] == "DYNAMIC_DEFAULT_BROKER"
        assert every["num.partitions"] == {"name": "num.partitions", "value": "1", "source": "DEFAULT",
                                           "read_only": True}
        assert b.core.config.get("log.retention.ms") == "7200000"

        # AlterConfigs (not incremental) replaces a broker's whole set of dynamic configs.
        admin = AdminClient({"bootstrap.servers": bs})
        whole = ConfigResource(ResourceType.BROKER, "1", set_config={"log.retention.bytes": "1000000"})
        admin.alter_configs([whole])[whole].result(10)
        assert b.core.image.broker_configs.of("1") == {"log.retention.bytes": "1000000"}
        bad = ConfigResource(ResourceType.BROKER, "1", set_config={"broker.id": "7"})
        with pytest.raises(KafkaException) as e:
            admin.alter_configs([bad])[bad].result(10)
        assert e.value.args[0].str() == "Cannot update these configs dynamically: [broker.id]"
        assert b.core.image.broker_configs.of("1") == {"log.retention.bytes": "1000000"}
