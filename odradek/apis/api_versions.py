"""ApiVersions (key 18), versions 0-4.

Answers from the handler registry, so it advertises exactly what is served.
A request at a version we do not serve is answered by the connection with
error 35 and a v0 body (KIP-511). No feature flags are advertised: in
particular not `transaction.version` 2 (KIP-890 part 2, transactions v2),
which makes the Java client and franz-go leave AddPartitionsToTxn out and send
EndTxn v5; until that protocol is served they must use the original one, as
tests/integration/test_transactions_protocol.py checks side by side with
Apache Kafka.
"""

from odradek.server.registry import REGISTRY, handles


def api_version_list() -> list[dict]:
    return [
        {"api_key": api.key, "min_version": api.min_version, "max_version": api.max_version}
        for api in sorted(REGISTRY.values(), key=lambda a: a.key)
    ]


@handles("ApiVersions", 0, 4)
async def api_versions(ctx, request: dict) -> dict:
    return {"error_code": 0, "api_keys": api_version_list()}
