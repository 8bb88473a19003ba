"""Interleavings between requests of one browser and between processes, on PostgreSQL's row
locks: each is held open at its natural window by a hook, so the other request runs inside it.

- the session's list of clients (whom back-channel logout tells) is appended under the row's
  lock, and a logout or sign-out-everywhere tells the list its UPDATE found;
- a session renewed (new cookie value, new primary key) while it is being ended is still ended;
- `idp clients remove` revokes the family a code redemption commits while it runs;
- one sign-in answers with one code, whichever tab finishes it;
- two first consents to one client add up.
"""

import re
import threading

import pytest

from idp.cli import cli
from idp.extensions import db
from idp.login import flow as login_flow
from idp.login import session as browser_session
from idp.logout import everywhere, session_end
from idp.models import Account, BrowserSession, Consent, Grant
from idp.oauth import tokens
from tests.conftest import Flow, csrf_token, register_client
from tests.integration.logout_helpers import receiver  # noqa: F401  (fixture)
from tests.integration.token_helpers import active, backend, introspect

# SQLite has no row locks (and one writer at a time): these are PostgreSQL's interleavings.
pytestmark = pytest.mark.parametrize("app", ["postgresql"], indirect=True)
WAIT = 15  # seconds: an upper bound for the other request, never reached when all is well


def in_thread(fn) -> dict:
    """Run ``fn`` in another thread (its own app context, as another request), and wait."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001  (handed to the test)
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(WAIT)
    assert "value" in out, out
    return out["value"]


def same_browser(app, http):
    """Another test client holding ``http``'s cookies: another tab of the same browser."""
    other = app.test_client()
    for c in http._cookies.values():
        other.set_cookie(c.key, c.value, domain=c.domain, path=c.path)
    return other


def session_clients(sid) -> list:
    db.session.expire_all()
    return db.session.execute(db.select(BrowserSession.clients).filter_by(sid=sid)).scalar_one()


def confirm_logout(http, client_id):
    page = http.get("/logout", query_string={"client_id": client_id}).get_data(as_text=True)
    logout_id = re.search(r'name="logout_id" type="hidden" value="([^"]+)"', page).group(1)
    return http.post("/logout/confirm", data={"csrf_token": csrf_token(page), "logout_id": logout_id})


def test_two_sign_ins_at_once_to_two_clients_both_join_the_session(app, client, seller, monkeypatch):
    a, b, c = register_client("rp-a"), register_client("rp-b"), register_client("rp-c")
    first = Flow(client, a)
    assert first.redeem(first.login_code()).status_code == 200
    sid = db.session.execute(db.select(BrowserSession.sid)).scalar_one()
    both_read = threading.Barrier(2, timeout=WAIT)
    read = browser_session.by_sid

    def by_sid(s):
        row = read(s)
        both_read.wait()  # each has read the session before either writes
        return row

    monkeypatch.setattr(browser_session, "by_sid", by_sid)
    other = Flow(same_browser(app, client), c)
    results = {}
    thread = threading.Thread(target=lambda: results.update(c=other.login_code()))
    thread.start()
    Flow(same_browser(app, client), b).login_code()
    thread.join(WAIT)
    assert "c" in results
    assert sorted(session_clients(sid)) == ["rp-a", "rp-b", "rp-c"]


def test_a_logout_tells_a_client_that_joined_the_session_while_it_ran(app, client, seller, receiver, monkeypatch):
    a = register_client("rp-a")
    b = register_client("rp-b", backchannel_logout_uri=receiver.url)
    first = Flow(client, a)
    assert first.redeem(first.login_code()).status_code == 200
    joining = Flow(same_browser(app, client), b)
    end = session_end.end

    def end_after_b_joined(row, account, reason="logout"):
        # The logout has read the session; rp-b signs in by single sign-on and redeems now.
        assert "id_token" in in_thread(lambda: joining.redeem(joining.login_code()).get_json())
        return end(row, account, reason)

    monkeypatch.setattr(session_end, "end", end_after_b_joined)
    confirm_logout(client, "rp-a")
    assert len(receiver.received) == 1  # rp-b holds an ID token of this session: it is told


def _renew_elsewhere(app, http, rp) -> None:
    """The same seller signs in again in another tab (prompt=login): the session is renewed
    under a new cookie value, its primary key."""
    in_thread(lambda: Flow(same_browser(app, http), rp).login_code(prompt="login"))


def test_a_logout_ends_a_session_renewed_while_it_ran(app, client, seller, monkeypatch):
    rp = register_client("rp-a")
    first = Flow(client, rp)
    assert first.redeem(first.login_code()).status_code == 200
    end = session_end.end
    ended = {}

    def end_after_renewal(row, account, reason="logout"):
        _renew_elsewhere(app, client, rp)
        ended["report"] = end(row, account, reason)
        return ended["report"]

    monkeypatch.setattr(session_end, "end", end_after_renewal)
    assert confirm_logout(client, "rp-a").status_code in (200, 302, 303)
    assert ended["report"] is not None
    db.session.expire_all()
    assert db.session.execute(db.select(BrowserSession.ended_at)).scalar_one() is not None


def test_sign_out_everywhere_ends_a_session_renewed_while_it_ran(app, client, seller, monkeypatch):
    rp = register_client("rp-a")
    first = Flow(client, rp)
    body = first.redeem(first.login_code()).get_json()
    end = everywhere._end_live_sessions
    renewed = []

    def end_after_renewal(account, now):
        if not renewed:
            _renew_elsewhere(app, client, rp)
            renewed.append(True)
        return end(account, now)

    monkeypatch.setattr(everywhere, "_end_live_sessions", end_after_renewal)
    page = client.get("/account/sign-out-everywhere").get_data(as_text=True)
    resp = client.post("/account/sign-out-everywhere", data={"csrf_token": csrf_token(page)})
    assert resp.status_code in (200, 302, 303)
    db.session.expire_all()
    assert db.session.get(Account, seller.id).sessions_revoked_at is not None
    assert db.session.execute(db.select(BrowserSession.ended_at)).scalar_one() is not None
    assert not active(introspect(client, backend(), body["access_token"]))


def test_removing_a_client_revokes_the_family_a_redemption_commits_meanwhile(app, client, seller, monkeypatch):
    rp = register_client("rp-web")
    api = backend()
    late = Flow(same_browser(app, client), rp)
    code = late.login_code()
    flush = db.session.flush
    redeemed, started = {}, []

    def flush_then_redeem(*args, **kwargs):
        # `idp clients remove` is about to delete the client; a redemption comes in first.
        if not started:
            started.append(True)
            redeemed.update(in_thread(lambda: late.redeem(code).get_json()))
        return flush(*args, **kwargs)

    monkeypatch.setattr(db.session, "flush", flush_then_redeem)
    result = app.test_cli_runner().invoke(cli, ["clients", "remove", "rp-web", "--yes"])
    monkeypatch.undo()
    assert result.exit_code == 0, result.output
    assert "access_token" in redeemed, redeemed
    assert not active(introspect(client, api, redeemed["access_token"]))
    db.session.expire_all()
    assert db.session.execute(db.select(Grant).where(Grant.revoked_at.is_(None))).first() is None
    # The same client_id registered again does not inherit the family.
    register_client("rp-web", token_endpoint_auth_method="none")
    again = client.post("/token", data={"grant_type": "refresh_token", "client_id": "rp-web",
                                        "refresh_token": redeemed["refresh_token"]})
    assert again.status_code == 400


def test_a_redemption_after_the_client_is_removed_is_refused(app, client, seller):
    rp = register_client("rp-web")
    flow = Flow(client, rp)
    code = flow.login_code()
    assert app.test_cli_runner().invoke(cli, ["clients", "remove", "rp-web", "--yes"]).exit_code == 0
    assert flow.redeem(code).status_code in (400, 401)


def test_one_sign_in_answers_with_one_code_whichever_tab_finishes_it(app, client, seller, monkeypatch):
    rp = register_client("rp-third", first_party=False, scopes=["openid", "email"])
    flow = Flow(client, rp)
    consent_url = flow.sign_in(flow.authorize()).headers["Location"]
    assert "/consent" in consent_url
    token = csrf_token(client.get(consent_url).get_data(as_text=True))
    other_tab = same_browser(app, client)
    record = login_flow.record_consent
    second = {}

    def record_then_other_tab(signin, c):
        record(signin, c)  # committed: the password page's "proved already" now finishes too
        second["resp"] = in_thread(lambda: other_tab.get(consent_url.replace("/consent", "/password")))

    monkeypatch.setattr(login_flow, "record_consent", record_then_other_tab)
    first = client.post(consent_url, data={"csrf_token": token, "allow": "y"})
    answers = [r for r in (first, second["resp"]) if r.status_code == 302 and "code=" in r.headers["Location"]]
    assert answers == [first]  # the Allow had the sign-in claimed: the other tab cannot take it
    loser = second["resp"]
    assert loser.status_code == 303 and loser.headers["Location"].endswith("/password")  # to look again
    assert client.get(loser.headers["Location"]).status_code == 400  # and the sign-in is over


def test_two_first_consents_to_one_client_add_up(app, client, seller, monkeypatch):
    rp = register_client("rp-third", first_party=False, scopes=["openid", "email", "profile"])
    one = Flow(client, rp)
    url_one = one.sign_in(one.authorize(scope="openid email")).headers["Location"]
    two = Flow(same_browser(app, client), rp)
    url_two = two.authorize(scope="openid profile").headers["Location"]  # single sign-on: straight to consent
    assert "/consent" in url_one and "/consent" in url_two
    tokens_ = [csrf_token(f.client.get(url).get_data(as_text=True)) for f, url in ((one, url_one), (two, url_two))]
    both_looked, looked = threading.Barrier(2, timeout=WAIT), []
    execute = db.session.execute

    def execute_then_wait(statement, *args, **kwargs):
        result = execute(statement, *args, **kwargs)
        # record_consent's look at the consent row, the first in each request: neither finds one
        if getattr(statement, "is_select", False) and "FROM consent" in str(statement) and len(looked) < 2:
            looked.append(statement)
            both_looked.wait()
        return result

    monkeypatch.setattr(db.session, "execute", execute_then_wait)
    answers = {}
    thread = threading.Thread(target=lambda: answers.update(
        two=two.client.post(url_two, data={"csrf_token": tokens_[1], "allow": "y"})))
    thread.start()
    answers["one"] = one.client.post(url_one, data={"csrf_token": tokens_[0], "allow": "y"})
    thread.join(WAIT)
    assert all(r.status_code == 302 and "code=" in r.headers["Location"] for r in answers.values()), answers
    db.session.expire_all()
    scopes = db.session.execute(db.select(Consent.scopes)).scalar_one()
    assert sorted(scopes) == ["email", "openid", "profile"]


@pytest.mark.parametrize("second", ["another seller", "the same seller"])
def test_two_sign_ins_posted_at_once_in_one_browser_leave_one_live_session(app, client, seller, rp, second):
    """Two tabs post their password forms at once: neither request carries the session cookie
    the other is about to set, so neither ends the other's session by the cookie. The browser
    keeps one cookie; the other session must not live on unseen (until SESSION_TTL, its
    relying parties never told at a logout in this browser)."""
    from idp.login.password import hash_password
    from tests.conftest import PASSWORD

    email = seller.email
    if second == "another seller":
        email = "bob@example.com"
        db.session.add(Account(email=email, email_verified=True, name="Bob", password_hash=hash_password(PASSWORD)))
        db.session.commit()
    flow = Flow(client, rp)
    first_url, second_url = (flow.authorize().headers["Location"] for _ in range(2))
    first_page, second_page = (client.get(u).get_data(as_text=True) for u in (first_url, second_url))
    cookies_before = dict(client._cookies)  # werkzeug's jar: no public way to copy it whole
    first = client.post(first_url, data={"csrf_token": csrf_token(first_page), "email": seller.email,
                                         "password": PASSWORD})
    client._cookies = cookies_before  # sent at the same moment: without the first answer's cookie
    later = client.post(second_url, data={"csrf_token": csrf_token(second_page), "email": email,
                                          "password": PASSWORD})
    assert first.status_code == later.status_code == 302
    db.session.expire_all()
    live = db.session.execute(db.select(BrowserSession).where(BrowserSession.ended_at.is_(None))).scalars().all()
    assert len(live) == 1
    assert live[0].account_id == (seller.id if second == "the same seller" else
                                  db.session.execute(db.select(Account.id).filter_by(email=email)).scalar())


@pytest.mark.parametrize("command", [["accounts", "set-password", "seller@example.com", "--password-stdin"],
                                     ["logout", "everywhere", "seller@example.com"]])
def test_a_sign_in_whose_password_was_checked_before_a_new_password_or_a_sign_out_everywhere_dies_with_it(
        app, flow, seller, monkeypatch, command):
    """The old password is checked (13-40 ms), then `idp accounts set-password` (or a sign out
    everywhere) commits, then the session is written: it found no session to end, and the one
    written after it counted from its insert, so the old password signed in for good (a code,
    single sign-on, a refresh token). The session counts from when the proof began."""
    start, ran = browser_session.start, []

    def operator_acts_first(*args, **kwargs):
        if not ran:
            ran.append(in_thread(lambda: app.test_cli_runner().invoke(cli, command, input="a brand new password 7\n")))
        return start(*args, **kwargs)

    monkeypatch.setattr(browser_session, "start", operator_acts_first)
    code = flow.login_code()  # with the old password, checked before the operator's command
    assert ran[0].exit_code == 0, ran[0].output
    redeemed = flow.redeem(code)
    monkeypatch.setattr(browser_session, "start", start)
    assert redeemed.status_code == 400 and redeemed.get_json()["error"] == "invalid_grant"
    again = flow.authorize(prompt="none")
    assert "error=login_required" in again.headers["Location"]
