"""Transactions: the client APIs of the transaction coordinator, and WriteTxnMarkers.

  InitProducerId (22) 0-6 with a transactional id (``init_transactional``;
    the handler lives in producer_id.py): a new producer id, or the epoch
    bumped; an open transaction is aborted with the epoch bumped (fencing its
    producer) and the request answered CONCURRENT_TRANSACTIONS until the
    abort completes; INVALID_TRANSACTION_TIMEOUT above
    ``transaction.max.timeout.ms``.
  AddPartitionsToTxn (24) 0-5: the client form (v0-3) and the batched broker
    form (v4+, with ``verify_only``). Unknown partitions get
    UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED.
  AddOffsetsToTxn (25) 0-4: adds the group's ``__consumer_offsets`` partition.
  EndTxn (26) 0-4: writes PrepareCommit/PrepareAbort and answers; the
    markers and the Complete state follow.
  TxnOffsetCommit (28) 0-4: offsets held by the group's shard until the
    transaction's marker; the generation and member are checked as
    OffsetCommit does (v3+); the ``__consumer_offsets`` partition must be in
    the transaction (AddOffsetsToTxn), as Kafka 4 verifies.
  WriteTxnMarkers (27) 1-2: the receiving side, for a coordinator on
    another broker: each marker appended through ``Partition.append_marker``.

Versions before PRODUCER_FENCED existed (InitProducerId < 4, the others
< 2) get INVALID_PRODUCER_EPOCH instead, as Kafka answers them.

  DescribeTransactions (65) 0, ListTransactions (66) 0-2 (state, producer id,
    duration and id pattern filters; Kafka's state names), over the shards
    hosted here; DescribeProducers (61) 0, from each partition's producer state.

Not served: transactions v2 (KIP-890 part 2: EndTxn v5, TxnOffsetCommit
v5+, the ``transaction.version`` feature), two-phase commit (KIP-939:
InitProducerId v6's ``enable_2pc`` is refused). Behaviour lives in
odradek/coordinator/transactions/ (docs/transactions.md).
"""

from __future__ import annotations

from odradek.protocol import errors
from odradek.server.registry import handles

OFFSETS_TOPIC = "__consumer_offsets"


def _fenced(code: int, version: int, first_with_fenced: int) -> int:
    if code == errors.PRODUCER_FENCED and version < first_with_fenced:
        return errors.INVALID_PRODUCER_EPOCH
    return code


async def _answer(tc, h, res) -> dict:
    """``res.response``, once what the operation wrote is committed."""
    if res.records and await tc.committed(h):
        return dict(res.response, error_code=errors.NOT_COORDINATOR)
    return res.response


async def _shard(ctx, transactional_id: str | None, create: bool = False):
    """(coordinator, hosted shard, 0) or (coordinator or None, None, error)."""
    tc = getattr(ctx.broker, "transactions", None)
    if tc is None or not transactional_id:
        return tc, None, errors.COORDINATOR_NOT_AVAILABLE if tc is None else errors.INVALID_REQUEST
    if create and not await tc.ensure_topic():
        return tc, None, errors.COORDINATOR_NOT_AVAILABLE
    h, code = tc.shard_for(transactional_id)
    return tc, h, code


# -- InitProducerId ----------------------------------------------------------

async def init_transactional(ctx, request: dict) -> dict:
    """InitProducerId for a transactional producer."""
    txn_id = request["transactional_id"]
    if request.get("enable2_pc"):
        return {"error_code": errors.INVALID_REQUEST, "producer_id": -1, "producer_epoch": -1}
    tc, h, code = await _shard(ctx, txn_id, create=True)
    new_pid = None
    if not code and h.shard.needs_producer_id(txn_id):
        new_pid = await ctx.broker.producer_ids.allocate()
        h, code = tc.shard_for(txn_id)  # the await may have let anything happen
    if code:
        return {"error_code": code, "producer_id": -1, "producer_epoch": -1}
    res = tc.execute(h, h.shard.init_producer_id, txn_id, request["transaction_timeout_ms"],
                     request["producer_id"], request["producer_epoch"], new_pid)
    out = dict(await _answer(tc, h, res))
    out["error_code"] = _fenced(out["error_code"], ctx.version, 4)
    return out


# -- AddPartitionsToTxn / AddOffsetsToTxn ------------------------------------

def _topic_results(topics: list[tuple[str, list[int]]], code_of) -> list[dict]:
    return [{"name": name, "results_by_partition": [
        {"partition_index": i, "partition_error_code": code_of(name, i)} for i in indexes]}
        for name, indexes in topics]


async def _add_partitions(ctx, txn_id, producer_id: int, producer_epoch: int,
                          topics: list[tuple[str, list[int]]], verify_only: bool = False) -> list[dict]:
    broker = ctx.broker
    tc, h, code = await _shard(ctx, txn_id)
    if code:
        return _topic_results(topics, lambda n, i: code)
    if verify_only:
        return _topic_results(topics, lambda n, i: h.shard.verify(txn_id, producer_id, producer_epoch, (n, i)))

    def known(name: str, index: int) -> bool:
        t = broker.image.get(name)
        return t is not None and 0 <= index < len(t.partitions)

    if not all(known(n, i) for n, indexes in topics for i in indexes):
        return _topic_results(topics, lambda n, i: errors.OPERATION_NOT_ATTEMPTED if known(n, i)
                              else errors.UNKNOWN_TOPIC_OR_PARTITION)
    wanted = {(n, i) for n, indexes in topics for i in indexes}
    res = tc.execute(h, h.shard.add_partitions, txn_id, producer_id, producer_epoch, wanted)
    code = (await _answer(tc, h, res))["error_code"]
    return _topic_results(topics, lambda n, i: code)


@handles("AddPartitionsToTxn", 0, 5)
async def add_partitions_to_txn(ctx, request: dict) -> dict:
    v = ctx.version
    if v <= 3:
        topics = [(t["name"], list(t["partitions"])) for t in request["v3_and_below_topics"]]
        results = await _add_partitions(ctx, request["v3_and_below_transactional_id"],
                                        request["v3_and_below_producer_id"],
                                        request["v3_and_below_producer_epoch"], topics)
        for t in results:
            for p in t["results_by_partition"]:
                p["partition_error_code"] = _fenced(p["partition_error_code"], v, 2)
        return {"results_by_topic_v3_and_below": results}
    out = []
    for txn in request["transactions"]:
        topics = [(t["name"], list(t["partitions"])) for t in txn["topics"]]
        out.append({"transactional_id": txn["transactional_id"],
                    "topic_results": await _add_partitions(ctx, txn["transactional_id"], txn["producer_id"],
                                                           txn["producer_epoch"], topics, txn["verify_only"])})
    return {"error_code": 0, "results_by_transaction": out}


@handles("AddOffsetsToTxn", 0, 4)
async def add_offsets_to_txn(ctx, request: dict) -> dict:
    gc = getattr(ctx.broker, "groups", None)
    if gc is None or not await gc.ensure_topic():
        return {"error_code": errors.COORDINATOR_NOT_AVAILABLE}
    tc, h, code = await _shard(ctx, request["transactional_id"])
    if not code:
        index = gc.partition_for(request["group_id"])
        res = tc.execute(h, h.shard.add_partitions, request["transactional_id"], request["producer_id"],
                         request["producer_epoch"], {(OFFSETS_TOPIC, index)})
        code = (await _answer(tc, h, res))["error_code"]
    return {"error_code": _fenced(code, ctx.version, 2)}


# -- EndTxn ------------------------------------------------------------------

@handles("EndTxn", 0, 4)
async def end_txn(ctx, request: dict) -> dict:
    tc, h, code = await _shard(ctx, request["transactional_id"])
    if not code:
        res = tc.execute(h, h.shard.end_txn, request["transactional_id"], request["producer_id"],
                         request["producer_epoch"], request["committed"])
        code = (await _answer(tc, h, res))["error_code"]
    return {"error_code": _fenced(code, ctx.version, 2)}


# -- TxnOffsetCommit -----------------------------------------------------------

@handles("TxnOffsetCommit", 0, 4)
async def txn_offset_commit(ctx, request: dict) -> dict:
    broker = ctx.broker
    topics = [(t["name"], [(p["partition_index"], p["committed_offset"], p["committed_leader_epoch"],
                            p["committed_metadata"]) for p in t["partitions"]]) for t in request["topics"]]

    def everywhere(code: int) -> dict:
        return {"topics": [{"name": name, "partitions": [{"partition_index": p[0], "error_code": code}
                                                         for p in parts]} for name, parts in topics]}

    gc = getattr(broker, "groups", None)
    if gc is None:
        return everywhere(errors.COORDINATOR_NOT_AVAILABLE)
    group_id, pid, epoch = request["group_id"], request["producer_id"], request["producer_epoch"]
    shard, code = gc.shard_for(group_id)
    if code:
        return everywhere(code)
    # The group's partition must be part of the transaction (AddOffsetsToTxn).
    index = gc.partition_for(group_id)
    p, _ = broker.replicas.partition_or_error(OFFSETS_TOPIC, index)
    tc = getattr(broker, "transactions", None)
    if p is not None and not p.in_txn(pid):
        code = errors.INVALID_TXN_STATE if tc is None else \
            tc.verify(request["transactional_id"], pid, epoch, OFFSETS_TOPIC, index, unasked=0)
        if code:
            return everywhere(_fenced(code, ctx.version, 2))
    res = gc.execute(shard, shard.txn_commit_offsets, producer_id=pid, producer_epoch=epoch,
                     group_id=group_id, generation=request["generation_id_or_member_epoch"],
                     member_id=request["member_id"], instance_id=request["group_instance_id"],
                     topics=topics, topic_exists=gc.topic_exists, version=8)
    return dict(await ctx.wait(gc.answer(shard, res)))


# -- WriteTxnMarkers -------------------------------------------------------------

@handles("WriteTxnMarkers", 1, 2)
async def write_txn_markers(ctx, request: dict) -> dict:
    """Markers from a transaction coordinator (on this or another broker),
    written acks=all (``write_markers``): answered once replicated."""
    from odradek.coordinator.transactions.markers import MARKER_TIMEOUT_S, write_markers

    broker = ctx.broker
    out = []
    for m in request["markers"]:
        codes, led = {}, []
        for t in m["topics"]:
            for index in t["partition_indexes"]:
                p, code = broker.replicas.partition_or_error(t["name"], index)
                if code:
                    codes[(t["name"], index)] = code
                else:
                    led.append(((t["name"], index), p))
        codes.update(await ctx.wait(write_markers(broker, led, m["producer_id"], m["producer_epoch"],
                                                  m["coordinator_epoch"], m["transaction_result"], MARKER_TIMEOUT_S)))
        out.append({"producer_id": m["producer_id"], "topics": [
            {"name": t["name"], "partitions": [{"partition_index": i, "error_code": codes[(t["name"], i)]}
                                               for i in t["partition_indexes"]]} for t in m["topics"]]})
    return {"markers": out}


# -- DescribeTransactions / ListTransactions / DescribeProducers ------------------

@handles("DescribeTransactions", 0, 0)
async def describe_transactions(ctx, request: dict) -> dict:
    out = []
    for txn_id in request["transactional_ids"]:
        entry = {"transactional_id": txn_id, "error_code": 0, "transaction_state": "",
                 "transaction_timeout_ms": 0, "transaction_start_time_ms": -1, "producer_id": -1,
                 "producer_epoch": -1, "topics": []}
        tc, h, code = await _shard(ctx, txn_id)
        m = None if code else h.shard.describe(txn_id)
        if code or m is None:
            entry["error_code"] = code or errors.TRANSACTIONAL_ID_NOT_FOUND
        else:
            by_topic: dict[str, list[int]] = {}
            for topic, index in sorted(m.partitions):
                by_topic.setdefault(topic, []).append(index)
            entry.update(transaction_state=m.state.kafka_name, transaction_timeout_ms=m.timeout_ms,
                         transaction_start_time_ms=m.start_ms, producer_id=m.producer_id,
                         producer_epoch=m.producer_epoch,
                         topics=[{"topic": t, "partitions": ps} for t, ps in by_topic.items()])
        out.append(entry)
    return {"transaction_states": out}


@handles("ListTransactions", 0, 2)
async def list_transactions(ctx, request: dict) -> dict:
    import re

    from odradek.clock import now_ms
    from odradek.coordinator.transactions.records import STATE_NAMES

    tc = getattr(ctx.broker, "transactions", None)
    known = set(STATE_NAMES.values())
    states = set(request["state_filters"] or ())
    answer = {"error_code": 0, "unknown_state_filters": sorted(states - known), "transaction_states": []}
    if tc is None:
        return answer
    pattern = request.get("transactional_id_pattern")
    try:
        compiled = re.compile(pattern) if pattern else None
    except re.error:
        return dict(answer, error_code=errors.INVALID_REQUEST)
    now = now_ms()
    for h in list(tc.hosted.values()):
        if h.loading:
            return dict(answer, error_code=errors.COORDINATOR_LOAD_IN_PROGRESS)
        answer["transaction_states"].extend(h.shard.list_transactions(
            now, states & known if states else None, set(request["producer_id_filters"] or ()),
            request.get("duration_filter", -1), compiled))
    if states and not states & known:
        answer["transaction_states"] = []  # only unknown states asked for: none match
    return answer


@handles("DescribeProducers", 0, 0)
async def describe_producers(ctx, request: dict) -> dict:
    from odradek.apis.partitions import per_partition

    def answer(p, requested, entry: dict) -> None:
        entry["active_producers"] = p.describe_producers()

    topics = per_partition(ctx.broker, [{"name": t["name"], "partitions": [
        {"partition_index": i} for i in t["partition_indexes"]]} for t in request["topics"]],
        "name", "partition_index", answer, {"active_producers": [], "error_message": None})
    return {"topics": topics}
