"""The demo relying parties of clients/ (in-process, Flask's test client) against the real
test IdP: what a browser or a network can throw at them gets a plain answer, never a 500,
and nothing they do costs the seller the grant.

(The RP processes of clients/run.py are exercised by test_oidc_client_library.py and the
browser suite; here each RP is built in the test so its state can be looked at.)
"""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from clients.common import load_registrations
from clients.dashboard import app as dashboard_app
from clients.backchannel import LogoutTokenError, LogoutTokenVerifier
from clients.mobile.app import NativeApp, SignInError
from clients.portal import app as portal_app
from tests.concurrency import race
from tests.servers import free_port

from .useragent import UserAgent, query

pytestmark = pytest.mark.e2e
FORM_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def regs(idp_server):
    return load_registrations(idp_server.clients_file)


@pytest.fixture
def dashboard(idp_server, regs):
    """The dashboard with its seller API nowhere (a closed port): /api must cope."""
    app = dashboard_app.create_app(regs["seller-dashboard"], idp_server.issuer, f"http://127.0.0.1:{free_port()}")
    return app


def sign_in(rp, client, ua=None):
    """Run the RP's sign-in with a user agent at the IdP; returns the RP's callback response."""
    start = client.get("/login")
    assert start.status_code == 302
    callback = (ua or UserAgent()).authorize(start.headers["Location"])
    parts = urlsplit(callback)
    return client.get(f"{parts.path}?{parts.query}")


def form_csrf(client) -> str:
    return FORM_CSRF.search(client.get("/").get_data(as_text=True)).group(1)


@pytest.mark.parametrize("make", ["dashboard", "portal"])
def test_a_callback_without_a_code_is_a_400(idp_server, regs, make):
    """A valid state and iss but no code (a truncated redirect): authlib raises its own
    MissingCodeException, which must not become a 500."""
    app = (dashboard_app.create_app(regs["seller-dashboard"], idp_server.issuer, "http://127.0.0.1:9")
           if make == "dashboard" else portal_app.create_app(regs["portal-na"], idp_server.issuer))
    client = app.test_client()
    state = query(client.get("/login").headers["Location"])["state"]
    resp = client.get("/callback", query_string={"iss": idp_server.issuer, "state": state})
    assert resp.status_code == 400 and b"sign-in failed" in resp.data


def test_sign_in_gives_the_browser_a_new_csrf_token(idp_server, dashboard):
    """A CSRF token planted before the sign-in (cookies ignore ports on 127.0.0.1) is worth
    nothing after it."""
    client = dashboard.test_client()
    client.get("/")  # the signed-out page already gives the browser a CSRF token
    with client.session_transaction() as planted:
        before = planted["csrf"]
    assert sign_in(dashboard, client).status_code == 302
    after = form_csrf(client)
    assert after != before
    assert client.post("/refresh", data={"csrf": before}).status_code == 400
    assert client.post("/refresh", data={"csrf": after}).status_code == 302


def test_a_form_token_that_is_not_ascii_is_a_400_not_a_500(idp_server, dashboard):
    """compare_digest refuses str with anything but ASCII in it: the check compares bytes."""
    client = dashboard.test_client()
    assert sign_in(dashboard, client).status_code == 302
    form_csrf(client)
    for sent in ("é", "\u0101" * 32):
        assert client.post("/refresh", data={"csrf": sent}).status_code == 400


def test_two_refreshes_at_once_keep_the_session_and_the_grant(idp_server, dashboard):
    """A double click on "Refresh": the second request must not send the refresh token the
    first just spent (the IdP would take it for a stolen one and revoke the grant)."""
    client = dashboard.test_client()
    assert sign_in(dashboard, client).status_code == 302
    csrf = form_csrf(client)
    cookie = client.get_cookie("dashboard_session").value
    clients = [dashboard.test_client() for _ in range(2)]
    for c in clients:
        c.set_cookie("dashboard_session", cookie, domain="localhost")
    barrier, answers = threading.Barrier(2), []

    def click(c):
        barrier.wait()
        answers.append(c.post("/refresh", data={"csrf": csrf}).status_code)

    threads = [threading.Thread(target=click, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert answers == [302, 302]
    (local,) = dashboard.extensions["rp.sessions"]._data.values()
    assert len([e for e in local["events"] if e[0] == "Tokens refreshed"]) == 2
    alive = requests.get(idp_server.issuer + "/userinfo", timeout=10,
                         headers={"Authorization": f"Bearer {local['token']['access_token']}"})
    assert alive.status_code == 200  # the grant was not revoked as a reuse


def test_an_unreachable_api_or_idp_is_said_plainly_and_keeps_the_session(idp_server, regs, dashboard):
    client = dashboard.test_client()
    assert sign_in(dashboard, client).status_code == 302
    csrf = form_csrf(client)
    assert client.post("/api", data={"csrf": csrf}).status_code == 302  # the API's port is closed
    assert "no answer: ConnectionError" in client.get("/").get_data(as_text=True)

    idp = dashboard.extensions["authlib.integrations.flask_client"].idp
    idp.load_server_metadata()["token_endpoint"] = f"http://127.0.0.1:{free_port()}/token"
    resp = client.post("/refresh", data={"csrf": csrf})
    assert resp.status_code == 503 and b"did not answer" in resp.data
    assert "Signed in as" in client.get("/").get_data(as_text=True)


def test_a_refresh_whose_id_token_cannot_be_checked_keeps_the_rotated_tokens(idp_server, dashboard, monkeypatch):
    """The IdP rotated the refresh token: keeping the old one (spent) through a JWKS hiccup made
    the retry read as reuse, and the IdP revoked the grant (RFC 9700 §4.14.2)."""
    client = dashboard.test_client()
    assert sign_in(dashboard, client).status_code == 302
    csrf = form_csrf(client)
    (local,) = dashboard.extensions["rp.sessions"]._data.values()
    spent = local["token"]["refresh_token"]
    idp = dashboard.extensions["authlib.integrations.flask_client"].idp

    def jwks_out_of_reach(*args, **kwargs):
        raise requests.ConnectionError("the JWKS did not answer")

    with monkeypatch.context() as m:
        m.setattr(idp, "parse_id_token", jwks_out_of_reach)
        assert client.post("/refresh", data={"csrf": csrf}).status_code == 503
    assert local["token"]["refresh_token"] != spent  # the successor, kept
    assert client.post("/refresh", data={"csrf": csrf}).status_code == 302  # and it works
    alive = requests.get(idp_server.issuer + "/userinfo", timeout=10,
                         headers={"Authorization": f"Bearer {local['token']['access_token']}"})
    assert alive.status_code == 200  # the grant was not revoked as a reuse


def test_sign_in_with_the_idp_out_of_reach_is_a_503_page(regs):
    for app in (dashboard_app.create_app(regs["seller-dashboard"], f"http://127.0.0.1:{free_port()}",
                                         "http://127.0.0.1:9"),
                portal_app.create_app(regs["portal-na"], f"http://127.0.0.1:{free_port()}")):
        resp = app.test_client().get("/login")
        assert resp.status_code == 503 and b"cannot be reached" in resp.data


def test_the_native_app_listens_only_for_the_response_to_its_request():
    """RFC 8252 §8.3: any local process or web page can reach the loopback port; a forged
    response (even an error) must neither end the sign-in nor shut the real one out."""
    from clients.mobile.app import LoopbackReceiver

    receiver = LoopbackReceiver()
    try:
        receiver.state = "ours"
        forged = requests.get(receiver.redirect_uri, params={"state": "forged", "error": "access_denied"}, timeout=10)
        assert forged.status_code == 400 and not receiver.received.is_set()
        assert requests.get(receiver.redirect_uri, params={"state": "ours", "code": "c"}, timeout=10).status_code == 200
        assert "code=c" in receiver.wait(10)
    finally:
        receiver.close()


def test_the_native_app_turns_away_a_state_that_is_not_ascii():
    from clients.mobile.app import LoopbackReceiver

    receiver = LoopbackReceiver()
    try:
        receiver.state = "ours"
        assert requests.get(receiver.redirect_uri + "?state=%C3%A9&code=c", timeout=10).status_code == 400
        assert requests.get(receiver.redirect_uri, params={"state": "ours", "code": "c"}, timeout=10).status_code == 200
        assert "code=c" in receiver.wait(10)
    finally:
        receiver.close()


def test_an_idle_local_connection_does_not_hold_up_the_native_apps_sign_in():
    """RFC 8252 §8.3: any local process can connect to the loopback port. One that connects
    and sends nothing must not keep the IdP's redirect waiting behind it."""
    import socket

    from clients.mobile.app import LoopbackReceiver

    receiver = LoopbackReceiver()
    idle = socket.create_connection(("127.0.0.1", receiver.server.server_port), timeout=10)
    try:
        receiver.state = "ours"
        assert requests.get(receiver.redirect_uri, params={"state": "ours", "code": "c"}, timeout=3).status_code == 200
        assert "code=c" in receiver.wait(3)
    finally:
        idle.close()
        receiver.close()


def test_the_native_app_asks_to_sign_in_again_once_its_grant_is_over(idp_server):
    from clients.mobile.app import SignInAgain

    def signs_in(url):
        ua = UserAgent()
        assert ua.http.get(ua.authorize(url), timeout=10).status_code == 200

    app = NativeApp(idp_server.issuer)
    app.sign_in(signs_in, timeout=30)
    assert requests.post(app.metadata["revocation_endpoint"], timeout=10, data={
        "token": app.tokens["refresh_token"], "client_id": app.client_id}).status_code == 200
    with pytest.raises(SignInAgain):
        app.refresh()
    assert app.tokens is None and app.claims is None


def test_the_native_app_drops_and_revokes_tokens_whose_new_id_token_fails_its_checks(idp_server, monkeypatch):
    from clients.mobile.app import SignInAgain

    def signs_in(url):
        ua = UserAgent()
        assert ua.http.get(ua.authorize(url), timeout=10).status_code == 200

    app = NativeApp(idp_server.issuer)
    app.sign_in(signs_in, timeout=30)
    monkeypatch.setattr(app, "verify_id_token", lambda token, nonce: (_ for _ in ()).throw(
        JoseError("bad signature")))
    with pytest.raises(SignInAgain):
        app.refresh()
    assert app.tokens is None


def test_a_logout_token_without_exp_is_refused(idp_server):
    """Back-Channel Logout 1.0 §2.4 (with its errata): exp is REQUIRED."""
    key = ECKey.generate_key("P-256", parameters={"kid": "k"})
    verifier = LogoutTokenVerifier(lambda force=False: {"keys": [key.as_dict(private=False)]}, idp_server.issuer,
                                   "seller-dashboard")
    claims = {"iss": idp_server.issuer, "aud": "seller-dashboard", "iat": 1_000_000, "jti": "j", "sid": "s",
              "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}
    token = jwt.encode({"alg": "ES256", "kid": "k", "typ": "logout+jwt"}, claims, key)
    with pytest.raises(LogoutTokenError, match="exp"):
        verifier.verify(token, now=1_000_001)
    assert verifier.verify(jwt.encode({"alg": "ES256", "kid": "k", "typ": "logout+jwt"},
                                      {**claims, "exp": 1_000_120}, key), now=1_000_001)["sid"] == "s"


def test_the_native_app_refuses_a_response_without_a_code_and_a_foreign_userinfo(idp_server):
    def lands_without_code(url):
        params = query(url)
        redirect = f"{params['redirect_uri']}?state={params['state']}&iss={idp_server.issuer}"
        assert requests.get(redirect, timeout=10).status_code == 200

    with pytest.raises(SignInError, match="no code"):
        NativeApp(idp_server.issuer).sign_in(lands_without_code, timeout=30)

    def signs_in(url):
        ua = UserAgent()
        assert ua.http.get(ua.authorize(url), timeout=10).status_code == 200

    app = NativeApp(idp_server.issuer)
    claims = app.sign_in(signs_in, timeout=30)
    assert app.userinfo()["sub"] == claims["sub"]
    app.claims = {**claims, "sub": "someone-else"}  # as if the tokens were another account's
    with pytest.raises(SignInError, match="another subject"):
        app.userinfo()


def test_the_seller_api_challenges_another_scheme_like_no_token(relying_parties):
    """RFC 6750 §3.1: a request without a bearer token gets no error code."""
    api = relying_parties.rp_url("api") + "/api/orders"
    for auth in ("Basic dXNlcjpwYXNz", "Bearer "):
        resp = requests.get(api, headers={"Authorization": auth}, timeout=10)
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == 'Bearer realm="seller-api"', auth


def test_the_seller_api_refuses_an_active_token_that_is_not_for_it(idp_server, regs):
    """RFC 9700 §2.3: active with the right scope is not enough. A token another client got
    for itself (here a client_credentials token of backend-api, audience "backend-api", at an
    API that serves only the dashboard) is not the API's; a served client's is."""
    from clients.backend_api import app as backend_app

    api = backend_app.create_app(regs["backend-api"], idp_server.issuer, resource="https://api.example.com",
                                 served_clients=("seller-dashboard",))
    reg = regs["backend-api"]
    token = requests.post(idp_server.issuer + "/token", auth=(reg.client_id, reg.secret), timeout=10,
                          data={"grant_type": "client_credentials", "scope": "api:read"}).json()["access_token"]
    resp = api.test_client().get("/api/orders", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    served = backend_app.create_app(regs["backend-api"], idp_server.issuer, resource="https://api.example.com",
                                    served_clients=("backend-api",))
    assert served.test_client().get("/api/orders", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_unknown_kids_do_not_make_every_logout_post_a_jwks_fetch(idp_server):
    fetched = []

    def fetch_jwks(force=False):
        fetched.append(force)
        return requests.get(idp_server.issuer + "/jwks", timeout=10).json()

    verifier = LogoutTokenVerifier(fetch_jwks, idp_server.issuer, "seller-dashboard")
    stranger = ECKey.generate_key("P-256", parameters={"kid": "not-the-idps"})
    forged = jwt.encode({"alg": "ES256", "kid": "not-the-idps", "typ": "logout+jwt"}, {"iss": idp_server.issuer},
                        stranger)
    with pytest.raises(LogoutTokenError, match="signature"):  # refetched: still unknown, refused
        verifier.verify(forged, now=1_000_000)
    for _ in range(4):  # no refetch allowed yet: put off (a 503 the IdP retries), not refused
        with pytest.raises(LogoutTokenError, match="not known yet"):
            verifier.verify(forged, now=1_000_000)
    assert fetched.count(True) == 1
    with pytest.raises(LogoutTokenError):
        verifier.verify(forged, now=1_000_000 + 11)
    assert fetched.count(True) == 2


def test_a_dashboard_session_ended_any_way_revokes_its_refresh_token(idp_server, dashboard, regs):
    """The grant has offline_access: it outlives the IdP's session (a logout elsewhere), and only
    the dashboard holds its refresh token. A back-channel logout ending the local session must
    revoke it, or it stays usable for up to 30 days with nobody to end it."""
    import time

    client = dashboard.test_client()
    assert sign_in(dashboard, client).status_code == 302
    sessions = dashboard.extensions["rp.sessions"]
    (local,) = sessions._data.values()
    token = local["token"]["refresh_token"]
    reg = regs["seller-dashboard"]

    def active() -> bool:  # RFC 7662, as the client it was issued to: asking changes nothing
        return requests.post(idp_server.issuer + "/introspect", auth=(reg.client_id, reg.secret), timeout=10,
                             data={"token": token, "token_type_hint": "refresh_token"}).json()["active"]

    assert active()
    assert sessions.end(sid=local["claims"]["sid"]) == 1  # what the back-channel logout endpoint does
    deadline = time.monotonic() + 30  # a bound for a loaded machine, not a measurement
    while active() and time.monotonic() < deadline:
        time.sleep(0.1)  # revoked in a thread of its own: poll, bounded
    assert not active()


def test_signing_out_at_the_integrator_signs_out_at_the_idp_too(idp_server, regs):
    """integrator-acme registers no post-logout URI: RP-Initiated Logout needs none, and the
    IdP then shows its own signed-out page. Clearing only the local session would leave the
    seller signed in at the IdP, a password-free sign-in away on a shared computer."""
    app = portal_app.create_app(regs["integrator-acme"], idp_server.issuer)
    local_id = app.extensions["rp.sessions"].create({"claims": {"sub": "s", "email": "e"}, "id_token": "a.b.c"})
    client = app.test_client()
    with client.session_transaction() as s:
        s["local_session"] = local_id
    resp = client.post("/logout", data={"csrf": form_csrf(client)})
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith(idp_server.issuer + "/logout?")
    location = resp.headers["Location"]
    assert "id_token_hint=a.b.c" in location and "post_logout_redirect_uri" not in location


def test_an_id_token_not_signed_with_the_registered_alg_is_refused(idp_server, regs):
    """OIDC Core §3.1.3.7 (7): the RP registered its alg; authlib alone takes any that
    discovery lists. portal-jp registered ES256: a portal expecting RS256 refuses its token,
    and the real one signs in."""
    from dataclasses import replace

    assert regs["portal-jp"].id_token_alg == "ES256"
    right = portal_app.create_app(regs["portal-jp"], idp_server.issuer)
    assert sign_in(right, right.test_client()).status_code == 302
    wrong = portal_app.create_app(replace(regs["portal-jp"], id_token_alg="RS256"), idp_server.issuer)
    refused = sign_in(wrong, wrong.test_client())
    assert refused.status_code == 400 and "not signed with RS256" in refused.get_data(as_text=True)


def test_a_logout_token_not_signed_with_the_registered_alg_is_refused(idp_server):
    """Back-Channel Logout 1.0 §2.6: validated as an ID token is, so with the client's
    registered alg (portal-jp's ES256) and no other the IdP publishes."""
    from joserfc.jwk import RSAKey

    rsa, ec = RSAKey.generate_key(2048, parameters={"kid": "r"}), ECKey.generate_key("P-256", parameters={"kid": "e"})
    keys = {"keys": [rsa.as_dict(private=False), ec.as_dict(private=False)]}
    verifier = LogoutTokenVerifier(lambda force=False: keys, idp_server.issuer, "portal-jp", alg="ES256")
    claims = {"iss": idp_server.issuer, "aud": "portal-jp", "iat": 1_000_000, "exp": 1_000_120, "jti": "j",
              "sid": "s", "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}
    with pytest.raises(LogoutTokenError, match="signature"):
        verifier.verify(jwt.encode({"alg": "RS256", "kid": "r", "typ": "logout+jwt"}, claims, rsa), now=1_000_001)
    signed = jwt.encode({"alg": "ES256", "kid": "e", "typ": "logout+jwt"}, {**claims, "jti": "k"}, ec)
    assert verifier.verify(signed, now=1_000_001)["sid"] == "s"


def test_two_refreshes_at_once_in_the_native_app_refresh_once(idp_server):
    """Two API calls that found the access token expired at once: without a lock both sent the
    one refresh token, the second read as reuse, and the IdP revoked the grant."""
    def signs_in(url):
        ua = UserAgent()
        assert ua.http.get(ua.authorize(url), timeout=10).status_code == 200

    app = NativeApp(idp_server.issuer)
    app.sign_in(signs_in, timeout=30)
    first = app.tokens
    results = race(app.refresh, 2)
    assert results[0] is results[1] is app.tokens
    assert app.tokens["refresh_token"] != first["refresh_token"]
    assert app.refresh()["access_token"] != first["access_token"]  # the grant lives on


def test_a_forged_error_answer_shows_nothing_of_its_sender_and_a_real_one_only_its_code(idp_server, dashboard):
    """authlib reads error= before it checks state: a forged /callback showed its
    error_description (any text) on the RP's own page. The state is checked first now."""
    client = dashboard.test_client()
    forged = client.get("/callback", query_string={"iss": idp_server.issuer, "state": "made-up",
                                                   "error": "access_denied", "error_description": "Call 555-0100"})
    assert forged.status_code == 400 and b"555-0100" not in forged.data
    state = query(client.get("/login").headers["Location"])["state"]
    told = client.get("/callback", query_string={"iss": idp_server.issuer, "state": state,
                                                 "error": "access_denied", "error_description": "Call 555-0100"})
    assert told.status_code == 400 and b"access_denied" in told.data and b"555-0100" not in told.data
    again = client.get("/callback", query_string={"iss": idp_server.issuer, "state": state, "code": "x"})
    assert again.status_code == 400  # the state was used up by the error answer


def test_a_token_error_shows_the_seller_no_detail_of_the_identity_provider(idp_server, dashboard, caplog):
    client = dashboard.test_client()
    state = query(client.get("/login").headers["Location"])["state"]
    resp = client.get("/callback", query_string={"iss": idp_server.issuer, "state": state, "code": "not-a-code"})
    assert resp.status_code == 400 and b"invalid_grant" not in resp.data and b"/token" not in resp.data
    assert "sign-in failed" in caplog.text and "invalid_grant" in caplog.text


def test_the_dashboard_cookie_is_secure_when_it_is_served_over_https(idp_server, regs):
    from dataclasses import replace

    https = replace(regs["seller-dashboard"], redirect_uris=["https://dashboard.example.com/callback"])
    app = dashboard_app.create_app(https, idp_server.issuer, "http://127.0.0.1:9")
    cookie = app.test_client().get("/login").headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    plain = dashboard_app.create_app(regs["seller-dashboard"], idp_server.issuer, "http://127.0.0.1:9")
    assert "Secure" not in plain.test_client().get("/login").headers["Set-Cookie"]


def test_a_sign_in_given_up_after_the_code_was_redeemed_leaves_no_live_refresh_token(idp_server, dashboard,
                                                                                     monkeypatch):
    """UserInfo out of reach right after the code was redeemed: the dashboard gives up the
    sign-in (a 503), and revokes the refresh token it will never use (offline_access)."""
    from authlib.integrations.flask_client import apps

    redeemed = []
    real = apps.FlaskOAuth2App.authorize_access_token

    def keeps(self, **kwargs):
        redeemed.append(dict(real(self, **kwargs)))
        return redeemed[-1]

    def unreachable(self, **kwargs):
        raise requests.ConnectionError("the identity provider did not answer")

    monkeypatch.setattr(apps.FlaskOAuth2App, "authorize_access_token", keeps)
    monkeypatch.setattr(apps.FlaskOAuth2App, "userinfo", unreachable)
    resp = sign_in(dashboard, dashboard.test_client())
    assert resp.status_code == 503
    reg = load_registrations(idp_server.clients_file)["seller-dashboard"]
    refreshed = requests.post(idp_server.issuer + "/token", auth=(reg.client_id, reg.secret), timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": redeemed[0]["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
