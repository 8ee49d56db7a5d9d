"""The one registry of served APIs: handler and version range per API key.

ApiVersions answers from this table alone, so what is advertised is exactly
what has a handler. Each handler states the versions it serves
(``@handles("Fetch", 4, 18)``); a range is checked against the pinned spec
(``odradek/protocol/specs``) when the module is imported, so a served version
always has a codec. A handler is ``async def handler(ctx, request: dict) ->
dict | None``; returning None sends no response (Produce with acks=0).

``below_spec`` names the lowest version of the spec's range that the handler
still frames although Kafka dropped the versions under it (Produce v0-2,
advertised for old librdkafka's feature checks and answered with an error,
see apis/produce.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from odradek.protocol.schema import MessageCodec, codec, load_spec, parse_versions


@dataclass
class Api:
    key: int
    name: str
    min_version: int
    max_version: int
    handler: Callable[..., Awaitable[dict | None]]
    flexible_from: int

    def request_codec(self, version: int) -> MessageCodec:
        return codec(self.name + "Request", version)

    def response_codec(self, version: int) -> MessageCodec:
        return codec(self.name + "Response", version)

    def is_flexible(self, version: int) -> bool:
        return version >= self.flexible_from


REGISTRY: dict[int, Api] = {}


def handles(name: str, min_version: int, max_version: int, *, below_spec: bool = False):
    """Register the decorated coroutine as the handler of API ``name`` (e.g.
    'Produce') at versions ``min_version``..``max_version``."""
    spec = load_spec(name + "Request")
    lo, hi = parse_versions(spec["validVersions"])
    if below_spec:
        lo = 0
    if not lo <= min_version <= max_version <= hi:
        raise ValueError(f"{name} v{min_version}-{max_version} is outside the pinned spec's "
                         f"versions {spec['validVersions']}")
    flex_lo, flex_hi = parse_versions(spec.get("flexibleVersions"))
    if flex_lo > hi or flex_lo > flex_hi:  # 'none' parses as an empty range
        flex_lo = 1 << 30

    def register(fn):
        if spec["apiKey"] in REGISTRY:
            raise ValueError(f"{name} has two handlers")
        REGISTRY[spec["apiKey"]] = Api(
            key=spec["apiKey"],
            name=name,
            min_version=min_version,
            max_version=max_version,
            handler=fn,
            flexible_from=flex_lo,
        )
        return fn

    return register


def load_all() -> dict[int, Api]:
    """Import every API module so that each registers its handlers."""
    from odradek import apis  # noqa: F401  (modules register on import)

    return REGISTRY


def markdown_table() -> str:
    """The served APIs as a Markdown table (docs/protocol.md embeds it)."""
    rows = ["| API | key | versions | module |", "|---|---|---|---|"]
    for api in sorted(load_all().values(), key=lambda a: a.key):
        module = api.handler.__module__.replace(".", "/") + ".py"
        rows.append(f"| {api.name} | {api.key} | {api.min_version}-{api.max_version} | `{module}` |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m odradek.server.registry
    from odradek.server import registry  # the module the API modules register in

    print(registry.markdown_table(), end="")
