"""Test certificates made at test time (nothing private is committed): a CA, a
server certificate for 127.0.0.1/localhost, and client certificates, written
as PEM files the way Kafka's ``ssl.keystore.type=PEM`` reads them (the
PKCS#8 key and the certificate chain in one file)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_OIDS = {"CN": NameOID.COMMON_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "O": NameOID.ORGANIZATION_NAME,
         "L": NameOID.LOCALITY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "C": NameOID.COUNTRY_NAME}


def _name(dn: str) -> x509.Name:
    """'CN=alice,OU=eng,O=acme,C=US' (RFC 2253 order: most specific first)."""
    attrs = [x509.NameAttribute(_OIDS[k], v) for k, v in (p.split("=", 1) for p in dn.split(","))]
    return x509.Name(list(reversed(attrs)))


@dataclass
class Pki:
    dir: Path
    ca_key: object
    ca_cert: x509.Certificate

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.pem")

    def issue(self, name: str, dn: str, server: bool = False, key_password: str | None = None) -> dict:
        """Write ``<name>.pem`` (key + chain), ``<name>.key`` and ``<name>.crt``; return their paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder().subject_name(_name(dn)).issuer_name(self.ca_cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=2)))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = b.sign(self.ca_key, hashes.SHA256())
        enc = (serialization.BestAvailableEncryption(key_password.encode()) if key_password
               else serialization.NoEncryption())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        chain = cert_pem + self.ca_cert.public_bytes(serialization.Encoding.PEM)
        paths = {"pem": self.dir / f"{name}.pem", "key": self.dir / f"{name}.key", "crt": self.dir / f"{name}.crt"}
        paths["pem"].write_bytes(key_pem + chain)
        paths["key"].write_bytes(key_pem)
        paths["crt"].write_bytes(chain)
        for p in paths.values():
            p.chmod(0o600)
        return {k: str(v) for k, v in paths.items()}


def make_pki(directory: Path, ca_dn: str = "CN=odradek test CA,O=odradek") -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(ca_dn)).issuer_name(_name(ca_dn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pki(directory, key, cert)


def server_pki(directory: Path) -> Pki:
    """A CA and a server certificate for localhost and 127.0.0.1 (``.server``)."""
    p = make_pki(directory)
    p.server = p.issue("server", "CN=localhost,O=odradek", server=True)
    return p
