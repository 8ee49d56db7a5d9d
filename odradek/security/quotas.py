"""Client quotas: the model kept in the metadata store, and Kafka's precedence.

A quota entity is a user, a client id, or a user with a client id; either
name may be the default (``None``: every user, or every client id, that has
no quota of its own). Each entity has values for some of the quota keys
(``producer_byte_rate``, ``consumer_byte_rate``, ``request_percentage``,
``controller_mutation_rate``). One store key per entity,
``quotas/user=<name>/client-id=<name>`` (names percent-encoded, a default
written ``<default>``), with the values as JSON; every broker reads them
through its image (``QuotaCache``).

Which quota applies to a request of user U with client id C is Kafka's
order, looked up per quota key, the first entity with a value for that key
winning:

1. user U, client id C       5. default user, default client id
2. user U, default client id 6. default user
3. user U                    7. client id C
4. default user, client id C 8. default client id

The match also decides who shares the quota: a user-only quota (3, 6) is
shared by all that user's clients, a client-id-only one (7, 8) by every user
of that client id, the others by the one (user, client id) pair. This is the
``key`` of ``Quota``, under which the broker samples the rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote, unquote

PREFIX = "quotas/"
USER = "user"
CLIENT_ID = "client-id"
IP = "ip"
DEFAULT = "<default>"

PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
CONTROLLER_MUTATION_RATE = "controller_mutation_rate"
CONNECTION_CREATION_RATE = "connection_creation_rate"
# The keys a user / client-id entity may carry, with Kafka's types.
CLIENT_KEYS = {PRODUCER_BYTE_RATE: "long", CONSUMER_BYTE_RATE: "long", REQUEST_PERCENTAGE: "double",
               CONTROLLER_MUTATION_RATE: "double"}
IP_KEYS = {CONNECTION_CREATION_RATE: "int"}

# An entity: ((type, name or None), ...) sorted by type.
Entity = tuple


def entity_key(entity: Entity) -> str:
    return PREFIX + "/".join(f"{t}={DEFAULT if n is None else quote(n, safe='')}" for t, n in sorted(entity))


def entity_of_key(key: str) -> Entity:
    parts = []
    for part in key[len(PREFIX):].split("/"):
        t, _, n = part.partition("=")
        parts.append((t, None if n == DEFAULT else unquote(n)))
    return tuple(sorted(parts))


def validate_entity(entity: list[tuple[str, str | None]]) -> str | None:
    """Why Kafka refuses this entity (INVALID_REQUEST), or None."""
    if not entity:
        return "Invalid empty client quota entity"
    types = [t for t, _ in entity]
    if len(set(types)) != len(types):
        return "Invalid quota entity: duplicate entity type"
    for t, n in entity:
        if t not in (USER, CLIENT_ID, IP):
            return f"Unhandled client quota entity type: {t}"
        if n is not None and n == "":
            return f"Empty {t} not supported"
    if IP in types and len(types) > 1:
        return "Invalid quota entity combination"
    return None


def validate_value(entity_types: set[str], key: str, value: float) -> str | None:
    """Why Kafka refuses to set ``key`` to ``value`` on such an entity, or None."""
    keys = IP_KEYS if IP in entity_types else CLIENT_KEYS
    kind = keys.get(key)
    if kind is None:
        return f"Invalid configuration key {key}"
    if kind in ("long", "int") and value != int(value):
        return f"Configuration {key} must be a {'Long' if kind == 'long' else 'Integer'} value"
    if value <= 0:
        return f"Quota {key} must be greater than 0"
    return None


@dataclass(frozen=True)
class Quota:
    bound: float  # bytes per second, or percent of a thread
    key: tuple[str, str]  # (user, client id) sharing it; "" where not part of the match


# Kafka's lookup order: (user part, client part) with "U"/"C" the request's own
# name, "D" the default, None the part absent.
_ORDER = [("U", "C"), ("U", "D"), ("U", None), ("D", "C"), ("D", "D"), ("D", None), (None, "C"), (None, "D")]


class QuotaCache:
    """Every quota entity the store holds: entity -> {key: value}."""

    def __init__(self):
        self.entities: dict[Entity, dict[str, float]] = {}
        self.keys: frozenset[str] = frozenset()  # the quota keys some entity sets

    def put(self, key: str, value: bytes | str) -> None:
        values = {k: float(v) for k, v in json.loads(value).items()}
        self.entities[entity_of_key(key)] = values
        self._changed()

    def delete(self, key: str) -> None:
        self.entities.pop(entity_of_key(key), None)
        self._changed()

    def clear(self) -> None:
        self.entities.clear()
        self._changed()

    def _changed(self) -> None:
        self.keys = frozenset(k for values in self.entities.values() for k in values)

    def __iter__(self):
        return iter(list(self.entities.items()))

    def quota(self, user: str, client_id: str, quota_key: str) -> Quota | None:
        """The quota of ``quota_key`` for ``user`` (the principal's name) with
        ``client_id``, by Kafka's precedence; None: unlimited."""
        if not self.entities:
            return None
        for u, c in _ORDER:
            entity = []
            if c is not None:
                entity.append((CLIENT_ID, client_id if c == "C" else None))
            if u is not None:
                entity.append((USER, user if u == "U" else None))
            values = self.entities.get(tuple(entity))
            if values is not None and quota_key in values:
                return Quota(values[quota_key], (user if u else "", client_id if c else ""))
        return None


def ip_quota(cache: QuotaCache, ip: str) -> float | None:
    """``connection_creation_rate`` for connections from ``ip``: its own entity's,
    else the default ip's; None: unlimited."""
    for name in (ip, None):
        values = cache.entities.get(((IP, name),))
        if values is not None and CONNECTION_CREATION_RATE in values:
            return values[CONNECTION_CREATION_RATE]
    return None


class SampledRate:
    """A rate over ``samples`` windows of ``window_ms``, as Kafka's sampled
    ``Rate`` measures it: the total of the samples not older than all the
    windows together, divided by the time they cover, which counts as at least
    ``samples - 1`` whole windows (so a first burst is not measured over a
    few milliseconds)."""

    __slots__ = ("samples", "window_ms", "starts", "totals", "last_ms")

    def __init__(self, samples: int, window_ms: int):
        self.samples = samples
        self.window_ms = window_ms
        self.starts: list[int] = []  # each sample's start, oldest first
        self.totals: list[float] = []
        self.last_ms = 0

    def _purge(self, now_ms: int) -> None:
        horizon = now_ms - self.samples * self.window_ms
        while self.starts and self.starts[0] <= horizon:
            del self.starts[0], self.totals[0]

    def record(self, value: float, now_ms: int) -> None:
        self.last_ms = now_ms
        if not self.starts or now_ms >= self.starts[-1] + self.window_ms:
            self.starts.append(now_ms)
            self.totals.append(0.0)
            if len(self.starts) > self.samples:
                del self.starts[0], self.totals[0]
        self.totals[-1] += value
        self._purge(now_ms)

    def window_size_ms(self, now_ms: int) -> int:
        self._purge(now_ms)
        elapsed = now_ms - (self.starts[0] if self.starts else now_ms)
        full = elapsed // self.window_ms
        if full < self.samples - 1:
            elapsed += (self.samples - 1 - full) * self.window_ms
        return elapsed

    def rate(self, now_ms: int) -> float:
        """Per second."""
        window = self.window_size_ms(now_ms)  # first: it drops the samples that aged out
        return sum(self.totals) / (window / 1000)


def throttle_ms(rate: SampledRate, bound: float, now_ms: int) -> int:
    """Kafka's throttle time for a rate over its bound: how long the client must
    stay quiet for the measured rate, over its window, to come back to the
    bound; 0 within the bound."""
    window = rate.window_size_ms(now_ms)
    value = sum(rate.totals) / (window / 1000)
    if value <= bound:
        return 0
    return round((value - bound) / bound * window)


class TokenBucket:
    """Kafka's token bucket for ``controller_mutation_rate`` (KIP-599): it holds
    up to ``samples`` x ``window`` seconds of the quota (full at first), refills
    at the quota per second, and a mutation takes its partitions out, which
    may leave it below zero."""

    def __init__(self, samples: int, window_ms: int):
        self.samples, self.window_ms = samples, window_ms
        self.tokens: float | None = None
        self.last_ms = 0

    def level(self, bound: float, now_ms: int) -> float:
        burst = self.samples * self.window_ms / 1000 * bound
        if self.tokens is None:
            self.tokens = burst
        else:
            self.tokens = min(burst, self.tokens + bound * max(0, now_ms - self.last_ms) / 1000)
        self.last_ms = now_ms
        return self.tokens

    def take(self, value: float, bound: float, now_ms: int) -> float:
        self.tokens = self.level(bound, now_ms) - value
        return self.tokens


THROTTLING_MESSAGE = "The throttling quota has been exceeded."


class MutationQuota:
    """One request's ``controller_mutation_rate`` (KIP-599). ``admit(partitions)``
    before each topic is created, deleted or given partitions: strict (the
    versions that know THROTTLING_QUOTA_EXCEEDED) refuses it, with the
    message, once the bucket is below zero, and every later one of the
    request; permissive (older versions) takes the partitions anyway. Either
    way ``throttle_ms`` is how long the client must wait for the bucket to
    come back to zero."""

    def __init__(self, quotas: "ClientQuotas", bucket: TokenBucket, bound: float, strict: bool, clock):
        self.quotas, self.bucket, self.bound, self.strict, self.clock = quotas, bucket, bound, strict, clock
        self.throttle_ms = 0

    def _throttle(self, tokens: float) -> int:
        return round(-tokens / self.bound * 1000) if tokens < 0 else 0

    def admit(self, partitions: int) -> str | None:
        now = self.clock()
        if self.strict:
            if self.throttle_ms > 0:
                return THROTTLING_MESSAGE
            throttle = self._throttle(self.bucket.level(self.bound, now))
            if throttle:
                self.throttle_ms = throttle
                self.quotas.count_throttle(CONTROLLER_MUTATION_RATE, throttle)
                return THROTTLING_MESSAGE
            self.bucket.take(partitions, self.bound, now)
            return None
        throttle = self._throttle(self.bucket.take(partitions, self.bound, now))
        if throttle:
            self.throttle_ms = throttle
            self.quotas.count_throttle(CONTROLLER_MUTATION_RATE, throttle)
        return None


class ClientQuotas:
    """The broker's quota accounting: one sampled rate per quota key and per
    (user, client id) sharing a quota (``Quota.key``); the quotas themselves
    are the image's (``QuotaCache``), so a change applies from the next
    request. Rates idle for all their windows are dropped."""

    def __init__(self, cache: QuotaCache, samples: int = 11, window_ms: int = 1000):
        self.cache = cache
        self.samples = samples
        self.window_ms = window_ms
        self.rates: dict[tuple, SampledRate] = {}
        self._next_sweep = 0
        self.throttles: dict[str, list] = {}  # quota key -> [throttled responses, total throttle ms]
        self.buckets: dict[tuple, TokenBucket] = {}  # controller_mutation_rate, per Quota.key

    @property
    def active(self) -> bool:
        return bool(self.cache.entities)

    @property
    def request_quotas(self) -> bool:
        """Whether some entity has a ``request_percentage`` (handler time is measured only then)."""
        return REQUEST_PERCENTAGE in self.cache.keys

    def window_allowance(self, quota_key: str, user: str, client_id: str | None) -> float | None:
        """What the quota lets through over all windows but one (Kafka's
        maxValueInQuotaWindow: a Fetch asks for no more than this, so that one
        answer can never be over the quota by itself); None without a quota."""
        if quota_key not in self.cache.keys:
            return None
        quota = self.cache.quota(user, client_id or "", quota_key)
        if quota is None:
            return None
        return quota.bound * max(self.samples - 1, 1) * self.window_ms / 1000

    def count_throttle(self, quota_key: str, throttle_ms: int) -> None:
        counts = self.throttles.setdefault(quota_key, [0, 0])
        counts[0] += 1
        counts[1] += throttle_ms

    def record_connection(self, ip: str, now_ms: int) -> int:
        """KIP-612: count a new connection from ``ip`` against its
        ``connection_creation_rate``; the throttle time (bounded at one window)
        when it is over, the connection then not counted, as Kafka does."""
        if CONNECTION_CREATION_RATE not in self.cache.keys:
            return 0
        bound = ip_quota(self.cache, ip)
        if bound is None:
            return 0
        k = (CONNECTION_CREATION_RATE, (ip, ""))
        rate = self.rates.get(k)
        if rate is None:
            rate = self.rates[k] = SampledRate(self.samples, self.window_ms)
        rate.record(1, now_ms)
        if now_ms >= self._next_sweep:
            self._sweep(now_ms)
        throttle = min(throttle_ms(rate, bound, now_ms), self.window_ms)
        if throttle:
            rate.record(-1, now_ms)
            self.count_throttle(CONNECTION_CREATION_RATE, throttle)
        return throttle

    def mutation(self, user: str, client_id: str | None, strict: bool, clock) -> MutationQuota | None:
        """The ``controller_mutation_rate`` of a CreateTopics, CreatePartitions or
        DeleteTopics request; None when no such quota applies."""
        if CONTROLLER_MUTATION_RATE not in self.cache.keys:
            return None
        quota = self.cache.quota(user, client_id or "", CONTROLLER_MUTATION_RATE)
        if quota is None:
            return None
        bucket = self.buckets.get(quota.key)
        if bucket is None:
            bucket = self.buckets[quota.key] = TokenBucket(self.samples, self.window_ms)
        return MutationQuota(self, bucket, quota.bound, strict, clock)

    def record_request_time(self, user: str, client_id: str | None, ns: int, now_ms: int) -> int:
        """Count ``ns`` of handler time against ``request_percentage`` (percent of
        one thread per second); the throttle, which Kafka bounds at one window."""
        return self.record(REQUEST_PERCENTAGE, user, client_id, ns * 100 / 1e9, now_ms)

    def record(self, quota_key: str, user: str, client_id: str | None, value: float, now_ms: int,
               keep_if_throttled: bool = True) -> int:
        """Count ``value`` against the quota of ``quota_key`` that applies; the throttle time in ms.
        With ``keep_if_throttled`` false, a throttled ``value`` is taken back out (Kafka's
        unrecord: a throttled Fetch is answered empty, so its bytes never went out)."""
        if quota_key not in self.cache.keys:
            return 0
        quota = self.cache.quota(user, client_id or "", quota_key)
        if quota is None:
            return 0
        k = (quota_key, quota.key)
        rate = self.rates.get(k)
        if rate is None:
            rate = self.rates[k] = SampledRate(self.samples, self.window_ms)
        rate.record(value, now_ms)
        if now_ms >= self._next_sweep:
            self._sweep(now_ms)
        throttle = throttle_ms(rate, quota.bound, now_ms)
        if throttle and not keep_if_throttled:
            rate.record(-value, now_ms)
        if throttle:
            if quota_key == REQUEST_PERCENTAGE:
                throttle = min(throttle, self.window_ms)
            self.count_throttle(quota_key, throttle)
        return throttle

    def unrecord(self, quota_key: str, user: str, client_id: str | None, value: float, now_ms: int) -> None:
        """Take back ``value`` recorded against ``quota_key`` (a Fetch throttled
        by another quota is answered empty: its bytes never went out)."""
        if quota_key not in self.cache.keys:
            return
        quota = self.cache.quota(user, client_id or "", quota_key)
        rate = None if quota is None else self.rates.get((quota_key, quota.key))
        if rate is not None:
            rate.record(-value, now_ms)

    def _sweep(self, now_ms: int) -> None:
        span = self.samples * self.window_ms
        self._next_sweep = now_ms + span
        for k in [k for k, r in self.rates.items() if r.last_ms < now_ms - span]:
            del self.rates[k]
        for k in [k for k, b in self.buckets.items() if b.last_ms < now_ms - span]:
            del self.buckets[k]  # idle that long, it is full again: as good as new
