"""Provider metadata (OpenID Connect Discovery 1.0 §3-4, RFC 8414 §2-3) and the JWKS (RFC 7517 §5).

The metadata says exactly what the server enforces, no more: only the code flow with S256
PKCE, no request objects, no claims parameter, no dynamic registration. Every URL is built
from the configured issuer, never from the Host header (Discovery §4.3: the issuer in the
document must equal the one the client used; RFC 8414 §3.3).

Both documents are public and cacheable: a strong ETag over the exact body, answered with
304 on a matching If-None-Match (RFC 9110 §13.1.2), and CORS open to any origin so browser
clients can read them. The JWKS is cached for less time because rotation changes it.
"""

from __future__ import annotations

import hashlib
import json

from ..config import JWKS_MAX_AGE
from ..web import headers
from .client_auth import ASSERTION_ALGS
from ..web.routes import PathRoutes

DISCOVERY_MAX_AGE = 3600
BASE_SCOPES = ["openid", "email", "profile", "offline_access"]
CLIENT_AUTH = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


def understood_scopes(extra_scopes=(), resources=None) -> frozenset:
    """Every scope this IdP knows: what discovery lists, and the scopes of its resource
    servers. An authorization request ignores any other (idp.oauth.authorize). Pure."""
    of_resources = {s for spec in (resources or {}).values() for s in spec.get("scopes", ())}
    return frozenset(BASE_SCOPES) | frozenset(extra_scopes) | of_resources


def metadata(issuer: str, extra_scopes=(), acr_values=("urn:idp:acr:pwd",), resources=None) -> dict:
    """The discovery document for ``issuer`` (pure: no request, no app). ``scopes_supported``
    lists every scope an authorization request may name (understood_scopes): the base ones,
    EXTRA_SCOPES, then those of the resource servers (RFC 8707) in name order."""
    scopes = BASE_SCOPES + [s for s in extra_scopes if s not in BASE_SCOPES]
    scopes += sorted(understood_scopes(extra_scopes, resources) - set(scopes))
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "introspection_endpoint": f"{issuer}/introspect",
        "revocation_endpoint": f"{issuer}/revoke",
        "end_session_endpoint": f"{issuer}/logout",
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "token_endpoint_auth_methods_supported": [*CLIENT_AUTH, "none"],
        # algs accepted on private_key_jwt client assertions (RFC 7523), at every endpoint
        # that takes them (RFC 8414 §2: each *_auth_signing_alg_values_supported is a MUST
        # when that endpoint's methods include private_key_jwt).
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "introspection_endpoint_auth_methods_supported": list(CLIENT_AUTH),
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        # RFC 7009 §2.1: public clients revoke their own tokens with client_id alone.
        "revocation_endpoint_auth_methods_supported": [*CLIENT_AUTH, "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "code_challenge_methods_supported": ["S256"],  # RFC 7636: plain is refused
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid",
            "at_hash", "email", "email_verified", "name",
        ],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": True,  # OpenID Back-Channel Logout 1.0 §2.1
        "backchannel_logout_session_supported": True,
        "acr_values_supported": list(acr_values),
        "ui_locales_supported": ["en"],
    }


def _encode(doc: dict) -> tuple[bytes, str]:
    body = json.dumps(doc, separators=(",", ":")).encode()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


class Documents(PathRoutes):
    """WSGI layer answering GET and HEAD of the discovery document and the JWKS itself.

    They are the same bytes for every request, and every relying party and JWT library asks
    for them; going through Flask's request machinery for them cost ten times the work of
    the answer (4.6k vs 50k req/s for the bare bytes on 2 granian workers here). So the
    bytes are built once (discovery) or once per key set (JWKS) and served from here with
    the headers a Flask response would carry (idp.web.headers), timed in the same metric.
    Every other request goes to Flask unchanged.
    """

    def __init__(self, app, wsgi_app):
        cfg = app.config
        super().__init__(wsgi_app)
        self.keyring = app.extensions["idp.keyring"]
        self.discovery = _encode(metadata(cfg["ISSUER"], cfg["EXTRA_SCOPES"], cfg["ACR_VALUES"], cfg["RESOURCES"]))
        # Open to every origin, errors too: a browser app reads why (a 503 in an outage).
        self.fallback_headers = [*headers.security_headers(cfg["ISSUER"]), ("Access-Control-Allow-Origin", "*")]
        self.headers = [*self.fallback_headers, ("Content-Type", "application/json")]
        self.routes = {
            "/.well-known/openid-configuration": ("discovery.openid_configuration",
                                                  (self._discovery, DISCOVERY_MAX_AGE)),
            "/.well-known/oauth-authorization-server": ("discovery.openid_configuration",
                                                        (self._discovery, DISCOVERY_MAX_AGE)),
            "/jwks": ("discovery.jwks", (self._jwks, JWKS_MAX_AGE)),
        }
        self._jwks_cache: tuple[tuple, tuple[bytes, str]] | None = None

    def _discovery(self) -> tuple[bytes, str]:
        return self.discovery

    def _jwks(self) -> tuple[bytes, str]:
        version = self.keyring.version()  # cheap: the key ring re-reads its directory at most once a second
        cached = self._jwks_cache
        if cached is None or cached[0] != version:
            cached = self._jwks_cache = (version, _encode(self.keyring.jwks()))
        return cached[1]

    def answer(self, environ, method, route):
        document, max_age = route
        if method not in ("GET", "HEAD"):
            body = b'{"error":"invalid_request","error_description":"use GET"}'
            return 405, [*self.headers, ("Allow", "GET, HEAD"), ("Cache-Control", "no-store")], body
        body, etag = document()
        headers = [*self.headers, ("ETag", etag), ("Cache-Control", f"public, max-age={max_age}")]
        # RFC 9110 §13.1.2: If-None-Match uses the weak comparison.
        wanted = [t.strip().removeprefix("W/") for t in environ.get("HTTP_IF_NONE_MATCH", "").split(",")]
        if etag in wanted or "*" in wanted:
            return 304, headers, b""
        return 200, headers, body
