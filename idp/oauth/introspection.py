"""Token introspection (RFC 7662) at POST /introspect.

The caller must authenticate as a confidential client (§2.1; 401 invalid_client
otherwise). An access token for a resource whose RESOURCES entry names its
``introspectors`` is active only to them and to the client it was issued to (§4: a token
usable only at certain resource servers must be judged for the one asking); any other access
token to any authenticated client (they are the resource servers); a refresh token only to
the client it was issued to. Whatever is not a
live token the caller may see (unknown, expired, revoked, garbage, oversized, another
client's refresh token) is exactly ``{"active": false}`` (§2.2), so the answer says
nothing about why.

``token_type_hint`` only changes the order of the lookups (§2.1). The caller
authenticates before any token's signature is checked. An access token, opaque or JWT,
costs one store round trip (a JWT, or a token of an earlier release, two: its family's
revocation mark is named by its record, not by the token); nothing about tokens is cached
in the process, because revocation deletes the store record, or marks its family, and must
take effect at once.
"""

from __future__ import annotations

from datetime import datetime, timezone

from authlib.consts import default_json_headers
from authlib.oauth2 import rfc7662
from authlib.oauth2.rfc6749 import InvalidRequestError

from ..context import current_app
from ..models.account import usable_since
from ..store import prefetch
from . import client_auth, clients, jwt_access_token, params, tokens

INACTIVE = {"active": False}


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def _aud(aud):
    return aud[0] if isinstance(aud, list) and len(aud) == 1 else aud


def _compact(body: dict) -> dict:
    return {k: v for k, v in body.items() if v is not None and v != []}


def may_see(record: dict, caller_id: str) -> bool:
    """Whether ``caller_id`` may learn that the access token ``record`` is active: its own
    client, or, if its audience holds resources that name their introspectors, one of those."""
    if record["client_id"] == caller_id:
        return True
    resources = current_app.config["RESOURCES"]
    named = [resources[aud]["introspectors"] for aud in record.get("aud") or ()
             if "introspectors" in resources.get(aud, ())]
    return not named or any(caller_id in introspectors for introspectors in named)


def access_token_body(token: str, caller_id: str) -> dict | None:
    record = tokens.find_access_token(token)
    if record is None or not may_see(record, caller_id):
        return None
    return _compact({
        "active": True, "iss": current_app.config["ISSUER"], "sub": record.get("sub"),
        "client_id": record["client_id"], "scope": record["scope"], "exp": record["exp"], "iat": record["iat"],
        "aud": _aud(record["aud"]), "token_type": "Bearer", "acr": record.get("acr"),
        "amr": record.get("amr"), "auth_time": record.get("auth_time"),
    })


def refresh_token_body(token: str, client) -> dict | None:
    if jwt_access_token.looks_like_jwt(token):
        return None
    found = tokens.find_refresh_token(token)
    if found is None or found.token.client_id != client.client_id or found.token.rotated_at is not None:
        return None
    row, grant, account = found
    now = datetime.now(timezone.utc)
    if grant.revoked_at is not None or min(row.expires_at, grant.expires_at) <= now \
            or tokens.is_grant_revoked(grant.id):
        return None
    if not usable_since(account, grant.created_at):
        return None
    return _compact({
        "active": True, "iss": current_app.config["ISSUER"], "sub": account.sub, "client_id": row.client_id,
        "scope": row.scope, "exp": _epoch(min(row.expires_at, grant.expires_at)), "iat": _epoch(row.created_at),
        "aud": _aud(list(grant.resource) or [row.client_id]), "token_type": "refresh_token", "acr": grant.acr,
        "amr": list(grant.amr or []), "auth_time": _epoch(grant.auth_time) if grant.auth_time else None,
    })


def introspect(token: str, hint: str | None, client) -> dict:
    lookups = [lambda: access_token_body(token, client.client_id), lambda: refresh_token_body(token, client)]
    if hint == "refresh_token":
        lookups.reverse()
    for lookup in lookups:
        body = lookup()
        if body is not None:
            return body
    return dict(INACTIVE)


def _prefetch(request) -> None:
    """The caller's registration, the token record and, for an opaque token, its family's
    revocation mark (tokens.family_mark_key_in), in one store round trip."""
    token = request.form.get("token")
    # No signature is checked before the caller has authenticated: a JWT's record is
    # fetched by the jti it claims, and access_token_body verifies it after authentication.
    at_key = tokens.access_token_key(token, verify=False)
    prefetch.prefetch([clients.cache_key(client_auth.claimed_client_id(request)),
                       tokens.AT_PREFIX + at_key if at_key else None, tokens.family_mark_key_in(token)])


class IntrospectionEndpoint(rfc7662.IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = client_auth.CONFIDENTIAL_AUTH_METHODS

    def create_endpoint_response(self, request):
        values = request.payload.data
        params.check(values)
        _prefetch(request)
        client = self.server.authenticate_client(request, self.CLIENT_AUTH_METHODS, self.ENDPOINT_NAME)
        token = params.single(request.form, "token")
        if token is None:
            raise InvalidRequestError("Missing 'token' in request.")
        return 200, introspect(token, request.form.get("token_type_hint"), client), default_json_headers
