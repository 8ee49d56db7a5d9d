"""What each API must be allowed, in one table, applied around the handlers.

Theory of operation: with an authoriser configured (``authorizer.class.name``),
the connection hands every request to ``handle(api, ctx, request)`` instead
of the handler. ``RULES`` names, per API, what Kafka checks and how a refusal
is answered; handlers stay unaware of ACLs. Three shapes cover the APIs:

- ``Items``: a request's list of items (topics, groups, config resources),
  each checked on its own resource. Refused items are taken out of the
  request before the handler sees it, and answered with the API's error
  entry (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, ...)
  appended to the response; the handler is not called when nothing is left.
  An optional ``whole`` check (the group of an OffsetCommit, the
  transactional id of a Produce) refuses every item at once.
- ``Whole``: one check for the whole request (JoinGroup: READ on the group;
  the ACL and SCRAM APIs: the cluster); a refusal is answered by the API's
  error response without calling the handler.
- a function for the few APIs whose answer is filtered rather than refused:
  Metadata (unauthorised topics are left out of a full listing),
  ListGroups, OffsetFetch, FindCoordinator, InitProducerId; and
  AddPartitionsToTxn, refused whole when one topic is (Kafka answers the
  others OPERATION_NOT_ATTEMPTED).

Every registered API has an entry (``tests/unit/test_acl_rules.py``), ``NONE``
for those Kafka does not check (ApiVersions, the SASL exchange,
DescribeCluster). Hosts are the client's IP address as the broker sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from odradek.protocol import errors
from odradek.security.authorizer import CLUSTER, Operation as Op, Resource, ResourceType as T

TOPIC_DENIED = errors.TOPIC_AUTHORIZATION_FAILED
GROUP_DENIED = errors.GROUP_AUTHORIZATION_FAILED
CLUSTER_DENIED = errors.CLUSTER_AUTHORIZATION_FAILED
TXN_DENIED = errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def host(ctx) -> str:
    peer = ctx.connection.peer
    return peer[0] if peer else ""


def allowed(ctx, op: Op, rtype: T, name: str) -> bool:
    """Whether the request's principal may ``op`` the resource; always with no authoriser."""
    authz = ctx.broker.authorizer
    if authz is None:
        return True
    resource = CLUSTER if rtype == T.CLUSTER else Resource(rtype, name)
    return authz.authorize(ctx.principal, host(ctx), op, resource)


def authorized_operations(ctx, rtype: T, name: str) -> int:
    """KIP-430's field for a resource: the operations of its type the request's
    principal may perform on it; every one without an authoriser, as in Kafka."""
    from odradek.security.authorizer import SUPPORTED_OPERATIONS, operations_field

    authz = ctx.broker.authorizer
    resource = CLUSTER if rtype == T.CLUSTER else Resource(rtype, name)
    if authz is None:
        return operations_field(SUPPORTED_OPERATIONS[rtype])
    return authz.authorized_operations(ctx.principal, host(ctx), resource)


def cluster_authorized_operations(ctx) -> int:
    """The cluster's field: 0 without DESCRIBE on the cluster, as Kafka answers."""
    return authorized_operations(ctx, T.CLUSTER, "") if allowed(ctx, Op.DESCRIBE, T.CLUSTER, "") else 0


def topic_name(ctx, item: dict, name_key: str = "name") -> str | None:
    """A request item's topic: its name, else the image's name for its id (None: unknown id)."""
    name = item.get(name_key)
    if name:
        return name
    topic_id = item.get("topic_id")
    if topic_id is not None:
        t = ctx.broker.image.get(topic_id)
        return None if t is None else t.name
    return name


def topic_check(op: Op, name_key: str = "name"):
    def check(ctx, item) -> int:
        name = topic_name(ctx, item, name_key)
        if name is None:  # an unknown topic id: the handler answers UNKNOWN_TOPIC_ID
            return 0
        return 0 if allowed(ctx, op, T.TOPIC, name) else TOPIC_DENIED
    return check


def group_check(op: Op):
    def check(ctx, group) -> int:
        return 0 if allowed(ctx, op, T.GROUP, group) else GROUP_DENIED
    return check


# -- the shapes ------------------------------------------------------------------
@dataclass
class Items:
    request_list: str | Callable  # the request's list field (or a function of the version)
    response_list: str
    check: Callable  # (ctx, item) -> 0 or an error code
    error: Callable  # (item, code) -> the response entry for a refused item
    whole: Callable | None = None  # (ctx, request) -> 0 or an error code for every item

    async def __call__(self, api, ctx, request):
        field = self.request_list(ctx.version) if callable(self.request_list) else self.request_list
        items = request.get(field) or []
        code = self.whole(ctx, request) if self.whole is not None else 0
        verdicts = [code or self.check(ctx, item) for item in items]
        if not any(verdicts):
            return await api.handler(ctx, request)
        refused = [self.error(item, c) for item, c in zip(items, verdicts) if c]
        kept = [item for item, c in zip(items, verdicts) if not c]
        if kept:
            request[field] = kept
            response = await api.handler(ctx, request)
            if response is None:  # Produce with acks=0
                return None
        else:
            response = {}
            if request.get("acks") == 0:
                return None
        response[self.response_list] = list(response.get(self.response_list) or []) + refused
        return response


@dataclass
class Whole:
    check: Callable  # (ctx, request) -> 0 or an error code
    refusal: Callable  # (request, code) -> the response

    async def __call__(self, api, ctx, request):
        code = self.check(ctx, request)
        if code:
            return self.refusal(request, code)
        return await api.handler(ctx, request)


async def NONE(api, ctx, request):
    return await api.handler(ctx, request)


def cluster(op: Op):
    return lambda ctx, request: 0 if allowed(ctx, op, T.CLUSTER, "") else CLUSTER_DENIED


def group_of(op: Op, key: str = "group_id"):
    return lambda ctx, request: 0 if allowed(ctx, op, T.GROUP, request[key]) else GROUP_DENIED


def top_error(request, code):
    return {"error_code": code}


def consumer_heartbeat(ctx, request) -> int:
    """ConsumerGroupHeartbeat, as Kafka's KafkaApis checks it: READ on the group,
    then DESCRIBE on every topic the member subscribes to by name (any refused:
    TOPIC_AUTHORIZATION_FAILED, without a message)."""
    if not allowed(ctx, Op.READ, T.GROUP, request["group_id"]):
        return GROUP_DENIED
    names = request.get("subscribed_topic_names") or ()
    if any(not allowed(ctx, Op.DESCRIBE, T.TOPIC, n) for n in set(names)):
        return TOPIC_DENIED
    return 0


# -- error entries -----------------------------------------------------------------
def partitions_error(name_key, parts_key, index_key, out_index_key=None, **extra):
    """An error entry for a topic with partitions: {name, partitions: [{index, error}]}
    (and the topic's id, when the request's topic entries have one)."""
    def error(item, code, resp_name=name_key, resp_parts=parts_key):
        entry = {resp_name: item.get(name_key),
                 resp_parts: [{out_index_key or index_key: p if isinstance(p, int) else p[index_key],
                               "error_code": code, **extra} for p in item[parts_key]]}
        if "topic_id" in item:
            entry["topic_id"] = item["topic_id"]
        return entry
    return error


def produce_error(item, code):
    return {"name": item.get("name"), "topic_id": item.get("topic_id"),
            "partition_responses": [{"index": p["index"], "error_code": code, "base_offset": -1}
                                    for p in item["partition_data"]]}


def fetch_error(item, code):
    from odradek.apis.fetch import partition_error  # the apis import this module

    return {"topic": item.get("topic"), "topic_id": item.get("topic_id"),
            "partitions": [partition_error(p["partition"], code) for p in item["partitions"]]}


def share_error(item, code):
    from odradek.apis.share_fetch import partition_entry  # the apis import this module

    return {"topic_id": item["topic_id"],
            "partitions": [partition_entry(p["partition_index"], code) for p in item["partitions"]]}


def offset_commit_error(item, code):
    return {"name": item.get("name"), "topic_id": item.get("topic_id"),
            "partitions": [{"partition_index": p["partition_index"], "error_code": code}
                           for p in item["partitions"]]}


def config_check(op: Op):
    def check(ctx, resource) -> int:
        rtype, name = resource["resource_type"], resource["resource_name"]
        if rtype == 2:  # TOPIC
            return 0 if allowed(ctx, op, T.TOPIC, name) else TOPIC_DENIED
        if rtype == 32:  # GROUP
            return 0 if allowed(ctx, op, T.GROUP, name) else GROUP_DENIED
        return 0 if allowed(ctx, op, T.CLUSTER, "") else CLUSTER_DENIED  # BROKER, BROKER_LOGGER, ...
    return check


def config_error(resource, code):
    return {"error_code": code, "error_message": None, "resource_type": resource["resource_type"],
            "resource_name": resource["resource_name"], "configs": []}


def create_topic_check(ctx, item) -> int:
    ok = allowed(ctx, Op.CREATE, T.CLUSTER, "") or allowed(ctx, Op.CREATE, T.TOPIC, item["name"])
    return 0 if ok else TOPIC_DENIED


def delete_topic_check(ctx, item) -> int:
    name = item if isinstance(item, str) else topic_name(ctx, item)
    if name is None:
        return 0
    return 0 if allowed(ctx, Op.DELETE, T.TOPIC, name) else TOPIC_DENIED


def delete_topic_error(item, code):
    if isinstance(item, str):
        return {"name": item, "error_code": code}
    return {"name": item.get("name"), "topic_id": item.get("topic_id"), "error_code": code}


def produce_whole(ctx, request) -> int:
    txn = request.get("transactional_id")
    if txn is not None and not allowed(ctx, Op.WRITE, T.TRANSACTIONAL_ID, txn):
        return TXN_DENIED
    return 0


CONSUMER_FETCH = None  # set below: the Items rule of a consumer's Fetch


async def fetch(api, ctx, request):
    """A follower's fetch (a replica id) needs CLUSTER_ACTION on the cluster,
    else each partition is refused TOPIC_AUTHORIZATION_FAILED, as Kafka does;
    a consumer's needs READ on each topic."""
    replica_id = max(request.get("replica_id", -1), (request.get("replica_state") or {}).get("replica_id", -1))
    if replica_id < 0:
        return await CONSUMER_FETCH(api, ctx, request)
    if allowed(ctx, Op.CLUSTER_ACTION, T.CLUSTER, ""):
        return await api.handler(ctx, request)
    return {"error_code": 0, "session_id": 0,
            "responses": [fetch_error(t, TOPIC_DENIED) for t in request.get("topics") or []]}


# -- the filtering APIs ----------------------------------------------------------------
async def metadata(api, ctx, request):
    """Kafka's Metadata: a full listing leaves out topics without DESCRIBE; a
    named topic without DESCRIBE, or one that would be auto-created without
    CREATE (on the cluster or the topic), is answered with TOPIC_AUTHORIZATION_FAILED."""
    wanted = request.get("topics")
    full = wanted is None or (ctx.version == 0 and not wanted)
    refused = []
    if not full:
        kept = []
        auto = (request.get("allow_auto_topic_creation", True) if ctx.version >= 4 else True) \
            and ctx.broker.config.get_bool("auto.create.topics.enable")
        for entry in wanted:
            name = topic_name(ctx, entry)
            if name is None:
                kept.append(entry)
            elif not allowed(ctx, Op.DESCRIBE, T.TOPIC, name) or (
                    auto and name not in ctx.broker.image and create_topic_check(ctx, {"name": name})):
                refused.append({"error_code": TOPIC_DENIED, "name": name, "topic_id": entry.get("topic_id"),
                                "partitions": []})
            else:
                kept.append(entry)
        request["topics"] = kept
    response = await api.handler(ctx, request)
    if full:
        response["topics"] = [t for t in response["topics"] if allowed(ctx, Op.DESCRIBE, T.TOPIC, t["name"])]
    else:
        response["topics"] = list(response["topics"]) + refused
    return response


async def describe_topic_partitions(api, ctx, request):
    """As Metadata: a full listing leaves out topics without DESCRIBE (the
    handler pages over the visible ones), a named one without it is answered
    TOPIC_AUTHORIZATION_FAILED."""
    if not request["topics"]:
        request["topics"] = [{"name": t.name} for t in ctx.broker.image
                             if allowed(ctx, Op.DESCRIBE, T.TOPIC, t.name)]
        if not request["topics"]:
            return {"topics": [], "next_cursor": None}
        return await api.handler(ctx, request)
    kept, refused = [], []
    for entry in request["topics"]:
        if allowed(ctx, Op.DESCRIBE, T.TOPIC, entry["name"]):
            kept.append(entry)
        else:
            refused.append({"error_code": TOPIC_DENIED, "name": entry["name"], "topic_id": bytes(16),
                            "is_internal": False, "partitions": []})
    response = await api.handler(ctx, request | {"topics": kept}) if kept \
        else {"topics": [], "next_cursor": None}
    response["topics"] = list(response["topics"]) + refused
    return response


async def list_groups(api, ctx, request):
    response = await api.handler(ctx, request)
    if not allowed(ctx, Op.DESCRIBE, T.CLUSTER, ""):
        response["groups"] = [g for g in response["groups"] if allowed(ctx, Op.DESCRIBE, T.GROUP, g["group_id"])]
    return response


async def offset_fetch(api, ctx, request):
    """DESCRIBE on each group (else GROUP_AUTHORIZATION_FAILED); topics without
    DESCRIBE are answered with TOPIC_AUTHORIZATION_FAILED when named, left out
    when the request asks for all."""
    def filter_topics(topics, asked):
        out = []
        for t in topics:
            name = topic_name(ctx, t)
            if name is None or allowed(ctx, Op.DESCRIBE, T.TOPIC, name):
                out.append(t)
            elif asked:
                t["partitions"] = [dict(p, error_code=TOPIC_DENIED, committed_offset=-1, metadata=None)
                                   for p in t["partitions"]]
                out.append(t)
        return out

    if ctx.version < 8:
        if not allowed(ctx, Op.DESCRIBE, T.GROUP, request["group_id"]):
            return {"error_code": GROUP_DENIED, "topics": []}
        response = await api.handler(ctx, request)
        response["topics"] = filter_topics(response.get("topics") or [], request.get("topics") is not None)
        return response
    groups = request["groups"]
    denied = [g for g in groups if not allowed(ctx, Op.DESCRIBE, T.GROUP, g["group_id"])]
    request["groups"] = [g for g in groups if g not in denied]
    response = await api.handler(ctx, request) if request["groups"] else {"groups": []}
    asked = {g["group_id"]: g.get("topics") is not None for g in request["groups"]}
    for g in response["groups"]:
        g["topics"] = filter_topics(g.get("topics") or [], asked.get(g["group_id"], True))
    response["groups"] = list(response["groups"]) + [
        {"group_id": g["group_id"], "error_code": GROUP_DENIED, "topics": []} for g in denied]
    return response


def coordinator_check(ctx, key_type: int, key: str) -> int:
    if key_type == 1:
        return 0 if allowed(ctx, Op.DESCRIBE, T.TRANSACTIONAL_ID, key) else TXN_DENIED
    if key_type == 0:
        return 0 if allowed(ctx, Op.DESCRIBE, T.GROUP, key) else GROUP_DENIED
    return 0


async def find_coordinator(api, ctx, request):
    key_type = request.get("key_type", 0)
    if ctx.version < 4:
        code = coordinator_check(ctx, key_type, request["key"])
        if code:
            return {"error_code": code, "error_message": None, "node_id": -1, "host": "", "port": -1}
        return await api.handler(ctx, request)
    keys = request["coordinator_keys"]
    codes = {k: coordinator_check(ctx, key_type, k) for k in keys}
    request["coordinator_keys"] = [k for k in keys if not codes[k]]
    response = await api.handler(ctx, request) if request["coordinator_keys"] else {"coordinators": []}
    response["coordinators"] = list(response["coordinators"]) + [
        {"key": k, "node_id": -1, "host": "", "port": -1, "error_code": c, "error_message": None}
        for k, c in codes.items() if c]
    return response


async def init_producer_id(api, ctx, request):
    """A transactional producer needs WRITE on its transactional id; an
    idempotent one IDEMPOTENT_WRITE on the cluster or WRITE on some topic."""
    txn = request.get("transactional_id")
    if txn is not None:
        ok, code = allowed(ctx, Op.WRITE, T.TRANSACTIONAL_ID, txn), TXN_DENIED
    else:
        authz = ctx.broker.authorizer
        ok = allowed(ctx, Op.IDEMPOTENT_WRITE, T.CLUSTER, "") or authz.authorize_any(
            ctx.principal, host(ctx), Op.WRITE, T.TOPIC)
        code = CLUSTER_DENIED
    if not ok:
        return {"error_code": code, "producer_id": -1, "producer_epoch": -1}
    return await api.handler(ctx, request)


def txn_write(ctx, request, key: str = "transactional_id") -> int:
    return 0 if allowed(ctx, Op.WRITE, T.TRANSACTIONAL_ID, request[key]) else TXN_DENIED


async def add_partitions_to_txn(api, ctx, request):
    """v0-3 (clients): WRITE on the transactional id, then WRITE on each topic;
    a refused topic gets TOPIC_AUTHORIZATION_FAILED and the others
    OPERATION_NOT_ATTEMPTED, without the handler. v4+ (brokers): CLUSTER_ACTION."""
    if ctx.version >= 4:
        if not allowed(ctx, Op.CLUSTER_ACTION, T.CLUSTER, ""):
            return {"error_code": CLUSTER_DENIED, "results_by_transaction": []}
        return await api.handler(ctx, request)
    topics = request["v3_and_below_topics"]
    code = txn_write(ctx, request, "v3_and_below_transactional_id")
    verdicts = {t["name"]: code or (0 if allowed(ctx, Op.WRITE, T.TOPIC, t["name"]) else TOPIC_DENIED)
                for t in topics}
    if not any(verdicts.values()):
        return await api.handler(ctx, request)
    return {"results_by_topic_v3_and_below": [
        {"name": t["name"], "results_by_partition": [
            {"partition_index": i, "partition_error_code": verdicts[t["name"]] or errors.OPERATION_NOT_ATTEMPTED}
            for i in t["partitions"]]} for t in topics]}


async def list_transactions(api, ctx, request):
    """Only the transactional ids the principal may DESCRIBE are listed."""
    response = await api.handler(ctx, request)
    response["transaction_states"] = [s for s in response["transaction_states"] if allowed(
        ctx, Op.DESCRIBE, T.TRANSACTIONAL_ID, s["transactional_id"])]
    return response


async def create_delegation_token(api, ctx, request):
    """CREATE_TOKENS on the owner (a USER resource named ``User:<name>``) for a
    token owned by someone other than the requester; checked as Kafka checks
    it, once the connection may ask for tokens at all."""
    from odradek.security.delegation_tokens import create_response, owner_of, requests_allowed

    owner = owner_of(ctx, request)
    if requests_allowed(ctx) and owner != ctx.principal and not allowed(ctx, Op.CREATE_TOKENS, T.USER, str(owner)):
        return create_response(owner, ctx.principal, errors.DELEGATION_TOKEN_AUTHORIZATION_FAILED)
    return await api.handler(ctx, request)


async def describe_delegation_token(api, ctx, request):
    """Only the tokens the principal owns or may renew, or may DESCRIBE (the
    token, or DESCRIBE_TOKENS on its owner) are described."""
    from odradek.security.principal import KafkaPrincipal

    response = await api.handler(ctx, request)

    def visible(t) -> bool:
        owner = KafkaPrincipal(t["principal_type"], t["principal_name"])
        renewers = {KafkaPrincipal(r["principal_type"], r["principal_name"]) for r in t["renewers"]}
        return (ctx.principal == owner or ctx.principal in renewers
                or allowed(ctx, Op.DESCRIBE, T.DELEGATION_TOKEN, t["token_id"])
                or allowed(ctx, Op.DESCRIBE_TOKENS, T.USER, str(owner)))
    response["tokens"] = [t for t in response["tokens"] if visible(t)]
    return response


def txn_and_group(ctx, request) -> int:
    """WRITE on the transactional id, then READ on the group."""
    return txn_write(ctx, request) or group_of(Op.READ)(ctx, request)


# -- the table -----------------------------------------------------------------------
RULES: dict[str, Callable] = {
    "ApiVersions": NONE,
    "CreateDelegationToken": create_delegation_token,
    "RenewDelegationToken": NONE,  # the owner and renewers: the token's own rule
    "ExpireDelegationToken": NONE,
    "DescribeDelegationToken": describe_delegation_token,
    "SaslHandshake": NONE,
    "SaslAuthenticate": NONE,
    "DescribeCluster": NONE,  # Kafka checks DESCRIBE on the cluster only for authorised operations
    "Metadata": metadata,
    "Produce": Items("topic_data", "responses", topic_check(Op.WRITE), produce_error, whole=produce_whole),
    "Fetch": fetch,
    "ListOffsets": Items("topics", "topics", topic_check(Op.DESCRIBE),
                         partitions_error("name", "partitions", "partition_index", timestamp=-1, offset=-1)),
    "OffsetForLeaderEpoch": Items("topics", "topics", topic_check(Op.DESCRIBE, "topic"),
                                  partitions_error("topic", "partitions", "partition", leader_epoch=-1,
                                                   end_offset=-1)),
    "CreateTopics": Items("topics", "topics", create_topic_check,
                          lambda t, code: {"name": t["name"], "error_code": code, "error_message": None,
                                           "num_partitions": -1, "replication_factor": -1, "configs": None}),
    "DeleteTopics": Items(lambda v: "topics" if v >= 6 else "topic_names", "responses", delete_topic_check,
                          delete_topic_error),
    "CreatePartitions": Items("topics", "results", topic_check(Op.ALTER),
                              lambda t, code: {"name": t["name"], "error_code": code, "error_message": None}),
    "DeleteRecords": Items("topics", "topics", topic_check(Op.DELETE),
                           partitions_error("name", "partitions", "partition_index", low_watermark=-1)),
    "DescribeConfigs": Items("resources", "results", config_check(Op.DESCRIBE_CONFIGS), config_error),
    "ListConfigResources": Whole(cluster(Op.DESCRIBE_CONFIGS), lambda r, code: {"error_code": code,
                                                                             "config_resources": []}),
    "AlterConfigs": Items("resources", "responses", config_check(Op.ALTER_CONFIGS), config_error),
    "IncrementalAlterConfigs": Items("resources", "responses", config_check(Op.ALTER_CONFIGS), config_error),
    "FindCoordinator": find_coordinator,
    "JoinGroup": Whole(group_of(Op.READ), top_error),
    "SyncGroup": Whole(group_of(Op.READ), top_error),
    "Heartbeat": Whole(group_of(Op.READ), top_error),
    "LeaveGroup": Whole(group_of(Op.READ), top_error),
    "ConsumerGroupHeartbeat": Whole(consumer_heartbeat, top_error),
    "ShareGroupHeartbeat": Whole(group_of(Op.READ), top_error),
    "StreamsGroupHeartbeat": Whole(group_of(Op.READ), top_error),
    "ShareFetch": Items("topics", "responses", topic_check(Op.READ, "topic"), share_error,
                        whole=group_of(Op.READ)),
    "ShareAcknowledge": Items("topics", "responses", topic_check(Op.READ, "topic"), share_error,
                              whole=group_of(Op.READ)),
    "OffsetCommit": Items("topics", "topics", topic_check(Op.READ), offset_commit_error,
                          whole=group_of(Op.READ)),
    "OffsetFetch": offset_fetch,
    "OffsetDelete": Items("topics", "topics", topic_check(Op.READ),
                          partitions_error("name", "partitions", "partition_index"),
                          whole=lambda ctx, r: 0 if allowed(ctx, Op.DELETE, T.GROUP, r["group_id"]) else GROUP_DENIED),
    "DescribeGroups": Items("groups", "groups", group_check(Op.DESCRIBE),
                            lambda g, code: {"group_id": g, "error_code": code, "group_state": "",
                                             "protocol_type": "", "protocol_data": "", "members": []}),
    "ConsumerGroupDescribe": Items("group_ids", "groups", group_check(Op.DESCRIBE),
                                   lambda g, code: {"group_id": g, "error_code": code, "group_state": "",
                                                    "assignor_name": "", "members": []}),
    "ShareGroupDescribe": Items("group_ids", "groups", group_check(Op.DESCRIBE),
                                lambda g, code: {"group_id": g, "error_code": code, "group_state": "",
                                                 "assignor_name": "", "members": []}),
    "StreamsGroupDescribe": Items("group_ids", "groups", group_check(Op.DESCRIBE),
                                  lambda g, code: {"group_id": g, "error_code": code, "group_state": "",
                                                   "members": []}),
    "DescribeShareGroupOffsets": Items(
        "groups", "groups", lambda ctx, g: group_check(Op.DESCRIBE)(ctx, g["group_id"]),
        lambda g, code: {"group_id": g["group_id"], "error_code": code, "error_message": None, "topics": []}),
    "AlterShareGroupOffsets": Items(
        "topics", "responses", topic_check(Op.READ, "topic_name"),
        lambda t, code: {"topic_name": t["topic_name"], "partitions": [
            {"partition_index": p["partition_index"], "error_code": code} for p in t["partitions"]]},
        whole=group_of(Op.READ)),
    "DeleteShareGroupOffsets": Items(
        "topics", "responses", topic_check(Op.READ, "topic_name"),
        lambda t, code: {"topic_name": t["topic_name"], "error_code": code}, whole=group_of(Op.DELETE)),
    "ReadShareGroupState": Whole(cluster(Op.CLUSTER_ACTION), lambda r, code: {"results": []}),
    "WriteShareGroupState": Whole(cluster(Op.CLUSTER_ACTION), lambda r, code: {"results": []}),
    "DeleteShareGroupState": Whole(cluster(Op.CLUSTER_ACTION), lambda r, code: {"results": []}),
    "InitializeShareGroupState": Whole(cluster(Op.CLUSTER_ACTION), lambda r, code: {"results": []}),
    "ReadShareGroupStateSummary": Whole(cluster(Op.CLUSTER_ACTION), lambda r, code: {"results": []}),
    "ListGroups": list_groups,
    "DescribeTopicPartitions": describe_topic_partitions,
    "DeleteGroups": Items("groups_names", "results", group_check(Op.DELETE),
                          lambda g, code: {"group_id": g, "error_code": code}),
    "InitProducerId": init_producer_id,
    "AddPartitionsToTxn": add_partitions_to_txn,
    "AddOffsetsToTxn": Whole(txn_and_group, top_error),
    "EndTxn": Whole(txn_write, top_error),
    "TxnOffsetCommit": Items("topics", "topics", topic_check(Op.READ), offset_commit_error, whole=txn_and_group),
    "DescribeTransactions": Items(
        "transactional_ids", "transaction_states",
        lambda ctx, txn: 0 if allowed(ctx, Op.DESCRIBE, T.TRANSACTIONAL_ID, txn) else TXN_DENIED,
        lambda txn, code: {"transactional_id": txn, "error_code": code, "transaction_state": "",
                           "transaction_timeout_ms": 0, "transaction_start_time_ms": -1,
                           "producer_id": -1, "producer_epoch": -1, "topics": []}),
    "ListTransactions": list_transactions,
    "DescribeProducers": Items("topics", "topics", topic_check(Op.READ), lambda t, code: {
        "name": t["name"], "partitions": [{"partition_index": i, "error_code": code, "error_message": None,
                                           "active_producers": []} for i in t["partition_indexes"]]}),
    "WriteTxnMarkers": Whole(cluster(Op.CLUSTER_ACTION), lambda r, code: {"markers": [
        {"producer_id": m["producer_id"], "topics": [
            {"name": t["name"], "partitions": [{"partition_index": i, "error_code": code}
                                               for i in t["partition_indexes"]]} for t in m["topics"]]}
        for m in r["markers"]]}),
    "DescribeUserScramCredentials": Whole(cluster(Op.DESCRIBE),
                                          lambda r, code: {"error_code": code, "results": []}),
    "AlterUserScramCredentials": Whole(cluster(Op.ALTER), lambda r, code: {"results": [
        {"user": u, "error_code": code} for u in dict.fromkeys(
            x["name"] for x in r["deletions"] + r["upsertions"])]}),
    "DescribeAcls": Whole(cluster(Op.DESCRIBE), lambda r, code: {"error_code": code, "resources": [],
                                                                  "error_message": "Cluster authorization failed."}),
    "CreateAcls": Whole(cluster(Op.ALTER), lambda r, code: {"results": [
        {"error_code": code} for _ in r["creations"]]}),
    "DeleteAcls": Whole(cluster(Op.ALTER), lambda r, code: {"filter_results": [
        {"error_code": code, "matching_acls": []} for _ in r["filters"]]}),
    "DescribeClientQuotas": Whole(cluster(Op.DESCRIBE_CONFIGS),
                                  lambda r, code: {"error_code": code, "entries": None,
                                                   "error_message": "Cluster authorization failed."}),
    "ElectLeaders": Whole(cluster(Op.ALTER), lambda r, code: {"error_code": code, "replica_election_results": [
        {"topic": t["topic"], "partition_result": [
            {"partition_id": p, "error_code": code, "error_message": None} for p in t["partitions"]]}
        for t in r["topic_partitions"] or []]}),
    "AlterPartitionReassignments": Whole(cluster(Op.ALTER), lambda r, code: {
        "allow_replication_factor_change": True, "error_code": code,
        "error_message": "Cluster authorization failed.", "responses": [
            {"name": t["name"], "partitions": [
                {"partition_index": p["partition_index"], "error_code": code, "error_message": None}
                for p in t["partitions"]]} for t in r["topics"]]}),
    "DescribeLogDirs": Whole(cluster(Op.DESCRIBE), lambda r, code: {"error_code": code, "results": []}),
    "ListPartitionReassignments": Whole(cluster(Op.DESCRIBE), lambda r, code: {
        "error_code": code, "error_message": "Cluster authorization failed.", "topics": []}),
    "AlterClientQuotas": Whole(cluster(Op.ALTER_CONFIGS), lambda r, code: {"entries": [
        {"error_code": code, "error_message": None, "entity": e["entity"]} for e in r["entries"]]}),
}


async def handle(api, ctx, request):
    """Serve ``request`` under the ACLs: the connection's one call when an authoriser is on."""
    return await RULES[api.name](api, ctx, request)

CONSUMER_FETCH = Items("topics", "responses", topic_check(Op.READ, "topic"), fetch_error)
