"""The seller API: a resource server that accepts the IdP's opaque access tokens.

An opaque token means nothing to us, so every request asks the IdP about it by token
introspection (RFC 7662 §2), authenticating as the backend-api client. authlib's
ResourceProtector does the RFC 6750 part: parse the bearer token, check it is active
and has the scope, answer 401/403 with WWW-Authenticate (RFC 6750 §3).

Active is not enough: any client the IdP ever gave api:read, for any purpose, holds active
tokens with that scope. A token is ours only if its audience names us (RFC 9700 §2.3,
RFC 7662 §4): this API's resource identifier (a client that asked for it with RFC 8707's
``resource``), or one of the clients this API serves (a token the dashboard got for itself,
whose audience is the dashboard's client_id); and only if the IdP we asked issued it.
"""

from __future__ import annotations

import json
import logging
import os
import threading

import requests
from authlib.integrations.flask_oauth2 import ResourceProtector, current_token
from authlib.integrations.flask_oauth2.errors import raise_http_exception
from authlib.oauth2.rfc6749.errors import MissingAuthorizationError, UnsupportedTokenTypeError
from authlib.oauth2.rfc6750 import InsufficientScopeError
from authlib.oauth2.rfc7662 import IntrospectTokenValidator
from flask import Flask, abort, jsonify

from ..common import Registration, issuer, load_registrations

log = logging.getLogger(__name__)
REALM = "seller-api"
READ = "api:read"


class IdPIntrospection(IntrospectTokenValidator):
    """Asks the IdP's introspection_endpoint (from discovery) about each token."""

    def __init__(self, idp_issuer: str, client_id: str, secret: str, audiences: set[str]):
        super().__init__(realm=REALM)
        self.idp_issuer, self.auth, self.audiences = idp_issuer, (client_id, secret), audiences
        self._endpoint: str | None = None
        self._lock = threading.Lock()

    def endpoint(self) -> str:
        with self._lock:
            if self._endpoint is None:
                resp = requests.get(self.idp_issuer + "/.well-known/openid-configuration", timeout=5)
                resp.raise_for_status()
                self._endpoint = resp.json()["introspection_endpoint"]
            return self._endpoint

    def introspect_token(self, token_string):
        try:
            resp = requests.post(self.endpoint(), timeout=5, auth=self.auth, headers={"Accept": "application/json"},
                                 data={"token": token_string, "token_type_hint": "access_token"})
            resp.raise_for_status()
            answer = resp.json()
        except (requests.RequestException, ValueError, KeyError) as exc:
            # Not the client's fault: 503, never "invalid token" (that would sign the user out).
            log.error("introspection failed: %s", exc)
            abort(503, "the identity provider cannot be asked about the token")
        # RFC 7662 §2.2: "active" is the only required member; anything but true means no.
        if answer.get("active") is not True or not self.for_us(answer):
            return {"active": False}
        return answer

    def for_us(self, answer: dict) -> bool:
        aud = answer.get("aud")
        aud = {aud} if isinstance(aud, str) else set(aud) if isinstance(aud, list) else set()
        issued_by = answer.get("iss", self.idp_issuer)  # RFC 7662 §2.2: iss is optional
        return bool(aud & self.audiences) and issued_by == self.idp_issuer


class Protector(ResourceProtector):
    """authlib's, with the two challenges RFC 6750 §3 words differently."""

    def raise_error_response(self, error):
        if isinstance(error, (MissingAuthorizationError, UnsupportedTokenTypeError)):
            # §3.1: no error code when the request carries no bearer token (none, or another scheme)
            challenge = f'Bearer realm="{REALM}"'
        elif isinstance(error, InsufficientScopeError):
            challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{READ}"'  # which scope would do
        else:
            return super().raise_error_response(error)
        headers = [h for h in error.get_headers() if h[0] != "WWW-Authenticate"] + [("WWW-Authenticate", challenge)]
        raise_http_exception(error.status_code, json.dumps(dict(error.get_body())), headers)


ORDERS = [
    {"id": "112-0000001", "item": "Ceramic mug, blue", "status": "shipped"},
    {"id": "112-0000002", "item": "Tea towel set", "status": "pending"},
]


# The clients whose own tokens this API takes (their audience is their client_id): the
# dashboard's, and the API's own machine token (client_credentials, for its own jobs).
SERVED_CLIENTS = ("seller-dashboard", "backend-api")


def create_app(reg: Registration | None = None, idp_issuer: str | None = None,
               resource: str | None = None, served_clients=SERVED_CLIENTS) -> Flask:
    """``resource``: this API's RFC 8707 identifier (default: its own URL, BACKEND_API_URL)."""
    reg = reg or load_registrations()["backend-api"]
    resource = (resource or os.environ.get("BACKEND_API_URL", "http://127.0.0.1:5006")).rstrip("/")
    app = Flask(__name__)
    require = Protector()
    require.register_token_validator(IdPIntrospection(idp_issuer or issuer(), reg.client_id, reg.secret,
                                                      {resource, *served_clients}))

    @app.get("/api/orders")
    @require(READ)
    def orders():
        return jsonify(seller=current_token.get("sub"), client_id=current_token.get("client_id"),
                       scope=current_token.get("scope"), orders=ORDERS)

    @app.get("/")
    def index():
        return jsonify(api="seller-api", requires=f"Bearer token with scope {READ}")

    @app.after_request
    def no_store(resp):
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    return app
