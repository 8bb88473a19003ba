"""Security headers on every response."""

import re
from urllib.parse import urlsplit

from flask import request

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
)
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*")  # CSP host-source (no IP-literal, no underscore)


def form_action_source(uri: str) -> str | None:
    """A CSP source expression (CSP 3 §2.3.1) a form's redirect to ``uri`` matches: its origin
    for http(s), its scheme for a native app's private-use one (``com.example.app:``, RFC
    8252 §7.1), or a host CSP cannot name (an IPv6 literal) by its scheme. None if nothing
    safe can be written. ``uri`` is a registered redirect URI, exactly matched."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if not _SCHEME.fullmatch(scheme):
        return None
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if scheme not in ("http", "https") or not host or not _HOST.fullmatch(host):
        return f"{scheme}:"
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def with_form_target(resp, uri: str | None):
    """Let this page's forms end where ``uri`` is: Chromium holds a form's redirects to the
    page's form-action too (a sign-in's answer to the relying party, a logout's return), and
    a native app's private-use scheme matches no ``https:`` or ``http:``. Every other page's
    forms may go to this IdP alone."""
    source = form_action_source(uri) if uri else None
    resp.headers["Content-Security-Policy"] = CSP.format(form_action="'self'" + (f" {source}" if source else ""))
    return resp


def security_headers(issuer: str) -> list[tuple[str, str]]:
    # Forms post to ourselves; a page whose form ends in a redirect elsewhere names that one
    # target (with_form_target).
    out = [
        ("Content-Security-Policy", CSP.format(form_action="'self'")),
        ("X-Content-Type-Options", "nosniff"),
        # same-origin: a cross-origin request (a redirect to a relying party, a link out)
        # carries no Referer, so no URL of ours leaks; our own form posts carry Referer and
        # Origin, which Flask-WTF's CSRF check requires of every HTTPS request (with
        # no-referrer, a sign-in over https failed: "The referrer header is missing").
        ("Referrer-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if issuer.startswith("https://"):
        out.append(("Strict-Transport-Security", "max-age=63072000; includeSubDomains"))
    return out


def register(app):
    always = security_headers(app.config["ISSUER"])

    @app.after_request
    def add_headers(resp):
        h = resp.headers
        for name, value in always:
            h.setdefault(name, value)
        # Every page of a sign-in or a logout: they carry CSRF tokens, a prefilled email, a
        # confirmation id; no cache (the browser's or a proxy's) may keep them.
        if request.method == "POST" or request.path.startswith(("/authorize", "/signin/", "/logout")):
            h.setdefault("Cache-Control", "no-store")
        return resp
