"""/token, /introspect, /revoke and /userinfo, answered before Flask.

These are called by servers and apps, on every API call of a resource server and every
token refresh of the mobile app: the hot paths of the IdP. They carry no cookie, render
no page and need no CSRF token, yet going through Flask's request, session and response
machinery cost more than the work of the endpoint itself (measured in bench/: Flask's
request and response objects about 0.2 ms of a 1 ms introspection). So this WSGI layer
answers them directly: it builds authlib's own framework-agnostic request
(idp.oauth.requests), runs authlib's server (idp.oauth.server) inside the Flask app
context (config, database session and store as everywhere else), and writes the JSON
with the same security headers and metric as a Flask response. Every other path goes to
Flask unchanged.

Errors: an OAuth error is the RFC's JSON from authlib; a wrong method is 405, a body over
the limit 413, both as invalid_request JSON; PostgreSQL or Redis out of reach is 503
``temporarily_unavailable`` with Retry-After; anything else unexpected is a logged
``server_error`` with a request id (idp.errors), never a stack trace.
"""

from __future__ import annotations

import json

from authlib.common.security import is_secure_transport
from authlib.oauth2.rfc6749 import InsecureTransportError

from .. import errors
from ..web import headers as security
from ..web.routes import PathRoutes
from . import cors, userinfo
from .requests import BodyTooLarge, WSGIRequest


def _error(error: str, description: str) -> dict:
    return {"error": error, "error_description": description}


class Endpoints(PathRoutes):
    """WSGI layer: the protocol API endpoints, each a function of an authlib request."""

    def __init__(self, app, wsgi_app):
        super().__init__(wsgi_app)
        self.app, self.issuer = app, app.config["ISSUER"]
        # authlib's transport rule (https, or http on loopback), judged once on the issuer.
        self.insecure = not is_secure_transport(self.issuer + "/token")
        self.fallback_headers = security.security_headers(self.issuer)
        self.base_headers = [*self.fallback_headers, ("Cache-Control", "no-store"), ("Pragma", "no-cache")]
        server = app.extensions["idp.authorization_server"]
        self.routes = {
            "/token": ("oauth.token", (("POST",), server.create_token_response)),
            "/introspect": ("oauth.introspect", (("POST",),
                            lambda req: server.create_endpoint_response("introspection", req))),
            "/revoke": ("oauth.revoke", (("POST",), lambda req: server.create_endpoint_response("revocation", req))),
            "/userinfo": ("oauth.userinfo", (("GET", "POST"), lambda req: userinfo.respond(req, self.issuer))),
        }

    def answer(self, environ, method, route):
        status, body, extra = self._answer(environ, method, *route)
        payload = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        names = {name.lower() for name, _ in extra}
        out = [(n, v) for n, v in self.base_headers if n.lower() not in names]
        out += [(n, v) for n, v in extra if n.lower() != "content-length"]
        if "content-type" not in names and payload:
            out.append(("Content-Type", "application/json"))
        return status, out, payload

    def _answer(self, environ, method, methods, handler):
        path = environ.get("PATH_INFO", "")
        if method == "OPTIONS" and path in cors.ENDPOINTS:
            answer = cors.preflight(environ, path)
            if answer is not None:
                return answer
        if method not in methods:
            return 405, _error("invalid_request", f"use {' or '.join(methods)}"), [("Allow", ", ".join(methods))]
        if self.insecure:
            return InsecureTransportError()()
        try:
            with self.app.app_context():
                status, body, extra = handler(WSGIRequest(environ, self.issuer))
                origin = environ.get("HTTP_ORIGIN")
                if origin and path in cors.ENDPOINTS:
                    extra = [*extra, *cors.answer_headers(origin)]
                return status, body, extra
        except BodyTooLarge:
            return 413, _error("invalid_request", "the request body is too large"), []
        except errors.UNAVAILABLE as exc:
            request_id = errors.log_unavailable(environ.get("PATH_INFO", ""), exc)
            return 503, _error("temporarily_unavailable", errors.unavailable_description(request_id)), \
                [("Retry-After", errors.RETRY_AFTER)]
        except Exception:
            return 500, _error("server_error", errors.unexpected_description(
                errors.log_unexpected(environ.get("PATH_INFO", "")))), []
