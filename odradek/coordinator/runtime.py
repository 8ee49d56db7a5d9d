"""Running a coordinator's state machine: append, replay, deliver. Sans-IO.

Theory of operation
-------------------
A coordinator's state machine (a *shard*) never writes anything itself. Each
operation takes ``now`` and returns a :class:`Result`: the records to append
and the answer, or a token whose answer comes later. :class:`ShardRunner`
carries an operation through, always in the same order:

1. run the operation;
2. append its records, through the ``write`` callable it was given (one
   batch); a write that raises fails them;
3. replay each written record into the shard: the only way its state changes;
4. if some records could not be written, tell the shard
   (``append_failed``) and answer with the operation's ``failure`` instead;
5. hand back the completions the shard collected: ``(token, response)`` for
   requests parked earlier (or by this very operation).

Loading is the same replay: :meth:`ShardRunner.load` feeds one stored record
through it, skipping records it cannot read.

A result with a ``producer`` (producer id, epoch) holds transactional
records (TxnOffsetCommit): they are written as one transactional batch of
that producer (``write(records, now, producer=...)``) and replayed with
``replay_pending(producer_id, key, value, now)``, which keeps them aside
until the transaction's marker.

The runner knows nothing of sockets, clocks, logs or futures: the group
coordinator (``odradek/coordinator/group_coordinator.py``), on the event
loop, gives it a ``write`` that appends to a partition, and resolves futures
from the completions; the state-machine tests give it a ``write`` that
appends to a list. Both drive shards through this one class.

What a shard provides: ``replay(key, value, now)`` (raises
:class:`~odradek.coordinator.records.RecordFormatError` on a record it cannot
read), ``drain()`` (the completions since the last call), ``tick(now)`` (an
operation acting on passed deadlines), ``next_deadline()``, and
``append_failed(records, now)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from odradek.coordinator.records import RecordFormatError

log = logging.getLogger("odradek.groups")

# write([(key, value)], now): append one batch, or raise.
Writer = Callable[[list, int], None]


class AppendRefused(Exception):
    """A write refused before anything was appended (the partition's ISR is
    below ``min.insync.replicas``, as Kafka refuses a coordinator's acks=all
    append): the operation answers its ``failure``."""


@dataclass
class Result:
    """What an operation returns."""

    response: dict | None = None
    wait: int | None = None  # token of a parked request: its answer comes as a completion
    records: list = field(default_factory=list)  # (key bytes, value bytes | None); None: a tombstone
    failure: dict | None = None  # response to send instead if the records cannot be written
    producer: tuple | None = None  # (producer id, epoch): the records belong to its transaction


class ShardRunner:
    """Carries operations of one shard through append, replay and delivery."""

    def __init__(self, shard, write: Writer):
        self.shard = shard
        self.write = write

    def execute(self, now: int, op, *args, **kwargs) -> tuple[Result, list[tuple[int, dict]]]:
        """Run ``op(now, *args, **kwargs)`` and apply its result: (result, completions)."""
        res = op(now, *args, **kwargs)
        return res, self.apply(res, now)

    def apply(self, res: Result, now: int) -> list[tuple[int, dict]]:
        """Append and replay ``res``'s records; return the completions to deliver."""
        if res.records:
            failed = self._append_and_replay(res.records, now, res.producer)
            if failed:
                self.shard.append_failed(failed, now)
                if res.failure is not None:
                    res.response = res.failure
        return self.shard.drain()

    def tick(self, now: int) -> tuple[Result, list[tuple[int, dict]]]:
        return self.execute(now, self.shard.tick)

    def load(self, key: bytes | None, value: bytes | None, now: int) -> bool:
        """Replay one stored record; False if it was skipped."""
        if key is None:
            return False
        try:
            self.shard.replay(bytes(key), None if value is None else bytes(value), now)
        except RecordFormatError as e:
            log.warning("skipping unreadable record: %s", e)
            return False
        return True

    def _append_and_replay(self, records: list, now: int, producer: tuple | None = None) -> list:
        """Append ``records`` as one batch and replay them; return the records
        that could not be written."""
        try:
            if producer is None:
                self.write(records, now)
            else:
                self.write(records, now, producer=producer)
        except AppendRefused as e:
            log.warning("cannot append %d records: %s", len(records), e)
            return list(records)
        except Exception:
            log.exception("cannot append %d records", len(records))
            return list(records)
        for k, v in records:
            if producer is None:
                self.shard.replay(k, v, now)
            else:
                self.shard.replay_pending(producer[0], k, v, now)
        return []
