"""One store round trip for what a request is known to need.

Introspection needs the caller's client registration and the token record. Both keys
are known from the raw request, so they are fetched with one MGET before the endpoint
runs; the lookups then take their value from here instead of asking the store again.
UserInfo needs the token record and the cached claims of the account the record names:
``follow`` fetches both in one round trip (Store.get_following).
Request-scoped (flask.g): nothing outlives the request, so nothing can go stale.
"""


from ..context import g
from ..extensions import store

_MISSING = object()


def prefetch(keys: list[str]) -> None:
    keys = [k for k in keys if k]
    if keys:
        g.idp_prefetch = dict(zip(keys, store().get_many(keys)))


def follow(key: str, field: str, prefix: str) -> None:
    """Fetch ``key`` and the entry its value's ``field`` names under ``prefix``, in one round
    trip; ``get`` then answers both (an entry that was missing is asked for again, as a miss)."""
    value, named, followed = store().get_following(key, field, prefix)
    fetched = g.get("idp_prefetch") or {}
    fetched[key] = value
    if followed is not None:
        fetched[named] = followed  # under the key it was read from
    g.idp_prefetch = fetched


def get(key: str):
    """The value of ``key``, from the prefetch if it was fetched, else from the store."""
    fetched = g.get("idp_prefetch")
    if fetched is not None:
        value = fetched.pop(key, _MISSING)
        if value is not _MISSING:
            return value
    return store().get(key)
