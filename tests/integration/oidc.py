"""A small OpenID provider for the OAUTHBEARER tests (the ``idp`` fixture)."""

import time

import pytest


@pytest.fixture
def idp():
    """A small OpenID provider over HTTP: a JSON Web Key Set and a token
    endpoint issuing 4-second RS256 tokens (audience kafka, no issuer) for the
    client-credentials grant of broker:broker-secret, or for the jwt-bearer
    grant of an assertion signed by ``trusted`` (a private key; its ``sub``
    becomes the token's). It records what it was asked, and answers HTTP 503
    to the next ``unavailable`` requests."""
    import base64
    import http.server
    import json
    import threading
    import urllib.parse

    jwt = pytest.importorskip("jwt")
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = json.dumps({"keys": [dict(json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())),
                                     kid="k1", use="sig", alg="RS256")]}).encode()
    asked = []
    state = {"unavailable": 0, "trusted": rsa.generate_private_key(public_exponent=65537, key_size=2048)}

    def sign(sub, life):
        now = time.time()
        return jwt.encode({"sub": sub, "iat": int(now), "exp": now + life, "aud": "kafka", "scope": "kafka"}, key,
                          algorithm="RS256", headers={"kid": "k1"})

    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self, code, body):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.reply(200, jwks)

        def do_POST(self):
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            auth = self.headers.get("Authorization")
            user = base64.b64decode(auth.split()[1]).decode() if auth else None
            asked.append((user, form, self.headers["Content-Type"]))
            if state["unavailable"]:
                state["unavailable"] -= 1
                return self.reply(503, b'{"error":"temporarily_unavailable"}')
            if form.get("grant_type") == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
                try:
                    sub = jwt.decode(form["assertion"][0], state["trusted"].public_key(), algorithms=["RS256"],
                                     audience=base + "/token")["sub"]
                except (jwt.PyJWTError, KeyError):
                    return self.reply(400, b'{"error":"invalid_grant"}')
            elif user == "broker:broker-secret" and form.get("grant_type") == ["client_credentials"]:
                sub = "broker"
            else:
                return self.reply(401, b'{"error":"invalid_client"}')
            self.reply(200, json.dumps({"access_token": sign(sub, 4), "token_type": "Bearer",
                                        "expires_in": 4}).encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {"jwks": base + "/jwks.json", "token": base + "/token", "asked": asked, "sign": sign, "state": state}
    server.shutdown()
