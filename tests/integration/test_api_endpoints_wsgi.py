"""The machine-to-machine endpoints neither read nor set our browser cookies."""


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
