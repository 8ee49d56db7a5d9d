"""Coordinators: state machines over records in internal topics."""


async def start_coordinators(broker) -> None:
    """Load the coordinators that exist; each registers itself on ``broker``."""
    try:
        from odradek.coordinator.group_coordinator import GroupCoordinator
    except ImportError:
        return
    broker.groups = GroupCoordinator(broker)
    await broker.groups.start()
    from odradek.coordinator.transactions.coordinator import TransactionCoordinator

    broker.transactions = TransactionCoordinator(broker)
    await broker.transactions.start()
    from odradek.coordinator.share_state import ShareCoordinator

    share = getattr(broker, "share", None)
    if share is not None:
        share.coordinator = ShareCoordinator(broker)
        await share.coordinator.start()
