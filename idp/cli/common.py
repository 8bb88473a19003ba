"""Small helpers shared by the command groups."""

from datetime import datetime, timezone

import click


class CliError(click.ClickException):
    """A one-line error for the operator (``Error: ...`` on stderr), exit status 2, no traceback."""

    exit_code = 2


def cached_copy_left() -> str | None:
    """What a change committed while Redis was out of reach left behind, if anything: the
    servers' cached copy of the row (a client registration, an account's claims) was not
    dropped and may outlive the change."""
    from ..store import row_cache

    if not row_cache.left_behind():
        return None
    return ("the servers' cached copy of the change could not be dropped: they may go on using the row as it "
            f"was for up to {row_cache.DEFAULT_TTL} s (a client's old secret included)")


def store_unreachable(message: str) -> CliError:
    """The error of a command whose store half failed, saying the cached copy's fate too: the
    command ends with it, before the result callback that would say it (idp.cli)."""
    left = cached_copy_left()
    return CliError(message if left is None else f"{message}; and {left}")


def refuse_if_tokens_left(summary: dict) -> None:
    """After a sign-out of every session of an account from the shell (idp.logout.everywhere):
    everything is done but, with the store out of reach, deleting its access tokens."""
    if summary["access_tokens_left_to_expire"]:
        raise store_unreachable("the store (REDIS_URL) could not be reached: the account's access tokens were "
                                "not deleted; the server's next logout-retry run deletes them once it answers (they "
                                "expire within ACCESS_TOKEN_TTL in any case); everything else is done")


def when(value) -> str:
    """A unix time or datetime as ``2025-05-01 12:00:00Z``; ``-`` for none."""
    if value is None:
        return "-"
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def table(rows: list[tuple], headers: tuple) -> None:
    """Print rows as aligned columns under a header."""
    cells = [tuple(str(c) for c in headers)] + [tuple("-" if c is None else str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def warn_if_store_is_private() -> None:
    """After a revocation from the shell: with REDIS_URL memory:// (the embedded default) this
    command had a store of its own, so a running server's access tokens were not touched."""
    from ..extensions import store

    if not store().shared:
        click.secho("Note: REDIS_URL is memory://, a store private to each process: a running server's "
                    "access tokens are not deleted by this command and stay valid until they expire "
                    "(ACCESS_TOKEN_TTL); restart the server to drop them now. With Redis they go at once.",
                    fg="yellow", err=True)
