"""LOG_FORMAT (idp.ops.logs): JSON lines a log pipeline can read, the same for granian."""

import io
import json
import logging
import logging.config
import subprocess
import sys
from datetime import datetime

from idp.ops import logs


def _logger(fmt):
    stream = io.StringIO()
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False, "formatters": {"f": logs._formatter(fmt)},
        "handlers": {"s": {"class": "logging.StreamHandler", "formatter": "f", "stream": stream}},
        "loggers": {f"test.logs.{fmt}": {"handlers": ["s"], "level": "INFO", "propagate": False}},
    })
    return logging.getLogger(f"test.logs.{fmt}"), stream


def test_json_lines_carry_time_level_logger_message_and_extras():
    log, out = _logger("json")
    log.info("delivered %d of %d", 1, 2, extra={"client_id": "rp-web"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("job failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "INFO" and first["logger"] == "test.logs.json"
    assert first["message"] == "delivered 1 of 2" and first["client_id"] == "rp-web"
    assert datetime.fromisoformat(first["time"]).utcoffset().total_seconds() == 0
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc_info"]


def test_text_stays_one_plain_line():
    log, out = _logger("text")
    log.warning("plain")
    assert out.getvalue().rstrip().endswith("WARNING test.logs.text plain")


def test_granian_gets_the_json_formatter_for_every_logger_of_its_own():
    assert logs.granian_config("text") is None
    config = logs.granian_config("json")
    assert {f["()"] for f in config["formatters"].values()} == {"pythonjsonlogger.json.JsonFormatter"}
    assert set(config["loggers"]) >= {"_granian", "granian.access"}


def test_a_process_already_configured_is_left_alone():
    before = list(logging.root.handlers)  # pytest's own
    logs.configure("json")
    assert logging.root.handlers == before


def test_the_cli_logs_json_lines_when_asked(tmp_path):
    env = {"IDP_LOG_FORMAT": "json", "IDP_INSTANCE_PATH": str(tmp_path / "i"), "IDP_KEYS_DIR": str(tmp_path / "k"),
           "IDP_DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3", "IDP_CONFIG_FILE": str(tmp_path / "none.toml"),
           "PATH": "/usr/bin:/bin"}
    code = "from idp.cli import main; main()"
    subprocess.run([sys.executable, "-c", code, "db", "upgrade"], env=env, capture_output=True, check=True)
    done = subprocess.run([sys.executable, "-c", code, "maintenance", "run", "prune"], env=env, capture_output=True,
                          text=True, check=True)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert any(r["logger"] == "idp.maintenance" and r["message"].startswith("maintenance job prune: ") for r in lines)
    assert done.stdout.startswith("prune: ")


def _duplicate_account_error(seller):
    """An IntegrityError of a duplicate account: PostgreSQL's DETAIL names the email."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    from idp.extensions import db
    from idp.models import Account

    db.session.add(Account(email=seller.email, password_hash="$argon2id$v=19$secret-looking-hash"))
    with pytest.raises(IntegrityError) as caught:
        db.session.commit()
    db.session.rollback()
    return caught.value


def test_a_database_error_never_quotes_the_statement_values(app, seller):
    """The engine's hide_parameters: no value the statement sent (a password hash) in the error."""
    error = _duplicate_account_error(seller)
    assert "secret-looking-hash" not in str(error)
    assert "hidden due to hide_parameters" in str(error)


def test_an_unexpected_database_error_is_logged_without_the_values_it_names(app, seller, request):
    """log_unexpected (idp.errors) on a duplicate account: the traceback and PostgreSQL's
    SQLSTATE and constraint are in the line, the email (its DETAIL) is not, in either format."""
    from idp import errors

    error = _duplicate_account_error(seller)
    on_postgresql = "postgresql" in request.node.callspec.id
    if on_postgresql:
        assert seller.email in str(error) and seller.email in str(error.orig), "the DETAIL this test is about"
    for fmt in logs.FORMATS:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.config.DictConfigurator({}).configure_formatter(logs._formatter(fmt)))
        errors.log.addHandler(handler)
        try:
            try:
                raise error
            except Exception:
                request_id = errors.log_unexpected("/somewhere")
        finally:
            errors.log.removeHandler(handler)
        text = stream.getvalue()
        if fmt == "json":
            record = json.loads(text)
            assert request_id in record["message"]
            text = record["exc_info"]
        assert "Traceback (most recent call last):" in text and "_duplicate_account_error" in text
        assert "IntegrityError" in text
        assert seller.email not in text and "secret-looking-hash" not in text
        if on_postgresql:
            assert "sqlstate 23505" in text and "account_email_key" in text.replace('"', "")
            assert "[SQL: INSERT INTO account" in text
            assert "direct cause" in text  # psycopg's error, then SQLAlchemy's


def test_errors_other_than_the_database_s_are_logged_as_they_are(caplog):
    from idp import errors

    try:
        raise ValueError("a plain bug")
    except ValueError:
        errors.log_unexpected("/somewhere")
    assert "ValueError: a plain bug" in caplog.text


def test_a_data_error_that_quotes_the_input_is_logged_by_its_sqlstate(postgres_migrated):
    """PostgreSQL's class 22 messages quote the bad value itself, not only in a DETAIL."""
    import psycopg

    from idp import errors

    value = "secret" + "-value-42"  # never in this file's source, which the traceback quotes
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    errors.log.addHandler(handler)
    try:
        with psycopg.connect(postgres_migrated.replace("postgresql+psycopg://", "postgresql://")) as conn:
            try:
                conn.execute("SELECT %s::integer", [value])
            except psycopg.Error:
                errors.log_unexpected("/somewhere")
    finally:
        errors.log.removeHandler(handler)
    text = stream.getvalue()
    assert "InvalidTextRepresentation: sqlstate 22P02 (database detail withheld" in text
    assert value not in text


def test_the_development_server_logs_no_query_string(app, caplog):
    """`make run` serves with werkzeug, whose request lines named the whole URL: an RP's
    id_token_hint at /logout went to the log. The real server, on loopback, as `flask run`."""
    import socket
    import threading

    import requests
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hint = "eyJhbGciOiJFUzI1NiJ9.SECRET-HINT-PAYLOAD.SIGNATURE"
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            requests.get(f"http://127.0.0.1:{server.server_port}/logout",
                         params={"id_token_hint": hint, "state": "s"}, timeout=10, allow_redirects=False)
            # werkzeug logs the path decoded: a no-break space is no end of the query
            requests.get(f"http://127.0.0.1:{server.server_port}/logout?login_hint=a%C2%A0b&id_token_hint={hint}",
                         timeout=10, allow_redirects=False)
            requests.get(f"http://127.0.0.1:{server.server_port}/jwks", timeout=10)
            # a request line werkzeug cannot parse is quoted in its error message
            with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as raw:
                raw.sendall(f"GET /logout?id_token_hint={hint} x HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                raw.recv(1024)
    finally:
        server.shutdown()
        server.server_close()
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any('"GET /logout HTTP/1.1"' in line for line in lines), lines
    assert any('"GET /jwks HTTP/1.1" 200' in line for line in lines), lines
    assert any("Bad request syntax" in line for line in lines), lines
    assert "SECRET-HINT" not in caplog.text and "id_token_hint" not in caplog.text
