"""HEAD only where a GET changes nothing.

Flask answers HEAD on every GET route by running the GET view (RFC 9110 §9.3.2: the same
as GET without the body). Our sign-in GETs are not safe methods in that sense: /authorize
with a session mints a code and sends it in Location, /logout with a matching hint ends
the session, a parked request is taken, a sign-in is moved on. A HEAD (a link checker, a
prefetching proxy, a mail scanner following a link) must do none of that, so HEAD is
refused with 405 everywhere except the routes listed here, which only read.
"""

from __future__ import annotations

from flask import current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

# Endpoints whose GET has no effect: a load balancer or a monitor may HEAD them.
HEAD_ALLOWED = frozenset({"static", "ops_health.healthz", "ops_health.readyz", "ops_metrics.metrics"})


def register(app) -> None:
    @app.before_request
    def refuse_head():
        if request.method == "HEAD" and request.url_rule is not None and request.endpoint not in HEAD_ALLOWED:
            allowed = sorted(request.url_rule.methods - {"HEAD", "OPTIONS"})
            raise MethodNotAllowed(valid_methods=allowed)


def allowed(methods: str) -> str:
    """An ``Allow`` header (RFC 9110 §10.2.1) for this request's path without HEAD where HEAD
    is refused (werkzeug lists it for every GET route)."""
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if "HEAD" in names:
        try:
            endpoint, _ = current_app.url_map.bind("").match(request.path, method="GET")
        except HTTPException:
            endpoint = None
        if endpoint not in HEAD_ALLOWED:
            names.remove("HEAD")
    return ", ".join(names)
