"""Token families (RFC 9700 §4.14): every access and refresh token descended from one
authorization (one code redemption, one client_credentials call) shares a Grant.
Revoking the Grant kills the whole family.
"""

import secrets

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ._types import JSONList, UTCDateTime, utcnow


def new_grant_id() -> str:
    return secrets.token_urlsafe(16)


class Grant(db.Model):
    __tablename__ = "grant"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_grant_id)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(100), index=True)
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(String(1000), default="")
    resource: Mapped[list] = mapped_column(JSONList, default=list)  # RFC 8707 audiences
    auth_time = mapped_column(UTCDateTime, nullable=True)
    acr: Mapped[str | None] = mapped_column(String(100))
    amr: Mapped[list] = mapped_column(JSONList, default=list)
    created_at = mapped_column(UTCDateTime, default=utcnow)
    expires_at = mapped_column(UTCDateTime)  # absolute lifetime of the family
    revoked_at = mapped_column(UTCDateTime, nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(60))
    account = relationship("Account", lazy="select")


class RefreshToken(db.Model):
    """One refresh token of a family; only the keyed hash of the token is kept."""

    __tablename__ = "refresh_token"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The family. No foreign key, on purpose: PostgreSQL's check of one (a trigger locking
    # the grant row FOR KEY SHARE) cost more than the rest of a rotation together (about
    # 0.13-0.39 ms of server CPU against 0.07). Integrity holds by construction: a token is
    # only ever inserted from its grant's row, in the statement or transaction that reads
    # or inserts that row (tokens.issue, refresh_rotation). The IdP deletes a grant only
    # PRUNE_GRACE_DAYS after its family ended (idp.oauth.prune), with its tokens; a token a
    # rotation wrote into a family deleted meanwhile, or a grant deleted by hand, leaves rows
    # no request can use (every lookup joins the grant), which prune's orphan sweep removes.
    grant_id: Mapped[str] = mapped_column(String(40), index=True)
    client_id: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(1000), default="")
    created_at = mapped_column(UTCDateTime, default=utcnow)
    expires_at = mapped_column(UTCDateTime)  # idle lifetime, capped by the grant's
    # Set, atomically and once, when this token is exchanged for its successor.
    rotated_at = mapped_column(UTCDateTime, nullable=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
