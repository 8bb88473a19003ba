""""Sign out everywhere": end every browser session and token family of an account.

Used by the seller (POST /account/sign-out-everywhere) and by the operator (the CLI calls
``sign_out_everywhere(account, actor="operator")``). In order:

1. ``Account.sessions_revoked_at = now``, every live session ended and every non-revoked
   Grant of the account revoked (offline ones included: their refresh tokens die), in one
   transaction: no browser keeps single sign-on and no family outlives it, whatever fails
   after (login.session.current refuses any session created before that instant);
2. the families' access tokens deleted from the store (RFC 7009 §2.1 semantics), best
   effort: with the store out of reach the families are written down for the next
   maintenance run (tokens.sweep_pending), and the rest still runs (a rerun finds nothing
   left to end, so nothing after this may be lost);
3. back-channel logout for every client of every session that was live (each delivery's
   row written in step 1's transaction, so none is lost to a failure in between);
4. a SecurityEvent so the seller and support can see it happened.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import update

from ..extensions import db
from ..models import Account, BrowserSession, Grant, SecurityEvent
from ..oauth import tokens
from . import backchannel

KIND = "sign_out_everywhere"


def _end_live_sessions(account: Account, now: datetime) -> list[tuple[str, list]]:
    """End every live session of ``account`` in one statement; (sid, clients) of each, as the
    statement found them: a session renewed meanwhile (new primary key) or a client added to
    one is still ended and told, which rows read first and written by key were not."""
    query = update(BrowserSession).where(
        BrowserSession.account_id == account.id, BrowserSession.ended_at.is_(None), BrowserSession.expires_at > now)
    if account.sessions_revoked_at is not None:
        query = query.where(BrowserSession.created_at > account.sessions_revoked_at)
    ended = db.session.execute(query.values(ended_at=now).returning(BrowserSession.sid, BrowserSession.clients)
                               .execution_options(synchronize_session=False))
    return [(sid, list(clients or [])) for sid, clients in ended]


def sign_out_everywhere(account: Account, *, actor: str = "seller", status: str | None = None) -> dict:
    """End all of ``account``'s sessions and tokens; return counts for the caller to show.

    ``actor`` ("seller" or "operator") goes into the SecurityEvent. ``status``: the account's
    new status, set in the same transaction (`idp accounts disable`), so no sign-in slips in
    between the sign-out and the status."""
    now = datetime.now(timezone.utc)
    sessions = _end_live_sessions(account, now)
    notify = [(account.sub, sid, clients) for sid, clients in sessions]
    if status is not None:
        account.status = status
    account.sessions_revoked_at = now
    grant_ids = tokens.revoke_families(Grant.account_id == account.id, KIND, now)
    targets = backchannel.written_ahead(backchannel.targets(notify))  # told even if what follows fails
    db.session.commit()
    store_failed = not tokens.kill_families_access_tokens(grant_ids, KIND)

    report = backchannel.notify(targets)
    summary = {"actor": actor, "sessions": len(sessions), "grants": len(grant_ids),
               "backchannel_delivered": len(report.delivered),
               "backchannel_unconfirmed": len(report.failed) + len(report.pending),
               "access_tokens_left_to_expire": store_failed}
    db.session.add(SecurityEvent(account_id=account.id, kind=KIND, detail=summary))
    db.session.commit()
    return summary
