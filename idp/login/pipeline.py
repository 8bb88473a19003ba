"""The sign-in as an ordered table of steps (pure: no I/O, no Flask).

A sign-in in progress (SignIn) records which steps are done. ``next_step`` walks the
table and returns the first step that is needed and not done; None means the sign-in is
complete and the authorization request can be answered. Adding a factor, a lockout
gate or a risk check is adding a row here and a handler in views, not rewriting the flow.

    password  ->  (second_factor)  ->  (risk)  ->  consent  ->  done

Each step has a key, says whether it is needed for this sign-in, and names the
``prompt=none`` error to give when it would need the user (OIDC Core §3.1.2.6).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, fields
from typing import Callable


@dataclass
class SignIn:
    """Stored in the ephemeral store under ``signin:<id>`` for LOGIN_TTL seconds."""

    id: str
    request: dict  # AuthorizationRequest.to_dict()
    account_id: int | None = None
    auth_time: int | None = None  # when the user last proved who they are
    # When the first proof of this sign-in began, before the account was read (epoch
    # seconds): a session it starts counts from then (usable_since), so a new password or a
    # sign-out everywhere committed while the password was being checked ends it too.
    proved_at: float | None = None
    amr: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    sid: str | None = None  # the IdP session: the SSO one it started from, or the one it opened
    consent_given: bool = False  # already on record for these scopes
    browser: str = ""  # keyed hash of the browser-binding cookie that started it
    hint_sub: str | None = None  # the subject of the request's id_token_hint: only they may finish
    expires_at: float = 0.0  # checked on load, whatever the store's own TTL clock says
    revision: int = 0  # times saved: a step's POST claims the revision it loaded (idp.login.flow.claimed)

    @classmethod
    def start(cls, request: dict) -> "SignIn":
        return cls(id=secrets.token_urlsafe(24), request=request)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SignIn":
        # Fields a later release added are left out: during a rolling upgrade an older
        # process may load a sign-in a newer one started. Lists and dicts are copied: the
        # sign-in changes its own, never those of ``d`` (idp.login.flow keeps it as read).
        return cls(**{k: v.copy() if isinstance(v, (list, dict)) else v
                      for k, v in d.items() if k in _SIGNIN_FIELDS})

    def complete(self, key: str) -> None:
        if key not in self.done:
            self.done.append(key)


_SIGNIN_FIELDS = frozenset(f.name for f in fields(SignIn))


@dataclass(frozen=True)
class Step:
    key: str
    needed: Callable[[SignIn, "Context"], bool]
    prompt_none_error: str  # error for prompt=none when this step needs the user
    authenticates: bool = False  # part of proving who the user is (the session starts after these)


@dataclass(frozen=True)
class Context:
    """What the views know about this sign-in, gathered before asking the pipeline."""

    first_party: bool
    now: int


def _password_needed(s: SignIn, ctx: Context) -> bool:
    return s.account_id is None


def _consent_needed(s: SignIn, ctx: Context) -> bool:
    # prompt=consent asks even for a first-party client (OIDC Core §3.1.2.1: the server
    # SHOULD prompt); otherwise a first-party client never asks, by configuration (which is
    # also what stands in for consent to its offline access, Core §11).
    if "consent" in s.request.get("prompt", []):
        return True
    return not ctx.first_party and not s.consent_given


STEPS: tuple[Step, ...] = (
    Step("password", _password_needed, "login_required", authenticates=True),
    Step("consent", _consent_needed, "consent_required"),
)


def next_step(signin: SignIn, ctx: Context, steps=STEPS) -> Step | None:
    for step in steps:
        if step.key not in signin.done and step.needed(signin, ctx):
            return step
    return None


def authentication_complete(signin: SignIn, ctx: Context, steps=STEPS) -> bool:
    """No authentication step is left: the IdP session can start (before consent).

    Every step of the table counts, not only the next one: a step that proves nothing (a
    risk check deciding whether a second factor is needed) may come before one that does,
    and the session must not start between them."""
    return signin.account_id is not None and not any(
        step.authenticates and step.key not in signin.done and step.needed(signin, ctx) for step in steps)


def is_due(key: str, signin: SignIn, ctx: Context, steps=STEPS) -> bool:
    """Whether ``key`` is the step the sign-in is at: a step's page answers only then, so a
    gate before it is not skipped by going to its URL (idp.login.views)."""
    step = next_step(signin, ctx, steps)
    return step is not None and step.key == key


def session_satisfies(request: dict, session_auth_time: int, now: int, hint_sub: str | None,
                      session_sub: str) -> bool:
    """Whether an existing IdP session can stand for the password step (single sign-on).

    prompt=login and an exceeded max_age demand a fresh sign-in (OIDC Core §3.1.2.1);
    an id_token_hint for another subject means the session is not the one the RP expects.
    """
    if "login" in request.get("prompt", []):
        return False
    max_age = request.get("max_age")
    # max_age=0 is prompt=login (OIDC Core §3.1.2.1, errata set 2): even within the second.
    if max_age is not None and (max_age == 0 or now - session_auth_time > max_age):
        return False
    if hint_sub is not None and hint_sub != session_sub:
        return False
    return True
