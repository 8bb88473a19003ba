""""Sign out everywhere": every session and token family of the account ends."""

import pytest

from idp.extensions import db
from idp.logout.everywhere import sign_out_everywhere
from idp.models import Account, BrowserSession, Grant, SecurityEvent
from idp.oauth import tokens
from tests.conftest import PASSWORD, Flow, csrf_token, register_client


@pytest.fixture
def two_browsers(app, seller, rp):
    """The seller signed in from two browsers; the second app stays connected offline."""
    first, second = Flow(app.test_client(), rp), Flow(app.test_client(), rp)
    a = first.redeem(first.login_code()).get_json()
    b = second.redeem(second.login_code(scope="openid offline_access")).get_json()
    assert "refresh_token" in a and "refresh_token" in b
    return (first, a), (second, b)


def refresh(flow, refresh_token):
    return flow.client.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                            auth=(flow.rp.client_id, flow.rp.secret))


def live_sessions():
    return db.session.execute(db.select(BrowserSession).where(BrowserSession.ended_at.is_(None))).scalars().all()


def press_the_button(flow):
    page = flow.client.get("/account/sign-out-everywhere")
    assert page.status_code == 200
    return flow.client.post("/account/sign-out-everywhere",
                            data={"csrf_token": csrf_token(page.get_data(as_text=True))})


def assert_everything_dead(app, seller, browsers):
    db.session.expire_all()
    assert live_sessions() == []
    assert db.session.get(Account, seller.id).sessions_revoked_at is not None
    grants = db.session.execute(db.select(Grant)).scalars().all()
    assert grants and all(g.revoked_at is not None for g in grants)
    for flow, body in browsers:
        assert tokens.find_access_token(body["access_token"]) is None
        resp = flow.client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert resp.status_code == 401
        resp = refresh(flow, body["refresh_token"])
        assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_grant"
        again = flow.authorize()  # single sign-on is gone: the password is needed again
        assert again.status_code == 302 and again.headers["Location"].endswith("/password")


def test_seller_signs_out_everywhere(app, seller, two_browsers):
    (first, a), (second, b) = two_browsers
    b = {**b, **refresh(second, b["refresh_token"]).get_json()}  # the control: refresh works before
    assert "access_token" in b

    resp = press_the_button(first)
    assert resp.status_code == 200 and "signed out everywhere" in resp.get_data(as_text=True)
    assert "2 browser sessions" in resp.get_data(as_text=True)
    assert first.client.get_cookie("idp_session") is None
    assert_everything_dead(app, seller, [(first, a), (second, b)])

    event = db.session.execute(db.select(SecurityEvent).filter_by(kind="sign_out_everywhere")).scalar_one()
    assert event.account_id == seller.id and event.detail["actor"] == "seller"
    assert event.detail["sessions"] == 2 and event.detail["grants"] == 2


def test_operator_signs_out_everywhere(app, seller, two_browsers):
    summary = sign_out_everywhere(seller, actor="operator")
    assert summary["sessions"] == 2 and summary["grants"] == 2
    assert_everything_dead(app, seller, list(two_browsers))
    event = db.session.execute(db.select(SecurityEvent).filter_by(kind="sign_out_everywhere")).scalar_one()
    assert event.detail["actor"] == "operator"


def test_signing_in_again_afterwards_works(app, seller, two_browsers):
    (first, _), _ = two_browsers
    sign_out_everywhere(seller)
    resp = first.authorize()
    resp = first.sign_in(resp, password=PASSWORD)
    body = first.redeem(first.code_from(resp)).get_json()
    assert tokens.find_access_token(body["access_token"]) is not None
    assert len(live_sessions()) == 1


def test_other_accounts_are_untouched(app, seller, rp, two_browsers):
    from idp.login.password import hash_password

    other = Account(email="other@example.com", email_verified=True, password_hash=hash_password(PASSWORD))
    db.session.add(other)
    db.session.commit()
    flow = Flow(app.test_client(), rp)
    resp = flow.sign_in(flow.authorize(), email="other@example.com")
    body = flow.redeem(flow.code_from(resp)).get_json()

    sign_out_everywhere(seller)
    assert tokens.find_access_token(body["access_token"]) is not None
    assert [s.account_id for s in live_sessions()] == [other.id]


def test_needs_the_current_session(app, seller, rp):
    client = app.test_client()
    assert client.get("/account/sign-out-everywhere").status_code == 403
    assert client.post("/account/sign-out-everywhere").status_code in (400, 403)
    assert db.session.execute(db.select(SecurityEvent)).first() is None


def test_needs_the_csrf_token(app, seller, two_browsers):
    (first, a), _ = two_browsers
    resp = first.client.post("/account/sign-out-everywhere", data={})
    assert resp.status_code == 400
    assert len(live_sessions()) == 2
    assert tokens.find_access_token(a["access_token"]) is not None


def test_client_credentials_grants_of_nobody_are_untouched(app, seller, two_browsers):
    machine = register_client("svc", grant_types=["client_credentials"], scopes=["api"], first_party=True)
    grant = tokens.new_grant(machine, None, "api")
    db.session.commit()
    sign_out_everywhere(seller)
    assert db.session.get(Grant, grant.id).revoked_at is None


def test_a_sign_out_in_the_same_instant_as_the_sign_in_leaves_nothing_alive(app, seller, rp):
    """idp.models.account.usable_since: equal instants count as before, for sessions and for
    token families alike, on the one-statement refresh (PostgreSQL) and the general path.
    The family is deliberately left unrevoked: the account rule alone must refuse it."""
    from datetime import datetime, timedelta, timezone

    from freezegun import freeze_time

    from tests.integration.token_helpers import introspect

    flow = Flow(app.test_client(), rp)
    instant = datetime.now(timezone.utc) + timedelta(minutes=1)
    with freeze_time(instant):  # one instant for everything
        body = flow.redeem(flow.login_code(scope="openid offline_access")).get_json()
        account = db.session.get(Account, seller.id)
        grant = db.session.get(Grant, tokens.find_access_token(body["access_token"])["grant_id"])
        assert grant.created_at == live_sessions()[0].created_at == instant
        account.sessions_revoked_at = grant.created_at
        db.session.commit()
        assert not introspect(flow.client, rp, body["refresh_token"]).get_json()["active"]
        resp = refresh(flow, body["refresh_token"])
        assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_grant"
        assert "/signin/" in flow.authorize().headers["Location"]  # the session is dead too


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)  # SQLite (one process) has no row locks
def test_a_code_redeemed_during_the_sign_out_gets_no_family_that_outlives_it(app, seller, rp, monkeypatch):
    """The redemption's statement has checked the session (its row FOR SHARE) and is writing
    the new family; before it commits, another request signs the seller out everywhere. The
    sign-out must wait for that commit and then revoke the new family too.

    The statement is held after its check by an advisory lock this test holds (taken per
    row of the check, so after the row locks)."""
    import threading

    import psycopg
    from sqlalchemy import text

    from idp.oauth import code_redemption
    from tests.integration.token_helpers import active, backend, introspect

    flow = Flow(app.test_client(), rp)
    code = flow.login_code(scope="openid offline_access")
    held = "SELECT id, sub, email, email_verified, status FROM s"
    assert held in code_redemption._REDEEM
    monkeypatch.setattr(code_redemption, "_REDEEM", code_redemption._REDEEM.replace(
        held, held + " WHERE (SELECT pg_advisory_xact_lock_shared(s.id)::text) IS NOT NULL"))
    outcome = {}

    def sign_out():
        with app.app_context():
            outcome["summary"] = sign_out_everywhere(db.session.get(Account, seller.id))
            db.session.remove()

    def wait_for(condition: str, what: str) -> None:
        for _ in range(500):  # bounded: 10 s
            found = db.session.execute(text("SELECT count(*) FROM pg_stat_activity WHERE " + condition)).scalar()
            db.session.rollback()  # pg_stat_activity is read once per transaction
            if found:
                return
            threading.Event().wait(0.02)
        pytest.fail(what)

    dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (seller.id,))
        redeemer = threading.Thread(target=lambda: outcome.setdefault("redeemed", flow.redeem(code)))
        redeemer.start()
        try:
            wait_for("wait_event = 'advisory'", "the redemption never reached its check")
            signer = threading.Thread(target=sign_out)
            signer.start()
            wait_for("wait_event_type = 'Lock' AND wait_event <> 'advisory'", "the sign-out never waited")
        finally:
            gate.execute("SELECT pg_advisory_unlock(%s)", (seller.id,))
        redeemer.join(30)
        signer.join(30)
    body = outcome["redeemed"].get_json()
    assert outcome["redeemed"].status_code == 200 and outcome["summary"]["grants"] == 1
    assert not active(introspect(flow.client, backend("rs"), body["access_token"]))
    assert refresh(flow, body["refresh_token"]).status_code == 400
