"""The one polling wait of the integration tests."""

from __future__ import annotations

import time


def wait_until(cond, timeout: float = 20.0, what: str = "condition", *, step=None, interval: float = 0.05,
               ignore: tuple = ()) -> None:
    """Return once ``cond()`` is true; fail after ``timeout`` seconds, naming
    ``what``. ``step()``, if given, runs before each check instead of the
    sleep (polling clients, say). Exceptions of the types in ``ignore`` count
    as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        if step is not None:
            step()
        try:
            if cond():
                return
        except ignore:
            pass
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        if step is None:
            time.sleep(interval)
