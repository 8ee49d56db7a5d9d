"""Dynamic broker configs: settings changed at run time with AlterConfigs or
IncrementalAlterConfigs on a BROKER resource, as in Kafka, per broker
(resource name: the broker id) or as the cluster-wide default (resource
name ""). Each is one key in the metadata store, ``configs/broker/<id>`` or
``configs/broker/<default>`` (a JSON object of the settings), followed by
every broker's image; a broker resolves a setting as Kafka does: its own
dynamic value, else the cluster default, else ``server.properties`` /
``--config``, else Kafka's default.

Only the settings that are dynamic in Kafka 4.4 *and* honoured by odradek
while it runs can be set (``DYNAMIC``): the ``log.*`` defaults of topic
configs (a topic without its own override follows them at once: retention,
segments, compaction, ``message.max.bytes``, ``min.insync.replicas``,
``unclean.leader.election.enable``, ...), the log cleaner's
``log.cleaner.backoff.ms`` and ``log.cleaner.dedupe.buffer.size``, and
``background.threads`` (the size of the broker's background pool,
``odradek.background``; as in Kafka, a change must stay within half and
double the receiving broker's current size), and the replication throttles'
``leader.replication.throttled.rate`` and ``follower.replication.throttled.rate``
(``odradek.replica.throttle``). One more group is stored
without effect, exactly as on a Kafka broker that does not enable GSSAPI:
Kafka's dynamic ``sasl.kerberos.*`` settings (``KERBEROS``), per broker only
(refused at the cluster default, as Kafka refuses them). odradek refuses
GSSAPI at start, so they can never take effect; Kafka's clients and tools
set them on any broker (librdkafka's admin tests do). Every other name,
Kafka's other dynamic settings included (other thread pools, listeners, SSL
and other SASL settings, quotas on connections, tiered storage), is refused
the way Kafka refuses a read-only one: INVALID_REQUEST, "Cannot update these
configs dynamically: [...]". (Kafka also stores names it does not know;
odradek refuses them with the same message.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from odradek.config import (
    HOUR_MS, LONG_MAX, T_BOOLEAN, T_DOUBLE, T_INT, T_LIST, T_LONG, T_STRING, TOPIC_CONFIGS, ConfigError,
)

PREFIX = "configs/broker/"
DEFAULT_RESOURCE = "<default>"  # the key of the cluster-wide default, as Kafka names it

# DescribeConfigs sources of broker settings.
SOURCE_DYNAMIC_BROKER = 2
SOURCE_DYNAMIC_DEFAULT = 3
INVALID_REQUEST = 42


def key_of(resource_name: str) -> str:
    return PREFIX + (resource_name or DEFAULT_RESOURCE)


@dataclass(frozen=True)
class DynamicKey:
    name: str
    type: int
    at_least: float | None = None
    at_most: float | None = None
    choices: tuple[str, ...] | None = None
    also: int | None = None  # one more value allowed outside the bounds (Kafka's "or -1")


_TYPE_NAMES = {T_INT: "INT", T_LONG: "LONG", T_DOUBLE: "DOUBLE"}

# Kafka's lower bounds of the broker settings (its ConfigDef validators).
_AT_LEAST = {
    "message.max.bytes": 0, "log.segment.bytes": 1024 * 1024, "log.roll.ms": 1, "log.roll.jitter.ms": 0,
    "log.index.size.max.bytes": 4, "log.index.interval.bytes": 0, "log.flush.interval.messages": 1,
    "log.segment.delete.delay.ms": 0, "log.cleaner.delete.retention.ms": 0,
    "log.cleaner.min.compaction.lag.ms": 0, "log.cleaner.max.compaction.lag.ms": 1, "min.insync.replicas": 1,
    "log.message.timestamp.before.max.ms": 0, "log.message.timestamp.after.max.ms": 0,
    "log.cleaner.backoff.ms": 0, "log.cleaner.dedupe.buffer.size": 0,
}


#: Kafka's dynamic sasl.kerberos.* settings (its DynamicListenerConfig), with
#: their types and Kafka's defaults: stored, per broker only, and without
#: effect (GSSAPI is refused at start, as on a Kafka broker without GSSAPI).
KERBEROS: dict[str, tuple[int, str | None]] = {
    "sasl.kerberos.service.name": (T_STRING, None),
    "sasl.kerberos.kinit.cmd": (T_STRING, "/usr/bin/kinit"),
    "sasl.kerberos.ticket.renew.window.factor": (T_DOUBLE, "0.8"),
    "sasl.kerberos.ticket.renew.jitter": (T_DOUBLE, "0.05"),
    "sasl.kerberos.min.time.before.relogin": (T_LONG, "60000"),
    "sasl.kerberos.principal.to.local.rules": (T_LIST, "DEFAULT"),
}

#: Settings Kafka takes only per broker, never as the cluster default.
PER_BROKER = frozenset(KERBEROS)


def _dynamic_keys() -> dict[str, DynamicKey]:
    out = {}
    for k in TOPIC_CONFIGS.values():
        if k.broker_key and k.effect:
            least, most = k.bounds or (_AT_LEAST.get(k.broker_key), None)
            out[k.broker_key] = DynamicKey(k.broker_key, k.type, least, most, k.choices, k.also)
    out["log.cleaner.min.cleanable.ratio"] = DynamicKey("log.cleaner.min.cleanable.ratio", T_DOUBLE, 0, 1)
    for name in ("log.retention.ms", "log.roll.ms"):
        out[name] = DynamicKey(name, T_LONG, _AT_LEAST.get(name))
    out["log.cleaner.backoff.ms"] = DynamicKey("log.cleaner.backoff.ms", T_LONG, 0)
    out["log.cleaner.dedupe.buffer.size"] = DynamicKey("log.cleaner.dedupe.buffer.size", T_LONG, 0)
    out["background.threads"] = DynamicKey("background.threads", T_INT, 1)
    out["producer.id.expiration.ms"] = DynamicKey("producer.id.expiration.ms", T_INT, 1)  # odradek.scheduler
    for name in ("leader.replication.throttled.rate", "follower.replication.throttled.rate"):
        out[name] = DynamicKey(name, T_LONG, 0)  # odradek.replica.throttle
    for name, (type_, _) in KERBEROS.items():
        out[name] = DynamicKey(name, type_)
    return out


#: The settings a BROKER resource can change, with their types and bounds.
DYNAMIC: dict[str, DynamicKey] = _dynamic_keys()

#: Kafka's defaults of broker settings that describe under their own names,
#: where they differ from the topic config's default or have none (None).
KAFKA_DEFAULTS: dict[str, str | None] = {
    "log.retention.ms": None, "log.retention.minutes": None, "log.retention.hours": "168",
    "log.roll.ms": None, "log.roll.hours": "168", "log.roll.jitter.ms": None, "log.roll.jitter.hours": "0",
    "log.flush.interval.ms": None, "log.flush.scheduler.interval.ms": str(LONG_MAX),
    "log.cleaner.backoff.ms": "15000", "log.cleaner.dedupe.buffer.size": str(128 * 1024 * 1024),
    "background.threads": "10",
    "leader.replication.throttled.rate": str(LONG_MAX), "follower.replication.throttled.rate": str(LONG_MAX),
    **{name: default for name, (_, default) in KERBEROS.items()},
}
for _k in TOPIC_CONFIGS.values():
    if _k.broker_key and _k.broker_key not in KAFKA_DEFAULTS:
        KAFKA_DEFAULTS[_k.broker_key] = _k.default

#: Kafka's synonyms of a broker setting, the most specific first.
SYNONYMS = {
    "log.retention.ms": ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
    "log.retention.minutes": ("log.retention.minutes", "log.retention.hours"),
    "log.roll.ms": ("log.roll.ms", "log.roll.hours"),
    "log.roll.jitter.ms": ("log.roll.jitter.ms", "log.roll.jitter.hours"),
    "log.flush.interval.ms": ("log.flush.interval.ms", "log.flush.scheduler.interval.ms"),
}

#: Units of the synonyms of a topic's retention.ms and segment.ms, in ms.
SCALES = {"log.retention.ms": 1, "log.retention.minutes": 60000, "log.retention.hours": HOUR_MS,
          "log.roll.ms": 1, "log.roll.hours": HOUR_MS}


def synonyms_of(name: str) -> tuple[str, ...]:
    return SYNONYMS.get(name, (name,))


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def validate(name: str, value: str | None) -> str:
    """``value`` of dynamic setting ``name`` as stored; ConfigError (INVALID_REQUEST)
    with Kafka's message when it is not valid."""
    key = DYNAMIC[name]

    def bad(reason: str) -> ConfigError:
        return ConfigError(f"Invalid value {value} for configuration {name}: {reason}", INVALID_REQUEST)

    if value is None:
        raise bad("Value must be non-null")
    value = value.strip()
    if key.type in (T_INT, T_LONG, T_DOUBLE):
        try:
            n = float(value) if key.type == T_DOUBLE else int(value)
        except ValueError:
            raise bad(f"Not a number of type {_TYPE_NAMES[key.type]}") from None
        if key.type == T_INT and not -2**31 <= n < 2**31 or key.type == T_LONG and not -2**63 <= n < 2**63:
            raise bad(f"Not a number of type {_TYPE_NAMES[key.type]}")
        if n == key.also:
            pass
        elif key.also is not None and not key.at_least <= n <= key.at_most:
            raise bad(f"Value must be between {_number(key.at_least)} and {_number(key.at_most)} or equal to "
                      f"{key.also}")
        elif key.at_least is not None and n < key.at_least:
            raise bad(f"Value must be at least {_number(key.at_least)}")
        elif key.at_most is not None and n > key.at_most:
            raise bad(f"Value must be no more than {_number(key.at_most)}")
    elif key.type == T_BOOLEAN:
        if value.lower() not in ("true", "false"):
            raise bad("Expected value to be either true or false")
        value = value.lower()
    elif key.type == T_LIST:
        items = [x.strip() for x in value.split(",") if x.strip()]
        allowed = sorted({c for choice in key.choices or () for c in choice.split(",")})
        if key.choices and (not items or any(x not in allowed for x in items)):
            raise bad(f"String must be one of: {', '.join(allowed)}")
        value = ",".join(items)
    elif key.type == T_STRING and key.choices and value not in key.choices:
        raise bad(f"String must be one of: {', '.join(key.choices)}")
    return value


def check_dynamic(names) -> None:
    """Refuse, as Kafka does, settings that cannot change while the broker runs."""
    fixed = [n for n in names if n not in DYNAMIC]
    if fixed:
        raise ConfigError(f"Cannot update these configs dynamically: [{', '.join(fixed)}]", INVALID_REQUEST)


def check_resource(resource_name: str, names) -> None:
    """Refuse, as Kafka does, per-broker settings set as the cluster default."""
    if resource_name == "":
        per_broker = [n for n in names if n in PER_BROKER]
        if per_broker:
            raise ConfigError("Cannot update these configs at default cluster level, broker id must be specified: "
                              f"[{', '.join(per_broker)}]", INVALID_REQUEST)


def check_thread_count(name: str, current: int, new: int) -> None:
    """Kafka's rule for a dynamic thread count: within half and double the
    current one."""
    if new == current:
        return
    why = f"Dynamic thread count update validation failed for {name}={new}"
    if new < current // 2:
        why += f", value should be at least half the current value {current}"
    elif new > current * 2:
        why += f", value should not be greater than double the current value {current}"
    else:
        return
    raise ConfigError(f"Invalid value {new} for configuration {name}: {why}", INVALID_REQUEST)


class BrokerConfigCache:
    """Every dynamic broker config in the store: resource ("" for the
    cluster default, else the broker id) -> {name: value}. ``version`` moves
    on every change (the broker re-applies its settings when it does)."""

    def __init__(self):
        self.resources: dict[str, dict[str, str]] = {}
        self.version = 0

    @staticmethod
    def _resource(key: str) -> str:
        name = key[len(PREFIX):]
        return "" if name == DEFAULT_RESOURCE else name

    def put(self, key: str, value: bytes | str) -> None:
        self.resources[self._resource(key)] = {str(k): str(v) for k, v in json.loads(value).items()}
        self.version += 1

    def delete(self, key: str) -> None:
        self.resources.pop(self._resource(key), None)
        self.version += 1

    def clear(self) -> None:
        self.resources.clear()
        self.version += 1

    def of(self, resource_name: str) -> dict[str, str]:
        return self.resources.get(resource_name, {})
