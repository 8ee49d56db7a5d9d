"""Client metrics subscriptions validated as Kafka's controller validates
them (the messages checked against Kafka 4.4 side by side)."""

from __future__ import annotations

import pytest

from odradek.metadata.client_metrics import ClientMetricsError, parse_list, validate
from odradek.protocol import errors


def test_lists_split_as_java_splits_them_and_repeats_count_once():
    assert parse_list(" a , b,a ") == ["a", "b"]
    assert parse_list("  ") == []
    assert parse_list("a,,b") == ["a", "", "b"]


def test_a_valid_subscription():
    validate("s", {"metrics": "org.apache.kafka.producer., *", "interval.ms": " 200 ",
                   "match": "client_id=abc.*, client_software_name = apache-kafka-java"})
    validate("s", {})  # every config at its default


@pytest.mark.parametrize("name, configs, code, message", [
    ("", {"metrics": "*"}, errors.INVALID_REQUEST, "Subscription name can't be empty"),
    ("s", {"bogus": "1"}, errors.INVALID_REQUEST, "Unknown client metrics configuration: bogus"),
    ("s", {"interval.ms": "99"}, errors.INVALID_REQUEST,
     "Invalid value 99 for interval.ms, interval must be between 100 and 3600000 (1 hour)"),
    ("s", {"interval.ms": "3600001"}, errors.INVALID_REQUEST, "interval must be between"),
    ("s", {"interval.ms": "abc"}, errors.INVALID_CONFIG,
     "Invalid value abc for configuration interval.ms: Not a number of type INT"),
    ("s", {"metrics": "a,,b"}, errors.INVALID_CONFIG, "Configuration 'metrics' values must not be empty."),
    ("s", {"match": "client_id="}, errors.INVALID_CONFIG, "Illegal client matching pattern: client_id="),
    ("s", {"match": "client_id=a=b"}, errors.INVALID_CONFIG, "Illegal client matching pattern: client_id=a=b"),
    ("s", {"match": "client_nope=x"}, errors.INVALID_CONFIG, "Illegal client matching pattern: client_nope=x"),
    ("s", {"match": "client_id=["}, errors.INVALID_CONFIG, "Illegal client matching pattern: client_id=["),
])
def test_kafkas_refusals(name, configs, code, message):
    with pytest.raises(ClientMetricsError) as e:
        validate(name, configs)
    assert e.value.error_code == code and message in str(e.value)
