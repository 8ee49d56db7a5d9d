"""pytest plugin: fixtures that give a test a running odradek broker.

- ``odradek_broker`` (session scope): one in-memory broker shared by the session.
- ``odradek_broker_fn`` (function scope): a fresh broker for one test.
- ``odradek_broker_factory``: start brokers with your own settings
  (``factory(config={...}, data_dir=...)``); all are stopped after the test.

Each yields a :class:`odradek.testing.helpers.BrokerHandle` (``.bootstrap``,
``create_topic``, ``produce``, ``records``, ``wait_for``, ``expect_produced``).
"""

from __future__ import annotations

import pytest

from odradek.embedded import EmbeddedBroker
from odradek.testing.helpers import BrokerHandle

FAST_GROUPS = {"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "4"}


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
