"""Group configs (KIP-848 / KIP-932 dynamic group configs): per-group
overrides of broker settings, one ``configs/group/<group id>`` key each in
the metadata store (a JSON object of the overrides), followed by the image.

Served keys, with Kafka's names and what they default to:

- ``share.auto.offset.reset``: where a share group starts reading a
  partition it has never read: ``latest`` (default), ``earliest``, or
  ``by_duration:<ISO-8601 duration>`` (the first record at or after now
  minus the duration).
- ``share.record.lock.duration.ms``: the acquisition lock of the group's
  records; defaults to ``group.share.record.lock.duration.ms`` (30000),
  bounded by ``group.share.min.record.lock.duration.ms`` (15000) and
  ``group.share.max.record.lock.duration.ms`` (60000).
- ``share.isolation.level``: ``read_uncommitted`` (default) or
  ``read_committed`` (only committed transactional records are delivered).
- ``share.delivery.count.limit`` (``group.share.delivery.count.limit``,
  5, within 2-10), ``share.partition.max.record.locks``
  (``group.share.partition.max.record.locks``, 2000, within 100-10000),
  ``share.heartbeat.interval.ms`` (``group.share.heartbeat.interval.ms``,
  5000, within 5000-15000), ``share.session.timeout.ms``
  (``group.share.session.timeout.ms``, 45000, within 45000-60000); each
  bound is itself a broker setting (``group.share.min...`` /
  ``group.share.max...``).

- ``streams.heartbeat.interval.ms`` (``group.streams.heartbeat.interval.ms``,
  5000, within 5000-15000), ``streams.session.timeout.ms``
  (``group.streams.session.timeout.ms``, 45000, within 45000-60000),
  ``streams.num.standby.replicas`` (``group.streams.num.standby.replicas``,
  0, at most ``group.streams.max.standby.replicas``, 2): streams groups
  (KIP-1071).

- ``consumer.heartbeat.interval.ms`` (``group.consumer.heartbeat.interval.ms``,
  5000, within 5000-15000) and ``consumer.session.timeout.ms``
  (``group.consumer.session.timeout.ms``, 45000, within 45000-60000): KIP-848
  consumer groups, honoured by their coordinator for that group.

The heartbeat and session settings out of their bounds answer Kafka's
"... must be in the range A to B inclusive."

Other group configs of Kafka (``consumer.assignment.interval.ms``, other
``streams.*``, ``share.assignment.interval.ms``,
``share.renew.acknowledge.enable``, ``errors.deadletterqueue.*``) are not
served: setting them answers INVALID_CONFIG.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

PREFIX = "configs/group/"

AUTO_OFFSET_RESET = "share.auto.offset.reset"
LOCK_DURATION = "share.record.lock.duration.ms"
ISOLATION_LEVEL = "share.isolation.level"
DELIVERY_COUNT_LIMIT = "share.delivery.count.limit"
MAX_RECORD_LOCKS = "share.partition.max.record.locks"
HEARTBEAT_INTERVAL = "share.heartbeat.interval.ms"
SESSION_TIMEOUT = "share.session.timeout.ms"
STREAMS_HEARTBEAT_INTERVAL = "streams.heartbeat.interval.ms"
STREAMS_SESSION_TIMEOUT = "streams.session.timeout.ms"
STREAMS_NUM_STANDBY_REPLICAS = "streams.num.standby.replicas"
CONSUMER_HEARTBEAT_INTERVAL = "consumer.heartbeat.interval.ms"
CONSUMER_SESSION_TIMEOUT = "consumer.session.timeout.ms"
#: answered out of bounds with Kafka's "must be in the range ... inclusive"
RANGE_CHECKED = (HEARTBEAT_INTERVAL, SESSION_TIMEOUT, "streams.heartbeat.interval.ms", "streams.session.timeout.ms",
                 CONSUMER_HEARTBEAT_INTERVAL, CONSUMER_SESSION_TIMEOUT)

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def key_of(group_id: str) -> str:
    return PREFIX + group_id


class GroupConfigError(ValueError):
    """An invalid group config name or value (INVALID_CONFIG)."""


def parse_duration_ms(text: str) -> int:
    """``PnDTnHnMn.nS`` (the forms Java's ``Duration.parse`` reads, without signs) in ms."""
    m = _DURATION.match(text)
    if m is None or text in ("P", "PT") or text.endswith("T"):
        raise GroupConfigError(f"Invalid duration {text}")
    d, h, mi, s = m.groups()
    total = int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)
    return int(total * 1000)


@dataclass(frozen=True)
class IntKey:
    """An integer group config: the broker setting it defaults to, and the
    broker settings bounding it (Kafka's names and defaults)."""

    name: str
    broker_key: str
    default: int
    min_key: str
    min_default: int
    max_key: str
    max_default: int


INT_KEYS = {k.name: k for k in (
    IntKey(LOCK_DURATION, "group.share.record.lock.duration.ms", 30000,
           "group.share.min.record.lock.duration.ms", 15000, "group.share.max.record.lock.duration.ms", 60000),
    IntKey(DELIVERY_COUNT_LIMIT, "group.share.delivery.count.limit", 5,
           "group.share.min.delivery.count.limit", 2, "group.share.max.delivery.count.limit", 10),
    IntKey(MAX_RECORD_LOCKS, "group.share.partition.max.record.locks", 2000,
           "group.share.min.partition.max.record.locks", 100, "group.share.max.partition.max.record.locks", 10000),
    IntKey(HEARTBEAT_INTERVAL, "group.share.heartbeat.interval.ms", 5000,
           "group.share.min.heartbeat.interval.ms", 5000, "group.share.max.heartbeat.interval.ms", 15000),
    IntKey(SESSION_TIMEOUT, "group.share.session.timeout.ms", 45000,
           "group.share.min.session.timeout.ms", 45000, "group.share.max.session.timeout.ms", 60000),
    IntKey(STREAMS_HEARTBEAT_INTERVAL, "group.streams.heartbeat.interval.ms", 5000,
           "group.streams.min.heartbeat.interval.ms", 5000, "group.streams.max.heartbeat.interval.ms", 15000),
    IntKey(STREAMS_SESSION_TIMEOUT, "group.streams.session.timeout.ms", 45000,
           "group.streams.min.session.timeout.ms", 45000, "group.streams.max.session.timeout.ms", 60000),
    IntKey(CONSUMER_HEARTBEAT_INTERVAL, "group.consumer.heartbeat.interval.ms", 5000,
           "group.consumer.min.heartbeat.interval.ms", 5000, "group.consumer.max.heartbeat.interval.ms", 15000),
    IntKey(CONSUMER_SESSION_TIMEOUT, "group.consumer.session.timeout.ms", 45000,
           "group.consumer.min.session.timeout.ms", 45000, "group.consumer.max.session.timeout.ms", 60000),
    IntKey(STREAMS_NUM_STANDBY_REPLICAS, "group.streams.num.standby.replicas", 0,
           "", 0, "group.streams.max.standby.replicas", 2),
)}
STRING_DEFAULTS = {AUTO_OFFSET_RESET: "latest", ISOLATION_LEVEL: "read_uncommitted"}


class GroupConfigBounds:
    """The broker settings that give group configs their defaults and limits."""

    def __init__(self, config=None):
        self.config = config

    @classmethod
    def from_broker(cls, config) -> "GroupConfigBounds":
        return cls(config)

    def _int(self, key: str, default: int) -> int:
        return self.config.get_int(key, default) if self.config is not None else default

    @staticmethod
    def broker_key(name: str) -> str | None:
        """The broker setting a group config defaults to (its synonym)."""
        k = INT_KEYS.get(name)
        return k.broker_key if k is not None else None

    def from_broker_config(self, name: str) -> bool:
        """Whether the default of ``name`` is a setting of the broker's config file."""
        k = INT_KEYS.get(name)
        return k is not None and self.config is not None and k.broker_key in getattr(self.config, "props", {})

    def defaults(self) -> dict[str, str]:
        out = dict(STRING_DEFAULTS)
        for k in INT_KEYS.values():
            out[k.name] = str(self._int(k.broker_key, k.default))
        return out

    def validate(self, name: str, value: str | None) -> str:
        """``value`` for ``name`` as stored; raises GroupConfigError."""
        if name not in STRING_DEFAULTS and name not in INT_KEYS:
            raise GroupConfigError(f"Unknown group config name: {name}")
        if value is None:
            raise GroupConfigError(f"Invalid value null for configuration {name}")
        if name == AUTO_OFFSET_RESET:
            if value not in ("latest", "earliest"):
                if not value.startswith("by_duration:"):
                    raise GroupConfigError(
                        f"Invalid value {value} for configuration {name}: The value must be either 'earliest', "
                        "'latest' or of the format 'by_duration:<PnDTnHnMn.nS>'.")
                parse_duration_ms(value[len("by_duration:"):])
        elif name == ISOLATION_LEVEL:
            if value not in ("read_uncommitted", "read_committed"):
                raise GroupConfigError(f"Invalid value {value} for configuration {name}: String must be one of: "
                                       "read_committed, read_uncommitted")
        else:
            k = INT_KEYS[name]
            try:
                n = int(value)
            except ValueError:
                raise GroupConfigError(f"Invalid value {value} for configuration {name}: Not a number of type INT")
            lo, hi = self._int(k.min_key, k.min_default), self._int(k.max_key, k.max_default)
            if name in RANGE_CHECKED and not lo <= n <= hi:
                raise GroupConfigError(f"{name} must be in the range {lo} to {hi} inclusive.")
            if not k.min_key and not lo <= n <= hi:
                raise GroupConfigError(
                    f"Invalid value {value} for configuration {name}: {name} must be greater than or equal to "
                    f"{lo} and less than or equal to {k.max_key} ({hi})")
            if not lo <= n <= hi:
                raise GroupConfigError(
                    f"Invalid value {value} for configuration {name}: {name} must be greater than or equal to "
                    f"{k.min_key} ({lo}) and less than or equal to {k.max_key} ({hi})")
        return value


class GroupConfigCache:
    """Every group's overrides, as the store holds them: group id -> {name: value}.
    Also the cache of other resources kept the same way, one JSON object per
    ``<prefix><name>`` key (client metrics subscriptions)."""

    def __init__(self, prefix: str = PREFIX):
        self.prefix = prefix
        self.groups: dict[str, dict[str, str]] = {}

    def put(self, key: str, value: bytes | str) -> None:
        self.groups[key[len(self.prefix):]] = {str(k): str(v) for k, v in json.loads(value).items()}

    def delete(self, key: str) -> None:
        self.groups.pop(key[len(self.prefix):], None)

    def clear(self) -> None:
        self.groups.clear()

    def of(self, group_id: str) -> dict[str, str]:
        return self.groups.get(group_id, {})
