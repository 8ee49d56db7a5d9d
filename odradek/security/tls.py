"""TLS for SSL and SASL_SSL listeners: the server context from PEM files, and
the principal of a client certificate.

Keystore: ``ssl.keystore.location`` names one PEM file holding the private key
and the certificate chain (Kafka's ``ssl.keystore.type=PEM``), the key
optionally encrypted with ``ssl.key.password``; or the PEM text itself in
``ssl.keystore.key`` and ``ssl.keystore.certificate.chain``. Truststore:
``ssl.truststore.location`` (a PEM file of CA certificates) or
``ssl.truststore.certificates`` (the PEM text).

JKS and PKCS12 keystores and truststores (``ssl.keystore.type=JKS`` or
``PKCS12``, with ``ssl.keystore.password``) are turned into the same PEM text
(``odradek.security.keystores``); the key never touches the disk unencrypted
except in a private temporary file that the ssl module loads and that is
removed at once.

Client certificates (``ssl.client.auth``): ``none`` (not asked for),
``requested`` (asked for, verified if sent), ``required``.

Principal (Kafka's default builder): the subject of a verified client
certificate as RFC 2253 prints it (most specific attribute first:
``CN=alice,OU=eng,O=acme,C=US``), passed through ``ssl.principal.mapping.rules``
(``DEFAULT`` keeps it whole; ``RULE:pattern/replacement/[LU]`` rewrites it);
``User:ANONYMOUS`` without a certificate.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from dataclasses import dataclass

from odradek.security.ciphers import CipherSuiteError, CipherSuites
from odradek.security.ciphers import apply as apply_cipher_suites
from odradek.security.principal import ANONYMOUS, USER, KafkaPrincipal

CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
PROTOCOLS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TlsConfigError(ValueError):
    pass


@dataclass
class TlsSettings:
    """One listener's effective ``ssl.*`` settings (already validated names)."""

    keystore_location: str | None = None
    keystore_key: str | None = None
    keystore_chain: str | None = None
    key_password: str | None = None
    truststore_location: str | None = None
    truststore_certificates: str | None = None
    client_auth: str = "none"
    enabled_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    mapping_rules: str = "DEFAULT"
    cipher_suites: CipherSuites | None = None  # ssl.cipher.suites; None for OpenSSL's defaults


def _load_keystore(ctx: ssl.SSLContext, s: TlsSettings) -> bool:
    """Load the keystore of ``s`` into ``ctx``; False if it has none."""
    if s.keystore_location:
        ctx.load_cert_chain(s.keystore_location, password=s.key_password)
    elif s.keystore_key and s.keystore_chain:
        # The ssl module loads keys from files only: a private directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="odradek-tls-") as d:
            path = os.path.join(d, "keystore.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(s.keystore_key.strip() + "\n" + s.keystore_chain.strip() + "\n")
            ctx.load_cert_chain(path, password=s.key_password)
    else:
        return False
    return True


def _context(protocol, s: TlsSettings) -> ssl.SSLContext:
    """A context for ``protocol`` with the versions and cipher suites of ``s``."""
    ctx = ssl.SSLContext(protocol)
    versions = sorted(PROTOCOLS[p] for p in s.enabled_protocols)
    ctx.minimum_version, ctx.maximum_version = versions[0], versions[-1]
    try:
        apply_cipher_suites(ctx, s.cipher_suites)
    except CipherSuiteError as e:
        raise TlsConfigError(f"ssl.cipher.suites: {e}") from None
    return ctx


def server_context(s: TlsSettings) -> ssl.SSLContext:
    """A server-side SSLContext for ``s``; raises TlsConfigError saying which key is wrong."""
    ctx = _context(ssl.PROTOCOL_TLS_SERVER, s)
    try:
        if not _load_keystore(ctx, s):
            raise TlsConfigError("An SSL listener needs a keystore: ssl.keystore.location "
                                 "(ssl.keystore.type=PEM), or ssl.keystore.key and "
                                 "ssl.keystore.certificate.chain")
    except (ssl.SSLError, OSError) as e:
        raise TlsConfigError(f"Cannot load the SSL keystore (key and certificate chain): {e}") from None
    try:
        if s.truststore_location:
            ctx.load_verify_locations(cafile=s.truststore_location)
        elif s.truststore_certificates:
            ctx.load_verify_locations(cadata=s.truststore_certificates)
    except (ssl.SSLError, OSError) as e:
        raise TlsConfigError(f"Cannot load the SSL truststore: {e}") from None
    ctx.verify_mode = CLIENT_AUTH[s.client_auth]
    if ctx.verify_mode != ssl.CERT_NONE and not (s.truststore_location or s.truststore_certificates):
        raise TlsConfigError(f"ssl.client.auth={s.client_auth} needs a truststore "
                             f"(ssl.truststore.location with ssl.truststore.type=PEM)")
    return ctx


def client_context(s: TlsSettings, check_hostname: bool) -> ssl.SSLContext:
    """A client-side SSLContext for this broker's connections to others over a
    listener with settings ``s``: the listener's truststore verifies them, its
    keystore (when it has one) is this broker's certificate for ``ssl.client.auth``,
    and ``check_hostname`` follows ``ssl.endpoint.identification.algorithm``."""
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, s)
    try:
        if s.truststore_location:
            ctx.load_verify_locations(cafile=s.truststore_location)
        elif s.truststore_certificates:
            ctx.load_verify_locations(cadata=s.truststore_certificates)
        else:
            ctx.load_default_certs()
        _load_keystore(ctx, s)
    except (ssl.SSLError, OSError) as e:
        raise TlsConfigError(f"Cannot load the inter-broker TLS settings: {e}") from None
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# -- the principal of a certificate -------------------------------------------

# The attribute keywords RFC 2253 prints (Java's X500Principal.getName() uses these).
_KEYWORDS = {
    "commonName": "CN", "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
    "organizationName": "O", "organizationalUnitName": "OU", "streetAddress": "STREET",
    "domainComponent": "DC", "userId": "UID",
}


def _escape(value: str) -> str:
    out = re.sub(r'([,+"\\<>;])', r"\\\1", value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def subject_dn(peercert: dict) -> str:
    """The subject of ``peercert`` (the ``ssl`` module's dict) as RFC 2253 prints it.

    Attributes outside RFC 2253's keywords are printed with OpenSSL's name
    (``emailAddress=...``) where Java prints the OID and the value's DER in hex.
    """
    rdns = []
    for rdn in reversed(peercert.get("subject", ())):
        rdns.append("+".join(f"{_KEYWORDS.get(k, k)}={_escape(v)}" for k, v in rdn))
    return ",".join(rdns)


_RULE = re.compile(r"\s*(?:(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?))\s*(?:,|\n|$)")


class PrincipalMapper:
    """``ssl.principal.mapping.rules``: the first rule whose pattern matches the
    whole DN gives the name; ``DEFAULT`` gives the DN itself. No rule matching
    fails the connection, as in Kafka."""

    def __init__(self, rules: str = "DEFAULT"):
        self.rules: list[tuple[re.Pattern, str, str] | None] = []
        pos, text = 0, rules.strip() or "DEFAULT"
        while pos < len(text):
            m = _RULE.match(text, pos)
            if m is None or m.end() == pos:
                raise TlsConfigError(f"Invalid ssl.principal.mapping.rules near {text[pos:pos + 30]!r}")
            pos = m.end()
            if m.group(1):
                self.rules.append(None)
            else:
                try:
                    pattern = re.compile(m.group(2).replace("\\/", "/"))
                except re.error as e:
                    raise TlsConfigError(f"Invalid pattern in ssl.principal.mapping.rules: {e}") from None
                self.rules.append((pattern, m.group(3).replace("\\/", "/"), m.group(4)))

    def name(self, dn: str) -> str:
        for rule in self.rules:
            if rule is None:
                return dn
            pattern, replacement, case = rule
            m = pattern.fullmatch(dn)
            if m is None:
                continue
            out = re.sub(r"\$(\d)", lambda g: m.group(int(g.group(1))) or "", replacement)
            return out.lower() if case == "L" else out.upper() if case == "U" else out
        raise ValueError(f"No rule of ssl.principal.mapping.rules applies to {dn}")

    def principal(self, peercert: dict | None) -> KafkaPrincipal:
        if not peercert or not peercert.get("subject"):
            return ANONYMOUS
        return KafkaPrincipal(USER, self.name(subject_dn(peercert)))
