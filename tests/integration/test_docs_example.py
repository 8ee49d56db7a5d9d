"""The example in docs/testing.md runs as written, through the installed plugin."""

import os
import re
import subprocess
import sys

from tests.conftest import ROOT


def test_docs_testing_example_runs(tmp_path):
    text = open(os.path.join(ROOT, "docs", "testing.md")).read()
    blocks = re.findall(r"```python\n(# test_orders.py\n.*?)```", text, re.S)
    assert len(blocks) == 1
    (tmp_path / "test_orders.py").write_text(blocks[0])
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path / "test_orders.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
