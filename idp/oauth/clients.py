"""Finding registered clients, through the shared row cache (idp.store.row_cache).

Every token, introspection and revocation request authenticates a client, so the lookup
is on the hot path; the registration comes from the store in the same round trip as the
token where the endpoint can say which keys it needs (idp.store.prefetch).
"""

from __future__ import annotations

from ..extensions import store
from ..models import Client
from ..models.client import CachedClient
from ..store.row_cache import RowCache

_CACHE = RowCache(Client, "client_id", "client", [c.key for c in Client.__table__.columns], CachedClient)


def _valid(client_id) -> bool:
    return isinstance(client_id, str) and 0 < len(client_id) <= 100


def find(client_id) -> Client | CachedClient | None:
    return _CACHE.find(client_id) if _valid(client_id) else None


def cache_key(client_id) -> str | None:
    """The store key of a client's cached registration, when the store holds one."""
    return _CACHE.key(client_id) if store().shared and _valid(client_id) else None
