"""CORS (Fetch §3.2) at /token, /userinfo and /revoke, for a single-page app: preflights
for any origin, the answer opened to the origins of the client's redirect URIs only."""

import pytest

from idp.oauth.cors import origin_of
from tests.conftest import Flow, register_client

SPA = "https://spa.example.com"
EVIL = "https://evil.example.net"


@pytest.fixture
def spa(app):
    """A public web client, as a single-page app registers (code flow + PKCE, no secret)."""
    return register_client("rp-spa", token_endpoint_auth_method="none",
                           redirect_uris=[SPA + "/callback", "https://spa.example.com:8443/cb"])


@pytest.fixture
def spa_flow(client, spa, seller):
    return Flow(client, spa)


def redeem(spa_flow, origin):
    code = spa_flow.login_code()
    return spa_flow.client.post("/token", headers={"Origin": origin} if origin else {}, data={
        "grant_type": "authorization_code", "code": code, "client_id": "rp-spa",
        "redirect_uri": spa_flow.rp.redirect_uris[0], "code_verifier": spa_flow.verifier})


@pytest.mark.parametrize("path, methods", [("/token", "POST"), ("/revoke", "POST"), ("/userinfo", "GET, POST")])
def test_a_preflight_is_answered_for_any_origin(client, path, methods):
    resp = client.options(path, headers={"Origin": EVIL, "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "authorization, content-type"})
    assert resp.status_code == 204 and resp.get_data() == b""
    assert resp.headers["Access-Control-Allow-Origin"] == EVIL
    assert resp.headers["Access-Control-Allow-Methods"] == methods
    assert resp.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert resp.headers["Access-Control-Max-Age"] == "600"
    assert "Content-Length" not in resp.headers and "Content-Type" not in resp.headers
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_introspection_is_not_for_browsers(client):
    resp = client.options("/introspect", headers={"Origin": SPA, "Access-Control-Request-Method": "POST"})
    assert resp.status_code == 405 and "Access-Control-Allow-Origin" not in resp.headers


def test_an_options_that_is_no_preflight_is_still_405(client):
    resp = client.options("/token")
    assert resp.status_code == 405 and resp.headers["Allow"] == "POST"


def test_the_app_reads_its_tokens_and_userinfo_from_its_own_origin(spa_flow):
    resp = redeem(spa_flow, SPA)
    assert resp.status_code == 200, resp.get_json()
    assert resp.headers["Access-Control-Allow-Origin"] == SPA
    assert resp.headers["Vary"] == "Origin"
    assert "WWW-Authenticate" in resp.headers["Access-Control-Expose-Headers"]
    tokens = resp.get_json()
    bearer = "Bearer " + tokens["access_token"]
    info = spa_flow.client.get("/userinfo", headers={"Origin": SPA, "Authorization": bearer})
    assert info.status_code == 200 and info.headers["Access-Control-Allow-Origin"] == SPA
    # its error answers too, once the client is known: it must see why to sign in again
    again = spa_flow.client.post("/token", headers={"Origin": SPA}, data={
        "grant_type": "refresh_token", "refresh_token": "nope", "client_id": "rp-spa"})
    assert again.status_code == 400 and again.headers["Access-Control-Allow-Origin"] == SPA
    gone = spa_flow.client.post("/revoke", headers={"Origin": SPA},
                                data={"token": tokens["refresh_token"], "client_id": "rp-spa"})
    assert gone.status_code == 200 and gone.headers["Access-Control-Allow-Origin"] == SPA


def test_the_port_is_part_of_the_origin(spa_flow):
    assert redeem(spa_flow, "https://spa.example.com:8443").headers["Access-Control-Allow-Origin"] \
        == "https://spa.example.com:8443"
    for other in ("https://spa.example.com:444", "http://spa.example.com", "https://SPA.example.com.evil.net"):
        assert "Access-Control-Allow-Origin" not in redeem(spa_flow, other).headers


def test_a_foreign_origin_reads_nothing(spa_flow, rp):
    resp = redeem(spa_flow, EVIL)
    assert "Access-Control-Allow-Origin" not in resp.headers and resp.headers["Vary"] == "Origin"
    token = resp.get_json()["access_token"]
    info = spa_flow.client.get("/userinfo", headers={"Origin": EVIL, "Authorization": "Bearer " + token})
    assert info.status_code == 200 and "Access-Control-Allow-Origin" not in info.headers
    # the origin of another client's redirect URI is not this client's
    info = spa_flow.client.get("/userinfo", headers={"Origin": "https://rp.example.com",
                                                     "Authorization": "Bearer " + token})
    assert "Access-Control-Allow-Origin" not in info.headers
    # nor an answer given before any client is known
    unknown = spa_flow.client.post("/token", headers={"Origin": SPA}, data={
        "grant_type": "refresh_token", "refresh_token": "x", "client_id": "no-such-client"})
    assert unknown.status_code == 401 and "Access-Control-Allow-Origin" not in unknown.headers
    bad = spa_flow.client.get("/userinfo", headers={"Origin": SPA, "Authorization": "Bearer nope"})
    assert bad.status_code == 401 and "Access-Control-Allow-Origin" not in bad.headers


def test_a_request_without_origin_gets_no_cors_headers(spa_flow):
    resp = redeem(spa_flow, None)
    assert resp.status_code == 200
    assert not [h for h in resp.headers.keys() if h.startswith("Access-Control-")] and "Vary" not in resp.headers


@pytest.mark.parametrize("uri, origin", [
    ("https://a.example.com/cb?x=1", "https://a.example.com"),
    ("https://A.Example.com:443/cb", "https://a.example.com"),
    ("http://127.0.0.1:8080/cb", "http://127.0.0.1:8080"),
    ("http://[::1]:9000/cb", "http://[::1]:9000"),
    ("com.example.app:/cb", None),
    ("https://a.example.com:99999/cb", None),
])
def test_origin_of_a_redirect_uri(uri, origin):
    assert origin_of(uri) == origin
