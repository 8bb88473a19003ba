"""Extensions, created unbound and attached in create_app (Flask's init_app pattern)."""

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase

from .context import current_app


class Base(DeclarativeBase):
    pass


# Objects stay loaded after commit: a request that commits and then reads what it wrote
# (a token response after storing the tokens) should not go back to the database for it.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()
csrf = CSRFProtect()


def store():
    """The ephemeral store (codes, sign-ins in progress, access tokens, counters)."""
    return current_app.extensions["idp.store"]


def keyring():
    """The signing keys (idp.crypto.keys.KeyRing)."""
    return current_app.extensions["idp.keyring"]
