"""Kafka principals: ``User:alice``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KafkaPrincipal:
    type: str
    name: str

    def __str__(self) -> str:
        return f"{self.type}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> "KafkaPrincipal":
        """``User:alice`` (the name may contain ':', as in ``User:CN=a,O=b``)."""
        kind, sep, name = text.strip().partition(":")
        if not sep or not kind or not name:
            raise ValueError(f"Invalid principal {text!r}: expected TYPE:NAME, e.g. User:alice")
        return cls(kind, name)


USER = "User"
ANONYMOUS = KafkaPrincipal(USER, "ANONYMOUS")
