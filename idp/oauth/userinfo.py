"""UserInfo endpoint (OIDC Core §5.3); bearer token in the header only (RFC 6750 §2.1)."""

from flask import jsonify, request

from ..extensions import db
from ..models import Account
from . import tokens


def _unauthorized(error: str | None, description: str | None = None):
    resp = jsonify(error=error or "invalid_request", error_description=description or "bearer token required")
    resp.status_code = 401 if error != "insufficient_scope" else 403
    challenge = 'Bearer realm="userinfo"'
    if error:
        challenge += f', error="{error}"'
    resp.headers["WWW-Authenticate"] = challenge
    resp.headers["Cache-Control"] = "no-store"
    return resp


def respond():
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return _unauthorized(None)
    record = tokens.find_access_token(value.strip())
    if record is None or "sub" not in record:
        return _unauthorized("invalid_token", "the access token is invalid or expired")
    scopes = record["scope"].split()
    if "openid" not in scopes:
        return _unauthorized("insufficient_scope", "the token was not issued for openid")
    account = db.session.get(Account, record["account_id"])
    if account is None or account.status != "active":
        return _unauthorized("invalid_token", "the access token is invalid or expired")
    claims = {"sub": account.sub}
    if "email" in scopes:
        claims.update(email=account.email, email_verified=bool(account.email_verified))
    if "profile" in scopes and account.name:
        claims["name"] = account.name
    resp = jsonify(claims)
    resp.headers["Cache-Control"] = "no-store"
    return resp
