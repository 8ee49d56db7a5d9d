"""One module per API family; importing this package registers every handler."""

from odradek.apis import (  # noqa: F401
    acls,
    admin,
    api_versions,
    consumer_groups,
    elect_leaders,
    fetch,
    groups,
    log_dirs,
    metadata,
    offsets,
    produce,
    producer_id,
    quotas,
    reassignments,
    sasl,
    scram_credentials,
    share_fetch,
    share_groups,
    share_state,
    transactions,
)
