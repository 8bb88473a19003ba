"""HTTP glue for /authorize: parse, call the core, render.

/token, /introspect, /revoke and /userinfo are answered before Flask (idp.oauth.endpoints).
"""

from flask import Blueprint, current_app, redirect, request

from ..errors import page_error
from ..extensions import csrf
from ..login import flow
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
    return flow.begin(req, client)
