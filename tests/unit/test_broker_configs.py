"""Dynamic broker configs: the image follows the store's ``configs/broker/``
keys (one per broker, ``<default>`` for the cluster default), a broker
resolves a setting as Kafka does (its own dynamic value, the cluster
default, the static settings, Kafka's default), topic configs take their
defaults from there, and values are checked with Kafka's messages."""

from __future__ import annotations

import json

import pytest

from odradek.config import (
    SOURCE_DEFAULT, SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT, SOURCE_STATIC_BROKER, BrokerConfig, ConfigError,
    TopicConfig,
)
from odradek.metadata import broker_configs as dynamic
from odradek.metadata.image import MetadataImage
from odradek.metadata.store import Event, KeyValue


def put(key: str, value: dict, revision: int) -> Event:
    return Event("put", KeyValue(key, json.dumps(value).encode(), revision, revision, 1))


def test_precedence_follows_the_image_and_its_replay():
    image = MetadataImage()
    config = BrokerConfig(node_id=2, props={"log.retention.hours": "100", "message.max.bytes": "5000"})
    config.dynamic = image.broker_configs
    topic = TopicConfig(config, {})
    assert topic.lookup("retention.ms") == (str(100 * 3600000), SOURCE_STATIC_BROKER)
    assert topic.lookup("segment.ms") == (str(7 * 24 * 3600000), SOURCE_DEFAULT)

    version = image.broker_configs.version
    image.apply([put(dynamic.key_of(""), {"log.retention.ms": "7200000", "message.max.bytes": "6000"}, 5)])
    assert image.broker_configs.version != version
    assert TopicConfig(config, {}).lookup("retention.ms") == ("7200000", SOURCE_DYNAMIC_DEFAULT)
    assert config.lookup("message.max.bytes") == ("6000", SOURCE_DYNAMIC_DEFAULT)
    image.apply([put(dynamic.key_of("2"), {"message.max.bytes": "7000"}, 6),
                 put(dynamic.key_of("3"), {"message.max.bytes": "8000"}, 6)])
    assert config.get_int("message.max.bytes") == 7000  # its own, not broker 3's
    assert TopicConfig(config, {}).lookup("max.message.bytes") == ("7000", SOURCE_DYNAMIC_BROKER)
    assert TopicConfig(config, {"max.message.bytes": "10"}).get_int("max.message.bytes") == 10

    # A listing rebuilds the same; a deleted key falls back to the next source.
    replayed = MetadataImage()
    replayed.load([e.kv for e in [put(dynamic.key_of(""), {"log.retention.ms": "7200000"}, 5),
                                  put(dynamic.key_of("2"), {"message.max.bytes": "7000"}, 6)]], 6)
    assert replayed.broker_configs.resources == {"": {"log.retention.ms": "7200000"},
                                                  "2": {"message.max.bytes": "7000"}}
    image.apply([Event("delete", KeyValue(dynamic.key_of("2"), b"", 0, 7, 0))])
    assert config.lookup("message.max.bytes") == ("6000", SOURCE_DYNAMIC_DEFAULT)


@pytest.mark.parametrize("name, value, stored, message", [
    ("log.cleanup.policy", "compact, delete", "compact,delete", None),
    ("log.cleanup.policy", "tidy", None, "String must be one of: compact, delete"),
    ("unclean.leader.election.enable", "TRUE", "true", None),
    ("log.cleaner.min.cleanable.ratio", "1.5", None, "Value must be no more than 1"),
    ("message.max.bytes", "2147483648", None, "Not a number of type INT"),
    ("log.roll.ms", "0", None, "Value must be at least 1"),
    ("compression.type", "brotli", None, "String must be one of: producer, uncompressed, gzip, snappy, lz4, zstd"),
])
def test_values_are_checked_with_kafkas_messages(name, value, stored, message):
    if message is None:
        assert dynamic.validate(name, value) == stored
    else:
        with pytest.raises(ConfigError) as e:
            dynamic.validate(name, value)
        assert e.value.error_code == 42
        assert str(e.value) == f"Invalid value {value} for configuration {name}: {message}"


def test_only_what_odradek_honours_can_change():
    dynamic.check_dynamic(["log.retention.ms", "message.max.bytes", "log.cleaner.backoff.ms"])
    with pytest.raises(ConfigError) as e:
        dynamic.check_dynamic(["log.retention.ms", "num.io.threads", "log.retention.hours"])
    assert (e.value.error_code, str(e.value)) == (
        42, "Cannot update these configs dynamically: [num.io.threads, log.retention.hours]")


def test_kafkas_kerberos_settings_are_stored_per_broker_and_typed():
    """Kafka's dynamic sasl.kerberos.* settings are accepted (stored without
    effect, as on a Kafka broker without GSSAPI), checked for their type, and
    refused at the cluster default with Kafka's message."""
    dynamic.check_dynamic(list(dynamic.KERBEROS) + ["background.threads"])
    assert dynamic.validate("sasl.kerberos.min.time.before.relogin", "58000") == "58000"
    assert dynamic.validate("sasl.kerberos.principal.to.local.rules", "RULE:[1:$1](.*)s/x//, DEFAULT") == \
        "RULE:[1:$1](.*)s/x//,DEFAULT"
    with pytest.raises(ConfigError, match="Not a number of type DOUBLE"):
        dynamic.validate("sasl.kerberos.ticket.renew.window.factor", "abc")
    with pytest.raises(ConfigError) as e:
        dynamic.check_dynamic(["sasl.kerberos.keytab"])
    assert str(e.value) == "Cannot update these configs dynamically: [sasl.kerberos.keytab]"
    dynamic.check_resource("1", ["sasl.kerberos.service.name"])
    dynamic.check_resource("", ["background.threads"])
    with pytest.raises(ConfigError) as e:
        dynamic.check_resource("", ["background.threads", "sasl.kerberos.service.name", "sasl.kerberos.kinit.cmd"])
    assert (e.value.error_code, str(e.value)) == (42, "Cannot update these configs at default cluster level, "
                                                      "broker id must be specified: [sasl.kerberos.service.name, "
                                                      "sasl.kerberos.kinit.cmd]")


def test_background_threads_change_within_half_and_double():
    with pytest.raises(ConfigError, match="Value must be at least 1"):
        dynamic.validate("background.threads", "0")
    for new in (5, 10, 20, 9):
        dynamic.check_thread_count("background.threads", 10, new)
    with pytest.raises(ConfigError) as e:
        dynamic.check_thread_count("background.threads", 10, 21)
    assert str(e.value) == ("Invalid value 21 for configuration background.threads: Dynamic thread count update "
                            "validation failed for background.threads=21, value should not be greater than double "
                            "the current value 10")
    with pytest.raises(ConfigError, match="value should be at least half the current value 10$"):
        dynamic.check_thread_count("background.threads", 10, 4)


@pytest.mark.parametrize("props, message", [
    ({"log.dirs": "/data/a,/data/b"}, "Several log directories are not served"),
    ({"remote.log.storage.system.enable": "true"}, "tiered storage"),
    ({"transaction.two.phase.commit.enable": "TRUE"}, "two-phase commit"),
    ({"transaction.two.phase.commit.enable": "yes"}, "either true or false"),
    ({"create.topic.policy.class.name": "com.acme.Policy"}, "topic-creation policies"),
    ({"alter.config.policy.class.name": "com.acme.Policy"}, "config-change policies"),
    ({"compression.zstd.level": "99"}, "compression.zstd.level: Value must be no more than 22"),
    ({"compression.gzip.level": "0"}, "Value must be between 1 and 9 or equal to -1"),
    ({"log.retention.ms": "a week"}, "log.retention.ms: Not a number of type LONG"),
])
def test_settings_of_features_not_served_are_refused(props, message):
    """A Kafka setting that turns on a feature odradek does not serve stops
    the broker at start, naming the key, rather than being ignored; so does a
    broker default of a topic config that is not of its type or range."""
    from odradek.config import served_notes

    with pytest.raises(ConfigError, match=message):
        served_notes(props)


def test_settings_without_effect_are_noted():
    from odradek.config import served_notes

    assert served_notes({"log.dirs": "/data/a", "remote.log.storage.system.enable": "false",
                         "create.topic.policy.class.name": ""}) == []
    assert served_notes({"metric.reporters": "com.acme.Reporter"}) == [
        "metric.reporters has no effect: Java metrics reporters cannot be loaded; the broker's metrics are served "
        "at /metrics of the HTTP listener (http.listener)"]
