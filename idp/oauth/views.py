"""HTTP glue for /authorize: parse, call the core, render.

/token, /introspect, /revoke and /userinfo are answered before Flask (idp.oauth.endpoints).
"""

from urllib.parse import urlencode

from flask import Blueprint, current_app, redirect, request, url_for

from ..errors import page_error
from ..extensions import csrf
from ..login import flow, session as browser_session
from . import authorize as authz
from . import codes
from .server import query_client

bp = Blueprint("oauth", __name__)


@bp.route("/authorize", methods=["GET", "POST"])
@csrf.exempt  # a cross-site navigation from the relying party, not a form of ours
def authorize():
    params = (request.form if request.method == "POST" else request.args).to_dict(flat=False)
    try:
        req, client = authz.validate(params, query_client, current_app.config["RESOURCES"])
    except authz.AuthorizeError as e:
        if e.redirect_uri is None:
            return page_error(f"This sign-in link is not valid: {e.description}.", 400)
        return redirect(codes.response_url(e.redirect_uri, {
            "error": e.error, "error_description": e.description, "state": e.state}))
    if request.method == "POST" and not request.cookies.get(browser_session.cookie_name(flow.BROWSER_COOKIE)):
        # A cross-site POST carries none of our SameSite=Lax cookies: the sign-in would not
        # see this browser's session, and a new browser-binding cookie would replace the one
        # a sign-in open in another tab needs. The same request as a GET carries them.
        kept = [(name, value) for name in (*authz.SINGLE, "resource") for value in params.get(name, [])]
        return redirect(url_for("oauth.authorize") + "?" + urlencode(kept), 303)
    return flow.begin(req, client)
