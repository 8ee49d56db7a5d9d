"""InitProducerId (key 22), versions 0-6, for idempotent producers.

Producer ids come from a counter persisted in blocks (``producer-ids`` in the
store), so an id is never handed out twice, even after a crash. v3+ requests
that name their current id and epoch get the epoch bumped (KIP-360); at the
epoch's limit a new id is issued.

Not served yet: transactional ids (no transaction coordinator). A request
with a transactional id is answered with COORDINATOR_NOT_AVAILABLE.
"""

from __future__ import annotations

import asyncio

from odradek.protocol import errors
from odradek.server.registry import handles

BLOCK = 1000
EPOCH_MAX = 32767


class ProducerIdAllocator:
    """Hands out producer ids; persists the end of the current block before using it."""

    def __init__(self, store):
        self.store = store
        raw = store.read_metadata("producer-ids")
        self.next_id = int(raw.decode()) if raw else 0
        self.block_end = self.next_id
        self.lock = asyncio.Lock()

    async def allocate(self) -> int:
        async with self.lock:
            if self.next_id >= self.block_end:
                end = self.next_id + BLOCK
                await asyncio.get_running_loop().run_in_executor(
                    None, self.store.write_metadata, "producer-ids", str(end).encode())
                self.block_end = end
            pid = self.next_id
            self.next_id += 1
            return pid


def allocator(broker) -> ProducerIdAllocator:
    alloc = getattr(broker, "producer_ids", None)
    if alloc is None:
        alloc = broker.producer_ids = ProducerIdAllocator(broker.store)
    return alloc


@handles("InitProducerId", 0, 6)
async def init_producer_id(ctx, request: dict) -> dict:
    if request["transactional_id"] is not None:
        return {"throttle_time_ms": 0, "error_code": errors.COORDINATOR_NOT_AVAILABLE,
                "producer_id": -1, "producer_epoch": -1}
    pid, epoch = request["producer_id"], request["producer_epoch"]
    if pid >= 0 and 0 <= epoch < EPOCH_MAX - 1:
        return {"throttle_time_ms": 0, "error_code": 0, "producer_id": pid, "producer_epoch": epoch + 1}
    pid = await allocator(ctx.broker).allocate()
    return {"throttle_time_ms": 0, "error_code": 0, "producer_id": pid, "producer_epoch": 0}
