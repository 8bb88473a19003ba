"""HEAD (RFC 9110 §9.3.2) only where a GET changes nothing (idp.web.methods).

A link checker or a prefetching proxy that sends HEAD must not mint a code, end a
session or take a parked request.
"""

import pytest

from idp.extensions import db
from idp.models import BrowserSession
from tests.integration.test_oidc_rp_initiated_logout import BYE, sign_in


def test_head_on_authorize_with_a_session_mints_no_code(flow):
    sign_in(flow)  # the browser now has a session: a GET would answer with a code
    resp = flow.client.head("/authorize", query_string=flow.authorize_params())
    assert resp.status_code == 405 and "Location" not in resp.headers
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "POST"}
    assert "code" in flow.authorize().headers["Location"]  # a GET still does


def test_head_on_logout_ends_no_session(flow):
    body = sign_in(flow)
    resp = flow.client.head("/logout", query_string={"id_token_hint": body["id_token"],
                                                     "post_logout_redirect_uri": BYE})
    assert resp.status_code == 405
    assert db.session.execute(db.select(BrowserSession).where(BrowserSession.ended_at.is_(None))).scalars().all()


@pytest.mark.parametrize("path", ["/authorize/resume/abc", "/logout/resume/abc", "/signin/abc/password",
                                  "/signin/abc/consent", "/account/sign-out-everywhere"])
def test_head_is_refused_on_every_sign_in_page(client, path):
    resp = client.head(path)
    assert resp.status_code == 405 and resp.headers["Allow"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_on_health_checks_answers(client, path):
    assert client.head(path).status_code == 200


@pytest.mark.parametrize("method,path", [("PUT", "/signin/abc/password"), ("DELETE", "/authorize"),
                                         ("PATCH", "/logout")])
def test_a_405_offers_no_head_where_head_is_refused(client, method, path):
    resp = client.open(path, method=method)
    assert resp.status_code == 405
    assert "HEAD" not in resp.headers["Allow"].split(", ") and "GET" in resp.headers["Allow"]


def test_a_405_on_a_health_check_still_offers_head(client):
    assert "HEAD" in client.post("/healthz").headers["Allow"].split(", ")
