"""Security: who a connection is, and how it proves it.

Theory of operation: every listener has a security protocol (PLAINTEXT, SSL,
SASL_PLAINTEXT, SASL_SSL), read from Kafka's own ``server.properties`` keys
by ``odradek.security.config``, which refuses at start any security key it
does not serve. A connection's principal (``User:alice``; ``User:ANONYMOUS``
on PLAINTEXT) and its listener ride on every request context, so that an
authoriser can be added in one place.

- ``config``: listeners, per-listener settings, validation of the keys.
- ``tls``: server SSL contexts from PEM files; the principal of a client
  certificate (``ssl.principal.mapping.rules``).
- ``jaas``: the JAAS lines Kafka reads (``...PlainLoginModule required
  user_alice="..." ;``).
- ``sasl``: the mechanisms, sans-IO: PLAIN and SCRAM-SHA-256/512;
  ``oauthbearer``: OAUTHBEARER and its validators.
- ``authenticator``: the per-connection SASL state machine (handshake,
  authenticate, complete; re-authentication, KIP-368).
- ``scram``: SCRAM credentials and their home in the metadata store.

Nothing here touches a socket; ``odradek.server.connection`` does.
"""
