"""UserInfo endpoint (OIDC Core §5.3); the bearer token in the header (RFC 6750 §2.1) or in a
form-encoded POST body (§2.2), never both (§2); not in the query (§2.3: it ends up in logs).

``respond`` takes the request (idp.oauth.requests) and returns (status, body, headers)
for idp.oauth.endpoints to write; errors carry the RFC 6750 §3 challenge.

The claims come from the account row through the shared row cache (idp.store.row_cache):
a userinfo call costs one store round trip for the token, its family's revocation mark
(a JWT's, or an earlier release's token's: a second) and its account's cached claims
together (idp.store.prefetch.follow) and no SQL, while a change to the account (or its
suspension) is seen on the next call. Fetched one after the other, the two cost a second
round trip, where the reference's one read finds its account in memory (bench/).
"""

from types import SimpleNamespace

from ..models import Account
from ..store.row_cache import RowCache
from . import cors, tokens

CLAIM_FIELDS = ["id", "sub", "email", "email_verified", "name", "status"]
_ACCOUNTS = RowCache(Account, "id", "account-claims", CLAIM_FIELDS, lambda data: SimpleNamespace(**data), ttl=60)


def _unauthorized(error: str | None, description: str | None = None):
    """RFC 6750 §3: 401 (403 for insufficient_scope) with the challenge. A request with no
    credentials at all gets no error code (§3.1: "SHOULD NOT include an error code")."""
    status = 403 if error == "insufficient_scope" else 401
    challenge = 'Bearer realm="userinfo"'
    if error is None:
        return status, {"error_description": "bearer token required"}, [("WWW-Authenticate", challenge)]
    challenge += f', error="{error}"'
    return status, {"error": error, "error_description": description}, [("WWW-Authenticate", challenge)]


def for_userinfo(record: dict, issuer: str) -> bool:
    """Whether an access token's audience takes in the UserInfo endpoint: a token for the
    client itself (no resource asked for, idp.oauth.resource_indicators.audience), or for
    this issuer. A token a client asked for another resource server (RFC 8707) is that
    server's: at UserInfo it would let the server, or whoever took it from the server,
    read the seller's claims (RFC 9068 §4: a resource server checks the audience)."""
    audience = record.get("aud") or []
    return record.get("client_id") in audience or issuer in audience or issuer + "/userinfo" in audience


def claims(account, scopes: list[str]) -> dict:
    out = {"sub": account.sub}
    if "email" in scopes:
        out.update(email=account.email, email_verified=bool(account.email_verified))
    if "profile" in scopes and account.name:
        out["name"] = account.name
    return out


def _bearer(request) -> tuple[str | None, str | None]:
    """(the token, or None; an error description when the request is malformed)."""
    if "access_token" in request.args:  # §2.3, which we do not support: say so, not just 401
        return None, "send the access token in the Authorization header or a form body, never in the query"
    header = request.headers.get("Authorization")
    in_body = request.form.getlist("access_token")  # a POST's form body only (idp.oauth.requests)
    if (header is not None and in_body) or len(in_body) > 1:
        return None, "send the access token once: in the header or the body"
    if in_body:
        return in_body[0].strip() or None, None
    scheme, _, value = (header or "").partition(" ")
    return (value.strip() or None if scheme.lower() == "bearer" else None), None


def respond(request, issuer: str):
    token, malformed = _bearer(request)
    if malformed:
        return 400, {"error": "invalid_request", "error_description": malformed}, [
            ("WWW-Authenticate", 'Bearer realm="userinfo", error="invalid_request"')]
    if token is None:
        return _unauthorized(None)
    record = tokens.find_access_token(token, follow=("account_id", _ACCOUNTS.key_prefix))
    if record is None or "sub" not in record:
        return _unauthorized("invalid_token", "the access token is invalid or expired")
    cors.judged_for_id(record.get("client_id"))
    if not for_userinfo(record, issuer):
        return _unauthorized("invalid_token", "the access token was issued for another resource")
    scopes = record["scope"].split()
    if "openid" not in scopes:
        return _unauthorized("insufficient_scope", "the token was not issued for openid")
    account = _ACCOUNTS.find(record["account_id"])
    if account is None or account.status != "active":
        return _unauthorized("invalid_token", "the access token is invalid or expired")
    return 200, claims(account, scopes), []
