"""What every relying party here shares: its registration, the OIDC client, local sessions.

An RP knows three things about the IdP before it starts: the issuer URL, its own
client_id, and (for a confidential client) its secret. Everything else (endpoints,
JWKS, supported algorithms) comes from discovery (OpenID Connect Discovery 1.0 §4).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import OAuthError
from flask import Flask, abort, render_template_string, request, session
from joserfc.errors import JoseError

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ISSUER = "http://127.0.0.1:5000"
# The acceptance of a verified ID token tolerates this much clock difference, in seconds.
LEEWAY = 60


def issuer() -> str:
    return os.environ.get("IDP_ISSUER", DEFAULT_ISSUER).rstrip("/")


def clients_file() -> Path:
    """The same file the IdP registers the demo clients from (IDP_CLIENTS_FILE)."""
    path = Path(os.environ.get("IDP_CLIENTS_FILE", "config/clients.toml"))
    return path if path.is_absolute() else ROOT / path


@dataclass
class Registration:
    """One [[clients]] table of config/clients.toml, as the RP sees it."""

    client_id: str
    secret: str | None = None
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=lambda: ["openid", "email", "profile"])
    name: str = ""
    id_token_alg: str | None = None  # registered: ID tokens signed with any other alg are refused

    @property
    def redirect_uri(self) -> str:
        return self.redirect_uris[0]

    @property
    def base_url(self) -> str:
        """Where the RP itself listens: the origin of its registered redirect URI."""
        parts = urlsplit(self.redirect_uri)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def port(self) -> int:
        return urlsplit(self.redirect_uri).port or 80


def load_registrations(path: Path | None = None) -> dict[str, Registration]:
    with (path or clients_file()).open("rb") as fh:
        tables = tomllib.load(fh).get("clients", [])
    known = Registration.__dataclass_fields__
    return {t["client_id"]: Registration(**{k: v for k, v in t.items() if k in known}) for t in tables}


def register_oidc(oauth, reg: Registration, idp_issuer: str):
    """The IdP as an authlib client: discovery, PKCE S256, our scopes.

    authlib then builds the authorization request with state, nonce and code_challenge,
    keeps them in the Flask session, and on the callback redeems the code with the
    verifier and checks the ID token's signature (JWKS), iss, exp, iat, nonce and at_hash.
    """
    return oauth.register(
        "idp",
        client_id=reg.client_id,
        client_secret=reg.secret,
        server_metadata_url=idp_issuer + "/.well-known/openid-configuration",
        client_kwargs={"scope": " ".join(reg.scopes), "code_challenge_method": "S256",
                       "token_endpoint_auth_method": "client_secret_basic", "default_timeout": 10},
    )


def id_token_checks(idp_issuer: str, client_id: str) -> dict:
    """Claims options for authlib: it checks iss from metadata but not that ``aud`` is us."""
    return {"iss": {"essential": True, "value": idp_issuer},
            "aud": {"essential": True, "value": client_id}}


def check_authorization_response_iss(idp_issuer: str) -> None:
    """RFC 9207 §2.4: the IdP says it sends ``iss``; refuse a response from another issuer."""
    if request.args.get("iss") != idp_issuer:
        abort(400, "the authorization response does not come from our issuer (RFC 9207)")


def finish_sign_in(idp, idp_issuer: str, client_id: str, id_token_alg: str | None = None) -> dict:
    """At the redirect URI: check ``iss``, redeem the code (authlib sends the PKCE verifier
    and checks state, nonce and the ID token); the verified claims are in ``["userinfo"]``.
    ``id_token_alg``: the alg this client registered (OIDC Core §3.1.3.7 (7)); authlib takes
    any alg discovery lists."""
    check_authorization_response_iss(idp_issuer)
    # The state first (RFC 6749 §10.12): authlib reads an error parameter before it, so a
    # forged /callback?error=...&error_description=<any text> showed that text on our page.
    state = request.args.get("state")
    if not state or idp.framework.get_state_data(session, state) is None:
        abort(400, "sign-in failed: this answer is not for a sign-in started in this browser")
    error = request.args.get("error")
    if error:
        idp.framework.clear_state_data(session, state)
        abort(400, f"sign-in not completed ({error if error.replace('_', '').isalpha() else 'error'})")
    try:
        token = idp.authorize_access_token(claims_options=id_token_checks(idp_issuer, client_id), leeway=LEEWAY)
    except (AuthlibBaseError, JoseError, requests.RequestException, ValueError) as exc:
        # authlib's errors (a code missing too); ValueError: a token answer that is not JSON.
        # The details (a URL of the IdP's, its answer) go to the log, not to the seller's page.
        log.warning("sign-in failed: %s: %s", type(exc).__name__, exc)
        abort(400, "sign-in failed: the identity provider's answer could not be used; sign in again")
    if "userinfo" not in token:  # authlib puts the verified ID token claims there
        abort(400, "sign-in failed: the token response has no ID token")
    if not signed_with(token["id_token"], id_token_alg):
        abort(400, f"sign-in failed: the ID token is not signed with {id_token_alg}, the alg this client registered")
    return token


def jws_header(token: str) -> dict:
    """The JOSE header of a JWS authlib has verified already (for display, and signed_with)."""
    segment = token.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def signed_with(jws: str, alg: str | None) -> bool:
    """Whether a (verified) JWS's header names ``alg``; True when no alg was registered."""
    if alg is None:
        return True
    try:
        header = jws_header(jws)
    except ValueError:
        return False
    return isinstance(header, dict) and header.get("alg") == alg


def start_sign_in(idp, redirect_uri: str):
    """The redirect to the authorization endpoint (authlib makes state, nonce and the PKCE
    verifier and keeps them in the session); 503, not a 500, when the IdP's discovery
    document cannot be had."""
    try:
        return idp.authorize_redirect(redirect_uri)
    except (requests.RequestException, ValueError, KeyError) as exc:
        log.warning("sign-in could not start: %s", type(exc).__name__)
        abort(503, "Seller Central cannot be reached: try again in a moment.")


def signed_out_note(idp) -> str | None:
    """Back from the end_session_endpoint (RP-Initiated Logout §3), if ``state`` says so."""
    if "state" not in request.args:
        return None
    try:
        idp.validate_logout_response()
        return "You are signed out."
    except OAuthError:
        return "Ignored a sign-out response with an unknown state."


SESSION_KEY = "local_session"


def begin_local_session(sessions: "LocalSessions", data: dict) -> None:
    """After a sign-in: a new local session, and nothing kept from the browser's session before
    it (its CSRF token included), so that a value planted before the sign-in is worth nothing
    after it (session fixation). authlib has already taken its state from the session."""
    sessions.delete(session.get(SESSION_KEY))
    session.clear()
    session[SESSION_KEY] = sessions.create(data)
    csrf_token()  # a new one


class LocalSessions:
    """The RP's own sessions, server side: the cookie holds only a random id.

    Tokens stay on the server, and a back-channel logout (which arrives without the
    browser's cookie) can end every session of an IdP ``sid`` or ``sub``.
    """

    def __init__(self, ttl: int = 8 * 3600, on_end: Callable[[dict], None] | None = None):
        """``on_end``: called with each session's data once it is gone, whichever way (signed
        out here, ended by a back-channel logout, expired, replaced by a new sign-in), in a
        thread of its own: an RP holding a refresh token revokes it there, since an offline
        grant outlives the IdP's session and only the RP can end it (RFC 7009)."""
        self._data: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.ttl = ttl
        self.on_end = on_end

    def _ended(self, gone: list[dict]) -> None:
        if self.on_end is not None and gone:
            threading.Thread(target=self._call_on_end, args=(gone,), daemon=True).start()

    def _call_on_end(self, gone: list[dict]) -> None:
        for data in gone:  # one failing (the IdP out of reach) must not stop the rest
            try:
                self.on_end(data)
            except Exception as exc:  # noqa: BLE001  (a thread of its own: say so, go on)
                log.warning("ending a local session: %s", type(exc).__name__)

    def create(self, data: dict) -> str:
        """A new session; the ones whose time is up go now, read again or not (an RP holding
        a refresh token revokes it in on_end, and a seller who never comes back never reads
        their session again)."""
        local_id, now = secrets.token_urlsafe(32), time.time()
        with self._lock:
            expired = [k for k, v in self._data.items() if v["_expires"] <= now]
            gone = [self._data.pop(k) for k in expired]
            self._data[local_id] = dict(data, _expires=now + self.ttl, _lock=threading.Lock())
        self._ended(gone)
        return local_id

    def get(self, local_id: str | None) -> dict | None:
        with self._lock:
            data = self._data.get(local_id or "")
            expired = data is not None and data["_expires"] <= time.time()
            if expired:
                del self._data[local_id]
        if expired:
            self._ended([data])
            return None
        return data

    def delete(self, local_id: str | None) -> None:
        with self._lock:
            data = self._data.pop(local_id or "", None)
        self._ended([data] if data is not None else [])

    def end(self, *, sid: str | None = None, sub: str | None = None) -> int:
        """End the sessions of an IdP session (``sid``), or of a user (``sub``) when no sid."""
        with self._lock:
            doomed = [k for k, v in self._data.items()
                      if (sid and v["claims"].get("sid") == sid) or (not sid and sub and v["claims"]["sub"] == sub)]
            gone = [self._data.pop(k) for k in doomed]
        self._ended(gone)
        return len(gone)


def new_flask_app(name: str, cookie: str, secure: bool = False) -> Flask:
    """A Flask app whose session cookie does not collide with the IdP's or another RP's
    (cookies ignore the port: every app on 127.0.0.1 shares one cookie jar). ``secure``: the
    app is served over https (its redirect URI is), so the cookie is Secure."""
    app = Flask(name)
    app.config.update(SECRET_KEY=os.environ.get("RP_SECRET_KEY") or secrets.token_hex(32),
                      SESSION_COOKIE_NAME=cookie, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=secure)

    @app.after_request
    def headers(resp):
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; "
                                "frame-ancestors 'none'")
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    return app


def csrf_token() -> str:
    """A per-browser token for the RP's own POST forms."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def check_csrf() -> None:
    sent = request.form.get("csrf", "")
    # As bytes: compare_digest refuses str holding anything but ASCII (a TypeError, a 500).
    if not sent or not secrets.compare_digest(sent.encode(), session.get("csrf", "").encode()):
        abort(400, "stale form: reload the page")


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font:15px system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}
pre{background:#f4f4f4;padding:.6rem;overflow:auto}form{display:inline}button{margin:.2rem}</style>
</head><body><h1>{{ title }}</h1>%s</body></html>"""


def render(body: str, **context) -> str:
    """Render ``body`` (a Jinja template string, autoescaped) inside the page."""
    return render_template_string(PAGE % body, csrf=csrf_token(), **context)
