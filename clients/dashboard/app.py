"""Seller Dashboard: a confidential web RP (client_secret_basic) on the authorization code
flow with PKCE (OIDC Core §3.1, RFC 7636).

It signs in, shows the ID token claims and UserInfo, calls the backend API with its
access token, refreshes (the IdP rotates refresh tokens: RFC 9700 §4.14.2), signs out
with RP-initiated logout, and takes back-channel logout calls from the IdP.
"""

from __future__ import annotations

import json
import logging
import os

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import abort, redirect, session, url_for
from joserfc.errors import JoseError

from ..common import (LEEWAY, SESSION_KEY, LocalSessions, Registration, begin_local_session, check_csrf, signed_with,
                      finish_sign_in, id_token_checks, issuer, load_registrations, new_flask_app, register_oidc, render,
                      signed_out_note, start_sign_in)
from .. import backchannel

log = logging.getLogger(__name__)

INDEX = """
{% if note %}<p><strong>{{ note }}</strong></p>{% endif %}
{% if not local %}
  <p>You are not signed in.</p><p><a id="signin" href="{{ url_for('login') }}">Sign in with Seller Central</a></p>
{% else %}
  <p id="who">Signed in as <strong>{{ local.claims.email }}</strong></p>
  <form method="post" action="{{ url_for('call_api') }}"><input type="hidden" name="csrf" value="{{ csrf }}">
    <button id="call-api">Call the seller API</button></form>
  <form method="post" action="{{ url_for('refresh') }}"><input type="hidden" name="csrf" value="{{ csrf }}">
    <button id="refresh">Refresh the tokens</button></form>
  <form method="post" action="{{ url_for('logout') }}"><input type="hidden" name="csrf" value="{{ csrf }}">
    <button id="signout">Sign out</button></form>
  {% for title, text in local.events|reverse %}<h3>{{ title }}</h3><pre>{{ text }}</pre>{% endfor %}
  <h2>ID token claims</h2><pre id="claims">{{ pretty(local.claims) }}</pre>
  <h2>UserInfo</h2><pre id="userinfo">{{ pretty(local.userinfo) }}</pre>
{% endif %}"""


def pretty(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def tail(token: str | None) -> str:
    return "…" + token[-6:] if token else "(none)"


def create_app(reg: Registration | None = None, idp_issuer: str | None = None, api_url: str | None = None):
    reg = reg or load_registrations()["seller-dashboard"]
    idp_issuer = idp_issuer or issuer()
    api_url = (api_url or os.environ.get("BACKEND_API_URL", "http://127.0.0.1:5006")).rstrip("/")
    app = new_flask_app(__name__, "dashboard_session", secure=reg.base_url.startswith("https:"))
    idp = register_oidc(OAuth(app), reg, idp_issuer)
    # However a local session ends (signed out here, a back-channel logout, expiry), its refresh
    # token is revoked: the grant has offline_access, outlives the IdP's session by design, and
    # nobody but this RP holds the token to end it.
    sessions = app.extensions["rp.sessions"] = LocalSessions(
        on_end=lambda ended: revoke(ended["token"].get("refresh_token")))
    backchannel.install(app, idp.fetch_jwk_set, idp_issuer, reg.client_id, sessions, reg.id_token_alg)

    def current() -> dict | None:
        return sessions.get(session.get(SESSION_KEY))

    def signed_in() -> dict:
        check_csrf()
        local = current()
        if local is None:
            abort(redirect(url_for("index")))
        return local

    @app.get("/")
    def index():
        return render(INDEX, title="Seller Dashboard", local=current(), note=signed_out_note(idp), pretty=pretty)

    @app.get("/login")
    def login():
        return start_sign_in(idp, reg.redirect_uri)

    @app.get("/callback")
    def callback():
        token = finish_sign_in(idp, idp_issuer, reg.client_id, reg.id_token_alg)
        claims = dict(token.pop("userinfo"))
        # From here on the code is redeemed: a sign-in given up leaves no live refresh token
        # (an offline_access grant would outlive it at the IdP with nobody holding it).
        try:
            info = dict(idp.userinfo(token=token))
        except requests.RequestException as exc:
            revoke(token.get("refresh_token"))
            log.warning("userinfo unreachable: %s", type(exc).__name__)
            abort(503, "the identity provider did not answer; sign in again in a moment")
        except OAuthError as exc:
            revoke(token.get("refresh_token"))
            abort(400, f"userinfo refused the new access token ({exc.error})")
        if info.get("sub") != claims["sub"]:  # OIDC Core §5.3.2: else the UserInfo must not be used
            revoke(token.get("refresh_token"))
            abort(400, "UserInfo is about another subject")
        begin_local_session(sessions, {"claims": claims, "userinfo": info, "token": dict(token), "events": []})
        return redirect(url_for("index"))

    @app.post("/api")
    def call_api():
        local = signed_in()
        try:
            resp = requests.get(f"{api_url}/api/orders", timeout=10,
                                headers={"Authorization": f"Bearer {local['token']['access_token']}"})
        except requests.RequestException as exc:
            local["events"].append(("Seller API: GET /api/orders", f"no answer: {type(exc).__name__}"))
            return redirect(url_for("index"))
        text = f"HTTP {resp.status_code}\n"
        if "WWW-Authenticate" in resp.headers:
            text += f"WWW-Authenticate: {resp.headers['WWW-Authenticate']}\n"
        local["events"].append(("Seller API: GET /api/orders", text + resp.text))
        return redirect(url_for("index"))

    @app.post("/refresh")
    def refresh():
        local = signed_in()
        # One refresh at a time per session: the IdP rotates the refresh token, so a second
        # request sending the same one (a double click, two tabs) would be taken for a stolen
        # token's reuse and revoke the whole grant (RFC 9700 §4.14.2). The second one waits,
        # then refreshes with the token the first one got.
        with local["_lock"]:
            return _refresh(local)

    def _refresh(local: dict):
        if current() is not local:  # signed out (here or by back-channel) while this one waited
            return redirect(url_for("index"))
        old = local["token"]
        try:
            new = dict(idp.fetch_access_token(grant_type="refresh_token", refresh_token=old["refresh_token"]))
        except requests.RequestException as exc:  # no answer, or a 5xx: not a refusal, keep the session
            log.warning("refresh failed: %s", type(exc).__name__)
            return unavailable()
        except (OAuthError, ValueError, KeyError) as exc:  # ValueError: an answer that is not JSON
            return refused(exc)
        # The old refresh token is spent from here (the IdP rotated it): keep the new tokens
        # before anything else can fail, or a retry would present the spent one, which the IdP
        # takes for a stolen token's reuse and revokes the grant (RFC 9700 §4.14.2).
        fresh_id_token = "id_token" in new
        new.setdefault("refresh_token", old["refresh_token"])  # RFC 6749 §6: the old one stays valid
        new.setdefault("id_token", old["id_token"])  # §12.2: may be absent; keep one for id_token_hint
        local["token"] = new
        if fresh_id_token:  # OIDC Core §12.2: same iss and sub, aud us; no nonce to match
            try:
                claims = idp.parse_id_token(new, nonce=None, leeway=LEEWAY,
                                            claims_options=id_token_checks(idp_issuer, reg.client_id))
                if claims["sub"] != local["claims"]["sub"]:
                    raise OAuthError("refresh", "the new ID token is about another subject")
                if not signed_with(new["id_token"], reg.id_token_alg):
                    raise OAuthError("refresh", f"the new ID token is not signed with {reg.id_token_alg}")
            except requests.RequestException as exc:  # the JWKS out of reach: the tokens are kept
                log.warning("refresh: the new ID token could not be checked: %s", type(exc).__name__)
                return unavailable()
            except (OAuthError, JoseError, KeyError, ValueError) as exc:
                revoke(new["refresh_token"])  # a grant we will not use: no live refresh token left behind
                return refused(exc)
        rotated = new["refresh_token"] != old["refresh_token"]
        local["events"].append(("Tokens refreshed", (
            f"access token  {tail(old['access_token'])} -> {tail(new['access_token'])}\n"
            f"refresh token {tail(old['refresh_token'])} -> {tail(new['refresh_token'])}"
            f" ({'rotated: the old one is now spent' if rotated else 'not rotated'})")))
        return redirect(url_for("index"))

    def unavailable():
        return render("<p id='refresh-failed'>Seller Central did not answer: try again later.</p>"
                      "<p><a href='/'>Back</a></p>", title="Seller Dashboard"), 503

    def refused(exc):
        sessions.delete(session.pop(SESSION_KEY, None))
        return render("<p id='refresh-failed'>Refresh refused ({{ e }}): sign in again.</p>"
                      "<p><a href='/'>Back</a></p>", title="Seller Dashboard", e=str(exc)), 401

    @app.post("/logout")
    def logout():
        check_csrf()
        local = current()
        sessions.delete(session.pop(SESSION_KEY, None))  # its refresh token revoked (on_end)
        if local is None:
            return redirect(url_for("index"))
        # RP-Initiated Logout 1.0 §2: the IdP ends its session and comes back here with our state.
        return idp.logout_redirect(post_logout_redirect_uri=reg.post_logout_redirect_uris[0],
                                   id_token_hint=local["token"]["id_token"], client_id=reg.client_id)

    def revoke(refresh_token: str | None) -> None:
        """RFC 7009: a signed-out RP has no use for its refresh token; tell the IdP."""
        try:
            endpoint = idp.load_server_metadata().get("revocation_endpoint")
            if not refresh_token or not endpoint:
                return
            resp = requests.post(endpoint, data={"token": refresh_token, "token_type_hint": "refresh_token"},
                                 auth=(reg.client_id, reg.secret), timeout=5)
            if resp.status_code != 200:
                log.warning("revocation answered %s: %s", resp.status_code, resp.text[:200])
        except requests.RequestException as exc:
            log.warning("revocation failed: %s", exc)

    return app
