"""Health probes for the orchestrator or load balancer.

- ``GET /healthz`` (liveness): the process answers HTTP. No I/O, and it never waits for
  the worker's turn (idp.ops.turns) behind a request stuck on a slow database, so a slow
  database never gets a healthy worker restarted.
- ``GET /readyz`` (readiness): the database answers ``SELECT 1``, the ephemeral store
  answers a ping, and every signing algorithm has a key that signs now (from the key ring's
  copy, which re-reads their storage at most once a second: a KEYS_DIR volume unmounted or
  emptied under a running process leaves it unable to issue an ID token). 200 when all
  hold; 503 naming what did not, so the balancer stops sending traffic here until it
  recovers. The reason of a failure goes to the log only. The checks give the worker's turn
  to other requests while they wait: a database that stalls without refusing connections
  makes this probe slow (the balancer's probe timeout counts it as failed), not the worker.

Both answers are ``no-store``: a cached "ok" would hide an outage.
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

from ..crypto.keys import ALGS, NoActiveKey
from ..extensions import db, keyring, store
from . import turns

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


@bp.get("/readyz")
def readyz():
    with turns.waiting():
        checks = {"database": database_ok(), "store": store_ok(), "keys": keys_ok()}
    body = {"status": "ok" if all(checks.values()) else "unavailable",
            "checks": {name: "ok" if ok else "unavailable" for name, ok in checks.items()}}
    return _answer(body, 200 if all(checks.values()) else 503)
