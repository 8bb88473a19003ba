"""`idp accounts disable` / `enable`: an account taken out of use, and let back in, brings
back none of the sign-ins it had (idp.models.account)."""

import pytest

from idp.cli import cli
from idp.extensions import db
from idp.models import Account, SecurityEvent
from tests.integration.token_helpers import login, refresh


def _idp(app, *args):
    return app.test_cli_runner().invoke(cli, list(args))


def test_disable_ends_everything_and_enable_brings_none_of_it_back(app, flow, client, seller):
    issued = login(flow)
    result = _idp(app, "accounts", "disable", "Seller@Example.com")
    assert result.exit_code == 0, result.output
    assert "disabled seller@example.com: ended 1 session(s), revoked 1 token family(ies)" in result.output
    assert "login_required" in flow.authorize(prompt="none").headers["Location"]
    assert refresh(client, flow.rp, issued["refresh_token"]).status_code == 400
    assert db.session.scalars(db.select(SecurityEvent.kind)).all() == ["sign_out_everywhere"]

    result = _idp(app, "accounts", "enable", "seller@example.com")
    assert result.exit_code == 0 and "enabled seller@example.com" in result.output
    assert "login_required" in flow.authorize(prompt="none").headers["Location"]  # no session came back
    assert refresh(client, flow.rp, issued["refresh_token"]).status_code == 400  # nor a token family
    assert flow.login_code()  # signing in with the password works again


def test_a_status_set_any_other_way_ends_the_sign_ins_too(app, flow, client, seller):
    """Whatever sets the status (a later suspension step, a support tool): leaving "active"
    ends every sign-in made before, so setting it back brings none of them to life."""
    issued = login(flow)
    db.session.get(Account, seller.id).status = "suspended"
    db.session.commit()
    db.session.get(Account, seller.id).status = "active"
    db.session.commit()
    assert "login_required" in flow.authorize(prompt="none").headers["Location"]
    assert refresh(client, flow.rp, issued["refresh_token"]).status_code == 400


def test_disable_and_enable_say_what_is_wrong_in_one_line(app, seller):
    assert _idp(app, "accounts", "enable", "seller@example.com").output.strip().endswith("is active already")
    assert _idp(app, "accounts", "disable", "seller@example.com").exit_code == 0
    again = _idp(app, "accounts", "disable", "seller@example.com")
    assert again.exit_code == 2 and "is disabled already" in again.output
    unknown = _idp(app, "accounts", "disable", "nobody@example.com")
    assert unknown.exit_code == 2 and "no account" in unknown.output and "Traceback" not in unknown.output


def test_set_password_replaces_it_and_ends_every_sign_in(app, flow, client, seller):
    """Support, or a lost demo password: whoever knew the old one may be signed in with it."""
    from tests.conftest import PASSWORD

    issued = login(flow)
    result = app.test_cli_runner().invoke(cli, ["accounts", "set-password", "seller@example.com", "--password-stdin"],
                                          input="a brand new password 7\n")
    assert result.exit_code == 0, result.output
    assert "new password for seller@example.com; ended 1 session(s), revoked 1 token family(ies)" in result.output
    assert refresh(client, flow.rp, issued["refresh_token"]).status_code == 400
    old = flow.sign_in(flow.authorize(), password=PASSWORD)  # the old one no longer works
    assert old.status_code == 200 and "Incorrect email or password." in old.get_data(as_text=True)
    assert "code=" in flow.sign_in(flow.authorize(), password="a brand new password 7").headers["Location"]
    short = app.test_cli_runner().invoke(cli, ["accounts", "set-password", "seller@example.com", "--password-stdin"],
                                         input="short\n")
    assert short.exit_code == 2 and "8 to 1024 characters" in short.output


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)  # tokens in a shared store to miss
@pytest.mark.parametrize("command", [("accounts", "disable"), ("accounts", "set-password"), ("logout", "everywhere")])
def test_with_the_store_out_of_reach_the_tokens_left_are_said(app, flow, seller, command):
    """A compromised account disabled while Redis is out of reach: everything in the database
    is done, but its access tokens live on until the next logout-retry run. The operator
    must hear it (an error, exit 2), whichever command ended the sign-ins."""
    from idp import create_app

    login(flow)
    shared = ("DATABASE_URL", "KEYS_DIR", "ISSUER", "STORE_NAMESPACE", "SECRET_KEY")
    cut_off = create_app({**{k: app.config[k] for k in shared}, "REDIS_URL": "redis://127.0.0.1:1/0",
                          "TESTING": True})
    args = [*command, "seller@example.com", *(["--password-stdin"] if command[1] == "set-password" else [])]
    with cut_off.app_context():  # the CLI runs in the current app context, if there is one
        result = cut_off.test_cli_runner().invoke(cli, args, input="a brand new password 7\n")
    assert result.exit_code == 2, result.output
    assert "the account's access tokens were not deleted" in result.output and "Traceback" not in result.output
    db.session.expire_all()
    assert db.session.get(Account, seller.id).sessions_revoked_at is not None  # the rest is done
