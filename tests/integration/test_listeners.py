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


def _api_versions(sock, correlation=7):
    """Send ApiVersions v0 on a bare socket; its answer's correlation id, or None if closed."""
    import struct

    try:
        sock.sendall(struct.pack(">ihhih", 10, 18, 0, correlation, -1))
        return _response(sock)
    except ConnectionError:  # reset: closed before or after the request came
        return None


def _response(sock):
    """Read one whole response; its correlation id, or None if the connection closed."""
    import struct

    data, size = b"", None
    while size is None or len(data) < size + 4:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if size is None and len(data) >= 4:
            size = struct.unpack_from(">i", data)[0]
    return struct.unpack_from(">i", data, 4)[0]


def _connect(bootstrap, source="127.0.0.1"):
    import socket

    host, port = bootstrap.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5, source_address=(source, 0))


def test_max_connections_per_ip_closes_the_new_connection_at_once(odradek_broker_factory):
    """Kafka's max.connections.per.ip (here 1) with an override for another
    address (127.0.0.2:3): a connection over its address's limit is closed at
    once, unanswered; other addresses keep their own count; a closed
    connection frees its place."""
    import time

    from odradek.metrics import render

    b = odradek_broker_factory(config={"max.connections.per.ip": "1",
                                       "max.connections.per.ip.overrides": "127.0.0.2:3"})
    first = _connect(b.bootstrap)
    assert _api_versions(first) == 7
    t0 = time.monotonic()
    second = _connect(b.bootstrap)
    assert _api_versions(second) is None and time.monotonic() - t0 < 1.0
    second.close()
    others = [_connect(b.bootstrap, "127.0.0.2") for _ in range(3)]
    assert [_api_versions(s) for s in others] == [7, 7, 7]
    fourth = _connect(b.bootstrap, "127.0.0.2")
    assert _api_versions(fourth) is None
    fourth.close()
    assert _api_versions(first, 8) == 8  # the connections already made are served
    first.close()
    for _ in range(50):  # its place is free once the broker has seen the close
        again = _connect(b.bootstrap)
        if _api_versions(again) == 7:
            break
        again.close()
        time.sleep(0.05)
    else:
        raise AssertionError("no place after the first connection closed")
    again.close()
    for s in others:
        s.close()
    text = render(b.broker.core).decode()
    assert 'odradek_connections_refused_total{listener="PLAINTEXT",limit="max_connections_per_ip"} 2' in text


def test_max_connections_blocks_the_listener_and_the_inter_broker_listener_is_protected(odradek_broker_factory):
    """Kafka's max.connections (here 2, broker-wide): at the limit the client
    listener accepts nothing, so a new client waits unanswered until a
    connection closes, then is served. The inter-broker listener (INTERNAL) is
    protected: a connection there is accepted over the limit, and the least
    recently active connection of the other listener is closed for it. A
    listener's own limit (listener.name.internal.max.connections=1) holds it."""
    import time

    from confluent_kafka.admin import AdminClient

    b = odradek_broker_factory(config={
        "listeners": "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "listener.security.protocol.map": "INTERNAL:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL",
        "max.connections": "2",
        "listener.name.internal.max.connections": "1",
    })
    core = b.broker.core
    internal = "127.0.0.1:%d" % core.servers[1].sockets[0].getsockname()[1]
    old, recent = _connect(b.bootstrap), _connect(b.bootstrap)
    assert _api_versions(old) == 7
    assert _api_versions(recent) == 7
    waiting = _connect(b.bootstrap)  # the kernel completes it; the broker does not accept it yet
    waiting.sendall(b"\0\0\0\x0a\0\x12\0\0\0\0\0\x09\xff\xff")  # ApiVersions v0, correlation 9
    waiting.settimeout(0.5)
    try:
        data = waiting.recv(64)
    except OSError:
        data = None
    assert data is None, data  # unanswered while the broker is at max.connections
    time.sleep(0.1)
    assert _api_versions(recent, 8) == 8  # recent becomes the most recently active
    inter = _connect(internal)  # over the limit on the protected listener: served
    assert _api_versions(inter) == 7
    assert _api_versions(old, 9) is None  # the least recently active client connection was closed for it
    inter2 = _connect(internal)  # INTERNAL's own limit of 1 holds it back
    inter2.settimeout(0.5)
    inter2.sendall(b"\0\0\0\x0a\0\x12\0\0\0\0\0\x0b\xff\xff")
    try:
        data = inter2.recv(64)
    except OSError:
        data = None
    assert data is None
    recent.close()
    waiting.settimeout(5)
    assert _response(waiting) == 9  # accepted once a connection closed: its request is answered
    inter.close()
    inter2.settimeout(5)
    assert _response(inter2) == 11  # served once the first closed
    for s in (inter2, waiting, old):
        s.close()
    from odradek.metrics import render

    text = render(core).decode()
    assert 'odradek_connections_refused_total{listener="PLAINTEXT",limit="max_connections"} 1' in text
    blocked = [l for l in text.splitlines() if l.startswith('odradek_acceptor_blocked_seconds_total{listener="PLAINTEXT"}')]
    assert blocked and float(blocked[0].split()[-1]) > 0.5, blocked
    # A real client waits as well: at the limit its metadata request times out;
    # once a connection closes, it is served.
    full = [_connect(b.bootstrap) for _ in range(2)]
    assert [_api_versions(c) for c in full] == [7, 7]
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    with pytest.raises(Exception) as e:
        admin.list_topics(timeout=1)
    assert "transport" in str(e.value).lower() or "timed out" in str(e.value).lower(), e.value
    full[0].close()
    assert admin.list_topics(timeout=10).brokers
    full[1].close()


def test_connection_limit_settings_are_checked_at_start():
    from odradek.security.config import connection_limits

    def cfg(**props):
        return BrokerConfig(props={k.replace("_", "."): v for k, v in props.items()})

    limits = cfg(max_connections_per_ip="0", **{"max.connections.per.ip.overrides": "127.0.0.2:3, localhost : 4"}) \
        .security().limits
    assert limits.per_ip == 0 and limits.per_ip_overrides["127.0.0.2"] == 3 and len(limits.per_ip_overrides) == 2
    for bad in ({"max.connections.per.ip": "0"}, {"max.connections": "-1"}, {"max.connections": "x"},
                {"max.connections.per.ip.overrides": "127.0.0.1"},
                {"max.connections.per.ip.overrides": "127.0.0.1:-1"}):
        with pytest.raises(ConfigError):
            BrokerConfig(props=bad).security()
    assert connection_limits({}, []).max_connections is None


def test_a_port_in_use_is_refused_on_one_address_and_on_every_interface():
    import errno
    import socket

    from odradek.server.listeners import bind

    busy = socket.create_server(("0.0.0.0", 0))
    port = busy.getsockname()[1]
    try:
        for host in ("127.0.0.1", None):
            with pytest.raises(OSError) as e:
                bind(host, port)
            assert e.value.errno == errno.EADDRINUSE
    finally:
        busy.close()
    sockets = bind(None, 0)  # every interface: one port for IPv4 and (where the host has it) IPv6
    try:
        assert len({s.getsockname()[1] for s in sockets}) == 1
    finally:
        for s in sockets:
            s.close()


def test_idle_connections_are_closed_after_connections_max_idle_ms(odradek_broker_factory):
    """Kafka's connections.max.idle.ms: a connection that has read and been
    sent nothing for that long is closed; one in use stays, and so does one
    whose long-poll Fetch outlasts the limit."""
    import time

    b = odradek_broker_factory(config={"connections.max.idle.ms": "600"})
    idle, used, polling = RawClient(b.bootstrap), RawClient(b.bootstrap), RawClient(b.bootstrap)
    for c in (idle, used, polling):
        c.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
    topic = RawClient(b.bootstrap)
    topic.request("CreateTopics", 7, {"topics": [{"name": "idle", "num_partitions": 1, "replication_factor": 1,
                                                  "assignments": [], "configs": []}],
                                      "timeout_ms": 10000, "validate_only": False})
    topic.close()
    metadata = used.request("Metadata", 12, {"topics": [{"name": "idle", "topic_id": None}],
                                             "allow_auto_topic_creation": False,
                                             "include_topic_authorized_operations": False})
    topic_id = metadata["topics"][0]["topic_id"]
    import threading

    start = time.monotonic()

    def keep_using():
        while time.monotonic() - start < 1.8:
            used.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
            time.sleep(0.2)

    pinger = threading.Thread(target=keep_using)
    pinger.start()
    polled = polling.request("Fetch", 13, {
        "replica_id": -1, "max_wait_ms": 1500, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
        "session_id": 0, "session_epoch": -1, "rack_id": "",
        "topics": [{"topic_id": topic_id, "partitions": [{
            "partition": 0, "current_leader_epoch": -1, "fetch_offset": 0, "last_fetched_epoch": -1,
            "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}], "forgotten_topics_data": []})
    assert polled["error_code"] == 0 and time.monotonic() - start >= 1.4  # answered after its whole wait
    pinger.join()
    idle.sock.settimeout(5)
    assert idle.sock.recv(1) == b""  # closed by the broker
    used.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
    polling.request("ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"})
    for c in (idle, used, polling):
        c.close()


def test_a_brokers_peer_connection_closed_for_idleness_is_made_again(odradek_broker_factory):
    """Inter-broker requests (odradek.replica.peer.PeerClients) over a
    connection the other broker closed for connections.max.idle.ms: the next
    request connects again rather than failing."""
    import asyncio

    from odradek.replica.peer import PeerClients

    b = odradek_broker_factory(config={"connections.max.idle.ms": "300"})
    core = b.broker.core

    async def twice():
        peers = PeerClients(core, "idle-test")
        try:
            first = await peers.call(core.config.node_id, "ApiVersions", 3,
                                     {"client_software_name": "t", "client_software_version": "1"})
            conn = peers.peers[core.config.node_id]
            await asyncio.sleep(1.0)  # closed by the broker meanwhile
            closed = not conn.connected
            second = await peers.call(core.config.node_id, "ApiVersions", 3,
                                      {"client_software_name": "t", "client_software_version": "1"})
            return first["error_code"], closed, second["error_code"], peers.peers[core.config.node_id] is not conn
        finally:
            peers.close()

    assert b.broker.call(twice) == (0, True, 0, True)
