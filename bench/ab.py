#!/usr/bin/env python3
"""Our IdP against itself: two configurations side by side, rounds alternating.

    python bench/ab.py --b 'IDP_THREADS=3'                              # env of side B
    python bench/ab.py --a python=/root/.pyenv/versions/3.11.7/bin/python3.11 \\
                       --b python=/usr/bin/python3.11                    # two interpreters
    python bench/ab.py --a tree=/tmp/before --b tree=. --rows refresh,flow --rounds 4

A host that drifts by 20-30% within minutes hides a change of 10% between two runs of
bench/run.py; here both sides are up at once, each on its own PostgreSQL and Redis, and
every row alternates which goes first, so a drift falls on both. Each side is a list of
KEY=VALUE: ``python`` (the interpreter; default this one), ``tree`` (the source tree the
server runs, e.g. a `git worktree` of another commit; default this one), anything else is
the server's environment (IDP_THREADS=3, ...). Rows are bench/run.py's, and ``mixed``:
sign-ins and client_credentials at once (the load idp.ops.turns is for). Per round: req/s (flows/s), p99, the CPU
each side's server, Redis and PostgreSQL spent per request, and how idle the whole machine
was (from /proc/stat: a server that leaves cores idle under load is waiting, not working).
Prints every round, then each side's values sorted. Everything started is stopped by PID.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import run as R  # bench/run.py: the servers, the drivers and the measurements


def side(spec: str) -> dict:
    out = {"python": sys.executable, "tree": R.ROOT, "env": {}}
    for item in spec.split():
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"not KEY=VALUE: {item!r}")
        if key == "python":
            out["python"] = value
        elif key == "tree":
            out["tree"] = Path(value).resolve()
        else:
            out["env"][key] = value
    return out


def mixed(target: dict, duration: float) -> dict:
    """Sign-ins and service tokens at once, as production has them: 6 threads running the code
    flow while wrk asks for client_credentials tokens on 4 connections. Reports the flows/s and
    the tokens' req/s and p99 (the latency a hash or a stall in the same worker adds)."""
    url, script, env, _ = target["jobs"][R.ROWS["client_credentials"]]
    web = R.flow_driver.load_client(str(R.CLIENTS_FILE), "bench-web")
    flows: dict = {}
    t = threading.Thread(target=lambda: flows.update(
        R.flow_driver.run_load(target["base"], web, "ours", R.BENCH_PASSWORD, duration, 6)))
    t.start()
    try:
        r = R.run_wrk(url, script, env, duration, connections=4)
    finally:
        t.join()
    return {"rps": r["rps"], "p99_ms": r["p99_ms"], "requests": r["requests"] + flows.get("flows", 0),
            "flows_per_s": flows.get("rps", 0.0)}


def measure(name: str, target: dict, row: str, i: int, duration: float) -> dict:
    if row not in ("flow", "mixed"):
        url, script, env, warm = target["jobs"][R.ROWS[row]]
        env = env[i] if isinstance(env, list) else env  # refresh: fresh tokens for every round
        warm = warm[i] if isinstance(warm, list) else warm
        R.run_wrk(url, script, env if warm is None else warm, 1)
    before, t0 = {p: R.cpu_seconds(g) for p, g in target["parts"].items()}, R.idle_jiffies()
    if row == "mixed":
        r = mixed(target, duration)
        n = max(1, r["requests"])
    elif row == "flow":
        web = R.flow_driver.load_client(str(R.CLIENTS_FILE), "bench-web")
        r = R.flow_driver.run_load(target["base"], web, "ours", R.BENCH_PASSWORD, duration, 8)
        n = max(1, r["flows"])
    else:
        r = R.run_wrk(url, script, env, duration)
        n = max(1, r["requests"])
    idle, total = (b - a for a, b in zip(t0, R.idle_jiffies()))
    cpu = {p: (R.cpu_seconds(g) - before[p]) / n * 1e3 for p, g in target["parts"].items()}
    return {"rps": r["rps"], "p99": r["p99_ms"], "idle": 100 * idle / max(1, total),
            "flows": r.get("flows_per_s"), **cpu}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", default="", help="side A: KEY=VALUE ... (python=, tree=, environment)")
    ap.add_argument("--b", default="", help="side B, likewise")
    ap.add_argument("--rows", default="client_credentials,refresh,userinfo,introspection",
                    help="comma-separated subset of: " + ", ".join([*R.ROWS, "mixed"])
                    + " (mixed: sign-ins and client_credentials at once)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per round (default 6)")
    args = ap.parse_args()
    rows = args.rows.split(",")
    if not set(rows) <= {*R.ROWS, "mixed"}:
        ap.error(f"--rows: unknown {sorted(set(rows) - {*R.ROWS, 'mixed'})}")
    sides = {"A": side(args.a), "B": side(args.b)}
    targets, dirs = {}, [R.TMP]  # run.py's own, made at import
    try:
        for name, s in sides.items():
            R.TMP = Path(tempfile.mkdtemp(prefix=f"idp-ab-{name}-"))  # each side's logs and data apart
            dirs.append(R.TMP)
            redis_url, redis_pid = R.start_redis("redis")
            database_url, pg_pid = R.start_postgres()
            base, pids = R.start_ours(redis_url, database_url, python=s["python"], root=s["tree"],
                                      extra_env=s["env"])
            jobs, user_active = R.prepare(name, base, "ours", args.rounds)
            targets[name] = {"base": base, "parts": {"server": pids, "redis": [redis_pid], "postgres": [pg_pid]},
                             "jobs": jobs, "user_active": user_active}
            print(f"{name}: {s['python']} {s['tree']} {s['env']} at {base}", flush=True)
        results: dict[tuple[str, str], list[dict]] = {}
        for row in rows:
            for i in range(args.rounds):
                for name in ("A", "B") if i % 2 == 0 else ("B", "A"):
                    m = measure(name, targets[name], row, i, args.duration)
                    results.setdefault((row, name), []).append(m)
                    flows = "" if m["flows"] is None else f"  + {m['flows']:.1f} flows/s"
                    print(f"{row:20} {name} {m['rps']:9.1f}/s{flows}  p99 {m['p99']:6.1f} ms  idle {m['idle']:4.1f}%  "
                          f"CPU/op server {m['server']:.3f} redis {m['redis']:.3f} postgres {m['postgres']:.3f} ms",
                          flush=True)
        for name, target in targets.items():  # the introspection and userinfo rows measured an active token
            R.check(target["user_active"](), f"{name}: the user's access token expired during the run")
        print()
        for (row, name), ms in results.items():
            print(f"{row:20} {name}  req/s {sorted(round(m['rps']) for m in ms)}  "
                  f"p99 {sorted(round(m['p99'], 1) for m in ms)}  idle {sorted(round(m['idle'], 1) for m in ms)}  "
                  f"server ms {sorted(round(m['server'], 3) for m in ms)}"
                  + ("" if ms[0]["flows"] is None else f"  flows/s {sorted(round(m['flows'], 1) for m in ms)}"))
    finally:
        R.stop_all()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
