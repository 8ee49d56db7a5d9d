"""``odradek cluster up`` picks one broker per core this process may use:
its CPU affinity, capped by its cgroup's CPU quota (cgroup v2 ``cpu.max``,
v1 ``cpu.cfs_quota_us``), rounded up."""

from __future__ import annotations

import os

import pytest

from odradek.cli import cluster as cli_cluster


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})


def test_affinity_counts_not_the_machine(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert cli_cluster.cores_available(str(tmp_path)) == 1


def test_cgroup_v2_quota_caps_it_rounded_up(four_cores, tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cli_cluster.cores_available(str(tmp_path)) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cli_cluster.cores_available(str(tmp_path)) == 4
    (tmp_path / "cpu.max").write_text("20000 100000\n")  # a fifth of a core: still one broker
    assert cli_cluster.cores_available(str(tmp_path)) == 1


def test_cgroup_v1_quota_caps_it(four_cores, tmp_path):
    d = tmp_path / "cpu"
    d.mkdir()
    (d / "cpu.cfs_quota_us").write_text("300000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    assert cli_cluster.cores_available(str(tmp_path)) == 3
    (d / "cpu.cfs_quota_us").write_text("-1\n")  # no quota
    assert cli_cluster.cores_available(str(tmp_path)) == 4


def test_no_cgroup_files_leaves_the_affinity(four_cores, tmp_path):
    assert cli_cluster.cores_available(str(tmp_path / "absent")) == 4
