"""The Alembic migrations (idp/migrations) build exactly the schema the models declare.

A model changed without its migration would pass every test on a database made from the
models and fail on a production database made by `idp db upgrade`; the test databases are
made by the migrations, and this compares them with the models (Alembic's autogenerate
comparison), on SQLite and PostgreSQL. The downgrades are walked too, on SQLite.
"""

import shutil

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
