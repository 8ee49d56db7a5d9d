"""odradek: a Kafka-compatible event-streaming broker in Python."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that `import odradek` stays cheap for the CLI.
    if name in ("Broker", "EmbeddedBroker"):
        from odradek.embedded import EmbeddedBroker

        return EmbeddedBroker
    if name == "Cluster":
        from odradek.cluster.local import Cluster

        return Cluster
    raise AttributeError(name)
