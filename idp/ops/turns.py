"""Turns: one request at a time runs Python in a worker; a slow wait hands the turn on.

A worker process of `idp serve` has ``THREADS`` request threads (granian's blocking
threads). Python code holds the GIL, so two threads running Python at once only take turns
at it, and every socket wait (each PostgreSQL or Redis round trip) becomes a handover that
wakes the other thread: measured on the refresh row, a second free thread cost about 10%
of throughput. With a single thread, though, a sign-in's password hash (13-40 ms, in C,
without the GIL) or a back-channel logout waiting on a relying party (up to
BACKCHANNEL_TIMEOUT) holds up every other request queued on that worker, token refreshes
included.

So a request runs while it holds its worker's turn (``middleware``), and code about to wait
a long time without touching Python objects gives the turn back meanwhile (``waiting()``):
the next request runs during the hash, as node-oidc-provider runs argon2 on libuv's thread
pool beside its event loop. A Redis round trip hands the turn on as well (idp.store.redis):
held through it, the turn left the core idle for the round trip, and under load 11-16% of
the machine went unused (the reference's event loop left 3-5%); handed on, the API rows
served 8-22% more requests (bench/, README "Server"). A database round trip keeps the
turn; one that does not come back (a database that stalls without refusing connections)
would keep it for as long, so a request waits for the turn at most MAX_WAIT and then runs
without it.

The turn only orders threads: nothing relies on it for correctness, and outside a request
(CLI, tests, the development server) ``waiting()`` changes nothing.

A request's body is read before it waits for the turn (``read_ahead``): the WSGI server
hands the request on before its body has arrived, and a client that sends the headers and
then a byte at a time (or nothing) held the turn for as long as it liked, every other
request of the worker waiting MAX_WAIT behind it. It still holds a request thread: a
reverse proxy that buffers request bodies (README, Production) is what frees the threads.

``/healthz`` never waits for the turn: the liveness probe does no I/O, and behind a request
stuck on a stalled database it would time out and get a healthy worker restarted.

A request's arrival is stamped in its environ (``ARRIVED``) before it waits for the turn,
so the request-duration metric (idp.ops.metrics) counts time queued behind another
request in the worker, as a client sees it.
"""

from __future__ import annotations

import io
import threading
import time
from contextlib import contextmanager

ARRIVED = "idp.arrived"  # environ key: time.perf_counter() when the request reached the worker
# Seconds a request waits for the turn before it runs without it. A turn is held for a request's
# Python work and its short round trips: milliseconds, unless something stalls.
MAX_WAIT = 1.0
# Paths answered without the turn (idp.ops.health): a probe behind a request stuck on a
# stalled database would wait up to MAX_WAIT for the turn, and again to take it back.
UNQUEUED = frozenset({"/healthz", "/readyz"})


class _Held(threading.local):
    held = False


_turn = threading.Lock()
_local = _Held()


BODY_LIMIT = 64 * 1024  # bytes read ahead at most: the largest body an endpoint takes by default


def read_ahead(environ, limit: int = BODY_LIMIT) -> None:
    """Read the request's body now, into memory, if it is no larger than ``limit``: a declared
    length over it is left unread (the endpoint refuses it unread, 413), and of a body of no
    declared length one byte more is read, so the endpoint still sees that it is too large."""
    declared = environ.get("CONTENT_LENGTH")
    if declared:
        try:
            length = int(declared)
        except ValueError:
            return
        if 0 < length <= limit:
            environ["wsgi.input"] = io.BytesIO(_read(environ["wsgi.input"], length))
    elif environ.get("wsgi.input_terminated") and environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        environ["wsgi.input"] = io.BytesIO(_read(environ["wsgi.input"], limit + 1))


def _read(stream, size: int) -> bytes:
    try:
        return stream.read(size)
    except Exception:  # noqa: BLE001  (the client went away: the endpoint sees a short body)
        return b""


def middleware(app, body_limit: int = BODY_LIMIT):
    """Wrap a WSGI app so that each request runs while it holds its worker's turn."""

    def in_turn(environ, start_response):
        environ[ARRIVED] = time.perf_counter()
        if environ.get("PATH_INFO") in UNQUEUED:
            return app(environ, start_response)
        read_ahead(environ, body_limit)
        if not _turn.acquire(timeout=MAX_WAIT):
            # The turn's holder is stuck: a database that stalls without refusing (or Redis, on
            # a command outside the store's hot paths, which hand the turn on) keeps a round
            # trip's turn as long as it stalls. Run without it, as a free thread
            # would: the turn orders requests, it protects nothing.
            return app(environ, start_response)
        _local.held = True
        try:
            return app(environ, start_response)
        finally:
            if _local.held:  # waiting() may have come back without it (MAX_WAIT)
                _turn.release()
            _local.held = False

    return in_turn


@contextmanager
def waiting():
    """Give the turn to the next request for the duration of a slow wait in C or on a socket.

    The body must not rely on the turn (it never does: the turn orders, it protects nothing)."""
    if not _local.held:
        yield
        return
    _local.held = False
    _turn.release()
    try:
        yield
    finally:
        # Back for the turn, as long as a new request would wait for it: then on without it.
        _local.held = _turn.acquire(timeout=MAX_WAIT)
