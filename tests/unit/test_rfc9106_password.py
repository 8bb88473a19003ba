"""argon2id passwords (RFC 9106): argon2-cffi hashes, libsodium or argon2-cffi verifies,
whichever is faster here (idp.login.password)."""

import logging

import pytest
from argon2 import PasswordHasher, Type
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
    """Timed on the dummy hash with this thread's CPU clock, so a second run of argon2 counts
    and waiting for the CPU would not."""
    calls = []

    def once(encoded, pw):
        calls.append("once")
        return password._argon2_cffi(encoded, pw)

    def twice(encoded, pw):
        calls.append("twice")
        return password._argon2_cffi(encoded, pw) or password._argon2_cffi(encoded, pw)

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
    monkeypatch.setattr(password, "_thread_cpu", lambda *a: pytest.fail("timed a configured verifier"))
    app = Flask(__name__)
    app.config.update(COST, ARGON2_VERIFIER="libsodium")
    with app.app_context():
        password.prepare()
        assert password.verifier() is password.VERIFIERS["libsodium"]


def test_an_unknown_verifier_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="ARGON2_VERIFIER must be auto, libsodium or argon2-cffi"):
        load(str(tmp_path), {"ARGON2_VERIFIER": "bcrypt"})
