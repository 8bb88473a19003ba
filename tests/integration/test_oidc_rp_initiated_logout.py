"""OpenID Connect RP-Initiated Logout 1.0 at the end_session_endpoint (/logout)."""

import base64
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from idp.extensions import db, keyring
from idp.models import BrowserSession, Grant
from idp.oauth import tokens
from tests.integration.token_helpers import refresh
from tests.conftest import ISSUER, Flow, csrf_token, register_client

BYE = "https://rp.example.com/bye"


def sign_in(flow, **authorize):
    body = flow.redeem(flow.login_code(**authorize)).get_json()
    assert "id_token" in body, body
    return body


def claims_of(id_token):
    return keyring().verify(id_token)


def live_sessions():
    return db.session.execute(db.select(BrowserSession).where(BrowserSession.ended_at.is_(None))).scalars().all()


def b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def foreign_key_hint(claims):
    key = ECKey.generate_key("P-256", private=True)
    return jwt.encode({"alg": "ES256", "kid": "foreign"}, claims, key, algorithms=["ES256"])


def our_hint(claims, **changes):
    return keyring().sign({**claims, **changes}, "ES256")


# Each case builds the query from the ID token's claims and the ID token itself, and says
# what the browser must see: "confirm" (a page asking), "done" (signed out, no redirect),
# or "error" (a 400 page, nothing ended). In no case is the browser sent to BYE.
BAD = {
    "malformed hint": (lambda c, t: {"id_token_hint": "not.a.jwt", "post_logout_redirect_uri": BYE,
                                     "client_id": "rp-web", "state": "s"}, "confirm"),
    "garbage hint": (lambda c, t: {"id_token_hint": "%%%" * 50, "post_logout_redirect_uri": BYE}, "confirm"),
    "hint signed by an unknown key": (
        lambda c, t: {"id_token_hint": foreign_key_hint(c), "post_logout_redirect_uri": BYE}, "confirm"),
    "hint with alg none": (
        lambda c, t: {"id_token_hint": f"{b64({'alg': 'none'})}.{b64(c)}.", "post_logout_redirect_uri": BYE},
        "confirm"),
    "hint from another issuer": (
        lambda c, t: {"id_token_hint": our_hint(c, iss="https://evil.example.com"), "post_logout_redirect_uri": BYE,
                      "client_id": "rp-web"}, "confirm"),
    "hint with a tampered payload": (
        lambda c, t: {"id_token_hint": t.split(".")[0] + "." + b64({**c, "aud": "rp-web"}) + "." + t.split(".")[2],
                      "post_logout_redirect_uri": BYE, "client_id": "rp-web"}, "confirm"),
    # Same key, same issuer, same subject: but an access token (RFC 9068) or a logout token
    # is no ID token, and anyone holding one could otherwise end the session unasked.
    "a JWT access token as hint": (
        lambda c, t: {"id_token_hint": keyring().sign({**c, "client_id": "rp-web", "scope": "openid"}, "ES256",
                                                      typ="at+jwt"), "post_logout_redirect_uri": BYE}, "confirm"),
    "a logout token as hint": (
        lambda c, t: {"id_token_hint": keyring().sign({**c, "events": {}}, "ES256", typ="logout+jwt"),
                      "post_logout_redirect_uri": BYE}, "confirm"),
    "unregistered post_logout_redirect_uri": (
        lambda c, t: {"id_token_hint": t, "post_logout_redirect_uri": "https://evil.example.com/bye"}, "done"),
    "registered uri with a suffix": (
        lambda c, t: {"id_token_hint": t, "post_logout_redirect_uri": BYE + "/more"}, "done"),
    "registered uri with a query": (
        lambda c, t: {"id_token_hint": t, "post_logout_redirect_uri": BYE + "?next=https://evil.example.com"},
        "done"),
    "another client's registered uri": (
        lambda c, t: {"id_token_hint": t, "post_logout_redirect_uri": "https://other.example.com/bye"}, "done"),
    "client_id disagrees with the hint's aud": (
        lambda c, t: {"id_token_hint": t, "client_id": "rp-other", "post_logout_redirect_uri":
                      "https://other.example.com/bye"}, "confirm"),
    "unknown client_id without hint": (
        lambda c, t: {"client_id": "nope", "post_logout_redirect_uri": BYE}, "confirm"),
    "redirect uri without any client": (lambda c, t: {"post_logout_redirect_uri": BYE}, "confirm"),
    "repeated post_logout_redirect_uri": (
        lambda c, t: [("id_token_hint", t), ("post_logout_redirect_uri", BYE), ("post_logout_redirect_uri", BYE)],
        "error"),
    "repeated id_token_hint": (lambda c, t: [("id_token_hint", t), ("id_token_hint", t)], "error"),
    "oversized state": (lambda c, t: {"id_token_hint": t, "state": "x" * 5000}, "error"),
}


@pytest.mark.parametrize("case", BAD.keys())
def test_bad_request_never_redirects_to_the_client(flow, case):
    register_client("rp-other", post_logout_redirect_uris=["https://other.example.com/bye"])
    id_token = sign_in(flow)["id_token"]
    build, expected = BAD[case]
    resp = flow.client.get("/logout", query_string=build(claims_of(id_token), id_token))
    assert "Location" not in resp.headers or "/logout/" in resp.headers["Location"]

    if expected == "error":
        assert resp.status_code == 400
        assert len(live_sessions()) == 1
        return
    if expected == "confirm":
        assert resp.status_code == 200 and "Sign out?" in resp.get_data(as_text=True)
        assert len(live_sessions()) == 1
        resp = confirm(flow.client, resp)
    assert resp.status_code == 200, resp.headers
    assert "You are signed out" in resp.get_data(as_text=True)
    assert live_sessions() == []


def confirm(client, page, button="confirm"):
    html = page.get_data(as_text=True)
    logout_id = html.split('name="logout_id" type="hidden" value="')[1].split('"')[0]
    return client.post("/logout/confirm", data={"csrf_token": csrf_token(html), "logout_id": logout_id,
                                                button: "x"})


def test_hint_for_this_session_logs_out_and_redirects_with_state(flow):
    body = sign_in(flow)
    sid = claims_of(body["id_token"])["sid"]
    resp = flow.client.get("/logout", query_string={"id_token_hint": body["id_token"],
                                                    "post_logout_redirect_uri": BYE, "state": "af0ifjsldkj"})
    assert resp.status_code == 303
    assert resp.headers["Location"] == BYE + "?state=af0ifjsldkj"
    assert resp.headers["Cache-Control"] == "no-store"

    row = db.session.execute(db.select(BrowserSession).filter_by(sid=sid)).scalar_one()
    assert row.ended_at is not None
    assert flow.client.get_cookie("idp_session") is None
    # The session's token family (no offline_access) is dead.
    assert tokens.find_access_token(body["access_token"]) is None
    assert db.session.execute(db.select(Grant).filter_by(sid=sid)).scalar_one().revoked_at is not None
    # Single sign-on is gone: the next authorization request needs the password again.
    again = flow.authorize()
    assert again.status_code == 302 and "/signin/" in again.headers["Location"]
    assert again.headers["Location"].endswith("/password")


def test_registered_uri_with_query_keeps_it_and_adds_state(flow):
    flow.rp.post_logout_redirect_uris = [BYE + "?from=idp"]
    db.session.commit()
    body = sign_in(flow)
    resp = flow.client.get("/logout", query_string={"id_token_hint": body["id_token"],
                                                    "post_logout_redirect_uri": BYE + "?from=idp", "state": "a b"})
    assert resp.headers["Location"] == BYE + "?from=idp&state=a+b"


def test_offline_access_family_survives_logout(flow):
    body = sign_in(flow, scope="openid offline_access")
    resp = flow.client.get("/logout", query_string={"id_token_hint": body["id_token"]})
    assert resp.status_code == 200 and "You are signed out" in resp.get_data(as_text=True)
    assert live_sessions() == []
    assert tokens.find_access_token(body["access_token"]) is not None
    assert db.session.execute(db.select(Grant)).scalar_one().revoked_at is None


def test_a_refresh_after_logout_gives_no_id_token(flow):
    """The offline family lives on, but the session it was born in has ended and its logout
    token has gone out: an ID token now would say the seller is signed in, under a sid no
    logout can reach any more (OIDC Core §12.2 lets the refresh answer leave it out)."""
    body = sign_in(flow, scope="openid offline_access")
    before = refresh(flow.client, flow.rp, body["refresh_token"]).get_json()
    assert claims_of(before["id_token"])["sid"]  # while the session lives, as before
    flow.client.get("/logout", query_string={"id_token_hint": body["id_token"]})
    after = refresh(flow.client, flow.rp, before["refresh_token"])
    assert after.status_code == 200 and "id_token" not in after.get_json()
    assert after.get_json()["access_token"] and after.get_json()["refresh_token"]


def test_expired_hint_is_accepted(flow):
    body = sign_in(flow)
    claims = claims_of(body["id_token"])
    old = our_hint(claims, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    resp = flow.client.get("/logout", query_string={"id_token_hint": old, "post_logout_redirect_uri": BYE})
    assert resp.status_code == 303 and resp.headers["Location"] == BYE


def test_hint_for_another_session_asks_first(flow):
    body = sign_in(flow)
    other = our_hint(claims_of(body["id_token"]), sid="some-older-session")
    page = flow.client.get("/logout", query_string={"id_token_hint": other, "post_logout_redirect_uri": BYE,
                                                    "state": "s1"})
    assert page.status_code == 200 and "Sign out?" in page.get_data(as_text=True)
    resp = confirm(flow.client, page)
    assert resp.status_code == 303 and resp.headers["Location"] == BYE + "?state=s1"
    assert live_sessions() == []


def test_client_id_without_hint_asks_then_redirects(flow):
    sign_in(flow)
    page = flow.client.get("/logout", query_string={"client_id": "rp-web", "post_logout_redirect_uri": BYE,
                                                    "state": "xyz", "ui_locales": "en", "logout_hint": "seller"})
    assert page.status_code == 200 and "Rp-Web asked to sign you out" in page.get_data(as_text=True)
    resp = confirm(flow.client, page)
    assert resp.status_code == 303 and resp.headers["Location"] == BYE + "?state=xyz"
    assert flow.client.get_cookie("idp_session") is None


def test_cancel_keeps_the_session(flow):
    sign_in(flow)
    page = flow.client.get("/logout")
    resp = confirm(flow.client, page, button="cancel")
    assert resp.status_code == 200 and "still signed in" in resp.get_data(as_text=True)
    assert len(live_sessions()) == 1
    assert flow.client.get_cookie("idp_session") is not None


def test_confirmation_needs_csrf_token_and_is_single_use(flow):
    sign_in(flow)
    page = flow.client.get("/logout")
    html = page.get_data(as_text=True)
    logout_id = html.split('name="logout_id" type="hidden" value="')[1].split('"')[0]
    assert flow.client.post("/logout/confirm", data={"logout_id": logout_id, "confirm": "x"}).status_code == 400
    assert len(live_sessions()) == 1
    assert confirm(flow.client, page).status_code == 200
    assert confirm(flow.client, page).status_code == 400  # the request was consumed


def test_without_session_a_valid_hint_redirects_at_once(flow):
    body = sign_in(flow)
    flow.client.get("/logout", query_string={"id_token_hint": body["id_token"]})
    resp = flow.client.get("/logout", query_string={"id_token_hint": body["id_token"],
                                                    "post_logout_redirect_uri": BYE, "state": "s"})
    assert resp.status_code == 303 and resp.headers["Location"] == BYE + "?state=s"


def test_post_with_session_cookie(flow):
    body = sign_in(flow)
    resp = flow.client.post("/logout", data={"id_token_hint": body["id_token"], "post_logout_redirect_uri": BYE})
    assert resp.status_code == 303 and resp.headers["Location"] == BYE
    assert live_sessions() == []


def test_cross_site_post_without_lax_cookie_is_resumed_by_a_get(app, flow):
    """A cross-site POST carries no SameSite=Lax cookie; the 303'd GET does."""
    body = sign_in(flow)
    cross_site = app.test_client()  # the same browser, as seen on the cookie-less POST
    parked = cross_site.post("/logout", data={"id_token_hint": body["id_token"], "post_logout_redirect_uri": BYE,
                                              "state": "p"})
    assert parked.status_code == 303 and "/logout/resume/" in parked.headers["Location"]
    assert len(live_sessions()) == 1
    resp = flow.client.get(parked.headers["Location"])
    assert resp.status_code == 303 and resp.headers["Location"] == BYE + "?state=p"
    assert live_sessions() == []
    assert flow.client.get(parked.headers["Location"]).status_code == 400  # single use


def test_a_cross_site_post_parks_only_the_logout_parameters(app):
    from idp.extensions import store

    client = app.test_client()
    resp = client.post("/logout", data={"state": "p", "junk": "j" * 60000})
    parked = resp.headers["Location"].rsplit("/", 1)[1]
    assert store().get(f"logout-post:{parked}") == {"state": ["p"]}
    bad = client.post("/logout", data={"state": "x" * 5000})  # what _handle would refuse is refused now
    assert bad.status_code == 400 and "Location" not in bad.headers
    # An anonymous POST leaves at most a few kB, for a minute: each parameter has the limit of
    # its kind (a post-logout URI longer than any registration takes, a logout_hint no email is).
    for name, size in [("state", 2049), ("logout_hint", 321), ("post_logout_redirect_uri", 501),
                       ("client_id", 101), ("ui_locales", 101), ("id_token_hint", 4097)]:
        refused = client.post("/logout", data={name: "x" * size})
        assert refused.status_code == 400 and "is too long" in refused.get_data(as_text=True), name
    at_limits = {"id_token_hint": "h" * 4096, "client_id": "c" * 100, "post_logout_redirect_uri": "u" * 500,
                 "state": "s" * 2048, "logout_hint": "l" * 320, "ui_locales": "e" * 100}
    parked = client.post("/logout", data=at_limits).headers["Location"].rsplit("/", 1)[1]
    assert store().ttl_of(f"logout-post:{parked}") <= 60


def test_logging_out_only_ends_this_browser(app, flow, rp):
    sign_in(flow)
    other = Flow(app.test_client(), rp)
    sign_in(other)
    assert len(live_sessions()) == 2
    confirm(flow.client, flow.client.get("/logout"))
    assert len(live_sessions()) == 1
    resp = other.authorize()
    assert "code" in parse_qs(urlsplit(resp.headers["Location"]).query)  # still single sign-on there


def test_discovery_advertises_the_endpoint(client):
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["end_session_endpoint"] == ISSUER + "/logout"


def test_a_store_failure_half_way_through_a_logout_leaves_no_family_live(client, seller, monkeypatch):
    """The session and its families end in one transaction: a failure while revoking the
    second family (a Redis blip) used to answer 503 and leave it live for good, since the
    user's retry finds no session to end. Now the logout completes; the refresh tokens are
    dead, and what the blip kept in the store expires with ACCESS_TOKEN_TTL."""
    import re

    import redis.exceptions

    from tests.integration.token_helpers import refresh

    rp = register_client("rp-two", scopes=["openid", "email"])  # first party: refresh tokens, not offline
    flow = Flow(client, rp)
    first = flow.redeem(flow.code_from(flow.sign_in(flow.authorize()))).get_json()
    again = Flow(client, rp)
    second = again.redeem(again.code_from(again.authorize())).get_json()  # SSO: a second family
    from idp.extensions import store

    shop, calls = type(store()), []
    real = shop.put_many

    def blip_on_the_second_mark(self, entries):
        if any(key.startswith("grant-revoked:") for key, _, _ in entries):
            calls.append(entries)
            if len(calls) == 2:
                raise redis.exceptions.ConnectionError("blip")
        return real(self, entries)

    monkeypatch.setattr(shop, "put_many", blip_on_the_second_mark)
    page = client.get("/logout").get_data(as_text=True)
    logout_id = re.search(r'name="logout_id" type="hidden" value="([^"]+)"', page).group(1)
    resp = client.post("/logout/confirm", data={"csrf_token": csrf_token(page), "logout_id": logout_id,
                                                "confirm": "Sign out"})
    assert resp.status_code in (200, 303) and len(calls) == 2
    monkeypatch.setattr(shop, "put_many", real)
    for family in (first, second):
        assert refresh(client, rp, family["refresh_token"]).status_code == 400
    assert live_sessions() == []


def test_a_logout_with_no_session_leaves_an_open_sign_in_alone(flow, seller):
    """A link to /logout from anywhere, while this browser has a sign-in form open and no
    session: nothing to end, and the form's CSRF token must still be good."""
    from tests.conftest import PASSWORD

    start = flow.authorize()
    page = flow.client.get(start.headers["Location"]).get_data(as_text=True)
    assert flow.client.get("/logout").status_code == 200
    resp = flow.client.post(start.headers["Location"], data={
        "csrf_token": csrf_token(page), "email": seller.email, "password": PASSWORD})
    assert resp.status_code == 302 and "code=" in resp.headers["Location"]
