"""The single broker's metadata store: SQLite in WAL mode, in-process.

Theory of operation: one SQLite database (a file in the data dir, or memory)
holds the current key-values, the history of recent changes (for watches)
and the leases. Every operation runs on one dedicated thread, so writes are
serialised by construction and no fsync happens on the event loop; a write
commits (``synchronous=FULL``: fsynced) before its call returns. After each
commit the thread hands the transaction's events to the event loop in commit
order, which is what live watches see.

Leases: this store lives in one process, so its leases end with it: leases
left by the previous process are revoked (their keys deleted) when the store
is opened. Deadlines are kept in memory; an expired lease is revoked by a
periodic check and before every operation.

The history keeps the last ``history`` revisions; a watch from an older one
raises CompactedError.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Callable, Sequence

from odradek.metadata.store import (
    CompactedError, Compare, Delete, Event, Get, KeyValue, LeaseNotFound, MetadataStore, Op, Put,
    TxnResult,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    rev INTEGER NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
    value BLOB NOT NULL, create_rev INTEGER NOT NULL, version INTEGER NOT NULL,
    lease INTEGER NOT NULL, PRIMARY KEY (rev, seq));
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0), ('next_lease', 1);
"""


def _prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix + "\U0010ffff"


class SqliteStore(MetadataStore):
    HISTORY = 10_000
    EXPIRY_INTERVAL = 0.5

    def __init__(self, path: str | None, *, history: int = HISTORY,
                 clock: Callable[[], float] = time.monotonic):
        self.path = path
        self.history = history
        self.clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="odradek-metadata")
        self._conn: sqlite3.Connection | None = None
        self._deadlines: dict[int, float] = {}  # lease -> deadline; touched on the store thread only
        self._watchers: set[tuple[str, asyncio.Queue]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._expiry: asyncio.Task | None = None

    @classmethod
    async def open(cls, path: str | None, **kwargs) -> "SqliteStore":
        """Open (creating it and its directory if needed) the store at ``path``;
        None keeps it in memory."""
        store = cls(path, **kwargs)
        store._loop = asyncio.get_running_loop()
        await store._run(store._open)
        store._expiry = store._loop.create_task(store._expire_periodically())
        return store

    # -- on the store thread --------------------------------------------------

    def _open(self) -> None:
        if self.path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = sqlite3.connect(self.path or ":memory:", isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        self._conn = conn
        now = self.clock()
        self._deadlines = {lease: now + ttl for lease, ttl in conn.execute("SELECT id, ttl FROM leases")}
        for lease in list(self._deadlines):  # the previous process's: it is gone
            self._revoke(lease)

    def _meta(self, name: str) -> int:
        return self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0]

    def _set_meta(self, name: str, value: int) -> None:
        self._conn.execute("UPDATE meta SET value = ? WHERE name = ?", (value, name))

    def _select(self, key: str, prefix: bool) -> list[KeyValue]:
        cols = "key, value, create_rev, mod_rev, version, lease"
        if prefix:
            rows = self._conn.execute(f"SELECT {cols} FROM kv WHERE key >= ? AND key < ? ORDER BY key",
                                      (key, _prefix_end(key)))
        else:
            rows = self._conn.execute(f"SELECT {cols} FROM kv WHERE key = ?", (key,))
        return [KeyValue(k, bytes(v), c, m, ver, lease) for k, v, c, m, ver, lease in rows]

    def _write(self, fn):
        """Run ``fn(revision) -> (result, events)`` in one transaction and hand
        its events to the watches once committed."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            revision = self._meta("revision") + 1
            result, events = fn(revision)
            for seq, e in enumerate(events):
                kv = e.kv
                conn.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (revision, seq, e.kind, kv.key, kv.value, kv.create_revision, kv.version,
                              kv.lease))
            if events:
                self._set_meta("revision", revision)
                compacted = revision - self.history
                if compacted > self._meta("compacted"):
                    conn.execute("DELETE FROM history WHERE rev <= ?", (compacted,))
                    self._set_meta("compacted", compacted)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if events and self._watchers:
            self._loop.call_soon_threadsafe(self._dispatch, events)
        return result

    def _apply(self, revision: int, ops: Sequence[Op]) -> tuple[list, list[Event]]:
        reads, events = [], []
        for op in ops:
            if isinstance(op, Get):
                reads.append(self._select(op.key, op.prefix))
            elif isinstance(op, Put):
                if op.lease and op.lease not in self._deadlines:
                    raise LeaseNotFound(op.lease)
                old = self._select(op.key, False)
                create = old[0].create_revision if old else revision
                version = old[0].version + 1 if old else 1
                self._conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?, ?)",
                                   (op.key, op.value, create, revision, version, op.lease))
                events.append(Event("put", KeyValue(op.key, bytes(op.value), create, revision, version,
                                                    op.lease)))
            elif isinstance(op, Delete):
                for kv in self._select(op.key, op.prefix):
                    self._conn.execute("DELETE FROM kv WHERE key = ?", (kv.key,))
                    events.append(Event("delete", KeyValue(kv.key, b"", kv.create_revision, revision, 0)))
            else:
                raise TypeError(f"not a store operation: {op!r}")
        return reads, events

    def _txn(self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> TxnResult:
        self._expire_due()

        def body(revision):
            ok = all(c.holds(next(iter(self._select(c.key, False)), None)) for c in compares)
            reads, events = self._apply(revision, success if ok else failure)
            return (ok, reads, revision if events else revision - 1), events

        ok, reads, revision = self._write(body)
        return TxnResult(ok, revision, reads)

    def _range(self, prefix: str) -> tuple[list[KeyValue], int]:
        self._expire_due()
        return self._select(prefix, True), self._meta("revision")

    def _get(self, key: str) -> KeyValue | None:
        self._expire_due()
        found = self._select(key, False)
        return found[0] if found else None

    def _history_since(self, prefix: str, start: int) -> tuple[list[Event], int]:
        compacted = self._meta("compacted")
        if start <= compacted:
            raise CompactedError(compacted)
        rows = self._conn.execute(
            "SELECT rev, kind, key, value, create_rev, version, lease FROM history "
            "WHERE rev >= ? AND key >= ? AND key < ? ORDER BY rev, seq",
            (start, prefix, _prefix_end(prefix)))
        events = [Event(kind, KeyValue(key, bytes(value), create, rev, version, lease))
                  for rev, kind, key, value, create, version, lease in rows]
        return events, self._meta("revision")

    def _grant(self, ttl: float) -> int:
        def body(revision):
            lease = self._meta("next_lease")
            self._set_meta("next_lease", lease + 1)
            self._conn.execute("INSERT INTO leases VALUES (?, ?)", (lease, ttl))
            return lease, []

        lease = self._write(body)
        self._deadlines[lease] = self.clock() + ttl
        return lease

    def _keep_alive(self, lease: int) -> float:
        self._expire_due()
        if lease not in self._deadlines:
            raise LeaseNotFound(lease)
        (ttl,) = self._conn.execute("SELECT ttl FROM leases WHERE id = ?", (lease,)).fetchone()
        self._deadlines[lease] = self.clock() + ttl
        return ttl

    def _revoke(self, lease: int) -> None:
        if lease not in self._deadlines:
            raise LeaseNotFound(lease)

        def body(revision):
            doomed = [k for (k,) in self._conn.execute("SELECT key FROM kv WHERE lease = ?", (lease,))]
            self._conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
            return None, self._apply(revision, [Delete(k) for k in doomed])[1]

        self._write(body)
        self._deadlines.pop(lease, None)

    def _expire_due(self) -> None:
        now = self.clock()
        for lease in [lease for lease, deadline in self._deadlines.items() if deadline <= now]:
            self._revoke(lease)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- on the event loop ----------------------------------------------------

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _dispatch(self, events: list[Event]) -> None:
        """Hand one transaction's events (one revision) to the watches."""
        for prefix, queue in list(self._watchers):
            mine = [e for e in events if e.kv.key.startswith(prefix)]
            if mine:
                queue.put_nowait(mine)

    async def _expire_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.EXPIRY_INTERVAL)
            await self._run(self._expire_due)

    async def get(self, key: str) -> KeyValue | None:
        return await self._run(self._get, key)

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        return await self._run(self._range, prefix)

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        return await self._run(self._txn, tuple(compares), tuple(success), tuple(failure))

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        queue: asyncio.Queue = asyncio.Queue()
        entry = (prefix, queue)
        # Listen first, then read the history: a change committed in between
        # is in both, and is passed over the second time by its revision.
        self._watchers.add(entry)
        try:
            past, read_at = await self._run(self._history_since, prefix, max(start_revision, 1))
            batch: list[Event] = []
            for e in past:
                if batch and e.revision != batch[0].revision:
                    yield batch
                    batch = []
                batch.append(e)
            if batch:
                yield batch
            seen = max(read_at, start_revision - 1)
            while True:
                events = await queue.get()
                if events[0].revision > seen:
                    yield events
        finally:
            self._watchers.discard(entry)

    async def grant_lease(self, ttl: float) -> int:
        if ttl <= 0:
            raise ValueError("a lease needs a positive time to live")
        return await self._run(self._grant, float(ttl))

    async def keep_alive(self, lease: int) -> float:
        return await self._run(self._keep_alive, lease)

    async def revoke_lease(self, lease: int) -> None:
        await self._run(self._revoke, lease)

    async def expire_leases(self) -> None:
        """Revoke every lease whose time is up now (the periodic check does this too)."""
        await self._run(self._expire_due)

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        await self._run(self._close)
        self._executor.shutdown(wait=True)
