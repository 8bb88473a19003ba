"""Ephemeral key-value store (codes, nonces, counters); see ``base.Store``."""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import DEFAULT_NAMESPACE, Store
from .memory import MemoryStore
from .redis import RedisStore

__all__ = ["Store", "MemoryStore", "RedisStore", "create_store"]


def create_store(url: str | None, namespace: str = DEFAULT_NAMESPACE) -> Store:
    """Build the store named by ``url``.

    ``None`` or ``memory://`` gives the in-process ``MemoryStore`` (one
    process only); ``redis://``, ``rediss://`` or ``unix://`` gives
    ``RedisStore``.  Anything else is a configuration error, raised now
    rather than on the first request.
    """
    if url is None:
        return MemoryStore(namespace)
    scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    if scheme == "memory":
        return MemoryStore(namespace)
    if scheme in ("redis", "rediss", "unix"):
        return RedisStore(url, namespace)
    raise ValueError(
        f"unsupported store URL scheme {scheme!r}: use 'memory://' (single process) "
        "or 'redis://host:port/db' (or rediss://, unix://)"
    )
