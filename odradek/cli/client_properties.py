"""Kafka client properties (Java names, a ``--command-config`` file) as librdkafka properties.

Read: ``security.protocol``, ``sasl.mechanism``,
``ssl.endpoint.identification.algorithm``, ``ssl.key.password`` (same names);
the trust and key stores (``ssl.truststore.*`` / ``ssl.keystore.*``: PEM
files as they are, JKS and PKCS12 stores read into PEM text); the login of
``sasl.jaas.config``:

- ``PlainLoginModule`` / ``ScramLoginModule``: ``username`` and ``password``;
- ``OAuthBearerLoginModule`` with ``sasl.login.callback.handler.class`` =
  Kafka's ``OAuthBearerLoginCallbackHandler``: librdkafka's OIDC login
  (client credentials) from ``sasl.oauthbearer.token.endpoint.url``, the
  client id, secret and scope (``sasl.oauthbearer.client.credentials.*`` and
  ``sasl.oauthbearer.scope``, else the JAAS options ``clientId``,
  ``clientSecret``, ``scope``) and the ``extension_<name>`` options;
- ``OAuthBearerLoginModule`` alone: Kafka's unsecured login, as librdkafka's
  unsecured JWT (``unsecuredLoginStringClaim_<principal claim>``,
  ``unsecuredLoginPrincipalClaimName``, ``unsecuredLoginScopeClaimName`` with
  its list or string claim, ``unsecuredLoginLifetimeSeconds``,
  ``unsecuredLoginExtension_<name>``).

``ssl.cipher.suites`` (Java names) becomes OpenSSL's list of the TLS 1.2
suites; ``ssl.enabled.protocols`` and ``ssl.protocol`` are checked: librdkafka
offers TLS 1.2 and 1.3 and restricts neither the TLS 1.3 suites nor the
version, so a setting it cannot keep to is refused (TLS 1.3 only) or warned
about (a TLS 1.3 suite subset, a list without TLS 1.3).

Refused, never dropped: any other login module, other ``ssl.``/``sasl.``/
``security.`` keys, an unsecured-login claim librdkafka cannot send (a login
that is ignored connects as someone else). Java-only tuning (key and trust
manager algorithms, the login's refresh and retry keys) and keys that are not
about security are passed over with a warning.
"""

from __future__ import annotations

from odradek.security import ciphers

SAME_NAME = ("security.protocol", "sasl.mechanism", "ssl.endpoint.identification.algorithm", "ssl.key.password")
PASSWORD_LOGINS = ("org.apache.kafka.common.security.plain.PlainLoginModule",
                   "org.apache.kafka.common.security.scram.ScramLoginModule")
OAUTH_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
OIDC_HANDLERS = ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
                 "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerLoginCallbackHandler")
STORES = ("ssl.truststore.type", "ssl.keystore.type", "ssl.truststore.location", "ssl.keystore.location",
          "ssl.truststore.password", "ssl.keystore.password")
# Java-only settings with no librdkafka counterpart: a warning, not a refusal.
JAVA_ONLY = ("ssl.keymanager.algorithm", "ssl.trustmanager.algorithm", "ssl.secure.random.implementation",
             "ssl.provider", "sasl.login.refresh.window.factor", "sasl.login.refresh.window.jitter",
             "sasl.login.refresh.min.period.seconds", "sasl.login.refresh.buffer.seconds",
             "sasl.login.retry.backoff.ms", "sasl.login.retry.backoff.max.ms", "sasl.login.connect.timeout.ms",
             "sasl.login.read.timeout.ms", "sasl.oauthbearer.header.urlencode", "sasl.oauthbearer.sub.claim.name",
             "sasl.oauthbearer.scope.claim.name")
OIDC_KEYS = ("sasl.login.callback.handler.class", "sasl.oauthbearer.token.endpoint.url",
             "sasl.oauthbearer.client.credentials.client.id", "sasl.oauthbearer.client.credentials.client.secret",
             "sasl.oauthbearer.scope")
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
JAVA_DISABLED = ("TLSv1.1", "TLSv1", "SSLv3", "SSLv2Hello")


class PropertiesError(ValueError):
    pass


def translate(props: dict[str, str], warn) -> dict[str, str]:
    """librdkafka's properties for the Kafka client ``props``; ``warn(message)``
    for what is passed over. Raises PropertiesError for what cannot be kept to
    (the stores are read by the caller)."""
    from odradek.security.jaas import JaasError, parse_jaas

    out: dict[str, str] = {}
    for key, value in props.items():
        if key in SAME_NAME:
            out[key] = value
        elif key == "sasl.jaas.config":
            try:
                modules = parse_jaas(value)
            except JaasError as e:
                raise PropertiesError(f"sasl.jaas.config: {e}") from None
            if len(modules) != 1 or modules[0].name not in PASSWORD_LOGINS + (OAUTH_MODULE,):
                raise PropertiesError("sasl.jaas.config: only PlainLoginModule, ScramLoginModule and "
                                      "OAuthBearerLoginModule logins are read")
            opts = modules[0].options
            if modules[0].name == OAUTH_MODULE:
                out.update(_oauthbearer(props, opts))
                continue
            if "username" not in opts or "password" not in opts:
                raise PropertiesError("sasl.jaas.config: the login needs username and password")
            out["sasl.username"], out["sasl.password"] = opts["username"], opts["password"]
        elif key == "ssl.cipher.suites":
            out.update(_cipher_suites(value, warn))
        elif key in ("ssl.enabled.protocols", "ssl.protocol"):
            _protocols(key, value, warn)
        elif key in STORES or key in OIDC_KEYS:
            continue  # the stores (the caller) and the OIDC login (with the JAAS line)
        elif key in JAVA_ONLY:
            warn(f"{key} has no effect: librdkafka has no such setting")
        elif key.startswith(("ssl.", "sasl.", "security.")):
            raise PropertiesError(f"{key}: a security property odradek does not translate")
        else:
            warn(f"{key} is not used by odradek's client commands")
    if "sasl.jaas.config" not in props:
        stray = [k for k in OIDC_KEYS if k in props]
        if stray:
            raise PropertiesError(f"{stray[0]} is read with an OAuthBearerLoginModule line in sasl.jaas.config, "
                                  f"which is missing")
    return out


def _oauthbearer(props: dict[str, str], opts: dict[str, str]) -> dict[str, str]:
    handler = (props.get("sasl.login.callback.handler.class") or "").strip()
    extensions = {k[len("extension_"):]: v for k, v in opts.items() if k.startswith("extension_")}
    if handler:
        if handler not in OIDC_HANDLERS:
            raise PropertiesError(f"sasl.login.callback.handler.class={handler}: only Kafka's "
                                  f"{OIDC_HANDLERS[0]} (client credentials) is translated")

        def value(key, jaas):
            v = props.get(key)
            v = v if v is not None else opts.get(jaas)
            return v.strip() if v is not None and v.strip() else None

        url = value("sasl.oauthbearer.token.endpoint.url", "")
        if not url or not url.startswith(("https://", "http://")):
            raise PropertiesError("sasl.oauthbearer.token.endpoint.url: an https:// or http:// token endpoint is "
                                  "needed for the client-credentials login")
        out = {"sasl.oauthbearer.method": "oidc", "sasl.oauthbearer.token.endpoint.url": url}
        for key, jaas, target in (("sasl.oauthbearer.client.credentials.client.id", "clientId",
                                   "sasl.oauthbearer.client.id"),
                                  ("sasl.oauthbearer.client.credentials.client.secret", "clientSecret",
                                   "sasl.oauthbearer.client.secret")):
            v = value(key, jaas)
            if v is None:
                raise PropertiesError(f"the client-credentials login needs {key} or the JAAS option {jaas}")
            out[target] = v
        scope = value("sasl.oauthbearer.scope", "scope")
        if scope:
            out["sasl.oauthbearer.scope"] = scope
        if extensions:
            out["sasl.oauthbearer.extensions"] = ",".join(f"{k}={v}" for k, v in extensions.items())
        return out
    # Kafka's unsecured login, as librdkafka's unsecured JWT
    principal_claim = opts.get("unsecuredLoginPrincipalClaimName", "sub").strip() or "sub"
    scope_claim = opts.get("unsecuredLoginScopeClaimName", "scope").strip() or "scope"
    principal = opts.get(f"unsecuredLoginStringClaim_{principal_claim}")
    if not principal:
        raise PropertiesError(f"sasl.jaas.config: Kafka's unsecured OAUTHBEARER login needs "
                              f"unsecuredLoginStringClaim_{principal_claim}")
    config = [f"principal={principal}"]
    if principal_claim != "sub":
        config.append(f"principalClaimName={principal_claim}")
    if scope_claim != "scope":
        config.append(f"scopeClaimName={scope_claim}")
    for key, v in opts.items():
        if key in (f"unsecuredLoginStringClaim_{principal_claim}", "unsecuredLoginPrincipalClaimName",
                   "unsecuredLoginScopeClaimName") or key.startswith("extension_"):
            continue
        if key == f"unsecuredLoginListClaim_{scope_claim}":
            items = [s for s in v[1:].split(v[0])] if v else []
            config.append("scope=" + ",".join(s for s in items if s))
        elif key == f"unsecuredLoginStringClaim_{scope_claim}":
            config.append(f"scope={v}")
        elif key == "unsecuredLoginLifetimeSeconds":
            config.append(f"lifeSeconds={v}")
        elif key.startswith("unsecuredLoginExtension_"):
            config.append(f"extension_{key[len('unsecuredLoginExtension_'):]}={v}")
        else:
            raise PropertiesError(f"sasl.jaas.config: {key} cannot be sent by librdkafka's unsecured login "
                                  f"(its principal, scope, lifetime and extensions are)")
    if any(" " in part for part in config):
        raise PropertiesError("sasl.jaas.config: librdkafka's unsecured login takes no spaces in its values")
    return {"enable.sasl.oauthbearer.unsecure.jwt": "true", "sasl.oauthbearer.config": " ".join(config)}


def _cipher_suites(value: str, warn) -> dict[str, str]:
    try:
        suites = ciphers.parse(value)
    except ciphers.CipherSuiteError as e:
        raise PropertiesError(f"ssl.cipher.suites: {e}") from None
    if suites is None:
        return {}
    if not suites.tls12:
        raise PropertiesError("ssl.cipher.suites: only TLS 1.3 suites are listed, and librdkafka cannot keep "
                              "to TLS 1.3")
    if suites.tls13 and set(suites.tls13) != set(ciphers.TLS13) or not suites.tls13:
        warn("ssl.cipher.suites: librdkafka restricts the TLS 1.2 suites only; TLS 1.3 is negotiated with "
             "OpenSSL's TLS 1.3 suites")
    return {"ssl.cipher.suites": ":".join(suites.tls12)}


def _protocols(key: str, value: str, warn) -> None:
    listed = [p.strip() for p in value.split(",") if p.strip()]
    if key == "ssl.protocol":
        if listed and listed[0] not in ("TLS",) + TLS_VERSIONS:
            raise PropertiesError(f"ssl.protocol={value}: TLS, TLSv1.2 or TLSv1.3")
        return
    unknown = [p for p in listed if p not in TLS_VERSIONS + JAVA_DISABLED]
    if unknown:
        raise PropertiesError(f"ssl.enabled.protocols: unknown protocol {unknown[0]}")
    usable = [p for p in listed if p in TLS_VERSIONS]
    if not usable:
        raise PropertiesError(f"ssl.enabled.protocols={value}: librdkafka speaks TLSv1.2 and TLSv1.3 only")
    if usable == ["TLSv1.3"]:
        raise PropertiesError("ssl.enabled.protocols=TLSv1.3: librdkafka cannot keep to TLS 1.3 only")
    if "TLSv1.3" not in usable:
        warn("ssl.enabled.protocols: librdkafka also offers TLSv1.3, and negotiates it with a broker that "
             "accepts it")
