"""Test support: the pytest plugin (registered as ``odradek``) and broker helpers."""

from odradek.testing.helpers import BrokerHandle, StoredRecord

__all__ = ["BrokerHandle", "StoredRecord"]
