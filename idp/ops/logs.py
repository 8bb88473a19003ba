"""Logging: one line per record, as text (the default) or JSON (LOG_FORMAT=json).

A log pipeline (Loki, Elasticsearch, CloudWatch) reads JSON lines without a parsing rule
per format, as Ory's servers (LOG_FORMAT=json) and Keycloak (--log-console-output=json)
offer. python-json-logger writes the record's fields: ``time``, ``level``, ``logger``,
``message``, ``exc_info`` when there is one, and any ``extra`` the call passes. `idp serve`
gives granian the same formatter, so its own lines (start, workers, access log) are JSON too.

Configured once per process, like ``logging.basicConfig``: where the root logger already has
handlers (pytest's, or an embedding application's) nothing is changed. No record carries a
token or a secret, in either format (the callers' rule: idp.errors, idp.logout, idp.ops).
"""

from __future__ import annotations

import logging
import logging.config

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _formatter(fmt: str, text: str = TEXT) -> dict:
    if fmt == "json":
        # time: ISO 8601 in UTC, from the record's own timestamp
        return {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": "%(levelname)s %(name)s %(message)s",
                "timestamp": "time", "rename_fields": {"levelname": "level", "name": "logger"}}
    return {"()": "logging.Formatter", "fmt": text}


def configure(fmt: str) -> None:
    """The process's logging, unless someone configured it already."""
    if logging.root.handlers:
        return
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"idp": _formatter(fmt)},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "idp", "stream": "ext://sys.stderr"}},
        "root": {"level": "INFO", "handlers": ["console"]},
        # alembic's plugin set-up chatter at every start
        "loggers": {"alembic": {"level": "WARNING"}},
    })


def granian_config(fmt: str) -> dict | None:
    """granian's logging for `idp serve` in format ``fmt``; None keeps granian's own (text)."""
    if fmt != "json":
        return None
    from granian.log import LOGGING_CONFIG

    return {**LOGGING_CONFIG, "formatters": {name: _formatter(fmt) for name in LOGGING_CONFIG["formatters"]}}
