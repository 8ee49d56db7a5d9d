"""What every client command shares: connection options, errors, parsing and output.

Only click is imported at module level; confluent-kafka and rich are imported
when a command runs, so ``odradek --help`` and ``odradek serve`` stay cheap.

Exit codes: 0 success, 1 a request failed, 2 usage error (click) or broker
unreachable, 3 unknown topic, partition or group, 130 interrupted.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import sys
import time

import click

DEFAULT_BOOTSTRAP = "localhost:9092"
DEFAULT_TIMEOUT = 10.0

EXIT_ERROR = 1
EXIT_UNREACHABLE = 2
EXIT_NOT_FOUND = 3
EXIT_INTERRUPTED = 130


# --------------------------------------------------------------------------- errors


class CliError(click.ClickException):
    """A one-line error printed as ``Error: message`` with its own exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR):
        super().__init__(message)
        self.exit_code = exit_code


class NotFound(CliError):
    def __init__(self, message: str):
        super().__init__(message, EXIT_NOT_FOUND)


_UNREACHABLE_CODES = ("_TRANSPORT", "_ALL_BROKERS_DOWN", "_TIMED_OUT", "_RESOLVE", "_WAIT_COORD")
_NOT_FOUND_CODES = ("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC", "_UNKNOWN_PARTITION", "GROUP_ID_NOT_FOUND",
                    "UNKNOWN_TOPIC_ID")


def kafka_error_name(err) -> str:
    try:
        return err.name()
    except Exception:  # noqa: BLE001
        return str(err)


def kafka_error_text(err) -> str:
    """``NAME: description`` of a KafkaError (or of the KafkaException carrying one)."""
    if hasattr(err, "args") and err.args and hasattr(err.args[0], "code"):
        err = err.args[0]
    if not hasattr(err, "code"):
        return str(err)
    name, text = kafka_error_name(err), err.str()
    return text if text.startswith(name) else f"{name}: {text}"


def translate(exc, conn: "Conn | None" = None) -> CliError:
    err = exc.args[0] if exc.args else None
    name = kafka_error_name(err) if err is not None and hasattr(err, "code") else ""
    if name in _UNREACHABLE_CODES:
        where = conn.bootstrap if conn else "the bootstrap address"
        return CliError(f"cannot reach broker at {where} ({kafka_error_text(exc)})", EXIT_UNREACHABLE)
    if name in _NOT_FOUND_CODES:
        return NotFound(kafka_error_text(exc))
    return CliError(kafka_error_text(exc))


def handle_errors(f):
    """Turn client exceptions into one-line errors with the right exit code."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            quiet_broken_pipe()
            sys.exit(0)
        except Exception as exc:
            ck = sys.modules.get("confluent_kafka")
            if ck is not None and isinstance(exc, ck.KafkaException):
                raise translate(exc, kwargs.get("conn")) from None
            raise

    return wrapper


def quiet_broken_pipe() -> None:
    """After the reader of stdout went away (``| head``): don't complain at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# --------------------------------------------------------------------------- connection


class Conn:
    """Where the cluster is and how to talk to it; clients are made on demand."""

    def __init__(self, bootstrap: str, timeout: float, extra: dict[str, str], debug: bool = False):
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.extra = extra
        self.debug = debug
        self._admin = None
        self._metadata = None

    def config(self, **overrides) -> dict:
        cfg = {
            "bootstrap.servers": self.bootstrap,
            "client.id": "odradek-cli",
            # librdkafka logs connection failures to stderr itself; we report errors our way.
            "log_level": 7 if self.debug else 0,
            "socket.connection.setup.timeout.ms": max(1000, int(self.timeout * 1000)),
        }
        cfg.update(overrides)
        cfg.update(self.extra)
        return cfg

    @property
    def plaintext(self) -> bool:
        return self.extra.get("security.protocol", "plaintext").lower() == "plaintext"

    def admin(self):
        """An AdminClient for a broker known to answer (exit 2 otherwise)."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            admin = AdminClient(self.config())
            self._metadata = self.check(admin)
            self._admin = admin
        return self._admin

    def check(self, client, topic: str | None = None):
        """Fetch cluster metadata through ``client``; exit 2 if no broker answers in time."""
        from confluent_kafka import KafkaException

        try:
            return client.list_topics(timeout=self.timeout)
        except KafkaException as exc:
            err = exc.args[0]
            if kafka_error_name(err) in _UNREACHABLE_CODES:
                raise CliError(f"cannot reach broker at {self.bootstrap} (no answer within {self.timeout:g}s)",
                               EXIT_UNREACHABLE) from None
            raise translate(exc, self) from None

    def metadata(self, refresh: bool = False):
        if self._metadata is None or refresh:
            admin = self.admin()
            if refresh:
                self._metadata = self.check(admin)
        return self._metadata

    def topic_metadata(self, name: str, client_metadata=None):
        md = client_metadata or self.metadata()
        t = md.topics.get(name)
        if t is None or (t.error is not None and kafka_error_name(t.error) in _NOT_FOUND_CODES):
            raise NotFound(f"unknown topic {name!r}")
        return t

    def wait(self, futures: dict) -> dict:
        """Results of admin futures: {key: result or KafkaException}."""
        out = {}
        for k, f in futures.items():
            try:
                out[k] = f.result()
            except Exception as exc:  # noqa: BLE001 - reported per key
                out[k] = exc
        return out


def command_config(path: str) -> dict[str, str]:
    """A Kafka client properties file (``--command-config``, as Kafka's tools
    take it) as librdkafka properties (``odradek.cli.client_properties``), the
    trust and key stores included (``ssl.truststore.location`` /
    ``ssl.keystore.location``: PEM files as they are, JKS and PKCS12 stores
    read into PEM text, ``odradek.security.keystores``). What cannot be kept
    to is refused, never silently dropped: a login that is ignored connects
    as someone else. What is passed over is warned about on stderr."""
    from odradek.cli.client_properties import PropertiesError, translate
    from odradek.config import parse_properties
    from odradek.security.keystores import KeystoreError, keystore_pem, store_type, truststore_pem

    try:
        with open(path) as fh:
            props = parse_properties(fh.read())
    except OSError as e:
        raise click.BadParameter(f"cannot read {path}: {e.strerror}", param_hint="--command-config") from None
    try:
        out = translate(props, lambda message: click.echo(f"warning: {path}: {message}", err=True))
    except PropertiesError as e:
        raise click.BadParameter(str(e), param_hint="--command-config") from None
    try:
        trust = props.get("ssl.truststore.location")
        if trust and store_type(props.get("ssl.truststore.type"), trust) == "PEM":
            out["ssl.ca.location"] = trust
        elif trust:
            out["ssl.ca.pem"] = truststore_pem(trust, props.get("ssl.truststore.password"))
        keystore = props.get("ssl.keystore.location")
        if keystore and store_type(props.get("ssl.keystore.type"), keystore) == "PEM":
            out["ssl.certificate.location"] = out["ssl.key.location"] = keystore  # the key and its chain
        elif keystore:
            out["ssl.key.pem"], out["ssl.certificate.pem"] = keystore_pem(
                keystore, props.get("ssl.keystore.password"), props.get("ssl.key.password"))
            out.pop("ssl.key.password", None)  # the key is read already
    except KeystoreError as e:
        raise click.BadParameter(str(e), param_hint="--command-config") from None
    return out


def client_options(f):
    """``-b/--bootstrap``, ``-X/--client-config``, ``--command-config``,
    ``--timeout``; the command gets ``conn``. Client properties come from
    ``--command-config`` (or ODRADEK_COMMAND_CONFIG), then the root's and the
    command's ``-X`` (or ODRADEK_CLIENT_CONFIG, ``k=v`` pairs separated by
    commas, when no ``-X`` is given), later ones winning."""

    @functools.wraps(f)
    def wrapper(*args, bootstrap, client_config, command_config_file, timeout, **kwargs):
        ctx = click.get_current_context()
        root = ctx.find_root().params
        bootstrap = (bootstrap or root.get("bootstrap") or os.environ.get("ODRADEK_BOOTSTRAP")
                     or DEFAULT_BOOTSTRAP)
        if timeout is None:
            timeout = root.get("timeout")
        if timeout is None:
            env = os.environ.get("ODRADEK_TIMEOUT")
            try:
                timeout = float(env) if env else DEFAULT_TIMEOUT
            except ValueError:
                raise click.BadParameter(f"ODRADEK_TIMEOUT must be a number, got {env!r}") from None
        extra = {}
        config_file = command_config_file or os.environ.get("ODRADEK_COMMAND_CONFIG")
        if config_file:
            extra.update(command_config(config_file))
        given = list(root.get("client_config") or ()) + list(client_config)
        if not given and os.environ.get("ODRADEK_CLIENT_CONFIG"):
            given = [kv.strip() for kv in os.environ["ODRADEK_CLIENT_CONFIG"].split(",") if kv.strip()]
        extra.update(parse_kv(given, "-X"))
        conn = Conn(bootstrap, timeout, extra, debug=bool(root.get("debug")))
        return handle_errors(f)(*args, conn=conn, **kwargs)

    wrapper = click.option("--timeout", type=float, default=None, metavar="SECONDS",
                           help="How long to wait for the broker to answer "
                                f"[env ODRADEK_TIMEOUT; default {DEFAULT_TIMEOUT:g}].")(wrapper)
    wrapper = click.option("--command-config", "command_config_file", default=None, metavar="FILE",
                           type=click.Path(dir_okay=False),
                           help="A Kafka client properties file, as Kafka's tools take it (security.protocol, "
                                "sasl.mechanism, sasl.jaas.config, key and trust stores, TLS settings) "
                                "[env ODRADEK_COMMAND_CONFIG].")(wrapper)
    wrapper = click.option("-X", "--client-config", multiple=True, metavar="KEY=VALUE",
                           help="Extra librdkafka client property, repeatable "
                                "(e.g. -X security.protocol=SSL).")(wrapper)
    wrapper = click.option("-b", "--bootstrap", default=None, metavar="HOST:PORT[,...]",
                           help=f"Broker(s) to start from [env ODRADEK_BOOTSTRAP; default {DEFAULT_BOOTSTRAP}].")(wrapper)
    return wrapper


# --------------------------------------------------------------------------- parsing


def parse_kv(items, hint: str, allow_empty_value: bool = True) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=hint)
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise click.BadParameter(f"empty key in {item!r}", param_hint=hint)
        if not v and not allow_empty_value:
            raise click.BadParameter(f"empty value in {item!r}", param_hint=hint)
        out.append((k, v))
    return out


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\"}


def unescape(s: str) -> str:
    r"""Interpret ``\n``, ``\t``, ``\r``, ``\0`` and ``\\`` (as a shell user types them)."""
    return re.sub(r"\\([ntr0\\])", lambda m: _ESCAPES[m.group(1)], s)


_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_time(text: str, hint: str) -> int:
    """Milliseconds since the epoch from ``1700000000000``, ``2024-05-01T12:00:00Z`` or ``-15m``.

    ISO 8601 without a zone means local time, as kafka-consumer-groups reads it.
    """
    from datetime import datetime

    s = text.strip()
    if re.fullmatch(r"\d+", s):
        return int(s)
    m = _RELATIVE.match(s)
    if m:
        return int(time.time() * 1000 - float(m.group(1)) * _UNIT_MS[m.group(2)])
    try:
        dt = datetime.fromisoformat(s.replace(" ", "T", 1) if re.match(r"\d{4}-\d\d-\d\d \d", s) else s)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither milliseconds since the epoch, ISO 8601 (2024-05-01T12:00:00Z) "
            "nor relative (-15m, -2h, -1d)", param_hint=hint) from None
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return int(dt.timestamp() * 1000)


def iso_time(ms: int | None) -> str:
    from datetime import datetime, timezone

    if ms is None or ms < 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def bytes_json(data: bytes | None, name: str, out: dict) -> None:
    """Put ``data`` under ``out[name]`` as text, or base64 with ``<name>_encoding`` if not UTF-8."""
    if data is None:
        out[name] = None
        return
    try:
        out[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        out[name] = base64.b64encode(data).decode("ascii")
        out[name + "_encoding"] = "base64"


def headers_json(headers) -> list[dict]:
    out = []
    for k, v in headers or ():
        h = {"key": k}
        bytes_json(v, "value", h)
        if "value_encoding" in h:
            h["encoding"] = h.pop("value_encoding")
        out.append(h)
    return out


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def partitions_text(parts) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5``."""
    parts = sorted(parts)
    out = []
    i = 0
    while i < len(parts):
        j = i
        while j + 1 < len(parts) and parts[j + 1] == parts[j] + 1:
            j += 1
        out.append(str(parts[i]) if i == j else f"{parts[i]}-{parts[j]}")
        i = j + 1
    return ",".join(out)


# --------------------------------------------------------------------------- output


class Output:
    """Tables and sections: rich on a terminal, plain aligned text otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = _isatty(self.stream)
        self._console = None
        self._first = True

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        return self._console

    def _gap(self) -> None:
        if not self._first:
            self.write("")
        self._first = False

    def write(self, line: str = "") -> None:
        self.stream.write(line + "\n")

    def section(self, title: str) -> None:
        self._gap()
        if self.tty:
            self.console.print(f"[bold]{_esc(title)}[/bold]")
        else:
            self.write(title)
            self.write("=" * len(title))
        self._first = True

    def pairs(self, rows: list[tuple[str, object]]) -> None:
        """Key/value lines, keys aligned."""
        self._gap()
        width = max((len(k) for k, _ in rows), default=0)
        for k, v in rows:
            if self.tty:
                self.console.print(f"[cyan]{_esc(k.ljust(width))}[/cyan]  {_esc(_cell(v))}")
            else:
                self.write(f"{k.ljust(width)}  {_cell(v)}".rstrip())

    def table(self, columns: list[str], rows: list[list], styles: dict[str, str] | None = None) -> None:
        self._gap()
        if self.tty:
            from rich import box
            from rich.table import Table

            t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
            for c in columns:
                t.add_column(c, style=(styles or {}).get(c),
                             justify="right" if _numeric_column(c, rows, columns) else "left")
            for r in rows:
                t.add_row(*(_esc(_cell(v)) for v in r))
            self.console.print(t)
            return
        cells = [[_cell(v) for v in r] for r in rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        self.write("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
        for r in cells:
            self.write("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())

    def error_line(self, text: str) -> None:
        click.echo(text, err=True)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _esc(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) or "-"
    return str(v)


def _numeric_column(name: str, rows, columns) -> bool:
    i = columns.index(name)
    vals = [r[i] for r in rows if r[i] is not None]
    return bool(vals) and all(isinstance(v, int) and not isinstance(v, bool) for v in vals)


def warn(text: str) -> None:
    if _isatty(sys.stderr):
        click.secho(text, err=True, fg="yellow")
    else:
        click.echo(text, err=True)


def note(text: str) -> None:
    if _isatty(sys.stderr):
        click.secho(text, err=True, dim=True)
    else:
        click.echo(text, err=True)


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
