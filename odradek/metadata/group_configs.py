"""Group configs (KIP-848 / KIP-932 dynamic group configs): per-group
overrides of broker settings, one ``configs/group/<group id>`` key each in
the metadata store (a JSON object of the overrides), followed by the image.

Served keys, with Kafka's names and what they default to:

- ``share.auto.offset.reset``: where a share group starts reading a
  partition it has never read: ``latest`` (default), ``earliest``, or
  ``by_duration:<ISO-8601 duration>`` (the first record at or after now
  minus the duration).
- ``share.record.lock.duration.ms``: the acquisition lock of the group's
  records; defaults to ``group.share.record.lock.duration.ms``, bounded by
  ``group.share.min.record.lock.duration.ms`` (15000) and
  ``group.share.max.record.lock.duration.ms`` (60000).
- ``share.isolation.level``: ``read_uncommitted`` (default) or
  ``read_committed`` (only committed transactional records are delivered).

Other group configs of Kafka (``consumer.*``, ``streams.*``, the other
``share.*``) are not served: setting them answers INVALID_CONFIG.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

PREFIX = "configs/group/"

AUTO_OFFSET_RESET = "share.auto.offset.reset"
LOCK_DURATION = "share.record.lock.duration.ms"
ISOLATION_LEVEL = "share.isolation.level"

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def key_of(group_id: str) -> str:
    return PREFIX + group_id


class GroupConfigError(ValueError):
    """An invalid group config name or value (INVALID_CONFIG)."""


def parse_duration_ms(text: str) -> int:
    """``PnDTnHnMn.nS`` (the forms Java's ``Duration.parse`` reads, without signs) in ms."""
    m = _DURATION.match(text)
    if m is None or text in ("P", "PT") or text.endswith("T"):
        raise GroupConfigError(f"Invalid duration {text}")
    d, h, mi, s = m.groups()
    total = int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)
    return int(total * 1000)


@dataclass(frozen=True)
class GroupConfigBounds:
    """The broker settings that give group configs their defaults and limits."""

    lock_duration_ms: int = 30000
    min_lock_duration_ms: int = 15000
    max_lock_duration_ms: int = 60000

    @classmethod
    def from_broker(cls, config) -> "GroupConfigBounds":
        d = cls()
        return cls(config.get_int("group.share.record.lock.duration.ms", d.lock_duration_ms),
                   config.get_int("group.share.min.record.lock.duration.ms", d.min_lock_duration_ms),
                   config.get_int("group.share.max.record.lock.duration.ms", d.max_lock_duration_ms))

    def defaults(self) -> dict[str, str]:
        return {AUTO_OFFSET_RESET: "latest", LOCK_DURATION: str(self.lock_duration_ms),
                ISOLATION_LEVEL: "read_uncommitted"}

    def validate(self, name: str, value: str | None) -> str:
        """``value`` for ``name`` as stored; raises GroupConfigError."""
        if name not in (AUTO_OFFSET_RESET, LOCK_DURATION, ISOLATION_LEVEL):
            raise GroupConfigError(f"Unknown group config name: {name}")
        if value is None:
            raise GroupConfigError(f"Invalid value null for configuration {name}")
        if name == AUTO_OFFSET_RESET:
            if value not in ("latest", "earliest"):
                if not value.startswith("by_duration:"):
                    raise GroupConfigError(f"Invalid value {value} for configuration {name}: String must be one "
                                           "of: latest, earliest, by_duration:PnDTnHnMn.nS")
                parse_duration_ms(value[len("by_duration:"):])
        elif name == LOCK_DURATION:
            try:
                ms = int(value)
            except ValueError:
                raise GroupConfigError(f"Invalid value {value} for configuration {name}: Not a number of type INT")
            if not self.min_lock_duration_ms <= ms <= self.max_lock_duration_ms:
                raise GroupConfigError(
                    f"Invalid value {value} for configuration {name}: {name} must be greater than or equal to "
                    f"group.share.min.record.lock.duration.ms ({self.min_lock_duration_ms}) and less than or "
                    f"equal to group.share.max.record.lock.duration.ms ({self.max_lock_duration_ms})")
        elif value not in ("read_uncommitted", "read_committed"):
            raise GroupConfigError(f"Invalid value {value} for configuration {name}: String must be one of: "
                                   "read_committed, read_uncommitted")
        return value


class GroupConfigCache:
    """Every group's overrides, as the store holds them: group id -> {name: value}."""

    def __init__(self):
        self.groups: dict[str, dict[str, str]] = {}

    def put(self, key: str, value: bytes | str) -> None:
        self.groups[key[len(PREFIX):]] = {str(k): str(v) for k, v in json.loads(value).items()}

    def delete(self, key: str) -> None:
        self.groups.pop(key[len(PREFIX):], None)

    def clear(self) -> None:
        self.groups.clear()

    def of(self, group_id: str) -> dict[str, str]:
        return self.groups.get(group_id, {})
