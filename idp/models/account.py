import secrets
import unicodedata

from sqlalchemy import Boolean, Integer, String, and_, event, or_
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._types import UTCDateTime, utcnow


def new_subject() -> str:
    """A stable, opaque subject identifier: never the email (OIDC Core §8 pairwise-free public sub)."""
    return secrets.token_urlsafe(16)


def usable_since(account, created_at) -> bool:
    """The one rule for what a sign-in of ``account`` made at ``created_at`` (a browser session,
    a token family): it lives while the account is active and has not been signed out
    everywhere at or after that instant. Equal instants count as before: a sign-out and a
    sign-in in the same microsecond leave nothing alive. ``Account.usable_since_sql`` is the
    same rule in SQL; idp.oauth.refresh_rotation and idp.oauth.code_redemption write it by
    hand in their statements (change all four together)."""
    if account is None or account.status != "active":
        return False
    revoked = account.sessions_revoked_at
    return revoked is None or revoked < created_at


class Account(db.Model):
    __tablename__ = "account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sub: Mapped[str] = mapped_column(String(64), unique=True, default=new_subject)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-cased
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at = mapped_column(UTCDateTime, default=utcnow)
    # Bumped by "sign out everywhere": sessions and tokens issued before it are dead.
    sessions_revoked_at = mapped_column(UTCDateTime, nullable=True)

    @classmethod
    def usable_since_sql(cls, created_at):
        """``usable_since`` as a SQL condition over a ``created_at`` column."""
        return and_(cls.status == "active",
                    or_(cls.sessions_revoked_at.is_(None), cls.sessions_revoked_at < created_at))

    @staticmethod
    def normalize_email(email: str) -> str:
        # NFC: "é" typed as one character or as "e" and a combining accent (pasted from macOS)
        # is one address, one account; then lower case, as before.
        return unicodedata.normalize("NFC", email.strip()).lower()

    @classmethod
    def by_email(cls, email: str):
        """The account of ``email`` however its accents were typed: new accounts keep the NFC
        form, and one made before emails were normalised may hold the decomposed one (NFD)."""
        forms = {unicodedata.normalize(f, email.strip()).lower() for f in ("NFC", "NFD")}
        found = db.session.scalars(db.select(cls).where(cls.email.in_(forms))).all()
        nfc = cls.normalize_email(email)
        return next((a for a in found if a.email == nfc), found[0] if found else None)


@event.listens_for(Account.status, "set")
def _leaving_active_ends_every_sign_in(account, value, previous, initiator):
    """An account that stops being active has every sign-in made so far end for good, as at a
    sign out everywhere: were only the status checked (usable_since), making it active again
    (an appeal granted, a mistake undone) would bring back every session and token family it
    had, including those of whoever it was disabled for. `idp accounts disable` also ends the
    sessions and tells the relying parties (idp.logout.everywhere)."""
    if previous == "active" and value != "active":
        account.sessions_revoked_at = utcnow()
