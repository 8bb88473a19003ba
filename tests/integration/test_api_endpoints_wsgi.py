"""/token, /introspect, /revoke and /userinfo are answered before Flask (idp.oauth.endpoints).

They neither read nor set our browser cookies, answer every failure as JSON with the
security headers, and see the issuer's URL whatever scheme the worker was reached by.
"""

import pytest

from idp import create_app
from idp.oauth import tokens
from tests.conftest import FreshContextClient
from tests.integration.token_helpers import auth_of, backend

API = ["/token", "/introspect", "/revoke", "/userinfo"]


def test_token_endpoint_sets_no_cookie(flow):
    resp = flow.redeem(flow.login_code())
    assert resp.status_code == 200
    assert not resp.headers.getlist("Set-Cookie")


def test_userinfo_ignores_the_browser_session(flow):
    """A signed-in browser's cookies do not stand in for a bearer token."""
    flow.login_code()
    resp = flow.client.get("/userinfo")
    assert resp.status_code == 401 and not resp.headers.getlist("Set-Cookie")


def test_pages_still_use_the_cookie_session(flow):
    page = flow.client.get(flow.authorize().headers["Location"])
    assert any(c.startswith("idp_flask=") for c in page.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize("path", API)
def test_wrong_method_is_json_405(client, path):
    resp = client.put(path)
    assert resp.status_code == 405
    assert resp.get_json()["error"] == "invalid_request"
    assert "POST" in resp.headers["Allow"]
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
def test_oversized_body_is_413_json(client, path):
    resp = client.post(path, data={"token": "x" * (70 * 1024)})
    assert resp.status_code == 413
    assert resp.get_json()["error"] == "invalid_request"


def test_success_carries_security_headers(app, client):
    api = backend()
    resp = client.post("/token", data={"grant_type": "client_credentials"}, auth=auth_of(api))
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    for name in ("Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"):
        assert name in resp.headers
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Pragma"] == "no-cache"
    assert resp.headers["Content-Length"] == str(len(resp.data))


def test_unexpected_failure_is_a_generic_json_500(flow, monkeypatch, caplog):
    token = flow.redeem(flow.login_code()).get_json()["access_token"]

    def broken(_token, **_):
        raise RuntimeError("database exploded: secret detail")

    monkeypatch.setattr(tokens, "find_access_token", broken)
    resp = flow.client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 500
    body = resp.get_json()
    assert body["error"] == "server_error" and "request id" in body["error_description"]
    assert "secret detail" not in resp.get_data(as_text=True)
    assert "secret detail" in caplog.text  # the detail goes to the log


def test_https_issuer_behind_a_plain_http_hop(app):
    """Behind a TLS-terminating load balancer the worker sees http://idp.example.com; authlib
    must still judge the transport by the issuer the client used (no insecure_transport)."""
    cfg = {k: app.config[k] for k in ("DATABASE_URL", "REDIS_URL", "KEYS_DIR", "STORE_NAMESPACE") if k in app.config}
    behind = create_app({**cfg, "ISSUER": "https://idp.example.com", "TESTING": True})
    behind.test_client_class = FreshContextClient
    api = backend()
    resp = behind.test_client().post("/token", data={"grant_type": "client_credentials"}, auth=auth_of(api),
                                     base_url="http://idp.example.com")
    assert resp.status_code == 200, resp.get_json()


def test_plain_http_issuer_off_loopback_is_refused(app):
    """authlib's rule (RFC 6749 §1.6: TLS) still holds; judged once on the issuer."""
    cfg = {k: app.config[k] for k in ("DATABASE_URL", "REDIS_URL", "KEYS_DIR", "STORE_NAMESPACE") if k in app.config}
    plain = create_app({**cfg, "ISSUER": "http://idp.example.com", "TESTING": True})
    resp = plain.test_client().post("/token", data={"grant_type": "client_credentials"})
    assert resp.status_code == 400 and resp.get_json()["error"] == "insecure_transport"
