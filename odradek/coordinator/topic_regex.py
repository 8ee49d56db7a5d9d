"""Topic regexes of KIP-848 subscriptions, read as Apache Kafka reads them.

Theory of operation
-------------------
A consumer may subscribe with ``SubscribedTopicRegex``; the coordinator, not
the client, matches it against every topic name in the cluster, internal
topics included (Kafka's ``TopicRegexResolver`` scans all names of its
metadata image; only ACLs can hide a topic, and odradek has none). A regex
matches a topic name as a whole (Java's ``Matcher.matches``).

Kafka compiles these patterns with RE2/J (``com.google.re2j.Pattern.compile``,
no flags), not ``java.util.regex``, so we compile them with RE2 (the
``google-re2`` package). Matching is linear in the topic name: a client
cannot stall the event loop with a pattern such as ``(a+)+$``, which would
backtrack for ever under Python's ``re``. RE2 and RE2/J are one design and
accept the same language; where Python's ``re`` differs, RE2 sides with
Kafka:

- rejected (INVALID_REGULAR_EXPRESSION): backreferences, lookaround, atomic
  groups, possessive quantifiers, conditionals, ``(?#...)`` comments,
  ``\\Z``, counts above 1000;
- accepted: ``\\Q...\\E``, ``\\z``, ``\\pL`` and ``\\p{Greek}``,
  ``[[:alpha:]]``, ``(?<name>...)`` and ``(?P<name>...)``; ``{,3}`` is
  literal text; ``$`` is the end of the text.

Where RE2 and RE2/J differ we follow RE2/J: ``\\C`` (any byte) is rejected,
and error descriptions use RE2/J's words, which Kafka puts in its error
message. Deliberately not matched: RE2 refuses a program larger than its
memory budget (about 8 MiB, a pattern of millions of characters) that RE2/J
would compile, and accepts a capture name used twice, which RE2/J rejects.
Topic names are ASCII (``[a-zA-Z0-9._-]``), so the two libraries' Unicode
tables never decide a match.
"""

from __future__ import annotations

import functools

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # invalid patterns are the client's, not ours to log

# RE2's descriptions of syntax errors, in RE2/J's words.
_RE2J_WORDS = {
    "missing ]": "missing closing ]",
    "missing )": "missing closing )",
    "trailing \\": "trailing backslash at end of expression",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid named capture group": "invalid named capture",
}


class InvalidTopicRegex(ValueError):
    """A pattern RE2/J would not compile; ``description`` is RE2/J's wording."""

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description


def _any_byte_escape(pattern: str) -> bool:
    """Whether ``pattern`` uses ``\\C`` outside ``\\Q...\\E``."""
    i, n = 0, len(pattern)
    while i < n - 1:
        if pattern[i] != "\\":
            i += 1
            continue
        c = pattern[i + 1]
        if c == "C":
            return True
        if c == "Q":
            end = pattern.find("\\E", i + 2)
            if end < 0:
                return False
            i = end + 2
            continue
        i += 2
    return False


@functools.lru_cache(maxsize=128)  # the regexes in use; each at most RE2's 8 MiB budget
def compile_topic_regex(pattern: str):
    """The compiled pattern; raises :class:`InvalidTopicRegex`."""
    if _any_byte_escape(pattern):
        raise InvalidTopicRegex("invalid escape sequence")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        text = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) \
            else str(e)
        description = text.split(": ", 1)[0]
    except (UnicodeError, TypeError, ValueError) as e:
        description = str(e)
    raise InvalidTopicRegex(_RE2J_WORDS.get(description, description))


def matching_topics(pattern: str, names) -> frozenset:
    """The names that ``pattern`` matches as a whole; none if it is invalid."""
    try:
        compiled = compile_topic_regex(pattern)
    except InvalidTopicRegex:
        return frozenset()
    return frozenset(n for n in names if compiled.fullmatch(n) is not None)
