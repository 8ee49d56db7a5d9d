"""Java keystores and truststores (``ssl.keystore.type`` / ``ssl.truststore.type``
JKS or PKCS12) read into the PEM text the ssl module loads.

As Java's own dual-format keystores do (``keystore.type.compat``, on since
JDK 9), the file's bytes decide how it is read, whatever the type says: a
PKCS12 file named as JKS (what ``keytool`` makes by default since JDK 9,
``.jks`` name and all: the recipe of Kafka's documentation) is read as
PKCS12, and a JKS file named as PKCS12 as JKS. JCEKS and other formats are
refused, with the keytool command that converts them.

PKCS12 is read with cryptography. No well-kept Python library reads JKS,
so ``parse_jks`` reads it here, from the format Java's ``JavaKeyStore``
writes (version 1 or 2): private-key entries (PKCS#8, encrypted with Sun's
key protector: a SHA-1 keystream over the password and a salt, checked by
a SHA-1 of the password and the key) with their certificate chains, and
trusted-certificate entries; the store's SHA-1 over the password,
"Mighty Aphrodite" and its content is checked when a password is given
(Java skips the check without one, and so does this).

A JKS key is taken with ``ssl.key.password``, or the store's password when
that is not set, as Kafka does; a PKCS12 store (one password for all, as
cryptography reads it) with the store's, then ``ssl.key.password``. A keystore's first
private-key entry is the broker's; a truststore's certificates are its
trusted-certificate entries and the certificates of its key entries.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

JKS_MAGIC = b"\xfe\xed\xfe\xed"
JCEKS_MAGIC = b"\xce\xce\xce\xce"
# Sun's JKS key protector, 1.3.6.1.4.1.42.2.17.1.1, as DER
KEY_PROTECTOR_OID = bytes.fromhex("060a2b060104012a02110101")
PRIVATE_KEY_ENTRY, TRUSTED_CERT_ENTRY = 1, 2
WHITENER = b"Mighty Aphrodite"


class KeystoreError(ValueError):
    pass


STORE_TYPES = ("PEM", "PKCS12", "JKS")


def store_type(declared: str | None, location: str | None) -> str:
    """The type of a store (``ssl.keystore.type`` / ``ssl.truststore.type``):
    PEM, PKCS12 or JKS. Not declared: Kafka's default, JKS, unless the file
    at ``location`` is PEM text. Raises KeystoreError for other types."""
    t = (declared or "").strip().upper()
    if not t:
        t = "PEM"
        if location:
            try:
                with open(location, "rb") as f:
                    if b"-----BEGIN" not in f.read(1 << 20):
                        t = "JKS"
            except OSError:
                t = "JKS"  # reported when it is read
    if t not in STORE_TYPES:
        raise KeystoreError(f"{t} stores are not read: PEM, PKCS12 or JKS")
    return t


def _java_password(password: str) -> bytes:
    """A Java char[] password as the JKS digests take it: two bytes a char, big-endian."""
    return password.encode("utf-16-be")


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise KeystoreError("the JKS keystore is truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def utf(self) -> str:  # Java's DataInput.readUTF (modified UTF-8: ASCII aliases read alike)
        return self.take(self.u16()).decode("utf-8", "replace")


def parse_jks(data: bytes, password: str | None) -> tuple[list[tuple[str, bytes, list[bytes]]],
                                                          list[tuple[str, bytes]]]:
    """(private-key entries ``(alias, protected key, [certificate DER])``,
    trusted-certificate entries ``(alias, certificate DER)``) of the JKS
    store ``data``, in file order. With ``password``, the store's digest is
    checked first. Raises KeystoreError."""
    r = _Reader(data)
    if r.take(4) != JKS_MAGIC:
        raise KeystoreError("not a JKS keystore")
    version = r.u32()
    if version not in (1, 2):
        raise KeystoreError(f"JKS version {version} is not known")
    keys, trusted = [], []
    for _ in range(r.u32()):
        tag = r.u32()
        alias = r.utf()
        r.take(8)  # the entry's creation time

        def certificate() -> bytes:
            if version == 2:
                kind = r.utf()
                if kind != "X.509":
                    raise KeystoreError(f"entry {alias!r}: {kind} certificates are not read")
            return r.take(r.u32())

        if tag == PRIVATE_KEY_ENTRY:
            protected = r.take(r.u32())
            keys.append((alias, protected, [certificate() for _ in range(r.u32())]))
        elif tag == TRUSTED_CERT_ENTRY:
            trusted.append((alias, certificate()))
        else:
            raise KeystoreError(f"entry {alias!r}: entry type {tag} is not read (a JCEKS secret key?)")
    body_end = r.pos
    digest = r.take(20)
    if password is not None:
        expected = hashlib.sha1(_java_password(password) + WHITENER + data[:body_end]).digest()
        if not hmac.compare_digest(digest, expected):
            raise KeystoreError("the JKS keystore was tampered with, or its password is incorrect")
    return keys, trusted


def _der(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, contents, next position) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise KeystoreError("a protected key is truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise KeystoreError("a protected key is truncated")
    return tag, data[pos:pos + length], pos + length


def recover_key(protected: bytes, password: str) -> bytes | None:
    """The PKCS#8 DER of a JKS private-key entry (an EncryptedPrivateKeyInfo
    under Sun's key protector), or None when ``password`` is not its key's."""
    tag, info, _ = _der(protected, 0)
    tag_alg, alg, pos = _der(info, 0)
    tag_data, encrypted, _ = _der(info, pos)
    if (tag, tag_alg, tag_data) != (0x30, 0x30, 0x04):
        raise KeystoreError("a protected key is not an EncryptedPrivateKeyInfo")
    if not alg.startswith(KEY_PROTECTOR_OID):
        raise KeystoreError("a key is protected with an algorithm other than JKS's own (a JCEKS store?)")
    if len(encrypted) < 40:
        raise KeystoreError("a protected key is truncated")
    salt, body, check = encrypted[:20], encrypted[20:-20], encrypted[-20:]
    pw = _java_password(password)
    stream = bytearray()
    digest = salt
    while len(stream) < len(body):
        digest = hashlib.sha1(pw + digest).digest()
        stream += digest
    key = bytes(a ^ b for a, b in zip(body, stream))
    if not hmac.compare_digest(hashlib.sha1(pw + key).digest(), check):
        return None
    return key


def _pem_certificates(ders: list[bytes]) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        return "".join(x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM).decode()
                       for d in ders)
    except ValueError as e:
        raise KeystoreError(f"a certificate cannot be read: {e}") from None


def _pem_key(pkcs8: bytes) -> str:
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_der_private_key(pkcs8, None)
    except (ValueError, TypeError) as e:
        raise KeystoreError(f"the private key cannot be read: {e}") from None
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KeystoreError(f"Cannot read the SSL {what} {path}: {e}") from None
    if data.startswith(JCEKS_MAGIC):
        raise KeystoreError(f"The SSL {what} {path} is a JCEKS store, which is not read: convert it with "
                            f"keytool -importkeystore -srckeystore {path} -srcstoretype JCEKS "
                            f"-destkeystore <file.p12> -deststoretype PKCS12")
    return data


def keystore_pem(path: str, password: str | None, key_password: str | None) -> tuple[str, str]:
    """(the private key, its certificate chain) of the JKS or PKCS12 keystore
    at ``path``, as PEM text. Raises KeystoreError."""
    data = _read(path, "keystore")
    if not data.startswith(JKS_MAGIC):
        return _pkcs12_keystore(path, data, list(dict.fromkeys(p for p in (password, key_password) if p)))
    keys, _ = _parse(path, data, password)
    if not keys:
        raise KeystoreError(f"The JKS keystore {path} holds no private key")
    alias, protected, chain = keys[0]
    pw = key_password or password  # as Kafka: the store's password when the key has none of its own
    if not pw:
        raise KeystoreError(f"The key {alias!r} of the JKS keystore {path} needs ssl.key.password "
                            "(or ssl.keystore.password)")
    try:
        pkcs8 = recover_key(protected, pw)
    except KeystoreError as e:
        raise KeystoreError(f"Cannot load the key {alias!r} of the JKS keystore {path}: {e}") from None
    if pkcs8 is None:
        raise KeystoreError(f"Cannot recover the key {alias!r} of the JKS keystore {path}: "
                            f"wrong {'ssl.key.password' if key_password else 'ssl.keystore.password'}?")
    if not chain:
        raise KeystoreError(f"The key {alias!r} of the JKS keystore {path} has no certificate")
    return _pem_key(pkcs8), _pem_certificates(chain)


def truststore_pem(path: str, password: str | None) -> str:
    """The certificates of the JKS or PKCS12 truststore at ``path`` (Java's
    trusted-certificate entries, and the certificates of key entries), as
    PEM text. Raises KeystoreError."""
    data = _read(path, "truststore")
    if not data.startswith(JKS_MAGIC):
        return _pkcs12_truststore(path, data, password)
    keys, trusted = _parse(path, data, password)
    ders = [der for _, der in trusted] + [chain[0] for _, _, chain in keys if chain]
    if not ders:
        raise KeystoreError(f"The JKS truststore {path} holds no certificate")
    return _pem_certificates(ders)


def _parse(path: str, data: bytes, password: str | None):
    try:
        return parse_jks(data, password or None)
    except KeystoreError as e:
        raise KeystoreError(f"Cannot load the JKS store {path}: {e}") from None


def _pkcs12_keystore(path: str, data: bytes, passwords: list[str]) -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    loaded, error = None, None
    for pw in passwords or [None]:
        try:
            loaded = pkcs12.load_pkcs12(data, pw.encode() if pw is not None else None)
            break
        except (ValueError, TypeError) as e:
            error = e
    if loaded is None:
        raise KeystoreError(f"Cannot load the PKCS12 keystore {path} (wrong ssl.keystore.password?): {error}")
    if loaded.key is None or loaded.cert is None:
        raise KeystoreError(f"The PKCS12 keystore {path} holds no private key with its certificate")
    key = loaded.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()).decode()
    chain = [loaded.cert.certificate] + [c.certificate for c in loaded.additional_certs]
    return key, "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)


def _pkcs12_truststore(path: str, data: bytes, password: str | None) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        loaded = pkcs12.load_pkcs12(data, password.encode() if password else None)
    except (ValueError, TypeError) as e:
        raise KeystoreError(f"Cannot load the PKCS12 truststore {path} (ssl.truststore.password?): {e}") from None
    certs = ([loaded.cert] if loaded.cert is not None else []) + list(loaded.additional_certs)
    if not certs:
        raise KeystoreError(f"The PKCS12 truststore {path} holds no certificate")
    return "".join(c.certificate.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
