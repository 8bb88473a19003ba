"""Fixtures shared by every tier.

``app`` runs on two stacks: SQLite with the embedded store (what `make run` uses) and
PostgreSQL with Redis (production), each a real server started by tests.plugins.servers.
Chained fixtures build the world a test needs: app -> client -> seller -> ...
"""

import base64
import hashlib
import os
import re
import secrets
import shutil
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from idp import create_app
from idp.extensions import db

pytest_plugins = ["tests.plugins.servers"]

ISSUER = "http://127.0.0.1:5000"
PASSWORD = "correct horse battery staple 42"
MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "idp", "migrations")


def _migrate(app):
    with app.app_context():
        if os.path.isdir(MIGRATIONS):
            from flask_migrate import upgrade

            upgrade()
        else:
            db.create_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite database, copied for each test (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("db") / "template.sqlite3"
    keys = tmp_path_factory.mktemp("keys")
    _migrate(create_app({"DATABASE_URL": f"sqlite:///{path}", "KEYS_DIR": str(keys)}))
    return path


@pytest.fixture(scope="session")
def postgres_migrated(postgres_url, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys")
    _migrate(create_app({"DATABASE_URL": postgres_url, "KEYS_DIR": str(keys)}))
    return postgres_url


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory):
    """Generating RSA keys is slow; one key directory serves the whole session."""
    return str(tmp_path_factory.mktemp("signing-keys"))


def _truncate_all():
    names = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
    # A test that failed with a transaction of its own still open (another connection, a
    # thread) would otherwise hold this TRUNCATE, and the whole run, forever: fail instead.
    db.session.execute(text("SET LOCAL lock_timeout = '60s'"))
    db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    db.session.commit()


class FreshContextClient(FlaskClient):
    """Each request gets its own app context, as in a real server.

    The ``app`` fixture keeps an app context pushed for the test body; without this the
    requests would share its ``g`` (and its database session) with the test and each other.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request, tmp_path, keys_dir):
    config = {"ISSUER": ISSUER, "KEYS_DIR": keys_dir, "TESTING": True}
    if request.param == "sqlite":
        path = tmp_path / "idp.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        config.update(DATABASE_URL=f"sqlite:///{path}", REDIS_URL="memory://")
    else:
        config.update(DATABASE_URL=request.getfixturevalue("postgres_migrated"),
                      REDIS_URL=request.getfixturevalue("redis_url"), STORE_NAMESPACE=f"t{secrets.token_hex(4)}:")
    app = create_app(config)
    app.test_client_class = FreshContextClient
    with app.app_context():
        app.extensions["idp.keyring"].ensure()
        yield app
        db.session.remove()
        if request.param == "postgresql":
            _truncate_all()
            app.extensions["idp.store"].clear()
        db.engine.dispose()  # one pool per test app: close it, or PostgreSQL runs out of connections


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def seller(app):
    from idp.login.password import hash_password
    from idp.models import Account

    account = Account(email="seller@example.com", email_verified=True, name="Sam Seller",
                      password_hash=hash_password(PASSWORD))
    db.session.add(account)
    db.session.commit()
    return account


def register_client(client_id="rp-web", **fields):
    from idp.crypto.secrets import keyed_hash
    from idp.models import Client

    secret = fields.pop("secret", "s3cret-" + client_id)
    defaults = dict(
        client_id=client_id, name=client_id.title(), redirect_uris=["https://rp.example.com/cb"],
        grant_types=["authorization_code", "refresh_token"], first_party=True,
        scopes=["openid", "email", "profile", "offline_access"], token_endpoint_auth_method="client_secret_basic",
        post_logout_redirect_uris=["https://rp.example.com/bye"],
    )
    defaults.update(fields)
    if defaults["token_endpoint_auth_method"] in ("client_secret_basic", "client_secret_post"):
        defaults["secret_hash"] = keyed_hash(secret)
    rp = Client(**defaults)
    db.session.add(rp)
    db.session.commit()
    rp.secret = secret
    return rp


@pytest.fixture
def rp(app):
    """A first-party confidential web client."""
    return register_client()


@pytest.fixture
def native_rp(app):
    return register_client("rp-native", application_type="native", token_endpoint_auth_method="none",
                           redirect_uris=["http://127.0.0.1/cb", "com.example.app:/cb"])


@pytest.fixture
def third_party_rp(app):
    return register_client("rp-third", first_party=False, scopes=["openid", "email", "profile"])


def pkce_pair():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


class Flow:
    """Drives the authorization code flow through the Flask test client."""

    def __init__(self, client, rp):
        self.client, self.rp = client, rp
        self.verifier, self.challenge = pkce_pair()

    def authorize_params(self, **extra):
        params = {"response_type": "code", "client_id": self.rp.client_id, "redirect_uri": self.rp.redirect_uris[0],
                  "scope": "openid email", "state": "st-" + secrets.token_hex(4), "nonce": "n-" + secrets.token_hex(4),
                  "code_challenge": self.challenge, "code_challenge_method": "S256"}
        params.update(extra)
        return {k: v for k, v in params.items() if v is not None}

    def authorize(self, **extra):
        return self.client.get("/authorize", query_string=self.authorize_params(**extra))

    def sign_in(self, resp, email="seller@example.com", password=PASSWORD):
        assert resp.status_code == 302, resp.get_data(as_text=True)
        page = self.client.get(resp.headers["Location"])
        return self.client.post(resp.headers["Location"], data={
            "csrf_token": csrf_token(page.get_data(as_text=True)), "email": email, "password": password})

    def code_from(self, resp) -> str:
        assert resp.status_code == 302, resp.get_data(as_text=True)
        query = parse_qs(urlsplit(resp.headers["Location"]).query)
        assert "code" in query, query
        return query["code"][0]

    def login_code(self, **extra) -> str:
        resp = self.authorize(**extra)
        if "/signin/" in resp.headers.get("Location", ""):
            resp = self.sign_in(resp)
        return self.code_from(resp)

    def redeem(self, code, **extra):
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.rp.redirect_uris[0],
                "code_verifier": self.verifier}
        data.update(extra)
        auth = None
        if self.rp.token_endpoint_auth_method == "client_secret_basic":
            auth = (self.rp.client_id, self.rp.secret)
        elif self.rp.token_endpoint_auth_method == "none":
            data.setdefault("client_id", self.rp.client_id)
        return self.client.post("/token", data={k: v for k, v in data.items() if v is not None}, auth=auth)


@pytest.fixture
def flow(client, rp, seller):
    return Flow(client, rp)
