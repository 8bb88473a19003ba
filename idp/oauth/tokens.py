"""Issuing, finding and revoking tokens.

Access tokens are opaque 256-bit values kept in the ephemeral store under the keyed hash
of the token, with a TTL equal to their lifetime: introspection is one store round trip.
Every token belongs to a family (models.Grant); the store keeps, per family, the set of
its live access-token hashes so that revoking the family deletes them at once.

Refresh tokens are durable (days), so they live in the database; rotation marks the old
token with a conditional UPDATE (``WHERE rotated_at IS NULL``) so that of two concurrent
refreshes only one wins (RFC 9700 §4.14.2).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from flask import current_app
from sqlalchemy import update

from ..crypto.secrets import keyed_hash, new_token
from ..extensions import db, keyring, store
from ..models import Account, Client, Grant, RefreshToken, SecurityEvent
from . import id_token

AT_PREFIX = "at:"


def _family_key(grant_id):
    return f"grant-at:{grant_id}"


def _revoked_key(grant_id):
    return f"grant-revoked:{grant_id}"


def _epoch(dt: datetime | None) -> int | None:
    return int(dt.timestamp()) if dt else None


def new_grant(client: Client, account: Account | None, scope: str, *, grant_id=None, sid=None,
              auth_time=None, acr=None, amr=(), resource=()) -> Grant:
    now = datetime.now(timezone.utc)
    grant = Grant(
        id=grant_id, client_id=client.client_id, account_id=account.id if account else None, sid=sid,
        scope=scope, auth_time=auth_time, acr=acr, amr=list(amr), resource=list(resource), created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["REFRESH_TOKEN_ABSOLUTE_TTL"]),
    )
    db.session.add(grant)
    return grant


def issue(client: Client, grant: Grant, account: Account | None, scope: str, *, nonce=None,
          refresh: bool = False, id_token_wanted: bool = True) -> dict:
    """Mint the token response for a grant: access token, maybe refresh and ID token.

    The caller has added ``grant`` to the session; this commits.
    """
    cfg = current_app.config
    now = int(time.time())
    ttl = cfg["ACCESS_TOKEN_TTL"]
    scopes = scope.split()
    response = {"token_type": "Bearer", "expires_in": ttl, "scope": scope}

    if refresh:
        rt = new_token(32)
        db.session.add(_refresh_row(rt, grant, client, scope, generation=0))
        response["refresh_token"] = rt
    db.session.commit()

    response["access_token"] = access_token = _mint_access_token(client, grant, account, scope, now, ttl)
    if account is not None and id_token_wanted and "openid" in scopes:
        response["id_token"] = sign_id_token(client, account, grant, now, nonce=nonce, access_token=access_token,
                                             scopes=scopes)
    return response


def sign_id_token(client, account, grant, now, *, nonce=None, access_token=None, scopes=()):
    cfg = current_app.config
    alg = client.id_token_signed_response_alg or cfg["ID_TOKEN_ALG"]
    email = (account.email, bool(account.email_verified)) if "email" in scopes else None
    body = id_token.claims(
        issuer=cfg["ISSUER"], sub=account.sub, client_id=client.client_id, now=now, ttl=cfg["ID_TOKEN_TTL"],
        auth_time=_epoch(grant.auth_time), nonce=nonce, acr=grant.acr, amr=grant.amr, sid=grant.sid,
        access_token=access_token, alg=alg, email=email,
    )
    return keyring().sign(body, alg)


def _refresh_row(token: str, grant: Grant, client: Client, scope: str, generation: int) -> RefreshToken:
    now = datetime.now(timezone.utc)
    idle = now + timedelta(seconds=current_app.config["REFRESH_TOKEN_IDLE_TTL"])
    return RefreshToken(token_hash=keyed_hash(token), grant_id=grant.id, client_id=client.client_id, scope=scope,
                        created_at=now, expires_at=min(idle, grant.expires_at), generation=generation)


def _mint_access_token(client, grant, account, scope, now, ttl) -> str:
    token = new_token(32)
    token_hash = keyed_hash(token)
    record = {
        "client_id": client.client_id, "scope": scope, "iat": now, "exp": now + ttl, "grant_id": grant.id,
        "token_type": "Bearer", "aud": list(grant.resource) or [client.client_id],
    }
    if account is not None:
        record.update(sub=account.sub, account_id=account.id, auth_time=_epoch(grant.auth_time), acr=grant.acr,
                      amr=list(grant.amr), sid=grant.sid)
    s = store()
    s.put(AT_PREFIX + token_hash, record, ttl)
    s.sadd(_family_key(grant.id), token_hash, int(current_app.config["REFRESH_TOKEN_ABSOLUTE_TTL"]))
    # Write the token, then look for a revocation (revoke_grant writes the mark, then reads
    # the family): whichever runs second sees the other, so no token outlives its family.
    if s.get(_revoked_key(grant.id)):
        s.delete(AT_PREFIX + token_hash)
        from authlib.oauth2.rfc6749 import InvalidGrantError

        raise InvalidGrantError("The grant has been revoked.")
    return token


def find_access_token(token: str) -> dict | None:
    """The record of a live access token, or None. One store round trip."""
    if not token or len(token) > 512:
        return None
    record = store().get(AT_PREFIX + keyed_hash(token))
    if record is None or record["exp"] <= time.time():
        return None
    return record


def revoke_access_token(token: str) -> dict | None:
    return store().consume(AT_PREFIX + keyed_hash(token))


def revoke_grant(grant_id: str, reason: str, account_id: int | None = None) -> None:
    """Kill a whole family: its refresh tokens (database) and access tokens (store)."""
    s = store()
    s.put(_revoked_key(grant_id), reason, int(current_app.config["REFRESH_TOKEN_ABSOLUTE_TTL"]))
    members = s.smembers(_family_key(grant_id))
    if members:
        s.delete(*(AT_PREFIX + h for h in members))
    db.session.execute(
        update(Grant).where(Grant.id == grant_id, Grant.revoked_at.is_(None))
        .values(revoked_at=datetime.now(timezone.utc), revoked_reason=reason)
    )
    if account_id is not None and reason in ("refresh_token_reuse", "code_reuse"):
        db.session.add(SecurityEvent(account_id=account_id, kind=reason, detail={"grant_id": grant_id}))
    db.session.commit()


def is_grant_revoked(grant_id: str) -> bool:
    return store().get(_revoked_key(grant_id)) is not None


def from_epoch(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, timezone.utc) if value is not None else None
