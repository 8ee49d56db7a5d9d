"""Wall-clock time as Kafka counts it: milliseconds since the epoch."""

import time


def now_ms() -> int:
    return int(time.time() * 1000)
