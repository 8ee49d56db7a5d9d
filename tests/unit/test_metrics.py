"""The hand-rolled text format, checked against prometheus-client's parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from odradek.metrics import HANDLER_FAILED, ApiStats, Exposition, Histogram, error_label
from odradek.protocol import errors


def parse(out: Exposition) -> dict:
    return {f.name: f for f in text_string_to_metric_families(out.text().decode())}


def test_histogram_buckets_are_cumulative_and_bounds_inclusive():
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    out = Exposition()
    out.histogram("odradek_x_seconds", "x", [({"api": "Fetch"}, h)])
    fam = parse(out)["odradek_x_seconds"]
    assert fam.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in fam.samples if s.name.endswith("_bucket")}
    assert buckets == {"0.1": 2, "1.0": 4, "+Inf": 5}
    count = [s.value for s in fam.samples if s.name.endswith("_count")]
    total = [s.value for s in fam.samples if s.name.endswith("_sum")]
    assert count == [5] and abs(total[0] - 8.65) < 1e-9


def test_api_stats_record_as_observe():
    s = ApiStats("Produce")
    s.record(0.0002, 0)
    s.record(0.3, errors.NOT_LEADER_OR_FOLLOWER)
    s.record(0.1, HANDLER_FAILED)
    s.record(0.1, errors.NOT_LEADER_OR_FOLLOWER)
    assert (s.requests, s.errors) == (4, 3)
    assert {error_label(c): n for c, n in s.codes.items()} == {"NOT_LEADER_OR_FOLLOWER": 2, "handler_failed": 1}
    s = ApiStats("Produce")
    s.record(0.0002, 0)
    s.record(0.3, 1)
    h = Histogram(s.latency.bounds)
    h.observe(0.0002)
    h.observe(0.3)
    assert h.counts == s.latency.counts


def test_label_values_are_escaped():
    odd = 'a "quoted"\\ group\nwith a newline'
    out = Exposition()
    out.family("odradek_consumer_group_members", "gauge", "Members.", [({"group": odd}, 3)])
    out.family("odradek_requests_total", "counter", "Requests.", [({"api": "Fetch"}, 7)])
    fams = parse(out)
    (sample,) = fams["odradek_consumer_group_members"].samples
    assert sample.labels == {"group": odd} and sample.value == 3
    (sample,) = fams["odradek_requests"].samples  # the parser names a counter's family without _total
    assert sample.name == "odradek_requests_total" and sample.value == 7
