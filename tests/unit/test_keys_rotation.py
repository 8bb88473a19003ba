"""Signing keys: JWS round trip, rotation with publish-ahead, pruning, JWKS (RFC 7517, RFC 7638)."""

import base64
import hashlib
import hmac
import json
import logging
import os
import threading
import time

import pytest
from freezegun import freeze_time
from joserfc.jwk import import_key

from idp.crypto.keys import PRIVATE_MEMBERS, InvalidJWT, KeyRing, KeysUnreadable, max_token_lifetime

AHEAD = 24 * 3600
SECRET = "a test secret key of at least thirty-two characters"
MAX_LIFETIME = 3600
T0 = "2024-03-01 12:00:00"


@pytest.fixture
def keys_dir(tmp_path):
    return str(tmp_path / "keys")


@pytest.fixture
def fresh(keys_dir):
    """A ring of its own, for tests that rotate, prune or write into the directory."""
    ring = KeyRing(keys_dir, AHEAD, SECRET)
    ring.ensure()
    return ring


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    """Shared by the read-only tests: RSA key generation is the slow part of this file."""
    ring = KeyRing(str(tmp_path_factory.mktemp("shared") / "keys"), AHEAD, SECRET)
    ring.ensure()
    return ring


def header_of(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, claims: dict, signature: bytes = b"") -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


def states(ring: KeyRing, alg: str = "ES256") -> dict:
    return {k["kid"]: k["state"] for k in ring.list() if k["alg"] == alg}


def test_ensure_creates_one_active_key_per_alg_in_private_files(fresh, keys_dir):
    ring = fresh
    assert sorted((k["alg"], k["state"]) for k in ring.list()) == [("ES256", "active"), ("RS256", "active")]
    assert os.stat(keys_dir).st_mode & 0o777 == 0o700
    files = [f for f in os.listdir(keys_dir) if f.endswith(".json")]
    assert len(files) == 2
    assert all(os.stat(os.path.join(keys_dir, f)).st_mode & 0o777 == 0o600 for f in files)
    assert ring.ensure() == []  # idempotent: app start calls it every time
    assert len(ring.list()) == 2


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_sign_verify_round_trip_with_kid_in_header(ring, alg):
    token = ring.sign({"sub": "u1", "aud": "c1"}, alg)
    assert header_of(token) == {"alg": alg, "kid": ring.active(alg).kid}
    assert ring.verify(token) == {"sub": "u1", "aud": "c1"}


def test_typ_header_only_when_given(ring):
    token = ring.sign({"sub": "u1"}, "ES256", typ="logout+jwt")
    assert header_of(token)["typ"] == "logout+jwt"


def test_kid_is_the_rfc7638_thumbprint(ring):
    for jwk in ring.jwks()["keys"]:
        assert import_key(jwk).thumbprint() == jwk["kid"]


def test_jwks_has_public_members_only(fresh):
    ring = fresh
    ring.rotate("RS256")
    keys = ring.jwks()["keys"]
    assert len(keys) == 3
    for jwk in keys:
        assert not PRIVATE_MEMBERS & set(jwk), jwk
        assert jwk["use"] == "sig" and jwk["alg"] in ("ES256", "RS256") and jwk["kid"]
    assert "'d'" not in repr(ring.active("ES256"))


def test_rotation_publishes_next_key_before_it_signs(keys_dir):
    with freeze_time(T0) as clock:
        ring = KeyRing(keys_dir, AHEAD, SECRET)
        ring.ensure()
        old = ring.active("ES256").kid
        rs_before = ring.active("RS256").kid
        new = ring.rotate("ES256")["kid"]
        assert states(ring) == {old: "active", new: "next"}
        assert new in {k["kid"] for k in ring.jwks()["keys"]}
        assert header_of(ring.sign({}, "ES256"))["kid"] == old

        clock.tick(AHEAD - 1)
        assert header_of(ring.sign({}, "ES256"))["kid"] == old
        old_token = ring.sign({"sub": "u1"}, "ES256")

        clock.tick(1)
        assert header_of(ring.sign({}, "ES256"))["kid"] == new
        assert states(ring) == {old: "retired", new: "active"}
        retired = next(k for k in ring.list() if k["kid"] == old)
        assert retired["retired_at"] == retired["created_at"] + AHEAD
        assert ring.verify(old_token) == {"sub": "u1"}  # still published
        assert ring.active("RS256").kid == rs_before  # other alg untouched


def test_immediate_rotation_signs_at_once_even_within_the_same_second(keys_dir):
    with freeze_time(T0):
        ring = KeyRing(keys_dir, AHEAD, SECRET)
        ring.ensure()
        old = ring.active("ES256").kid
        new = ring.rotate("ES256", immediate=True)["kid"]
        assert ring.active("ES256").kid == new
        assert states(ring) == {old: "retired", new: "active"}


def test_retired_key_stays_published_until_prune_after_max_lifetime(keys_dir):
    with freeze_time(T0) as clock:
        ring = KeyRing(keys_dir, AHEAD, SECRET)
        ring.ensure()
        old = ring.active("ES256").kid
        ring.rotate("ES256", immediate=True)
        ring.rotate("ES256")  # a next key is never pruned
        clock.tick(MAX_LIFETIME - 1)
        assert ring.prune(MAX_LIFETIME) == []
        assert old in {k["kid"] for k in ring.jwks()["keys"]}

        clock.tick(1)
        assert ring.prune(MAX_LIFETIME) == [old]
        assert old not in {k["kid"] for k in ring.jwks()["keys"]}
        assert not os.path.exists(os.path.join(keys_dir, f"{old}.json"))
        assert sorted(states(ring).values()) == ["active", "next"]


def test_a_retired_key_outlives_the_sessions_whose_id_tokens_may_come_back_as_hints():
    """RP-Initiated Logout 1.0 §2: an expired ID token is still a valid id_token_hint while the
    session it came from may last; pruning the key an hour after a rotation broke every such hint."""
    from idp.config import DEFAULTS
    from idp.logout.backchannel import TOKEN_TTL

    config = {**DEFAULTS, "ID_TOKEN_TTL": 3600, "ACCESS_TOKEN_TTL": 600, "SESSION_TTL": 14 * 24 * 3600}
    assert max_token_lifetime(config) == 14 * 24 * 3600
    assert max_token_lifetime({**config, "ID_TOKEN_TTL": 30 * 24 * 3600}) == 30 * 24 * 3600
    # A logout token lives TOKEN_TTL: its key stays even when every other lifetime is shorter.
    assert max_token_lifetime({**config, "ID_TOKEN_TTL": 1, "ACCESS_TOKEN_TTL": 1, "SESSION_TTL": 1}) == TOKEN_TTL


def test_a_key_retired_after_a_live_session_began_is_kept_for_its_hints(keys_dir):
    """A session renewed by a new sign-in keeps its sid past any fixed retention: a relying
    party of it may still hold an ID token the retired key signed, as its id_token_hint."""
    with freeze_time(T0) as clock:
        ring = KeyRing(keys_dir, AHEAD, SECRET)
        ring.ensure()
        session_began = time.time()
        hint = ring.sign({"sub": "s1", "sid": "S"}, "ES256")  # an RP of session S holds this
        old = ring.active("ES256").kid
        clock.tick(10)
        ring.rotate("ES256", immediate=True)  # retires the old key now, after S began
        clock.tick(MAX_LIFETIME)
        assert ring.prune(MAX_LIFETIME, live_since=session_began) == []
        assert ring.prune(MAX_LIFETIME, live_since=lambda: session_began) == []
        assert ring.verify(hint)["sid"] == "S"
        # Session S ended (no live session, or only ones that began after the retirement).
        assert ring.prune(MAX_LIFETIME, live_since=lambda: None) == [old]


def test_second_process_sees_rotation_and_prune_without_restart(keys_dir):
    with freeze_time(T0) as clock:
        web, cli = KeyRing(keys_dir, AHEAD, SECRET), KeyRing(keys_dir, AHEAD, SECRET)
        web.ensure()
        first = web.active("ES256").kid
        assert cli.active("ES256").kid == first
        new = cli.rotate("ES256", immediate=True)["kid"]
        token = cli.sign({"sub": "u1"}, "ES256")
        clock.tick(1)  # the directory is looked at no more than once a second
        assert web.active("ES256").kid == new
        assert web.verify(token) == {"sub": "u1"}

        clock.tick(MAX_LIFETIME)
        assert cli.prune(MAX_LIFETIME) == [first]
        clock.tick(1)
        assert first not in {k["kid"] for k in web.jwks()["keys"]}


def test_workers_starting_together_generate_one_key_per_alg(keys_dir):
    rings = [KeyRing(keys_dir, AHEAD, SECRET) for _ in range(4)]
    threads = [threading.Thread(target=r.ensure) for r in rings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(KeyRing(keys_dir, AHEAD, SECRET).list()) == 2


def test_unreadable_key_file_is_skipped_but_no_key_is_written_beside_it(fresh, keys_dir, caplog):
    path = os.path.join(keys_dir, "garbage.json")
    with open(path, "w") as fh:
        fh.write("{not json")
    ring = KeyRing(keys_dir, AHEAD, SECRET)
    assert len(ring.list()) == 2
    assert "garbage.json" in caplog.text
    with pytest.raises(KeysUnreadable, match="garbage.json"):
        ring.ensure()
    with pytest.raises(KeysUnreadable, match="garbage.json"):
        ring.rotate()


def test_a_damaged_record_of_the_signing_key_keeps_its_copy_in_a_running_process(fresh, keys_dir, caplog):
    """Dropped, the damaged key would leave the JWKS and the key before it sign again (or, at
    a start, a new key sign at once): relying parties would reject every token of one side."""
    with freeze_time() as clock:
        ring = KeyRing(keys_dir, AHEAD, SECRET)
        old = ring.active("ES256").kid
        clock.tick(1)
        ring.rotate()
        clock.tick(AHEAD + 1)
        active = ring.active("ES256").kid
        assert active != old and old in {k["kid"] for k in ring.jwks()["keys"]}
        with open(os.path.join(keys_dir, f"{active}.json"), "w") as fh:  # in place: the directory's mtime stays
            fh.write("{damaged")
        clock.tick(3)  # past the marker's two seconds: the directory is read again
        with caplog.at_level(logging.ERROR, logger="idp.keys"):
            assert ring.active("ES256").kid == active
        assert f"signing key {active}.json is unreadable now; using the copy read before" in caplog.text
        assert active in {k["kid"] for k in ring.jwks()["keys"]}
        with pytest.raises(KeysUnreadable, match=f"{active}.json"):
            KeyRing(keys_dir, AHEAD, SECRET).ensure()  # a process starting now refuses


def test_a_damaged_record_whose_kid_changed_keeps_its_copy_too(fresh, keys_dir):
    """The kid is bound into the seal: a record whose kid field the damage changed no longer
    opens, and must still be found by its file name."""
    with freeze_time() as clock:
        ring = KeyRing(keys_dir, AHEAD, SECRET)
        clock.tick(1)
        ring.rotate(immediate=True)
        active = ring.active("ES256").kid
        path = os.path.join(keys_dir, f"{active}.json")
        with open(path) as fh:
            record = json.load(fh)
        with open(path, "w") as fh:
            json.dump({**record, "kid": ("B" if active[0] != "B" else "C") + active[1:]}, fh)
        clock.tick(3)
        assert ring.active("ES256").kid == active
        assert active in {k["kid"] for k in ring.jwks()["keys"]}


def test_a_key_file_that_cannot_be_read_fails_the_read_not_the_key(fresh, keys_dir, monkeypatch):
    """Too many open files, an I/O error: not a key gone. The copy read before stays, and the
    next check reads again."""
    import builtins

    with freeze_time() as clock:
        ring = KeyRing(keys_dir, AHEAD, SECRET)
        kids = {k["kid"] for k in ring.jwks()["keys"]}
        real_open, failing = builtins.open, {"on": True}

        def emfile(path, *args, **kwargs):
            if failing["on"] and str(path).endswith(".json"):
                raise OSError(24, "Too many open files")
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", emfile)
        os.utime(keys_dir)  # a change to read
        clock.tick(3)
        assert {k["kid"] for k in ring.jwks()["keys"]} == kids
        failing["on"] = False
        clock.tick(1)
        assert {k["kid"] for k in ring.jwks()["keys"]} == kids and ring._unreadable == []
        with pytest.raises(OSError):  # a process starting with no copy cannot start on a part
            failing["on"] = True
            KeyRing(keys_dir, AHEAD, SECRET).jwks()


def test_verify_rejects_unknown_kid(ring, tmp_path):
    other = KeyRing(str(tmp_path / "other"), AHEAD, SECRET)
    other.ensure()
    with pytest.raises(InvalidJWT, match="unknown kid"):
        ring.verify(other.sign({"sub": "u1"}, "ES256"))


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_verify_rejects_tampered_token(ring, alg):
    header, _, sig = ring.sign({"sub": "u1"}, alg).split(".")
    tampered = ".".join([header, b64(json.dumps({"sub": "admin"}).encode()), sig])
    with pytest.raises(InvalidJWT, match="bad signature"):
        ring.verify(tampered)


def test_verify_rejects_alg_none(ring):
    kid = ring.active("ES256").kid
    with pytest.raises(InvalidJWT, match="not allowed"):
        ring.verify(forge({"alg": "none", "kid": kid}, {"sub": "u1"}))


def test_verify_rejects_hs256_keyed_with_the_public_key(ring):
    """The classic confusion: an HMAC over the token keyed with the published key."""
    jwk = next(k for k in ring.jwks()["keys"] if k["alg"] == "RS256")
    secret = json.dumps(jwk).encode()
    unsigned = forge({"alg": "HS256", "kid": jwk["kid"]}, {"sub": "u1"}).rsplit(".", 1)[0]
    sig = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidJWT, match="not allowed"):
        ring.verify(f"{unsigned}.{b64(sig)}")


def test_verify_rejects_alg_not_allowed_or_not_matching_the_key(ring):
    token = ring.sign({"sub": "u1"}, "RS256")
    with pytest.raises(InvalidJWT, match="not allowed"):
        ring.verify(token, algs=("ES256",))
    header, payload, sig = token.split(".")
    swapped = {"alg": "RS256", "kid": ring.active("ES256").kid}
    with pytest.raises(InvalidJWT, match="does not match"):
        ring.verify(".".join([b64(json.dumps(swapped).encode()), payload, sig]))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b", "a.b.c", "....", "e30.e30.", None])
def test_verify_rejects_malformed(ring, garbage):
    with pytest.raises(InvalidJWT):
        ring.verify(garbage)


def test_scheduled_rotation_replaces_each_key_once_it_is_old_enough(keys_dir):
    """rotate_aged (the maintenance job "keys"): the new key is published ahead, as by hand,
    and a second process sharing the directory does not rotate it again."""
    age = 90 * 24 * 3600
    with freeze_time(T0) as clock:
        ring, other = KeyRing(keys_dir, AHEAD, SECRET), KeyRing(keys_dir, AHEAD, SECRET)
        ring.ensure()
        old = {alg: ring.active(alg).kid for alg in ("ES256", "RS256")}
        clock.tick(age - 1)
        assert ring.rotate_aged(age) == []
        clock.tick(1)
        made = ring.rotate_aged(age)
        assert sorted(k["alg"] for k in made) == ["ES256", "RS256"]
        assert all(k["not_before"] == k["created_at"] + AHEAD for k in made)
        assert {alg: ring.active(alg).kid for alg in old} == old  # still signing until published long enough
        clock.tick(1)
        assert other.rotate_aged(age) == [] and ring.rotate_aged(age) == []  # the newest key is new
        clock.tick(AHEAD)
        assert {ring.active(alg).kid for alg in old} == {k["kid"] for k in made}


def test_a_key_whose_write_fails_to_commit_never_signs(fresh):
    """The ring's lock is let go before the storage commits (the storage's lock is taken
    first): a thread signing in between must still sign with a committed key, or a failed
    commit would leave tokens signed by a key never published."""
    from contextlib import contextmanager

    real_locked, before = fresh.storage.locked, fresh.active("ES256").kid
    signed = []

    @contextmanager
    def failing_commit():
        with real_locked():
            yield
            # The ring's lock is free here; the commit comes next, and fails.
            signed.append(fresh.sign({"sub": "x"}, "ES256"))
            raise OSError("the commit failed")

    fresh.storage.locked = failing_commit
    with pytest.raises(OSError):
        fresh.rotate("ES256", immediate=True)
    header = json.loads(base64.urlsafe_b64decode(signed[0].split(".")[0] + "=="))
    assert header["kid"] == before


def test_a_crashed_writers_temporary_file_does_not_block_the_key_for_good(fresh, keys_dir):
    kid = fresh.active("ES256").kid
    record = json.load(open(os.path.join(keys_dir, f"{kid}.json")))
    with open(os.path.join(keys_dir, f".tmp-{kid}"), "w") as fh:
        fh.write("half a record")
    fresh.storage.write(record)  # as `idp keys seal` rewrites a key
    assert not os.path.exists(os.path.join(keys_dir, f".tmp-{kid}"))
    assert json.load(open(os.path.join(keys_dir, f"{kid}.json"))) == record


def test_a_stalled_storage_check_holds_one_thread_not_every_signature(fresh):
    """The storage's marker is read once a second in a request: with the database stalled
    (not refusing), a second thread due to check joined the first one's wait, and within
    seconds every JWKS and signature of the process did. One thread checks at a time; the
    others go on with the keys read before."""
    fresh.jwks()
    entered, release, callers = threading.Event(), threading.Event(), []
    real_marker = fresh.storage.marker

    def stalled():
        callers.append(threading.get_ident())
        entered.set()
        release.wait(5)
        return real_marker()

    fresh.storage.marker = stalled
    fresh._checked_at = 0  # due
    stuck = threading.Thread(target=fresh.jwks)
    stuck.start()
    try:
        assert entered.wait(5)
        fresh._checked_at = 0  # a second later: due again, for the next caller
        assert fresh.jwks()["keys"]
        assert fresh.verify(fresh.sign({"sub": "s"}, "ES256"))["sub"] == "s"
        assert callers == [stuck.ident]  # this thread never waited on the stalled storage
    finally:
        release.set()
        stuck.join(5)
    fresh._checked_at = 0
    fresh.jwks()  # the next check is made again once the first is over
    assert fresh._checking is False
