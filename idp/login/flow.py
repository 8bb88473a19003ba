"""Orchestration of a sign-in: start it from an authorization request, move it through
the pipeline's steps, and answer the request when it is complete.

The pure rules are in pipeline.py; this module does the I/O around them (store,
database, cookies) and the views only render.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from flask import current_app, g, redirect, request, session as flask_session, url_for
from sqlalchemy.exc import IntegrityError

from ..crypto.keys import InvalidJWT
from ..crypto.secrets import keyed_hash, new_token, verify_keyed_hash
from .. import errors
from ..errors import page_error
from ..extensions import db, keyring, store
from ..models import Account, Client, Consent
from ..logout import session_end
from ..oauth import codes
from ..oauth.authorize import AuthorizationRequest
from . import session as browser_session
from .pipeline import Context, SignIn, authentication_complete, next_step, session_satisfies

log = logging.getLogger(__name__)
ACR_PASSWORD = "urn:idp:acr:pwd"  # in idp.config.ISSUED_ACR_VALUES
ANSWERED = "This sign-in is already complete. Go back to the app; if it did not sign you in, start again there."
BROWSER_COOKIE = "idp_browser"
# + a sign-in's id: that sign-in's own copy of the binding, set only by a browser that had none
SIGNIN_COOKIE = "idp_signin_"


def _key(signin_id: str) -> str:
    return f"signin:{signin_id}"


def load(signin_id: str) -> SignIn | None:
    """The sign-in, if it exists and was started by this browser."""
    if not signin_id or len(signin_id) > 64:
        return None
    data = store().get(_key(signin_id))
    if data is None:
        return None
    signin = SignIn.from_dict(data)
    if signin.expires_at <= time.time():
        return None
    # As stored (the SignIn copies its lists): what _take gives back.
    g.setdefault("idp_signins_loaded", {})[signin_id] = data
    return signin if _bound(signin) else None


def _bound(signin: SignIn) -> bool:
    """Whether this browser started the sign-in: its binding cookie, or the sign-in's own.

    A browser's first sign-in mints the binding cookie. Two started at once (two tabs of a
    fresh browser, or an app opening two) each mint one, and the browser keeps the last
    one set: the other sign-in would be "not valid in this browser" in the very browser
    that started it. So such a sign-in also gets its own cookie, named after it (begin()).
    Found through it, the sign-in takes the browser's binding of now, which this same
    request carries: a session it starts is then known as this browser's, and ends
    another one it started (end_others_in_browser)."""
    raw = request.cookies.get(browser_session.cookie_name(BROWSER_COOKIE), "")
    if raw and verify_keyed_hash(raw, signin.browser):
        return True
    own = request.cookies.get(browser_session.cookie_name(SIGNIN_COOKIE + signin.id), "")
    if not own or not verify_keyed_hash(own, signin.browser):
        return False
    if raw:
        signin.browser = keyed_hash(raw)  # written with the sign-in's next save()
    return True


def _ttl(signin: SignIn) -> int:
    return max(1, int(signin.expires_at - time.time()) + 1)


def save(signin: SignIn) -> None:
    signin.revision += 1
    store().put(_key(signin.id), signin.to_dict(), _ttl(signin))


@contextmanager
def claimed(signin: SignIn):
    """Take the sign-in as loaded, before a step's POST changes it; yields whether this
    request has it. Of two requests that loaded the same revision (a double submit, two
    tabs), one has it, so one sign-in never opens two sessions or answers with two codes.
    Entered once the step has succeeded (a wrong password leaves the revision free for the
    next try); a failure inside (a 503) gives it back, so the seller's retry goes through."""
    key, mine = f"signin-claim:{signin.id}:{signin.revision}", new_token(16)
    try:
        taken = store().add(key, mine, _ttl(signin))
    except errors.UNAVAILABLE:
        # The answer may have been lost after the claim was made: the seller's retry, which
        # the 503 asks for, must not find it taken. Given back if it is this request's.
        _give_back_claim(key, mine)
        raise
    if not taken:
        yield False
        return
    try:
        yield True
    except BaseException:
        _give_back_claim(key, mine)
        raise


def _take(signin: SignIn):
    try:
        return store().consume(_key(signin.id))
    except errors.UNAVAILABLE:
        # The answer may have been lost after the sign-in was taken: the seller's retry, which
        # the 503 asks for, must find it, not "already answered".
        loaded = g.get("idp_signins_loaded", {}).get(signin.id)
        try:
            if loaded is not None:  # as it was before this request changed it
                store().put(_key(signin.id), loaded, _ttl(signin))
        except Exception as exc:  # noqa: BLE001  (the store in an outage: the retry starts again)
            log.warning("sign-in not given back: %s", type(exc).__name__)
        raise


def _give_back_claim(key: str, mine: str) -> None:
    try:
        if store().get(key) == mine:
            store().delete(key)
    except Exception as exc:  # noqa: BLE001  (the store in an outage: the claim expires with the sign-in)
        log.warning("sign-in claim not given back: %s", type(exc).__name__)


def context(signin: SignIn, client: Client) -> Context:
    return Context(first_party=client.first_party, now=int(time.time()))


def _hint_subject(id_token_hint: str | None) -> str | None:
    """The subject of an ID token we issued (expired is fine: OIDC Core §3.1.2.1)."""
    if not id_token_hint:
        return None
    claims = keyring().verify(id_token_hint)
    if claims.get("iss") != current_app.config["ISSUER"] or not isinstance(claims.get("sub"), str):
        raise InvalidJWT("id_token_hint was not issued by this provider")
    return claims["sub"]


def begin(req: AuthorizationRequest, client: Client):
    """Start a sign-in for a validated authorization request."""
    try:
        hint_sub = _hint_subject(req.id_token_hint)
    except InvalidJWT:
        return _error(req, "invalid_request", "id_token_hint is not a valid ID token from this provider")

    # The hint's subject is all the sign-in needs of it: the ID token itself (the seller's
    # email among its claims, up to 2 KB) is not kept in the store for LOGIN_TTL.
    signin = SignIn.start({**req.to_dict(), "id_token_hint": None})
    signin.hint_sub = hint_sub
    signin.expires_at = time.time() + current_app.config["LOGIN_TTL"]
    raw_browser = request.cookies.get(browser_session.cookie_name(BROWSER_COOKIE))
    first = not raw_browser
    if first:
        raw_browser = new_token(24)
    signin.browser = keyed_hash(raw_browser)

    current = browser_session.current()
    now = int(time.time())
    if current is not None:
        row, account = current
        auth_time = int(row.auth_time.timestamp())
        if session_satisfies(signin.request, auth_time, now, hint_sub, account.sub):
            signin.account_id, signin.auth_time, signin.amr = account.id, auth_time, list(row.amr)
            signin.sid = row.sid
            signin.complete("password")
    resp = advance(signin, client)
    browser_session.set_cookie(resp, BROWSER_COOKIE, raw_browser, max_age=365 * 24 * 3600)
    if first and signin.revision:  # saved for a step's page (_bound); not for an answer at once
        browser_session.set_cookie(resp, SIGNIN_COOKIE + signin.id, raw_browser,
                                   max_age=int(current_app.config["LOGIN_TTL"]))
    return resp


def still_registered(req: AuthorizationRequest, client: Client) -> bool:
    """Whether the client's registration as it is now still allows the request /authorize
    judged when the sign-in began (up to LOGIN_TTL ago; ClientRules.still_allows): a request
    that named no redirect URI answers at the default one, which must still be it."""
    if not req.redirect_uri_given and client.get_default_redirect_uri() != req.redirect_uri:
        return False
    named = req.redirect_uri if req.redirect_uri_given else None
    return client.still_allows(req.scope, named) and client.check_response_type("code")


REGISTRATION_CHANGED = ("This sign-in can no longer be completed: the application's registration changed "
                        "since it began. Go back to the app and start again.")


def advance(signin: SignIn, client: Client):
    """Go to the next needed step's page, or answer the authorization request when done."""
    req = AuthorizationRequest.from_dict(signin.request)
    if not still_registered(req, client):  # no answer, not even an error, to what is not registered now
        store().delete(_key(signin.id))
        return page_error(REGISTRATION_CHANGED, 400)
    if signin.account_id is not None and not client.first_party:  # first-party clients never ask
        consent = db.session.execute(
            db.select(Consent).filter_by(account_id=signin.account_id, client_id=client.client_id)
        ).scalar_one_or_none()
        signin.consent_given = consent is not None and consent.covers(req.scope)
    ctx = context(signin, client)
    cookie = started = None
    step = next_step(signin, ctx)  # the session's own sid plays no part in which step is next
    if signin.sid is None and authentication_complete(signin, ctx):
        if signin.hint_sub is not None and db.session.get(Account, signin.account_id).sub != signin.hint_sub:
            # OIDC Core §3.1.2.1: the relying party asked for the user its id_token_hint
            # names; someone else proved who they are. No session for them here: an error.
            store().delete(_key(signin.id))
            return _error(req, "login_required", "the user who signed in is not the one id_token_hint names")
        # With no step left, this request answers the client with a code: a new session
        # starts with the client on its list (idp.login.session.start).
        started, cookie = _start_session(signin, client.client_id if step is None else None)
    if step is None:
        if signin.revision and _take(signin) is None:
            # Another request of this browser (a second tab, the back button) has answered
            # this sign-in already: one sign-in, one code.
            return page_error(ANSWERED, 400)
        resp = finish(signin, req, client, started)
    else:
        db.session.commit()  # the session started above, if any
        if started is not None:
            end_others_in_browser(signin)
        if "none" in req.prompt:
            store().delete(_key(signin.id))
            resp = _error(req, step.prompt_none_error, f"user interaction required ({step.key})")
        else:
            save(signin)
            resp = redirect(url_for(f"login.{step.key}", signin_id=signin.id))
    if cookie is not None:
        browser_session.set_cookie(resp, "idp_session", cookie, max_age=current_app.config["SESSION_TTL"])
    return resp


def _start_session(signin: SignIn, client_id: str | None):
    """A fresh proof of identity: new session, new id (no fixation), new CSRF token.

    Returns ((row, account), cookie value); the row is written, not yet committed: the
    caller commits it with whatever else the request changes. ``client_id``: the client a
    new session records at once (the one this request answers with a code)."""
    account = db.session.get(Account, signin.account_id)
    flask_session.clear()
    current, renew = browser_session.current(), None
    if current is not None and current[1].id == account.id:
        renew = current[0]
    elif current is not None:
        # Another seller signs in on this browser: the first one's session ends as at a
        # logout (its relying parties told, its tokens revoked), not silently.
        session_end.end(*current, reason="another_account_signed_in")
    proved = datetime.fromtimestamp(signin.proved_at, timezone.utc) if signin.proved_at is not None else None
    row, cookie = browser_session.start(
        account, datetime.fromtimestamp(signin.auth_time, timezone.utc), signin.amr, ACR_PASSWORD, renew=renew,
        clients=[client_id] if client_id is not None and renew is None else [], since=proved)
    signin.sid = row.sid
    return (row, account), cookie


def end_others_in_browser(signin: SignIn) -> None:
    """After the commit of a session this sign-in started: a browser holds one session. The
    one before was ended through its cookie (_start_session), unless two sign-ins of one
    browser (two tabs, two accounts or one) ran at once and neither request carried the
    other's new cookie: the browser keeps one cookie, and the other session would live on
    unseen until SESSION_TTL, its relying parties never told at a logout here. So the store
    keeps each browser's session (by the keyed hash of its binding cookie), swapped in one
    atomic step: whichever sign-in swaps second finds the other's and ends it, as a logout
    does. One store round trip; the database only when there is another session to end."""
    ttl = int(current_app.config["SESSION_TTL"])
    before = store().swap(f"browser-session:{signin.browser}", signin.sid, ttl)
    if before is not None and before != signin.sid and (row := browser_session.by_sid(before)) is not None:
        session_end.end(row, db.session.get(Account, row.account_id), reason="another_sign_in_in_this_browser")


def forget_identity(signin: SignIn) -> None:
    """Start the sign-in over from who the user is: every step done so far (a consent too)
    was for the account that proved it, and that proof no longer stands."""
    signin.account_id = signin.sid = signin.auth_time = signin.proved_at = None
    signin.amr, signin.done, signin.consent_given = [], [], False


def authenticated(signin: SignIn, account: Account, amr: list[str], began: float | None = None) -> None:
    """Record a successful proof of identity in the sign-in: the methods add up (a second
    factor after the password is ``["otp", "pwd"]``, RFC 8176), for one account. ``began``:
    when the proof began, before the account was read (default now)."""
    if signin.account_id is not None and signin.account_id != account.id:
        forget_identity(signin)  # another account: nothing done for the first one counts
    now = time.time()
    signin.account_id = account.id
    signin.auth_time = int(now)
    signin.amr = sorted(set(signin.amr) | set(amr))
    began = now if began is None else began
    signin.proved_at = began if signin.proved_at is None else min(signin.proved_at, began)
    signin.sid = None


def finish(signin: SignIn, req: AuthorizationRequest, client: Client, started=None):
    """Answer the authorization request with a code. ``started``: (row, account) of the
    session this same request started (live by construction, not yet committed)."""
    if started is not None:
        row, account = started
    else:
        account = db.session.get(Account, signin.account_id)
        if account is None or account.status != "active":
            return _error(req, "access_denied", "the account is not available")
        row = browser_session.by_sid(signin.sid)
        if row is None:  # the session ended while this sign-in was open: prove identity again
            forget_identity(signin)
            return advance(signin, client)
        if req.max_age is not None and time.time() - row.auth_time.timestamp() > req.max_age:
            # OIDC Core §3.1.2.1: past max_age the OP MUST actively re-authenticate; judged
            # at /authorize, it is judged again here for a page (consent) left open past it.
            forget_identity(signin)
            return advance(signin, client)
    # A session this request wrote has the client on its list already, and nobody else sees it yet.
    recorded = started is not None and row not in db.session and client.client_id in row.clients
    if not recorded and not browser_session.add_client(row.sid, client.client_id):
        forget_identity(signin)  # the session ended since it was read: prove identity again
        return advance(signin, client)
    db.session.commit()
    if started is not None:
        end_others_in_browser(signin)
    code = codes.issue({
        # None when the request named none: then the token request need not (RFC 6749 §4.1.3).
        "client_id": client.client_id, "redirect_uri": req.redirect_uri if req.redirect_uri_given else None,
        "scope": req.scope,
        "code_challenge": req.code_challenge, "nonce": req.nonce, "account_id": account.id,
        "auth_time": int(row.auth_time.timestamp()), "amr": list(row.amr), "acr": row.acr, "sid": row.sid,
        "resource": req.resource,
    })
    return redirect(codes.response_url(req.redirect_uri, {"code": code, "state": req.state}))


def deny(signin: SignIn, client: Client):
    store().delete(_key(signin.id))
    req = AuthorizationRequest.from_dict(signin.request)
    if not still_registered(req, client):
        return page_error(REGISTRATION_CHANGED, 400)
    return _error(req, "access_denied", "the user declined")


def _error(req: AuthorizationRequest, error: str, description: str):
    return redirect(codes.response_url(req.redirect_uri, {
        "error": error, "error_description": description, "state": req.state}))


def record_consent(signin: SignIn, client: Client) -> None:
    """Add the request's scopes to the account's consent to ``client``. The row is read under
    its lock (PostgreSQL), so two consents at once (two tabs) add up instead of one writing
    over the other; when neither found a row, the second insert fails on the unique key and
    is done again as an update of the first one's row."""
    scopes = signin.request["scope"]
    for _ in range(2):
        consent = db.session.execute(
            db.select(Consent).filter_by(account_id=signin.account_id, client_id=client.client_id)
            .with_for_update().execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if consent is not None:
            consent.scopes = sorted(set(consent.scopes) | set(scopes))
            db.session.commit()
            return
        db.session.add(Consent(account_id=signin.account_id, client_id=client.client_id, scopes=sorted(scopes)))
        try:
            db.session.commit()
            return
        except IntegrityError:
            db.session.rollback()  # the other consent inserted first: update its row
    raise RuntimeError("consent could not be recorded")
