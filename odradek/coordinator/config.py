"""The broker settings the group coordinator acts on (server.properties names)."""

from __future__ import annotations

from dataclasses import dataclass

from odradek.coordinator.assignors import ASSIGNORS, DEFAULT_ASSIGNORS


def group_setting(group_configs, group_id: str, name: str, default: int) -> int:
    """A group's own config ``name`` (set on its GROUP resource; ``group_configs``
    an ``odradek.metadata.group_configs.GroupConfigCache`` or None), else
    ``default``, the broker's."""
    if group_configs is None:
        return default
    value = group_configs.of(group_id).get(name)
    return int(value) if value is not None else default


@dataclass
class GroupConfig:
    """Settings of classic groups and committed offsets."""

    num_partitions: int = 50  # offsets.topic.num.partitions
    min_session_timeout_ms: int = 6000  # group.min.session.timeout.ms
    max_session_timeout_ms: int = 1800000  # group.max.session.timeout.ms
    initial_rebalance_delay_ms: int = 3000  # group.initial.rebalance.delay.ms
    max_group_size: int = 2**31 - 1  # group.max.size
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000  # offsets.retention.minutes
    max_metadata_bytes: int = 4096  # offset.metadata.max.bytes
    new_member_join_timeout_ms: int = 5 * 60 * 1000  # Kafka's fixed new-member timeout
    commit_timeout_ms: int = 5000  # offsets.commit.timeout.ms: how long a write waits to be committed

    @classmethod
    def from_broker(cls, config) -> "GroupConfig":
        d = cls()
        return cls(
            num_partitions=config.get_int("offsets.topic.num.partitions", d.num_partitions),
            min_session_timeout_ms=config.get_int("group.min.session.timeout.ms", d.min_session_timeout_ms),
            max_session_timeout_ms=config.get_int("group.max.session.timeout.ms", d.max_session_timeout_ms),
            initial_rebalance_delay_ms=config.get_int("group.initial.rebalance.delay.ms",
                                                      d.initial_rebalance_delay_ms),
            max_group_size=config.get_int("group.max.size", d.max_group_size),
            offsets_retention_ms=config.get_int("offsets.retention.minutes", 7 * 24 * 60) * 60000,
            max_metadata_bytes=config.get_int("offset.metadata.max.bytes", d.max_metadata_bytes),
            commit_timeout_ms=config.get_int("offsets.commit.timeout.ms", d.commit_timeout_ms),
        )


@dataclass
class ConsumerGroupConfig:
    """Settings of KIP-848 consumer groups."""

    session_timeout_ms: int = 45000  # group.consumer.session.timeout.ms
    heartbeat_interval_ms: int = 5000  # group.consumer.heartbeat.interval.ms
    max_size: int = 2**31 - 1  # group.consumer.max.size
    assignors: tuple = DEFAULT_ASSIGNORS  # group.consumer.assignors; the first is the default
    regex_refresh_ms: int = 10000  # how often regexes are matched again against the topics
    # group.consumer.migration.policy: whether a group with members moves between the
    # classic and consumer protocols (bidirectional, upgrade, downgrade, disabled)
    migration_policy: str = "bidirectional"

    @classmethod
    def from_broker(cls, config) -> "ConsumerGroupConfig":
        d = cls()
        names = []
        for item in (config.get("group.consumer.assignors") or "").split(","):
            item = item.strip()
            short = item.rsplit(".", 1)[-1].lower().removesuffix("assignor")
            if short in ASSIGNORS and short not in names:
                names.append(short)
        return cls(
            session_timeout_ms=config.get_int("group.consumer.session.timeout.ms", d.session_timeout_ms),
            heartbeat_interval_ms=config.get_int("group.consumer.heartbeat.interval.ms",
                                                 d.heartbeat_interval_ms),
            max_size=config.get_int("group.consumer.max.size", d.max_size),
            assignors=tuple(names) or d.assignors,
            migration_policy=(config.get("group.consumer.migration.policy") or d.migration_policy).strip().lower(),
        )


@dataclass
class ShareGroupConfig:
    """Settings of KIP-932 share groups (the group side and the share-partition side)."""

    session_timeout_ms: int = 45000  # group.share.session.timeout.ms
    heartbeat_interval_ms: int = 5000  # group.share.heartbeat.interval.ms
    max_size: int = 200  # group.share.max.size
    record_lock_duration_ms: int = 30000  # group.share.record.lock.duration.ms
    delivery_count_limit: int = 5  # group.share.delivery.count.limit
    max_record_locks: int = 2000  # group.share.partition.max.record.locks
    max_share_sessions: int = 2000  # group.share.max.share.sessions

    @classmethod
    def from_broker(cls, config) -> "ShareGroupConfig":
        d = cls()
        return cls(
            session_timeout_ms=config.get_int("group.share.session.timeout.ms", d.session_timeout_ms),
            heartbeat_interval_ms=config.get_int("group.share.heartbeat.interval.ms", d.heartbeat_interval_ms),
            max_size=config.get_int("group.share.max.size", d.max_size),
            record_lock_duration_ms=config.get_int("group.share.record.lock.duration.ms",
                                                   d.record_lock_duration_ms),
            delivery_count_limit=config.get_int("group.share.delivery.count.limit", d.delivery_count_limit),
            max_record_locks=config.get_int("group.share.partition.max.record.locks", d.max_record_locks),
            max_share_sessions=config.get_int("group.share.max.share.sessions", d.max_share_sessions),
        )
