"""Redirect URI matching: exact string comparison (RFC 9700 §4.1.3), with the one
exception RFC 8252 §7.3 makes for native apps: on a loopback IP literal redirect the
port is chosen at run time, so only the port may differ from the registered URI.
"""

import re
from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("127.0.0.1", "[::1]")


# A loopback authority: the IP literal and, at most, a port (RFC 8252 §7.3: only the port
# may differ); "[::1]evil.example" is no such authority.
_LOOPBACK_AUTHORITY = re.compile(r"(127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?")


def _without_port(url: str):
    parts = urlsplit(url)
    authority = _LOOPBACK_AUTHORITY.fullmatch(parts.netloc)
    host = authority.group(1) if authority else parts.netloc
    return (parts.scheme, host, parts.path, parts.query, parts.fragment)


def is_loopback_redirect(url: str) -> bool:
    """An http URL on a loopback IP literal; False for a malformed one (an unclosed ``[``)."""
    try:
        return urlsplit(url).scheme == "http" and _without_port(url)[1] in LOOPBACK_HOSTS
    except ValueError:
        return False


def matches(requested: str, registered: list[str], native: bool) -> bool:
    if requested in registered:
        return True
    if not native or "@" in requested or not is_loopback_redirect(requested):
        return False
    try:
        urlsplit(requested).port  # a malformed port raises
    except ValueError:
        return False
    wanted = _without_port(requested)
    return any(is_loopback_redirect(r) and _without_port(r) == wanted for r in registered)
