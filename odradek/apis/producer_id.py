"""InitProducerId (key 22), versions 0-6, for idempotent and transactional producers.

Producer ids come from blocks claimed in the metadata store (see
odradek/metadata/producer_ids.py), so an id is never handed out twice, even
after a crash. v3+ requests that name their current id and epoch get the
epoch bumped (KIP-360); at the epoch's limit a new id is issued.

A request with a transactional id goes to the transaction coordinator
(``odradek.apis.transactions.init_transactional``).
"""

from __future__ import annotations

from odradek.protocol import errors
from odradek.server.registry import handles

EPOCH_MAX = 32767


@handles("InitProducerId", 0, 6)
async def init_producer_id(ctx, request: dict) -> dict:
    if request["transactional_id"] is not None:
        from odradek.apis.transactions import init_transactional

        return await init_transactional(ctx, request)
    pid, epoch = request["producer_id"], request["producer_epoch"]
    if pid >= 0 and 0 <= epoch < EPOCH_MAX - 1:
        return {"error_code": 0, "producer_id": pid, "producer_epoch": epoch + 1}
    pid = await ctx.broker.producer_ids.allocate()
    return {"error_code": 0, "producer_id": pid, "producer_epoch": 0}
