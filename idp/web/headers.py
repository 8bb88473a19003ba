"""Security headers on every response."""

from flask import request

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self' {form_action}; frame-ancestors 'none'; base-uri 'none'"
)


def security_headers(issuer: str) -> list[tuple[str, str]]:
    # Forms post to ourselves, but after sign-in the browser follows redirects to relying
    # parties; CSP form-action covers redirects in Chromium, so allow any http(s) target.
    out = [
        ("Content-Security-Policy", CSP.format(form_action="https: http:")),
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
