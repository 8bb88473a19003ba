"""The prune job (idp.oauth.prune, `idp maintenance run prune`): ended token families go with their refresh tokens."""

from datetime import datetime, timedelta, timezone

from freezegun import freeze_time
from sqlalchemy import func, insert, select

from idp.crypto.secrets import keyed_hash
from idp.extensions import db
from idp.models import Grant, RefreshToken
from idp.oauth import tokens
from idp.oauth.prune import prune_ended_families
from tests.integration.token_helpers import login, refresh


def _tokens_of(grant_id):
    return db.session.scalar(select(func.count()).select_from(RefreshToken).where(RefreshToken.grant_id == grant_id))


def test_ended_families_go_with_their_tokens_and_live_ones_stay(app, flow):
    first = login(flow)
    ended = tokens.find_access_token(first["access_token"])["grant_id"]
    assert refresh(flow.client, flow.rp, first["refresh_token"]).status_code == 200
    assert _tokens_of(ended) == 2  # the rotated one is kept while the family lives
    later = datetime.now(timezone.utc) + timedelta(seconds=app.config["REFRESH_TOKEN_ABSOLUTE_TTL"] + 60)
    with freeze_time(later):
        second = login(flow)
        live = tokens.find_access_token(second["access_token"])["grant_id"]
        db.session.execute(insert(RefreshToken).values(  # a family deleted by hand left this behind
            token_hash=keyed_hash("orphan"), grant_id="deleted-by-hand", client_id=flow.rp.client_id, scope="openid",
            created_at=later, expires_at=later, generation=0))
        db.session.commit()
        counts = prune_ended_families(datetime.now(timezone.utc))
        assert counts == {"families": 1, "refresh_tokens": 2, "orphaned_refresh_tokens": 1}
        db.session.expire_all()
        assert db.session.get(Grant, ended) is None and _tokens_of(ended) == 0
        assert db.session.get(Grant, live) is not None and _tokens_of(live) == 1
        assert refresh(flow.client, flow.rp, second["refresh_token"]).status_code == 200
        assert prune_ended_families(datetime.now(timezone.utc)) == {
            "families": 0, "refresh_tokens": 0, "orphaned_refresh_tokens": 0}


def test_a_family_within_its_grace_is_kept(app, flow):
    body = login(flow)
    grant_id = tokens.find_access_token(body["access_token"])["grant_id"]
    end = db.session.get(Grant, grant_id).expires_at
    assert prune_ended_families(end - timedelta(seconds=1))["families"] == 0
    assert prune_ended_families(end + timedelta(seconds=1))["families"] == 1


def test_orphaned_tokens_go_a_batch_per_transaction(app, flow):
    from sqlalchemy import event

    now = datetime.now(timezone.utc)
    db.session.execute(insert(RefreshToken), [  # families deleted by hand left these behind
        dict(token_hash=keyed_hash(f"orphan-{i}"), grant_id="deleted-by-hand", client_id=flow.rp.client_id,
             scope="openid", created_at=now, expires_at=now, generation=0) for i in range(5)])
    db.session.commit()
    commits, session = [], db.session()

    def count(s):
        commits.append(s)

    event.listen(session, "after_commit", count)
    try:
        counts = prune_ended_families(now, batch=2)
    finally:
        event.remove(session, "after_commit", count)
    assert counts["orphaned_refresh_tokens"] == 5
    assert _tokens_of("deleted-by-hand") == 0
    assert len(commits) >= 3  # 2 + 2 + 1: no transaction held the locks of all five
