"""Refresh-token rotation in one PostgreSQL statement: the common refresh's only SQL.

A refresh that names no scope and no resource (the mobile app's every refresh) needs the
presented token marked rotated and its successor inserted, if and only if the token is
live: issued to this client, not yet rotated, within its idle and absolute lifetimes, its
family not revoked, its account active and not signed out everywhere since (the rule of
idp.models.account.usable_since, written here in SQL), and, when the
client was authenticated against this process's copy of its registration, that copy's
row and version still the database's (else the caller judges the request again). PostgreSQL
does all of that in one autocommitted statement (data-modifying CTEs: UPDATE ... FROM
... RETURNING, then INSERT ... SELECT), so such a refresh costs one database round trip
instead of BEGIN, SELECT, UPDATE, INSERT and COMMIT.

The row lock of the UPDATE keeps RFC 9700 §4.14.2's promise: of two concurrent refreshes
with one token, the second waits for the first, finds ``rotated_at`` set and changes
nothing. Whenever nothing changed, the caller takes the general path (idp.oauth.refresh),
which tells reuse (revoke the family) from an unknown, foreign or expired token. SQLite,
the single-process embedded database, always takes the general path.

Every row is found by its primary key, one after the other (MATERIALIZED CTEs): written as
one join, the planner could start from the account (estimated at one row while statistics
are missing, or in a generic plan) and walk all of its grants; for a seller with 200
grants that made each rotation three times slower.

The family's revocation mark in the store (written by tokens.revoke_grant before its
database update) is not read here: the access token's own write (put_checked) reads it,
and a family whose mark is there by then gets invalid_grant (tokens.issue records the
revocation in the database and gives nothing out), as on the general path.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import psycopg

from ..extensions import db
from . import pg_direct
from .tokens import RefreshLookup

# PostgreSQL's own parameter style: this runs on the driver's connection (idp.oauth.pg_direct).
_ROTATE = """
WITH g AS MATERIALIZED (
    SELECT id, expires_at, sid, resource, auth_time, acr, amr, account_id, created_at FROM "grant"
    WHERE id = (SELECT grant_id FROM refresh_token WHERE token_hash = %(token_hash)s)
      AND expires_at > %(now)s AND revoked_at IS NULL
), a AS MATERIALIZED (
    SELECT id, sub, email, email_verified FROM account
    WHERE id = (SELECT account_id FROM g) AND status = 'active'
      AND (sessions_revoked_at IS NULL OR sessions_revoked_at < (SELECT created_at FROM g))
), old AS (
    UPDATE refresh_token AS t SET rotated_at = %(now)s
    FROM g, a
    WHERE t.token_hash = %(token_hash)s AND t.rotated_at IS NULL AND t.client_id = %(client_id)s
      AND t.expires_at > %(now)s AND g.id = t.grant_id
      AND (%(client_version)s::integer IS NULL OR EXISTS (
          SELECT FROM client WHERE id = %(client_row)s AND client_id = %(client_id)s
                               AND version = %(client_version)s))
    RETURNING t.scope, t.generation, g.id, g.expires_at, g.sid, g.resource::text AS resource, g.auth_time, g.acr,
              g.amr::text AS amr,
              a.id AS account_id, a.sub, a.email, a.email_verified
), successor AS (
    INSERT INTO refresh_token (token_hash, grant_id, client_id, scope, created_at, expires_at, generation)
    SELECT %(new_hash)s, id, %(client_id)s, scope, %(now)s, LEAST(%(idle_until)s, expires_at), generation + 1
    FROM old
)
SELECT scope, generation, id, expires_at, sid, resource, auth_time, acr, amr, account_id, sub, email,
       email_verified FROM old
"""


# Undo a rotation whose response never reached the client: the successor goes (if nobody
# rotated it, and nobody could have: it was never sent) and then the token is live again.
_UNDO = """
WITH gone AS (
    DELETE FROM refresh_token WHERE token_hash = %(new_hash)s AND rotated_at IS NULL RETURNING 1
)
UPDATE refresh_token SET rotated_at = NULL
WHERE token_hash = %(token_hash)s AND rotated_at = %(rotated_at)s AND EXISTS (SELECT FROM gone)
"""


def _list(text: str | None) -> list:
    # The JSON columns come back as text, parsed here: psycopg's JSON loading cost about 12 us
    # of client CPU per rotation for these two short lists (the statement alone, 5000 runs:
    # 62.6 against 48.7 us).
    return [] if not text or text == "[]" else json.loads(text)


def available() -> bool:
    return db.engine.dialect.name == "postgresql"


def rotate(token_hash: str, client_id: str, new_hash: str, idle_ttl: int,
           client_copy: tuple[int, int] | None = None) -> RefreshLookup | None:
    """Rotate a live token into ``new_hash`` (committed), or None if nothing changed.

    ``client_copy``: the client was authenticated against a copy of its registration
    (idp.oauth.clients), whose row id and version these are; rotate only if the database
    still holds that version of that row. The id matters: a client removed and registered
    again (after a leaked secret) is a new row whose version starts again at 1."""
    client_row, client_version = client_copy or (None, None)
    now = datetime.now(timezone.utc)
    params = {"token_hash": token_hash, "client_id": client_id, "new_hash": new_hash, "now": now,
              "idle_until": now + timedelta(seconds=idle_ttl), "client_row": client_row,
              "client_version": client_version}
    conn = pg_direct.connection()
    try:
        row = conn.execute(_ROTATE, params, prepare=True, binary=True).fetchone()
    except psycopg.Error:
        # Never resent: had the statement committed before the connection broke, sending it
        # again would look like reuse. This request fails; the next one reconnects.
        conn.close()
        raise
    if row is None:
        return None
    (scope, generation, grant_id, grant_expires, sid, resource, auth_time, acr, amr, account_id, sub, email,
     email_verified) = row
    token = SimpleNamespace(scope=scope, generation=generation, client_id=client_id, rotated_at=now)
    grant = SimpleNamespace(id=grant_id, expires_at=grant_expires, sid=sid, resource=_list(resource),
                            auth_time=auth_time, acr=acr, amr=_list(amr), account_id=account_id)
    account = SimpleNamespace(id=account_id, sub=sub, email=email, email_verified=email_verified, status="active")
    return RefreshLookup(token, grant, account)


def undo(token_hash: str, new_hash: str, rotated_at: datetime) -> bool:
    """Take back a rotation (committed by rotate()) whose tokens could not be issued: a Redis
    failure on the access token's write answers 503, and the client's retry with the same
    refresh token must find it live, not rotated: that would read as reuse and revoke the
    family (RFC 9700 §4.14.2) over an outage. True if undone."""
    params = {"token_hash": token_hash, "new_hash": new_hash, "rotated_at": rotated_at}
    conn = pg_direct.connection()
    try:
        return conn.execute(_UNDO, params).rowcount == 1
    except psycopg.Error:
        conn.close()
        raise
