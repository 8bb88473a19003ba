"""The operator command ``idp``: database, signing keys, clients, accounts, maintenance, demo, serve.

Every command but serve runs in an application context built by ``idp.create_app()``; a bad
setting, a refused input, or a database or Redis that cannot be reached (or a database not
migrated yet) ends with a one-line ``Error:`` and exit status 2, never a traceback.
"""

import functools
import logging
import os
import sys
import tomllib

import click
import psycopg.errors
import redis.exceptions
import sqlalchemy.exc
from flask import current_app
from flask.cli import AppGroup, ScriptInfo, with_appcontext
from flask_migrate import upgrade
from flask_migrate.cli import db as db_commands

from ..crypto.secrets import new_token
from ..extensions import keyring
from ..ops.logs import first_line
from .accounts import accounts, create_account, find
from .clients import clients, load as load_clients
from .common import CliError, cached_copy_left
from .keys import keys
from .logout import logout
from .maintenance import maintenance
from .serve import serve

DEMO_SELLER = "demo.seller@example.com"

cli = AppGroup("idp", help="Operate the seller identity provider: database, keys, clients, accounts.")
for group in (db_commands, keys, clients, accounts, logout, maintenance, serve):
    cli.add_command(group)


def _start(*args, **kwargs):
    from ..store import row_cache

    row_cache.forget_left_behind()  # one command's (several run in one process under a test runner)


cli.callback = _start


@cli.result_callback()
def _cached_rows_left(*args, **kwargs):
    """A change committed while Redis was out of reach is done, but the servers' cached copy
    of the row (a client registration, an account's claims) may outlive it: say so, and fail."""
    left = cached_copy_left()
    if left is not None:
        raise CliError(f"the change is saved, but the store (REDIS_URL) could not be reached: {left}")

# Flask-Migrate's downgrade and stamp take every account, client and token with them, or make
# the schema lie about itself: each asks first (--yes to skip, for scripts). The question goes
# to stderr, and with --sql (offline: the SQL is printed, nothing is run) none is asked, so
# `idp db downgrade --sql > undo.sql` is the SQL alone.
def _ask_first(name: str):
    def callback(ctx, param, yes):
        # --sql comes first when given: click takes given options in command-line order.
        if yes or ctx.params.get("sql"):
            return
        if not click.confirm(f"`idp db {name}` can drop tables or make the recorded schema version wrong; "
                             "continue?", err=True):
            ctx.abort()

    return click.option("--yes", is_flag=True, expose_value=False, callback=callback, help="Do not ask.")


for _name in ("downgrade", "stamp"):
    _ask_first(_name)(db_commands.commands[_name])


# `idp db upgrade` against a database a newer release migrated: Alembic's "Can't locate
# revision" says nothing of what to do; the same one line as `idp serve` does.
def _known_revisions_only(callback):
    @functools.wraps(callback)
    @with_appcontext
    def checked(*args, **kwargs):
        if not kwargs.get("sql"):
            from ..ops import schema

            try:
                current = schema.database_heads(current_app.config)
            except sqlalchemy.exc.SQLAlchemyError:
                current = set()  # unreachable: the upgrade itself says so
            unknown = current - schema.known_revisions()
            if unknown:
                raise CliError(schema.unknown_revision_message(unknown))
        return callback(*args, **kwargs)

    return checked


db_commands.commands["upgrade"].callback = _known_revisions_only(db_commands.commands["upgrade"].callback)


@cli.command("demo")
@click.pass_context
def demo(ctx):
    """What `make run` does first: migrate, make keys, load the demo clients and seller."""
    if current_app.config["ENV"] == "production":
        raise CliError("the demo clients and account are not for production (ENV=production)")
    upgrade()
    keyring().ensure()
    ctx.invoke(load_clients)
    if find(DEMO_SELLER) is not None:
        click.echo(f"demo seller {DEMO_SELLER} exists (password unchanged; a new one: "
                   f".venv/bin/idp accounts set-password {DEMO_SELLER})")
        return
    password = os.environ.get("IDP_DEMO_PASSWORD") or new_token(12)
    create_account(DEMO_SELLER, password, name="Demo Seller", verified=True)
    click.echo(f"demo seller: {DEMO_SELLER}  password: {password}")


def _create_app():
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # import-time chatter

    from .. import create_app
    from ..config import ConfigError
    from ..crypto.keys import KeysUnreadable

    try:
        # `idp keys seal` reads the keys an earlier release stored in clear, to seal them: the
        # one command that starts with them whatever KEYS_ACCEPT_CLEAR says. (The app is made
        # when a command needs it, within that command's click context.)
        ctx = click.get_current_context(silent=True)
        sealing = ctx is not None and ctx.command_path.split()[1:] == ["keys", "seal"]
        app = create_app({"KEYS_ACCEPT_CLEAR": True} if sealing else None)
        if app.config["KEYS_STORE"] == "database":
            _refuse_foreign_keys(app)
        return app
    except ConfigError as exc:
        raise CliError(f"configuration: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"configuration: the IDP_CONFIG_FILE is not valid TOML ({exc})") from None
    except KeysUnreadable as exc:
        raise CliError(f"signing keys: {exc}") from None
    except sqlalchemy.exc.ArgumentError:  # its message quotes the URL, password included
        raise CliError("configuration: DATABASE_URL is not a database URL") from None
    except (OSError, ValueError) as exc:  # KEYS_DIR a file, a port that is not a number...
        raise CliError(f"cannot start: {type(exc).__name__}: {first_line(exc)}") from None


def _refuse_foreign_keys(app) -> None:
    """With the keys in the database, as create_app does for a key directory: refuse to go on
    under a SECRET_KEY that does not open them. From a shell without the servers' secret,
    `idp clients add` would print a secret no server accepts (its hash is keyed by
    SECRET_KEY). A database not migrated yet (no key table) is left to `idp db upgrade`."""
    with app.app_context():
        try:
            keyring().refuse_unreadable()
        except sqlalchemy.exc.SQLAlchemyError:
            pass


def _unreachable(exc: Exception) -> str:
    """One line for a database or Redis failure: what, and what to do; never a URL."""
    text = first_line(exc)
    # A table or a column missing: a database not migrated, or at an older release's schema.
    behind = isinstance(getattr(exc, "orig", None), (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)) \
        or (isinstance(exc, sqlalchemy.exc.OperationalError) and text.startswith(("no such table", "no such column")))
    if behind and sys.argv[1:3] != ["db", "upgrade"]:
        return f"the database is not migrated to this release ({text}): run `idp db upgrade`"
    if isinstance(exc, redis.exceptions.RedisError):
        return f"Redis (REDIS_URL) cannot be used: {type(exc).__name__}: {text}"
    return f"the database (DATABASE_URL) cannot be used: {type(exc).__name__}: {text}"


def main():
    try:
        cli.main(prog_name="idp", obj=ScriptInfo(create_app=_create_app, set_debug_flag=False))
    except (sqlalchemy.exc.SQLAlchemyError, redis.exceptions.RedisError) as exc:
        click.echo(f"Error: {_unreachable(exc)}", err=True)
        sys.exit(CliError.exit_code)
    except UnicodeError:
        # An argument with bytes that are not UTF-8 (the shell hands them over as lone
        # surrogates, which no database or hash takes): the input's fault, said in one line.
        click.echo("Error: an argument is not valid UTF-8 text", err=True)
        sys.exit(CliError.exit_code)
