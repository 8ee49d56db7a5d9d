"""The metadata store's interface, shaped like etcd's (and ZooKeeper's).

A flat, ordered key space of string keys and byte values. Every write
advances one store-wide **revision**; a key remembers the revision that
created it, the revision of its last change and its **version** (writes since
creation, 1 on create). A **transaction** applies its success operations if
all its comparisons hold, else its failure operations, atomically and at one
revision: compare-and-set is a transaction with one comparison. A **watch**
sees every change under a prefix from a given revision on, in revision order,
each exactly once, a revision's changes together. A **lease** has a time to live; keys written with it are
deleted when it expires or is revoked.

Invariants every implementation keeps:
- revisions only increase, and a read never sees a revision older than one
  it has already seen;
- a write is durable when its call returns;
- writes are serialised by the store: two transactions never interleave.

Implementations: ``odradek.metadata.sqlite.SqliteStore`` (one broker, a file
in its data dir or memory) and ``odradek.metadata.etcd.EtcdStore`` (a cluster
named by an ``etcd://`` URL); ``open_store`` picks one.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import AsyncIterator, Sequence, Union


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True)
class Compare:
    """``target`` of ``key`` compared with ``operand`` by ``op``; a missing key
    has version, create_revision and mod_revision 0, lease 0 and value None."""
    key: str
    target: str  # "version" | "create_revision" | "mod_revision" | "value" | "lease"
    op: str  # "==" | "!=" | "<" | ">"
    operand: int | bytes | None

    TARGETS = ("version", "create_revision", "mod_revision", "value", "lease")
    OPS = ("==", "!=", "<", ">")

    def __post_init__(self):
        if self.target not in self.TARGETS or self.op not in self.OPS:
            raise ValueError(f"bad comparison {self.target} {self.op}")

    def holds(self, kv: KeyValue | None) -> bool:
        if self.target == "value":
            actual = kv.value if kv is not None else None
        else:
            actual = getattr(kv, self.target) if kv is not None else 0
        if self.op == "==":
            return actual == self.operand
        if self.op == "!=":
            return actual != self.operand
        if actual is None or self.operand is None:
            return False
        return actual < self.operand if self.op == "<" else actual > self.operand


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    """Delete ``key``, or with ``prefix`` every key starting with it."""
    key: str
    prefix: bool = False


@dataclass(frozen=True)
class Get:
    """Read ``key``, or with ``prefix`` every key starting with it, inside a transaction."""
    key: str
    prefix: bool = False


Op = Union[Put, Delete, Get]


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    #: per Get operation run, the key-values it read (in key order)
    reads: list[list[KeyValue]] = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    """A change: ``kind`` "put" (``kv`` is the new state) or "delete" (``kv``
    has the key, an empty value and the deletion's revision as mod_revision)."""
    kind: str
    kv: KeyValue

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


class CompactedError(Exception):
    """A watch asked for history older than the store keeps."""

    def __init__(self, compacted_revision: int):
        super().__init__(f"revisions up to {compacted_revision} are compacted")
        self.compacted_revision = compacted_revision


class LeaseNotFound(KeyError):
    """The lease does not exist (never granted, expired or revoked)."""


class StoreUnavailable(Exception):
    """The store did not answer. For a write the outcome is unknown: re-read
    before deciding what happened."""


class WatchInterrupted(Exception):
    """A watch stopped before it was closed (a broken connection): list the
    prefix again and watch from the revision of that listing."""


class MetadataStore(abc.ABC):
    """The operations the broker and the cluster use; see the module docstring."""

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None: ...

    @abc.abstractmethod
    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key starting with ``prefix`` in key order, and the revision read at."""

    @abc.abstractmethod
    async def txn(self, compares: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult: ...

    @abc.abstractmethod
    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        """Changes under ``prefix`` with revision >= ``start_revision``, then live
        ones, until the iterator is closed: lists of events, each list one whole
        revision (a transaction's changes are never split). Raises
        CompactedError if the store no longer keeps ``start_revision``,
        WatchInterrupted if it stops early."""

    @abc.abstractmethod
    async def grant_lease(self, ttl: float) -> int: ...

    @abc.abstractmethod
    async def keep_alive(self, lease: int) -> float:
        """Renew ``lease`` for its full time to live and return it; LeaseNotFound if gone."""

    @abc.abstractmethod
    async def revoke_lease(self, lease: int) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Write ``key``; return the revision of the write."""
        return (await self.txn((), (Put(key, value, lease),))).revision

    async def delete(self, key: str, prefix: bool = False) -> int:
        return (await self.txn((), (Delete(key, prefix),))).revision

    async def compare_and_set(self, key: str, value: bytes, version: int) -> bool:
        """Write ``key`` only if its version is ``version`` (0: only if absent)."""
        return (await self.txn((Compare(key, "version", "==", version),), (Put(key, value),))).succeeded


async def open_store(url: str) -> MetadataStore:
    """The store named by ``url``: ``etcd://HOST:PORT[,...]/PREFIX`` for a
    cluster, ``sqlite:///PATH`` or ``memory://`` for one broker."""
    if url.startswith("etcd://"):
        try:
            from odradek.metadata.etcd import EtcdStore
        except ImportError as e:
            raise RuntimeError(f"an etcd metadata store needs the cluster extra "
                               f"(pip install 'odradek[cluster]'): {e}") from None
        return await EtcdStore.open(url)
    from odradek.metadata.sqlite import SqliteStore

    if url == "memory://":
        return await SqliteStore.open(None)
    if url.startswith("sqlite://"):
        return await SqliteStore.open(url[len("sqlite://"):])
    raise ValueError(f"unknown metadata store {url!r} (etcd://, sqlite:///PATH or memory://)")
