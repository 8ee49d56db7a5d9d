"""The broker: the wiring of its parts, and its lifecycle.

Parts, each in its own module: the metadata store (``odradek.metadata``:
topics, configs, partition leaders, live brokers) and the image this broker
keeps of it; the broker's registration there; the replica manager
(``odradek.replica``: the partitions this broker hosts and their logs);
topic administration (``odradek.topic_admin``); the periodic duties
(``odradek.scheduler``); the group coordinator and the log cleaner; the
listeners (``odradek.server``). API handlers reach them through the broker:
``broker.replicas.partition_or_error(...)``, ``broker.image``,
``broker.admin``, ``broker.fetch_sessions`` (Fetch sessions, KIP-227).

Invariants:
- The image changes only by applying the store's changes in revision order:
  a listing at startup, then a watch (``follow_metadata``); after each
  change the replica manager reconciles the hosted partitions with it. Admin
  changes are committed to the store first and reach the image that way.
- Every broker runs a controller candidate (``odradek.cluster.controller``);
  the one holding the store's ``controller`` key moves leaderships. A clean
  stop with ``controlled.shutdown.enable`` (default true) first marks the
  registration shutting down and waits, at most
  ``controlled.shutdown.timeout.ms`` (30 s), until the image shows this
  broker leading no partition that another live ISR member could lead;
  only then do the listeners close and the registration go.
- fsync never runs on the event loop: startup (recovery, ``meta.properties``),
  opening and deleting logs, flushes, checkpoints, producer snapshots and
  shutdown run on the broker's own background threads (``odradek.background``,
  sized by ``background.threads`` and resized when that dynamic config
  changes), metadata writes on the store's thread, compaction on the
  cleaner's. Work awaited there by a task that is cancelled (the broker
  stopping) is waited for first (``BackgroundPool.run``), and ``stop()`` joins
  the background threads, so none outlives it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
import uuid

from odradek.background import BackgroundPool, configured_threads
from odradek.config import BrokerConfig, parse_properties
from odradek.fetch_sessions import FetchSessionCache
from odradek.coordinator.config import ShareGroupConfig
from odradek.share.manager import SharePartitions
from odradek.metadata import topics as topic_records
from odradek.metadata.producer_ids import ProducerIdAllocator
from odradek.metadata.store import MetadataStore
from odradek.metadata.brokers import BrokerInfo, Registration
from odradek.metadata.image import MetadataImage
from odradek.metadata.store import CompactedError, Compare, Get, Put, WatchInterrupted
from odradek.metadata.topics import TopicState
from odradek.metrics import BrokerMetrics
from odradek.replica.manager import ReplicaManager
from odradek.storage.base import LogStore
from odradek.topic_admin import TopicAdmin

log = logging.getLogger("odradek.broker")

TOPICS_FILE = "topics.json"  # where odradek kept topics before the metadata store
METADATA_DIR = "metadata"  # under the data dir; never a partition's directory name (no "-N")
PRODUCER_IDS_FILE = "producer-ids"  # where odradek kept its producer-id block before the store
META_FILE = "meta.properties"
CLUSTER_ID_KEY = "cluster/id"  # in the metadata store: the one cluster id of its brokers


class BrokerCore:
    """One odradek broker on the running event loop: ``await start()``, then serve
    until ``await stop()``; ``await load()`` alone opens its state without
    listeners. (``odradek.Broker``, for test suites, runs one in a thread of its
    own: see ``odradek.embedded``.)

    ``fs`` is the filesystem under the data dir (default: the operating
    system's); tests pass a ``FakeFileSystem`` to crash it or watch its calls.
    The metadata store is the one the ``metadata.store`` setting names
    (``--metadata-store``: ``etcd://...`` for a cluster), else SQLite at
    ``metadata_path``: by default under the data dir on the operating system's
    filesystem, else (memory mode, or another ``fs``) in memory."""

    def __init__(self, config: BrokerConfig, fs=None, metadata_path: str | None = None):
        self.config = config
        self.fs = fs
        if metadata_path is None and fs is None and config.data_dir is not None:
            metadata_path = os.path.join(config.data_dir, METADATA_DIR, "metadata.db")
        self.metadata_path = metadata_path
        self.metadata: MetadataStore | None = None
        self.image = MetadataImage()
        config.dynamic = self.image.broker_configs  # dynamic broker configs, as the store has them
        self.background = BackgroundPool(node_id=config.node_id)  # background.threads, set at start
        self.replicas = ReplicaManager(config, self.image, self.background)
        self.registration: Registration | None = None
        self.fetchers = None  # odradek.replica.fetcher.FetcherManager, once registered
        self.inter_broker_listener: str | None = None  # where followers reach leaders
        self.inter_broker_security = None  # how (odradek.security.config.InterBrokerClient), in a cluster
        self.controller = None  # odradek.cluster.controller.Controller, once registered
        self._follower: asyncio.Task | None = None
        self.fetch_sessions = FetchSessionCache.from_config(config)
        # Share groups' share-partitions and share sessions (odradek.share), led here.
        self.share = SharePartitions(ShareGroupConfig.from_broker(config), self.image.group_configs)
        self.admin: TopicAdmin | None = None  # once loaded
        from odradek.security.delegation_tokens import DelegationTokens

        self.tokens = DelegationTokens(config, self.image.tokens)  # KIP-48, on when a secret is configured
        self.producer_ids: ProducerIdAllocator | None = None  # once loaded
        self.store: LogStore | None = None
        self.connections: set = set()
        self.workers: set[asyncio.Task] = set()  # request tasks, of open and closed connections
        self.server = None  # the first listener's
        self.servers: list = []  # odradek.server.listeners.Listener, one per listener
        self.connection_limits = None  # odradek.server.listeners.ConnectionLimits, once listening
        self.endpoints: dict[str, tuple[str, int]] = {}  # listener name -> advertised (host, port)
        self.port = config.port
        self.cluster_id = config.cluster_id or ""
        self.tasks: list[asyncio.Task] = []
        self.started_at = 0.0
        self.groups = None  # group coordinator, once loaded
        self.transactions = None  # transaction coordinator, once loaded
        self.authorizer = None  # odradek.security.authorizer.Authorizer when ACLs are on
        self.cleaner = None  # log cleaner (compaction), when log.cleaner.enable
        self.metrics = BrokerMetrics()  # counted in dispatch; the rest is read at scrape time
        from odradek.security.quotas import ClientQuotas

        # Client quota accounting (the quotas are the image's), counted in dispatch.
        self.quotas = ClientQuotas(self.image.quotas, samples=config.get_int("quota.window.num", 11),
                                   window_ms=1000 * config.get_int("quota.window.size.seconds", 1))
        self.http = None  # the HTTP listener (odradek.server.http), when http.listener is set
        self.http_address: tuple[str, int] | None = None  # where it is bound
        self.console = None  # odradek.console.app.Console, served by the HTTP listener
        self.lag_history = None  # odradek.lag_history.LagHistory, sampled while the HTTP listener is on
        self.remote_high_watermarks = None  # odradek.remote_offsets, asked while the HTTP listener is on

    # -- lifecycle -------------------------------------------------------
    def open_store(self) -> LogStore:
        if self.config.data_dir is None:
            from odradek.storage.memory import MemoryLogStore

            return MemoryLogStore(auto_high_watermark=False)
        from odradek.storage.disk import DiskLogStore

        if self.fs is None:
            os.makedirs(self.config.data_dir, exist_ok=True)
        # High watermarks are kept by the partitions (odradek.replica.partition).
        return DiskLogStore(self.config.data_dir, self.fs, auto_high_watermark=False)

    async def load(self) -> None:
        """Open the metadata store and the logs: the broker's state, without
        its listeners and background tasks (``start`` runs this first)."""
        from odradek.metadata.sqlite import SqliteStore
        from odradek.metadata.store import open_store

        loop = asyncio.get_running_loop()
        url = self.config.get("metadata.store")
        self.metadata = await (open_store(url) if url else SqliteStore.open(self.metadata_path))
        self.admin = TopicAdmin(self.config, self.metadata, self.image, self.replicas,
                                on_deleted=self._topic_deleted)
        # Recovery reads the logs and may fsync: on a background thread, while
        # nothing else touches the broker's state yet.
        imported, producer_id_floor = await self.background.run(self.load_logs_and_meta)
        if imported:
            await self.import_topics(imported)
        await self.agree_cluster_id()  # after the import: that needs a store never written
        self.producer_ids = ProducerIdAllocator(self.metadata, producer_id_floor)
        revision = await self.reload_image()
        await self.background.run(self.replicas.delete_leftovers)
        self._follower = loop.create_task(self.follow_metadata(revision))

    async def reload_image(self) -> int:
        """Rebuild the image from a listing of the store and host what it
        assigns to this broker; return the listing's revision."""
        kvs, revision = await self.metadata.range("")
        self.image.load(kvs, revision)
        self.apply_broker_configs()
        await self.replicas.reconcile()
        return revision

    async def follow_metadata(self, revision: int) -> None:
        """Apply the store's changes after ``revision`` as they come; after a
        broken watch, list the store again rather than trust a resume."""
        while True:
            try:
                async for events in self.metadata.watch("", revision + 1):
                    configs = self.image.broker_configs.version
                    touched = self.image.apply(events)
                    if self.image.broker_configs.version != configs:  # a dynamic broker config changed
                        self.apply_broker_configs()
                    await self.replicas.reconcile(touched)
                    revision = events[-1].revision
            except (WatchInterrupted, CompactedError) as e:
                log.warning("metadata watch ended (%s); listing the store again", e)
                await asyncio.sleep(0.2)
            except Exception:  # a change that could not be applied: start again from a listing
                log.exception("applying a metadata change failed; listing the store again")
                await asyncio.sleep(1.0)
            else:
                continue
            try:
                revision = await self.reload_image()
            except Exception as e2:  # the store is away, or holds what cannot be read: try again
                log.warning("metadata store: %s", e2)

    def apply_broker_configs(self) -> None:
        """Follow the dynamic broker configs: the topics' defaults, the size of
        the background pool."""
        self.replicas.refresh_configs()
        try:
            self.background.resize(configured_threads(self.config))
        except ValueError as e:  # ConfigError: a value the store holds but cannot be used
            log.error("background.threads: %s; keeping %d threads", e, self.background.size)

    async def start(self) -> None:
        """Load, listen, register and start the background duties; on any
        failure, what was started is stopped again before the error goes on."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        from odradek.coordinator import start_coordinators
        from odradek.scheduler import Housekeeping
        from odradek.server.listeners import start_listeners
        from odradek.server.registry import load_all

        self.started_at = time.monotonic()
        load_all()
        self.background.resize(configured_threads(self.config))  # the static value; the dynamic one once loaded
        security = self.config.security()  # refuses unserved security settings before anything is opened
        self.inter_broker_listener = self.check_inter_broker_listener(security)
        if security.authorizer:
            from odradek.security.authorizer import Authorizer

            self.authorizer = Authorizer(self.image.acls, security.super_users, security.allow_if_no_acl)
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.create_task(self.metrics.probe_loop_lag()))  # and a warning when it was blocked
        await self.load()
        await start_listeners(self)
        from odradek.server.connection import close_idle_connections

        self.tasks.append(loop.create_task(close_idle_connections(self, self.config.get_int("connections.max.idle.ms"))))
        self.server = self.servers[0]
        self.port = self.server.sockets[0].getsockname()[1]
        self.registration = Registration(self.metadata, BrokerInfo(
            self.config.node_id, dict(self.endpoints), self.config.get("broker.rack") or None),
            self.config.get_int("broker.session.timeout.ms", 9000) / 1000)
        await self.registration.register(wait=self.registration.ttl + 2)
        self.registration.start_keepalive()
        self.start_replication()
        from odradek.cluster.controller import Controller

        self.controller = Controller(self.config, self.metadata, self.image, self.registration)
        self.tasks.append(loop.create_task(self.controller.run()))
        self.tasks.append(loop.create_task(Housekeeping(self.config, self.replicas).run()))
        if self.config.get_bool("log.cleaner.enable"):
            from odradek.storage.cleaner import LogCleaner

            self.cleaner = LogCleaner(self)
            self.tasks.append(loop.create_task(self.cleaner.run()))
        await start_coordinators(self)
        if self.config.get("http.listener"):
            await self.start_http(self.config.get("http.listener"))

    def check_inter_broker_listener(self, security) -> str:
        """The listener followers reach leaders on: ``inter.broker.listener.name``
        (or the one ``security.inter.broker.protocol`` names), else the first.
        In a cluster its client side (TLS trust, this broker's SASL login) must
        be servable, or the broker is refused at start, never half served."""
        from odradek.config import ConfigError
        from odradek.security.config import SecurityConfigError

        self.inter_broker_security = None
        if (self.config.get("metadata.store") or "").startswith("etcd://"):
            try:
                self.inter_broker_security = security.inter_broker_client()
            except SecurityConfigError as e:
                raise ConfigError(str(e)) from None
        return security.inter_broker_listener or next(iter(security.listeners))

    def start_replication(self) -> None:
        """Once registered: ISR changes are written fenced by this broker's
        epoch, followers fetch from their leaders, leaders check their ISRs."""
        from odradek.metadata.brokers import broker_key
        from odradek.metadata.store import Compare
        from odradek.replica.fetcher import FetcherManager

        registration = self.registration
        key = broker_key(self.config.node_id)
        self.replicas.metadata = self.metadata
        self.replicas.fence = lambda: Compare(key, "create_revision", "==", registration.info.epoch)
        # Followers connect from the inter-broker listener's own address, when it has one.
        bind = next((l.host for l in self.config.listeners() if l.name == self.inter_broker_listener), "")
        local_host = bind if bind not in ("", "0.0.0.0", "::") else None
        self.fetchers = FetcherManager(self.config.node_id, self.image, self.config,
                                       lambda: registration.info.epoch, self.inter_broker_listener, local_host,
                                       self.inter_broker_security, self.replicas.follower_throttle)
        self.replicas.fetchers = self.fetchers
        self.fetchers.follow(list(self.replicas.all_partitions()), [])
        self.tasks.append(asyncio.get_running_loop().create_task(self.replicas.run_isr_checks()))

    async def start_http(self, address: str) -> None:
        """Serve ``/metrics`` and the console over HTTP at ``address``
        (``[http[s]://]HOST:PORT``), on this loop, with the listener's TLS and
        login (``http.*``), and sample the groups' lag history for the console."""
        from odradek.config import ConfigError
        from odradek.console import for_broker
        from odradek.lag_history import DEFAULT_INTERVAL_MS, LagHistory
        from odradek.metrics import render
        from odradek.server.http import HttpServer, parse_address

        host, port = parse_address(address)
        http = self.config.http_security()
        try:
            interval_ms = self.config.get_int("http.lag.history.interval.ms", DEFAULT_INTERVAL_MS)
        except ValueError:
            raise ConfigError(f"http.lag.history.interval.ms={self.config.get('http.lag.history.interval.ms')}: "
                              f"expected a whole number of ms (0: off)") from None
        authenticate = None
        if http.login:
            check = self.password_check()
            if not check.servable():
                raise ConfigError("http.authentication=sasl: no listener enables PLAIN or SCRAM, so there is no "
                                  "SASL user to log in as")
            if http.ssl_context is None:
                log.warning("http.authentication=sasl over plain http://: passwords and session cookies cross "
                            "the network in clear (http.listener=https://HOST:PORT with http.ssl.* serves TLS)")

            async def authenticate(req):
                """/metrics: a SASL user's password (HTTP Basic), and under ACLs
                DESCRIBE on the cluster, as Kafka asks to describe the cluster
                (the series name every topic and group)."""
                from odradek.console.sessions import basic_credentials
                from odradek.security.authorizer import CLUSTER, Operation
                from odradek.security.principal import USER, KafkaPrincipal

                basic = basic_credentials(req.headers)
                login = await check.check(*basic, cached=True) if basic is not None else None
                if login is None:
                    return 401, "log in (HTTP Basic) as one of the broker's SASL users"
                if self.authorizer is not None and not self.authorizer.authorize(
                        KafkaPrincipal(USER, login.user), req.peer, Operation.DESCRIBE, CLUSTER):
                    return 403, f"User:{login.user} may not DESCRIBE the cluster, which /metrics needs"
                return None
        self.lag_history = LagHistory()
        self.console = for_broker(self)
        self.http = HttpServer(lambda: render(self), app=self.console, authenticate=authenticate)
        self.http_address = await self.http.start(host, port, http.ssl_context)
        if interval_ms > 0:
            loop = asyncio.get_running_loop()
            from odradek.remote_offsets import RemoteHighWatermarks

            self.remote_high_watermarks = RemoteHighWatermarks(self, interval_ms / 1000)
            self.tasks.append(loop.create_task(self.remote_high_watermarks.run()))
            self.tasks.append(loop.create_task(self.lag_history.run(self, interval_ms / 1000)))

    def password_check(self):
        """Checks a user name and password against this broker's SASL users
        (``odradek.security.login``), for the HTTP listener's login."""
        if getattr(self, "_password_check", None) is None:
            from odradek.security.login import PasswordCheck
            from odradek.security.scram import ScramStore

            self._password_check = PasswordCheck(self.config.security(), ScramStore(self.metadata).get,
                                                 self.endpoint)
        return self._password_check

    async def controlled_shutdown(self) -> bool:
        """Announce this broker's shutdown in its registration and wait (at most
        ``controlled.shutdown.timeout.ms``) until the controller has moved away
        every leadership another live ISR member can take; return whether it did."""
        from odradek.cluster.controller import leads_movable

        reg = self.registration
        if reg is None or not reg.lease or self._follower is None or not await reg.mark_shutting_down():
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.get_int("controlled.shutdown.timeout.ms", 30000) / 1000
        me = self.config.node_id
        while True:
            info = self.image.brokers.get(me)
            if info is not None and info.shutting_down and not leads_movable(self.image, me):
                return True
            left = deadline - loop.time()
            if left <= 0:
                log.warning("controlled shutdown: leaderships not moved within the timeout: %s",
                            leads_movable(self.image, me)[:10])
                return False
            await self.image.next_change(left)

    async def stop(self) -> None:
        if self.config.get_bool("controlled.shutdown.enable"):
            try:
                await self.controlled_shutdown()
            except Exception:  # the stop goes on regardless
                log.exception("controlled shutdown failed")
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self.tasks.clear()
        self.share.stop()
        if self.fetchers is not None:
            self.replicas.fetchers = None
            await self.fetchers.stop()
        if self.http is not None:
            await self.http.stop()
            self.http = None
        if self.console is not None:
            self.console.close()
            self.console = None
        if self.server is not None:
            for server in self.servers:
                server.close()
            workers = [w for w in self.workers if not w.done()]
            for conn in list(self.connections):
                conn.abort()
            for w in workers:  # requests still waiting (long polls, joins) end with the broker
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for server in self.servers:
                await server.wait_closed()
            self.servers.clear()
            self.server = None
        if self.transactions is not None:
            await self.transactions.stop()
        if self.share.coordinator is not None:
            await self.share.coordinator.stop()
        if self.groups is not None:
            await self.groups.stop()
        if self.registration is not None:
            await self.registration.withdraw()
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        await self.replicas.wait_for_flushes()
        if self.store is not None:
            store = self.store
            self.store = self.replicas.store = None
            parts = list(self.replicas.all_partitions())
            from odradek.producers import write_snapshot

            snapshots = [p.producers.snapshot(p.log) for p in parts]  # on the loop: consistent

            def close_all():
                for p, snapshot in zip(parts, snapshots):
                    try:
                        p.log.flush()
                        write_snapshot(p.log, snapshot)
                        p.log.close()
                    except Exception:  # keep closing the others
                        log.exception("closing %s-%d", p.topic.name, p.index)
                store.close()

            await self.background.run(close_all)
        if self.metadata is not None:
            metadata, self.metadata = self.metadata, None
            await metadata.close()
        await self.background.aclose()  # joins its threads, those of replaced pools too

    @property
    def advertised_host(self) -> str:
        """The first listener's advertised host."""
        return next(iter(self.endpoints.values()))[0]

    def endpoint(self, listener: str | None = None) -> tuple[str, int]:
        """Advertised (host, port) of ``listener`` (the one a request came in on)."""
        if listener in self.endpoints:
            return self.endpoints[listener]
        return next(iter(self.endpoints.values()))

    # -- persistent metadata --------------------------------------------
    def load_logs_and_meta(self) -> tuple[list[TopicState], int]:
        """Open the log store and load the cluster id (blocking); return what an
        older odradek kept in files: the topics of its ``topics.json`` and the end
        of its last producer-id block."""
        self.store = self.replicas.store = self.open_store()
        self.load_meta()
        raw = self.store.read_metadata(TOPICS_FILE)
        topics = [] if raw is None else topic_records.import_registry(raw, self.config.node_id)
        raw = self.store.read_metadata(PRODUCER_IDS_FILE)
        return topics, int(raw) if raw else 0

    async def import_topics(self, topics: list[TopicState]) -> None:
        """Write the topics of an older ``topics.json`` into a store never written
        before (after that, ``topics.json`` is ignored)."""
        _, revision = await self.metadata.range(topic_records.TOPICS)
        if revision == 0:
            for t in topics:
                await self.metadata.txn(*topic_records.create_topic_txn(t))
            log.info("imported %d topics from %s into the metadata store", len(topics), TOPICS_FILE)

    def load_meta(self) -> None:
        raw = self.store.read_metadata(META_FILE)
        props = parse_properties(raw.decode()) if raw else {}
        self.meta_cluster_id = props.get("cluster.id") or None  # what the data dir held
        if props.get("cluster.id"):
            self.cluster_id = props["cluster.id"]
        if not self.cluster_id:
            self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if props.get("cluster.id") != self.cluster_id:
            self.write_meta()

    def write_meta(self) -> None:
        text = f"version=1\ncluster.id={self.cluster_id}\nnode.id={self.config.node_id}\n"
        self.store.write_metadata(META_FILE, text.encode())

    async def agree_cluster_id(self) -> None:
        """Every broker of a metadata store reports one cluster id: the first to
        start writes its own (only if there is none), the others take it. As in
        Kafka, a data dir that already belongs to another cluster is refused."""
        done = await self.metadata.txn([Compare(CLUSTER_ID_KEY, "version", "==", 0)],
                                       [Put(CLUSTER_ID_KEY, self.cluster_id.encode())], [Get(CLUSTER_ID_KEY)])
        if done.succeeded:
            return
        theirs = done.reads[0][0].value.decode()
        if theirs == self.cluster_id:
            return
        if self.meta_cluster_id is not None:
            raise RuntimeError(f"the data dir {self.config.data_dir} belongs to cluster {self.meta_cluster_id}, "
                               f"the metadata store to cluster {theirs}; remove its {META_FILE} to join it")
        self.cluster_id = theirs
        await self.background.run(self.write_meta)

    def _topic_deleted(self, name: str) -> None:
        if self.groups is not None:
            self.groups.on_topic_deleted(name)
