from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._types import JSONList, UTCDateTime, utcnow


class Consent(db.Model):
    """Scopes an account granted a client; remembered so consent is asked once."""

    __tablename__ = "consent"
    __table_args__ = (UniqueConstraint("account_id", "client_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[list] = mapped_column(JSONList, default=list)
    granted_at = mapped_column(UTCDateTime, default=utcnow)

    def covers(self, scopes) -> bool:
        return set(scopes) <= set(self.scopes or [])
