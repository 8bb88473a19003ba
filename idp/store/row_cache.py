"""Database rows read through the shared store, dropped after any commit that changes them.

Some rows are read on every API call: the client registration at /token, /introspect and
/revoke, the account's claims at /userinfo. With a shared store (Redis) a RowCache keeps
the columns those calls need as JSON under ``prefix:key`` for ``ttl`` seconds and deletes
the entry after every commit that inserts, updates or deletes the row, from whichever
process makes it (the `idp` CLI included): no process can read a stale copy for longer
than the commit takes. Changes must go through the ORM (a bulk ``update()`` statement
fires no mapper event); nothing in idp/ writes these tables otherwise.

The embedded store is private to one process, so there the database is always asked.
"""

from __future__ import annotations

from typing import Any, Callable

from flask import has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from ..extensions import db, store
from . import prefetch

_DIRTY = "idp.row_cache_dirty"


def _jsonable(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


class RowCache:
    def __init__(self, model, key_column: str, prefix: str, fields: list[str], build: Callable[[dict], Any],
                 ttl: int = 300):
        self.model, self.key_column, self.prefix = model, key_column, prefix
        self.fields, self.build, self.ttl = fields, build, ttl
        for name in ("after_insert", "after_update", "after_delete"):
            event.listen(model, name, self._remember)

    def key(self, value) -> str:
        return f"{self.prefix}:{value}"

    def find(self, value):
        """The row: its copy ``build(dict)`` when the store is shared (the same whether it came
        from the cache or was just cached), the ORM object otherwise; or None."""
        s = store()
        if not s.shared:
            return self._query(value)
        cached = prefetch.get(self.key(value))
        if cached is not None:
            return self.build(cached)
        row = self._query(value)
        if row is None:
            return None
        data = {f: _jsonable(getattr(row, f)) for f in self.fields}
        s.put(self.key(value), data, self.ttl)
        return self.build(data)

    def _query(self, value):
        column = getattr(self.model, self.key_column)
        return db.session.execute(db.select(self.model).where(column == value)).scalar_one_or_none()

    def _remember(self, mapper, connection, target):
        dirty = Session.object_session(target).info.setdefault(_DIRTY, set())
        dirty.add(self.key(getattr(target, self.key_column)))


@event.listens_for(Session, "after_commit")
def _invalidate(session):
    changed = session.info.pop(_DIRTY, None)
    if changed and has_app_context():
        s = store()
        if s.shared:
            s.delete(*changed)


@event.listens_for(Session, "after_rollback")
def _forget(session):
    session.info.pop(_DIRTY, None)  # nothing was committed
