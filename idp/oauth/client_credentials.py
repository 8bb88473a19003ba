"""The client credentials grant (RFC 6749 §4.4), for machine-to-machine callers.

Confidential clients only (§4.4: MUST authenticate), with ``client_credentials`` among
their grant types. The scope is what the client is registered for: a requested scope
outside it is invalid_scope (§3.3), and with none requested the client gets all its
registered non-OpenID scopes (there is no user, so no ID token and no openid/profile
scopes; §4.4.3: no refresh token either).

This is the hot path of service calls: the token lives only in the store (a family of
one, no Grant row), so issuing costs one store write: the client is authenticated against
this process's copy of its registration, which that same write checks (idp.oauth.clients).
"""

from authlib.oauth2.rfc6749 import InvalidClientError, InvalidScopeError, OAuth2Error, UnauthorizedClientError, grants

from ..context import current_app
from . import clients, resource_indicators, tokens
from .client_auth import CONFIDENTIAL_AUTH_METHODS

USER_SCOPES = frozenset({"openid", "profile", "email", "address", "phone", "offline_access"})


def choose_scopes(requested: list[str], registered: list[str]) -> list[str]:
    """Pure: the scopes of the token, or raise InvalidScopeError."""
    if not requested:
        chosen = [s for s in registered if s not in USER_SCOPES]
        if not chosen:
            raise InvalidScopeError("The client has no scope usable without a user.")
        return chosen
    if not set(requested) <= set(registered) or set(requested) & USER_SCOPES:
        raise InvalidScopeError("The requested scope is not allowed for this client.")
    return list(dict.fromkeys(requested))


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def validate_token_request(self):
        # Judged first against this process's copy of the registration (no round trip);
        # any refusal, and any copy the token write finds stale, is judged again from the
        # shared cache (idp.oauth.clients).
        try:
            with clients.copies_allowed():
                self._validate()
        except OAuth2Error:
            if clients.copy_used() is None:
                raise
            clients.forget(clients.copy_used().client_id)
            self._validate()

    def _validate(self):
        client = self.authenticate_token_endpoint_client()
        if client.is_public or not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("The client may not use grant_type=client_credentials.")
        self.request.client = client
        scopes = choose_scopes((self.request.payload.scope or "").split(), list(client.scopes))
        resources = current_app.config["RESOURCES"]
        chosen = resource_indicators.select(self.request.form.getlist("resource"), None, resources)
        scopes = resource_indicators.narrow_scope(scopes, chosen, resources)
        if not scopes:
            raise InvalidScopeError("No scope of the client applies to the requested resource.")
        self.request.scope = " ".join(scopes)
        self._audience = resource_indicators.audience(chosen, client.client_id)

    def create_token_response(self):
        copy = clients.copy_used()
        token = tokens.issue_client_credentials(self.request.client, self.request.scope, self._audience, copy)
        if token is None and copy is not None:  # the registration changed since this process read it
            clients.forget(copy.client_id)
            self._validate()
            token = tokens.issue_client_credentials(self.request.client, self.request.scope, self._audience)
        if token is None:  # the client was removed while this request ran
            raise InvalidClientError(description="The client is no longer registered.")
        return 200, token, self.TOKEN_RESPONSE_HEADER
