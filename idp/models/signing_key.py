"""The signing keys, when KEYS_STORE=database (idp.crypto.key_storage.DatabaseStorage).

Only the sealed private JWK is kept (AES-256-GCM under a key derived from SECRET_KEY, the kid
bound as associated data: idp.crypto.keys); times are Unix seconds, as in the key files.
"""

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class SigningKey(db.Model):
    __tablename__ = "signing_key"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)  # RFC 7638 thumbprint
    alg: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[int] = mapped_column(BigInteger)
    not_before: Mapped[int] = mapped_column(BigInteger)
    serial: Mapped[int] = mapped_column(Integer)
    sealed: Mapped[str] = mapped_column(Text)


class SigningKeyState(db.Model):
    """One row (id 1): every change to signing_key first increments ``version`` in the same
    transaction. Its row lock serialises the writers of all processes, and readers re-read
    the keys when the version they saw has changed."""

    __tablename__ = "signing_key_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
