"""CORS (the Fetch standard, §3.2) for the API endpoints a browser app calls: /token,
/userinfo and /revoke.

A single-page app signs in with the code flow and PKCE as a public client and then calls
these endpoints from its own origin; without CORS its browser sends the request (the code
is used up, the tokens issued) but will not let the app read the answer. The discovery
documents and the JWKS are open to every origin (idp.oauth.discovery); /introspect is for
resource servers and stays closed to browsers.

Which origins: those of the client's registered redirect URIs (http and https), as
Keycloak's default web origins ("+"). No specification defines client metadata for it,
and an app's redirect URI is on the origin it runs on. The client is known only once the
request is judged (client authentication, or the access token's client): a preflight,
which carries no credentials, is answered for any origin, as node-oidc-provider does, and
the request itself gets ``Access-Control-Allow-Origin`` only if its origin is one of its
client's. Refusing the request instead would protect nothing: the browser already keeps
the answer from a foreign page, and a server sends no Origin at all. An answer given before
the client is known (a client that failed to authenticate) carries none either.
"""

from __future__ import annotations

from urllib.parse import urlsplit


from ..context import g
from . import clients

ENDPOINTS = {"/token": "POST", "/revoke": "POST", "/userinfo": "GET, POST"}
MAX_AGE = "600"  # seconds a browser may reuse a preflight's answer
# Response headers the app may read beyond the safelisted ones: the bearer challenge
# (RFC 6750 §3) and when to retry after a 503.
EXPOSED = "WWW-Authenticate, Retry-After"


def origin_of(uri: str) -> str | None:
    """The ASCII serialization of ``uri``'s origin (RFC 6454 §6.2) for http(s), else None."""
    try:
        parts = urlsplit(uri)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:
        return None
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def allowed(origin: str, client) -> bool:
    return client is not None and any(origin_of(uri) == origin for uri in client.redirect_uris or ())


def preflight(environ, path: str) -> tuple[int, dict | bytes, list] | None:
    """The answer to a CORS preflight (an OPTIONS with Origin and
    Access-Control-Request-Method) at ``path``; None for any other OPTIONS."""
    origin = environ.get("HTTP_ORIGIN")
    if not origin or not environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"):
        return None
    return 204, b"", [
        ("Access-Control-Allow-Origin", origin), ("Vary", "Origin"),
        ("Access-Control-Allow-Methods", ENDPOINTS[path]),
        ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
        ("Access-Control-Max-Age", MAX_AGE),
    ]


def judged_for(client) -> None:
    """Record the client the request was judged for (its authenticated client, or its
    access token's), whose origins the answer is opened to."""
    g.idp_cors_client = client


def judged_for_id(client_id) -> None:
    """As ``judged_for``, by client_id, for a request that carries one (UserInfo's token);
    looked up only for a cross-origin request."""
    g.idp_cors_client_id = client_id


def answer_headers(origin: str) -> list[tuple[str, str]]:
    """What the answer to a request from ``origin`` carries, within the request's app
    context: the origin allowed if it is one of the client's."""
    client = g.get("idp_cors_client")
    if client is None and g.get("idp_cors_client_id") is not None:
        client = clients.find(g.idp_cors_client_id)
    if not allowed(origin, client):
        return [("Vary", "Origin")]
    return [("Access-Control-Allow-Origin", origin), ("Access-Control-Expose-Headers", EXPOSED), ("Vary", "Origin")]
