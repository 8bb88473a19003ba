"""Health probes and Prometheus metrics (idp.ops), on both stacks.

The metrics registry is per process, shared by every app a test run builds, so the
tests compare counts before and after what they do.
"""

import os
import secrets
import socket
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone

import pytest
from freezegun import freeze_time
from prometheus_client.parser import text_string_to_metric_families

from idp import create_app
from idp.ops import turns
from tests.servers import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def scrape(client, **kwargs) -> dict:
    resp = client.get("/metrics", **kwargs)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.content_type.startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.get_data(as_text=True)) for s in family.samples}


def sample(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def request_series(samples: dict) -> set:
    return {labels for name, labels in samples if name == "idp_http_request_duration_seconds_count"}


def test_healthz_is_alive_and_not_cached(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}
    assert resp.headers["Cache-Control"] == "no-store"


def test_readyz_checks_database_and_store(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"status": "ok", "checks": {"database": "ok", "store": "ok", "keys": "ok"}}
    assert resp.headers["Cache-Control"] == "no-store"


def test_readyz_503_names_the_store_when_redis_is_down(app):
    down = create_app({**_same_world(app), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    resp = down.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json() == {"status": "unavailable",
                               "checks": {"database": "ok", "store": "unavailable", "keys": "ok"}}
    assert resp.headers["Cache-Control"] == "no-store"


def test_readyz_503_names_the_database_when_it_is_down(app, tmp_path):
    down = create_app({**_same_world(app), "DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/idp.sqlite3"})
    resp = down.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["checks"] == {"database": "unavailable", "store": "ok", "keys": "ok"}


@pytest.mark.parametrize("app", ["sqlite"], indirect=True)  # the store of that world; the database is the silent one
def test_readyz_503_when_the_database_accepts_and_never_answers(app):
    """DATABASE_CONNECT_TIMEOUT bounds a connection to a PostgreSQL that hangs (a listener that
    never speaks): the probe answers 503 instead of holding the request."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshakes; nobody ever answers libpq
    url = f"postgresql+psycopg://idp@127.0.0.1:{silent.getsockname()[1]}/idp"
    try:
        down = create_app({**_same_world(app), "DATABASE_URL": url, "DATABASE_CONNECT_TIMEOUT": 2})
        answers = []
        probe = threading.Thread(target=lambda: answers.append(down.test_client().get("/readyz")), daemon=True)
        probe.start()
        probe.join(60)  # a bound on the test itself, not a measurement
        assert answers, "/readyz still waiting on the database"
        assert answers[0].status_code == 503
        assert answers[0].get_json()["checks"] == {"database": "unavailable", "store": "ok", "keys": "ok"}
    finally:
        silent.close()


def test_readyz_gives_the_turn_to_other_requests_while_it_checks(app, monkeypatch):
    """A database that stalls without refusing connections makes the probe slow, not the worker."""
    from werkzeug.test import EnvironBuilder

    from idp.ops import health

    seen = []
    check = health.database_ok
    monkeypatch.setattr(health, "database_ok", lambda: seen.append(turns._turn.locked()) or check())
    body = b"".join(turns.middleware(app)(EnvironBuilder(path="/readyz").get_environ(), lambda *a: None))
    assert seen == [False] and b'"database":"ok"' in body.replace(b" ", b"")


class PausableProxy:
    """A TCP proxy on loopback to a real server; paused, it holds every byte both ways, as a
    stalled server (SIGSTOP, a hung host) does, with the connections still established."""

    def __init__(self, port: int):
        self.upstream, self.flowing = port, threading.Event()
        self.flowing.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream))
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(65536):
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def close(self):
        self.flowing.set()
        self.listener.close()


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_readyz_503_within_its_timeout_when_an_established_database_connection_stalls(app):
    """psycopg has no timeout on an established connection: the probe's own bound answers 503,
    a probe during the stall does not start a second check, and readiness returns with the database."""
    from sqlalchemy.engine import make_url

    url = make_url(app.config["DATABASE_URL"])
    proxy = PausableProxy(url.port)
    stalled = create_app({**_same_world(app), "DATABASE_URL": url.set(port=proxy.port)
                          .render_as_string(hide_password=False), "READY_TIMEOUT": 60})
    client = stalled.test_client()
    try:
        # A pooled connection through the proxy, given all the time a loaded machine may need
        assert client.get("/readyz").status_code == 200
        proxy.flowing.clear()
        stalled.config["READY_TIMEOUT"] = 1
        answers = []

        def probes():
            answers.append(client.get("/readyz"))
            stalled.config["READY_TIMEOUT"] = 60  # the next probe must not wait on the stuck check at all
            answers.append(client.get("/readyz"))

        probe = threading.Thread(target=probes, daemon=True)
        probe.start()
        probe.join(30)  # a bound on the test itself, not a measurement
        assert len(answers) == 2, "/readyz still waiting on the stalled database"
        for resp in answers:
            assert resp.status_code == 503
            assert resp.get_json()["checks"] == {"database": "unavailable", "store": "ok", "keys": "ok"}
        waiting = [t for t in threading.enumerate() if t.name == "idp-readyz-database"]
        assert len(waiting) == 1, "a second probe started a second database check"
        proxy.flowing.set()
        waiting[0].join(60)
        assert client.get("/readyz").status_code == 200
    finally:
        proxy.close()
        with stalled.app_context():
            from idp.extensions import db
            db.engine.dispose()


def test_readyz_503_names_the_keys_when_the_key_directory_is_gone(app, tmp_path, keys_dir):
    """KEYS_DIR unmounted or emptied under a running process: it can no longer sign."""
    import shutil

    own = tmp_path / "keys"
    shutil.copytree(keys_dir, own)
    running = create_app({**_same_world(app), "KEYS_DIR": str(own)})
    client = running.test_client()
    assert client.get("/readyz").get_json()["checks"]["keys"] == "ok"
    shutil.rmtree(own)
    with freeze_time(datetime.now(timezone.utc)) as clock:
        clock.tick(2)  # the ring looks at the directory at most once a second
        resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["checks"] == {"database": "ok", "store": "ok", "keys": "unavailable"}


def _same_world(app) -> dict:
    return {k: app.config[k] for k in ("ISSUER", "KEYS_DIR", "DATABASE_URL", "REDIS_URL", "STORE_NAMESPACE")}


def test_metrics_count_failed_signins_issued_tokens_and_requests(flow, client):
    before = scrape(client)
    resp = flow.sign_in(flow.authorize(), password="not the password")
    assert resp.status_code == 200 and "Incorrect email or password." in resp.get_data(as_text=True)
    assert flow.redeem(flow.login_code()).status_code == 200
    after = scrape(client)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("idp_signin_failures_total", reason="bad_credentials") == 1
    for kind in ("access_token", "id_token", "refresh_token"):
        assert delta("idp_tokens_issued_total", grant_type="authorization_code", kind=kind) == 1, kind
    assert delta("idp_http_request_duration_seconds_count", endpoint="oauth.token", method="POST", status="2xx") == 1
    # the failed one shows the form again (2xx), the other one answers with the code (3xx)
    for status in ("2xx", "3xx"):
        assert delta("idp_http_request_duration_seconds_count", endpoint="login.password", method="POST",
                     status=status) == 1, status


@pytest.mark.parametrize("path, endpoint", [
    ("/.well-known/openid-configuration", "discovery.openid_configuration"),  # answered before Flask
    ("/healthz", "ops_health.healthz"),  # a Flask view
])
def test_request_duration_counts_from_arrival_at_the_worker(client, path, endpoint):
    """A request that waited 30 s for its worker's turn (idp.ops.turns stamps its arrival
    before the wait) is timed at 30 s or more, not from when it started to run."""
    labels = dict(endpoint=endpoint, method="GET", status="2xx")
    before = scrape(client)
    resp = client.get(path, environ_base={turns.ARRIVED: time.perf_counter() - 30})
    assert resp.status_code == 200
    after = scrape(client)
    assert sample(after, "idp_http_request_duration_seconds_sum", **labels) \
        - sample(before, "idp_http_request_duration_seconds_sum", **labels) >= 30
    for le in ("5.0", "+Inf"):
        grew = sample(after, "idp_http_request_duration_seconds_bucket", le=le, **labels) \
            - sample(before, "idp_http_request_duration_seconds_bucket", le=le, **labels)
        assert grew == (1 if le == "+Inf" else 0), le


def test_refresh_rotation_and_reuse_are_counted(flow, client):
    """Needs the refresh_token grant (idp.oauth.refresh) registered at /token."""
    refresh_token = flow.redeem(flow.login_code()).get_json()["refresh_token"]
    before = scrape(client)

    def refresh(token):
        return client.post("/token", data={"grant_type": "refresh_token", "refresh_token": token},
                           auth=(flow.rp.client_id, flow.rp.secret))

    assert refresh(refresh_token).status_code == 200
    reused = refresh(refresh_token)
    assert reused.status_code == 400 and reused.get_json()["error"] == "invalid_grant"
    after = scrape(client)
    assert sample(after, "idp_refresh_token_reuse_total") - sample(before, "idp_refresh_token_reuse_total") == 1
    for kind in ("access_token", "refresh_token"):
        labels = dict(grant_type="refresh_token", kind=kind)
        assert sample(after, "idp_tokens_issued_total", **labels) - sample(before, "idp_tokens_issued_total",
                                                                           **labels) == 1, kind


def test_label_values_stay_bounded_under_random_paths_and_methods(client):
    def junk(method, path):
        assert client.open(path, method=method).status_code in (400, 404, 405)

    for method in ("GET", "POST", "BREW"):  # every series these requests can reach, once
        junk(method, "/warm-up")
        junk(method, "/signin/warm-up/password")
    scrape(client)  # the scrape's own series too: run alone, this test's first scrape makes it
    known = request_series(scrape(client))
    for _ in range(50):
        word = secrets.token_hex(6)
        method = secrets.choice(["GET", "POST", "X" + word.upper()])
        junk(method, secrets.choice([f"/{word}", f"/{word}/{word}.php", f"/signin/{word}/password"]))
    assert request_series(scrape(client)) == known


def test_metrics_token_is_required_when_configured(app, client):
    app.config["METRICS_TOKEN"] = "metrics-" + secrets.token_hex(8)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {app.config['METRICS_TOKEN']}"}):
        resp = client.get("/metrics", headers=headers)
        assert resp.status_code == 401, headers
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert "idp_" not in resp.get_data(as_text=True)
    scrape(client, headers={"Authorization": f"Bearer {app.config['METRICS_TOKEN']}"})


def test_production_keeps_metrics_off_without_a_token(app, client):
    app.config["ENV"] = "production"
    resp = client.get("/metrics")
    assert resp.status_code == 404 and "METRICS_TOKEN" in resp.get_data(as_text=True)
    assert "idp_" not in resp.get_data(as_text=True)
    app.config["METRICS_TOKEN"] = "metrics-" + secrets.token_hex(8)
    assert client.get("/metrics").status_code == 401
    scrape(client, headers={"Authorization": f"Bearer {app.config['METRICS_TOKEN']}"})


def test_multiprocess_mode_adds_up_every_worker(tmp_path):
    """Two worker processes count; a third (any worker answering /metrics) sees the sum."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": REPO}
    worker = "from idp.ops import metrics; metrics.token_issued('client_credentials', 'access_token')"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", worker], env=env, check=True, cwd=REPO, timeout=60)
    reader = textwrap.dedent("""
        from prometheus_client import generate_latest
        from idp.ops import metrics
        print(generate_latest(metrics.registry()).decode())
    """)
    out = subprocess.run([sys.executable, "-c", reader], env=env, check=True, cwd=REPO, timeout=60,
                         capture_output=True, text=True).stdout
    assert 'idp_tokens_issued_total{grant_type="client_credentials",kind="access_token"} 2.0' in out


def test_prepare_multiprocess_refuses_to_run_after_the_metrics_exist():
    from idp import ops

    with pytest.raises(RuntimeError, match="before create_app"):
        ops.prepare_multiprocess()
