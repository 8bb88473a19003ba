"""Hashing of high-entropy secrets: client secrets, tokens, session ids.

These values are at least 256 bits of randomness made by us, so a slow password hash
buys nothing: a keyed HMAC-SHA256 (the key derived from SECRET_KEY) makes a leaked
table useless without the key and is cheap enough for the token hot paths. Passwords,
which people choose, go through argon2id instead (idp.login.password).
"""

import hashlib
import hmac
import secrets

from ..context import current_app

_cache: dict[str, bytes] = {}


def _key() -> bytes:
    secret = current_app.config["SECRET_KEY"]
    key = _cache.get(secret)
    if key is None:
        key = _cache[secret] = hashlib.sha256(b"idp-secret-hash\x00" + secret.encode()).digest()
    return key


def keyed_hash(value: str) -> str:
    return hmac.new(_key(), value.encode(), hashlib.sha256).hexdigest()


def verify_keyed_hash(value: str, expected: str) -> bool:
    return hmac.compare_digest(keyed_hash(value), expected)


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token; 32 bytes = 256 bits."""
    return secrets.token_urlsafe(nbytes)
