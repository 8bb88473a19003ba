"""Password hashing with argon2id (RFC 9106).

Two well-kept libraries, each where it is better:

- **libsodium (PyNaCl) verifies.** Verification runs at every sign-in; libsodium picks an
  AVX2/AVX-512 block function at run time and took 19-25 ms here for our default cost,
  against 31-40 ms for argon2-cffi's portable build of the reference code (README, Benchmark).
  It reads any standard ``$argon2id$v=19$m=..,t=..,p=..$`` string, whatever its lanes.
- **argon2-cffi hashes and judges the cost.** New hashes take the configured parallelism
  (libsodium only makes p=1), and ``check_needs_rehash`` compares a stored hash's
  parameters with the configured ones, so nothing here parses a hash by hand.
"""

from functools import lru_cache

import nacl.exceptions
import nacl.pwhash.argon2id
from argon2 import PasswordHasher, Type
from flask import current_app

from ..ops import turns


@lru_cache(maxsize=4)
def _hasher(memory_kib: int, time_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(memory_cost=memory_kib, time_cost=time_cost, parallelism=parallelism, type=Type.ID)


def hasher() -> PasswordHasher:
    c = current_app.config
    return _hasher(c["ARGON2_MEMORY_KIB"], c["ARGON2_TIME_COST"], c["ARGON2_PARALLELISM"])


@lru_cache(maxsize=4)
def _dummy_hash(ph: PasswordHasher) -> bytes:
    return ph.hash("dummy password for unknown accounts").encode()


def prepare() -> None:
    """Make this process's dummy hash now (needs an app context): made on first use, it would
    make the first unknown email a process sees slower than a known one."""
    _dummy_hash(hasher())


def hash_password(password: str) -> str:
    ph = hasher()
    with turns.waiting():
        return ph.hash(password)


def _verify(encoded: bytes, password: str) -> bool:
    try:
        with turns.waiting():  # 15-25 ms in C without the GIL: the worker serves others meanwhile
            return nacl.pwhash.argon2id.verify(encoded, password.encode("utf-8"))
    except nacl.exceptions.InvalidkeyError:  # wrong password, or not an argon2id string
        return False


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Verify in the same time whether or not the account exists.

    With no stored hash (unknown email, account without password) a dummy hash of the
    same cost is verified, so response time does not tell whether an email is registered.
    """
    encoded = stored_hash.encode("ascii", "replace") if stored_hash else _dummy_hash(hasher())
    return _verify(encoded, password) and stored_hash is not None


def needs_rehash(stored_hash: str) -> bool:
    return hasher().check_needs_rehash(stored_hash)
