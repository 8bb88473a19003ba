"""Back-channel logout deliveries waiting for a retry (idp.logout.backchannel).

In the database, not the ephemeral store: a relying party that missed a logout token keeps
a session the IdP ended, so the retry must survive a Redis restart. A row holds what is
needed to sign a fresh logout token (never the token itself).
"""

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class BackchannelDelivery(db.Model):
    __tablename__ = "backchannel_delivery"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100))
    sub: Mapped[str] = mapped_column(String(64))
    sid: Mapped[str | None] = mapped_column(String(64))
    tries: Mapped[int] = mapped_column(Integer)  # deliveries that failed so far
    first_at: Mapped[int] = mapped_column(BigInteger)  # Unix time of the first delivery
    recorded_at: Mapped[int] = mapped_column(BigInteger)  # Unix time of the last failure
    # Unix time until which a retry run holds the row (idp.logout.backchannel._claim); the row
    # is deleted once its delivery is settled, so a run that dies leaves it for the next one.
    leased_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
