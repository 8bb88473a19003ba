"""Token families whose access tokens are still to be deleted from the store (idp.oauth.tokens).

A revocation is two halves: the database's (the family's row, its refresh tokens) and the
store's (its access tokens). When the store is out of reach at that moment (a logout, a sign
out everywhere, a client removed, a reused refresh token), the database's half is done and the
families are written here; the server's maintenance run (logout-retry) deletes their access
tokens once the store answers again, rather than leave them live for their ACCESS_TOKEN_TTL.
"""

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class PendingSweep(db.Model):
    __tablename__ = "pending_sweep"

    grant_id: Mapped[str] = mapped_column(String(100), primary_key=True)  # a Grant.id or a cc family id
    reason: Mapped[str] = mapped_column(String(60))
    recorded_at: Mapped[int] = mapped_column(BigInteger)  # Unix time of the store's failure
