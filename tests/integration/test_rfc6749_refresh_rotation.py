"""Refresh tokens: RFC 6749 §6 and rotation with reuse detection (RFC 9700 §4.14.2)."""

import threading
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from idp.extensions import db, keyring
from idp.models import Account, Grant, RefreshToken, SecurityEvent
from idp.oauth import id_token, tokens
from tests.conftest import Flow, register_client
from tests.integration.token_helpers import error_of, login, refresh


def _rows(grant_id):
    db.session.expire_all()
    return db.session.scalars(select(RefreshToken).filter_by(grant_id=grant_id)
                              .order_by(RefreshToken.generation)).all()


def _grant_of(access_token):
    return tokens.find_access_token(access_token)["grant_id"]


def _userinfo(flow, access_token):
    return flow.client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def test_refresh_rotates_within_the_family(flow):
    first = login(flow)
    grant_id = _grant_of(first["access_token"])
    second = refresh(flow.client, flow.rp, first["refresh_token"])
    assert second.status_code == 200, second.get_json()
    body = second.get_json()
    assert body["refresh_token"] != first["refresh_token"] and body["access_token"] != first["access_token"]
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600 and body["scope"] == "openid email"
    assert _grant_of(body["access_token"]) == grant_id
    rows = _rows(grant_id)
    assert [r.generation for r in rows] == [0, 1]
    assert rows[0].rotated_at is not None and rows[1].rotated_at is None
    third = refresh(flow.client, flow.rp, body["refresh_token"])
    assert third.status_code == 200 and [r.generation for r in _rows(grant_id)] == [0, 1, 2]
    assert _userinfo(flow, first["access_token"]) == 200  # rotation alone does not kill access tokens


def test_reuse_revokes_the_whole_family_and_is_recorded(flow, seller):
    first = login(flow)
    second = refresh(flow.client, flow.rp, first["refresh_token"]).get_json()
    assert error_of(refresh(flow.client, flow.rp, first["refresh_token"])) == (400, "invalid_grant")
    # the legitimate successor and every access token of the family are dead too
    assert error_of(refresh(flow.client, flow.rp, second["refresh_token"])) == (400, "invalid_grant")
    assert _userinfo(flow, second["access_token"]) == 401
    assert _userinfo(flow, first["access_token"]) == 401
    db.session.expire_all()
    grant = db.session.scalars(select(Grant)).one()
    assert grant.revoked_reason == "refresh_token_reuse"
    events = db.session.scalars(select(SecurityEvent).filter_by(account_id=seller.id)).all()
    assert [(e.kind, e.detail["grant_id"]) for e in events] == [("refresh_token_reuse", grant.id)]


def test_reuse_during_a_store_outage_is_still_revoked_and_recorded(flow, seller, monkeypatch):
    """The store's half fails (a 503): the family is revoked in the database and the reuse on
    the seller's record all the same, not only once the client tries again after the outage."""
    import redis.exceptions

    from idp.extensions import store

    first = login(flow)
    refresh(flow.client, flow.rp, first["refresh_token"])

    def outage(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Redis went away")

    with monkeypatch.context() as patched:
        patched.setattr(type(store()), "put_many", outage)  # the family's marks
        resp = refresh(flow.client, flow.rp, first["refresh_token"])
    assert resp.status_code == 503
    db.session.expire_all()
    assert db.session.scalars(select(Grant.revoked_reason)).one() == "refresh_token_reuse"
    assert db.session.scalars(select(SecurityEvent.kind).filter_by(account_id=seller.id)).all() == [
        "refresh_token_reuse"]


def test_concurrent_refresh_never_leaves_two_live_successors(flow, app):
    first = login(flow)
    grant_id = _grant_of(first["access_token"])
    n, results, barrier = 6, [], threading.Barrier(6)

    def worker():
        http = app.test_client()
        barrier.wait()
        with app.app_context():
            resp = refresh(http, flow.rp, first["refresh_token"])
            results.append((resp.status_code, resp.get_json()))

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(status for status, _ in results)
    # The winner too answers invalid_grant when the losers' revocation reaches it while it
    # issues (idp.oauth.tokens.issue): what it would hand out is dead.
    assert statuses in ([200] + [400] * (n - 1), [400] * n), results
    assert {body["error"] for status, body in results if status == 400} == {"invalid_grant"}
    rows = _rows(grant_id)
    # One successor at most (none when the winner's rotation was undone with its answer).
    assert len(rows) <= 2 and (200 not in statuses or len(rows) == 2)
    assert db.session.get(Grant, grant_id).revoked_at is not None
    # the losers were reuse: the family is revoked, so not even the winner's successor lives
    for winner in (body for status, body in results if status == 200):
        assert error_of(refresh(flow.client, flow.rp, winner["refresh_token"])) == (400, "invalid_grant")
        assert _userinfo(flow, winner["access_token"]) == 401


@pytest.mark.parametrize("kept,scope,with_id_token", [
    (["openid", "profile", "offline_access"], "openid", True),  # email withdrawn
    (["email", "offline_access"], "email", False),  # openid withdrawn: no ID token
], ids=["email withdrawn", "openid withdrawn"])
def test_a_refresh_gets_no_scope_the_client_registration_no_longer_has(flow, kept, scope, with_id_token):
    """The operator narrows the client's scopes: its refresh tokens, issued before, carry
    no more than the registration allows now, as a code would not (RFC 6749 §5.1)."""
    first = login(flow)
    assert first["scope"] == "openid email"
    flow.rp.scopes = kept
    db.session.commit()
    resp = refresh(flow.client, flow.rp, first["refresh_token"])
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["scope"] == scope and ("id_token" in body) == with_id_token
    info = flow.client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert "email" not in (info.get_json() or {})


def test_a_refresh_whose_every_scope_was_withdrawn_is_refused_and_stays_live(flow):
    first = login(flow)
    flow.rp.scopes = ["profile", "offline_access"]
    db.session.commit()
    assert error_of(refresh(flow.client, flow.rp, first["refresh_token"])) == (400, "invalid_grant")
    flow.rp.scopes = ["openid", "email", "offline_access"]
    db.session.commit()
    assert refresh(flow.client, flow.rp, first["refresh_token"]).status_code == 200  # no reuse read into it


def test_token_is_bound_to_its_client(flow):
    other = register_client("rp-other")
    first = login(flow)
    assert error_of(refresh(flow.client, other, first["refresh_token"])) == (400, "invalid_grant")
    # a foreign presentation is not reuse: the owner's token still works
    assert refresh(flow.client, flow.rp, first["refresh_token"]).status_code == 200


SCOPES = [
    ("omitted", None, (200, "openid email", True)),
    ("same", "openid email", (200, "openid email", True)),
    ("narrower", "openid", (200, "openid", True)),
    ("without openid", "email", (200, "email", False)),
    ("wider", "openid email profile", (400, "invalid_scope", None)),
    ("unknown", "admin", (400, "invalid_scope", None)),
]


@pytest.mark.parametrize("case,scope,expected", SCOPES, ids=[c for c, _, _ in SCOPES])
def test_scope_can_only_narrow(flow, case, scope, expected):
    first = login(flow)
    resp = refresh(flow.client, flow.rp, first["refresh_token"], **({"scope": scope} if scope else {}))
    status, value, has_id_token = expected
    if status != 200:
        assert error_of(resp) == (status, value)
        return
    body = resp.get_json()
    assert (resp.status_code, body["scope"], "id_token" in body) == expected
    # RFC 6749 §6: the new refresh token keeps the scope of the one it replaced
    again = refresh(flow.client, flow.rp, body["refresh_token"]).get_json()
    assert again["scope"] == "openid email"


def test_idle_lifetime_and_fresh_window_for_each_successor(flow, app):
    app.config["REFRESH_TOKEN_IDLE_TTL"] = 3600
    with freeze_time() as clock:
        first = login(flow)
        clock.tick(3000)
        second = refresh(flow.client, flow.rp, first["refresh_token"]).get_json()
        clock.tick(3000)  # 6000 s after the first token, 3000 s after the second
        third = refresh(flow.client, flow.rp, second["refresh_token"])
        assert third.status_code == 200
        clock.tick(3601)
        assert error_of(refresh(flow.client, flow.rp, third.get_json()["refresh_token"])) == (400, "invalid_grant")


def test_absolute_lifetime_caps_the_family(flow):
    day = timedelta(days=1)
    with freeze_time() as clock:
        start = datetime.now(timezone.utc)
        token = login(flow)["refresh_token"]
        for _ in range(2):  # refresh every ten days: the idle window (14 days) never runs out
            clock.tick(10 * day)
            body = refresh(flow.client, flow.rp, token).get_json()
            token = body["refresh_token"]
        newest = _rows(_grant_of(body["access_token"]))[-1]
        assert newest.expires_at == start + 30 * day  # capped by the family's absolute end, not day 34
        clock.tick(10 * day + timedelta(seconds=1))
        assert error_of(refresh(flow.client, flow.rp, token)) == (400, "invalid_grant")


def _suspend(account):
    account.status = "suspended"


def _sign_out_everywhere(account):
    account.sessions_revoked_at = datetime.now(timezone.utc) + timedelta(seconds=1)


def _delete(account):
    db.session.delete(account)


def _revoke_family(account):
    tokens.revoke_grant(db.session.scalars(select(Grant.id)).one(), "admin")


DEAD = [("suspended account", _suspend), ("sessions revoked", _sign_out_everywhere),
        ("account deleted", _delete), ("family revoked", _revoke_family)]


@pytest.mark.parametrize("case,kill", DEAD, ids=[c for c, _ in DEAD])
def test_refresh_refused_when_account_or_family_is_gone(flow, seller, case, kill):
    first = login(flow)
    kill(db.session.get(Account, seller.id))
    db.session.commit()
    assert error_of(refresh(flow.client, flow.rp, first["refresh_token"])) == (400, "invalid_grant")


def test_id_token_from_refresh_keeps_sub_and_auth_time(flow):
    first = login(flow)
    body = refresh(flow.client, flow.rp, first["refresh_token"]).get_json()
    before, after = keyring().verify(first["id_token"]), keyring().verify(body["id_token"])
    assert after["sub"] == before["sub"] and after["auth_time"] == before["auth_time"]
    assert after["aud"] == flow.rp.client_id and "nonce" in before and "nonce" not in after
    assert after["at_hash"] == id_token.half_hash(body["access_token"], "ES256") != before["at_hash"]


def test_public_client_refreshes_with_client_id(client, native_rp, seller):
    f = Flow(client, native_rp)
    first = f.redeem(f.login_code(redirect_uri="http://127.0.0.1:5555/cb"),
                     redirect_uri="http://127.0.0.1:5555/cb").get_json()
    second = refresh(client, native_rp, first["refresh_token"])
    assert second.status_code == 200 and second.get_json()["refresh_token"] != first["refresh_token"]
    assert error_of(refresh(client, native_rp, first["refresh_token"])) == (400, "invalid_grant")


def test_client_without_the_refresh_grant(client, seller):
    rp = register_client("rp-norefresh", grant_types=["authorization_code"])
    body = login(Flow(client, rp))
    assert "refresh_token" not in body
    assert error_of(refresh(client, rp, "anything")) == (400, "unauthorized_client")
    assert db.session.scalar(select(func.count()).select_from(RefreshToken)) == 0


def test_refresh_sql(client, app, flow):
    """PostgreSQL: one statement (checks, rotation, successor). SQLite: SELECT (token, family
    and account joined), UPDATE (rotate), INSERT (successor)."""
    from tests.integration.token_helpers import count_io, login, refresh

    issued = login(flow)
    with count_io(app) as seen:
        assert refresh(client, flow.rp, issued["refresh_token"]).status_code == 200
    if db.engine.dialect.name == "postgresql":
        # idp.oauth.refresh_rotation runs its one statement on the driver's cursor, which
        # SQLAlchemy's statement events do not see: nothing else went through SQLAlchemy.
        assert seen["sql"] == []
        rows = db.session.execute(select(RefreshToken.generation, RefreshToken.rotated_at)
                                  .order_by(RefreshToken.generation)).all()
        assert [(g, r is not None) for g, r in rows] == [(0, True), (1, False)]
    else:
        assert [s for s in seen["sql"] if s != "SELECT"] == ["UPDATE", "INSERT"]
        assert seen["sql"].count("SELECT") == 2  # the client registration (no shared cache) and the token


def test_a_refresh_that_fails_after_its_checks_leaves_the_token_live(app, flow, caplog):
    """A failure while issuing (here the ID token: the client names an algorithm the IdP has
    no key for) must not spend the refresh token: the retry, once the cause is fixed, is
    served, not taken for reuse (which would revoke the family). On PostgreSQL the
    one-statement rotation is undone, on SQLite the transaction rolls back."""
    first = login(flow)
    grant_id = _grant_of(first["access_token"])
    flow.rp.id_token_signed_response_alg = "PS256"
    db.session.commit()
    assert error_of(refresh(flow.client, flow.rp, first["refresh_token"]))[0] == 500
    flow.rp.id_token_signed_response_alg = None
    db.session.commit()
    retry = refresh(flow.client, flow.rp, first["refresh_token"])
    assert retry.status_code == 200, retry.get_json()
    assert [(r.generation, r.rotated_at is not None) for r in _rows(grant_id)] == [(0, True), (1, False)]
    assert db.session.get(Grant, grant_id).revoked_at is None
