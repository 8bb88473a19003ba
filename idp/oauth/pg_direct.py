"""A thread's own autocommit psycopg connection, for the hot paths' one-statement writes.

The refresh rotation (idp.oauth.refresh_rotation) and the code redemption
(idp.oauth.code_redemption) each run one statement on psycopg directly, not through
SQLAlchemy: checking a pooled connection out and in again around it, with the switch to
autocommit and back, cost 220 us here, and SQLAlchemy's result set-up for a thirteen-column
textual statement more than PostgreSQL's execution of it (about 190 us with the round
trip); and SQLAlchemy's transaction costs two round trips more (psycopg sends BEGIN on its
own, then COMMIT). A statement is prepared on the server at its first use on a
connection, and its row comes back in binary (no text formatting of timestamps on the
server, none parsed here); psycopg returns aware datetimes, JSON as lists and booleans
either way.

Never resend a statement whose connection broke: had it committed before the break,
sending it again would change things twice (a rotation would look like reuse). The caller
closes the connection and fails the request; the next one reconnects.
"""

from __future__ import annotations

import os
import select
import threading

import psycopg

from .. import pg_connect_args
from ..context import current_app
from ..extensions import db

_local = threading.local()


def connection() -> psycopg.Connection:
    """This thread's own autocommit connection to the application's database. A forked
    worker opens its own."""
    url = db.engine.url
    conn, key = getattr(_local, "conn", None), (os.getpid(), url)
    # An idle connection has nothing to read unless the server spoke first (a restart's
    # termination notice, or the end of the stream): replaced then, which is safe since the
    # statement was never sent on it (unlike a resend).
    if conn is None or conn.closed or _local.key != key or _said_something(conn):
        if conn is not None and not conn.closed and _local.key[0] == key[0]:
            conn.close()
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = _local.conn = psycopg.connect(dsn, autocommit=True, **pg_connect_args(current_app.config, url))
        _local.key = key
    return conn


def _said_something(conn: psycopg.Connection) -> bool:
    try:
        fd = conn.fileno()
    except psycopg.Error:  # no socket any more: as good as dead
        return True
    poller = select.poll()  # not select(): it refuses descriptors from 1024 on
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
