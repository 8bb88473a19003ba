"""Two IdP server processes behind one issuer share everything through PostgreSQL and Redis.

Production runs several `idp serve` processes behind a load balancer, so consecutive
requests of one browser or client land on different processes. Here A and B are two
`idp serve` (granian) processes on their own loopback ports with the same SECRET_KEY,
database, Redis and ISSUER (A's URL stands for the balancer's), and nothing else: each has
a KEYS_DIR of its own, unused, as on two hosts, since the signing keys live in the database
(KEYS_STORE=database). The tests send some requests to A and the next ones straight to B,
and nothing may depend on which process answered.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from idp import create_app
from idp.extensions import db
from tests.conftest import MIGRATIONS, PASSWORD, csrf_token, pkce_pair, register_client
from tests.servers import free_port, start_postgres, start_redis

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READY_TIMEOUT = 60.0
EMAIL = "two.processes@example.com"


def _set_up(config: dict) -> None:
    """Schema, one seller and one confidential client, written by this test process."""
    from idp.login.password import hash_password
    from idp.models import Account

    app = create_app(config)
    with app.app_context():
        if os.path.isdir(MIGRATIONS):
            from flask_migrate import upgrade

            upgrade()
        else:
            db.create_all()
        db.session.add(Account(email=EMAIL, email_verified=True, name="Two Processes",
                               password_hash=hash_password(PASSWORD)))
        db.session.commit()
        register_client("rp-web")
        db.session.remove()


def _serve(name: str, port: int, env: dict, tmp) -> tuple[subprocess.Popen, str]:
    log = open(tmp / f"{name}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from idp.cli import main; main()", "serve", "--dev", "--workers", "1",
         "--bind", f"127.0.0.1:{port}"],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the workers are stopped with it
    )
    return proc, str(tmp / f"{name}.log")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)  # the server process: graceful stop of its workers
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen, log: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or still booting its workers
            pass
        time.sleep(0.1)
    with open(log, errors="replace") as fh:
        raise RuntimeError(f"IdP at {url} not ready (exit {proc.poll()}); log:\n{fh.read()[-3000:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    """(A, B): base URLs of two IdP processes; the issuer is A's URL."""
    tmp = tmp_path_factory.mktemp("two-processes")
    redis_url, stop_redis = start_redis(tmp / "redis")
    request.addfinalizer(stop_redis)
    database_url, stop_postgres = start_postgres(tmp / "postgres")
    request.addfinalizer(stop_postgres)
    port_a, port_b = free_port(), free_port()
    a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    config = {"ISSUER": a, "SECRET_KEY": secrets.token_urlsafe(32), "KEYS_STORE": "database",
              "DATABASE_URL": database_url, "REDIS_URL": redis_url, "STORE_NAMESPACE": "e2e:",
              # slots longer than the run: each job runs exactly once in the two processes
              "LOGOUT_RETRY_INTERVAL": 10**9, "PRUNE_INTERVAL": 10**9, "KEY_CHECK_INTERVAL": 10**9,
              "LOG_FORMAT": "json"}
    _set_up(config)  # no signing keys yet: the servers, starting together, make them once
    env = {**os.environ, "IDP_INSTANCE_PATH": str(tmp / "instance"),
           **{f"IDP_{k}": str(v) for k, v in config.items()}}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    servers = [_serve(name, port, {**env, "IDP_KEYS_DIR": str(tmp / f"keys-{name}")}, tmp)
               for name, port in (("a", port_a), ("b", port_b))]
    for proc, _ in servers:
        request.addfinalizer(lambda proc=proc: _stop(proc))
    for url, (proc, log) in zip((a, b), servers):
        _wait_ready(url, proc, log)
    LOGS[:] = [log for _, log in servers]
    KEY_DIRS[:] = [tmp / "keys-a", tmp / "keys-b"]
    CONFIG.clear()
    CONFIG.update(config)
    return a, b


LOGS: list[str] = []  # the two servers' logs, once the cluster is up
KEY_DIRS: list = []  # the two servers' KEYS_DIR, which must stay unused
CONFIG: dict = {}  # the servers' settings, for a client registered by a test


class Browser:
    """A browser (one cookie jar) and the relying party rp-web, talking to either process."""

    CLIENT, SECRET, REDIRECT = "rp-web", "s3cret-rp-web", "https://rp.example.com/cb"

    def __init__(self, client: str | None = None):
        if client is not None:
            self.CLIENT, self.SECRET = client, "s3cret-" + client
        self.http = requests.Session()
        self.verifier, self.challenge = pkce_pair()

    def authorize(self, base: str) -> requests.Response:
        return self.http.get(base + "/authorize", allow_redirects=False, params={
            "response_type": "code", "client_id": self.CLIENT, "redirect_uri": self.REDIRECT,
            "scope": "openid email offline_access", "state": secrets.token_hex(4), "nonce": secrets.token_hex(4),
            "code_challenge": self.challenge, "code_challenge_method": "S256"})

    def sign_in(self, base: str) -> str:
        """Authorize and post the password form at ``base``; the code."""
        resp = self.authorize(base)
        assert resp.status_code == 302 and "/signin/" in resp.headers["Location"], resp.text
        form_url = urljoin(base + "/", urlsplit(resp.headers["Location"]).path)
        assert form_url.startswith(base)
        page = self.http.get(form_url)
        resp = self.http.post(form_url, allow_redirects=False, data={
            "csrf_token": csrf_token(page.text), "email": EMAIL, "password": PASSWORD})
        return self.code(resp)

    def code(self, resp) -> str:
        assert resp.status_code == 302, resp.text
        assert resp.headers["Location"].startswith(self.REDIRECT), resp.headers["Location"]
        return parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]

    def token(self, base: str, **data) -> requests.Response:
        return requests.post(base + "/token", data=data, auth=(self.CLIENT, self.SECRET), timeout=10)

    def redeem(self, base: str, code: str) -> dict:
        resp = self.token(base, grant_type="authorization_code", code=code, redirect_uri=self.REDIRECT,
                          code_verifier=self.verifier)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def introspect(self, base: str, token: str) -> dict:
        resp = requests.post(base + "/introspect", data={"token": token}, auth=(self.CLIENT, self.SECRET), timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()


def userinfo(base: str, access_token: str) -> requests.Response:
    return requests.get(base + "/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10)


def test_both_publish_the_keys_they_made_once_in_the_database(cluster):
    a, b = cluster
    jwks = [requests.get(base + "/jwks", timeout=10).json() for base in (a, b)]
    assert jwks[0] == jwks[1]
    assert sorted(k["alg"] for k in jwks[0]["keys"]) == ["ES256", "RS256"]  # not one pair per process
    assert not any(d.exists() for d in KEY_DIRS)


def test_signed_in_at_a_code_redeemed_at_b(cluster):
    a, b = cluster
    rp = Browser()
    tokens = rp.redeem(b, rp.sign_in(a))
    assert {"access_token", "id_token", "refresh_token"} <= tokens.keys()
    assert userinfo(b, tokens["access_token"]).json()["email"] == EMAIL


def test_token_issued_by_a_introspects_active_at_b(cluster):
    a, b = cluster
    rp = Browser()
    access_token = rp.redeem(a, rp.sign_in(a))["access_token"]
    info = rp.introspect(b, access_token)
    assert info["active"] is True and info["client_id"] == rp.CLIENT and info["iss"] == a


def test_revoked_at_a_is_inactive_at_b_on_the_next_request(cluster):
    a, b = cluster
    rp = Browser()
    access_token = rp.redeem(a, rp.sign_in(a))["access_token"]
    assert rp.introspect(b, access_token)["active"] is True
    resp = requests.post(a + "/revoke", data={"token": access_token}, auth=(rp.CLIENT, rp.SECRET), timeout=10)
    assert resp.status_code == 200, resp.text
    assert rp.introspect(b, access_token) == {"active": False}
    assert userinfo(b, access_token).status_code == 401


def test_single_sign_on_session_from_a_works_at_b(cluster):
    a, b = cluster
    rp = Browser()
    rp.redeem(b, rp.sign_in(a))
    again = rp.authorize(b)  # same browser, other process: no sign-in page
    tokens = rp.redeem(a, rp.code(again))
    assert userinfo(b, tokens["access_token"]).status_code == 200


def test_refresh_token_reused_at_b_revokes_the_family_a_issued(cluster):
    a, b = cluster
    rp = Browser()
    first = rp.redeem(a, rp.sign_in(a))
    rotated = rp.token(a, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    reused = rp.token(b, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert userinfo(a, second["access_token"]).status_code == 401
    after = rp.token(a, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"


def test_each_maintenance_job_ran_in_one_of_the_two_processes(cluster):
    """Both servers look at the jobs when they start; the shared store lets one run each."""
    deadline, ran = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        texts = [open(log, encoding="utf-8", errors="replace").read() for log in LOGS]
        ran = {job: sum(text.count(f"maintenance job {job}: ") for text in texts) for job in ("logout-retry", "prune", "keys")}
        if all(ran.values()):
            break
        time.sleep(0.2)  # waiting for another process's log, not for the clock
    assert ran == {"logout-retry": 1, "prune": 1, "keys": 1}
    assert not any(" failed: " in line or "cannot claim" in line for log in LOGS for line in open(log))


def test_every_log_line_of_both_servers_is_json(cluster):
    """LOG_FORMAT=json: ours and granian's own lines alike (not the CLI's --dev warning)."""
    records = [json.loads(line) for log in LOGS for line in open(log)
               if not line.startswith("serving the development settings")]
    loggers = {r["logger"] for r in records}
    assert "_granian" in loggers and "idp.maintenance" in loggers
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)


def test_signed_in_at_a_signed_out_at_b_tells_the_relying_party_and_ends_sso_at_a(cluster):
    """RP-initiated logout at B of a session A started: B ends it, the relying party's
    back-channel endpoint gets a logout token with the session's sid, A asks for the password
    again, and the tokens granted offline_access refresh on at A without an ID token."""
    from joserfc import jwt

    from tests.integration.logout_helpers import LogoutReceiver

    a, b = cluster
    with LogoutReceiver() as receiver:
        app = create_app(CONFIG)
        with app.app_context():
            register_client("rp-bc", backchannel_logout_uri=receiver.url)
            db.session.remove()
        rp = Browser("rp-bc")
        tokens = rp.redeem(a, rp.sign_in(a))
        sid = jwt.decode(tokens["id_token"], _jwks(a)).claims["sid"]
        bye = rp.http.get(b + "/logout", allow_redirects=False, params={
            "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://rp.example.com/bye",
            "state": "s-1"})
        assert bye.status_code == 303 and bye.headers["Location"] == "https://rp.example.com/bye?state=s-1", bye.text
        assert receiver.delivered.wait(30), "no logout token reached the relying party"
        logout_token = receiver.received[0]["form"]["logout_token"][0]
        claims = jwt.decode(logout_token, _jwks(a)).claims
        assert claims["sid"] == sid and claims["aud"] == "rp-bc" and claims["iss"] == a
    assert "/signin/" in rp.authorize(a).headers["Location"]  # no single sign-on left at A
    # offline_access was granted: the family lives on, but refreshes without an ID token (the
    # session its sid named is over; OIDC Core §12.2)
    refreshed = rp.token(a, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 200 and "id_token" not in refreshed.json(), refreshed.text


def _jwks(base: str):
    from joserfc.jwk import KeySet

    return KeySet.import_key_set(requests.get(base + "/jwks", timeout=10).json())
