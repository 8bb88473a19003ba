"""Health probes for the orchestrator or load balancer.

- ``GET /healthz`` (liveness): the process answers HTTP. No I/O, and it does not wait for
  the worker's turn (idp.ops.turns) behind a request stuck on a slow database. It still needs
  a free request thread: a worker all of whose THREADS wait on a stalled database answers
  nothing (README, Probes).
- ``GET /readyz`` (readiness): the database answers ``SELECT 1``, the ephemeral store
  answers a ping, and every signing algorithm has a key that signs now (from the key ring's
  copy, which re-reads their storage at most once a second: a KEYS_DIR volume unmounted or
  emptied under a running process leaves it unable to issue an ID token). 200 when all
  hold; 503 naming what did not, so the balancer stops sending traffic here until it
  recovers. The reason of a failure goes to the log only.

The checks run in their own threads and the probe waits for them at most READY_TIMEOUT
seconds: a check still running then counts as failed. That is what bounds a database
that stalls without refusing connections (SIGSTOP, a hung host, a full disk): psycopg
has no timeout on an established connection, so its ``SELECT 1`` may wait for as long as
the server stalls. Such a check is not started again while it still waits: a later
probe counts it failed at once, so every probe of the outage answers 503 within
READY_TIMEOUT and the stuck threads are at most one per check. Like /healthz it runs
without the worker's turn (idp.ops.turns.UNQUEUED): waiting for the turn behind a request
stuck on that database would add up to twice MAX_WAIT to READY_TIMEOUT.

Both answers are ``no-store``: a cached "ok" would hide an outage.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, wait

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from ..crypto.keys import ALGS, NoActiveKey
from ..extensions import db, keyring, store

bp = Blueprint("ops_health", __name__)
log = logging.getLogger("idp.ops")


def _answer(body: dict, status: int):
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/healthz")
def healthz():
    return _answer({"status": "ok"}, 200)


def database_ok() -> bool:
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # any driver or pool error means "not ready"
        log.warning("readiness: database unreachable", exc_info=True)
        return False


def store_ok() -> bool:
    try:
        ok = store().ping()
    except Exception:  # ping() should not raise; a backend bug still means "not ready"
        log.warning("readiness: store ping raised", exc_info=True)
        return False
    if not ok:
        log.warning("readiness: store unreachable")
    return ok


def keys_ok() -> bool:
    try:
        for alg in ALGS:
            keyring().active(alg)
        return True
    except NoActiveKey as exc:
        log.warning("readiness: %s", exc)
        return False
    except Exception:  # the keys' storage unreadable and no copy read before
        log.warning("readiness: signing keys unreadable", exc_info=True)
        return False


def checks() -> dict:
    return {"database": database_ok, "store": store_ok, "keys": keys_ok}


class _Checks:
    """An app's readiness checks in flight: at most one thread per check. Daemon threads: one
    stuck on a stalled database must not hold up the worker's exit."""

    def __init__(self):
        self.running: dict[str, Future] = {}
        self.lock = threading.Lock()

    def start(self, app) -> dict[str, Future]:
        """The checks started now; one an earlier probe's thread still runs is not among them."""
        started = {}
        with self.lock:  # probes on two threads of a worker start one thread per check
            for name, check in checks().items():
                previous = self.running.get(name)
                if previous is not None and not previous.done():
                    log.warning("readiness: the %s check of an earlier probe is still waiting", name)
                    continue
                future = self.running[name] = started[name] = Future()
                threading.Thread(target=_run, args=(app, check, future), name=f"idp-readyz-{name}",
                                 daemon=True).start()
        return started


def _run(app, check, future: Future) -> None:
    try:
        with app.app_context():
            ok = check()
    except Exception:  # noqa: BLE001  (the checks catch their own errors; a bug still means "not ready")
        log.warning("readiness: a check raised", exc_info=True)
        ok = False
    future.set_result(ok)


@bp.get("/readyz")
def readyz():
    app = current_app._get_current_object()
    timeout = app.config["READY_TIMEOUT"]
    futures = app.extensions.setdefault("idp.readyz", _Checks()).start(app)
    wait(futures.values(), timeout=timeout)
    # A check not started now (still stuck since an earlier probe) has failed, at once.
    results = {name: name in futures and futures[name].done() and futures[name].result() for name in checks()}
    for name, future in futures.items():
        if not future.done():
            log.warning("readiness: the %s check did not answer within %s s", name, timeout)
    body = {"status": "ok" if all(results.values()) else "unavailable",
            "checks": {name: "ok" if ok else "unavailable" for name, ok in results.items()}}
    return _answer(body, 200 if all(results.values()) else 503)
