"""Cluster metadata: a store with etcd's shape (odradek.metadata.store) and its implementations."""
