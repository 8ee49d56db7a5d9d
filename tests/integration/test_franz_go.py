"""franz-go (the Go client): admin, produce under every codec with acks=all, a
group consumer with commits, and lag through kadm. Skipped without Go."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
pytestmark = pytest.mark.timeout(400)


def build(tmp_path_factory, package: str, name: str) -> str:
    """A franz-go program of tests/integration/franz (its go.mod), built once."""
    if shutil.which("go") is None:
        pytest.skip("Go is not installed")
    out = tmp_path_factory.mktemp("franz") / name
    proc = subprocess.run(["go", "build", "-o", str(out), package], cwd=os.path.join(HERE, "franz"),
                          capture_output=True, text=True, timeout=360)
    if proc.returncode != 0:
        pytest.skip(f"could not build the franz-go program (no module proxy?): {proc.stderr[-500:]}")
    return str(out)


@pytest.fixture(scope="module")
def franz_binary(tmp_path_factory):
    return build(tmp_path_factory, ".", "franz-check")


@pytest.fixture(scope="module")
def franz_txnread(tmp_path_factory):
    return build(tmp_path_factory, "./txnread", "franz-txnread")


def test_franz_go_round_trip(odradek_broker, franz_binary):
    n = 10
    proc = subprocess.run([franz_binary, odradek_broker.bootstrap, "franz-topic", str(n)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("created franz-topic")
    acked = {tuple(map(int, l.split()[1:3])) for l in lines if l.startswith("acked ")}
    records = [l.split()[1:] for l in lines if l.startswith("record ")]
    assert len(acked) == 5 * n and {(int(r[0]), int(r[1])) for r in records} == acked
    for r in records:
        i = int(r[4].split("-")[1])
        assert r[3] == f"key-{i % 7}" and r[5] == f"h{i}"
    assert lines[-1] == "lag 0"
    stored = odradek_broker.records("franz-topic")
    assert len(stored) == 5 * n


def test_franz_go_txn_etl(odradek_broker_factory):
    """franz-go's own TestTxnEtl (pkg/kgo/txn_test.go): a transactional
    producer, then consume-transform-produce chains in transactions with
    classic and KIP-848 groups, read back read_committed, exactly once."""
    if shutil.which("go") is None:
        pytest.skip("Go is not installed")
    b = odradek_broker_factory(config={"transaction.state.log.num.partitions": "3"})
    env = dict(os.environ, KGO_SEEDS=b.bootstrap, KGO_TEST_RF="1", KGO_TEST_RECORDS="20000")
    proc = subprocess.run(["go", "test", "github.com/twmb/franz-go/pkg/kgo", "-run", "TestTxnEtl$", "-count=1",
                           "-timeout", "300s", "-v"], cwd=os.path.join(HERE, "franz"), env=env,
                          capture_output=True, text=True, timeout=380)
    if proc.returncode != 0 and "--- " not in proc.stdout:
        pytest.skip(f"could not build franz-go's tests (no module proxy?): {proc.stderr[-500:]}")
    assert proc.returncode == 0 and "--- PASS: TestTxnEtl " in proc.stdout, proc.stdout[-4000:]


def test_franz_go_reads_interleaved_transactions(odradek_broker_factory, franz_txnread):
    """#11 acceptance 3 for franz-go: committed and aborted transactions
    interleaved (written by confluent-kafka), one partition holding only
    aborted data; read_committed reads exactly the committed records, in
    order, read_uncommitted all of them."""
    ck = pytest.importorskip("confluent_kafka")
    b = odradek_broker_factory(config={"transaction.state.log.num.partitions": "3"})
    b.create_topic("franz-tx", 3)
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "franz-tx", "linger.ms": 0})
    p.init_transactions(30)
    committed: list[tuple[int, int, str]] = []
    written: list[tuple[int, int, str]] = []

    def produce(partition, value):
        def ack(err, msg):
            assert err is None, err
            written.append((msg.partition(), msg.offset(), msg.value().decode()))
        p.produce("franz-tx", value.encode(), partition=partition, on_delivery=ack)

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
    plain = ck.Producer({"bootstrap.servers": b.bootstrap})  # outside any transaction: always visible
    plain.produce("franz-tx", b"plain", partition=1)
    assert plain.flush(30) == 0
    assert len(written) == 8 * 3 + 4
    # offsets of the plain record: after t7's records and abort marker on partition 1
    expected_committed = sorted(committed) + [(1, max(o for q, o, _ in written if q == 1) + 2, "plain")]

    def read(isolation):
        proc = subprocess.run([franz_txnread, b.bootstrap, "franz-tx", "3", isolation],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "error" not in proc.stderr, proc.stderr[-2000:]
        out = []
        for line in proc.stdout.splitlines():
            _, part, offset, value = line.split(" ", 3)
            out.append((int(part), int(offset), value))
        return out

    def by_partition(records):
        return {q: [(o, v) for p_, o, v in records if p_ == q] for q in range(3)}

    got = by_partition(read("read_committed"))
    want = by_partition(expected_committed)
    assert got == want  # exactly the committed set, in offset order per partition
    assert got[2] == [] and [v for _, v in got[0]] == ["t0-p0-a", "t0-p0-b", "t2-p0-a", "t2-p0-b",
                                                        "t6-p0-a", "t6-p0-b"]
    everything = by_partition(read("read_uncommitted"))
    assert everything == by_partition(sorted(written) + [expected_committed[-1]])
    assert [v for _, v in everything[2]] == ["t1-p2-aborted", "t3-p2-aborted", "t5-p2-aborted",
                                             "t7-p2-aborted"]
