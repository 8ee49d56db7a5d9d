"""pytest plugin: fixtures that give a test a running odradek broker.

- ``odradek_broker`` (session scope): one in-memory broker shared by the session.
- ``odradek_broker_fn`` (function scope): a fresh broker for one test.
- ``odradek_broker_factory``: start brokers with your own settings
  (``factory(config={...}, data_dir=...)``); all are stopped after the test.
- ``odradek_cluster`` (function scope): an :class:`odradek.Cluster` of broker
  processes (3 by default) on the session's etcd; change it with
  ``@pytest.mark.odradek_cluster(brokers=N, config={...}, broker_config={id: {...}},
  hosts=True)`` or by indirect parametrization with such a dict. Skipped,
  saying why, without an etcd binary or the cluster extra.
- ``odradek_etcd`` (session scope): the one etcd those clusters share, each
  under a prefix of its own.

The three broker fixtures yield a :class:`odradek.testing.helpers.BrokerHandle`
(``.bootstrap``, ``create_topic``, ``produce``, ``records``, ``wait_for``,
``expect_produced``).
"""

from __future__ import annotations

import sys

import pytest

from odradek.embedded import EmbeddedBroker
from odradek.testing.helpers import BrokerHandle

FAST_GROUPS = {"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "4"}
# A killed broker's registration lapses, and it may start again, after this.
FAST_CLUSTER = dict(FAST_GROUPS, **{"broker.session.timeout.ms": "3000"})
CLUSTER_OPTIONS = ("brokers", "config", "broker_config", "hosts")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Mark a test whose call failed, so that its cluster reports its brokers' warnings."""
    outcome = yield
    if call.when == "call" and outcome.get_result().failed:
        item.odradek_failed = True


def pytest_configure(config):
    config.addinivalue_line("markers", "odradek_cluster(brokers=3, config=None, broker_config=None, "
                                       "hosts=None): how the odradek_cluster fixture builds its cluster")


@pytest.fixture(scope="session")
def odradek_broker():
    with EmbeddedBroker(config=FAST_GROUPS) as broker:
        yield BrokerHandle(broker)


@pytest.fixture
def odradek_broker_fn():
    with EmbeddedBroker(config=FAST_GROUPS) as broker:
        yield BrokerHandle(broker)


@pytest.fixture
def odradek_broker_factory():
    started = []

    def factory(config: dict | None = None, data_dir: str | None = None, **kwargs) -> BrokerHandle:
        cfg = dict(FAST_GROUPS)
        cfg.update(config or {})
        b = EmbeddedBroker(data_dir=data_dir, config=cfg, **kwargs).start()
        started.append(b)
        return BrokerHandle(b)

    yield factory
    for b in reversed(started):
        b.stop()


@pytest.fixture(scope="session")
def odradek_etcd():
    """One etcd for the session; skipped, saying why, when etcd or the cluster extra is missing."""
    import importlib.util

    from odradek.cluster.etcd_server import EtcdServer, find_etcd

    if importlib.util.find_spec("etcd3aio") is None:
        pytest.skip("odradek_cluster needs the cluster extra: pip install 'odradek[cluster]' (etcd3aio)")
    if find_etcd() is None:
        pytest.skip("odradek_cluster needs etcd 3.5.3+: none in $ODRADEK_ETCD, on PATH or in "
                    "~/.cache/odradek/etcd-<version>/ (see docs/cluster.md, Getting etcd)")
    with EtcdServer(unsafe_no_fsync=True) as server:
        yield server


@pytest.fixture
def odradek_cluster(request, odradek_etcd):
    """A fresh :class:`odradek.Cluster` for one test, closed after it."""
    from odradek.cluster.local import Cluster

    options = {}
    marker = request.node.get_closest_marker("odradek_cluster")
    if marker is not None:
        options.update(marker.kwargs)
    options.update(getattr(request, "param", None) or {})
    unknown = set(options) - set(CLUSTER_OPTIONS)
    if unknown:
        raise TypeError(f"odradek_cluster: unknown option(s) {sorted(unknown)}; "
                        f"known: {', '.join(CLUSTER_OPTIONS)}")
    config = dict(FAST_CLUSTER, **(options.get("config") or {}))
    with Cluster(options.get("brokers", 3), hosts=options.get("hosts"), config=config,
                 broker_config=options.get("broker_config"), etcd=odradek_etcd) as cluster:
        yield cluster
        if getattr(request.node, "odradek_failed", False):
            for b in cluster.brokers:  # shown under the failure as captured stderr
                lines = b.warnings()
                print(f"--- broker {b.node_id}: {len(lines)} last warnings of {b.log_path}", file=sys.stderr)
                print("\n".join(lines), file=sys.stderr)
            tail = odradek_etcd.log_tail(1500)
            if tail:
                print(f"--- etcd's log ends:\n{tail}", file=sys.stderr)
