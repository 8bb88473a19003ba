"""argon2id passwords (RFC 9106): argon2-cffi hashes, libsodium verifies (idp.login.password)."""

import pytest
from argon2 import PasswordHasher, Type
from flask import Flask

from idp.login import password

COST = {"ARGON2_MEMORY_KIB": 8 * 1024, "ARGON2_TIME_COST": 1, "ARGON2_PARALLELISM": 1}


@pytest.fixture
def ctx():
    app = Flask(__name__)
    app.config.update(COST)
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
