"""Run small Java programs against a broker with Apache Kafka's own client.

The client jars come from Maven Central through bench/kafka_runtime.py (cached
under ~/.cache/odradek-bench). Tests skip, saying why, where Java, Maven or the
jars cannot be had.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from functools import lru_cache

import pytest

from tests.conftest import ROOT


# Kafka's own reading of __consumer_offsets, compiled with the programs that check it.
OFFSETS_TOPIC_JAVA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "OffsetsTopic.java")


@lru_cache(maxsize=1)
def classpath() -> str | None:
    if not (shutil.which("java") and shutil.which("javac") and shutil.which("mvn")):
        return None
    spec = importlib.util.spec_from_file_location("kafka_runtime", os.path.join(ROOT, "bench", "kafka_runtime.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["kafka_runtime"] = mod  # its dataclasses look themselves up there
    spec.loader.exec_module(mod)
    try:
        return mod.fetch(quiet=True).classpath
    except Exception:  # no Maven Central, or no 4.x release resolvable
        return None


def require_java() -> str:
    cp = classpath()
    if cp is None:
        pytest.skip("Java client tests need java, javac, mvn and Maven Central (kafka-clients 4.x)")
    return cp


def run_java(tmp_path, class_name: str, source: str, args: list[str], timeout: float = 120,
             jvm_opts: list[str] = ()) -> str:
    cp = require_java()
    src = tmp_path / f"{class_name}.java"
    src.write_text(source)
    subprocess.run(["javac", "-cp", cp, "-d", str(tmp_path), str(src)], check=True,
                   capture_output=True, timeout=120)
    proc = subprocess.run(["java", *jvm_opts, "-cp", f"{tmp_path}{os.pathsep}{cp}", class_name, *args],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"java {class_name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout
