"""The ``odradek`` CLI end to end: each command run as ``python -m odradek`` against a real broker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from odradek.cli.main import main
from odradek.embedded import EmbeddedBroker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KCAT = shutil.which("kcat") or shutil.which("kafkacat")
FAST_CONSUMER = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"]


def _env(bootstrap: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODRADEK_")}
    if bootstrap:
        env["ODRADEK_BOOTSTRAP"] = bootstrap
    return env


def cli(bootstrap: str | None, *args, input: bytes | str | None = None, timeout: float = 60,
        expect: int | None = 0) -> subprocess.CompletedProcess:
    """Run ``python -m odradek ARGS`` with ODRADEK_BOOTSTRAP set; check its exit code unless expect is None."""
    if isinstance(input, str):
        input = input.encode()
    proc = subprocess.run([sys.executable, "-m", "odradek", *args], input=input, capture_output=True,
                          env=_env(bootstrap), cwd=ROOT, timeout=timeout)
    proc.out = proc.stdout.decode("utf-8", "replace")
    proc.err = proc.stderr.decode("utf-8", "replace")
    if expect is not None:
        assert proc.returncode == expect, (
            f"odradek {' '.join(args)} exited {proc.returncode}, expected {expect}\n"
            f"stdout:\n{proc.out}\nstderr:\n{proc.err}")
    return proc


def cli_json(bootstrap, *args, **kw):
    return json.loads(cli(bootstrap, *args, **kw).out)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def bs(odradek_broker):
    return odradek_broker.bootstrap


# --------------------------------------------------------------------------- help


def _leaf_paths(cmd, prefix=()):
    import click

    if not isinstance(cmd, click.Group):
        yield prefix
        return
    ctx = click.Context(cmd)
    for name in cmd.list_commands(ctx):  # the public API: subcommands may load lazily
        yield from _leaf_paths(cmd.get_command(ctx, name), prefix + (name,))


def test_help_has_examples_for_every_command():
    runner = CliRunner()
    paths = list(_leaf_paths(main))
    assert {("topic", "create"), ("topic", "list"), ("topic", "describe"), ("topic", "delete"),
            ("topic", "alter-config"), ("topic", "add-partitions"), ("produce",), ("consume",),
            ("group", "list"), ("group", "describe"), ("group", "reset-offsets"), ("group", "delete"),
            ("cluster", "info"), ("cluster", "up"), ("dump-log",), ("serve",)} <= set(paths)
    for path in paths + [("topic",), ("group",), ("cluster",), ()]:
        res = runner.invoke(main, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "Examples:" in res.output, f"no examples in odradek {' '.join(path)} --help"


def test_cli_startup_does_not_import_clients():
    code = ("import sys, odradek.cli.main; "
            "print(sorted(m for m in ('confluent_kafka', 'rich', 'odradek.broker') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- topic


def test_topic_commands(odradek_broker, bs):
    cli(bs, "topic", "create", "cli-topic-a", "-p", "3", "-c", "retention.ms=123456", "-c", "cleanup.policy=delete")
    dup = cli(bs, "topic", "create", "cli-topic-a", expect=1)
    assert "TOPIC_ALREADY_EXISTS" in dup.out

    listed = cli(bs, "topic", "list").out.splitlines()
    assert listed[0].split() == ["NAME", "PARTITIONS", "REPLICAS"]
    assert ["cli-topic-a", "3", "1"] in [line.split() for line in listed]
    assert {"name": "cli-topic-a", "partitions": 3, "replicas": 1, "internal": False} in \
        cli_json(bs, "topic", "list", "cli-topic-*", "--json")
    assert "\x1b[" not in cli(bs, "topic", "list").out  # no colours when stdout is a pipe

    odradek_broker.produce("cli-topic-a", [b"a", b"b", b"c"], partition=1)
    text = cli(bs, "topic", "describe", "cli-topic-a").out
    assert "retention.ms" in text and "123456" in text and "DYNAMIC_TOPIC_CONFIG" in text
    assert "segment.bytes" not in text  # defaults are left out
    rows = [line.split() for line in text.splitlines()]
    header = rows.index(["PARTITION", "LEADER", "REPLICAS", "ISR", "LOW-WATERMARK", "HIGH-WATERMARK"])
    assert rows[header + 1:header + 4] == [["0", "1", "1", "1", "0", "0"], ["1", "1", "1", "1", "0", "3"],
                                           ["2", "1", "1", "1", "0", "0"]]
    [doc] = cli_json(bs, "topic", "describe", "cli-topic-a", "--json")
    assert [p["high_watermark"] for p in doc["partitions"]] == [0, 3, 0]
    assert [p["leader"] for p in doc["partitions"]] == [1, 1, 1]
    assert {c["name"]: c["value"] for c in doc["configs"]}["retention.ms"] == "123456"
    assert any(c["name"] == "segment.bytes" for c in
               cli_json(bs, "topic", "describe", "cli-topic-a", "--json", "--all-configs")[0]["configs"])

    cli(bs, "topic", "alter-config", "cli-topic-a", "--set", "cleanup.policy=compact", "--delete", "retention.ms")
    configs = {c["name"]: c for c in cli_json(bs, "topic", "describe", "cli-topic-a", "--json")[0]["configs"]}
    assert configs["cleanup.policy"]["value"] == "compact"
    assert "retention.ms" not in configs
    bad = cli(bs, "topic", "alter-config", "cli-topic-a", "--set", "no.such.config=1", expect=1)
    assert "no.such.config" in bad.err
    cli(bs, "topic", "alter-config", "cli-topic-a", expect=2)  # nothing to do: usage error

    out = cli(bs, "topic", "add-partitions", "cli-topic-a", "--count", "2").out
    assert out.splitlines()[1].split() == ["cli-topic-a", "3", "5"]
    assert len(cli_json(bs, "topic", "describe", "cli-topic-a", "--json")[0]["partitions"]) == 5

    cli(bs, "topic", "create", "cli-topic-b", "--dry-run")
    assert "cli-topic-b" not in odradek_broker.broker.core.replicas.topics
    cli(bs, "topic", "delete", "cli-topic-a")
    assert "cli-topic-a" not in cli(bs, "topic", "list").out
    gone = cli(bs, "topic", "delete", "cli-topic-a", expect=3)
    assert "UNKNOWN_TOPIC" in gone.out


# --------------------------------------------------------------------------- produce / consume


def test_produce_consume_round_trip_with_keys_and_headers(odradek_broker, bs):
    topic = odradek_broker.create_topic("cli-rt", partitions=3)
    lines = "".join(f"user-{i}\tevent {i}\n" for i in range(30)) + "no-key-line\n"
    res = cli(bs, "produce", topic, "--key-separator", r"\t", "-H", "source=cli", "-H", "n=1", "-z", "gzip",
              input=lines)
    assert "produced 31 records" in res.err and " to cli-rt in " in res.err

    stored = odradek_broker.records(topic)
    assert len(stored) == 31
    by_value = {r.value: r for r in stored}
    assert by_value[b"event 7"].key == b"user-7"
    assert by_value[b"no-key-line"].key is None
    assert by_value[b"event 7"].headers == [("source", b"cli"), ("n", b"1")]
    # Keys are hashed like the Java client: the same key always lands in the same partition.
    assert len({r.partition for r in stored}) > 1

    out = cli(bs, "consume", topic, "--from-beginning", "-e",
              "-f", "{topic} {partition} {offset} {key}={value} [{headers}]").out
    got = out.splitlines()
    assert len(got) == 31
    expect = {f"cli-rt {r.partition} {r.offset} {(r.key or b'').decode()}={r.value.decode()} [source=cli,n=1]"
              for r in stored}
    assert set(got) == expect

    # -n stops early, -p reads one partition, -o -N starts N before the end.
    assert len(cli(bs, "consume", topic, "--from-beginning", "-n", "5").out.splitlines()) == 5
    p = stored[0].partition
    in_p = [r for r in stored if r.partition == p]
    out = cli(bs, "consume", topic, "-p", str(p), "-o", "-2", "-e", "-f", "{offset}").out
    assert out.split() == [str(r.offset) for r in in_p[-2:]]
    out = cli(bs, "consume", topic, "-p", str(p), "-o", "1", "-e", "-f", "{offset}").out
    assert out.split() == [str(r.offset) for r in in_p[1:]]


def test_json_modes(odradek_broker, bs):
    topic = odradek_broker.create_topic("cli-json", partitions=2)
    ts = 1_700_000_000_000 + 123
    lines = [
        {"key": "k1", "value": "plain text", "headers": {"h1": "v1"}, "partition": 1, "timestamp": ts},
        {"key": None, "value": {"nested": [1, 2]}, "partition": 0, "timestamp": "2023-11-14T22:13:20.123Z"},
        {"key": "AP8=", "key_encoding": "base64", "value": "/v8=", "value_encoding": "base64", "partition": 0,
         "headers": [{"key": "bin", "value": "/wE=", "encoding": "base64"}, ["pair", "x"]]},
    ]
    cli(bs, "produce", topic, "--json", input="\n".join(json.dumps(x) for x in lines) + "\n\n")
    stored = {(r.partition, r.offset): r for r in odradek_broker.records(topic)}
    r = stored[(1, 0)]
    assert (r.key, r.value, r.headers, r.timestamp) == (b"k1", b"plain text", [("h1", b"v1")], ts)
    r = stored[(0, 0)]
    assert (r.key, r.value, r.timestamp) == (None, b'{"nested":[1,2]}', ts)
    r = stored[(0, 1)]
    assert (r.key, r.value, r.headers) == (b"\x00\xff", b"\xfe\xff", [("bin", b"\xff\x01"), ("pair", b"x")])

    out = json_lines(cli(bs, "consume", topic, "--from-beginning", "-e", "--json").out)
    by_pos = {(d["partition"], d["offset"]): d for d in out}
    assert by_pos[(1, 0)] == {"topic": topic, "partition": 1, "offset": 0, "timestamp": ts,
                              "timestamp_type": "CreateTime", "key": "k1", "value": "plain text",
                              "headers": [{"key": "h1", "value": "v1"}]}
    assert by_pos[(0, 0)]["key"] is None and by_pos[(0, 0)]["value"] == '{"nested":[1,2]}'
    assert by_pos[(0, 1)]["key"] == "AP8=" and by_pos[(0, 1)]["key_encoding"] == "base64"
    assert by_pos[(0, 1)]["value_encoding"] == "base64"
    assert by_pos[(0, 1)]["headers"][0] == {"key": "bin", "value": "/wE=", "encoding": "base64"}

    # consume --json output is produce --json input: a byte-exact copy.
    copy = odradek_broker.create_topic("cli-json-copy", partitions=2)
    cli(bs, "produce", copy, "--json", input="\n".join(json.dumps(d) for d in out) + "\n")
    assert [(r.partition, r.offset, r.key, r.value, r.headers, r.timestamp) for r in odradek_broker.records(copy)] == \
        [(r.partition, r.offset, r.key, r.value, r.headers, r.timestamp) for r in odradek_broker.records(topic)]

    bad = cli(bs, "produce", topic, "--json", input='{"value": "ok"}\n{"value": \n', expect=1)
    assert "line 2: invalid JSON" in bad.err
    bad = cli(bs, "produce", topic, "--json", input='{"value": "x", "partition": 9}\n', expect=1)
    assert "partition 9 does not exist" in bad.err


def test_consume_from_time(odradek_broker, bs):
    topic = odradek_broker.create_topic("cli-time", partitions=2)
    now = int(time.time() * 1000)
    hour = 3_600_000
    recs = [{"value": f"h{i}", "timestamp": now - (3 - i) * hour, "partition": i % 2} for i in range(3)]
    cli(bs, "produce", topic, "--json", input="".join(json.dumps(r) + "\n" for r in recs))

    def values(*args):
        return sorted(cli(bs, "consume", topic, "-e", *args).out.split())

    cut = now - 2 * hour - 60_000
    iso = datetime.fromtimestamp(cut / 1000, timezone.utc).isoformat()
    assert values("--from-time", iso) == ["h1", "h2"]
    assert values("--from-time", str(cut)) == ["h1", "h2"]
    assert values("--from-time", "-90m") == ["h2"]
    assert values("--from-time", str(now + hour)) == []
    assert values("--from-time", "1970-01-01T00:00:00Z", "-p", "0") == ["h0", "h2"]
    usage = cli(bs, "consume", topic, "--from-time", "yesterday-ish", expect=2)
    assert "ISO 8601" in usage.err
    assert cli(bs, "consume", topic, "--from-time", iso, "--from-beginning", expect=2)


def test_produce_reports_failed_deliveries(odradek_broker, bs):
    topic = odradek_broker.create_topic("cli-small", partitions=1, config={"max.message.bytes": "200"})
    cli(bs, "produce", topic, input="ok\n")
    res = cli(bs, "produce", topic, input="x" * 5000 + "\n", expect=1)
    assert "produced 0 records" in res.err and "1 of 1 failed" in res.err and "TOO_LARGE" in res.err
    assert [r.value for r in odradek_broker.records(topic)] == [b"ok"]


@pytest.mark.skipif(KCAT is None, reason="kcat is not installed")
def test_kcat_interop(odradek_broker, bs):
    topic = odradek_broker.create_topic("cli-kcat", partitions=2)
    # kcat produces, odradek consumes.
    subprocess.run([KCAT, "-P", "-b", bs, "-t", topic, "-K", ":", "-H", "via=kcat", "-X", "partitioner=murmur2_random"],
                   input=b"a:1\nb:2\nc:3\n", check=True, timeout=30)
    out = cli(bs, "consume", topic, "--from-beginning", "-e", "-f", "{key}|{value}|{headers}").out
    assert sorted(out.splitlines()) == ["a|1|via=kcat", "b|2|via=kcat", "c|3|via=kcat"]
    # odradek produces, kcat consumes; keys hash as the Java client's (and kcat's murmur2_random) do.
    cli(bs, "produce", topic, "-k", ":", "-H", "via=odradek", "-z", "lz4", input="a:4\nb:5\n")
    got = subprocess.run([KCAT, "-C", "-b", bs, "-t", topic, "-e", "-q", "-f", "%p|%k|%s|%h\n"],
                         capture_output=True, check=True, timeout=30).stdout.decode().splitlines()
    part = {line.split("|")[2]: line.split("|")[0] for line in got}
    assert sorted(line.split("|", 1)[1] for line in got) == [
        "a|1|via=kcat", "a|4|via=odradek", "b|2|via=kcat", "b|5|via=odradek", "c|3|via=kcat"]
    assert part["1"] == part["4"] and part["2"] == part["5"]


# --------------------------------------------------------------------------- dump-log


def test_dump_log(tmp_path):
    data = tmp_path / "data"
    with EmbeddedBroker(data_dir=str(data), config={"group.initial.rebalance.delay.ms": "0"}) as b:
        cli(b.bootstrap, "topic", "create", "seg", "-p", "1")
        cli(b.bootstrap, "produce", "seg", "-k", ":", "-H", "h=1", input="k1:v1\nk2:v2\n:v3\n")
        cli(b.bootstrap, "produce", "seg", "--json",
            input='{"value": "AP8=", "value_encoding": "base64", "timestamp": 1700000000000}\n')
        cli(b.bootstrap, "produce", "seg", "-z", "gzip", input="".join(f"same text {i}\n" for i in range(200)))
    segdir = data / "seg-0"
    [seg] = sorted(segdir.glob("*.log"))

    text = cli(None, "dump-log", str(seg)).out
    batches = [line for line in text.splitlines() if line.startswith("baseOffset:")]
    assert len(batches) == 3
    assert batches[0].startswith("baseOffset: 0 lastOffset: 2 count: 3 position: 0 ")
    assert "crcValid: true" in batches[0] and "codec: none" in batches[0] and "producerId: -1" in batches[0]
    assert "isTransactional: false isControl: false" in batches[0]
    assert "codec: gzip" in batches[2] and "count: 200" in batches[2]
    assert "3 batches, 204 records" in text and "all valid" in text

    text = cli(None, "dump-log", str(segdir), "--records").out
    assert '| offset: 0 timestamp: ' in text and 'key: "k1" value: "v1" headers: h=1' in text
    assert 'key: "" value: "v3"' in text
    assert "| offset: 3 timestamp: 1700000000000 key: null value: base64:AP8=" in text
    assert 'value: "same text 199"' in text

    docs = json_lines(cli(None, "dump-log", str(seg), "--json", "--records").out)
    assert [(d["base_offset"], d["last_offset"], d["count"], d["crc_valid"], d["codec"]) for d in docs] == \
        [(0, 2, 3, True, "none"), (3, 3, 1, True, "none"), (4, 203, 200, True, "gzip")]
    assert docs[0]["records"][0] == {"offset": 0, "timestamp": docs[0]["base_timestamp"], "key": "k1",
                                     "value": "v1", "headers": [{"key": "h", "value": "1"}]}
    assert docs[1]["records"][0]["value_encoding"] == "base64"
    assert docs[0]["position"] == 0 and docs[1]["position"] == docs[0]["size"]

    # A flipped byte fails the CRC (exit 1); a torn batch at the end is only reported.
    raw = bytearray(seg.read_bytes())
    bad = tmp_path / "bad.log"
    raw[docs[1]["position"] + 40] ^= 0xFF
    bad.write_bytes(bytes(raw) + raw[:30])
    res = cli(None, "dump-log", str(bad), expect=1)
    assert "crcValid: false" in res.out and "1 invalid" in res.out and "30 trailing bytes" in res.out
    torn = tmp_path / "torn.log"
    torn.write_bytes(seg.read_bytes() + seg.read_bytes()[:80])
    res = cli(None, "dump-log", str(torn))
    assert "an incomplete batch" in res.out
    cli(None, "dump-log", str(tmp_path / "missing.log"), expect=2)


# --------------------------------------------------------------------------- groups


def _describe(bs, group):
    [doc] = cli_json(bs, "group", "describe", group, "--json")
    return doc


def test_group_describe_lag_and_reset_offsets(odradek_broker, bs):
    topic = odradek_broker.create_topic("cli-lag", partitions=2)
    odradek_broker.produce(topic, [f"a{i}".encode() for i in range(6)], partition=0)
    odradek_broker.produce(topic, [f"b{i}".encode() for i in range(4)], partition=1)

    cli(bs, "consume", topic, "-g", "cli-lag-g", "--from-beginning", "-n", "7", *FAST_CONSUMER)
    doc = _describe(bs, "cli-lag-g")
    committed = {p["partition"]: p["committed_offset"] for p in doc["partitions"]}
    assert sum(committed.values()) == 7
    assert doc["state"] == "Empty" and doc["members"] == []
    for p in doc["partitions"]:
        assert p["log_end_offset"] == (6 if p["partition"] == 0 else 4)
        assert p["lag"] == p["log_end_offset"] - p["committed_offset"]
    assert doc["total_lag"] == 10 - 7

    text = cli(bs, "group", "describe", "cli-lag-g").out
    assert "TOTAL-LAG    3" in text and "Empty" in text
    assert "cli-lag-g" in cli(bs, "group", "list").out
    assert {"group": "cli-lag-g", "state": "Empty"}.items() <= \
        next(g for g in cli_json(bs, "group", "list", "--json") if g["group"] == "cli-lag-g").items()

    # Another run of the same group continues where it left off.
    rest = cli(bs, "consume", topic, "-g", "cli-lag-g", "-e", *FAST_CONSUMER).out.split()
    assert len(rest) == 3
    assert _describe(bs, "cli-lag-g")["total_lag"] == 0

    # Dry run: a plan, nothing changes.
    plan = cli(bs, "group", "reset-offsets", "cli-lag-g", "--topic", topic, "--to-earliest")
    assert "dry run" in plan.err
    rows = [line.split() for line in plan.out.splitlines()]
    assert rows[0] == ["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]
    assert rows[1:] == [[topic, "0", "6", "0"], [topic, "1", "4", "0"]]
    assert _describe(bs, "cli-lag-g")["total_lag"] == 0

    cli(bs, "group", "reset-offsets", "cli-lag-g", "--topic", topic, "--to-earliest", "--execute")
    assert _describe(bs, "cli-lag-g")["total_lag"] == 10
    cli(bs, "group", "reset-offsets", "cli-lag-g", "-t", f"{topic}:1", "--to-offset", "3", "--execute")
    cli(bs, "group", "reset-offsets", "cli-lag-g", "-t", f"{topic}:0", "--shift-by", "2", "--execute")
    assert {p["partition"]: p["committed_offset"] for p in _describe(bs, "cli-lag-g")["partitions"]} == {0: 2, 1: 3}
    # --to-offset is clamped to the log.
    plan = cli_json(bs, "group", "reset-offsets", "cli-lag-g", "-t", topic, "--to-offset", "99", "--json")
    assert [p["new_offset"] for p in plan["partitions"]] == [6, 4] and plan["executed"] is False
    # --to-datetime in the future: the end of the log.
    cli(bs, "group", "reset-offsets", "cli-lag-g", "-t", topic, "--to-datetime", "2999-01-01T00:00:00Z", "--execute")
    assert _describe(bs, "cli-lag-g")["total_lag"] == 0
    cli(bs, "group", "reset-offsets", "cli-lag-g", "-t", topic, "--to-latest", "--to-earliest", expect=2)
    cli(bs, "group", "reset-offsets", "cli-lag-g", "-t", "cli-no-such-topic", "--to-latest", expect=3)

    cli(bs, "group", "delete", "cli-lag-g")
    cli(bs, "group", "describe", "cli-lag-g", expect=3)
    res = cli(bs, "group", "delete", "cli-lag-g", expect=3)
    assert "GROUP_ID_NOT_FOUND" in res.out


def _start_consumer(bs, topic, group, out_path):
    # --from-beginning: a member that gets a partition with no committed offset starts at 0. With
    # "latest", a member whose offset lookup came after the produce below would skip those records.
    return subprocess.Popen(
        [sys.executable, "-m", "odradek", "consume", topic, "-g", group, "-v", "--from-beginning",
         *FAST_CONSUMER, "-f", "{partition} {offset} {value}"],
        stdout=open(out_path, "wb"), stderr=subprocess.PIPE, env=_env(bs), cwd=ROOT)


def test_two_consumers_in_one_group_split_partitions(odradek_broker, bs, tmp_path):
    """Needs the group coordinator (odradek/coordinator, odradek/apis/groups.py)."""
    topic = odradek_broker.create_topic("cli-split", partitions=4)
    group = "cli-split-g"
    outs = [tmp_path / "c1.out", tmp_path / "c2.out"]
    procs = [_start_consumer(bs, topic, group, p) for p in outs]
    try:
        deadline = time.monotonic() + 40
        while True:
            res = cli(bs, "group", "describe", group, "--json", expect=None)
            doc = json.loads(res.out)[0] if res.returncode == 0 else None
            owned = [len(m["assignment"]) for m in doc["members"]] if doc else []
            if doc and doc["state"] == "Stable" and len(owned) == 2 and sum(owned) == 4 and min(owned) > 0:
                break
            assert time.monotonic() < deadline, f"group never settled: {doc}"
            for p in procs:
                assert p.poll() is None, p.stderr.read().decode()
            time.sleep(0.5)

        # While members are active, offsets cannot be reset.
        busy = cli(bs, "group", "reset-offsets", group, "-t", topic, "--to-earliest", "--execute", expect=1)
        assert "not empty" in busy.err

        recs = [{"value": f"r{i}", "partition": i % 4} for i in range(40)]
        cli(bs, "produce", topic, "--json", input="".join(json.dumps(r) + "\n" for r in recs))
        deadline = time.monotonic() + 30
        while sum(len(p.read_bytes().splitlines()) for p in outs) < 40 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        errs = [p.communicate(timeout=30)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    # The consumers' own reports (assignments, revocations) go with what they printed.
    assert sum(len(p.read_bytes().splitlines()) for p in outs) == 40, ([p.read_bytes() for p in outs], errs)

    seen = [[line.split() for line in p.read_text().splitlines()] for p in outs]
    parts = [{int(r[0]) for r in s} for s in seen]
    assert all(parts) and not parts[0] & parts[1] and parts[0] | parts[1] == {0, 1, 2, 3}, (parts, errs)
    assert sorted(r[2] for s in seen for r in s) == sorted(r["value"] for r in recs)
    assert all("assigned: cli-split[" in e for e in errs)
    # Each consumer committed what it printed on the way out.
    doc = _describe(bs, group)
    assert doc["state"] == "Empty"
    assert {p["partition"]: p["committed_offset"] for p in doc["partitions"]} == {0: 10, 1: 10, 2: 10, 3: 10}
    assert doc["total_lag"] == 0


# --------------------------------------------------------------------------- cluster and errors


def test_cluster_info(odradek_broker, bs):
    text = cli(bs, "cluster", "info").out
    core = odradek_broker.broker.core
    assert "CLUSTER-ID" in text and core.cluster_id in text
    assert f"127.0.0.1  {odradek_broker.broker.port}" in text
    assert "Fetch" in text and "ApiVersions" in text
    # -b before the command works as well as ODRADEK_BOOTSTRAP.
    doc = cli_json(None, "-b", bs, "cluster", "info", "--json")
    assert doc["cluster_id"] == core.cluster_id and doc["controller"] == 1
    assert doc["brokers"] == [{"id": 1, "host": "127.0.0.1", "port": odradek_broker.broker.port, "rack": None}]
    apis = {a["name"]: a for a in doc["api_versions"]}
    assert apis["ApiVersions"]["key"] == 18 and apis["Produce"]["max"] >= 3 and "Metadata" in apis


def test_errors(odradek_broker, bs):
    dead = f"127.0.0.1:{closed_port()}"
    for args in (["topic", "list"], ["consume", "x"], ["produce", "x"], ["group", "list"]):
        t0 = time.monotonic()
        res = cli(dead, *args, "--timeout", "1", input=b"x\n", expect=2)
        assert res.err.strip() == f"Error: cannot reach broker at {dead} (no answer within 1s)", res.err
        assert time.monotonic() - t0 < 10

    for args in (["consume", "cli-missing", "-e"], ["produce", "cli-missing"], ["topic", "describe", "cli-missing"],
                 ["topic", "alter-config", "cli-missing", "--set", "retention.ms=1"],
                 ["topic", "add-partitions", "cli-missing", "-n", "1"]):
        res = cli(bs, *args, input=b"x\n", expect=3)
        assert res.err.strip() == "Error: unknown topic 'cli-missing'", res.err
    assert "cli-missing" not in odradek_broker.broker.core.replicas.topics  # nothing was auto-created

    odradek_broker.create_topic("cli-err", partitions=1)
    assert "does not exist" in cli(bs, "consume", "cli-err", "-p", "3", "-e", expect=3).err
    assert "does not exist" in cli(bs, "produce", "cli-err", "-p", "3", input="x\n", expect=3).err
    # Usage errors are click's exit 2.
    cli(bs, "consume", "cli-err", "--json", "-f", "{value}", expect=2)
    cli(bs, "consume", "cli-err", "-f", "{nope}", expect=2)
    cli(bs, "topic", "create", "x", "-c", "novalue", expect=2)
    cli(bs, "consume", "cli-err", "-o", "sideways", expect=2)


def test_serve_rack_is_the_brokers_rack():
    import subprocess

    from tests.conftest import free_port, wait_port
    from tests.integration.rawclient import RawClient

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "odradek", "serve", "--memory", "--port", str(port),
                             "--rack", "r7"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
        client = RawClient(f"127.0.0.1:{port}")
        md = client.request("Metadata", 12, {"topics": [], "allow_auto_topic_creation": False})
        client.close()
        assert [(b["node_id"], b["rack"]) for b in md["brokers"]] == [(1, "r7")]
    finally:
        proc.terminate()
        proc.wait(30)


def test_serve_keeps_its_logs_in_log_dir_or_log_dirs(tmp_path):
    """Kafka's log.dir (when log.dirs is not given) and log.dirs name where
    the logs are; several log.dirs are refused at start, naming the key."""
    import subprocess

    from tests.conftest import free_port, wait_port

    for props, where in (("log.dir={d}/single\n", "single"), ("log.dir={d}/no\nlog.dirs={d}/wins\n", "wins")):
        config = tmp_path / f"{where}.properties"
        config.write_text(props.format(d=tmp_path))
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "odradek", "serve", "--port", str(port), "--config",
                                 str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
        try:
            wait_port(port, proc=proc)
            assert (tmp_path / where).is_dir() and not (tmp_path / "odradek-data").exists()
        finally:
            proc.terminate()
            proc.wait(30)
    config = tmp_path / "two.properties"
    config.write_text(f"log.dirs={tmp_path}/a,{tmp_path}/b\n")
    refused = cli(None, "serve", "--port", str(free_port()), "--config", str(config), expect=2)
    assert "Several log directories are not served" in refused.err
