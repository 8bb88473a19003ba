"""The three kinds of error and one renderer each.

1. OAuth errors (authlib's OAuth2Error): the RFC's JSON body and status, or a redirect
   from /authorize once client and redirect URI are verified (idp.oauth.authorize).
2. Sign-in errors: neutral messages in the form, rendered by the login views.
3. Anything unexpected: a generic error with a request id; the detail goes to the log only.
   When that is PostgreSQL or Redis being unreachable (``UNAVAILABLE``), the answer is 503
   with ``Retry-After`` (``temporarily_unavailable`` in JSON): a relying party or the
   mobile app can tell "try again shortly" from a bug, and the log gets one line, not a
   traceback per request for the length of an outage.
"""

import logging
import secrets

import psycopg
import redis.exceptions
import sqlalchemy.exc
from flask import jsonify, make_response, render_template, request, session
from flask.globals import request_ctx
from werkzeug.exceptions import HTTPException

from .ops.logs import WithholdDatabaseDetail, first_line
from .web import methods

log = logging.getLogger("idp")
log.addFilter(WithholdDatabaseDetail())  # PostgreSQL's DETAIL names values (idp.ops.logs)

JSON_PREFIXES = ("/token", "/introspect", "/revoke", "/userinfo", "/jwks", "/.well-known", "/healthz", "/readyz")


def wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES)


def oauth_error(error: str, description: str, status: int = 400, headers=None):
    """An RFC 6749 §5.2 error response; never cached."""
    resp = jsonify(error=error, error_description=description)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _quoted(path: str) -> str:
    """The request's path as the client sent it, but on one line: a decoded %0a in a text log
    started a line of the sender's choosing (a forged ERROR record). Printable ASCII is kept
    as is; anything else is escaped as Python writes it."""
    return path if path.isascii() and path.isprintable() else repr(path)[1:-1]


def log_unexpected(path: str) -> str:
    """Log the exception being handled, with a new request id, and return the id (kind 3)."""
    request_id = secrets.token_hex(8)
    log.exception("unhandled error request_id=%s path=%s", request_id, _quoted(path))
    return request_id


def unexpected_description(request_id: str) -> str:
    return f"unexpected error (request id {request_id})"


# A dependency that cannot be reached, or gave up on us: connection refused or lost, a
# timeout, a server shutting down (SQLAlchemy's OperationalError wraps the driver's, also
# for a pool that ran dry); Redis answering that it cannot write now: a primary turned
# replica by a failover (READONLY), out of memory (OOM), busy (TRYAGAIN), its cluster down or
# its primary gone (CLUSTERDOWN, MASTERDOWN). What the client sent cannot cause these.
UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError,
               redis.exceptions.OutOfMemoryError, redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError,
               sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError, psycopg.OperationalError)
RETRY_AFTER = "5"  # seconds: Retry-After of a 503


def log_unavailable(path: str, exc: BaseException) -> str:
    """One warning line, the driver's reason without a traceback; returns the request id."""
    request_id = secrets.token_hex(8)
    log.warning("dependency unavailable request_id=%s path=%s error=%s: %s", request_id, _quoted(path),
                type(exc).__name__, first_line(exc))
    return request_id


def unavailable_description(request_id: str) -> str:
    return f"briefly unavailable, try again shortly (request id {request_id})"


def page_error(message: str, status: int = 400):
    if request_ctx.url_adapter is None:
        # Flask could not bind the request to a host: its Host header is no name IDNA can
        # encode (an empty label, one over 63 octets), werkzeug's BadHost. No URL can be
        # built (the page's stylesheet link): the message in plain text, with every header.
        return make_response(message, status, {"Content-Type": "text/plain; charset=utf-8"})
    return render_template("error.html", message=message), status


def register(app):
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if wants_json():
            code = "invalid_request" if exc.code < 500 else "server_error"
            resp = make_response(oauth_error(code, exc.description or exc.name, exc.code))
        else:
            resp = make_response(page_error(exc.description or exc.name, exc.code))
        # RFC 9110 §15.5.6: a 405 MUST say which methods the resource takes (werkzeug's own
        # response has the header; the page or JSON that replaces it must keep it).
        for name, value in exc.get_headers():
            if name.lower() == "allow":
                resp.headers[name] = methods.allowed(value)
        return resp

    @app.errorhandler(UnicodeDecodeError)
    def undecodable(exc: UnicodeDecodeError):
        # Raw bytes that are not UTF-8 in the query string (PEP 3333 lets a server pass them
        # on): werkzeug refuses to decode them when the view reads request.args.
        if wants_json():
            return oauth_error("invalid_request", "the request is not UTF-8", 400)
        return page_error("This request could not be read: it is not UTF-8.", 400)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # The request failed: the browser keeps its Flask session as it was (a sign-in that
        # rotated it before an outage stopped it would leave the browser without the CSRF
        # token of the form the seller is asked to send again), as the database rolls back.
        session.modified = False
        if isinstance(exc, UNAVAILABLE):
            request_id = log_unavailable(request.path, exc)
            if wants_json():
                resp = oauth_error("temporarily_unavailable", unavailable_description(request_id), 503)
            else:
                resp = make_response(page_error("The sign-in service is briefly unavailable. Please try again "
                                                f"in a moment. Request id: {request_id}", 503))
            resp.headers["Retry-After"] = RETRY_AFTER
            return resp
        request_id = log_unexpected(request.path)
        if wants_json():
            return oauth_error("server_error", unexpected_description(request_id), 500)
        return page_error(f"Something went wrong on our side. Request id: {request_id}", 500)
