"""The broker's metrics, kept by hand and rendered in Prometheus's text format.

Theory of operation: the hot paths only add to plain Python numbers (one
``ApiStats`` per API key, counted once in the connection's dispatch; three
counters on each hosted ``Topic``, counted where a partition appends and where
Fetch sends; connections opened and closed; ISR changes written). Everything
else (partitions, log sizes, groups and their lag, fetch sessions,
connections, the controller, the process) is read from the broker's own state
when ``/metrics`` is scraped, on the event loop, so there is nothing to keep
in step. ``render(broker)`` returns the whole exposition as bytes.

With ``http.metrics.compat=kafka-exporter`` the scrape also carries the
series kafka-exporter (danielqsj/kafka_exporter) serves, under its names and
labels, for the partitions this broker leads and the groups it coordinates:
dashboards built on it work unchanged (one target per broker).

Names: an ``odradek_`` prefix, base units (seconds, bytes), counters ending
in ``_total``, as Prometheus's conventions ask. Counters start at zero when
the broker starts (and a topic's when this broker starts hosting it).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import time

from odradek.storage.base import OffsetOutOfRange

log = logging.getLogger(__name__)

# Request latency buckets, in seconds: from 100 us to 30 s (long polls and joins wait).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Event-loop lag buckets, in seconds.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LOOP_BLOCKED_WARNING = 1.0  # seconds of event-loop lag worth a log line
LAG_PROBE_INTERVAL = 0.25  # seconds between two event-loop lag samples
HANDLER_FAILED = -(1 << 20)  # an ApiStats code: the handler raised (no Kafka error code is this)
# The APIs whose handlers wait (RequestContext.wait), with a wait histogram.
WAITING_APIS = frozenset({"Fetch", "Produce", "JoinGroup", "SyncGroup"})


class Histogram:
    """Counts per bucket (not cumulative until rendered), their sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class ApiStats:
    """One API's requests, errors and latency, as the dispatch counts them."""

    __slots__ = ("name", "requests", "errors", "codes", "latency", "versions", "waits")

    def __init__(self, name: str):
        self.name = name
        self.requests = 0
        self.errors = 0
        self.latency = Histogram(LATENCY_BUCKETS)
        self.waits = Histogram(LATENCY_BUCKETS)  # of the requests that waited: for how long
        self.versions: dict[int, int] = {}  # request version -> requests (Kafka's RequestsPerSec by version)
        self.codes: dict[int, int] = {}  # top-level error code (HANDLER_FAILED: the handler raised) -> requests

    def record(self, seconds: float, code: int, version: int | None = None) -> None:
        """One request served in ``seconds``, answered with top-level error ``code``
        (0: none; ``HANDLER_FAILED``: its handler raised and the connection closes)."""
        self.requests += 1
        if version is not None:
            self.versions[version] = self.versions.get(version, 0) + 1
        if code:
            self.errors += 1
            self.codes[code] = self.codes.get(code, 0) + 1
        lat = self.latency
        lat.counts[bisect.bisect_left(lat.bounds, seconds)] += 1
        lat.sum += seconds


class BrokerMetrics:
    """The counters that are not read from the broker's state: per API and of the event loop."""

    def __init__(self):
        self.apis: dict[int, ApiStats] = {}  # api key -> its stats, from its first request
        self.loop_lag = Histogram(LAG_BUCKETS)
        self.accepted: dict[str, int] = {}  # listener -> connections opened
        self.closed: dict[str, int] = {}  # listener -> connections closed
        self.refused: dict[tuple[str, str], int] = {}  # (listener, limit) -> connections closed for it
        self.blocked: dict[str, float] = {}  # listener -> seconds it accepted nothing, at a connection limit

    def connection_opened(self, listener: str) -> None:
        self.accepted[listener] = self.accepted.get(listener, 0) + 1

    def connection_closed(self, listener: str) -> None:
        self.closed[listener] = self.closed.get(listener, 0) + 1

    def connection_refused(self, listener: str, reason: str) -> None:
        """A connection closed for a connection limit (odradek.server.listeners)."""
        key = (listener, reason)
        self.refused[key] = self.refused.get(key, 0) + 1

    def acceptor_blocked(self, listener: str, seconds: float) -> None:
        self.blocked[listener] = self.blocked.get(listener, 0.0) + seconds

    def api(self, key: int, name: str) -> ApiStats:
        stats = self.apis.get(key)
        if stats is None:
            stats = self.apis[key] = ApiStats(name)
        return stats

    async def probe_loop_lag(self, interval: float = LAG_PROBE_INTERVAL) -> None:
        """Sample how late the event loop wakes a sleeper: its lag, as a histogram."""
        clock = time.monotonic
        while True:
            t0 = clock()
            await asyncio.sleep(interval)
            lag = max(clock() - t0 - interval, 0.0)
            self.loop_lag.observe(lag)
            if lag >= LOOP_BLOCKED_WARNING:
                log.warning("the event loop was blocked for %.1f s", lag)


# -- rendering -----------------------------------------------------------------------

_ERROR_NAMES: dict[int, str] = {}


def error_label(code: int) -> str:
    """Kafka's name of an error code (``NOT_COORDINATOR``), as a label value."""
    if not _ERROR_NAMES:
        from odradek.protocol import errors

        _ERROR_NAMES.update({v: k for k, v in vars(errors).items() if k.isupper() and isinstance(v, int)})
        _ERROR_NAMES[HANDLER_FAILED] = "handler_failed"
    return _ERROR_NAMES.get(code, str(code))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _num(v) -> str:
    if isinstance(v, float):
        if v == float("inf"):
            return "+Inf"
        return repr(v)
    return str(v)


class Exposition:
    """Lines of the text format, each family headed by its HELP and TYPE once."""

    def __init__(self):
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str, samples) -> None:
        """``samples``: iterable of (labels dict, value)."""
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")
        sample_name = name + "_total" if kind == "counter" and not name.endswith("_total") else name
        for labels, value in samples:
            self.lines.append(f"{sample_name}{_labels(labels)} {_num(value)}")

    def histogram(self, name: str, help_: str, series) -> None:
        """``series``: iterable of (labels dict, Histogram)."""
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} histogram")
        for labels, h in series:
            running = 0
            for bound, n in zip(h.bounds + (float("inf"),), h.counts):
                running += n
                self.lines.append(f"{name}_bucket{_labels({**labels, 'le': _num(float(bound))})} {running}")
            self.lines.append(f"{name}_sum{_labels(labels)} {_num(float(h.sum))}")
            self.lines.append(f"{name}_count{_labels(labels)} {running}")

    def text(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


def render(broker) -> bytes:
    """The broker's metrics now, in Prometheus's text format (version 0.0.4)."""
    out = Exposition()
    m = broker.metrics
    apis = [s for s in m.apis.values() if s.requests]
    out.family("odradek_requests_total", "counter", "Requests served, per API.",
               (({"api": s.name}, s.requests) for s in apis))
    out.family("odradek_requests_by_version_total", "counter",
               "Requests served, per API and request version (which protocol each client chose).",
               (({"api": s.name, "version": str(v)}, n) for s in apis for v, n in sorted(s.versions.items())))
    out.family("odradek_request_errors_total", "counter",
               "Requests answered with a top-level error code, or that closed the connection, per API.",
               (({"api": s.name}, s.errors) for s in apis))
    out.family("odradek_request_errors_by_code_total", "counter",
               "Requests answered with a top-level error code, per API and error (Kafka's name; "
               "handler_failed: the connection closed).",
               (({"api": s.name, "error": error_label(code)}, n) for s in apis for code, n in sorted(s.codes.items())))
    out.histogram("odradek_request_duration_seconds",
                  "Time from a request's decoding to its response, waits included (long polls, "
                  "joins), per API.", (({"api": s.name}, s.latency) for s in apis))
    out.histogram("odradek_request_wait_seconds",
                  "Of the requests that waited (a Fetch's long poll, acks=all, a JoinGroup's or "
                  "SyncGroup's rebalance), the time waiting, per API; part of the duration above.",
                  (({"api": s.name}, s.waits) for s in apis if s.name in WAITING_APIS))

    conns: dict[str, int] = {name: 0 for name in broker.endpoints}
    for c in list(broker.connections):
        conns[c.listener] = conns.get(c.listener, 0) + 1
    out.family("odradek_connections", "gauge", "Open client connections, per listener.",
               (({"listener": k}, v) for k, v in conns.items()))
    out.family("odradek_connections_accepted_total", "counter", "Connections accepted, per listener.",
               (({"listener": k}, m.accepted.get(k, 0)) for k in conns))
    out.family("odradek_connections_closed_total", "counter",
               "Connections closed (by either side), per listener.",
               (({"listener": k}, m.closed.get(k, 0)) for k in conns))
    out.family("odradek_connections_refused_total", "counter",
               "Connections closed for a connection limit, per listener and limit: max_connections_per_ip "
               "(closed at accept), max_connections (closed for an inter-broker connection).",
               (({"listener": k, "limit": r}, v) for (k, r), v in sorted(m.refused.items())))
    out.family("odradek_acceptor_blocked_seconds_total", "counter",
               "Time a listener accepted nothing because max.connections (broker-wide or its own) was "
               "reached (Kafka's AcceptorBlockedPercent), per listener.",
               (({"listener": k}, m.blocked.get(k, 0.0)) for k in conns))
    out.family("odradek_event_loop_cpu_seconds_total", "counter",
               "CPU time of the thread running the broker's event loop (its busy time, "
               "blocking reads aside).", [({}, time.thread_time())])
    out.family("odradek_controller_active", "gauge",
               "1 on the broker that is the cluster's active controller (Kafka's ActiveControllerCount).",
               [({}, int(broker.image.controller_id == broker.config.node_id))])
    out.family("odradek_isr_shrinks_total", "counter",
               "ISR changes written by this broker as leader that took replicas out (IsrShrinksPerSec).",
               [({}, broker.replicas.isr_shrinks)])
    out.family("odradek_isr_expands_total", "counter",
               "ISR changes written by this broker as leader that added replicas (IsrExpandsPerSec).",
               [({}, broker.replicas.isr_expands)])
    _render_process(out)
    out.histogram("odradek_event_loop_lag_seconds",
                  f"How late the event loop woke a {LAG_PROBE_INTERVAL} s sleep.", [({}, m.loop_lag)])

    throttles = sorted(broker.quotas.throttles.items())
    out.family("odradek_quota_throttles_total", "counter",
               "Responses throttled by a client quota (and the connection muted), per quota key.",
               (({"quota": k}, n) for k, (n, _) in throttles))
    out.family("odradek_quota_throttle_seconds_total", "counter",
               "Throttle time answered (and muted) for client quotas, per quota key.",
               (({"quota": k}, ms / 1000) for k, (_, ms) in throttles))

    _render_topics(out, broker)
    _render_groups(out, broker)
    history = getattr(broker, "lag_history", None)
    if history is not None:
        out.family("odradek_consumer_group_lag_history_groups", "gauge",
                   "Groups whose lag history this broker keeps (for the console).", [({}, len(history.rings))])
        out.family("odradek_consumer_group_lag_sampling_seconds_total", "counter",
                   "Event-loop CPU time spent sampling the groups' lag history.", [({}, history.cpu_seconds)])
    if broker.config.get("http.metrics.compat") == "kafka-exporter":
        _render_kafka_exporter(out, broker)

    fs = broker.fetch_sessions.metrics()
    out.family("odradek_fetch_sessions", "gauge", "Incremental fetch sessions cached (KIP-227).",
               [({}, fs.pop("NumIncrementalFetchSessions"))])
    out.family("odradek_fetch_session_partitions", "gauge", "Partitions cached in fetch sessions.",
               [({}, fs.pop("NumIncrementalFetchPartitionsCached"))])
    out.family("odradek_fetch_session_events_total", "counter",
               "Fetch contexts made, by kind (full, incremental, sessionless, errors), and "
               "sessions created and evicted.", (({"event": k}, v) for k, v in sorted(fs.items())))
    return out.text()


def _render_topics(out: Exposition, broker) -> None:
    replicas = broker.replicas
    topics = sorted(replicas.topics.values(), key=lambda t: t.name)
    out.family("odradek_topic_bytes_in_total", "counter",
               "Bytes appended to a topic's partitions led here (Kafka's BytesInPerSec).",
               (({"topic": t.name}, t.bytes_in) for t in topics))
    out.family("odradek_topic_messages_in_total", "counter",
               "Records appended to a topic's partitions led here (Kafka's MessagesInPerSec).",
               (({"topic": t.name}, t.messages_in) for t in topics))
    out.family("odradek_topic_bytes_out_total", "counter",
               "Record bytes sent to consumers by Fetch (Kafka's BytesOutPerSec).",
               (({"topic": t.name}, t.bytes_out) for t in topics))
    parts = [p for t in topics for p in t.partitions]
    out.histogram("odradek_log_flush_seconds",
                  "Time to flush (fsync) a partition's log, as its flush policy asks (Kafka's "
                  "LogFlushRateAndTimeMs).", [({}, replicas.flush_time)])
    out.family("odradek_log_size_bytes", "gauge", "Bytes of a partition's log on this broker.",
               (({"topic": p.topic.name, "partition": p.index}, p.log.size_in_bytes()) for p in parts))
    out.family("odradek_log_start_offset", "gauge", "A partition's log start offset.",
               (({"topic": p.topic.name, "partition": p.index}, p.log_start_offset) for p in parts))
    out.family("odradek_log_end_offset", "gauge", "A partition's log end offset.",
               (({"topic": p.topic.name, "partition": p.index}, p.log_end_offset) for p in parts))
    online = offline = under_replicated = under_min_isr = 0
    node = replicas.node_id
    for t in topics:
        state = broker.image.get(t.name)
        for p in t.partitions:
            if p.leader != node:
                continue
            online += 1
            if state is not None and p.index < len(state.partitions):
                s = state.partitions[p.index]
                isr = s.isr or [node]  # no ISR kept yet: the leader alone
                if len(isr) < len(s.replicas):
                    under_replicated += 1
                if len(isr) < t.config.get_int("min.insync.replicas"):
                    under_min_isr += 1
    offline = len(replicas.failed)
    out.family("odradek_partitions", "gauge",
               "Partitions led by this broker (online), and those it cannot open (offline).",
               [({"state": "online"}, online), ({"state": "offline"}, offline)])
    out.family("odradek_partitions_under_replicated", "gauge",
               "Partitions led here whose ISR is smaller than their replicas.", [({}, under_replicated)])
    out.family("odradek_partitions_under_min_isr", "gauge",
               "Partitions led here whose ISR is smaller than min.insync.replicas.", [({}, under_min_isr)])


def loaded_shards(broker) -> list:
    """The group coordinator shards this broker hosts and has loaded."""
    groups = broker.groups
    return [h.shard for h in (list(groups.hosted.values()) if groups is not None else []) if not h.loading]


def group_lags(broker):
    """The one walk over committed offsets that every lag figure comes from
    (``/metrics``, the kafka-exporter series, the lag history): for each
    group this broker coordinates and each partition it has an offset for,
    ``(group, topic, partition, Partition or None, committed offset, lag in
    records)``, groups and partitions in order. The high watermark is this
    broker's replica's (leader or follower), else the one its leader last
    answered (``odradek.remote_offsets``; the Partition is then None, and a
    partition whose leader has not answered lately is left out). Each
    group's offsets are copied before they are walked, so a caller may pause
    between items (a commit meanwhile is seen by the next walk)."""
    lookup = broker.replicas.partition_or_error
    remote = getattr(broker, "remote_high_watermarks", None)
    for shard in loaded_shards(broker):
        for gid, offsets in sorted(shard.offsets.offsets.items()):
            for (topic, index), value in sorted(offsets.items()):
                p, _ = lookup(topic, index, leader_required=False)
                if p is not None:
                    yield gid, topic, index, p, value.offset, max(p.high_watermark - value.offset, 0)
                    continue
                hw = remote.get(topic, index) if remote is not None else None
                if hw is not None:
                    yield gid, topic, index, None, value.offset, max(hw - value.offset, 0)


def _render_groups(out: Exposition, broker) -> None:
    members, states, lags, time_lags = [], [], [], []
    now_ms = time.time() * 1000
    for shard in loaded_shards(broker):
        for gid, g in sorted(shard.groups.items()):
            members.append(({"group": gid}, len(g.members)))
            states.append(({"group": gid, "state": g.state}, 1))
    for gid, topic, index, p, committed, lag in group_lags(broker):
        labels = {"group": gid, "topic": topic, "partition": index}
        lags.append((labels, lag))
        seconds = time_lag(p, committed, now_ms) if p is not None else None
        if seconds is not None:
            time_lags.append((labels, seconds))
    out.family("odradek_consumer_group_members", "gauge", "Members of a group.", members)
    out.family("odradek_consumer_group_state", "gauge", "A group's state (the series with value 1).",
               states)
    out.family("odradek_consumer_group_lag", "gauge",
               "Records between a group's committed offset and the high watermark, per partition, "
               "for the groups this broker coordinates.", lags)
    out.family("odradek_consumer_group_lag_seconds", "gauge",
               "How old the group's next record is (now minus the timestamp of the batch holding its "
               "committed offset); 0 when caught up, per partition with a replica on this broker, for "
               "the groups it coordinates.", time_lags)


def time_lag(p, committed: int, now_ms: float, stamp=None) -> float | None:
    """Seconds since the batch holding ``committed`` was stamped (its first
    timestamp; the append time under LogAppendTime); 0 at or past the high
    watermark; None when the log no longer holds that offset. ``stamp``:
    ``batch_stamp`` or a cache in front of it."""
    if committed >= p.high_watermark:
        return 0.0
    stamped = (stamp or batch_stamp)(p, committed)
    return None if stamped is None else max(now_ms - stamped, 0.0) / 1000


def batch_stamp(p, offset: int) -> int | None:
    """The timestamp (ms) of the batch holding ``offset`` (one batch-header
    read), None when the log no longer holds it."""
    try:
        for h in p.log.iter_headers(max(offset, p.log_start_offset), 64 * 1024):
            return h.max_timestamp if h.log_append_time else h.base_timestamp
    except OffsetOutOfRange:
        return None
    return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _render_process(out: Exposition) -> None:
    """The process series every Prometheus client library serves, same names (Linux /proc)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
        fds = len(os.listdir("/proc/self/fd"))
    except (OSError, StopIteration, IndexError, ValueError):
        return  # not Linux: left out
    import resource
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime
    out.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
               [({}, cpu)])
    out.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
               [({}, int(fields[21]) * _PAGE_SIZE)])
    out.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
               [({}, int(fields[20]))])
    out.family("process_start_time_seconds", "gauge",
               "Start time of the process since unix epoch in seconds.",
               [({}, boot + int(fields[19]) / _CLOCK_TICKS)])
    out.family("process_open_fds", "gauge", "Number of open file descriptors.", [({}, fds)])
    out.family("process_max_fds", "gauge", "Maximum number of open file descriptors.",
               [({}, resource.getrlimit(resource.RLIMIT_NOFILE)[0])])


def _render_kafka_exporter(out: Exposition, broker) -> None:
    """kafka-exporter's series: brokers, topics' partitions, consumer groups."""
    out.family("kafka_brokers", "gauge", "Number of Brokers in the Kafka Cluster.",
               [({}, len(broker.image.live_brokers()))])
    node = broker.replicas.node_id
    topics = sorted(broker.replicas.topics.values(), key=lambda t: t.name)
    counts, current, oldest, isr, leader, preferred, replicas, under = [], [], [], [], [], [], [], []
    for t in topics:
        state = broker.image.get(t.name)
        if state is None:
            continue
        counts.append(({"topic": t.name}, len(state.partitions)))
        for p in t.partitions:
            if p.leader != node or p.index >= len(state.partitions):
                continue
            s = state.partitions[p.index]
            labels = {"partition": p.index, "topic": t.name}
            in_sync = len(s.isr or [node])
            current.append((labels, p.high_watermark))
            oldest.append((labels, p.log_start_offset))
            isr.append((labels, in_sync))
            leader.append((labels, p.leader))
            preferred.append((labels, int(bool(s.replicas) and s.replicas[0] == p.leader)))
            replicas.append((labels, len(s.replicas)))
            under.append((labels, int(in_sync < len(s.replicas))))
    out.family("kafka_topic_partitions", "gauge", "Number of partitions for this Topic", counts)
    out.family("kafka_topic_partition_current_offset", "gauge",
               "Current Offset of a Broker at Topic/Partition", current)
    out.family("kafka_topic_partition_oldest_offset", "gauge",
               "Oldest Offset of a Broker at Topic/Partition", oldest)
    out.family("kafka_topic_partition_in_sync_replica", "gauge",
               "Number of In-Sync Replicas for this Topic/Partition", isr)
    out.family("kafka_topic_partition_leader", "gauge", "Leader Broker ID of this Topic/Partition", leader)
    out.family("kafka_topic_partition_leader_is_preferred", "gauge",
               "1 if Topic/Partition is using the Preferred Broker", preferred)
    out.family("kafka_topic_partition_replicas", "gauge", "Number of Replicas for this Topic/Partition",
               replicas)
    out.family("kafka_topic_partition_under_replicated_partition", "gauge",
               "1 if Topic/Partition is under Replicated", under)

    offsets, offset_sums, lags, lag_sums, members = [], {}, [], {}, []
    for shard in loaded_shards(broker):
        for gid, g in sorted(shard.groups.items()):
            members.append(({"consumergroup": gid}, len(g.members)))
    for gid, topic, index, p, committed, lag in group_lags(broker):
        labels = {"consumergroup": gid, "partition": index, "topic": topic}
        offsets.append((labels, committed))
        lags.append((labels, lag))
        key = (gid, topic)
        offset_sums[key] = offset_sums.get(key, 0) + committed
        lag_sums[key] = lag_sums.get(key, 0) + lag
    out.family("kafka_consumergroup_current_offset", "gauge",
               "Current Offset of a ConsumerGroup at Topic/Partition", offsets)
    out.family("kafka_consumergroup_current_offset_sum", "gauge",
               "Current Offset of a ConsumerGroup at Topic for all partitions",
               (({"consumergroup": g, "topic": t}, v) for (g, t), v in offset_sums.items()))
    out.family("kafka_consumergroup_lag", "gauge",
               "Current Approximate Lag of a ConsumerGroup at Topic/Partition", lags)
    out.family("kafka_consumergroup_lag_sum", "gauge",
               "Current Approximate Lag of a ConsumerGroup at Topic for all partitions",
               (({"consumergroup": g, "topic": t}, v) for (g, t), v in lag_sums.items()))
    out.family("kafka_consumergroup_members", "gauge", "Amount of members in a consumer group", members)
