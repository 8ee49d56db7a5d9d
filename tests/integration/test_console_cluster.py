"""The console embedded in one broker of a three-broker odradek cluster (on
etcd): every broker, the controller, replicas and ISR; a broker killed shows
as under-replicated partitions, offline ones (those it alone held), then as
a broker gone."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import free_port, wait_port
from tests.integration.test_console import Web

pytestmark = pytest.mark.timeout(90)
HTTP_PORT = free_port()


def cells(page: str, table: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


@pytest.mark.odradek_cluster(brokers=3, config={"replica.lag.time.max.ms": "1000", "replica.fetch.backoff.ms": "200",
                                                "controlled.shutdown.enable": "false"},
                             broker_config={1: {"http.listener": f"127.0.0.1:{HTTP_PORT}"}})
def test_console_sees_every_broker_and_an_under_replicated_partition(odradek_cluster):
    wait_port(HTTP_PORT, timeout=30)  # the HTTP listener opens after the Kafka one the fixture waits for
    web = Web(("127.0.0.1", HTTP_PORT))
    assert web.post("/topics", {"name": "replicated", "partitions": "3", "replication": "3"}).status == 303
    assert web.post("/topics", {"name": "single", "partitions": "3", "replication": "1"}).status == 303
    alone_on_3 = [r[0] for r in cells(web.get("/topics/single").text, "partitions") if r[2] == "3"]
    assert alone_on_3  # placement spreads the three single replicas over the three brokers
    deadline = time.monotonic() + 20
    while True:
        rows = cells(web.get("/topics/replicated").text, "partitions")
        if all(r[3] == "1, 2, 3" or sorted(r[3].split(", ")) == ["1", "2", "3"] for r in rows) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [sorted(r[2].split(", ")) for r in rows] == [["1", "2", "3"]] * 3  # replicas
    assert [sorted(r[3].split(", ")) for r in rows] == [["1", "2", "3"]] * 3  # ISR
    home = web.get("/").text
    assert [r[0] for r in cells(home, "brokers")] == ["1", "2", "3"]
    assert sum("controller" in r[4] for r in cells(home, "brokers")) == 1
    assert re.search(r'id="under-replicated">0<', home)

    odradek_cluster.broker(3).kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        home = web.get("/").text
        if re.search(r'id="under-replicated">3<', home) and len(cells(home, "brokers")) == 2 and \
                re.search(rf'id="offline">{len(alone_on_3)}<', home):
            break
        time.sleep(0.3)
    assert re.search(r'id="under-replicated">3<', home), home
    assert [r[0] for r in cells(home, "brokers")] == ["1", "2"]  # its registration lapsed
    assert re.search(rf'id="offline">{len(alone_on_3)}<', home), home
    attention = cells(home, "attention")
    offline, under = attention[:len(alone_on_3)], attention[len(alone_on_3):]
    assert [(r[0], r[1], r[2]) for r in offline] == [("single", p, "none") for p in alone_on_3]
    assert sorted(r[0] + "-" + r[1] for r in under) == ["replicated-0", "replicated-1", "replicated-2"]
    assert all("3" not in r[4].split(", ") for r in under)  # out of the ISR
