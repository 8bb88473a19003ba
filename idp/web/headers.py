"""Security headers on every response."""

from flask import request

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self' {form_action}; frame-ancestors 'none'; base-uri 'none'"
)


def register(app):
    https = app.config["ISSUER"].startswith("https://")

    @app.after_request
    def add_headers(resp):
        h = resp.headers
        # Forms post to ourselves, but after sign-in the browser follows redirects to relying
        # parties; CSP form-action covers redirects in Chromium, so allow any http(s) target.
        h.setdefault("Content-Security-Policy", CSP.format(form_action="https: http:"))
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if https:
            h.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
        if request.method == "POST" or request.path.startswith(("/authorize", "/login", "/consent")):
            h.setdefault("Cache-Control", "no-store")
        return resp
