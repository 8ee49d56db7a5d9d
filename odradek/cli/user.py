"""``odradek user``: SCRAM users in a broker's data dir, offline.

For the first admin, before the broker ever runs (as Kafka's
``kafka-storage format --add-scram``); once it runs, change users through the
AlterUserScramCredentials API (``kafka-configs --alter --add-config
'SCRAM-SHA-256=[password=...]' --entity-type users``) instead: these commands
open the metadata store directly and are meant for a stopped broker.
"""

from __future__ import annotations

import asyncio
import os

import click

from odradek.security import scram

MECHANISMS = sorted(scram.MECHANISMS)


def _store_url(data_dir: str | None, config_file: str | None, metadata_store: str | None) -> str:
    """The broker's metadata store: --metadata-store, else the config's
    ``metadata.store``, else the SQLite file in its data dir."""
    props = {}
    if config_file:
        from odradek.config import parse_properties

        with open(config_file) as f:
            props = parse_properties(f.read())
    if metadata_store or props.get("metadata.store"):
        return metadata_store or props["metadata.store"]
    if not data_dir:
        data_dir = next((props[k].split(",")[0].strip() for k in ("log.dirs", "log.dir") if props.get(k)),
                        "./odradek-data")
    from odradek.broker import METADATA_DIR

    return "sqlite://" + os.path.join(data_dir, METADATA_DIR, "metadata.db")


def _run(where: tuple, fn):
    from odradek.metadata.store import open_store

    async def go():
        store = await open_store(_store_url(*where))
        try:
            return await fn(scram.ScramStore(store))
        finally:
            await store.close()

    return asyncio.run(go())


_where = [
    click.option("--data-dir", default=None, help="The broker's data dir [default: log.dirs of --config, "
                                                   "else ./odradek-data]."),
    click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                 help="The broker's server.properties (for log.dirs and metadata.store)."),
    click.option("--metadata-store", default=None, metavar="URL",
                 help="The cluster's metadata store (etcd://HOST:PORT[,...]/PREFIX), as given to "
                      "odradek serve."),
]


def where(fn):
    for option in reversed(_where):
        fn = option(fn)
    return fn


@click.group()
def user() -> None:
    """SCRAM users of a broker's data dir (offline: for a stopped broker).

    \b
    Examples:
      odradek user add admin --data-dir /var/lib/odradek        (asks for the password)
      odradek user add alice -m SCRAM-SHA-512 --password-file alice.pw --config server.properties
      odradek user list --data-dir /var/lib/odradek
      odradek user delete alice --data-dir /var/lib/odradek
    """


@user.command()
@click.argument("name")
@click.option("-m", "--mechanism", "mechanisms", multiple=True, type=click.Choice(MECHANISMS),
              help="SCRAM mechanism, repeatable [default: both].")
@click.option("--iterations", type=click.IntRange(scram.MIN_ITERATIONS, scram.MAX_ITERATIONS),
              default=scram.DEFAULT_ITERATIONS, show_default=True)
@click.option("--password-file", type=click.File("r"), default=None,
              help="Read the password from this file's first line ('-': standard input).")
@where
def add(name, mechanisms, iterations, password_file, data_dir, config_file, metadata_store):
    """Add user NAME, or set its password (env ODRADEK_USER_PASSWORD, --password-file, or a prompt).

    \b
    Examples:
      odradek user add admin --data-dir /var/lib/odradek
      echo s3cret | odradek user add admin --password-file - --config server.properties
      odradek user add alice -m SCRAM-SHA-512 --iterations 8192 --data-dir ./data
    """
    if password_file is not None:
        password = password_file.readline().rstrip("\r\n")
    else:
        password = os.environ.get("ODRADEK_USER_PASSWORD") or click.prompt(
            f"Password for {name}", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.UsageError("the password is empty")
    mechanisms = mechanisms or MECHANISMS

    async def put(store):
        for m in mechanisms:
            await store.put(m, name, scram.from_password(m, password, iterations))

    _run((data_dir, config_file, metadata_store), put)
    click.echo(f"user {name}: {', '.join(mechanisms)} ({iterations} iterations)")


@user.command("list")
@where
def list_(data_dir, config_file, metadata_store):
    """List users and their SCRAM mechanisms (never their keys).

    \b
    Examples:
      odradek user list --data-dir /var/lib/odradek
      odradek user list --config server.properties
    """
    async def all_(store):
        return await store.all()

    for name, creds in sorted(_run((data_dir, config_file, metadata_store), all_).items()):
        click.echo(f"{name}\t" + ", ".join(f"{m} ({c.iterations})" for m, c in sorted(creds.items())))


@user.command()
@click.argument("name")
@click.option("-m", "--mechanism", "mechanisms", multiple=True, type=click.Choice(MECHANISMS),
              help="Only this mechanism, repeatable [default: all].")
@where
def delete(name, mechanisms, data_dir, config_file, metadata_store):
    """Delete user NAME's SCRAM credentials.

    \b
    Examples:
      odradek user delete alice --data-dir /var/lib/odradek
      odradek user delete alice -m SCRAM-SHA-256 --config server.properties
    """
    async def rm(store):
        return [m for m in (mechanisms or MECHANISMS) if await store.delete(m, name)]

    gone = _run((data_dir, config_file, metadata_store), rm)
    if not gone:
        raise click.ClickException(f"user {name} has no SCRAM credentials here")
    click.echo(f"user {name}: deleted {', '.join(gone)}")
