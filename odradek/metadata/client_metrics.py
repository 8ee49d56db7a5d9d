"""Client metrics subscriptions: KIP-714's CLIENT_METRICS config resources,
one ``configs/client-metrics/<name>`` key each in the metadata store (a JSON
object of the subscription's configs), followed by the image.

A subscription has three configs, as in Kafka:

- ``metrics``: the metric name prefixes to collect (a list; ``*`` for all;
  default none);
- ``interval.ms``: how often a client pushes them (100 to 3600000, default
  300000);
- ``match``: which clients (a list of ``<selector>=<regular expression>``,
  the selectors ``client_instance_id``, ``client_id``,
  ``client_software_name``, ``client_software_version``,
  ``client_source_address``, ``client_source_port``; default every client).

They are stored, validated, described and listed as Kafka does, so
``kafka-client-metrics`` and the Admin API work. As on a Kafka broker without
a client telemetry receiver plugin, no client is ever sent them: the
telemetry APIs (GetTelemetrySubscriptions, PushTelemetry) are not served, so
clients push no metrics.

Validation is Kafka's: a subscription's whole new config is checked, an
unknown name or an interval out of bounds answers INVALID_REQUEST, a
malformed list or pattern INVALID_CONFIG, each with Kafka's message. Patterns
are compiled with Python's ``re`` where Kafka uses Java's.
"""

from __future__ import annotations

import re

from odradek.config import T_INT, T_LIST
from odradek.protocol import errors

PREFIX = "configs/client-metrics/"
METRICS, INTERVAL_MS, MATCH = "metrics", "interval.ms", "match"
DEFAULTS = {METRICS: "", INTERVAL_MS: "300000", MATCH: ""}
TYPES = {METRICS: T_LIST, INTERVAL_MS: T_INT, MATCH: T_LIST}
MIN_INTERVAL_MS, MAX_INTERVAL_MS = 100, 3600000
SELECTORS = ("client_instance_id", "client_id", "client_software_name", "client_software_version",
             "client_source_address", "client_source_port")
_LIST_SEPARATOR = re.compile(r"\s*,\s*")


class ClientMetricsError(ValueError):
    """An invalid subscription; ``error_code`` is what Kafka answers."""

    def __init__(self, message: str, error_code: int):
        super().__init__(message)
        self.error_code = error_code


def key_of(name: str) -> str:
    return PREFIX + name


def parse_list(value: str) -> list[str]:
    """A LIST config's items, split as Java's ConfigDef splits them; a
    repeated item counts once (Kafka 4.4 stores ``a,a`` as ``a``)."""
    value = value.strip()
    return list(dict.fromkeys(_LIST_SEPARATOR.split(value))) if value else []


def validate(name: str, configs: dict[str, str]) -> None:
    """Check a subscription's whole new config as Kafka's controller checks it."""
    if not name:
        raise ClientMetricsError("Subscription name can't be empty", errors.INVALID_REQUEST)
    for key in configs:
        if key not in DEFAULTS:
            raise ClientMetricsError(f"Unknown client metrics configuration: {key}", errors.INVALID_REQUEST)
    for key in (METRICS, MATCH):
        if key in configs:
            if "" in parse_list(configs[key]):
                raise ClientMetricsError(f"Configuration '{key}' values must not be empty.", errors.INVALID_CONFIG)
    if INTERVAL_MS in configs:
        text = configs[INTERVAL_MS].strip()
        try:
            interval = int(text)
            if not -2**31 <= interval < 2**31:
                raise ValueError
        except ValueError:
            raise ClientMetricsError(f"Invalid value {text} for configuration {INTERVAL_MS}: "
                                     "Not a number of type INT", errors.INVALID_CONFIG) from None
        if not MIN_INTERVAL_MS <= interval <= MAX_INTERVAL_MS:
            raise ClientMetricsError(f"Invalid value {interval} for {INTERVAL_MS}, interval must be between "
                                     f"{MIN_INTERVAL_MS} and {MAX_INTERVAL_MS} (1 hour)", errors.INVALID_REQUEST)
    for pattern in parse_list(configs.get(MATCH, "")):
        parts = pattern.split("=")
        while parts and not parts[-1]:
            parts.pop()  # as Java's String.split drops trailing empty strings
        ok = len(parts) == 2 and parts[0].strip() in SELECTORS
        if ok:
            try:
                re.compile(parts[1].strip())
            except re.error:
                ok = False
        if not ok:
            raise ClientMetricsError(f"Illegal client matching pattern: {pattern}", errors.INVALID_CONFIG)
