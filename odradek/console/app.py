"""The console's pages: routes, their Kafka requests and their templates.

Theory of operation: ``Console.__call__`` is the HTTP listener's ``app``
(``odradek.server.http``): it maps a request to one handler, which asks the
cluster through ``ClusterClient`` and renders a Jinja2 template (autoescaped:
topic names, keys, values and headers are untrusted). Pages that change
state are HTML forms posted with the console's CSRF token, and refused when
the token is wrong or the browser says the form came from another origin;
each answers with a redirect (303) to the page it changed. Bad input
(unknown topic or group, an offset that is not a number) gives an error page
with a 4xx status; a failed Kafka request gives one with 502; anything else
a bare 500 without details (the traceback goes to the log).

Two answers are streams: the live tail (server-sent events, one long-poll
Fetch per leader over connections of its own, resumable by the offsets in
each event's id) and the JSON-lines download (read and sent in pieces as
the client takes them). Pages show at most ``BROWSE_BYTES`` of records and
``SHOW_LIMIT`` of one value, so a topic of large records cannot fill the
broker's memory.

Rates and sparklines come from the high watermarks sampled when a page that
lists them is rendered (at most once a second, the last ``HISTORY`` samples
kept, per principal), so they cover the time the console has been watched.
A group's lag history is the broker's (``odradek.lag_history``, sampled
whether or not a page watches) when embedded and the broker keeps one for
the group; otherwise sampled likewise while its page is watched.

With a login (``sessions``), each request runs as its session's user: the
``client`` property is that session's ``ClusterClient`` (the request's task
holds it in a context variable), so the brokers' authoriser decides.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import datetime
import hmac
import json
import logging
import secrets
import time
from collections import deque
from importlib import resources
from urllib.parse import quote, urlencode, urlsplit

import jinja2

from odradek import __version__
from odradek.console.client import ClusterClient, KafkaError
from odradek.protocol import errors
from odradek.server.http import HttpRequest, HttpResponse

log = logging.getLogger("odradek.console")

HISTORY = 60
TAIL_CHECK = 5.0  # seconds between a live tail's checks for added partitions or a deleted topic
MAX_GROUP_HISTORIES = 1000
MAX_FIRST_UNREAD = 10_000
BROWSE_LIMIT = 500
DOWNLOAD_LIMIT = 100_000
BROWSE_BYTES = 8 << 20  # a page shows at most this much of keys and values...
DOWNLOAD_BYTES = 64 << 20  # ...and a download holds at most this much,
DOWNLOAD_CHUNK = 1 << 20  # sent in pieces of about this much as the client reads them
SHOW_LIMIT = 64 * 1024  # of one key or value, on a page
STATIC = {"htmx.min.js": "text/javascript", "console.css": "text/css", "console.js": "text/javascript",
          "htmx.LICENSE": "text/plain"}
NOT_FOUND_CODES = {errors.UNKNOWN_TOPIC_OR_PARTITION, errors.GROUP_ID_NOT_FOUND}
REFUSED_CODES = {errors.TOPIC_AUTHORIZATION_FAILED, errors.GROUP_AUTHORIZATION_FAILED,
                 errors.CLUSTER_AUTHORIZATION_FAILED, errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
OPEN_PATHS = {"/login"}  # served without a login (with the static files)
# The session of the request being answered (each HTTP request is its own task).
_session = contextvars.ContextVar("console_session", default=None)


class BadInput(Exception):
    """The request itself is wrong: answered 400 (or ``status``) with the message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1


def _int(form: dict, name: str, default: int | None = None, lo: int | None = None, hi: int = INT32_MAX) -> int:
    raw = (form.get(name) or "").strip()
    if not raw:
        if default is None:
            raise BadInput(f"{name}: a number is needed")
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BadInput(f"{name}: {raw!r} is not a whole number") from None
    if lo is not None and v < lo:
        raise BadInput(f"{name}: {v} is below {lo}")
    if not -hi - 1 <= v <= hi:
        raise BadInput(f"{name}: {v} is out of range")
    return v


def _time_ms(raw: str) -> int:
    """A timestamp in ms, or an ISO 8601 date-time (UTC unless it says)."""
    raw = raw.strip()
    if raw.lstrip("-").isdigit():
        ms = int(raw)
    else:
        try:
            dt = datetime.datetime.fromisoformat(raw)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=datetime.timezone.utc)
            ms = int(dt.timestamp() * 1000)
        except (ValueError, OverflowError):
            raise BadInput(f"timestamp: {raw!r} is neither ms since the epoch nor an ISO date-time") from None
    if not 0 <= ms <= INT64_MAX:
        raise BadInput(f"timestamp: {raw!r} is out of range")
    return ms


def show_bytes(data: bytes | None, fmt: str = "auto", limit: int = SHOW_LIMIT) -> dict:
    """How to show a key or value: {kind: null|text|json|hex, text, cut}; only
    its first ``limit`` bytes (``cut``: how many more there are)."""
    if data is None:
        return {"kind": "null", "text": "null", "cut": 0}
    cut = max(len(data) - limit, 0)
    if cut:
        data = data[:limit]
    if fmt in ("auto", "json") and not cut:
        try:
            obj = json.loads(data)
            if fmt == "json" or isinstance(obj, (dict, list)):
                return {"kind": "json", "text": json.dumps(obj, indent=2, ensure_ascii=False), "cut": 0}
        except ValueError:
            pass
    if fmt in ("auto", "text", "json"):
        try:
            return {"kind": "text", "text": data.decode("utf-8"), "cut": cut}
        except UnicodeDecodeError:
            if fmt == "text" or cut:
                return {"kind": "text", "text": data.decode("utf-8", "replace"), "cut": cut}
    return {"kind": "hex", "text": data.hex(" "), "cut": cut}


def json_bytes(data: bytes | None) -> dict:
    if data is None:
        return {"value": None}
    try:
        return {"value": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(data).decode(), "encoding": "base64"}


def record_json(topic: str, partition: int, r) -> str:
    return json.dumps({"topic": topic, "partition": partition, "offset": r.offset, "timestamp": r.timestamp,
                       "key": json_bytes(r.key), "value": json_bytes(r.value),
                       "headers": [{"key": k, **json_bytes(v)} for k, v in r.headers]}, ensure_ascii=False)


def decode_assignment(data: bytes) -> list[tuple[str, list[int]]]:
    """A consumer member's assignment (ConsumerProtocolAssignment); [] when not readable."""
    from odradek.protocol.consumer_protocol import decode_assignment as decode

    try:
        partitions, _ = decode(data)
    except ValueError:  # another protocol's bytes
        return []
    return [(t, sorted(ps)) for t, ps in partitions.items()]


def sparkline(values: list[float], width: int = 120, height: int = 24) -> str:
    """An SVG polyline's points for ``values`` (no markup: the template draws it)."""
    if len(values) < 2:
        return ""
    top = max(values) or 1.0
    step = width / (len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}" for i, v in enumerate(values))


def fmt_age(ms: float | None) -> str:
    if ms is None:
        return "–"
    s = ms / 1000
    if s < 1:
        return f"{ms:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def fmt_bytes(n: int | None) -> str:
    if n is None or n < 0:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def fmt_time(ms: int) -> str:
    if ms is None or ms < 0:
        return "–"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class Unavailable:
    """The app of a broker whose console cannot be served: every page says why."""

    def __init__(self, reason: str):
        self.reason = reason
        self.client = None

    def close(self) -> None:
        pass

    async def __call__(self, req: HttpRequest) -> HttpResponse:
        return HttpResponse(503, (self.reason + "\n").encode(), "text/plain; charset=utf-8")


class Console:
    def __init__(self, client: ClusterClient, title: str = "odradek", server_version: str | None = None,
                 sessions=None, lag_history=None):
        """``sessions``: ``odradek.console.sessions.Sessions`` when the console
        asks for a login (each user's pages then use that user's client)."""
        self.default_client = client
        self.sessions = sessions
        # group -> [(wall time, lag, lag in s)] the broker samples while no page watches, when embedded
        self.broker_history = lag_history
        self.title = title
        self.server_version = server_version  # the broker's, when embedded
        self.csrf = secrets.token_urlsafe(24)
        # principal ("" without a login) -> watermark samples, so no one sees rates of topics hidden from them
        self.all_samples: dict[str, deque[tuple[float, dict[str, int]]]] = {}
        self.lag_history: dict[str, deque[tuple[float, int]]] = {}  # group -> (when, total lag)
        # (topic, partition, offset, principal) -> the timestamp of the record there (it does not change)
        self.first_unread: dict[tuple[str, int, int, str], int] = {}
        self.env = jinja2.Environment(loader=jinja2.PackageLoader("odradek.console", "templates"),
                                      autoescape=True, trim_blocks=True, lstrip_blocks=True)
        self.env.globals.update(title=title, version=__version__, q=quote, fmt_age=fmt_age,
                                fmt_bytes=fmt_bytes,
                                fmt_time=fmt_time, show=show_bytes, sparkline=sparkline)
        self.static = {name: resources.files("odradek.console").joinpath("static", name).read_bytes()
                       for name in STATIC}
        self.routes = [
            ("GET", ("login",), self.login_page),
            ("POST", ("login",), self.login),
            ("POST", ("logout",), self.logout),
            ("GET", ("",), self.overview),
            ("GET", ("topics",), self.topics),
            ("POST", ("topics",), self.create_topic),
            ("GET", ("topics", None), self.topic),
            ("POST", ("topics", None, "delete"), self.delete_topic),
            ("POST", ("topics", None, "partitions"), self.add_partitions),
            ("POST", ("topics", None, "config"), self.alter_config),
            ("GET", ("topics", None, "messages"), self.messages),
            ("GET", ("topics", None, "messages.jsonl"), self.download),
            ("POST", ("topics", None, "produce"), self.produce),
            ("GET", ("topics", None, "tail"), self.tail),
            ("GET", ("groups",), self.groups),
            ("GET", ("groups", None), self.group),
            ("POST", ("groups", None, "reset"), self.reset_offsets),
            ("POST", ("groups", None, "delete"), self.delete_group),
            ("GET", ("acls",), self.acls),
            ("POST", ("acls",), self.create_acl),
            ("POST", ("acls", "delete"), self.delete_acl),
            ("GET", ("users",), self.users),
            ("POST", ("users",), self.set_user),
            ("POST", ("users", "delete"), self.delete_user),
            ("GET", ("quotas",), self.quotas),
            ("POST", ("quotas",), self.set_quota),
            ("POST", ("quotas", "delete"), self.delete_quota),
        ]

    @property
    def client(self) -> ClusterClient:
        """The cluster as the request's user sees it (the console's own client without a login)."""
        s = _session.get()
        return s.client if s is not None else self.default_client

    @property
    def samples(self) -> deque:
        s = _session.get()
        key = s.principal if s is not None else ""
        got = self.all_samples.get(key)
        if got is None:
            got = self.all_samples[key] = deque(maxlen=HISTORY)
            while len(self.all_samples) > MAX_GROUP_HISTORIES:
                del self.all_samples[next(iter(self.all_samples))]
        return got

    def close(self) -> None:
        if self.default_client is not None:
            self.default_client.close()
        if self.sessions is not None:
            self.sessions.close()

    # -- dispatch ------------------------------------------------------------
    async def __call__(self, req: HttpRequest) -> HttpResponse:
        """Answer ``req``, with the time it took in a ``Server-Timing`` header:
        ``app`` the wall time, ``cpu`` the event loop thread's CPU time meanwhile
        (the console's work, and the broker's answering it when embedded, plus
        whatever else the loop ran then)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        resp = await self.dispatch(req)
        resp.headers.append(("server-timing", f"app;dur={(time.perf_counter() - t0) * 1000:.2f}, "
                                              f"cpu;dur={(time.thread_time() - c0) * 1000:.2f}"))
        return resp

    async def dispatch(self, req: HttpRequest) -> HttpResponse:
        # A request's task may be made from the previous one's (pipelining), context and all: start afresh.
        _session.set(None)
        if req.path.startswith("/static/"):
            name = req.path[len("/static/"):]
            if name in STATIC and req.method in ("GET", "HEAD"):
                return HttpResponse(200, self.static[name], STATIC[name] + "; charset=utf-8",
                                    [("cache-control", "max-age=3600")])
            return self.error_page(req, 404, f"No such file: {req.path}")
        if self.sessions is not None and req.path not in OPEN_PATHS:
            session, basic = await self.sessions.find(req.headers)
            if session is None:
                return self.unauthenticated(req, basic)
            _session.set(session)
        parts = tuple(req.path.strip("/").split("/")) if req.path.strip("/") else ("",)
        allowed = set()
        for method, pattern, handler in self.routes:
            if len(pattern) != len(parts) or any(p is not None and p != x for p, x in zip(pattern, parts)):
                continue
            allowed.add(method)
            if method == req.method or (method == "GET" and req.method == "HEAD"):
                args = [x for p, x in zip(pattern, parts) if p is None]
                if any(not a for a in args):
                    break
                try:
                    if method == "POST":
                        self.check_origin(req)
                    return await handler(req, *args)
                except BadInput as e:
                    return self.error_page(req, e.status, str(e))
                except KafkaError as e:
                    session = _session.get()
                    if e.code == errors.SASL_AUTHENTICATION_FAILED and session is not None:
                        # the user's password changed or the user went: the session ends with it
                        log.info("console: %s logged out: %s", session.principal, e)
                        self.sessions.logout(session)
                        return self.unauthenticated(req, False)
                    status = 404 if e.code in NOT_FOUND_CODES else 403 if e.code in REFUSED_CODES else 502
                    return self.error_page(req, status, str(e))
                except Exception:
                    log.exception("console: %s %s failed", req.method, req.path)
                    return self.error_page(req, 500, "Internal error (the details are in the console's log)")
        if allowed:
            return self.error_page(req, 405, f"{req.method} is not served at {req.path}",
                                   [("allow", ", ".join(sorted(allowed)))])
        return self.error_page(req, 404, f"No page at {req.path}")

    def check_origin(self, req: HttpRequest) -> None:
        """A state-changing form must carry this console's token, and come from
        this origin when the browser says where it came from."""
        form = req.form()
        if not hmac.compare_digest(form.get("csrf", ""), self.csrf_token()):
            raise BadInput("This form is stale or came from another site (CSRF token missing or wrong): "
                           "reload the page and try again", 403)
        origin = req.headers.get("origin") or req.headers.get("referer")
        if origin and origin != "null" and urlsplit(origin).netloc != req.headers.get("host", ""):
            raise BadInput(f"Refused a form posted from another origin ({origin})", 403)

    def csrf_token(self) -> str:
        s = _session.get()
        return s.csrf if s is not None else self.csrf

    def render(self, template: str, code: int = 200, headers=None, **ctx) -> HttpResponse:
        s = _session.get()
        ctx.setdefault("csrf", self.csrf_token())
        body = self.env.get_template(template).render(user=s.user if s is not None else None, **ctx).encode()
        return HttpResponse(code, body, headers=[("cache-control", "no-store"), *(headers or [])])

    def error_page(self, req: HttpRequest, status: int, message: str, headers=None) -> HttpResponse:
        return self.render("error.html", status, headers, page="", status=status, message=message, path=req.path)

    # -- login -----------------------------------------------------------------
    def unauthenticated(self, req: HttpRequest, basic: bool) -> HttpResponse:
        """No session: HTTP Basic refused is 401 (with its challenge); a page
        asked by a browser goes to the login form; anything else is 401."""
        if basic:
            return self.error_page(req, 401, "Wrong user name or password",
                                   [("www-authenticate", 'Basic realm="odradek", charset="UTF-8"')])
        if req.method in ("GET", "HEAD") and not req.headers.get("hx-request"):
            target = req.path + ("?" + urlencode(req.query) if req.query else "")
            return self.redirect("/login", next=target if target != "/" else None)
        return self.error_page(req, 401, "Log in first", [("hx-redirect", "/login")])

    @staticmethod
    def _next(target: str | None) -> str:
        """Where to go after logging in: a path on this site only."""
        target = target or "/"
        return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"

    async def login_page(self, req: HttpRequest) -> HttpResponse:
        if self.sessions is None:
            return self.redirect("/")
        return self.render("login.html", page="login", next=self._next(req.query.get("next")))

    async def login(self, req: HttpRequest) -> HttpResponse:
        if self.sessions is None:
            return self.redirect("/")
        form = req.form()
        session = await self.sessions.login((form.get("user") or "").strip(), form.get("password") or "")
        if session is None:
            return self.render("login.html", 401, page="login", next=self._next(form.get("next")),
                               failed=True, name=form.get("user") or "")
        log.info("console: %s logged in", session.principal)
        return HttpResponse(303, b"", headers=[("location", self._next(form.get("next"))),
                                               ("set-cookie", self.sessions.cookie(session))])

    async def logout(self, req: HttpRequest) -> HttpResponse:
        s = _session.get()
        if self.sessions is not None and s is not None:
            self.sessions.logout(s)
        headers = [("location", "/login")]
        if self.sessions is not None:
            headers.append(("set-cookie", self.sessions.clear_cookie()))
        return HttpResponse(303, b"", headers=headers)

    @staticmethod
    def redirect(path: str, **query) -> HttpResponse:
        q = {k: v for k, v in query.items() if v is not None}
        return HttpResponse(303, b"", headers=[("location", path + ("?" + urlencode(q) if q else ""))])

    # -- sampling --------------------------------------------------------------
    async def sample(self) -> dict[tuple[str, int], tuple[int, int]]:
        """Watermarks of every topic; kept as a sample unless one was taken within a second."""
        marks = await self.client.watermarks()
        now = time.monotonic()
        if not self.samples or now - self.samples[-1][0] >= 1.0:
            per_topic: dict[str, int] = {}
            for (t, _), (_, hw) in marks.items():
                per_topic[t] = per_topic.get(t, 0) + max(hw, 0)
            self.samples.append((now, per_topic))
        return marks

    def rates(self, topic: str | None) -> list[float]:
        """Records per second between successive samples (of ``topic``, or of all)."""
        out = []
        s = list(self.samples)
        for (t0, a), (t1, b) in zip(s, s[1:]):
            if topic is None:
                d = sum(b.values()) - sum(a.get(k, 0) for k in b)
            else:
                d = b.get(topic, 0) - a.get(topic, 0)
            out.append(max(d, 0) / max(t1 - t0, 1e-6))
        return out

    # -- overview ----------------------------------------------------------------
    async def overview(self, req: HttpRequest) -> HttpResponse:
        cluster = await self.client.metadata()
        marks, disk = await asyncio.gather(self.sample(), self.client.log_dirs())
        partitions = [p for t in cluster.topics.values() for p in t.partitions]
        under = [(t.name, p) for t in cluster.topics.values() for p in t.partitions
                 if p.leader >= 0 and len(p.isr) < len(p.replicas)]
        offline = [(t.name, p) for t in cluster.topics.values() for p in t.partitions if p.leader < 0]
        rates = self.rates(None)
        leaders: dict[int, int] = {}
        for p in partitions:
            leaders[p.leader] = leaders.get(p.leader, 0) + 1
        return self.render(
            "overview.html", page="overview", cluster=cluster, features=self.client.features,
            server_version=self.server_version, topics=len(cluster.topics), disk=disk[0] if disk else None,
            internal=sum(t.internal for t in cluster.topics.values()), partitions=len(partitions),
            under=under, offline=offline, leaders=leaders,
            records=sum(max(hw - ls, 0) for ls, hw in marks.values() if hw >= 0),
            rate=rates[-1] if rates else None, spark=sparkline(rates))

    # -- topics --------------------------------------------------------------------
    async def topics(self, req: HttpRequest) -> HttpResponse:
        cluster = await self.client.metadata()
        marks, disk = await asyncio.gather(self.sample(), self.client.log_dirs())
        sizes = disk[1] if disk else None
        show_internal = req.query.get("internal") == "1"
        rows = []
        for t in cluster.topics.values():
            if t.internal and not show_internal:
                continue
            ms = [marks.get((t.name, p.index), (-1, -1)) for p in t.partitions]
            rates = self.rates(t.name)
            rows.append({"name": t.name, "internal": t.internal, "partitions": len(t.partitions),
                         "replication": max((len(p.replicas) for p in t.partitions), default=0),
                         "records": sum(max(hw - ls, 0) for ls, hw in ms if hw >= 0),
                         "size": sum(sizes.get((t.name, p.index), 0) for p in t.partitions) if sizes is not None
                         else None,
                         "under": sum(1 for p in t.partitions if p.leader >= 0 and len(p.isr) < len(p.replicas)),
                         "offline": sum(1 for p in t.partitions if p.leader < 0),
                         "rate": rates[-1] if rates else None, "spark": sparkline(rates[-20:], 80, 18)})
        return self.render("topics.html", page="topics", rows=rows, show_internal=show_internal,
                           sizes=sizes is not None,
                           done=req.query.get("done"))

    async def create_topic(self, req: HttpRequest) -> HttpResponse:
        form = req.form()
        name = (form.get("name") or "").strip()
        if not name:
            raise BadInput("name: a topic name is needed")
        configs = {}
        for line in (form.get("configs") or "").splitlines():
            if line.strip():
                k, sep, v = line.partition("=")
                if not sep:
                    raise BadInput(f"configs: expected KEY=VALUE, got {line.strip()!r}")
                configs[k.strip()] = v.strip()
        await self.client.create_topic(name, _int(form, "partitions", 1, 1), _int(form, "replication", -1),
                                       configs)
        return self.redirect(f"/topics/{quote(name, safe='')}", done=f"Created topic {name}")

    async def topic(self, req: HttpRequest, name: str) -> HttpResponse:
        t = await self.client.topic(name)
        marks, configs, disk = await asyncio.gather(self.client.watermarks([name]), self.refusable(
            self.client.topic_configs(name)), self.client.log_dirs())
        sizes = disk[1] if disk else None
        rows = [{"p": p, "start": marks[(name, p.index)][0], "end": marks[(name, p.index)][1],
                 "size": sizes.get((name, p.index), 0) if sizes is not None else None} for p in t.partitions]
        return self.render("topic.html", page="topics", topic=t, rows=rows, configs=configs, sizes=sizes is not None,
                           records=sum(max(r["end"] - r["start"], 0) for r in rows), done=req.query.get("done"))

    @staticmethod
    async def refusable(aw):
        """``await aw``, or the refusal (a string) when the user may not see it:
        one part of a page the authoriser hides, the rest shown."""
        try:
            return await aw
        except KafkaError as e:
            if e.code in REFUSED_CODES:
                return str(e)
            raise

    async def delete_topic(self, req: HttpRequest, name: str) -> HttpResponse:
        await self.client.topic(name)
        if req.form().get("confirm") != name:
            raise BadInput(f"To delete {name!r}, type its name in the confirmation field")
        await self.client.delete_topic(name)
        return self.redirect("/topics", done=f"Deleted topic {name}")

    async def add_partitions(self, req: HttpRequest, name: str) -> HttpResponse:
        await self.client.add_partitions(name, _int(req.form(), "count", None, 1))
        return self.redirect(f"/topics/{quote(name, safe='')}", done="Partitions added")

    async def alter_config(self, req: HttpRequest, name: str) -> HttpResponse:
        form = req.form()
        key = (form.get("key") or "").strip()
        if not key:
            raise BadInput("key: a config name is needed")
        await self.client.topic(name)
        value = None if form.get("reset") else form.get("value", "")
        await self.client.alter_topic_config(name, key, value)
        return self.redirect(f"/topics/{quote(name, safe='')}",
                             done=f"{key} reset to its default" if value is None else f"{key} set to {value}")

    # -- messages ---------------------------------------------------------------------
    async def read_range(self, name: str, q: dict, limit_max: int, max_bytes: int) -> dict:
        """The records a browse or download asks for: partition, start (offset,
        or timestamp, or the last ``limit``), key filter, limit; stopping once
        their keys and values pass ``max_bytes``."""
        t = await self.client.topic(name)
        partition = _int(q, "partition", 0, 0)
        if partition >= len(t.partitions):
            raise BadInput(f"partition: {name} has partitions 0 to {len(t.partitions) - 1}", 404)
        limit = min(_int(q, "limit", 50, 1), limit_max)
        marks = await self.client.watermarks([name])
        start, end = marks[(name, partition)]
        if q.get("timestamp", "").strip():
            ts = _time_ms(q["timestamp"])
            found = await self.client.list_offsets([(name, partition)], ts)
            offset = found[(name, partition)][0]
            if offset < 0:
                offset = end
        elif q.get("offset", "").strip():
            offset = _int(q, "offset", None, hi=INT64_MAX)
            if offset < 0:  # from the end
                offset = max(end + offset, start)
        else:
            offset = max(end - limit, start)
        key = q.get("key") or ""
        records, scanned, size = [], 0, 0
        pos = max(offset, start)
        deadline = time.monotonic() + 5.0
        while pos < end and len(records) < limit and time.monotonic() < deadline:
            batch, _, _ = await self.client.fetch(name, partition, pos)
            if not batch:
                break
            for r in batch:
                if r.offset >= end:
                    break
                pos = r.offset + 1  # the next to read: where "next records" goes on
                scanned += 1
                if key and (r.key is None or key.encode() not in r.key):
                    continue
                records.append(r)
                size += len(r.key or b"") + len(r.value or b"")
                if len(records) >= limit or size >= max_bytes:
                    break
            else:
                pos = max(pos, batch[-1].offset + 1)
                continue
            break
        return {"topic": t, "partition": partition, "offset": offset, "start": start, "end": end,
                "limit": limit, "key": key, "records": records, "scanned": scanned, "next": pos}

    async def messages(self, req: HttpRequest, name: str) -> HttpResponse:
        got = await self.read_range(name, req.query, BROWSE_LIMIT, BROWSE_BYTES)
        fmt = req.query.get("format", "auto")
        if fmt not in ("auto", "text", "json", "hex"):
            raise BadInput(f"format: {fmt!r} is not one of auto, text, json, hex")
        rest = {k: v for k, v in req.query.items() if k not in ("offset", "timestamp", "done")}
        return self.render("messages.html", page="topics", fmt=fmt, query=req.query,
                           qs=urlencode({**rest, "offset": got["offset"]}),
                           next_qs=urlencode({**rest, "offset": got["next"]}), done=req.query.get("done"), **got)

    async def download(self, req: HttpRequest, name: str) -> HttpResponse:
        """The range as JSON lines, streamed as it is read (at most
        ``DOWNLOAD_LIMIT`` records or ``DOWNLOAD_BYTES``)."""
        q = dict(req.query)
        q.setdefault("limit", str(DOWNLOAD_LIMIT))
        if not q.get("offset", "").strip() and not q.get("timestamp", "").strip():
            q["offset"] = str(-min(_int(q, "limit", DOWNLOAD_LIMIT, 1), DOWNLOAD_LIMIT))  # the last ones
        first = await self.read_range(name, {**q, "limit": "1"}, 1, DOWNLOAD_BYTES)  # checks the input
        fname = f"{name}-{first['partition']}-{first['offset']}.jsonl"
        headers = [("content-disposition", f'attachment; filename="{quote(fname)}"')]
        if req.method == "HEAD":
            return HttpResponse(200, b"", "application/x-ndjson; charset=utf-8", headers)
        return HttpResponse(200, content_type="application/x-ndjson; charset=utf-8", headers=headers,
                            stream=self._download(name, q))

    async def _download(self, name: str, q: dict):
        left, left_bytes = min(_int(q, "limit", DOWNLOAD_LIMIT, 1), DOWNLOAD_LIMIT), DOWNLOAD_BYTES
        q = {**q, "limit": str(min(left, BROWSE_LIMIT))}
        while left > 0 and left_bytes > 0:
            got = await self.read_range(name, q, min(left, BROWSE_LIMIT), min(left_bytes, DOWNLOAD_CHUNK))
            if not got["records"]:
                return
            yield "".join(record_json(name, got["partition"], r) + "\n" for r in got["records"]).encode()
            left -= len(got["records"])
            left_bytes -= sum(len(r.key or b"") + len(r.value or b"") for r in got["records"])
            if got["next"] >= got["end"]:
                return
            q = {k: v for k, v in q.items() if k != "timestamp"}
            q["offset"] = str(got["next"])

    async def produce(self, req: HttpRequest, name: str) -> HttpResponse:
        form = req.form()
        await self.client.topic(name)
        partition = _int(form, "partition", -1)
        headers = []
        for line in (form.get("headers") or "").splitlines():
            if line.strip():
                k, sep, v = line.partition("=")
                if not sep:
                    raise BadInput(f"headers: expected NAME=VALUE, got {line.strip()!r}")
                headers.append((k.strip(), v.strip().encode()))
        key = form.get("key") or ""
        p, offset = await self.client.produce(name, partition if partition >= 0 else None,
                                              key.encode() if key else None, form.get("value", "").encode(),
                                              headers)
        return self.redirect(f"/topics/{quote(name, safe='')}/messages", partition=p, offset=offset,
                             done=f"Produced to partition {p} at offset {offset}")

    async def tail(self, req: HttpRequest, name: str) -> HttpResponse:
        """Server-sent events: one ``record`` event per record of every partition,
        from the end (or from the offsets of ``Last-Event-ID``/``from``, as
        ``P:OFFSET,...``), each with the next offsets as its id."""
        t = await self.client.topic(name)
        resume = req.headers.get("last-event-id") or req.query.get("from") or ""
        nexts: dict[int, int] = {}
        for item in filter(None, resume.split(",")):
            p, sep, off = item.partition(":")
            if not sep or not p.isdigit() or not off.lstrip("-").isdigit():
                raise BadInput(f"Last-Event-ID: {item!r} is not PARTITION:OFFSET")
            nexts[int(p)] = int(off)
        if any(p >= len(t.partitions) for p in nexts):
            raise BadInput(f"{name} has partitions 0 to {len(t.partitions) - 1}", 404)
        if len(nexts) < len(t.partitions):
            marks = await self.client.watermarks([name])
            for p in t.partitions:
                nexts.setdefault(p.index, marks[(name, p.index)][1])
        if req.method == "HEAD":
            return HttpResponse(200, b"", "text/event-stream; charset=utf-8")
        template = self.env.get_template("record_row.html")
        return HttpResponse(200, content_type="text/event-stream; charset=utf-8",
                            stream=self._tail(name, nexts, template), live=True)

    async def _tail(self, name: str, nexts: dict[int, int], template):
        """The events of a live tail. Every ``TAIL_CHECK`` seconds it asks
        whether partitions were added (followed from offset 0) or the topic
        deleted (a ``gone`` event, then the stream ends)."""
        slot = ("tail", secrets.token_hex(4))
        last_beat = last_check = time.monotonic()
        yield b"retry: 1000\n\n"
        wait = 0  # the first round at once: it finds where an out-of-range offset goes on
        try:
            while True:
                try:
                    if time.monotonic() - last_check > TAIL_CHECK or wait < 0:
                        last_check = time.monotonic()
                        count = await self.client.partition_count(name)
                        if count is None:
                            yield f"event: gone\ndata: topic {name} was deleted\n\n".encode()
                            return
                        if count > len(nexts):
                            await self.client.metadata()
                            nexts.update({p: 0 for p in range(count) if p not in nexts})
                    got, moved = await self.client.fetch_many(name, dict(nexts), max(wait, 0), slot)
                    wait = 500
                except KafkaError as e:
                    yield f"event: problem\ndata: {e}\n\n".encode()
                    await asyncio.sleep(1.0)
                    wait = -1  # check the topic before fetching again
                    continue
                nexts.update(moved)
                sent = False
                for p in sorted(got):
                    for r in got[p]:
                        nexts[p] = r.offset + 1
                        html = template.render(topic=name, partition=p, r=r, fmt="auto", live=True)
                        ident = ",".join(f"{k}:{v}" for k, v in sorted(nexts.items()))
                        data = "".join(f"data: {line}\n" for line in html.splitlines())
                        yield f"id: {ident}\nevent: record\n{data}\n".encode()
                        sent = True
                if sent:
                    last_beat = time.monotonic()
                elif time.monotonic() - last_beat > 15:
                    last_beat = time.monotonic()
                    yield b": keep-alive\n\n"
        finally:
            for k in [k for k in self.client.conns if isinstance(k, tuple) and k[:2] == slot]:
                self.client.conns.pop(k).close()
                self.client.locks.pop(k, None)

    # -- groups ---------------------------------------------------------------------------
    async def groups(self, req: HttpRequest) -> HttpResponse:
        groups = await self.client.list_groups()
        return self.render("groups.html", page="groups", groups=groups, done=req.query.get("done"))

    async def group_state(self, group: str) -> dict:
        g = await self.client.describe_group(group)
        if g["group_state"] == "Dead":
            raise KafkaError(f"Unknown group {group!r}", errors.GROUP_ID_NOT_FOUND)
        committed = await self.client.committed(group)
        await self.client.metadata(max_age=2.0)
        known = [k for k in committed if k[0] in self.client.cluster.topics]
        marks = await self.client.watermarks(sorted({t for t, _ in known})) if known else {}
        members = []
        for m in g["members"]:
            assignment = decode_assignment(m["member_assignment"]) if g["protocol_type"] == "consumer" else []
            members.append({"id": m["member_id"], "instance": m.get("group_instance_id"),
                            "client": m["client_id"], "host": m["client_host"], "assignment": assignment})
        owner = {(t, p): m["id"] for m in members for t, ps in m["assignment"] for p in ps}
        rows = []
        now = time.time() * 1000
        for (t, p), off in sorted(committed.items()):
            start, end = marks.get((t, p), (-1, -1))
            rows.append({"topic": t, "partition": p, "committed": off, "start": start, "end": end,
                         "lag": max(end - off, 0) if end >= 0 else None, "owner": owner.get((t, p)),
                         "lag_ms": None})

        async def lag_time(row):
            if not row["lag"]:
                row["lag_ms"] = 0 if row["lag"] == 0 else None
                return
            s = _session.get()
            where = (row["topic"], row["partition"], row["committed"], s.principal if s is not None else "")
            ts = self.first_unread.get(where)
            if ts is None:
                try:
                    records, _, _ = await self.client.fetch(row["topic"], row["partition"], row["committed"], 4096)
                except KafkaError:
                    return
                if not records:
                    return
                ts = self.first_unread[where] = records[0].timestamp
                while len(self.first_unread) > MAX_FIRST_UNREAD:
                    del self.first_unread[next(iter(self.first_unread))]
            row["lag_ms"] = max(now - ts, 0)

        await asyncio.gather(*(lag_time(r) for r in rows[:200]))
        lag = sum(r["lag"] or 0 for r in rows)
        history = self.lag_history.pop(group, None) or deque(maxlen=HISTORY)
        self.lag_history[group] = history  # the most recently seen last
        if not history or time.monotonic() - history[-1][0] >= 1.0:
            history.append((time.monotonic(), lag))
        while len(self.lag_history) > MAX_GROUP_HISTORIES:
            del self.lag_history[next(iter(self.lag_history))]
        kept = self.broker_history(group) if self.broker_history is not None else []
        if len(kept) >= 2:
            lag_spark = sparkline([float(v) for _, v, _ in kept])
            time_spark = sparkline([float(v) for _, _, v in kept])
            span = kept[-1][0] - kept[0][0]
        else:
            lag_spark, time_spark, span = sparkline([float(v) for _, v in history]), "", None
        return {"group": g, "members": members, "rows": rows, "lag": lag,
                "lag_spark": lag_spark, "time_spark": time_spark, "history_span": span,
                "history_points": len(kept),
                "lag_ms": max((r["lag_ms"] or 0 for r in rows), default=0)}

    async def group(self, req: HttpRequest, group: str) -> HttpResponse:
        state = await self.group_state(group)
        return self.render("group.html", page="groups", name=group, done=req.query.get("done"), **state)

    async def reset_offsets(self, req: HttpRequest, group: str) -> HttpResponse:
        """Kafka's ``kafka-consumer-groups --reset-offsets``: a plan (dry run)
        shown first; applied only to a group without members."""
        form = req.form()
        state = await self.group_state(group)
        topic = form.get("topic") or ""
        rows = [r for r in state["rows"] if not topic or r["topic"] == topic]
        if not rows:
            raise BadInput(f"Group {group!r} has no committed offsets" + (f" on {topic!r}" if topic else ""))
        to = form.get("to", "earliest")
        if to == "earliest":
            targets = {(r["topic"], r["partition"]): r["start"] for r in rows}
        elif to == "latest":
            targets = {(r["topic"], r["partition"]): r["end"] for r in rows}
        elif to == "offset":
            v = _int(form, "value", None, hi=INT64_MAX)
            targets = {(r["topic"], r["partition"]): v for r in rows}
        elif to == "shift":
            v = _int(form, "value", None, hi=INT64_MAX)
            targets = {(r["topic"], r["partition"]): r["committed"] + v for r in rows}
        elif to == "timestamp":
            ts = _time_ms(form.get("value") or "")
            found = await self.client.list_offsets([(r["topic"], r["partition"]) for r in rows], ts)
            targets = {(r["topic"], r["partition"]): (found[(r["topic"], r["partition"])][0]
                                                      if found[(r["topic"], r["partition"])][0] >= 0 else r["end"])
                       for r in rows}
        else:
            raise BadInput(f"to: {to!r} is not one of earliest, latest, offset, shift, timestamp")
        plan = []
        for r in rows:
            new = min(max(targets[(r["topic"], r["partition"])], r["start"]), r["end"])
            plan.append({**r, "new": new})
        if form.get("apply") != "1":
            return self.render("group.html", page="groups", name=group, plan=plan, form=form, **state)
        if state["group"]["group_state"] not in ("Empty", "Dead"):
            raise BadInput(f"Group {group!r} is {state['group']['group_state']} with "
                           f"{len(state['members'])} member(s): offsets can be reset only when it has none "
                           f"(stop its consumers first)", 409)
        await self.client.commit(group, {(r["topic"], r["partition"]): r["new"] for r in plan})
        return self.redirect(f"/groups/{quote(group, safe='')}", done=f"Reset {len(plan)} partition(s)")

    async def delete_group(self, req: HttpRequest, group: str) -> HttpResponse:
        await self.client.delete_group(group)
        self.lag_history.pop(group, None)
        return self.redirect("/groups", done=f"Deleted group {group}")

    # -- security: ACLs, SCRAM users, client quotas ---------------------------------------
    async def acls(self, req: HttpRequest) -> HttpResponse:
        try:
            rows, disabled = await self.client.acls(), None
        except KafkaError as e:
            if e.code != errors.SECURITY_DISABLED:
                raise
            rows, disabled = [], "The cluster has no authoriser (authorizer.class.name): ACLs are not kept."
        rows.sort(key=lambda a: (a["resource_type"], a["resource_name"], a["principal"], a["operation"]))
        return self.render("acls.html", page="acls", rows=rows, names=ACL_NAMES, disabled=disabled,
                           done=req.query.get("done"))

    @staticmethod
    def acl_binding(form: dict) -> dict:
        """An ACL binding from a form: names (topic, literal, read, allow) or Kafka's codes."""
        from odradek.security.principal import KafkaPrincipal

        out = {}
        for field, names in ACL_NAMES.items():
            raw = (form.get(field) or ACL_DEFAULTS.get(field, "")).strip().lower()
            code = int(raw) if raw.isdigit() else {v: k for k, v in names.items()}.get(raw)
            if code not in names:
                raise BadInput(f"{field}: {raw!r} is not one of {', '.join(names.values())}")
            out[field] = code
        name = (form.get("resource_name") or "").strip()
        if out["resource_type"] == 4:  # the cluster
            name = name or "kafka-cluster"
        if not name:
            raise BadInput("resource_name: a name is needed ('*' for all)")
        principal = (form.get("principal") or "").strip()
        try:
            KafkaPrincipal.parse(principal)
        except ValueError as e:
            raise BadInput(f"principal: {e}") from None
        return {**out, "resource_name": name, "principal": principal, "host": (form.get("host") or "*").strip()}

    async def create_acl(self, req: HttpRequest) -> HttpResponse:
        b = self.acl_binding(req.form())
        await self.client.create_acl(b)
        return self.redirect("/acls", done=f"Added: {acl_text(b)}")

    async def delete_acl(self, req: HttpRequest) -> HttpResponse:
        b = self.acl_binding(req.form())
        n = await self.client.delete_acl(b)
        return self.redirect("/acls", done=f"Removed: {acl_text(b)}" if n else f"No such ACL: {acl_text(b)}")

    async def users(self, req: HttpRequest) -> HttpResponse:
        return self.render("users.html", page="users", users=await self.client.scram_users(),
                           done=req.query.get("done"))

    @staticmethod
    def scram_form(form: dict) -> tuple[str, str]:
        from odradek.security.scram import MECHANISMS

        user = (form.get("user") or "").strip()
        mechanism = (form.get("mechanism") or "SCRAM-SHA-256").strip().upper()
        if not user:
            raise BadInput("user: a name is needed")
        if mechanism not in MECHANISMS:
            raise BadInput(f"mechanism: {mechanism!r} is not one of {', '.join(MECHANISMS)}")
        return user, mechanism

    async def set_user(self, req: HttpRequest) -> HttpResponse:
        from odradek.security.scram import MAX_ITERATIONS, MIN_ITERATIONS

        form = req.form()
        user, mechanism = self.scram_form(form)
        password = form.get("password") or ""
        if not password:
            raise BadInput("password: a password is needed")
        iterations = _int(form, "iterations", 4096, MIN_ITERATIONS, MAX_ITERATIONS)
        await self.client.alter_scram(user, mechanism, password, iterations)
        return self.redirect("/users", done=f"Set the {mechanism} password of {user}")

    async def delete_user(self, req: HttpRequest) -> HttpResponse:
        user, mechanism = self.scram_form(req.form())
        await self.client.alter_scram(user, mechanism, None)
        return self.redirect("/users", done=f"Deleted the {mechanism} credential of {user}")

    async def quotas(self, req: HttpRequest) -> HttpResponse:
        rows = sorted(({"entity": e["entity"], "text": quota_entity_text(e["entity"]), "key": e["key"],
                        "value": int(e["value"]) if e["value"] == int(e["value"]) else e["value"]}
                       for e in await self.client.quotas()), key=lambda r: (r["text"], r["key"]))
        return self.render("quotas.html", page="quotas", rows=rows, keys=QUOTA_KEYS, done=req.query.get("done"))

    @staticmethod
    def quota_form(form: dict) -> tuple[list[dict], str]:
        entity = []
        for kind in ("user", "client-id", "ip"):
            raw = form.get(kind)
            if raw is None or raw == "":
                continue
            entity.append({"entity_type": kind, "entity_name": None if raw == "<default>" else raw})
        if not entity:
            raise BadInput("name a user, a client id or an ip ('<default>' for the default one)")
        key = (form.get("key") or "").strip()
        if key not in QUOTA_KEYS:
            raise BadInput(f"key: {key!r} is not one of {', '.join(QUOTA_KEYS)}")
        return entity, key

    async def set_quota(self, req: HttpRequest) -> HttpResponse:
        form = req.form()
        entity, key = self.quota_form(form)
        try:
            value = float((form.get("value") or "").strip())
        except ValueError:
            raise BadInput(f"value: {form.get('value')!r} is not a number") from None
        await self.client.alter_quota(entity, key, value)
        return self.redirect("/quotas", done=f"Set {key} of {quota_entity_text(entity)}")

    async def delete_quota(self, req: HttpRequest) -> HttpResponse:
        entity, key = self.quota_form(req.form())
        await self.client.alter_quota(entity, key, None)
        return self.redirect("/quotas", done=f"Removed {key} of {quota_entity_text(entity)}")


# Kafka's codes for the fields of an ACL binding, with the names the pages show.
ACL_NAMES = {
    "resource_type": {2: "topic", 3: "group", 4: "cluster", 5: "transactional_id"},
    "pattern_type": {3: "literal", 4: "prefixed"},
    "operation": {2: "all", 3: "read", 4: "write", 5: "create", 6: "delete", 7: "alter", 8: "describe",
                  9: "cluster_action", 10: "describe_configs", 11: "alter_configs", 12: "idempotent_write"},
    "permission_type": {3: "allow", 2: "deny"},
}
ACL_DEFAULTS = {"pattern_type": "literal", "permission_type": "allow"}
QUOTA_KEYS = ("producer_byte_rate", "consumer_byte_rate", "request_percentage", "controller_mutation_rate",
              "connection_creation_rate")


def acl_text(b: dict) -> str:
    n = ACL_NAMES
    return (f"{n['permission_type'].get(b['permission_type'])} {b['principal']} "
            f"{n['operation'].get(b['operation'])} on {n['resource_type'].get(b['resource_type'])} "
            f"{b['resource_name']} ({n['pattern_type'].get(b['pattern_type'])}) from {b['host']}")


def quota_entity_text(entity: list[dict]) -> str:
    order = ("user", "client-id", "ip")
    return ",".join(f"{e['entity_type']}={e['entity_name'] if e['entity_name'] is not None else '<default>'}"
                    for e in sorted(entity, key=lambda e: order.index(e["entity_type"])
                                    if e["entity_type"] in order else 9))
