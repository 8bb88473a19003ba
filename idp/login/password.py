"""Password hashing with argon2id (RFC 9106), through argon2-cffi.

argon2-cffi gives the reference implementation, encodes parameters in the hash and
tells when they are outdated (check_needs_rehash), so nothing here is hand-rolled.
"""

from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app


@lru_cache(maxsize=4)
def _hasher(memory_kib: int, time_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(memory_cost=memory_kib, time_cost=time_cost, parallelism=parallelism, type=Type.ID)


def hasher() -> PasswordHasher:
    c = current_app.config
    return _hasher(c["ARGON2_MEMORY_KIB"], c["ARGON2_TIME_COST"], c["ARGON2_PARALLELISM"])


@lru_cache(maxsize=4)
def _dummy_hash(ph: PasswordHasher) -> str:
    return ph.hash("dummy password for unknown accounts")


def hash_password(password: str) -> str:
    return hasher().hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Verify in the same time whether or not the account exists.

    With no stored hash (unknown email, account without password) a dummy hash of the
    same cost is verified, so response time does not tell whether an email is registered.
    """
    ph = hasher()
    try:
        return ph.verify(stored_hash or _dummy_hash(ph), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return hasher().check_needs_rehash(stored_hash)
