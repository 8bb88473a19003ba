"""`idp` as the operator runs it (a process of its own): a bad setting, an unreachable or
unmigrated database, Redis out of reach, or a bad --bind ends with one ``Error:`` line and
exit status 2, never a traceback, and never the database password."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "secretpw-not-to-be-printed"


@pytest.fixture
def idp(tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    base.update(IDP_INSTANCE_PATH=str(tmp_path / "instance"), IDP_KEYS_DIR=str(tmp_path / "keys"),
                IDP_CONFIG_FILE=str(tmp_path / "none.toml"), IDP_CLIENTS_FILE=str(ROOT / "config/clients.toml"),
                PYTHONPATH=str(ROOT))

    def run(*args, **env):
        done = subprocess.run([sys.executable, "-c", "from idp.cli import main; main()", *args],
                              env={**base, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        return done.returncode, done.stdout + done.stderr

    return run


def refused(result, *words):
    code, output = result
    assert code == 2, output
    assert "Traceback" not in output and PASSWORD not in output, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and all(w in last for w in words), output


def test_settings_of_the_wrong_kind(idp, tmp_path):
    refused(idp("keys", "list", IDP_KEY_PUBLISH_AHEAD="1d"), "KEY_PUBLISH_AHEAD must be a whole number")
    (tmp_path / "bad.toml").write_text("a = [\n")
    refused(idp("keys", "list", IDP_CONFIG_FILE=str(tmp_path / "bad.toml")), "not valid TOML")
    (tmp_path / "a-file").write_text("")
    refused(idp("clients", "list", IDP_KEYS_DIR=str(tmp_path / "a-file")), "cannot start")


@pytest.mark.parametrize("url", [
    f"postgresql+psycopg://idp:{PASSWORD}@127.0.0.1:1/idp",  # nothing listens
    f"postgres://idp:{PASSWORD}@127.0.0.1/idp",  # a scheme SQLAlchemy does not know
])
def test_a_database_that_cannot_be_used(idp, url):
    code, output = idp("clients", "list", IDP_DATABASE_URL=url)
    refused((code, output), "DATABASE_URL")


def test_a_database_url_without_a_port_number(idp):
    refused(idp("clients", "list", IDP_DATABASE_URL=f"postgresql+psycopg://idp:{PASSWORD}@127.0.0.1:abc/idp"),
            "DATABASE_URL is not a database URL", "its port is not a number")


def test_a_database_not_migrated_yet(idp):
    refused(idp("clients", "list"), "not migrated", "idp db upgrade")


def test_a_database_at_an_older_schema_says_to_upgrade(idp):
    """A column missing (an older release's schema) is the same advice as a table missing."""
    assert idp("db", "upgrade", "b200cf09a41d")[0] == 0  # the first release's schema
    refused(idp("clients", "list"), "not migrated to this release", "idp db upgrade")


def test_a_postgresql_database_that_does_not_exist_is_not_called_unmigrated(idp, postgres_url):
    """Upgrading cannot create a database or a role: the advice would send the operator in a circle."""
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    for args in (("clients", "list"), ("db", "upgrade")):
        code, output = idp(*args, IDP_DATABASE_URL=missing)
        refused((code, output), "DATABASE_URL", "no_such_database")
        assert "not migrated" not in output


def test_redis_out_of_reach(idp):
    assert idp("demo")[0] == 0
    refused(idp("clients", "remove", "seller-dashboard", "--yes", IDP_REDIS_URL="redis://127.0.0.1:1/0"),
            "removed client seller-dashboard", "REDIS_URL")
    # The account's cached claims cannot be dropped after the commit: the sign-out goes on (it
    # has nothing in the store to delete: no token was issued), and ends with the one error.
    code, output = idp("logout", "everywhere", "demo.seller@example.com", IDP_REDIS_URL="redis://127.0.0.1:1/0")
    assert code == 2 and "Traceback" not in output and "ended 0 session(s)" in output, output
    assert "row cache: 1 entry(ies) not dropped after a commit (ConnectionError)" in output
    assert "Error: the change is saved, but the store (REDIS_URL) could not be reached" in output


@pytest.mark.parametrize("bind,words", [
    ("localhost:8000", ("IP address", "not a host name")),
    ("127.0.0.1:99999", ("port from 1 to 65535",)),
])
def test_serve_refuses_a_bind_it_cannot_use(idp, bind, words):
    refused(idp("serve", "--dev", "--workers", "1", "--bind", bind), *words)


def test_serve_refuses_a_config_file_that_is_not_toml_and_a_url_that_does_not_parse(idp, tmp_path):
    """`idp serve` reads the configuration itself (it builds no app): the same one-line errors
    as every other command, not a traceback."""
    bad = tmp_path / "bad.toml"
    bad.write_text('issuer = "https://id.example.com\n')
    refused(idp("serve", "--dev", "--workers", "1", IDP_CONFIG_FILE=str(bad)), "not valid TOML")
    refused(idp("serve", "--dev", "--workers", "1",
                IDP_DATABASE_URL=f"postgresql+psycopg://idp:{PASSWORD}@db:abc/idp"), "DATABASE_URL is not")


def test_an_argument_or_a_password_that_is_not_utf8_is_one_line(idp, tmp_path):
    """The shell hands such bytes over as lone surrogates, which no database or hash takes."""
    not_utf8 = "x\udcff"  # subprocess writes it as the byte 0xff
    assert idp("db", "upgrade")[0] == 0
    refused(idp("clients", "show", not_utf8), "not valid UTF-8")
    refused(idp("accounts", "disable", f"{not_utf8}@example.com"), "no account with the email")
    refused(idp("clients", "add", not_utf8, "--redirect-uri", "https://a.example/cb"), "a client id is")
    done = subprocess.run([sys.executable, "-c", "from idp.cli import main; main()", "accounts", "create",
                           "n@example.com", "--password-stdin"], input=b"pass\xffword123\n", capture_output=True,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("IDP_")},
                               "IDP_INSTANCE_PATH": str(tmp_path / "instance"), "IDP_KEYS_DIR": str(tmp_path / "keys"),
                               "IDP_CONFIG_FILE": str(tmp_path / "none.toml"), "PYTHONPATH": str(ROOT)},
                          cwd=tmp_path, timeout=120)
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 2 and "Traceback" not in output, output
    assert output.strip().splitlines()[-1] == "Error: the password on standard input is not UTF-8", output
