"""The metadata image: what the store says, as of one revision.

Topics (ids, configs, partition states), the live brokers, the controller
(``controller_id``, -1 when there is none, and ``controller_epoch``, the
``controller`` key's create revision; see ``odradek.cluster.controller``), the ACLs
(``odradek.security.authorizer.AclCache``, one ``acls/...`` key per binding)
the client quotas (``odradek.security.quotas.QuotaCache``, one
``quotas/...`` key per entity), the group configs
(``odradek.metadata.group_configs``, one ``configs/group/...`` key per
group), the client metrics subscriptions (``odradek.metadata.client_metrics``,
one ``configs/client-metrics/...`` key each), the delegation tokens
(``odradek.security.delegation_tokens``, one ``tokens/...`` key each) and the dynamic broker configs (``odradek.metadata.broker_configs``,
one ``configs/broker/...`` key per broker and one for the cluster default), built from a
listing of the store at startup and then changed only by applying the
store's changes in revision order, a whole revision at a time
(``apply``): readers on the event loop never see half of a transaction.
Metadata, DescribeCluster, FindCoordinator and the admin APIs read it; the
replica manager reconciles the partitions this broker hosts with it. The
same code serves one broker (its own SQLite store) and a cluster (etcd).
"""

from __future__ import annotations

import asyncio
import json
import logging

from odradek.metadata.broker_configs import PREFIX as BROKER_CONFIGS, BrokerConfigCache
from odradek.metadata.brokers import BROKERS, BrokerInfo
from odradek.metadata.client_metrics import PREFIX as CLIENT_METRICS
from odradek.metadata.group_configs import PREFIX as GROUP_CONFIGS, GroupConfigCache
from odradek.security.delegation_tokens import PREFIX as TOKENS, TokenCache

CONTROLLER = "controller"  # {"node_id": N}, under the controller's registration lease
from odradek.metadata.store import Event, KeyValue
from odradek.metadata.topics import CONFIGS, PARTITIONS, TOPICS, PartitionState, TopicState
from odradek.security.authorizer import PREFIX as ACLS, AclCache
from odradek.security.quotas import PREFIX as QUOTAS, QuotaCache

log = logging.getLogger("odradek.metadata")


class Progress:
    """A revision that only moves forward, and the tasks waiting for it to reach theirs."""

    def __init__(self):
        self.value = 0
        self._waiters: list[tuple[int, asyncio.Future]] = []

    async def reached(self, revision: int) -> None:
        if self.value >= revision:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        try:
            await fut
        except asyncio.CancelledError:
            self._waiters = [(r, f) for r, f in self._waiters if f is not fut]
            raise

    def advance(self, revision: int) -> None:
        self.value = max(self.value, revision)
        if self._waiters:
            ready = [f for r, f in self._waiters if r <= self.value]
            self._waiters = [(r, f) for r, f in self._waiters if r > self.value]
            for f in ready:
                if not f.done():
                    f.set_result(None)


class MetadataImage:
    def __init__(self):
        self.topics: dict[str, TopicState] = {}
        self.by_id: dict[bytes, TopicState] = {}
        self.brokers: dict[int, BrokerInfo] = {}
        self.controller_id = -1  # the elected controller's node id, -1 when there is none
        self.controller_epoch = 0  # the controller key's create revision
        self.acls = AclCache()
        self.quotas = QuotaCache()
        self.group_configs = GroupConfigCache()
        self.client_metrics = GroupConfigCache(CLIENT_METRICS)  # subscription name -> its configs
        self.tokens = TokenCache()  # delegation tokens (odradek.security.delegation_tokens)
        self.broker_configs = BrokerConfigCache()
        self.progress = Progress()

    # -- reading ------------------------------------------------------------------
    def get(self, name_or_id: str | bytes | None) -> TopicState | None:
        if isinstance(name_or_id, (bytes, bytearray)):
            return self.by_id.get(bytes(name_or_id))
        return self.topics.get(name_or_id)

    def __iter__(self):
        return iter(list(self.topics.values()))

    def __contains__(self, name: str) -> bool:
        return name in self.topics

    def live_brokers(self) -> list[int]:
        return sorted(self.brokers)

    def shutting_down(self) -> set[int]:
        """Live brokers in a controlled shutdown."""
        return {b.node_id for b in self.brokers.values() if b.shutting_down}

    # -- changing -----------------------------------------------------------------
    def load(self, kvs: list[KeyValue], revision: int) -> None:
        """Rebuild from a listing of the whole store taken at ``revision``."""
        self.topics.clear()
        self.by_id.clear()
        self.brokers.clear()
        self.controller_id, self.controller_epoch = -1, 0
        self.acls.clear()
        self.quotas.clear()
        self.group_configs.clear()
        self.client_metrics.clear()
        self.tokens.clear()
        self.broker_configs.clear()
        def order(kv):  # a topic before its configs and partitions, these by index
            if kv.key.startswith(PARTITIONS):
                name, _, index = kv.key[len(PARTITIONS):].rpartition("/")
                return (2, name, int(index))
            return (0 if kv.key.startswith(TOPICS) else 1, kv.key, 0)

        for kv in sorted(kvs, key=order):
            self._apply_one("put", kv)
        self.progress.advance(revision)

    def apply(self, events: list[Event]) -> set[str]:
        """Apply one or more whole revisions of changes; return the names of
        the topics they touched."""
        touched: set[str] = set()
        for e in events:
            name = self._apply_one(e.kind, e.kv)
            if name is not None:
                touched.add(name)
        if events:
            self.progress.advance(events[-1].revision)
        return touched

    @property
    def revision(self) -> int:
        return self.progress.value

    async def wait_for(self, revision: int) -> None:
        """Return once the image holds ``revision``."""
        await self.progress.reached(revision)

    async def next_change(self, timeout: float | None = None) -> None:
        """Return once the image moves past its current revision, or after
        ``timeout`` seconds. (Not ``asyncio.wait_for``, which on Python 3.11
        can swallow a cancellation that arrives as the wait completes.)"""
        inner = asyncio.ensure_future(self.wait_for(self.revision + 1))
        try:
            await asyncio.wait([inner], timeout=timeout)
        finally:
            inner.cancel()

    def _apply_one(self, kind: str, kv: KeyValue) -> str | None:
        """One change; a value this broker cannot read is logged and passed
        over (the rest of the image stays right), never fatal to the watch.
        A topic it changes loses what was derived from it (``TopicState.derived``)."""
        try:
            name = self._put(kv) if kind == "put" else self._delete(kv.key)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            log.error("metadata key %s at revision %d cannot be read (%s); passed over",
                      kv.key, kv.mod_revision, e)
            return None
        if name is not None and (t := self.topics.get(name)) is not None:
            t.derived.clear()  # the one place a topic's derived answers are dropped
        return name

    def _put(self, kv: KeyValue) -> str | None:
        key = kv.key
        if key.startswith(TOPICS):
            name = key[len(TOPICS):]
            topic_id = bytes.fromhex(json.loads(kv.value)["id"])
            old = self.topics.get(name)
            if old is None or old.topic_id != topic_id:
                if old is not None:
                    self.by_id.pop(old.topic_id, None)
                t = self.topics[name] = TopicState(name, topic_id)
                self.by_id[topic_id] = t
            return name
        if key.startswith(CONFIGS):
            t = self.topics.get(key[len(CONFIGS):])
            if t is not None:
                t.configs = json.loads(kv.value)
                return t.name
        elif key.startswith(PARTITIONS):
            name, _, index = key[len(PARTITIONS):].rpartition("/")
            t = self.topics.get(name)
            if t is not None:
                i = int(index)
                state = PartitionState.from_json(kv.value, kv.mod_revision)
                if i < len(t.partitions):
                    t.partitions[i] = state
                elif i == len(t.partitions):  # new partitions come in index order
                    t.partitions.append(state)
                return name
        elif key.startswith(BROKERS):
            node_id = int(key[len(BROKERS):])
            self.brokers[node_id] = BrokerInfo.from_json(node_id, kv.value, kv.create_revision)
        elif key == CONTROLLER:
            self.controller_id = int(json.loads(kv.value)["node_id"])
            self.controller_epoch = kv.create_revision
        elif key.startswith(ACLS):
            self.acls.put(key, kv.value)
        elif key.startswith(QUOTAS):
            self.quotas.put(key, kv.value)
        elif key.startswith(GROUP_CONFIGS):
            self.group_configs.put(key, kv.value)
        elif key.startswith(CLIENT_METRICS):
            self.client_metrics.put(key, kv.value)
        elif key.startswith(TOKENS):
            self.tokens.put(key, kv.value)
        elif key.startswith(BROKER_CONFIGS):
            self.broker_configs.put(key, kv.value)
        return None

    def _delete(self, key: str) -> str | None:
        if key.startswith(TOPICS):
            t = self.topics.pop(key[len(TOPICS):], None)
            if t is not None:
                self.by_id.pop(t.topic_id, None)
                return t.name
        elif key.startswith(BROKERS):
            self.brokers.pop(int(key[len(BROKERS):]), None)
        elif key == CONTROLLER:
            self.controller_id, self.controller_epoch = -1, 0
        elif key.startswith(ACLS):
            self.acls.delete(key)
        elif key.startswith(QUOTAS):
            self.quotas.delete(key)
        elif key.startswith(GROUP_CONFIGS):
            self.group_configs.delete(key)
        elif key.startswith(CLIENT_METRICS):
            self.client_metrics.delete(key)
        elif key.startswith(TOKENS):
            self.tokens.delete(key)
        elif key.startswith(BROKER_CONFIGS):
            self.broker_configs.delete(key)
        return None
