"""A request's read-only transaction ends with COMMIT; one that wrote, or failed, is rolled back
(idp.ops.transactions: a rollback makes psycopg forget the connection's prepared statements)."""

import pytest
from sqlalchemy import event, update

from idp.extensions import db
from idp.models import Account


@pytest.fixture
def ends(app):
    """How the transactions of the block ended: a list of "commit" and "rollback"."""
    seen = []
    engine = db.engine

    def commit(conn):
        seen.append("commit")

    def rollback(conn):
        seen.append("rollback")

    event.listen(engine, "commit", commit)
    event.listen(engine, "rollback", rollback)
    yield seen
    event.remove(engine, "commit", commit)
    event.remove(engine, "rollback", rollback)


def test_a_request_that_only_read_commits(app, client, seller, ends):
    with app.app_context():
        assert db.session.get(Account, seller.id).email == seller.email
    assert ends == ["commit"]


def test_a_request_that_wrote_without_committing_is_rolled_back(app, seller, ends):
    with app.app_context():
        db.session.execute(update(Account).where(Account.id == seller.id).values(name="Half Done"))
    assert ends == ["rollback"]
    with app.app_context():
        assert db.session.get(Account, seller.id).name == "Sam Seller"


def test_a_pending_change_is_not_committed_by_the_end_of_the_request(app, seller, ends):
    with app.app_context():
        db.session.get(Account, seller.id).name = "Never Flushed"
    with app.app_context():
        assert db.session.get(Account, seller.id).name == "Sam Seller"
    assert "commit" not in ends[:1]


def test_a_request_that_failed_is_rolled_back(app, seller, ends):
    with pytest.raises(RuntimeError):
        with app.app_context():
            db.session.get(Account, seller.id)
            raise RuntimeError("the request failed")
    assert ends == ["rollback"]


def test_userinfo_reading_an_account_past_the_cache_commits(app, client, flow, seller, ends):
    """The row cache's miss is a read in the request's session: committed, not rolled back."""
    from idp.extensions import store
    from idp.oauth.userinfo import _ACCOUNTS

    token = flow.redeem(flow.login_code()).get_json()["access_token"]
    store().delete(_ACCOUNTS.key(seller.id))  # the account's claims leave the shared cache, if any
    ends.clear()
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert "rollback" not in ends


def test_a_request_that_never_touches_the_database_gets_no_session(app, client, monkeypatch):
    """Ending a request that used no database (the token hot paths use the store only; the
    liveness probe here) must not make a session just to find it has nothing to end: that
    cost 6 us a request."""
    made = []
    registry = db.session.registry
    create = registry.createfunc
    monkeypatch.setattr(registry, "createfunc", lambda: made.append(1) or create())
    assert client.get("/healthz").status_code == 200
    assert made == []
