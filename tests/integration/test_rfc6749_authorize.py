"""Authorization endpoint: RFC 6749 §4.1.1/§4.1.2.1, RFC 7636, RFC 9207, OIDC Core §3.1.2."""

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import ISSUER


def _redirect_query(resp):
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}


# Until client and redirect URI are verified, errors are a page and never a redirect.
PAGE_ERRORS = [
    ("missing client_id", {"client_id": None}),
    ("unknown client", {"client_id": "nobody"}),
    ("oversized client_id", {"client_id": "x" * 500}),
    ("NUL in client_id", {"client_id": "rp-web\x00"}),  # PostgreSQL text cannot hold NUL
    ("unregistered redirect", {"redirect_uri": "https://evil.example.com/cb"}),
    ("trailing slash", {"redirect_uri": "https://rp.example.com/cb/"}),
    ("extra query", {"redirect_uri": "https://rp.example.com/cb?x=1"}),
    ("other scheme", {"redirect_uri": "http://rp.example.com/cb"}),
    ("case differs", {"redirect_uri": "https://RP.example.com/cb"}),
    ("missing redirect_uri with two registered", {"redirect_uri": None}),
]


@pytest.mark.parametrize("case,params", PAGE_ERRORS, ids=[c for c, _ in PAGE_ERRORS])
def test_unverified_client_or_redirect_shows_page(flow, rp, case, params):
    rp.redirect_uris = ["https://rp.example.com/cb", "https://rp.example.com/other"]
    from idp.extensions import db

    db.session.commit()
    resp = flow.authorize(**params)
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert "text/html" in resp.content_type
    assert "Traceback" not in resp.get_data(as_text=True)


@pytest.mark.parametrize("param", ["client_id", "redirect_uri"])
def test_repeated_client_or_redirect_is_a_page(flow, param):
    params = flow.authorize_params()
    query = list(params.items()) + [(param, params[param])]
    resp = flow.client.get("/authorize", query_string=query)
    assert resp.status_code == 400 and "Location" not in resp.headers


REDIRECT_ERRORS = [
    ("no response_type", {"response_type": None}, "invalid_request"),  # §4.1.2.1: a missing parameter
    ("unknown response_type", {"response_type": "magic"}, "unsupported_response_type"),
    ("no challenge", {"code_challenge": None}, "invalid_request"),
    ("plain", {"code_challenge_method": "plain"}, "invalid_request"),
    ("no method (defaults to plain)", {"code_challenge_method": None}, "invalid_request"),
    ("short challenge", {"code_challenge": "abc"}, "invalid_request"),
    ("bad challenge chars", {"code_challenge": "!" * 43}, "invalid_request"),
    ("no scope", {"scope": None}, "invalid_scope"),
    ("scope known here, not allowed for the client", {"scope": "openid api:write"}, "invalid_scope"),
    ("only scopes not known here", {"scope": "admin urn:other:scope"}, "invalid_scope"),
    ("bad prompt", {"prompt": "select_everything"}, "invalid_request"),
    ("prompt none with login", {"prompt": "none login"}, "invalid_request"),
    ("negative max_age", {"max_age": "-1"}, "invalid_request"),
    ("text max_age", {"max_age": "soon"}, "invalid_request"),
    ("superscript max_age", {"max_age": "\u00b2"}, "invalid_request"),  # str.isdigit() says yes; int() does not
    ("challenge with a final newline", {"code_challenge": "a" * 43 + "\n"}, "invalid_request"),
    ("openid without redirect_uri", {"redirect_uri": None}, "invalid_request"),  # OIDC Core 3.1.2.1
    ("request object", {"request": "eyJ.x.y"}, "request_not_supported"),
    ("long request object", {"request": "eyJ." + "x" * 3000 + ".y"}, "request_not_supported"),  # Core §6.1
    ("request_uri", {"request_uri": "https://rp.example.com/r"}, "request_uri_not_supported"),
    ("form_post mode", {"response_mode": "form_post"}, "invalid_request"),
    ("oversized nonce", {"nonce": "n" * 5000}, "invalid_request"),
    ("bad resource", {"resource": "not-a-uri"}, "invalid_target"),
    ("unknown resource", {"resource": "https://unknown.example.com/api"}, "invalid_target"),
    ("garbage id_token_hint", {"id_token_hint": "not.a.jwt"}, "invalid_request"),
]


@pytest.mark.parametrize("case,params,error", REDIRECT_ERRORS, ids=[c for c, _, _ in REDIRECT_ERRORS])
def test_errors_redirect_with_state_and_iss(flow, case, params, error):
    resp = flow.authorize(state="s&t=1 é/%", **params)
    query = _redirect_query(resp)
    assert resp.headers["Location"].startswith("https://rp.example.com/cb?")
    assert query["error"] == error
    assert query["state"] == "s&t=1 é/%"
    assert query["iss"] == ISSUER


FRAGMENT_ERRORS = [
    ("implicit", {"response_type": "token"}, "unsupported_response_type"),
    ("implicit, OpenID", {"response_type": "id_token"}, "unsupported_response_type"),
    ("hybrid", {"response_type": "code id_token"}, "unsupported_response_type"),
    ("fragment mode", {"response_mode": "fragment"}, "invalid_request"),
]


@pytest.mark.parametrize("case,params,error", FRAGMENT_ERRORS, ids=[c for c, _, _ in FRAGMENT_ERRORS])
def test_errors_go_in_the_fragment_where_the_client_reads_its_answer(flow, case, params, error):
    """A response type with token or id_token answers in the fragment (Multiple Response Type
    Encoding Practices §2.1, §5; OIDC Core §3.2.2.6): its client reads the error there, as
    one that asked for response_mode=fragment does."""
    resp = flow.authorize(state="s1", **params)
    parts = urlsplit(resp.headers["Location"])
    assert resp.status_code == 302 and parts.query == ""
    answer = {k: v[0] for k, v in parse_qs(parts.fragment).items()}
    assert answer["error"] == error and answer["state"] == "s1" and answer["iss"] == ISSUER


@pytest.mark.parametrize("param", ["scope", "state", "code_challenge", "prompt", "nonce", "response_type"])
def test_repeated_parameters_are_rejected(flow, param):
    params = flow.authorize_params(prompt="login")
    query = list(params.items()) + [(param, params[param])]
    resp = flow.client.get("/authorize", query_string=query)
    assert _redirect_query(resp)["error"] == "invalid_request"


def test_unknown_parameters_are_ignored(flow):
    resp = flow.authorize(foo="bar", claims_locales="de")
    assert "/signin/" in resp.headers["Location"]


def test_scopes_not_known_here_are_ignored(app, flow):
    """OIDC Core §3.1.2.1: "Scope values used that are not understood by an implementation
    SHOULD be ignored" (an SDK's own, another provider's); nothing is granted for them."""
    app.config["RESOURCES"] = {"https://orders.example.com": {"scopes": ["orders:read"]}}
    code = flow.login_code(scope="openid offline another-vendor:scope email")
    body = flow.redeem(code).get_json()
    assert body["scope"] == "openid email"
    # Known here (a resource's scope), not the client's: refused, not ignored.
    resp = flow.authorize(scope="openid orders:read")
    assert _redirect_query(resp)["error"] == "invalid_scope"


def test_post_is_accepted(app, flow):
    """A POST without this browser's cookies (cross-site: they are SameSite=Lax) is sent on as
    the same request by GET, which carries them; no binding cookie is replaced meanwhile (a
    sign-in open in another tab keeps its own). With the cookies, a POST is answered as is."""
    params = {**flow.authorize_params(login_hint="seller@example.com"), "unknown": "not kept"}
    resp = flow.client.post("/authorize", data=params)
    assert resp.status_code == 303 and "idp_browser" not in resp.headers.get("Set-Cookie", "")
    assert "/authorize/resume/" in resp.headers["Location"] and "seller" not in resp.headers["Location"]
    follow = flow.client.get(resp.headers["Location"])
    assert follow.status_code == 302 and "/signin/" in follow.headers["Location"]
    page = flow.client.get(follow.headers["Location"]).get_data(as_text=True)
    assert 'value="seller@example.com"' in page  # the parked request, whole
    assert flow.client.get(resp.headers["Location"]).status_code == 400  # taken once
    stranger = app.test_client()  # another browser, no cookies yet
    parked = stranger.post("/authorize", data=flow.authorize_params())
    assert parked.status_code == 303
    assert stranger.head(parked.headers["Location"]).status_code == 405  # a HEAD uses nothing up
    assert stranger.get(parked.headers["Location"]).status_code == 302
    again = flow.client.post("/authorize", data=flow.authorize_params())  # the browser has its cookie now
    assert again.status_code == 302 and "/signin/" in again.headers["Location"]


def test_state_comes_back_byte_for_byte(flow):
    state = "a b+c/d=e&f%25g~ü"
    code_resp = flow.sign_in(flow.authorize(state=state))
    query = _redirect_query(code_resp)
    assert query["state"] == state and query["iss"] == ISSUER and "code" in query


def test_native_loopback_redirect_may_change_port_only(client, native_rp, seller):
    from tests.conftest import Flow

    f = Flow(client, native_rp)
    ok = f.authorize(redirect_uri="http://127.0.0.1:53123/cb")
    assert ok.status_code == 302 and "/signin/" in ok.headers["Location"]
    for bad in ("http://127.0.0.1:53123/other", "http://localhost:53123/cb", "https://127.0.0.1:53123/cb",
                "http://127.0.0.1:99999/cb", "http://[::1/cb", "http://[127.0.0.1]/cb", "http://[vx]/cb"):
        resp = f.authorize(redirect_uri=bad)
        assert resp.status_code == 400 and "Location" not in resp.headers, bad


def test_web_client_gets_no_loopback_port_leeway(client, seller):
    from tests.conftest import Flow, register_client

    web = register_client("rp-loop", redirect_uris=["http://127.0.0.1:8080/cb"])
    resp = Flow(client, web).authorize(redirect_uri="http://127.0.0.1:8081/cb")
    assert resp.status_code == 400


def test_prompt_none_without_session_is_login_required(flow):
    assert _redirect_query(flow.authorize(prompt="none"))["error"] == "login_required"


def test_single_sign_on_skips_password(flow):
    flow.login_code()
    second = flow.authorize()
    assert "code" in _redirect_query(second)
    again = flow.authorize(prompt="none")
    assert "code" in _redirect_query(again)


def test_prompt_login_forces_password(flow):
    flow.login_code()
    resp = flow.authorize(prompt="login")
    assert "/signin/" in resp.headers["Location"]


def test_prompt_select_account_asks_who_signs_in(flow):
    """OIDC Core §3.1.2.1: no account chooser here; the sign-in page is where the seller says."""
    flow.login_code()
    assert "/signin/" in flow.authorize(prompt="select_account").headers["Location"]


EMPTY = ["max_age", "response_mode", "request", "request_uri", "resource", "prompt", "login_hint", "nonce"]


@pytest.mark.parametrize("param", EMPTY)
def test_a_parameter_without_a_value_is_as_if_omitted(flow, param):
    """RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted"."""
    resp = flow.authorize(**{param: ""})
    assert "/signin/" in resp.headers["Location"], resp.headers["Location"]


def test_a_urn_is_a_resource_indicator(app, flow):
    """RFC 8707 §2: an absolute URI; a URN has no authority."""
    app.config["RESOURCES"] = {"urn:example:orders": {"scopes": ["openid", "email"]}}
    assert "/signin/" in flow.authorize(resource="urn:example:orders").headers["Location"]
    assert _redirect_query(flow.authorize(resource="urn:example:orders#x"))["error"] == "invalid_target"


def test_max_age_exceeded_forces_password(flow):
    from freezegun import freeze_time

    with freeze_time() as clock:
        flow.login_code()
        clock.tick(120)
        assert "code" in _redirect_query(flow.authorize(max_age="300"))
        resp = flow.authorize(max_age="60")
        assert "/signin/" in resp.headers["Location"]
        assert _redirect_query(flow.authorize(max_age="60", prompt="none"))["error"] == "login_required"


def test_max_age_zero_forces_password_even_within_the_second(flow):
    """OIDC Core §3.1.2.1 (errata): max_age=0 is prompt=login."""
    from freezegun import freeze_time

    with freeze_time():
        flow.login_code()
        assert _redirect_query(flow.authorize(max_age="0", prompt="none"))["error"] == "login_required"
        assert "/signin/" in flow.authorize(max_age="0").headers["Location"]


def test_id_token_hint_for_another_subject_needs_login(flow, app):
    from idp.extensions import keyring

    flow.login_code()
    hint = keyring().sign({"iss": ISSUER, "sub": "someone-else", "aud": "rp-web", "exp": 1, "iat": 1})
    assert _redirect_query(flow.authorize(prompt="none", id_token_hint=hint))["error"] == "login_required"


def test_only_the_user_the_id_token_hint_names_may_finish_the_sign_in(flow, seller):
    """OIDC Core §3.1.2.1: if the user signing in is not the one in the ID token, the OP
    SHOULD answer an error such as login_required; and no session is opened for them."""
    from idp.extensions import keyring

    hint = keyring().sign({"iss": ISSUER, "sub": "someone-else", "aud": "rp-web", "exp": 1, "iat": 1})
    query = _redirect_query(flow.sign_in(flow.authorize(id_token_hint=hint)))
    assert query["error"] == "login_required" and "code" not in query
    assert flow.client.get_cookie("idp_session") is None
    right = keyring().sign({"iss": ISSUER, "sub": seller.sub, "aud": "rp-web", "exp": 1, "iat": 1})
    assert "code" in _redirect_query(flow.sign_in(flow.authorize(id_token_hint=right)))


def test_a_sign_in_keeps_the_subject_of_its_id_token_hint_not_the_token(flow, seller):
    """Its subject is all the sign-in needs: the ID token (the seller's email among its claims)
    is not kept in the store for LOGIN_TTL."""
    from idp.extensions import keyring, store

    hint = keyring().sign({"iss": ISSUER, "sub": seller.sub, "aud": "rp-web", "exp": 1, "iat": 1,
                           "email": seller.email})
    at = flow.authorize(id_token_hint=hint, prompt="login").headers["Location"]
    kept = store().get(f"signin:{at.split('/signin/', 1)[1].split('/', 1)[0]}")
    assert kept["hint_sub"] == seller.sub and kept["request"]["id_token_hint"] is None
    assert hint not in str(kept)


def test_a_jwt_access_token_is_no_id_token_hint(flow):
    from idp.extensions import keyring

    at = keyring().sign({"iss": ISSUER, "sub": "someone", "aud": "rp-web", "client_id": "rp-web"}, "ES256",
                        typ="at+jwt")
    assert _redirect_query(flow.authorize(id_token_hint=at))["error"] == "invalid_request"


def test_id_token_hint_from_another_issuer_is_invalid(flow):
    from idp.extensions import keyring

    hint = keyring().sign({"iss": "https://other.example", "sub": "x", "aud": "rp-web", "exp": 1, "iat": 1})
    assert _redirect_query(flow.authorize(id_token_hint=hint))["error"] == "invalid_request"


def test_login_hint_prefills_email(flow):
    resp = flow.authorize(login_hint="hint@example.com")
    page = flow.client.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'value="hint@example.com"' in page


def test_an_anonymous_sign_in_keeps_no_more_of_its_advisory_parameters_than_they_can_mean(app, flow):
    """Each sign-in's request waits in the store for LOGIN_TTL, for any browser: a login_hint
    longer than an email address can be is dropped (not an error: a hint may be unusable),
    and the first ten acr_values count. A parked POST keeps a repeated resource once."""
    from idp.extensions import store

    resp = flow.authorize(login_hint="h" * 321 + "@example.com", acr_values=" ".join(f"urn:a:{i}" for i in range(50)))
    signin_id = resp.headers["Location"].split("/signin/", 1)[1].split("/", 1)[0]
    request = store().get(f"signin:{signin_id}")["request"]
    assert request["login_hint"] is None and len(request["acr_values"]) == 10
    page = flow.client.get(resp.headers["Location"])
    assert page.status_code == 200 and "h" * 321 not in page.get_data(as_text=True)
    app.config["RESOURCES"] = {"https://orders.example.com": {}}
    posted = app.test_client().post("/authorize", data={
        **flow.authorize_params(), "resource": ["https://orders.example.com"] * 200, "nonce": ""})
    parked = posted.headers["Location"].rsplit("/", 1)[1]
    kept = store().get(f"authorize-post:{parked}")
    assert kept["resource"] == ["https://orders.example.com"] and kept["nonce"] == []


@pytest.mark.parametrize("scope,shown", [
    ("openid api:write", "scope not allowed for this client: api:write"),
    ('openid "><script>x</script>', None),  # not NQCHAR: no scope known here, so ignored, never echoed
])
def test_an_error_description_never_echoes_what_rfc_6749_forbids(flow, scope, shown):
    resp = flow.authorize(scope=scope)
    if shown is None:
        assert "/signin/" in resp.headers["Location"] and "script" not in resp.headers["Location"]
    else:
        assert _redirect_query(resp)["error_description"] == shown


def test_a_too_long_parameter_is_named_only_if_it_is_ours(flow):
    assert _redirect_query(flow.authorize(nonce="n" * 3000))["error_description"] == "'nonce' is too long"
    query = _redirect_query(flow.authorize(**{'"><img src=x>': "v" * 3000}))
    assert query["error_description"] == "a parameter is too long"


def test_a_state_too_long_to_give_back_is_told_on_a_page(flow):
    """RFC 6749 §4.1.2.1 returns state exactly as received: 60 kB of it in a Location header
    would pass no proxy, so the error is shown here instead of redirected."""
    resp = flow.authorize(state="s" * 60000)
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "state" in resp.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/authorize", "/signin/x/password", "/authorize/resume/x"])
def test_a_wrong_method_is_a_405_that_says_which_methods_do(client, path):
    """RFC 9110 §15.5.6: a 405 MUST carry Allow."""
    resp = client.put(path)
    assert resp.status_code == 405 and "GET" in resp.headers["Allow"]


def test_without_openid_the_only_redirect_uri_may_be_left_out_at_both_ends(flow, rp):
    """RFC 6749 §3.1.2.3 and §4.1.3: a request naming no redirect_uri gets the client's only
    one, and its token request then need not name it either."""
    rp.scopes = [*rp.scopes, "api:read"]
    from idp.extensions import db

    db.session.commit()
    code = flow.code_from(flow.sign_in(flow.authorize(redirect_uri=None, scope="api:read")))
    resp = flow.redeem(code, redirect_uri=None)
    assert resp.status_code == 200, resp.get_data(as_text=True)
