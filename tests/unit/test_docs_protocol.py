"""docs/protocol.md lists exactly the APIs and versions ApiVersions advertises."""

import os
import re

from odradek.server.registry import markdown_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_protocol_doc_table_matches_registry():
    text = open(os.path.join(ROOT, "docs", "protocol.md")).read()
    table = re.search(r"<!-- api-table:start -->\n(.*?)<!-- api-table:end -->", text, re.S).group(1)
    assert table == markdown_table(), "regenerate with: python -m odradek.server.registry"
