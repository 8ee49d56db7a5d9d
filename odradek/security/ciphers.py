"""``ssl.cipher.suites``: Java's cipher suite names on Python's ssl module.

Kafka lists suites by their standard (IANA) names, as Java does:
``TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384``, and the TLS 1.3 suites
``TLS_AES_128_GCM_SHA256``, ``TLS_AES_256_GCM_SHA384`` and
``TLS_CHACHA20_POLY1305_SHA256``. OpenSSL names the TLS 1.2 suites otherwise
(``ECDHE-RSA-AES256-GCM-SHA384``); ``SUITES`` maps one to the other (the
suites OpenSSL 3 offers, PSK and SRP left out; a name with Java's old ``SSL_``
prefix is read as its ``TLS_`` name).

Invariants, as in Java (whose engine enables only the listed suites):
- a name that is not a cipher suite is refused (Kafka: "Unsupported
  CipherSuite"); ``TLS_EMPTY_RENEGOTIATION_INFO_SCSV`` is a signal, not a
  suite, and OpenSSL always sends it: it has no effect;
- a protocol version none of the listed suites serves is not negotiated: a
  list without TLS 1.3 suites means TLS 1.2 only, one with only TLS 1.3
  suites TLS 1.3 only; a list that leaves no enabled version is refused;
- the TLS 1.3 suites are set on the context's OpenSSL handle
  (``SSL_CTX_set_ciphersuites``, which Python's ssl module does not expose)
  and read back through ``get_ciphers``: if that cannot be done, a list
  that names some of them but not all is refused rather than not enforced.
"""

from __future__ import annotations

import ctypes
import ssl
from dataclasses import dataclass

TLS13 = ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256")
SIGNALS = {"TLS_EMPTY_RENEGOTIATION_INFO_SCSV"}
# Standard name without its TLS_ prefix -> OpenSSL's name (TLS 1.2 and earlier suites).
SUITES = {
    "DHE_DSS_WITH_AES_128_CBC_SHA": "DHE-DSS-AES128-SHA",
    "DHE_DSS_WITH_AES_128_CBC_SHA256": "DHE-DSS-AES128-SHA256",
    "DHE_DSS_WITH_AES_128_GCM_SHA256": "DHE-DSS-AES128-GCM-SHA256",
    "DHE_DSS_WITH_AES_256_CBC_SHA": "DHE-DSS-AES256-SHA",
    "DHE_DSS_WITH_AES_256_CBC_SHA256": "DHE-DSS-AES256-SHA256",
    "DHE_DSS_WITH_AES_256_GCM_SHA384": "DHE-DSS-AES256-GCM-SHA384",
    "DHE_DSS_WITH_ARIA_128_GCM_SHA256": "DHE-DSS-ARIA128-GCM-SHA256",
    "DHE_DSS_WITH_ARIA_256_GCM_SHA384": "DHE-DSS-ARIA256-GCM-SHA384",
    "DHE_DSS_WITH_CAMELLIA_128_CBC_SHA": "DHE-DSS-CAMELLIA128-SHA",
    "DHE_DSS_WITH_CAMELLIA_128_CBC_SHA256": "DHE-DSS-CAMELLIA128-SHA256",
    "DHE_DSS_WITH_CAMELLIA_256_CBC_SHA": "DHE-DSS-CAMELLIA256-SHA",
    "DHE_DSS_WITH_CAMELLIA_256_CBC_SHA256": "DHE-DSS-CAMELLIA256-SHA256",
    "DHE_RSA_WITH_AES_128_CBC_SHA": "DHE-RSA-AES128-SHA",
    "DHE_RSA_WITH_AES_128_CBC_SHA256": "DHE-RSA-AES128-SHA256",
    "DHE_RSA_WITH_AES_128_CCM": "DHE-RSA-AES128-CCM",
    "DHE_RSA_WITH_AES_128_CCM_8": "DHE-RSA-AES128-CCM8",
    "DHE_RSA_WITH_AES_128_GCM_SHA256": "DHE-RSA-AES128-GCM-SHA256",
    "DHE_RSA_WITH_AES_256_CBC_SHA": "DHE-RSA-AES256-SHA",
    "DHE_RSA_WITH_AES_256_CBC_SHA256": "DHE-RSA-AES256-SHA256",
    "DHE_RSA_WITH_AES_256_CCM": "DHE-RSA-AES256-CCM",
    "DHE_RSA_WITH_AES_256_CCM_8": "DHE-RSA-AES256-CCM8",
    "DHE_RSA_WITH_AES_256_GCM_SHA384": "DHE-RSA-AES256-GCM-SHA384",
    "DHE_RSA_WITH_ARIA_128_GCM_SHA256": "DHE-RSA-ARIA128-GCM-SHA256",
    "DHE_RSA_WITH_ARIA_256_GCM_SHA384": "DHE-RSA-ARIA256-GCM-SHA384",
    "DHE_RSA_WITH_CAMELLIA_128_CBC_SHA": "DHE-RSA-CAMELLIA128-SHA",
    "DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256": "DHE-RSA-CAMELLIA128-SHA256",
    "DHE_RSA_WITH_CAMELLIA_256_CBC_SHA": "DHE-RSA-CAMELLIA256-SHA",
    "DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256": "DHE-RSA-CAMELLIA256-SHA256",
    "DHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "DHE-RSA-CHACHA20-POLY1305",
    "DH_anon_WITH_AES_128_CBC_SHA": "ADH-AES128-SHA",
    "DH_anon_WITH_AES_128_CBC_SHA256": "ADH-AES128-SHA256",
    "DH_anon_WITH_AES_128_GCM_SHA256": "ADH-AES128-GCM-SHA256",
    "DH_anon_WITH_AES_256_CBC_SHA": "ADH-AES256-SHA",
    "DH_anon_WITH_AES_256_CBC_SHA256": "ADH-AES256-SHA256",
    "DH_anon_WITH_AES_256_GCM_SHA384": "ADH-AES256-GCM-SHA384",
    "DH_anon_WITH_CAMELLIA_128_CBC_SHA": "ADH-CAMELLIA128-SHA",
    "DH_anon_WITH_CAMELLIA_128_CBC_SHA256": "ADH-CAMELLIA128-SHA256",
    "DH_anon_WITH_CAMELLIA_256_CBC_SHA": "ADH-CAMELLIA256-SHA",
    "DH_anon_WITH_CAMELLIA_256_CBC_SHA256": "ADH-CAMELLIA256-SHA256",
    "ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE_ECDSA_WITH_AES_128_CCM": "ECDHE-ECDSA-AES128-CCM",
    "ECDHE_ECDSA_WITH_AES_128_CCM_8": "ECDHE-ECDSA-AES128-CCM8",
    "ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "ECDHE_ECDSA_WITH_AES_256_CBC_SHA384": "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE_ECDSA_WITH_AES_256_CCM": "ECDHE-ECDSA-AES256-CCM",
    "ECDHE_ECDSA_WITH_AES_256_CCM_8": "ECDHE-ECDSA-AES256-CCM8",
    "ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256": "ECDHE-ECDSA-ARIA128-GCM-SHA256",
    "ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384": "ECDHE-ECDSA-ARIA256-GCM-SHA384",
    "ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256": "ECDHE-ECDSA-CAMELLIA128-SHA256",
    "ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384": "ECDHE-ECDSA-CAMELLIA256-SHA384",
    "ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE_ECDSA_WITH_NULL_SHA": "ECDHE-ECDSA-NULL-SHA",
    "ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "ECDHE_RSA_WITH_AES_256_CBC_SHA384": "ECDHE-RSA-AES256-SHA384",
    "ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE_RSA_WITH_ARIA_128_GCM_SHA256": "ECDHE-ARIA128-GCM-SHA256",
    "ECDHE_RSA_WITH_ARIA_256_GCM_SHA384": "ECDHE-ARIA256-GCM-SHA384",
    "ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256": "ECDHE-RSA-CAMELLIA128-SHA256",
    "ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384": "ECDHE-RSA-CAMELLIA256-SHA384",
    "ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE_RSA_WITH_NULL_SHA": "ECDHE-RSA-NULL-SHA",
    "ECDH_anon_WITH_AES_128_CBC_SHA": "AECDH-AES128-SHA",
    "ECDH_anon_WITH_AES_256_CBC_SHA": "AECDH-AES256-SHA",
    "ECDH_anon_WITH_NULL_SHA": "AECDH-NULL-SHA",
    "RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "RSA_WITH_AES_128_CCM": "AES128-CCM",
    "RSA_WITH_AES_128_CCM_8": "AES128-CCM8",
    "RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "RSA_WITH_AES_256_CBC_SHA256": "AES256-SHA256",
    "RSA_WITH_AES_256_CCM": "AES256-CCM",
    "RSA_WITH_AES_256_CCM_8": "AES256-CCM8",
    "RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "RSA_WITH_ARIA_128_GCM_SHA256": "ARIA128-GCM-SHA256",
    "RSA_WITH_ARIA_256_GCM_SHA384": "ARIA256-GCM-SHA384",
    "RSA_WITH_CAMELLIA_128_CBC_SHA": "CAMELLIA128-SHA",
    "RSA_WITH_CAMELLIA_128_CBC_SHA256": "CAMELLIA128-SHA256",
    "RSA_WITH_CAMELLIA_256_CBC_SHA": "CAMELLIA256-SHA",
    "RSA_WITH_CAMELLIA_256_CBC_SHA256": "CAMELLIA256-SHA256",
    "RSA_WITH_NULL_MD5": "NULL-MD5",
    "RSA_WITH_NULL_SHA": "NULL-SHA",
    "RSA_WITH_NULL_SHA256": "NULL-SHA256",
}


class CipherSuiteError(ValueError):
    pass


@dataclass(frozen=True)
class CipherSuites:
    """A parsed ``ssl.cipher.suites``: OpenSSL's names for the TLS 1.2 suites,
    in the listed order, and the TLS 1.3 suites listed."""

    tls12: tuple[str, ...]
    tls13: tuple[str, ...]


def parse(text: str) -> CipherSuites | None:
    """The suites of a comma-separated list of Java names; None for an empty
    list (OpenSSL's defaults, as Java's apply when the key is unset)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        return None
    tls12: list[str] = []
    tls13: list[str] = []
    for name in names:
        if name in TLS13:
            tls13.append(name)
        elif name in SIGNALS:
            continue
        elif name[:4] in ("TLS_", "SSL_") and name[4:] in SUITES:
            tls12.append(SUITES[name[4:]])
        else:
            raise CipherSuiteError(f"Unsupported CipherSuite: {name}")
    if not tls12 and not tls13:
        raise CipherSuiteError("no cipher suite is listed (only signalling values)")
    return CipherSuites(tuple(dict.fromkeys(tls12)), tuple(dict.fromkeys(tls13)))


def _set_tls13(ctx: ssl.SSLContext, names: tuple[str, ...]) -> bool:
    """Restrict ``ctx``'s TLS 1.3 suites to ``names``; True if ``get_ciphers``
    then shows exactly those."""
    try:
        import _ssl

        setter = ctypes.CDLL(_ssl.__file__).SSL_CTX_set_ciphersuites
        setter.argtypes, setter.restype = [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_int
        # A PySSLContext's first field after the object header is its SSL_CTX pointer.
        handle = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
        if not handle or setter(handle, ":".join(names).encode()) != 1:
            return False
    except (OSError, AttributeError, ImportError):
        return False
    return {c["name"] for c in ctx.get_ciphers() if c.get("protocol") == "TLSv1.3"} == set(names)


def apply(ctx: ssl.SSLContext, suites: CipherSuites | None) -> None:
    """Enable only ``suites`` on ``ctx`` (whose version range is already set),
    narrowing that range to the versions the suites serve."""
    if suites is None:
        return
    low, high = ctx.minimum_version, ctx.maximum_version
    if not suites.tls13:
        high = ssl.TLSVersion.TLSv1_2
    if not suites.tls12:
        low = ssl.TLSVersion.TLSv1_3
    if low > high:
        raise CipherSuiteError("none of the listed cipher suites serves an enabled protocol "
                               "(ssl.enabled.protocols)")
    if suites.tls12 and high >= ssl.TLSVersion.TLSv1_2 >= low:
        try:
            ctx.set_ciphers(":".join(suites.tls12))
        except ssl.SSLError:
            raise CipherSuiteError("none of the listed TLS 1.2 cipher suites can be used by this "
                                   f"OpenSSL ({ssl.OPENSSL_VERSION})") from None
    if suites.tls13 and high == ssl.TLSVersion.TLSv1_3 and set(suites.tls13) != set(TLS13):
        if not _set_tls13(ctx, suites.tls13):
            raise CipherSuiteError("this Python cannot restrict TLS 1.3 cipher suites: list all three "
                                   f"({', '.join(TLS13)}) or none")
    ctx.minimum_version, ctx.maximum_version = low, high
