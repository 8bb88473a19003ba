"""SESSION_IDLE_TTL: a browser session nobody used for that long ends (Keycloak's "SSO
Session Idle"); each sign-in answered from it counts as a use (idp.login.session)."""

from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from idp.extensions import db
from idp.models import BrowserSession

IDLE = 1800


@pytest.fixture
def idle(app):
    app.config["SESSION_IDLE_TTL"] = IDLE


def _answer(flow):
    return flow.authorize(prompt="none").headers["Location"]


def test_each_use_keeps_the_session_and_idling_ends_it(idle, flow):
    with freeze_time(datetime.now(timezone.utc)) as clock:
        flow.login_code()
        for _ in range(3):  # used every 29 minutes: alive after 87, well past the idle limit
            clock.tick(timedelta(seconds=IDLE - 60))
            assert "code=" in _answer(flow)
        clock.tick(timedelta(seconds=IDLE + 1))
        assert "error=login_required" in _answer(flow)


def test_a_code_from_an_idle_session_is_not_redeemed(idle, flow):
    """The code's redemption checks the session as the authorization did."""
    with freeze_time(datetime.now(timezone.utc)) as clock:
        code = flow.login_code()
        clock.tick(timedelta(seconds=IDLE + 61))
        resp = flow.redeem(code)
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_grant"


def test_last_seen_is_written_at_most_once_a_minute(flow, seller):
    """Without an idle limit too: the seller's list of sessions shows it."""
    with freeze_time(datetime.now(timezone.utc)) as clock:
        flow.login_code()
        signed_in = db.session.scalars(db.select(BrowserSession.last_seen_at)).one()
        clock.tick(timedelta(seconds=30))
        assert "code=" in _answer(flow)
        db.session.expire_all()
        assert db.session.scalars(db.select(BrowserSession.last_seen_at)).one() == signed_in
        clock.tick(timedelta(seconds=45))
        assert "code=" in _answer(flow)
        db.session.expire_all()
        assert db.session.scalars(db.select(BrowserSession.last_seen_at)).one() > signed_in


def test_no_idle_limit_by_default(flow):
    with freeze_time(datetime.now(timezone.utc)) as clock:
        flow.login_code()
        clock.tick(timedelta(days=13))
        assert "code=" in _answer(flow)
