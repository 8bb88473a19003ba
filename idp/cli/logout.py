"""`idp logout ...`: what support and cron do about sessions and back-channel logout."""

import click
from flask.cli import AppGroup

from .accounts import find
from .common import CliError, refuse_if_tokens_left, warn_if_store_is_private

# The logout modules import the token code, which imports prometheus-client; `idp serve`
# must choose its multiprocess mode before that happens, so they are imported in the commands.

logout = AppGroup("logout", help="Sign an account out everywhere; retry back-channel logout deliveries.")


@logout.command("everywhere")
@click.argument("email")
def everywhere(email):
    """End every session of the account and revoke all its tokens (a support action)."""
    from ..logout.everywhere import sign_out_everywhere

    account = find(email)
    if account is None:
        raise CliError(f"no account with the email {email!r}")
    summary = sign_out_everywhere(account, actor="operator")
    click.echo(f"ended {summary['sessions']} session(s), revoked {summary['grants']} token family(ies); "
               f"back-channel logout delivered to {summary['backchannel_delivered']} relying party(ies), "
               f"{summary['backchannel_unconfirmed']} unconfirmed (kept for `idp logout retry`)")
    warn_if_store_is_private()
    refuse_if_tokens_left(summary)


@logout.command("retry")
def retry():
    """Deliver again the back-channel logout tokens that failed, after deleting the access
    tokens of revocations a Redis outage left (as `idp maintenance run logout-retry`)."""
    from flask import current_app

    from ..ops import maintenance as jobs

    summary = jobs.run(current_app._get_current_object(), jobs.by_name("logout-retry"))
    if summary is None:
        raise CliError("the logout-retry job failed (see the log)")
    click.echo(summary)
