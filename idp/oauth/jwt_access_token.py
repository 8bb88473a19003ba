"""JWT access tokens (RFC 9068).

Signed by the same key ring as ID tokens, header ``typ: at+jwt`` (§2.1) so no other JWT
of ours can pass for one. Each is also recorded in the store under ``jwt:<jti>`` with the
same record as an opaque token, so introspection and revocation treat both alike: the
signature says the token is ours, the store record says it is still alive.
"""

from __future__ import annotations

import base64
import json
import re

from ..crypto.keys import InvalidJWT
from ..extensions import keyring

TYP = "at+jwt"
MAX_LENGTH = 8192
MAX_HEADER = 1024  # our header is under 200 characters: a longer one is not ours


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def claims(issuer: str, record: dict, jti: str) -> dict:
    """Pure: the claim set of §2.2 from an access-token record.

    ``sub`` is the resource owner, or the client itself when there is none (client
    credentials, §2.2).
    """
    aud = record["aud"]
    out = {
        "iss": issuer,
        "exp": record["exp"],
        "aud": aud[0] if len(aud) == 1 else list(aud),
        "sub": record.get("sub") or record["client_id"],
        "client_id": record["client_id"],
        "iat": record["iat"],
        "jti": jti,
        "scope": record["scope"],
    }
    for name in ("auth_time", "acr"):
        if record.get(name) is not None:
            out[name] = record[name]
    if record.get("amr"):
        out["amr"] = list(record["amr"])
    return out


def sign(issuer: str, record: dict, jti: str, alg: str) -> str:
    return keyring().sign(claims(issuer, record, jti), alg, typ=TYP)


def _segment(segment: str) -> dict | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past Python's limit
        return None
    return value if isinstance(value, dict) else None


def _header(token: str) -> dict | None:
    segment = token.split(".", 1)[0]
    return None if len(segment) > MAX_HEADER else _segment(segment)


def unverified_jti(token: str) -> str | None:
    """The jti a token claims, its signature NOT checked: only to fetch its store record
    ahead (idp.oauth.introspection), before the caller has authenticated. Nothing may be
    decided on it; jti_of is the verified one."""
    if len(token) > MAX_LENGTH or not looks_like_jwt(token):
        return None
    body = _segment(token.split(".", 2)[1])
    return _jti(body.get("jti") if body else None)


# The jti this server writes (idp.crypto.secrets.new_token: base64url). Anything else is not
# ours, and may be no store key at all: JSON can carry a lone surrogate, which is no UTF-8.
_JTI = re.compile(r"[A-Za-z0-9_-]{1,100}")


def _jti(value) -> str | None:
    return value if isinstance(value, str) and _JTI.fullmatch(value) else None


def jti_of(token: str) -> str | None:
    """The jti of a JWT access token we signed, or None (bad signature, wrong typ, garbage).

    Expiry is not judged here: the store record decides whether the token is alive.
    """
    if len(token) > MAX_LENGTH or not looks_like_jwt(token):
        return None
    header = _header(token)
    if header is None or header.get("typ") != TYP:
        return None
    try:
        body = keyring().verify(token, typ=TYP)
    except InvalidJWT:
        return None
    return _jti(body.get("jti"))
