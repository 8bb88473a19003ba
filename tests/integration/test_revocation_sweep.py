"""A revocation whose store half failed (Redis out of reach at a logout): the families are
written down and the next maintenance run deletes their access tokens (idp.oauth.tokens)."""

import pytest
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


def test_the_operators_logout_retry_sweeps_them_too(app, flow, monkeypatch):
    """`idp logout retry` (from cron, as its help said) delivered the back-channel retries but
    never swept: with the server's MAINTENANCE off, those access tokens lived their whole TTL."""
    from idp.cli import cli

    body = sign_in(flow)
    with monkeypatch.context() as patched:
        patched.setattr(tokens, "kill_access_tokens", _outage)
        flow.client.get("/logout", query_string={"id_token_hint": body["id_token"]})
    assert _userinfo(flow, body["access_token"]) == 200
    result = app.test_cli_runner().invoke(cli, ["logout", "retry"])
    assert result.exit_code == 0 and "1 revoked family(ies) swept" in result.output, result.output
    assert _userinfo(flow, body["access_token"]) == 401


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


def test_a_family_written_down_long_ago_is_still_swept(app, flow):
    """A replayed code's family may have had no row to revoke: the store's mark is then its
    only revocation, however long the outage lasted."""
    tokens.remember_to_sweep(["gone-long-ago"], "code_reuse")
    with freeze_time() as clock:
        clock.tick(app.config["ACCESS_TOKEN_TTL"] * 10)
        assert tokens.sweep_pending() == 1
    assert tokens.is_grant_revoked("gone-long-ago")
    assert db.session.scalars(db.select(PendingSweep)).all() == []


def test_two_writers_of_one_family_and_many_families_are_all_written_down(app):
    """An upsert (a reuse racing a sign out everywhere write the same family), in chunks
    (PostgreSQL binds at most 65,535 parameters to a statement)."""
    many = [f"g{i}" for i in range(2 * tokens.SWEEP_BATCH + 5)]
    tokens.remember_to_sweep(many[:10], "refresh_token_reuse")
    tokens.remember_to_sweep(many, "sign_out_everywhere")
    rows = db.session.scalars(db.select(PendingSweep)).all()
    assert len(rows) == len(many) and {r.reason for r in rows} == {"sign_out_everywhere"}


def test_one_run_sweeps_a_backlog_of_several_batches(app, monkeypatch):
    monkeypatch.setattr(tokens, "SWEEP_BATCH", 3)
    tokens.remember_to_sweep([f"g{i}" for i in range(8)], "logout")
    assert tokens.sweep_pending() == 8
    assert db.session.scalars(db.select(PendingSweep)).all() == []


def test_the_sweep_runs_whatever_the_back_channel_retries_do(app, monkeypatch):
    from idp.logout import backchannel

    def broken():
        raise RuntimeError("a retry run that fails")

    tokens.remember_to_sweep(["g1"], "logout")
    monkeypatch.setattr(backchannel, "retry_pending", broken)
    assert maintenance.run(app, maintenance.by_name("logout-retry")) is None  # the job reports its failure
    assert db.session.scalars(db.select(PendingSweep)).all() == []  # and swept first


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)  # SQLite serialises writers: no race there
def test_a_family_another_transaction_is_writing_down_does_not_lose_the_rest(app):
    """A reuse (one family) racing a sign out everywhere (that family and more) during an
    outage: the second writer waits on the first's uncommitted row, then must still write
    down every family, not fail on the key and drop them all."""
    import threading
    import time

    from sqlalchemy import func, insert, select, text

    table = PendingSweep.__table__
    first = db.engine.connect()
    pending = first.begin()
    first.execute(insert(table), [{"grant_id": "g1", "reason": "refresh_token_reuse", "recorded_at": int(time.time())}])

    def second():
        with app.app_context():
            tokens.remember_to_sweep(["g1", "g2", "g3"], "sign_out_everywhere")

    writer = threading.Thread(target=second, daemon=True)
    writer.start()
    waiting, gave_up = threading.Event(), time.monotonic() + 60  # a bound on a loaded machine, not a measurement
    try:
        with db.engine.connect() as probe:  # until the second writer waits on the first's row lock
            while not probe.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                                    ).scalar():
                # PostgreSQL reads pg_stat_activity once per transaction: without ending it, a
                # probe that ran before the writer waited (a loaded machine) saw that forever.
                probe.rollback()
                assert time.monotonic() < gave_up, "the second writer never waited"
                waiting.wait(0.02)
        pending.commit()
    finally:
        if pending.is_active:  # failed above: let the writer go, or it and the teardown wait forever
            pending.rollback()
        first.close()
        writer.join(60)
    with db.engine.connect() as conn:
        assert sorted(conn.execute(select(table.c.grant_id)).scalars()) == ["g1", "g2", "g3"]
        assert conn.execute(select(func.count()).select_from(table)).scalar() == 3
