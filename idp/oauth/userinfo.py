"""UserInfo endpoint (OIDC Core §5.3); bearer token in the header only (RFC 6750 §2.1).

``respond`` takes the request (idp.oauth.requests) and returns (status, body, headers)
for idp.oauth.endpoints to write; errors carry the RFC 6750 §3 challenge.

The claims come from the account row through the shared row cache (idp.store.row_cache):
a userinfo call costs the token lookup and the cached claims, two store round trips and
no SQL, while a change to the account (or its suspension) is seen on the next call.
"""

from types import SimpleNamespace

from ..models import Account
from ..store.row_cache import RowCache
from . import tokens

CLAIM_FIELDS = ["id", "sub", "email", "email_verified", "name", "status"]
_ACCOUNTS = RowCache(Account, "id", "account-claims", CLAIM_FIELDS, lambda data: SimpleNamespace(**data), ttl=60)


def _unauthorized(error: str | None, description: str | None = None):
    status = 403 if error == "insufficient_scope" else 401
    challenge = 'Bearer realm="userinfo"'
    if error:
        challenge += f', error="{error}"'
    body = {"error": error or "invalid_request", "error_description": description or "bearer token required"}
    return status, body, [("WWW-Authenticate", challenge)]


def claims(account, scopes: list[str]) -> dict:
    out = {"sub": account.sub}
    if "email" in scopes:
        out.update(email=account.email, email_verified=bool(account.email_verified))
    if "profile" in scopes and account.name:
        out["name"] = account.name
    return out


def respond(request):
    scheme, _, value = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return _unauthorized(None)
    record = tokens.find_access_token(value.strip())
    if record is None or "sub" not in record:
        return _unauthorized("invalid_token", "the access token is invalid or expired")
    scopes = record["scope"].split()
    if "openid" not in scopes:
        return _unauthorized("insufficient_scope", "the token was not issued for openid")
    account = _ACCOUNTS.find(record["account_id"])
    if account is None or account.status != "active":
        return _unauthorized("invalid_token", "the access token is invalid or expired")
    return 200, claims(account, scopes), []
