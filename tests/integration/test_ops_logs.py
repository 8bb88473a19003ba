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


def test_a_database_error_never_quotes_the_statement_values(app, seller, caplog):
    """The unexpected-error log line carries the exception; its text must hold no value the
    statement sent (here a password hash, in a duplicate account). PostgreSQL's own detail may
    still name the duplicate key (the email): the database's words, not our parameters."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    from idp.extensions import db
    from idp.models import Account

    db.session.add(Account(email=seller.email, password_hash="$argon2id$v=19$secret-looking-hash"))
    with pytest.raises(IntegrityError) as caught:
        db.session.commit()
    db.session.rollback()
    assert "secret-looking-hash" not in str(caught.value)
    assert "hidden due to hide_parameters" in str(caught.value)
