"""HTTP glue for /authorize: parse, call the core, render.

/token, /introspect, /revoke and /userinfo are answered before Flask (idp.oauth.endpoints).
"""

from flask import Blueprint, current_app, redirect, request, url_for

from ..crypto.secrets import new_token
from ..errors import page_error
from ..extensions import csrf, store
from ..login import flow, session as browser_session
from . import authorize as authz
from . import codes, discovery
from .server import query_client

bp = Blueprint("oauth", __name__)


# A parked cross-site POST waits this long for the browser's GET (seconds).
PARKED_TTL = 60


@bp.route("/authorize", methods=["GET", "POST"])
@csrf.exempt  # a cross-site navigation from the relying party, not a form of ours
def authorize():
    params = (request.form if request.method == "POST" else request.args).to_dict(flat=False)
    return _answer(params, parking_allowed=request.method == "POST")


@bp.get("/authorize/resume/<parked>")
def resume(parked):
    # A HEAD never gets here (idp.web.methods): it would take the request.
    params = store().consume(f"authorize-post:{parked}") if len(parked) <= 64 else None
    if params is None:
        return page_error("This sign-in link has expired. Go back to the app and start again.", 400)
    return _answer(params, parking_allowed=False)


def _answer(params: dict, parking_allowed: bool):
    try:
        cfg = current_app.config
        req, client = authz.validate(params, query_client, cfg["RESOURCES"],
                                     discovery.understood_scopes(cfg["EXTRA_SCOPES"], cfg["RESOURCES"]))
    except authz.AuthorizeError as e:
        if e.redirect_uri is None:
            return page_error(f"This sign-in link is not valid: {e.description}.", 400)
        return redirect(codes.response_url(e.redirect_uri, {
            "error": e.error, "error_description": e.description, "state": e.state}, fragment=e.fragment))
    if parking_allowed and not request.cookies.get(browser_session.cookie_name(flow.BROWSER_COOKIE)):
        # A cross-site POST carries none of our SameSite=Lax cookies: the sign-in would not
        # see this browser's session, and a new browser-binding cookie would replace the one
        # a sign-in open in another tab needs. The request waits in the store, and the
        # browser comes back for it by GET, which carries the cookies (as /logout does; not
        # in a query string, where hints and a 1 kB id_token_hint would reach logs and
        # history, and a long request might pass a proxy's URL limit).
        parked = new_token(16)
        # What validate() read, once: no empty value, a repeated resource once (RFC 8707 §2).
        kept = {name: list(dict.fromkeys(v for v in params[name] if v))
                for name in (*authz.SINGLE, "resource") if name in params}
        store().put(f"authorize-post:{parked}", kept, PARKED_TTL)
        return redirect(url_for("oauth.resume", parked=parked), 303)
    return flow.begin(req, client)
