"""One store round trip for what a request is known to need.

Introspection needs the caller's client registration, the token record and the revocation
mark of the token's family. The three keys are known from the raw request (the family's
mark from the token's tag: idp.oauth.tokens), so they are fetched with one MGET before the
endpoint runs; the lookups then take their value from here instead of asking the store
again. UserInfo needs the token record, its family's mark and the cached claims of the
account the record names: ``follow`` fetches all three in one round trip
(Store.get_many_following).
A code redemption needs the client's registration and the code's four keys
(idp.oauth.codes.find): one MGET as well.
Request-scoped (flask.g): nothing outlives the request, so nothing can go stale.
"""


from ..context import g
from ..extensions import store

_MISSING = object()


def prefetch(keys: list[str]) -> None:
    keys = [k for k in keys if k]
    if keys:
        g.idp_prefetch = dict(zip(keys, store().get_many(keys)))


def follow(key: str, field: str, prefix: str, also: list[str] = ()) -> None:
    """Fetch ``key``, the keys ``also`` and the entry the value of ``key``'s ``field`` names
    under ``prefix``, in one round trip; ``get`` then answers all of them (an entry followed
    that was missing is asked for again, as a miss)."""
    keys = [k for k in also if k] + [key]
    values, named, followed = store().get_many_following(keys, field, prefix)
    fetched = g.get("idp_prefetch") or {}
    fetched.update(zip(keys, values))
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


def get_many(keys: list[str]) -> list:
    """The values of ``keys``: those the prefetch fetched from it, the rest in one round trip."""
    fetched = g.get("idp_prefetch") or {}
    values = [fetched.pop(key, _MISSING) for key in keys]
    missing = [key for key, value in zip(keys, values) if value is _MISSING]
    if missing:
        found = iter(store().get_many(missing))
        values = [next(found) if value is _MISSING else value for value in values]
    return values
