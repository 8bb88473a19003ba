"""In-process store for ``make run`` and tests.

Expiry is computed from ``time.time()`` (looked up at call time) so that
freezegun moves it.  One lock guards every operation, which makes ``add`` and
``consume`` atomic across threads; it is not shared between processes, so
use Redis as soon as more than one worker serves requests.
"""

from __future__ import annotations

import math
import re
import threading
import time

from .base import DEFAULT_NAMESPACE, Store, Value, check_ttl, dumps, loads

#: What Redis INCR counts on from: the decimal text of a signed 64-bit integer (what put()
#: stores for a JSON int), nothing else (no sign, space or leading zero).
_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,18})")

#: Sweep all expired keys after this many writes, so keys that are never read
#: again (an abandoned authorization code) do not accumulate.
SWEEP_EVERY = 1000


def _named(value) -> str | None:
    """What a record's field names for get_following, read as Redis's Lua (cjson) reads it: a
    string as it is, a whole number (an int, or a float without a fraction) of magnitude below
    2**53 in decimal, anything else (a bool, null, a list, ...) nothing."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None  # a fraction, NaN or an infinity
    return str(int(value)) if abs(value) < 2**53 else None


class MemoryStore(Store):
    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        super().__init__(namespace)
        # full key -> (expires_at, JSON text | int counter | set of members | index: {member: expires_at})
        self._data: dict[str, tuple[float, object]] = {}
        self._lock = threading.RLock()  # re-entrant: put_indexed holds it across three calls
        self._writes = 0

    # Helpers below expect the lock to be held.
    def _live(self, k: str, now: float) -> object | None:
        entry = self._data.get(k)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._data[k]
            return None
        return entry[1]

    def _set(self, k: str, value: object, expires_at: float, now: float) -> None:
        self._data[k] = (expires_at, value)
        self._writes += 1
        if self._writes % SWEEP_EVERY == 0:
            for dead in [key for key, (exp, _) in self._data.items() if exp <= now]:
                del self._data[dead]

    @staticmethod
    def _value(raw: object) -> Value | None:
        if raw is None or isinstance(raw, int):
            return raw  # counters are stored as ints, like Redis INCR
        if isinstance(raw, (set, dict)):
            raise TypeError("key holds a set or an index; use smembers() or index_members()")
        return loads(raw)

    def put(self, key: str, value: Value, ttl: int) -> None:
        k, ttl, raw = self._k(key), check_ttl(ttl), dumps(value)
        with self._lock:
            now = time.time()
            self._set(k, raw, now + ttl, now)

    def put_many(self, entries: list[tuple[str, Value, int]]) -> None:
        prepared = [(self._k(key), dumps(value), check_ttl(ttl)) for key, value, ttl in entries]
        with self._lock:
            now = time.time()
            for k, raw, ttl in prepared:
                self._set(k, raw, now + ttl, now)

    def add(self, key: str, value: Value, ttl: int) -> bool:
        k, ttl, raw = self._k(key), check_ttl(ttl), dumps(value)
        with self._lock:
            now = time.time()
            if self._live(k, now) is not None:
                return False
            self._set(k, raw, now + ttl, now)
            return True

    def get(self, key: str) -> Value | None:
        k = self._k(key)
        with self._lock:
            raw = self._live(k, time.time())
        return self._value(raw)

    def get_many(self, keys: list[str]) -> list[Value | None]:
        with self._lock:
            return self._read_many([self._k(key) for key in keys], time.time())

    def _read_many(self, ks: list[str], now: float) -> list[Value | None]:
        raws = [self._live(k, now) for k in ks]
        # Redis's MGET answers nil for a key of another type: a set or an index reads as missing.
        return [None if isinstance(raw, (set, dict)) else self._value(raw) for raw in raws]

    def get_many_following(self, keys: list[str], field: str,
                           prefix: str) -> tuple[list[Value | None], str | None, Value | None]:
        with self._lock:
            now = time.time()
            values = self._read_many([self._k(key) for key in keys], now)
            last = values[-1] if values else None
            named = _named(last.get(field)) if isinstance(last, dict) else None
            if named is None:
                return values, None, None
            return values, prefix + named, self._read_many([self._k(prefix + named)], now)[0]

    def consume(self, key: str) -> Value | None:
        k = self._k(key)
        with self._lock:
            raw = self._live(k, time.time())
            value = self._value(raw)  # a set or an index raises here, and stays (as GETDEL refuses)
            self._data.pop(k, None)
        return value

    def swap(self, key: str, value: Value, ttl: int) -> Value | None:
        k, ttl, raw = self._k(key), check_ttl(ttl), dumps(value)
        with self._lock:
            now = time.time()
            before = self._value(self._live(k, now))
            self._set(k, raw, now + ttl, now)
        return before

    def consume_leaving(self, key: str, mark: str, value: Value, ttl: int) -> Value | None:
        k, m, ttl, raw_mark = self._k(key), self._k(mark), check_ttl(ttl), dumps(value)
        with self._lock:
            now = time.time()
            taken = self._value(self._live(k, now))
            self._data.pop(k, None)
            if taken is not None:
                self._set(m, raw_mark, now + ttl, now)
        return taken

    def delete(self, *keys: str) -> None:
        ks = [self._k(key) for key in keys]
        with self._lock:
            for k in ks:
                self._data.pop(k, None)

    def incr(self, key: str, ttl: int) -> int:
        k, ttl = self._k(key), check_ttl(ttl)
        with self._lock:
            now = time.time()
            current = self._live(k, now)
            if current is None:
                self._set(k, 1, now + ttl, now)
                return 1
            if isinstance(current, str) and _INTEGER.fullmatch(current) and -2 ** 63 <= int(current) < 2 ** 63:
                current = int(current)  # put(key, 5): Redis INCR counts on from it
            if not isinstance(current, int):
                raise TypeError("key does not hold a counter")
            self._data[k] = (self._data[k][0], current + 1)  # keep the window
            return current + 1

    def ttl_of(self, key: str) -> int | None:
        k = self._k(key)
        with self._lock:
            now = time.time()
            if self._live(k, now) is None:
                return None
            return max(1, math.ceil(self._data[k][0] - now))

    def sadd(self, key: str, member: str, ttl: int) -> None:
        k, ttl = self._k(key), check_ttl(ttl)
        if not isinstance(member, str):
            raise TypeError("set members must be str")
        with self._lock:
            now = time.time()
            members = self._live(k, now)
            if members is None:
                self._set(k, {member}, now + ttl, now)
                return
            if not isinstance(members, set):
                raise TypeError("key does not hold a set")
            members.add(member)
            self._data[k] = (max(self._data[k][0], now + ttl), members)

    def counter(self, key: str) -> int:
        with self._lock:
            current = self._live(self._k(key), time.time())
        if isinstance(current, str) and _INTEGER.fullmatch(current):
            current = int(current)  # put(key, 5): Redis's GET reads it as a counter too
        if current is not None and not isinstance(current, int):
            raise TypeError("key does not hold a counter")
        return current or 0

    def put_if_counter(self, key: str, value: Value, ttl: int, counter: str, expected: int) -> bool:
        check_ttl(ttl)  # whatever the counter says, as the Redis script does
        with self._lock:
            if self.counter(counter) != expected:
                return False
            self.put(key, value, ttl)
            return True

    def put_checked(self, key: str, value: Value, ttl: int, check: str) -> Value | None:
        with self._lock:
            self.put(key, value, ttl)
            return self.get(check)

    def put_indexed(self, key: str, value: Value, ttl: int, index: str, check: str) -> Value | None:
        k, ttl = self._k(index), check_ttl(ttl)
        with self._lock:
            self.put(key, value, ttl)
            now = time.time()
            members = self._live(k, now)
            if members is not None and not isinstance(members, dict):
                raise TypeError("key does not hold an index")
            members = {m: until for m, until in (members or {}).items() if until > now}
            members[key] = now + ttl
            self._data[k] = (max(self._data.get(k, (0.0,))[0], now + ttl), members)
            return self.get(check)

    def index_members(self, index: str) -> set[str]:
        with self._lock:
            members = self._live(self._k(index), time.time())
            if members is not None and not isinstance(members, dict):
                raise TypeError("key does not hold an index")
            return set(members or ())

    def smembers(self, key: str) -> set[str]:
        k = self._k(key)
        with self._lock:
            members = self._live(k, time.time())
            if members is not None and not isinstance(members, set):
                raise TypeError("key does not hold a set")
            return set(members or ())

    def ping(self) -> bool:
        return True

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
