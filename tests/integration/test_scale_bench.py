"""bench/scale_bench.py's odradek side, run with tiny counts so that the
benchmark cannot rot; and, as it runs, the invariant it measures at 100,000
partitions: more partitions than the broker may open files (here 400 under
an open-file limit of 256) are created, listed, produced to, and all there
again after kill -9 and a restart. Nothing is timed or compared here."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")
sys.path.insert(0, BENCH)

pytest.importorskip("confluent_kafka")

import scale_bench as sb  # noqa: E402


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_the_odradek_side_of_the_scale_benchmark_runs_and_renders():
    r = sb.run_side(sb.OdradekScale(256), 400, 2, cap=120, idle=0.5)
    assert "error" not in r, r.get("error")
    assert r["nofile_soft"] == 256
    assert r["steps_done"] == ["create", "visible", "metadata", "produce", "idle", "recovery", "verify"]
    assert r["all_records_kept"] and r["latest_offsets"] == {"1": 400}
    assert r["open_fds"] < 256
    text = sb.section({"partitions": 400, "topics": 2,
                       "sides": {"odradek": {**r, "nofile": 256, "cap_s": 120, "date": "now",
                                             "commit": "abc1234", "loadavg_before": [0.0, 0.0, 0.0],
                                             "loadavg_after": [0.0, 0.0, 0.0]}}})
    assert text.startswith(sb.SECTION_BEGIN) and text.endswith(sb.SECTION_END)
    assert "| every record there after recovery (offsets 1) | | yes |" in text
