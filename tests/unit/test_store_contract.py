"""Contract tests every Store backend must pass (memory and a real Redis).

The single-use and NX guarantees are what keep authorization codes and
nonces from being redeemed twice, so they are tested under real thread
contention, not just sequentially.  Memory expiry is driven with freezegun;
Redis time cannot be frozen, so its TTLs are checked through ``ttl_of``.
"""

from __future__ import annotations

import threading

import pytest
from freezegun import freeze_time

from idp.store import MemoryStore, RedisStore, Store, create_store
from tests import concurrency

THREADS = 16


def race(fn, n: int = THREADS) -> list:
    """Run ``fn()`` in ``n`` threads released together by a barrier."""
    return concurrency.race(fn, n)


# -- TTL is mandatory --------------------------------------------------------

@pytest.mark.parametrize("ttl", [0, -1, 1.5, "10", None, True])
def test_every_write_requires_a_positive_integer_ttl(store: Store, ttl) -> None:
    for write in (lambda: store.put("k", 1, ttl), lambda: store.add("k", 1, ttl),
                  lambda: store.incr("k", ttl), lambda: store.sadd("k", "m", ttl),
                  lambda: store.put_many([("k", 1, 60), ("k2", 1, ttl)]), lambda: store.swap("k", 1, ttl),
                  lambda: store.consume_leaving("k", "mark", 1, ttl),
                  lambda: store.put_if_counter("k", 1, ttl, "count", 0),
                  lambda: store.put_if_counter("k", 1, ttl, "count", 7),  # refused even on a counter mismatch
                  lambda: store.put_indexed("k", 1, ttl, "index", "check")):
        with pytest.raises(ValueError):
            write()
    assert store.get_many(["k", "k2", "mark", "index"]) == [None, None, None, None]


def test_a_counter_reads_an_integer_put_as_redis_does(store: Store) -> None:
    store.put("n", 5, 60)
    assert store.counter("n") == 5 and store.put_if_counter("k", "v", 60, "n", 5) and store.get("k") == "v"


def test_ttl_of_is_within_the_ttl(store: Store) -> None:
    store.put("k", "v", 30)
    assert 0 < store.ttl_of("k") <= 30
    assert store.ttl_of("missing") is None


# -- values ------------------------------------------------------------------

@pytest.mark.parametrize("value", [{"a": [1, "x"], "b": {"c": None}}, [1, 2], "s", 0, 42])
def test_put_get_round_trips_json(store: Store, value) -> None:
    store.put("k", value, 60)
    assert store.get("k") == value


def test_put_replaces_and_get_returns_a_copy(store: Store) -> None:
    store.put("k", {"n": 1}, 60)
    store.put("k", {"n": 2}, 60)
    got = store.get("k")
    got["n"] = 99
    assert store.get("k") == {"n": 2}


def test_unserialisable_values_and_none_are_refused(store: Store) -> None:
    with pytest.raises(TypeError):
        store.put("k", {"x": object()}, 60)
    with pytest.raises(ValueError):
        store.put("k", None, 60)


def test_get_many_keeps_order_and_reports_missing(store: Store) -> None:
    store.put("a", 1, 60)
    store.put("c", {"z": 3}, 60)
    assert store.get_many(["c", "b", "a", "a"]) == [{"z": 3}, None, 1, 1]
    assert store.get_many([]) == []


def test_get_following_reads_a_record_and_the_entry_it_names(store: Store) -> None:
    store.put("at:1", {"account_id": 7, "scope": "openid"}, 60)
    store.put("at:2", {"account_id": "ab"}, 60)
    store.put("claims:7", {"sub": "s7"}, 60)
    store.put("claims:ab", ["x"], 60)
    record = {"account_id": 7, "scope": "openid"}
    assert store.get_following("at:1", "account_id", "claims:") == (record, "claims:7", {"sub": "s7"})
    assert store.get_following("at:2", "account_id", "claims:") == ({"account_id": "ab"}, "claims:ab", ["x"])
    store.delete("claims:7")
    assert store.get_following("at:1", "account_id", "claims:") == (record, "claims:7", None)
    assert store.get_following("missing", "account_id", "claims:") == (None, None, None)


@pytest.mark.parametrize("number, named", [(7.0, "7"), (-0.0, "0"), (1e2, "100"), (-3, "-3"),
                                           (2**53 - 1, str(2**53 - 1))])
def test_get_following_names_a_whole_number_alike_in_both_stores(store: Store, number, named) -> None:
    store.put("at:1", {"account_id": number}, 60)
    store.put("claims:" + named, "the entry", 60)
    assert store.get_following("at:1", "account_id", "claims:") == ({"account_id": number}, "claims:" + named,
                                                                     "the entry")


@pytest.mark.parametrize("record", [{"scope": "openid"}, {"account_id": None}, {"account_id": True},
                                    {"account_id": 1.5}, {"account_id": 2**53}, {"account_id": [7]},
                                    {"account_id": {"id": 7}}, [7], "7", 7])
def test_get_following_follows_only_a_string_or_a_whole_number(store: Store, record) -> None:
    store.put("at:1", record, 60)
    for named in ("7", "1.5", "True", "true", "None", "[7]", str(2**53)):
        store.put("claims:" + named, "not to be read", 60)
    assert store.get_following("at:1", "account_id", "claims:") == (record, None, None)


def test_get_following_keeps_to_the_namespace(make_store) -> None:
    a, b = make_store(), make_store()
    a.put("at:1", {"account_id": 7}, 60)
    b.put("claims:7", "b's", 60)
    assert a.get_following("at:1", "account_id", "claims:") == ({"account_id": 7}, "claims:7", None)
    a.put("claims:7", "a's", 60)
    assert a.get_following("at:1", "account_id", "claims:") == ({"account_id": 7}, "claims:7", "a's")


def test_get_many_following_reads_the_keys_and_follows_the_last(store: Store) -> None:
    store.put("mark:1", "revoked", 60)
    store.put("at:1", {"account_id": 7}, 60)
    store.put("claims:7", {"sub": "s7"}, 60)
    record = {"account_id": 7}
    assert store.get_many_following(["mark:1", "at:1"], "account_id", "claims:") == (
        ["revoked", record], "claims:7", {"sub": "s7"})
    assert store.get_many_following(["at:1", "mark:1"], "account_id", "claims:") == (
        [record, "revoked"], None, None)  # only the last key is followed
    assert store.get_many_following(["mark:2", "at:1"], "account_id", "claims:") == (
        [None, record], "claims:7", {"sub": "s7"})
    assert store.get_many_following(["mark:1", "missing"], "account_id", "claims:") == (
        ["revoked", None], None, None)
    assert store.get_many_following([], "account_id", "claims:") == ([], None, None)


def test_get_many_following_reads_a_key_of_another_type_as_missing(store: Store) -> None:
    store.sadd("set:members", "m", 60)
    store.put("at:1", {"account_id": "members"}, 60)
    assert store.get_many_following(["set:members", "at:1"], "account_id", "set:") == (
        [None, {"account_id": "members"}], "set:members", None)


def test_put_checked_writes_then_reads_the_check(store: Store) -> None:
    assert store.put_checked("k", {"a": 1}, 60, "check") is None
    assert store.get("k") == {"a": 1} and 55 <= store.ttl_of("k") <= 60
    store.put("check", "marked", 60)
    assert store.put_checked("k2", 2, 60, "check") == "marked"
    assert store.put_checked("check", "itself", 60, "check") == "itself"  # the read comes after the write
    with pytest.raises(ValueError):
        store.put_checked("k3", 1, 0, "check")


def test_delete_many_ignores_missing(store: Store) -> None:
    store.put("a", 1, 60)
    store.put("b", 2, 60)
    store.delete("a", "b", "missing")
    store.delete()
    assert store.get_many(["a", "b"]) == [None, None]


# -- add (NX) and consume (single use) ---------------------------------------

def test_add_sets_only_if_absent(store: Store) -> None:
    assert store.add("k", "first", 60) is True
    assert store.add("k", "second", 60) is False
    assert store.get("k") == "first"


def test_consume_returns_the_value_once(store: Store) -> None:
    store.put("code", {"sub": "u1"}, 60)
    assert store.consume("code") == {"sub": "u1"}
    assert store.consume("code") is None
    assert store.get("code") is None
    assert store.consume("never") is None


def test_concurrent_consume_has_exactly_one_winner(store: Store) -> None:
    for round_ in range(5):
        store.put(f"code{round_}", {"round": round_}, 60)
        results = race(lambda: store.consume(f"code{round_}"))
        assert [r for r in results if r is not None] == [{"round": round_}]


def test_consume_leaving_marks_only_a_value_it_took(store: Store) -> None:
    store.put("code", {"sub": "u1"}, 60)
    assert store.consume_leaving("code", "spent", 1, 60) == {"sub": "u1"}
    assert store.get("spent") == 1 and 0 < store.ttl_of("spent") <= 60
    store.delete("spent")
    assert store.consume_leaving("code", "spent", 1, 60) is None  # taken already: no mark again
    assert store.consume_leaving("never", "spent2", 1, 60) is None
    assert store.get_many(["code", "spent", "spent2"]) == [None, None, None]


def test_concurrent_consume_leaving_has_exactly_one_winner_and_leaves_its_mark(store: Store) -> None:
    for round_ in range(5):
        store.put(f"code{round_}", {"round": round_}, 60)
        results = race(lambda: store.consume_leaving(f"code{round_}", f"spent{round_}", round_, 60))
        assert [r for r in results if r is not None] == [{"round": round_}]
        assert store.get(f"spent{round_}") == round_


def test_put_many_writes_each_with_its_ttl(store: Store) -> None:
    store.put_many([("one", {"a": 1}, 60), ("two", "b", 5)])
    assert store.get_many(["one", "two"]) == [{"a": 1}, "b"]
    assert 5 < store.ttl_of("one") <= 60 and 0 < store.ttl_of("two") <= 5
    store.put_many([])
    with pytest.raises(ValueError):
        store.put_many([("three", 3, 0)])


def test_a_pipelined_error_leaves_the_connection_in_step(redis_url: str) -> None:
    """Every answer of a pipeline is read even when one is an error: left unread, it would be
    taken for the next command's answer."""
    s = RedisStore(redis_url, namespace=f"pipe{threading.get_ident()}:")
    try:
        s.put("set", "x", 60)
        with pytest.raises(Exception):
            s._send([("INCR", s._k("set")), ("GET", s._k("set"))])  # INCR of a string: an error
        assert s.get("absent") is None and s.get("set") == "x"
    finally:
        s.clear()
        s.close()


SINGLE_USE = {  # what each gives the first time: sent again, it would answer otherwise
    "consume": (lambda s: s.put("k", "v", 60), lambda s: s.consume("k"), "v"),
    "consume_leaving": (lambda s: s.put("k", "v", 60), lambda s: s.consume_leaving("k", "mark", 1, 60), "v"),
    "add": (lambda s: None, lambda s: s.add("k", 1, 60), True),
    "swap": (lambda s: s.put("slot", "old", 60), lambda s: s.swap("slot", "new", 60), "old"),
    "incr": (lambda s: None, lambda s: s.incr("n", 60), 1),
}


@pytest.mark.parametrize("query", ["", "?retry_on_timeout=true"])
@pytest.mark.parametrize("op", sorted(SINGLE_USE))
def test_a_single_use_command_is_never_sent_again_after_a_lost_answer(redis_url: str, monkeypatch, op, query):
    """The hot paths' reads and idempotent writes are sent once more when their answer is
    lost (RedisStore._send); these are not, whatever the URL asks: the server did run them,
    and a second one would read back their own effect (a code as replayed, a claim as taken,
    a browser's other session unseen: idp.login.flow.end_others_in_browser)."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    prepare, run, first = SINGLE_USE[op]
    s = RedisStore(redis_url + query, namespace=f"lost{threading.get_ident()}:")
    try:
        prepare(s)
        assert s._r.ping()  # a pooled connection is open
        connection_class, lost = s._r.connection_pool.connection_class, []
        read = connection_class.read_response

        def loses_the_first_answer(self, *args, **kwargs):
            answer = read(self, *args, **kwargs)  # the server has run the command
            if not lost:
                lost.append(answer)
                raise RedisTimeoutError("Timeout reading from socket")
            return answer

        monkeypatch.setattr(connection_class, "read_response", loses_the_first_answer)
        try:
            answer = run(s)
        except RedisTimeoutError:
            answer = "an outage, told as one"
        monkeypatch.undo()
        assert lost and answer in (first, "an outage, told as one")
        if op == "incr":  # counted once, or not at all when the answer lost was the script's loading
            counted = s.counter("n")
            assert counted <= 1 and (answer != 1 or counted == 1)
    finally:
        monkeypatch.undo()
        s.clear()
        s.close()


def test_swap_sets_and_gives_back_what_was_there(store: Store) -> None:
    assert store.swap("current", "a", 60) is None
    assert store.swap("current", "b", 60) == "a"
    assert store.get("current") == "b" and 0 < store.ttl_of("current") <= 60


def test_concurrent_swaps_each_see_another_ones_value(store: Store) -> None:
    """Of callers at once, exactly one finds nothing and every other finds a value one of them
    set: none is lost between a read and a write."""
    values = iter(range(THREADS))
    lock = threading.Lock()

    def one():
        with lock:
            mine = next(values)
        return mine, store.swap("slot", mine, 60)

    results = race(one)
    befores = [before for _, before in results]
    assert befores.count(None) == 1
    assert sorted([*(b for b in befores if b is not None), store.get("slot")]) == sorted(m for m, _ in results)


def test_concurrent_add_has_exactly_one_winner(store: Store) -> None:
    for round_ in range(5):
        results = race(lambda: store.add(f"nonce{round_}", "seen", 60))
        assert results.count(True) == 1 and results.count(False) == THREADS - 1


# -- counters ----------------------------------------------------------------

def test_incr_counts_from_one(store: Store) -> None:
    assert [store.incr("hits", 60) for _ in range(3)] == [1, 2, 3]
    assert store.get("hits") == 3


def test_incr_keeps_the_first_ttl(store: Store) -> None:
    store.incr("hits", 100)
    store.incr("hits", 1000)  # a longer ttl later must not extend the window
    assert 0 < store.ttl_of("hits") <= 100


def test_incr_counts_on_from_an_integer_put_and_refuses_anything_else(store: Store) -> None:
    """As Redis INCR: a value put() as a JSON integer is counted on (its TTL kept); any other
    value (a JSON string, even of digits, a float, a boolean, an object) is refused and left."""
    store.put("n", 41, 100)
    assert store.incr("n", 5) == 42 and store.get("n") == 42
    assert 90 <= store.ttl_of("n") <= 100
    for value in ("5", 1.5, True, {"a": 1}, [1], 2 ** 63):
        store.put("v", value, 60)
        with pytest.raises(Exception):
            store.incr("v", 60)
        assert store.get("v") == value


def test_concurrent_incr_loses_no_update(store: Store) -> None:
    results = race(lambda: store.incr("hits", 60))
    assert sorted(results) == list(range(1, THREADS + 1))


# -- sets --------------------------------------------------------------------

def test_sets_collect_members(store: Store) -> None:
    assert store.smembers("family") == set()
    for m in ("t1", "t2", "t1"):
        store.sadd("family", m, 60)
    assert store.smembers("family") == {"t1", "t2"}
    store.delete("family")
    assert store.smembers("family") == set()


def test_sadd_ttl_is_max_of_existing_and_new(store: Store) -> None:
    store.sadd("family", "t1", 100)
    store.sadd("family", "t2", 1000)
    assert 100 < store.ttl_of("family") <= 1000
    store.sadd("family", "t3", 10)  # a shorter ttl must not shorten it
    assert 100 < store.ttl_of("family") <= 1000


# -- namespaces, health ------------------------------------------------------

def test_namespaces_are_isolated(make_store) -> None:
    a, b = make_store(), make_store()
    a.put("k", "a", 60)
    b.put("k", "b", 60)
    a.clear()
    assert (a.get("k"), b.get("k")) == (None, "b")


def test_redis_keys_carry_the_namespace(redis_url: str) -> None:
    import redis

    s = RedisStore(redis_url, namespace="nsprobe:")
    try:
        s.put("k", {"a": 1}, 60)
        raw = redis.Redis.from_url(redis_url).get("nsprobe:k")
        assert raw == b'{"a":1}'  # compact JSON, prefixed key
    finally:
        s.clear()
        s.close()


def test_ping(store: Store) -> None:
    assert store.ping() is True


def test_ping_is_false_when_redis_is_down() -> None:
    s = RedisStore("redis://127.0.0.1:1/0")  # port 1: connection refused
    assert s.ping() is False


# -- expiry (memory: frozen clock) -------------------------------------------

def test_memory_keys_expire_after_their_ttl() -> None:
    s = MemoryStore()
    with freeze_time("2030-01-01") as clock:
        s.put("k", "v", 10)
        s.sadd("set", "m", 10)
        clock.tick(9)
        assert s.get("k") == "v" and s.ttl_of("k") == 1
        assert s.add("k", "other", 10) is False
        clock.tick(1)
        assert s.get("k") is None and s.ttl_of("k") is None
        assert s.smembers("set") == set()
        assert s.consume("k") is None
        assert s.add("k", "other", 10) is True


def test_memory_incr_window_is_fixed() -> None:
    s = MemoryStore()
    with freeze_time("2030-01-01") as clock:
        s.incr("hits", 10)
        clock.tick(6)
        assert s.incr("hits", 10) == 2 and s.ttl_of("hits") == 4
        clock.tick(4)
        assert s.incr("hits", 10) == 1  # a new window
        assert s.ttl_of("hits") == 10


def test_memory_sweeps_expired_keys_nobody_reads(monkeypatch) -> None:
    import idp.store.memory as memory

    monkeypatch.setattr(memory, "SWEEP_EVERY", 5)
    s = MemoryStore()
    with freeze_time("2030-01-01") as clock:
        for i in range(4):
            s.put(f"old{i}", i, 1)
        clock.tick(2)
        s.put("new", 1, 60)  # fifth write sweeps
        assert list(s._data) == ["idp:new"]


# -- create_store ------------------------------------------------------------

def test_create_store_parses_urls() -> None:
    assert isinstance(create_store(None), MemoryStore)
    mem = create_store("memory://", namespace="x:")
    assert isinstance(mem, MemoryStore) and mem.namespace == "x:"
    red = create_store("redis://127.0.0.1:6379/0", namespace="y:")
    assert isinstance(red, RedisStore) and red.namespace == "y:"
    assert create_store(None).namespace == "idp:"


@pytest.mark.parametrize("url", ["", "postgresql://db", "memcached://x", "localhost:6379"])
def test_create_store_rejects_unknown_urls(url: str) -> None:
    with pytest.raises(ValueError, match="memory://.*redis://"):
        create_store(url)


def test_put_indexed_returns_a_check_value_of_any_type(store):
    assert store.put_indexed("at:c1", {"v": 1}, 60, "cc:fam", "client:x") is None
    assert store.get("at:c1") == {"v": 1} and store.ttl_of("at:c1") <= 60
    store.put("client:x", {"secret_hash": "h"}, 60)
    assert store.put_indexed("at:c2", {"v": 2}, 60, "cc:fam", "client:x") == {"secret_hash": "h"}
    assert store.index_members("cc:fam") == {"at:c1", "at:c2"}


def test_put_indexed_writes_indexes_and_reads_the_mark(store):
    assert store.index_members("fam") == set()
    assert store.put_indexed("at:1", {"v": 1}, 120, "fam", "fam-revoked") is None
    assert store.get("at:1") == {"v": 1}
    assert store.index_members("fam") == {"at:1"}
    assert 60 < store.ttl_of("fam") <= 120
    store.put("fam-revoked", "reuse", 60)
    assert store.put_indexed("at:2", {"v": 2}, 30, "fam", "fam-revoked") == "reuse"
    assert store.index_members("fam") == {"at:1", "at:2"}
    assert 60 < store.ttl_of("fam") <= 120  # as long as its newest member: never shortened


def test_an_index_drops_the_members_whose_time_is_up(store):
    """A family refreshed for a month must not hold every access token it ever had."""
    if isinstance(store, MemoryStore):
        with freeze_time() as clock:
            store.put_indexed("at:old", 1, 60, "fam", "mark")
            clock.tick(61)
            store.put_indexed("at:new", 2, 60, "fam", "mark")
            assert store.index_members("fam") == {"at:new"}
    else:  # the script reads Redis's own clock: an entry whose time was up long ago
        store._r.zadd(store._k("fam"), {"at:old": 1})
        store.put_indexed("at:new", 2, 60, "fam", "mark")
        assert store.index_members("fam") == {"at:new"}


@pytest.mark.parametrize("make_store", ["redis"], indirect=True)  # the memory store keeps float seconds
def test_a_redis_index_keeps_a_member_to_the_millisecond_its_key_expires(store):
    """Scored in whole seconds, a member went up to a second before its key did, and a
    revocation in that second missed a live token."""
    store.put_indexed("at:a", 1, 60, "fam", "mark")
    seconds, micros = store._r.time()
    expires_ms = seconds * 1000 + micros // 1000 + store._r.pttl(store._k("at:a"))
    assert abs(store._r.zscore(store._k("fam"), "at:a") - expires_ms) < 50


def test_an_index_is_not_a_value(store):
    store.put_indexed("at:1", 1, 60, "fam", "mark")
    with pytest.raises(Exception):
        store.get("fam")


def test_a_set_or_an_index_is_refused_by_consume_and_left_in_place(store):
    """As Redis's GETDEL refuses another type (WRONGTYPE) and deletes nothing; MGET reads it
    as missing."""
    store.sadd("members", "a", 60)
    store.put_indexed("at:1", 1, 60, "fam", "mark")
    for key in ("members", "fam"):
        with pytest.raises(Exception):
            store.consume(key)
    assert store.smembers("members") == {"a"} and store.index_members("fam") == {"at:1"}
    assert store.get_many(["members", "fam", "at:1"]) == [None, None, 1]


def test_put_indexed_against_a_concurrent_sweep(store):
    """Either the sweep deletes the new key, or put_indexed sees the mark: never neither."""
    import threading

    for round_ in range(30):
        fam, mark, key = f"fam{round_}", f"mark{round_}", f"at:{round_}"
        seen = {}
        barrier = threading.Barrier(2)

        def mint():
            barrier.wait()
            seen["mark"] = store.put_indexed(key, 1, 60, fam, mark)

        def sweep():
            barrier.wait()
            store.put(mark, "revoked", 60)
            members = store.index_members(fam)
            if members:
                store.delete(*members)

        threads = [threading.Thread(target=mint), threading.Thread(target=sweep)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert seen["mark"] is not None or store.get(key) is None


def test_put_if_counter_puts_only_while_the_counter_is_unchanged(store):
    assert store.counter("row:v") == 0
    assert store.put_if_counter("row", {"v": 1}, 60, "row:v", 0) is True
    assert store.get("row") == {"v": 1}
    store.incr("row:v", 60)  # a change overtook the read
    assert store.counter("row:v") == 1
    assert store.put_if_counter("row", {"v": "stale"}, 60, "row:v", 0) is False
    assert store.get("row") == {"v": 1}
    assert store.put_if_counter("row", {"v": 2}, 60, "row:v", 1) is True and store.get("row") == {"v": 2}


@pytest.mark.parametrize("make_store", ["redis"], indirect=True)
def test_a_request_threads_connection_closes_when_the_thread_ends(make_store):
    """granian retires idle request threads: each one's connection must close with it, not
    at some later garbage collection (Redis counted a client per retired thread)."""
    import gc

    s = make_store()
    seen = []

    def request_thread():
        s.put("k", 1, 60)
        seen.append(s._local.held.conn)

    gc.disable()
    try:
        t = threading.Thread(target=request_thread)
        t.start()
        t.join()
        assert seen and seen[0]._sock is None  # closed, with no collection run
    finally:
        gc.enable()
    assert s.get("k") == 1  # this thread's own connection, unaffected
