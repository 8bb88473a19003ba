"""UserInfo claims through the shared row cache: a change to the account is seen at once."""

import pytest

from idp.extensions import db, store
from idp.models import Account


def _userinfo(flow, token):
    return flow.client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})


def _token(flow):
    return flow.redeem(flow.login_code(scope="openid email profile")).get_json()["access_token"]


def test_claims_change_is_seen_on_the_next_call(flow, seller):
    token = _token(flow)
    assert _userinfo(flow, token).get_json()["email"] == "seller@example.com"
    assert _userinfo(flow, token).get_json()["name"] == "Sam Seller"  # answered from the cache when shared
    row = db.session.get(Account, seller.id)
    row.email, row.name = "renamed@example.com", "Sam Renamed"
    db.session.commit()
    body = _userinfo(flow, token).get_json()
    assert body["email"] == "renamed@example.com" and body["name"] == "Sam Renamed"


def test_suspension_is_seen_on_the_next_call(flow, seller):
    token = _token(flow)
    assert _userinfo(flow, token).status_code == 200
    db.session.get(Account, seller.id).status = "suspended"
    db.session.commit()
    resp = _userinfo(flow, token)
    assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def test_cached_only_in_a_shared_store_and_without_secrets(flow, seller):
    _userinfo(flow, _token(flow))
    cached = store().get(f"account-claims:{seller.id}")
    assert (cached is not None) == store().shared
    if cached is not None:
        assert cached["sub"] == seller.sub and "password_hash" not in cached


def test_rolled_back_change_is_not_remembered(flow, seller):
    token = _token(flow)
    db.session.get(Account, seller.id).name = "Never Committed"
    db.session.flush()
    db.session.rollback()
    assert _userinfo(flow, token).get_json()["name"] == "Sam Seller"


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)  # the shared store: Redis
def test_a_call_whose_claims_are_cached_is_one_store_round_trip(flow, seller, monkeypatch):
    token = _token(flow)
    assert _userinfo(flow, token).status_code == 200  # fills the claims' cache entry
    s = store()
    trips, send, execute = [], s._send, s._r.execute_command
    monkeypatch.setattr(s, "_send", lambda commands: trips.append([c[0] for c in commands]) or send(commands))
    monkeypatch.setattr(s._r, "execute_command", lambda *a, **k: trips.append([a[0]]) or execute(*a, **k))
    assert _userinfo(flow, token).get_json()["email"] == "seller@example.com"
    assert trips == [["EVALSHA"]]  # the token and its account's claims, read together
