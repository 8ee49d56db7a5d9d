"""The JAAS configuration lines that Kafka reads from ``sasl.jaas.config``.

    org.apache.kafka.common.security.plain.PlainLoginModule required
        username="admin" password="admin-secret" user_alice="alice-secret";

One or more entries, each: a login module class, a control flag (required,
requisite, sufficient, optional), options ``key=value`` (the value a bare word
or a double-quoted string), and a ';'. Comments (``//`` and ``/* */``) are
skipped, as Java's tokenizer does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FLAGS = ("required", "requisite", "sufficient", "optional")

_TOKEN = re.compile(r"""
    \s+ | //[^\n]* | /\*.*?\*/          # whitespace and comments
  | (?P<str>"(?:[^"\\]|\\.)*")          # a quoted string
  | (?P<punct>[=;])
  | (?P<word>[^\s=;"]+)
""", re.X | re.S)


class JaasError(ValueError):
    pass


@dataclass
class LoginModule:
    name: str
    flag: str
    options: dict[str, str] = field(default_factory=dict)


def _tokens(text: str):
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise JaasError(f"Invalid JAAS configuration near {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            raw = m.group("str")[1:-1]
            yield "str", re.sub(r"\\(.)", r"\1", raw)
        elif m.group("punct") is not None:
            yield m.group("punct"), m.group("punct")
        elif m.group("word") is not None:
            yield "word", m.group("word")


def parse_jaas(text: str) -> list[LoginModule]:
    """Parse ``text``; raises JaasError saying what is wrong (never echoing values)."""
    toks = list(_tokens(text))
    out: list[LoginModule] = []
    i = 0
    while i < len(toks):
        if toks[i][0] != "word":
            raise JaasError("Invalid JAAS configuration: expected a login module class name")
        module = toks[i][1]
        if i + 1 >= len(toks) or toks[i + 1][1].lower() not in FLAGS:
            raise JaasError(f"Invalid JAAS configuration: {module} needs a control flag "
                            f"({', '.join(FLAGS)})")
        entry = LoginModule(module, toks[i + 1][1].lower())
        i += 2
        while True:
            if i >= len(toks):
                raise JaasError(f"Invalid JAAS configuration: the entry for {module} does not end with ';'")
            if toks[i][0] == ";":
                i += 1
                break
            if toks[i][0] != "word" or i + 2 >= len(toks) or toks[i + 1][0] != "=" \
                    or toks[i + 2][0] not in ("word", "str"):
                raise JaasError(f"Invalid JAAS configuration: expected key=value in the options of {module}")
            entry.options[toks[i][1]] = toks[i + 2][1]
            i += 3
        out.append(entry)
    if not out:
        raise JaasError("Empty JAAS configuration")
    return out
