"""Authorization codes (RFC 6749 §4.1.2, §10.5; RFC 9700 §4.2.4).

A code is 256 random bits, kept in the store under its keyed hash for CODE_TTL seconds and
bound to client, redirect URI and PKCE challenge. Redemption reads the record (``find``),
the grant checks the client, the redirect URI, the PKCE verifier, the sign-in's session and
the resources named (RFC 8707 §2.2) against it, and only then takes the code (``take``:
``store.consume``, atomic: of concurrent redemptions exactly one gets it); on PostgreSQL the
session is checked after the take, by the statement that writes the family, and a refusal
there gives the code back (idp.oauth.code_redemption). A redemption that fails those checks
leaves the code to its client, as node-oidc-provider does: anyone who saw
a code (a log, a Referer, history) but lacks the verifier could otherwise destroy it. At
issue time a second key remembers which token family the code would start (and whose
account), a little longer than the code lives, and taking the code leaves a mark that it was
used (in the same atomic step): a code presented again after it was used revokes what the
first redemption received and records the security event (§4.1.2: the server SHOULD revoke
the tokens issued from it). A code that expired unused is only an invalid grant: a slow
client's late redemption is no attack, and must not alarm the seller.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode, urlsplit, urlunsplit


from ..context import current_app
from ..crypto.secrets import keyed_hash, new_token
from ..extensions import store
from ..models.grant import new_grant_id
from ..store import prefetch

SPENT_TTL = 600


def _spent_ttl() -> int:
    """How long after its issue a code's family is remembered, and after its use that it was used."""
    return max(SPENT_TTL, current_app.config["CODE_TTL"] * 2)


def issue(record: dict) -> str:
    """Store a code for ``record`` (client_id, redirect_uri, code_challenge, account, ...)."""
    code = new_token(32)
    h = keyed_hash(code)
    # The expiry is in the record too: the store's TTL reclaims space, the record decides.
    record = dict(record, grant_id=new_grant_id(), exp=time.time() + current_app.config["CODE_TTL"])
    s, spent_ttl = store(), _spent_ttl()
    # The family alone, as every release has written it (an older process reading a newer
    # marker during a rolling upgrade must still find a grant id); whose code it was, apart.
    s.put_many([  # one round trip
        (f"code-grant:{h}", record["grant_id"], spent_ttl),
        (f"code-owner:{h}", {"client_id": record["client_id"], "account_id": record.get("account_id")}, spent_ttl),
        (f"code:{h}", record, current_app.config["CODE_TTL"]),
    ])
    return code


def _usable(code) -> bool:
    return isinstance(code, str) and 0 < len(code) <= 200


def keys(code) -> list[str]:
    """The store keys ``find`` reads for ``code`` (none for garbage): the token endpoint
    fetches them with the client's registration, in one round trip (idp.store.prefetch)."""
    if not _usable(code):
        return []
    h = keyed_hash(code)
    return [f"code:{h}", f"code-grant:{h}", f"code-owner:{h}", f"code-spent:{h}"]


def find(code: str) -> tuple[dict | None, dict | None]:
    """(record, None) for a live code, not yet taken; (None, {"grant_id", "client_id",
    "account_id"}) for a replay of a code that was used (the family to revoke; client and
    account None for a code an earlier release issued); (None, None) for an unknown code,
    or one that expired unused. The record carries its store key for ``take``."""
    if not _usable(code):
        return None, None
    names = keys(code)
    record, grant_id, owner, spent = prefetch.get_many(names)
    if record is not None:
        return (dict(record, key=names[0]), None) if record["exp"] > time.time() else (None, None)
    if not isinstance(grant_id, str) or spent is None:
        return None, None
    owner = owner if isinstance(owner, dict) else {}
    return None, {"grant_id": grant_id, "client_id": owner.get("client_id"), "account_id": owner.get("account_id")}


def take(record: dict) -> bool:
    """Use up the code ``find`` returned: True for the one caller that takes it, which
    leaves the mark that the code was used."""
    spent = "code-spent:" + record["key"].removeprefix("code:")
    return store().consume_leaving(record["key"], spent, 1, _spent_ttl()) is not None


def give_back(record: dict) -> None:
    """Undo ``take`` when the redemption failed on an outage before anything was issued (or
    the take's own answer was lost: it may have run), or was refused after the take (the
    session found ended on PostgreSQL, idp.oauth.code_redemption): on an outage the
    answer is a 503 with Retry-After, and the client's retry must find the code live (until
    its exp), not read as a replay that revokes the sign-in and alarms the seller. Nothing
    is issued twice from it: the family's id is the code's, so if the outage hid a commit
    that went through, the retry's insert of that id fails on the primary key (and is
    answered invalid_grant, idp.oauth.server)."""
    h = record["key"].removeprefix("code:")
    s, ttl = store(), int(record["exp"] - time.time())
    if ttl >= 1:
        s.put(record["key"], {k: v for k, v in record.items() if k != "key"}, ttl)
    s.delete(f"code-spent:{h}")


def response_url(redirect_uri: str, params: dict, fragment: bool = False) -> str:
    """The redirect back to the client, with ``iss`` (RFC 9207) and the state byte for byte;
    in the query, or with ``fragment`` in the fragment (a registered redirect URI has none,
    RFC 6749 §3.1.2)."""
    params = {k: v for k, v in params.items() if v is not None}
    params["iss"] = current_app.config["ISSUER"]
    parts = urlsplit(redirect_uri)
    if fragment:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, urlencode(params)))
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
