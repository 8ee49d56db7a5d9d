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
    from tests.integration import txn_interleaved

    b = odradek_broker_factory(config={"transaction.state.log.num.partitions": "3"})
    b.create_topic("franz-tx", 3)
    want, everything = txn_interleaved.write(b.bootstrap, "franz-tx")

    def read(isolation):
        proc = subprocess.run([franz_txnread, b.bootstrap, "franz-tx", "3", isolation],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "error" not in proc.stderr, proc.stderr[-2000:]
        out = []
        for line in proc.stdout.splitlines():
            _, part, offset, value = line.split(" ", 3)
            out.append((int(part), int(offset), value))
        return out

    got = txn_interleaved.by_partition(read("read_committed"))
    assert got == want  # exactly the committed set, in offset order per partition
    assert txn_interleaved.by_partition(read("read_uncommitted")) == everything
    assert [v for _, v in everything[2]] == ["t1-p2-aborted", "t3-p2-aborted", "t5-p2-aborted",
                                             "t7-p2-aborted"]


def test_franz_go_share_group_tests(odradek_broker_factory):
    """franz-go's own share group tests (pkg/kgo): TestShareGroup (200 records
    from the log start, set by the share.auto.offset.reset group config),
    TestShareGroupAckOnClose, TestShareGroupETL (two chained share groups,
    accept / release / reject strategies, consumers added and killed; every
    key arrives, rejected ones never) and TestShareGroupOffsetsAdmin
    (Alter, Describe and DeleteShareGroupOffsets)."""
    if shutil.which("go") is None:
        pytest.skip("Go is not installed")
    b = odradek_broker_factory(config={"offsets.topic.num.partitions": "4"})
    env = dict(os.environ, KGO_SEEDS=b.bootstrap, KGO_TEST_RF="1", KGO_TEST_RECORDS="5000")
    names = ("TestShareGroup", "TestShareGroupAckOnClose", "TestShareGroupETL", "TestShareGroupOffsetsAdmin")
    tests = "^(" + "|".join(names) + ")$"
    proc = subprocess.run(["go", "test", "github.com/twmb/franz-go/pkg/kgo", "-run", tests, "-count=1",
                           "-timeout", "300s", "-v"], cwd=os.path.join(HERE, "franz"), env=env,
                          capture_output=True, text=True, timeout=380)
    if proc.returncode != 0 and "--- " not in proc.stdout:
        pytest.skip(f"could not build franz-go's tests (no module proxy?): {proc.stderr[-500:]}")
    for name in names:
        assert f"--- PASS: {name} " in proc.stdout, proc.stdout[-4000:]
    assert proc.returncode == 0, proc.stdout[-4000:]
