"""bench/cluster_bench.py's odradek side, run with tiny counts so that the
benchmark cannot rot. Nothing is timed or compared here: the benchmark
itself measures. Needs etcd (skipped without it, as the cluster tests are)."""

from __future__ import annotations

import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")
sys.path.insert(0, BENCH)

import cluster_bench as cb  # noqa: E402

pytest.importorskip("confluent_kafka")

TINY = cb.Sizes(throughput_repetitions=1, records=500, warmup_records=100, failover_repetitions=1)


def test_the_odradek_side_of_the_cluster_benchmark_runs_and_renders(etcd):
    runs = {str(n): cb.throughput("odradek", n, TINY, etcd=etcd) for n in (1, 2)}
    for n, run in runs.items():
        assert run["errors"] == {}, (n, run["errors"])
    assert set(runs["1"]["metrics"]) == {cb.case_key(*c) for c in cb.THROUGHPUT_CASES if c[0] == 1}
    assert set(runs["2"]["metrics"]) == {cb.case_key(*c) for c in cb.THROUGHPUT_CASES if c[0] == 2}

    fo = cb.failover("odradek", 1, {"broker.session.timeout.ms": 2000}, etcd=etcd, steady_seconds=0.2)
    assert fo["errors"] == [], fo["errors"]
    (rep,) = fo["repetitions"]
    assert rep["new_leader"] != rep["killed"]
    assert rep["any_s"] <= rep["after_s"]
    assert fo["delivery_failures"] == 0
    assert fo["records_acked"] == fo["records_sent"]

    env = {"nproc": "2", "git_commit": "abc1234", "git_dirty": False, "kafka_version": "4.4.0",
           "load_before": (0.0, 0.0, 0.0)}
    result = {"command": "python bench/cluster_bench.py", "started": "now", "wall_seconds": 60,
              "environment": env, "sizes": TINY.__dict__, "throughput": [{"odradek": runs}],
              "failover": {"odradek_3s": fo}}
    text = cb.render(result)
    assert "| 2 brokers, RF 2, acks=all |" in text
    assert "odradek, broker.session.timeout.ms=3000" in text


def test_the_scaling_part_runs_every_kind_of_load_and_renders(etcd, monkeypatch):
    """Each client kind of the scaling part (hand-written Produce and Fetch,
    confluent-kafka producers and consumers, both together) on a 2-broker
    cluster, with CPU shares, and the section rendered from it."""
    monkeypatch.setattr(cb, "START_DELAY", 1.5)
    monkeypatch.setattr(cb, "SCALING_LOADS", [("raw", 1), ("rawfetch", 1), ("produce", 2), ("consume", 1),
                                              ("both", 1)])
    sizes = cb.Sizes(**{**TINY.__dict__, "scaling_records": 2_000})
    run = cb.scaling(2, sizes, etcd=etcd)
    assert run["errors"] == {}, run["errors"]
    loads = run["loads"]
    assert set(loads) == {cb.scaling_key(*x) for x in cb.SCALING_LOADS}
    for key, r in loads.items():
        assert set(r["broker_cores"]) == {"1", "2"}, key
        assert r["machine_cores"] is not None and r["other_cores"] is not None, key
    assert loads["raw.x1"]["produce_mb_s"] > 0 and loads["rawfetch.x1"]["consume_mb_s"] > 0
    assert loads["both.x1"]["produce_mb_s"] > 0 and loads["both.x1"]["consume_mb_s"] > 0

    env = {"nproc": "2", "git_commit": "abc1234", "git_dirty": False}
    sc = {"command": "python bench/cluster_bench.py --only scaling", "started": "now", "environment": env,
          "sizes": sizes.__dict__, "loads": [list(x) for x in cb.SCALING_LOADS],
          "repetitions": [{"load_before": (1.0, 1.0, 1.0), "1": run, "2": run}], "profiled": None}
    text = "\n".join(cb.scaling_section(sc))
    assert "| produce, hand-written Produce requests, 1 process |" in text
    assert "from 1 client process 1.00×" in text and "ahead in 0 of 1 repetitions" in text
