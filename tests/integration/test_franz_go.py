"""franz-go (the Go client): admin, produce under every codec with acks=all, a
group consumer with commits, and lag through kadm. Skipped without Go."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def franz_binary(tmp_path_factory):
    if shutil.which("go") is None:
        pytest.skip("Go is not installed")
    out = tmp_path_factory.mktemp("franz") / "franz-check"
    proc = subprocess.run(["go", "build", "-o", str(out), "."], cwd=os.path.join(HERE, "franz"),
                          capture_output=True, text=True, timeout=360)
    if proc.returncode != 0:
        pytest.skip(f"could not build the franz-go program (no module proxy?): {proc.stderr[-500:]}")
    return str(out)


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
