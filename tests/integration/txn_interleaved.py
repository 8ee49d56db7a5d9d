"""Interleaved committed and aborted transactions, for readers of every
client (#11 acceptance 3): ``write`` puts eight transactions over three
partitions with confluent-kafka (commits at 0, 2 and 6; partition 2 holds
only aborted data) and one plain record after them, and returns what a
read_committed and a read_uncommitted reader must see, per partition in
offset order."""

from __future__ import annotations

import pytest


def by_partition(records, partitions: int = 3) -> dict[int, list[tuple[int, str]]]:
    return {q: [(o, v) for p, o, v in sorted(records) if p == q] for q in range(partitions)}


def write(bootstrap: str, topic: str) -> tuple[dict, dict]:
    """(committed, everything): {partition: [(offset, value)]} a
    read_committed and a read_uncommitted reader must return."""
    ck = pytest.importorskip("confluent_kafka")
    p = ck.Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-writer", "linger.ms": 0})
    p.init_transactions(30)
    committed: list[tuple[int, int, str]] = []
    written: list[tuple[int, int, str]] = []

    def produce(partition, value):
        def ack(err, msg):
            assert err is None, err
            written.append((msg.partition(), msg.offset(), msg.value().decode()))
        p.produce(topic, value.encode(), partition=partition, on_delivery=ack)

    for i in range(8):
        p.begin_transaction()
        produce(0, f"t{i}-p0-a")
        produce(1, f"t{i}-p1")
        produce(0, f"t{i}-p0-b")
        if i % 2:
            produce(2, f"t{i}-p2-aborted")  # partition 2 holds only aborted data
        p.flush(30)  # written before the abort (abort_transaction drops unsent records)
        if i % 3 == 1 or i % 2:
            p.abort_transaction(30)
        else:
            p.commit_transaction(30)
            committed += [w for w in written if w[2].startswith(f"t{i}-")]
    plain = ck.Producer({"bootstrap.servers": bootstrap})  # outside any transaction: always visible
    plain.produce(topic, b"plain", partition=1)
    assert plain.flush(30) == 0
    assert len(written) == 8 * 3 + 4
    # the plain record: after t7's record and abort marker on partition 1
    last = (1, max(o for q, o, _ in written if q == 1) + 2, "plain")
    want = by_partition(committed + [last])
    assert want[2] == [] and [v for _, v in want[0]] == ["t0-p0-a", "t0-p0-b", "t2-p0-a", "t2-p0-b",
                                                         "t6-p0-a", "t6-p0-b"]
    return want, by_partition(written + [last])
