"""The operator command `idp` (idp.cli), driven through click's test runner.

Each test gets its own SQLite database; the signing keys are shared, except by the test
that rotates them. Commands build their own application context, as from a shell.
"""

import json
import os
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.cli import ScriptInfo
from flask_migrate import upgrade
from freezegun import freeze_time
from sqlalchemy import func, inspect, select, text

from idp import create_app
from idp.cli import _create_app, cli
from idp.config import DEFAULT_SECRET_KEY
from idp.crypto.keys import KeyRing
from idp.crypto.secrets import keyed_hash, verify_keyed_hash
from idp.extensions import db, keyring
from idp.models import Account, Client, Grant

ROOT = Path(__file__).resolve().parents[2]
DEMO_CLIENTS = ROOT / "config" / "clients.toml"
SECRET_LINE = re.compile(r"client_secret for (\S+): (\S+)")


def _config(keys_dir, db_path):
    return {"DATABASE_URL": f"sqlite:///{db_path}", "KEYS_DIR": str(keys_dir), "TESTING": True,
            "REDIS_URL": "memory://", "ARGON2_MEMORY_KIB": 1024, "ARGON2_TIME_COST": 1}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A migrated database to copy, and a key directory (RSA keys are slow to make)."""
    tmp = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IDP_INSTANCE_PATH", str(tmp / "instance"))
        app = create_app(_config(tmp / "keys", tmp / "template.sqlite3"))
    with app.app_context():
        upgrade()
    return tmp


@pytest.fixture
def make_app(tmp_path, shared, monkeypatch):
    monkeypatch.setenv("IDP_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("IDP_CONFIG_FILE", str(tmp_path / "absent.toml"))
    shutil.copy(shared / "template.sqlite3", tmp_path / "idp.sqlite3")
    return lambda keys_dir=shared / "keys": create_app(_config(keys_dir, tmp_path / "idp.sqlite3"))


@pytest.fixture
def app(make_app):
    return make_app()


def runner_for(app):
    """Run `idp ARGS...` against ``app``; returns click's Result."""
    runner = app.test_cli_runner()
    return lambda *args, input=None: runner.invoke(cli, list(args), input=input)


@pytest.fixture
def idp(app):
    return runner_for(app)


def one(app, model, **by):
    with app.app_context():
        row = db.session.scalar(select(model).filter_by(**by))
        if row is not None:
            db.session.expunge(row)
        return row


def assert_refused(result, message):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert message in result.stderr, result.stderr


# -- clients ---------------------------------------------------------------------


def test_add_confidential_client_prints_secret_once_and_stores_only_its_hash(app, idp):
    result = idp("clients", "add", "shop", "--name", "Shop", "--redirect-uri", "https://shop.example/cb",
                 "--scope", "openid email", "--first-party")
    assert result.exit_code == 0, result.output
    (client_id, secret), = SECRET_LINE.findall(result.stdout)
    assert client_id == "shop" and len(secret) >= 43
    assert "not be shown again" in result.stderr

    client = one(app, Client, client_id="shop")
    assert client.secret_hash != secret and secret not in client.secret_hash
    with app.app_context():
        assert verify_keyed_hash(secret, client.secret_hash)
        assert client.check_client_secret(secret) and not client.check_client_secret(secret + "x")
    assert client.scopes == ["openid", "email"] and client.first_party
    assert client.token_endpoint_auth_method == "client_secret_basic"

    for args in (("clients", "show", "shop"), ("clients", "list")):
        out = idp(*args)
        assert out.exit_code == 0 and "shop" in out.output
        assert secret not in out.output and client.secret_hash not in out.output


def test_add_public_native_client_gets_no_secret(app, idp):
    result = idp("clients", "add", "app", "--public", "--native", "--redirect-uri", "http://127.0.0.1/cb",
                 "--redirect-uri", "com.example.app:/oauth2redirect", "--grant-type", "authorization_code",
                 "--grant-type", "refresh_token", "--scope", "openid offline_access")
    assert result.exit_code == 0, result.output
    assert "client_secret" not in result.output
    client = one(app, Client, client_id="app")
    assert client.secret_hash is None and client.is_public and client.is_native


@pytest.mark.parametrize("args, message", [
    (["--redirect-uri", "/callback"], "must be absolute"),
    (["--redirect-uri", "https://rp.example/cb#frag"], "must not contain a fragment"),
    (["--redirect-uri", "http://rp.example/cb"], "must use https"),
    (["--redirect-uri", "https://*.rp.example/cb"], "wildcards are not supported"),
    (["--redirect-uri", "https://rp.example/" + "a" * 600], "longer than 500 characters"),
    (["--redirect-uri", "com.example.app:/cb"], "private-use schemes are for --native apps"),
    (["--public", "--native", "--redirect-uri", "myapp:/cb"], "must use https"),
    (["--public", "--native", "--redirect-uri", "https://rp.example/cb#x"], "fragment"),
    (["--post-logout-redirect-uri", "http://rp.example/", "--redirect-uri", "https://rp.example/cb"],
     "post-logout redirect URI"),
    (["--public", "--native", "--redirect-uri", "com.example.app:/cb", "--post-logout-redirect-uri",
      "com.example.app:/bye"], "private-use schemes are not supported after a logout"),
    (["--public", "--grant-type", "client_credentials", "--scope", "api:read"], "cannot use client_credentials"),
    (["--native", "--redirect-uri", "http://127.0.0.1/cb"], "native app cannot keep a client secret"),
    (["--scope", "openid"], "needs at least one --redirect-uri"),
    (["--auth-method", "private_key_jwt", "--redirect-uri", "https://rp.example/cb"], "needs --jwks-file"),
    (["--redirect-uri", "https://rp.example/cb", "--scope", "offline_access"], "needs the refresh_token grant"),
])
def test_add_refuses_bad_registrations_with_one_line(app, idp, args, message):
    result = idp("clients", "add", "bad", *args)
    assert_refused(result, message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert one(app, Client, client_id="bad") is None


def test_add_refuses_a_duplicate_client_id(idp):
    assert idp("clients", "add", "dup", "--redirect-uri", "https://rp.example/cb").exit_code == 0
    assert_refused(idp("clients", "add", "dup", "--redirect-uri", "https://rp.example/cb"), "already exists")


def test_remove_deletes_the_client_and_revokes_its_grants(app, idp):
    idp("clients", "add", "gone", "--redirect-uri", "https://rp.example/cb")
    with app.app_context():
        db.session.add(Grant(id="g1", client_id="gone", scope="openid"))
        db.session.commit()
    result = idp("clients", "remove", "gone", "--yes")
    assert result.exit_code == 0, result.output
    assert one(app, Client, client_id="gone") is None
    assert one(app, Grant, id="g1").revoked_reason == "client_removed"
    assert_refused(idp("clients", "show", "gone"), "no client 'gone'")
    assert_refused(idp("clients", "remove", "gone", "--yes"), "no client 'gone'")
    # memory:// (this test's store) is private to each process: a running server's tokens stay.
    assert "memory://, a store private to each process" in result.stderr


def test_load_that_replaces_a_secret_deletes_the_tokens_got_with_the_old_one(app, idp, tmp_path):
    """As rotate-secret does: a file that changes a client's secret is how a leaked demo secret
    is replaced; whoever holds the old one keeps no client-credentials token got with it."""
    from idp.oauth import tokens

    path = tmp_path / "clients.toml"
    entry = ('[[clients]]\nclient_id = "svc"\ngrant_types = ["client_credentials"]\nscopes = ["api:read"]\n'
             'secret = "{}"\n')
    old, new = "the-first-secret-0123456789abcdef", "the-second-secret-0123456789abcdef"
    path.write_text(entry.format(old))
    assert idp("clients", "load", str(path)).exit_code == 0
    http = app.test_client()
    got = http.post("/token", auth=("svc", old), data={"grant_type": "client_credentials"})
    assert got.status_code == 200, got.get_json()
    path.write_text(entry.format(new))
    result = idp("clients", "load", str(path))
    assert result.exit_code == 0, result.output
    assert "client-credentials tokens of svc got with its old secret revoked" in result.stdout
    with app.app_context():
        assert tokens.find_access_token(got.get_json()["access_token"]) is None
    assert http.post("/token", auth=("svc", new), data={"grant_type": "client_credentials"}).status_code == 200
    assert "revoked" not in idp("clients", "load", str(path)).stdout  # unchanged: nothing to revoke


def test_rotate_secret_replaces_a_leaked_secret_and_keeps_the_grants(app, idp):
    added = idp("clients", "add", "svc", "--grant-type", "client_credentials", "--scope", "api:read")
    (_, old), = SECRET_LINE.findall(added.stdout)
    with app.app_context():
        db.session.add(Grant(id="g-svc", client_id="svc", scope="api:read"))
        db.session.commit()
    http = app.test_client()

    def token(secret):
        return http.post("/token", auth=("svc", secret), data={"grant_type": "client_credentials"}).status_code

    assert token(old) == 200  # and this server now holds a copy of the registration
    rotated = idp("clients", "rotate-secret", "svc")
    assert rotated.exit_code == 0, rotated.output
    (_, new), = SECRET_LINE.findall(rotated.stdout)
    assert new != old and token(old) == 401 and token(new) == 200
    assert one(app, Grant, id="g-svc").revoked_at is None  # the sellers' grants stay
    idp("clients", "add", "app", "--public", "--native", "--redirect-uri", "http://127.0.0.1/cb")
    assert_refused(idp("clients", "rotate-secret", "app"), "has no secret")
    assert_refused(idp("clients", "rotate-secret", "nobody"), "no client 'nobody'")


def test_a_change_whose_cached_copy_could_not_be_dropped_is_an_error(tmp_path, shared, monkeypatch, redis_url):
    """The secret is rotated, but with Redis out of reach the servers' cached registration
    (and the old secret's hash in it) lives out its ttl: the operator must hear of it."""
    import secrets

    monkeypatch.setenv("IDP_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("IDP_CONFIG_FILE", str(tmp_path / "absent.toml"))
    shutil.copy(shared / "template.sqlite3", tmp_path / "idp.sqlite3")
    config = {**_config(shared / "keys", tmp_path / "idp.sqlite3"), "STORE_NAMESPACE": f"cli{secrets.token_hex(4)}:"}
    idp = runner_for(create_app({**config, "REDIS_URL": redis_url}))
    assert idp("clients", "add", "svc", "--grant-type", "client_credentials", "--scope", "api:read").exit_code == 0
    # The same database, with Redis out of reach: nothing listens on port 1.
    out_of_reach = runner_for(create_app({**config, "REDIS_URL": "redis://127.0.0.1:1/0"}))
    rotated = out_of_reach("clients", "rotate-secret", "svc")
    assert rotated.exit_code == 2 and "new secret for client svc" in rotated.stdout
    # Both halves the store missed are said: the old secret's tokens, and the cached copy with
    # which servers may still accept the old secret (the command's error used to hide the latter).
    assert "tokens got with the old secret were not revoked" in rotated.stderr
    assert "cached copy of the change could not be dropped" in rotated.stderr
    assert idp("clients", "show", "svc").exit_code == 0  # the next command starts clean


@pytest.mark.parametrize("text,message", [
    ('clients = "abc"\n', "clients must be an array of tables"),
    ("clients = [1, 2]\n", "clients must be an array of tables"),
    ('[clients]\nclient_id = "x"\n', "clients must be an array of tables"),
    ('[[clients]]\nclient_id = "x"\njwks_file = 5\nredirect_uris = ["https://a/cb"]\n', "jwks_file must be a file name"),
    # shown on the consent page and by `clients list`: no NUL, no direction override
    ('[[clients]]\nclient_id = "x"\nname = "Seller\\u0000Dashboard"\nredirect_uris = ["https://a/cb"]\n',
     "the name holds a control, format or direction character"),
    ('[[clients]]\nclient_id = "x"\nname = "Seller Dashboard\\u202e"\nredirect_uris = ["https://a/cb"]\n',
     "the name holds a control, format or direction character"),
    ('[[clients]]\nclient_id = "x"\nredirect_uris = ["https://a.example/caf\u00e9"]\n', "is not ASCII"),
])
def test_load_refuses_a_badly_shaped_file_with_one_line(idp, tmp_path, text, message):
    path = tmp_path / "clients.toml"
    path.write_text(text)
    result = idp("clients", "load", str(path))
    assert_refused(result, message)
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_email_is_one_account_however_its_accents_are_typed(idp):
    """"é" as one character (NFC) or as "e" and a combining accent (NFD, pasted from macOS)."""
    created = idp("accounts", "create", "jos\u00e9@example.com", "--password-stdin", input="long enough 1\n")
    assert created.exit_code == 0, created.output
    assert_refused(idp("accounts", "create", "jose\u0301@example.com", "--password-stdin",
                       input="long enough 1\n"), "already exists")
    assert idp("accounts", "disable", "jose\u0301@example.com").exit_code == 0  # found, the same account


def _load_then_change(idp, path, before: str, after: str):
    """`clients load` of ``before``, then of ``after`` (TOML texts): the second result."""
    path.write_text(before)
    assert idp("clients", "load", str(path)).exit_code == 0
    path.write_text(after)
    result = idp("clients", "load", str(path))
    assert result.exit_code == 0, result.output
    return result


def test_loading_a_change_that_lets_a_client_do_more_says_so(idp, tmp_path):
    path = tmp_path / "clients.toml"
    result = _load_then_change(
        idp, path, '[[clients]]\nclient_id = "w1"\nredirect_uris = ["https://a.example/cb"]\n'
        'post_logout_redirect_uris = ["https://a.example/bye"]\nbackchannel_logout_uri = "https://a.example/bcl"\n',
        '[[clients]]\nclient_id = "w1"\nredirect_uris = ["https://a.example/cb"]\n'
        'post_logout_redirect_uris = ["https://a.example/bye", "https://b.example/bye"]\n'
        'backchannel_logout_uri = "https://b.example/bcl"\n')
    assert "browsers may now be sent after a logout to https://b.example/bye" in result.stderr
    assert "logout tokens now go to https://b.example/bcl" in result.stderr
    path.write_text('[[clients]]\nclient_id = "w2"\nredirect_uris = ["https://a.example/cb"]\n')
    result = idp("clients", "load", str(path))  # w1 no longer in the file: kept, and said
    note = [line for line in result.stderr.splitlines() if "registered, but not in " in line]
    assert result.exit_code == 0 and len(note) == 1 and "w1" in note[0].rsplit(": ", 1)[1]
    assert idp("clients", "show", "w1").exit_code == 0


def test_a_blank_name_falls_back_to_the_client_id(app, idp):
    assert idp("clients", "add", "named", "--redirect-uri", "https://a/cb", "--name", "   ").exit_code == 0
    assert one(app, Client, client_id="named").name == "named"


def test_db_downgrade_and_stamp_ask_first(app, idp):
    for name in ("downgrade", "stamp"):
        result = idp("db", name, "base", input="n\n")
        assert result.exit_code != 0 and "continue?" in result.stderr and "continue?" not in result.stdout, \
            result.output
    with app.app_context():  # nothing was dropped
        assert "client" in inspect(db.engine).get_table_names()


def test_db_upgrade_of_a_database_a_newer_release_migrated_says_so(app, idp):
    """Alembic's own answer ("Can't locate revision") says nothing of what to do."""
    with app.app_context():
        db.session.execute(text("UPDATE alembic_version SET version_num = 'f00dfeedcafe'"))
        db.session.commit()
    result = idp("db", "upgrade")
    assert_refused(result, "the database is at revision f00dfeedcafe, which this release does not know")
    assert "run that release" in result.stderr


def test_db_upgrade_still_upgrades(make_app, tmp_path):
    fresh = make_app()
    with fresh.app_context():
        db.session.execute(text("DROP TABLE alembic_version"))
        db.drop_all()
        db.session.commit()
    result = runner_for(fresh)("db", "upgrade")
    assert result.exit_code == 0, result.output
    with fresh.app_context():
        assert "client" in inspect(db.engine).get_table_names()


def test_offline_sql_is_printed_without_a_question(idp):
    """--sql runs nothing: no question, and stdout is the SQL alone (to redirect to a file)."""
    # (SQLite's batch migrations need a live database: the last one's downgrade needs none.)
    for name, revision, sql in (("downgrade", "head:-1", "DROP TABLE pending_sweep"),
                                ("stamp", "head", "INSERT INTO alembic_version")):
        result = idp("db", name, "--sql", revision, input="")
        assert result.exit_code == 0, result.output
        assert "continue?" not in result.output and sql in result.stdout, result.output


def test_load_registers_the_demo_clients_idempotently(app, idp):
    first = idp("clients", "load", str(DEMO_CLIENTS))
    assert first.exit_code == 0, first.output
    assert first.stdout.count("added client") == 7 and "client_secret" not in first.output
    second = idp("clients", "load", str(DEMO_CLIENTS))
    assert second.exit_code == 0 and second.stdout.count("unchanged client") == 7, second.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Client)) == 7
        dashboard = db.session.scalar(select(Client).filter_by(client_id="seller-dashboard"))
        assert dashboard.check_client_secret("demo-only-seller-dashboard-secret")
        portal_jp = db.session.scalar(select(Client).filter_by(client_id="portal-jp"))
        assert portal_jp.id_token_signed_response_alg == "ES256"
        mobile = db.session.scalar(select(Client).filter_by(client_id="seller-mobile"))
        assert mobile.is_public and mobile.is_native and mobile.secret_hash is None
        assert not db.session.scalar(select(Client).filter_by(client_id="integrator-acme")).first_party


def test_load_generates_a_missing_secret_once_and_updates_changes(app, idp, tmp_path):
    path = tmp_path / "clients.toml"
    path.write_text('[[clients]]\nclient_id = "svc"\ngrant_types = ["client_credentials"]\nscopes = ["api:read"]\n')
    first = idp("clients", "load", str(path))
    (_, secret), = SECRET_LINE.findall(first.stdout)
    hash_before = one(app, Client, client_id="svc").secret_hash
    with app.app_context():
        assert hash_before == keyed_hash(secret)

    path.write_text(path.read_text().replace('["api:read"]', '["api:read", "api:write"]'))
    second = idp("clients", "load", str(path))
    assert second.exit_code == 0 and "client_secret" not in second.output
    assert "updated client svc: scopes +api:write" in second.stdout  # what changed, field by field
    assert "Note: the client may now ask for api:write" in second.stderr
    client = one(app, Client, client_id="svc")
    assert client.secret_hash == hash_before and client.scopes == ["api:read", "api:write"]


def test_load_says_when_a_client_is_weakened(app, idp, tmp_path):
    """A file that turns a confidential client into a public, first-party one with one more
    redirect URI said only "updated": its secret went, consent went, and its refresh tokens
    became usable with the client_id alone."""
    path = tmp_path / "clients.toml"
    result = _load_then_change(
        idp, path,
        '[[clients]]\nclient_id = "app"\nredirect_uris = ["https://app.example.com/cb"]\n'
        'grant_types = ["authorization_code", "refresh_token"]\nscopes = ["openid", "offline_access"]\n',
        '[[clients]]\nclient_id = "app"\npublic = true\nfirst_party = true\n'
        'redirect_uris = ["https://app.example.com/cb", "https://elsewhere.example/cb"]\n'
        'grant_types = ["authorization_code", "refresh_token"]\nscopes = ["openid", "offline_access"]\n')
    line = next(out for out in result.stdout.splitlines() if out.startswith("updated client app: "))
    assert "token_endpoint_auth_method 'client_secret_basic' -> 'none'" in line and "secret removed" in line
    assert "redirect_uris +https://elsewhere.example/cb" in line and "first_party False -> True" in line
    for note in ("public now: its refresh tokens are used with its client_id alone", "no longer asked for consent",
                 "codes may now be sent to https://elsewhere.example/cb"):
        assert note in result.stderr, note
    assert idp("clients", "load", str(path)).stdout.strip() == "unchanged client app"


def test_load_notes_a_grant_type_added(idp, tmp_path):
    path = tmp_path / "clients.toml"
    path.write_text('[[clients]]\nclient_id = "svc"\nredirect_uris = ["https://svc.example/cb"]\n'
                    'grant_types = ["authorization_code"]\nscopes = ["api:read"]\n')
    assert idp("clients", "load", str(path)).exit_code == 0
    path.write_text(path.read_text().replace('["authorization_code"]', '["authorization_code", "client_credentials"]'))
    result = idp("clients", "load", str(path))
    assert "grant_types +client_credentials" in result.stdout
    assert "Note: the client may now use client_credentials" in result.stderr


@pytest.mark.parametrize("text,message", [
    ('[[client]]\nclient_id = "x"\n', "unknown top-level key(s) client"),
    ('# nothing yet\n', "no [[clients]] tables"),
])
def test_load_refuses_a_file_that_would_load_nothing_without_a_word(idp, tmp_path, text, message):
    path = tmp_path / "clients.toml"
    path.write_text(text)
    assert_refused(idp("clients", "load", str(path)), message)


def test_load_refuses_file_secrets_in_production(app, idp):
    app.config["ENV"] = "production"
    assert_refused(idp("clients", "load", str(DEMO_CLIENTS)), "refused in production")
    assert one(app, Client, client_id="seller-dashboard") is None


@pytest.mark.parametrize("field,value,message", [
    ("first_party", '"false"', "first_party must be true or false"),
    ("public", '"false"', "public must be true or false"),
    ("name", "42", "name must be a string"),
    ("redirect_uris", '["https://rp.example/cb", 7]', "redirect_uris must be a list of strings"),
    ("scopes", "[1]", "scopes must be a list of strings"),
    ("scopes", "5", "scopes must be a list of strings"),
    ("name", '"' + "n" * 201 + '"', "the name is longer than 200 characters"),
    ("backchannel_logout_uri", '"https://rp.example/' + "b" * 500 + '"', "longer than 500 characters"),
])
def test_load_refuses_values_of_the_wrong_type(app, idp, tmp_path, field, value, message):
    """A quoted "false" is true to Python: it must not make a client first-party or public."""
    fields = {"redirect_uris": '["https://rp.example/cb"]', field: value}
    path = tmp_path / "clients.toml"
    path.write_text('[[clients]]\nclient_id = "typed"\n' + "".join(f"{k} = {v}\n" for k, v in fields.items()))
    assert_refused(idp("clients", "load", str(path)), message)
    assert one(app, Client, client_id="typed") is None


def test_an_account_whose_email_or_name_is_too_long_is_refused_as_such(app, idp):
    """Said of the input, not as a database that "cannot be used" (the column's length)."""
    long_email = "a" * 320 + "@example.com"
    assert_refused(idp("accounts", "create", long_email, "--password-stdin", input="pw-123456789\n"),
                   "an email address is at most 320 characters")
    assert_refused(idp("accounts", "create", "n@example.com", "--name", "n" * 201, "--password-stdin",
                       input="pw-123456789\n"), "the name is longer than 200 characters")


def test_a_jwks_that_cannot_be_imported_is_refused(idp, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text('{"keys": [{"kty": "EC", "x": "AAAA", "y": "AAAA"}]}')  # no crv
    result = idp("clients", "add", "rp-badkey", "--auth-method", "private_key_jwt", "--jwks-file", str(path),
                 "--grant-type", "client_credentials", "--scope", "api:read")
    assert_refused(result, "not a usable JWK Set")


def _public(key, **members) -> dict:
    return {**key.as_dict(private=False), **members}


def _untrusted_jwks(case: str) -> tuple[list, str]:
    """(keys, the refusal's words) for one case: built here, RSA generation is slow."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    p256 = ECKey.generate_key("P-256")
    return {
        "RSA of 1024 bits": lambda: ([_public(RSAKey.import_key(rsa.generate_private_key(65537, 1024)), kid="a")],
                                     "RSA of 1024 bits: at least 2048"),
        "another curve": lambda: ([_public(ECKey.generate_key("secp256k1"), kid="a")], "EC secp256k1"),
        "Ed25519": lambda: ([_public(OKPKey.generate_key("Ed25519"), kid="a")], "OKP Ed25519"),
        "an encryption key": lambda: ([_public(p256, kid="a", use="enc")], "not for signatures"),
        "an alg it cannot verify": lambda: ([_public(p256, kid="a", alg="RS256")], "alg 'RS256'"),
        "alg none": lambda: ([_public(p256, kid="a", alg="none")], "alg 'none'"),
        "a kid twice": lambda: ([_public(p256, kid="a"), _public(ECKey.generate_key("P-256"), kid="a")], "kid twice"),
        "an unknown type last": lambda: ([_public(p256, kid="a"), {"kty": "foo", "kid": "b"}], "a key of a type"),
    }[case]()


@pytest.mark.parametrize("case", ["RSA of 1024 bits", "another curve", "Ed25519", "an encryption key",
                                  "an alg it cannot verify", "alg none", "a kid twice", "an unknown type last"])
def test_a_client_jwks_with_a_key_that_cannot_be_trusted_or_used_is_refused(idp, tmp_path, case):
    """RFC 7523 client authentication trusts every key of the registration: a weak one (RSA
    below 2048 bits can be factored) lets anyone sign as the client; one that can never
    verify an assertion (another curve, an encryption key, an alg we do not take) is a
    registration that cannot work."""
    keys, message = _untrusted_jwks(case)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    result = idp("clients", "add", "rp-key", "--auth-method", "private_key_jwt", "--jwks-file", str(path),
                 "--grant-type", "client_credentials", "--scope", "api:read")
    assert_refused(result, message)


def test_a_client_jwks_of_rsa_2048_and_p256_is_taken(idp, tmp_path):
    from joserfc.jwk import ECKey, RSAKey

    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_public(RSAKey.generate_key(2048), kid="r", alg="PS256", use="sig"),
                                         _public(ECKey.generate_key("P-256"), kid="e", alg="ES256")]}))
    result = idp("clients", "add", "rp-key", "--auth-method", "private_key_jwt", "--jwks-file", str(path),
                 "--grant-type", "client_credentials", "--scope", "api:read")
    assert result.exit_code == 0, result.output


def test_keys_commands_refuse_keys_they_cannot_open(make_app, shared, tmp_path):
    """A shell without the servers' SECRET_KEY: with the keys in the database nothing is
    opened at start, so each keys command must refuse, not list nothing or rotate to a key
    no server can read."""
    config = {**_config(tmp_path / "unused", tmp_path / "idp.sqlite3"), "KEYS_STORE": "database"}
    make_app()  # the database copy
    servers = create_app(config)
    with servers.app_context():
        servers.extensions["idp.keyring"].ensure()
    shell = runner_for(create_app({**config, "SECRET_KEY": "another secret, of thirty-two characters or more"}))
    for args in (("keys", "list"), ("keys", "rotate", "--now"), ("keys", "prune")):
        assert_refused(shell(*args), "do not open with this SECRET_KEY")
    assert len(keys_table(runner_for(servers))) == 2  # nothing was added


def test_keys_commands_that_write_refuse_beside_a_record_that_reads_as_no_key(make_app, tmp_path):
    """With the keys in the database nothing is read at start: a damaged row (here an alg no
    release signs with) must make rotate, prune and seal refuse in one line, not end in a
    traceback; list still shows the keys it can read."""
    from idp.models.signing_key import SigningKey

    config = {**_config(tmp_path / "unused", tmp_path / "idp.sqlite3"), "KEYS_STORE": "database"}
    make_app()  # the database copy
    servers = create_app(config)
    with servers.app_context():
        ring = servers.extensions["idp.keyring"]
        ring.ensure()
        kid = ring.active("RS256").kid
        db.session.get(SigningKey, kid).alg = "EdDSA"
        db.session.commit()
    shell = runner_for(create_app(config))
    for args in (("keys", "rotate", "--now"), ("keys", "prune"), ("keys", "seal")):
        assert_refused(shell(*args), f"are no signing key this release can read ({kid})")
    listed = shell("keys", "list")
    assert listed.exit_code == 0 and len(keys_table(shell)) == 1


def test_load_checks_every_client_before_writing_any(app, idp, tmp_path):
    path = tmp_path / "clients.toml"
    path.write_text('[[clients]]\nclient_id = "ok"\nredirect_uris = ["https://rp.example/cb"]\n'
                    '[[clients]]\nclient_id = "bad"\nredirect_uris = ["http://rp.example/cb"]\n')
    assert_refused(idp("clients", "load", str(path)), "bad: redirect URI")
    assert one(app, Client, client_id="ok") is None


# -- accounts --------------------------------------------------------------------


def test_create_account_reads_the_password_from_stdin(app, idp):
    result = idp("accounts", "create", "Seller@Example.com", "--name", "Sam", "--verified", "--password-stdin",
                 input="correct horse battery\n")
    assert result.exit_code == 0, result.output
    account = one(app, Account, email="seller@example.com")
    assert account.name == "Sam" and account.email_verified
    assert account.password_hash.startswith("$argon2id$") and "correct horse" not in account.password_hash
    with app.app_context():
        from idp.login.password import verify_password

        assert verify_password(account.password_hash, "correct horse battery")


def test_create_account_reads_the_password_from_a_hidden_prompt(app, idp):
    result = idp("accounts", "create", "p@example.com", input="long enough pw\nlong enough pw\n")
    assert result.exit_code == 0, result.output
    assert "long enough pw" not in result.output
    assert one(app, Account, email="p@example.com") is not None


@pytest.mark.parametrize("args", [
    ["--password", "hunter2hunter2"],
    ["--password=hunter2hunter2"],
    ["hunter2hunter2"],
])
def test_create_account_never_takes_the_password_from_argv(app, idp, args):
    result = idp("accounts", "create", "argv@example.com", *args, input="hunter2hunter2\n")
    assert result.exit_code == 2
    assert one(app, Account, email="argv@example.com") is None


def test_create_account_refuses_a_duplicate_email(idp):
    assert idp("accounts", "create", "dup@example.com", "--password-stdin", input="password one\n").exit_code == 0
    result = idp("accounts", "create", "DUP@example.com", "--password-stdin", input="password two\n")
    assert_refused(result, "already exists")


@pytest.mark.parametrize("email", ["ali\u200bce@example.com", "alice@example.com.", "al\x00ice@example.com",
                                   "alice\u202e@example.com"])
def test_create_account_refuses_an_address_that_only_looks_like_another(app, idp, email):
    """A zero-width space, a direction mark or a final dot makes an address that reads as
    alice@example.com and is another account; a NUL gave a traceback (PostgreSQL text)."""
    assert_refused(idp("accounts", "create", email, "--password-stdin", input="password one\n"),
                   "is not an email address")
    assert one(app, Account, email=Account.normalize_email(email)) is None
    assert_refused(idp("accounts", "disable", email), "no account with the email")
    assert_refused(idp("accounts", "create", "bob@example.com", "--name", "Bob\x00", "--password-stdin",
                       input="password one\n"), "control or invisible character")


def test_create_account_refuses_a_short_password(app, idp):
    assert_refused(idp("accounts", "create", "s@example.com", "--password-stdin", input="short\n"), "8 to")
    assert one(app, Account, email="s@example.com") is None


# -- keys, configuration, serve, demo ----------------------------------------------


def keys_table(idp) -> list[list[str]]:
    result = idp("keys", "list")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["KID", "ALG", "STATE", "CREATED", "SIGNS_FROM", "RETIRED"]
    return [row.split()[:3] for row in rows]


def test_keys_rotate_list_and_prune(make_app, tmp_path):
    app = make_app(keys_dir=tmp_path / "keys")  # its own keys: this test rotates and prunes
    idp = runner_for(app)
    (es_old, *_), (rs, *_) = keys_table(idp)
    assert keys_table(idp) == [[es_old, "ES256", "active"], [rs, "RS256", "active"]]

    rotated = idp("keys", "rotate", "--alg", "ES256", "--now")
    assert rotated.exit_code == 0, rotated.output
    es_new = rotated.stdout.split()[3].rstrip(":")
    assert idp("keys", "rotate", "--alg", "RS256").exit_code == 0
    table = keys_table(idp)
    assert table[:2] == [[es_old, "ES256", "retired"], [es_new, "ES256", "active"]]
    assert [row[1:] for row in table[2:]] == [["RS256", "active"], ["RS256", "next"]]

    assert idp("keys", "prune").stdout.strip() == "0 key(s) pruned"  # tokens it signed may still be live
    app.config.update(ID_TOKEN_TTL=1, ACCESS_TOKEN_TTL=1, SESSION_TTL=1)
    with freeze_time(datetime.now(timezone.utc)) as clock:  # a few seconds after es_old retired
        clock.tick(100)  # a logout token it signed is valid 120 s
        assert idp("keys", "prune").stdout.strip() == "0 key(s) pruned"
        clock.tick(25)
        assert idp("keys", "prune").stdout.splitlines() == [f"pruned {es_old}", "1 key(s) pruned"]
    assert es_old not in {row[0] for row in keys_table(idp)}
    assert idp("keys", "rotate", "--alg", "HS256").exit_code == 2


def test_a_leaked_key_is_withdrawn_at_once(make_app, tmp_path):
    """rotate --now, then withdraw the old key: gone from the JWKS, its tokens no longer verify."""
    from idp.crypto.keys import InvalidJWT

    app = make_app(keys_dir=tmp_path / "keys")
    idp = runner_for(app)
    (es_old, *_), _ = keys_table(idp)
    with app.app_context():
        forged_with_leak = keyring().sign({"iss": "x", "sub": "y"}, "ES256")
    # A kid is base64url: one in 64 starts with "-", which only "--" keeps from reading as an option.
    assert_refused(idp("keys", "withdraw", "--yes", "--", es_old), "signs now: rotate with --now first")
    pending = idp("keys", "rotate", "--alg", "ES256")  # a scheduled rotation, pending
    assert idp("keys", "rotate", "--alg", "ES256", "--now").stdout.count("takes over from") == 1  # said
    withdrawn = idp("keys", "withdraw", "--yes", "--", es_old)
    assert withdrawn.exit_code == 0 and f"withdrew retired ES256 key {es_old}" in withdrawn.stdout
    assert es_old not in {row[0] for row in keys_table(idp)}
    with app.app_context():
        assert es_old not in {k["kid"] for k in keyring().jwks()["keys"]}
        with pytest.raises(InvalidJWT):
            keyring().verify(forged_with_leak)
    assert_refused(idp("keys", "withdraw", "nope", "--yes"), "no key 'nope'")
    assert pending.exit_code == 0


def test_prune_keeps_a_key_a_live_session_may_hold_hints_from(make_app, tmp_path):
    """A session that began before the key retired, renewed past SESSION_TTL, still lives:
    its relying parties' ID tokens (hints) need the key. Once it ends, the key goes."""
    from idp.models import Account, BrowserSession

    app = make_app(keys_dir=tmp_path / "keys")
    idp = runner_for(app)
    app.config.update(ID_TOKEN_TTL=1, ACCESS_TOKEN_TTL=1, SESSION_TTL=1)
    began = datetime.now(timezone.utc)
    with app.app_context():
        account = Account(email="s@example.com", email_verified=True, password_hash="x")
        db.session.add(account)
        db.session.flush()
        db.session.add(BrowserSession(id_hash="h" * 64, sid="S", account_id=account.id, auth_time=began, amr=["pwd"],
                                      created_at=began, last_seen_at=began, expires_at=began + timedelta(days=30),
                                      clients=["rp-a"]))
        db.session.commit()
    (es_old, *_), _ = keys_table(idp)
    with freeze_time(began) as clock:
        clock.tick(10)
        assert idp("keys", "rotate", "--alg", "ES256", "--now").exit_code == 0
        clock.tick(3600)
        assert idp("keys", "prune").stdout.strip() == "0 key(s) pruned"
        assert idp("maintenance", "run", "keys").exit_code == 0
        assert es_old in {row[0] for row in keys_table(idp)}
        with app.app_context():
            db.session.execute(db.update(BrowserSession).values(ended_at=datetime.now(timezone.utc)))
            db.session.commit()
        assert idp("keys", "prune").stdout.splitlines() == [f"pruned {es_old}", "1 key(s) pruned"]


def test_rotate_prunes_keys_no_token_can_need(make_app, tmp_path):
    app = make_app(keys_dir=tmp_path / "keys")
    idp = runner_for(app)
    (es_old, *_), _ = keys_table(idp)
    assert idp("keys", "rotate", "--alg", "ES256", "--now").exit_code == 0  # es_old retires: tokens may need it
    app.config.update(ID_TOKEN_TTL=1, ACCESS_TOKEN_TTL=1, SESSION_TTL=1)
    with freeze_time(datetime.now(timezone.utc)) as clock:
        clock.tick(121)  # past every token the retired key signed (a logout token lives 120 s)
        second = idp("keys", "rotate", "--now")  # ID_TOKEN_ALG's (RS256): prunes the retired ES256 key too
    assert second.stdout.startswith("new RS256 key ")
    assert f"pruned {es_old}" in second.stdout
    assert es_old not in {row[0] for row in keys_table(idp)}


def test_a_bad_setting_is_one_line_not_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("IDP_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("IDP_ID_TOKEN_ALG", "HS256")
    result = CliRunner().invoke(cli, ["clients", "list"], obj=ScriptInfo(create_app=_create_app))
    assert_refused(result, "configuration: ID_TOKEN_ALG must be ES256 or RS256")


def test_keys_seal_seals_the_keys_an_earlier_release_stored_in_clear(monkeypatch, tmp_path):
    """Every other command refuses keys in clear (KEYS_ACCEPT_CLEAR off); `idp keys seal`
    reads them, to seal them."""
    import json

    monkeypatch.setenv("IDP_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("IDP_CONFIG_FILE", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("IDP_KEYS_DIR", str(tmp_path / "keys"))

    def run(*args):
        return CliRunner().invoke(cli, list(args), obj=ScriptInfo(create_app=_create_app))

    assert run("db", "upgrade").exit_code == 0  # and the first keys, sealed
    ring = KeyRing(str(tmp_path / "keys"), 600, DEFAULT_SECRET_KEY)
    kids = [key.kid for key in ring._snapshot()]
    for key in ring._snapshot():  # as the earlier release wrote them
        path = tmp_path / "keys" / f"{key.kid}.json"
        doc = json.loads(path.read_text())
        del doc["sealed"]
        path.write_text(json.dumps({**doc, "jwk": key.jwk.as_dict(private=True)}))
    assert_refused(run("keys", "list"), "are stored in clear")
    result = run("keys", "seal")
    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.splitlines()) == sorted(["2 key(s) sealed", *(f"sealed {kid}" for kid in kids)])
    assert all("jwk" not in json.loads(p.read_text()) for p in (tmp_path / "keys").glob("*.json"))
    assert run("keys", "seal").stdout.strip() == "0 key(s) sealed"
    assert run("keys", "list").exit_code == 0


def test_keys_sealed_under_another_secret_are_one_line_not_a_traceback(monkeypatch, tmp_path, shared):
    monkeypatch.setenv("IDP_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("IDP_CONFIG_FILE", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("IDP_KEYS_DIR", str(shared / "keys"))  # sealed under the default SECRET_KEY
    monkeypatch.setenv("IDP_SECRET_KEY", "another secret, of thirty-two characters or more")
    result = CliRunner().invoke(cli, ["keys", "list"], obj=ScriptInfo(create_app=_create_app))
    assert_refused(result, "signing keys: 2 signing key(s) in ")
    assert "do not open with this SECRET_KEY" in result.stderr


def test_serve_refuses_keys_sealed_under_another_secret_before_it_opens_a_port(monkeypatch, tmp_path, shared):
    """Else every worker refused them at its start, granian respawned it, and stopped on the
    crash loop: a traceback per worker, with the port open meanwhile."""
    monkeypatch.setenv("IDP_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("IDP_CONFIG_FILE", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("IDP_KEYS_DIR", str(shared / "keys"))  # sealed under the default SECRET_KEY

    def run(*args):
        return CliRunner().invoke(cli, list(args), obj=ScriptInfo(create_app=_create_app))

    assert run("db", "upgrade").exit_code == 0
    monkeypatch.setenv("IDP_SECRET_KEY", "another secret, of thirty-two characters or more")
    result = run("serve", "--dev", "--workers", "1", "--bind", "127.0.0.1:1")  # port 1: never bound here
    assert_refused(result, "signing keys: 2 signing key(s) in ")
    assert "do not open with this SECRET_KEY" in result.stderr


def test_keys_import_moves_a_key_directory_into_the_database(make_app, shared, tmp_path):
    in_dir = make_app()
    app = create_app({**_config(tmp_path / "unused", tmp_path / "idp.sqlite3"), "KEYS_STORE": "database"})
    idp = runner_for(app)
    assert keys_table(idp) == []
    result = idp("keys", "import", str(shared / "keys"))
    assert result.exit_code == 0, result.output
    kids = sorted(k["kid"] for k in in_dir.extensions["idp.keyring"].list())
    assert sorted(result.stdout.splitlines()) == sorted(["2 key(s) imported", *(f"imported {k}" for k in kids)])
    assert keys_table(idp) == keys_table(runner_for(in_dir))
    assert idp("keys", "import", str(shared / "keys")).stdout.strip() == "0 key(s) imported"
    assert_refused(runner_for(in_dir)("keys", "import", str(shared / "keys")), "KEYS_STORE is not database")
    assert not (tmp_path / "unused").exists()


def test_keys_import_refuses_a_directory_with_a_record_it_cannot_read(make_app, shared, tmp_path):
    """A truncated key file would be left behind, and relying parties miss a kid they may hold."""
    source = tmp_path / "source"
    shutil.copytree(shared / "keys", source)
    victim = sorted(source.glob("*.json"))[0]
    victim.write_text(victim.read_text()[:40])
    app = create_app({**_config(tmp_path / "unused", tmp_path / "idp.sqlite3"), "KEYS_STORE": "database"})
    idp = runner_for(app)
    assert_refused(idp("keys", "import", str(source)), f"record(s) in {source}")
    assert keys_table(idp) == []


def test_every_command_refuses_a_secret_that_does_not_open_the_database_keys(monkeypatch, tmp_path):
    """As with a key directory: a shell without the servers' SECRET_KEY would print client
    secrets that no server accepts."""
    monkeypatch.setenv("IDP_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("IDP_CONFIG_FILE", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("IDP_KEYS_STORE", "database")
    monkeypatch.setenv("IDP_SECRET_KEY", "the servers' secret, thirty-two characters or more")

    def run(*args):
        return CliRunner().invoke(cli, list(args), obj=ScriptInfo(create_app=_create_app))

    assert run("db", "upgrade").exit_code == 0
    assert run("keys", "rotate", "--now").exit_code == 0
    assert run("clients", "list").exit_code == 0
    monkeypatch.setenv("IDP_SECRET_KEY", "another secret, of thirty-two characters or more")
    result = run("clients", "add", "svc1", "--grant-type", "client_credentials")
    assert_refused(result, "do not open with this SECRET_KEY")
    assert "secret" not in result.stdout


def test_serve_refuses_development_settings_and_a_per_process_store(idp, monkeypatch):
    monkeypatch.setenv("IDP_ENV", "development")
    assert_refused(idp("serve"), "IDP_ENV=production")
    for spelling in ("memory://", "MEMORY://"):  # the store's scheme is read in any case
        monkeypatch.setenv("IDP_REDIS_URL", spelling)
        assert_refused(idp("serve", "--dev", "--workers", "2"), "which each of the 2 workers would hold apart")
    monkeypatch.setenv("IDP_ENV", "production")
    assert_refused(idp("serve"), "IDP_SECRET_KEY")
    monkeypatch.setenv("IDP_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("IDP_REDIS_URL", "memory://")
    assert_refused(idp("serve", "--workers", "2"), "production needs IDP_REDIS_URL")
    monkeypatch.setenv("IDP_REDIS_URL", "redis://127.0.0.1:6379/0")
    assert_refused(idp("serve", "--workers", "1"), "production needs IDP_DATABASE_URL on PostgreSQL")
    monkeypatch.setenv("IDP_DATABASE_URL", "postgresql+psycopg://idp@127.0.0.1:5432/idp")  # not reached
    monkeypatch.setenv("IDP_THREADS", "0")
    assert_refused(idp("serve", "--workers", "1"), "THREADS must be a whole number of threads from 1 to 1024, got 0")


def test_serve_refuses_a_database_not_at_this_release_s_schema(idp, monkeypatch, tmp_path, shared):
    """idp.ops.schema: checked before any worker starts; a database at the heads passes."""
    import sqlite3

    from idp.ops import schema
    from tests.servers import free_port

    monkeypatch.setenv("IDP_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # not reached

    def serve_against(url):  # --dev: production refuses SQLite before any schema is read
        monkeypatch.setenv("IDP_DATABASE_URL", url)
        return idp("serve", "--dev", "--workers", "1")

    assert_refused(serve_against(f"sqlite:///{tmp_path / 'empty.sqlite3'}"),
                   "the database is at no revision (an empty database); this release needs "
                   f"{', '.join(sorted(schema.release_heads()))}: run `idp db upgrade` first")

    at_head = tmp_path / "at-head.sqlite3"
    shutil.copy(shared / "template.sqlite3", at_head)
    schema.check({"DATABASE_URL": f"sqlite:///{at_head}", "DATABASE_CONNECT_TIMEOUT": 5})  # what serve does before starting granian: no error

    newer = tmp_path / "newer.sqlite3"
    shutil.copy(at_head, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dfeedbeef'")
    assert_refused(serve_against(f"sqlite:///{newer}"),
                   "the database is at revision f00dfeedbeef, which this release does not know")

    unreachable = serve_against(f"postgresql+psycopg://idp:pw-not-printed@127.0.0.1:{free_port()}/idp")
    assert_refused(unreachable, "cannot read the database schema (OperationalError: ")
    assert "pw-not-printed" not in unreachable.output


def test_demo_prepares_everything_once(app, idp, monkeypatch):
    monkeypatch.setenv("IDP_DEMO_PASSWORD", "demo password 123")
    first = idp("demo")
    assert first.exit_code == 0, first.output
    assert "demo.seller@example.com  password: demo password 123" in first.stdout
    second = idp("demo")
    assert second.exit_code == 0 and "exists" in second.stdout and "demo password" not in second.stdout
    with app.app_context():
        assert {k["state"] for k in app.extensions["idp.keyring"].list()} == {"active"}
        assert db.session.scalar(select(func.count()).select_from(Account)) == 1


def test_db_upgrade_creates_the_schema(make_app, tmp_path):
    app = make_app()
    os.remove(tmp_path / "idp.sqlite3")
    result = runner_for(app)("db", "upgrade")
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert {"account", "client", "grant", "alembic_version"} <= set(inspect(db.engine).get_table_names())


# -- maintenance run prune -----------------------------------------------------


def test_maintenance_prune_deletes_families_ended_past_the_grace(app, idp):
    from datetime import datetime, timedelta, timezone

    from idp.models import RefreshToken

    now = datetime.now(timezone.utc)
    with app.app_context():
        for gid, ended in (("long-gone", now - timedelta(days=2)), ("just-ended", now - timedelta(hours=1))):
            db.session.add(Grant(id=gid, client_id="rp", scope="openid", expires_at=ended))
            db.session.add(RefreshToken(token_hash=keyed_hash(gid), grant_id=gid, client_id="rp", expires_at=ended))
        db.session.commit()
    result = idp("maintenance", "run", "prune")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("prune: 1 families, 1 refresh tokens, 0 orphaned refresh tokens, ")
    assert one(app, Grant, id="long-gone") is None and one(app, Grant, id="just-ended") is not None
    app.config["PRUNE_GRACE_DAYS"] = 0
    assert idp("maintenance", "run", "prune").output.startswith("prune: 1 families, ")
    assert one(app, Grant, id="just-ended") is None
    assert idp("tokens", "prune").exit_code != 0  # gone: the maintenance job does it


def test_serve_warns_of_a_redis_that_may_evict_a_revocation_mark(redis_url, capsys):
    import redis

    from idp.cli.serve import warn_if_redis_evicts

    url = redis_url
    r = redis.Redis.from_url(url, decode_responses=True)
    before = r.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        r.config_set("maxmemory-policy", "noeviction")
        warn_if_redis_evicts({"REDIS_URL": url})
        assert capsys.readouterr().err == ""
        r.config_set("maxmemory-policy", "volatile-lru")  # every key of ours has a TTL: all may go
        warn_if_redis_evicts({"REDIS_URL": url})
        assert "maxmemory-policy is volatile-lru" in capsys.readouterr().err
    finally:
        r.config_set("maxmemory-policy", before)
    warn_if_redis_evicts({"REDIS_URL": "redis://127.0.0.1:1/0"})  # out of reach: /readyz says so, not this
    warn_if_redis_evicts({"REDIS_URL": "memory://"})
    assert capsys.readouterr().err == ""
