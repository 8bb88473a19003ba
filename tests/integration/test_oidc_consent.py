"""Consent for clients that are not first-party, remembered per account, client and scopes."""

from urllib.parse import parse_qs, urlsplit

import pytest
from freezegun import freeze_time

from tests.conftest import Flow, csrf_token


@pytest.fixture
def third(client, third_party_rp, seller):
    return Flow(client, third_party_rp)


def _consent(f, resp, choice):
    assert "/consent" in resp.headers["Location"], resp.headers.get("Location")
    page = f.client.get(resp.headers["Location"])
    assert "wants to access your account" in page.get_data(as_text=True)
    return f.client.post(resp.headers["Location"], data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                                         choice: choice.title()})


def _query(resp):
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}


def test_consent_is_asked_then_remembered(third):
    allowed = _consent(third, third.sign_in(third.authorize()), "allow")
    assert "code" in _query(allowed)
    assert "code" in _query(third.authorize())  # remembered, and SSO
    assert "/consent" in third.authorize(scope="openid email profile").headers["Location"]  # new scope


def test_deny_returns_access_denied(third):
    denied = _consent(third, third.sign_in(third.authorize(state="xyz")), "deny")
    assert _query(denied)["error"] == "access_denied" and _query(denied)["state"] == "xyz"


def test_prompt_consent_asks_again(third):
    _consent(third, third.sign_in(third.authorize()), "allow")
    assert "/consent" in third.authorize(prompt="consent").headers["Location"]


def test_prompt_none_without_consent(third):
    third.sign_in(third.authorize())
    assert _query(third.authorize(prompt="none"))["error"] == "consent_required"


def test_max_age_is_judged_again_when_a_consent_page_left_open_is_answered(flow, third):
    """OIDC Core §3.1.2.1: once more time than max_age has passed since the seller proved who
    they are, the OP MUST re-authenticate: an Allow given later asks for the password first."""
    with freeze_time() as clock:
        assert "code" in _query(flow.sign_in(flow.authorize()))  # signed in here, through a first-party app
        consent = third.authorize(max_age="60")  # within max_age: single sign-on, consent due
        assert "/consent" in consent.headers["Location"]
        page = third.client.get(consent.headers["Location"])
        clock.tick(120)
        allowed = third.client.post(consent.headers["Location"], data={
            "csrf_token": csrf_token(page.get_data(as_text=True)), "allow": "Allow"})
    assert allowed.status_code == 302 and allowed.headers["Location"].endswith("/password")


def test_first_party_never_sees_consent(flow):
    assert "code" in _query(flow.sign_in(flow.authorize()))


def test_a_consent_page_outliving_its_session_grants_nothing(app, client, third_party_rp, seller):
    """The seller signs out everywhere (another browser) while this browser shows the
    consent page: Allow must neither record consent for that account nor carry over to
    whoever signs in next on this browser."""
    from idp.extensions import db
    from idp.login.password import hash_password
    from idp.models import Account, Consent
    from tests.conftest import PASSWORD

    other = Account(email="other@example.com", email_verified=True, password_hash=hash_password(PASSWORD))
    db.session.add(other)
    db.session.commit()
    here = Flow(client, third_party_rp)
    consent_url = here.sign_in(here.authorize(prompt="consent")).headers["Location"]
    page = client.get(consent_url).get_data(as_text=True)
    assert "seller@example.com" in page  # the page says for whom
    elsewhere = Flow(app.test_client(), third_party_rp)
    _consent(elsewhere, elsewhere.sign_in(elsewhere.authorize()), "allow")
    everywhere = elsewhere.client.get("/account/sign-out-everywhere").get_data(as_text=True)
    assert elsewhere.client.post("/account/sign-out-everywhere", data={
        "csrf_token": csrf_token(everywhere), "confirm": "Sign out everywhere"}).status_code in (200, 303)
    db.session.query(Consent).delete()  # what the other browser allowed is not the question here
    db.session.commit()

    resp = client.post(consent_url, data={"csrf_token": csrf_token(page), "allow": "Allow"})
    assert "/password" in resp.headers["Location"]  # prove who you are again
    assert db.session.query(Consent).count() == 0
    again = client.post(consent_url, data={"csrf_token": csrf_token(page), "allow": "Allow"})
    assert again.headers["Location"] == resp.headers["Location"]  # a resubmit: no dead end
    back = here.sign_in(resp, email="other@example.com")
    assert "/consent" in back.headers["Location"]  # the other account is asked for itself


def test_deny_on_a_page_that_outlived_its_session_still_tells_the_client(app, client, third_party_rp, seller):
    here = Flow(client, third_party_rp)
    consent_url = here.sign_in(here.authorize(state="st")).headers["Location"]
    page = client.get(consent_url).get_data(as_text=True)
    everywhere = client.get("/account/sign-out-everywhere").get_data(as_text=True)
    client.post("/account/sign-out-everywhere", data={"csrf_token": csrf_token(everywhere),
                                                      "confirm": "Sign out everywhere"})
    # Opened again after the sign-out, the page no longer shows the seller it was for: the
    # sign-in is back at the password step. A form of the page as it was still works.
    again = client.get(consent_url)
    assert again.status_code in (302, 303) and "/password" in again.headers["Location"]
    page = client.get(again.headers["Location"])  # this browser's CSRF token, as the open page holds it
    denied = client.post(consent_url, data={"csrf_token": csrf_token(page.get_data(as_text=True)), "deny": "Deny"})
    if "/password" in denied.headers["Location"]:
        raise AssertionError("Deny asked for a password")
    assert _query(denied)["error"] == "access_denied" and _query(denied)["state"] == "st"


def test_prompt_consent_shows_the_page_to_a_first_party_client(flow):
    """The first-party client asked for it: the seller sees the page, and Allow goes on."""
    flow.login_code()
    resp = flow.authorize(prompt="consent")
    assert "/consent" in resp.headers["Location"]
    assert "not operated by the marketplace" not in flow.client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "code" in _query(_consent(flow, resp, "allow"))
    assert "code" in _query(flow.authorize())  # without prompt=consent, never asked


def test_deny_in_a_second_tab_after_allow_in_the_first_went_back_to_the_password(client, third_party_rp, seller):
    """Two tabs on one consent page, the session ended: Allow in one sends the sign-in back to
    the password step; Deny in the other still tells the client no."""
    here = Flow(client, third_party_rp)
    consent_url = here.sign_in(here.authorize(state="st")).headers["Location"]
    everywhere = client.get("/account/sign-out-everywhere").get_data(as_text=True)
    client.post("/account/sign-out-everywhere", data={"csrf_token": csrf_token(everywhere),
                                                      "confirm": "Sign out everywhere"})
    token = csrf_token(client.get(consent_url, follow_redirects=True).get_data(as_text=True))
    allowed = client.post(consent_url, data={"csrf_token": token, "allow": "Allow"})
    assert "/password" in allowed.headers["Location"]
    denied = client.post(consent_url, data={"csrf_token": token, "deny": "Deny"})
    assert _query(denied)["error"] == "access_denied" and _query(denied)["state"] == "st"


def test_a_page_read_before_the_consent_was_given_cannot_answer_the_sign_in_again(
        client, third_party_rp, seller, monkeypatch):
    """prompt=consent asks every time. A request of this browser that read the sign-in just
    before Allow answered it (the password page reloaded in another tab) must not write it
    back: a second Allow would then answer with a second code. One sign-in, one code."""
    from idp.extensions import store
    from idp.login import flow as signin_flow
    from idp.login.pipeline import SignIn

    third = Flow(client, third_party_rp)
    at_consent = third.sign_in(third.authorize(prompt="consent"))
    consent_url = at_consent.headers["Location"]
    signin_id = consent_url.split("/")[-2]
    page = client.get(consent_url)
    read_before = SignIn.from_dict(store().get(f"signin:{signin_id}"))
    allowed = client.post(consent_url, data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                             "allow": "Allow"})
    assert "code" in _query(allowed)

    real_load = signin_flow.load
    monkeypatch.setattr(signin_flow, "load", lambda sid: read_before)  # what that other request holds
    late = client.get(f"/signin/{signin_id}/password")
    monkeypatch.setattr(signin_flow, "load", real_load)
    assert late.status_code == 303 and store().get(f"signin:{signin_id}") is None
    again = client.get(consent_url)
    assert again.status_code == 400 and "code" not in again.headers.get("Location", "")
