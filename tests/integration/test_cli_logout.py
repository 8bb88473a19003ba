"""`idp logout everywhere` and `idp logout retry`: the operator's side of logout."""

from idp.cli import cli
from tests.integration.token_helpers import login, refresh


def _idp(app, *args):
    return app.test_cli_runner().invoke(cli, list(args))


def test_operator_signs_an_account_out_everywhere(app, flow, client):
    issued = login(flow)
    result = _idp(app, "logout", "everywhere", "Seller@Example.com")
    assert result.exit_code == 0, result.output
    assert "ended 1 session(s)" in result.output
    assert "/signin/" in flow.authorize().headers["Location"]  # no single sign-on any more
    assert refresh(client, flow.rp, issued["refresh_token"]).status_code == 400
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {issued['access_token']}"}).status_code == 401


def test_unknown_account_is_a_one_line_error(app):
    result = _idp(app, "logout", "everywhere", "nobody@example.com")
    assert result.exit_code == 2 and "no account" in result.output and "Traceback" not in result.output


def test_retry_with_nothing_pending(app):
    result = _idp(app, "logout", "retry")
    assert result.exit_code == 0 and result.output.startswith("0 delivered")
