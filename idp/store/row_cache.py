"""Database rows read through the shared store, dropped after any commit that changes them.

Some rows are read on every API call: the client registration at /token, /introspect and
/revoke, the account's claims at /userinfo. With a shared store (Redis) a RowCache keeps
the columns those calls need as JSON under ``prefix:key`` for ``ttl`` seconds and deletes
the entry after every commit that inserts, updates or deletes the row, from whichever
process makes it (the `idp` CLI included): no process can read a stale copy for longer
than the commit takes. Changes must go through the ORM (a bulk ``update()`` statement
fires no mapper event); nothing in idp/ writes these tables otherwise.

A read can be overtaken: a request misses, reads the row, a change commits and drops the
entry, and then the request caches what it read, the row as it was before the change (a
client's old secret, say, working for the TTL). So every change also increments the
entry's counter (``prefix-v:key``, a name no cached row can have) before dropping the entry,
a request reads that counter before it reads the row, and it caches the row only if the
counter has not moved
(Store.put_if_counter, atomic). That costs a round trip on a miss only.

The embedded store is private to one process, so there the database is always asked.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from flask import has_app_context, has_request_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from ..extensions import db, store
from . import prefetch

log = logging.getLogger(__name__)
_DIRTY = "idp.row_cache_dirty"
VERSION_TTL = 24 * 3600  # longer than any read between a counter and its fill can take
DEFAULT_TTL = 300  # seconds an entry lives (the longest of any RowCache here)
_LEFT: list[str] = []  # entries a commit outside any request could not drop: the CLI says so


def _jsonable(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


def _version_key(key: str) -> str:
    prefix, _, value = key.partition(":")
    return f"{prefix}-v:{value}"  # not "<key>:v": that is the cache key of a row whose key ends in ":v"


class RowCache:
    def __init__(self, model, key_column: str, prefix: str, fields: list[str], build: Callable[[dict], Any],
                 ttl: int = DEFAULT_TTL):
        self.model, self.key_column, self.prefix = model, key_column, prefix
        self.fields, self.build, self.ttl = fields, build, ttl
        for name in ("after_insert", "after_update", "after_delete"):
            event.listen(model, name, self._remember)

    def key(self, value) -> str:
        return f"{self.prefix}:{value}"

    @property
    def key_prefix(self) -> str:
        """What ``key`` puts before the row's key (idp.store.prefetch.follow)."""
        return f"{self.prefix}:"

    def find(self, value):
        """The row: its copy ``build(dict)`` when the store is shared (the same whether it came
        from the cache or was just cached), the ORM object otherwise; or None."""
        s = store()
        if not s.shared:
            return self._query(value)
        key = self.key(value)
        cached = prefetch.get(key)
        if isinstance(cached, dict):
            return self.build(cached)
        version = s.counter(_version_key(key))  # before the read: see the module docstring
        row = self._query(value)
        if row is None:
            return None
        data = {f: _jsonable(getattr(row, f)) for f in self.fields}
        s.put_if_counter(key, data, self.ttl, _version_key(key), version)
        return self.build(data)

    def _query(self, value):
        column = getattr(self.model, self.key_column)
        # populate_existing: a row this session loaded before would otherwise come back with
        # the values it had then, whatever the SELECT read (SQLAlchemy's identity map), and be
        # cached as current after another process changed it (a rotated secret) meanwhile.
        return db.session.execute(db.select(self.model).where(column == value)
                                  .execution_options(populate_existing=True)).scalar_one_or_none()

    def _remember(self, mapper, connection, target):
        dirty = Session.object_session(target).info.setdefault(_DIRTY, set())
        dirty.add(self.key(getattr(target, self.key_column)))


@event.listens_for(Session, "after_commit")
def _invalidate(session):
    """Drop the changed rows' entries. The commit is done when this runs: with the store out
    of reach, raising would tell the caller it failed and stop what must follow it (a
    sign-out's back-channel logout). So say so and go on: an entry left behind lives out its
    ttl (300 s) if the store comes back with its data, and nobody can read it meanwhile."""
    changed = session.info.pop(_DIRTY, None)
    if changed and has_app_context():
        s = store()
        if s.shared:
            try:
                for key in changed:  # first: a fill from a read made before this commit is refused
                    s.incr(_version_key(key), VERSION_TTL)
                s.delete(*changed)
            except Exception as exc:  # noqa: BLE001  (see above)
                log.error("row cache: %d entry(ies) not dropped after a commit (%s); they expire within their ttl",
                          len(changed), type(exc).__name__)
                if not has_request_context():  # the `idp` CLI: the operator must hear of it (left_behind)
                    _LEFT.extend(changed)


def left_behind() -> list[str]:
    """Cache entries this process's commits outside a request left behind (the store was out
    of reach): servers may go on reading the row as it was, a rotated secret's old hash
    included, until each entry's ttl is over."""
    return list(_LEFT)


def forget_left_behind() -> None:
    _LEFT.clear()


@event.listens_for(Session, "after_rollback")
def _forget(session):
    session.info.pop(_DIRTY, None)  # nothing was committed
