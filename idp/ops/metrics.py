"""Prometheus metrics: request latency per endpoint, tokens issued, failed sign-ins,
refresh-token and authorization-code reuse; exposed at ``GET /metrics`` in the text exposition format.

Every label value comes from a small fixed set, never from the request: the Flask
endpoint name (not the path: a scanner trying random URLs would otherwise create a
series per URL), a known method, the status class, a known grant type. Unknown values
become ``other`` / ``none``.

One process (``make run``, tests) uses the default registry. Under ``idp serve`` each
worker process writes its samples to ``PROMETHEUS_MULTIPROC_DIR`` and /metrics sums the
files of all workers (see idp.ops.prepare_multiprocess).

``METRICS_TOKEN``, when set, is a bearer token /metrics requires (RFC 6750 §2.1). In
production without one, /metrics is off (404): it shares the public port, and sign-in
failure and token counts are nobody's business outside (Keycloak and Hydra serve their
metrics on a separate management or admin port for the same reason).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time

from flask import Blueprint, Response, current_app, g, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

from . import maintenance, turns  # job names; neither imports anything of ours at import time

bp = Blueprint("ops_metrics", __name__)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
GRANT_TYPES = frozenset({"authorization_code", "refresh_token", "client_credentials"})
TOKEN_KINDS = ("access_token", "refresh_token", "id_token")
# Add a reason here before passing it to signin_failed(); anything else counts as "other".
SIGNIN_REASONS = frozenset({"bad_credentials", "locked", "inactive", "second_factor", "rate_limited"})

REQUEST_SECONDS = Histogram(
    "idp_http_request_duration_seconds",
    "Time to answer an HTTP request from its arrival at the worker (queued behind another request "
    "included); _count is the number of requests.",
    ["endpoint", "method", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
TOKENS_ISSUED = Counter("idp_tokens_issued", "Tokens issued at the token endpoint.", ["grant_type", "kind"])
SIGNIN_FAILURES = Counter("idp_signin_failures", "Sign-in attempts refused.", ["reason"])
REFRESH_REUSE = Counter("idp_refresh_token_reuse",
                        "Refresh tokens presented again after rotation; each revoked its token family.")
CODE_REUSE = Counter("idp_authorization_code_reuse",
                     "Authorization codes presented again after their redemption; each revoked its token family.")
MAINTENANCE_JOBS = tuple(job.name for job in maintenance.JOBS)
MAINTENANCE_RUNS = Counter("idp_maintenance_runs", "Maintenance job runs (idp.ops.maintenance), by outcome.",
                           ["job", "outcome"])
# Series exist from the start at 0, so rate() also sees the first increment.
for _job in MAINTENANCE_JOBS:
    for _outcome in ("ok", "failed"):
        MAINTENANCE_RUNS.labels(_job, _outcome)
for _reason in SIGNIN_REASONS:
    SIGNIN_FAILURES.labels(_reason)
# The labelled series, looked up once: labels() takes a lock and builds a key each call.
_TOKENS_ISSUED = {(g, k): TOKENS_ISSUED.labels(g, k) for g in GRANT_TYPES for k in TOKEN_KINDS}


# -- what other modules call -------------------------------------------------

def token_issued(grant_type: str, kind: str) -> None:
    series = _TOKENS_ISSUED.get((grant_type, kind))
    if series is None:
        series = TOKENS_ISSUED.labels(grant_type if grant_type in GRANT_TYPES else "other",
                                      kind if kind in TOKEN_KINDS else "other")
    series.inc()


def tokens_issued(response: dict, grant_type: str) -> None:
    """Count each token in a token response."""
    for kind in TOKEN_KINDS:
        if kind in response:
            token_issued(grant_type, kind)


def signin_failed(reason: str) -> None:
    SIGNIN_FAILURES.labels(reason if reason in SIGNIN_REASONS else "other").inc()


def refresh_reuse() -> None:
    REFRESH_REUSE.inc()


def code_reuse() -> None:
    CODE_REUSE.inc()


def maintenance_run(job: str, ok: bool) -> None:
    MAINTENANCE_RUNS.labels(job if job in MAINTENANCE_JOBS else "other", "ok" if ok else "failed").inc()


# -- request timing ----------------------------------------------------------

def observe(endpoint: str, method: str, status: int, seconds: float) -> None:
    """Time one request (also called by WSGI layers that answer before Flask)."""
    REQUEST_SECONDS.labels(endpoint, method if method in METHODS else "other", f"{status // 100}xx").observe(seconds)


def _observe(status: int) -> None:
    started = g.pop("_idp_metrics_t0", None)
    if started is not None:
        observe(request.endpoint or "none", request.method, status, time.perf_counter() - started)


def instrument(app) -> None:
    def start():
        g._idp_metrics_t0 = request.environ.get(turns.ARRIVED) or time.perf_counter()

    def after(resp):
        _observe(resp.status_code)
        return resp

    def teardown(exc):
        _observe(500)  # no-op unless after_request never ran (an exception escaped)

    # First of the before_request hooks, so a hook that answers early is still timed.
    app.before_request_funcs.setdefault(None, []).insert(0, start)
    app.after_request(after)
    app.teardown_request(teardown)


# -- exposition --------------------------------------------------------------

def _authorized(expected: str) -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    digest = lambda s: hashlib.sha256(s.encode()).digest()  # noqa: E731  (equal lengths: no length leak)
    return scheme.lower() == "bearer" and hmac.compare_digest(digest(value.strip()), digest(expected))


def registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return collected
    return REGISTRY


@bp.get("/metrics")
def metrics():
    token = current_app.config.get("METRICS_TOKEN")
    if not token and current_app.config["ENV"] == "production":
        resp = Response("metrics are off: set METRICS_TOKEN to read them\n", 404, mimetype="text/plain")
    elif token and not _authorized(str(token)):
        resp = Response("metrics need the bearer token (METRICS_TOKEN)\n", 401, mimetype="text/plain")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
    else:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))  # text 0.0.4 or OpenMetrics
        resp = Response(encode(registry()), 200, content_type=content_type)
    resp.headers["Cache-Control"] = "no-store"
    return resp
