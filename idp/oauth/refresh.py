"""The refresh token grant with rotation (RFC 6749 §6, RFC 9700 §4.14.2).

Every use of a refresh token rotates it (on PostgreSQL, a refresh naming no scope and no
resource does the checks, the rotation and the successor in one statement:
idp.oauth.refresh_rotation; everything else takes the checks below): the presented token
is marked with a conditional ``UPDATE ... WHERE rotated_at IS NULL`` and a successor joins
the same family (Grant) with generation + 1. Only the caller whose UPDATE changed the row gets tokens;
anyone presenting a rotated token (an attacker with a stolen copy, or the loser of a
race) is treated as reuse: the whole family is revoked and a SecurityEvent recorded.

The checks, in order (each failure is invalid_grant unless noted):
  1. the token exists and was issued to the authenticated client (no revocation: a
     token shown by another client says nothing about its owner's copy);
  2. the family is not revoked (in the database, or by the store mark that revoke_grant
     writes first: a revocation racing the family's first issuance may miss the row);
  3. the token was not already rotated (reuse: revoke the family);
  4. neither the idle window of the token nor the family's absolute lifetime is over;
  5. the account exists, is active, and has not revoked its sessions since the grant;
  6. the requested scope is within the token's (invalid_scope) and the requested
     resources within the grant's (invalid_target, RFC 8707 §2.2).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, InvalidScopeError, OAuth2Error, grants
from sqlalchemy import bindparam, update

from ..context import current_app
from ..crypto.secrets import keyed_hash, new_token
from ..extensions import db
from ..models import RefreshToken
from ..models.account import usable_since
from ..ops import metrics
from . import clients, refresh_rotation, resource_indicators, tokens
from .client_auth import ALL_AUTH_METHODS

log = logging.getLogger("idp.oauth")


_RT = RefreshToken.__table__
_ROTATE = (update(_RT).where(_RT.c.token_hash == bindparam("h"), _RT.c.rotated_at.is_(None))
           .values(rotated_at=bindparam("now")))


def rotate(token_hash: str) -> bool:
    """Mark the token rotated; True only for the one caller that changed the row."""
    return db.session.execute(_ROTATE, {"h": token_hash, "now": datetime.now(timezone.utc)}).rowcount == 1


def _reuse(grant):
    tokens.revoke_grant(grant.id, "refresh_token_reuse", grant.account_id)
    metrics.refresh_reuse()
    return InvalidGrantError("The refresh token has already been used.")


def _row_and_version(copy) -> tuple[int, int]:
    # 0 matches no row: a copy cached before client.version existed is never trusted.
    return getattr(copy, "id", 0), getattr(copy, "version", 0)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS  # public clients too: rotation protects them
    INCLUDE_NEW_REFRESH_TOKEN = True

    def validate_token_request(self):
        form = self.request.form
        requested = (self.request.payload.scope or "").split()
        self._rotated_to = None
        if not requested and not form.getlist("resource") and refresh_rotation.available():
            # The common refresh: the token's own scope and resources, rotated in one
            # statement, the client authenticated against this process's copy of its
            # registration, whose version that statement checks. Whatever it refuses, and
            # a refusal of the copy, is judged again below from the shared cache.
            try:
                with clients.copies_allowed():
                    presented = self._presented(form)
                    if self._rotate_in_one_statement(presented):
                        return
            except OAuth2Error:
                if clients.copy_used() is None:
                    raise
            if clients.copy_used() is None:  # authenticated from the shared cache: stands
                return self._validate(presented, form, requested)
            clients.forget(clients.copy_used().client_id)
        self._validate(self._presented(form), form, requested)

    def _presented(self, form) -> str:
        """Authenticate the client (authlib), then the refresh_token parameter."""
        client = self._validate_request_client()
        self.request.client = client
        presented = form.get("refresh_token")
        if not presented:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        return presented

    def _rotate_in_one_statement(self, presented: str) -> bool:
        client, copy = self.request.client, clients.copy_used()
        successor = new_token(32)
        old_hash, new_hash = keyed_hash(presented), keyed_hash(successor)
        found = refresh_rotation.rotate(old_hash, client.client_id, new_hash,
                                        current_app.config["REFRESH_TOKEN_IDLE_TTL"],
                                        client_copy=None if copy is None else _row_and_version(copy))
        if found is None:
            return False
        self._rotated_to = successor
        self._rotation = (old_hash, new_hash, found.token.rotated_at)
        try:
            self._prepare(client, found, found.token.scope.split(), [])
        except Exception:
            # The rotation is committed: a refusal here (RESOURCES changed since the family was
            # issued: its resource gone, or none of its scopes left to it) must leave the token
            # as it was, or the client's next try would read as reuse and revoke the family.
            self._undo_rotation()
            self._rotated_to = None
            raise
        return True

    def _validate(self, presented: str, form, requested: list[str]):
        client = self.request.client
        found = tokens.find_refresh_token(presented)
        if found is None or found.token.client_id != client.client_id:
            raise InvalidGrantError("The refresh token is invalid.")
        row, grant, account = found
        if grant.revoked_at is not None or tokens.is_grant_revoked(grant.id):
            raise InvalidGrantError("The refresh token has been revoked.")
        if row.rotated_at is not None:
            raise _reuse(grant)
        now = datetime.now(timezone.utc)
        if row.expires_at <= now or grant.expires_at <= now:
            raise InvalidGrantError("The refresh token has expired.")
        if not usable_since(account, grant.created_at):
            raise InvalidGrantError("The account is not available.")

        token_scopes = row.scope.split()
        if not set(requested) <= set(token_scopes):
            raise InvalidScopeError("The requested scope exceeds the scope granted.")
        scopes = [s for s in token_scopes if s in requested] if requested else token_scopes
        self._prepare(client, found, scopes, form.getlist("resource"))

    def _prepare(self, client, found, scopes: list[str], requested_resources: list[str]):
        row, grant, account = found
        # The client's registration as it is now is the ceiling (as for a code, idp.oauth.server):
        # a scope the operator withdrew since the sign-in is not issued again, nor an ID token
        # once openid is gone (RFC 6749 §5.1: the scope answered says what was granted).
        scopes = [s for s in scopes if s in client.scopes]
        if not scopes:
            raise InvalidGrantError("The client's registration no longer allows this refresh token.")
        resources = current_app.config["RESOURCES"]
        chosen = resource_indicators.select(requested_resources, list(grant.resource), resources)
        at_scopes = resource_indicators.narrow_scope(scopes, chosen, resources)
        if not at_scopes:
            # Only a request naming scope or resource gets here in practice: with neither,
            # this is the computation that already succeeded when the family was issued.
            raise InvalidScopeError("No granted scope applies to the requested resource.")
        self.request.refresh_token = row
        self.request.user = account
        self._issue = dict(grant=grant, scope=" ".join(at_scopes), id_scope=" ".join(scopes),
                           audience=resource_indicators.audience(chosen, client.client_id))

    def create_token_response(self):
        row, client, issue = self.request.refresh_token, self.request.client, self._issue
        if self._rotated_to is None and not rotate(row.token_hash):
            raise _reuse(issue["grant"])  # lost the race to a concurrent refresh with the same token
        try:
            token = tokens.issue(
                client, issue["grant"], self.request.user, issue["scope"], refresh=True, refresh_scope=row.scope,
                generation=row.generation + 1, audience=issue["audience"], id_scope=issue["id_scope"],
                grant_type="refresh_token", stored_refresh=self._rotated_to,
                # No ID token once a logout ended the sign-in's session (idp.logout.session_end).
                id_token_wanted=issue["grant"].sid is not None,
            )
        except Exception:
            # The general path's rotation rolls back with the request's transaction; the
            # one-statement rotation was committed already: take it back.
            if self._rotated_to is not None:
                self._undo_rotation()
            raise
        return 200, token, self.TOKEN_RESPONSE_HEADER

    def _undo_rotation(self):
        try:
            refresh_rotation.undo(*self._rotation)
        except Exception as exc:  # noqa: BLE001  (the request's own error is the one to report)
            log.error("a rotation whose tokens were not issued could not be undone: %s", type(exc).__name__)
