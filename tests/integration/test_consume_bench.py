"""bench/consume_bench.py's odradek side, with small topics, so that the
benchmark cannot rot. Nothing is timed or compared here."""

from __future__ import annotations

import os
import sys

import pytest

pytest.importorskip("confluent_kafka")

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")
sys.path.insert(0, BENCH)

import consume_bench as cb  # noqa: E402


def test_the_odradek_side_of_the_consume_benchmark_runs_and_renders():
    out = cb.one_side("odradek", 2000, 1)
    assert set(out) == {"1", "8"} and all(len(v) == 1 and v[0] > 0 for v in out.values())
    env = {"git_commit": "abc1234", "kafka_version": "4.4.0", "confluent_kafka": "2", "librdkafka": "2",
           "loadavg": "0"}
    result = {"command": "python bench/consume_bench.py", "started": "now", "environment": env,
              "repetitions": 1, "reads": 1, "records": 2000, "runs": [{"odradek": out, "kafka": out}]}
    text = cb.section(result)
    assert "| 1 |" in text and "| 8 |" in text and "| 1.00 ~ |" in text
