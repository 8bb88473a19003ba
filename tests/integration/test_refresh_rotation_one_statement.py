"""The one-statement rotation (idp.oauth.refresh_rotation): it rotates only a live token and
changes nothing otherwise, leaving the verdict (reuse, expiry, revocation) to the general path.

PostgreSQL only: on SQLite every refresh takes the general path, which
test_rfc6749_refresh_rotation.py covers on both databases."""

from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from idp.crypto.secrets import keyed_hash, new_token
from idp.extensions import db
from idp.models import Account, Client, Grant, RefreshToken
from idp.oauth import pg_direct, refresh_rotation, tokens
from tests.integration.token_helpers import count_io, error_of, login, refresh

IDLE = 14 * 24 * 3600
pytestmark = pytest.mark.parametrize("app", ["postgresql"], indirect=True)


@pytest.fixture
def live(app, flow):
    assert refresh_rotation.available()
    body = login(flow)
    return body["refresh_token"], tokens.find_access_token(body["access_token"])["grant_id"]


def _rotate(token, client_id="rp-web"):
    successor = new_token(32)
    return successor, refresh_rotation.rotate(keyed_hash(token), client_id, keyed_hash(successor), IDLE)


def _state(token):
    db.session.expire_all()
    row = db.session.get(RefreshToken, keyed_hash(token))
    return None if row is None else (row.rotated_at is not None, row.generation)


def test_live_token_is_rotated_into_its_successor(live, seller):
    token, grant_id = live
    successor, found = _rotate(token)
    assert found.grant.id == grant_id and found.account.sub == seller.sub and found.token.scope == "openid email"
    assert _state(token) == (True, 0) and _state(successor) == (False, 1)
    row = db.session.get(RefreshToken, keyed_hash(successor))
    assert row.grant_id == grant_id and row.expires_at <= db.session.get(Grant, grant_id).expires_at


def test_another_clients_token_is_left_alone(live):
    token, _ = live
    successor, found = _rotate(token, client_id="rp-other")
    assert found is None and _state(token) == (False, 0) and _state(successor) is None


def test_rotated_token_changes_nothing(live):
    token, _ = live
    _rotate(token)
    successor, found = _rotate(token)
    assert found is None and _state(successor) is None


def test_expired_token_is_not_rotated(live, app):
    token, _ = live
    with freeze_time(datetime.now(timezone.utc) + timedelta(seconds=app.config["REFRESH_TOKEN_IDLE_TTL"] + 1)):
        assert _rotate(token)[1] is None
    assert _state(token) == (False, 0)


def test_revoked_family_or_suspended_account_is_not_rotated(live, seller):
    token, grant_id = live
    db.session.get(Account, seller.id).status = "suspended"
    db.session.commit()
    assert _rotate(token)[1] is None and _state(token) == (False, 0)
    db.session.get(Account, seller.id).status = "active"
    db.session.commit()
    tokens.revoke_grant(grant_id, "test")
    assert _rotate(token)[1] is None and _state(token) == (False, 0)


def test_a_refresh_naming_scope_takes_the_general_path(live, flow):
    token, _ = live
    resp = refresh(flow.client, flow.rp, token, scope="openid")
    assert resp.status_code == 200 and resp.get_json()["scope"] == "openid"
    assert _state(token) == (True, 0)
    assert db.session.scalar(select(RefreshToken.scope).where(RefreshToken.generation == 1)) == "openid email"


def _plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def test_every_row_is_read_by_its_primary_key_however_many_grants(live, app, seller):
    """A seller with many grants: the statement must not walk them (no statistics yet, as on a
    fresh table, so the planner's join order is not what keeps it fast)."""
    client = db.session.execute(db.select(Client).filter_by(client_id="rp-web")).scalar_one()
    for _ in range(60):
        tokens.new_grant(client, db.session.get(Account, seller.id), "openid email")
    db.session.commit()
    token, _ = live
    now = datetime.now(timezone.utc)
    params = {"token_hash": keyed_hash(token), "client_id": "rp-web", "new_hash": keyed_hash(new_token()),
              "now": now, "idle_until": now + timedelta(seconds=IDLE), "client_row": client.id,
              "client_version": client.version}
    conn = pg_direct.connection()
    with conn.transaction(force_rollback=True):
        (plan,), = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + refresh_rotation._ROTATE, params).fetchone()
    scans = [n for n in _plan_nodes(plan["Plan"]) if "Scan" in n["Node Type"] and "Relation Name" in n]
    assert {n["Relation Name"] for n in scans} == {"refresh_token", "grant", "account", "client"}
    unique = {"refresh_token_pkey", "grant_pkey", "account_pkey", "client_client_id_key"}
    assert all(n["Node Type"] in ("Index Scan", "Index Only Scan") and n["Index Name"] in unique
               for n in scans), scans
    assert all(n["Actual Rows"] <= 1 for n in scans)
    assert _state(token) == (False, 0)  # EXPLAIN ANALYZE ran it; the rollback undid it


# The client is authenticated against this process's copy of its registration; the statement
# checks the copy's version, so a change to the client takes effect on the next refresh and a
# refused refresh rotates nothing (the token stays good for the client's corrected retry).
def _change_client(client_id, **fields):
    row = db.session.execute(select(Client).filter_by(client_id=client_id)).scalar_one()
    for name, value in fields.items():
        setattr(row, name, value)
    db.session.commit()
    return row.version


def _refreshed(flow, token, secret=None):
    auth = (flow.rp.client_id, secret or flow.rp.secret)
    return flow.client.post("/token", data={"grant_type": "refresh_token", "refresh_token": token}, auth=auth)


def test_the_happy_path_asks_the_store_nothing_for_the_client(live, flow, app):
    token, _ = live
    first = _refreshed(flow, token)  # this process now holds a copy
    assert first.status_code == 200
    with count_io(app) as seen:
        resp = _refreshed(flow, first.get_json()["refresh_token"])
    assert resp.status_code == 200
    assert seen["sql"] == [] and seen["store"] == ["put_checked"]  # the statement runs on its own connection


def test_a_rotated_secret_refuses_the_old_one_and_rotates_nothing(live, flow):
    token, _ = live
    token = _refreshed(flow, token).get_json()["refresh_token"]
    version = _change_client(flow.rp.client_id, secret_hash=keyed_hash("rotated-secret"))
    assert version > 1
    assert error_of(_refreshed(flow, token)) == (401, "invalid_client")
    assert _state(token) == (False, 1)
    resp = _refreshed(flow, token, secret="rotated-secret")
    assert resp.status_code == 200 and _state(token) == (True, 1)


def test_a_withdrawn_grant_type_takes_effect_at_once(live, flow):
    token, _ = live
    token = _refreshed(flow, token).get_json()["refresh_token"]
    _change_client(flow.rp.client_id, grant_types=["authorization_code"])
    assert error_of(_refreshed(flow, token)) == (400, "unauthorized_client")
    assert _state(token) == (False, 1)


def test_a_copy_older_than_the_database_is_judged_again(live, flow, app):
    """A change whose cache drop this process has not acted on: the copy still authenticates,
    the statement finds another version and changes nothing, the general path rotates once."""
    from idp.oauth import clients

    token, _ = live
    token = _refreshed(flow, token).get_json()["refresh_token"]
    copy = clients._COPIES[(app.extensions["idp.store"].namespace, flow.rp.client_id)]
    _change_client(flow.rp.client_id, name="Renamed RP")
    assert clients._COPIES[(app.extensions["idp.store"].namespace, flow.rp.client_id)] is copy
    with count_io(app) as seen:
        resp = _refreshed(flow, token)
    assert resp.status_code == 200 and _state(token) == (True, 1)
    assert _state(resp.get_json()["refresh_token"]) == (False, 2)
    assert "get" in seen["store"]  # the registration was read again from the shared cache
    again = _refreshed(flow, resp.get_json()["refresh_token"])
    assert again.status_code == 200  # and the fresh copy is used from then on


def test_a_redis_failure_after_the_rotation_leaves_the_token_live_for_the_retry(app, flow, tmp_path, monkeypatch):
    """The statement commits the rotation before the access token is written to Redis. If
    that write fails (503), the client's retry with the same refresh token must be served,
    not taken for reuse: that would revoke the family and raise a security alert over an
    outage. Here Redis really stops between the two (its server is shut down)."""
    from idp import create_app
    from tests.servers import start_redis

    redis_url, stop_redis = start_redis(tmp_path / "redis")
    config = {k: app.config[k] for k in ("ISSUER", "KEYS_DIR", "DATABASE_URL", "TESTING")}
    failing = create_app({**config, "REDIS_URL": redis_url})
    rotate = refresh_rotation.rotate

    def rotate_then_lose_redis(*args, **kwargs):
        found = rotate(*args, **kwargs)
        stop_redis()
        return found

    token = login(flow)["refresh_token"]
    monkeypatch.setattr(refresh_rotation, "rotate", rotate_then_lose_redis)
    try:
        with failing.app_context():
            assert refresh(failing.test_client(), flow.rp, token).status_code == 503
    finally:
        stop_redis()
        with failing.app_context():
            db.engine.dispose()
    monkeypatch.setattr(refresh_rotation, "rotate", rotate)
    assert _state(token) == (False, 0)  # live again, its successor gone
    retry = refresh(flow.client, flow.rp, token)
    assert retry.status_code == 200, retry.get_data(as_text=True)
    assert db.session.scalar(select(Grant.revoked_at)) is None


def test_a_family_the_store_says_is_revoked_gets_nothing(live, flow):
    """revoke_grant marks the store first, then the database: if that update failed (a
    PostgreSQL blip, /revoke answered 503) the row still looks live to the one-statement
    rotation, but the refresh must be refused as on every other path, and no new ID token
    given out; the database catches up with the mark."""
    from idp.extensions import store

    token, grant_id = live
    store().put(tokens._revoked_key(grant_id), "revoked_by_client", 3600)
    resp = refresh(flow.client, flow.rp, token)
    assert error_of(resp) == (400, "invalid_grant") and "id_token" not in resp.get_json()
    db.session.expire_all()
    assert db.session.get(Grant, grant_id).revoked_at is not None


def test_a_copy_of_a_removed_registration_does_not_vouch_for_its_successor(live, flow, app):
    """Removed and registered again (after a leaked secret), a client is a new row whose
    version starts again at 1: a worker still holding a copy of the old row must not let the
    old secret refresh the new registration's tokens."""
    from idp.oauth import clients
    from tests.conftest import Flow, register_client

    token, _ = live
    assert _refreshed(flow, token).status_code == 200  # this process now holds a copy
    held = dict(clients._COPIES)
    db.session.delete(db.session.execute(select(Client).filter_by(client_id=flow.rp.client_id)).scalar_one())
    db.session.commit()
    again = register_client(flow.rp.client_id, secret="the-new-secret")
    assert again.version == 1
    new_token_of_new_row = login(Flow(flow.client, again))["refresh_token"]
    clients._COPIES.clear()
    clients._COPIES.update(held)  # the request lands on a worker that has not seen the change
    resp = _refreshed(flow, new_token_of_new_row, secret=flow.rp.secret)
    assert error_of(resp) == (401, "invalid_client")
    assert _refreshed(flow, new_token_of_new_row, secret="the-new-secret").status_code == 200


def test_a_connection_the_server_ended_is_replaced_before_the_statement_is_sent(live, flow):
    """A PostgreSQL restart (or an administrator's pg_terminate_backend) ends this thread's idle
    connection: the next refresh must open another, not fail with a 503 (each thread once,
    whenever it next refreshed, perhaps minutes later)."""
    import select
    import time

    from sqlalchemy import text

    token, _ = live
    first = refresh(flow.client, flow.rp, token)
    assert first.status_code == 200
    pid = pg_direct.connection().info.backend_pid
    db.session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    db.session.commit()
    deadline = time.monotonic() + 30  # the termination notice reaches the socket asynchronously
    while not select.select([pg_direct._local.conn.fileno()], [], [], 0)[0]:
        assert time.monotonic() < deadline, "the server's termination never reached the connection"
        time.sleep(0.01)
    again = refresh(flow.client, flow.rp, first.get_json()["refresh_token"])
    assert again.status_code == 200, again.get_json()
    assert pg_direct.connection().info.backend_pid != pid


def test_every_postgresql_connection_finds_a_peer_that_went_away(live, app):
    """tcp_user_timeout and keepalives on the pool's connections and the refresh grant's own."""
    pooled = db.session.connection().connection.dbapi_connection.info.get_parameters()
    own = pg_direct.connection().info.get_parameters()
    for params in (pooled, own):
        assert params.get("tcp_user_timeout") == "15000" and params.get("keepalives") == "1", params


def test_libpq_settings_in_the_database_url_win(app):
    from sqlalchemy.engine import make_url

    from idp import pg_connect_args

    args = pg_connect_args(app.config, make_url("postgresql+psycopg://u@h/db?keepalives_idle=300&sslmode=require"))
    assert "keepalives_idle" not in args and args["tcp_user_timeout"] == 15000
