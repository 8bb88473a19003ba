"""Ending one browser session: what RP-initiated logout does after the user agreed.

1. Mark the session ended (a conditional UPDATE by ``sid``, which a renewal of the session
   does not change, so two logouts racing end it once and only the winner notifies anyone);
2. revoke the token families born in this session (``Grant.sid``), except those granted
   with ``offline_access``: offline access is by definition meant to outlive the session
   (OIDC Core §11), and the relying party can revoke it itself (RFC 7009). Those keep
   their tokens but lose the session's ``sid``: a refresh then gives no ID token
   (idp.oauth.refresh; OIDC Core §12.2 lets it), which would tell the client the seller is
   signed in, under a sid whose logout token has gone out already, so that no logout could
   reach a session the client opened from it (Back-Channel Logout 1.0 §2.4);
3. tell every client that received an ID token in this session, through back-channel logout:
   the list as the UPDATE found it, not as read before (a sign-in to one more client may
   have added to it meanwhile; it holds the row's lock, so the UPDATE sees its commit). The
   deliveries' rows are written in the same transaction (backchannel.written_ahead), so an
   ended session always leaves its relying parties to be told.

Clearing the cookie is the view's job: this module works without a request.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import update

from ..extensions import db
from ..models import Account, BrowserSession, Grant
from ..oauth import tokens
from . import backchannel


def session_grants(sid: str, *, include_offline: bool) -> list[Grant]:
    rows = db.session.execute(
        db.select(Grant).where(Grant.sid == sid, Grant.revoked_at.is_(None))).scalars().all()
    return [g for g in rows if include_offline or "offline_access" not in (g.scope or "").split()]


def end(row: BrowserSession, account: Account, reason: str = "logout") -> backchannel.Report | None:
    """End ``row``; None if it had already ended (someone else did the rest).

    The session and its families end in one transaction: were the families revoked one by
    one after the session's commit, a failure half-way (the store or the database in an
    outage: the answer is a 503) would leave the rest live for good, since a retry finds no
    session to end. The store's half (marks, access tokens) follows; if it fails, the
    refresh tokens are dead already, the families are written down for the next maintenance
    run to sweep their access tokens (tokens.sweep_pending), and the back-channel logout
    still goes out (unless the store is down altogether)."""
    now = datetime.now(timezone.utc)
    ended = db.session.execute(
        update(BrowserSession).where(BrowserSession.sid == row.sid, BrowserSession.ended_at.is_(None))
        .values(ended_at=now).returning(BrowserSession.clients)
        .execution_options(synchronize_session=False)).first()
    if ended is None:
        db.session.rollback()
        return None
    grants = [grant.id for grant in session_grants(row.sid, include_offline=False)]
    if grants:
        grants = tokens.revoke_families(Grant.id.in_(grants), reason, now)
    db.session.execute(update(Grant).where(Grant.sid == row.sid, Grant.revoked_at.is_(None)).values(sid=None)
                       .execution_options(synchronize_session=False))
    targets = backchannel.written_ahead(backchannel.targets([(account.sub, row.sid, list(ended.clients or []))]))
    db.session.commit()
    tokens.kill_families_access_tokens(grants, reason)
    return backchannel.notify(targets)
