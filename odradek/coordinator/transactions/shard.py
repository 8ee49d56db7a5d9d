"""The transactions of one ``__transaction_state`` partition: a state machine. Sans-IO.

Theory of operation
-------------------
:class:`TransactionShard` holds every transactional id whose
``partition_for`` is its partition, with its producer id and epoch, its
transaction's state, partitions and timestamps (:class:`TxnMeta`). Like the
group coordinator's shards it never writes: each operation takes ``now`` and
returns a :class:`~odradek.coordinator.runtime.Result` with the records to
append (one :mod:`records <odradek.coordinator.transactions.records>` value
per transactional id touched) and the response; only :meth:`replay` changes
state, so loading the partition rebuilds it. A
:class:`~odradek.coordinator.runtime.ShardRunner` drives it.

States and transitions are Kafka's (``TRANSITIONS``: the states each state
may be entered from)::

    Empty ──AddPartitions──> Ongoing ──EndTxn──> PrepareCommit ──markers──> CompleteCommit
      ^                        │   └──EndTxn, timeout, fence──> PrepareAbort ──markers──> CompleteAbort
      └──InitProducerId──── Complete*/Empty                 Empty/Complete* ──expiry──> Dead (tombstone)

- A Prepare state is written before any marker. Replaying one puts the
  transaction in :attr:`TransactionShard.markers` (the commit or abort
  markers owed to its partitions); replaying its Complete state takes it
  out. So after a load, transactions whose markers were not all written are
  in ``markers`` again, and the coordinator sends them (markers are
  idempotent at the partition).
- Fencing (InitProducerId while a transaction is Ongoing) and the
  transaction timeout abort with the epoch bumped (Kafka's
  PrepareEpochFence, an in-memory step): the PrepareAbort record carries
  epoch + 1, so the markers fence the old producer at every partition, and
  the old producer gets PRODUCER_FENCED from the coordinator.
- Idle ids (Empty or Complete) expire after
  ``transactional.id.expiration.ms``: a tombstone.

Producer ids are allocated outside (the metadata store's blocks are
asynchronous): :meth:`TransactionShard.needs_producer_id` tells the caller
to allocate one and pass it in; an operation that needs one and got none
answers CONCURRENT_TRANSACTIONS (a retriable error), so no state is ever
half-made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from odradek.coordinator.runtime import Result
from odradek.coordinator.transactions import records as rec
from odradek.coordinator.transactions.records import TxnState as S, TxnValue
from odradek.protocol import errors

EPOCH_MAX = 32767

TRANSITIONS: dict[S, frozenset] = {
    S.EMPTY: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.ONGOING: frozenset({S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_COMMIT: frozenset({S.ONGOING}),
    S.PREPARE_ABORT: frozenset({S.ONGOING, S.PREPARE_EPOCH_FENCE}),
    S.COMPLETE_COMMIT: frozenset({S.PREPARE_COMMIT}),
    S.COMPLETE_ABORT: frozenset({S.PREPARE_ABORT}),
    S.DEAD: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_EPOCH_FENCE: frozenset({S.ONGOING}),
}
PREPARING = (S.PREPARE_COMMIT, S.PREPARE_ABORT)
IDLE = (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT)


@dataclass
class TxnConfig:
    """The broker settings of the transaction coordinator (server.properties names)."""

    num_partitions: int = 50  # transaction.state.log.num.partitions
    replication_factor: int = 3  # transaction.state.log.replication.factor
    min_isr: int = 2  # transaction.state.log.min.isr
    max_timeout_ms: int = 900000  # transaction.max.timeout.ms
    id_expiration_ms: int = 7 * 24 * 3600 * 1000  # transactional.id.expiration.ms

    @classmethod
    def from_broker(cls, config) -> "TxnConfig":
        d = cls()
        return cls(
            num_partitions=config.get_int("transaction.state.log.num.partitions", d.num_partitions),
            replication_factor=config.get_int("transaction.state.log.replication.factor",
                                              d.replication_factor),
            min_isr=config.get_int("transaction.state.log.min.isr", d.min_isr),
            max_timeout_ms=config.get_int("transaction.max.timeout.ms", d.max_timeout_ms),
            id_expiration_ms=config.get_int("transactional.id.expiration.ms", d.id_expiration_ms),
        )


@dataclass
class TxnMeta:
    """A transactional id as the records describe it, plus the epoch it had
    before its last bump (memory only, for a retried InitProducerId). The
    previous producer id is in version 1 records only; with version 0 it is
    what replay saw change."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: S
    partitions: frozenset = field(default_factory=frozenset)
    last_update_ms: int = -1
    start_ms: int = -1
    previous_producer_id: int = -1
    last_producer_epoch: int = -1

    def value(self, **changes) -> TxnValue:
        v = TxnValue(self.producer_id, self.producer_epoch, self.timeout_ms, self.state, self.partitions,
                     self.last_update_ms, self.start_ms, self.previous_producer_id)
        for k, x in changes.items():
            setattr(v, k, x)
        return v


@dataclass(frozen=True)
class MarkerJob:
    """The markers a Prepare state owes: ``commit`` or abort, for ``partitions``,
    written with this producer id and epoch."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    commit: bool
    partitions: frozenset


def _pid_answer(code: int, pid: int = -1, epoch: int = -1) -> dict:
    return {"error_code": code, "producer_id": pid, "producer_epoch": epoch}


class TransactionShard:
    """The transactional ids of one partition. See the module docstring."""

    def __init__(self, config: TxnConfig | None = None, partition: int | None = None):
        self.config = config or TxnConfig()
        self.partition = partition
        self.txns: dict[str, TxnMeta] = {}
        self.markers: dict[str, MarkerJob] = {}  # Prepare states whose markers are owed

    # -- helpers ---------------------------------------------------------
    def _write(self, m: TxnMeta | None, txn_id: str, value: TxnValue, response: dict,
               failure: dict | None = None) -> Result:
        if m is not None:
            assert m.state in TRANSITIONS[value.state], (m.state, value.state)
        return Result(response, records=[(rec.txn_key(txn_id), rec.txn_value(value))],
                      failure=failure if failure is not None else dict(
                          response, error_code=errors.COORDINATOR_NOT_AVAILABLE))

    def _fence_and_abort(self, m: TxnMeta, now: int) -> TxnValue:
        """Kafka's PrepareEpochFence then PrepareAbort: the abort carries the next epoch."""
        epoch = m.producer_epoch + 1 if m.producer_epoch < EPOCH_MAX - 1 else m.producer_epoch
        return m.value(producer_epoch=epoch, state=S.PREPARE_ABORT, last_update_ms=now)

    def _check_producer(self, m: TxnMeta | None, pid: int, epoch: int) -> int:
        if m is None or m.state == S.DEAD or m.producer_id != pid:
            return errors.INVALID_PRODUCER_ID_MAPPING
        if m.producer_epoch != epoch:
            return errors.PRODUCER_FENCED
        return 0

    # -- InitProducerId --------------------------------------------------
    def needs_producer_id(self, txn_id: str) -> bool:
        """Whether InitProducerId for ``txn_id`` would need a new producer id."""
        m = self.txns.get(txn_id)
        return m is None or m.state == S.DEAD or m.producer_epoch >= EPOCH_MAX - 1

    def init_producer_id(self, now: int, txn_id: str, timeout_ms: int, producer_id: int = -1,
                         producer_epoch: int = -1, new_producer_id: int | None = None) -> Result:
        if timeout_ms <= 0 or timeout_ms > self.config.max_timeout_ms:
            return Result(_pid_answer(errors.INVALID_TRANSACTION_TIMEOUT))
        m = self.txns.get(txn_id)
        if m is None or m.state == S.DEAD:
            if new_producer_id is None:
                return Result(_pid_answer(errors.CONCURRENT_TRANSACTIONS))
            v = TxnValue(new_producer_id, 0, timeout_ms, S.EMPTY, frozenset(), now, -1)
            return self._write(None, txn_id, v, _pid_answer(0, new_producer_id, 0))
        if producer_id >= 0:  # KIP-360: the producer names its current id and epoch
            known = (producer_id == m.producer_id and producer_epoch in (m.producer_epoch, m.last_producer_epoch)) \
                or (producer_id == m.previous_producer_id and m.producer_epoch == 0)
            if not known:
                return Result(_pid_answer(errors.PRODUCER_FENCED))
        if m.state in PREPARING:
            return Result(_pid_answer(errors.CONCURRENT_TRANSACTIONS))
        if m.state == S.ONGOING:
            # Fence the open transaction: abort it with the epoch bumped; the
            # producer retries once the markers are written.
            return self._write(m, txn_id, self._fence_and_abort(m, now),
                               _pid_answer(errors.CONCURRENT_TRANSACTIONS))
        if producer_id >= 0 and m.state == S.EMPTY and producer_epoch == m.last_producer_epoch \
                and producer_id == m.producer_id and producer_epoch != m.producer_epoch:
            return Result(_pid_answer(0, m.producer_id, m.producer_epoch))  # a retry: already bumped
        if m.producer_epoch >= EPOCH_MAX - 1:
            if new_producer_id is None:
                return Result(_pid_answer(errors.CONCURRENT_TRANSACTIONS))
            v = m.value(producer_id=new_producer_id, producer_epoch=0, previous_producer_id=m.producer_id)
        else:
            v = m.value(producer_epoch=m.producer_epoch + 1)
        v.state, v.partitions, v.timeout_ms, v.last_update_ms, v.start_ms = \
            S.EMPTY, frozenset(), timeout_ms, now, -1
        return self._write(m, txn_id, v, _pid_answer(0, v.producer_id, v.producer_epoch))

    # -- AddPartitionsToTxn / AddOffsetsToTxn ----------------------------
    def add_partitions(self, now: int, txn_id: str, producer_id: int, producer_epoch: int,
                       partitions) -> Result:
        """Add ``partitions`` ({(topic, index)}) to the transaction; answers
        ``{"error_code"}``, which applies to every partition."""
        m = self.txns.get(txn_id)
        code = self._check_producer(m, producer_id, producer_epoch)
        if code:
            return Result({"error_code": code})
        if m.state in PREPARING:
            return Result({"error_code": errors.CONCURRENT_TRANSACTIONS})
        if m.state not in TRANSITIONS[S.ONGOING]:
            return Result({"error_code": errors.INVALID_TXN_STATE})
        partitions = frozenset(partitions)
        if m.state == S.ONGOING and partitions <= m.partitions:
            return Result({"error_code": 0})
        ongoing = m.state == S.ONGOING
        v = m.value(state=S.ONGOING, partitions=(m.partitions | partitions) if ongoing else partitions,
                    start_ms=m.start_ms if ongoing else now, last_update_ms=now)
        return self._write(m, txn_id, v, {"error_code": 0})

    def verify(self, txn_id: str, producer_id: int, producer_epoch: int, partition: tuple) -> int:
        """Whether a transactional write to ``partition`` belongs to the open
        transaction of ``txn_id`` (KIP-890 verification): 0 or the error."""
        m = self.txns.get(txn_id)
        code = self._check_producer(m, producer_id, producer_epoch)
        if code:
            return code
        if m.state in PREPARING:
            return errors.CONCURRENT_TRANSACTIONS
        if m.state != S.ONGOING or partition not in m.partitions:
            return errors.INVALID_TXN_STATE
        return 0

    # -- EndTxn ----------------------------------------------------------
    def end_txn(self, now: int, txn_id: str, producer_id: int, producer_epoch: int, commit: bool) -> Result:
        m = self.txns.get(txn_id)
        code = self._check_producer(m, producer_id, producer_epoch)
        if code:
            return Result({"error_code": code})
        wanted = S.PREPARE_COMMIT if commit else S.PREPARE_ABORT
        done = S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT
        if m.state == S.ONGOING:
            return self._write(m, txn_id, m.value(state=wanted, last_update_ms=now), {"error_code": 0})
        if m.state == done:
            return Result({"error_code": 0})  # a retry of what was done
        if m.state == wanted:
            return Result({"error_code": errors.CONCURRENT_TRANSACTIONS})
        return Result({"error_code": errors.INVALID_TXN_STATE})

    def complete(self, now: int, job: MarkerJob) -> Result:
        """Every marker of ``job`` is written: its Complete state."""
        m = self.txns.get(job.transactional_id)
        if self.markers.get(job.transactional_id) != job or m is None:
            return Result({"error_code": errors.INVALID_TXN_STATE})
        state = S.COMPLETE_COMMIT if job.commit else S.COMPLETE_ABORT
        return self._write(m, job.transactional_id,
                           m.value(state=state, partitions=frozenset(), last_update_ms=now),
                           {"error_code": 0})

    # -- time ------------------------------------------------------------
    def tick(self, now: int) -> Result:
        """Abort transactions past their timeout (epoch bumped); expire idle ids."""
        res = Result()
        for txn_id, m in list(self.txns.items()):
            if m.state == S.ONGOING and m.start_ms + m.timeout_ms <= now:
                res.records.extend(self._write(m, txn_id, self._fence_and_abort(m, now), {}).records)
            elif m.state in IDLE and m.last_update_ms + self.config.id_expiration_ms <= now:
                res.records.append((rec.txn_key(txn_id), None))
        return res

    def next_deadline(self) -> int | None:
        deadlines = [m.start_ms + m.timeout_ms if m.state == S.ONGOING
                     else m.last_update_ms + self.config.id_expiration_ms
                     for m in self.txns.values() if m.state == S.ONGOING or m.state in IDLE]
        return min(deadlines) if deadlines else None

    # -- what the runner calls -------------------------------------------
    def replay(self, key: bytes, value: bytes | None, now: int) -> None:
        txn_id = rec.decode_key(key)
        v = rec.decode_value(value)
        if v is None:
            self.txns.pop(txn_id, None)
            self.markers.pop(txn_id, None)
            return
        m = self.txns.get(txn_id)
        last_epoch = -1
        if m is not None and m.producer_id == v.producer_id and m.producer_epoch != v.producer_epoch:
            last_epoch = m.producer_epoch
        elif m is not None and m.producer_id == v.producer_id:
            last_epoch = m.last_producer_epoch
        previous = v.previous_producer_id  # a v1 record's, else what replay saw change
        if previous < 0 and m is not None:
            previous = m.producer_id if m.producer_id != v.producer_id else m.previous_producer_id
        self.txns[txn_id] = TxnMeta(txn_id, v.producer_id, v.producer_epoch, v.timeout_ms, v.state,
                                    v.partitions, v.last_update_ms, v.start_ms, previous, last_epoch)
        if v.state in PREPARING:
            self.markers[txn_id] = MarkerJob(txn_id, v.producer_id, v.producer_epoch,
                                             v.state == S.PREPARE_COMMIT, v.partitions)
        else:
            self.markers.pop(txn_id, None)

    def drain(self) -> list:
        return []  # no request is ever parked here

    def append_failed(self, records: list, now: int) -> None:
        pass  # nothing was replayed: the state is as before

    # -- inspection ------------------------------------------------------
    def describe(self, txn_id: str) -> TxnMeta | None:
        m = self.txns.get(txn_id)
        return None if m is None or m.state == S.DEAD else m

    def list_transactions(self, now: int, states: set | None = None, producer_ids: set | None = None,
                          min_duration_ms: int = -1, pattern=None) -> list[dict]:
        """ListTransactions over this shard: ``states`` by Kafka's names, a
        minimum running time (``now - start``), a compiled id pattern."""
        out = []
        for txn_id, m in sorted(self.txns.items()):
            if states and m.state.kafka_name not in states:
                continue
            if producer_ids and m.producer_id not in producer_ids:
                continue
            if min_duration_ms >= 0 and (m.start_ms < 0 or now - m.start_ms < min_duration_ms):
                continue
            if pattern is not None and not pattern.fullmatch(txn_id):
                continue
            out.append({"transactional_id": txn_id, "producer_id": m.producer_id,
                        "transaction_state": m.state.kafka_name})
        return out

    def durable_view(self) -> dict:
        """What the records describe, per transactional id: comparable across a replay."""
        return {t: (m.producer_id, m.producer_epoch, m.timeout_ms, m.state.name, sorted(m.partitions),
                    m.last_update_ms, m.start_ms)
                for t, m in sorted(self.txns.items())}
