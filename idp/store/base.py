"""The ephemeral store contract.

Everything the IdP keeps only for a short while lives here: authorization
codes, nonces, rate-limit counters, token-family indexes.  Two properties make
those safe, and every backend must provide them:

* **Every key expires.**  There is no ``ttl=None``: a forgotten key in an
  identity provider is a leaked secret, so a TTL in whole seconds (> 0) is
  required by every write.
* **Single use is atomic.**  ``consume`` is a get-and-delete: of any number of
  concurrent callers exactly one receives the value.  This is what makes an
  authorization code redeemable once (RFC 6749 section 4.1.2) even when an
  attacker races the legitimate client.

Values are JSON (``json.dumps`` with compact separators), so a caller always
gets a fresh copy and both backends store the same bytes.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Union

#: What a value may be; it must round-trip through JSON.
Value = Union[dict, list, str, int]

DEFAULT_NAMESPACE = "idp:"


def check_ttl(ttl: object) -> int:
    """Return ``ttl`` if it is a positive int, else raise ValueError.

    Whole seconds only, because Redis ``EX``/``EXPIRE`` take integers and the
    two backends must agree.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return ttl


def dumps(value: object) -> str:
    """Serialise ``value`` as compact JSON; None is refused (it means "absent")."""
    if value is None:
        raise ValueError("None cannot be stored: get() uses None for a missing key")
    return json.dumps(value, separators=(",", ":"))


def loads(raw: str | bytes | None) -> Value | None:
    return None if raw is None else json.loads(raw)


class Store(ABC):
    """Abstract ephemeral key-value store; see the module docstring.

    Keys are plain strings; the backend prefixes each with ``namespace`` so
    several apps (or tests) can share one Redis.  Implementations are
    thread-safe.
    """

    #: True when every process of the deployment sees the same data (Redis), so it may
    #: hold caches that any process invalidates; False for the embedded, per-process store.
    shared = False

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        if not isinstance(namespace, str):
            raise TypeError("namespace must be a str")
        self.namespace = namespace

    def _k(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty str, got {key!r}")
        return self.namespace + key

    @abstractmethod
    def put(self, key: str, value: Value, ttl: int) -> None:
        """Set ``key`` to ``value`` for ``ttl`` seconds, replacing any old value."""

    @abstractmethod
    def put_many(self, entries: list[tuple[str, Value, int]]) -> None:
        """``put`` for each (key, value, ttl), in one round trip (pipelined SETs; each is
        atomic, the set of them is not)."""

    @abstractmethod
    def add(self, key: str, value: Value, ttl: int) -> bool:
        """Set ``key`` only if it is absent (atomic, like ``SET NX EX``).

        Returns True if this caller set it.  Of concurrent callers exactly one
        gets True, which is how a nonce or ``jti`` is recorded as seen once.
        """

    @abstractmethod
    def get(self, key: str) -> Value | None:
        """Return the value, or None if absent or expired.  Does not consume."""

    @abstractmethod
    def get_many(self, keys: list[str]) -> list[Value | None]:
        """``get`` for several keys in one round trip (``MGET``), in order."""

    @abstractmethod
    def get_many_following(self, keys: list[str], field: str,
                           prefix: str) -> tuple[list[Value | None], str | None, Value | None]:
        """(``get_many(keys)``, the key the last one's value names, and that key's value), the
        second read in the same round trip: when the last value is an object whose ``field`` is
        a string or a whole number (below 2**53, written without a fraction: 7 and 7.0 both
        name ``prefix + "7"``), the key named is ``prefix`` + that; else (values, None, None).
        A record and the entry it names, such as an access token and its account's cached
        claims, with other keys known beforehand (its family's revocation mark). Two reads,
        not one atomic step; a key of another type reads as missing, as in ``get_many``. For a
        few keys (Redis's Lua unpacks them: thousands would fail there)."""

    def get_following(self, key: str, field: str, prefix: str) -> tuple[Value | None, str | None, Value | None]:
        """``get_many_following`` for one key: (its value, the key it names, that key's value)."""
        values, named, followed = self.get_many_following([key], field, prefix)
        return values[0], named, followed

    @abstractmethod
    def consume(self, key: str) -> Value | None:
        """Atomically get and delete ``key`` (``GETDEL``).

        The single-use primitive: of any number of concurrent callers exactly
        one receives the value, every other one gets None.  Never emulate it
        with ``get`` then ``delete``; that lets a code be redeemed twice.
        """

    @abstractmethod
    def consume_leaving(self, key: str, mark: str, value: Value, ttl: int) -> Value | None:
        """``consume``; the caller that receives the value also sets ``mark`` to ``value`` for
        ``ttl`` seconds, in the same atomic step.

        A single-use secret that remembers it was used: an authorization code, whose replay
        must be told apart from a code that expired unused (RFC 6749 §4.1.2). Set apart, by
        a second write, a replay between the two would find neither the code nor the mark.
        """

    @abstractmethod
    def swap(self, key: str, value: Value, ttl: int) -> Value | None:
        """Set ``key`` to ``value`` for ``ttl`` seconds and return what it held before (None
        if absent), in one atomic step (``SET ... GET``): of two callers at once, the second
        gets the first's value."""

    @abstractmethod
    def delete(self, *keys: str) -> None:
        """Delete the given keys; missing keys are ignored."""

    @abstractmethod
    def incr(self, key: str, ttl: int) -> int:
        """Increment a counter and return the new value (1 when created).

        The TTL is set only when the counter is created and is not extended by
        later increments: a fixed window, so a client hammering a rate limit
        cannot keep its own window open forever.
        """

    @abstractmethod
    def ttl_of(self, key: str) -> int | None:
        """Remaining lifetime in whole seconds (rounded up, so >= 1 while the
        key lives), or None if the key is absent.  Used for ``Retry-After``."""

    @abstractmethod
    def sadd(self, key: str, member: str, ttl: int) -> None:
        """Add ``member`` to the set at ``key``.

        The set's TTL becomes max(remaining, ttl): an index of a token family
        must live at least as long as the newest token it points to.
        """

    @abstractmethod
    def counter(self, key: str) -> int:
        """The value of the counter at ``key`` (``incr``), 0 if absent or expired."""

    @abstractmethod
    def put_if_counter(self, key: str, value: Value, ttl: int, counter: str, expected: int) -> bool:
        """Atomically: ``put(key)`` only if ``counter(counter) == expected``; True if it did.

        How a cache is filled from a read that a concurrent change may have overtaken: the
        change increments the counter before it drops the cached copy, and the filler
        read the counter before reading the source, so a fill from a stale read is refused.
        """

    @abstractmethod
    def put_checked(self, key: str, value: Value, ttl: int, check: str) -> Value | None:
        """``put(key)``, then ``get(check)`` as it is after that write, in one round trip.

        How a token is written on the strength of something that may change meanwhile (a
        process's copy of a client registration, its family's revocation mark): the caller
        compares what it relied on with what ``check`` holds after its write, and deletes the
        write if they differ. A change made after this read is for the token's reader to
        judge (idp.oauth.tokens: a client-credentials token is judged by its family's mark).
        """

    @abstractmethod
    def put_indexed(self, key: str, value: Value, ttl: int, index: str, check: str) -> Value | None:
        """Atomically, in one round trip: ``put(key)``, add ``key`` to ``index`` until it
        expires (``ttl``), and return ``get(check)``.

        How a token joins its family: the family's revocation writes ``check`` and then
        deletes every member of ``index`` (``index_members``), so either that sweep finds
        this key or this call sees ``check`` and the caller deletes what it just wrote.
        ``check`` may also be a value the write was made on the strength of (a process's
        copy of a client registration): the caller compares it with what it relied on, and
        deletes its write if they differ.

        The index drops members whose time is up at each write and lives as long as its
        newest member: a family refreshed every few minutes for a month holds the access
        tokens of the last ``ttl`` seconds, not every one it ever had.
        """

    @abstractmethod
    def index_members(self, index: str) -> set[str]:
        """The keys in ``index`` (``put_indexed``); an empty set if absent or expired. Keys
        whose time is up may still be listed until the next write drops them."""

    @abstractmethod
    def smembers(self, key: str) -> set[str]:
        """Members of the set at ``key``; an empty set if absent or expired."""

    @abstractmethod
    def ping(self) -> bool:
        """True if the backend is reachable (health checks); never raises."""

    @abstractmethod
    def clear(self) -> None:
        """Delete every key in this store's namespace (tests, maintenance)."""

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""
