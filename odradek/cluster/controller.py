"""The controller: one broker, elected through a lease, that moves partition
leadership when brokers come and go.

Theory of operation.

*Election.* The store key ``controller`` (``{"node_id": N}``) is written with
the writer's registration lease, by a transaction that holds only if the key
is absent and the writer's own registration is still the one it made. Its
create revision is the **controller epoch**. Every broker runs a candidate
(``Controller.run``): whenever its image shows no controller, it tries to
claim the key with its current lease (after a re-registration, the new
one). The key goes with the lease: when the controller's process dies,
pauses past its lease or stops, its registration and the controller key
vanish in the same revision and the others claim again.

*Duties.* The active controller decides from its image, with pure functions
of (topic states, live brokers, brokers shutting down, config) that return
``Change`` tuples (topic, index, new PartitionState, the revision it was
decided at), and writes each with ``update_partition_txn`` fenced by
``Compare("controller", "create_revision", "==", epoch)``. A write whose
partition changed meanwhile is decided again once the image has the newer
state; a write whose fence failed means another broker is controller now,
and this one stops acting. No decision relies on a client-side notion of
the lease being alive: only the store's compares fence.

Invariants of every decision (``decide_partition``):
- the leader epoch goes up by one exactly when the leader changes
  (including to and from -1, no leader);
- an ISR is never emptied: with no replica that can lead, the leader is -1
  and the ISR is left as it was (the last leader stays in it);
- a new leader is an ISR member that is live and not shutting down, first in
  ``replicas`` order; only with ``unclean.leader.election.enable`` (topic
  config, else the broker's, default false) may a live replica outside the
  ISR lead, and its ISR is then itself alone;
- a live leader keeps leading unless it is shutting down and another live
  ISR member can take over (controlled shutdown), or preferred-leader
  rebalancing or ElectLeaders moves it to ``replicas[0]``;
- brokers not live, and (where others remain) brokers shutting down, leave
  the ISR; nothing here ever adds a broker to an ISR (the partition's leader
  does that as followers catch up).

*Reassignments* (KIP-455, ``start_reassignment``, ``cancel_reassignment``,
``complete_reassignment``): a partition being moved has replicas = target
followed by the replicas being removed, with ``adding`` and ``removing``
recorded in its state; the brokers added host it and fetch like any
follower, and its leader adds them to the ISR as they catch up. Each round
the controller completes every reassignment whose adding replicas are all
in the ISR: replicas = target, the removed ones out of the ISR, a leader
being removed replaced from target and ISR (epoch + 1).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Iterable, NamedTuple

from odradek.config import BrokerConfig, TopicConfig
from odradek.metadata.brokers import broker_key
from odradek.metadata.image import CONTROLLER, MetadataImage
from odradek.metadata.store import Compare, Get, LeaseNotFound, MetadataStore, Put, StoreUnavailable
from odradek.metadata.topics import PartitionState, TopicState, update_partition_txn
from odradek.protocol import errors

log = logging.getLogger("odradek.controller")

PREFERRED, UNCLEAN = 0, 1  # ElectLeaders election types


class Change(NamedTuple):
    """A decision: partition ``index`` of ``topic`` becomes ``state``, if its
    key is still at mod revision ``read_at``."""
    topic: str
    index: int
    state: PartitionState
    read_at: int


# -- decisions (pure) ------------------------------------------------------------------
def unclean_enabled(config: BrokerConfig, topic: TopicState) -> bool:
    return TopicConfig(config, topic.configs).get("unclean.leader.election.enable").lower() == "true"


def _new(s: PartitionState, leader: int, isr: list[int]) -> PartitionState:
    epoch = s.leader_epoch + 1 if leader != s.leader else s.leader_epoch
    return PartitionState(leader, epoch, list(s.replicas), list(isr), list(s.elr),
                          adding=list(s.adding), removing=list(s.removing))


def decide_partition(s: PartitionState, live: set[int], shutting_down: set[int],
                     unclean: bool = False) -> PartitionState | None:
    """The state partition ``s`` should have with brokers ``live`` (of which
    ``shutting_down`` are in a controlled shutdown), or None if it is right
    as it is. See the module docstring for the rules."""
    def eligible(r):
        return r in live and r not in shutting_down

    leader = s.leader
    if leader != -1 and eligible(leader):
        isr = [r for r in s.isr if r == leader or eligible(r)]
        return _new(s, leader, isr) if isr and isr != s.isr else None
    candidates = [r for r in s.replicas if r in s.isr and eligible(r)]
    if candidates:
        new_leader = candidates[0]
        return _new(s, new_leader, [r for r in s.isr if eligible(r)])
    if leader != -1 and leader in live:  # shutting down, and no one else can lead: it stays
        isr = [r for r in s.isr if r == leader or eligible(r)]
        return _new(s, leader, isr) if isr and isr != s.isr else None
    if unclean:
        anyone = [r for r in s.replicas if eligible(r)]
        if anyone:
            return _new(s, anyone[0], [anyone[0]])
    if leader == -1:
        return None
    return _new(s, -1, s.isr)  # offline; the ISR keeps its members (never emptied)


def leadership_changes(topics: Iterable[TopicState], live: set[int], shutting_down: set[int],
                       config: BrokerConfig) -> list[Change]:
    """What the controller writes after brokers came, went or began shutting down."""
    out = []
    for t in topics:
        unclean = None
        for i, s in enumerate(t.partitions):
            if unclean is None and (s.leader == -1 or s.leader not in live):
                unclean = unclean_enabled(config, t)
            new = decide_partition(s, live, shutting_down, bool(unclean))
            if new is not None:
                out.append(Change(t.name, i, new, s.revision))
    return out


def preferred_leader(s: PartitionState, live: set[int], shutting_down: set[int]) -> int | None:
    """``replicas[0]`` if it could lead now (live, in the ISR, not shutting down)."""
    if not s.replicas:
        return None
    p = s.replicas[0]
    return p if p in live and p not in shutting_down and p in s.isr else None


def rebalance_changes(topics: Iterable[TopicState], live: set[int], shutting_down: set[int],
                      percentage: int) -> list[Change]:
    """Preferred-leader rebalancing: for each broker whose share of partitions
    it prefers but does not lead is above ``percentage`` per cent, the
    partitions it prefers and could lead go back to it."""
    topics = list(topics)
    preferred: dict[int, int] = {}
    not_led: dict[int, list[tuple[TopicState, int]]] = {}
    for t in topics:
        for i, s in enumerate(t.partitions):
            if not s.replicas:
                continue
            b = s.replicas[0]
            preferred[b] = preferred.get(b, 0) + 1
            if s.leader != b:
                not_led.setdefault(b, []).append((t, i))
    out = []
    for b, parts in sorted(not_led.items()):
        if len(parts) * 100 <= percentage * preferred[b]:
            continue
        for t, i in parts:
            s = t.partitions[i]
            if preferred_leader(s, live, shutting_down) == b:
                out.append(Change(t.name, i, _new(s, b, s.isr), s.revision))
    return out


def elect(s: PartitionState, election_type: int, live: set[int],
          shutting_down: set[int]) -> tuple[PartitionState | None, int]:
    """An ElectLeaders election for one partition: (new state, 0), or (None,
    the error Kafka answers: ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE,
    ELIGIBLE_LEADERS_NOT_AVAILABLE)."""
    def eligible(r):
        return r in live and r not in shutting_down

    if election_type == PREFERRED:
        if s.replicas and s.leader == s.replicas[0]:
            return None, errors.ELECTION_NOT_NEEDED
        p = preferred_leader(s, live, shutting_down)
        if p is None:
            return None, errors.PREFERRED_LEADER_NOT_AVAILABLE
        return _new(s, p, s.isr), 0
    if s.leader != -1 and eligible(s.leader):
        return None, errors.ELECTION_NOT_NEEDED
    new = decide_partition(s, live, shutting_down, unclean=True)
    if new is None or new.leader == -1 or new.leader == s.leader:
        return None, errors.ELIGIBLE_LEADERS_NOT_AVAILABLE
    return new, 0


def _reassigned(s: PartitionState, replicas: list[int], adding: list[int], removing: list[int],
                live: set[int], shutting_down: set[int]) -> PartitionState | None:
    """``s`` with replicas ``replicas`` (and that reassignment state): the ISR
    keeps only members among them; a leader no longer among them is replaced
    by the first of ``replicas`` in the new ISR that is live and not shutting
    down (epoch + 1). None when that leaves an empty ISR or no leader."""
    isr = [r for r in s.isr if r in replicas]
    leader = s.leader
    if leader != -1 and leader not in replicas:
        leader = next((r for r in replicas if r in isr and r in live and r not in shutting_down), -1)
        if leader == -1:
            return None
    if not isr:
        return None
    epoch = s.leader_epoch + 1 if leader != s.leader else s.leader_epoch
    return PartitionState(leader, epoch, list(replicas), isr, list(s.elr),
                          adding=list(adding), removing=list(removing))


def start_reassignment(s: PartitionState, target: list[int], live: set[int], shutting_down: set[int],
                       allow_rf_change: bool = True) -> tuple[PartitionState | None, int, str | None]:
    """AlterPartitionReassignments to ``target`` for one partition: (new state,
    0, None), (None, 0, None) when nothing changes, or (None, error, message).

    As Kafka: from the replicas before any ongoing reassignment (``original``;
    a new target replaces the ongoing one), ``adding`` is target minus them,
    ``removing`` them minus target, and the replicas become target followed
    by ``removing``; the ISR and the leader stay. A reassignment that adds no
    replica completes at once (``complete_reassignment``). Without
    ``allow_rf_change`` (KIP-860) a target of another size than ``original``
    is refused."""
    if not target:
        return None, errors.INVALID_REPLICA_ASSIGNMENT, "The replica list is empty."
    if len(set(target)) != len(target):
        return None, errors.INVALID_REPLICA_ASSIGNMENT, f"Duplicate replicas in {target}."
    unknown = [r for r in target if r not in live]
    if unknown:
        return None, errors.INVALID_REPLICA_ASSIGNMENT, f"Replicas {unknown} are not live brokers."
    original = s.original
    if not allow_rf_change and len(target) != len(original):
        return None, errors.INVALID_REPLICATION_FACTOR, (
            f"The replication factor is changed from {len(original)} to {len(target)} "
            "but allowReplicationFactorChange is false.")
    if target == (s.target if s.reassigning else s.replicas):
        return None, 0, None  # already the ongoing (or the current) assignment
    adding = [r for r in target if r not in original]
    removing = [r for r in original if r not in target]
    new = _reassigned(s, target + removing, adding, removing, live, shutting_down)
    if new is None:
        return None, errors.INVALID_REPLICA_ASSIGNMENT, "No replica of the new assignment could lead."
    done = complete_reassignment(new, live, shutting_down)
    return (done or new), 0, None


def cancel_reassignment(s: PartitionState, live: set[int],
                        shutting_down: set[int]) -> tuple[PartitionState | None, int, str | None]:
    """A null target: back to the replicas before the reassignment, its added
    replicas out of the ISR (a leader among them replaced)."""
    if not s.reassigning:
        return None, errors.NO_REASSIGNMENT_IN_PROGRESS, None
    new = _reassigned(s, s.original, [], [], live, shutting_down)
    if new is None:
        return None, errors.INVALID_REPLICA_ASSIGNMENT, "No replica of the original assignment is in sync."
    return new, 0, None


def complete_reassignment(s: PartitionState, live: set[int], shutting_down: set[int]) -> PartitionState | None:
    """The completed state of an ongoing reassignment once every adding
    replica is in the ISR: replicas = target, the removed ones out of the
    ISR, a new leader from target and ISR if the leader is removed (epoch +
    1), adding and removing cleared. None while it must wait (a replica
    still catching up; no ISR member of the target could lead)."""
    if not s.reassigning or any(r not in s.isr for r in s.adding):
        return None
    return _reassigned(s, s.target, [], [], live, shutting_down)


def reassignment_changes(topics: Iterable[TopicState], live: set[int], shutting_down: set[int]) -> list[Change]:
    """Reassignments the controller completes now."""
    out = []
    for t in topics:
        for i, s in enumerate(t.partitions):
            if s.reassigning:
                new = complete_reassignment(s, live, shutting_down)
                if new is not None:
                    out.append(Change(t.name, i, new, s.revision))
    return out


def leads_movable(image: MetadataImage, node_id: int) -> list[tuple[str, int]]:
    """Partitions ``node_id`` leads that another live ISR member, not shutting
    down, could lead: what a controlled shutdown waits to see moved."""
    live, shutting = set(image.brokers), image.shutting_down()
    out = []
    for t in image:
        for i, s in enumerate(t.partitions):
            if s.leader == node_id and any(r != node_id and r in live and r not in shutting for r in s.isr):
                out.append((t.name, i))
    return out


# -- the controller (effects) ----------------------------------------------------------
class NotController(Exception):
    """This broker is not (or no longer) the active controller."""


class Controller:
    """This broker's candidate for controller and, once elected, the controller.

    ``registration`` is the broker's ``odradek.metadata.brokers.Registration``
    (its lease and epoch are read at each claim)."""

    def __init__(self, config: BrokerConfig, store: MetadataStore, image: MetadataImage, registration):
        self.config = config
        self.node_id = config.node_id
        self.store = store
        self.image = image
        self.registration = registration
        self.epoch = 0  # the controller epoch this broker claimed (0: not controller)
        self.rebalance_enabled = config.get_bool("auto.leader.rebalance.enable")
        self.rebalance_interval = float(config.get_int("leader.imbalance.check.interval.seconds", 300))
        self.imbalance_percentage = config.get_int("leader.imbalance.per.broker.percentage", 10)
        self._lock = asyncio.Lock()  # one round of writes at a time (duties, ElectLeaders)

    @property
    def active(self) -> bool:
        """This broker claimed the controller key and the image still shows that claim."""
        return (self.epoch != 0 and self.image.controller_id == self.node_id
                and self.image.controller_epoch == self.epoch)

    def fence(self) -> Compare:
        return Compare(CONTROLLER, "create_revision", "==", self.epoch)

    async def claim(self) -> bool:
        """Try to become controller with the current registration lease."""
        reg = self.registration
        if not reg.lease or not reg.info.epoch:
            return False
        try:
            done = await self.store.txn(
                [Compare(CONTROLLER, "version", "==", 0),
                 Compare(broker_key(self.node_id), "create_revision", "==", reg.info.epoch)],
                [Put(CONTROLLER, json.dumps({"node_id": self.node_id}).encode(), reg.lease)])
        except (LeaseNotFound, StoreUnavailable) as e:
            log.debug("broker %d: claim failed: %s", self.node_id, e)
            return False
        if done.succeeded:
            self.epoch = done.revision
            log.info("broker %d is the controller (epoch %d)", self.node_id, self.epoch)
            await self.image.wait_for(done.revision)
        return done.succeeded

    async def adopt(self) -> None:
        """The image names this broker controller but it holds no epoch (a
        claim whose answer was lost): take the key's epoch if it was written
        with the current lease."""
        try:
            kv = await self.store.get(CONTROLLER)
        except StoreUnavailable:
            return
        if kv is not None and self.registration.lease and kv.lease == self.registration.lease:
            self.epoch = kv.create_revision
            log.info("broker %d is the controller (epoch %d)", self.node_id, self.epoch)

    async def run(self) -> None:
        """The candidate and controller loop, until cancelled."""
        loop = asyncio.get_running_loop()
        next_rebalance = loop.time() + self.rebalance_interval
        while True:
            try:
                if self.epoch and not self.active and self.image.revision >= self.epoch:
                    log.info("broker %d is no longer the controller", self.node_id)
                    self.epoch = 0
                if self.image.controller_id == -1 and not self.epoch:
                    await self.claim()
                elif self.image.controller_id == self.node_id and not self.epoch:
                    await self.adopt()
                if self.active:
                    await self.apply(lambda: leadership_changes(
                        self.image, set(self.image.brokers), self.image.shutting_down(), self.config))
                    await self.apply(lambda: reassignment_changes(
                        self.image, set(self.image.brokers), self.image.shutting_down()))
                    if self.rebalance_enabled and loop.time() >= next_rebalance:
                        next_rebalance = loop.time() + self.rebalance_interval
                        await self.apply(lambda: rebalance_changes(
                            self.image, set(self.image.brokers), self.image.shutting_down(),
                            self.imbalance_percentage))
            except asyncio.CancelledError:
                raise
            except NotController:
                self.epoch = 0
            except Exception:
                log.exception("controller round failed")
                await asyncio.sleep(0.5)
            if self.image.controller_id == -1:  # a claim failed (store away, lease lapsed): try again soon
                wait = 1.0
            elif self.active and self.rebalance_enabled:
                wait = max(0.05, next_rebalance - loop.time())
            else:
                wait = None
            await self.image.next_change(wait)

    async def write(self, c: Change) -> tuple[bool, int]:
        """Write one decision, fenced; return (written, revision). Raises
        NotController when the fence failed."""
        compares, ops = update_partition_txn(c.topic, c.index, c.state, c.read_at, self.fence())
        done = await self.store.txn(compares, ops, [Get(CONTROLLER)])
        if done.succeeded:
            log.info("partition %s-%d: leader %d epoch %d replicas %s isr %s%s", c.topic, c.index,
                     c.state.leader, c.state.leader_epoch, c.state.replicas, c.state.isr,
                     f" adding {c.state.adding} removing {c.state.removing}" if c.state.reassigning else "")
            return True, done.revision
        current = done.reads[0] if done.reads else []
        if not current or current[0].create_revision != self.epoch:
            raise NotController(f"controller epoch {self.epoch} is fenced")
        return False, done.revision

    async def apply(self, decide, rounds: int = 20, written: set | None = None) -> None:
        """Write what ``decide()`` says until it says nothing (the image caught
        up with every write) or ``rounds`` pass; add the (topic, index) of
        each write made to ``written``."""
        async with self._lock:
            for _ in range(rounds):
                if not self.active:
                    return
                changes = decide()
                if not changes:
                    return
                results = await asyncio.gather(*(self.write(c) for c in changes), return_exceptions=True)
                top = self.image.revision
                for c, r in zip(changes, results):
                    if isinstance(r, NotController):
                        raise r
                    if isinstance(r, StoreUnavailable):  # outcome unknown: decide again from a fresh image
                        log.warning("controller write: %s", r)
                        await asyncio.sleep(0.2)
                    elif isinstance(r, BaseException):
                        raise r
                    else:
                        top = max(top, r[1])
                        if r[0] and written is not None:
                            written.add((c.topic, c.index))
                await self.image.wait_for(top)

    async def elect_leaders(self, wanted: list[tuple[str, int]], election_type: int
                            ) -> dict[tuple[str, int], tuple[int, str | None]]:
        """ElectLeaders for ``wanted`` partitions: per partition (error code,
        message); returns once every election made is in the store and in
        this broker's image. Raises NotController."""
        results: dict[tuple[str, int], tuple[int, str | None]] = {}
        pending = []
        for name, index in wanted:
            t = self.image.get(name)
            if t is None or not 0 <= index < len(t.partitions):
                results[(name, index)] = (errors.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist.")
            else:
                pending.append((name, index))

        def decide():
            out = []
            live, shutting = set(self.image.brokers), self.image.shutting_down()
            for name, index in list(pending):
                t = self.image.get(name)
                if t is None or index >= len(t.partitions):
                    results[(name, index)] = (errors.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist.")
                    pending.remove((name, index))
                    continue
                s = t.partitions[index]
                new, code = elect(s, election_type, live, shutting)
                if new is None:
                    if (name, index) not in written:  # else elected by an earlier round of this request
                        results[(name, index)] = (code, None if code == errors.ELECTION_NOT_NEEDED else
                                                  f"Failed to elect leader for partition {name}-{index} under "
                                                  f"strategy {'preferred' if election_type == PREFERRED else 'unclean'}")
                    pending.remove((name, index))
                else:
                    out.append(Change(name, index, new, s.revision))
            return out

        written: set[tuple[str, int]] = set()
        return await self._answer(decide, written, results, pending, wanted)

    async def alter_reassignments(self, wanted: list[tuple[str, int, list[int] | None]],
                                  allow_rf_change: bool = True
                                  ) -> dict[tuple[str, int], tuple[int, str | None]]:
        """AlterPartitionReassignments: per (topic, index), start a
        reassignment to the target replicas, or cancel one (target None);
        answered (error code, message) once written and in this broker's
        image. Raises NotController."""
        results: dict[tuple[str, int], tuple[int, str | None]] = {}
        targets: dict[tuple[str, int], list[int] | None] = {}
        for name, index, target in wanted:
            targets[(name, index)] = target
        pending = list(targets)
        written: set[tuple[str, int]] = set()

        def decide():
            out = []
            live, shutting = set(self.image.brokers), self.image.shutting_down()
            for key in list(pending):
                name, index = key
                t = self.image.get(name)
                if t is None or not 0 <= index < len(t.partitions):
                    results[key] = (errors.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist.")
                    pending.remove(key)
                    continue
                s = t.partitions[index]
                target = targets[key]
                if target is None:
                    new, code, message = cancel_reassignment(s, live, shutting)
                    if new is None and key in written:  # cancelled by an earlier round of this request
                        code, message = 0, None
                else:
                    new, code, message = start_reassignment(s, target, live, shutting, allow_rf_change)
                if new is None:
                    results[key] = (code, message)
                    pending.remove(key)
                else:
                    out.append(Change(name, index, new, s.revision))
            return out

        return await self._answer(decide, written, results, pending, targets)

    async def _answer(self, decide, written: set, results: dict, pending: list, keys) -> dict:
        """Run a request's ``decide`` through ``apply`` and answer each of
        ``keys``: its refusal from ``results``, success once written, or
        REQUEST_TIMED_OUT if still contended after every round. Raises
        NotController when this broker is not (or stops being) the controller
        before anything was written."""
        if not self.active:
            raise NotController()
        await self.apply(decide, written=written)
        if not self.active and not written:
            raise NotController()
        for key in written:
            results.setdefault(key, (0, None))
        for key in pending:  # still contended after every round
            results.setdefault(key, (errors.REQUEST_TIMED_OUT, None))
        return {k: results[k] for k in keys if k in results}

    def list_reassignments(self, wanted: list[tuple[str, int]] | None
                           ) -> dict[str, list[tuple[int, PartitionState]]]:
        """ListPartitionReassignments: the ongoing reassignments, of every
        partition or of ``wanted`` (unknown ones are left out, as Kafka does),
        from the controller's image. Raises NotController."""
        if not self.active:
            raise NotController()
        out: dict[str, list[tuple[int, PartitionState]]] = {}
        keys = ([(t.name, i) for t in self.image for i in range(len(t.partitions))]
                if wanted is None else wanted)
        for name, index in keys:
            t = self.image.get(name)
            if t is not None and 0 <= index < len(t.partitions) and t.partitions[index].reassigning:
                out.setdefault(name, []).append((index, t.partitions[index]))
        return out
