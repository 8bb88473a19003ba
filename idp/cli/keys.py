"""`idp keys ...`: the signing keys (idp.crypto.keys.KeyRing)."""

import click
from flask import current_app
from flask.cli import AppGroup

from ..crypto.keys import ALGS, KeyRing, KeysUnreadable, max_token_lifetime
from ..login.session import oldest_live_start
from ..extensions import keyring
from .common import CliError, table, when

keys = AppGroup("keys", help="Rotate, list, prune, withdraw, seal and import the signing keys.")


def _ring(writing: bool = True):
    """The key ring, refused in one line if its storage holds keys this SECRET_KEY cannot
    open (a shell with another SECRET_KEY than the servers' would list nothing, and rotate
    to a key no server can read); to write, also if it holds records that read as no key
    (the ring writes none beside them; `list` still shows what it can read)."""
    ring = keyring()
    try:
        ring.refuse_unreadable()
        if writing:
            ring.refuse_damaged()
    except KeysUnreadable as exc:
        raise CliError(f"signing keys: {exc}") from None
    return ring


@keys.command("rotate")
@click.option("--alg", type=click.Choice(ALGS), help="Default: the IdP's ID_TOKEN_ALG.")
@click.option("--now", "immediate", is_flag=True,
              help="Sign with the new key at once, instead of after KEY_PUBLISH_AHEAD (for a leaked key; "
                   "relying parties that cached the JWKS will fail to verify until they refetch it).")
def rotate(alg, immediate):
    """Add a new key; it signs once published long enough, and the old one retires then.

    Also prunes retired keys no live token can need, so a rotation run from cron keeps the
    JWKS small without a second job."""
    ring = _ring()
    key = ring.rotate(alg or current_app.config["ID_TOKEN_ALG"], immediate=immediate)
    click.echo(f"new {key['alg']} key {key['kid']}: published now, signs from {when(key['not_before'])}")
    for kid in ring.prune(max_token_lifetime(current_app.config), live_since=oldest_live_start):
        click.echo(f"pruned {kid}")
    for later in ring.list():  # keys are ordered by when they sign: a pending one takes over then
        if later["alg"] == key["alg"] and later["state"] == "next" and later["not_before"] > key["not_before"]:
            click.echo(f"note: key {later['kid']}, rotated earlier, takes over from {when(later['not_before'])}")


@keys.command("withdraw")
@click.argument("kid")
@click.confirmation_option(prompt="Withdraw the key? Every token it signed stops verifying at once.")
def withdraw(kid):
    """Delete a leaked key from the JWKS at once (not waiting for its tokens to expire).

    For a leaked active key: `idp keys rotate --now` first, then withdraw the old one. A kid
    is base64url and may start with "-": put it after "--" (`idp keys withdraw --yes -- KID`)."""
    try:
        key = _ring().withdraw(kid)
    except KeyError:
        raise CliError(f"no key {kid!r}") from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"withdrew {key['state']} {key['alg']} key {kid}")


@keys.command("list")
def list_():
    """Every key with its state: next (published, not signing yet), active, retired."""
    rows = [(k["kid"], k["alg"], k["state"], when(k["created_at"]), when(k["not_before"]), when(k["retired_at"]))
            for k in _ring(writing=False).list()]
    table(rows, ("KID", "ALG", "STATE", "CREATED", "SIGNS_FROM", "RETIRED"))


@keys.command("prune")
def prune():
    """Delete retired keys once every token they signed has expired."""
    removed = _ring().prune(max_token_lifetime(current_app.config), live_since=oldest_live_start)
    for kid in removed:
        click.echo(f"pruned {kid}")
    click.echo(f"{len(removed)} key(s) pruned")


@keys.command("seal")
def seal():
    """Seal under SECRET_KEY the keys an earlier release stored in clear.

    Run it once no process of that earlier release is left: one still running cannot read a
    sealed key and would stop signing with it. (It reads keys in clear whatever
    KEYS_ACCEPT_CLEAR says: sealing them is what it is for.)"""
    kids = _ring().seal()
    for kid in kids:
        click.echo(f"sealed {kid}")
    click.echo(f"{len(kids)} key(s) sealed")


@keys.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def import_(directory):
    """Copy the keys of a KEYS_DIR into the database (KEYS_STORE=database).

    Run it before the first process starts with KEYS_STORE=database, with the SECRET_KEY the
    files were sealed with: the keys keep their kids and states, so relying parties see the
    same JWKS. A process started first would generate new keys that sign at once."""
    cfg = current_app.config
    if cfg["KEYS_STORE"] != "database":
        raise CliError("KEYS_STORE is not database: the keys already live in KEYS_DIR")
    source = KeyRing(directory, cfg["KEY_PUBLISH_AHEAD"], cfg["SECRET_KEY"], cfg["KEYS_ACCEPT_CLEAR"])
    try:
        kids = _ring().import_from(source)
    except KeysUnreadable as exc:
        raise CliError(f"signing keys: {exc}") from None
    for kid in kids:
        click.echo(f"imported {kid}")
    click.echo(f"{len(kids)} key(s) imported")
