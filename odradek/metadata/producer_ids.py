"""Producer ids, handed out in blocks claimed from the metadata store.

The key ``producer-ids/block-end`` holds the end of the last block claimed
by any broker. A broker claims the next block with a compare-and-set on that
key's version before handing out any id of it, so no id is ever handed out
twice, across crashes and (later) across brokers. A data dir of an older
odradek kept the end of its last block in the file ``producer-ids``; claims
start above it.
"""

from __future__ import annotations

import asyncio

from odradek.metadata.store import MetadataStore

BLOCK_END = "producer-ids/block-end"
BLOCK = 1000


class ProducerIdAllocator:
    def __init__(self, store: MetadataStore, floor: int = 0):
        self.store = store
        self.floor = floor  # no id below it may be handed out (an older data dir's)
        self.next_id = self.block_end = 0
        self._lock = asyncio.Lock()

    async def allocate(self) -> int:
        async with self._lock:
            if self.next_id >= self.block_end:
                await self._claim_block()
            pid = self.next_id
            self.next_id += 1
            return pid

    async def _claim_block(self) -> None:
        while True:
            kv = await self.store.get(BLOCK_END)
            start = max(int(kv.value) if kv else 0, self.floor)
            end = start + BLOCK
            if await self.store.compare_and_set(BLOCK_END, str(end).encode(), kv.version if kv else 0):
                self.next_id, self.block_end = start, end
                return
