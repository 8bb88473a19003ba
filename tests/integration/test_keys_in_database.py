"""Signing keys in the database (KEYS_STORE=database, idp.crypto.key_storage.DatabaseStorage).

Processes on several hosts share nothing but the database and Redis: the keys they sign
with and publish must come from the database, sealed there as in a key file, generated once
however many processes start together, and seen by every process after a rotation.
Each test runs on SQLite and on PostgreSQL (the ``app`` fixture's migrated databases).
"""

import json
import logging
import os
import shutil
import threading

import pytest
from freezegun import freeze_time
from sqlalchemy import create_engine, delete, select

from idp import create_app, create_server_app
from idp.config import ConfigError
from idp.crypto.key_storage import DatabaseStorage
from idp.crypto.keys import PRIVATE_MEMBERS, KeyRing, KeysUnreadable
from idp.extensions import db
from idp.models import SigningKey, SigningKeyState

AHEAD = 24 * 3600
SECRET = "a test secret key of at least thirty-two characters"
OTHER = "another secret key, also thirty-two characters long"
T0 = "2026-03-01 12:00:00"


@pytest.fixture
def storage(app):
    """The app's database, its signing_key table empty (the app itself keeps its keys in KEYS_DIR)."""
    db.session.execute(delete(SigningKey))
    db.session.commit()
    return DatabaseStorage(db.engine)


def ring(storage, secret=SECRET) -> KeyRing:
    return KeyRing(storage, AHEAD, secret)


def rows() -> list[SigningKey]:
    db.session.expire_all()
    return list(db.session.execute(select(SigningKey).order_by(SigningKey.alg)).scalars())


def states(r: KeyRing) -> list[tuple[str, str, str]]:
    return [(k["kid"], k["alg"], k["state"]) for k in r.list()]


def test_ensure_stores_one_sealed_key_per_alg(storage):
    r = ring(storage)
    created = r.ensure()
    assert sorted(c["alg"] for c in created) == ["ES256", "RS256"]
    stored = rows()
    assert [(s.kid, s.alg) for s in stored] == [(c["kid"], c["alg"]) for c in sorted(created, key=lambda c: c["alg"])]
    private = {v for key in r._snapshot() for m, v in key.jwk.as_dict(private=True).items() if m in PRIVATE_MEMBERS}
    assert private and not any(v in s.sealed for s in stored for v in private)
    assert r.ensure() == []  # nothing more while each alg has a key that signs


def test_a_second_process_signs_and_verifies_with_the_same_keys(storage):
    a = ring(storage)
    a.ensure()
    b = ring(DatabaseStorage(db.engine))
    assert b.ensure() == []
    assert a.jwks() == b.jwks()
    for alg in ("ES256", "RS256"):
        assert b.verify(a.sign({"sub": "s1"}, alg)) == {"sub": "s1"}


def test_another_secret_cannot_open_them_and_refuses_to_start(storage):
    ring(storage).ensure()
    before = [(s.kid, s.sealed) for s in rows()]
    with pytest.raises(KeysUnreadable, match=r"2 signing key\(s\) in the database .* do not open"):
        ring(storage, OTHER).ensure()
    assert [(s.kid, s.sealed) for s in rows()] == before  # nothing replaced


def test_a_rotation_in_one_process_shows_in_another_within_a_second(storage):
    with freeze_time(T0) as clock:
        a, b = ring(storage), ring(DatabaseStorage(db.engine))
        a.ensure()
        old = b.active("ES256").kid
        new = a.rotate("ES256", immediate=True)["kid"]
        assert b.active("ES256").kid == old  # its copy, checked at most once a second
        clock.tick(1.5)
        assert b.active("ES256").kid == new
        assert b.verify(a.sign({"sub": "s1"})) == {"sub": "s1"}
        assert (old, "ES256", "retired") in states(b)


def test_prune_deletes_the_row_everywhere(storage):
    with freeze_time(T0) as clock:
        a, b = ring(storage), ring(DatabaseStorage(db.engine))
        a.ensure()
        old = a.active("ES256").kid
        a.rotate("ES256", immediate=True)
        clock.tick(10)
        assert a.prune(max_token_lifetime=5) == [old]
        assert old not in {s.kid for s in rows()}
        clock.tick(1.5)
        assert old not in {k["kid"] for k in b.jwks()["keys"]}


def test_processes_starting_together_generate_one_key_per_alg(storage):
    rings = [ring(DatabaseStorage(db.engine)) for _ in range(4)]
    barrier, errors = threading.Barrier(len(rings)), []

    def start(r):
        try:
            barrier.wait()
            r.ensure()
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(r,)) for r in rings]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(s.alg for s in rows()) == ["ES256", "RS256"]
    assert len({json.dumps(r.jwks(), sort_keys=True) for r in rings}) == 1


def test_the_lock_row_is_put_back_when_missing(storage):
    r = ring(storage)
    db.session.execute(delete(SigningKeyState))
    db.session.commit()
    r.ensure()
    assert len(rows()) == 2
    assert db.session.execute(select(SigningKeyState.version)).scalar_one() >= 1


def test_import_from_a_key_directory_keeps_kids_and_states(storage, tmp_path):
    keys_dir = str(tmp_path / "keys")
    source = KeyRing(keys_dir, AHEAD, SECRET)
    with freeze_time(T0):
        source.ensure()
        source.rotate("ES256")  # published, not signing yet: the import keeps it "next"
        target = ring(storage)
        assert sorted(target.import_from(source)) == sorted(k["kid"] for k in source.list())
        assert states(target) == states(source)
        assert target.jwks() == source.jwks()
        assert target.import_from(source) == []  # already there


def test_import_refuses_a_directory_sealed_under_another_secret(storage, tmp_path):
    keys_dir = str(tmp_path / "keys")
    KeyRing(keys_dir, AHEAD, OTHER).ensure()
    with pytest.raises(KeysUnreadable):
        ring(storage).import_from(KeyRing(keys_dir, AHEAD, SECRET))
    assert rows() == []


def test_an_unreadable_database_leaves_the_copy_read_before_in_use(sqlite_template, tmp_path, caplog):
    """The database in an outage: signing and the JWKS go on with the keys already read.
    (Made here by moving a SQLite file away; an unreachable PostgreSQL raises the same
    SQLAlchemyError family, see test_ops_unavailable.)"""
    path = tmp_path / "keys.sqlite3"
    shutil.copy(sqlite_template, path)
    engine = create_engine(f"sqlite:///{path}")
    try:
        with freeze_time(T0) as clock:
            r = ring(DatabaseStorage(engine))
            r.ensure()
            kid = r.active("ES256").kid
            engine.dispose()
            os.replace(path, tmp_path / "moved-away.sqlite3")  # SQLite makes an empty file in its place
            clock.tick(1.5)
            with caplog.at_level(logging.WARNING, logger="idp.keys"):
                assert r.active("ES256").kid == kid
                assert r.verify(r.sign({"sub": "s1"})) == {"sub": "s1"}
            assert "using the copy read before" in caplog.text
            with pytest.raises(Exception, match="no such table"):
                ring(DatabaseStorage(engine)).active("ES256")  # nothing read before: nothing to sign with
    finally:
        engine.dispose()


def test_only_a_serving_process_generates_the_first_keys(app, tmp_path):
    db.session.execute(delete(SigningKey))
    db.session.commit()
    config = {k: app.config[k] for k in ("ISSUER", "DATABASE_URL", "REDIS_URL", "STORE_NAMESPACE", "TESTING")
              if k in app.config}
    config.update(KEYS_STORE="database", KEYS_DIR=str(tmp_path / "unused"), MAINTENANCE=False)
    cli_app = create_app(config)  # `idp db upgrade`, `idp keys import`: no keys made
    assert rows() == []
    served = create_server_app(config)
    assert sorted(s.alg for s in rows()) == ["ES256", "RS256"]
    assert served.extensions["idp.keyring"].jwks() == cli_app.extensions["idp.keyring"].jwks()
    assert not os.path.exists(tmp_path / "unused")
    for a in (cli_app, served):
        with a.app_context():
            db.engine.dispose()


def test_a_worker_starts_while_the_database_is_unavailable(app, tmp_path, caplog):
    """A worker respawned during an outage must come up (granian stops every worker when one
    keeps dying at start): the keys are read at first use, a 503 until the database answers."""
    config = {k: app.config[k] for k in ("ISSUER", "REDIS_URL", "STORE_NAMESPACE", "TESTING") if k in app.config}
    config.update(KEYS_STORE="database", MAINTENANCE=False,
                  DATABASE_URL=f"sqlite:///{tmp_path}/not/there/idp.sqlite3")  # cannot be opened: unavailable
    with caplog.at_level(logging.WARNING, logger="idp.keys"):
        served = create_server_app(config)
    assert "signing keys not read at start, the database is unavailable" in caplog.text
    resp = served.test_client().get("/jwks", headers={"Origin": "https://spa.example.com"})
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"  # a browser app reads why, as every answer


def test_keys_store_must_be_directory_or_database(tmp_path):
    with pytest.raises(ConfigError, match="KEYS_STORE must be directory or database"):
        create_app({"KEYS_STORE": "vault", "KEYS_DIR": str(tmp_path / "k"),
                    "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"})


def test_prune_with_nothing_to_prune_writes_nothing(storage):
    r = ring(storage)
    r.ensure()
    version = storage.marker()
    assert r.prune(max_token_lifetime=3600) == []
    assert storage.marker() == version  # no process reads the keys again for nothing


@pytest.mark.parametrize("app", ["sqlite"], indirect=True)  # PostgreSQL writers lock rows, not the database
def test_a_rotation_waiting_for_sqlites_write_lock_does_not_stop_signing(app):
    """A token request holds SQLite's write lock (its grant inserted) and then signs an ID
    token; a rotation meanwhile waits for that write lock. The rotation must wait without
    holding the ring's lock, or the request waits for it and it for the request (until
    SQLite's busy timeout fails the rotation)."""
    r = ring(DatabaseStorage(db.engine))
    r.ensure()
    db.session.execute(delete(SigningKey).where(SigningKey.kid == "none"))  # this request's write lock
    waiting, outcome = threading.Event(), {}
    locked = r.storage.locked

    def announce_then_lock():
        waiting.set()
        return locked()

    r.storage.locked = announce_then_lock

    def rotate():
        try:
            outcome["rotated"] = r.rotate("ES256")["kid"]
        except Exception as exc:  # noqa: BLE001  (reported below)
            outcome["error"] = type(exc).__name__

    rotation = threading.Thread(target=rotate)
    rotation.start()
    assert waiting.wait(30)
    r._checked_at = None
    assert r.verify(r.sign({"sub": "s1"})) == {"sub": "s1"}
    db.session.commit()
    rotation.join(30)
    assert "error" not in outcome and outcome.get("rotated")
