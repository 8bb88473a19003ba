"""Signing keys at rest (idp.crypto.keys): the private JWK sealed under SECRET_KEY.

A copy of the key directory (a backup, a volume snapshot) must sign nothing without the
secret; a key sealed under another secret is never silently replaced; the files of an
earlier release, with the JWK in clear, keep working and are sealed at the next start.
"""

import json
import logging
import os

import pytest
from freezegun import freeze_time

from idp.crypto.keys import InvalidJWT, KeyRing, KeysUnreadable

AHEAD = 24 * 3600
SECRET = "a test secret key of at least thirty-two characters"
OTHER = "another secret key, also thirty-two characters long"


@pytest.fixture(scope="module")
def sealed_dir(tmp_path_factory):
    """A directory with one ES256 and one RS256 key, sealed under SECRET (made once: RSA is slow)."""
    keys_dir = str(tmp_path_factory.mktemp("at-rest") / "keys")
    KeyRing(keys_dir, AHEAD, SECRET).ensure()
    return keys_dir


def _docs(keys_dir) -> dict[str, dict]:
    out = {}
    for name in sorted(os.listdir(keys_dir)):
        if name.endswith(".json"):
            with open(os.path.join(keys_dir, name), encoding="utf-8") as fh:
                out[name] = json.load(fh)
    return out


def _copy(src, dst) -> str:
    os.makedirs(dst, mode=0o700)
    for name, doc in _docs(src).items():
        path = os.path.join(dst, name)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
    return str(dst)


def test_no_private_member_is_stored_in_clear(sealed_dir):
    ring = KeyRing(sealed_dir, AHEAD, SECRET)
    private = {k: v for key in ring._snapshot() for k, v in key.jwk.as_dict(private=True).items()
               if k in ("d", "p", "q", "dp", "dq", "qi")}
    assert {"d", "p", "q"} <= set(private)
    for name, doc in _docs(sealed_dir).items():
        assert "jwk" not in doc and set(doc) == {"kid", "alg", "created_at", "not_before", "serial", "sealed"}, name
        text = json.dumps(doc)
        assert not any(value in text for value in private.values()), name


def test_the_same_secret_opens_the_keys_in_another_process(sealed_dir):
    signer, verifier = KeyRing(sealed_dir, AHEAD, SECRET), KeyRing(sealed_dir, AHEAD, SECRET)
    for alg in ("ES256", "RS256"):
        assert verifier.verify(signer.sign({"sub": "s1"}, alg)) == {"sub": "s1"}
    assert verifier.ensure() == []


def test_another_secret_refuses_to_start_and_writes_nothing(sealed_dir, tmp_path):
    keys_dir = _copy(sealed_dir, tmp_path / "keys")
    before = _docs(keys_dir)
    with pytest.raises(KeysUnreadable, match=r"2 signing key\(s\) in .* do not open with this SECRET_KEY"):
        KeyRing(keys_dir, AHEAD, OTHER).ensure()
    assert _docs(keys_dir) == before  # no new key beside them, none rewritten


def test_the_refusal_names_the_keys_once(sealed_dir, tmp_path, caplog):
    """Refusing to start says which keys do not open in its one message, with no log line
    per key before it (the CLI printed each name twice)."""
    keys_dir = _copy(sealed_dir, tmp_path / "keys")
    with pytest.raises(KeysUnreadable):
        KeyRing(keys_dir, AHEAD, OTHER).ensure()
    assert not [r for r in caplog.records if "does not open" in r.getMessage()]


def test_a_running_ring_logs_a_key_that_appears_and_does_not_open(sealed_dir, tmp_path, caplog):
    """Past the start, nobody raises: a key written under another secret (a server with
    another SECRET_KEY rotating into the same directory) is logged when it is read."""
    keys_dir = _copy(sealed_dir, tmp_path / "keys")
    ring = KeyRing(keys_dir, AHEAD, SECRET)
    assert ring.ensure() == []
    foreign = tmp_path / "foreign"
    KeyRing(str(foreign), AHEAD, OTHER).rotate("ES256")
    for name, doc in _docs(foreign).items():
        with open(os.open(os.path.join(keys_dir, name), os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:
            json.dump(doc, fh)
    ring._checked_at = None  # due for the check now rather than in a second
    ring._snapshot()
    assert [r for r in caplog.records if r.levelname == "ERROR" and "does not open" in r.getMessage()]


def test_a_sealed_key_moved_under_another_kid_does_not_open(sealed_dir, tmp_path):
    """The kid is the AEAD's associated data: swapping sealed blobs between files fails."""
    keys_dir = _copy(sealed_dir, tmp_path / "keys")
    (a, doc_a), (b, doc_b) = _docs(keys_dir).items()
    doc_a["sealed"], doc_b["sealed"] = doc_b["sealed"], doc_a["sealed"]
    for name, doc in ((a, doc_a), (b, doc_b)):
        with open(os.path.join(keys_dir, name), "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
    with pytest.raises(KeysUnreadable):
        KeyRing(keys_dir, AHEAD, SECRET).ensure()


def test_a_record_relabelled_with_another_alg_reads_as_damaged(sealed_dir, tmp_path):
    """Only the kid is sealed with the key: an ES256 key labelled RS256 in the storage would
    be chosen to sign RS256 tokens and fail each one (a 500) instead of refusing to start."""
    keys_dir = _copy(sealed_dir, tmp_path / "keys")
    for name, doc in _docs(keys_dir).items():
        if doc["alg"] == "ES256":
            with open(os.path.join(keys_dir, name), "w", encoding="utf-8") as fh:
                json.dump({**doc, "alg": "RS256", "serial": doc["serial"] + 100}, fh)
    with pytest.raises(KeysUnreadable, match="no signing key this release can read"):
        KeyRing(keys_dir, AHEAD, SECRET).ensure()


def test_a_key_in_clear_from_an_earlier_release_is_read_and_sealed_on_demand(sealed_dir, tmp_path):
    """Starting (ensure) never rewrites it: a process of the earlier release, still running
    during a rolling upgrade, could not read a sealed file. `idp keys seal` does, later."""
    keys_dir = _copy(sealed_dir, tmp_path / "keys")
    kids = {k.kid: k for k in KeyRing(keys_dir, AHEAD, SECRET)._snapshot()}
    for name, doc in _docs(keys_dir).items():  # rewrite as the earlier release stored them
        clear = dict(doc, jwk=kids[doc["kid"]].jwk.as_dict(private=True))
        del clear["sealed"]
        with open(os.path.join(keys_dir, name), "w", encoding="utf-8") as fh:
            json.dump(clear, fh)
    before = _docs(keys_dir)

    ring = KeyRing(keys_dir, AHEAD, SECRET, accept_clear=True)  # KEYS_ACCEPT_CLEAR, for the upgrade
    token = ring.sign({"sub": "s1"}, "RS256")  # read as it is
    assert ring.ensure() == [] and _docs(keys_dir) == before  # a start changes nothing

    assert sorted(ring.seal()) == sorted(kids)
    docs = _docs(keys_dir)
    assert all("sealed" in d and "jwk" not in d for d in docs.values())
    assert sorted(d["kid"] for d in docs.values()) == sorted(kids)
    assert KeyRing(keys_dir, AHEAD, SECRET).verify(token) == {"sub": "s1"}
    assert all(os.stat(os.path.join(keys_dir, n)).st_mode & 0o777 == 0o600 for n in docs)
    assert ring.seal() == []


def test_a_key_in_clear_is_refused_at_a_start_and_never_used_unless_accepted(sealed_dir, tmp_path, caplog):
    """Anyone who can write to the key storage, SECRET_KEY or not, could add a key in clear
    (with a later not_before and a higher serial, it would be the one that signs): the JWKS
    would publish it and every relying party accept what its holder signs."""
    from joserfc import jwt
    from joserfc.jwk import ECKey

    keys_dir = _copy(sealed_dir, tmp_path / "keys")
    planted = ECKey.generate_key("P-256", private=True)
    forged = jwt.encode({"alg": "ES256", "kid": planted.thumbprint()}, {"iss": "x", "sub": "victim"}, planted)
    with freeze_time() as clock:
        ring = KeyRing(keys_dir, AHEAD, SECRET)
        sealed = {k["kid"] for k in ring.jwks()["keys"]}
        with open(os.path.join(keys_dir, f"{planted.thumbprint()}.json"), "w", encoding="utf-8") as fh:
            json.dump({"kid": planted.thumbprint(), "alg": "ES256", "created_at": 1, "not_before": 1,
                       "serial": 10**9, "jwk": planted.as_dict(private=True)}, fh)
        clock.tick(3)  # past the marker's two seconds: the directory is read again
        with caplog.at_level(logging.ERROR, logger="idp.keys"):
            assert {k["kid"] for k in ring.jwks()["keys"]} == sealed  # a running process: not used, logged
    assert "stored in clear" in caplog.text
    with pytest.raises(InvalidJWT):
        ring.verify(forged)
    with pytest.raises(KeysUnreadable, match="1 signing key.* stored in clear"):
        KeyRing(keys_dir, AHEAD, SECRET).ensure()  # a start refuses
    assert planted.thumbprint() in {k["kid"] for k in KeyRing(keys_dir, AHEAD, SECRET, accept_clear=True).jwks()["keys"]}


def test_a_reload_opens_only_the_records_that_changed(sealed_dir, tmp_path):
    """Another process's rotation makes every process read the keys again: the keys it had
    already opened are kept (an RSA import costs ~50 ms), the new one is opened."""
    keys_dir = _copy(sealed_dir, tmp_path / "keys")
    reader, writer = KeyRing(keys_dir, AHEAD, SECRET), KeyRing(keys_dir, AHEAD, SECRET)
    before = {k.kid: k.jwk for k in reader._snapshot()}
    new = writer.rotate("ES256")["kid"]
    reader._load()
    after = {k.kid: k.jwk for k in reader._snapshot()}
    assert set(after) == {*before, new}
    assert all(after[kid] is jwk for kid, jwk in before.items())


def test_a_record_altered_after_it_was_read_is_opened_again_and_refused(sealed_dir, tmp_path):
    keys_dir = _copy(sealed_dir, tmp_path / "keys")
    ring = KeyRing(keys_dir, AHEAD, SECRET)
    ring.ensure()
    name, doc = next(iter(_docs(keys_dir).items()))
    other = KeyRing(str(tmp_path / "other"), AHEAD, OTHER)
    other.ensure()
    foreign = next(d for d in _docs(str(tmp_path / "other")).values() if d["alg"] == doc["alg"])
    with open(os.path.join(keys_dir, name), "w", encoding="utf-8") as fh:  # same kid, another secret's blob
        json.dump({**doc, "sealed": foreign["sealed"]}, fh)
    ring._load()
    # This process goes on with the copy it read before (its own key, never the altered
    # record's content); a process starting now cannot open the record; neither writes.
    kept = next(k for k in ring._snapshot() if k.kid == doc["kid"])
    assert kept.jwk.thumbprint() == doc["kid"]
    starting = KeyRing(keys_dir, AHEAD, SECRET)
    assert doc["kid"] not in {k.kid for k in starting._snapshot()}
    for r in (ring, starting):
        with pytest.raises(KeysUnreadable):
            r.ensure()


def test_a_stalled_storage_check_holds_up_no_signature(sealed_dir):
    """The check for changed keys (a database query with KEYS_STORE=database) runs outside the
    ring's lock: while one thread waits on it, the others sign with the copy read before."""
    import threading

    from idp.crypto.key_storage import DirectoryStorage

    entered, release = threading.Event(), threading.Event()

    class Stalled(DirectoryStorage):
        stalled = False

        def marker(self):
            if self.stalled:
                entered.set()
                release.wait(15)
            return super().marker()

    storage = Stalled(sealed_dir)
    ring = KeyRing(storage, AHEAD, SECRET)
    ring.jwks()  # read once
    storage.stalled, ring._checked_at = True, 0  # the next check is due, and its query stalls
    checker = threading.Thread(target=ring.jwks)
    checker.start()
    assert entered.wait(15)
    signed = {}
    other = threading.Thread(target=lambda: signed.update(token=ring.sign({"sub": "x"}, "ES256")))
    other.start()
    other.join(15)
    release.set()
    checker.join(15)
    assert signed.get("token", "").count(".") == 2
