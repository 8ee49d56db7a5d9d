"""The metadata store on etcd (3.5.3 or newer; 3.6 preferred), for clusters.

Theory of operation: every key of the store lives in etcd under one prefix
(``etcd://host:port[,host:port...]/PREFIX`` names the cluster); revisions,
versions, transactions and leases are etcd's own, so the guarantees of the
interface are etcd's. The gRPC stubs and channel come from etcd3aio; the
calls are made here, directly, so that nothing is retried behind the
caller's back:

- reads (get, range) are linearizable and retried on a transient error;
- a transaction is sent once: if the answer is lost its outcome is unknown,
  and ``StoreUnavailable`` says so (the caller re-reads before deciding);
- a watch is one stream from the revision asked for, never resumed behind
  the caller's back (etcd3aio's resume has been seen to skip events): a
  broken stream raises ``WatchInterrupted``, and the caller re-lists its
  prefix and watches again from the revision of that listing.
"""

from __future__ import annotations

import asyncio
import math
from typing import AsyncIterator, Sequence
from urllib.parse import urlsplit

import grpc
from etcd3aio._protobuf import (
    Compare as PbCompare, DeleteRangeRequest, KVStub, LeaseGrantRequest, LeaseKeepAliveRequest,
    LeaseRevokeRequest, LeaseStub, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
    WatchRequest, WatchStub,
)
from etcd3aio.connections import ConnectionManager
from etcd3aio.kv import prefix_range_end

from odradek.metadata.store import (
    CompactedError, Compare, Delete, Event, Get, KeyValue, LeaseNotFound, MetadataStore, Op, Put,
    StoreUnavailable, TxnResult, WatchInterrupted,
)

_TARGETS = {"version": PbCompare.VERSION, "create_revision": PbCompare.CREATE,
            "mod_revision": PbCompare.MOD, "value": PbCompare.VALUE, "lease": PbCompare.LEASE}
_RESULTS = {"==": PbCompare.EQUAL, "!=": PbCompare.NOT_EQUAL, "<": PbCompare.LESS, ">": PbCompare.GREATER}
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
READ_ATTEMPTS = 3
CALL_TIMEOUT = 10.0


def parse_url(url: str) -> tuple[list[str], str]:
    """``etcd://h1:p1,h2:p2/prefix`` -> (["h1:p1", "h2:p2"], "/prefix/")."""
    parts = urlsplit(url)
    if parts.scheme != "etcd" or not parts.netloc:
        raise ValueError(f"not an etcd URL (etcd://HOST:PORT[,HOST:PORT...]/PREFIX): {url}")
    prefix = parts.path.strip("/")
    if not prefix:
        raise ValueError(f"an etcd URL needs a prefix naming the cluster: {url}")
    return parts.netloc.split(","), f"/{prefix}/"


class EtcdStore(MetadataStore):
    def __init__(self, endpoints: Sequence[str], prefix: str):
        self.endpoints = list(endpoints)
        self.prefix = prefix
        self._raw_prefix = prefix.encode()
        self._channel = ConnectionManager(self.endpoints).get_channel()
        self._kv = KVStub(self._channel)
        self._lease = LeaseStub(self._channel)
        self._watch = WatchStub(self._channel)

    @classmethod
    async def open(cls, url: str) -> "EtcdStore":
        """Connect to the etcd cluster of ``url`` and check that it answers."""
        endpoints, prefix = parse_url(url)
        store = cls(endpoints, prefix)
        try:
            await store.range("")
        except BaseException:
            await store.close()
            raise
        return store

    # -- keys ------------------------------------------------------------------
    def _key(self, key: str) -> bytes:
        return self._raw_prefix + key.encode()

    def _kv_of(self, pb) -> KeyValue:
        return KeyValue(pb.key[len(self._raw_prefix):].decode(), bytes(pb.value), pb.create_revision,
                        pb.mod_revision, pb.version, pb.lease)

    def _range_request(self, key: str, prefix: bool) -> RangeRequest:
        raw = self._key(key)
        return RangeRequest(key=raw, range_end=prefix_range_end(raw) if prefix else b"")

    # -- calls -------------------------------------------------------------------
    async def _read(self, call, request):
        for attempt in range(READ_ATTEMPTS):
            try:
                return await call(request, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as e:
                if e.code() not in _TRANSIENT or attempt == READ_ATTEMPTS - 1:
                    raise StoreUnavailable(f"etcd: {e.code().name}: {e.details()}") from None
                await asyncio.sleep(0.1 * 2 ** attempt)

    async def get(self, key: str) -> KeyValue | None:
        res = await self._read(self._kv.Range, self._range_request(key, False))
        return self._kv_of(res.kvs[0]) if res.kvs else None

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        res = await self._read(self._kv.Range, self._range_request(prefix, True))
        return [self._kv_of(kv) for kv in res.kvs], res.header.revision

    def _compare(self, c: Compare) -> PbCompare:
        pb = PbCompare(key=self._key(c.key), target=_TARGETS[c.target], result=_RESULTS[c.op])
        if c.target == "value":
            if c.operand is None:
                raise ValueError("etcd cannot compare the value of a missing key; compare its version")
            pb.value = bytes(c.operand)
        elif c.target == "version":
            pb.version = c.operand
        elif c.target == "create_revision":
            pb.create_revision = c.operand
        elif c.target == "mod_revision":
            pb.mod_revision = c.operand
        else:
            pb.lease = c.operand
        return pb

    def _op(self, op: Op) -> RequestOp:
        if isinstance(op, Put):
            return RequestOp(request_put=PutRequest(key=self._key(op.key), value=bytes(op.value),
                                                    lease=op.lease))
        if isinstance(op, Delete):
            raw = self._key(op.key)
            return RequestOp(request_delete_range=DeleteRangeRequest(
                key=raw, range_end=prefix_range_end(raw) if op.prefix else b""))
        if isinstance(op, Get):
            return RequestOp(request_range=self._range_request(op.key, op.prefix))
        raise TypeError(f"not a store operation: {op!r}")

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        request = TxnRequest(compare=[self._compare(c) for c in compares],
                             success=[self._op(o) for o in success],
                             failure=[self._op(o) for o in failure])
        try:
            res = await self._kv.Txn(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as e:
            if "lease not found" in (e.details() or ""):
                raise LeaseNotFound(e.details()) from None
            raise StoreUnavailable(f"etcd: {e.code().name}: {e.details()} (outcome unknown)") from None
        reads = [[self._kv_of(kv) for kv in r.response_range.kvs]
                 for r in res.responses if r.WhichOneof("response") == "response_range"]
        return TxnResult(res.succeeded, res.header.revision, reads)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        raw = self._key(prefix)
        create = WatchCreateRequest(key=raw, range_end=prefix_range_end(raw),
                                    start_revision=max(start_revision, 1))

        async def requests():
            yield WatchRequest(create_request=create)
            await asyncio.Future()  # keep the stream open

        stream = self._watch.Watch(requests())
        try:
            async for res in stream:
                if res.compact_revision > 0:
                    raise CompactedError(res.compact_revision)
                if res.canceled:
                    raise WatchInterrupted(f"etcd canceled the watch: {res.cancel_reason}")
                # A response holds whole revisions (no fragmenting is asked for).
                batch: list[Event] = []
                for ev in res.events:
                    kv = self._kv_of(ev.kv)
                    if ev.type != ev.PUT:
                        kv = KeyValue(kv.key, b"", kv.create_revision, kv.mod_revision, 0)
                    if batch and kv.mod_revision != batch[0].revision:
                        yield batch
                        batch = []
                    batch.append(Event("put" if ev.type == ev.PUT else "delete", kv))
                if batch:
                    yield batch
            raise WatchInterrupted("etcd ended the watch stream")
        except grpc.aio.AioRpcError as e:
            raise WatchInterrupted(f"etcd: {e.code().name}: {e.details()}") from None
        finally:
            stream.cancel()

    async def grant_lease(self, ttl: float) -> int:
        if ttl <= 0:
            raise ValueError("a lease needs a positive time to live")
        try:
            res = await self._lease.LeaseGrant(LeaseGrantRequest(TTL=math.ceil(ttl)), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as e:
            raise StoreUnavailable(f"etcd: {e.code().name}: {e.details()}") from None
        return res.ID

    async def keep_alive(self, lease: int) -> float:
        async def one():
            yield LeaseKeepAliveRequest(ID=lease)

        stream = self._lease.LeaseKeepAlive(one(), timeout=CALL_TIMEOUT)
        try:
            async for res in stream:
                if res.TTL <= 0:
                    raise LeaseNotFound(lease)
                return float(res.TTL)
        except grpc.aio.AioRpcError as e:
            raise StoreUnavailable(f"etcd: {e.code().name}: {e.details()}") from None
        finally:
            stream.cancel()
        raise StoreUnavailable("etcd: no answer to a lease keep-alive")

    async def revoke_lease(self, lease: int) -> None:
        try:
            await self._lease.LeaseRevoke(LeaseRevokeRequest(ID=lease), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise LeaseNotFound(lease) from None
            raise StoreUnavailable(f"etcd: {e.code().name}: {e.details()}") from None

    async def close(self) -> None:
        await self._channel.close()
