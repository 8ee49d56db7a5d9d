"""A network partition cutting a partition's leader from its peers (and from
etcd) while clients still reach it (acceptance item 4 of the cluster issue).

The scenario (``partition_scenario.py``) runs in a network namespace of its
own (``unshare -n``): its loopback carries etcd, three brokers on 127.0.0.2-4
and the clients on 127.0.0.1, and its iptables rules touch nothing outside
it. Needs root, ``unshare`` (util-linux) and ``iptables``; skipped, saying
which is missing, without them, and without etcd 3.5.3+ or etcd3aio."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from odradek.protocol import errors

pytestmark = pytest.mark.timeout(240)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds tests/


def why_not() -> str | None:
    """Why the scenario cannot run here, or None."""
    from odradek.cluster.etcd_server import find_etcd

    if os.geteuid() != 0:
        return "a network namespace and iptables rules need root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if shutil.which("iptables") is None:
        return "iptables is not installed"
    if importlib.util.find_spec("etcd3aio") is None:
        return "etcd3aio is not installed (pip install 'odradek[cluster]')"
    if find_etcd() is None:
        return "no etcd 3.5.3+ found ($ODRADEK_ETCD, PATH or ~/.cache/odradek)"
    try:
        probe = subprocess.run(["unshare", "-n", "iptables", "-S", "INPUT"], capture_output=True, text=True,
                               timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return f"unshare -n failed: {e}"
    if probe.returncode != 0:
        return f"iptables in a new network namespace failed: {probe.stderr.strip()[-300:]}"
    return None


def test_a_leader_cut_from_its_peers_acknowledges_nothing_it_cannot_commit_and_the_partition_moves():
    reason = why_not()
    if reason:
        pytest.skip(reason)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [ROOT, env.get("PYTHONPATH", "")] if p)
    proc = subprocess.run(["unshare", "-n", sys.executable, "-m", "tests.integration.partition_scenario"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=200)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, f"the scenario failed ({proc.returncode}): {proc.stderr[-3000:]}"
    r = json.loads(lines[-1])
    log = r.pop("cut_log", "")
    print(json.dumps(r))
    assert "error" not in r, f"{r['error']}\n{r.get('traceback')}\nthe cut broker's log:\n{log}"
    # acks=all to the cut leader, which still answers clients, is never a success.
    assert r["direct_produce_error"] in (errors.REQUEST_TIMED_OUT, errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                                         errors.NOT_ENOUGH_REPLICAS, errors.NOT_LEADER_OR_FOLLOWER), r
    assert r["direct_produce_error_late"] != errors.NONE, r
    # The partition moved to a broker the others reach, in a newer epoch.
    assert r["leader_after"] not in (r["cut"], None) and r["epoch_after"] > r["epoch_before"], r
    assert all(leader != r["cut"] for leader in r["leaders_during_cut"].values()), r
    # Healed: the old leader truncated what it could not commit and rejoined the ISR,
    # and the history holds to every check (nothing acknowledged lost, ...).
    assert r["problems"] == [], r["problems"]
    assert r["truncated"] and not r["cut_write_survived"], log
    assert r["acked"] > 200, r
    print("the controller was cut off too" if r["controller_cut"] else "the controller was not cut off")
