"""Topic administration.

CreateTopics (19) v2-7: with configs, validate_only and manual replica
assignments (checked as Kafka checks them: INVALID_REPLICA_ASSIGNMENT for
partitions not numbered 0..n-1, empty or repeated replicas, brokers not
registered, lists of different lengths); placement and the replication
factor (at most the live brokers) are ``odradek.topic_admin``'s. DeleteTopics (20) v1-6: by name, or by id from v6.
CreatePartitions (37) v0-3, with manual assignments of the new partitions
(one list each, of the topic's replication factor). DeleteRecords (21) v0-2: moves the log start
offset; offset -1 means the high watermark.
DescribeConfigs (32) v1-4: topics (resource type 2) with source and type of
each value, brokers (4), broker loggers (8: the broker's loggers and
levels, odradek/loggers.py), client metrics subscriptions (16,
odradek/metadata/client_metrics.py) and groups (32), with Kafka's synonyms when asked
(include_synonyms: the value's sources from the most to the least specific).
A broker (resource name its id) lists its settings with their sources
(DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG, STATIC_BROKER_CONFIG,
DEFAULT_CONFIG), read-only but for the dynamic ones odradek honours, and
Kafka's dynamic sasl.kerberos.* ones, stored without effect as on a Kafka
broker without GSSAPI (odradek/metadata/broker_configs.py); the resource "" lists the cluster's
dynamic defaults. A group lists the group configs odradek serves
(odradek/metadata/group_configs.py: consumer.session.timeout.ms,
consumer.heartbeat.interval.ms, the share.* and streams.* ones).
AlterConfigs (33) v0-2: topic, broker and client metrics configs (a broker's
and a subscription's are replaced whole). IncrementalAlterConfigs (44)
v0-1: topic, broker, broker logger (SET a level, DELETE it), client metrics
(SET, DELETE; APPEND and SUBTRACT on its lists) and group configs (SET and
DELETE; APPEND and SUBTRACT on list configs). Broker settings that
odradek cannot change while it runs answer INVALID_REQUEST "Cannot update
these configs dynamically", as Kafka answers for its read-only ones; other
group config names answer INVALID_CONFIG.
CreateTopics, CreatePartitions and DeleteTopics charge their partitions to
the client's ``controller_mutation_rate`` (KIP-599, ``odradek.security.quotas``):
from v6, v3 and v5 a topic past the quota is answered THROTTLING_QUOTA_EXCEEDED;
older versions are served and throttled.
ListConfigResources (74) v0-1 (KIP-1142): the client metrics subscriptions
(v0, which was ListClientMetricsResources, lists only them), the groups with
configs, the brokers, the broker loggers and the topics.
Not served: config documentation strings (returned null), listener-prefixed
broker settings; client metrics subscriptions are kept but never sent to a
client (the KIP-714 telemetry APIs are not served, as on a Kafka broker
without a telemetry receiver plugin).
"""

from __future__ import annotations

from odradek.topic_admin import TopicError
from odradek.config import (
    BROKER_DEFAULTS, SOURCE_DEFAULT, SOURCE_STATIC_BROKER, SOURCE_TOPIC, TOPIC_CONFIGS, T_INT, T_LIST, T_STRING,
    ConfigError, sensitive, validate_topic_config,
)
from odradek import loggers
from odradek.metadata import broker_configs as dynamic
from odradek.metadata import client_metrics
from odradek.apis.metadata import broker_list
from odradek.apis.partitions import per_partition
from odradek.metadata.group_configs import STRING_DEFAULTS, GroupConfigBounds, GroupConfigError
from odradek.protocol import errors
from odradek.server.registry import handles

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
RESOURCE_BROKER_LOGGER = 8
SOURCE_BROKER_LOGGER = 6  # DYNAMIC_BROKER_LOGGER_CONFIG
RESOURCE_CLIENT_METRICS = 16
SOURCE_CLIENT_METRICS = 7  # CLIENT_METRICS_CONFIG
RESOURCE_GROUP = 32
SOURCE_GROUP = 8  # GROUP_CONFIG
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3


def config_entries(config) -> list[dict]:
    """A topic's configs (a TopicConfig) as DescribeConfigs and CreateTopics list them."""
    out = []
    for name in sorted(TOPIC_CONFIGS):
        if TOPIC_CONFIGS[name].internal and name not in config.overrides:
            continue  # as Kafka: an internal config is described only when set
        value, source = config.lookup(name)
        synonyms = [_synonym(name, value, SOURCE_TOPIC)] if name in config.overrides else []
        broker_key = {"retention.ms": "log.retention.ms", "segment.ms": "log.roll.ms"}.get(
            name, TOPIC_CONFIGS[name].broker_key)
        if broker_key:
            synonyms += broker_synonyms(config.broker, broker_key)
        else:
            synonyms.append(_synonym(name, TOPIC_CONFIGS[name].default, SOURCE_DEFAULT))
        out.append({"name": name, "value": value, "read_only": False, "config_source": source,
                    "is_sensitive": False,
                    "config_type": TOPIC_CONFIGS[name].type, "synonyms": synonyms})
    return out


# What CreateTopics' response says of each config of a created topic (of
# config_entries' fields, DescribeConfigs' entries, the ones CreateTopics has).
_CREATED_CONFIG_FIELDS = ("name", "value", "read_only", "config_source", "is_sensitive")


def _synonym(name: str, value: str | None, source: int) -> dict:
    return {"name": name, "value": value, "source": source}


def _broker_default_layer() -> dict[str, str]:
    out = {k: v for k, v in dynamic.KAFKA_DEFAULTS.items() if v is not None}
    out.update(BROKER_DEFAULTS)
    return out


def broker_synonyms(config, name: str) -> list[dict]:
    """Kafka's synonyms of broker setting ``name``: each of its names (the most
    specific first) found in this broker's dynamic configs, then in the
    cluster's dynamic default, the static settings and Kafka's defaults.
    Describing the setting itself, those before its own name are dropped."""
    names = dynamic.synonyms_of(name)
    out = []
    for layer, source in config.layers() + [(_broker_default_layer(), SOURCE_DEFAULT)]:
        out += [_synonym(n, None if sensitive(n) else layer[n], source) for n in names if n in layer]
    while out and out[0]["name"] != name:
        out.pop(0)
    return out


@handles("CreateTopics", 2, 7)
async def create_topics(ctx, request: dict) -> dict:
    broker = ctx.broker
    results = []
    seen = set()
    quota = ctx.connection.mutation_quota(ctx, strict=ctx.version >= 6)  # KIP-599
    for t in request["topics"]:
        name = t["name"]
        entry = {"name": name, "error_code": 0, "error_message": None, "num_partitions": -1,
                 "replication_factor": -1, "configs": []}
        try:
            if name in seen:
                raise TopicError(errors.INVALID_REQUEST, f"Create topics request contains duplicate topic {name}")
            seen.add(name)
            num_partitions = t["num_partitions"]
            assignment = None
            if t["assignments"]:
                if num_partitions != -1 or t["replication_factor"] != -1:
                    raise TopicError(errors.INVALID_REQUEST,
                                     "Both numPartitions or replicationFactor and replicasAssignments were set.")
                by_index = {a["partition_index"]: list(a["broker_ids"]) for a in t["assignments"]}
                if sorted(by_index) != list(range(len(t["assignments"]))):
                    raise TopicError(errors.INVALID_REPLICA_ASSIGNMENT,
                                     "Partitions should be a consecutive 0-based integer sequence")
                assignment = [by_index[i] for i in range(len(by_index))]
            configs = {c["name"]: c["value"] for c in t["configs"]}
            topic = await broker.admin.create_topic(name, num_partitions, t["replication_factor"], configs,
                                                    validate_only=request["validate_only"],
                                                    assignment=assignment, quota=quota)
            if topic is not None:
                state = broker.image.get(name)
                entry["topic_id"] = state.topic_id
                entry["num_partitions"] = len(state.partitions)
                entry["replication_factor"] = len(state.partitions[0].replicas) if state.partitions else 1
                entry["configs"] = [{k: c[k] for k in _CREATED_CONFIG_FIELDS}
                                    for c in config_entries(broker.admin.topic_config(name))]
            elif assignment:
                entry["num_partitions"] = len(assignment)
                entry["replication_factor"] = len(assignment[0])
            else:
                entry["num_partitions"] = num_partitions if num_partitions > 0 else broker.config.get_int("num.partitions")
                rf = t["replication_factor"]
                entry["replication_factor"] = rf if rf > 0 else broker.config.get_int("default.replication.factor", 1)
        except TopicError as e:
            entry["error_code"] = e.error_code
            entry["error_message"] = e.message or None
        results.append(entry)
    return {"topics": results}


@handles("DeleteTopics", 1, 6)
async def delete_topics(ctx, request: dict) -> dict:
    broker = ctx.broker
    if ctx.version >= 6:
        wanted = [(t["name"], t["topic_id"]) for t in request["topics"]]
    else:
        wanted = [(name, None) for name in request["topic_names"]]
    responses = []
    quota = ctx.connection.mutation_quota(ctx, strict=ctx.version >= 5)  # KIP-599
    for name, topic_id in wanted:
        entry = {"name": name, "topic_id": topic_id, "error_code": 0, "error_message": None}
        if name is None and topic_id is not None:
            topic = broker.image.get(topic_id)
            if topic is None:
                entry["error_code"] = errors.UNKNOWN_TOPIC_ID
                responses.append(entry)
                continue
            name = entry["name"] = topic.name
        topic = broker.image.get(name)
        if topic is not None:
            entry["topic_id"] = topic.topic_id
        if not broker.config.get_bool("delete.topic.enable"):
            entry["error_code"] = errors.TOPIC_DELETION_DISABLED
        elif topic is not None and topic.internal:
            entry["error_code"] = errors.INVALID_TOPIC_EXCEPTION
            entry["error_message"] = "internal topics cannot be deleted"
        else:
            try:
                await broker.admin.delete_topic(name, quota)
            except TopicError as e:
                entry["error_code"] = e.error_code
                if e.error_code == errors.THROTTLING_QUOTA_EXCEEDED:
                    entry["error_message"] = e.message
        responses.append(entry)
    return {"responses": responses}


@handles("CreatePartitions", 0, 3)
async def create_partitions(ctx, request: dict) -> dict:
    broker = ctx.broker
    results = []
    quota = ctx.connection.mutation_quota(ctx, strict=ctx.version >= 3)  # KIP-599
    for t in request["topics"]:
        entry = {"name": t["name"], "error_code": 0, "error_message": None}
        try:
            assignment = [list(a["broker_ids"]) for a in t["assignments"]] if t["assignments"] else None
            await broker.admin.add_partitions(t["name"], t["count"], request["validate_only"], assignment,
                                              quota=quota)
        except TopicError as e:
            entry["error_code"] = e.error_code
            entry["error_message"] = e.message or None
        results.append(entry)
    return {"results": results}


@handles("DeleteRecords", 0, 2)
async def delete_records(ctx, request: dict) -> dict:
    def answer(p, requested: dict, entry: dict) -> None:
        offset, hw = requested["offset"], p.high_watermark
        if offset == -1:
            offset = hw
        if offset < 0 or offset > hw:
            entry["error_code"] = errors.OFFSET_OUT_OF_RANGE
        else:
            entry["low_watermark"] = p.delete_records_before(offset)

    return {"topics": per_partition(ctx.broker, request["topics"], "name", "partition_index", answer,
                                    {"low_watermark": -1})}


def broker_config_entries(broker, resource_name: str) -> list[dict]:
    """A broker's settings (``resource_name`` its id), or the cluster's
    dynamic defaults (``resource_name`` "")."""
    config = broker.config
    if resource_name == "":
        return [{"name": n, "value": v, "read_only": False, "config_source": dynamic.SOURCE_DYNAMIC_DEFAULT,
                 "is_sensitive": False, "config_type": dynamic.DYNAMIC[n].type
                 if n in dynamic.DYNAMIC else T_STRING,
                 "synonyms": [_synonym(n, v, dynamic.SOURCE_DYNAMIC_DEFAULT)]}
                for n, v in sorted(broker.image.broker_configs.of("").items())]
    names = set(BROKER_DEFAULTS) | set(dynamic.DYNAMIC) | set(dynamic.KAFKA_DEFAULTS)
    for layer, _ in config.layers():
        names |= set(layer)
    defaults = _broker_default_layer()
    out = []
    for name in sorted(names):
        synonyms = broker_synonyms(config, name)
        found = config.lookup(name)
        value = found[0] if found is not None else defaults.get(name)
        source = synonyms[0]["source"] if synonyms else SOURCE_DEFAULT
        key = dynamic.DYNAMIC.get(name)
        secret = sensitive(name)  # as Kafka: a password's value is never described
        out.append({"name": name, "value": None if secret else value, "read_only": key is None,
                    "config_source": source, "is_sensitive": secret,
                    "config_type": key.type if key is not None else T_STRING, "synonyms": synonyms})
    return out


def _broker_resource(broker, name: str) -> str:
    """The resource name of a BROKER resource: "" (the cluster default) or
    this broker's id; ConfigError otherwise, as Kafka's (a client sends a
    broker's configs to that broker)."""
    if name != "":
        try:
            node = int(name)
        except ValueError:
            raise ConfigError(f"Node id must be an integer, but it is: {name}", errors.INVALID_REQUEST) from None
        if node != broker.config.node_id:
            raise ConfigError(f"Unexpected broker id, expected {broker.config.node_id}, but received {name}",
                              errors.INVALID_REQUEST)
    return name


def _logger_resource(broker, name: str) -> None:
    """A BROKER_LOGGER resource names this broker (ConfigError otherwise, as Kafka's)."""
    if not name:
        raise ConfigError("Broker id must not be empty", errors.INVALID_REQUEST)
    if name != str(broker.config.node_id):
        raise ConfigError(f"Unexpected broker id, expected {broker.config.node_id} but received {name}",
                          errors.INVALID_REQUEST)


async def _alter_broker(broker, name: str, configs: list, validate_only: bool, incremental: bool) -> None:
    """AlterConfigs / IncrementalAlterConfigs on a broker or the cluster default."""
    resource = _broker_resource(broker, name)
    if incremental:
        dynamic.check_dynamic([c["name"] for c in configs if c["config_operation"] != OP_DELETE])
        new = dict(broker.image.broker_configs.of(resource))
        for c in configs:
            key, op, value = c["name"], c["config_operation"], c["value"]
            if op == OP_SET:
                new[key] = dynamic.validate(key, value)
            elif op == OP_DELETE:
                new.pop(key, None)
            elif op in (OP_APPEND, OP_SUBTRACT):
                if dynamic.DYNAMIC[key].type != T_LIST:
                    verb = "append" if op == OP_APPEND else "subtract"
                    raise ConfigError(f"Config value {verb} is not allowed for config key: {key}",
                                      errors.INVALID_CONFIG)
                current = new.get(key, dynamic.KAFKA_DEFAULTS.get(key)) or ""
                items = [x for x in current.split(",") if x]
                for v in (x.strip() for x in (value or "").split(",")):
                    if op == OP_APPEND and v and v not in items:
                        items.append(v)
                    elif op == OP_SUBTRACT and v in items:
                        items.remove(v)
                new[key] = dynamic.validate(key, ",".join(items))
            else:
                raise ConfigError(f"Unknown config operation {op}", errors.INVALID_REQUEST)
    else:
        dynamic.check_dynamic([c["name"] for c in configs])
        new = {c["name"]: dynamic.validate(c["name"], c["value"]) for c in configs if c["value"] is not None}
    dynamic.check_resource(resource, [c["name"] for c in configs
                                      if not incremental or c["config_operation"] != OP_DELETE])
    _check_background_threads(broker, resource, new)
    if not validate_only:
        await broker.admin.alter_broker_config(resource, new)


def _check_background_threads(broker, resource: str, new: dict[str, str]) -> None:
    """A change of this broker's background.threads (its own value or the
    cluster default it follows) stays within Kafka's half and double of the
    current size."""
    own_id = str(broker.config.node_id)
    if resource not in ("", own_id):
        return
    configs = broker.image.broker_configs
    layers = [new if resource == own_id else configs.of(own_id), new if resource == "" else configs.of(""),
              broker.config.props, dynamic.KAFKA_DEFAULTS]
    value = next(layer["background.threads"] for layer in layers if layer.get("background.threads"))
    try:
        threads = int(value)
    except ValueError:
        return  # a static value the broker could not have started with
    dynamic.check_thread_count("background.threads", broker.background.size, threads)


def group_config_entries(broker, group_id: str) -> list[dict]:
    """A group's configs (odradek.metadata.group_configs): its overrides over
    the broker's defaults."""
    overrides = broker.image.group_configs.of(group_id)
    bounds = GroupConfigBounds.from_broker(broker.config)
    out = []
    for name, default in sorted(bounds.defaults().items()):
        source = SOURCE_GROUP if name in overrides else \
            SOURCE_STATIC_BROKER if bounds.from_broker_config(name) else SOURCE_DEFAULT
        broker_key = bounds.broker_key(name)
        synonyms = [_synonym(name, overrides[name], SOURCE_GROUP)] if name in overrides else []
        synonyms.append(_synonym(broker_key or name, default,
                                 SOURCE_STATIC_BROKER if source == SOURCE_STATIC_BROKER else SOURCE_DEFAULT))
        out.append({"name": name, "value": overrides.get(name, default), "read_only": False,
                    "config_source": source, "is_sensitive": False,
                    "config_type": T_STRING if name in STRING_DEFAULTS else T_INT, "synonyms": synonyms})
    return out


async def _alter_group(broker, name: str, configs: list, validate_only: bool) -> None:
    """IncrementalAlterConfigs on a group: set or delete served keys."""
    if not name:
        raise ConfigError("Group id must not be empty.", errors.INVALID_GROUP_ID)
    bounds = GroupConfigBounds.from_broker(broker.config)
    new = dict(broker.image.group_configs.of(name))
    try:
        for c in configs:
            key, op = c["name"], c["config_operation"]
            if op == OP_SET:
                new[key] = bounds.validate(key, c["value"])
            elif op == OP_DELETE:
                if key not in bounds.defaults():
                    raise GroupConfigError(f"Unknown group config name: {key}")
                new.pop(key, None)
            else:
                raise ConfigError(f"Config {key} is not a list", errors.INVALID_CONFIG)
    except GroupConfigError as e:
        raise ConfigError(str(e), errors.INVALID_CONFIG) from None
    if not validate_only:
        await broker.admin.alter_group_config(name, new)


def client_metrics_entries(broker, name: str) -> list[dict]:
    """A client metrics subscription's three configs, its own values over
    Kafka's defaults (a subscription that does not exist shows the defaults,
    as on Kafka)."""
    configs = broker.image.client_metrics.of(name)
    out = []
    for key, default in sorted(client_metrics.DEFAULTS.items()):
        own = key in configs
        if not own:
            value = default
        elif client_metrics.TYPES[key] == T_LIST:
            value = ",".join(client_metrics.parse_list(configs[key]))
        else:
            value = str(int(configs[key]))  # validated when set
        out.append({"name": key, "value": value, "read_only": False, "is_sensitive": False,
                    "config_source": SOURCE_CLIENT_METRICS if own else SOURCE_DEFAULT,
                    "config_type": client_metrics.TYPES[key],
                    "synonyms": [_synonym(key, value, SOURCE_CLIENT_METRICS)] if own else []})
    return out


async def _alter_client_metrics(broker, name: str, configs: list, validate_only: bool, incremental: bool) -> None:
    """(Incremental)AlterConfigs on a client metrics subscription: the whole
    new config is validated as Kafka validates it, then replaces the old."""
    if incremental:
        new = dict(broker.image.client_metrics.of(name))
        for c in configs:
            key, op, value = c["name"], c["config_operation"], c["value"]
            if op == OP_SET:
                new[key] = value
            elif op == OP_DELETE:
                new.pop(key, None)
            elif op in (OP_APPEND, OP_SUBTRACT):
                if client_metrics.TYPES.get(key) != T_LIST:
                    raise ConfigError(f"Can't {'APPEND' if op == OP_APPEND else 'SUBTRACT'} to key {key} because its "
                                      "type is not LIST.", errors.INVALID_CONFIG)
                new[key] = _list_op(client_metrics.parse_list(new.get(key, client_metrics.DEFAULTS[key])), op, value)
            else:
                raise ConfigError(f"Unknown config operation {op}", errors.INVALID_REQUEST)
    else:
        new = {c["name"]: c["value"] for c in configs}
    try:
        client_metrics.validate(name, new)
    except client_metrics.ClientMetricsError as e:
        raise ConfigError(str(e), e.error_code) from None
    if not validate_only:
        await broker.admin.alter_client_metrics(name, new)


@handles("DescribeConfigs", 1, 4)
async def describe_configs(ctx, request: dict) -> dict:
    broker = ctx.broker
    results = []
    for r in request["resources"]:
        rtype, rname = r["resource_type"], r["resource_name"]
        entry = {"error_code": 0, "error_message": "", "resource_type": rtype,  # "" on success, as Kafka
                 "resource_name": rname, "configs": []}
        if rtype == RESOURCE_TOPIC:
            config = broker.admin.topic_config(rname)
            if config is None:
                entry["error_code"] = errors.UNKNOWN_TOPIC_OR_PARTITION
                entry["error_message"] = f"Topic {rname} does not exist"
            else:
                entry["configs"] = config_entries(config)
        elif rtype == RESOURCE_BROKER:
            if rname not in ("", str(broker.config.node_id)):
                entry["error_code"] = errors.INVALID_REQUEST
                entry["error_message"] = (f"Unexpected broker id, expected {broker.config.node_id} or empty string, "
                                          f"but received {rname}")
            else:
                entry["configs"] = broker_config_entries(broker, rname)
        elif rtype == RESOURCE_GROUP:
            if not rname:
                entry["error_code"] = errors.INVALID_GROUP_ID
                entry["error_message"] = "Group id must not be empty."
            else:
                entry["configs"] = group_config_entries(broker, rname)
        elif rtype == RESOURCE_CLIENT_METRICS:
            if not rname:
                entry["error_code"] = errors.INVALID_REQUEST
                entry["error_message"] = "Client metrics subscription name must not be empty"
            else:
                entry["configs"] = client_metrics_entries(broker, rname)
        elif rtype == RESOURCE_BROKER_LOGGER:
            try:
                _logger_resource(broker, rname)
            except ConfigError as e:
                entry["error_code"], entry["error_message"] = e.error_code, str(e)
            else:
                entry["configs"] = [{"name": name, "value": level, "read_only": False, "is_sensitive": False,
                                     "config_source": SOURCE_BROKER_LOGGER, "config_type": 0, "synonyms": []}
                                    for name, level in sorted(loggers.loggers().items())]
        else:
            entry["error_code"] = errors.INVALID_REQUEST
            entry["error_message"] = f"Unsupported resource type {rtype}"
        keys = r["configuration_keys"]
        if keys is not None and entry["configs"]:
            wanted = set(keys)
            entry["configs"] = [c for c in entry["configs"] if c["name"] in wanted]
        if not request.get("include_synonyms"):
            for c in entry["configs"]:
                c["synonyms"] = []
        results.append(entry)
    return {"results": results}


def _list_op(items: list[str], op: int, value: str | None) -> str:
    """A list config after APPEND (each value not there yet) or SUBTRACT of
    the comma-separated ``value``, as text."""
    for v in (value or "").split(","):
        if op == OP_APPEND and v and v not in items:
            items.append(v)
        elif op == OP_SUBTRACT and v in items:
            items.remove(v)
    return ",".join(items)


def _apply_incremental(current: dict, ops: list) -> dict:
    new = dict(current)
    for c in ops:
        name, op, value = c["name"], c["config_operation"], c["value"]
        key = TOPIC_CONFIGS.get(name)
        if key is None:
            raise ConfigError(f"Unknown topic config name: {name}")
        if op == OP_SET:
            new[name] = value
        elif op == OP_DELETE:
            new.pop(name, None)
        elif op in (OP_APPEND, OP_SUBTRACT):
            if key.type != T_LIST:
                raise ConfigError(f"Config {name} is not a list", errors.INVALID_CONFIG)
            new[name] = _list_op([x for x in (new.get(name) or key.default).split(",") if x], op, value)
        else:
            raise ConfigError(f"Unknown config operation {op}", errors.INVALID_REQUEST)
    return new


def _check_alterations(rtype: int, configs: list, incremental: bool) -> None:
    """Kafka's checks of any resource's alterations, before their own: a name
    given twice, and a value set to null (a broker logger's are its own)."""
    names = [c["name"] for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError("Error due to duplicate config keys", errors.INVALID_REQUEST)
    nulls = [c["name"] for c in configs if c["value"] is None and (not incremental or c["config_operation"] == OP_SET)]
    if nulls and rtype != RESOURCE_BROKER_LOGGER:
        raise ConfigError(f"Null value not supported for : {', '.join(nulls)}", errors.INVALID_REQUEST)


async def _alter(ctx, request: dict, incremental: bool) -> dict:
    broker = ctx.broker
    responses = []
    for r in request["resources"]:
        rtype, rname = r["resource_type"], r["resource_name"]
        entry = {"error_code": 0, "error_message": None, "resource_type": rtype, "resource_name": rname}
        try:
            _check_alterations(rtype, r["configs"], incremental)
            if rtype == RESOURCE_BROKER:
                await _alter_broker(broker, rname, r["configs"], request["validate_only"], incremental)
                responses.append(entry)
                continue
            if rtype == RESOURCE_GROUP and incremental:
                await _alter_group(broker, rname, r["configs"], request["validate_only"])
                responses.append(entry)
                continue
            if rtype == RESOURCE_CLIENT_METRICS:
                await _alter_client_metrics(broker, rname, r["configs"], request["validate_only"], incremental)
                responses.append(entry)
                continue
            if rtype == RESOURCE_BROKER_LOGGER and incremental:
                _logger_resource(broker, rname)
                loggers.validate(r["configs"])
                if not request["validate_only"]:
                    loggers.apply(r["configs"])
                responses.append(entry)
                continue
            if rtype != RESOURCE_TOPIC:
                raise ConfigError(f"Unsupported resource type {rtype}", errors.INVALID_REQUEST)
            topic = broker.image.get(rname)
            if topic is None:
                raise ConfigError(f"Topic {rname} does not exist", errors.UNKNOWN_TOPIC_OR_PARTITION)
            if incremental:
                new = _apply_incremental(topic.configs, r["configs"])
            else:
                new = {c["name"]: c["value"] for c in r["configs"]}
            overrides = {}
            for k, v in new.items():
                v = validate_topic_config(k, v)
                if v is not None:
                    overrides[k] = v
            if not request["validate_only"]:
                await broker.admin.alter_topic_config(rname, overrides)
        except (ConfigError, TopicError) as e:
            entry["error_code"] = e.error_code
            entry["error_message"] = str(e)
        responses.append(entry)
    return {"responses": responses}


LISTED_TYPES = {0: (RESOURCE_CLIENT_METRICS,),  # ListConfigResources v0 was ListClientMetricsResources
                1: (RESOURCE_TOPIC, RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_CLIENT_METRICS, RESOURCE_GROUP)}


@handles("ListConfigResources", 0, 1)
async def list_config_resources(ctx, request: dict) -> dict:
    """The resources DescribeConfigs can be asked about, of the types asked
    (v1; none: every type), as Kafka lists them: the client metrics
    subscriptions, groups with configs of their own, the brokers (also as
    broker loggers), every topic. A type not listed is UNSUPPORTED_VERSION."""
    broker = ctx.broker
    supported = LISTED_TYPES[min(ctx.version, 1)]
    types = request.get("resource_types") or supported
    if any(t not in supported for t in types):
        return {"error_code": errors.UNSUPPORTED_VERSION, "config_resources": []}
    out = []
    if RESOURCE_CLIENT_METRICS in types:
        out += [(n, RESOURCE_CLIENT_METRICS) for n, configs in broker.image.client_metrics.groups.items() if configs]
    if RESOURCE_GROUP in types:
        out += [(g, RESOURCE_GROUP) for g, configs in broker.image.group_configs.groups.items() if configs]
    brokers = [str(b["node_id"]) for b in broker_list(broker, ctx.connection.listener)]
    if RESOURCE_BROKER_LOGGER in types:
        out += [(b, RESOURCE_BROKER_LOGGER) for b in brokers]
    if RESOURCE_BROKER in types:
        out += [(b, RESOURCE_BROKER) for b in brokers]
    if RESOURCE_TOPIC in types:
        out += [(t.name, RESOURCE_TOPIC) for t in broker.image]
    return {"error_code": 0, "config_resources": [{"resource_name": n, "resource_type": t} for n, t in out]}


@handles("AlterConfigs", 0, 2)
async def alter_configs(ctx, request: dict) -> dict:
    return await _alter(ctx, request, incremental=False)


@handles("IncrementalAlterConfigs", 0, 1)
async def incremental_alter_configs(ctx, request: dict) -> dict:
    return await _alter(ctx, request, incremental=True)
