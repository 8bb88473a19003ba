"""HTTP glue for logout: the end_session_endpoint and "sign out everywhere".

GET or POST /logout is OpenID Connect RP-Initiated Logout 1.0 (§2); rules in rp_initiated.
When the user must confirm, the request waits in the store (``logout:<id>``) and the page
posts a CSRF-protected form to /logout/confirm. A cross-site POST from a relying party
carries no SameSite=Lax session cookie, so such a POST is parked the same way and the
browser is sent, by a 303, to a same-request GET that does carry it.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, redirect, render_template, request, session as flask_session, url_for

from ..crypto.keys import InvalidJWT
from ..crypto.secrets import new_token
from ..errors import page_error
from ..extensions import csrf, db, keyring, store
from ..login import session as browser_session
from ..models import Account
from ..oauth.server import query_client
from ..web.headers import with_form_target
from . import rp_initiated, session_end
from .everywhere import sign_out_everywhere
from .forms import LogoutForm, SignOutEverywhereForm

log = logging.getLogger("idp.logout")
bp = Blueprint("logout", __name__)

PARKED_TTL = 60  # a parked POST is taken back by the 303 that follows it at once
EXPIRED = "This sign-out request has expired. Go back to the app and sign out again."


def _no_store(resp):
    resp = current_app.make_response(resp)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _verified_hint(token: str | None) -> dict | None:
    if token is None:
        return None
    try:
        claims = keyring().verify(token)
    except InvalidJWT:
        return None
    except Exception as exc:  # noqa: BLE001  (a hint is attacker input: it must never break logout)
        log.info("unusable id_token_hint: %s", type(exc).__name__)
        return None
    return rp_initiated.hint_claims(claims, current_app.config["ISSUER"])


@bp.route("/logout", methods=["GET", "POST"])
@csrf.exempt  # a navigation from the relying party, not a form of ours (the confirmation is protected)
def end_session():
    params = (request.form if request.method == "POST" else request.args).to_dict(flat=False)
    if request.method == "POST" and not request.cookies.get(browser_session.cookie_name("idp_session")):
        try:
            known = rp_initiated.parse(params)  # only these are kept: not whatever else was posted
        except rp_initiated.LogoutRequestError as exc:
            return _invalid(exc)
        parked = new_token(16)
        store().put(f"logout-post:{parked}", {name: [value] for name, value in known.items()}, PARKED_TTL)
        return redirect(url_for("logout.resume", parked=parked), 303)
    return _handle(params)


def _invalid(exc: Exception):
    return _no_store(page_error(f"This sign-out link is not valid: {exc}.", 400))


@bp.get("/logout/resume/<parked>")
def resume(parked):
    params = store().consume(f"logout-post:{parked}") if len(parked) <= 64 else None
    if params is None:
        return _no_store(page_error(EXPIRED, 400))
    return _handle(params)


def _handle(params: dict):
    try:
        raw = rp_initiated.parse(params)
    except rp_initiated.LogoutRequestError as exc:
        return _invalid(exc)
    hint = raw.get("id_token_hint")
    claims = _verified_hint(hint)
    req = rp_initiated.decide(raw, claims, hint is not None, query_client)
    current = browser_session.current()
    if current is None:
        _end_lapsed(claims)
        return _finish(req, None)  # nothing to end here; the RP's own session is the RP's business
    row, account = current
    if not rp_initiated.needs_confirmation(req, row.sid, account.sub):
        return _finish(req, current)
    logout_id = new_token(16)
    store().put(f"logout:{logout_id}", req.to_dict(), current_app.config["LOGIN_TTL"])
    form = LogoutForm(logout_id=logout_id)
    # Its form ends in the redirect to the relying party's post-logout URI, if one was honoured.
    return with_form_target(_no_store(render_template("logout/confirm.html", form=form, req=req, account=account)),
                            rp_initiated.redirect_target(req))


@bp.post("/logout/confirm")
def confirm():
    form = LogoutForm()
    if not form.validate():
        return _no_store(page_error("The form expired. Go back to the app and sign out again.", 400))
    data = store().consume(f"logout:{form.logout_id.data}") if form.logout_id.data else None
    if data is None:
        return _no_store(page_error(EXPIRED, 400))
    req = rp_initiated.LogoutRequest.from_dict(data)
    if form.cancel.data:
        return _no_store(render_template("logout/kept.html"))
    return _finish(req, browser_session.current())


def _end_lapsed(claims: dict | None) -> None:
    """End the session a verified hint names, if it is its seller's and has lapsed (idled out
    or past its lifetime) without anyone ending it: its families revoked and its relying
    parties told, as a logout would have, instead of "signed out" over tokens that live on.
    A live session is never ended from here: that takes its own browser (no logout forced
    on a seller by whoever holds one of their ID tokens)."""
    row = browser_session.lapsed((claims or {}).get("sid"))
    if row is None:
        return
    account = db.session.get(Account, row.account_id)
    if account is not None and account.sub == claims.get("sub"):
        session_end.end(row, account)


def _finish(req: rp_initiated.LogoutRequest, current):
    target = rp_initiated.redirect_target(req)
    resp = _no_store(redirect(target, 303) if target else render_template("logout/done.html", req=req))
    if current is not None:
        session_end.end(*current)
        _clear_cookies(resp)
    else:
        # Nothing ended: keep the browser's Flask session, whose CSRF token a sign-in form
        # open in another tab needs (a cross-site link to /logout must not break it).
        browser_session.set_cookie(resp, "idp_session", "", max_age=0)
    return resp


def _clear_cookies(resp) -> None:
    browser_session.set_cookie(resp, "idp_session", "", max_age=0)
    flask_session.clear()


@bp.route("/account/sign-out-everywhere", methods=["GET", "POST"])
def everywhere():
    """The seller ends every session and token of their account (needs this browser's session)."""
    current = browser_session.current()
    if current is None:
        # 403, not 401: a 401 needs a WWW-Authenticate challenge (RFC 9110 §15.5.2), and the
        # way in is the sign-in page, not an HTTP authentication scheme.
        return _no_store(page_error("Sign in to your account first.", 403))
    _, account = current
    form = SignOutEverywhereForm()
    if not form.is_submitted():
        return _no_store(render_template("logout/everywhere.html", form=form, account=account))
    if not form.validate():
        return _no_store(page_error("The form expired. Reload the page and try again.", 400))
    summary = sign_out_everywhere(account, actor="seller")
    resp = _no_store(render_template("logout/everywhere_done.html", summary=summary))
    _clear_cookies(resp)
    return resp
