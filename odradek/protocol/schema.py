"""Codecs compiled from Kafka's JSON message specs.

Theory of operation: each ``<Name>Request.json`` / ``<Name>Response.json`` spec
in ``odradek/protocol/specs`` (the message specs of one pinned Apache Kafka
release, vendored by ``tools/vendor-kafka-specs``; nothing else is read) is
turned, per version, into a pair of Python functions generated as source and
compiled once: ``decode(buf, pos) -> (dict, pos)`` and ``encode(dict, out)``.
The generated source can be read and stepped through: with
``ODRADEK_CODEGEN_DIR=DIR`` set, each codec's source is written to
``DIR/<Name>_v<version>.py`` and compiled from there (``python -m
odradek.protocol.schema DIR NAME...`` writes chosen ones).

Messages are plain dicts keyed by the spec's field names in snake_case
(``ThrottleTimeMs`` -> ``throttle_time_ms``); arrays of structs are lists of
dicts. Decoding fills every field of the spec, with the spec's default for
fields absent in that version, so handlers never test versions to read a
field. Encoding takes missing keys as their defaults, so handlers only set what
they know. Unknown tagged fields are kept under ``"_tags"`` ({tag: bytes}) and
written back when the same dict is encoded. Values: ints, bools, floats, str,
bytes, uuid as 16 raw bytes, ``records`` as bytes (decode) or bytes-like /
list of bytes-like chunks (encode). An element of a top-level array of
structs may be given already encoded (``Encoded``, from ``MessageCodec.encode_element``).

Keys that are no field are not encoded. A key starting with ``_`` is private:
bookkeeping a handler carries in the dict, never on the wire. Any other key
that is not a field of its struct in some version of the message is a mistake
(a misspelled field sends the field's default). Strict mode catches it: a
codec generated with ``ODRADEK_STRICT_CODEC=1`` in the environment (the test
suite sets it, so in-process brokers and the brokers tests start have it)
raises ``StrictCodecError``, naming message, version, struct path and key,
when a struct's dict (top level or nested) has such a key. A field of another
version than the one encoded is no mistake: handlers fill every version's
fields. Off (the default), the check is not generated: the codec is the same.

Decoding hostile input raises DecodeError, never anything else, and never
allocates more than the input's size.
"""

from __future__ import annotations

import json
import linecache
import os
import re
import struct
import threading
from functools import lru_cache

SPEC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "specs")
ZERO_UUID = bytes(16)


class DecodeError(ValueError):
    """The bytes are not a valid message of the expected type and version."""


class StrictCodecError(ValueError):
    """Strict mode: a dict to encode has a key that is not a field of its struct."""


def strict_mode() -> bool:
    """Whether codecs generated now check their dicts' keys (``ODRADEK_STRICT_CODEC=1``).
    Read once per codec, when it is generated (codecs are cached)."""
    return os.environ.get("ODRADEK_STRICT_CODEC", "") not in ("", "0")


def _unknown_keys(d, allowed: frozenset, where: str) -> None:
    """Strict mode, a dict with keys outside ``allowed``: raise unless all are private."""
    bad = sorted(k for k in d.keys() - allowed if not (isinstance(k, str) and k.startswith("_")))
    if bad:
        raise StrictCodecError(f"{where}: {', '.join(map(repr, bad))} not a field in any version")


def snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def parse_versions(text: str | None) -> tuple[int, int]:
    """'3+' -> (3, inf); '1-4' -> (1, 4); 'none' -> empty range."""
    if text is None or text == "none":
        return (1, 0)
    if text.endswith("+"):
        return (int(text[:-1]), 1 << 30)
    if "-" in text:
        a, b = text.split("-")
        return (int(a), int(b))
    return (int(text), int(text))


def _in(rng: tuple[int, int], v: int) -> bool:
    return rng[0] <= v <= rng[1]


_COMMENT = re.compile(r"(?m)^\s*//.*$")


def kafka_version() -> str:
    """The Apache Kafka release whose message specs are vendored."""
    with open(os.path.join(SPEC_DIR, "KAFKA_VERSION"), encoding="utf-8") as f:
        return f.read().strip()


@lru_cache(maxsize=None)
def load_spec(name: str) -> dict:
    """The spec ``name`` (e.g. 'FetchRequest') with common structs inlined."""
    try:
        with open(os.path.join(SPEC_DIR, name + ".json"), encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise KeyError(name) from None
    data = json.loads(_COMMENT.sub("", text))
    common = {s["name"]: s["fields"] for s in data.get("commonStructs", [])}
    _inline(data.get("fields", []), common)
    return data


def _inline(fields: list, common: dict) -> None:
    for f in fields:
        t = f["type"]
        inner = t[2:] if t.startswith("[]") else t
        if inner[:1].isupper() and "fields" not in f and inner in common:
            f["fields"] = common[inner]
        if "fields" in f:
            _inline(f["fields"], common)


def spec_names() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(SPEC_DIR) if f.endswith(".json"))


@lru_cache(maxsize=None)
def api_names() -> dict[int, str]:
    """API key -> API name ('Produce'), from the vendored request specs."""
    out = {}
    for name in spec_names():
        if name.endswith("Request"):
            spec = load_spec(name)
            if spec.get("type") == "request" and "apiKey" in spec:
                out[spec["apiKey"]] = name[: -len("Request")]
    return out


# ---------------------------------------------------------------------------
# Primitive readers used by generated code. Each takes (buf, pos) -> (value, pos).

_i8 = struct.Struct(">b")
_i16 = struct.Struct(">h")
_u16 = struct.Struct(">H")
_i32 = struct.Struct(">i")
_u32 = struct.Struct(">I")
_i64 = struct.Struct(">q")
_f64 = struct.Struct(">d")


def read_uvarint(buf, pos):
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    while True:
        pos += 1
        b = buf[pos]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos + 1
        shift += 7
        if shift > 28:  # Kafka's unsigned varints are at most 5 bytes
            raise DecodeError("varint too long")


def write_uvarint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def uvarint_bytes(n: int) -> bytes:
    out = bytearray()
    write_uvarint(out, n)
    return bytes(out)


def _check(buf, pos, n):
    if n < 0 or pos + n > len(buf):
        raise DecodeError("length out of bounds")


def read_tags(buf, pos, known):
    """Read a tagged-field section. ``known`` maps tag -> reader; returns (dict, unknown, pos)."""
    count, pos = read_uvarint(buf, pos)
    found = {}
    unknown = None
    for _ in range(count):
        tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        _check(buf, pos, size)
        end = pos + size
        reader = known.get(tag)
        if reader is None:
            if unknown is None:
                unknown = {}
            unknown[tag] = bytes(buf[pos:end])
        else:
            found[tag], p = reader(buf, pos)
            if p != end:
                raise DecodeError("tagged field size mismatch")
        pos = end
    return found, unknown, pos


# ---------------------------------------------------------------------------
# Code generation.


class _Source:
    """The generated source of one codec, compiled piece by piece as one file.

    Each piece is compiled with the file name and line numbers it has in the
    whole, so tracebacks and debuggers show the generated code; with
    ``ODRADEK_CODEGEN_DIR`` set the whole is also written to that file."""

    def __init__(self, label: str):
        self.label = label
        directory = os.environ.get("ODRADEK_CODEGEN_DIR")
        self.path = os.path.join(directory, label + ".py") if directory else None
        self.filename = self.path or f"<odradek codec {label}>"
        self.lines: list[str] = [f"# Generated by odradek.protocol.schema: {label}\n"]

    def run(self, src: str, ns: dict) -> None:
        code = compile("\n" * len(self.lines) + src, self.filename, "exec")
        exec(code, ns)  # noqa: S102 - generated from the vendored specs
        self.lines.extend(src.splitlines(keepends=True))
        self.lines.append("\n")

    def publish(self) -> None:
        text = "".join(self.lines)
        linecache.cache[self.filename] = (len(text), None, self.lines, self.filename)
        if self.path is not None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "w", encoding="utf-8") as f:
                f.write(text)


class _Gen:
    """Builds the source of one decode/encode function pair for a spec+version."""

    def __init__(self, version: int, flexible: bool, source: _Source, strict: bool = False):
        self.v = version
        self.flex = flexible
        self.source = source
        self.strict = strict
        self.in_tag = False  # generating the value of a tagged field
        self.path = ""  # of the struct whose encoder this generates, e.g. "topics[].partitions[]"
        self.lines: list[str] = []
        self.helpers: dict[str, object] = {}
        self.names: dict[tuple[str, int], str] = {}
        self.n = 0
        self.depth = 0  # 1: the function encoding the message's own fields

    def sub(self) -> "_Gen":
        """A generator for another function of the same codec (shared helpers and names)."""
        g = _Gen(self.v, self.flex, self.source, self.strict)
        g.helpers = self.helpers
        g.names = self.names
        g.n = self.n + 1000
        g.depth = self.depth + 1
        return g

    def name_for(self, kind: str, obj, label: str) -> str:
        """A readable, unique name for the ``kind`` helper of spec node ``obj``."""
        key = (kind, id(obj))
        name = self.names.get(key)
        if name is None:
            base = name = f"_{kind}_{snake(label)}"
            taken = set(self.names.values())
            i = 2
            while name in taken:
                name = f"{base}_{i}"
                i += 1
            self.names[key] = name
        return name

    def run(self, src: str) -> dict:
        ns = dict(_RUNTIME)
        ns.update(self.helpers)
        self.source.run(src, ns)
        return ns

    def tmp(self, prefix="t"):
        self.n += 1
        return f"{prefix}{self.n}"

    # -- defaults --------------------------------------------------------
    def default_expr(self, f: dict) -> str:
        t = f["type"]
        d = f.get("default")
        nullable = _in(parse_versions(f.get("nullableVersions")), self.v)
        if t.startswith("[]"):
            return "None" if (d == "null" and nullable) else "[]"
        if d == "null":
            return "None"
        if isinstance(d, bool):
            return repr(d)
        if isinstance(d, (int, float)):
            d = str(d)
        if t in ("int8", "int16", "int32", "int64", "uint16", "uint32"):
            return str(int(d, 0)) if d not in (None, "") else "0"
        if t == "float64":
            return repr(float(d)) if d else "0.0"
        if t == "bool":
            return "True" if str(d).lower() == "true" else "False"
        if t == "string":
            return repr(d if d is not None else "")
        if t in ("bytes", "records"):
            return "None" if nullable and d is None and t == "records" else "b''"
        if t == "uuid":
            return "ZERO_UUID"
        if "fields" in f:
            return self.struct_default(f)
        return "None"

    def struct_default(self, f: dict) -> str:
        # Defaults of a nested struct for this version, built fresh each time.
        name = self.name_for("default", f, f["name"])
        if name not in self.helpers:
            items = ", ".join(
                f"{snake(c['name'])!r}: {self.default_expr(c)}"
                for c in f["fields"]
            )
            src = f"def {name}():\n    return {{{items}}}\n"
            # Nested structs' default helpers were registered while building items.
            self.helpers[name] = self.run(src)[name]
        return f"{name}()"

    def fields_in_version(self, fields):
        for f in fields:
            if _in(parse_versions(f.get("versions")), self.v):
                yield f

    # -- decoding --------------------------------------------------------
    def decode_value(self, f: dict, t: str, target: str, ind: str) -> None:
        """Emit code reading one value of type ``t`` into ``target``; advances ``pos``."""
        L = self.lines
        nullable = _in(parse_versions(f.get("nullableVersions")), self.v)
        flex = self.flex and not (f.get("flexibleVersions") == "none")
        if t == "bool":
            L.append(f"{ind}{target} = buf[pos] != 0; pos += 1")
        elif t == "int8":
            L.append(f"{ind}{target} = i8(buf, pos)[0]; pos += 1")
        elif t == "int16":
            L.append(f"{ind}{target} = i16(buf, pos)[0]; pos += 2")
        elif t == "uint16":
            L.append(f"{ind}{target} = u16(buf, pos)[0]; pos += 2")
        elif t == "int32":
            L.append(f"{ind}{target} = i32(buf, pos)[0]; pos += 4")
        elif t == "uint32":
            L.append(f"{ind}{target} = u32(buf, pos)[0]; pos += 4")
        elif t == "int64":
            L.append(f"{ind}{target} = i64(buf, pos)[0]; pos += 8")
        elif t == "float64":
            L.append(f"{ind}{target} = f64(buf, pos)[0]; pos += 8")
        elif t == "uuid":
            L.append(f"{ind}check(buf, pos, 16); {target} = bytes(buf[pos:pos + 16]); pos += 16")
        elif t in ("string", "bytes", "records"):
            n = self.tmp("n")
            if flex:
                L.append(f"{ind}{n}, pos = uvarint(buf, pos); {n} -= 1")
            elif t == "string":
                L.append(f"{ind}{n} = i16(buf, pos)[0]; pos += 2")
            else:
                L.append(f"{ind}{n} = i32(buf, pos)[0]; pos += 4")
            L.append(f"{ind}if {n} < 0:")
            if nullable:
                L.append(f"{ind}    {target} = None")
            else:
                L.append(f"{ind}    raise DecodeError('null in non-nullable field {f['name']}')")
            L.append(f"{ind}else:")
            L.append(f"{ind}    check(buf, pos, {n})")
            if t == "string":
                L.append(f"{ind}    {target} = str(buf[pos:pos + {n}], 'utf-8'); pos += {n}")
            elif t == "records":
                # One copy, of the buffer's own type: a bytearray frame gives
                # records the produce path may patch in place.
                L.append(f"{ind}    {target} = buf[pos:pos + {n}]; pos += {n}")
            else:
                L.append(f"{ind}    {target} = bytes(buf[pos:pos + {n}]); pos += {n}")
        elif t.startswith("[]"):
            inner = t[2:]
            n = self.tmp("n")
            if flex:
                L.append(f"{ind}{n}, pos = uvarint(buf, pos); {n} -= 1")
            else:
                L.append(f"{ind}{n} = i32(buf, pos)[0]; pos += 4")
            L.append(f"{ind}if {n} < 0:")
            if nullable:
                L.append(f"{ind}    {target} = None")
            else:
                L.append(f"{ind}    raise DecodeError('null array in {f['name']}')")
            L.append(f"{ind}else:")
            L.append(f"{ind}    if {n} > len(buf) - pos: raise DecodeError('array too long')")
            lst = self.tmp("l")
            L.append(f"{ind}    {lst} = []")
            L.append(f"{ind}    for _ in range({n}):")
            if "fields" in f:
                fn = self.struct_decoder(f)
                L.append(f"{ind}        e, pos = {fn}(buf, pos)")
            else:
                self.decode_value({"name": f["name"]}, inner, "e", ind + "        ")
            L.append(f"{ind}        {lst}.append(e)")
            L.append(f"{ind}    {target} = {lst}")
        elif "fields" in f:
            fn = self.struct_decoder(f)
            if nullable:  # nullable struct: int8 presence marker (in a tagged field, 0 is null)
                null = "<= 0" if self.in_tag else "< 0"
                L.append(f"{ind}if i8(buf, pos)[0] {null}: {target} = None; pos += 1")
                L.append(f"{ind}else: {target}, pos = {fn}(buf, pos + 1)")
            else:
                L.append(f"{ind}{target}, pos = {fn}(buf, pos)")
        else:
            raise NotImplementedError(t)

    def struct_decoder(self, f: dict) -> str:
        """Compile a decoder function for the struct ``f`` (its fields); return its name."""
        name = self.name_for("decode", f, f["name"])
        if name in self.helpers:
            return name
        sub = self.sub()
        self.helpers[name] = None  # recursion guard
        src = sub.decoder_source(name, f["fields"])
        self.helpers[name] = self.run(src)[name]
        return name

    def decoder_source(self, name: str, fields: list) -> str:
        L = self.lines
        L.append(f"def {name}(buf, pos):")
        L.append("    d = {}")
        tagged = []
        for f in fields:
            key = snake(f["name"])
            active = _in(parse_versions(f.get("versions")), self.v)
            tv = parse_versions(f.get("taggedVersions"))
            if active and self.flex and "tag" in f and _in(tv, self.v):
                tagged.append(f)
                L.append(f"    d[{key!r}] = {self.default_expr(f)}")
            elif active:
                self.decode_value(f, f["type"], f"d[{key!r}]", "    ")
            else:
                L.append(f"    d[{key!r}] = {self.default_expr(f)}")
        if self.flex:
            readers = {}
            for f in tagged:
                rname = self.name_for("read_tag", f, f["name"])
                sub = self.sub()
                sub.in_tag = True
                sub.lines.append(f"def {rname}(buf, pos):")
                sub.decode_value(f, f["type"], "v", "    ")
                sub.lines.append("    return v, pos")
                self.helpers[rname] = self.run("\n".join(sub.lines) + "\n")[rname]
                readers[f["tag"]] = (rname, snake(f["name"]))
            kname = self.name_for("known_tags", fields, name)
            self.helpers[kname] = {tag: self.helpers[r] for tag, (r, _) in readers.items()}
            L.append(f"    found, unknown, pos = read_tags(buf, pos, {kname})")
            for tag, (_, key) in readers.items():
                L.append(f"    if {tag} in found: d[{key!r}] = found[{tag}]")
            L.append("    if unknown: d['_tags'] = unknown")
        L.append("    return d, pos")
        return "\n".join(L) + "\n"

    # -- encoding --------------------------------------------------------
    def encode_value(self, f: dict, t: str, val: str, ind: str) -> None:
        """Emit code appending value expression ``val`` of type ``t`` to ``out``."""
        L = self.lines
        flex = self.flex and not (f.get("flexibleVersions") == "none")
        if t == "bool":
            L.append(f"{ind}out.append(1 if {val} else 0)")
        elif t == "int8":
            L.append(f"{ind}out += p8({val})")
        elif t == "int16":
            L.append(f"{ind}out += p16({val})")
        elif t == "uint16":
            L.append(f"{ind}out += pu16({val})")
        elif t == "int32":
            L.append(f"{ind}out += p32({val})")
        elif t == "uint32":
            L.append(f"{ind}out += pu32({val})")
        elif t == "int64":
            L.append(f"{ind}out += p64({val})")
        elif t == "float64":
            L.append(f"{ind}out += pf64({val})")
        elif t == "uuid":
            L.append(f"{ind}out += ({val} or ZERO_UUID)")
        elif t in ("string", "bytes", "records"):
            v = self.tmp("v")
            L.append(f"{ind}{v} = {val}")
            L.append(f"{ind}if {v} is None:")
            if flex:
                L.append(f"{ind}    out.append(0)")
            elif t == "string":
                L.append(f"{ind}    out += p16(-1)")
            else:
                L.append(f"{ind}    out += p32(-1)")
            L.append(f"{ind}else:")
            if t == "string":
                L.append(f"{ind}    {v} = {v}.encode('utf-8')")
            elif t == "records":
                # A list of chunks (a fetch's stored batches) is not copied:
                # spill() leaves it for encode_parts to hand out as is.
                L.append(f"{ind}    if type({v}) is list:")
                if flex:
                    L.append(f"{ind}        write_uvarint(out, sum(map(len, {v})) + 1)")
                else:
                    L.append(f"{ind}        out += p32(sum(map(len, {v})))")
                L.append(f"{ind}        spill(out, {v})")
                L.append(f"{ind}    else:")
                ind += "    "
            if flex:
                L.append(f"{ind}    write_uvarint(out, len({v}) + 1)")
            elif t == "string":
                L.append(f"{ind}    out += p16(len({v}))")
            else:
                L.append(f"{ind}    out += p32(len({v}))")
            L.append(f"{ind}    out += {v}")
        elif t.startswith("[]"):
            inner = t[2:]
            v = self.tmp("v")
            L.append(f"{ind}{v} = {val}")
            L.append(f"{ind}if {v} is None:")
            L.append(f"{ind}    {'out.append(0)' if flex else 'out += p32(-1)'}")
            L.append(f"{ind}else:")
            if flex:
                L.append(f"{ind}    write_uvarint(out, len({v}) + 1)")
            else:
                L.append(f"{ind}    out += p32(len({v}))")
            e = self.tmp("e")
            L.append(f"{ind}    for {e} in {v}:")
            if "fields" in f:
                fn = self.struct_encoder(f)
                if self.depth == 1:
                    # An element of a top-level array given already encoded
                    # (``Encoded``) is copied in as is; nested arrays, often
                    # long (partitions), are spared the test.
                    L.append(f"{ind}        if type({e}) is Encoded: out += {e}.raw")
                    L.append(f"{ind}        else: {fn}({e}, out)")
                else:
                    L.append(f"{ind}        {fn}({e}, out)")
            else:
                self.encode_value({"name": f["name"]}, inner, e, ind + "        ")
        elif "fields" in f:
            fn = self.struct_encoder(f)
            if _in(parse_versions(f.get("nullableVersions")), self.v):
                v = self.tmp("v")
                L.append(f"{ind}{v} = d.get({snake(f['name'])!r})")
                # Kafka marks a null struct with -1, but with 0 in a tagged field.
                L.append(f"{ind}if {v} is None: out += p8({0 if self.in_tag else -1})")
                L.append(f"{ind}else: out += p8(1); {fn}({v}, out)")
            else:
                L.append(f"{ind}{fn}({val}, out)")
        else:
            raise NotImplementedError(t)

    def struct_encoder(self, f: dict) -> str:
        name = self.name_for("encode", f, f["name"])
        if name in self.helpers:
            return name
        sub = self.sub()
        if self.depth > 0:  # the root struct is the message itself
            step = snake(f["name"]) + ("[]" if f["type"].startswith("[]") else "")
            sub.path = f"{self.path}.{step}" if self.path else step
        self.helpers[name] = None
        src = sub.encoder_source(name, f["fields"])
        self.helpers[name] = self.run(src)[name]
        return name

    def encoder_source(self, name: str, fields: list) -> str:
        L = self.lines
        L.append(f"def {name}(d, out):")
        if self.strict:
            allowed = self.name_for("fields", fields, name)
            self.helpers[allowed] = frozenset(snake(f["name"]) for f in fields)
            where = f"{self.source.label.replace('_v', ' v')} {self.path or '(top level)'}"
            L.append(f"    if not {allowed}.issuperset(d): unknown_keys(d, {allowed}, {where!r})")
        L.append("    g = d.get")
        tagged = []
        for f in fields:
            if not _in(parse_versions(f.get("versions")), self.v):
                continue
            key = snake(f["name"])
            tv = parse_versions(f.get("taggedVersions"))
            if self.flex and "tag" in f and _in(tv, self.v):
                tagged.append(f)
                continue
            if "fields" in f and not f["type"].startswith("[]"):
                val = f"(g({key!r}) or {self.default_expr(f)})"
            else:
                val = f"g({key!r}, {self.default_expr(f)})"
            self.encode_value(f, f["type"], val, "    ")
        if self.flex:
            if not tagged:
                L.append("    u = g('_tags')")
                L.append("    if u: write_tags(out, [], u)")
                L.append("    else: out.append(0)")
            else:
                L.append("    tags = []")
                for f in sorted(tagged, key=lambda f: f["tag"]):
                    key = snake(f["name"])
                    # Compared with the default computed once, not rebuilt per call.
                    const = self.name_for("tag_default", f, f["name"])
                    expr = self.default_expr(f)  # may register a struct-default helper
                    ns = dict(_RUNTIME)
                    ns.update(self.helpers)
                    self.helpers[const] = eval(expr, ns)  # noqa: S307 - from specs
                    # Written unless equal to the default (a null where the
                    # default is not null is written, as Kafka does).
                    L.append(f"    v = g({key!r}, {const})")
                    L.append(f"    if v is not {const} and v != {const}:")
                    L.append("        sub = out; out = bytearray()")
                    self.in_tag = True
                    self.encode_value(f, f["type"], "v", "        ")
                    self.in_tag = False
                    L.append(f"        tags.append(({f['tag']}, bytes(out))); out = sub")
                L.append("    write_tags(out, tags, g('_tags'))")
        return "\n".join(L) + "\n"


def write_tags(out: bytearray, tags: list, unknown: dict | None) -> None:
    if unknown:
        tags = sorted(tags + list(unknown.items()))
    write_uvarint(out, len(tags))
    for tag, data in tags:
        write_uvarint(out, tag)
        write_uvarint(out, len(data))
        out += data


class Encoded:
    """An element of a top-level array of structs, given already encoded for one codec
    (the same message and version) and written as those bytes: a handler
    caches the bytes of an element that seldom changes (a Metadata topic)
    instead of building and encoding it again. ``fields`` are what readers
    of the response before encoding may look at (a topic's name, say); they
    are read-only and not encoded."""

    __slots__ = ("raw", "fields")

    def __init__(self, raw: bytes, fields: dict):
        self.raw = raw
        self.fields = fields

    def __getitem__(self, key):
        return self.fields[key]

    def get(self, key, default=None):
        return self.fields.get(key, default)

    def __contains__(self, key) -> bool:
        return key in self.fields


_spills = threading.local()


def spill(out: bytearray, chunks: list) -> None:
    """Place ``chunks`` at the current end of ``out``: copied in, unless an
    ``encode_parts`` call is collecting them to be written out separately."""
    parts = getattr(_spills, "parts", None)
    if parts is None:
        for c in chunks:
            out += c
    else:
        parts.append((len(out), chunks))


def _uvarint_checked(buf, pos):
    try:
        return read_uvarint(buf, pos)
    except IndexError:
        raise DecodeError("truncated varint") from None


_RUNTIME = {
    "i8": _i8.unpack_from,
    "i16": _i16.unpack_from,
    "u16": _u16.unpack_from,
    "i32": _i32.unpack_from,
    "u32": _u32.unpack_from,
    "i64": _i64.unpack_from,
    "f64": _f64.unpack_from,
    "p8": _i8.pack,
    "p16": _i16.pack,
    "pu16": _u16.pack,
    "p32": _i32.pack,
    "pu32": _u32.pack,
    "p64": _i64.pack,
    "pf64": _f64.pack,
    "uvarint": _uvarint_checked,
    "write_uvarint": write_uvarint,
    "spill": spill,
    "check": _check,
    "read_tags": read_tags,
    "write_tags": write_tags,
    "DecodeError": DecodeError,
    "ZERO_UUID": ZERO_UUID,
    "Encoded": Encoded,
    "unknown_keys": _unknown_keys,
}


class MessageCodec:
    """Decoder and encoder of one spec at one version."""

    __slots__ = ("name", "version", "flexible", "_decode", "_encode", "_gen", "_root", "_elements")

    def __init__(self, spec: dict, version: int, strict: bool | None = None):
        """``strict``: check encoded dicts' keys (see the module docstring); by
        default as ``strict_mode()`` says."""
        self.name = spec["name"]
        self.version = version
        self.flexible = _in(parse_versions(spec.get("flexibleVersions")), version)
        root = {"name": self.name, "fields": spec.get("fields", [])}
        source = _Source(f"{self.name}_v{version}")
        gen = _Gen(version, self.flexible, source, strict_mode() if strict is None else strict)
        self._decode = gen.helpers[gen.struct_decoder(root)]
        self._encode = gen.helpers[gen.struct_encoder(root)]
        source.publish()
        self._gen, self._root, self._elements = gen, root, {}

    def encode_element(self, path: tuple[str, ...], element: dict) -> bytes:
        """``element`` encoded as one element of the top-level array of
        structs at ``path`` (its snake-case field name, e.g. ``("topics",)``):
        the bytes of an ``Encoded`` for a message of this codec."""
        fn = self._elements.get(path)
        if fn is None:
            f = None
            if len(path) == 1:
                f = next((c for c in self._gen.fields_in_version(self._root["fields"])
                          if snake(c["name"]) == path[0] and "tag" not in c), None)
            if f is None or not f["type"].startswith("[]") or "fields" not in f:
                raise TypeError(f"{self.name} v{self.version}: {'.'.join(path)} is not a top-level array of structs")
            fn = self._elements[path] = self._gen.helpers[self._gen.struct_encoder(f)]
        out = bytearray()
        fn(element, out)
        return bytes(out)

    def decode(self, buf, pos: int = 0) -> tuple[dict, int]:
        try:
            return self._decode(buf, pos)
        except DecodeError:
            raise
        except (struct.error, IndexError, UnicodeDecodeError, ValueError, TypeError) as e:
            raise DecodeError(f"{self.name} v{self.version}: {e}") from None

    def encode(self, msg: dict, out: bytearray | None = None) -> bytearray:
        if out is None:
            out = bytearray()
        self._encode(msg, out)
        return out

    def encode_parts(self, msg: dict, out: bytearray) -> tuple[list, int]:
        """Encode ``msg`` after what ``out`` holds, without copying record chunks
        given as lists: return (buffers to write in order, their total size).
        ``out`` must not be resized afterwards (the buffers view it)."""
        _spills.parts = parts = []
        try:
            self._encode(msg, out)
        finally:
            _spills.parts = None
        if not parts:
            return [out], len(out)
        view = memoryview(out)
        pieces = []
        size = len(out)
        prev = 0
        for at, chunks in parts:
            if at > prev:
                pieces.append(view[prev:at])
            pieces.extend(chunks)
            size += sum(map(len, chunks))
            prev = at
        if prev < len(out):
            pieces.append(view[prev:])
        return pieces, size


@lru_cache(maxsize=None)
def codec(name: str, version: int) -> MessageCodec:
    """The codec for spec ``name`` (e.g. 'ProduceRequest') at ``version``."""
    return MessageCodec(load_spec(name), version)


def main(argv: list[str] | None = None) -> int:
    """``python -m odradek.protocol.schema DIR NAME[:VERSION]...``: write the
    generated source of the named codecs (every valid version unless one is
    given) to DIR, to read or step through."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print(main.__doc__, file=sys.stderr)
        return 2
    os.environ["ODRADEK_CODEGEN_DIR"] = args[0]
    for item in args[1:]:
        name, _, version = item.partition(":")
        if version:
            versions = [int(version)]
        else:
            lo, hi = parse_versions(load_spec(name).get("validVersions"))
            versions = range(lo, hi + 1)
        for v in versions:
            MessageCodec(load_spec(name), v)
            print(os.path.join(args[0], f"{name}_v{v}.py"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
