"""Is the database at this release's schema? `idp serve` asks before it starts a worker.

A process started against a database whose migrations were not applied would answer
every request that meets a new column with a 500; one started against a database a newer
release has migrated (say after a rollback of the code only) may write rows that release
no longer expects. So `idp serve` refuses both with one line saying what to do, as Ory
Hydra refuses to serve before `hydra migrate sql`. The revisions come from Alembic: the
database's ``alembic_version`` against the heads of idp/migrations.
"""

from __future__ import annotations

import os

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from .logs import first_line

MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")


class SchemaError(RuntimeError):
    """The database cannot be served by this release; the message says what to do."""


def release_heads() -> set[str]:
    return set(ScriptDirectory(MIGRATIONS).get_heads())


def known_revisions() -> set[str]:
    return {rev.revision for rev in ScriptDirectory(MIGRATIONS).walk_revisions()}


def unknown_revision_message(unknown: set[str]) -> str:
    return (f"the database is at revision {', '.join(sorted(unknown))}, which this release does not "
            "know (a newer release migrated it): run that release")


def database_heads(config: dict) -> set[str]:
    from .. import engine_options  # the app's own: connect timeout, no quoted parameters

    engine = create_engine(config["DATABASE_URL"], **engine_options(config))
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def check(config: dict) -> None:
    """Return if the database of ``config`` is at this release's heads; else raise SchemaError."""
    try:
        current = database_heads(config)
    except SQLAlchemyError as exc:
        raise SchemaError(f"cannot read the database schema ({type(exc).__name__}: {first_line(exc)})") from None
    heads = release_heads()
    if current == heads:
        return
    unknown = current - known_revisions()
    if unknown:
        raise SchemaError(unknown_revision_message(unknown))
    at = ", ".join(sorted(current)) or "no revision (an empty database)"
    raise SchemaError(f"the database is at {at}; this release needs {', '.join(sorted(heads))}: "
                      "run `idp db upgrade` first")
