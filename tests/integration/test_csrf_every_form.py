"""CSRF on every form (Flask-WTF, a token bound to the session cookie): a post without this
browser's token, or with another browser's, changes nothing; the token is renewed at sign-in.

The protocol endpoints a relying party sends the browser to (``/authorize``, ``/logout``) are
navigations, not forms of ours, and are the only exempt routes; /token, /introspect and
/revoke are answered before Flask (idp.web.routes) and authenticate their client instead.
"""

import re

import pytest

from idp.extensions import db
from idp.models import BrowserSession, Consent
from tests.conftest import Flow, csrf_token

CSRF_REFUSED = re.compile(r"CSRF (token is missing|tokens do not match|session token is missing)")
NAVIGATIONS = {"oauth.authorize", "logout.end_session"}


def live_sessions() -> int:
    db.session.expire_all()
    return db.session.scalar(db.select(db.func.count()).select_from(BrowserSession)
                             .where(BrowserSession.ended_at.is_(None)))


def test_every_posted_route_but_the_navigations_needs_the_token(app, flow):
    """Whatever the route's parameters, the check runs before its view: every route that takes
    a POST answers a post without the token with the CSRF refusal, but the navigations."""
    flow.redeem(flow.login_code())  # a browser with a session: nothing is refused for want of one
    unprotected = set()
    for rule in app.url_map.iter_rules():
        if "POST" not in rule.methods:
            continue
        url = re.sub(r"<(?:[^:>]+:)?[^>]+>", "x" * 32, rule.rule)
        resp = flow.client.post(url, data={"email": "seller@example.com"})
        if not (resp.status_code == 400 and CSRF_REFUSED.search(resp.get_data(as_text=True))):
            unprotected.add(rule.endpoint)
    assert unprotected == NAVIGATIONS
    assert live_sessions() == 1


def test_a_consent_posted_with_another_browsers_token_grants_nothing(app, client, third_party_rp, seller):
    third = Flow(client, third_party_rp)
    consent_url = third.sign_in(third.authorize()).headers["Location"]
    assert "/consent" in consent_url
    assert client.get(consent_url).status_code == 200  # this browser's token exists, unsent
    other = Flow(app.test_client(), third_party_rp)
    other_page = other.client.get(other.authorize().headers["Location"])
    foreign = csrf_token(other_page.get_data(as_text=True))
    for data in ({"allow": "Allow"}, {"allow": "Allow", "csrf_token": foreign}):
        resp = client.post(consent_url, data=data)
        assert resp.status_code == 400 and CSRF_REFUSED.search(resp.get_data(as_text=True))
        assert "Location" not in resp.headers
    assert db.session.execute(db.select(Consent)).first() is None


def test_the_token_is_renewed_at_sign_in(flow):
    """A token issued before the sign-in (a page an attacker loaded in this browser, or read
    from it) is worthless after it: the session is cleared when identity is proved."""
    before = csrf_token(flow.client.get(flow.authorize().headers["Location"]).get_data(as_text=True))
    flow.redeem(flow.login_code())
    resp = flow.client.post("/account/sign-out-everywhere", data={"csrf_token": before})
    assert resp.status_code == 400 and CSRF_REFUSED.search(resp.get_data(as_text=True))
    assert live_sessions() == 1
    page = flow.client.get("/account/sign-out-everywhere").get_data(as_text=True)
    assert csrf_token(page) != before
    assert flow.client.post("/account/sign-out-everywhere", data={"csrf_token": csrf_token(page)}).status_code < 400
    assert live_sessions() == 0


@pytest.mark.parametrize("path", ["/logout/confirm", "/account/sign-out-everywhere"])
def test_a_foreign_token_ends_nothing(app, flow, path):
    flow.redeem(flow.login_code())
    other = Flow(app.test_client(), flow.rp)
    foreign = csrf_token(other.client.get(other.authorize().headers["Location"]).get_data(as_text=True))
    resp = flow.client.post(path, data={"csrf_token": foreign, "confirm": "x", "logout_id": "x"})
    assert resp.status_code == 400 and CSRF_REFUSED.search(resp.get_data(as_text=True))
    assert live_sessions() == 1
