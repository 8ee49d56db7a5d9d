"""Brokers in the metadata store: each live broker's registration.

Key ``brokers/<node id>``: ``{"endpoints": {listener: [host, port]}, "rack": r,
"shutting_down": bool}``, written under a lease the broker keeps alive; the
key's create revision is the broker epoch. ``shutting_down`` is set by the
broker itself at the start of a controlled shutdown (the same key rewritten
under the same lease, so its epoch stays): the controller then moves its
leaderships away and takes it out of ISRs, and no leader adds it to an ISR. A broker whose process dies (or pauses past its lease) is
no longer registered once the lease lapses, and a second broker with the same
node id cannot register while the first one's lease lives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from odradek.metadata.store import Compare, LeaseNotFound, MetadataStore, Put, StoreUnavailable

log = logging.getLogger("odradek.brokers")

BROKERS = "brokers/"
RENEW_RETRY = 0.25  # seconds between renewals of a lease while they fail


@dataclass
class BrokerInfo:
    node_id: int
    endpoints: dict[str, tuple[str, int]] = field(default_factory=dict)
    rack: str | None = None
    epoch: int = 0  # the registration's create revision
    shutting_down: bool = False  # in a controlled shutdown

    def to_json(self) -> bytes:
        d = {"endpoints": {k: list(v) for k, v in self.endpoints.items()}, "rack": self.rack}
        if self.shutting_down:
            d["shutting_down"] = True
        return json.dumps(d).encode()

    @classmethod
    def from_json(cls, node_id: int, raw: bytes, epoch: int) -> "BrokerInfo":
        d = json.loads(raw)
        return cls(node_id, {k: (h, p) for k, (h, p) in d["endpoints"].items()}, d.get("rack"), epoch,
                   bool(d.get("shutting_down", False)))

    def endpoint(self, listener: str | None) -> tuple[str, int] | None:
        """(host, port) on ``listener`` (the one a request came in on), else the first."""
        if listener in self.endpoints:
            return self.endpoints[listener]
        return next(iter(self.endpoints.values()), None)


def broker_key(node_id: int) -> str:
    return f"{BROKERS}{node_id}"


class BrokerIdInUse(Exception):
    """Another live broker is registered with this node id."""


class Registration:
    """This broker's registration: made at start, kept alive, made again if its
    lease lapsed (a long pause), withdrawn at a clean stop."""

    def __init__(self, store: MetadataStore, info: BrokerInfo, ttl: float):
        self.store = store
        self.info = info
        self.ttl = ttl
        self.lease = 0
        self._task: asyncio.Task | None = None

    async def register(self, wait: float = 0.0) -> int:
        """Register; return the broker epoch. While another registration of this
        node id lives (a previous process's lease not yet lapsed), retry for up
        to ``wait`` seconds, then raise BrokerIdInUse."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        key = broker_key(self.info.node_id)
        while True:
            lease = await self.store.grant_lease(self.ttl)
            done = await self.store.txn([Compare(key, "version", "==", 0)],
                                        [Put(key, self.info.to_json(), lease)])
            if done.succeeded:
                self.lease = lease
                self.info.epoch = done.revision
                return done.revision
            await self.store.revoke_lease(lease)
            if loop.time() >= deadline:
                raise BrokerIdInUse(f"broker {self.info.node_id} is registered by another live process")
            await asyncio.sleep(min(1.0, self.ttl / 3))

    def start_keepalive(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keepalive())

    async def _keepalive(self) -> None:
        """Renew the lease every third of its time to live. A renewal that fails,
        or gets no answer within that third, is tried again every RENEW_RETRY
        seconds rather than a whole interval later: one lost call must not cost
        the registration."""
        interval = self.ttl / 3
        delay, failing_since = interval, None
        while True:
            await asyncio.sleep(delay)
            delay = min(interval, RENEW_RETRY)
            try:
                await asyncio.wait_for(self.store.keep_alive(self.lease), interval)
            except LeaseNotFound:
                log.warning("broker %d: registration lapsed; registering again", self.info.node_id)
                try:
                    await self.register(wait=self.ttl)
                except (BrokerIdInUse, StoreUnavailable) as e:
                    log.error("broker %d: cannot register again: %s", self.info.node_id, e)
                    delay = interval
                    continue
            except (StoreUnavailable, TimeoutError) as e:
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("broker %d: keep-alive failed: %s", self.info.node_id,
                                e or f"no answer in {interval:.1f} s")
                continue
            if failing_since is not None:
                log.warning("broker %d: keep-alive answered again after %.1f s", self.info.node_id,
                            time.monotonic() - failing_since)
                failing_since = None
            delay = interval

    async def mark_shutting_down(self) -> bool:
        """Rewrite this registration with ``shutting_down`` set (same lease, so
        the broker epoch stays), only if it is still the one this broker made;
        return whether it was written."""
        if not self.lease:
            return False
        key = broker_key(self.info.node_id)
        self.info.shutting_down = True
        try:
            done = await self.store.txn([Compare(key, "create_revision", "==", self.info.epoch)],
                                        [Put(key, self.info.to_json(), self.lease)])
        except (LeaseNotFound, StoreUnavailable) as e:
            log.warning("broker %d: cannot announce its controlled shutdown: %s", self.info.node_id, e)
            return False
        return done.succeeded

    async def withdraw(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.lease:
            try:
                await self.store.revoke_lease(self.lease)
            except (LeaseNotFound, StoreUnavailable):
                pass
            self.lease = 0
