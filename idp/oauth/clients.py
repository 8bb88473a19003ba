"""Finding registered clients, with a shared read-through cache.

Every token, introspection and revocation request authenticates a client, so the lookup
is on the hot path. With a shared store (Redis) the registration is cached there as
JSON for CACHE_TTL seconds and dropped after any commit that changes the client, from
whichever process makes it (the `idp` CLI included): no process can hold a stale copy.
The embedded store is private to one process, so there the database is always asked.
"""

from __future__ import annotations

from flask import has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from ..extensions import db, store
from ..models import Client
from ..models.client import CachedClient
from . import prefetch

CACHE_TTL = 300
_FIELDS = [c.key for c in Client.__table__.columns]
_DIRTY = "idp.changed_clients"


def find(client_id) -> Client | CachedClient | None:
    if not isinstance(client_id, str) or not client_id or len(client_id) > 100:
        return None
    s = store()
    if not s.shared:
        return _query(client_id)
    cached = prefetch.get(_key(client_id))
    if cached is not None:
        return _from_cache(cached)
    client = _query(client_id)
    if client is not None:
        s.put(_key(client_id), {f: _jsonable(getattr(client, f)) for f in _FIELDS}, CACHE_TTL)
    return client


def _query(client_id: str) -> Client | None:
    return db.session.execute(db.select(Client).filter_by(client_id=client_id)).scalar_one_or_none()


def cache_key(client_id) -> str | None:
    """The store key of a client's cached registration, when the store holds one."""
    return _key(client_id) if store().shared and isinstance(client_id, str) and 0 < len(client_id) <= 100 else None


def _key(client_id: str) -> str:
    return f"client:{client_id}"


def _jsonable(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


def _from_cache(data: dict) -> CachedClient:
    return CachedClient(data)


@event.listens_for(Client, "after_insert")
@event.listens_for(Client, "after_update")
@event.listens_for(Client, "after_delete")
def _remember_change(mapper, connection, target):
    Session.object_session(target).info.setdefault(_DIRTY, set()).add(target.client_id)


@event.listens_for(Session, "after_commit")
def _invalidate(session):
    changed = session.info.pop(_DIRTY, None)
    if changed and has_app_context():
        s = store()
        if s.shared:
            s.delete(*(_key(c) for c in changed))
