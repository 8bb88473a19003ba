"""A code redemption's database work in one PostgreSQL statement (RFC 6749 §4.1.3).

Redeeming a code writes a new token family (Grant) and, for a client allowed refresh
tokens, its first refresh token, if and only if the sign-in's session is still live and
its own account's, the account active and not signed out everywhere since the session
began (the rule of idp.login.session.account_in_session), and the client still
registered. Through SQLAlchemy that was five round trips (BEGIN, the session check with
its share locks, two INSERTs, COMMIT); here it is one autocommitted statement
(data-modifying CTEs), on the thread's own connection (idp.oauth.pg_direct).

The share locks of the session's and the client's rows are taken by the same statement
that inserts the family, so they are held until it commits: a logout, a sign-out
everywhere or `idp clients remove` that comes at the same moment waits for it and then
revokes the family it made, and a redemption that comes second finds the session ended
or the client gone (and inserts nothing).

The statement runs once the code is taken (idp.oauth.codes.take), and commits before the
access token and the ID token exist. Whatever then fails (the store or the signing keys
out of reach) takes the family back (``undo``), so that the code given back to the client
for its retry finds no family with its id. SQLite, the single-process embedded database,
takes SQLAlchemy's transaction instead (idp.oauth.server).
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import psycopg
from psycopg.types.json import Json

from ..extensions import db
from ..login.session import idle_since
from . import pg_direct

_REDEEM = """
WITH s AS MATERIALIZED (
    SELECT a.id, a.sub, a.email, a.email_verified, a.status
    FROM browser_session AS b
    JOIN account AS a ON a.id = b.account_id
    JOIN client AS c ON c.client_id = %(client_id)s
    WHERE b.sid = %(sid)s AND b.account_id = %(account_id)s AND b.ended_at IS NULL AND b.expires_at > %(now)s
      AND (b.last_seen_at IS NULL OR b.last_seen_at > %(idle_since)s)
      AND a.status = 'active' AND (a.sessions_revoked_at IS NULL OR a.sessions_revoked_at < b.created_at)
    FOR SHARE OF b, c
), g AS (
    INSERT INTO "grant" (id, account_id, client_id, sid, scope, resource, auth_time, acr, amr, created_at,
                         expires_at)
    SELECT %(grant_id)s, id, %(client_id)s, %(sid)s, %(scope)s, %(resource)s, %(auth_time)s, %(acr)s, %(amr)s,
           %(created_at)s, %(expires_at)s
    FROM s
    RETURNING id
), r AS (
    INSERT INTO refresh_token (token_hash, grant_id, client_id, scope, created_at, expires_at, generation)
    SELECT %(refresh_hash)s::text, id, %(client_id)s, %(refresh_scope)s, %(refresh_created_at)s,
           %(refresh_expires_at)s, 0
    FROM g WHERE %(refresh_hash)s::text IS NOT NULL
)
SELECT id, sub, email, email_verified, status FROM s
"""

# The family and its refresh token, taken back: nothing was given out from them.
_UNDO = """
WITH r AS (DELETE FROM refresh_token WHERE grant_id = %(grant_id)s)
DELETE FROM "grant" WHERE id = %(grant_id)s
"""


def available() -> bool:
    return db.engine.dialect.name == "postgresql"


def redeem(grant: SimpleNamespace, refresh: dict | None) -> SimpleNamespace | None:
    """Insert ``grant`` (the columns of a new Grant, tokens.grant_row) and ``refresh`` (its
    first refresh token's row, tokens.refresh_row, or None), committed; returns the account
    (id, sub, email, email_verified, status), or None if the session, the account or the
    client no longer allows it (nothing written). A family with this id already there (a
    commit whose answer was lost, and the code given back since) raises
    psycopg.errors.UniqueViolation."""
    now = datetime.now(timezone.utc)
    refresh = refresh or {}
    params = {
        "grant_id": grant.id, "client_id": grant.client_id, "account_id": grant.account_id, "sid": grant.sid,
        "scope": grant.scope, "resource": Json(list(grant.resource)), "auth_time": grant.auth_time,
        "acr": grant.acr, "amr": Json(list(grant.amr)), "created_at": grant.created_at,
        "expires_at": grant.expires_at, "now": now, "idle_since": idle_since(now),
        "refresh_hash": refresh.get("token_hash"), "refresh_scope": refresh.get("scope"),
        "refresh_created_at": refresh.get("created_at"), "refresh_expires_at": refresh.get("expires_at"),
    }
    conn = pg_direct.connection()
    try:
        row = conn.execute(_REDEEM, params, prepare=True, binary=True).fetchone()
    except psycopg.errors.UniqueViolation:
        raise  # the statement failed as a whole, on a live connection
    except psycopg.Error:
        conn.close()  # never resent (idp.oauth.pg_direct)
        raise
    if row is None:
        return None
    account_id, sub, email, email_verified, status = row
    return SimpleNamespace(id=account_id, sub=sub, email=email, email_verified=email_verified, status=status)


def undo(grant_id: str) -> None:
    """Take back a family ``redeem`` committed, whose tokens could not be given out."""
    conn = pg_direct.connection()
    try:
        conn.execute(_UNDO, {"grant_id": grant_id})
    except psycopg.Error:
        conn.close()
        raise
