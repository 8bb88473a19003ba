"""The authorization server, composed from authlib's parts.

authlib does client authentication (client_secret_basic, client_secret_post, none, and
private_key_jwt per RFC 7523), token request parsing, grant dispatch, PKCE verification
(RFC 7636) and the RFC 6749 §5.2 error bodies. What it does not do our way is left to
idp.oauth.tokens: token families, rotation, storage. /authorize is not routed through
authlib (idp.oauth.authorize): its requests live across the sign-in, in the store.
"""

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import current_app
from joserfc.jwk import KeySet

from ..extensions import db, store
from ..models import Account, Client
from . import codes, tokens

ALL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


def query_client(client_id):
    if not isinstance(client_id, str) or len(client_id) > 100:
        return None
    return db.session.execute(db.select(Client).filter_by(client_id=client_id)).scalar_one_or_none()


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
        record, replayed_grant = codes.redeem(code)
        if record is None:
            if replayed_grant:
                # RFC 6749 §4.1.2: a code used twice SHOULD revoke what it produced.
                tokens.revoke_grant(replayed_grant, "code_reuse")
            return None
        if record["client_id"] != client.client_id:
            return None
        return CodeRecord(record)

    def delete_authorization_code(self, authorization_code):
        pass  # already consumed atomically by query_authorization_code

    def authenticate_user(self, authorization_code):
        return db.session.get(Account, authorization_code["account_id"])

    def create_token_response(self):
        client, code = self.request.client, self.request.authorization_code
        account = self.authenticate_user(code)
        if account is None or account.status != "active":
            raise grants.InvalidGrantError("The account is not available.")
        scope = code.get_scope()
        grant = tokens.new_grant(
            client, account, scope, grant_id=code["grant_id"], sid=code.get("sid"),
            auth_time=tokens.from_epoch(code["auth_time"]), acr=code.get("acr"), amr=code.get("amr", []),
            resource=code.get("resource", []),
        )
        refresh = client.check_grant_type("refresh_token") and (
            "offline_access" in code["scope"] or client.first_party)
        token = tokens.issue(client, grant, account, scope, nonce=code.get("nonce"), refresh=refresh)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class PrivateKeyJWT(JWTBearerClientAssertion):
    """private_key_jwt (RFC 7523 §2.2, OIDC Core §9); assertion ids are single-use."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def get_audiences(self):
        issuer = current_app.config["ISSUER"]
        return [issuer, issuer + "/token"]

    def validate_jti(self, claims, jti):
        ttl = max(60, int(claims.get("exp", 0) - claims.get("iat", 0)) + self.leeway) if "iat" in claims else 3600
        return store().add(f"jti:{claims['sub']}:{str(jti)[:200]}", 1, min(ttl, 3600))

    def resolve_client_public_key(self, client):
        return KeySet.import_key_set(client.jwks or {"keys": []})


class Server(AuthorizationServer):
    def handle_response(self, status_code, payload, headers):
        resp = super().handle_response(status_code, payload, headers)
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Pragma"] = "no-cache"
        return resp


def init_app(app):
    server = Server()
    server.init_app(app, query_client=query_client, save_token=lambda token, request: None)
    server.register_client_auth_method("private_key_jwt", PrivateKeyJWT())
    server.register_grant(AuthorizationCodeGrant, [CodeChallenge(required=True)])
    app.extensions["idp.authorization_server"] = server


def authorization_server() -> Server:
    return current_app.extensions["idp.authorization_server"]
