"""PostgreSQL or Redis out of reach: 503 with Retry-After, and one log line (idp.errors).

A relying party, a resource server or the mobile app can tell "try again shortly" from a
bug (500) and a refusal (4xx); the log gets a line per request with its id and the
driver's reason, not a traceback per request for the length of an outage.
"""

import base64
import logging

import pytest

from idp import create_app
from tests.conftest import register_client
from tests.servers import free_port


def _same_world(app, **changes) -> dict:
    keep = ("ISSUER", "KEYS_DIR", "DATABASE_URL", "REDIS_URL", "STORE_NAMESPACE")
    return {**{k: app.config[k] for k in keep}, **changes}


@pytest.fixture
def backend(app):
    """A confidential client allowed client_credentials, registered while all is well."""
    return register_client("rp-backend", grant_types=["client_credentials"], scopes=["api:read"])


def _basic(rp) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{rp.client_id}:{rp.secret}".encode()).decode()}


def _assert_unavailable_json(resp):
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.headers["Retry-After"] == "5"
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    assert body["error"] == "temporarily_unavailable"
    assert "try again shortly (request id " in body["error_description"]
    return body["error_description"].rsplit(" ", 1)[1].rstrip(")")


def down_worlds(app, tmp_path):
    return {
        "redis": _same_world(app, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"),
        "database": _same_world(app, DATABASE_URL=f"sqlite:///{tmp_path}/missing/dir/idp.sqlite3"),
    }


@pytest.mark.parametrize("down", ["redis", "database"])
def test_token_and_introspection_answer_503_with_retry_after(app, backend, tmp_path, caplog, down):
    client = create_app(down_worlds(app, tmp_path)[down]).test_client()
    with caplog.at_level(logging.WARNING, logger="idp"):
        token = client.post("/token", data={"grant_type": "client_credentials", "scope": "api:read"},
                            headers=_basic(backend))
        request_id = _assert_unavailable_json(token)
        _assert_unavailable_json(client.post("/introspect", data={"token": "x" * 43}, headers=_basic(backend)))
    lines = [r for r in caplog.records if r.name == "idp"]
    assert any(request_id in r.getMessage() and r.getMessage().startswith("dependency unavailable")
               for r in lines), [r.getMessage() for r in lines]
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in lines)


@pytest.mark.parametrize("down", ["redis", "database"])
def test_a_page_answers_503_with_retry_after(app, rp, tmp_path, down):
    client = create_app(down_worlds(app, tmp_path)[down]).test_client()
    resp = client.get("/authorize", query_string={
        "response_type": "code", "client_id": rp.client_id, "redirect_uri": rp.redirect_uris[0], "scope": "openid",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"})
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "5"
    page = resp.get_data(as_text=True)
    assert "briefly unavailable" in page and "Request id: " in page and "Traceback" not in page


def test_a_bug_is_still_a_500(app, backend, monkeypatch):
    from idp.oauth import tokens

    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not an outage")

    monkeypatch.setattr(tokens, "issue_client_credentials", broken)
    resp = app.test_client().post("/token", data={"grant_type": "client_credentials", "scope": "api:read"},
                                  headers=_basic(backend))
    assert resp.status_code == 500 and resp.get_json()["error"] == "server_error"
    assert "Retry-After" not in resp.headers


@pytest.fixture
def replica_redis(tmp_path, monkeypatch):
    """A Redis of this test's own, turned into a replica (of nobody) as a failover turns the
    old primary: it still answers, but every write is refused with READONLY."""
    import redis

    from tests.servers import start_redis

    monkeypatch.delenv("IDP_TEST_REDIS_URL", raising=False)  # never the suite's shared server
    url, stop = start_redis(tmp_path)
    admin = redis.Redis.from_url(url)
    admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
    yield url, admin
    admin.close()
    stop()


def test_a_redis_that_refuses_writes_is_an_outage_and_its_connections_are_dropped(app, backend, rp,
                                                                                   replica_redis):
    url, admin = replica_redis
    other = create_app(_same_world(app, REDIS_URL=url))
    client = other.test_client()
    cc = {"grant_type": "client_credentials", "scope": "api:read"}
    _assert_unavailable_json(client.post("/token", data=cc, headers=_basic(backend)))
    page = client.get("/authorize", query_string={
        "response_type": "code", "client_id": rp.client_id, "redirect_uri": rp.redirect_uris[0], "scope": "openid",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"})
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    store = other.extensions["idp.store"]
    held = getattr(store._local, "held", None)
    assert held is None or held.conn._sock is None  # the thread's connection to the replica is closed
    assert all(c._sock is None for c in store._r.connection_pool._available_connections)
    admin.execute_command("REPLICAOF", "NO", "ONE")  # a primary again: the next request goes through
    assert client.post("/token", data=cc, headers=_basic(backend)).status_code == 200


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_a_redis_that_takes_no_writes_for_now_is_an_outage_not_a_500(app, backend, rp, tmp_path, monkeypatch):
    """NOREPLICAS here (min-replicas-to-write with no replica); MISCONF (a failed snapshot on a
    full disk) and BUSY are answered alike: redis-py raises a bare ResponseError for each."""
    import redis

    from tests.servers import start_redis

    monkeypatch.delenv("IDP_TEST_REDIS_URL", raising=False)  # never the suite's shared server
    url, stop = start_redis(tmp_path)
    admin = redis.Redis.from_url(url)
    try:
        other = create_app(_same_world(app, REDIS_URL=url))
        client = other.test_client()
        cc = {"grant_type": "client_credentials", "scope": "api:read"}
        assert client.post("/token", data=cc, headers=_basic(backend)).status_code == 200
        admin.config_set("min-replicas-to-write", 1)
        _assert_unavailable_json(client.post("/token", data=cc, headers=_basic(backend)))  # a script (_send)
        page = client.get("/authorize", query_string={  # a write through redis-py's pool
            "response_type": "code", "client_id": rp.client_id, "redirect_uri": rp.redirect_uris[0],
            "scope": "openid", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256"})
        assert page.status_code == 503 and page.headers["Retry-After"] == "5"
        admin.config_set("min-replicas-to-write", 0)
        assert client.post("/token", data=cc, headers=_basic(backend)).status_code == 200
    finally:
        admin.close()
        stop()


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_a_pooled_connection_the_server_closed_meanwhile_is_a_503_then_replaced(app):
    """PostgreSQL restarted or failed over: the request that meets a pooled connection the
    server closed gets the 503 with Retry-After (one per worker), not a bare 500 from the WSGI
    server; the next request gets a new connection."""
    import psycopg
    from sqlalchemy import text

    from idp.extensions import db

    served = create_app(_same_world(app, MAINTENANCE=False))

    @served.get("/_probe")
    def probe():
        db.session.execute(text("SELECT 1"))
        return "ok"

    client = served.test_client()
    assert client.get("/_probe").status_code == 200
    with served.app_context():
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
        db.session.commit()
        url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
    resp = client.get("/_probe")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/_probe").status_code == 200
    with served.app_context():
        db.engine.dispose()


def test_a_path_cannot_start_a_log_line_of_its_own(app, tmp_path, caplog):
    """The path of a request the outage stopped is logged as sent, on one line: a %0a in it
    began a forged record in the text log (2026-... ERROR idp.keys ...)."""
    client = create_app(down_worlds(app, tmp_path)["redis"]).test_client()
    with caplog.at_level(logging.WARNING, logger="idp"):
        resp = client.get("/signin/abc%0a2026-12-07%2012:00:00,000%20ERROR%20idp.keys%20FORGED/password")
    assert resp.status_code == 503
    (line,) = [r.getMessage() for r in caplog.records if r.name == "idp"]
    assert "\n" not in line and "path=/signin/abc\\n2026-12-07 12:00:00,000 ERROR idp.keys FORGED/password" in line
