"""Several listeners, each advertising its own endpoint; server.properties keys."""

from __future__ import annotations

import pytest

from odradek.config import BrokerConfig, ConfigError, parse_listeners, parse_properties
from tests.integration.rawclient import RawClient


def test_each_listener_advertises_itself(odradek_broker_factory):
    b = odradek_broker_factory(config={
        "listeners": "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "advertised.listeners": "PLAINTEXT://localhost:0",
        "listener.security.protocol.map": "INTERNAL:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    })
    core = b.broker.core
    assert set(core.endpoints) == {"PLAINTEXT", "INTERNAL"}
    for server, name in zip(core.servers, ["PLAINTEXT", "INTERNAL"]):
        port = server.sockets[0].getsockname()[1]
        c = RawClient(f"127.0.0.1:{port}")
        try:
            md = c.request("Metadata", 9, {"topics": None})
            [node] = md["brokers"]
            assert (node["host"], node["port"]) == core.endpoints[name]
            fc = c.request("FindCoordinator", 3, {"key": "g", "key_type": 0})
            assert (fc["host"], fc["port"]) == core.endpoints[name]
        finally:
            c.close()
    assert core.endpoints["PLAINTEXT"] == ("localhost", core.servers[0].sockets[0].getsockname()[1])
    assert core.endpoints["INTERNAL"][0] == "127.0.0.1"


def test_listener_parsing_and_unsupported_protocols():
    assert [(l.name, l.host, l.port) for l in parse_listeners("PLAINTEXT://:9092, ext://0.0.0.0:9093")] == [
        ("PLAINTEXT", "", 9092), ("EXT", "0.0.0.0", 9093)]
    with pytest.raises(ConfigError):
        parse_listeners("PLAINTEXT:9092")
    with pytest.raises(ConfigError):
        BrokerConfig(props={"listeners": "SSL://:9093"}).security()  # no keystore
    props = parse_properties("# comment\nnum.partitions = 3\nlog.retention.hours: 1\n! other\n")
    assert props == {"num.partitions": "3", "log.retention.hours": "1"}
    cfg = BrokerConfig(props=props)
    from odradek.config import TopicConfig

    assert TopicConfig(cfg).lookup("retention.ms") == (str(3600 * 1000), 4)
