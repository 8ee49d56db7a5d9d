"""A group coordinator shard: the groups and offsets of one ``__consumer_offsets`` partition.

Theory of operation
-------------------
:class:`GroupShard` is built by composition, as Kafka's group coordinator
shard is:

- a :class:`~odradek.coordinator.group_manager.GroupManager`, the group table
  with its deadlines, and the group types registered with it as siblings:
  :class:`~odradek.coordinator.classic_groups.ClassicGroups` and
  :class:`~odradek.coordinator.consumer_groups.ConsumerGroups` and
  :class:`~odradek.coordinator.share_groups.ShareGroups` and
  :class:`~odradek.coordinator.streams_groups.StreamsGroups`;
- an :class:`~odradek.coordinator.offsets.OffsetManager`, the committed
  offsets, which asks the group manager about a group, whatever its type.

The shard is what a :class:`~odradek.coordinator.runtime.ShardRunner` drives:
it names the operations (each returns a ``Result``), routes every record it
replays to the component that owns its key type (offset commits to the
offsets, group metadata to the classic groups, KIP-848 records to the
consumer groups), and runs the duties that span both components: deleting
groups, expiring offsets, dropping a deleted topic's offsets.

Two rules tie the components together, both applied on replay: an offset
commit for a group that does not exist creates an empty classic group (a
"simple" group, as a consumer that assigns itself partitions has), and a
group whose metadata is deleted while it still has offsets stays as such a
group.
"""

from __future__ import annotations

from odradek.coordinator import records as rec
from odradek.coordinator.classic_groups import ClassicGroups
from odradek.coordinator.config import ConsumerGroupConfig, GroupConfig, ShareGroupConfig
from odradek.coordinator.consumer_groups import ConsumerGroups
from odradek.coordinator.group_manager import GroupManager
from odradek.coordinator.records import OffsetKey
from odradek.coordinator.offsets import OffsetManager
from odradek.coordinator.runtime import Result
from odradek.coordinator.share_groups import ShareGroups
from odradek.coordinator.streams_groups import StreamsGroupConfig, StreamsGroups
from odradek.protocol import errors


class GroupShard:
    """The groups and offsets of one partition. See the module docstring."""

    def __init__(self, config: GroupConfig | None = None, consumer_config: ConsumerGroupConfig | None = None,
                 topics=None, tokens=None, partition: int | None = None,
                 share_config: ShareGroupConfig | None = None, group_configs=None,
                 streams_config: StreamsGroupConfig | None = None):
        self.partition = partition  # of __consumer_offsets, when hosted by a coordinator
        self.config = config or GroupConfig()
        self.group_manager = GroupManager(tokens)
        self.classic = ClassicGroups(self.group_manager, self.config)
        self.consumer = ConsumerGroups(self.group_manager, consumer_config, topics, group_configs)
        self.share = ShareGroups(self.group_manager, share_config, topics, group_configs)
        self.streams = StreamsGroups(self.group_manager, streams_config, topics, group_configs)
        self.offsets = OffsetManager(self.group_manager, self.config)

    @property
    def groups(self) -> dict:
        """The group table (group id -> classic, consumer, share or streams group)."""
        return self.group_manager.groups

    # -- classic groups --------------------------------------------------
    def join_group(self, now: int, **kw) -> Result:
        return self.classic.join_group(now, **kw)

    def sync_group(self, now: int, **kw) -> Result:
        return self.classic.sync_group(now, **kw)

    def heartbeat(self, now: int, **kw) -> Result:
        return self.classic.heartbeat(now, **kw)

    def leave_group(self, now: int, **kw) -> Result:
        return self.group_manager.leave_group(now, **kw)

    def describe_group(self, group_id: str, version: int = 5) -> dict:
        return self.classic.describe_group(group_id, version)

    # -- consumer groups -------------------------------------------------
    def consumer_group_heartbeat(self, now: int, **kw) -> Result:
        return self.consumer.consumer_group_heartbeat(now, **kw)

    def consumer_group_describe(self, group_ids: list[str]) -> list:
        return self.consumer.consumer_group_describe(group_ids)

    # -- share groups ----------------------------------------------------
    def share_group_heartbeat(self, now: int, **kw) -> Result:
        return self.share.share_group_heartbeat(now, **kw)

    def share_group_describe(self, group_ids: list[str]) -> list:
        return self.share.share_group_describe(group_ids)

    def share_offsets_check(self, now: int, group_id: str, mode: str = "describe") -> Result:
        return self.share.offsets_check(now, group_id, mode)

    # -- streams groups --------------------------------------------------
    def streams_group_heartbeat(self, now: int, **kw) -> Result:
        return self.streams.streams_group_heartbeat(now, **kw)

    def streams_group_describe(self, group_ids: list[str]) -> list:
        return self.streams.streams_group_describe(group_ids)

    # -- offsets ---------------------------------------------------------
    def commit_offsets(self, now: int, **kw) -> Result:
        return self.offsets.commit_offsets(now, **kw)

    def fetch_offsets(self, group_id: str, topics, member_id: str | None = None, member_epoch: int = -1) -> dict:
        return self.offsets.fetch_offsets(group_id, topics, member_id, member_epoch)

    def delete_offsets(self, now: int, **kw) -> Result:
        return self.offsets.delete_offsets(now, **kw)

    # -- both: listing, deleting, expiring ------------------------------
    def list_groups(self, states: list[str] | None = None, types: list[str] | None = None) -> list[dict]:
        return self.group_manager.list_groups(states, types)

    def delete_groups(self, now: int, group_ids: list[str]) -> Result:
        """Delete empty groups with their offsets."""
        res = Result()
        results = []
        for gid in group_ids:
            code = 0
            g = self.group_manager.get(gid)
            if gid is None:
                code = errors.INVALID_GROUP_ID
            elif g is None:
                code = errors.GROUP_ID_NOT_FOUND
            elif not self.group_manager.is_empty(g):
                code = errors.NON_EMPTY_GROUP
            else:
                res.records.extend(self.offsets.tombstones(gid))
                res.records.extend(self.group_manager.delete_records(g))
            results.append({"group_id": gid, "error_code": code})
        res.response = {"results": results}
        res.failure = {"results": [dict(r, error_code=r["error_code"] or errors.COORDINATOR_NOT_AVAILABLE)
                                   for r in results]}
        return res

    def expire_offsets(self, now: int) -> Result:
        return self.offsets.expire_offsets(now)

    def topic_deleted(self, now: int, topic: str) -> Result:
        return self.offsets.topic_deleted(now, topic)

    # -- transactional offsets (TxnOffsetCommit) -------------------------
    def txn_commit_offsets(self, now: int, *, producer_id: int, producer_epoch: int, **kw) -> Result:
        res = self.offsets.commit_offsets(now, transactional=True, **kw)
        res.producer = (producer_id, producer_epoch)
        return res

    def replay_pending(self, producer_id: int, key: bytes, value: bytes | None, now: int) -> None:
        """Apply one transactional record of ``producer_id``: kept aside until its marker."""
        k = rec.decode_key(key)
        if isinstance(k, OffsetKey):
            self.offsets.replay_pending(producer_id, k, value)

    def complete_transaction(self, now: int, producer_id: int, commit: bool) -> None:
        """A marker of ``producer_id`` was written to this shard's partition:
        its pending offsets become committed (commit) or are dropped (abort).
        Like replaying a record, this changes state only as the log says."""
        for group in self.offsets.complete_transaction(producer_id, commit):
            if group not in self.groups:
                self.classic.add_simple_group(group, now)

    # -- what the runner calls -------------------------------------------
    def replay(self, key: bytes, value: bytes | None, now: int) -> None:
        """Apply one record of the partition. Raises RecordFormatError."""
        k = rec.decode_key(key)
        if isinstance(k, OffsetKey):
            self.offsets.replay(k, value)
            if value is not None and k.group not in self.groups:
                self.classic.add_simple_group(k.group, now)
            return
        self.group_manager.replay(k, value, now)
        if k.group not in self.groups and self.offsets.of(k.group):
            self.classic.add_simple_group(k.group, now)  # offsets outlive their group's metadata

    def tick(self, now: int) -> Result:
        return self.group_manager.tick(now)

    def next_deadline(self) -> int | None:
        return self.group_manager.next_deadline()

    def drain(self) -> list[tuple[int, dict]]:
        return self.group_manager.drain()

    def append_failed(self, records: list, now: int) -> None:
        self.group_manager.append_failed(records, now)

    def unload(self) -> list[tuple[int, dict]]:
        """The shard is no longer served here: the answers (NOT_COORDINATOR) of
        every parked request."""
        self.group_manager.unload()
        return self.drain()

    # -- inspection (tests, tools) --------------------------------------
    def durable_view(self) -> dict:
        """What the records describe, per group: comparable across a replay."""
        out = {}
        for gid, g in sorted(self.groups.items()):
            view = self.group_manager.kind(g).durable_view(g)
            view["offsets"] = dict(sorted(self.offsets.of(gid).items()))
            out[gid] = view
        return out
