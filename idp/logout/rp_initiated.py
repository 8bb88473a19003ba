"""The rules of an RP-initiated logout request (OpenID Connect RP-Initiated Logout 1.0 §2-3).

Pure: takes the request parameters, the verified ``id_token_hint`` claims and a client
lookup, and returns a LogoutRequest saying which client is known, where the browser may
be sent afterwards and whether the user has to confirm. Nothing here does I/O.

The post-logout redirect is the dangerous part (an open redirector): it is honoured only
when the client is identified (by the hint's ``aud``, by ``client_id``, and by both in
agreement when both are sent) and the URI is one the client registered, compared as an
exact string (§3: "MUST ... exactly match"). A hint that is given but cannot be verified
identifies nobody, and then nothing is redirected either (§2: without a valid hint the OP
"MUST NOT perform post-logout redirection unless" it can otherwise confirm the target;
a forged hint is not such a confirmation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

# The longest value each parameter may have. A cross-site POST is parked in the store
# before anything else is checked (idp.logout.views), so these bound what an anonymous
# request can leave there: an ID token with a few claims is well under 2 KB; a client_id
# and a post-logout URI longer than any registration can hold match none (idp.cli.client_rules).
LIMITS = {"id_token_hint": 4096, "client_id": 100, "post_logout_redirect_uri": 500, "state": 2048,
          "logout_hint": 320, "ui_locales": 100}
PARAMS = tuple(LIMITS)


class LogoutRequestError(Exception):
    """The request is malformed (a repeated or oversized parameter): shown as a page."""


@dataclass
class LogoutRequest:
    client_id: str | None = None  # the identified client, if any
    client_name: str | None = None
    redirect_uri: str | None = None  # the honoured post_logout_redirect_uri, if any
    state: str | None = None
    hint_sub: str | None = None  # from a verified id_token_hint
    hint_sid: str | None = None
    logout_hint: str | None = None
    ui_locales: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LogoutRequest":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


def parse(params: dict[str, list[str]]) -> dict[str, str]:
    """The known parameters, one value each (``params`` as from MultiDict.to_dict(flat=False)).

    OAuth parameters must not be repeated (RFC 6749 §3.1); an empty value counts as absent."""
    out = {}
    for name in PARAMS:
        values = params.get(name, [])
        if len(values) > 1:
            raise LogoutRequestError(f"'{name}' must not be repeated")
        if values and len(values[0]) > LIMITS[name]:
            raise LogoutRequestError(f"'{name}' is too long")
        if values and values[0]:
            out[name] = values[0]
    return out


def hint_claims(claims: dict | None, issuer: str) -> dict | None:
    """The claims of a verified hint if they are an ID token of ours, else None.

    The signature was checked by the caller; expiry is not checked (§2: an expired ID token
    is a fine hint, "the OP SHOULD accept ID Tokens ... when the RP identified by the ID
    Token's aud claim and/or sid claim has a current session or had a recent session")."""
    if not isinstance(claims, dict) or claims.get("iss") != issuer or not isinstance(claims.get("sub"), str):
        return None
    if not _audiences(claims):
        return None
    return claims


def _audiences(claims: dict) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        return aud
    return []


def _hinted_client(claims: dict) -> str | None:
    """OIDC Core §2: with several audiences, ``azp`` names the client the token was for."""
    auds = _audiences(claims)
    if len(auds) == 1:
        return auds[0]
    azp = claims.get("azp")
    return azp if azp in auds else None


def decide(params: dict[str, str], claims: dict | None, hint_given: bool, find_client) -> LogoutRequest:
    """What to do with a parsed request; ``claims`` is hint_claims() of the hint, or None."""
    req = LogoutRequest(state=params.get("state"), logout_hint=params.get("logout_hint"),
                        ui_locales=params.get("ui_locales"))
    client_id = params.get("client_id")
    if hint_given:
        if claims is None:
            return req  # a hint we cannot verify identifies nobody: no redirect (module docstring)
        if client_id is not None and client_id not in _audiences(claims):
            return req  # §2: client_id must match the hint's client; they disagree, so trust neither
        req.hint_sub, req.hint_sid = claims["sub"], claims.get("sid") if isinstance(claims.get("sid"), str) else None
        client_id = client_id or _hinted_client(claims)
    client = find_client(client_id) if client_id else None
    if client is None:
        return req
    req.client_id, req.client_name = client.client_id, client.name
    uri = params.get("post_logout_redirect_uri")
    if uri is not None and uri in (client.post_logout_redirect_uris or []) and _absolute_http(uri):
        req.redirect_uri = uri
    return req


def _absolute_http(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment


def needs_confirmation(req: LogoutRequest, session_sid: str, session_sub: str) -> bool:
    """Ask the user unless a verified hint names this very session (as Keycloak does).

    With ``sid`` in the hint it must be this session's; without one, the subject must match."""
    if req.hint_sub is None or req.hint_sub != session_sub:
        return True
    return req.hint_sid is not None and req.hint_sid != session_sid


def redirect_target(req: LogoutRequest) -> str | None:
    """The post-logout redirect with ``state`` appended to the registered URI's own query (§3)."""
    if req.redirect_uri is None:
        return None
    if req.state is None:
        return req.redirect_uri
    parts = urlsplit(req.redirect_uri)
    query = parts.query + ("&" if parts.query else "") + urlencode({"state": req.state})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
