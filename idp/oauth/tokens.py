"""Issuing, finding and revoking tokens.

Access tokens are opaque: 256 random bits, a dot and their family's tag (family_tag), kept
in the ephemeral store under the keyed hash of the token, with a TTL equal to their
lifetime. JWT access tokens (RFC 9068, idp.oauth.jwt_access_token) are kept there too,
under their jti. Every token belongs to a family (models.Grant), and is live while its
record is there and its family has no revocation mark (kill_access_tokens). No index lists
a family's tokens: one cost every token a sorted-set update in a Lua script, and the mark
answers for all of them. The tag names the mark, so introspection and userinfo fetch it
with the record, in the same round trip.

Refresh tokens are durable (days), so they live in the database; rotation
(idp.oauth.refresh) marks the old token with a conditional UPDATE so that of two
concurrent refreshes only one wins (RFC 9700 §4.14.2).

Client-credentials tokens (RFC 6749 §4.4) belong to a family that exists only in the
store (StoreFamily): no Grant row, no refresh token, one store write. Their revocation (a
client removed, a leaked secret replaced) writes their family's mark.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import NamedTuple

from authlib.oauth2.rfc6749.errors import InvalidGrantError
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..config import PRODUCTION_CEILINGS
from ..context import current_app
from ..crypto.secrets import keyed_hash, new_token
from ..extensions import db, keyring, store
from ..models import Account, Client, Grant, PendingSweep, RefreshToken, SecurityEvent
from ..models.grant import new_grant_id
from ..ops import metrics
from ..store import prefetch
from . import clients, id_token, jwt_access_token, resource_indicators

log = logging.getLogger(__name__)

AT_PREFIX = "at:"
MAX_TOKEN = 512  # opaque tokens are 66 characters (43 before the tags)
CC_FAMILY = "cc:"  # what a client-credentials family's id starts with (client_credentials_family)
MARK_PREFIX = "family-revoked:"  # + a family's tag (family_tag): its revocation mark, the reason
TAG_LENGTH = 22  # hex characters of a keyed hash: 88 bits
# The least a family's mark lives: past the end of any token of the family, whatever
# ACCESS_TOKEN_TTL was when it was issued (at most the production ceiling) or is in the
# process that revokes. No token is issued into a family after its mark (the write's check).
MARK_MIN_TTL = max(ttl for name, ttl, _ in PRODUCTION_CEILINGS if name == "ACCESS_TOKEN_TTL") + 180


@dataclass
class StoreFamily:
    """A family that lives only in the store (client_credentials); quacks like a Grant.

    A client's client-credentials tokens are grouped by the credentials they were issued
    against (``cc:<the client's row id>:<credentials>``: the registration's row, so a client
    registered again under the same client_id starts clean; its secret, so a new secret
    starts clean too), so removing the client or replacing a leaked secret revokes them all
    (revoke_client_credentials) with the family's mark."""

    id: str  # client_credentials_family()
    resource: list = field(default_factory=list)
    auth_time = acr = sid = None
    amr: tuple = ()


def family_tag(family: str) -> str:
    """What an opaque access token carries of its family: enough to name the family's mark
    (family_mark_key), nothing of the family itself (a keyed hash)."""
    return keyed_hash(family)[:TAG_LENGTH]


def family_mark_key(tag: str) -> str:
    return MARK_PREFIX + tag


def family_mark_key_in(token) -> str | None:
    """The mark key an opaque access token names (``<random>.<tag>``), or None (a JWT, a
    token of an earlier release, garbage). Trusted once the token's record is found (a token
    whose end was changed is another token, with no record: find_access_token); before, only
    to fetch the mark with the record (introspection, userinfo)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        return None
    head, dot, tag = token.rpartition(".")
    if not dot or "." in head or len(tag) != TAG_LENGTH or tag.strip("0123456789abcdef"):
        return None
    return family_mark_key(tag)


def client_credentials_family(client_row_id: int, credentials: str) -> str:
    """``credentials``: credentials_mark() of the registration."""
    return f"{CC_FAMILY}{client_row_id}:{credentials}"


def _earlier_cc_families(client_row_id: int, credentials: str, now: float, ttl: int) -> list[str]:
    """The families earlier releases put a registration's tokens in, one per minute (with the
    credentials, and before them without): those of the minutes that may still hold a live
    token, a minute's slack each side for clock skew."""
    return [f"{CC_FAMILY}{client_row_id}:{name}{minute}"
            for minute in range(int(now - ttl) // 60 - 1, int(now) // 60 + 2)
            for name in (f"{credentials}:", "")]


def credentials_mark(client) -> str:
    """Which credentials a client-credentials token was issued against: the start of the
    secret's hash (keyed with SECRET_KEY, of a secret of 256 random bits: nothing to learn
    from), "-" for a client without a secret. No hashing here: this is on the hot path."""
    secret_hash = getattr(client, "secret_hash", None)
    return secret_hash[:16] if secret_hash else "-"


def _family_key(grant_id):
    return f"grant-ats:{grant_id}"  # the index (Store.put_indexed) an earlier release kept


def _family_members(s, family: str) -> set[str]:
    """The store keys of the family's access tokens that earlier releases listed: in an index
    (``grant-ats:``), before that in a plain set (``grant-at:``), until their last expires."""
    return s.index_members(_family_key(family)) | s.smembers(f"grant-at:{family}")


def _revoked_key(grant_id):
    return f"grant-revoked:{grant_id}"


def _epoch(dt: datetime | None) -> int | None:
    return int(dt.timestamp()) if dt else None


_INSERT_GRANT = insert(Grant.__table__)


def grant_row(client: Client, account_id: int | None, scope: str, *, grant_id=None, sid=None, auth_time=None,
              acr=None, amr=(), resource=(), created_at: datetime | None = None) -> SimpleNamespace:
    """The columns of a new token family, as attributes (not written).

    ``created_at``: when the request checked the account (default now). A sign-out
    everywhere after that check makes the family unusable (usable_since) even if it
    commits before the family does."""
    now = created_at or datetime.now(timezone.utc)
    return SimpleNamespace(
        id=grant_id or new_grant_id(), client_id=client.client_id, account_id=account_id,
        sid=sid, scope=scope, resource=list(resource), auth_time=auth_time, acr=acr, amr=list(amr),
        created_at=now, expires_at=now + timedelta(seconds=current_app.config["REFRESH_TOKEN_ABSOLUTE_TTL"]),
        revoked_at=None, revoked_reason=None,
    )


def new_grant(client: Client, account: Account | None, scope: str, **columns) -> SimpleNamespace:
    """A new token family (grant_row), inserted in the request's transaction.

    A Core INSERT, as for refresh tokens: the row is never read back through the ORM, whose
    unit of work for one new object cost more than the statement (every code redemption)."""
    grant = grant_row(client, account.id if account else None, scope, **columns)
    db.session.execute(_INSERT_GRANT, vars(grant))
    return grant


def issue(client: Client, grant: Grant, account: Account | None, scope: str, *, nonce=None,
          refresh: bool = False, refresh_scope: str | None = None, generation: int = 0,
          audience: list[str] | None = None, id_scope: str | None = None, id_token_wanted: bool = True,
          grant_type: str = "none", stored_refresh: str | None = None) -> dict:
    """Mint the token response for a grant: access token, maybe refresh and ID token.

    ``scope`` is the access token's; the refresh token keeps ``refresh_scope`` (RFC 6749
    §6: a new refresh token has the scope of the one it replaces) and the ID token is
    decided by ``id_scope`` (both default to ``scope``); ``stored_refresh`` is a refresh token
    the caller has stored already (a rotation's successor, a redemption's first). The caller has put its changes
    (new Grant, rotation) in the session: the access token is stored first, then the
    session committed, so a family revoked meanwhile never gets a live token.
    """
    cfg = current_app.config
    now, ttl = int(time.time()), cfg["ACCESS_TOKEN_TTL"]
    response = {"token_type": "Bearer", "expires_in": ttl, "scope": scope}
    if stored_refresh is not None:
        # Already stored, committed (idp.oauth.refresh_rotation, idp.oauth.code_redemption).
        response["refresh_token"] = stored_refresh
    elif refresh:
        rt = new_token(32)
        # A Core INSERT: the row is never read back, and the ORM's unit of work for one
        # new object cost more than the statement (refresh is a hot path).
        db.session.execute(_INSERT_REFRESH, refresh_row(rt, grant, client, refresh_scope or scope, generation))
        response["refresh_token"] = rt
    aud = audience or resource_indicators.audience(list(grant.resource), client.client_id)
    access_token, key, revoked = _mint_access_token(client, grant, account, scope, now, ttl, aud)
    if revoked is not None:
        # The family was revoked while we issued (a replayed code, a reused refresh token, a
        # sign-out), or before, with the database behind (its update failed, or the family's
        # row was not committed yet): record it there, and give nothing out, since a new ID
        # token would tell the client that the seller is signed in. The access token is gone
        # already (_mint_access_token deleted it).
        db.session.execute(update(Grant).where(Grant.id == grant.id, Grant.revoked_at.is_(None))
                           .values(revoked_at=datetime.now(timezone.utc), revoked_reason=str(revoked)[:60]))
        db.session.commit()
        raise InvalidGrantError("the grant has been revoked")
    try:
        response["access_token"] = access_token
        scopes = (id_scope or scope).split()
        if account is not None and id_token_wanted and "openid" in scopes:
            # Signed before the commit: a failure here leaves the code unredeemed or the
            # refresh token unrotated, so the client's retry is not mistaken for a replay. (The
            # one-statement rotation and redemption committed first: their callers undo them.)
            response["id_token"] = sign_id_token(client, account, grant, now, nonce=nonce,
                                                 access_token=access_token, scopes=scopes)
        # A refresh rotated, or a code redeemed, in one statement (idp.oauth.refresh_rotation,
        # idp.oauth.code_redemption) has not even made the request's Session (behind the
        # scoped proxy): there is nothing to commit.
        session = db.session() if db.session.registry.has() else None
        if session is not None and (session.in_transaction() or session.new or session.dirty or session.deleted):
            session.commit()
    except Exception:
        store().delete(AT_PREFIX + key)
        raise
    metrics.tokens_issued(response, grant_type)
    return response


def issue_client_credentials(client: Client, scope: str, audience: list[str], copy=None) -> dict | None:
    """RFC 6749 §4.4.3: an access token only. No database write, one store write.

    ``copy``: the process's copy of the registration the client authenticated against
    (idp.oauth.clients); the token is kept only if the shared cache holds that same
    registration at the moment of the write, else it is deleted and None returned. Without
    a copy, None means the client was removed while this request ran.
    """
    ttl, now = current_app.config["ACCESS_TOKEN_TTL"], int(time.time())
    family = StoreFamily(id=client_credentials_family(client.id, credentials_mark(client)))
    token, _, stale = _mint_access_token(client, family, None, scope, now, ttl, audience, copy=copy)
    if stale:
        return None
    metrics.token_issued("client_credentials", "access_token")
    return {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": scope}


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


_INSERT_REFRESH = insert(RefreshToken.__table__)


def refresh_row(token: str, grant: Grant, client: Client, scope: str, generation: int) -> dict:
    """A fresh idle window, never past the family's absolute end (RFC 9700 §4.14.2)."""
    now = datetime.now(timezone.utc)
    idle = now + timedelta(seconds=current_app.config["REFRESH_TOKEN_IDLE_TTL"])
    return dict(token_hash=keyed_hash(token), grant_id=grant.id, client_id=client.client_id, scope=scope,
                created_at=now, expires_at=min(idle, grant.expires_at), generation=generation)


def _mint_access_token(client, grant, account, scope, now, ttl, aud, *, copy=None):
    """(token, store key suffix, why it was deleted at once or None).

    The token is written with a check read after it, in one round trip (Store.put_checked):
    the family's revocation mark (the reason is returned; a token written before the mark is
    judged by it when read, find_access_token), or, with ``copy``, the client's registration
    in the shared cache, which must still be this process's copy of it (idp.oauth.clients;
    else "stale_client").
    """
    cfg = current_app.config
    record = {"client_id": client.client_id, "scope": scope, "iat": now, "exp": now + ttl, "grant_id": grant.id,
              "token_type": "Bearer", "aud": list(aud)}
    if account is not None:
        record.update(sub=account.sub, account_id=account.id, auth_time=_epoch(grant.auth_time), acr=grant.acr,
                      amr=list(grant.amr), sid=grant.sid)
    resources, tag = cfg["RESOURCES"], family_tag(grant.id)
    if resource_indicators.wants_jwt(client.access_token_format, [a for a in aud if a in resources], resources):
        jti = new_token(24)
        token, key = jwt_access_token.sign(cfg["ISSUER"], record, jti, cfg["ID_TOKEN_ALG"]), "jwt:" + jti
    else:
        token = new_token(32) + "." + tag  # the tag names its family's mark
        key = keyed_hash(token)
    s = store()
    if copy is not None:
        check = clients.cache_key(client.client_id)
    else:  # a Grant's: the mark revoke_grant writes first, which an earlier release writes too
        check = family_mark_key(tag) if isinstance(grant, StoreFamily) else _revoked_key(grant.id)
    seen = s.put_checked(AT_PREFIX + key, record, ttl, check)
    refused = seen if copy is None else (None if clients.matches(copy, seen) else "stale_client")
    if refused:
        s.delete(AT_PREFIX + key)
    return token, key, refused or None


def access_token_key(token: str, verify: bool = True) -> str | None:
    """The store key suffix of an access token (opaque or JWT), or None for garbage.
    ``verify=False``: a JWT's key from the jti it claims, its signature not checked, only to
    fetch its record ahead (idp.oauth.introspection, before the caller has authenticated)."""
    if not isinstance(token, str) or not token:
        return None
    if jwt_access_token.looks_like_jwt(token):
        jti = jwt_access_token.jti_of(token) if verify else jwt_access_token.unverified_jti(token)
        return "jwt:" + jti if jti else None
    return keyed_hash(token) if len(token) <= MAX_TOKEN else None


def find_access_token(token: str, follow: tuple[str, str] | None = None) -> dict | None:
    """The record of a live access token, or None: its record there, not expired, and its
    family without a revocation mark. One store round trip for an opaque token (its tag
    names the mark: fetched with the record by introspection's prefetch, or here); a JWT, or
    a token of an earlier release, takes a second for the mark. With ``follow`` (a field of
    the record, a key prefix), the entry the record names there comes in the same round trip
    (idp.store.prefetch.follow)."""
    key = access_token_key(token)
    if key is None:
        return None
    mark = family_mark_key_in(token)
    if follow is not None:
        prefetch.follow(AT_PREFIX + key, *follow, also=[mark])
    record = prefetch.get(AT_PREFIX + key)
    if record is None or record["exp"] <= time.time():
        return None
    if mark is None:  # a JWT, or a token of an earlier release: the family its record names
        family = record.get("grant_id")
        if not isinstance(family, str):
            return None
        mark = family_mark_key(family_tag(family))
    # Else the token's own tag names the mark: the record is filed under the keyed hash of the
    # whole token, tag included, and only _mint_access_token files one, with its family's tag.
    return None if prefetch.get(mark) is not None else record


def revoke_access_token(token: str, client_id: str | None = None) -> dict | None:
    """Delete an access token; with ``client_id``, only if it was issued to that client."""
    key = access_token_key(token)
    if key is None:
        return None
    s = store()
    if client_id is None:
        return s.consume(AT_PREFIX + key)
    record = s.get(AT_PREFIX + key)
    if record is None or record.get("client_id") != client_id:
        return None
    s.delete(AT_PREFIX + key)
    return record


class RefreshLookup(NamedTuple):
    """A refresh token with its family and account, as plain read-only rows."""

    token: SimpleNamespace
    grant: SimpleNamespace
    account: SimpleNamespace | None


def _columns(table, prefix: str, skip=()):
    return [c.label(prefix + c.key) for c in table.c if c.key not in skip]


_RT, _GRANT, _ACCOUNT = RefreshToken.__table__, Grant.__table__, Account.__table__
# Built once: the refresh path runs it on every use, and constructing an ORM query with
# joined eager loads cost more than PostgreSQL's answer (tokens are looked up by hash).
_FIND_REFRESH = (
    select(*_columns(_RT, "t_"), *_columns(_GRANT, "g_"), *_columns(_ACCOUNT, "a_", skip={"password_hash"}))
    .select_from(_RT.join(_GRANT, _GRANT.c.id == _RT.c.grant_id)
                 .outerjoin(_ACCOUNT, _ACCOUNT.c.id == _GRANT.c.account_id))
    .where(_RT.c.token_hash == bindparam("token_hash"))
)


def _part(row, prefix: str) -> SimpleNamespace:
    n = len(prefix)
    return SimpleNamespace(**{k[n:]: v for k, v in row.items() if k.startswith(prefix)})


def find_refresh_token(token: str) -> RefreshLookup | None:
    """The refresh token, its Grant and Account (None for a client's own family), in one
    SELECT, or None."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
        return None
    row = db.session.execute(_FIND_REFRESH, {"token_hash": keyed_hash(token)}).mappings().first()
    if row is None:
        return None
    account = _part(row, "a_") if row["a_id"] is not None else None
    return RefreshLookup(_part(row, "t_"), _part(row, "g_"), account)


def kill_access_tokens(grant_id: str, reason: str) -> None:
    """The store's half of revoking a family: its marks, which end its access tokens at once
    (find_access_token; a token written after them sees them and deletes itself, issue), the
    one its refresh path reads (is_grant_revoked) first. Then the sweep of the access tokens
    an earlier release listed (and whose processes, during an upgrade, read no mark)."""
    s = store()
    cfg = current_app.config  # past the end of any token of the family, whatever the ENV's ceilings
    ttl = max(int(cfg["REFRESH_TOKEN_ABSOLUTE_TTL"]), MARK_MIN_TTL, int(cfg["ACCESS_TOKEN_TTL"]) + 180)
    s.put_many([(_revoked_key(grant_id), reason, ttl), (family_mark_key(family_tag(grant_id)), reason, ttl)])
    members = _family_members(s, grant_id)
    if members:
        s.delete(*members)


def revoke_families(condition, reason: str, now: datetime | None = None) -> list[str]:
    """The database's half of revoking every live family matching ``condition`` (their refresh
    tokens die), in one UPDATE of the caller's transaction, which commits it; their ids, for
    kill_families_access_tokens once committed."""
    return list(db.session.scalars(
        update(Grant).where(condition, Grant.revoked_at.is_(None))
        .values(revoked_at=now or datetime.now(timezone.utc), revoked_reason=reason)
        .returning(Grant.id).execution_options(synchronize_session=False)))


def kill_families_access_tokens(grant_ids: list[str], reason: str) -> bool:
    """The store's half for families revoke_families revoked, best effort: False (logged) if
    the store failed; the families left are then written down for sweep_pending (the next
    maintenance run), and their access tokens live until it, at most their ACCESS_TOKEN_TTL.
    For a logout or a removal whose database half is committed: what follows it (telling the
    relying parties) must still run, since a retry would find nothing left to revoke."""
    for done, grant_id in enumerate(grant_ids):
        try:
            kill_access_tokens(grant_id, reason)
        except Exception as exc:  # noqa: BLE001  (see above)
            log.error("%s: the store's half of revoking %d family(ies) failed: %s", reason,
                      len(grant_ids) - done, type(exc).__name__)
            remember_to_sweep(grant_ids[done:], reason)
            return False
    return True


_PENDING_SWEEP = PendingSweep.__table__
SWEEP_BATCH = 1000  # rows per statement (PostgreSQL binds at most 65,535 parameters)
SWEEP_BATCHES = 50  # per maintenance run: 50,000 families, within a run's few seconds


def remember_to_sweep(grant_ids: list[str], reason: str) -> None:
    """Write down families whose access tokens the store could not end (kill_access_tokens), in a transaction
    of its own (the revocation's is committed): an upsert, so that two processes writing
    down the same family at once (a reuse racing a sign out everywhere) both succeed, in
    chunks within PostgreSQL's bound on a statement's parameters. The database out of reach
    too: logged, and the tokens expire within ACCESS_TOKEN_TTL."""
    if not grant_ids:
        return
    now = int(time.time())
    rows = [{"grant_id": g, "reason": reason[:60], "recorded_at": now} for g in dict.fromkeys(grant_ids)]
    upsert = (postgresql_insert if db.engine.dialect.name == "postgresql" else sqlite_insert)(_PENDING_SWEEP)
    upsert = upsert.on_conflict_do_update(index_elements=["grant_id"],
                                          set_={"reason": upsert.excluded.reason,
                                                "recorded_at": upsert.excluded.recorded_at})
    try:
        with db.engine.begin() as conn:
            for start in range(0, len(rows), SWEEP_BATCH):
                conn.execute(upsert, rows[start:start + SWEEP_BATCH])
    except Exception as exc:  # noqa: BLE001  (see above)
        log.error("%s: %d family(ies) whose access tokens were not deleted could not be written down for a later "
                  "sweep: %s", reason, len(rows), type(exc).__name__)


def sweep_pending() -> int:
    """End the access tokens of the families remember_to_sweep wrote down (the server's
    logout-retry job), oldest first, in batches until none is left; their number. Each is
    swept however long ago it was written down: a replayed code's family may have had no
    row in the database to revoke, and the store's mark is then its only revocation. The
    store failing again leaves the rest for the next run."""
    swept = 0
    for _ in range(SWEEP_BATCHES):
        with db.engine.connect() as conn:
            rows = conn.execute(select(_PENDING_SWEEP).order_by(_PENDING_SWEEP.c.recorded_at)
                                .limit(SWEEP_BATCH)).all()
        done, failed = [], None
        for row in rows:
            try:
                kill_access_tokens(row.grant_id, row.reason)
            except Exception as exc:  # noqa: BLE001  (the store still out of reach: next run)
                failed = exc
                break
            done.append(row.grant_id)
        if done:
            with db.engine.begin() as conn:
                conn.execute(delete(_PENDING_SWEEP).where(_PENDING_SWEEP.c.grant_id.in_(done)))
            swept += len(done)
        if failed is not None:
            log.warning("sweep of revoked families' access tokens stopped: %s", type(failed).__name__)
            break
        if len(rows) < SWEEP_BATCH:
            break
    return swept


def revoke_grant(grant_id: str, reason: str, account_id: int | None = None) -> None:
    """Kill a whole family: its access tokens (store: the mark, then the sweep), and its
    refresh tokens with the security event (database). Each half is done even when the other
    fails (the request's answer is then a 503): with the store out of reach the family is
    still revoked and the reuse on the seller's record, its access tokens expiring within
    ACCESS_TOKEN_TTL; with the database out of reach its access tokens still go. The mark
    comes first: a family being written meanwhile (a code's redemption racing its replay)
    has no row yet for the UPDATE, and the mark is what stops it (issue() sees it)."""
    try:
        kill_access_tokens(grant_id, reason)
        store_failure = None
    except Exception as exc:  # noqa: BLE001  (raised below, once the database's half is done)
        store_failure = exc
    db.session.execute(
        update(Grant).where(Grant.id == grant_id, Grant.revoked_at.is_(None))
        .values(revoked_at=datetime.now(timezone.utc), revoked_reason=reason)
    )
    if account_id is not None and reason in ("refresh_token_reuse", "code_reuse"):
        db.session.add(SecurityEvent(account_id=account_id, kind=reason, detail={"grant_id": grant_id}))
    db.session.commit()
    if store_failure is not None:
        remember_to_sweep([grant_id], reason)
        raise store_failure


def revoke_client_credentials(client_row_id: int, credentials: str, reason: str = "client_removed") -> None:
    """Revoke every live client-credentials access token of the client registration
    ``client_row_id`` (Client.id) issued against ``credentials`` (credentials_mark(): the
    client is being removed, or its secret replaced): the family's revocation mark, which
    makes them all inactive at once (find_access_token). Tokens issued against other
    credentials (a new secret) are left alone.

    The families of an earlier release (one per minute) are marked too, which this
    release's readers then refuse, and their indexes (or plain sets) swept. Its processes do
    not read these marks, and this release's tokens are in no index: see the README
    (Upgrades) for when a client may be removed or a secret replaced during an upgrade."""
    ttl = int(current_app.config["ACCESS_TOKEN_TTL"])
    family = client_credentials_family(client_row_id, credentials)
    for f in [family, *_earlier_cc_families(client_row_id, credentials, time.time(), ttl)]:
        kill_access_tokens(f, reason)  # as any family's: its marks, then the earlier release's index swept


def is_grant_revoked(grant_id: str) -> bool:
    return store().get(_revoked_key(grant_id)) is not None


def from_epoch(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, timezone.utc) if value is not None else None
