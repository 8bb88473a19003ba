"""Password hashing with argon2id (RFC 9106).

Two well-kept libraries:

- **argon2-cffi hashes and judges the cost.** New hashes take the configured parallelism
  (libsodium only makes p=1), and ``check_needs_rehash`` compares a stored hash's
  parameters with the configured ones, so nothing here parses a hash by hand.
- **The faster of the two verifies.** Verification runs at every sign-in. Which one is faster
  depends on how argon2-cffi's C code was built. libsodium (PyNaCl) picks an AVX2/AVX-512
  block function at run time but maps a fresh 19 MiB for each verification (10-14 ms of user
  and 5-8 ms of kernel time here); argon2-cffi's PyPI wheel is portable SSE2 code (37 ms), but
  built for the host's CPU (``make argon2-native``) it takes 13-15 ms and no kernel time, since
  the C library's memory is reused (README, Benchmark). So with ``ARGON2_VERIFIER = "auto"``
  each process times both on its dummy hash when it starts and keeps the faster.

Both must answer alike for every stored hash, or an imported account would sign in on one
worker and not on another. libsodium reads only argon2id and argon2i, version 19, tags of 16
bytes or more, in strings of at most 127 bytes; argon2-cffi also verifies argon2d, version 16 and
shorter tags, so any other hash goes to argon2-cffi whichever library was chosen.

Every verification in a process, of a real hash or of the dummy one, goes through the same
library, so the choice does not tell a registered email from an unknown one.
"""

import logging
import time
from collections.abc import Callable
from functools import lru_cache

import nacl.exceptions
import nacl.pwhash.argon2id
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

from ..ops import turns

log = logging.getLogger(__name__)

@lru_cache(maxsize=4)
def _hasher(memory_kib: int, time_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(memory_cost=memory_kib, time_cost=time_cost, parallelism=parallelism, type=Type.ID)


def hasher() -> PasswordHasher:
    c = current_app.config
    return _hasher(c["ARGON2_MEMORY_KIB"], c["ARGON2_TIME_COST"], c["ARGON2_PARALLELISM"])


@lru_cache(maxsize=4)
def _dummy_hash(ph: PasswordHasher) -> bytes:
    return ph.hash("dummy password for unknown accounts").encode()


Verifier = Callable[[bytes, str], bool]  # (stored hash, password) -> whether it matches


def _libsodium_reads(encoded: bytes) -> bool:
    """Whether libsodium verifies this hash as argon2-cffi would (see the module docstring)."""
    if len(encoded) > nacl.pwhash.argon2id.PWHASH_SIZE:  # 127: PyNaCl refuses longer (ValueError)
        return False
    try:
        found = extract_parameters(encoded.decode("ascii"))
    except (InvalidHashError, UnicodeDecodeError):
        return False  # argon2-cffi judges what it cannot parse
    return found.type in (Type.ID, Type.I) and found.version == 19 and found.hash_len >= 16


def _libsodium(encoded: bytes, password: str) -> bool:
    if not _libsodium_reads(encoded):
        return _argon2_cffi(encoded, password)
    try:
        return nacl.pwhash.argon2id.verify(encoded, password.encode("utf-8"))
    except (nacl.exceptions.InvalidkeyError, ValueError):  # wrong password, or not a hash it reads
        return False


def _argon2_cffi(encoded: bytes, password: str) -> bool:
    try:  # the type (argon2id, or argon2i imported from elsewhere) is read from the hash
        return _ANY_COST.verify(encoded, password.encode("utf-8"))
    except (VerificationError, InvalidHashError):  # wrong password, or not an argon2 string
        return False


_ANY_COST = PasswordHasher()  # verify() takes the cost from the hash, not from the hasher
VERIFIERS: dict[str, Verifier] = {"libsodium": _libsodium, "argon2-cffi": _argon2_cffi}


def _cpu(verify: Verifier, encoded: bytes, rounds: int = 3) -> float:
    """The least CPU time (user and kernel) ``verify`` takes on ``encoded`` after one warm-up:
    a fresh mapping counts, and so do the threads argon2-cffi runs one lane each in when p > 1;
    time spent waiting for the CPU does not. The whole process's clock: nothing else runs in a
    serving process before it has chosen (create_server_app)."""
    verify(encoded, "warm-up")
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        verify(encoded, "calibration")
        best = min(best, time.process_time() - start)
    return best


@lru_cache(maxsize=4)
def _fastest(ph: PasswordHasher) -> tuple[str, float]:
    """The faster verifier on the dummy hash, and its time (kept for _pad)."""
    costs = {name: _cpu(verify, _dummy_hash(ph)) for name, verify in VERIFIERS.items()}
    name = min(costs, key=costs.__getitem__)
    log.info("password verifier: %s (%s)", name, ", ".join(f"{n} {c * 1000:.1f} ms" for n, c in costs.items()))
    return name, costs[name]


def verifier() -> Verifier:
    setting = current_app.config["ARGON2_VERIFIER"]
    return VERIFIERS[_fastest(hasher())[0] if setting == "auto" else setting]


def prepare() -> None:
    """Make this process's dummy hash, choose its verifier and time it now (needs an app
    context): done on first use, they would make the first unknown email a process sees
    slower than a known one."""
    verifier()


def hash_password(password: str) -> str:
    ph = hasher()
    with turns.waiting():
        return ph.hash(password)


def _verify(encoded: bytes, password: str) -> bool:
    verify = verifier()
    with turns.waiting():  # 13-40 ms in C without the GIL: the worker serves others meanwhile
        return verify(encoded, password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Verify in the same time whether or not the account exists.

    With no stored hash (unknown email, account without password) a dummy hash of the
    same cost is verified, so response time does not tell whether an email is registered.

    After the configured cost is raised, an account keeps its cheaper hash until its next
    sign-in (needs_rehash), and a wrong password for it was answered sooner than an unknown
    email's (18.7 against 62.2 ms with ARGON2_TIME_COST 2 → 8, in a review): that told who is
    registered. Such a failure now waits out what the dummy takes (``_pad``). A cost that was
    lowered leaves the opposite gap, which only the next sign-ins close.
    """
    if not stored_hash:
        _verify(_dummy_hash(hasher()), password)
        return False
    started = time.perf_counter()
    ok = _verify(stored_hash.encode("ascii", "replace"), password)
    if not ok and needs_rehash(stored_hash):
        _pad(started)
    return ok


def _pad(started: float) -> None:
    """Wait until verifying the dummy hash, started at ``started``, would have ended."""
    wait = _dummy_seconds(hasher()) - (time.perf_counter() - started)
    if wait > 0:
        with turns.waiting():
            time.sleep(wait)


def _dummy_seconds(ph: PasswordHasher) -> float:
    """How long this process's verifier takes on the dummy hash (the least of three: a wait a
    little short rather than a little long): the timing that chose it; a configured one,
    which nothing times at the start, is timed at the first wait."""
    setting = current_app.config["ARGON2_VERIFIER"]
    return _fastest(ph)[1] if setting == "auto" else _timed(ph, setting)


@lru_cache(maxsize=4)
def _timed(ph: PasswordHasher, name: str) -> float:
    return _cpu(VERIFIERS[name], _dummy_hash(ph))


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made at other parameters than the configured ones (or is
    no argon2 string at all: verified False, and to be replaced if it ever matched)."""
    try:
        return hasher().check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
