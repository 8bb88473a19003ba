"""`idp maintenance run`: the server's maintenance jobs, now (for cron, with MAINTENANCE off)."""

import click
from flask import current_app
from flask.cli import AppGroup

from ..ops import maintenance as jobs  # imports the jobs' modules (and prometheus-client) only to run one
from .common import CliError

maintenance = AppGroup("maintenance", help="The jobs the server runs itself: back-channel logout retries, pruning.")


@maintenance.command("run")
@click.argument("names", nargs=-1, type=click.Choice([job.name for job in jobs.JOBS]))
def run(names):
    """Run the jobs NAMES now (default: all), whatever their schedule; each says what it did."""
    failed = []
    for job in [jobs.by_name(n) for n in names] or jobs.JOBS:
        summary = jobs.run(current_app._get_current_object(), job)
        click.echo(f"{job.name}: {'failed (see the log)' if summary is None else summary}")
        if summary is None:
            failed.append(job.name)
    if failed:
        raise CliError(f"failed: {', '.join(failed)}")
