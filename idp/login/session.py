"""The IdP's browser session (single sign-on), kept in the database.

The cookie holds 256 random bits; the table keeps only their keyed hash. Every sign-in
gives the browser a new cookie value, so a session id planted before sign-in is worthless
after it (session fixation). The same seller proving who they are again (prompt=login,
max_age) keeps their session, as Ory Kratos refreshes one: its sid (which relying parties
hold in their ID tokens and back-channel logout matches on) and the clients it signed in
to stay, its cookie value and authentication time change. Another seller signing in on this
browser ends the first one's session as a logout does (idp.login.flow).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from flask import current_app, request
from sqlalchemy import bindparam, func, insert, or_, select, update

from ..crypto.secrets import keyed_hash, new_token
from ..extensions import db
from ..models import Account, BrowserSession, Client
from ..models.account import usable_since


def cookie_name(name: str) -> str:
    """``__Host-`` prefix (Secure, Path=/, no Domain) whenever the issuer is https."""
    return name if _insecure_dev() else f"__Host-{name}"


def _insecure_dev() -> bool:
    """An http issuer: development (production refuses one off loopback, idp.config). Its
    cookies cannot be Secure, or the browser would drop them all, and the rule is the one
    Flask's own cookie follows (idp.create_app), so the CSRF cookie and ours agree."""
    return not current_app.config["ISSUER"].startswith("https://")


def set_cookie(resp, name: str, value: str, max_age: int | None) -> None:
    resp.set_cookie(cookie_name(name), value, max_age=max_age, path="/", secure=not _insecure_dev(),
                    httponly=True, samesite="Lax")


def current() -> tuple[BrowserSession, Account] | None:
    """The browser's live session and its account, from the session cookie."""
    raw = request.cookies.get(cookie_name("idp_session"))
    if not raw or len(raw) > 100:
        return None
    return _live(db.session.get(BrowserSession, keyed_hash(raw)))


def _row(sid) -> BrowserSession | None:
    if not isinstance(sid, str) or not sid:
        return None
    return db.session.execute(db.select(BrowserSession).filter_by(sid=sid)).scalar_one_or_none()


def by_sid(sid: str | None) -> BrowserSession | None:
    live = _live(_row(sid))
    return live[0] if live else None


def lapsed(sid: str | None) -> BrowserSession | None:
    """The session ``sid`` if nobody ended it but it is no longer live (idled out, past its
    lifetime, or its seller's sessions revoked since it began), else None: a session in
    that state gives no single sign-on, yet its token families live on until it is ended
    (idp.logout.session_end)."""
    row = _row(sid)
    if row is None or row.ended_at is not None or _live(row) is not None:
        return None
    return row


_ACCOUNT_IN_SESSION = (
    select(Account.id, Account.sub, Account.email, Account.email_verified, Account.status)
    .join_from(BrowserSession, Account, Account.id == BrowserSession.account_id)
    .join(Client, Client.client_id == bindparam("client_id"))
    .where(BrowserSession.sid == bindparam("sid"), BrowserSession.account_id == bindparam("account_id"),
           BrowserSession.ended_at.is_(None), BrowserSession.expires_at > bindparam("now"),
           or_(BrowserSession.last_seen_at.is_(None), BrowserSession.last_seen_at > bindparam("idle_since")),
           Account.usable_since_sql(BrowserSession.created_at))
    # FOR SHARE: a logout or sign-out-everywhere
    # ending this session waits for the redemption's commit, so the families it then
    # revokes include the one this redemption creates, and a redemption that comes second
    # finds the session ended. Without it, a code redeemed during a sign-out could start a
    # family the sign-out never saw. The client's row likewise: `idp clients remove`
    # deletes it first, so it revokes every family a redemption committed before, and a
    # redemption after it finds no client. (This SELECT serves SQLite, which has no row locks:
    # on PostgreSQL the statement that writes the family takes them, idp.oauth.code_redemption.)
    .with_for_update(read=True, of=[BrowserSession, Client])
)


def account_in_session(sid: str | None, account_id: int | None, client_id: str) -> SimpleNamespace | None:
    """The account (id, sub, email, email_verified, status) if session ``sid`` is live and
    its own and ``client_id`` still registered: the rule of ``current`` in one Core SELECT,
    for the code redemption at the token endpoint on SQLite (on PostgreSQL the statement that
    writes the family checks the same, under the rows' share locks: idp.oauth.code_redemption)."""
    if sid is None or account_id is None:
        return None
    now = datetime.now(timezone.utc)
    row = db.session.execute(_ACCOUNT_IN_SESSION, {"sid": sid, "account_id": account_id, "client_id": client_id,
                                                   "now": now, "idle_since": idle_since(now)}).first()
    return None if row is None else SimpleNamespace(**row._mapping)


def add_client(sid: str, client_id: str) -> bool:
    """Record that ``client_id`` receives an ID token in session ``sid``, for back-channel
    logout, and that the session was used now (``last_seen_at``, for SESSION_IDLE_TTL and the
    seller's list of sessions: written at most once a minute); False if the session has ended
    meanwhile (nothing to answer with a code).

    Read and written under the row's lock (PostgreSQL; SQLite has no row locks): two
    authorizations to two clients at once would otherwise each write back the list it read,
    and one relying party would never hear of the logout. By ``sid``, which never changes (a
    renewal changes the primary key); the caller commits."""
    found = db.session.execute(
        select(BrowserSession.clients, BrowserSession.last_seen_at)
        .where(BrowserSession.sid == sid, BrowserSession.ended_at.is_(None)).with_for_update()).first()
    if found is None:
        return False
    clients, now, changes = list(found.clients or []), datetime.now(timezone.utc), {}
    if client_id not in clients:
        changes["clients"] = [*clients, client_id]
    if found.last_seen_at is None or now - found.last_seen_at >= SEEN_EVERY:
        changes["last_seen_at"] = now
    if changes:
        db.session.execute(update(BrowserSession).where(BrowserSession.sid == sid)
                           .values(**changes).execution_options(synchronize_session=False))
    return True


def oldest_live_start() -> float | None:
    """When the oldest live session began (epoch seconds), or None: signing keys that retired
    since may have signed the hints its relying parties hold (idp.crypto.keys.KeyRing.prune)."""
    oldest = db.session.execute(select(func.min(BrowserSession.created_at)).where(
        BrowserSession.ended_at.is_(None), BrowserSession.expires_at > datetime.now(timezone.utc))).scalar()
    return None if oldest is None else oldest.timestamp()


# How stale ``last_seen_at`` may get before a use writes it again: a session used on every
# page of a relying party would otherwise cost a write each time. An idle limit is then
# measured from up to a minute before the last use.
SEEN_EVERY = timedelta(minutes=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def idle_since(now: datetime) -> datetime:
    """Sessions last used at or before this have idled out (SESSION_IDLE_TTL; 0: none has)."""
    idle = current_app.config["SESSION_IDLE_TTL"]
    return now - timedelta(seconds=idle) if idle else _EPOCH


def _live(row: BrowserSession | None) -> tuple[BrowserSession, Account] | None:
    now = datetime.now(timezone.utc)
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    if row.last_seen_at is not None and row.last_seen_at <= idle_since(now):
        return None
    account = db.session.get(Account, row.account_id)
    return (row, account) if usable_since(account, row.created_at) else None


def _user_agent() -> str:
    """The User-Agent as shown on the seller's list of sessions: printable characters only
    (PostgreSQL text cannot hold NUL, and some WSGI servers pass control characters on)."""
    return "".join(c for c in (request.user_agent.string or "")[:300] if c.isprintable())


def start(account: Account, auth_time: datetime, amr: list[str], acr: str | None,
          renew: BrowserSession | None = None, clients: list[str] = (),
          since: datetime | None = None) -> tuple[BrowserSession, str]:
    """The session of a fresh sign-in: ``renew`` (the browser's live session, this account's)
    under a new cookie value, else a new one (the caller has ended any other account's).
    Returns (row, cookie value); nothing is committed here.

    A new session is written at once, in the request's transaction, with ``clients`` (the
    client this same request will answer with a code) already in its list: a row no other
    request can see yet needs no locked read-and-append (``add_client``). It is a Core
    INSERT: the ORM's unit of work cost about 0.5 ms of a sign-in's CPU for this one row.
    The returned row is a transient copy of what was written (not in the ORM session), for
    its attributes. A renewed session is the persistent row, changed; its list is another
    request's to append to as well, so the caller appends under the lock.

    ``since``: when the proof of identity began (before the account was read). A new
    session's ``created_at`` is that instant, not the insert's: a new password or a sign-out
    everywhere committed while the password was being checked (13-40 ms) would otherwise
    find no session to end, and leave one made after it, which usable_since keeps."""
    now = datetime.now(timezone.utc)
    raw = new_token(32)
    ttl = timedelta(seconds=current_app.config["SESSION_TTL"])
    if renew is not None:
        renew.id_hash = keyed_hash(raw)  # the primary key: the cookie value before finds nothing now
        renew.auth_time, renew.amr, renew.acr = auth_time, list(amr), acr
        renew.last_seen_at, renew.expires_at = now, now + ttl
        renew.user_agent, renew.ip = _user_agent(), request.remote_addr
        return renew, raw
    values = dict(
        id_hash=keyed_hash(raw), sid=secrets.token_urlsafe(16), account_id=account.id, auth_time=auth_time,
        amr=list(amr), acr=acr, created_at=min(since or now, now), last_seen_at=now, expires_at=now + ttl,
        ended_at=None,
        user_agent=_user_agent(), ip=request.remote_addr, clients=list(clients),
    )
    db.session.connection().execute(_INSERT_SESSION, values)  # committed by the caller, with the rest
    return BrowserSession(**values), raw


_INSERT_SESSION = insert(BrowserSession.__table__)
