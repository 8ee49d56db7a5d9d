"""The broker's loggers, seen and changed at run time as Kafka's BROKER_LOGGER
config resource (``kafka-configs --entity-type broker-loggers``: DescribeConfigs
and IncrementalAlterConfigs, ``odradek.apis.admin``).

The loggers are Python's: ``root`` and every logger created so far
(``odradek.replica.fetcher``, ``odradek.server.connection``, ...; also those
of the libraries the broker uses), with the packages above them
(``odradek.replica``: a level set there applies to the loggers below). Levels have Kafka's (log4j's) names:
TRACE (Python level 5, below DEBUG), DEBUG, INFO, WARN, ERROR, FATAL
(Python's CRITICAL). A logger without a level of its own is described with
the level it follows (its nearest ancestor's), as Kafka describes its own.
SET gives a logger a level; DELETE takes it back, so that the logger
follows its ancestors again (refused for ``root``). Loggers belong to the
process: brokers started in one process (``odradek.embedded``) share them.
"""

from __future__ import annotations

import logging

from odradek.config import ConfigError
from odradek.protocol.errors import INVALID_CONFIG, INVALID_REQUEST

ROOT = "root"
TRACE = 5
LEVELS = {"TRACE": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
          "ERROR": logging.ERROR, "FATAL": logging.CRITICAL}
OP_SET, OP_DELETE = 0, 1

logging.addLevelName(TRACE, "TRACE")


def level_name(level: int) -> str:
    """Kafka's name of a Python level: the highest Kafka level at or below it."""
    name = "TRACE"
    for n, v in sorted(LEVELS.items(), key=lambda kv: kv[1]):
        if level >= v:
            name = n
    return name


def _existing(name: str) -> logging.Logger | None:
    """The logger ``name``, if it or a logger below it was created (a
    package's, such as ``odradek.replica``, is made on first use)."""
    if name == ROOT:
        return logging.getLogger()
    if name not in logging.Logger.manager.loggerDict:
        return None
    return logging.getLogger(name)


def loggers() -> dict[str, str]:
    """Every logger (and package of loggers) with the level it follows, by name."""
    out = {ROOT: level_name(logging.getLogger().level)}
    for name in list(logging.Logger.manager.loggerDict):
        out[name] = level_name(logging.getLogger(name).getEffectiveLevel())
    return out


def validate(ops: list[dict]) -> None:
    """Refuse, with Kafka's errors, what IncrementalAlterConfigs ``ops`` cannot do."""
    for op in ops:
        name, kind, value = op["name"], op["config_operation"], op["value"]
        if kind not in (OP_SET, OP_DELETE):
            what = {2: "APPEND", 3: "SUBTRACT"}.get(kind, f"Unknown operation type {kind}")
            raise ConfigError(f"{what} operation is not allowed for the BROKER_LOGGER resource", INVALID_REQUEST)
        if _existing(name) is None:
            raise ConfigError(f"Logger {name} does not exist!", INVALID_CONFIG)
        if kind == OP_SET and value not in LEVELS:
            raise ConfigError(f"Cannot set the log level of {name} to {value} as it is not a supported log "
                              f"level. Valid log levels are {', '.join(sorted(LEVELS))}", INVALID_CONFIG)
        if kind == OP_DELETE and name == ROOT:
            raise ConfigError("Removing the log level of the root logger is not allowed", INVALID_REQUEST)


def apply(ops: list[dict]) -> None:
    """Apply validated ``ops``."""
    log = logging.getLogger("odradek.loggers")
    for op in ops:
        logger = _existing(op["name"])
        if op["config_operation"] == OP_SET:
            logger.setLevel(LEVELS[op["value"]])
            log.warning("Updated the log level of %s to %s", op["name"], op["value"])
        else:
            logger.setLevel(logging.NOTSET)
            log.warning("Unset the log level of %s", op["name"])
