"""Security headers on every page and endpoint; no stack traces for anything a client can send."""

import pytest

PATHS = ["/.well-known/openid-configuration", "/jwks", "/authorize", "/userinfo", "/signin/nope/password",
         "/does-not-exist"]


@pytest.mark.parametrize("path", PATHS)
def test_headers_everywhere(client, path):
    resp = client.get(path)
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "same-origin"  # see test_ops_proxy_headers
    assert "Strict-Transport-Security" not in resp.headers  # plain-http loopback issuer


def test_hsts_over_https(tmp_path, keys_dir):
    from idp import create_app

    app = create_app({"ISSUER": "https://id.example.com", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
                      "KEYS_DIR": keys_dir})
    resp = app.test_client().get("/jwks")
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize("method,path", [("POST", "/.well-known/openid-configuration"), ("DELETE", "/token"),
                                         ("PUT", "/authorize"), ("GET", "/signin/%00/password")])
def test_odd_requests_get_clean_errors(client, method, path):
    resp = client.open(path, method=method)
    assert 400 <= resp.status_code < 500
    assert "Traceback" not in resp.get_data(as_text=True)


def test_sign_in_and_logout_pages_are_never_cached(flow):
    """They carry CSRF tokens, a prefilled email or a confirmation id."""
    form = flow.authorize(login_hint="seller@example.com").headers["Location"]
    page = flow.client.get(form)
    assert page.status_code == 200 and "seller@example.com" in page.get_data(as_text=True)
    for resp in (page, flow.client.get("/signin/nope/password"), flow.client.get("/logout")):
        assert resp.headers.get("Cache-Control") == "no-store", resp.request.path


def test_an_unexpected_error_before_flask_is_a_json_500_with_the_headers(app, client, caplog):
    """The discovery documents and the API endpoints are answered before Flask: a failure there
    (here the key storage gone bad under /jwks) must not reach the server as an exception,
    which would answer without our headers and log the traceback past our filter."""
    ring = app.extensions["idp.keyring"]

    def broken():
        raise RuntimeError("key storage unreadable")

    ring.version = broken
    try:
        resp = client.get("/jwks")
    finally:
        del ring.version
    assert resp.status_code == 500 and resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    assert body["error"] == "server_error" and "request id" in body["error_description"]
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert "unhandled error request_id=" in caplog.text and "key storage unreadable" not in resp.get_data(as_text=True)
    assert client.get("/jwks").status_code == 200
