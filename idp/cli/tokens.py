"""`idp tokens ...`: housekeeping of the token tables (run from cron)."""

from datetime import datetime, timedelta, timezone

import click
from flask.cli import AppGroup

tokens = AppGroup("tokens", help="Housekeeping of token families and refresh tokens.")


@tokens.command("prune")
@click.option("--grace-days", type=click.IntRange(min=0), default=1, show_default=True,
              help="Keep families this many days past their end (for support to look at).")
def prune(grace_days):
    """Delete token families whose absolute lifetime is over, with their refresh tokens."""
    from ..oauth.prune import prune_ended_families  # imports prometheus-client: see cli.logout

    counts = prune_ended_families(datetime.now(timezone.utc) - timedelta(days=grace_days))
    click.echo(f"deleted {counts['families']} ended token family(ies) and {counts['refresh_tokens']} of their "
               f"refresh tokens; {counts['orphaned_refresh_tokens']} refresh token(s) without a family")
