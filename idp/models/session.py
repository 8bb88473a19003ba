from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._types import JSONList, UTCDateTime, utcnow


class BrowserSession(db.Model):
    """The IdP's own session with a browser (single sign-on).

    The cookie carries a random id; only its keyed hash is stored (``id_hash``), so a
    database leak does not hand out live sessions. ``sid`` is the public identifier put in
    ID tokens and logout tokens (OIDC Front/Back-Channel Logout).
    """

    __tablename__ = "browser_session"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    auth_time = mapped_column(UTCDateTime)
    amr: Mapped[list] = mapped_column(JSONList, default=list)
    acr: Mapped[str | None] = mapped_column(String(100))
    created_at = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at = mapped_column(UTCDateTime, default=utcnow)
    expires_at = mapped_column(UTCDateTime)
    ended_at = mapped_column(UTCDateTime, nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(300))
    ip: Mapped[str | None] = mapped_column(String(64))
    # client_ids that received an ID token in this session (for back-channel logout).
    clients: Mapped[list] = mapped_column(JSONList, default=list)
