"""A request's read-only transaction ends with COMMIT, not ROLLBACK.

psycopg prepares a statement on the server once it has run it five times on a connection,
and forgets every prepared statement of the connection at a rollback (``DEALLOCATE ALL``:
a rolled-back transaction may have dropped what they refer to). Flask-SQLAlchemy ends a
request by closing its session, which rolls back whatever transaction is still open: a
request that read after its last commit, or never wrote at all (a cache miss of the row
cache, a page showing the seller's sessions), so wiped the pooled connection's prepared
statements, and the next requests on it parsed and planned every statement again.
Measured on the code flow: one such read per flow cost about 1 ms of PostgreSQL CPU per
flow (0.85-1.45 ms without it, 1.95-2.30 ms with it; in-process, 200 flows, 3 runs).

So the statements a connection sends are watched (an engine event, a string check per
statement), and at the end of an app context without an exception, a transaction that
sent nothing but SELECTs and holds no pending ORM change is committed: the same for the
database, and psycopg keeps its statements. A transaction that wrote, or a request that
failed, is rolled back as before.
"""

from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)
WROTE = "idp.wrote"  # in a pooled connection's info: its transaction sent something other than a SELECT


@event.listens_for(Engine, "before_cursor_execute")
def _note(conn, cursor, statement, parameters, context, executemany):
    if not statement.lstrip()[:6].upper().startswith("SELECT"):
        conn.info[WROTE] = True


@event.listens_for(Engine, "commit")
@event.listens_for(Engine, "rollback")
def _reset(conn):
    # An invalidated connection (the server closed it: a restart, a failover) has no info to
    # read until this very rollback is over: reading it raised out of the request's teardown,
    # turning its 503 into a bare 500 from the WSGI server. Its DBAPI connection is replaced.
    if not conn.invalidated:
        conn.info.pop(WROTE, None)


def register(app, db) -> None:
    """End each app context's read-only transaction with a commit (before Flask-SQLAlchemy's
    own teardown, which closes the session: Flask runs teardowns last registered first)."""

    @app.teardown_appcontext
    def commit_read_only(exc):
        # registry.has(): a request that never touched the database (the token hot paths)
        # has no session, and making one here cost 6 us of each such request.
        if exc is not None or not db.session.registry.has():
            return
        session = db.session()
        if not session.in_transaction() or session.new or session.dirty or session.deleted:
            return
        try:
            if not session.connection().info.get(WROTE):
                session.commit()
        except Exception as error:  # noqa: BLE001  (the rollback that follows ends it anyway)
            log.debug("read-only transaction not committed: %s", type(error).__name__)
