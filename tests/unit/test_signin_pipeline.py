"""The sign-in step table: which step comes next, and when a session stands in for a password."""

from idp.login.pipeline import (STEPS, Context, SignIn, Step, authentication_complete, is_due, next_step,
                                session_satisfies)

REQ = {"prompt": [], "max_age": None, "scope": ["openid"]}


def _signin(**kw):
    s = SignIn.start(dict(REQ, **kw.pop("request", {})))
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_password_first():
    assert next_step(_signin(), Context(first_party=True, now=0)).key == "password"


def test_first_party_is_done_after_password():
    s = _signin(account_id=1, done=["password"])
    assert next_step(s, Context(first_party=True, now=0)) is None
    assert authentication_complete(s, Context(first_party=True, now=0))


def test_third_party_needs_consent_unless_given():
    s = _signin(account_id=1, done=["password"])
    assert next_step(s, Context(first_party=False, now=0)).key == "consent"
    s.consent_given = True
    assert next_step(s, Context(first_party=False, now=0)) is None


def test_prompt_consent_asks_even_if_given():
    s = _signin(account_id=1, done=["password"], consent_given=True, request={"prompt": ["consent"]})
    step = next_step(s, Context(first_party=False, now=0))
    assert step.key == "consent" and step.prompt_none_error == "consent_required"


def test_prompt_consent_asks_a_first_party_client_too():
    """OIDC Core §3.1.2.1: the server SHOULD prompt; first-party only skips the unasked page."""
    s = _signin(account_id=1, done=["password"], request={"prompt": ["consent"]})
    assert next_step(s, Context(first_party=True, now=0)).key == "consent"


def test_authentication_not_complete_before_password():
    assert not authentication_complete(_signin(), Context(first_party=True, now=0))


def test_round_trip_through_the_store_format():
    s = _signin(account_id=7, done=["password"], amr=["pwd"])
    assert SignIn.from_dict(s.to_dict()) == s


def test_session_satisfies():
    assert session_satisfies(REQ, 1000, 1500, None, "sub")
    assert not session_satisfies(dict(REQ, prompt=["login"]), 1000, 1500, None, "sub")
    assert not session_satisfies(dict(REQ, max_age=100), 1000, 1500, None, "sub")
    assert session_satisfies(dict(REQ, max_age=600), 1000, 1500, None, "sub")
    assert not session_satisfies(REQ, 1000, 1500, "other", "sub")


def test_a_sign_in_written_by_a_later_release_still_loads():
    """A rolling upgrade: an older process may load what a newer one stored; fields it does
    not know are left out instead of failing the seller's sign-in."""
    from idp.oauth.authorize import AuthorizationRequest

    request = AuthorizationRequest("rp", "https://rp.example/cb", ["openid"], "c" * 43).to_dict()
    stored = SignIn.start({**request, "a_later_field": 1}).to_dict()
    loaded = SignIn.from_dict({**stored, "another_later_field": "x"})
    assert loaded.id == stored["id"] and not hasattr(loaded, "another_later_field")
    assert AuthorizationRequest.from_dict(loaded.request).client_id == "rp"


def _with_risk_and_second_factor():
    """The table once a risk check and a second factor join: risk decides, 2SV proves."""
    password, consent = STEPS
    risk = Step("risk", lambda s, ctx: True, "login_required")
    second = Step("second_factor", lambda s, ctx: True, "login_required", authenticates=True)
    return (password, risk, second, consent)


def test_the_session_waits_for_every_authenticating_step_not_only_the_next():
    steps = _with_risk_and_second_factor()
    s = _signin(account_id=1, done=["password"])
    ctx = Context(first_party=True, now=0)
    assert next_step(s, ctx, steps).key == "risk"
    assert not authentication_complete(s, ctx, steps)  # the second factor is still ahead
    s.done += ["risk", "second_factor"]
    assert authentication_complete(s, ctx, steps)


def test_only_the_step_the_sign_in_is_at_is_due():
    steps = _with_risk_and_second_factor()
    ctx = Context(first_party=False, now=0)
    s = _signin()
    assert is_due("password", s, ctx, steps) and not is_due("consent", s, ctx, steps)
    s.account_id, s.done = 1, ["password"]
    assert is_due("risk", s, ctx, steps) and not is_due("second_factor", s, ctx, steps)
    s.done += ["risk", "second_factor"]
    assert is_due("consent", s, ctx, steps)
    s.consent_given = True
    assert not any(is_due(step.key, s, ctx, steps) for step in steps)


def test_the_methods_of_one_sign_in_add_up_for_one_account():
    """A second factor after the password keeps "pwd" (RFC 8176): a step that proves more adds
    its method; another account proving itself starts over."""
    from types import SimpleNamespace

    from idp.login.flow import authenticated

    s = _signin()
    authenticated(s, SimpleNamespace(id=1), ["pwd"])
    authenticated(s, SimpleNamespace(id=1), ["otp"])
    assert s.amr == ["otp", "pwd"] and s.account_id == 1
    s.done = ["password"]
    authenticated(s, SimpleNamespace(id=2), ["pwd"])
    assert s.amr == ["pwd"] and s.account_id == 2 and s.done == []
