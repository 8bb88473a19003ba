"""The seller API: a resource server that accepts the IdP's opaque access tokens.

An opaque token means nothing to us, so every request asks the IdP about it by token
introspection (RFC 7662 §2), authenticating as the backend-api client. authlib's
ResourceProtector does the RFC 6750 part: parse the bearer token, check it is active
and has the scope, answer 401/403 with WWW-Authenticate (RFC 6750 §3).
"""

from __future__ import annotations

import json
import logging
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

    def __init__(self, idp_issuer: str, client_id: str, secret: str):
        super().__init__(realm=REALM)
        self.idp_issuer, self.auth = idp_issuer, (client_id, secret)
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
        return answer if answer.get("active") is True else {"active": False}


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


def create_app(reg: Registration | None = None, idp_issuer: str | None = None) -> Flask:
    reg = reg or load_registrations()["backend-api"]
    app = Flask(__name__)
    require = Protector()
    require.register_token_validator(IdPIntrospection(idp_issuer or issuer(), reg.client_id, reg.secret))

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
