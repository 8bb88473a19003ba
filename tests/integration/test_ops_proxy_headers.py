"""PROXY_HOPS: behind a load balancer, the client's address comes from X-Forwarded-For.

The address is recorded with each browser session (the seller's sessions and devices, and
the risk signals of a sign-in, read it), so it must be the client's, and it must not be
whatever a client writes into a header when no proxy vouches for it.
"""

import shutil

import pytest

from idp import create_app
from idp.extensions import db
from idp.login.password import hash_password
from idp.models import Account, BrowserSession
from tests.conftest import ISSUER, PASSWORD, FreshContextClient, Flow, register_client

FORWARDED = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "203.0.113.7, 198.51.100.9",
             "HTTP_X_FORWARDED_PROTO": "https",
             # what a browser sends on our own form posts under Referrer-Policy: same-origin
             "HTTP_REFERER": "https://localhost/signin"}


def _app(tmp_path, sqlite_template, keys_dir, **config):
    path = tmp_path / "idp.sqlite3"
    shutil.copy(sqlite_template, path)
    app = create_app({"ISSUER": ISSUER, "KEYS_DIR": keys_dir, "TESTING": True, "DATABASE_URL": f"sqlite:///{path}",
                      "REDIS_URL": "memory://", **config})
    app.test_client_class = FreshContextClient
    return app


@pytest.fixture
def signed_in_from(tmp_path, sqlite_template, keys_dir):
    """Sign in (once per test) through a client whose every request carries ``environ``;
    returns the ip recorded with the browser session."""
    apps = []

    def sign_in(environ, **config):
        app = _app(tmp_path, sqlite_template, keys_dir, **config)
        apps.append(app)
        with app.app_context():
            app.extensions["idp.keyring"].ensure()
            db.session.add(Account(email="seller@example.com", email_verified=True,
                                   password_hash=hash_password(PASSWORD)))
            db.session.commit()
            client = app.test_client()
            client.environ_base.update(environ)
            flow = Flow(client, register_client())
            assert flow.redeem(flow.login_code()).status_code == 200
            (ip,) = db.session.execute(db.select(BrowserSession.ip)).scalars().all()
            db.session.remove()
        return ip

    yield sign_in
    for app in apps:
        with app.app_context():
            db.engine.dispose()


def test_without_proxy_hops_the_peer_is_the_client_and_the_header_is_ignored(signed_in_from):
    assert signed_in_from(FORWARDED) == "10.0.0.2"


def test_one_hop_takes_the_address_the_balancer_appended(signed_in_from):
    """The last X-Forwarded-For entry is the one our balancer wrote; what the client sent
    before it (203.0.113.7 here, perhaps forged) is not trusted."""
    assert signed_in_from(FORWARDED, PROXY_HOPS=1) == "198.51.100.9"


def test_two_hops_take_the_address_two_from_the_end(signed_in_from):
    assert signed_in_from(FORWARDED, PROXY_HOPS=2) == "203.0.113.7"


def test_behind_a_tls_balancer_the_sign_in_needs_the_referer_our_pages_allow(signed_in_from):
    """With X-Forwarded-Proto trusted the request is HTTPS, and Flask-WTF's CSRF check then
    requires a same-origin Referer: what Referrer-Policy: same-origin lets the browser send
    (tests/e2e/test_browser_signin.py checks Chromium does). Without one, the form is refused."""
    without_referer = {k: v for k, v in FORWARDED.items() if k != "HTTP_REFERER"}
    with pytest.raises(AssertionError, match="referrer header is missing"):
        signed_in_from(without_referer, PROXY_HOPS=1)


@pytest.mark.parametrize("hops", [-1, "1", True, 1.5])
def test_proxy_hops_must_be_a_whole_number(tmp_path, sqlite_template, keys_dir, hops):
    from idp.config import ConfigError

    with pytest.raises(ConfigError, match="PROXY_HOPS"):
        _app(tmp_path, sqlite_template, keys_dir, PROXY_HOPS=hops)
