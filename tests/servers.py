"""Start real Redis and PostgreSQL servers for tests, and stop them by PID.

Each helper returns ``(url, stop)``.  Servers listen on 127.0.0.1 on a free
port and keep their files in a temp dir, so parallel runs (pytest-xdist, two
clones) never share state.  ``IDP_TEST_REDIS_URL`` / ``IDP_TEST_DATABASE_URL``
point the tests at an existing server instead; ``stop`` is then a no-op.

A missing binary raises RuntimeError naming the apt package: tests against a
real backend must fail loudly, never be skipped silently.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

Stop = Callable[[], None]
STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    """A port that was free a moment ago (the server may still lose a race)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(ready: Callable[[], bool], what: str, alive: Callable[[], bool], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            break
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not start; log {log}:\n{tail}")


def _once(fn: Stop) -> Stop:
    """Make ``stop`` idempotent and also run it at exit if a test run aborts."""
    done = False

    def stop() -> None:
        nonlocal done
        if not done:
            done = True
            fn()

    atexit.register(stop)
    return stop


# -- Redis -------------------------------------------------------------------

def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(tmpdir: str | os.PathLike) -> tuple[str, Stop]:
    if url := os.environ.get("IDP_TEST_REDIS_URL"):
        return url, lambda: None
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: apt-get install redis-server")
    tmp = Path(tmpdir)
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "redis.log"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp), "--logfile", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )

    def stop() -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    stop = _once(stop)
    try:
        _wait(lambda: _redis_pong(port), "redis-server", lambda: proc.poll() is None, log)
    except BaseException:
        stop()
        raise
    return f"redis://127.0.0.1:{port}/0", stop


# -- PostgreSQL --------------------------------------------------------------

def _pg_bindir() -> Path:
    """Newest /usr/lib/postgresql/N/bin (Debian), else initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL server binaries (initdb) not found: "
                           "apt-get install postgresql")
    return Path(initdb).parent


def start_postgres(tmpdir: str | os.PathLike) -> tuple[str, Stop]:
    """initdb + pg_ctl start a throwaway cluster, create database ``idp_test``.

    PostgreSQL refuses to run as root, so as root the server runs as the
    ``postgres`` user, in a fresh dir under the system temp dir that user can
    reach (pytest's tmp dirs are 0700 root); it is removed on ``stop``.
    """
    if url := os.environ.get("IDP_TEST_DATABASE_URL"):
        return url, lambda: None
    bindir = _pg_bindir()
    as_root = os.geteuid() == 0
    if as_root:
        try:
            import pwd
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("no 'postgres' user to run PostgreSQL as: "
                               "apt-get install postgresql") from None
        base = Path(tempfile.mkdtemp(prefix="idp-pg-"))
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    else:
        base = Path(tempfile.mkdtemp(prefix="idp-pg-", dir=tmpdir))
        prefix = []
    data, log = base / "data", base / "postgres.log"

    def run(*cmd: str) -> None:
        res = subprocess.run([*prefix, *cmd], cwd=base, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n"
                               f"{res.stdout}{res.stderr}")

    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
        "-E", "UTF8", "--locale=C", "--no-sync")
    pidfile = data / "postmaster.pid"

    def stop() -> None:
        # Fast shutdown by the postmaster's PID; it removes its pidfile when done.
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            while pidfile.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if pidfile.exists():
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
        except (OSError, ValueError, IndexError):
            pass
        shutil.rmtree(base, ignore_errors=True)

    stop = _once(stop)
    try:
        for attempt in range(3):  # the free port may be taken by someone else
            port = free_port()
            opts = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off")
            try:
                run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log),
                    "-w", "-t", str(int(STARTUP_TIMEOUT)), "-o", opts, "start")
                break
            except RuntimeError as exc:
                if attempt == 2:
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise RuntimeError(f"{exc}\n{tail}") from None
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
            "-U", "postgres", "idp_test")
    except BaseException:
        stop()
        raise
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/idp_test", stop
