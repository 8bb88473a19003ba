"""idp.ops.turns: one request at a time runs Python in a worker; a slow wait hands the turn on."""

import threading

import nacl.pwhash.argon2id
import pytest
from flask import Flask

from idp.login import password
from idp.ops import turns

WAIT = 5  # seconds: an upper bound for a thread to get somewhere, never reached when all is well


def _request(app, path):
    done = threading.Event()

    def run():
        app({"PATH_INFO": path}, None)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done


@pytest.fixture
def gated():
    """A gated WSGI app whose /slow request waits for ``release``, in waiting() or holding its turn."""
    entered, release = threading.Event(), threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow-waiting":
            with turns.waiting():
                entered.set()
                assert release.wait(WAIT)
        elif environ["PATH_INFO"] == "/slow-holding":
            entered.set()
            assert release.wait(WAIT)
        return [b""]

    yield turns.middleware(app), entered, release
    release.set()


def test_a_request_runs_while_another_waits_in_waiting(gated):
    app, entered, release = gated
    slow = _request(app, "/slow-waiting")
    assert entered.wait(WAIT)
    fast = _request(app, "/fast")
    assert fast.wait(WAIT), "the second request waited for the first one's slow wait"
    assert not slow.is_set()
    release.set()
    assert slow.wait(WAIT), "the first request got its turn back and finished"


def test_a_request_that_keeps_its_turn_holds_up_the_next(gated):
    app, entered, release = gated
    slow = _request(app, "/slow-holding")
    assert entered.wait(WAIT)
    fast = _request(app, "/fast")
    assert not fast.wait(0.2), "two requests ran Python at the same time"
    release.set()
    assert slow.wait(WAIT) and fast.wait(WAIT)


def test_a_turn_held_by_a_stuck_request_holds_up_the_next_for_max_wait_only(gated, monkeypatch):
    """A round trip to a stalled database keeps its turn as long as the stall: the worker's
    other requests (a probe, discovery) must not wait for it."""
    monkeypatch.setattr(turns, "MAX_WAIT", 0.3, raising=False)
    app, entered, release = gated
    stuck = _request(app, "/slow-holding")
    assert entered.wait(WAIT)
    fast = _request(app, "/fast")
    assert fast.wait(WAIT), "the request waited for the stuck one's turn"
    assert not stuck.is_set()
    release.set()
    assert stuck.wait(WAIT)
    assert turns._turn.acquire(blocking=False), "the turn was not given back"
    turns._turn.release()


def test_waiting_outside_a_request_changes_nothing():
    with turns.waiting():
        assert turns._turn.acquire(blocking=False), "waiting() released a turn nobody held"
        turns._turn.release()


def test_the_turn_is_given_back_when_the_request_fails():
    def broken(environ, start_response):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        turns.middleware(broken)({}, None)
    assert turns._turn.acquire(blocking=False)
    turns._turn.release()


@pytest.mark.parametrize("name", sorted(password.VERIFIERS))
def test_a_password_is_verified_without_the_turn(monkeypatch, name):
    """The 13-40 ms argon2 verification runs while the next request has the turn."""
    seen = []
    real = password.VERIFIERS[name]

    def observed(encoded, pw):
        seen.append(turns._local.held)
        return real(encoded, pw)

    monkeypatch.setitem(password.VERIFIERS, name, observed)
    encoded = nacl.pwhash.argon2id.str(b"a fine password", opslimit=1, memlimit=8192)
    flask_app = Flask(__name__)
    flask_app.config.update(ARGON2_VERIFIER=name, ARGON2_MEMORY_KIB=8, ARGON2_TIME_COST=1, ARGON2_PARALLELISM=1)

    def app(environ, start_response):
        assert turns._local.held
        with flask_app.app_context():
            ok = password._verify(encoded, "a fine password")
        assert turns._local.held
        return [b"ok" if ok else b"no"]

    assert turns.middleware(app)({}, None) == [b"ok"]
    assert seen == [False]


def test_arrival_is_stamped_before_the_wait_for_the_turn():
    """The request-duration metric starts at ``turns.ARRIVED``: it must count time queued."""
    stamped = threading.Event()

    class Environ(dict):
        def __setitem__(self, key, value):
            super().__setitem__(key, value)
            if key == turns.ARRIVED:
                stamped.set()

    environ = Environ(PATH_INFO="/queued")
    with turns._turn:  # another request holds the turn
        done = threading.Event()
        threading.Thread(target=lambda: (turns.middleware(lambda e, s: [b""])(environ, None), done.set()),
                         daemon=True).start()
        assert stamped.wait(WAIT), "the arrival was not stamped while the turn was taken"
        assert not done.is_set()
    assert done.wait(WAIT)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_the_probes_do_not_wait_for_the_turn(monkeypatch, path):
    """Behind a request stuck on a stalled database (it keeps the turn: a round trip is a short
    wait), /healthz still answers, so the worker is not restarted for the database's sake, and
    /readyz answers within READY_TIMEOUT, not up to twice MAX_WAIT later."""
    monkeypatch.setattr(turns, "MAX_WAIT", 60)  # a probe that waited for the turn would not answer in time

    def app(environ, start_response):
        return [environ["PATH_INFO"].encode()]

    answered = {}
    with turns._turn:  # another request holds this worker's turn
        thread = threading.Thread(target=lambda: answered.update(
            body=turns.middleware(app)({"PATH_INFO": path}, None)))
        thread.start()
        thread.join(WAIT)
        assert answered == {"body": [path.encode()]}  # while the turn is still held


def test_coming_back_from_waiting_waits_for_the_turn_max_wait_only(monkeypatch):
    """A request back from a password hash must not wait for the turn behind a request stuck
    on a stalled database any longer than a new request would."""
    monkeypatch.setattr(turns, "MAX_WAIT", 0.3)
    stuck_in, release, hashed = threading.Event(), threading.Event(), threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/hash":
            with turns.waiting():
                assert stuck_in.wait(WAIT)  # the other request takes the turn meanwhile
            hashed.set()
        else:
            stuck_in.set()
            assert release.wait(WAIT)
        return [b""]

    app = turns.middleware(app)
    hashing = _request(app, "/hash")
    stuck = _request(app, "/stuck")
    try:
        assert hashed.wait(WAIT) and hashing.wait(WAIT), "back from waiting(), it waited for the stuck request"
        assert not stuck.is_set()
    finally:
        release.set()
    assert stuck.wait(WAIT)
    assert turns._turn.acquire(blocking=False), "the turn was not given back"
    turns._turn.release()


def test_a_request_runs_while_another_waits_on_a_redis_round_trip(redis_url, monkeypatch):
    """A Redis round trip hands the turn on: the worker's other thread runs meanwhile."""
    from idp.store.redis import RedisStore

    monkeypatch.setattr(turns, "MAX_WAIT", 60)  # a turn held through the round trip would block /wake
    store = RedisStore(redis_url, namespace="turns-round-trip:")
    key = store._k("wake")
    store.clear()
    entered = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/blocked":
            entered.set()
            store._call("BLPOP", key, "60")  # answers once /wake has pushed (or after 60 s: nil)
        else:
            store._call("RPUSH", key, "x")
        return [b""]

    app = turns.middleware(app)
    blocked = _request(app, "/blocked")
    assert entered.wait(WAIT)
    wake = _request(app, "/wake")
    assert wake.wait(WAIT), "the second request waited for the first one's Redis round trip"
    assert blocked.wait(WAIT)


def test_a_body_slow_to_come_is_read_before_the_turn():
    """A client that sends its headers and then its body a byte at a time (or never) held the
    turn while the endpoint read it: every other request of the worker waited MAX_WAIT and ran
    without the turn. The body is read before the turn now, and reaches the endpoint whole."""
    arrived, release, seen = threading.Event(), threading.Event(), {}

    class SlowBody:
        def read(self, size=-1):
            arrived.set()
            assert release.wait(WAIT)
            return b"grant_type=x"[:size]

    def app(environ, start_response):
        body = environ["wsgi.input"].read() if "wsgi.input" in environ else None
        seen[environ["PATH_INFO"]] = (turns._local.held, body)
        return [b""]

    wrapped = turns.middleware(app)
    environ = {"PATH_INFO": "/token", "REQUEST_METHOD": "POST", "CONTENT_LENGTH": "12", "wsgi.input": SlowBody()}
    slow = threading.Thread(target=wrapped, args=(environ, None), daemon=True)
    slow.start()
    assert arrived.wait(WAIT)
    fast = _request(wrapped, "/fast")
    assert fast.wait(WAIT) and seen["/fast"][0] is True  # it had the turn: nobody held it
    release.set()
    slow.join(WAIT)
    assert seen["/token"] == (True, b"grant_type=x")


@pytest.mark.parametrize("environ, read", [
    ({"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(70 * 1024)}, False),  # over the limit: refused unread
    ({"REQUEST_METHOD": "POST", "wsgi.input_terminated": True}, 64 * 1024 + 1),  # chunked: one byte too many
    ({"REQUEST_METHOD": "GET", "wsgi.input_terminated": True}, False),
    ({"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "abc"}, False),
])
def test_what_is_read_ahead(environ, read):
    import io

    stream = io.BytesIO(b"y" * (80 * 1024))
    environ = {**environ, "wsgi.input": stream}
    turns.read_ahead(environ)
    if read is False:
        assert environ["wsgi.input"] is stream and stream.tell() == 0
    else:
        assert len(environ["wsgi.input"].read()) == read
