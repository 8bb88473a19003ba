"""Configuration: documented defaults in one place, then config/idp.toml, then IDP_* environment.

Every setting below can be overridden in the TOML file (same key, any case) or with an
environment variable named ``IDP_<KEY>`` (``IDP_ISSUER=https://id.example.com``).
Values from the environment are parsed as JSON when they look like it (numbers, booleans).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_SECRET_KEY = "dev-only-not-secret"

DEFAULTS: dict[str, object] = {
    # "development" (make run, tests) or "production" (idp serve): production refuses unsafe settings.
    "ENV": "development",
    # Signs cookies and keys the hash of client secrets and tokens. Must be set in production.
    "SECRET_KEY": DEFAULT_SECRET_KEY,
    # The issuer identifier; every URL in discovery is built from it, never from the Host header.
    "ISSUER": "http://127.0.0.1:5000",
    # SQLAlchemy URL; PostgreSQL as postgresql+psycopg://user:pass@host/db.
    "DATABASE_URL": "sqlite:///{instance}/idp.sqlite3",
    # Seconds a new PostgreSQL connection may take (a database that accepts and never answers
    # would otherwise hold the request, and /readyz, forever).
    "DATABASE_CONNECT_TIMEOUT": 5,
    # Ephemeral store: memory:// (embedded, one process) or redis://host:port/db (production).
    "REDIS_URL": "memory://",
    # Prefix of every store key (lets several deployments or test runs share one Redis).
    "STORE_NAMESPACE": "idp:",
    # Directory holding the signing keys (generated on first start when empty).
    "KEYS_DIR": "keys",
    # The demo clients registered by `make run` and `idp clients load`.
    "CLIENTS_FILE": "config/clients.toml",
    # Signing algorithm of ID tokens unless a client asks for another (ES256 or RS256).
    "ID_TOKEN_ALG": "ES256",
    # Lifetimes, in seconds.
    "CODE_TTL": 60,
    "ACCESS_TOKEN_TTL": 600,
    "ID_TOKEN_TTL": 3600,
    "REFRESH_TOKEN_IDLE_TTL": 14 * 24 * 3600,
    "REFRESH_TOKEN_ABSOLUTE_TTL": 30 * 24 * 3600,
    "LOGIN_TTL": 900,  # a sign-in in progress
    "SESSION_TTL": 14 * 24 * 3600,  # the IdP browser session (single sign-on)
    # Signing key rotation: a new key is published this long before it signs anything.
    "KEY_PUBLISH_AHEAD": 24 * 3600,
    # Argon2id cost (RFC 9106 second recommended option: 19 MiB, t=2, p=1 is the floor).
    "ARGON2_MEMORY_KIB": 19 * 1024,
    "ARGON2_TIME_COST": 2,
    "ARGON2_PARALLELISM": 1,
    # API scopes advertised in discovery beside the OpenID ones (clients are still limited to theirs).
    "EXTRA_SCOPES": ["api:read", "api:write"],
    # Resource servers for RFC 8707 resource indicators: {"https://api.example.com": {
    #   "access_token_format": "jwt" | "opaque", "scopes": ["api:read", ...]}}. A `resource`
    # not listed here is invalid_target; "scopes" down-scopes tokens for that audience.
    "RESOURCES": {},
    # Largest form or query accepted by any endpoint.
    "MAX_CONTENT_LENGTH": 64 * 1024,
    # Back-channel logout: attempts per relying party and the timeout of each.
    "BACKCHANNEL_ATTEMPTS": 3,
    "BACKCHANNEL_TIMEOUT": 2.0,
    # Worker processes of `idp serve`, and request threads in each: one runs Python at a
    # time, the others while it waits on a password hash or a relying party (idp.ops.turns).
    "WORKERS": 2,
    "THREADS": 2,
    "BIND": "127.0.0.1:8000",
    # Reverse proxies (load balancers) in front that append X-Forwarded-For and set
    # X-Forwarded-Proto: the client's address is taken that many hops from the end of
    # X-Forwarded-For. 0 trusts no such header (anyone could write one).
    "PROXY_HOPS": 0,
    # "text" or "json": one JSON object per log line, for a log pipeline (idp.ops.logs).
    "LOG_FORMAT": "text",
    # Maintenance jobs run by the server processes themselves (idp.ops.maintenance); false
    # leaves them to cron (`idp maintenance run`). Intervals in seconds.
    "MAINTENANCE": True,
    "LOGOUT_RETRY_INTERVAL": 300,
    "PRUNE_INTERVAL": 24 * 3600,
    "PRUNE_GRACE_DAYS": 1,  # ended families and sessions are kept this many days
    "EVENT_RETENTION_DAYS": 0,  # security events (the sign-in history) are kept this long; 0: for good
    "KEY_CHECK_INTERVAL": 3600,
    "KEY_ROTATION_DAYS": 90,  # a signing key is replaced this long after it was made; 0: never
    # Bearer token that GET /metrics requires (compared in constant time); None leaves it open
    # in development and turns it off (404) in production.
    "METRICS_TOKEN": None,
}


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message says why."""


def load(instance_path: str, overrides: dict | None = None) -> dict:
    config = dict(DEFAULTS)
    path = Path(os.environ.get("IDP_CONFIG_FILE", "config/idp.toml"))
    if path.is_file():
        with path.open("rb") as fh:
            config.update({k.upper(): v for k, v in tomllib.load(fh).items()})
    config.update(_from_environment(os.environ))
    config.update(overrides or {})
    config["DATABASE_URL"] = str(config["DATABASE_URL"]).format(instance=instance_path)
    config["ISSUER"] = str(config["ISSUER"]).rstrip("/")
    check(config)
    return config


def _from_environment(environ) -> dict:
    """``IDP_<KEY>`` settings, and ``IDP_<KEY>_FILE`` naming a file that holds one (for a
    secret mounted as a file, as Docker and Kubernetes secrets are, instead of an
    environment variable that every child process and crash dump sees)."""
    out, from_files = {}, {}
    for key, raw in environ.items():
        if not key.startswith("IDP_") or key == "IDP_CONFIG_FILE":
            continue
        name = key[4:]
        if name.endswith("_FILE") and name[:-5] in DEFAULTS:
            from_files[name[:-5]] = (key, raw)
        else:
            out[name] = _parse_env(raw)
    for name, (key, path) in from_files.items():
        if name in out:
            raise ConfigError(f"both IDP_{name} and {key} are set: keep one")
        try:
            with open(path, encoding="utf-8") as fh:
                out[name] = _parse_env(fh.read().rstrip("\r\n"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{key}: cannot read {path!r} ({type(exc).__name__})") from None
    return out


def _parse_env(raw: str):
    import json

    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, (int, float, bool, list, dict)) else raw


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_whole(value, minimum: int) -> bool:
    """An int (not a bool, which Python counts as one) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check(config: dict) -> None:
    """Refuse settings that are unsafe in production; say which and why."""
    issuer = urlsplit(config["ISSUER"])
    if issuer.scheme not in ("http", "https") or not issuer.hostname or issuer.query or issuer.fragment:
        raise ConfigError(f"ISSUER must be an http(s) URL without query or fragment, got {config['ISSUER']!r}")
    if config["ID_TOKEN_ALG"] not in ("ES256", "RS256"):
        raise ConfigError("ID_TOKEN_ALG must be ES256 or RS256")
    for key in ("LOGOUT_RETRY_INTERVAL", "PRUNE_INTERVAL", "KEY_CHECK_INTERVAL"):
        if not is_whole(config[key], 1):
            raise ConfigError(f"{key} must be a whole number of seconds, at least 1, got {config[key]!r}")
    if not is_whole(config["PROXY_HOPS"], 0):
        raise ConfigError(f"PROXY_HOPS must be a whole number of proxies, at least 0, got {config['PROXY_HOPS']!r}")
    for key in ("PRUNE_GRACE_DAYS", "KEY_ROTATION_DAYS", "EVENT_RETENTION_DAYS"):
        if not is_whole(config[key], 0):
            raise ConfigError(f"{key} must be a whole number of days, at least 0, got {config[key]!r}")
    rotation = config["KEY_ROTATION_DAYS"] * 24 * 3600
    if rotation and rotation <= config["KEY_PUBLISH_AHEAD"]:
        raise ConfigError("KEY_ROTATION_DAYS must be longer than KEY_PUBLISH_AHEAD (a key is published "
                          "that long before it signs), or 0 to rotate only by hand")
    if config["LOG_FORMAT"] not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT must be text or json, got {config['LOG_FORMAT']!r}")
    if not isinstance(config["MAINTENANCE"], bool):
        raise ConfigError(f"MAINTENANCE must be true or false, got {config['MAINTENANCE']!r}")
    if config["ENV"] != "production":
        return
    if config["SECRET_KEY"] == DEFAULT_SECRET_KEY or len(str(config["SECRET_KEY"])) < 32:
        raise ConfigError(
            "production needs IDP_SECRET_KEY: at least 32 random characters "
            "(the default key is public, so cookies and secret hashes could be forged)"
        )
    if issuer.scheme != "https" and not is_loopback_url(config["ISSUER"]):
        raise ConfigError(
            f"production issuer {config['ISSUER']!r} is plain http on a non-loopback host: "
            "tokens and cookies would cross the network in clear; use https"
        )
