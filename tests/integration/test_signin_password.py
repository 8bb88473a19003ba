"""Password sign-in: neutral errors, CSRF, session rotation, cookies, argon2id rehash."""

import pytest
from freezegun import freeze_time

from idp.extensions import db
from tests.conftest import PASSWORD, Flow, csrf_token


def _signin_page(flow):
    resp = flow.authorize()
    url = resp.headers["Location"]
    return url, flow.client.get(url).get_data(as_text=True)


BAD = [
    ("unknown email", "nobody@example.com", PASSWORD),
    ("wrong password", "seller@example.com", "wrong password"),
    ("empty password", "seller@example.com", ""),
    ("empty both", "", ""),
    ("oversized", "seller@example.com", "x" * 5000),
    ("NUL in email", "seller\x00@example.com", PASSWORD),  # PostgreSQL text cannot hold NUL
    ("NUL in password", "seller@example.com", PASSWORD + "\x00"),
]


@pytest.mark.parametrize("case,email,password", BAD, ids=[c for c, _, _ in BAD])
def test_bad_credentials_get_one_neutral_answer(flow, case, email, password):
    url, page = _signin_page(flow)
    resp = flow.client.post(url, data={"csrf_token": csrf_token(page), "email": email, "password": password})
    assert resp.status_code == 200 and "WWW-Authenticate" not in resp.headers
    body = resp.get_data(as_text=True)
    assert "Incorrect email or password." in body
    assert "not registered" not in body and "Traceback" not in body


@pytest.mark.parametrize("email,password,hashed", [
    ("", "", False), ("seller@example.com", "", False), ("not-an-email", "x", False),
    ("nobody@example.com", "x", True),
])
def test_a_post_no_account_could_match_costs_no_hash(flow, monkeypatch, email, password, hashed):
    """An empty password or an email without "@" matches no account whatever it is: no argon2
    (20-25 ms of a worker each) for it. The answer is the same neutral one."""
    from idp.login import password as passwords

    calls = []
    real = passwords._verify
    monkeypatch.setattr(passwords, "_verify", lambda h, p: calls.append(h) or real(h, p))
    url, page = _signin_page(flow)
    resp = flow.client.post(url, data={"csrf_token": csrf_token(page), "email": email, "password": password})
    assert resp.status_code == 200 and "Incorrect email or password." in resp.get_data(as_text=True)
    assert len(calls) == (1 if hashed else 0)


def test_unknown_email_still_verifies_a_hash(flow, monkeypatch):
    """Same work for unknown accounts: a dummy argon2 hash is verified (no timing oracle)."""
    from idp.login import password

    calls = []
    real = password._verify
    monkeypatch.setattr(password, "_verify", lambda h, p: calls.append(h) or real(h, p))
    url, page = _signin_page(flow)
    flow.client.post(url, data={"csrf_token": csrf_token(page), "email": "nobody@example.com", "password": "x"})
    assert len(calls) == 1 and calls[0].startswith(b"$argon2id$")


def test_form_without_csrf_token_is_refused(flow):
    url, _ = _signin_page(flow)
    resp = flow.client.post(url, data={"email": "seller@example.com", "password": PASSWORD})
    assert resp.status_code == 400
    assert "Location" not in resp.headers


def test_sign_in_in_another_browser_is_refused(flow, app):
    url, page = _signin_page(flow)
    other = app.test_client()
    resp = other.post(url, data={"csrf_token": csrf_token(page), "email": "seller@example.com", "password": PASSWORD})
    assert resp.status_code == 400


def test_sign_in_expires(flow, app):
    with freeze_time() as clock:
        url, page = _signin_page(flow)
        clock.tick(app.config["LOGIN_TTL"] + 1)
        resp = flow.client.post(url, data={"csrf_token": csrf_token(page), "email": "seller@example.com",
                                           "password": PASSWORD})
    assert resp.status_code == 400 and "expired" in resp.get_data(as_text=True)


def test_session_id_rotates_at_each_sign_in(flow):
    flow.login_code()
    first = flow.client.get_cookie("idp_session").value
    flow.login_code(prompt="login")
    second = flow.client.get_cookie("idp_session").value
    assert first != second
    from idp.crypto.secrets import keyed_hash
    from idp.extensions import db
    from idp.models import BrowserSession

    assert db.session.get(BrowserSession, keyed_hash(first)) is None  # the value before finds nothing
    assert db.session.get(BrowserSession, keyed_hash(second)).ended_at is None


def test_session_cookie_is_strict(flow):
    resp = flow.sign_in(flow.authorize())
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith("idp_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie


def test_an_http_issuer_off_loopback_has_cookies_a_browser_keeps_and_all_alike(app, flow, seller):
    """Development on a LAN name (production refuses plain http there, idp.config): Secure or
    __Host- cookies would be dropped over http, and the sign-in would fail on every try; the
    IdP's own cookies follow the same rule as Flask's CSRF cookie."""
    from idp import create_app

    lan = create_app({"ISSUER": "http://idp.lan:5000", "DATABASE_URL": app.config["DATABASE_URL"],
                      "REDIS_URL": app.config["REDIS_URL"], "STORE_NAMESPACE": app.config["STORE_NAMESPACE"],
                      "KEYS_DIR": app.config["KEYS_DIR"], "TESTING": True})
    assert lan.config["SESSION_COOKIE_NAME"] == "idp_flask" and not lan.config["SESSION_COOKIE_SECURE"]
    lan_flow = type(flow)(lan.test_client(), flow.rp)
    resp = lan_flow.sign_in(lan_flow.authorize())
    cookies = resp.headers.getlist("Set-Cookie")
    assert any(c.startswith("idp_session=") for c in cookies)
    assert not any("Secure" in c or c.startswith("__Host-") for c in cookies)
    assert "code=" in resp.headers["Location"]


def test_https_issuer_uses_host_prefix_and_secure(app, flow):
    app.config["ISSUER"] = "https://id.example.com"
    resp = flow.sign_in(flow.authorize())
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if "idp_session=" in c)
    assert cookie.startswith("__Host-idp_session=") and "Secure" in cookie


def test_password_rehashed_when_parameters_change(flow, seller, app):
    from idp.extensions import db

    old_hash = seller.password_hash
    app.config["ARGON2_TIME_COST"] = 3
    flow.login_code()
    db.session.refresh(seller)
    assert seller.password_hash != old_hash and "t=3" in seller.password_hash


def test_suspended_account_gets_the_same_answer(flow, seller):
    from idp.extensions import db

    seller.status = "suspended"
    db.session.commit()
    resp = flow.sign_in(flow.authorize())
    assert resp.status_code == 200 and "Incorrect email or password." in resp.get_data(as_text=True)


def test_the_same_form_posted_twice_at_once_signs_in_once(flow, app, seller):
    """A double submit (or two tabs on one sign-in): both requests check the password, only
    the one that claims the sign-in goes on; one session, one code."""
    import threading

    from idp.extensions import db
    from idp.models import BrowserSession

    url, page = _signin_page(flow)
    form = {"csrf_token": csrf_token(page), "email": seller.email, "password": PASSWORD}
    twin = app.test_client()
    for cookie in flow.client._cookies.values():
        twin.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    answers, barrier = [], threading.Barrier(2)

    def submit(browser):
        barrier.wait()
        with app.app_context():
            resp = browser.post(url, data=form)
            answers.append((resp.status_code, resp.headers.get("Location", "")))

    threads = [threading.Thread(target=submit, args=(b,)) for b in (flow.client, twin)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(status for status, _ in answers) == [302, 303]
    (location,) = [loc for status, loc in answers if status == 302]
    assert "code=" in location
    (taken,) = [loc for status, loc in answers if status == 303]
    assert taken.endswith(url)  # sent where the sign-in is now: here, finished and gone
    assert flow.client.get(taken).status_code == 400
    assert db.session.scalar(db.select(db.func.count()).select_from(BrowserSession)) == 1


def test_a_resubmitted_form_does_not_sign_in_again(app, client, seller, third_party_rp):
    """The second click of a double click, answered after the first (consent is next); it
    left with the cookies of before the first answer. The password was proved for this
    sign-in, so it goes on to the consent page."""
    from idp.extensions import db
    from idp.models import BrowserSession
    from tests.conftest import Flow

    third = Flow(client, third_party_rp)
    url, page = _signin_page(third)
    form = {"csrf_token": csrf_token(page), "email": seller.email, "password": PASSWORD}
    twin = app.test_client()
    for cookie in client._cookies.values():
        twin.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    first, second = client.post(url, data=form), twin.post(url, data=form)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"].endswith("/consent") and second.headers["Location"].endswith("/consent")
    assert db.session.scalar(db.select(db.func.count()).select_from(BrowserSession)) == 1


def test_a_failure_after_the_claim_gives_it_back_for_the_retry(flow, seller, monkeypatch):
    """A PostgreSQL blip while the session starts (503): the seller's retry signs in."""
    from sqlalchemy.exc import OperationalError

    from idp.login import flow as signin_flow

    real, calls = signin_flow._start_session, []

    def blip_once(signin, client_id):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return real(signin, client_id)

    monkeypatch.setattr(signin_flow, "_start_session", blip_once)
    url, page = _signin_page(flow)
    form = {"csrf_token": csrf_token(page), "email": seller.email, "password": PASSWORD}
    assert flow.client.post(url, data=form).status_code == 503
    retry = flow.client.post(url, data=form)
    assert retry.status_code == 302 and "code=" in retry.headers["Location"]


@pytest.mark.parametrize("lost", ["add", "consume"])  # the claim of the form, the taking of the sign-in
def test_a_store_answer_lost_after_the_write_still_lets_the_retry_sign_in(flow, seller, monkeypatch, lost):
    """Redis ran the command and its answer never came back (a timeout): the 503 asks the
    seller to try again, and the retry must not find the form claimed or the sign-in answered."""
    import redis.exceptions

    from idp.extensions import store

    kind, calls = type(store()), []
    real = getattr(kind, lost)

    def answer_lost(self, key, *args, **kwargs):
        result = real(self, key, *args, **kwargs)
        if key.startswith(("signin-claim:", "signin:")) and not calls:
            calls.append(key)
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        return result

    url, page = _signin_page(flow)
    form = {"csrf_token": csrf_token(page), "email": seller.email, "password": PASSWORD}
    with monkeypatch.context() as patched:
        patched.setattr(kind, lost, answer_lost)
        assert flow.client.post(url, data=form).status_code == 503
    assert calls
    retry = flow.client.post(url, data=form)
    assert retry.status_code == 302 and "code=" in retry.headers["Location"], retry.get_data(as_text=True)


REGISTRATION_CHANGES = [
    ("its redirect URI dropped", {"redirect_uris": ["https://rp.example.com/other"]}),
    ("a requested scope withdrawn", {"scopes": ["openid"]}),
]


@pytest.mark.parametrize("case,change", REGISTRATION_CHANGES, ids=[c for c, _ in REGISTRATION_CHANGES])
def test_a_sign_in_open_while_the_client_registration_changes_answers_nothing_there(flow, seller, case, change):
    """An operator drops a compromised callback host (or a scope) while a sign-in is open: no
    code and no error goes to what is no longer registered (RFC 6749 §10.6, RFC 9700 §4.1.3)."""
    url, page = _signin_page(flow)
    for name, value in change.items():
        setattr(flow.rp, name, value)
    db.session.commit()
    resp = flow.client.post(url, data={"csrf_token": csrf_token(page), "email": seller.email, "password": PASSWORD})
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "registration changed" in resp.get_data(as_text=True)


@pytest.mark.parametrize("typed", ["jos\u00e9@example.com", "jose\u0301@example.com"], ids=["NFC", "NFD"])
def test_an_account_stored_before_emails_were_normalised_still_signs_in(flow, typed):
    """An earlier release kept the email as typed, lower-cased: one made with a combining
    accent (NFD) must not be locked out now that emails are kept in NFC."""
    from idp.login.password import hash_password
    from idp.models import Account

    db.session.add(Account(email="jose\u0301@example.com", email_verified=True, password_hash=hash_password(PASSWORD)))
    db.session.commit()
    resp = flow.sign_in(flow.authorize(), email=typed)
    assert resp.status_code == 302 and "code=" in resp.headers["Location"], resp.get_data(as_text=True)


def test_a_wrong_password_leaves_the_sign_in_open_for_the_next_try(flow, seller):
    url, page = _signin_page(flow)
    token = csrf_token(page)
    wrong = flow.client.post(url, data={"csrf_token": token, "email": seller.email, "password": "nope"})
    assert wrong.status_code == 200 and "Incorrect email or password." in wrong.get_data(as_text=True)
    again = flow.client.post(url, data={"csrf_token": token, "email": seller.email, "password": PASSWORD})
    assert again.status_code == 302 and "code=" in again.headers["Location"]


def test_a_serving_process_makes_its_dummy_hash_before_the_first_request(app, tmp_path):
    """Made on first use, the dummy hash (an argon2 hash, tens of ms) and the choice of verifier
    (timed on it) would make the first unknown email each process sees slower than a registered one."""
    from idp import create_app, create_server_app
    from idp.extensions import db
    from idp.login import password

    keep = ("ISSUER", "DATABASE_URL", "REDIS_URL", "STORE_NAMESPACE", "TESTING", "KEYS_DIR")
    config = {k: app.config[k] for k in keep if k in app.config}
    config["MAINTENANCE"] = False
    for make, made in ((create_app, 0), (create_server_app, 1)):
        password._dummy_hash.cache_clear()
        password._fastest.cache_clear()
        built = make(config)
        assert password._dummy_hash.cache_info().currsize == made, make.__name__
        assert password._fastest.cache_info().currsize == made, make.__name__
        with built.app_context():
            db.engine.dispose()


def _binding(http) -> str:
    return http.get_cookie("idp_browser").value


def test_two_sign_ins_started_at_once_in_a_fresh_browser_both_go_through(app, flow, seller):
    """Two tabs of a browser with no binding cookie yet each start a sign-in before either
    answer has come back: each answer sets a binding cookie, and the browser keeps the last.
    The first tab's sign-in is found through the cookie named after it; and once both post
    their passwords at once (neither carrying the other's new session cookie), the browser
    is left with one live session, as with tabs of a browser that had the binding already."""
    from idp.extensions import db
    from idp.models import BrowserSession

    first_url = flow.authorize().headers["Location"]
    first_binding = _binding(flow.client)
    flow.client.delete_cookie("idp_browser")  # the second tab's request left without it
    second_url = flow.authorize().headers["Location"]
    assert _binding(flow.client) != first_binding
    first_page, second_page = (flow.client.get(u) for u in (first_url, second_url))
    assert first_page.status_code == second_page.status_code == 200
    cookies_before = dict(flow.client._cookies)  # werkzeug's jar: no public way to copy it whole
    first = flow.client.post(first_url, data={"csrf_token": csrf_token(first_page.get_data(as_text=True)),
                                              "email": seller.email, "password": PASSWORD})
    flow.client._cookies = cookies_before  # posted at the same moment: without the first answer's cookies
    second = flow.client.post(second_url, data={"csrf_token": csrf_token(second_page.get_data(as_text=True)),
                                                "email": seller.email, "password": PASSWORD})
    assert "code=" in first.headers["Location"] and "code=" in second.headers["Location"]
    db.session.expire_all()
    live = db.session.execute(db.select(BrowserSession).where(BrowserSession.ended_at.is_(None))).scalars().all()
    assert len(live) == 1


def test_a_sign_in_has_its_own_cookie_only_in_a_browser_without_a_binding(app, flow):
    first = flow.authorize()
    signin_id = first.headers["Location"].split("/")[2]
    own = flow.client.get_cookie(f"idp_signin_{signin_id}")
    assert own is not None and own.value == _binding(flow.client)
    assert f"Max-Age={app.config['LOGIN_TTL']}" in next(
        c for c in first.headers.getlist("Set-Cookie") if c.startswith("idp_signin_"))
    later = flow.authorize()
    assert not any(c.startswith("idp_signin_") for c in later.headers.getlist("Set-Cookie"))


def test_a_sign_in_cookie_opens_only_its_own_sign_in(app, flow):
    """Another browser holding a sign-in's own cookie (and a binding of its own) still cannot
    continue a different sign-in: the cookie is found by the sign-in's id."""
    url = flow.authorize().headers["Location"]
    other = app.test_client()
    other_url = Flow(other, flow.rp).authorize().headers["Location"]
    signin_id, other_id = url.split("/")[2], other_url.split("/")[2]
    stolen = flow.client.get_cookie(f"idp_signin_{signin_id}").value
    other.set_cookie(f"idp_signin_{other_id}", stolen)  # under the wrong name: opens nothing
    assert other.get(url).status_code == 400
    assert other.get(other_url).status_code == 200


def test_a_leaked_sign_in_url_with_a_cookie_of_its_name_opens_nothing(app, flow):
    """Another browser that learnt a sign-in's URL (so its id) and sets a cookie of that
    sign-in's name, to its own binding or anything else, is still not the browser that
    started it: the cookie's value must be the starting browser's binding."""
    url = flow.authorize().headers["Location"]
    signin_id = url.split("/")[2]
    other = app.test_client()
    Flow(other, flow.rp).authorize()  # a binding of its own
    for value in (_binding(other), "x" * 32, ""):
        other.set_cookie(f"idp_signin_{signin_id}", value)
        assert other.get(url).status_code == 400
    assert flow.client.get(url).status_code == 200


def test_a_step_page_opened_out_of_turn_checks_nothing_and_sends_the_browser_where_the_sign_in_is(
        app, flow, seller, monkeypatch):
    """A gate before the password step (a lockout, a captcha) must not be skipped by going to
    the password page's URL: the page answers only when its step is due. Before, it checked the
    password (a guessing oracle past the gate) and started the session."""
    from idp.login import password as passwords, pipeline

    app.add_url_rule("/signin/<signin_id>/gate", endpoint="login.gate", view_func=lambda signin_id: "the gate")
    token = csrf_token(flow.client.get(flow.authorize().headers["Location"]).get_data(as_text=True))
    gate = pipeline.Step("gate", lambda s, ctx: "gate" not in s.done, "interaction_required")
    table = (gate, *pipeline.STEPS)
    for function in (pipeline.next_step, pipeline.authentication_complete, pipeline.is_due):
        monkeypatch.setattr(function, "__defaults__", (table,))
    hashed = []
    real = passwords._verify
    monkeypatch.setattr(passwords, "_verify", lambda h, p: hashed.append(h) or real(h, p))

    at_gate = flow.authorize().headers["Location"]
    assert at_gate.endswith("/gate")
    password_url = at_gate.rsplit("/", 1)[0] + "/password"
    shown = flow.client.get(password_url)
    assert shown.status_code in (302, 303) and shown.headers["Location"].endswith("/gate")
    posted = flow.client.post(password_url, data={"csrf_token": token, "email": seller.email, "password": PASSWORD})
    assert posted.status_code in (302, 303) and posted.headers["Location"].endswith("/gate")
    assert hashed == [] and flow.client.get_cookie("idp_session") is None


def test_a_wrong_password_for_an_account_still_on_a_cheaper_hash_takes_as_long_as_an_unknown_email(
        flow, seller, app, monkeypatch):
    """After ARGON2_TIME_COST is raised, an account keeps its cheaper hash until it signs in
    again: a wrong password for it was answered sooner than an unknown email's, which told
    who is registered. Such a failure now waits out the rest of the dummy's time (the wait
    is observed, not timed); an account at the current cost, or a right password, waits not."""
    from idp.login import password as passwords

    waits = []
    monkeypatch.setattr(passwords.time, "sleep", waits.append)
    monkeypatch.setattr(passwords, "_dummy_seconds", lambda ph: 10.0)  # longer than any verification here

    def post(password):
        browser = Flow(app.test_client(), flow.rp)  # a browser without a session each time
        url, page = _signin_page(browser)
        return browser.client.post(url, data={"csrf_token": csrf_token(page), "email": seller.email,
                                              "password": password})

    post("wrong password")
    assert waits == []  # its hash is at the configured cost: nothing to make up for
    app.config["ARGON2_TIME_COST"] = 3  # raised: the seller's hash (t=2) is the cheaper one now
    post("wrong password")
    assert len(waits) == 1 and 9 < waits[0] <= 10
    assert post(PASSWORD).status_code == 302 and len(waits) == 1  # signed in (and rehashed), no wait
    post("wrong password")
    assert len(waits) == 1  # at the new cost now
