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
