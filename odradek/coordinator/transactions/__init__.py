"""The transaction coordinator: transactional ids as records in ``__transaction_state``.

- ``records.py``: keys and values in Kafka's formats, ``partition_for``;
- ``shard.py``: the state machine of one partition's transactional ids;
- ``coordinator.py``: hosting the shards of the partitions led here, sending
  markers, timers (the only part on the event loop);
- ``markers.py``: how markers reach a partition's leader.

See docs/transactions.md.
"""
