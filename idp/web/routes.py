"""A WSGI layer that answers a few exact paths itself and passes every other request on.

The discovery documents (idp.oauth.discovery) and the API endpoints (idp.oauth.endpoints)
are answered this way, before Flask: each subclass maps a path to the metric's endpoint
name and its own route data, and says what to answer; this writes the response and times
it in the same metric as a Flask request (idp.ops.metrics).
"""

from __future__ import annotations

import json
import time
from http import HTTPStatus

from .. import errors
from ..ops import metrics, turns


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class PathRoutes:
    routes: dict[str, tuple[str, object]]  # path -> (endpoint name, route data)
    # The security headers of a subclass's answers, for the 500 of an error it did not expect.
    fallback_headers: list[tuple[str, str]] = []

    def __init__(self, wsgi_app):
        self.next = wsgi_app

    def answer(self, environ, method: str, route) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers without Content-Length, body) for a request to one of the routes."""
        raise NotImplementedError

    def __call__(self, environ, start_response):
        found = self.routes.get(environ.get("PATH_INFO", ""))
        if found is None:
            return self.next(environ, start_response)
        started = environ.get(turns.ARRIVED) or time.perf_counter()
        endpoint, route = found
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            status, headers, body = self.answer(environ, method, route)
        except errors.UNAVAILABLE as exc:  # the keys' database out of reach: try again shortly
            status, headers, body = self._unavailable(environ, exc)
        except Exception:  # a bug, or key storage gone bad: a JSON 500 with a request id, never to the server
            status, headers, body = self._unexpected(environ)
        # RFC 9110 §8.6: no Content-Length on a 304 (it would describe the body not sent) nor a 204
        length = [] if status in (204, 304) else [("Content-Length", str(len(body)))]
        start_response(f"{status} {_phrase(status)}", [*headers, *length])
        metrics.observe(endpoint, method, status, time.perf_counter() - started)
        return [b""] if method == "HEAD" else [body]

    def _unavailable(self, environ, exc) -> tuple[int, list[tuple[str, str]], bytes]:
        request_id = errors.log_unavailable(environ.get("PATH_INFO", ""), exc)
        return self._json_error(503, "temporarily_unavailable", errors.unavailable_description(request_id),
                                [("Retry-After", errors.RETRY_AFTER)])

    def _unexpected(self, environ) -> tuple[int, list[tuple[str, str]], bytes]:
        request_id = errors.log_unexpected(environ.get("PATH_INFO", ""))
        return self._json_error(500, "server_error", errors.unexpected_description(request_id))

    def _json_error(self, status: int, error: str, description: str, extra=()) -> tuple[int, list, bytes]:
        body = {"error": error, "error_description": description}
        return status, [*self.fallback_headers, ("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                        *extra], json.dumps(body, separators=(",", ":")).encode()
