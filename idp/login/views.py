"""Pages of the sign-in steps. Each step: GET renders, POST checks and advances."""

import time

from flask import Blueprint, make_response, redirect, render_template, url_for

from ..errors import page_error
from ..extensions import db
from ..models import Account
from ..ops import metrics
from ..web.headers import with_form_target
from ..oauth.server import query_client
from . import flow, password as passwords, pipeline, session as browser_session
from .forms import ConsentForm, PasswordForm

bp = Blueprint("login", __name__, url_prefix="/signin")

EXPIRED = "This sign-in has expired or is not valid in this browser. Go back to the app and start again."
BAD_CREDENTIALS = "Incorrect email or password."


def _load(signin_id):
    signin = flow.load(signin_id)
    if signin is None:
        return None, None
    return signin, query_client(signin.request["client_id"])


def _page(signin, template: str, status: int = 200, **context):
    """A step's page. Its form's answer may be the redirect to the relying party (the code,
    or an error): the page's form-action names that target (idp.web.headers)."""
    return with_form_target(make_response(render_template(template, **context), status),
                            signin.request.get("redirect_uri"))


def _taken(step: str, signin):
    """Another request of this browser took the sign-in at this step (a double submit: the
    browser shows the second answer): send it where the sign-in is now."""
    return redirect(url_for(f"login.{step}", signin_id=signin.id), 303)


def _elsewhere(step: str, signin, client) -> bool:
    """Whether the sign-in is at another step than this page's (its URL opened out of order,
    by the back button or on purpose): the page then sends the browser where the sign-in is,
    so no step before it (a gate, a check) is skipped, and no step answers twice."""
    return not pipeline.is_due(step, signin, flow.context(signin, client))


def _advance(step: str, signin, client):
    """Move on a sign-in this page has nothing to do for. Claimed as a step's POST is: the
    sign-in was read before, and a request of this browser may have answered it since (a
    consent allowed in another tab); advancing the copy read would write it back and let
    it answer a second time."""
    with flow.claimed(signin) as ours:
        return flow.advance(signin, client) if ours else _taken(step, signin)


@bp.route("/<signin_id>/password", methods=["GET", "POST"])
def password(signin_id):
    signin, client = _load(signin_id)
    if signin is None or client is None:
        return page_error(EXPIRED, 400)
    if "password" in signin.done and signin.sid is not None:  # proved already (a resubmitted form)
        return _advance("password", signin, client)
    if _elsewhere("password", signin, client):  # before any hash: no password is checked out of turn
        return _advance("password", signin, client)
    form = PasswordForm()
    if not form.is_submitted():
        form.email.data = signin.request.get("login_hint")
        return _page(signin, "signin/password.html", form=form, client=client)
    if not form.validate():
        return _page(signin, "signin/password.html", form=form, client=client, error=BAD_CREDENTIALS)
    email, typed = Account.normalize_email(form.email.data or ""), form.password.data or ""
    if "@" not in email or not typed:
        # No account has an email without "@" or an empty password: nothing to hash. The
        # answer comes sooner, which tells only what the sender typed (20-25 ms of a worker
        # saved on each such post, which a script could send at will).
        metrics.signin_failed("bad_credentials")
        return _page(signin, "signin/password.html", form=form, client=client, error=BAD_CREDENTIALS)
    began = time.time()  # before the account is read: a session this proof starts counts from here
    # PostgreSQL text cannot hold NUL: no account has such an email, and asking would fail.
    account = None if "\x00" in email else Account.by_email(email)
    # Always verify a hash (a dummy one for unknown accounts): same answer, same time.
    ok = passwords.verify_password(account.password_hash if account else None, typed)
    if not ok or account.status != "active":
        metrics.signin_failed("bad_credentials")
        # The form again, with the neutral message: 200, as Keycloak's login page answers. A
        # 401 needs a WWW-Authenticate challenge (RFC 9110 §15.5.2), and a form has no scheme.
        return _page(signin, "signin/password.html", form=form, client=client, error=BAD_CREDENTIALS)
    with flow.claimed(signin) as ours:
        if not ours:
            return _taken("password", signin)
        if passwords.needs_rehash(account.password_hash):
            account.password_hash = passwords.hash_password(form.password.data)
            db.session.commit()
        flow.authenticated(signin, account, ["pwd"], began=began)
        signin.complete("password")
        return flow.advance(signin, client)


@bp.route("/<signin_id>/consent", methods=["GET", "POST"])
def consent(signin_id):
    signin, client = _load(signin_id)
    if signin is None or client is None:
        return page_error(EXPIRED, 400)
    form = ConsentForm()
    if not form.is_submitted():
        if signin.account_id is None or "consent" in signin.done or _elsewhere("consent", signin, client):
            return _advance("consent", signin, client)  # the sign-in is elsewhere: go there
        if browser_session.by_sid(signin.sid) is None:
            # The session ended since (signed out everywhere, another account signed in on
            # this browser): the page would show an identity that no longer holds.
            with flow.claimed(signin) as ours:
                if not ours:
                    return _taken("consent", signin)
                flow.forget_identity(signin)
                return flow.advance(signin, client)
        account = db.session.get(Account, signin.account_id)
        return _page(signin, "signin/consent.html", form=form, client=client, scopes=signin.request["scope"],
                     account=account)
    if not form.validate():
        return page_error("The form expired. Go back to the app and start again.", 400)
    with flow.claimed(signin) as ours:
        if not ours:
            return _taken("consent", signin)
        if "consent" in signin.done:  # given already (a resubmitted form)
            return flow.advance(signin, client)
        if not form.allow.data:  # refusing grants nothing: no proof of identity needed
            return flow.deny(signin, client)
        if signin.account_id is None or browser_session.by_sid(signin.sid) is None:
            # The session ended while the page was open (signed out everywhere, another
            # account signed in on this browser): no consent for an account nobody proved.
            flow.forget_identity(signin)
            return flow.advance(signin, client)
        if _elsewhere("consent", signin, client):  # a step before consent is not done yet
            return flow.advance(signin, client)
        flow.record_consent(signin, client)
        signin.complete("consent")
        return flow.advance(signin, client)
