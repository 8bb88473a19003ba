"""Client lookups: cached in the shared store, dropped by any change to the client."""

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


def test_cached_client_authenticates(flow, app):
    """A client rebuilt from the cache still authenticates and redeems codes."""
    clients.find("rp-web")
    assert flow.redeem(flow.login_code()).status_code == 200


def test_garbage_ids(app):
    for bad in (None, "", "x" * 101, 42):
        assert clients.find(bad) is None
