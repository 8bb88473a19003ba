"""Where the signing keys are kept: a directory (KEYS_STORE=directory, the default) or the
database (KEYS_STORE=database).

Both keep one record per key, the same in either place: ``kid``, ``alg``, ``created_at``,
``not_before``, ``serial`` and the private JWK ``sealed`` under SECRET_KEY (or, in a file of an
earlier release, ``jwk`` in clear). The key ring (idp.crypto.keys) seals and opens them and
decides every state; a storage only keeps records, gives a marker that changes whenever
they may have, and serialises writers across processes.

- **directory**: one ``<kid>.json`` per key (0600, directory 0700), written to a temporary
  file and renamed, so readers never see half a key; writers take an flock on ``.lock``; the
  marker is the directory's and its files' mtimes (and sizes). Processes on several hosts need the directory on a
  shared volume.
- **database**: table ``signing_key``, in the database every process already shares, as Ory
  Hydra keeps its JWKs: processes on any number of hosts need nothing more. A writer's
  transaction first increments the one row of ``signing_key_state``: the row lock
  serialises writers (on SQLite the write lock does), and its ``version`` is the marker.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from contextlib import contextmanager, nullcontext, suppress

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

log = logging.getLogger("idp.keys")

FIELDS = ("kid", "alg", "created_at", "not_before", "serial")


class DirectoryStorage:
    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.where = self.path

    def marker(self) -> int | None:
        """The directory's mtime with each key file's size and mtime: a file rewritten in
        place (a backup copied over it) leaves the directory's mtime as it was. None (read
        again at the next check) while the directory is missing or anything in it changed in
        the last two seconds: a coarse mtime could hide a second change within the same tick."""
        try:
            latest = os.stat(self.path).st_mtime_ns
            files = []
            with os.scandir(self.path) as entries:
                for entry in entries:
                    if entry.name.endswith(".json"):
                        st = entry.stat()
                        files.append((entry.name, st.st_size, st.st_mtime_ns))
                        latest = max(latest, st.st_mtime_ns)
        except OSError:
            return None
        return None if latest / 1e9 > time.time() - 2 else hash((latest, tuple(sorted(files))))

    def records(self) -> list[tuple[str, dict | None]]:
        """(file name, record) per key file; the record is None when the file holds no record
        (logged by name and exception type only: never key material). A file that cannot be
        read at all (too many open files, an I/O error, no permission) fails the whole read,
        as a database out of reach does: the key ring goes on with the copy read before and
        reads again at the next check, rather than take a set without that key for the keys."""
        names = []
        with suppress(FileNotFoundError, NotADirectoryError):
            names = sorted(n for n in os.listdir(self.path) if n.endswith(".json"))
        out = []
        for name in names:
            path = os.path.join(self.path, name)
            try:
                with open(path, encoding="utf-8") as fh:
                    record = json.load(fh)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
                if os.stat(path).st_mode & 0o077:
                    log.warning("key file %s is readable by group or others; chmod 600 it", name)
            except FileNotFoundError:
                continue  # pruned by another process while we listed
            except ValueError as exc:  # not JSON, not UTF-8, not an object: the file's content
                log.error("ignoring unreadable key file %s: %s", name, type(exc).__name__)
                record = None
            out.append((name, record))
        return out

    def write(self, record: dict) -> None:
        kid = record["kid"]
        tmp = os.path.join(self.path, f".tmp-{kid}")
        # Written under locked(): a temporary file already there is a crashed writer's (sealed
        # data, nothing to keep), which O_EXCL would otherwise trip over for this kid for good.
        with suppress(FileNotFoundError):
            os.remove(tmp)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, os.path.join(self.path, f"{kid}.json"))

    def delete(self, kid: str) -> None:
        with suppress(FileNotFoundError):
            os.remove(os.path.join(self.path, f"{kid}.json"))

    @contextmanager
    def locked(self):
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.path, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class DatabaseStorage:
    """The tables of idp.models.signing_key, through ``engine`` (SQLAlchemy Core, on a
    connection of its own: never the request's session and transaction)."""

    where = "the database (table signing_key)"

    def __init__(self, engine):
        from ..models.signing_key import SigningKey, SigningKeyState

        self.engine = engine
        self._keys, self._state = SigningKey.__table__, SigningKeyState.__table__
        self._local = threading.local()  # the writer's connection, inside locked()

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        return nullcontext(conn) if conn is not None else self.engine.connect()

    def marker(self) -> int | None:
        with self._connection() as conn:
            return conn.execute(select(self._state.c.version).where(self._state.c.id == 1)).scalar()

    def records(self) -> list[tuple[str, dict | None]]:
        columns = [self._keys.c[f] for f in FIELDS] + [self._keys.c.sealed]
        with self._connection() as conn:
            rows = conn.execute(select(*columns).order_by(self._keys.c.kid)).all()
        return [(row.kid, dict(row._mapping)) for row in rows]

    def write(self, record: dict) -> None:
        values = {f: record[f] for f in FIELDS} | {"sealed": record["sealed"]}
        conn = self._local.conn  # only ever written under locked()
        done = conn.execute(update(self._keys).where(self._keys.c.kid == record["kid"]).values(values)).rowcount
        if not done:
            conn.execute(insert(self._keys).values(values))

    def delete(self, kid: str) -> None:
        self._local.conn.execute(self._keys.delete().where(self._keys.c.kid == kid))

    @contextmanager
    def locked(self):
        """One transaction: bump the version (the lock), then the caller's reads and writes."""
        with self.engine.begin() as conn:
            bump = update(self._state).where(self._state.c.id == 1).values(version=self._state.c.version + 1)
            if not conn.execute(bump).rowcount:  # the row is gone (a truncated table): put it back
                try:
                    with conn.begin_nested():
                        conn.execute(insert(self._state).values(id=1, version=1))
                except IntegrityError:  # another writer put it back first: wait for its lock
                    conn.execute(bump)
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None
