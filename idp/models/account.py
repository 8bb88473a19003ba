import secrets

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._types import UTCDateTime, utcnow


def new_subject() -> str:
    """A stable, opaque subject identifier: never the email (OIDC Core §8 pairwise-free public sub)."""
    return secrets.token_urlsafe(16)


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

    @staticmethod
    def normalize_email(email: str) -> str:
        return email.strip().lower()
