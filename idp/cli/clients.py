"""`idp clients ...`: register, inspect and remove relying parties.

Only the keyed hash of a client secret is stored (idp.crypto.secrets); the secret itself
is printed once, when it is made.
"""

import json
import tomllib
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..crypto.secrets import keyed_hash, new_token
from ..extensions import db
from ..models import Client, Consent, Grant
from . import client_rules as rules
from .common import CliError, store_unreachable, table, warn_if_store_is_private

clients = AppGroup("clients", help="Register and inspect relying parties (OAuth clients).")

TOML_KEYS = {
    "client_id", "name", "redirect_uris", "post_logout_redirect_uris", "grant_types", "scopes", "auth_method",
    "public", "native", "first_party", "jwks", "jwks_file", "backchannel_logout_uri", "id_token_alg",
    "access_token_format", "secret",
}


@clients.command("add")
@click.argument("client_id")
@click.option("--name", help="Shown on the consent page.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Exact redirect URI; repeat for several.")
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option("--grant-type", "grant_types", multiple=True, type=click.Choice(rules.GRANT_TYPES),
              help="Repeat for several; default authorization_code.")
@click.option("--scope", "scopes", multiple=True, help="Allowed scope; repeat, or give several separated by spaces.")
@click.option("--auth-method", type=click.Choice(rules.AUTH_METHODS), help="Default client_secret_basic.")
@click.option("--public", is_flag=True, help="No client authentication (auth method none).")
@click.option("--native", is_flag=True, help="A native app (RFC 8252): loopback and private-use redirects.")
@click.option("--first-party", is_flag=True, help="Ours: consent is not asked.")
@click.option("--jwks-file", type=click.Path(exists=True, dir_okay=False), help="Public JWKS for private_key_jwt.")
@click.option("--backchannel-logout-uri")
@click.option("--id-token-alg", type=click.Choice(rules.ID_TOKEN_ALGS), help="Default: the IdP's ID_TOKEN_ALG.")
@click.option("--access-token-format", type=click.Choice(rules.ACCESS_TOKEN_FORMATS), default="opaque",
              show_default=True)
def add(client_id, jwks_file, **options):
    """Register a new client; a confidential one gets a secret, printed once."""
    if not rules.CLIENT_ID.fullmatch(client_id or ""):  # before it is looked up: a database takes no such text
        raise CliError("a client id is 1-100 letters, digits, '.', '_', '~' or '-'")
    if db.session.scalar(select(Client).filter_by(client_id=client_id)) is not None:
        raise CliError(f"client {client_id!r} already exists (remove it first, or use `idp clients load`)")
    spec = _build(client_id, jwks=_read_jwks(jwks_file) if jwks_file else None, **options)
    client = Client(client_id=client_id)
    _apply(client, spec)
    secret = _new_secret(client) if spec.uses_secret else None
    db.session.add(client)
    try:
        db.session.commit()
    except IntegrityError:  # added by someone else since the check above
        db.session.rollback()
        raise CliError(f"client {client_id!r} already exists (remove it first, or use `idp clients load`)") from None
    click.echo(f"added client {client_id} ({_kind(client)})")
    if secret:
        _print_secret(client_id, secret)


@clients.command("list")
def list_():
    """All registered clients."""
    rows = [
        (c.client_id, _kind(c), c.token_endpoint_auth_method, "yes" if c.first_party else "no", c.name)
        for c in db.session.scalars(select(Client).order_by(Client.client_id))
    ]
    table(rows, ("CLIENT_ID", "TYPE", "AUTH", "FIRST_PARTY", "NAME"))


@clients.command("show")
@click.argument("client_id")
def show(client_id):
    """One client's registration (never its secret or secret hash)."""
    c = _get(client_id)
    fields = {
        "client_id": c.client_id, "name": c.name, "type": _kind(c), "auth_method": c.token_endpoint_auth_method,
        "secret": "set (only its hash is stored)" if c.secret_hash else "none",
        "first_party": "yes" if c.first_party else "no", "grant_types": " ".join(c.grant_types),
        "scopes": " ".join(c.scopes), "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "backchannel_logout_uri": c.backchannel_logout_uri or "-",
        "id_token_alg": c.id_token_signed_response_alg or f"{current_app.config['ID_TOKEN_ALG']} (default)",
        "access_token_format": c.access_token_format,
        "jwks": f"{len(c.jwks['keys'])} key(s)" if c.jwks else "-",
    }
    for key, value in fields.items():
        if isinstance(value, list):
            value = "".join(f"\n  {v}" for v in value) or " -"
            click.echo(f"{key}:{value}")
        else:
            click.echo(f"{key}: {value}")


@clients.command("rotate-secret")
@click.argument("client_id")
def rotate_secret(client_id):
    """Give a client a new secret, printed once; the old one stops working at once.

    For a leaked secret: the client's sellers keep their sign-ins, tokens and consents, which
    removing and registering the client again would all end. Its registration's version
    changes, so every server's copy of it is judged again (idp.oauth.clients)."""
    from ..oauth.tokens import credentials_mark

    client = _get(client_id)
    if client.token_endpoint_auth_method not in rules.SECRET_METHODS:
        raise CliError(f"client {client_id!r} has no secret (it authenticates with "
                       f"{client.token_endpoint_auth_method})")
    row_id, leaked = client.id, credentials_mark(client)
    secret = _new_secret(client)
    db.session.commit()  # drops the cached registration on every server (idp.store.row_cache)
    # Whoever has the old secret may have got client-credentials tokens with it: those go,
    # the tokens of the new secret (in families of their own) stay.
    revoked = _revoke_client_credentials(row_id, leaked, "secret_rotated")
    click.echo(f"new secret for client {client_id}; the old one no longer works")
    _print_secret(client_id, secret)
    if not revoked:
        raise store_unreachable("the store (REDIS_URL) could not be reached: client-credentials tokens got "
                                "with the old secret were not revoked and expire within ACCESS_TOKEN_TTL")
    click.echo("client-credentials tokens got with the old secret revoked")
    warn_if_store_is_private()


@clients.command("remove")
@click.argument("client_id")
@click.confirmation_option(prompt="Remove the client and revoke every token it holds?")
def remove(client_id):
    """Delete a client, revoke its token families and client-credentials tokens, and forget
    its consents."""
    from ..oauth.tokens import credentials_mark, kill_families_access_tokens, revoke_families

    client = _get(client_id)
    row_id, credentials = client.id, credentials_mark(client)
    db.session.execute(delete(Consent).filter_by(client_id=client_id))
    db.session.delete(client)
    # The client's row goes first: its DELETE waits for the code redemptions holding the row's
    # share lock (on PostgreSQL idp.oauth.code_redemption's statement), so the UPDATE below, in the same
    # transaction, revokes the families they commit, and a redemption after it finds no client.
    db.session.flush()
    grant_ids = revoke_families(Grant.client_id == client_id, "client_removed")
    db.session.commit()  # drops the cached registration: a token written from here on deletes itself
    # The store's half: the families' access tokens, then the client-credentials tokens.
    revoked = kill_families_access_tokens(grant_ids, "client_removed") \
        and _revoke_client_credentials(row_id, credentials, "client_removed")
    if not revoked:  # the client is gone already: say what is left
        raise store_unreachable(f"removed client {client_id} ({len(grant_ids)} grant(s) revoked), but the store "
                                "(REDIS_URL) could not be reached: its access tokens were not all deleted (those of "
                                "its token families go at the server's next logout-retry run once it answers; its "
                                "client-credentials tokens expire within ACCESS_TOKEN_TTL)")
    click.echo(f"removed client {client_id} ({len(grant_ids)} grant(s) revoked, and its client-credentials "
               "tokens)")
    warn_if_store_is_private()


@clients.command("load")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
def load(file):
    """Register or update the clients of a TOML file (default CLIENTS_FILE); idempotent.

    A ``secret`` in the file is for demo clients only and refused in production; a
    confidential client without one keeps its secret, or gets a new one printed once.
    """
    path = Path(file or current_app.config["CLIENTS_FILE"])
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    # A misspelt table ([[client]]) would otherwise load nothing and say nothing.
    if set(document) - {"clients"}:
        raise CliError(f"{path}: unknown top-level key(s) {', '.join(sorted(set(document) - {'clients'}))} "
                       "(the clients are [[clients]] tables)")
    if "clients" not in document:
        raise CliError(f"{path}: no [[clients]] tables")
    tables = document["clients"]
    if not isinstance(tables, list) or not all(isinstance(entry, dict) for entry in tables):
        raise CliError(f"{path}: clients must be an array of tables ([[clients]] ...)")
    loaded = [_from_table(entry, path) for entry in tables]  # check them all before writing any
    ids = [spec.client_id for spec, _ in loaded]
    if len(set(ids)) != len(ids):
        raise CliError(f"{path}: a client_id appears twice: {sorted({i for i in ids if ids.count(i) > 1})}")

    from ..oauth.tokens import credentials_mark

    new_secrets, report, replaced = [], [], []
    for spec, secret in loaded:
        client = db.session.scalar(select(Client).filter_by(client_id=spec.client_id))
        before = _columns(client) if client else None
        mark_before = credentials_mark(client) if client else None
        if client is None:
            client = Client(client_id=spec.client_id)
            db.session.add(client)
        _apply(client, spec)
        if secret:
            client.secret_hash = keyed_hash(secret)
        elif spec.uses_secret and client.secret_hash is None:
            new_secrets.append((spec.client_id, _new_secret(client)))
        elif not spec.uses_secret:
            client.secret_hash = None
        if mark_before is not None and mark_before != "-" and credentials_mark(client) != mark_before:
            replaced.append((spec.client_id, client, mark_before))  # its secret replaced or gone
        if before is None:
            report.append((f"added client {spec.client_id}", []))
        else:
            after = _columns(client)
            changes = _changes(before, after)
            report.append((f"{'updated' if changes else 'unchanged'} client {spec.client_id}"
                           + (f": {'; '.join(changes)}" if changes else ""), _weaker(before, after)))
    db.session.commit()
    for line, weaker in report:
        click.echo(line)
        for why in weaker:
            click.secho(f"  Note: {why}", fg="yellow", err=True)
    for client_id, secret in new_secrets:
        _print_secret(client_id, secret)
    # As rotate-secret: client-credentials tokens got with a secret the file replaced or dropped go.
    unrevoked = []
    for client_id, client, mark in replaced:
        if _revoke_client_credentials(client.id, mark, "secret_rotated"):
            click.echo(f"client-credentials tokens of {client_id} got with its old secret revoked")
        else:
            unrevoked.append(client_id)
    # Loading never removes (a table deleted from the file by mistake would sign every seller
    # of that client out): said, so the operator knows which clients the file no longer has.
    if left := sorted(set(db.session.scalars(select(Client.client_id))) - set(ids)):
        click.secho(f"Note: registered, but not in {path}: {', '.join(left)} (`idp clients remove ID` to remove)",
                    fg="yellow", err=True)
    if unrevoked:
        raise store_unreachable(f"the store (REDIS_URL) could not be reached: client-credentials tokens got with "
                                f"the old secret of {', '.join(unrevoked)} were not revoked and expire within "
                                "ACCESS_TOKEN_TTL")


# -- helpers ---------------------------------------------------------------------

def _revoke_client_credentials(row_id: int, credentials: str, reason: str) -> bool:
    """Revoke the client-credentials tokens a registration got with ``credentials``; False
    when the store could not be reached (the caller says what is left)."""
    from ..oauth.tokens import revoke_client_credentials

    try:
        revoke_client_credentials(row_id, credentials, reason)
    except Exception:  # noqa: BLE001  (the caller says so)
        return False
    return True


def _build(client_id, **options) -> rules.ClientSpec:
    scopes = options.get("scopes") or ()
    groups = [scopes] if isinstance(scopes, str) else scopes
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, str) for g in groups):
        raise CliError(f"{client_id}: scopes must be a list of strings")
    options["scopes"] = [s for group in groups for s in group.split()]
    try:
        return rules.build(client_id, **options)
    except rules.InvalidClient as exc:
        raise CliError(f"{client_id}: {exc}") from None


def _from_table(entry: dict, path: Path) -> tuple[rules.ClientSpec, str | None]:
    client_id = entry.get("client_id")
    if not isinstance(client_id, str):
        raise CliError(f"{path}: every [[clients]] table needs a client_id")
    unknown = set(entry) - TOML_KEYS
    if unknown:
        raise CliError(f"{path}: client {client_id}: unknown field(s) {', '.join(sorted(unknown))}")
    options = {k: v for k, v in entry.items() if k not in ("client_id", "secret", "jwks_file")}
    if "jwks_file" in entry:
        if not isinstance(entry["jwks_file"], str):
            raise CliError(f"{path}: client {client_id}: jwks_file must be a file name")
        options["jwks"] = _read_jwks(path.parent / entry["jwks_file"])
    spec = _build(client_id, **options)
    secret = entry.get("secret")
    if secret is not None:
        if not spec.uses_secret:
            raise CliError(f"{path}: client {client_id}: has a secret but auth method {spec.auth_method} uses none")
        if current_app.config["ENV"] == "production":
            raise CliError(f"{path}: client {client_id}: a secret in the file is for demos; refused in production")
        if not isinstance(secret, str) or len(secret) < 16:
            raise CliError(f"{path}: client {client_id}: secret must be a string of at least 16 characters")
    return spec, secret


def _read_jwks(path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read JWKS file {path}: {exc}") from None


def _apply(client: Client, spec: rules.ClientSpec) -> None:
    client.name = spec.name
    client.application_type = spec.application_type
    client.token_endpoint_auth_method = spec.auth_method
    client.redirect_uris = list(spec.redirect_uris)
    client.post_logout_redirect_uris = list(spec.post_logout_redirect_uris)
    client.grant_types = list(spec.grant_types)
    client.scopes = list(spec.scopes)
    client.first_party = spec.first_party
    client.jwks = spec.jwks
    client.backchannel_logout_uri = spec.backchannel_logout_uri
    client.id_token_signed_response_alg = spec.id_token_alg
    client.access_token_format = spec.access_token_format


def _changes(before: dict, after: dict) -> list[str]:
    """What a load changed, field by field (lists by what was added and removed; never a
    secret's hash, only that it changed)."""
    out = []
    for key in before:
        old, new = before[key], after[key]
        if old == new:
            continue
        if key == "secret_hash":
            out.append("secret " + ("removed" if new is None else "added" if old is None else "replaced"))
        elif isinstance(old, list) and isinstance(new, list):
            out.append(f"{key} " + " ".join([*(f"+{v}" for v in _added(old, new)),
                                              *(f"-{v}" for v in _added(new, old))]))
        elif key == "jwks":
            out.append("jwks replaced")
        else:
            out.append(f"{key} {old!r} -> {new!r}")
    return out


def _weaker(before: dict, after: dict) -> list[str]:
    """Changes that let the client do more than before, said apart (an operator loading a file
    should not learn of them from a diff line)."""
    out = []
    if before["token_endpoint_auth_method"] != "none" and after["token_endpoint_auth_method"] == "none":
        out.append("the client is public now: its refresh tokens are used with its client_id alone")
    if after["first_party"] and not before["first_party"]:
        out.append("the client is first-party now: sellers are no longer asked for consent")
    for key, says, sep in (("redirect_uris", "codes may now be sent to", ", "),
                           ("post_logout_redirect_uris", "browsers may now be sent after a logout to", ", "),
                           ("scopes", "the client may now ask for", " "),
                           ("grant_types", "the client may now use", ", ")):
        if added := _added(before[key], after[key]):
            out.append(f"{says} {sep.join(added)}")
    if after["backchannel_logout_uri"] and after["backchannel_logout_uri"] != before["backchannel_logout_uri"]:
        out.append(f"logout tokens now go to {after['backchannel_logout_uri']}")
    if added := _new_keys(before["jwks"], after["jwks"]):
        out.append("new keys may now authenticate as the client (private_key_jwt): " + ", ".join(added))
    if after.get("application_type") == "native" and before.get("application_type") != "native":
        out.append("the client is native now: its loopback redirect URIs take any port")
    return out


def _new_keys(before, after) -> list[str]:
    """The keys of JWKS ``after`` that ``before`` lacks (compared whole: a kid is optional), by kid."""
    def keys(jwks) -> list[dict]:
        return [k for k in (jwks or {}).get("keys", []) if isinstance(k, dict)]

    old = {json.dumps(k, sort_keys=True) for k in keys(before)}
    return [str(k.get("kid", "a key without kid")) for k in keys(after) if json.dumps(k, sort_keys=True) not in old]


def _added(old: list, new: list) -> list:
    return [v for v in new if v not in old]


def _columns(client: Client) -> dict:
    return {c.key: getattr(client, c.key) for c in Client.__table__.columns if c.key not in ("id", "created_at")}


def _new_secret(client: Client) -> str:
    secret = new_token(32)
    client.secret_hash = keyed_hash(secret)
    return secret


def _print_secret(client_id: str, secret: str) -> None:
    click.echo(f"client_secret for {client_id}: {secret}")
    click.secho(f"  Store the secret of {client_id} now: it will not be shown again (only a hash is kept).",
                fg="yellow", err=True)


def _get(client_id: str) -> Client:
    client = db.session.scalar(select(Client).filter_by(client_id=client_id))
    if client is None:
        raise CliError(f"no client {client_id!r}")
    return client


def _kind(c: Client) -> str:
    return f"{'public' if c.is_public else 'confidential'} {c.application_type}"
