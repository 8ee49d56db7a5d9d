"""Topics in the metadata store: the key layout and the transactions that change them.

Keys (values are JSON):

- ``topics/<name>``: ``{"id": "<32 hex digits>"}``; the topic exists while it does.
- ``configs/topic/<name>``: the topic's config overrides.
- ``partitions/<name>/<index>``: ``{"leader", "leader_epoch", "replicas", "isr",
  "elr", "adding", "removing"}`` (node ids; leader -1 when no replica can lead;
  ``elr`` is room for KIP-966's eligible leader replicas, empty for now;
  ``adding`` and ``removing`` are the replicas an ongoing reassignment
  (KIP-455) adds and removes, both empty when none is; values written
  without them read as empty); a topic's partitions are
  0..n-1. The key's mod revision is the partition's version: every write to
  it after creation compares it (and the writer's epoch), so a stale writer
  (a paused leader, an old controller) cannot overwrite newer state.

Topic names cannot hold "/", so ``partitions/<name>/`` is exactly one topic's
partitions. Each admin change is one transaction, so a reader never sees half
of one, and changes to different keys (a config, new partitions) never
overwrite each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from odradek.metadata.store import Compare, Delete, Put

INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state", "__share_group_state")

TOPICS = "topics/"
CONFIGS = "configs/topic/"
PARTITIONS = "partitions/"


@dataclass
class PartitionState:
    leader: int
    leader_epoch: int = 0
    replicas: list[int] = field(default_factory=list)
    isr: list[int] = field(default_factory=list)
    elr: list[int] = field(default_factory=list)
    #: the mod revision of the key this state was read from (0: not written yet); not stored
    revision: int = field(default=0, compare=False)
    #: an ongoing reassignment (KIP-455): replicas being added, and being removed
    adding: list[int] = field(default_factory=list)
    removing: list[int] = field(default_factory=list)

    @property
    def reassigning(self) -> bool:
        return bool(self.adding or self.removing)

    @property
    def target(self) -> list[int]:
        """The replicas once an ongoing reassignment completes (else ``replicas``)."""
        return [r for r in self.replicas if r not in self.removing]

    @property
    def original(self) -> list[int]:
        """The replicas before an ongoing reassignment (what cancelling reverts to)."""
        return [r for r in self.replicas if r not in self.adding]

    def to_json(self) -> bytes:
        return json.dumps({"leader": self.leader, "leader_epoch": self.leader_epoch,
                           "replicas": self.replicas, "isr": self.isr, "elr": self.elr,
                           "adding": self.adding, "removing": self.removing}).encode()

    @classmethod
    def from_json(cls, raw: bytes, revision: int = 0) -> "PartitionState":
        d = json.loads(raw)
        return cls(d["leader"], d["leader_epoch"], d["replicas"], d["isr"], d.get("elr", []), revision,
                   d.get("adding", []), d.get("removing", []))


@dataclass
class TopicState:
    name: str
    topic_id: bytes
    configs: dict[str, str] = field(default_factory=dict)
    partitions: list[PartitionState] = field(default_factory=list)
    #: answers derived from this state and kept until it changes (Metadata's
    #: encoded topic entries, ``odradek.apis.metadata``); the image empties it
    #: whenever it changes the topic (``MetadataImage._apply_one``); not stored
    derived: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def internal(self) -> bool:
        return self.name in INTERNAL_TOPICS


def topic_key(name: str) -> str:
    return TOPICS + name


def config_key(name: str) -> str:
    return CONFIGS + name


def partition_key(name: str, index: int) -> str:
    return f"{PARTITIONS}{name}/{index}"


def create_topic_txn(t: TopicState) -> tuple[list[Compare], list[Put]]:
    """Write a new topic, only if no topic of that name exists."""
    ops = [Put(topic_key(t.name), json.dumps({"id": t.topic_id.hex()}).encode()),
           Put(config_key(t.name), json.dumps(t.configs, sort_keys=True).encode())]
    ops += [Put(partition_key(t.name, i), p.to_json()) for i, p in enumerate(t.partitions)]
    return [Compare(topic_key(t.name), "version", "==", 0)], ops


def delete_topic_ops(name: str) -> list[Delete]:
    return [Delete(topic_key(name)), Delete(config_key(name)),
            Delete(f"{PARTITIONS}{name}/", prefix=True)]


def add_partitions_txn(name: str, first: int, added: list[PartitionState]) -> tuple[list[Compare], list[Put]]:
    """Add partitions ``first``.. to an existing topic that has exactly ``first``."""
    compares = [Compare(topic_key(name), "version", ">", 0),
                Compare(partition_key(name, first), "version", "==", 0)]
    if first > 0:
        compares.append(Compare(partition_key(name, first - 1), "version", ">", 0))
    return compares, [Put(partition_key(name, first + i), p.to_json()) for i, p in enumerate(added)]


def set_configs_txn(name: str, overrides: dict[str, str]) -> tuple[list[Compare], list[Put]]:
    """Replace an existing topic's config overrides."""
    return ([Compare(topic_key(name), "version", ">", 0)],
            [Put(config_key(name), json.dumps(overrides, sort_keys=True).encode())])


def update_partition_txn(name: str, index: int, new: PartitionState, read_at: int,
                         fence: Compare) -> tuple[list[Compare], list[Put]]:
    """Replace a partition's state, only if its key is still at mod revision
    ``read_at`` (the state the writer decided on) and ``fence`` holds: the
    writer's own epoch, e.g. the controller key's or the leader's registration's
    create revision. Both are checked by the store, never by the writer."""
    return ([Compare(partition_key(name, index), "mod_revision", "==", read_at), fence],
            [Put(partition_key(name, index), new.to_json())])


def import_registry(raw: bytes, leader: int) -> list[TopicState]:
    """Topics of a ``topics.json`` written by odradek before the metadata store."""
    out = []
    for name, entry in json.loads(raw).items():
        epoch = entry.get("leader_epoch", 0)
        out.append(TopicState(name, bytes.fromhex(entry["id"]), entry.get("configs", {}),
                              [PartitionState(leader, epoch, [leader], [leader])
                               for _ in range(entry["partitions"])]))
    return out
