"""Regional seller portals (NA, EU, JP): one app, one registration per region.

Each region is its own client (portal-na, portal-eu, portal-jp) with its own redirect
URI and secret; what they share is the IdP's browser session, so signing in to one
portal signs you in to the others without a password (single sign-on). portal-jp is
registered for ES256 ID tokens (the others get the IdP's default, RS256); nothing changes
here: the algorithm is in the JWS header and the key in the JWKS. The third-party
integrator (integrator-acme) runs on this same code: the IdP asks the seller's consent for
it, and it registers no post-logout URI, so its sign-out ends on the IdP's own page.
"""

from __future__ import annotations

import json
import time

from authlib.integrations.flask_client import OAuth
from flask import redirect, session, url_for

from .. import backchannel
from ..common import (SESSION_KEY, LocalSessions, Registration, begin_local_session, check_csrf, finish_sign_in,
                      issuer, jws_header, load_registrations, new_flask_app, register_oidc, render,
                      signed_out_note, start_sign_in)

REGIONS = {"na": "portal-na", "eu": "portal-eu", "jp": "portal-jp"}

INDEX = """
{% if note %}<p><strong>{{ note }}</strong></p>{% endif %}
{% if not local %}
  <p>You are not signed in to this portal.</p>
  <p><a id="signin" href="{{ url_for('login') }}">Sign in with Seller Central</a></p>
{% else %}
  <p id="who">Signed in as <strong>{{ local.claims.email }}</strong></p>
  <p id="sso">{% if local.sso %}Single sign-on: the IdP already knew you (you authenticated
    {{ local.age }} s ago, before this portal asked), so no password was asked.
    {% else %}You entered your password for this sign-in.{% endif %}</p>
  <p>ID token signed with <strong id="alg">{{ local.alg }}</strong>, key <code>{{ local.kid }}</code>.</p>
  <form method="post" action="{{ url_for('logout') }}"><input type="hidden" name="csrf" value="{{ csrf }}">
    <button id="signout">Sign out</button></form>
  <h2>ID token claims</h2><pre id="claims">{{ pretty(local.claims) }}</pre>
{% endif %}"""


def create_app(reg: Registration | None = None, idp_issuer: str | None = None, title: str | None = None):
    reg = reg or load_registrations()["portal-na"]
    idp_issuer = idp_issuer or issuer()
    title = title or reg.name or reg.client_id
    app = new_flask_app(__name__, f"{reg.client_id}_session", secure=reg.base_url.startswith("https:"))
    idp = register_oidc(OAuth(app), reg, idp_issuer)
    sessions = app.extensions["rp.sessions"] = LocalSessions()
    backchannel.install(app, idp.fetch_jwk_set, idp_issuer, reg.client_id, sessions, reg.id_token_alg)

    def current() -> dict | None:
        return sessions.get(session.get(SESSION_KEY))

    @app.get("/")
    def index():
        return render(INDEX, title=title, local=current(), note=signed_out_note(idp),
                      pretty=lambda v: json.dumps(v, indent=2, sort_keys=True))

    @app.get("/login")
    def login():
        session["login_started"] = int(time.time())
        return start_sign_in(idp, reg.redirect_uri)

    @app.get("/callback")
    def callback():
        token = finish_sign_in(idp, idp_issuer, reg.client_id, reg.id_token_alg)
        claims = dict(token["userinfo"])
        header = jws_header(token["id_token"])
        auth_time = int(claims.get("auth_time", time.time()))
        # Authenticated before we even asked (to the second): the IdP's session answered.
        sso = auth_time < session.pop("login_started", 0)
        begin_local_session(sessions, {
            "claims": claims, "id_token": token["id_token"], "alg": header.get("alg"), "kid": header.get("kid"),
            "sso": sso, "age": int(time.time()) - auth_time,
        })
        return redirect(url_for("index"))

    @app.post("/logout")
    def logout():
        check_csrf()
        local = current()
        sessions.delete(session.pop(SESSION_KEY, None))
        if local is None:
            return redirect(url_for("index"))
        # RP-Initiated Logout 1.0 §2 needs no post-logout URI: without one (the integrator
        # registers none) the IdP ends its session and shows its own signed-out page, rather
        # than leave the seller signed in there, a password-free sign-in away on a shared
        # computer.
        return idp.logout_redirect(
            post_logout_redirect_uri=reg.post_logout_redirect_uris[0] if reg.post_logout_redirect_uris else None,
            id_token_hint=local["id_token"], client_id=reg.client_id)

    return app
