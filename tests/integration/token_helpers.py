"""Helpers shared by the token-endpoint suites (refresh, client credentials, introspection,
revocation, JWT access tokens, bad input)."""

from __future__ import annotations

import contextlib

from sqlalchemy import event

from idp.extensions import db
from tests.conftest import register_client

API = "https://api.example.com"
ORDERS = "https://orders.example.com"


def backend(client_id="backend-api", **fields):
    """A confidential machine client: client_credentials, and the caller of /introspect."""
    fields.setdefault("grant_types", ["client_credentials"])
    fields.setdefault("scopes", ["api:read", "api:write"])
    return register_client(client_id, redirect_uris=[], first_party=False, post_logout_redirect_uris=[], **fields)


def auth_of(rp):
    return (rp.client_id, rp.secret)


def login(flow, **authorize) -> dict:
    resp = flow.redeem(flow.login_code(**authorize))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def refresh(http, rp, refresh_token, **extra):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    if rp.token_endpoint_auth_method == "none":
        data.setdefault("client_id", rp.client_id)
        return http.post("/token", data=data)
    return http.post("/token", data=data, auth=auth_of(rp))


def introspect(http, caller, token, **extra):
    return http.post("/introspect", data={"token": token, **extra}, auth=auth_of(caller))


def revoke(http, caller, token, **extra):
    data = {"token": token, **extra}
    if caller.token_endpoint_auth_method == "none":
        data.setdefault("client_id", caller.client_id)
        return http.post("/revoke", data=data)
    return http.post("/revoke", data=data, auth=auth_of(caller))


def error_of(resp) -> tuple[int, str]:
    assert resp.is_json, resp.get_data(as_text=True)
    assert resp.headers.get("Cache-Control") == "no-store"
    return resp.status_code, resp.get_json().get("error")


def active(resp) -> bool:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    if not body["active"]:
        assert body == {"active": False}
    return body["active"]


@contextlib.contextmanager
def count_io(app):
    """Count SQL statements and store calls made inside the block (a spy, not a mock)."""
    seen = {"sql": [], "store": []}
    store = app.extensions["idp.store"]
    originals = {}
    for name in ("put", "add", "get", "get_many", "consume", "delete", "incr", "sadd", "smembers", "ttl_of",
                 "put_indexed", "put_checked", "get_many_following"):
        original = getattr(store, name)
        originals[name] = original

        def spy(*args, _name=name, _original=original, **kwargs):
            seen["store"].append(_name)
            return _original(*args, **kwargs)

        setattr(store, name, spy)

    def on_sql(conn, cursor, statement, parameters, context, executemany):
        seen["sql"].append(statement.split(None, 1)[0].upper())
        seen.setdefault("statements", []).append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", on_sql)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_sql)
        for name in originals:
            delattr(store, name)
