"""Pure rules of RP-Initiated Logout 1.0 and the Back-Channel Logout 1.0 token."""

from types import SimpleNamespace

import pytest

from idp.logout import backchannel, rp_initiated as r

ISSUER = "https://id.example.com"
CLIENTS = {
    "web": SimpleNamespace(client_id="web", name="Web", post_logout_redirect_uris=["https://web.example/bye"]),
    "app": SimpleNamespace(client_id="app", name="App", post_logout_redirect_uris=["https://app.example/bye"]),
}
HINT = {"iss": ISSUER, "sub": "u1", "aud": "web", "sid": "s1"}


def decide(params, claims=HINT, given=True):
    return r.decide(params, r.hint_claims(claims, ISSUER) if claims else None, given, CLIENTS.get)


@pytest.mark.parametrize("params, claims, given, client, redirect", [
    ({"post_logout_redirect_uri": "https://web.example/bye"}, HINT, True, "web", "https://web.example/bye"),
    ({"client_id": "web", "post_logout_redirect_uri": "https://web.example/bye"}, HINT, True, "web",
     "https://web.example/bye"),
    ({"client_id": "web", "post_logout_redirect_uri": "https://web.example/bye"}, None, False, "web",
     "https://web.example/bye"),
    ({"client_id": "app", "post_logout_redirect_uri": "https://app.example/bye"}, HINT, True, None, None),
    ({"client_id": "web", "post_logout_redirect_uri": "https://web.example/bye"}, None, True, None, None),
    ({"post_logout_redirect_uri": "https://web.example/bye"}, None, False, None, None),
    ({"post_logout_redirect_uri": "https://app.example/bye"}, HINT, True, "web", None),
    ({"post_logout_redirect_uri": "https://web.example/bye/"}, HINT, True, "web", None),
    ({"post_logout_redirect_uri": "HTTPS://web.example/bye"}, HINT, True, "web", None),
    ({"post_logout_redirect_uri": "https://web.example/bye"}, {**HINT, "iss": "https://evil"}, True, None, None),
    ({"post_logout_redirect_uri": "https://web.example/bye"}, {**HINT, "aud": ["web", "app"]}, True, None, None),
    ({"post_logout_redirect_uri": "https://web.example/bye"}, {**HINT, "aud": ["web", "app"], "azp": "web"}, True,
     "web", "https://web.example/bye"),
    ({"post_logout_redirect_uri": "https://web.example/bye"}, {**HINT, "aud": 7}, True, None, None),
    ({"post_logout_redirect_uri": "https://web.example/bye"}, {**HINT, "sub": None}, True, None, None),
    ({"client_id": "ghost", "post_logout_redirect_uri": "https://web.example/bye"}, None, False, None, None),
])
def test_who_is_identified_and_where_the_browser_may_go(params, claims, given, client, redirect):
    req = decide(params, claims, given)
    assert (req.client_id, req.redirect_uri) == (client, redirect)


def test_confirmation_unless_the_hint_names_this_session():
    assert not r.needs_confirmation(decide({}), "s1", "u1")
    assert r.needs_confirmation(decide({}), "s2", "u1")
    assert r.needs_confirmation(decide({}), "s1", "u2")
    assert not r.needs_confirmation(decide({}, {k: v for k, v in HINT.items() if k != "sid"}), "s9", "u1")
    assert r.needs_confirmation(decide({}, None, True), "s1", "u1")
    assert r.needs_confirmation(decide({"client_id": "app"}), "s1", "u1")  # disagreeing client: not trusted


@pytest.mark.parametrize("uri, state, expected", [
    ("https://web.example/bye", None, "https://web.example/bye"),
    ("https://web.example/bye", "a&b=c", "https://web.example/bye?state=a%26b%3Dc"),
    ("https://web.example/bye?x=1", "s", "https://web.example/bye?x=1&state=s"),
])
def test_state_is_echoed_on_the_redirect(uri, state, expected):
    assert r.redirect_target(r.LogoutRequest(redirect_uri=uri, state=state)) == expected
    assert r.redirect_target(r.LogoutRequest(state=state)) is None


@pytest.mark.parametrize("params", [{"state": ["a", "b"]}, {"client_id": ["x" * 5000]}])
def test_malformed_parameters_are_refused(params):
    with pytest.raises(r.LogoutRequestError):
        r.parse(params)


def test_parse_ignores_empty_and_unknown_parameters():
    assert r.parse({"state": [""], "foo": ["1", "2"], "client_id": ["web"]}) == {"client_id": "web"}


def test_logout_token_claims():
    claims = backchannel.logout_token_claims(issuer=ISSUER, client_id="web", sub="u1", sid="s1", now=1000, jti="j")
    assert claims == {"iss": ISSUER, "aud": "web", "iat": 1000, "exp": 1120, "jti": "j", "sub": "u1", "sid": "s1",
                      "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}


@pytest.mark.parametrize("uri, ok", [
    ("https://rp.example/bcl", True), ("http://127.0.0.1:8080/bcl", True), ("file:///etc/passwd", False),
    ("ftp://rp.example/", False), ("https:///x", False), ("https://rp.example/#f", False), (None, False),
    ("javascript:alert(1)", False),
])
def test_only_http_uris_are_contactable(uri, ok):
    assert backchannel.contactable(uri) is ok
