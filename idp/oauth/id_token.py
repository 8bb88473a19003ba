"""ID token claims (OpenID Connect Core 1.0 §2, §3.1.3.6)."""

import base64
import hashlib

_HASHES = {"ES256": hashlib.sha256, "RS256": hashlib.sha256, "PS256": hashlib.sha256}


def half_hash(value: str, alg: str) -> str:
    """at_hash / c_hash: left half of the hash of the ASCII value, base64url (Core §3.1.3.6)."""
    digest = _HASHES[alg](value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def claims(*, issuer, sub, client_id, now, ttl, auth_time, nonce, acr, amr, sid, access_token, alg, email=None):
    """Pure: the claim set. ``email`` is a (address, verified) pair, given only with scope email."""
    out = {
        "iss": issuer,
        "sub": sub,
        "aud": client_id,
        "azp": client_id,
        "exp": now + ttl,
        "iat": now,
    }
    if auth_time is not None:
        out["auth_time"] = auth_time
    if nonce:
        out["nonce"] = nonce
    if acr:
        out["acr"] = acr
    if amr:
        out["amr"] = list(amr)
    if sid:
        out["sid"] = sid
    if access_token:
        out["at_hash"] = half_hash(access_token, alg)
    if email is not None:
        out["email"], out["email_verified"] = email
    return out
