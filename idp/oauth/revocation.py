"""Token revocation (RFC 7009) at POST /revoke.

Confidential clients authenticate as at /token; a public client identifies itself with
``client_id`` (§2.1: the server checks the token was issued to that client). Revoking a
refresh token revokes its whole family, access tokens included (§2.1: "SHOULD also
invalidate all access tokens based on the same authorization grant"); revoking an access
token deletes it. An unknown token, or one issued to another client, gets 200 and nothing
happens (§2.2), so the endpoint cannot be used to probe for tokens.

``token_type_hint`` only orders the lookups; since both types are supported, an unknown
hint is ignored rather than answered with unsupported_token_type (§2.2.1).
"""

from __future__ import annotations

from authlib.consts import default_json_headers
from authlib.oauth2 import rfc7009
from authlib.oauth2.rfc6749 import InvalidRequestError

from . import client_auth, jwt_access_token, params, tokens


def _revoke_access(token: str, client) -> bool:
    return tokens.revoke_access_token(token, client.client_id) is not None


def _revoke_refresh(token: str, client) -> bool:
    if jwt_access_token.looks_like_jwt(token):
        return False
    found = tokens.find_refresh_token(token)
    if found is None or found.token.client_id != client.client_id:
        return False
    tokens.revoke_grant(found.grant.id, "revoked_by_client")
    return True


def revoke(token: str, hint: str | None, client) -> None:
    steps = [_revoke_access, _revoke_refresh]
    if hint == "refresh_token":
        steps.reverse()
    for step in steps:
        if step(token, client):
            return


class RevocationEndpoint(rfc7009.RevocationEndpoint):
    CLIENT_AUTH_METHODS = client_auth.ALL_AUTH_METHODS

    def create_endpoint_response(self, request):
        params.check(request.payload.data)
        client = self.server.authenticate_client(request, self.CLIENT_AUTH_METHODS, self.ENDPOINT_NAME)
        token = params.single(request.form, "token")
        if token is None:
            raise InvalidRequestError("Missing 'token' in request.")
        revoke(token, request.form.get("token_type_hint"), client)
        return 200, {}, default_json_headers
