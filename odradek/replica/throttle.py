"""Replication throttles (KIP-73), as Kafka applies them to reassignments.

Which replicas: the topic configs ``leader.replication.throttled.replicas``
and ``follower.replication.throttled.replicas``, each ``*`` or a list of
``partition:broker``; a broker reads the entries naming itself (Kafka's
rule: the leader list names the replicas that lead, the follower list the
ones that copy; ``kafka-reassign-partitions --throttle`` writes the moving
partitions' current replicas into the first and the added ones into the
second). How fast: the broker settings ``leader.replication.throttled.rate``
and ``follower.replication.throttled.rate``, bytes per second, dynamic (per
broker or as the cluster default; unset, nothing is throttled).

The rule, Kafka's, for a follower out of the partition's ISR (an in-sync one
is never slowed, so acks=all is not): while this broker's measured rate (11
one-second samples, Kafka's ``replication.quota.window.*``) is over its
bound, a leader sends a throttled partition no records in that follower's
Fetch (offsets and high watermark still), and a follower leaves a throttled
partition out of its fetches. The records of throttled partitions count
against the rate: a leader counts what it sends, a follower what it
receives.
"""

from __future__ import annotations

from odradek.config import LONG_MAX, ConfigError
from odradek.security.quotas import SampledRate

LEADER_REPLICAS = "leader.replication.throttled.replicas"
FOLLOWER_REPLICAS = "follower.replication.throttled.replicas"
LEADER_RATE = "leader.replication.throttled.rate"
FOLLOWER_RATE = "follower.replication.throttled.rate"
ALL = "*"
SAMPLES, WINDOW_MS = 11, 1000  # Kafka's replication.quota.window.num and .size.seconds


def validate_replicas(name: str, value: str) -> str:
    """A throttled-replicas list, normalised (blanks dropped); ConfigError with
    Kafka's message when it is neither ``*`` nor ``partition:broker,...``."""
    text = "".join(value.split())
    if text in ("", ALL):
        return text
    for entry in text.split(","):
        p, sep, b = entry.partition(":")
        if not (sep and p.isdigit() and b.isdigit()):
            raise ConfigError(f"Invalid value {value} for configuration {name}: must be the literal '*' or a "
                              "list of replicas in the following format: [partitionId]:[brokerId],"
                              "[partitionId]:[brokerId],...")
    return text


def throttled_partitions(value: str, broker_id: int) -> frozenset[int] | str:
    """The partitions a throttled-replicas list names with ``broker_id``
    (``ALL`` for ``*``)."""
    text = "".join(value.split())
    if text == ALL:
        return ALL
    out = set()
    for entry in filter(None, text.split(",")):
        p, _, b = entry.partition(":")
        if b.isdigit() and p.isdigit() and int(b) == broker_id:
            out.add(int(p))
    return frozenset(out)


class ReplicationQuota:
    """One side's throttle on one broker: the rate setting ``rate_key`` (read
    at each use: a dynamic change applies at once), the list ``replicas_key``
    of each topic, and the bytes measured."""

    def __init__(self, config, node_id: int, rate_key: str, replicas_key: str):
        self.config = config
        self.node_id = node_id
        self.rate_key = rate_key
        self.replicas_key = replicas_key
        self.measured = SampledRate(SAMPLES, WINDOW_MS)

    def bound(self) -> int:
        return self.config.get_int(self.rate_key, LONG_MAX)

    def exceeded(self, now_ms: int) -> bool:
        bound = self.bound()
        return bound < LONG_MAX and self.measured.rate(now_ms) > bound

    def listed(self, p) -> bool:
        """Whether partition ``p``'s topic throttles its replica on this broker."""
        memo, key = p.topic.config.memo, (self.replicas_key, self.node_id)
        found = memo.get(key)
        if found is None:
            found = memo[key] = throttled_partitions(p.topic.config.get(self.replicas_key), self.node_id)
        return found == ALL or p.index in found

    def record(self, size: int, now_ms: int) -> None:
        if size:
            self.measured.record(size, now_ms)
