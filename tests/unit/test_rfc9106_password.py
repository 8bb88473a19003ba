"""argon2id passwords (RFC 9106): argon2-cffi hashes, libsodium or argon2-cffi verifies,
whichever is faster here (idp.login.password)."""

import logging
import threading

import pytest
from argon2 import PasswordHasher, Type
from argon2.low_level import hash_secret
from flask import Flask

from idp.config import ConfigError, load
from idp.login import password

COST = {"ARGON2_MEMORY_KIB": 8 * 1024, "ARGON2_TIME_COST": 1, "ARGON2_PARALLELISM": 1}


@pytest.fixture(params=["libsodium", "argon2-cffi", "auto"])
def ctx(request):
    """Each test runs once with each verifier, and once with the one chosen by timing."""
    app = Flask(__name__)
    app.config.update(COST, ARGON2_VERIFIER=request.param)
    with app.app_context():
        yield app


def test_a_new_hash_verifies_and_carries_the_configured_cost(ctx):
    stored = password.hash_password("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert password.verify_password(stored, "correct horse battery staple")
    assert not password.verify_password(stored, "correct horse battery stapler")
    assert not password.needs_rehash(stored)


@pytest.mark.parametrize("lanes", [2, 4])
def test_hashes_with_several_lanes_verify(ctx, lanes):
    """libsodium computes only one lane when hashing, but verifies any lane count."""
    stored = PasswordHasher(memory_cost=8 * 1024, time_cost=1, parallelism=lanes, type=Type.ID).hash("pw é")
    assert password.verify_password(stored, "pw é")
    assert not password.verify_password(stored, "pw e")
    assert password.needs_rehash(stored)


def test_weaker_stored_cost_asks_for_a_rehash(ctx):
    weak = PasswordHasher(memory_cost=1024, time_cost=1, parallelism=1, type=Type.ID).hash("pw")
    assert password.verify_password(weak, "pw") and password.needs_rehash(weak)


def test_an_argon2i_hash_verifies_and_is_rehashed_to_argon2id(ctx):
    """As argon2-cffi did: a hash imported from elsewhere still signs in, then is upgraded."""
    legacy = PasswordHasher(memory_cost=8 * 1024, time_cost=1, parallelism=1, type=Type.I).hash("pw")
    assert password.verify_password(legacy, "pw") and not password.verify_password(legacy, "pW")
    assert password.needs_rehash(legacy)


def _hash(**params) -> str:
    base = {"secret": b"pw", "salt": b"sixteen byte sal", "time_cost": 1, "memory_cost": 8 * 1024,
            "parallelism": 1, "hash_len": 32, "type": Type.ID}
    return hash_secret(**{**base, **params}).decode()


ODD = {  # hashes argon2-cffi verifies and libsodium refuses or cannot read
    "argon2d": lambda: _hash(type=Type.D),
    "version 16": lambda: _hash(version=16),
    "version 16 without its v= field": lambda: _hash(version=16).replace("$v=16", ""),
    "a 12-byte tag": lambda: _hash(hash_len=12),
    "a 64-byte tag, 149 characters": lambda: _hash(hash_len=64),
}


@pytest.mark.parametrize("kind", ODD)
def test_both_verifiers_answer_alike_for_hashes_libsodium_does_not_read(ctx, kind):
    """Else an imported account would sign in on one worker and not on another (or be a 500:
    PyNaCl raises ValueError on a string over 127 bytes)."""
    stored = ODD[kind]()
    assert password.verify_password(stored, "pw")
    assert not password.verify_password(stored, "pW")


@pytest.mark.parametrize("stored", [None, "", "not a hash", "$argon2id$v=19$m=8192,t=1,p=1$AAAA$BBBB",
                                    "$argon2id$v=19$m=8192,t=1,p=1$é$é"])
def test_no_hash_or_a_broken_one_never_verifies(ctx, stored):
    assert password.verify_password(stored, "pw") is False


def test_unknown_account_verifies_a_dummy_of_the_same_cost(ctx, monkeypatch):
    seen = []
    real = password._verify
    monkeypatch.setattr(password, "_verify", lambda encoded, pw: seen.append(encoded) or real(encoded, pw))
    assert password.verify_password(None, "dummy password for unknown accounts") is False
    assert len(seen) == 1 and seen[0].startswith(b"$argon2id$v=19$m=8192,t=1,p=1$")


@pytest.fixture
def fresh_choice():
    password._fastest.cache_clear()
    yield
    password._fastest.cache_clear()


def test_auto_keeps_the_verifier_that_costs_less_cpu(monkeypatch, caplog, fresh_choice):
    """Timed on the dummy hash with the process's CPU clock: work in another thread counts (as
    argon2-cffi's lanes do when p > 1), and waiting for the CPU would not."""
    calls = []

    def once(encoded, pw):
        calls.append("once")
        return password._argon2_cffi(encoded, pw)

    def twice(encoded, pw):  # all its work in a thread of its own, as argon2-cffi's lanes
        calls.append("twice")
        # Four hashes, not two: the process clock also counts whatever other threads of this
        # test process (an earlier test's scheduler, say) do meanwhile; the margin is wide.
        lane = threading.Thread(target=lambda: [password._argon2_cffi(encoded, pw) for _ in range(4)])
        lane.start()
        lane.join()
        return True

    for verifiers in ({"twice": twice, "once": once}, {"once": once, "twice": twice}):
        monkeypatch.setattr(password, "VERIFIERS", verifiers)
        password._fastest.cache_clear()
        app = Flask(__name__)
        app.config.update(COST, ARGON2_VERIFIER="auto")
        with app.app_context(), caplog.at_level(logging.INFO, logger=password.__name__):
            assert password.verifier() is once
            assert calls.count("once") == calls.count("twice") == 4  # a warm-up and three timed
            calls.clear()
            password.prepare()  # chosen once per process and cost
            assert calls == []
    assert "password verifier: once (" in caplog.text


def test_a_configured_verifier_is_used_without_timing(monkeypatch, fresh_choice):
    monkeypatch.setattr(password, "_cpu", lambda *a: pytest.fail("timed a configured verifier"))
    app = Flask(__name__)
    app.config.update(COST, ARGON2_VERIFIER="libsodium")
    with app.app_context():
        password.prepare()
        assert password.verifier() is password.VERIFIERS["libsodium"]


def test_an_unknown_verifier_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="ARGON2_VERIFIER must be auto, libsodium or argon2-cffi"):
        load(str(tmp_path), {"ARGON2_VERIFIER": "bcrypt"})
