#!/usr/bin/env python3
"""Threads or an event loop: what the runtime alone does to a Redis-bound endpoint here.

    python bench/runtime_probe.py                      # 3 alternating rounds of 8 s
    python bench/runtime_probe.py --rounds 4 --work-us 150

Our API rows leave 6-8% of the two cores idle under load where node-oidc-provider leaves
2-3% (bench/RESULTS.md), at about the same CPU per request: a decision on an async runtime
needs to know how much of that the runtime itself accounts for, apart from our code. So
this serves one toy endpoint three ways, each under granian with 2 workers, on one Redis:

  wsgi-turns   WSGI, 2 request threads per worker taking turns as `idp serve` does
               (idp.ops.turns, the turn handed on during the Redis round trip)
  wsgi-free    WSGI, 2 free request threads per worker
  asgi         ASGI, one event loop per worker, redis.asyncio

The endpoint does what our API endpoints do, in kind: ``--work-us`` of Python CPU (HMACs),
one Redis round trip (``--op``: a GET as an introspection's; a token's SET EX; or a
client_credentials token's write with its family index, our put_indexed script, through
idp.store.redis), and a small JSON answer; ``--post`` sends a form body as /token gets.
wrk drives it (2 threads, 16 connections) in rounds that alternate the order; each run
reports req/s, p99, the CPU the servers and Redis spent per request and the share of the
machine left idle. Loopback only; everything started here is stopped by PID.

Measured on 2026-12-07 (200 us of Python, POST; README, Benchmark): the runtime is not what
idles the cores, the Redis work per request is. A GET left 2.7% idle with threads and 3.7%
with the event loop; our token write with its family index 7.2% and 4.9%; a plain SET EX
3.8% and 4.6%. The event loop cost 15-35% more CPU per request each time.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run as R  # noqa: E402  (bench/run.py: processes, wrk, CPU accounting)

APP = textwrap.dedent('''
    import hashlib, hmac, json, os, time
    WORK_S = float(os.environ["PROBE_WORK_US"]) / 1e6
    KEY = b"k" * 32
    BODY = json.dumps({"active": True, "scope": "api:read", "client_id": "probe"}).encode()

    def work():  # Python CPU, as a request's parsing, checks and answer would spend
        end = time.thread_time() + WORK_S
        n = 0
        while time.thread_time() < end:
            hmac.new(KEY, str(n).encode(), hashlib.sha256).digest(); n += 1

    HEADERS = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]

    def wsgi(environ, start_response):
        import redis_sync
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)  # a POST's form, read whole as idp.ops.turns does
        work()
        value = redis_sync.get()
        start_response("200 OK", HEADERS + [("Content-Length", str(len(BODY) + len(value)))])
        return [BODY, value]

    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return
        import redis_async
        while (await receive()).get("more_body"):
            pass
        work()
        value = await redis_async.get()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in HEADERS]
                    + [(b"content-length", str(len(BODY) + len(value)).encode())]})
        await send({"type": "http.response.body", "body": BODY + value})
''')

REDIS_SYNC = textwrap.dedent('''
    import json, os, secrets, threading, redis
    from idp.store.redis import RedisStore
    _local = threading.local()
    _store = RedisStore(os.environ["PROBE_REDIS"], "probe:")
    def get():
        if os.environ["PROBE_OP"] == "indexed":  # a client_credentials token's write, through our store
            _store.put_indexed("at:" + secrets.token_hex(16), {"scope": "api:read"}, 600,
                               "fam:" + str(secrets.randbelow(60)), "check")
            return b"{}"
        if os.environ["PROBE_OP"] == "set":  # the same token's write without the family index
            _store.put("at:" + secrets.token_hex(16), {"scope": "api:read"}, 600)
            return b"{}"
        r = getattr(_local, "r", None)
        if r is None:
            r = _local.r = redis.Redis.from_url(os.environ["PROBE_REDIS"])
        return r.get("probe:value")
''')

REDIS_ASYNC = textwrap.dedent('''
    import json, os, secrets, redis.asyncio as redis
    from idp.store.redis import _PUT_INDEXED
    _r = _script = None
    async def get():
        global _r, _script
        if _r is None:
            _r = redis.Redis.from_url(os.environ["PROBE_REDIS"], max_connections=64)
            _script = _r.register_script(_PUT_INDEXED)
        if os.environ["PROBE_OP"] == "indexed":
            await _script(keys=["probe:at:" + secrets.token_hex(16), "probe:fam:" + str(secrets.randbelow(60)),
                                "probe:check"], args=[json.dumps({"scope": "api:read"}), 600, "at:x"])
            return b"{}"
        if os.environ["PROBE_OP"] == "set":
            await _r.set("probe:at:" + secrets.token_hex(16), json.dumps({"scope": "api:read"}), ex=600)
            return b"{}"
        return await _r.get("probe:value")
''')

TURNS_WRAPPER = textwrap.dedent('''
    import probe_app
    from idp.ops import turns
    import redis_sync
    _get = redis_sync.get
    def _get_in_turn():
        with turns.waiting():  # the round trip hands the turn on, as idp.store.redis does
            return _get()
    redis_sync.get = _get_in_turn
    app = turns.middleware(probe_app.wsgi)
''')


def start(variant: str, redis_url: str, work_us: float, op: str, tmp: Path) -> tuple[str, list[int]]:
    port = R.free_port()
    env = {**os.environ, "PROBE_WORK_US": str(work_us), "PROBE_REDIS": redis_url, "PROBE_OP": op,
           "PYTHONPATH": f"{tmp}{os.pathsep}{R.ROOT}"}
    interface, target, threads = {"wsgi-turns": ("wsgi", "probe_turns:app", ["--blocking-threads", "2"]),
                                  "wsgi-free": ("wsgi", "probe_app:wsgi", ["--blocking-threads", "2"]),
                                  "asgi": ("asgi", "probe_app:asgi", [])}[variant]
    proc = R.spawn(f"probe-{variant}", [sys.executable, "-m", "granian", "--interface", interface, "--workers",
                                        str(R.WORKERS), *threads, "--host", "127.0.0.1", "--port", str(port),
                                        "--no-access-log", target], env=env, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    R.wait_until(lambda: R.requests.get(base + "/", timeout=2).ok and R.listeners(port) >= R.WORKERS,
                 f"probe {variant}", proc)
    R.track_children(proc.pid)
    return base, [proc.pid]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--work-us", type=float, default=200.0, help="Python CPU per request (default 200 us)")
    ap.add_argument("--post", action="store_true", help="POST a small form body (as /token) instead of GET")
    ap.add_argument("--op", choices=["get", "set", "indexed"], default="get",
                    help="the Redis round trip: a GET; a token's SET EX; or a client_credentials token's write "
                         "with its family index (our put_indexed script)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="idp-probe-"))
    for name, text in {"probe_app.py": APP, "redis_sync.py": REDIS_SYNC, "redis_async.py": REDIS_ASYNC,
                       "probe_turns.py": TURNS_WRAPPER}.items():
        (tmp / name).write_text(text)
    variants = ["wsgi-turns", "wsgi-free", "asgi"]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    try:
        redis_url, redis_pid = R.start_redis("redis-probe")
        import redis
        redis.Redis.from_url(redis_url).set("probe:value", b'{"sub":"s"}')
        servers = {v: start(v, redis_url, args.work_us, args.op, tmp) for v in variants}
        for i in range(args.rounds):
            for v in (variants if i % 2 == 0 else variants[::-1]):
                base, pids = servers[v]
                script, env = ("client_credentials.lua", {"BENCH_AUTH": "Basic cHJvYmU6cHJvYmU="}) if args.post \
                    else ("get.lua", {})
                R.run_wrk(base + "/", script, env, 1.0)  # warm-up
                before = {"server": R.cpu_seconds(pids), "redis": R.cpu_seconds([redis_pid])}
                r = R.run_wrk(base + "/", script, env, args.duration)
                r["server_ms"] = (R.cpu_seconds(pids) - before["server"]) / max(1, r["requests"]) * 1e3
                r["redis_ms"] = (R.cpu_seconds([redis_pid]) - before["redis"]) / max(1, r["requests"]) * 1e3
                results[v].append(r)
                print(f"{v:11} {r['rps']:8.0f} req/s  p99 {r['p99_ms']:5.1f} ms  idle {r['idle']:5.1%}  "
                      f"CPU/req server {r['server_ms']:.3f} redis {r['redis_ms']:.3f} ms", flush=True)
        print(f"\nmedians over {args.rounds} rounds, {args.work_us:.0f} us of Python per request"
              + (", a POST with a form body:" if args.post else ", a GET:"))
        for v, rs in results.items():
            med = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p99_ms", "idle", "server_ms", "redis_ms")}
            print(f"{v:11} {med['rps']:8.0f} req/s  p99 {med['p99_ms']:5.1f} ms  idle {med['idle']:5.1%}  "
                  f"CPU/req server {med['server_ms']:.3f} redis {med['redis_ms']:.3f} ms  "
                  f"(req/s {sorted(round(r['rps']) for r in rs)})")
    finally:
        R.stop_all()


if __name__ == "__main__":
    main()
