"""`idp logout ...`: what support and cron do about sessions and back-channel logout."""

import click
from flask.cli import AppGroup

from ..logout import backchannel
from ..logout.everywhere import sign_out_everywhere
from .accounts import find
from .common import CliError

logout = AppGroup("logout", help="Sign an account out everywhere; retry back-channel logout deliveries.")


@logout.command("everywhere")
@click.argument("email")
def everywhere(email):
    """End every session of the account and revoke all its tokens (a support action)."""
    account = find(email)
    if account is None:
        raise CliError(f"no account with the email {email!r}")
    summary = sign_out_everywhere(account, actor="operator")
    click.echo(f"ended {summary['sessions']} session(s), revoked {summary['grants']} token family(ies); "
               f"back-channel logout delivered to {summary['backchannel_delivered']} relying party(ies), "
               f"{summary['backchannel_unconfirmed']} unconfirmed (kept for `idp logout retry`)")


@logout.command("retry")
def retry():
    """Deliver again the back-channel logout tokens that failed (run it from cron every few minutes)."""
    report = backchannel.retry_pending()
    click.echo(f"{len(report.delivered)} delivered, {len(report.failed)} failed (kept for the next run while "
               f"tries remain), {len(report.pending)} still in flight")
