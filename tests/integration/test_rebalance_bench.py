"""bench/rebalance_bench.py's odradek side, run with one member per group so that the
benchmark cannot rot. Nothing is timed or compared here: the benchmark
itself measures."""

from __future__ import annotations

import os
import sys

import pytest

pytest.importorskip("confluent_kafka")

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")
sys.path.insert(0, BENCH)

import rebalance_bench as rb  # noqa: E402


def test_the_odradek_side_of_the_rebalance_benchmark_runs_and_renders(tmp_path):
    cases = [("classic", 1), ("consumer", 1)]
    out = rb.one_side("odradek", cases, timeout=60, props={"group.initial.rebalance.delay.ms": "0"})
    for key in ("classic.1", "consumer.1"):
        assert "error" not in out[key], out[key]
        assert out[key]["rebalance.first_s"] <= out[key]["rebalance.s"]
    result = {"command": "python bench/rebalance_bench.py", "started": "now", "cases": cases,
              "environment": {"git_commit": "abc1234", "kafka_version": "4.4.0", "confluent_kafka": "2",
                              "librdkafka": "2", "loadavg": "0"},
              "broker_props": {"group.initial.rebalance.delay.ms": "3000"}, "repetitions_n": 1,
              "repetitions": [{"odradek": out, "kafka": {"classic.1": {"error": "not run"},
                                                         "consumer.1": {"error": "not run"}}}]}
    text = rb.section(result)
    assert "(group.initial.rebalance.delay.ms=3000)" in text
    assert "| classic | 1 | 2 |" in text and "kafka rep 1: not run" in text
    report = tmp_path / "performance.md"
    report.write_text("# report\n")
    rb.compare.write_section(report, *rb.markers(3000), text)
    rb.compare.write_section(report, *rb.markers(3000), text)  # rewritten in place, not added twice
    assert report.read_text().count("delay=3000: begin") == 1
