"""A real broker inside a Python program, on its own event loop and thread.

``with odradek.Broker() as broker:`` starts a broker on an ephemeral port of
127.0.0.1 (in memory unless ``data_dir`` is given) and stops it on exit;
``broker.bootstrap`` is the ``host:port`` to give clients. The broker is the
same code ``odradek serve`` runs; only the thread around it differs.
"""

from __future__ import annotations

import asyncio
import threading

from odradek.config import BrokerConfig


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class EmbeddedBroker:
    def __init__(self, data_dir: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 node_id: int = 1, config: dict[str, str] | None = None, memory: bool | None = None):
        if memory is None:
            memory = data_dir is None
        self.config = BrokerConfig(node_id=node_id, host=host, port=port,
                                   data_dir=None if memory else data_dir,
                                   props={k: str(v) for k, v in (config or {}).items()})
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.core = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.core.port

    @property
    def host(self) -> str:
        return self.core.advertised_host

    @property
    def http_address(self) -> tuple[str, int] | None:
        """Where the HTTP listener is bound (config ``http.listener``), or None."""
        return self.core.http_address

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30) -> "EmbeddedBroker":
        from odradek.broker import BrokerCore

        self.loop = new_event_loop()
        self.core = BrokerCore(self.config)

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self.core.start())
            except BaseException as e:  # report to the starting thread
                self._error = e
                self._started.set()
                return
            self._started.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.core.stop())
            self.loop.close()

        self.thread = threading.Thread(target=run, name="odradek-broker", daemon=True)
        self.thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("broker did not start")
        if self._error is not None:
            raise self._error
        return self

    def call(self, coro_fn, *args, timeout: float = 30):
        """Run ``coro_fn(*args)`` on the broker's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro_fn(*args), self.loop).result(timeout)

    def stop(self) -> None:
        if self.thread is None:
            return
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        # A controlled shutdown may first wait for leaderships to move (odradek.broker).
        wait = 30.0
        if self.config.get_bool("controlled.shutdown.enable"):
            wait += self.config.get_int("controlled.shutdown.timeout.ms", 30000) / 1000
        self.thread.join(wait)
        self.thread = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


Broker = EmbeddedBroker
