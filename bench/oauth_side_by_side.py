#!/usr/bin/env python3
"""SASL/OAUTHBEARER byte by byte against Apache Kafka 4.4 and odradek, side by
side: the same listener settings (Kafka's unsecured validator with a required
scope), the same tokens, and what each broker answers to each step
(SaslAuthenticate's error code, message, bytes and session lifetime, rounded
to the second).

    PYTHONPATH=. python3 bench/oauth_side_by_side.py
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
spec = importlib.util.spec_from_file_location("kafka_runtime", ROOT / "bench" / "kafka_runtime.py")
kr = importlib.util.module_from_spec(spec)
sys.modules["kafka_runtime"] = kr
spec.loader.exec_module(kr)

from odradek.security.oauthbearer import unsecured_jws  # noqa: E402
from tests.integration.test_security import Raw  # noqa: E402

JAAS = ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        'unsecuredLoginStringClaim_sub="broker" unsecuredValidatorRequiredScope="kafka";')
SETTINGS = {
    "listener.name.oauth.sasl.enabled.mechanisms": "OAUTHBEARER",
    "listener.name.oauth.oauthbearer.sasl.jaas.config": JAAS,
    "connection.failed.authentication.delay.ms": "0",
}


def tokens() -> list[tuple[str, bytes]]:
    now = time.time()
    good = {"sub": "alice", "iat": now - 1, "exp": now + 600, "scope": ["kafka"]}
    return [
        ("good token", unsecured_jws(good).encode()),
        ("expired", unsecured_jws(dict(good, exp=now - 5)).encode()),
        ("wrong scope", unsecured_jws(dict(good, scope=["other"])).encode()),
        ("no sub", unsecured_jws({k: v for k, v in good.items() if k != "sub"}).encode()),
        ("signed", unsecured_jws(good, {"alg": "HS256"}).encode()),
        ("not a JWS", b"abc"),
        ("issued in the future", unsecured_jws(dict(good, iat=now + 300)).encode()),
    ]


def ask(addr: str) -> list[str]:
    out = []
    for name, token in tokens():
        r = Raw(addr)
        r.request("SaslHandshake", 1, {"mechanism": "OAUTHBEARER"})
        first = r.request("SaslAuthenticate", 2, {"auth_bytes": b"n,,\x01auth=Bearer " + token + b"\x01\x01"})
        line = f"{name}: error {first['error_code']}, bytes {bytes(first['auth_bytes'])!r}, " \
               f"lifetime {round(first['session_lifetime_ms'] / 1000)} s"
        if first["error_code"] == 0 and first["auth_bytes"]:
            second = r.request("SaslAuthenticate", 2, {"auth_bytes": b"\x01"})
            line += f"; after %x01: error {second['error_code']}, message {second['error_message']!r}"
        elif first["error_code"]:
            line += f", message {first['error_message']!r}"
        out.append(line)
        r.close()
    r = Raw(addr)
    r.request("SaslHandshake", 1, {"mechanism": "OAUTHBEARER"})
    bad = r.request("SaslAuthenticate", 2, {"auth_bytes": b"n,,auth=Bearer abc"})
    out.append(f"malformed first message: error {bad['error_code']}, message {bad['error_message']!r}")
    r.close()
    # SASL extensions (KIP-342): what the server does with key=value pairs beside auth
    good = tokens()[0][1]
    for name, message in extension_messages(good):
        r = Raw(addr)
        r.request("SaslHandshake", 1, {"mechanism": "OAUTHBEARER"})
        resp = r.request("SaslAuthenticate", 2, {"auth_bytes": message})
        out.append(f"{name}: error {resp['error_code']}, message {resp['error_message']!r}, "
                   f"bytes {bytes(resp['auth_bytes'])!r}")
        r.close()
    return out


def extension_messages(token: bytes) -> list[tuple[str, bytes]]:
    auth = b"auth=Bearer " + token + b"\x01"
    return [
        ("extensions after auth", b"n,,\x01" + auth + b"traceId=abc\x01logicalCluster=lkc-1\x01\x01"),
        ("an extension before auth", b"n,,\x01traceId=abc\x01" + auth + b"\x01"),
        ("a value with spaces and a tab", b"n,,\x01" + auth + b"note=a b\tc\x01\x01"),
        ("a key with a digit", b"n,,\x01" + auth + b"a1=b\x01\x01"),
        ("an empty value", b"n,,\x01" + auth + b"k=\x01\x01"),
        ("a value with DEL", b"n,,\x01" + auth + b"k=\x7f\x01\x01"),
        ("the same key twice", b"n,,\x01" + auth + b"k=1\x01k=2\x01\x01"),
    ]


def kafka() -> list[str]:
    oauth = kr.free_port()
    k = kr.KafkaBroker()
    k.port, k.controller_port = kr.free_port(), kr.free_port()
    k.extra_config.update(SETTINGS)
    k.extra_config.update({
        "listeners": f"PLAINTEXT://127.0.0.1:{k.port},OAUTH://127.0.0.1:{oauth},"
                     f"CONTROLLER://127.0.0.1:{k.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{k.port},OAUTH://127.0.0.1:{oauth}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,OAUTH:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
    })
    with k:
        return ask(f"127.0.0.1:{oauth}")


def odradek() -> list[str]:
    from odradek.embedded import EmbeddedBroker

    config = dict(SETTINGS, **{"listeners": "PLAINTEXT://127.0.0.1:0,OAUTH://127.0.0.1:0",
                               "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,OAUTH:SASL_PLAINTEXT"})
    with EmbeddedBroker(config=config) as b:
        return ask("127.0.0.1:%d" % b.core.endpoints["OAUTH"][1])


def main() -> int:
    theirs, ours = kafka(), odradek()
    differ = 0
    for k_line, o_line in zip(theirs, ours):
        same = k_line == o_line
        differ += not same
        print(f"{'  ' if same else '!='} kafka:   {k_line}")
        if not same:
            print(f"   odradek: {o_line}")
    print("same answers" if not differ else f"{differ} answers differ")
    return 1 if differ else 0


if __name__ == "__main__":
    os.environ.setdefault("ODRADEK_LOG_LEVEL", "WARNING")
    sys.exit(main())
