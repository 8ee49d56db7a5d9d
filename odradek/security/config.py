"""Listener and security settings, read from Kafka's own ``server.properties`` keys.

``security_config(props, listeners)`` resolves, for each listener, its security
protocol (``listener.security.protocol.map``), its TLS settings and its SASL
settings, each key looked up first as ``listener.name.<listener>.<key>`` (the
listener name in lower case), then as ``<key>``. It refuses, with a message
naming the key, every security key odradek does not serve, rather than
ignoring it; keys that have no effect here are accepted and listed in
``notes``, which the broker logs at start. ``inter_broker_client`` gives the
client side of the inter-broker listener, as a follower connects to its
leader: TLS with the listener's truststore and keystore (and
``ssl.endpoint.identification.algorithm``), and a SASL login
(``sasl.mechanism.inter.broker.protocol``) with the ``username`` and
``password`` of the listener's JAAS line for PLAIN or SCRAM, or Kafka's
unsecured or client-credentials OAUTHBEARER login from that line's options
(``odradek.security.oauthbearer.load_login``), as Kafka's brokers log in to
each other.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from odradek.metadata.broker_configs import KERBEROS
from odradek.security.ciphers import CipherSuiteError
from odradek.security.ciphers import parse as parse_cipher_suites
from odradek.security.jaas import JaasError, parse_jaas
from odradek.security.principal import KafkaPrincipal
from odradek.security.keystores import KeystoreError, keystore_pem, store_type, truststore_pem
from odradek.security.oauth_retrievers import HTTP_KEYS, RETRIEVER_KEYS, HttpRetry
from odradek.security.oauthbearer import JWKS_KEYS, REFRESH_KEYS, RefreshWindow
from odradek.security.tls import (PROTOCOLS, PrincipalMapper, TlsConfigError, TlsSettings, client_context,
                                  server_context)


class SecurityConfigError(ValueError):
    pass


PROTOCOL_NAMES = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# Protocol names Java knows but disables (Kafka accepts them in ssl.enabled.protocols and never negotiates them).
JAVA_DISABLED_PROTOCOLS = ("TLSv1.1", "TLSv1", "SSLv3", "SSLv2Hello")
DEFAULT_PROTOCOL_MAP = {p: p for p in PROTOCOL_NAMES}
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
LOGIN_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")  # a broker's own login to another
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
OAUTH_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
# sasl.oauthbearer.<key>, read by Kafka's JWKS validator (also as listener.name.<l>.oauthbearer.sasl.oauthbearer.<key>)
OAUTH_READ = JWKS_KEYS
# sasl.oauthbearer.<key>, read by Kafka's OIDC login (a broker's own, OAuthBearerLoginCallbackHandler)
OAUTH_LOGIN_READ = RETRIEVER_KEYS
# ... of which these ask for that login: without it they are refused (the others are noted as without effect)
OAUTH_LOGIN_WANTED = ("token.endpoint.url", "client.credentials.client.id", "client.credentials.client.secret",
                      "assertion.file", "assertion.private.key.file", "assertion.claim.iss")
DEFAULT_MAX_RECEIVE = 524288

# ssl.* keys: the ones read, and the ones accepted without effect here.
SSL_READ = {
    "ssl.keystore.type", "ssl.keystore.location", "ssl.keystore.password", "ssl.key.password",
    "ssl.keystore.key", "ssl.keystore.certificate.chain", "ssl.truststore.type",
    "ssl.truststore.location", "ssl.truststore.password", "ssl.truststore.certificates",
    "ssl.client.auth", "ssl.enabled.protocols", "ssl.protocol", "ssl.cipher.suites",
    "ssl.principal.mapping.rules", "ssl.provider", "ssl.engine.factory.class",
    "ssl.keymanager.algorithm", "ssl.trustmanager.algorithm", "ssl.endpoint.identification.algorithm",
}
SSL_NO_EFFECT = {
    "ssl.secure.random.implementation": "Python's ssl module uses OpenSSL's generator",
    "ssl.allow.dn.changes": "it applies to keystore updates at run time, which odradek does not make",
    "ssl.allow.san.changes": "it applies to keystore updates at run time, which odradek does not make",
}
# Keys read per listener besides ssl.*; '<mechanism>.' keys are handled apart.
LISTENER_READ = {"sasl.enabled.mechanisms", "sasl.server.max.receive.size", "connections.max.reauth.ms",
                 "max.connections"}
TOP_READ = LISTENER_READ | {
    "listeners", "advertised.listeners", "listener.security.protocol.map", "inter.broker.listener.name",
    "security.inter.broker.protocol", "sasl.mechanism.inter.broker.protocol", "controller.listener.names",
    "super.users", "connection.failed.authentication.delay.ms", "authorizer.class.name",
    "principal.builder.class", "security.providers", "allow.everyone.if.no.acl.found",
    "max.connections.per.ip", "max.connections.per.ip.overrides",
    # delegation tokens (odradek.security.delegation_tokens)
    "delegation.token.secret.key", "delegation.token.max.lifetime.ms", "delegation.token.expiry.time.ms",
    "delegation.token.expiry.check.interval.ms",
}
TOP_NO_EFFECT = {
    "sasl.mechanism.controller.protocol": "odradek has no KRaft controller listener",
    "early.start.listeners": "every listener starts once the broker has loaded its state",
    "max.connection.creation.rate": "the broker-wide connection rate is not served (ip connection_creation_rate "
                                    "quotas are)",
    **{f"password.encoder.{k}": "no configuration is kept encoded: odradek refuses passwords as dynamic "
                                "broker configs"
       for k in ("secret", "old.secret", "keyfactory.algorithm", "cipher.algorithm", "key.length", "iterations")},
}
# Prefixes of keys that concern security: any key under them not read above is refused.
SECURITY_PREFIXES = ("ssl.", "sasl.", "security.", "listener.name.", "principal.", "authorizer.",
                     "delegation.token.", "password.encoder.", "super.users", "connections.max.reauth",
                     "control.plane.listener", "listener.security")
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# sasl.login.class values naming Kafka's own login classes (the ones Kafka picks by itself per mechanism)
KAFKA_LOGIN_CLASSES = ("org.apache.kafka.common.security.authenticator.DefaultLogin",
                       "org.apache.kafka.common.security.oauthbearer.internals.OAuthBearerRefreshingLogin",
                       "org.apache.kafka.common.security.kerberos.KerberosLogin")
DEFAULT_PRINCIPAL_BUILDER = "org.apache.kafka.common.security.authenticator.DefaultKafkaPrincipalBuilder"
HINTS = {
    "sasl.jaas.config": "Kafka's broker reads JAAS lines per mechanism: "
                        "listener.name.<listener>.<mechanism>.sasl.jaas.config",
    "sasl.kerberos.": "GSSAPI (Kerberos) is not served, and this is none of Kafka's sasl.kerberos.* settings",
    "sasl.oauthbearer.": "only the JWKS validator's keys (sasl.oauthbearer." + ", ...".join(JWKS_KEYS)
                         + ") and the OIDC login's (..." + ", ...".join(RETRIEVER_KEYS) + ") are read",
    "sasl.login.": "an inter-broker login uses the inter-broker listener's JAAS line (username and password, or "
                   "OAUTHBEARER's login options); of the sasl.login.* keys only OAUTHBEARER's "
                   "sasl.login.callback.handler.class, sasl.login.refresh.* and the token endpoint's "
                   + ", ".join(HTTP_KEYS) + " are read",
    "delegation.token.master.key": "Kafka 4 removed it: the secret is delegation.token.secret.key",
    "control.plane.listener": "a control-plane listener is not served",
}


@dataclass
class SaslSettings:
    mechanisms: tuple[str, ...]
    plain_users: dict[str, str] = field(default_factory=dict, repr=False)
    max_receive_size: int = DEFAULT_MAX_RECEIVE
    reauth_by_mechanism: dict[str, int] = field(default_factory=dict)  # connections.max.reauth.ms
    failed_auth_delay_ms: int = 100
    oauth_validator: object = field(default=None, repr=False)  # odradek.security.oauthbearer, for OAUTHBEARER
    oauth_options: dict[str, str] = field(default_factory=dict, repr=False)  # its JAAS line's options
    oauth_login_handler: str | None = None  # sasl.login.callback.handler.class, for a broker's own login
    oauth_login_settings: dict[str, str] = field(default_factory=dict, repr=False)  # sasl.oauthbearer.<login key>
    oauth_refresh: RefreshWindow = field(default_factory=RefreshWindow)  # sasl.login.refresh.*
    oauth_http: HttpRetry = field(default_factory=HttpRetry)  # the token endpoint's sasl.login.retry/timeout keys

    def reauth_ms(self, mechanism: str | None) -> int:
        return self.reauth_by_mechanism.get(mechanism, 0)


@dataclass
class ListenerSecurity:
    name: str
    protocol: str
    ssl_context: ssl.SSLContext | None = None
    mapper: PrincipalMapper | None = None
    sasl: SaslSettings | None = None
    tls: TlsSettings | None = None  # for the client side, when this is the inter-broker listener
    check_hostname: bool = True  # ssl.endpoint.identification.algorithm=https (Kafka's default)
    logins: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)  # mechanism -> (user, password)


@dataclass
class InterBrokerClient:
    """How this broker connects to another's inter-broker listener."""

    listener: str
    protocol: str
    ssl_context: ssl.SSLContext | None = None
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    oauth: object = field(default=None, repr=False)  # OAUTHBEARER: odradek.security.oauthbearer.UnsecuredLogin


@dataclass
class ConnectionLimitSettings:
    """Kafka's connection limits (``odradek.server.listeners.ConnectionLimits``); None: no limit."""

    max_connections: int | None = None  # max.connections, broker-wide
    listener_max: dict[str, int] = field(default_factory=dict)  # listener.name.<l>.max.connections
    per_ip: int | None = None  # max.connections.per.ip
    per_ip_overrides: dict[str, int] = field(default_factory=dict)  # address -> max.connections.per.ip.overrides


@dataclass
class SecurityConfig:
    listeners: dict[str, ListenerSecurity]
    super_users: tuple[KafkaPrincipal, ...] = ()
    inter_broker_listener: str | None = None
    notes: list[str] = field(default_factory=list)
    authorizer: bool = False  # authorizer.class.name: ACLs are enforced
    allow_if_no_acl: bool = False  # allow.everyone.if.no.acl.found
    inter_broker_mechanism: str = "GSSAPI"  # sasl.mechanism.inter.broker.protocol
    limits: ConnectionLimitSettings = field(default_factory=ConnectionLimitSettings)

    def inter_broker_client(self) -> InterBrokerClient:
        """The client side of the inter-broker listener (default: the first
        listener). Raises SecurityConfigError when it cannot be served."""
        name = self.inter_broker_listener or next(iter(self.listeners))
        sec = self.listeners[name]
        client = InterBrokerClient(name, sec.protocol)
        if sec.tls is not None:
            try:
                client.ssl_context = client_context(sec.tls, sec.check_hostname)
            except TlsConfigError as e:
                raise SecurityConfigError(f"Inter-broker listener {name}: {e}") from None
        if sec.sasl is not None:
            mech = self.inter_broker_mechanism
            if mech not in LOGIN_MECHANISMS:
                raise SecurityConfigError(f"sasl.mechanism.inter.broker.protocol={mech}: a broker's own login "
                                          f"to another is served with {', '.join(LOGIN_MECHANISMS)} only")
            if mech not in sec.sasl.mechanisms:
                raise SecurityConfigError(f"sasl.mechanism.inter.broker.protocol={mech} is not enabled on the "
                                          f"inter-broker listener {name} (sasl.enabled.mechanisms)")
            if mech == "OAUTHBEARER":
                from odradek.security.oauthbearer import load_login

                try:
                    client.mechanism, client.oauth = mech, load_login(
                        sec.sasl.oauth_login_handler, sec.sasl.oauth_options, sec.sasl.oauth_login_settings,
                        sec.sasl.oauth_refresh, sec.sasl.oauth_http)
                except ValueError as e:
                    raise SecurityConfigError(f"listener.name.{name.lower()}.oauthbearer.sasl.jaas.config: "
                                              f"{e}") from None
                return client
            login = sec.logins.get(mech)
            if login is None:
                raise SecurityConfigError(
                    f"Inter-broker listener {name}: the JAAS line for {mech} "
                    f"(listener.name.{name.lower()}.{mech.lower()}.sasl.jaas.config) has no username and "
                    f"password for this broker's own login")
            client.mechanism, (client.username, client.password) = mech, login
        return client


def protocol_map(props: dict[str, str]) -> dict[str, str]:
    text = props.get("listener.security.protocol.map")
    if not text:
        return dict(DEFAULT_PROTOCOL_MAP)
    out = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, sep, proto = entry.partition(":")
        if not sep or proto.strip().upper() not in PROTOCOL_NAMES:
            raise SecurityConfigError(f"Invalid listener.security.protocol.map entry {entry!r}: "
                                      f"expected NAME:PROTOCOL with PROTOCOL one of {', '.join(PROTOCOL_NAMES)}")
        out[name.strip().upper()] = proto.strip().upper()
    return out


def controller_listeners(props: dict[str, str]) -> set[str]:
    return {n.strip().upper() for n in (props.get("controller.listener.names") or "").split(",") if n.strip()}


def _is_security_key(k: str) -> bool:
    return k.startswith(SECURITY_PREFIXES)


def _refuse(key: str, why: str | None = None):
    hint = why or next((h for p, h in HINTS.items() if key.startswith(p)), None)
    raise SecurityConfigError(f"Unsupported security setting {key}" + (f": {hint}" if hint else
                              ": odradek does not serve it, and will not ignore a security setting"))


def _check_key(key: str, where: str, notes: list[str]) -> None:
    """Refuse ``key`` unless it is read or known to have no effect; ``where`` is
    'top' or 'listener'."""
    if key in SSL_READ:
        return
    if key in SSL_NO_EFFECT:
        notes.append(f"{key} has no effect: {SSL_NO_EFFECT[key]}")
        return
    mech, dot, rest = key.partition(".")
    if key == "sasl.login.class":
        return  # checked with its value (security_config)
    if dot and mech.upper() in MECHANISMS + ("GSSAPI", "OAUTHBEARER") and rest in (
            "sasl.jaas.config", "connections.max.reauth.ms", "sasl.server.callback.handler.class",
            "sasl.login.callback.handler.class", "sasl.login.class"):
        if mech.upper() not in MECHANISMS:
            _refuse(key, f"SASL mechanism {mech.upper()} is not served")
        if rest == "sasl.login.class":
            return  # checked with its value (security_config)
        if rest.endswith("callback.handler.class") and mech.upper() != "OAUTHBEARER":
            _refuse(key, "Java callback handlers cannot be loaded")
        return
    login_keys = REFRESH_KEYS.keys() | HTTP_KEYS.keys()
    if key == "sasl.login.callback.handler.class" or key in login_keys \
            or (key.startswith("oauthbearer.") and key[len("oauthbearer."):] in login_keys):
        return  # OAUTHBEARER's login (checked with the listener's SASL settings)
    if key in KERBEROS:
        notes.append(f"{key} has no effect: no listener enables GSSAPI (odradek does not serve it)")
        return
    if key.startswith(("sasl.oauthbearer.", "oauthbearer.sasl.oauthbearer.")) \
            and key.rpartition("sasl.oauthbearer.")[2] in OAUTH_READ + OAUTH_LOGIN_READ:
        return
    if where == "listener" and key in LISTENER_READ:
        return
    if where == "top" and key in TOP_READ:
        return
    if where == "top" and key in TOP_NO_EFFECT:
        notes.append(f"{key} has no effect: {TOP_NO_EFFECT[key]}")
        return
    if where == "listener" or _is_security_key(key):
        _refuse(key)


def _check_kerberos(props: dict[str, str]) -> None:
    """Kafka's sasl.kerberos.* settings have no effect without GSSAPI, which
    odradek refuses; as on a Kafka broker, they must still be of their type."""
    from odradek.config import ConfigError
    from odradek.metadata.broker_configs import validate

    for key, value in props.items():
        name = key.split(".", 3)[3] if key.startswith("listener.name.") and key.count(".") > 3 else key
        if name in KERBEROS:
            try:
                validate(name, value)
            except ConfigError as e:
                raise SecurityConfigError(str(e)) from None


def _int(value: str | None, key: str, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise SecurityConfigError(f"Invalid value {value!r} for {key}: expected an integer") from None


def security_config(props: dict[str, str], listeners) -> SecurityConfig:
    """Validate the security keys of ``props`` for ``listeners`` (``odradek.config.Listener``,
    controller listeners already left out) and build each listener's settings."""
    notes: list[str] = []
    names = {l.name.lower(): l.name for l in listeners}
    controllers = {n.lower() for n in controller_listeners(props)}
    for key in props:
        if key.startswith("listener.name."):
            lname, _, rest = key[len("listener.name."):].partition(".")
            if lname.lower() in controllers:
                notes.append(f"{key} has no effect: odradek has no KRaft controller listener")
                continue
            if lname.lower() not in names:
                raise SecurityConfigError(f"{key} names listener {lname.upper()}, which is not in listeners")
            _check_key(rest, "listener", notes)
        else:
            _check_key(key, "top", notes)
    _check_kerberos(props)
    authorizer = (props.get("authorizer.class.name") or "").strip()
    if authorizer and authorizer != STANDARD_AUTHORIZER:
        _refuse("authorizer.class.name", f"only {STANDARD_AUTHORIZER} (ACLs kept in the cluster metadata) is served")
    allow_text = (props.get("allow.everyone.if.no.acl.found") or "false").strip().lower()
    if allow_text not in ("true", "false"):
        raise SecurityConfigError(f"Invalid allow.everyone.if.no.acl.found={allow_text}: expected true or false")
    if not authorizer and props.get("allow.everyone.if.no.acl.found") is not None:
        notes.append("allow.everyone.if.no.acl.found has no effect without authorizer.class.name")
    for key, value in props.items():
        if key == "sasl.login.class" or key.endswith(".sasl.login.class"):
            if value.strip() not in KAFKA_LOGIN_CLASSES:
                _refuse(key, f"Java login classes cannot be loaded (Kafka's own are accepted: "
                             f"{', '.join(KAFKA_LOGIN_CLASSES)})")
            notes.append(f"{key} has no effect: odradek's logins are its own, as Kafka's {value.strip()} would be")
    for key, why in (("principal.builder.class", "Java principal builders cannot be loaded"),
                     ("security.providers", "Java security providers cannot be loaded"),
                     ("client.quota.callback.class",
                      "Java quota callbacks cannot be loaded (Kafka's default quotas are served)")):
        value = props.get(key, "").strip()
        if value and not (key == "principal.builder.class" and value == DEFAULT_PRINCIPAL_BUILDER):  # Kafka's own
            _refuse(key, why)

    try:  # typed as Kafka types them, whether or not a listener reads them
        HttpRetry.from_settings({k: props.get(k) for k in HTTP_KEYS})
    except ValueError as e:
        raise SecurityConfigError(str(e)) from None
    for key in ("quota.window.num", "quota.window.size.seconds", "delegation.token.max.lifetime.ms",
                "delegation.token.expiry.time.ms", "delegation.token.expiry.check.interval.ms"):
        if _int(props.get(key), key, 1) < 1:
            raise SecurityConfigError(f"Invalid value {props[key]!r} for {key}: expected at least 1")

    out: dict[str, ListenerSecurity] = {}
    for l in listeners:
        def get(key, default=None, _l=l.name.lower()):
            v = props.get(f"listener.name.{_l}.{key}")
            return v if v is not None else props.get(key, default)

        sec = ListenerSecurity(l.name, l.protocol)
        if l.protocol in ("SSL", "SASL_SSL"):
            sec.ssl_context, sec.mapper, sec.tls = _tls(l.name, get, notes)
            algorithm = (get("ssl.endpoint.identification.algorithm", "https") or "").strip().lower()
            if algorithm not in ("", "https"):
                raise SecurityConfigError(f"Invalid ssl.endpoint.identification.algorithm {algorithm!r}: "
                                          f"https or empty")
            sec.check_hostname = algorithm == "https"
        if l.protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
            sec.sasl, sec.logins = _sasl(l.name, get, props, notes)
        out[l.name] = sec

    if not any(sec.sasl is not None and "OAUTHBEARER" in sec.sasl.mechanisms for sec in out.values()):
        notes += [f"{k} has no effect: no listener enables OAUTHBEARER" for k in props
                  if k.startswith("sasl.oauthbearer.") or k in REFRESH_KEYS or k in HTTP_KEYS]
    inter = props.get("inter.broker.listener.name", "").strip().upper() or None
    if inter and props.get("security.inter.broker.protocol", "").strip():
        raise SecurityConfigError("Only one of inter.broker.listener.name and security.inter.broker.protocol "
                                  "may be set")
    if inter is None:
        proto = (props.get("security.inter.broker.protocol") or "PLAINTEXT").strip().upper()
        if proto not in PROTOCOL_NAMES:
            raise SecurityConfigError(f"Invalid security.inter.broker.protocol {proto}")
        inter = proto if props.get("security.inter.broker.protocol") else None
    if inter is not None:
        if inter not in out:
            raise SecurityConfigError(f"inter.broker.listener.name (or security.inter.broker.protocol) "
                                      f"names {inter}, which is not a listener")
        mech = (props.get("sasl.mechanism.inter.broker.protocol") or "GSSAPI").strip()
        if out[inter].sasl is not None and mech not in out[inter].sasl.mechanisms:
            raise SecurityConfigError(f"sasl.mechanism.inter.broker.protocol={mech} is not enabled on the "
                                      f"inter-broker listener {inter} (sasl.enabled.mechanisms)")
    supers = []
    for item in (props.get("super.users") or "").split(";"):
        if item.strip():
            try:
                supers.append(KafkaPrincipal.parse(item))
            except ValueError as e:
                raise SecurityConfigError(f"Invalid super.users: {e}") from None
    return SecurityConfig(out, tuple(supers), inter, notes, authorizer=bool(authorizer),
                          allow_if_no_acl=allow_text == "true",
                          inter_broker_mechanism=(props.get("sasl.mechanism.inter.broker.protocol")
                                                  or "GSSAPI").strip(),
                          limits=connection_limits(props, listeners))


def connection_limits(props: dict[str, str], listeners) -> ConnectionLimitSettings:
    """Kafka's ``max.connections`` (also per listener), ``max.connections.per.ip``
    and ``max.connections.per.ip.overrides`` (``host:count,...``; a host name is
    resolved once, at start, as Kafka resolves it), checked as Kafka checks them."""
    import ipaddress
    import socket

    def count(key, value):
        n = _int(value, key, 0)
        if n < 0:
            raise SecurityConfigError(f"Invalid value {value!r} for {key}: expected at least 0")
        return n

    def limit(key):
        value = props.get(key)
        return None if value in (None, "") else count(key, value.strip())

    out = ConnectionLimitSettings(max_connections=limit("max.connections"), per_ip=limit("max.connections.per.ip"))
    for l in listeners:
        n = limit(f"listener.name.{l.name.lower()}.max.connections")
        if n is not None:
            out.listener_max[l.name] = n
    for entry in (e.strip() for e in (props.get("max.connections.per.ip.overrides") or "").split(",")):
        if not entry:
            continue
        parts = [p.strip() for p in entry.split(":")]
        if len(parts) != 2 or not parts[0]:
            raise SecurityConfigError(f"Invalid max.connections.per.ip.overrides entry {entry!r}: expected host:count")
        host, n = parts[0], count("max.connections.per.ip.overrides", parts[1])
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            try:
                address = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
            except OSError as e:
                raise SecurityConfigError(f"max.connections.per.ip.overrides: cannot resolve {host}: {e}") from None
        out.per_ip_overrides[address] = n
    if out.per_ip == 0 and not out.per_ip_overrides:
        raise SecurityConfigError("max.connections.per.ip can be set to zero only if "
                                  "max.connections.per.ip.overrides is set")
    return out


def _store_type(name: str, get, key: str, location_key: str) -> str:
    try:
        return store_type(get(key), get(location_key))
    except KeystoreError as e:
        raise SecurityConfigError(f"Listener {name}: {key}: {e}") from None


def _tls(name: str, get, notes: list[str] | None = None):
    keystore_type = _store_type(name, get, "ssl.keystore.type", "ssl.keystore.location")
    truststore_type = _store_type(name, get, "ssl.truststore.type", "ssl.truststore.location")
    if keystore_type == "PEM" and get("ssl.keystore.password"):
        raise SecurityConfigError(f"Listener {name}: ssl.keystore.password cannot be used with PEM keystores "
                                  "(as in Kafka); an encrypted key's password is ssl.key.password")
    if truststore_type == "PEM" and get("ssl.truststore.password"):
        raise SecurityConfigError(f"Listener {name}: ssl.truststore.password cannot be used with PEM "
                                  "truststores (as in Kafka)")
    for store, t in (("keystore", keystore_type), ("truststore", truststore_type)):
        if t != "PEM" and not get(f"ssl.{store}.location"):
            raise SecurityConfigError(f"Listener {name}: ssl.{store}.type={t} needs ssl.{store}.location")
        if t != "PEM" and (get(f"ssl.{store}.certificates") or get(f"ssl.{store}.key")
                           or get(f"ssl.{store}.certificate.chain")):
            raise SecurityConfigError(f"Listener {name}: PEM text (ssl.{store}.key, .certificate.chain, "
                                      f".certificates) cannot be used with ssl.{store}.type={t}")
    for key in ("ssl.provider", "ssl.engine.factory.class"):
        if (get(key) or "").strip():
            _refuse(key, "Java security providers and SSL engine factories are not served; "
                         "Python's ssl module (OpenSSL) is the engine")
    try:
        cipher_suites = parse_cipher_suites(get("ssl.cipher.suites") or "")
    except CipherSuiteError as e:
        raise SecurityConfigError(f"Listener {name}: ssl.cipher.suites: {e}") from None
    for key, default in (("ssl.keymanager.algorithm", "SunX509"), ("ssl.trustmanager.algorithm", "PKIX")):
        v = (get(key) or "").strip()
        if v and v != default:
            _refuse(key, f"only Java's default ({default}) is understood")
    client_auth = (get("ssl.client.auth") or "none").strip().lower()
    if client_auth not in ("none", "requested", "required"):
        raise SecurityConfigError(f"Invalid ssl.client.auth {client_auth!r}: none, requested or required")
    listed = tuple(p.strip() for p in (get("ssl.enabled.protocols") or "TLSv1.2,TLSv1.3").split(",")
                   if p.strip())
    bad = [p for p in listed if p not in PROTOCOLS and p not in JAVA_DISABLED_PROTOCOLS]
    protocols = tuple(p for p in listed if p in PROTOCOLS)
    if bad or not protocols:
        raise SecurityConfigError(f"Unsupported ssl.enabled.protocols {','.join(bad or listed) or '(empty)'}: "
                                  "TLSv1.2 and TLSv1.3 are served")
    old_ones = [p for p in listed if p in JAVA_DISABLED_PROTOCOLS]
    if old_ones and notes is not None:  # Kafka's documentation lists them; Java 17 never negotiates them
        notes.append(f"ssl.enabled.protocols: {','.join(old_ones)} of listener {name} have no effect: they are "
                     "disabled, as Java disables them (jdk.tls.disabledAlgorithms)")
    proto = (get("ssl.protocol") or "TLSv1.3").strip()
    if proto not in ("TLS", "TLSv1.2", "TLSv1.3"):
        raise SecurityConfigError(f"Unsupported ssl.protocol {proto}: TLS, TLSv1.2 or TLSv1.3")
    if proto == "TLSv1.2":
        protocols = tuple(p for p in protocols if p == "TLSv1.2") or protocols
    settings = TlsSettings(
        keystore_location=get("ssl.keystore.location"), keystore_key=get("ssl.keystore.key"),
        keystore_chain=get("ssl.keystore.certificate.chain"), key_password=get("ssl.key.password"),
        truststore_location=get("ssl.truststore.location"),
        truststore_certificates=get("ssl.truststore.certificates"), client_auth=client_auth,
        enabled_protocols=protocols, mapping_rules=get("ssl.principal.mapping.rules") or "DEFAULT",
        cipher_suites=cipher_suites)
    try:
        if keystore_type != "PEM":
            settings.keystore_key, settings.keystore_chain = keystore_pem(
                settings.keystore_location, get("ssl.keystore.password"), get("ssl.key.password"))
            settings.keystore_location = settings.key_password = None
        if truststore_type != "PEM":
            settings.truststore_certificates = truststore_pem(settings.truststore_location,
                                                              get("ssl.truststore.password"))
            settings.truststore_location = None
        return server_context(settings), PrincipalMapper(settings.mapping_rules), settings
    except (TlsConfigError, KeystoreError) as e:
        raise SecurityConfigError(f"Listener {name}: {e}") from None


def _refresh_window(get) -> RefreshWindow:
    """A listener's ``sasl.login.refresh.*`` (also ``oauthbearer.``-prefixed),
    checked against Kafka's bounds with Kafka's messages."""
    values = []
    for key, (default, least, most) in REFRESH_KEYS.items():
        text = get(f"oauthbearer.{key}")
        text = (text if text is not None else get(key) or "").strip()
        kind = float if isinstance(default, float) else int
        try:
            value = kind(text) if text else default
        except ValueError:
            raise SecurityConfigError(f"Invalid value {text} for configuration {key}: Not a number of type "
                                      f"{'DOUBLE' if kind is float else 'SHORT'}") from None
        if value < least:
            raise SecurityConfigError(f"Invalid value {text} for configuration {key}: Value must be at least {least}")
        if value > most:
            raise SecurityConfigError(f"Invalid value {text} for configuration {key}: Value must be no more than {most}")
        values.append(value)
    return RefreshWindow(*values)


def _sasl(name: str, get, props, notes: list[str]) -> tuple[SaslSettings, dict[str, tuple[str, str]]]:
    """The listener's SASL settings, and this broker's own logins per mechanism
    (the ``username``/``password`` of its JAAS lines)."""
    text = get("sasl.enabled.mechanisms")
    if text is None:
        raise SecurityConfigError(f"Listener {name} uses SASL, and sasl.enabled.mechanisms defaults to GSSAPI "
                                  f"(Kerberos), which odradek does not serve: set sasl.enabled.mechanisms "
                                  f"({', '.join(MECHANISMS)})")
    mechanisms = tuple(m.strip() for m in text.split(",") if m.strip())
    if not mechanisms:
        raise SecurityConfigError(f"Listener {name}: sasl.enabled.mechanisms is empty")
    for m in mechanisms:
        if m not in MECHANISMS:
            raise SecurityConfigError(f"Listener {name}: SASL mechanism {m} is not served "
                                      f"(served: {', '.join(MECHANISMS)})")
    users: dict[str, str] = {}
    logins: dict[str, tuple[str, str]] = {}
    oauth_options: dict[str, str] = {}
    for m in mechanisms:
        key = f"{m.lower()}.sasl.jaas.config"
        jaas = get(key)
        if jaas is None:
            if m == "PLAIN":
                raise SecurityConfigError(
                    f"Listener {name} enables PLAIN but has no JAAS line for its users: set "
                    f"listener.name.{name.lower()}.{key}={PLAIN_MODULE} required user_<name>=\"<password>\";")
            continue
        try:
            modules = parse_jaas(jaas)
        except JaasError as e:
            raise SecurityConfigError(f"listener.name.{name.lower()}.{key}: {e}") from None
        expected = {"PLAIN": PLAIN_MODULE, "OAUTHBEARER": OAUTH_MODULE}.get(m, SCRAM_MODULE)
        if len(modules) != 1 or modules[0].name != expected:
            raise SecurityConfigError(f"listener.name.{name.lower()}.{key}: expected one {expected} entry")
        if m == "PLAIN":
            users = {k[len("user_"):]: v for k, v in modules[0].options.items() if k.startswith("user_")}
        options = modules[0].options
        if m == "OAUTHBEARER":
            oauth_options = options
            continue
        if "username" in options and "password" in options:  # this broker's own login, to the others
            logins[m] = (options["username"], options["password"])
    validator, login_handler, login_settings = None, None, {}
    if "OAUTHBEARER" in mechanisms:
        from odradek.security.oauthbearer import load_validator

        key = "oauthbearer.sasl.server.callback.handler.class"
        oauth_settings = {}
        for k in OAUTH_READ:
            v = get(f"oauthbearer.sasl.oauthbearer.{k}")
            v = v if v is not None else get(f"sasl.oauthbearer.{k}")
            if v is not None and v.strip():
                oauth_settings[k] = v
        try:
            validator = load_validator(get(key) or "", oauth_options, props, oauth_settings)
        except ValueError as e:
            raise SecurityConfigError(f"listener.name.{name.lower()}.{key}: {e}") from None
        from odradek.security.oauthbearer import LOGIN_HANDLER, UNSECURED_LOGIN_HANDLER

        login_handler = (get("oauthbearer.sasl.login.callback.handler.class")
                         or get("sasl.login.callback.handler.class") or "").strip() or None
        if login_handler not in (None, LOGIN_HANDLER, UNSECURED_LOGIN_HANDLER):
            raise SecurityConfigError(f"sasl.login.callback.handler.class={login_handler}: Java classes cannot be "
                                      f"loaded ({LOGIN_HANDLER} and {UNSECURED_LOGIN_HANDLER} are served)")
        for k in OAUTH_LOGIN_READ + ("sub.claim.name",):
            v = get(f"oauthbearer.sasl.oauthbearer.{k}")
            v = v if v is not None else get(f"sasl.oauthbearer.{k}")
            if v is not None and v.strip():
                login_settings[k] = v.strip()
        if login_handler != LOGIN_HANDLER and any(k in login_settings for k in OAUTH_LOGIN_WANTED):
            raise SecurityConfigError(
                f"sasl.oauthbearer.{next(k for k in OAUTH_LOGIN_WANTED if k in login_settings)} is read by "
                f"{LOGIN_HANDLER}: set listener.name.{name.lower()}.oauthbearer.sasl.login.callback.handler.class "
                f"to it")
        if login_handler != LOGIN_HANDLER:
            for k in [k for k in login_settings if k in OAUTH_LOGIN_READ]:
                del login_settings[k]
                notes.append(f"sasl.oauthbearer.{k} has no effect on listener {name}: its OAUTHBEARER login is "
                             f"not {LOGIN_HANDLER}")
    refresh = _refresh_window(get) if "OAUTHBEARER" in mechanisms else RefreshWindow()
    http = HttpRetry()
    if "OAUTHBEARER" in mechanisms:
        values = {}
        for key in HTTP_KEYS:
            v = get(f"oauthbearer.{key}")
            values[key] = v if v is not None else get(key)
        try:
            http = HttpRetry.from_settings(values)
        except ValueError as e:
            raise SecurityConfigError(str(e)) from None
    reauth = _int(get("connections.max.reauth.ms"), "connections.max.reauth.ms", 0)
    # with a per-mechanism override, as Kafka reads it
    reauth_by = {m: max(0, _int(get(f"{m.lower()}.connections.max.reauth.ms"), "connections.max.reauth.ms",
                                reauth)) for m in mechanisms}
    return SaslSettings(
        mechanisms=mechanisms, plain_users=users,
        max_receive_size=_int(get("sasl.server.max.receive.size"), "sasl.server.max.receive.size",
                              DEFAULT_MAX_RECEIVE),
        reauth_by_mechanism=reauth_by, oauth_validator=validator, oauth_options=oauth_options,
        oauth_login_handler=login_handler, oauth_login_settings=login_settings, oauth_refresh=refresh,
        oauth_http=http,
        failed_auth_delay_ms=_int(props.get("connection.failed.authentication.delay.ms"),
                                  "connection.failed.authentication.delay.ms", 100)), logins


# -- the HTTP listener (metrics and the console) ------------------------------

HTTP_AUTHENTICATION = ("none", "sasl")
DEFAULT_HTTP_SESSION_MS = 8 * 3600 * 1000


@dataclass
class HttpSecurity:
    """``http.listener``'s TLS (``https://``, with ``http.ssl.*``) and login
    (``http.authentication=sasl``: the broker's own SASL users)."""

    ssl_context: ssl.SSLContext | None = None
    login: bool = False
    session_ms: int = DEFAULT_HTTP_SESSION_MS


def http_scheme(value: str) -> tuple[str, str]:
    """``http.listener``'s scheme (``http`` unless it says ``https://``) and the rest."""
    scheme, sep, rest = value.strip().partition("://")
    if not sep:
        return "http", value.strip()
    if scheme.lower() not in ("http", "https"):
        raise SecurityConfigError(f"http.listener: {scheme}:// is not served (http:// or https://)")
    return scheme.lower(), rest


def http_security(props: dict[str, str]) -> HttpSecurity:
    """Validate the ``http.*`` security keys of ``props``: ``http.ssl.<key>`` are
    Kafka's ``ssl.<key>`` for the HTTP listener (read by the same code as a
    listener's), allowed only with ``http.listener=https://HOST:PORT``."""
    scheme, _ = http_scheme(props.get("http.listener") or "")
    out = HttpSecurity()
    ssl_keys = [k for k in props if k.startswith("http.ssl.")]
    for k in ssl_keys:
        if k[len("http."):] not in SSL_READ:
            _refuse(k, "the HTTP listener reads the ssl.* keys a Kafka listener reads, prefixed with http.")
    if scheme == "https":
        def get(key, default=None):
            v = props.get(f"http.{key}")
            return v if v is not None else default

        out.ssl_context, _, _ = _tls("HTTP", get)
    elif ssl_keys:
        raise SecurityConfigError(f"{ssl_keys[0]} is set but http.listener is not https://HOST:PORT: "
                                  f"it would be ignored")
    auth = (props.get("http.authentication") or "none").strip().lower()
    if auth not in HTTP_AUTHENTICATION:
        raise SecurityConfigError(f"Invalid http.authentication={auth}: none, or sasl (the broker's SASL users)")
    out.login = auth == "sasl"
    out.session_ms = _int(props.get("http.session.max.age.ms"), "http.session.max.age.ms",
                          DEFAULT_HTTP_SESSION_MS)
    if out.session_ms < 1000:
        raise SecurityConfigError("http.session.max.age.ms: at least 1000")
    return out
