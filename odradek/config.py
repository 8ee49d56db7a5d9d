"""Broker and topic configuration, with Kafka's key names and defaults.

A topic's effective config is: its own overrides, else the broker's setting
for the matching ``log.*`` key (a dynamic broker config of this broker or
the cluster's default, ``odradek.metadata.broker_configs``, else
``server.properties`` / ``--config``), else Kafka's default.
DescribeConfigs reports which applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from odradek.storage.base import LogConfig

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
LONG_MAX = 2**63 - 1

# Config sources as DescribeConfigs reports them.
SOURCE_TOPIC = 1
SOURCE_DYNAMIC_BROKER = 2
SOURCE_DYNAMIC_DEFAULT = 3
SOURCE_STATIC_BROKER = 4
SOURCE_DEFAULT = 5

# Config types as DescribeConfigs v3+ reports them.
T_BOOLEAN, T_STRING, T_INT, T_SHORT, T_LONG, T_DOUBLE, T_LIST, T_CLASS, T_PASSWORD = range(1, 10)


@dataclass(frozen=True)
class TopicConfigKey:
    name: str
    type: int
    default: str
    broker_key: str | None = None
    choices: tuple[str, ...] | None = None
    bounds: tuple[int, int] | None = None  # (least, most) of a number, Kafka's Range
    also: int | None = None  # one more value allowed outside ``bounds`` (Kafka's "or -1")
    effect: bool = True  # False: taken and described, without effect here (never a dynamic broker setting)
    internal: bool = False  # Kafka's internal config: described only when the topic sets it


TOPIC_CONFIGS: dict[str, TopicConfigKey] = {
    k.name: k
    for k in [
        TopicConfigKey("cleanup.policy", T_LIST, "delete", "log.cleanup.policy",
                       ("delete", "compact", "compact,delete", "delete,compact")),
        TopicConfigKey("compression.type", T_STRING, "producer", "compression.type",
                       ("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd")),
        TopicConfigKey("delete.retention.ms", T_LONG, str(DAY_MS), "log.cleaner.delete.retention.ms"),
        TopicConfigKey("file.delete.delay.ms", T_LONG, "60000", "log.segment.delete.delay.ms"),
        TopicConfigKey("flush.messages", T_LONG, str(LONG_MAX), "log.flush.interval.messages"),
        TopicConfigKey("flush.ms", T_LONG, str(LONG_MAX), "log.flush.interval.ms"),
        TopicConfigKey("index.interval.bytes", T_INT, "4096", "log.index.interval.bytes"),
        TopicConfigKey("leader.replication.throttled.replicas", T_LIST, ""),  # odradek.replica.throttle
        TopicConfigKey("follower.replication.throttled.replicas", T_LIST, ""),
        TopicConfigKey("max.compaction.lag.ms", T_LONG, str(LONG_MAX), "log.cleaner.max.compaction.lag.ms"),
        TopicConfigKey("max.message.bytes", T_INT, "1048588", "message.max.bytes"),
        TopicConfigKey("message.timestamp.type", T_STRING, "CreateTime", "log.message.timestamp.type",
                       ("CreateTime", "LogAppendTime")),
        TopicConfigKey("message.timestamp.before.max.ms", T_LONG, str(LONG_MAX),
                       "log.message.timestamp.before.max.ms"),
        TopicConfigKey("message.timestamp.after.max.ms", T_LONG, str(LONG_MAX),
                       "log.message.timestamp.after.max.ms"),
        TopicConfigKey("min.cleanable.dirty.ratio", T_DOUBLE, "0.5", "log.cleaner.min.cleanable.ratio"),
        TopicConfigKey("min.compaction.lag.ms", T_LONG, "0", "log.cleaner.min.compaction.lag.ms"),
        TopicConfigKey("min.insync.replicas", T_INT, "1", "min.insync.replicas"),
        TopicConfigKey("retention.bytes", T_LONG, "-1", "log.retention.bytes"),
        TopicConfigKey("retention.ms", T_LONG, str(7 * DAY_MS), None),
        TopicConfigKey("segment.bytes", T_INT, str(1024**3), "log.segment.bytes", bounds=(1024**2, 2**31 - 1)),
        TopicConfigKey("segment.index.bytes", T_INT, str(10 * 1024 * 1024), "log.index.size.max.bytes"),
        TopicConfigKey("segment.jitter.ms", T_LONG, "0", "log.roll.jitter.ms"),
        TopicConfigKey("segment.ms", T_LONG, str(7 * DAY_MS), None),
        TopicConfigKey("unclean.leader.election.enable", T_BOOLEAN, "false",
                       "unclean.leader.election.enable"),
        # The level of a codec when the broker compresses (compression.type other than producer, KIP-390).
        TopicConfigKey("compression.gzip.level", T_INT, "-1", "compression.gzip.level", bounds=(1, 9), also=-1),
        TopicConfigKey("compression.lz4.level", T_INT, "9", "compression.lz4.level", bounds=(1, 17)),
        TopicConfigKey("compression.zstd.level", T_INT, "3", "compression.zstd.level", bounds=(-131072, 22)),
        # The largest record, decompressed, of a compressed batch (Kafka 4.4).
        TopicConfigKey("max.decompressed.message.bytes", T_INT, "2147483639", "max.decompressed.message.bytes",
                       bounds=(1, 2147483639)),
        # Taken without effect: preallocation, and tiered storage's settings (remote.storage.enable=true
        # is refused, as by a Kafka broker without remote.log.storage.system.enable).
        TopicConfigKey("preallocate", T_BOOLEAN, "false", "log.preallocate", effect=False),
        TopicConfigKey("remote.storage.enable", T_BOOLEAN, "false", effect=False),
        TopicConfigKey("local.retention.ms", T_LONG, "-2", "log.local.retention.ms", bounds=(-2, LONG_MAX), effect=False),
        TopicConfigKey("local.retention.bytes", T_LONG, "-2", "log.local.retention.bytes", bounds=(-2, LONG_MAX), effect=False),
        TopicConfigKey("remote.log.copy.disable", T_BOOLEAN, "false", effect=False),
        TopicConfigKey("remote.log.delete.on.disable", T_BOOLEAN, "false", effect=False),
        TopicConfigKey("remote.copy.lag.ms", T_LONG, "0", "log.remote.copy.lag.ms", bounds=(-1, LONG_MAX), effect=False),
        TopicConfigKey("remote.copy.lag.bytes", T_LONG, "-1", "log.remote.copy.lag.bytes", bounds=(-1, LONG_MAX), effect=False),
        # Whether share groups may use the topic as a dead-letter queue (none does here).
        TopicConfigKey("errors.deadletterqueue.group.enable", T_BOOLEAN, "false", effect=False),
        # Kafka 4's internal override of segment.bytes, without segment.bytes's 1 MiB floor (for tests).
        TopicConfigKey("internal.segment.bytes", T_INT, "", bounds=(1, 2**31 - 1), internal=True),
    ]
}
TIERED_STORAGE_OFF = ("Tiered Storage functionality is disabled in the broker. Topic cannot be configured with "
                      "remote log storage.")

# Kafka's PASSWORD-type broker settings (also listener- and mechanism-prefixed):
# DescribeConfigs marks them sensitive and never shows their values.
PASSWORD_KEYS = frozenset({
    "ssl.key.password", "ssl.keystore.password", "ssl.truststore.password", "ssl.keystore.key",
    "ssl.keystore.certificate.chain", "ssl.truststore.certificates", "sasl.jaas.config",
    "delegation.token.secret.key", "delegation.token.master.key", "password.encoder.secret",
    "password.encoder.old.secret", "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.passphrase",
})


def sensitive(name: str) -> bool:
    """Whether broker setting ``name`` holds a secret: one of Kafka's PASSWORD
    settings under any listener or mechanism prefix, or any name that says
    password, secret or JAAS (kept hidden rather than guessed at)."""
    lowered = name.lower()
    if any(word in lowered for word in ("password", "secret", "jaas")):
        return True
    parts = lowered.split(".")
    return any(".".join(parts[i:]) in PASSWORD_KEYS for i in range(len(parts)))


BROKER_DEFAULTS: dict[str, str] = {
    "num.partitions": "1",
    "default.replication.factor": "1",
    "auto.create.topics.enable": "true",
    "delete.topic.enable": "true",
    "message.max.bytes": "1048588",
    "socket.request.max.bytes": str(100 * 1024 * 1024),
    "connections.max.idle.ms": "600000",
    "log.retention.check.interval.ms": "300000",
    "log.flush.scheduler.interval.ms": str(LONG_MAX),
    "log.flush.offset.checkpoint.interval.ms": "60000",
    "offsets.topic.num.partitions": "50",
    "broker.session.timeout.ms": "9000",
    "offsets.topic.replication.factor": "3",
    "unclean.leader.election.enable": "false",
    "auto.leader.rebalance.enable": "true",
    "leader.imbalance.check.interval.seconds": "300",
    "leader.imbalance.per.broker.percentage": "10",
    "controlled.shutdown.enable": "true",
    "controlled.shutdown.timeout.ms": "30000",
    "offsets.retention.minutes": "10080",
    "offsets.commit.timeout.ms": "5000",
    "offsets.retention.check.interval.ms": "600000",
    "group.initial.rebalance.delay.ms": "3000",
    "group.min.session.timeout.ms": "6000",
    "group.max.session.timeout.ms": "1800000",
    "group.consumer.heartbeat.interval.ms": "5000",
    "group.consumer.session.timeout.ms": "45000",
    "group.consumer.max.size": str(2**31 - 1),
    "group.consumer.assignors": "uniform,range",
    "group.consumer.migration.policy": "bidirectional",
    # Idempotent producers' state per partition (odradek.producers, odradek.scheduler).
    "producer.id.expiration.ms": "86400000",
    "producer.id.expiration.check.interval.ms": "600000",
    # Share groups (odradek.coordinator.share_groups, odradek.share).
    "group.share.heartbeat.interval.ms": "5000",
    "group.share.session.timeout.ms": "45000",
    "group.share.max.size": "200",
    "group.share.record.lock.duration.ms": "30000",
    "group.share.min.record.lock.duration.ms": "15000",
    "group.share.max.record.lock.duration.ms": "60000",
    "group.share.delivery.count.limit": "5",
    "group.share.partition.max.record.locks": "2000",
    "group.share.max.share.sessions": "2000",
    "share.coordinator.write.timeout.ms": "5000",
    "log.cleaner.enable": "true",
    "log.cleaner.backoff.ms": "15000",
    "broker.rack": "",
    # Replication (odradek.replica): Kafka's defaults.
    "replica.lag.time.max.ms": "30000",
    "replica.fetch.wait.max.ms": "500",
    "replica.fetch.min.bytes": "1",
    "replica.fetch.max.bytes": "1048576",
    "replica.fetch.response.max.bytes": "10485760",
    "replica.fetch.backoff.ms": "1000",
    "replica.socket.timeout.ms": "30000",
    # Replication throttles (odradek.replica.throttle): unset, none.
    "leader.replication.throttled.rate": str(LONG_MAX),
    "follower.replication.throttled.rate": str(LONG_MAX),
}


class ConfigError(ValueError):
    """An invalid config name or value; ``error_code`` is the Kafka error (40 INVALID_CONFIG)."""

    def __init__(self, message: str, error_code: int = 40):
        super().__init__(message)
        self.error_code = error_code


def parse_properties(text: str) -> dict[str, str]:
    """Parse Java ``.properties`` text as ``java.util.Properties.load`` does: ``#``
    and ``!`` comments, ``key=value``, ``key: value`` or ``key value``, a line
    ending in an odd number of backslashes continued on the next (whose leading
    blanks are dropped: how JAAS lines are usually written), and the escapes
    ``\\t \\n \\r \\f \\uXXXX`` (any other escaped character stands for itself)."""
    props: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        while _continued(line) and i < len(lines):
            line = line[:-1] + lines[i].lstrip(" \t\f")
            i += 1
        if _continued(line):
            line = line[:-1]
        key_end = _separator(line)
        key = line[:key_end]
        rest = line[key_end:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        stripped = rest.rstrip(" \t\f")  # Kafka trims values; an escaped blank stays
        if not _continued(stripped):
            rest = stripped
        props[_unescape(key)] = _unescape(rest)
    return props


def _continued(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _separator(line: str) -> int:
    """Where the key ends: at the first unescaped '=', ':' or blank."""
    j = 0
    while j < len(line):
        c = line[j]
        if c == "\\":
            j += 2
            continue
        if c in "=: \t\f":
            return j
        j += 1
    return len(line)


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    out, j = [], 0
    while j < len(s):
        c = s[j]
        if c == "\\" and j + 1 < len(s):
            n = s[j + 1]
            if n == "u" and len(s) >= j + 6:
                try:
                    out.append(chr(int(s[j + 2:j + 6], 16)))
                    j += 6
                    continue
                except ValueError:
                    pass
            out.append(_ESCAPES.get(n, n))
            j += 2
            continue
        out.append(c)
        j += 1
    return "".join(out)


@dataclass(frozen=True)
class Listener:
    """One listening endpoint, as in Kafka's ``listeners``: NAME://host:port,
    with its security protocol (``listener.security.protocol.map``)."""

    name: str
    host: str
    port: int
    protocol: str = "PLAINTEXT"


def parse_listeners(text: str) -> list[Listener]:
    """Parse ``PLAINTEXT://:9092,INTERNAL://0.0.0.0:9093``; raises ConfigError."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, sep, rest = item.partition("://")
        host, colon, port = rest.rpartition(":")
        if not sep or not colon or not port.isdigit():
            raise ConfigError(f"Invalid listener {item!r}: expected NAME://host:port")
        out.append(Listener(name.upper(), host.strip("[]"), int(port)))
    if len({l.name for l in out}) != len(out):
        raise ConfigError(f"Listener names must be unique: {text}")
    return out


@dataclass
class BrokerConfig:
    """Static broker settings: Kafka ``server.properties`` keys plus CLI flags."""

    node_id: int = 1
    host: str = "127.0.0.1"
    port: int = 9092
    advertised_host: str | None = None
    data_dir: str | None = "./odradek-data"  # None: in memory
    cluster_id: str | None = None
    props: dict[str, str] = field(default_factory=dict)
    #: the dynamic broker configs (odradek.metadata.broker_configs.BrokerConfigCache),
    #: consulted before ``props``; the broker sets it to its image's
    dynamic: object = field(default=None, compare=False, repr=False)

    def layers(self) -> list[tuple[dict[str, str], int]]:
        """Where a setting can come from, in Kafka's order of precedence, with
        its DescribeConfigs source: this broker's dynamic configs, the
        cluster's dynamic default, the static settings."""
        out = []
        if self.dynamic is not None:
            out.append((self.dynamic.of(str(self.node_id)), SOURCE_DYNAMIC_BROKER))
            out.append((self.dynamic.of(""), SOURCE_DYNAMIC_DEFAULT))
        out.append((self.props, SOURCE_STATIC_BROKER))
        return out

    def lookup(self, key: str) -> tuple[str, int] | None:
        """(value, source) of a setting given anywhere but Kafka's defaults."""
        for layer, source in self.layers():
            if key in layer:
                return layer[key], source
        return None

    def listeners(self) -> list[Listener]:
        """Where to listen: the ``listeners`` property, else ``host``/``port``.

        Each listener's protocol comes from ``listener.security.protocol.map``
        (Kafka's default maps PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL to
        themselves). Listeners named in ``controller.listener.names`` are left
        out: odradek has no KRaft controller. Raises ConfigError.
        """
        from odradek.security.config import SecurityConfigError, controller_listeners, protocol_map

        if not self.props.get("listeners"):
            return [Listener("PLAINTEXT", self.host, self.port)]
        try:
            pmap = protocol_map(self.props)
        except SecurityConfigError as e:
            raise ConfigError(str(e)) from None
        controllers = controller_listeners(self.props)
        out = []
        for l in parse_listeners(self.props["listeners"]):
            if l.name in controllers:
                continue
            if l.name not in pmap:
                raise ConfigError(f"No security protocol defined for listener {l.name} "
                                  f"(listener.security.protocol.map)")
            out.append(Listener(l.name, l.host, l.port, pmap[l.name]))
        if not out:
            raise ConfigError("No listener for clients: every listener is a controller listener")
        return out

    def security(self):
        """The listeners' security settings (``odradek.security.config``), built
        once; raises ConfigError naming a key odradek does not serve."""
        cached = self.__dict__.get("_security")
        if cached is None:
            from odradek.security.config import SecurityConfigError, security_config

            try:
                cached = security_config(self.props, self.listeners())
            except SecurityConfigError as e:
                raise ConfigError(str(e)) from None
            self.__dict__["_security"] = cached
        return cached

    def served_notes(self) -> list[str]:
        """What ``props`` asks of Kafka that is served otherwise or not at all
        (``served_notes``): the notes the broker logs at start; raises
        ConfigError for a setting whose feature is not served."""
        return served_notes(self.props)

    def http_security(self):
        """The HTTP listener's TLS and login (``odradek.security.config.http_security``),
        built once; raises ConfigError naming a key that is wrong."""
        cached = self.__dict__.get("_http_security")
        if cached is None:
            from odradek.security.config import SecurityConfigError, http_security

            try:
                cached = http_security(self.props)
            except SecurityConfigError as e:
                raise ConfigError(str(e)) from None
            self.__dict__["_http_security"] = cached
        return cached

    def advertised(self, listener: Listener, bound_port: int) -> tuple[str, int]:
        """(host, port) clients are told for ``listener``."""
        adv = {l.name: l for l in parse_listeners(self.props.get("advertised.listeners") or "")}
        if listener.name in adv:
            a = adv[listener.name]
            return a.host or self.advertised_host or "127.0.0.1", a.port or bound_port
        host = self.advertised_host or listener.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return host, bound_port

    def get(self, key: str) -> str | None:
        if self.dynamic is not None:
            found = self.lookup(key)
            if found is not None:
                return found[0]
        elif key in self.props:
            return self.props[key]
        return BROKER_DEFAULTS.get(key)

    def get_int(self, key: str, default: int = 0) -> int:
        v = self.get(key)
        return int(v) if v not in (None, "") else default

    def get_bool(self, key: str) -> bool:
        return str(self.get(key)).lower() == "true"

    def broker_topic_default(self, name: str) -> tuple[str, int] | None:
        """(value, source) of the broker-level setting for topic config
        ``name``, if the broker has one (dynamic or static)."""
        if name == "retention.ms":
            scaled = (("log.retention.ms", 1), ("log.retention.minutes", 60000), ("log.retention.hours", HOUR_MS))
        elif name == "segment.ms":
            scaled = (("log.roll.ms", 1), ("log.roll.hours", HOUR_MS))
        else:
            key = TOPIC_CONFIGS[name].broker_key
            return self.lookup(key) if key else None
        for key, scale in scaled:  # the most specific unit wins, whatever its source
            found = self.lookup(key)
            if found is not None:
                return str(int(found[0]) * scale), found[1]
        return None


# Settings that turn on a Kafka feature odradek does not serve: refused rather than ignored.
UNSERVED_WHEN_TRUE = {
    "remote.log.storage.system.enable": "tiered storage (KIP-405) is not served: a topic's log is kept on the "
                                        "broker's disk only",
    "transaction.two.phase.commit.enable": "two-phase commit of transactions (KIP-939) is not served",
}
UNSERVED_CLASSES = {
    "create.topic.policy.class.name": "Java topic-creation policies cannot be loaded",
    "alter.config.policy.class.name": "Java config-change policies cannot be loaded",
}
# Settings accepted with no effect, and why.
NO_EFFECT = {
    "metric.reporters": "Java metrics reporters cannot be loaded; the broker's metrics are served at "
                        "/metrics of the HTTP listener (http.listener)",
    "kafka.metrics.reporters": "Java metrics reporters cannot be loaded; the broker's metrics are served at "
                               "/metrics of the HTTP listener (http.listener)",
}


def served_notes(props: dict[str, str]) -> list[str]:
    """Check ``props`` for Kafka features odradek does not serve (ConfigError)
    and note the settings it takes without effect."""
    from odradek.metadata.broker_configs import DYNAMIC, validate

    notes = []
    for key, value in props.items():  # typed and bounded at start, as Kafka checks server.properties
        if key in DYNAMIC:
            validate(key, value)
    dirs = [d.strip() for d in (props.get("log.dirs") or "").split(",") if d.strip()]
    if len(dirs) > 1:
        raise ConfigError(f"Several log directories are not served (log.dirs={','.join(dirs)}): odradek keeps "
                          f"a broker's logs in one directory; give one")
    policy = props.get("group.consumer.migration.policy")
    if policy is not None and policy.strip().lower() not in ("disabled", "downgrade", "upgrade", "bidirectional"):
        raise ConfigError(f"Invalid value {policy} for configuration group.consumer.migration.policy: String must "
                          f"be one of (case insensitive): DISABLED, DOWNGRADE, UPGRADE, BIDIRECTIONAL")
    for key, why in UNSERVED_WHEN_TRUE.items():
        value = (props.get(key) or "false").strip().lower()
        if value not in ("true", "false"):
            raise ConfigError(f"Invalid value {props[key]} for configuration {key}: Expected value to be either "
                              f"true or false")
        if value == "true":
            raise ConfigError(f"Unsupported setting {key}=true: {why}")
    for key, why in UNSERVED_CLASSES.items():
        if (props.get(key) or "").strip():
            raise ConfigError(f"Unsupported setting {key}: {why}")
    for key, why in NO_EFFECT.items():
        if (props.get(key) or "").strip():
            notes.append(f"{key} has no effect: {why}")
    return notes


def validate_topic_config(name: str, value: str | None) -> str | None:
    """Check one topic config override; return it normalised. Raises ConfigError."""
    key = TOPIC_CONFIGS.get(name)
    if key is None:
        raise ConfigError(f"Unknown topic config name: {name}")
    if value is None:
        return None
    if key.type in (T_INT, T_LONG, T_SHORT):
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"Invalid value {value} for configuration {name}") from None
        if key.bounds is not None and not key.bounds[0] <= number <= key.bounds[1] and number != key.also:
            least, most = key.bounds
            if key.also is not None:
                why = f"Value must be between {least} and {most} or equal to {key.also}"
            else:
                why = f"Value must be no more than {most}" if number > most else f"Value must be at least {least}"
            raise ConfigError(f"Invalid value {value} for configuration {name}: {why}")
    elif key.type == T_DOUBLE:
        try:
            float(value)
        except ValueError:
            raise ConfigError(f"Invalid value {value} for configuration {name}") from None
    elif key.type == T_BOOLEAN:
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"Invalid value {value} for configuration {name}")
        value = value.lower()
        if name == "remote.storage.enable" and value == "true":
            raise ConfigError(TIERED_STORAGE_OFF)
    if name.endswith(".replication.throttled.replicas"):
        from odradek.replica.throttle import validate_replicas
        value = validate_replicas(name, value)
    if key.choices:
        parts = value.replace(" ", "")
        if parts not in key.choices:
            raise ConfigError(f"Invalid value {value} for configuration {name}")
        value = parts
    return value


class TopicConfig:
    """A topic's overrides resolved against the broker's settings and Kafka's defaults."""

    def __init__(self, broker: BrokerConfig, overrides: dict[str, str] | None = None):
        self.broker = broker
        self.overrides = dict(overrides or {})
        self._ints: dict[str, int] = {}  # a TopicConfig never changes: altering makes a new one
        self.memo: dict = {}  # values its users derive from it once (odradek.replica.throttle)

    def lookup(self, name: str) -> tuple[str, int]:
        """(value, source) of config ``name``."""
        if name in self.overrides:
            return self.overrides[name], SOURCE_TOPIC
        found = self.broker.broker_topic_default(name)
        if found is not None:
            return found
        return TOPIC_CONFIGS[name].default, SOURCE_DEFAULT

    def get(self, name: str) -> str:
        return self.lookup(name)[0]

    def get_int(self, name: str) -> int:
        v = self._ints.get(name)
        if v is None:
            v = self._ints[name] = int(self.get(name))
        return v

    @property
    def segment_bytes(self) -> int:
        """``segment.bytes``, or Kafka 4's ``internal.segment.bytes`` when the topic sets it."""
        internal = self.overrides.get("internal.segment.bytes")
        return int(internal) if internal else self.get_int("segment.bytes")

    def log_config(self) -> LogConfig:
        return LogConfig(
            segment_bytes=self.segment_bytes,
            segment_ms=self.get_int("segment.ms"),
            retention_bytes=self.get_int("retention.bytes"),
            retention_ms=self.get_int("retention.ms"),
            index_interval_bytes=self.get_int("index.interval.bytes"),
            segment_index_bytes=self.get_int("segment.index.bytes"),
            flush_messages=self.get_int("flush.messages"),
            flush_ms=self.get_int("flush.ms"),
            file_delete_delay_ms=self.get_int("file.delete.delay.ms"),
            cleanup_policy=self.get("cleanup.policy"),
        )
