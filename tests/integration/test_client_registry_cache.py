"""Client lookups: cached in the shared store, dropped by any change to the client."""

import pytest

from idp.extensions import db, store
from idp.models import Client
from idp.oauth import clients
from tests.conftest import register_client


def test_change_is_seen_at_once(app):
    register_client("rp-cache", redirect_uris=["https://a.example.com/cb"])
    assert clients.find("rp-cache").redirect_uris == ["https://a.example.com/cb"]
    assert clients.find("rp-cache").redirect_uris == ["https://a.example.com/cb"]  # from the cache, if shared
    row = db.session.execute(db.select(Client).filter_by(client_id="rp-cache")).scalar_one()
    row.redirect_uris = ["https://b.example.com/cb"]
    db.session.commit()
    assert clients.find("rp-cache").redirect_uris == ["https://b.example.com/cb"]
    db.session.delete(row)
    db.session.commit()
    assert clients.find("rp-cache") is None


def test_cache_only_in_a_shared_store(app):
    register_client("rp-cache2")
    clients.find("rp-cache2")
    cached = store().get("client:rp-cache2")
    assert (cached is not None) == store().shared
    if cached is not None:
        assert cached["secret_hash"] and "created_at" in cached


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)  # the cache lives in a shared store only
def test_cached_client_authenticates(flow, app, monkeypatch):
    """A client rebuilt from the cache, with no database read of its row, still authenticates
    and redeems codes."""
    code = flow.login_code()
    clients.find("rp-web")

    def no_read(value):
        raise AssertionError(f"client {value!r} read from the database, not from the cache")

    monkeypatch.setattr(clients._CACHE, "_query", no_read)
    assert flow.redeem(code).status_code == 200


def test_garbage_ids(app):
    for bad in (None, "", "x" * 101, 42):
        assert clients.find(bad) is None


def test_a_read_overtaken_by_a_change_is_not_cached(app):
    """A lookup misses and reads the row; a change commits (dropping the entry) before the
    lookup fills the cache: the fill from the stale read must be refused, or the old
    registration (an old secret, say) would be served from the cache for its whole TTL."""
    from idp.crypto.secrets import keyed_hash

    register_client("rp-race")
    original = clients._CACHE._query

    def read_then_overtaken(value):
        row = original(value)
        stale = {c.key: getattr(row, c.key) for c in Client.__table__.columns}
        with app.app_context():  # another request rotates the secret and commits now
            other = db.session.execute(db.select(Client).filter_by(client_id="rp-race")).scalar_one()
            other.secret_hash = keyed_hash("rotated")
            db.session.commit()
            db.session.remove()
        return Client(**stale)

    clients._CACHE._query = read_then_overtaken
    try:
        clients.find("rp-race")
    finally:
        clients._CACHE._query = original
    assert store().get("client:rp-race") is None  # not filled from the stale read
    assert clients.find("rp-race").secret_hash == keyed_hash("rotated")


def test_a_client_id_ending_in_colon_v_is_just_unknown(app, client):
    """The cache's per-row counter must not be readable as the registration of a client
    named "<id>:v"."""
    register_client("rp-count")  # a commit: the counter of rp-count exists now
    assert clients.find("rp-count:v") is None
    resp = client.post("/token", data={"grant_type": "client_credentials"}, auth=("rp-count:v", "x"))
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"


def test_a_row_read_earlier_in_the_transaction_is_not_cached_over_a_newer_one(app):
    """A request that read a client (cache miss) and misses again later in the same
    transaction, after another process changed it (a rotated secret) and dropped the cache
    entry: the new read must be the database's, not the session's copy from before, or the
    old secret goes back into the shared cache for its TTL."""
    from sqlalchemy.orm import Session

    rp = register_client("rp-stale")
    db.session.expire_all()
    before = clients._CACHE.find(rp.client_id).secret_hash  # a miss (shared store), or the row itself
    with Session(db.engine) as other_process:
        row = other_process.execute(db.select(Client).filter_by(client_id=rp.client_id)).scalar_one()
        row.secret_hash = "rotated"
        other_process.commit()  # its after_commit drops the cache entry, bumps the version
    again = clients._CACHE.find(rp.client_id)  # in the same transaction as the first read
    assert before != "rotated" and again.secret_hash == "rotated"
    if store().shared:
        assert store().get(f"client:{rp.client_id}")["secret_hash"] == "rotated"
