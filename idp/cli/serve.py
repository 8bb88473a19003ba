"""`idp serve`: the production server, granian running ``idp.wsgi:app``.

Why granian: measured with bench/servers.py on this app (2 workers, PostgreSQL + Redis,
wrk 16 connections on a quiet 2-core machine), granian's Rust HTTP layer with keep-alive
beat gunicorn sync on every endpoint (discovery 4241 vs 3260 req/s, JWKS 4946 vs 2970,
introspection 1753 vs 1249, userinfo 946 vs 825, p99 as good or better).

Threads: THREADS (default 2) request threads per worker, of which one runs Python at a
time (idp.ops.turns); the other runs while the first waits on Redis, a password hash or a
relying party. Free-running threads only contend for the GIL (granian's default of 256
was the slowest; two cost the refresh row about 10%), and a single thread leaves every
request on its worker queued behind a 13-40 ms hash.

The parent process only reads and checks the configuration and that the database is at
this release's schema (idp.ops.schema); each worker builds the app,
so prometheus-client is first imported after ``ops.prepare_multiprocess()``.
"""

import ipaddress
import os
import tomllib
from urllib.parse import urlsplit

import click
from granian import Granian
from granian.constants import Interfaces
from granian.http import HTTP1Settings

from .. import config as config_mod, ops
from ..ops import logs, schema
from .common import CliError


def settings() -> dict:
    """The configuration create_app would use, checked, without building an app."""
    instance_path = os.path.abspath(os.environ.get("IDP_INSTANCE_PATH", "instance"))
    try:
        return config_mod.load(instance_path)
    except config_mod.ConfigError as exc:
        raise CliError(f"configuration: {exc}") from None
    except tomllib.TOMLDecodeError as exc:  # as the other commands say it (idp.cli._create_app)
        raise CliError(f"configuration: the IDP_CONFIG_FILE is not valid TOML ({exc})") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot start: {type(exc).__name__}: {logs.first_line(exc)}") from None


def _address(bind: str) -> tuple[str, int]:
    """(IP address, port) of ``HOST:PORT``: granian takes an address, not a name to resolve."""
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"--bind must be ADDRESS:PORT with a port from 1 to 65535, got {bind!r}")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise CliError(f"--bind takes an IP address (127.0.0.1, 0.0.0.0, [::1]), not a host name: got {host!r}") \
            from None
    return host.strip("[]"), int(port)


def _refuse_unreadable_keys(config: dict) -> None:
    """Refuse, in one line and before a port is open, keys this SECRET_KEY cannot open or records
    that read as no key: each worker would refuse them at its start (idp.create_app), granian
    would respawn it, and take the crash loop for a reason to stop. (The database's first keys
    are made by the first worker: none there yet is no refusal.)"""
    from sqlalchemy import create_engine

    from .. import engine_options
    from ..crypto.key_storage import DatabaseStorage, DirectoryStorage
    from ..crypto.keys import KeyRing, KeysUnreadable

    engine = None
    if config["KEYS_STORE"] == "directory":
        storage = DirectoryStorage(config["KEYS_DIR"])
    else:
        engine = create_engine(config["DATABASE_URL"], **engine_options(config))
        storage = DatabaseStorage(engine)
    try:
        ring = KeyRing(storage, config["KEY_PUBLISH_AHEAD"], config["SECRET_KEY"], config["KEYS_ACCEPT_CLEAR"])
        ring.refuse_unreadable()
        ring.refuse_damaged()
    except KeysUnreadable as exc:
        raise CliError(f"signing keys: {exc}") from None
    finally:
        if engine is not None:
            engine.dispose()


# A request head (request line and headers) of at most 64 KiB, against granian's default of
# about 408 KiB: a 390 KiB Cookie header cost 51-66 ms of a worker per page. The longest
# head a client of ours sends is an authorization request's URL, about 15 KiB at the
# parameters' own limits. (Node's http server allows 16 KiB, Keycloak's Quarkus about 20.)
HTTP1_SETTINGS = HTTP1Settings(max_buffer_size=64 * 1024)


def warn_if_redis_evicts(config: dict) -> None:
    """Said once at the start, on stderr: a Redis that may evict keys may evict a revocation
    mark (README, Production: "Redis restarts")."""
    url = str(config["REDIS_URL"])
    if urlsplit(url).scheme.lower() not in ("redis", "rediss", "unix"):
        return
    from ..store.redis import eviction_policy

    policy = eviction_policy(url)
    if policy not in (None, "noeviction"):
        click.secho(f"Warning: Redis's maxmemory-policy is {policy}: an evicted revocation mark would bring revoked "
                    "access tokens back; set maxmemory-policy noeviction", fg="yellow", err=True)


@click.command("serve")
@click.option("--workers", type=click.IntRange(min=1), help="Default: WORKERS.")
@click.option("--threads", type=click.IntRange(min=1), help="Request threads per worker; default: THREADS.")
@click.option("--bind", help="HOST:PORT; default: BIND.")
@click.option("--access-log", is_flag=True, help="Log every request to stdout.")
@click.option("--dev", is_flag=True, help="Allow ENV=development (local benchmarks only: the defaults are unsafe).")
def serve(workers, threads, bind, access_log, dev):
    """Serve the IdP with granian (WSGI; one request at a time runs Python in a worker)."""
    config = settings()
    if config["ENV"] != "production" and not dev:
        raise CliError("idp serve is the production server: set IDP_ENV=production (and IDP_SECRET_KEY), "
                       "or pass --dev to serve the development settings locally")
    workers = workers or config["WORKERS"]  # whole numbers from 1 (idp.config.check)
    threads = threads or config["THREADS"]
    if workers > 1 and urlsplit(str(config["REDIS_URL"])).scheme.lower() == "memory":
        raise CliError(f"REDIS_URL is memory://, which each of the {workers} workers would hold apart "
                       "(a code issued by one is unknown to the others): set IDP_REDIS_URL or use --workers 1")
    address, port = _address(bind or config["BIND"])
    try:
        schema.check(config)
    except schema.SchemaError as exc:
        raise CliError(str(exc)) from None
    _refuse_unreadable_keys(config)
    warn_if_redis_evicts(config)
    if dev:
        click.secho("serving the development settings: never do this in production", fg="yellow", err=True)
    ops.prepare_multiprocess()
    try:
        Granian(
            "idp.wsgi:app", address=address, port=port, interface=Interfaces.WSGI, workers=workers,
            blocking_threads=threads, websockets=False, log_access=access_log, respawn_failed_workers=True,
            workers_kill_timeout=30, log_dictconfig=logs.granian_config(config["LOG_FORMAT"]),
            http1_settings=HTTP1_SETTINGS,
        ).serve()
    except (OSError, RuntimeError) as exc:  # granian's bind failures (the address in use or not ours)
        raise CliError(f"cannot serve on {address}:{port}: {logs.first_line(exc)}") from None
    finally:
        ops.cleanup_multiprocess()
