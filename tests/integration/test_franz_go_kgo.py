"""franz-go's own kgo integration tests (``go test`` of
github.com/twmb/franz-go/pkg/kgo with ``KGO_SEEDS``) against a cluster of
three brokers, with every topic they create at replication factor 3
(``KGO_TEST_RF=3``) and ``min.insync.replicas=2`` (acceptance 7 of the
cluster issue). Skipped without Go or when the module proxy cannot be
reached to build the tests.

Every test is run except those listed in ``EXCLUDED`` (each with its
reason); the tests that use a broker are named in ``MUST_PASS`` so that one
silently skipped is noticed, and those franz-go itself skips here are in
``SKIPPED_BY_KGO``. ``KGO_TEST_RECORDS`` bounds the records its ETL tests
move (franz-go's default is 500,000): about 50 s for the whole run on 2
cores.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
KGO = "github.com/twmb/franz-go/pkg/kgo"
RECORDS = "20000"
pytestmark = pytest.mark.timeout(600)

# Left out, and why.
EXCLUDED = {
    "Test848RegexBrokerResolves": "races against any real broker: its poll loop ends once it has records of as "
                                  "many topics as it wants, counting __consumer_offsets, which its regex "
                                  "matches (the broker resolves regexes over every topic, internal ones too, "
                                  "as Kafka does) and which holds the group's own KIP-848 records; it wants "
                                  "__consumer_offsets only on franz-go's fake broker (kfake.is_internal); "
                                  "regex subscriptions are covered by TestConsumeRegex and the groups tests",
}
# The tests that use a broker; each must pass.
MUST_PASS = [
    "TestAddRemovePartitions", "TestClient_Produce",
    "TestClient_ProduceLargeMessages", "TestConsumeMaxDecompressBatchBytes", "TestConsumeRegex",
    "TestConsumeTopicRetrieval", "TestConsumeTopicRetrieval_Many", "TestDirectPartitionPurge", "TestGroupETL",
    "TestGroupSimple", "TestHookPollStart", "TestIssue1034", "TestIssue325", "TestIssue337", "TestIssue434",
    "TestIssue523", "TestIssue648", "TestIssue769", "TestIssue810", "TestIssue831", "TestIssue865",
    "TestIssueFetchLargerThanBrokerMaxReadBytes", "TestIssueProduceSyncManualPartitionNegativeDoesNotPanic",
    "TestPauseIssue489", "TestPauseIssueOct2023", "TestPing", "TestPooling", "TestUnknownGroupOffsetFetchPinned",
    "TestTxnEtl", "TestShareGroupOffsetsAdmin",
]
# What franz-go skips by itself here, and why.
SKIPPED_BY_KGO = {
    "TestIssueProduceBrokerTooOldFailsRecords": "odradek takes Produce v0-2 (old librdkafka needs them "
                                                "advertised); the test needs a broker that refuses them",
    "TestSCRAMAuth": "needs KGO_TEST_SCRAM_SEEDS (a SASL listener): run by test_franz_go_sasl_tests",
    "TestSCRAMAuthBadCredentials": "needs KGO_TEST_SCRAM_SEEDS (a SASL listener): run by test_franz_go_sasl_tests",
    "TestOAuthAuth": "needs KGO_TEST_OAUTH_SEEDS (an OAUTHBEARER listener): run by test_franz_go_sasl_tests",
}
RESULT = re.compile(r"^--- (PASS|FAIL|SKIP): (\S+) \(", re.M)


@pytest.fixture(scope="module")
def kgo_tests(tmp_path_factory):
    """(the compiled kgo test binary, the package's source directory: some
    tests read its files)."""
    if shutil.which("go") is None:
        pytest.skip("Go is not installed")
    franz = os.path.join(HERE, "franz")
    out = str(tmp_path_factory.mktemp("kgo") / "kgo.test")
    build = subprocess.run(["go", "test", "-c", "-o", out, KGO], cwd=franz, capture_output=True, text=True,
                           timeout=480)
    if build.returncode != 0:
        pytest.skip(f"could not build franz-go's kgo tests (no module proxy?): {build.stderr[-500:]}")
    src = subprocess.run(["go", "list", "-f", "{{.Dir}}", KGO], cwd=franz, capture_output=True, text=True,
                         timeout=60).stdout.strip()
    return out, src


def run_kgo(binary: str, src: str, seeds: str, args: list[str], timeout: int) -> tuple[int, str]:
    env = dict(os.environ, KGO_SEEDS=seeds, KGO_TEST_RF="3", KGO_TEST_RECORDS=RECORDS)
    proc = subprocess.run([binary, "-test.v", "-test.count=1", f"-test.timeout={timeout}s", "-test.parallel=6",
                           *args], cwd=src, env=env, capture_output=True, text=True, timeout=timeout + 60)
    return proc.returncode, proc.stdout + proc.stderr


def failure_context(out: str, name: str) -> str:
    """The lines Go prints for test ``name``: its ``--- FAIL`` line and the
    indented log lines under it, and the lines that name it elsewhere."""
    lines, under = [], False
    for line in out.splitlines():
        if line.lstrip().startswith(("--- ", "=== ")):
            under = line.lstrip().startswith(f"--- FAIL: {name}")
        if under or name in line:
            lines.append(line)
    return "\n".join(lines[-60:])


@pytest.mark.odradek_cluster(config={"offsets.topic.replication.factor": 3, "min.insync.replicas": 2})
def test_franz_go_kgo_suite_against_three_brokers(odradek_cluster, kgo_tests):
    binary, src = kgo_tests
    seeds = odradek_cluster.bootstrap
    started = time.monotonic()
    rc, out = run_kgo(binary, src, seeds, ["-test.skip", "^(" + "|".join(EXCLUDED) + ")$"], 420)
    outputs = [out]
    results: dict[str, str] = {}
    for o in outputs:
        for status, name in RESULT.findall(o):
            results[name] = status
    failed = sorted(n for n, s in results.items() if s == "FAIL")
    skipped = sorted(n for n, s in results.items() if s == "SKIP")
    print(f"kgo: {sum(s == 'PASS' for s in results.values())} passed, failed {failed}, skipped {skipped}, "
          f"excluded {sorted(EXCLUDED)}, in {time.monotonic() - started:.0f} s")
    assert not failed, "\n\n".join(failure_context(o, n) for n in failed for o in outputs if n in o)
    assert rc == 0, out[-4000:]
    not_passed = [n for n in MUST_PASS if results.get(n) != "PASS"]
    assert not not_passed, f"tests that use a broker did not pass: {not_passed}"
    unexpected = sorted(set(skipped) - set(SKIPPED_BY_KGO))
    assert not unexpected, f"skipped by franz-go, unexpectedly: {unexpected}"


SASL_TESTS = ["TestOAuthAuth", "TestSCRAMAuth", "TestSCRAMAuthBadCredentials"]


def test_franz_go_sasl_tests(odradek_broker_factory, kgo_tests):
    """franz-go's own SCRAM and OAUTHBEARER tests, against one broker with a
    SCRAM-SHA-256 listener and an OAUTHBEARER one (Kafka's default validator,
    unsecured tokens); a good login pings, a bad password and an expired
    token are refused (SASL_AUTHENTICATION_FAILED, invalid_token)."""
    binary, src = kgo_tests
    b = odradek_broker_factory(config={
        "listeners": "PLAINTEXT://127.0.0.1:0,SCRAM://127.0.0.1:0,OAUTH://127.0.0.1:0",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SCRAM:SASL_PLAINTEXT,OAUTH:SASL_PLAINTEXT",
        "listener.name.scram.sasl.enabled.mechanisms": "SCRAM-SHA-256",
        "listener.name.oauth.sasl.enabled.mechanisms": "OAUTHBEARER",
        "connection.failed.authentication.delay.ms": "10",
    })
    addr = {name: f"127.0.0.1:{port}" for name, (_, port) in b.broker.core.endpoints.items()}
    from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    admin = AdminClient({"bootstrap.servers": addr["PLAINTEXT"]})
    for f in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            "kgo", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"kgo-secret")]).values():
        f.result(timeout=15)
    env = dict(os.environ, KGO_SEEDS=addr["PLAINTEXT"], KGO_TEST_SCRAM_SEEDS=addr["SCRAM"],
               KGO_TEST_SCRAM="kgo:kgo-secret:256", KGO_TEST_OAUTH_SEEDS=addr["OAUTH"])
    proc = subprocess.run([binary, "-test.v", "-test.count=1", "-test.timeout=120s",
                           "-test.run", "^(" + "|".join(SASL_TESTS) + ")$"],
                          cwd=src, env=env, capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    results = {name: status for status, name in RESULT.findall(out)}
    assert results == {n: "PASS" for n in SASL_TESTS}, out[-3000:]
