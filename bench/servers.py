#!/usr/bin/env python3
"""Which WSGI server for `idp serve`: gunicorn (sync, gthread) or granian (WSGI interface).

    python bench/servers.py                          # all three, 10 s per endpoint
    python bench/servers.py --servers sync,granian,granian-threads --duration 5 --rounds 3
    python bench/servers.py --json bench/out/servers.json

One throwaway PostgreSQL and one Redis (tests/servers.py) serve every run, with the schema,
one seller, one confidential client and one opaque access token made here through the
app's own code. Each server runs ``idp.wsgi:app`` with 2 workers and multiprocess metrics
(as `idp serve` does); each endpoint gets a warm-up, then wrk (2 threads, 16 connections)
on loopback. Rounds interleave the servers so a noisy neighbour hurts them alike; the
table shows the median round. After each run the IdP's own /metrics count is compared
with wrk's, which also checks that multiprocess aggregation sees every worker.

Everything started here is stopped by PID (process group) in a finally block.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.servers import free_port, start_postgres, start_redis  # noqa: E402

WRK = os.environ.get("WRK", "/usr/bin/wrk")
WORKERS, THREADS, CONNECTIONS = 2, 2, 16
CLIENT_ID, CLIENT_SECRET = "bench-rp", "bench-" + secrets.token_urlsafe(16)
SERVERS = {
    "sync": lambda port, threads: [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-k", "sync",
                                   "-b", f"127.0.0.1:{port}", "idp.wsgi:app"],
    "gthread": lambda port, threads: [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-k", "gthread",
                                      "--threads", str(threads), "-b", f"127.0.0.1:{port}", "idp.wsgi:app"],
    "granian": lambda port, threads: [sys.executable, "-m", "granian", "--interface", "wsgi",
                                      "--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(port),
                                      "--no-access-log", "idp.wsgi:app"],
    # granian's default is backpressure/2 (256) blocking threads per WSGI worker; this caps them
    "granian-threads": lambda port, threads: [
        sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", str(WORKERS), "--blocking-threads",
        str(threads), "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "idp.wsgi:app"],
}
LABELS = {"sync": "gunicorn sync", "gthread": "gunicorn gthread", "granian": "granian wsgi",
          "granian-threads": "granian wsgi -bt"}
ENDPOINTS = ["discovery", "jwks", "introspect", "userinfo"]


def set_up(env: dict) -> str:
    """Schema, seller, client; returns an opaque access token (openid email) for the seller."""
    os.environ.update(env)
    from idp import create_app
    from idp.crypto.secrets import keyed_hash
    from idp.extensions import db
    from idp.login.password import hash_password
    from idp.models import Account, Client
    from idp.oauth import tokens

    app = create_app()
    with app.app_context():
        if (REPO / "idp" / "migrations").is_dir():
            from flask_migrate import upgrade

            upgrade()
        else:
            db.create_all()
        account = Account(email="bench@example.com", email_verified=True, name="Bench",
                          password_hash=hash_password(secrets.token_urlsafe(12)))
        client = Client(client_id=CLIENT_ID, name="Bench RP", secret_hash=keyed_hash(CLIENT_SECRET),
                        redirect_uris=["https://rp.example.com/cb"], grant_types=["authorization_code"],
                        scopes=["openid", "email"], first_party=True,
                        token_endpoint_auth_method="client_secret_basic")
        db.session.add_all([account, client])
        db.session.commit()
        grant = tokens.new_grant(client, account, "openid email")
        return tokens.issue(client, grant, account, "openid email", id_token_wanted=False)["access_token"]


def wrk_scripts(tmp: Path, access_token: str) -> dict[str, list[str]]:
    """wrk arguments per endpoint (after the URL base is known)."""
    import base64

    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    post = tmp / "introspect.lua"
    post.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "token={access_token}&token_type_hint=access_token"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Authorization"] = "Basic {basic}"\n')
    return {
        "discovery": ["/.well-known/openid-configuration"],
        "jwks": ["/jwks"],
        "introspect": ["/introspect", "-s", str(post)],
        "userinfo": ["/userinfo", "-H", f"Authorization: Bearer {access_token}"],
    }


def check(base: str, access_token: str) -> None:
    """Each endpoint answers what the benchmark assumes, before it is hammered."""
    assert requests.get(base + "/.well-known/openid-configuration", timeout=10).json()["issuer"]
    assert requests.get(base + "/jwks", timeout=10).json()["keys"]
    info = requests.post(base + "/introspect", data={"token": access_token}, auth=(CLIENT_ID, CLIENT_SECRET),
                         timeout=10)
    assert info.status_code == 200 and info.json().get("active") is True, info.text
    me = requests.get(base + "/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10)
    assert me.status_code == 200 and me.json()["email"] == "bench@example.com", me.text


def start(name: str, threads: int, env: dict, tmp: Path) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    metrics_dir = Path(tempfile.mkdtemp(prefix="idp-metrics-", dir=tmp))
    log = tmp / f"{name}-{port}.log"
    proc = subprocess.Popen(SERVERS[name](port, threads), cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if requests.get(base + "/readyz", timeout=2).status_code == 200:
                    return proc, base, log
            except requests.RequestException:  # not listening yet, or still booting its workers
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready; log {log}:\n{log.read_text(errors='replace')[-2000:]}")
    except BaseException:
        stop(proc)
        raise


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own group (start_new_session): the workers too
            proc.wait()


METRICS_TOKEN = secrets.token_urlsafe(24)  # production serves /metrics only with one


def counted(base: str) -> float:
    text = requests.get(base + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("idp_http_request_duration_seconds_count{"))


def _seconds(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(base: str, args: list[str], duration: int) -> dict:
    path, extra = args[0], args[1:]
    cmd = [WRK, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency", *extra, base + path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    requests_ = re.search(r"^\s+(\d+) requests in", out, re.M)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p99_ms": _seconds(*p99.groups()) * 1000,
        "requests": int(requests_.group(1)),
        "non_2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)) else 0,
        "socket_errors": (re.search(r"Socket errors:.*", out) or [""])[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", default="sync,gthread,granian")
    ap.add_argument("--duration", type=int, default=10, help="seconds of wrk per endpoint")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of wrk before each measurement")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=8, help="threads per worker of gunicorn gthread and granian-threads")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    opts = ap.parse_args()
    names = opts.servers.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="idp-bench-servers-"))
    stops = []
    try:
        redis_url, stop_redis = start_redis(tmp / "redis")
        stops.append(stop_redis)
        database_url, stop_pg = start_postgres(tmp / "postgres")
        stops.append(stop_pg)
        env = {**os.environ, "IDP_ENV": "production", "IDP_SECRET_KEY": secrets.token_urlsafe(32),
               "IDP_ISSUER": "http://127.0.0.1:8000", "IDP_DATABASE_URL": database_url,
               "IDP_REDIS_URL": redis_url, "IDP_KEYS_DIR": str(tmp / "keys"), "IDP_ACCESS_TOKEN_TTL": "86400",
               "IDP_METRICS_TOKEN": METRICS_TOKEN,
               "IDP_INSTANCE_PATH": str(tmp / "instance"), "PYTHONPATH": str(REPO)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        access_token = set_up({k: v for k, v in env.items() if k.startswith("IDP_")})
        scripts = wrk_scripts(tmp, access_token)
        results: dict = {n: {e: [] for e in ENDPOINTS} for n in names}
        load = os.getloadavg()[0]
        for r in range(opts.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order each round
                proc, base, log = start(name, opts.threads, env, tmp)
                try:
                    check(base, access_token)
                    for endpoint in ENDPOINTS:
                        wrk(base, scripts[endpoint], opts.warmup)
                        before = counted(base)
                        res = wrk(base, scripts[endpoint], opts.duration)
                        res["metrics_counted"] = counted(base) - before - 1  # minus the first scrape
                        results[name][endpoint].append(res)
                        print(f"round {r + 1} {LABELS[name]:18} {endpoint:10} {res['rps']:8.0f} req/s  "
                              f"p99 {res['p99_ms']:7.1f} ms  non-2xx {res['non_2xx']}  "
                              f"wrk {res['requests']} / /metrics {res['metrics_counted']:.0f}", flush=True)
                finally:
                    stop(proc)
        report(results, names, opts, load)
        if opts.json:
            opts.json.parent.mkdir(parents=True, exist_ok=True)
            opts.json.write_text(json.dumps(results, indent=2))
    except BaseException:
        print(f"server logs kept in {tmp}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        for fn in reversed(stops):
            fn()


def report(results: dict, names: list[str], opts, load: float) -> None:
    print(f"\n{os.cpu_count()} cores (load {load:.1f} at start), {WORKERS} workers each, "
          f"wrk -t{THREADS} -c{CONNECTIONS} -d{opts.duration:g}s, --threads {opts.threads}, "
          f"median of {opts.rounds} round(s)\n")
    print("| endpoint | " + " | ".join(f"{LABELS[n]} req/s, p99" for n in names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for endpoint in ENDPOINTS:
        cells = []
        for n in names:
            runs = results[n][endpoint]
            rps = statistics.median(r["rps"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            cells.append(f"{rps:.0f}, {p99:.1f} ms")
        print(f"| {endpoint} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
