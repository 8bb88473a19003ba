"""A revocation whose store half failed (Redis out of reach at a logout): the families are
written down and the next maintenance run deletes their access tokens (idp.oauth.tokens)."""

import redis.exceptions
from freezegun import freeze_time

from idp.extensions import db
from idp.models import PendingSweep
from idp.oauth import tokens
from idp.ops import maintenance
from tests.integration.test_oidc_rp_initiated_logout import sign_in
from tests.integration.token_helpers import login, refresh


def _outage(*args, **kwargs):
    raise redis.exceptions.ConnectionError("Redis went away")


def _userinfo(flow, access_token):
    return flow.client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def test_a_logout_that_could_not_reach_the_store_has_the_next_run_sweep_its_access_tokens(app, flow, monkeypatch):
    body = sign_in(flow)
    with monkeypatch.context() as patched:
        patched.setattr(tokens, "kill_access_tokens", _outage)
        resp = flow.client.get("/logout", query_string={"id_token_hint": body["id_token"]})
    assert resp.status_code == 200  # the logout itself is done: session ended, families revoked
    assert _userinfo(flow, body["access_token"]) == 200  # the store never heard of it
    assert [r.reason for r in db.session.scalars(db.select(PendingSweep))] == ["logout"]
    summary = maintenance.run(app, maintenance.by_name("logout-retry"))
    assert summary.endswith("; the access tokens of 1 revoked family(ies) swept")
    assert _userinfo(flow, body["access_token"]) == 401
    assert db.session.scalars(db.select(PendingSweep)).all() == []


def test_a_reuse_during_a_store_outage_is_swept_later_too(app, flow, monkeypatch):
    first = login(flow)
    second = refresh(flow.client, flow.rp, first["refresh_token"]).get_json()
    with monkeypatch.context() as patched:
        patched.setattr(tokens, "kill_access_tokens", _outage)
        assert refresh(flow.client, flow.rp, first["refresh_token"]).status_code == 503
    assert _userinfo(flow, second["access_token"]) == 200
    assert tokens.sweep_pending() == 1
    assert _userinfo(flow, second["access_token"]) == 401


def test_the_store_still_out_of_reach_leaves_them_for_the_next_run(app, flow, monkeypatch):
    body = sign_in(flow)
    with monkeypatch.context() as patched:
        patched.setattr(tokens, "kill_access_tokens", _outage)
        flow.client.get("/logout", query_string={"id_token_hint": body["id_token"]})
        assert tokens.sweep_pending() == 0
    assert len(db.session.scalars(db.select(PendingSweep)).all()) == 1
    assert tokens.sweep_pending() == 1


def test_families_written_down_longer_ago_than_a_tokens_life_only_go(app, flow, monkeypatch):
    tokens.remember_to_sweep(["gone-long-ago"], "logout")
    with freeze_time() as clock:
        clock.tick(app.config["ACCESS_TOKEN_TTL"] + 61)
        with monkeypatch.context() as patched:
            patched.setattr(tokens, "kill_access_tokens", _outage)  # never asked
            assert tokens.sweep_pending() == 0
    assert db.session.scalars(db.select(PendingSweep)).all() == []
