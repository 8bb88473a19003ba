"""Deleting token families whose absolute lifetime is over, with their refresh tokens.

A family (Grant) ends at ``expires_at`` (REFRESH_TOKEN_ABSOLUTE_TTL after the sign-in); after
that none of its tokens can be used, so the rows are only weight. Rotated tokens are kept
while their family lives: presenting one is how reuse is detected (RFC 9700 §4.14.2), so no
token is deleted on its own. refresh_token has no foreign key to its family (see
idp.models.grant), so the tokens are deleted here, then the family; tokens whose family is
already gone (deleted by hand) go too. Access tokens live in the store and expire there.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, select

from ..extensions import db
from ..models import Grant, RefreshToken


def prune_ended_families(before: datetime, batch: int = 1000) -> dict:
    """Delete families that ended before ``before``, ``batch`` at a time, each batch its own
    transaction (a long run never holds locks for long). Returns the counts."""
    families = tokens = 0
    while True:
        ids = db.session.scalars(select(Grant.id).where(Grant.expires_at < before).limit(batch)).all()
        if not ids:
            break
        tokens += db.session.execute(delete(RefreshToken).where(RefreshToken.grant_id.in_(ids))).rowcount
        families += db.session.execute(delete(Grant).where(Grant.id.in_(ids))).rowcount
        db.session.commit()
    orphans = db.session.execute(
        delete(RefreshToken).where(~exists().where(Grant.id == RefreshToken.grant_id))).rowcount
    db.session.commit()
    return {"families": families, "refresh_tokens": tokens, "orphaned_refresh_tokens": orphans}
