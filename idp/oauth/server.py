"""The authorization server, composed from authlib's parts.

authlib does client authentication (client_secret_basic, client_secret_post, none, and
private_key_jwt per RFC 7523), token request parsing, grant dispatch, PKCE verification
(RFC 7636) and the RFC 6749 §5.2 error bodies. What it does not do our way is left to
idp.oauth.tokens: token families, rotation, storage. /authorize is not routed through
authlib (idp.oauth.authorize): its requests live across the sign-in, in the store.

Composition: the authorization code grant (below), refresh with rotation
(idp.oauth.refresh), client credentials (idp.oauth.client_credentials), introspection
(RFC 7662) and revocation (RFC 7009) endpoints; one server per app.
"""

import logging
import re
from datetime import datetime, timezone

from authlib.oauth2 import AuthorizationServer
from joserfc.errors import JoseError
from authlib.oauth2.rfc6749 import (InvalidClientError, InvalidGrantError, InvalidRequestError, InvalidScopeError,
                                    OAuth2Error, grants)
from authlib.oauth2.rfc7636 import CodeChallenge
from psycopg.errors import UniqueViolation
from sqlalchemy.exc import IntegrityError

from .. import errors
from ..context import current_app
from ..crypto.secrets import new_token
from ..extensions import db
from ..login import session as browser_session
from ..ops import metrics
from ..store import prefetch
from . import client_auth, clients, code_redemption, codes, cors, params, resource_indicators, tokens
from .client_auth import (ALL_AUTH_METHODS, CONFIDENTIAL_AUTH_METHODS, AssertionRefused, ClientAuthFailed,  # noqa: F401
                          PrivateKeyJWT)
from .client_credentials import ClientCredentialsGrant
from .introspection import IntrospectionEndpoint
from .refresh import RefreshTokenGrant
from .revocation import RevocationEndpoint

log = logging.getLogger(__name__)


def query_client(client_id):
    return clients.find(client_id)


class CodeRecord(dict):
    """A redeemed code, with the accessors authlib's grant and PKCE extension call."""

    def get_redirect_uri(self):
        return self["redirect_uri"]

    def get_scope(self):
        return " ".join(self["scope"])

    @property
    def code_challenge(self):
        return self["code_challenge"]

    @property
    def code_challenge_method(self):
        return "S256"  # the only method /authorize accepts; `plain` never reaches here


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS

    def query_authorization_code(self, code, client):
        # Read, not taken: authlib checks the redirect URI and PKCE against it next, and the
        # code is taken only when all holds (create_token_response; idp.oauth.codes).
        record, replayed = codes.find(code)
        if record is None:
            # A replay by the client the code was for revokes what it produced; anyone else
            # (any public client_id will "authenticate") only learns the code is no good.
            if replayed and replayed["client_id"] in (client.client_id, None):
                _code_reused(replayed)
            return None
        if record["client_id"] != client.client_id:
            return None
        return CodeRecord(record)

    def delete_authorization_code(self, authorization_code):
        pass  # taken atomically by create_token_response

    def authenticate_user(self, authorization_code):
        # The account, if still active and still in the live session that signed it in, and
        # the client still registered: signed out (here or everywhere) or the client removed
        # between the code and its redemption refuses.
        return browser_session.account_in_session(authorization_code.get("sid"), authorization_code["account_id"],
                                                  authorization_code["client_id"])

    def validate_token_request(self):
        """authlib's checks (client, code, redirect URI, then PKCE in its hook), then ours:
        every refusal a client can cure or that says nothing of the code's use (an ended
        session, a resource it may not name, RFC 8707 §2.2) comes before the code is taken,
        so the code is left to its client (idp.oauth.codes), and a corrected retry is no replay.
        (On PostgreSQL the session is judged after the take, by the statement that writes the
        family, and a refusal there gives the code back: _redeem.)

        The client's registration and the code's keys come from the store in one round trip."""
        request = self.request
        prefetch.prefetch([clients.cache_key(client_auth.claimed_client_id(request)),
                           *codes.keys(request.form.get("code"))])
        super().validate_token_request()
        code, client = self.request.authorization_code, self.request.client
        # The registration as it is now: a redirect URI or a scope the operator dropped since
        # the code was issued gets nothing (the code's redirect_uri: the one its request named).
        if not client.still_allows(code["scope"], code["redirect_uri"]):
            raise InvalidGrantError("The client's registration no longer allows this code.")
        self._started = datetime.now(timezone.utc)  # before the session check: the family's created_at
        # On PostgreSQL the session is checked by the statement that writes the family, once
        # the code is taken (idp.oauth.code_redemption); a refusal there gives the code back.
        self._in_one_statement = code_redemption.available()
        self._account = None
        if not self._in_one_statement:
            self._account = self.authenticate_user(code)
            if self._account is None:
                raise InvalidGrantError(SESSION_ENDED)
        resources = current_app.config["RESOURCES"]
        self._chosen = resource_indicators.select(self.request.form.getlist("resource"), code.get("resource", []),
                                                  resources)
        self._at_scopes = resource_indicators.narrow_scope(code["scope"], self._chosen, resources)
        if not self._at_scopes:
            raise InvalidScopeError("No granted scope applies to the requested resource.")

    def create_token_response(self):
        client, code = self.request.client, self.request.authorization_code
        try:
            taken = codes.take(code)
        except errors.UNAVAILABLE:
            # The take may have run with its answer lost (a timeout, a dropped connection):
            # the client's retry, as the 503 tells it, must find its code, not a replay.
            self._give_back(code)
            raise
        if not taken:
            # Taken since it was read: a concurrent redemption of the same code, a replay.
            _code_reused(code)
            raise InvalidGrantError("The authorization code has already been used.")
        try:
            return self._redeem(client, code)
        except (IntegrityError, UniqueViolation):
            # The family's id is the code's: its row is there already. A commit whose answer
            # was lost in an outage did go through, and the code given back (below) came
            # round again: it was used, its tokens lost on the way. Refused like a used code,
            # without revoking: what it produced was never the client's to lose.
            db.session.rollback()
            raise InvalidGrantError("The authorization code has already been used.") from None
        except errors.UNAVAILABLE:
            self._give_back(code)  # the answer is a 503: the client's retry must find its code
            raise

    @staticmethod
    def _give_back(code) -> None:
        try:
            codes.give_back(code)
        except Exception as exc:  # noqa: BLE001  (the store is the outage: the retry gets invalid_grant)
            log.warning("authorization code not given back after an outage: %s", type(exc).__name__)

    def _redeem(self, client, code):
        chosen, scope = self._chosen, code.get_scope()
        columns = dict(grant_id=code["grant_id"], sid=code.get("sid"), auth_time=tokens.from_epoch(code["auth_time"]),
                       acr=code.get("acr"), amr=code.get("amr", []), resource=code.get("resource", []),
                       created_at=self._started)
        refresh = client.check_grant_type("refresh_token") and (
            "offline_access" in code["scope"] or client.first_party)
        issue_args = dict(nonce=code.get("nonce"), id_scope=scope, grant_type="authorization_code",
                          audience=resource_indicators.audience(chosen, client.client_id))
        if not self._in_one_statement:
            account = self._account  # read (with its locks, which the commit ends) in validate_token_request
            grant = tokens.new_grant(client, account, scope, **columns)
            token = tokens.issue(client, grant, account, " ".join(self._at_scopes), refresh=refresh,
                                 refresh_scope=scope, **issue_args)
            return 200, token, self.TOKEN_RESPONSE_HEADER
        grant = tokens.grant_row(client, code["account_id"], scope, **columns)
        rt = new_token(32) if refresh else None
        account = code_redemption.redeem(grant, tokens.refresh_row(rt, grant, client, scope, 0) if rt else None)
        if account is None:
            # The session ended, the account is no longer usable or the client is gone (the
            # statement wrote nothing): refused as the general path refuses it before the take,
            # and the code given back, so that a retry is told the same, not taken for a replay.
            # Should the store fail right after the take, the code stays spent and the retry
            # reads as one (a code_reuse event for a family never made): the price of checking
            # the session in this statement, not in a round trip of its own before the take.
            self._give_back(code)
            raise InvalidGrantError(SESSION_ENDED)
        try:
            token = tokens.issue(client, grant, account, " ".join(self._at_scopes), stored_refresh=rt, **issue_args)
        except OAuth2Error:
            raise  # the family revoked meanwhile: tokens.issue recorded it, and gave nothing out
        except Exception:
            # Committed, and nothing given out: taken back, so that the code given back for
            # the retry (an outage's 503) finds no family with its id.
            try:
                code_redemption.undo(grant.id)
            except Exception as exc:  # noqa: BLE001  (the request's own error is the one to report)
                log.error("a family whose tokens were not issued could not be taken back: %s", type(exc).__name__)
            raise
        return 200, token, self.TOKEN_RESPONSE_HEADER


SESSION_ENDED = "The sign-in session has ended or the account is not available."


def _code_reused(spent: dict) -> None:
    """RFC 6749 §4.1.2: a code used twice SHOULD revoke what it produced; a security event
    on the seller's account, and the reuse metric, as for a reused refresh token."""
    tokens.revoke_grant(spent["grant_id"], "code_reuse", spent.get("account_id"))
    metrics.code_reuse()


# RFC 7636 §4.1: 43-128 unreserved characters, the whole value (authlib's re.match with
# "^...$" lets a final newline through: "$" matches before one).
_CODE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


class StrictCodeChallenge(CodeChallenge):
    def validate_code_verifier(self, grant, result):
        verifier = grant.request.form.get("code_verifier")
        if verifier and not _CODE_VERIFIER.fullmatch(verifier):
            raise InvalidRequestError("Invalid 'code_verifier'")
        return super().validate_code_verifier(grant, result)


class Server(AuthorizationServer):
    """authlib's framework-agnostic server: requests come from idp.oauth.requests and
    responses go out as (status, body, headers) for idp.oauth.endpoints to write."""

    def query_client(self, client_id):
        return query_client(client_id)

    def save_token(self, token, request):
        pass  # idp.oauth.tokens stores what it issues

    def create_oauth2_request(self, request):
        return request  # already an OAuth2Request (idp.oauth.requests.WSGIRequest)

    def create_json_request(self, request):
        raise NotImplementedError("no JSON endpoint is served through authlib")

    def handle_response(self, status_code, payload, headers):
        return status_code, payload, headers

    def send_signal(self, name, *args, **kwargs):
        pass  # no one listens: metrics and security events are recorded where they happen

    def authenticate_client(self, request, methods, endpoint="token"):
        """The authenticated client, or ClientAuthFailed (401 with our challenge) at every
        endpoint; never a 500 for bad credentials.

        The credentials sent choose the method: authlib alone tries each method in turn and
        takes the first that succeeds, so a request with a failed Basic header went on as the
        public client its client_id named, and one with a secret and another client's
        assertion was judged on the secret. RFC 6749 §5.2: more than one mechanism is
        invalid_request."""
        used = client_auth.mechanisms(request)
        basic = "client_secret_basic" in used
        if len(used) > 1:
            raise InvalidRequestError("The request uses more than one client authentication method.")
        if used:
            methods = [m for m in methods if m == used[0]]
        try:
            if not methods:
                raise InvalidClientError()
            client = super().authenticate_client(request, methods, endpoint)
        except (InvalidClientError, UnicodeDecodeError, ValueError, RecursionError, OverflowError,
                JoseError) as exc:
            # authlib decodes a Basic header as UTF-8, and a client assertion's JSON (where
            # "[[[[..." nests past Python's limit), without catching the failure; and a
            # registered JWKS it cannot import (registered before idp.cli.client_rules
            # checked that) fails the client, not the server. Every endpoint answers with
            # the same challenge (RFC 7617 §2: a Basic challenge has a realm; authlib's
            # has none and lists every method).
            if isinstance(exc, AssertionRefused):
                raise ClientAuthFailed(basic, exc.description or "client authentication failed") from None
            raise ClientAuthFailed(basic) from None
        # A client_id parameter beside other credentials, in the body or the query, must name
        # the client they proved (RFC 7521 §4.2 for assertions; for Basic, RFC 6749 §2.3.1
        # allows one method only).
        if any(value != client.client_id for value in request.payload.data.getlist("client_id")):
            raise ClientAuthFailed(basic, "client_id does not name the authenticated client")
        cors.judged_for(client)
        return client

    def create_token_response(self, request=None):
        """RFC 6749 §3.2: no repeated parameters; a missing grant_type is invalid_request."""
        try:
            params.check(request.payload.data)
            if not params.single(request.form, "grant_type"):
                raise InvalidRequestError("Missing 'grant_type' in request.")
        except OAuth2Error as error:
            return self.handle_response(*error())
        return super().create_token_response(request)


def init_app(app):
    server = Server()
    server.register_client_auth_method("private_key_jwt", PrivateKeyJWT())
    server.register_grant(AuthorizationCodeGrant, [StrictCodeChallenge(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(IntrospectionEndpoint)
    server.register_endpoint(RevocationEndpoint)
    app.extensions["idp.authorization_server"] = server


def authorization_server() -> Server:
    return current_app.extensions["idp.authorization_server"]
