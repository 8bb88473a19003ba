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

from flask import Blueprint, Response, current_app, request

from idp.extensions import keyring

bp = Blueprint("discovery", __name__)

DISCOVERY_MAX_AGE = 3600
JWKS_MAX_AGE = 300
BASE_SCOPES = ["openid", "email", "profile", "offline_access"]
CLIENT_AUTH = ["client_secret_basic", "client_secret_post", "private_key_jwt"]

_documents: dict[tuple, tuple[bytes, str]] = {}  # (issuer, scopes, acr) -> (body, etag)
_jwks_bodies: dict[frozenset, tuple[bytes, str]] = {}  # kids -> (body, etag)


def metadata(issuer: str, extra_scopes=(), acr_values=("urn:idp:acr:pwd",)) -> dict:
    """The discovery document for ``issuer`` (pure: no request, no app)."""
    scopes = BASE_SCOPES + [s for s in extra_scopes if s not in BASE_SCOPES]
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
        # algs accepted on private_key_jwt client assertions (RFC 7523)
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "PS256"],
        "introspection_endpoint_auth_methods_supported": list(CLIENT_AUTH),
        # RFC 7009 §2.1: public clients revoke their own tokens with client_id alone.
        "revocation_endpoint_auth_methods_supported": [*CLIENT_AUTH, "none"],
        "code_challenge_methods_supported": ["S256"],  # RFC 7636: plain is refused
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid",
            "at_hash", "email", "email_verified", "name",
        ],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "prompt_values_supported": ["none", "login", "consent"],
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


def _cacheable(body: bytes, etag: str, max_age: int) -> Response:
    """200 with the body, or 304 when the client's If-None-Match names this ETag."""
    not_modified = request.if_none_match.contains_weak(etag.strip('"'))
    resp = Response(b"" if not_modified else body, status=304 if not_modified else 200,
                    mimetype="application/json")
    resp.headers["ETag"] = etag
    resp.headers["Cache-Control"] = f"public, max-age={max_age}"
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp


@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def openid_configuration():
    cfg = current_app.config
    key = (cfg["ISSUER"], tuple(cfg.get("EXTRA_SCOPES", [])), tuple(cfg.get("ACR_VALUES", ["urn:idp:acr:pwd"])))
    cached = _documents.get(key)
    if cached is None:
        cached = _documents[key] = _encode(metadata(*key))
    return _cacheable(*cached, DISCOVERY_MAX_AGE)


@bp.get("/jwks")
def jwks():
    doc = keyring().jwks()
    kids = frozenset(k["kid"] for k in doc["keys"])
    cached = _jwks_bodies.get(kids)
    if cached is None:
        if len(_jwks_bodies) > 16:
            _jwks_bodies.clear()
        cached = _jwks_bodies[kids] = _encode(doc)
    return _cacheable(*cached, JWKS_MAX_AGE)
