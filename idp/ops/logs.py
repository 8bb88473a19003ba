"""Logging: one line per record, as text (the default) or JSON (LOG_FORMAT=json).

A log pipeline (Loki, Elasticsearch, CloudWatch) reads JSON lines without a parsing rule
per format, as Ory's servers (LOG_FORMAT=json) and Keycloak (--log-console-output=json)
offer. python-json-logger writes the record's fields: ``time``, ``level``, ``logger``,
``message``, ``exc_info`` when there is one, and any ``extra`` the call passes. `idp serve`
gives granian the same formatter, so its own lines (start, workers, access log) are JSON too.

Configured once per process, like ``logging.basicConfig``: where the root logger already has
handlers (pytest's, or an embedding application's) nothing is changed. No record carries a
token or a secret, in either format (the callers' rule: idp.errors, idp.logout, idp.ops).

A database error's text is PostgreSQL's, not ours: its DETAIL names the values of a violated
constraint (``Key (email)=(...) already exists``) and a data error quotes the bad input.
``WithholdDatabaseDetail``, on the logger of unexpected errors (idp.errors), logs such an
error by class, SQLSTATE, constraint and our own SQL, with the full traceback; the bound
values were never in it (the engine's ``hide_parameters``).
"""

from __future__ import annotations

import logging
import logging.config
import traceback

import psycopg
from sqlalchemy.exc import StatementError

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _formatter(fmt: str, text: str = TEXT) -> dict:
    if fmt == "json":
        # time: ISO 8601 in UTC, from the record's own timestamp
        return {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": "%(levelname)s %(name)s %(message)s",
                "timestamp": "time", "rename_fields": {"levelname": "level", "name": "logger"}}
    return {"()": "logging.Formatter", "fmt": text}


def configure(fmt: str) -> None:
    """The process's logging, unless someone configured it already (but for the development
    server's request lines, withheld their query string whoever configured the rest)."""
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, WithholdQueryString) for f in werkzeug.filters):
        werkzeug.addFilter(WithholdQueryString())
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


def first_line(exc: BaseException) -> str:
    """The first line of the driver's message behind ``exc`` (host, port, reason), for a
    one-line log or CLI message; never a URL, which could hold a password."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0][:200] if lines else ""


def _summary(error: psycopg.Error) -> str:
    """A server-reported error without the values it quotes: class 22 (data exception)
    messages quote the input, every DETAIL may name a row's values."""
    diag, parts = error.diag, [f"sqlstate {error.sqlstate}"]
    if not error.sqlstate.startswith("22") and diag.message_primary:
        parts.append(diag.message_primary)
    if diag.constraint_name:
        parts.append(f"constraint {diag.constraint_name}")
    return "; ".join(parts) + " (database detail withheld from the log)"


def _server_error(exc: BaseException) -> psycopg.Error | None:
    found = exc.orig if isinstance(exc, StatementError) else exc
    return found if isinstance(found, psycopg.Error) and found.sqlstate else None


def _safe_text(exc: BaseException) -> str:
    server = _server_error(exc)
    if server is None:
        return traceback.format_exception_only(exc)[-1].rstrip("\n")
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    if isinstance(exc, StatementError):
        return f"{name}: ({type(server).__module__}.{type(server).__qualname__}) {_summary(server)}\n" \
               f"[SQL: {exc.statement}]"
    return f"{name}: {_summary(server)}"


def _chain(exc: BaseException) -> list[tuple[BaseException, str | None]]:
    """exc and the exceptions behind it, oldest first, each with the line that joins it to
    the next (as traceback prints them)."""
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    joins = [("\nThe above exception was the direct cause of the following exception:\n\n"
              if later.__cause__ is earlier else
              "\nDuring handling of the above exception, another exception occurred:\n\n")
             for later, earlier in zip(out, out[1:])]
    return list(zip(reversed(out), [*reversed(joins), None]))


class WithholdDatabaseDetail(logging.Filter):
    """Renders a record's exception itself when a server-reported database error is in its
    chain, with that error's message reduced (``_summary``); other records pass unchanged.
    Both formatters print a prepared ``exc_text`` when ``exc_info`` is cleared."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not any(_server_error(e) for e, _ in _chain(exc)):
            return True
        lines = []
        for error, join in _chain(exc):
            lines.append("Traceback (most recent call last):\n")
            lines.extend(traceback.format_tb(error.__traceback__))
            lines.append(_safe_text(error) + "\n" + (join or ""))
        record.exc_info, record.exc_text = None, "".join(lines).rstrip("\n")
        return True


class WithholdQueryString(logging.Filter):
    """The development server (`make run`, werkzeug's) logs each request line whole, and a
    query string can hold an id_token_hint (/logout, /authorize), a login_hint, or a token a
    client put in the wrong place. Its lines keep the method, path and protocol, as the
    access log of `idp serve` (granian: the path alone) does.

    The query is cut from its ``?`` to the line's last ASCII space, where the protocol
    starts, not to the first whitespace: werkzeug logs the path decoded (``%C2%A0`` is a
    no-break space there). Every argument is looked at: a request line it cannot parse
    comes quoted inside its error message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "?" in a for a in record.args):
            record.args = tuple(_without_query(a) if isinstance(a, str) else a for a in record.args)
        return True


def _without_query(text: str) -> str:
    start = text.find("?")
    if start < 0:
        return text
    end = text.rfind(" ")
    return text[:start] + (text[end:] if end > start else "")
