"""Shape checks on the parameters of /token, /introspect and /revoke.

RFC 6749 §3.1 and §3.2: request parameters MUST NOT be included more than once, except
those defined as repeatable (``resource``, RFC 8707 §2). A repeated or oversized value
is invalid_request before anything reads it, so no handler ever sees two meanings of one
name. Pure: takes a werkzeug MultiDict (query and body together, as authlib reads them).
"""

import re

from authlib.oauth2.rfc6749 import InvalidRequestError

from .resource_indicators import MAX_RESOURCES

MAX_VALUE = 4096  # a client assertion (RFC 7523) is the largest legitimate value
REPEATABLE = frozenset({"resource"})
# Credentials are judged by their handler: an oversized code or refresh token is simply not
# one we issued (invalid_grant), an oversized token at /introspect is {"active": false}.
CREDENTIALS = frozenset({"code", "refresh_token", "token"})
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def _name(name: str) -> str:
    # error_description must stay in RFC 6749 §5.2's character set: echo only plain names.
    return f"'{name}'" if _SAFE_NAME.match(name) else "a parameter"


def check(values) -> None:
    """Raise InvalidRequestError on a repeated parameter or an oversized non-credential."""
    for name in values:
        items = values.getlist(name)
        if len(items) > 1 and name not in REPEATABLE:
            raise InvalidRequestError(f"{_name(name)} must not be repeated")
        if name not in CREDENTIALS and any(len(v) > MAX_VALUE for v in items):
            raise InvalidRequestError(f"{_name(name)} is too long")
    if len(values.getlist("resource")) > MAX_RESOURCES:
        raise InvalidRequestError("too many 'resource' values")


def single(values, name: str) -> str | None:
    """The one value of ``name`` (check() has refused repetition), or None if absent or empty."""
    value = values.get(name)
    return value or None
