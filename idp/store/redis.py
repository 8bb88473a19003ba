"""Redis-backed store, shared by every worker process.

Each operation is one round trip and atomic on the server: ``SET NX EX`` for
``add``, ``GETDEL`` (Redis >= 6.2) for ``consume``, ``MGET`` for ``get_many``
and small Lua scripts where a command plus its ``EXPIRE`` must not be
separated (a crash in between would leave a key that never expires). Two are one
round trip without being one atomic step, as their contracts say: ``put_checked`` (a SET
and a GET pipelined) and ``get_many_following`` (two reads).
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError, TryAgainError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..ops import turns
from .base import DEFAULT_NAMESPACE, Store, Value, check_ttl, dumps, loads

# Expire only on creation: a fixed rate-limit window that increments cannot
# extend.  The PTTL check repairs a counter that somehow lost its TTL.
_INCR = """
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return n
"""

# TTL becomes max(remaining, ttl); PTTL is -1 for "no TTL", which also loses.
_SADD = """
redis.call('SADD', KEYS[1], ARGV[1])
local ms = tonumber(ARGV[2]) * 1000
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('PEXPIRE', KEYS[1], ms)
end
return 1
"""

# put_if_counter: SET key only while the counter (absent: 0) holds the expected value.
_PUT_IF_COUNTER = """
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[3]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# consume_leaving: GETDEL the key; only if there was a value, SET the mark. Nothing to undo:
# a script runs whole or not at all.
_CONSUME_LEAVING = """
local v = redis.call('GETDEL', KEYS[1])
if v then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
end
return v
"""

# put_indexed: SET key; in the index (a sorted set scored by expiry in milliseconds, the clock
# SET EX expires by: Redis's own) drop the members whose time is up and add key; the index's
# TTL becomes max(remaining, ttl); GET check. One atomic script.
_PUT_INDEXED = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[2]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + ms, ARGV[3])
if redis.call('PTTL', KEYS[2]) < ms then
  redis.call('PEXPIRE', KEYS[2], ms)
end
return redis.call('GET', KEYS[3])
"""


# get_many_following: MGET KEYS and, when the last value is a JSON object whose ARGV[1] is a
# string or a whole number, GET ARGV[2] .. that value too (as MGET reads it: a key of another
# type is missing); the answer names the key read. The second key is named by the script, not
# declared in KEYS: fine on a Redis server or a Sentinel-managed one, as the store's MGETs
# across prefixes already assume; Redis Cluster is not supported. The first line tells
# Dragonfly, which by default refuses undeclared keys, to allow them (to Redis it is a
# comment). Reads only, so _call may send it again after a broken connection.
_GET_MANY_FOLLOWING = """--!df flags=allow-undeclared-keys
local values = redis.call('MGET', unpack(KEYS))
local value = values[#values]
if not value then return {values, false, false} end
local ok, record = pcall(cjson.decode, value)
if not ok or type(record) ~= 'table' then return {values, false, false} end
local named = record[ARGV[1]]
if type(named) == 'number' and named == math.floor(named) and math.abs(named) < 2^53 then
  named = string.format('%d', named)
elseif type(named) ~= 'string' then
  return {values, false, false}
end
return {values, named, redis.call('MGET', ARGV[2] .. named)[1]}
"""


def _answers(conn, n: int) -> list:
    """The next ``n`` answers on ``conn``, every one read even when one is an error (which is
    raised after: an answer left unread would be taken for the next command's)."""
    out, error = [], None
    for _ in range(n):
        try:
            out.append(conn.read_response())
        except ResponseError as exc:
            error = error or exc
            out.append(None)
    if error is not None:
        raise error
    return out


def eviction_policy(url: str) -> str | None:
    """The ``maxmemory-policy`` of the Redis at ``url``, or None when it cannot be read (CONFIG
    renamed or refused, as managed services do; the server out of reach, which /readyz says).
    Anything but ``noeviction`` may evict a family's revocation mark, and with it bring the
    family's revoked access tokens back (idp.oauth.tokens)."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2, decode_responses=True)
        try:
            return client.config_get("maxmemory-policy").get("maxmemory-policy")
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return None


class Refused(TryAgainError):
    """Redis answered that it takes no writes for now: MISCONF (its last snapshot failed, a full
    disk, and stop-writes-on-bgsave-error is on), NOREPLICAS (fewer replicas than
    min-replicas-to-write), BUSY (a script running too long). redis-py has no class of its own
    for these; as a TRYAGAIN they are an outage (idp.errors.UNAVAILABLE: 503, Retry-After),
    not a 500: nothing the client sent causes them."""


_REFUSALS = frozenset({"MISCONF", "NOREPLICAS", "BUSY"})


def _outage(exc: ResponseError) -> ResponseError:
    """The error to raise for ``exc``: a Refused for a write refused for now, else itself."""
    return Refused(*exc.args, status_code=exc.status_code) if exc.status_code in _REFUSALS else exc


def _reconnect_on_readonly(method):
    """After a failover the old primary answers writes with READONLY (a replica now) on the
    connections still open to it, for as long as they stay open: those are dropped, so the
    next command connects again, to wherever the URL's name now points. The error itself is
    an outage (idp.errors.UNAVAILABLE: 503, Retry-After), as is a write refused for now."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except ReadOnlyError:
            self._r.connection_pool.disconnect(inuse_connections=False)
            raise
        except ResponseError as exc:
            raise _outage(exc)
    return wrapper


class _ThreadConnection:
    """A request thread's own connection (RedisStore._send), closed when the thread ends.

    granian retires a request thread idle for 30 s and starts another on demand; the thread's
    locals go with it, but a redis-py Connection sits in reference cycles, so its socket
    stayed open until a garbage collection happened to run (Redis counted a client per
    retired thread meanwhile). This holder is in no cycle: it goes, and closes the socket,
    with the thread."""

    __slots__ = ("conn", "pid")

    def __init__(self, conn):
        self.conn, self.pid = conn, os.getpid()

    def __del__(self):
        try:
            self.conn.disconnect()  # in a forked child: closes the child's copy of the socket only
        except Exception:  # noqa: BLE001  (never raise from a finalizer)
            pass


class RedisStore(Store):
    shared = True

    def __init__(self, url: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        super().__init__(namespace)
        # The client owns a thread-safe connection pool.  Timeouts keep a dead
        # server from hanging a request; options in the URL take precedence.
        self._r = redis.Redis.from_url(
            url, decode_responses=False, socket_connect_timeout=5, socket_timeout=5
        )
        # Never sent twice by redis-py, whatever the URL asks (?retry_on_timeout=true is a common
        # tuning tip): consume, consume_leaving, add, swap and incr are single-use, and sent
        # again after an answer lost on the way, they would read back their own effect (a code
        # as replayed, a sign-in claim as taken). Only _send resends, and only what is safe to.
        self._r.connection_pool.connection_kwargs.update(retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
                                                        retry_on_error=[])
        self._incr = self._r.register_script(_INCR)
        self._sadd = self._r.register_script(_SADD)
        self._put_indexed = self._r.register_script(_PUT_INDEXED)
        self._put_if_counter = self._r.register_script(_PUT_IF_COUNTER)
        self._consume_leaving = self._r.register_script(_CONSUME_LEAVING)
        self._get_many_following = self._r.register_script(_GET_MANY_FOLLOWING)
        self._local = threading.local()

    def _call(self, *command):
        return self._send([command])[0]

    def _send(self, commands: list[tuple]) -> list:
        """Commands on this thread's own connection, for the commands of the token hot paths.

        redis-py's client adds its pool checkout, retry and event layers to every command:
        66 us for a GET on loopback here, against 35 us for the same GET sent and read on a
        redis-py Connection directly. The connection is this thread's and this process's
        (a forked worker makes its own). A broken connection is reconnected and the command
        sent once more, as redis-py's retry would; only idempotent commands come here.
        """
        held = getattr(self._local, "held", None)
        if held is None or held.pid != os.getpid():
            pool = self._r.connection_pool
            held = self._local.held = _ThreadConnection(pool.connection_class(**pool.connection_kwargs))
        conn = held.conn
        # hiredis packs the command in C: redis-py's own packing, which encodes every argument
        # in Python first, cost 9 us of a 9-argument EVALSHA here against hiredis's 0.8.
        # Several commands go out together and their answers come back in order (pipelining).
        packed = [hiredis.pack_command(command) for command in commands]
        # The round trip hands the worker's turn on (idp.ops.turns): the other request thread
        # runs Python meanwhile instead of the core idling. Held through the round trip, the
        # turn left 11-16% of the machine idle under load (the reference 3-5%).
        with turns.waiting():
            try:
                try:
                    conn.send_packed_command(packed)
                    return _answers(conn, len(packed))
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    conn.disconnect()
                    conn.send_packed_command(packed)
                    return _answers(conn, len(packed))
            except ReadOnlyError:
                conn.disconnect()  # see _reconnect_on_readonly
                raise
            except ResponseError as exc:
                raise _outage(exc)

    def put(self, key: str, value: Value, ttl: int) -> None:
        self._call("SET", self._k(key), dumps(value), "EX", check_ttl(ttl))

    def put_many(self, entries: list[tuple[str, Value, int]]) -> None:
        if entries:
            self._send([("SET", self._k(key), dumps(value), "EX", check_ttl(ttl)) for key, value, ttl in entries])

    @_reconnect_on_readonly  # a write through redis-py's pool (_send drops its own connection)
    def add(self, key: str, value: Value, ttl: int) -> bool:
        return bool(self._r.set(self._k(key), dumps(value), ex=check_ttl(ttl), nx=True))

    def get(self, key: str) -> Value | None:
        return loads(self._call("GET", self._k(key)))

    def get_many(self, keys: list[str]) -> list[Value | None]:
        if not keys:
            return []  # MGET with no keys is an error
        return [loads(raw) for raw in self._call("MGET", *(self._k(k) for k in keys))]

    def get_many_following(self, keys: list[str], field: str,
                           prefix: str) -> tuple[list[Value | None], str | None, Value | None]:
        if not keys:
            return [], None, None  # MGET with no keys is an error
        values, named, followed = self._script(self._get_many_following, [self._k(k) for k in keys],
                                               [field, self._k(prefix)])
        return [loads(v) for v in values], (None if named is None else prefix + named.decode()), loads(followed)

    @_reconnect_on_readonly
    def consume(self, key: str) -> Value | None:
        return loads(self._r.getdel(self._k(key)))

    @_reconnect_on_readonly
    def swap(self, key: str, value: Value, ttl: int) -> Value | None:
        # SET ... GET (Redis >= 6.2), through redis-py's client (no retry) and never _call's
        # resend: sent again after an answer lost on the way, it would read back its own value.
        return loads(self._r.set(self._k(key), dumps(value), ex=check_ttl(ttl), get=True))

    @_reconnect_on_readonly
    def consume_leaving(self, key: str, mark: str, value: Value, ttl: int) -> Value | None:
        # Through redis-py's client, as consume: never through _call's resend, since a second
        # GETDEL after a first one whose answer was lost would read as a replay.
        keys, args = [self._k(key), self._k(mark)], [dumps(value), check_ttl(ttl)]
        return loads(self._consume_leaving(keys=keys, args=args))

    @_reconnect_on_readonly
    def delete(self, *keys: str) -> None:
        if keys:
            self._r.delete(*(self._k(k) for k in keys))

    @_reconnect_on_readonly
    def incr(self, key: str, ttl: int) -> int:
        return int(self._incr(keys=[self._k(key)], args=[check_ttl(ttl)]))

    def ttl_of(self, key: str) -> int | None:
        ms = self._r.pttl(self._k(key))
        return None if ms < 0 else max(1, math.ceil(ms / 1000))

    @_reconnect_on_readonly
    def sadd(self, key: str, member: str, ttl: int) -> None:
        if not isinstance(member, str):
            raise TypeError("set members must be str")
        self._sadd(keys=[self._k(key)], args=[member, check_ttl(ttl)])

    @_reconnect_on_readonly  # its NOSCRIPT fallback goes through the pool
    def _script(self, script, keys: list, args: list):
        """A script of the hot paths through _call: the resend there is safe because each
        of these scripts only writes what it would write again. A restarted server has
        forgotten the script (NOSCRIPT): redis-py's Script then loads and runs it."""
        try:
            return self._call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return script(keys=keys, args=args)

    def counter(self, key: str) -> int:
        raw = self._r.get(self._k(key))
        return int(raw) if raw is not None else 0

    def put_if_counter(self, key: str, value: Value, ttl: int, counter: str, expected: int) -> bool:
        keys, args = [self._k(key), self._k(counter)], [dumps(value), check_ttl(ttl), int(expected)]
        return bool(self._script(self._put_if_counter, keys, args))

    def put_checked(self, key: str, value: Value, ttl: int, check: str) -> Value | None:
        # Two commands pipelined on one connection: Redis runs them in order, so the GET reads
        # after the SET. Both are safe to send again (_send's resend after a broken connection).
        _, seen = self._send([("SET", self._k(key), dumps(value), "EX", check_ttl(ttl)), ("GET", self._k(check))])
        return loads(seen)

    def put_indexed(self, key: str, value: Value, ttl: int, index: str, check: str) -> Value | None:
        keys = [self._k(key), self._k(index), self._k(check)]
        return loads(self._script(self._put_indexed, keys, [dumps(value), check_ttl(ttl), key]))

    def index_members(self, index: str) -> set[str]:
        return {m.decode() for m in self._r.zrange(self._k(index), 0, -1)}

    def smembers(self, key: str) -> set[str]:
        return {m.decode() for m in self._r.smembers(self._k(key))}

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except redis.RedisError:
            return False

    def clear(self) -> None:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.namespace) + "*"
        batch = []
        for k in self._r.scan_iter(match=pattern, count=500):
            batch.append(k)
            if len(batch) >= 500:
                self._r.delete(*batch)
                batch.clear()
        if batch:
            self._r.delete(*batch)

    def close(self) -> None:
        held = getattr(self._local, "held", None)
        if held is not None:
            held.conn.disconnect()
        self._r.close()
