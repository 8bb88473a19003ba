#!/usr/bin/env python3
"""Benchmark our IdP against panva/node-oidc-provider, same machine, same run.

    python bench/run.py                      # both IdPs
    python bench/run.py --only reference     # reference only
    python bench/run.py --duration 10 --warmup 1 --flow-workers 8 --rounds 3

Each IdP gets its own redis-server (temp dir, free port, loopback only); ours also gets a
throwaway PostgreSQL cluster. Every endpoint is measured with wrk (2 threads, 16 connections,
fixed duration) against both, in rounds that alternate which goes first (a neighbour's load
or the machine's drift should not always fall on one side); each side's median round is
reported. The authorization code flow is driven by flow_driver.py the same way. Around
every run the CPU time of each IdP's own processes (server, workers, its Redis and, for
ours, PostgreSQL) is read from /proc, giving CPU per request (per flow), which moves much
less than req/s on a shared machine. Peak RSS (VmHWM) of every server process is read at
the end. Prints a table and writes bench/RESULTS.md. Everything started here is stopped by PID in a finally block.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import argon2
import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(ROOT))
import flow_driver  # noqa: E402
from idp.config import DEFAULTS as IDP_DEFAULTS  # noqa: E402

REF_DIR = BENCH / "reference"
DRIVERS = BENCH / "drivers"
CLIENTS_FILE = REF_DIR / "clients.example.json"  # both IdPs load these clients
BENCH_EMAIL = flow_driver.EMAIL
BENCH_PASSWORD = os.environ.get("BENCH_PASSWORD") or secrets.token_urlsafe(18)
PG_BIN = Path("/usr/lib/postgresql/15/bin")
WORKERS, THREADS, CONNECTIONS = 2, 2, 16

STARTED: list[subprocess.Popen] = []     # stopped in reverse order by stop_all()
EXTRA_PIDS: list[tuple[int, str]] = []   # (pid, start time) of children, e.g. cluster workers
TMP = Path(tempfile.mkdtemp(prefix="idp-bench-"))
LOAD_AT_START = "/".join(f"{x:.1f}" for x in os.getloadavg())  # others' load skews results

# The speed of the host itself: on a shared virtual machine it drifts from hour to hour, and
# not always alike for both runtimes (a run with our side 15% slower and the reference not
# was the host: the same code measured alike when interleaved with the previous commit's).
# CPU milliseconds of a fixed loop in each runtime, median of three, at the start and end.
CALIBRATION = {
    "Python": [sys.executable, "-c", "import time\nt = time.process_time(); s = 0\n"
               "for i in range(1_000_000): s = (s + i * i) % 1000003\n"
               "print((time.process_time() - t) * 1e3)"],
    "Node": ["node", "-e", "const t = process.cpuUsage(); let s = 0; "
             "for (let i = 0; i < 10000000; i++) { s = (s + i * i) % 1000003 } "
             "const u = process.cpuUsage(t); console.log((u.user + u.system) / 1e3)"],
}


def calibrate() -> dict[str, float]:
    out = {}
    for name, cmd in CALIBRATION.items():
        runs = sorted(float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout) for _ in range(3))
        out[name] = runs[1]
    return out


# --- processes ----------------------------------------------------------------

def spawn(name: str, cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start a process whose output goes to TMP/<name>.log; it is stopped by stop_all()."""
    log = open(TMP / f"{name}.log", "wb")
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    STARTED.append(proc)
    return proc


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(roots: list[int]) -> float:
    """User + system CPU time so far of these processes and all their descendants (/proc)."""
    total = 0.0
    for pid in {p for root in roots for p in (root, *descendants(root))}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        # utime, stime, and cutime, cstime: the children it reaped (PostgreSQL's autovacuum
        # workers, which come and go within a round) (proc(5) fields 14 to 17)
        total += sum(int(f) for f in fields[11:15]) / CLK_TCK
    return total


def listeners(port: int) -> int:
    """Listening TCP sockets on 127.0.0.1:port (/proc/net/tcp: local address, state 0A)."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as fh:
        return sum(1 for line in fh if line.split()[1:4:2] == [local, "0A"])


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def track_children(pid: int) -> list[int]:
    """Remember pid's descendants so stop_all() can reap them even if their parent dies first."""
    kids = descendants(pid)
    EXTRA_PIDS.extend((k, _start_time(k)) for k in kids)
    return kids


def stop_all() -> None:
    for proc in reversed(STARTED):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    for pid, started in EXTRA_PIDS:
        if started and _start_time(pid) == started:  # same process still alive: not reused
            os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, what: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}, see {TMP}")
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout}s, see {TMP}")


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# --- services -----------------------------------------------------------------

def start_redis(name: str) -> tuple[str, int]:
    port = free_port()
    d = TMP / name
    d.mkdir()
    proc = spawn(name, ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(d),
                        "--save", "", "--appendonly", "no", "--daemonize", "no"])
    wait_until(lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True, name, proc)
    return f"redis://127.0.0.1:{port}/0", proc.pid


def start_postgres() -> tuple[str, int]:
    """Throwaway PostgreSQL 15 cluster on loopback; returns (database_url, pid)."""
    d, port = TMP / "pgdata", free_port()
    as_pg = []
    if os.geteuid() == 0:  # initdb/postgres refuse to run as root
        as_pg = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        shutil.chown(TMP, "postgres")
    subprocess.run(as_pg + [str(PG_BIN / "initdb"), "-D", str(d), "-U", "bench", "-A", "trust"],
                   check=True, stdout=subprocess.DEVNULL)
    proc = spawn("postgres", as_pg + [str(PG_BIN / "postgres"), "-D", str(d), "-k", str(TMP),
                                      "-h", "127.0.0.1", "-p", str(port), "-c", "fsync=off",
                                      "-c", "synchronous_commit=off"])
    wait_until(lambda: subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)])
               .returncode == 0, "postgres", proc)
    subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "idp"], check=True)
    return f"postgresql://bench@127.0.0.1:{port}/idp", proc.pid


def ensure_npm_deps() -> None:
    if all((REF_DIR / "node_modules" / dep).is_dir()
           for dep in json.loads((REF_DIR / "package.json").read_text())["dependencies"]):
        return
    cmd = ["npm", "ci"] if (REF_DIR / "package-lock.json").exists() else ["npm", "install"]
    subprocess.run(cmd + ["--no-audit", "--no-fund"], cwd=REF_DIR, check=True)


def argon2_params() -> dict:
    """Our IdP's default argon2id cost (idp/config.py), as argon2-cffi PasswordHasher arguments."""
    return {"memory_cost": IDP_DEFAULTS["ARGON2_MEMORY_KIB"], "time_cost": IDP_DEFAULTS["ARGON2_TIME_COST"],
            "parallelism": IDP_DEFAULTS["ARGON2_PARALLELISM"]}


def our_verifier() -> str:
    """What each of our workers chose to verify passwords with, and the start-up timings that
    chose it (idp.login.password logs them; ours.log holds the last start's output)."""
    try:
        text = (TMP / "ours.log").read_text(errors="replace")
    except OSError:
        return "not logged"
    return "; ".join(sorted(set(re.findall(r"password verifier: ([^\n\"]*?\))", text)))) or "not logged"


def start_reference(redis_url: str) -> tuple[str, list[int]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The reference verifies the same kind of hash at the same cost as ours (argon2id, our
    # config's parameters); it gets the hash only, never the password, and only in its environment.
    password_hash = argon2.PasswordHasher(**argon2_params(), type=argon2.Type.ID).hash(BENCH_PASSWORD)
    proc = spawn("reference", ["node", "server.mjs"], cwd=REF_DIR, env={
        "REF_PORT": str(port), "WORKERS": str(WORKERS), "REDIS_URL": redis_url,
        "CLIENTS_FILE": str(CLIENTS_FILE), "BENCH_PASSWORD_HASH": password_hash, "NODE_ENV": "production",
    })
    wait_until(lambda: requests.get(base + "/.well-known/openid-configuration", timeout=2).ok
               and len(descendants(proc.pid)) >= WORKERS, "reference IdP", proc)
    track_children(proc.pid)
    return base, [proc.pid]


def start_ours(redis_url: str, database_url: str, python: str = sys.executable, root: Path = ROOT,
               extra_env: dict | None = None) -> tuple[str, list[int]]:
    """Our IdP as in production: `idp serve` (granian, WORKERS workers) on PostgreSQL and Redis.
    ``python``, ``root`` (the source tree) and ``extra_env``: what bench/ab.py compares."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "IDP_ENV": "production", "IDP_SECRET_KEY": secrets.token_urlsafe(32), "IDP_ISSUER": base,
        "IDP_DATABASE_URL": database_url.replace("postgresql://", "postgresql+psycopg://", 1),
        "IDP_REDIS_URL": redis_url, "IDP_KEYS_DIR": str(TMP / "ours-keys"), "IDP_INSTANCE_PATH": str(TMP / "ours"),
        "BENCH_PASSWORD": BENCH_PASSWORD, "PYTHONPATH": str(root),
        # The reference's default access token lifetime (1 h) instead of our 10 min, so the
        # token the introspection and userinfo rows use outlives a run of many rounds.
        "IDP_ACCESS_TOKEN_TTL": "3600", **(extra_env or {}),
    }
    subprocess.run([python, str(root / "bench" / "ours_setup.py"), str(CLIENTS_FILE), BENCH_EMAIL],
                   env={**os.environ, **env}, cwd=root, check=True, stdout=subprocess.DEVNULL)
    proc = spawn("ours", [python, "-c", "from idp.cli import main; main()", "serve",
                          "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}"], env=env, cwd=root)
    # Each granian worker binds its own SO_REUSEPORT socket once it has built the app: until
    # all have, every connection opened goes to the ones that have (and keep-alive keeps it there).
    wait_until(lambda: requests.get(base + "/.well-known/openid-configuration", timeout=2).ok
               and len(descendants(proc.pid)) >= WORKERS and listeners(port) >= WORKERS, "our IdP", proc)
    track_children(proc.pid)
    return base, [proc.pid]


# --- measurements -------------------------------------------------------------

def basic(client: dict) -> str:
    return "Basic " + base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()


def idle_jiffies() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine since boot, from /proc/stat's cpu line."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; guest time is inside user


def run_wrk(url: str, script: str, env: dict, duration: float, connections: int = CONNECTIONS) -> dict:
    """One wrk run: req/s, p50/p99, errors; and, to account for where the 2 cores went, wrk's
    own CPU per request (a fatter or more fragmented answer costs the load generator too) and
    the share of the machine left idle (a server waiting instead of working)."""
    children, (idle, total) = os.times(), idle_jiffies()
    cmd = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           "-s", str(DRIVERS / script), url]
    out = subprocess.run(cmd, env={**os.environ, **env, "BENCH_THREADS": str(THREADS)},
                         capture_output=True, text=True, timeout=duration + 60)
    after, (idle_after, total_after) = os.times(), idle_jiffies()
    wrk_cpu = (after.children_user + after.children_system) - (children.children_user + children.children_system)
    idle_share = (idle_after - idle) / max(1, total_after - total)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            r = json.loads(line[len("BENCH_JSON "):])
            errors = r["errors_status"] + r["errors_socket"]
            # wrk counts every answer as a request, a 4xx or 5xx too: only the good ones are throughput
            good = max(0, r["requests"] - r["errors_status"]) / r["requests"] if r["requests"] else 0.0
            return {"rps": r["rps"] * good, "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
                    "errors": errors, "requests": r["requests"],
                    "wrk_ms": wrk_cpu / max(1, r["requests"]) * 1e3, "idle": idle_share}
    raise RuntimeError(f"wrk gave no BENCH_JSON line:\n{out.stdout}\n{out.stderr}")


ROWS = {  # --rows name: the table's row
    "discovery": "discovery GET", "jwks": "JWKS GET", "client_credentials": "token client_credentials",
    "refresh": "token refresh_token (rotating)", "introspection": "introspection (active opaque)",
    "userinfo": "userinfo (bearer)", "flow": "authorization code flow (flows/s)",
}


def check(ok: bool, message: str) -> None:
    if not ok:
        raise RuntimeError(message)


def prepare(name: str, base: str, adapter: str, rounds: int) -> dict:
    """Mint tokens and check each endpoint once; returns ({endpoint: (url, script, env, warmup_env)},
    where an env may be a list with one env per round; a check that the user's token is still active)."""
    meta = flow_driver.discover(base)
    web = flow_driver.load_client(str(CLIENTS_FILE), "bench-web")
    backend = flow_driver.load_client(str(CLIENTS_FILE), "bench-backend")
    runs = 2 * rounds  # every warm-up and every measured run consumes refresh tokens of its own
    sets = flow_driver.mint_tokens(base, web, adapter, BENCH_PASSWORD, n=runs * 2 * CONNECTIONS + 2)
    user, spare = sets.pop(), sets.pop()
    rt_files = []
    for i in range(runs):
        f = TMP / f"{name}-refresh-{i}.txt"
        f.write_text("".join(s["refresh_token"] + "\n" for s in sets[i::runs]))
        rt_files.append(str(f))

    def user_active() -> bool:
        return requests.post(meta["introspection_endpoint"], auth=(backend["client_id"], backend["client_secret"]),
                             data={"token": user["access_token"]}).json().get("active") is True

    check(user_active(), f"{name}: introspection not active")
    r = requests.get(meta["userinfo_endpoint"], headers={"Authorization": "Bearer " + user["access_token"]})
    check(r.status_code == 200 and r.json().get("email") == BENCH_EMAIL, f"{name}: userinfo {r.status_code} {r.text}")
    r = requests.post(meta["token_endpoint"], auth=(backend["client_id"], backend["client_secret"]),
                      data={"grant_type": "client_credentials", "scope": "api:read"})
    check(r.status_code == 200, f"{name}: client_credentials {r.status_code} {r.text}")
    r = requests.post(meta["token_endpoint"], auth=(web["client_id"], web["client_secret"]),
                      data={"grant_type": "refresh_token", "refresh_token": spare["refresh_token"]})
    check(r.status_code == 200 and r.json().get("refresh_token") not in (None, spare["refresh_token"]),
          f"{name}: refresh {r.status_code} {r.text}")

    tok = meta["token_endpoint"]
    refresh = {"BENCH_AUTH": basic(web)}
    return {
        ROWS["discovery"]: (base + "/.well-known/openid-configuration", "get.lua", {}, None),
        ROWS["jwks"]: (meta["jwks_uri"], "get.lua", {}, None),
        ROWS["client_credentials"]: (tok, "client_credentials.lua", {"BENCH_AUTH": basic(backend)}, None),
        ROWS["refresh"]: (tok, "refresh.lua",
                          [{**refresh, "BENCH_TOKENS_FILE": f} for f in rt_files[1::2]],
                          [{**refresh, "BENCH_TOKENS_FILE": f} for f in rt_files[0::2]]),
        ROWS["introspection"]: (meta["introspection_endpoint"], "introspect.lua",
                                {"BENCH_AUTH": basic(backend), "BENCH_TOKEN": user["access_token"]}, None),
        ROWS["userinfo"]: (meta["userinfo_endpoint"], "userinfo.lua",
                           {"BENCH_AUTH": "Bearer " + user["access_token"]}, None),
    }, user_active


def memory(pids: list[int], redis_pid: int) -> list[tuple[str, float]]:
    """Peak RSS of each started process and of its descendants (the workers)."""
    rows = []
    for pid in pids:
        rows.append((f"top process {pid}", vm_hwm_mb(pid) or 0.0))
        kids = [(k, vm_hwm_mb(k)) for k in descendants(pid)]
        rows += [(f"worker {k}", m) for k, m in kids if m]
        rows.append(("workers total", sum(m for _, m in kids if m)))
    rows.append((f"redis-server {redis_pid}", vm_hwm_mb(redis_pid) or 0.0))
    return rows


# --- report -------------------------------------------------------------------

def fmt_rps(r):
    return "–" if r is None else f"{r['rps']:.0f}" + (f" ({r['errors']} err)" if r.get("errors") else "")


def fmt_cpu(r):
    return "–" if r is None else (f"{r['cpu_ms']:.1f}" if r["cpu_ms"] >= 10 else f"{r['cpu_ms']:.3f}")


def fmt_lat(r):
    return "–" if r is None else f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms"


def interpreter() -> str:
    """The interpreter our server runs on, and whether libpython is a shared library (pyenv's
    default build; README, Production, "Interpreter"): a clue when our side alone is slower."""
    exe = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    linked = subprocess.run(["ldd", exe], capture_output=True, text=True).stdout
    return exe + (", libpython shared" if "libpython" in linked else "")


def report(results: dict, mem: dict, args) -> str:
    lines = [
        "# IdP benchmark: ours vs panva/node-oidc-provider",
        "",
        f"{datetime.datetime.now().isoformat(timespec='seconds')} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} ({interpreter()}) · "
        f"node {subprocess.run(['node', '-v'], capture_output=True, text=True).stdout.strip()}"
        f" · oidc-provider {json.loads((REF_DIR / 'node_modules/oidc-provider/package.json').read_text())['version']}"
        f" · {WORKERS} workers each · wrk -t{THREADS} -c{CONNECTIONS} -d{args.duration}s (+{args.warmup}s warm-up)"
        f" · flow: {args.flow_workers} Python threads · load avg at start {LOAD_AT_START}"
        f" · median of {args.rounds} rounds, order alternating",
        "",
        "Host speed (CPU ms of a fixed loop, start → end; lower is faster): "
        + ", ".join(f"{name} {args.calibration[0][name]:.0f} → {args.calibration[1][name]:.0f}"
                    for name in CALIBRATION) + ".",
        "",
        "| endpoint | ours req/s | ref req/s | ratio | ours p50/p99 | ref p50/p99 | CPU per op, ours / ref "
        "| ours rounds | ref rounds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for endpoint, by in results.items():
        o, r = by.get("ours"), by.get("reference")
        ratio = fmt_ratio(paired_ratios(o, r))
        each = [" / ".join(fmt_rps(x) for x in side["rounds"]) if side else "–" for side in (o, r)]
        lines.append(f"| {endpoint} | {fmt_rps(o)} | {fmt_rps(r)} | {ratio} | {fmt_lat(o)} | {fmt_lat(r)} "
                     f"| {fmt_cpu(o)} / {fmt_cpu(r)} ms | {each[0]} | {each[1]} |")
    lines += ["", "ratio = ours / reference (higher is better for ours): the median over the rounds of each "
              "round's ratio (the two sides of a round run back to back, so a drift of the host falls on both), "
              "with the lowest and highest round's in brackets; req/s, p50/p99 are each side's median round. "
              "Auth code flow rate is flows/s (authorize → login → code → token, PKCE S256). "
              "CPU per op: median over the rounds of the user + system CPU time each IdP's processes "
              "spent per request (per flow on the last row): server and workers, its redis-server and, "
              "for ours, PostgreSQL; not the load generator. It moves less than req/s on a shared machine.", "",
              "## CPU per op by process", "",
              "Median over the rounds of each part (ms per request, per flow on the last row). "
              "wrk: the load generator's CPU per request against that side; idle: the share of the "
              f"machine's {os.cpu_count()} cores nobody used during the run. With the cores shared, a side's "
              f"req/s is about (1 - idle) x {1000 * (os.cpu_count() or 1)} / (its CPU per op + wrk's) "
              "per second.", "",
              "| endpoint | ours: server / redis / postgres | ref: server / redis "
              "| wrk, ours / ref | idle, ours / ref |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for endpoint, by in results.items():
        sides = (by.get("ours"), by.get("reference"))
        cells = [" / ".join(f"{ms:.3f}" for ms in side["split"].values()) if side else "–" for side in sides]
        wrk = " / ".join(f"{side['wrk_ms']:.3f}" if side and "wrk_ms" in side else "–" for side in sides)
        idle = " / ".join(f"{side['idle']:.0%}" if side and "idle" in side else "–" for side in sides)
        lines.append(f"| {endpoint} | {cells[0]} | {cells[1]} | {wrk} | {idle} |")
    lines += ["",
              "## Peak memory (VmHWM)", "", "| IdP | process | peak RSS (MiB) |", "| --- | --- | ---: |"]
    for name, rows in mem.items():
        lines += [f"| {name} | {label} | {mb:.1f} |" for label, mb in rows]
    a = argon2_params()
    lines += ["", "Notes: both IdPs verify an argon2id password hash with the same parameters "
              f"(m={a['memory_cost']} KiB, t={a['time_cost']}, p={a['parallelism']}; the reference with @node-rs/argon2, "
              "ours with whichever of libsodium (PyNaCl) and argon2-cffi each worker found faster at start: "
              f"{our_verifier()}), one verification per login. "
              "Load generator (wrk, Python flow driver) shares the 2 cores with the servers."]
    return "\n".join(lines) + "\n"


def paired_ratios(ours: dict | None, ref: dict | None) -> list[float]:
    """ours / reference of each round: the rounds are in the order they ran, each side's run of
    a round right after (or before) the other's."""
    if not ours or not ref:
        return []
    return [o["rps"] / r["rps"] for o, r in zip(ours["rounds"], ref["rounds"]) if r["rps"]]


def fmt_ratio(ratios: list[float]) -> str:
    if not ratios:
        return "–"
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"


def median_round(runs: list[dict]) -> dict:
    """The run with the median req/s (its latencies with it), and every round's req/s."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    cpu = sorted(r["cpu_ms"] for r in runs)
    split = {part: sorted(r["split"][part] for r in runs)[len(runs) // 2] for part in runs[0]["split"]}
    extra = {key: statistics.median(r[key] for r in runs) for key in ("wrk_ms", "idle") if key in runs[0]}
    return {**ordered[len(ordered) // 2], "cpu_ms": cpu[len(cpu) // 2], "split": split, **extra,
            "rounds": [{"rps": r["rps"], "errors": r.get("errors")} for r in runs]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["ours", "reference"])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per endpoint (default 10)")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per endpoint, 0 = none")
    ap.add_argument("--flow-workers", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="rounds per endpoint, order alternating (default 3)")
    ap.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ", ".join(ROWS)
                    + " (a partial run should go to another --out)")
    args = ap.parse_args()
    names = [args.only] if args.only else ["ours", "reference"]
    rows = set(args.rows.split(","))
    if not rows <= set(ROWS):
        ap.error(f"--rows: unknown {sorted(rows - set(ROWS))}")

    ok = False
    calibration_start = calibrate()
    try:
        targets = {}
        if "reference" in names:
            ensure_npm_deps()
            redis_url, redis_pid = start_redis("redis-reference")
            base, pids = start_reference(redis_url)
            targets["reference"] = (base, pids, redis_pid)
        if "ours" in names:
            redis_url, redis_pid = start_redis("redis-ours")
            database_url, pg_pid = start_postgres()
            base, pids = start_ours(redis_url, database_url)
            targets["ours"] = (base, pids, redis_pid)
            pg_pids = [pg_pid]
        # CPU per operation is counted over each IdP's own processes: its server (workers
        # included), its redis-server and, for ours, PostgreSQL (postmaster and backends).
        parts = {name: {"server": pids, "redis": [redis_pid], **({"postgres": pg_pids} if name == "ours" else {})}
                 for name, (_, pids, redis_pid) in targets.items()}
        for name, (base, pids, _) in targets.items():
            print(f"{name}: {base} pids {pids} + workers {[d for p in pids for d in descendants(p)]}", flush=True)

        prepared = {name: prepare(name, base, name, args.rounds) for name, (base, _, _) in targets.items()}
        jobs = {name: rows_of for name, (rows_of, _) in prepared.items()}
        # Rounds alternate the order (ours first, then the reference first, ...) so that a
        # neighbour's load or a drift of the machine does not always land on the same side;
        # the table reports each side's median round.
        rounds: dict[str, dict[str, list]] = {}
        for endpoint in [ROWS[r] for r in ROWS if r in rows and ROWS[r] in jobs[names[0]]]:
            for i in range(args.rounds):
                for name in (names if i % 2 == 0 else names[::-1]):
                    url, script, env, warm_env = jobs[name][endpoint]
                    env = env[i] if isinstance(env, list) else env
                    warm_env = warm_env[i] if isinstance(warm_env, list) else warm_env
                    if args.warmup > 0:
                        run_wrk(url, script, env if warm_env is None else warm_env, args.warmup)
                    before = {part: cpu_seconds(group) for part, group in parts[name].items()}
                    r = run_wrk(url, script, env, args.duration)
                    split = {part: (cpu_seconds(group) - before[part]) / max(1, r["requests"]) * 1e3
                             for part, group in parts[name].items()}
                    r["cpu_ms"], r["split"] = sum(split.values()), split
                    rounds.setdefault(endpoint, {}).setdefault(name, []).append(r)
                    print(f"{endpoint:32} {name:9} {fmt_rps(r):>12} req/s  p50/p99 {fmt_lat(r)}  "
                          f"{r['cpu_ms']:.3f} ms CPU/req ("
                          + ", ".join(f"{part} {ms:.3f}" for part, ms in split.items())
                          + f"; wrk {r['wrk_ms']:.3f}, idle {r['idle']:.0%})", flush=True)

        for name, (_, user_active) in prepared.items():  # the rows above measured an active token
            check(user_active(), f"{name}: the user's access token expired during the run")

        endpoint = ROWS["flow"]
        for i in range(args.rounds if "flow" in rows else 0):
            for name in (names if i % 2 == 0 else names[::-1]):
                base = targets[name][0]
                web = flow_driver.load_client(str(CLIENTS_FILE), "bench-web")
                before = {part: cpu_seconds(group) for part, group in parts[name].items()}
                r = flow_driver.run_load(base, web, name, BENCH_PASSWORD, args.duration, args.flow_workers)
                split = {part: (cpu_seconds(group) - before[part]) / max(1, r["flows"]) * 1e3
                         for part, group in parts[name].items()}
                r["cpu_ms"], r["split"] = sum(split.values()), split
                rounds.setdefault(endpoint, {}).setdefault(name, []).append(r)
                print(f"{endpoint:32} {name:9} {fmt_rps(r):>12} flows/s p50/p99 {fmt_lat(r)}  "
                      f"{r['cpu_ms']:.2f} ms CPU/flow"
                      + (f"  first error: {r['first_error']}" if r["first_error"] else ""), flush=True)
        results = {e: {n: median_round(rs) for n, rs in by_name.items()} for e, by_name in rounds.items()}

        mem = {name: memory(pids, redis_pid) for name, (_, pids, redis_pid) in targets.items()}
        args.calibration = (calibration_start, calibrate())
        text = report(results, mem, args)
        print("\n" + text)
        args.out.write_text(text)
        print(f"wrote {args.out}")
        ok = True
    finally:
        stop_all()
        if ok:
            shutil.rmtree(TMP, ignore_errors=True)
        else:
            print(f"logs kept in {TMP}", file=sys.stderr)


if __name__ == "__main__":
    main()
