"""Security headers on every page and endpoint; no stack traces for anything a client can send."""

import pytest

PATHS = ["/.well-known/openid-configuration", "/jwks", "/authorize", "/userinfo", "/signin/nope/password",
         "/does-not-exist"]


def _assert_headers(resp):
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "same-origin"  # see test_ops_proxy_headers
    assert "Strict-Transport-Security" not in resp.headers  # plain-http loopback issuer


@pytest.mark.parametrize("path", PATHS)
def test_headers_everywhere(client, path):
    _assert_headers(client.get(path))


def test_headers_on_the_pages_of_a_signed_in_browser(app, client, seller, third_party_rp):
    """The consent page, the logout confirmation and its answer, sign out everywhere."""
    from tests.conftest import Flow, csrf_token

    third = Flow(client, third_party_rp)
    consent = client.get(third.sign_in(third.authorize()).headers["Location"])
    logout = client.get("/logout")
    everywhere = client.get("/account/sign-out-everywhere")
    html = logout.get_data(as_text=True)
    logout_id = html.split('name="logout_id" type="hidden" value="')[1].split('"')[0]
    done = client.post("/logout/confirm", data={"csrf_token": csrf_token(html), "logout_id": logout_id,
                                                "confirm": "x"})
    for resp in (consent, logout, everywhere, done):
        assert resp.status_code == 200, resp.request.path
        _assert_headers(resp)
        assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Cache-Control"] == "no-store"


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


def _form_action(resp) -> list[str]:
    csp = resp.headers["Content-Security-Policy"]
    return next(d for d in csp.split("; ") if d.startswith("form-action ")).split()[1:]


@pytest.mark.parametrize("redirect_uri,source", [
    ("com.example.seller:/oauth2redirect", "com.example.seller:"),  # RFC 8252 §7.1
    ("http://127.0.0.1:53412/callback", "http://127.0.0.1:53412"),  # §7.3: the port this request names
])
def test_a_sign_in_page_lets_its_form_end_at_the_clients_redirect_uri_only(client, seller, redirect_uri, source):
    """Chromium holds a form's redirects to the page's form-action: the password form's answer
    goes to the client. Its redirect URI's origin (or private-use scheme) is allowed, nothing
    else; every other page's forms may post to the IdP alone."""
    from tests.conftest import Flow, register_client

    native = register_client("app-native", redirect_uris=["com.example.seller:/oauth2redirect",
                                                          "http://127.0.0.1/callback"],
                             token_endpoint_auth_method="none", application_type="native")
    flow = Flow(client, native)
    page = client.get(flow.authorize(redirect_uri=redirect_uri).headers["Location"])
    assert page.status_code == 200 and _form_action(page) == ["'self'", source]
    assert _form_action(client.get("/does-not-exist")) == ["'self'"]


@pytest.mark.parametrize("uri,source", [
    ("https://RP.example.com:8443/cb?x=1", "https://rp.example.com:8443"),
    ("https://rp.example.com/cb", "https://rp.example.com"),
    ("http://[::1]:8080/cb", "http:"),  # CSP names no IPv6 literal: its scheme
    ("https://under_score.example.com/cb", "https:"),  # nor a host CSP's grammar refuses
    ("com.example.app:/cb", "com.example.app:"),
])
def test_form_action_source(uri, source):
    from idp.web.headers import form_action_source

    assert form_action_source(uri) == source


@pytest.mark.parametrize("host", ["a..b", "a" * 64 + ".example.com", "."])
@pytest.mark.parametrize("path", ["/authorize", "/logout", "/signin/x/password", "/does-not-exist", "/"])
def test_a_host_header_werkzeug_cannot_bind_is_a_plain_400(client, host, path):
    """RFC 9112 §3.2: a request with an invalid Host is answered 400. Flask has no URL adapter
    for it (werkzeug's BadHost), so the error page cannot build its links: it was a 500 with
    none of the headers, raised past the app to the server."""
    resp = client.get(path, headers={"Host": host})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.mimetype == "text/plain" and "Traceback" not in resp.get_data(as_text=True)
    _assert_headers(resp)
