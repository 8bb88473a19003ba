"""Finding registered clients, through the shared row cache (idp.store.row_cache).

Every token, introspection and revocation request authenticates a client, so the lookup
is on the hot path; the registration comes from the store in the same round trip as the
token where the endpoint can say which keys it needs (idp.store.prefetch).

Two grants go one step further (``copies_allowed``): they may authenticate against this
process's copy of the registration, with no round trip at all, because what they write
next checks that copy:

- client credentials writes its token with ``Store.put_checked``, checking the client's
  key of the shared cache: it returns the shared cache's registration as of that write; if
  it differs from the copy (the client was changed, deleted, or its cache entry dropped),
  the grant deletes the token and authenticates again from the shared cache
  (idp.oauth.client_credentials);
- the one-statement refresh rotation rotates only if the database still holds the copy's
  row ``id`` at its ``version`` (SQLAlchemy's version counter on Client, which starts again
  at 1 for a client removed and registered again); otherwise it changes nothing and
  the request is judged again from the shared cache (idp.oauth.refresh).

No other caller ever sees a copy that was not just read from the shared cache.
"""

from __future__ import annotations

from contextlib import contextmanager


from ..context import g
from ..extensions import store
from ..models import Client
from ..models.client import CachedClient
from ..store.row_cache import RowCache

_CACHE = RowCache(Client, "client_id", "client", [c.key for c in Client.__table__.columns], CachedClient)
# This process's copies of registrations read from the shared cache, by (store namespace, client_id).
_COPIES: dict[tuple[str, str], CachedClient] = {}
MAX_COPIES = 1000


def _valid(client_id) -> bool:
    # PostgreSQL text cannot hold NUL: no client has such an id, and asking would fail.
    return isinstance(client_id, str) and 0 < len(client_id) <= 100 and "\x00" not in client_id


def find(client_id) -> Client | CachedClient | None:
    if not _valid(client_id):
        return None
    s = store()
    if not s.shared:
        return _CACHE.find(client_id)
    name = (s.namespace, client_id)
    if g.get("idp_client_copies_allowed"):
        copy = _COPIES.get(name)
        if copy is not None:
            g.idp_client_copy = copy
            return copy
    client = _CACHE.find(client_id)  # with a shared store, always a CachedClient
    if client is not None:
        if len(_COPIES) >= MAX_COPIES:
            _COPIES.clear()
        _COPIES[name] = client
    return client


@contextmanager
def copies_allowed():
    """Within the block, ``find`` may answer from this process's copy; ``copy_used`` says
    afterwards whether it did (and the caller must check it with ``matches``)."""
    g.idp_client_copies_allowed, g.idp_client_copy = True, None
    try:
        yield
    finally:
        g.idp_client_copies_allowed = False


def copy_used() -> CachedClient | None:
    return g.get("idp_client_copy")


def matches(copy: CachedClient, current) -> bool:
    """Whether the shared cache's registration (as the token's ``put_checked`` returned it) is the copy's."""
    return isinstance(current, dict) and current == vars(copy)


def forget(client_id: str) -> None:
    _COPIES.pop((store().namespace, client_id), None)
    g.idp_client_copy = None


def cache_key(client_id) -> str | None:
    """The store key of a client's cached registration, when the store holds one."""
    return _CACHE.key(client_id) if store().shared and _valid(client_id) else None
