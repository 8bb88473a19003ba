"""Resource indicators at the token endpoint (RFC 8707).

Resource servers are configured in ``RESOURCES`` (resource URI -> {"access_token_format":
"jwt"|"opaque", "scopes": [...]}). A ``resource`` value is an absolute URI without a
fragment (§2) naming a configured resource; anything else is invalid_target (§2.2). On
a code or refresh request the requested resources must be a subset of those the grant
was authorized for (§2.2: the token request may only narrow the audience).

Pure: the configuration is passed in.
"""

from __future__ import annotations

import re

from authlib.oauth2.base import OAuth2Error

# The most resource values one request may name: each is an audience of every access token
# the grant issues, and an access token must stay within what a resource server accepts.
MAX_RESOURCES = 10

# RFC 3986 §4.3: an absolute URI is a scheme, ":" and the rest (a URN has no authority).
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^#\s]+")


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the requested resource is invalid, unknown, or not allowed here."""

    error = "invalid_target"


def well_formed(uri: str) -> bool:
    """An absolute URI without a fragment (RFC 8707 §2)."""
    return len(uri) <= 2048 and _ABSOLUTE.fullmatch(uri) is not None


def select(requested: list[str], granted: list[str] | None, resources: dict) -> list[str]:
    """The audiences of the next access token.

    ``granted`` is the grant's list (code, refresh) or None when any configured resource
    may be asked for (client_credentials). With nothing requested the grant's resources
    are the audience; every one of them must still be configured.
    """
    # Without repeats: a value names a target service (§2), twice names it once (grants
    # authorized before /authorize dropped repeats may still hold some).
    chosen = list(dict.fromkeys(requested or granted or []))
    for uri in chosen:
        if not well_formed(uri) or uri not in resources:
            raise InvalidTargetError("unknown or malformed resource")
    if requested and granted is not None and not set(chosen) <= set(granted):
        raise InvalidTargetError("resource was not part of the authorization")
    return chosen


def audience(chosen: list[str], client_id: str) -> list[str]:
    """``aud`` of the access token: the resources, else the client itself."""
    return chosen or [client_id]


def narrow_scope(scopes: list[str], chosen: list[str], resources: dict) -> list[str]:
    """Scopes the chosen resources understand (§2.2: down-scoping per audience).

    A resource without a ``scopes`` list takes every scope; with no resource, nothing changes.
    """
    if not chosen:
        return scopes
    allowed: set[str] = set()
    for uri in chosen:
        declared = resources[uri].get("scopes")
        if declared is None:
            return scopes
        allowed.update(declared)
    return [s for s in scopes if s in allowed]


def wants_jwt(client_format: str | None, chosen: list[str], resources: dict) -> bool:
    """RFC 9068 format if the client asks for it or any target resource does."""
    return client_format == "jwt" or any(resources[uri].get("access_token_format") == "jwt" for uri in chosen)
