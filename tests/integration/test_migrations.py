"""The Alembic migrations (idp/migrations) build exactly the schema the models declare.

A model changed without its migration would pass every test on a database made from the
models and fail on a production database made by `idp db upgrade`; the test databases are
made by the migrations, and this compares them with the models (Alembic's autogenerate
comparison), on SQLite and PostgreSQL. The downgrades are walked too, on SQLite.
"""

import secrets
import shutil
from datetime import datetime, timezone

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from idp import create_app
from idp.extensions import db


def differences() -> list:
    with db.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), db.metadata)


def test_the_migrated_schema_is_the_models_schema(app):
    assert differences() == []


def test_every_migration_downgrades_and_upgrades_again(sqlite_template, tmp_path, keys_dir):
    shutil.copy(sqlite_template, tmp_path / "idp.sqlite3")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/idp.sqlite3", "KEYS_DIR": keys_dir})
    with app.app_context():
        downgrade(revision="base")
        with db.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_heads() == ()
        upgrade()
        assert differences() == []
        db.engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_putting_back_the_refresh_token_key_drops_the_tokens_whose_family_is_gone(
        backend, request, sqlite_template, tmp_path, keys_dir):
    """Since d4b2e1c3f5a8 a refresh token may outlive its family until prune sweeps it
    (idp.models.grant.RefreshToken): its downgrade, which puts the foreign key back, must
    not fail on such a row. On a database of its own: this one is migrated down and up."""
    from idp.models.grant import RefreshToken

    if backend == "sqlite":
        shutil.copy(sqlite_template, tmp_path / "idp.sqlite3")
        url = f"sqlite:///{tmp_path}/idp.sqlite3"
    else:
        base, name = sqlalchemy.make_url(request.getfixturevalue("postgres_url")), f"mig_{secrets.token_hex(4)}"
        admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))

        def drop():
            with admin.connect() as conn:
                conn.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.dispose()

        request.addfinalizer(drop)
        url = base.set(database=name).render_as_string(hide_password=False)
    app = create_app({"DATABASE_URL": url, "KEYS_DIR": keys_dir})
    with app.app_context():
        request.addfinalizer(db.engine.dispose)
        upgrade()
        now = datetime.now(timezone.utc)
        db.session.execute(sqlalchemy.insert(RefreshToken.__table__).values(
            token_hash="o" * 64, grant_id="gone", client_id="rp", scope="", created_at=now, expires_at=now,
            generation=0))
        db.session.commit()
        downgrade(revision="c3a1f0d2e9b7")
        assert db.session.execute(sqlalchemy.text("SELECT count(*) FROM refresh_token")).scalar() == 0
        db.session.commit()
        upgrade()
        assert differences() == []
        db.session.remove()
        db.engine.dispose()
