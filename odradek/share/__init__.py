"""Share groups (KIP-932): the share-partition state kept by a partition's
leader, and the share sessions of ShareFetch / ShareAcknowledge."""
