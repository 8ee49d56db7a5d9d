"""Security pieces without sockets: JAAS lines, principal mapping, the config
keys (served, refused), the SASL mechanisms and the authenticator's states."""

from __future__ import annotations

import asyncio

import pytest
from scramp import ScramClient

from odradek.config import BrokerConfig, ConfigError
from odradek.protocol import errors
from odradek.security import scram
from odradek.security.authenticator import COMPLETE, FAILED, SaslAuthenticator
from odradek.security.config import SaslSettings
from odradek.security.jaas import JaasError, parse_jaas
from odradek.security.principal import ANONYMOUS, KafkaPrincipal
from odradek.security.sasl import AuthenticationFailed, PlainServer, ScramServer
from odradek.security.tls import PrincipalMapper, subject_dn

PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
              'password="admin-secret" user_admin="admin-secret" user_alice="al;ice \\"q\\"";')


def run(coro):
    return asyncio.run(coro)


# -- JAAS ----------------------------------------------------------------------

def test_jaas_lines_as_kafka_writes_them():
    [m] = parse_jaas(PLAIN_JAAS)
    assert m.name.endswith("PlainLoginModule") and m.flag == "required"
    assert m.options == {"username": "admin", "password": "admin-secret", "user_admin": "admin-secret",
                         "user_alice": 'al;ice "q"'}
    two = parse_jaas("a.B required x=1; /* c */ c.D optional // e\n y=\"2\";")
    assert [(e.name, e.flag, e.options) for e in two] == [("a.B", "required", {"x": "1"}),
                                                           ("c.D", "optional", {"y": "2"})]
    for bad in ("", "a.B required x=1", "a.B sometimes;", "a.B required x;", 'a.B required x="1;'):
        with pytest.raises(JaasError):
            parse_jaas(bad)


def test_properties_continuations_and_escapes_as_java_reads_them():
    from odradek.config import parse_properties

    text = ("listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain."
            "PlainLoginModule required \\\n    username=\"admin\" \\\n\tuser_admin=\"a b\";\n"
            "key value with spaces  \nsep:colon\nunicode=\\u00e9\npath=C:\\\\dir\n")
    props = parse_properties(text)
    [m] = parse_jaas(props["listener.name.sasl_ssl.plain.sasl.jaas.config"])
    assert m.options == {"username": "admin", "user_admin": "a b"}
    assert props["key"] == "value with spaces" and props["sep"] == "colon"
    assert props["unicode"] == "\u00e9" and props["path"] == "C:\\dir"


# -- certificate principals ------------------------------------------------------

CERT = {"subject": ((("countryName", "US"),), (("organizationName", "acme, inc"),),
                    (("organizationalUnitName", "eng"),), (("commonName", "alice"),))}


def test_default_rule_prints_the_whole_subject_most_specific_first():
    assert subject_dn(CERT) == r"CN=alice,OU=eng,O=acme\, inc,C=US"
    assert PrincipalMapper("DEFAULT").principal(CERT) == KafkaPrincipal("User", r"CN=alice,OU=eng,O=acme\, inc,C=US")
    assert PrincipalMapper().principal(None) == ANONYMOUS
    assert PrincipalMapper().principal({}) == ANONYMOUS


def test_mapping_rules():
    m = PrincipalMapper(r"RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, RULE:^CN=([^,]*),OU=(.*?),.*$/$1@$2/U,DEFAULT")
    assert m.name("CN=Bot,OU=ServiceUsers,O=x") == "bot"
    assert m.name("CN=alice,OU=eng,O=x") == "ALICE@ENG"
    assert m.name("O=only") == "O=only"
    strict = PrincipalMapper(r"RULE:^CN=(.*?),OU=eng$/$1/")
    assert strict.name("CN=a,OU=eng") == "a"
    with pytest.raises(ValueError):
        strict.name("CN=a,OU=ops")
    with pytest.raises(ValueError):
        PrincipalMapper("RULE:broken")


# -- config keys -------------------------------------------------------------------

def cfg(**props):
    return BrokerConfig(props={k.replace("_", "."): v for k, v in props.items()})


def test_listeners_map_custom_names_and_skip_controller_listeners():
    c = BrokerConfig(props={
        "listeners": "INTERNAL://:9092,EXTERNAL://:9093,CONTROLLER://:9094",
        "listener.security.protocol.map": "INTERNAL:PLAINTEXT,EXTERNAL:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "INTERNAL",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.controller.ssl.client.auth": "required",
        "super.users": "User:admin;User:CN=ops,O=acme",
    })
    assert [(l.name, l.protocol) for l in c.listeners()] == [("INTERNAL", "PLAINTEXT"),
                                                             ("EXTERNAL", "SASL_PLAINTEXT")]
    sec = c.security()
    assert sec.listeners["EXTERNAL"].sasl.mechanisms == ("SCRAM-SHA-512",)
    assert sec.listeners["INTERNAL"].sasl is None
    assert sec.super_users == (KafkaPrincipal("User", "admin"), KafkaPrincipal("User", "CN=ops,O=acme"))
    assert sec.inter_broker_listener == "INTERNAL"


@pytest.mark.parametrize("props, message", [
    ({"listeners": "EXT://:1"}, "No security protocol defined for listener EXT"),
    ({"listeners": "SASL_PLAINTEXT://:1"}, "defaults to GSSAPI"),
    ({"listeners": "SASL_PLAINTEXT://:1", "sasl.enabled.mechanisms": "GSSAPI"}, "GSSAPI is not served"),
    ({"listeners": "SASL_PLAINTEXT://:1", "sasl.enabled.mechanisms": "PLAIN"}, "no JAAS line"),
    ({"listeners": "SASL_PLAINTEXT://:1", "sasl.enabled.mechanisms": "PLAIN",
      "listener.name.sasl_plaintext.plain.sasl.jaas.config": "x.Y required;"}, "PlainLoginModule"),
    ({"listeners": "SSL://:1", "ssl.keystore.type": "JKS"}, "ssl.keystore.type=JKS needs ssl.keystore.location"),
    ({"listeners": "SSL://:1", "ssl.keystore.type": "BKS"}, "BKS stores are not read: PEM, PKCS12 or JKS"),
    ({"listeners": "SSL://:1"}, "needs a keystore"),
    ({"sasl.jaas.config": "x"}, "per mechanism"),
    ({"sasl.kerberos.keytab": "/etc/k.keytab"}, "none of Kafka's sasl.kerberos"),
    ({"sasl.kerberos.ticket.renew.jitter": "lots"}, "Not a number of type DOUBLE"),
    ({"ssl.no.such.key": "1"}, "will not ignore"),
    ({"authorizer.class.name": "kafka.security.authorizer.AclAuthorizer"}, "StandardAuthorizer"),
    ({"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
      "allow.everyone.if.no.acl.found": "yes"}, "expected true or false"),
    ({"listener.name.other.ssl.client.auth": "required"}, "not in listeners"),
    ({"listener.name.plaintext.gssapi.sasl.jaas.config": "x"}, "GSSAPI is not served"),
    ({"listeners": "SASL_PLAINTEXT://:1", "sasl.enabled.mechanisms": "SCRAM-SHA-256",
      "inter.broker.listener.name": "SASL_PLAINTEXT"}, "sasl.mechanism.inter.broker.protocol=GSSAPI"),
    ({"inter.broker.listener.name": "NOPE"}, "not a listener"),
    ({"super.users": "alice"}, "super.users"),
])
def test_unserved_security_settings_are_refused_with_a_reason(props, message):
    props.setdefault("listeners", "PLAINTEXT://:1")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        BrokerConfig(props=props).security()


def test_settings_without_effect_are_noted_not_refused():
    sec = BrokerConfig(props={"ssl.secure.random.implementation": "SHA1PRNG",
                              "allow.everyone.if.no.acl.found": "true"}).security()
    assert any("ssl.secure.random.implementation" in n for n in sec.notes)
    assert any("allow.everyone.if.no.acl.found" in n for n in sec.notes)


def test_kafkas_own_principal_builder_and_the_password_encoder_are_accepted():
    """A Kafka config may name Kafka's default principal builder (which is the
    one served) and set the password encoder's secret (which encodes dynamic
    password configs; odradek refuses those, so nothing is encoded)."""
    sec = BrokerConfig(props={
        "principal.builder.class": "org.apache.kafka.common.security.authenticator.DefaultKafkaPrincipalBuilder",
        "password.encoder.secret": "s3cret", "password.encoder.iterations": "4096"}).security()
    assert sorted(n.split(" ")[0] for n in sec.notes) == ["password.encoder.iterations", "password.encoder.secret"]
    for key in ("principal.builder.class", "security.providers"):
        with pytest.raises(ConfigError, match=f"Unsupported security setting {key}"):
            BrokerConfig(props={key: "org.apache.kafka.common.security.authenticator.DefaultKafkaPrincipalBuilder"
                                if key == "security.providers" else "com.acme.Builder"}).security()


def test_old_tls_protocol_names_are_accepted_without_effect_as_java_does():
    """Kafka's documentation lists ssl.enabled.protocols=TLSv1.2,TLSv1.1,TLSv1;
    Java accepts the names and disables the old protocols. Only old ones: refused."""
    props = {"listeners": "SASL_SSL://:1", "sasl.enabled.mechanisms": "SCRAM-SHA-256"}
    with pytest.raises(ConfigError, match="Unsupported ssl.enabled.protocols TLSv1.1,TLSv1: TLSv1.2"):
        BrokerConfig(props=dict(props, **{"ssl.enabled.protocols": "TLSv1.1,TLSv1"})).security()
    with pytest.raises(ConfigError, match="Unsupported ssl.enabled.protocols TLSv9"):
        BrokerConfig(props=dict(props, **{"ssl.enabled.protocols": "TLSv1.2,TLSv9"})).security()


def test_kafkas_kerberos_settings_are_noted_without_effect():
    """As on a Kafka broker whose listeners do not enable GSSAPI (which
    odradek refuses), Kafka's sasl.kerberos.* settings are accepted and have
    no effect; odradek says so."""
    sec = BrokerConfig(props={"sasl.kerberos.service.name": "kafka",
                              "sasl.kerberos.min.time.before.relogin": "58000",
                              "listener.name.plaintext.sasl.kerberos.principal.to.local.rules": "DEFAULT"}).security()
    assert sorted(n for n in sec.notes if "GSSAPI" in n) == [
        "sasl.kerberos.min.time.before.relogin has no effect: no listener enables GSSAPI (odradek does not serve it)",
        "sasl.kerberos.principal.to.local.rules has no effect: no listener enables GSSAPI (odradek does not serve it)",
        "sasl.kerberos.service.name has no effect: no listener enables GSSAPI (odradek does not serve it)"]


def test_the_inter_broker_client_side():
    """A broker's login to the others is the username and password of the
    inter-broker listener's JAAS line, its TLS the listener's trust."""
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" '
            'password="b-secret" user_broker="b-secret" user_alice="a";')
    sec = BrokerConfig(props={
        "listeners": "PLAINTEXT://:1,INTERNAL://:2", "listener.security.protocol.map":
            "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_PLAINTEXT", "inter.broker.listener.name": "INTERNAL",
        "sasl.mechanism.inter.broker.protocol": "PLAIN", "listener.name.internal.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.internal.plain.sasl.jaas.config": jaas}).security()
    client = sec.inter_broker_client()
    assert (client.listener, client.protocol, client.mechanism, client.username, client.password) == (
        "INTERNAL", "SASL_PLAINTEXT", "PLAIN", "broker", "b-secret")
    assert client.ssl_context is None
    # Without a login of its own, a broker cannot replicate over it: refused with the key to set.
    sec = BrokerConfig(props={
        "listeners": "INTERNAL://:2", "listener.security.protocol.map": "INTERNAL:SASL_PLAINTEXT",
        "sasl.mechanism.inter.broker.protocol": "PLAIN", "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.internal.plain.sasl.jaas.config":
            'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="a";'}).security()
    with pytest.raises(ValueError, match="listener.name.internal.plain.sasl.jaas.config"):
        sec.inter_broker_client()


def test_the_standard_authorizer_turns_acls_on():
    assert not BrokerConfig(props={}).security().authorizer
    sec = BrokerConfig(props={"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                              "allow.everyone.if.no.acl.found": "true", "super.users": "User:admin"}).security()
    assert sec.authorizer and sec.allow_if_no_acl and not sec.notes


def test_the_port_option_must_agree_with_configured_listeners(tmp_path):
    from click.testing import CliRunner

    from odradek.cli.main import main

    conf = tmp_path / "server.properties"
    conf.write_text("listeners=PLAINTEXT://127.0.0.1:19092\n")
    r = CliRunner().invoke(main, ["serve", "--memory", "--config", str(conf), "--port", "9092"])
    assert r.exit_code == 2 and "disagrees" in r.output


# -- mechanisms ------------------------------------------------------------------

def test_plain():
    s = PlainServer({"alice": "pw"})
    assert run(s.evaluate(b"\0alice\0pw")) == b"" and s.complete and s.principal_name == "alice"
    for token in (b"\0alice\0bad", b"\0bob\0pw", b"alice\0pw", b"\0alice\0", b"bob\0alice\0pw", b"\xff\0a\0b"):
        with pytest.raises(AuthenticationFailed):
            run(PlainServer({"alice": "pw"}).evaluate(token))


def _scram_lookup(creds):
    async def lookup(mechanism, user):
        return creds.get((mechanism, user))
    return lookup


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_login_and_only_a_verified_proof_counts(mechanism):
    creds = {(mechanism, "bob"): scram.from_password(mechanism, "bob-secret", 4096)}

    def exchange(password, tamper=None):
        client = ScramClient([mechanism], "bob", password)
        server = ScramServer(mechanism, _scram_lookup(creds))
        first = run(server.evaluate(client.get_client_first().encode()))
        client.set_server_first(first.decode())
        final = client.get_client_final()
        if tamper:
            final = tamper(final)
        out = run(server.evaluate(final.encode()))
        client.set_server_final(out.decode())  # the client checks the server's signature too
        return server

    server = exchange("bob-secret")
    assert server.complete and server.principal_name == "bob"
    with pytest.raises(AuthenticationFailed):
        exchange("wrong")
    # A proof of the right length that does not verify, and a missing proof.
    with pytest.raises(AuthenticationFailed):
        exchange("bob-secret", lambda f: f[:f.index(",p=") + 3] + "A" * (len(f) - f.index(",p=") - 3))
    with pytest.raises(AuthenticationFailed):
        exchange("bob-secret", lambda f: f[:f.index(",p=")])
    with pytest.raises(AuthenticationFailed):  # unknown user
        run(ScramServer(mechanism, _scram_lookup(creds)).evaluate(b"n,,n=eve,r=abc"))
    with pytest.raises(AuthenticationFailed):  # delegation tokens
        run(ScramServer(mechanism, _scram_lookup(creds)).evaluate(b"n,,n=bob,r=abc,tokenauth=true"))


def test_credentials_round_trip_and_match_a_client_salted_password():
    c = scram.from_password("SCRAM-SHA-256", "pw", 4096, salt=b"salt")
    assert scram.ScramCredential.from_bytes(c.to_bytes()) == c
    salted = scram.salted_password("SCRAM-SHA-256", "pw", b"salt", 4096)
    assert scram.from_salted_password("SCRAM-SHA-256", salted, b"salt", 4096) == c


# -- the authenticator's states -------------------------------------------------

def settings(**kw):
    return SaslSettings(mechanisms=("PLAIN",), plain_users={"alice": "pw"}, **kw)


def test_authenticator_gates_requests_until_login():
    a = SaslAuthenticator(settings(), None)
    assert a.allows(18, 0) is None and a.allows(17, 0) is None
    assert a.allows(3, 0) is not None and a.allows(36, 0) is not None
    assert a.handshake("SCRAM-SHA-256", 1)["error_code"] == errors.UNSUPPORTED_SASL_MECHANISM
    assert a.state == FAILED

    a = SaslAuthenticator(settings(), None)
    assert a.handshake("PLAIN", 1) == {"error_code": 0, "mechanisms": ["PLAIN"]}
    assert a.allows(18, 0) is not None and a.allows(3, 0) is not None and a.allows(36, 0) is None
    r = run(a.authenticate(b"\0alice\0pw", 1, 0))
    assert r["error_code"] == 0 and r["session_lifetime_ms"] == 0
    assert a.state == COMPLETE and str(a.principal) == "User:alice" and a.allows(3, 10**12) is None
    # No re-authentication unless connections.max.reauth.ms is set.
    assert a.handshake("PLAIN", 1)["error_code"] == errors.ILLEGAL_SASL_STATE and a.state == COMPLETE

    a = SaslAuthenticator(settings(), None)
    a.handshake("PLAIN", 1)
    r = run(a.authenticate(b"\0alice\0bad", 1, 0))
    assert r["error_code"] == errors.SASL_AUTHENTICATION_FAILED and a.state == FAILED
    assert "Invalid username or password" in r["error_message"]


def test_reauthentication_keeps_mechanism_and_principal():
    a = SaslAuthenticator(settings(reauth_by_mechanism={"PLAIN": 1000}), None)
    a.settings.plain_users["bob"] = "pw2"
    a.handshake("PLAIN", 1)
    assert run(a.authenticate(b"\0alice\0pw", 1, 5000))["session_lifetime_ms"] == 1000
    assert a.allows(3, 6000) is None
    assert a.allows(3, 6001) is not None  # expired: only a re-authentication is allowed
    assert a.handshake("PLAIN", 1)["error_code"] == 0
    assert a.allows(3, 6001) is not None and a.allows(36, 6001) is None
    r = run(a.authenticate(b"\0alice\0pw", 1, 6001))
    assert r["session_lifetime_ms"] == 1000 and a.authenticated and a.allows(3, 6500) is None
    a.handshake("PLAIN", 1)
    r = run(a.authenticate(b"\0bob\0pw2", 1, 7000))
    assert r["error_code"] == errors.SASL_AUTHENTICATION_FAILED and a.state == FAILED
