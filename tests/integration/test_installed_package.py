"""What a new user runs: the installed ``odradek`` command, from an empty folder.

`.ci/run` runs the whole suite against a wheel installed into a fresh venv
outside the source tree (and sets ODRADEK_EXPECT_INSTALLED=1, which makes the
first test check that it is so). Here ``odradek serve`` starts from an empty
folder with its defaults, and confluent-kafka produces one message and reads it
back in a consumer group.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import odradek
from tests.conftest import free_port, wait_port

pytestmark = pytest.mark.timeout(120)


def odradek_command() -> str:
    """The console script installed beside this interpreter (else on PATH)."""
    found = shutil.which("odradek", path=os.path.dirname(sys.executable)) or shutil.which("odradek")
    if found is None:
        pytest.fail("the odradek command is not installed")
    return found


@pytest.mark.skipif(os.environ.get("ODRADEK_EXPECT_INSTALLED") != "1",
                    reason="only where .ci/run installed the wheel")
def test_suite_runs_against_the_installed_wheel():
    here = os.path.dirname(os.path.abspath(odradek.__file__))
    assert os.sep + "site-packages" + os.sep in here, here
    origin = importlib.metadata.distribution("odradek").read_text("direct_url.json")
    assert not origin or not json.loads(origin).get("dir_info", {}).get("editable"), origin


def test_package_carries_the_files_it_reads():
    specs = importlib.resources.files("odradek.protocol.specs")
    names = [p.name for p in specs.iterdir()]
    assert {"KAFKA_VERSION", "LICENSE", "NOTICE"} <= set(names)
    assert sum(n.endswith(".json") for n in names) >= 240
    assert (specs / "KAFKA_VERSION").read_text().strip() == "4.4.0"


def test_version_from_command_and_module():
    version = importlib.metadata.version("odradek")
    assert version == odradek.__version__
    for argv in ([odradek_command(), "--version"], [sys.executable, "-m", "odradek", "--version"]):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
        assert out.split()[-1] == version, (argv, out)


def test_serve_from_an_empty_folder_then_produce_and_group_consume(tmp_path):
    from confluent_kafka import Consumer, Producer

    folder = tmp_path / "empty"
    folder.mkdir()
    port = free_port()
    proc = subprocess.Popen([odradek_command(), "serve", "--port", str(port)], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port, proc=proc)
        bootstrap = f"127.0.0.1:{port}"
        acked = []
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce("first-topic", b"hello", key=b"k",
                         on_delivery=lambda err, msg: acked.append((err, msg.offset())))
        assert producer.flush(30) == 0
        assert acked == [(None, 0)]

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "first-group",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe(["first-topic"])
        got = None
        deadline = time.monotonic() + 30
        while got is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got = msg
        assert got is not None and (got.key(), got.value(), got.offset()) == (b"k", b"hello", 0)
        consumer.commit(got, asynchronous=False)
        committed = consumer.committed(consumer.assignment(), timeout=10)
        assert [tp.offset for tp in committed] == [1]
        consumer.close()
        assert (folder / "odradek-data").is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "ready on" in out and "Traceback" not in out, out
