"""`idp accounts ...`: seller accounts.

A password is read from a hidden prompt or, with --password-stdin, from standard input;
never from the command line, where ps and shell history would show it.
"""

import re
import sys

import click
from flask.cli import AppGroup
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..login.password import hash_password
from ..models import Account
from .client_rules import invisible
from .common import CliError, refuse_if_tokens_left, warn_if_store_is_private

MIN_PASSWORD = 8  # NIST SP 800-63B §5.1.1.2
MAX_PASSWORD = 1024  # argon2 takes any length; a bound keeps a typo'd file from being hashed
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_EMAIL, MAX_NAME = 320, 200  # their columns' (idp.models.account)

accounts = AppGroup("accounts", help="Create seller accounts, set a password, disable and enable them.")


@accounts.command("create")
@click.argument("email")
@click.option("--name", help="Display name.")
@click.option("--verified", is_flag=True, help="Mark the email address as verified.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def create(email, name, verified, password_stdin):
    """Create an account with a password."""
    email = Account.normalize_email(email)
    if not EMAIL.fullmatch(email) or len(email) > MAX_EMAIL or email.endswith(".") or invisible(email):
        raise CliError(f"{email!r} is not an email address" if len(email) <= MAX_EMAIL
                       else f"an email address is at most {MAX_EMAIL} characters (RFC 5321 §4.5.3.1)")
    if name is not None and (len(name) > MAX_NAME or invisible(name)):
        raise CliError(f"the name is longer than {MAX_NAME} characters" if len(name) > MAX_NAME
                       else "the name holds a control or invisible character")
    if find(email) is not None:
        raise CliError(f"an account with email {email} already exists")
    account = create_account(email, _read_password(password_stdin), name=name, verified=verified)
    click.echo(f"created account {account.email} (sub {account.sub})")


@accounts.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def set_password(email, password_stdin):
    """Give an account a new password (support; the demo seller's, lost): every session and
    token of the account ends, as by `idp logout everywhere`, since whoever knew the old one
    may be signed in with it."""
    from ..logout.everywhere import sign_out_everywhere

    account = _existing(email)
    password = _read_password(password_stdin)
    _check_password(password)
    account.password_hash = hash_password(password)
    summary = sign_out_everywhere(account, actor="operator")  # commits the new hash with the sign-out
    click.echo(f"new password for {account.email}; ended {summary['sessions']} session(s), revoked "
               f"{summary['grants']} token family(ies)")
    warn_if_store_is_private()
    refuse_if_tokens_left(summary)


@accounts.command("disable")
@click.argument("email")
def disable(email):
    """Disable an account: no sign-in, and every session and token of it ended (told to the
    relying parties by back-channel logout). Enabling it again brings none of them back."""
    from ..logout.everywhere import sign_out_everywhere

    account = _existing(email)
    if account.status != "active":
        raise CliError(f"the account {account.email} is {account.status} already")
    summary = sign_out_everywhere(account, actor="operator", status="disabled")
    click.echo(f"disabled {account.email}: ended {summary['sessions']} session(s), revoked {summary['grants']} "
               f"token family(ies)")
    warn_if_store_is_private()
    refuse_if_tokens_left(summary)


@accounts.command("enable")
@click.argument("email")
def enable(email):
    """Let a disabled account sign in again (its earlier sessions and tokens stay ended)."""
    account = _existing(email)
    if account.status == "active":
        raise CliError(f"the account {account.email} is active already")
    account.status = "active"
    db.session.commit()
    click.echo(f"enabled {account.email}")


def _existing(email: str) -> Account:
    account = None if invisible(email) else find(email)
    if account is None:
        raise CliError(f"no account with the email {email!r}")
    return account


def find(email: str) -> Account | None:
    return Account.by_email(email)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.buffer.readline()
        try:
            return line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise CliError("the password on standard input is not UTF-8") from None
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise CliError(f"the password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters")


def create_account(email: str, password: str, *, name=None, verified=False) -> Account:
    _check_password(password)
    account = Account(email=Account.normalize_email(email), name=name, email_verified=verified,
                      password_hash=hash_password(password))
    db.session.add(account)
    try:
        db.session.commit()
    except IntegrityError:  # created by someone else since we looked
        db.session.rollback()
        raise CliError(f"an account with email {account.email} already exists") from None
    return account
