"""The JKS reader (``odradek.security.keystores``) on stores Java's keytool
made (JDK 17, ``-storetype JKS``): the key entry's key and certificate, the
trusted-certificate entry, the store's digest and the key's check refusing a
wrong password or a changed byte, and every truncation or damaged byte
answered with KeystoreError, never another exception."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from odradek.security.keystores import KeystoreError, keystore_pem, parse_jks, recover_key, truststore_pem

# keytool -genkeypair -alias broker -keyalg EC -groupname secp256r1 -dname "CN=localhost,O=odradek"
#   -keystore real.jks -storetype JKS -storepass store-secret -keypass key-secret
KEYSTORE = bytes.fromhex(
    "feedfeed000000020000000100000001000662726f6b6572000001a24e0432ed0000007f307d300e060a2b060104012a"
    "021101010500046b823a062e452863df309c09b93f7afdbdd0246c927dbb65ba9379b393fbfccc7ac79cf67dd4b3c0ef"
    "0a4e5a5d5549fc674c3c499750906ca3840be8c7e6c807c134615b08d667f1288e33a0594bec4682494a3fc262b7ff7e"
    "8e9e6b28a2b523c17a4411d30ee58c158f868c000000010005582e353039000001683082016430820109a00302010202"
    "083200c639e25bbf5a300a06082a8648ce3d04030230263110300e060355040a13076f64726164656b31123010060355"
    "040313096c6f63616c686f7374301e170d3236313230373031303032375a170d3336313230343031303032375a302631"
    "10300e060355040a13076f64726164656b31123010060355040313096c6f63616c686f73743059301306072a8648ce3d"
    "020106082a8648ce3d03010703420004eee09ef541937e0038fd995e42288c2c335f64ee0c34437e35891eb2437a8e32"
    "a82f49cca4dd7b306499db983603dc3efe025989d9c0d59d43a8b9f3478120ada321301f301d0603551d0e0416041472"
    "eea52d8ad5a4ae445c21d1cec168cb5d30fc12300a06082a8648ce3d0403020349003046022100d3d18046367a30afc8"
    "9ec7019baaec85289c7a65cf09120a5746ddfa06c6f207022100b01add40d3b7368625bf3c44c437de889d92d1bbc156"
    "93c3fc167d680f8c22de6b4d3c276b1065c8b90be977e562e36dc1cd1a69")

# keytool -importcert -alias ca -file <that certificate> -keystore trust.jks -storetype JKS -storepass ts-secret
TRUSTSTORE = bytes.fromhex(
    "feedfeed00000002000000010000000200026361000001a24e0435090005582e353039000001683082016430820109a0"
    "0302010202083200c639e25bbf5a300a06082a8648ce3d04030230263110300e060355040a13076f64726164656b3112"
    "3010060355040313096c6f63616c686f7374301e170d3236313230373031303032375a170d3336313230343031303032"
    "375a30263110300e060355040a13076f64726164656b31123010060355040313096c6f63616c686f7374305930130607"
    "2a8648ce3d020106082a8648ce3d03010703420004eee09ef541937e0038fd995e42288c2c335f64ee0c34437e35891e"
    "b2437a8e32a82f49cca4dd7b306499db983603dc3efe025989d9c0d59d43a8b9f3478120ada321301f301d0603551d0e"
    "0416041472eea52d8ad5a4ae445c21d1cec168cb5d30fc12300a06082a8648ce3d0403020349003046022100d3d18046"
    "367a30afc89ec7019baaec85289c7a65cf09120a5746ddfa06c6f207022100b01add40d3b7368625bf3c44c437de889d"
    "92d1bbc15693c3fc167d680f8c22de0ab732ac6de8a2149783970614dd8e9d4a4632d3")


def test_a_key_entry_with_its_certificate():
    keys, trusted = parse_jks(KEYSTORE, "store-secret")
    assert trusted == [] and [(alias, len(chain)) for alias, _, chain in keys] == [("broker", 1)]
    pkcs8 = recover_key(keys[0][1], "key-secret")
    key = serialization.load_der_private_key(pkcs8, None)
    cert = x509.load_der_x509_certificate(keys[0][2][0])
    assert cert.subject.rfc4514_string() == "CN=localhost,O=odradek"
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert recover_key(keys[0][1], "store-secret") is None  # not the key's password


def test_pem_text_for_the_ssl_module(tmp_path):
    path = tmp_path / "broker.jks"
    path.write_bytes(KEYSTORE)
    key_pem, chain_pem = keystore_pem(str(path), "store-secret", "key-secret")
    assert key_pem.startswith("-----BEGIN PRIVATE KEY-----") and chain_pem.count("BEGIN CERTIFICATE") == 1
    trust = tmp_path / "trust.jks"
    trust.write_bytes(TRUSTSTORE)
    certs = truststore_pem(str(trust), "ts-secret")
    assert x509.load_pem_x509_certificate(certs.encode()) == x509.load_pem_x509_certificate(chain_pem.encode())
    assert truststore_pem(str(trust), None) == certs  # without a password, as Java: no digest check
    with pytest.raises(KeystoreError, match="wrong ssl.key.password"):
        keystore_pem(str(path), "store-secret", "nope")
    with pytest.raises(KeystoreError, match="needs ssl.key.password"):
        keystore_pem(str(path), None, None)


def test_the_digest_refuses_a_wrong_password_or_a_changed_byte():
    with pytest.raises(KeystoreError, match="password is incorrect"):
        parse_jks(KEYSTORE, "wrong")
    changed = bytearray(KEYSTORE)
    changed[40] ^= 1
    with pytest.raises(KeystoreError, match="tampered"):
        parse_jks(bytes(changed), "store-secret")


@pytest.mark.filterwarnings("ignore:Parsed a serial number")  # cryptography, on a damaged certificate
@pytest.mark.parametrize("store, password, key_password", [
    (KEYSTORE, "store-secret", "key-secret"), (TRUSTSTORE, "ts-secret", None)])
def test_truncations_and_damage_are_keystore_errors(tmp_path, store, password, key_password):
    path = tmp_path / "s.jks"

    def load(data):
        path.write_bytes(data)
        if key_password:
            return keystore_pem(str(path), None, key_password)
        return truststore_pem(str(path), None)

    load(store)
    for n in range(len(store)):
        with pytest.raises(KeystoreError):
            parse_jks(store[:n], None)
    for i in range(len(store) - 20):  # every byte of the content damaged, the digest unchecked
        damaged = bytearray(store)
        damaged[i] ^= 0xFF
        try:
            load(bytes(damaged))
        except KeystoreError:
            pass
