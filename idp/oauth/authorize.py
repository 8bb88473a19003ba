"""Validation of an authorization request (RFC 6749 §4.1.1, RFC 7636, OIDC Core §3.1.2).

Pure: takes the request parameters and a client lookup, returns an AuthorizationRequest
or raises AuthorizeError. The checks run in the order below, one function each, and the
order matters: until the client and its redirect URI are verified an error must not be
sent to the redirect URI (RFC 6749 §4.1.2.1), so those errors are shown as a page.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields

from . import resource_indicators

MAX_PARAM = 2048
# select_account: there is no account chooser; the sign-in page is where the seller says
# which account, so it is asked for as "login" is (OIDC Core §3.1.2.1).
PROMPTS = {"none", "login", "consent", "select_account"}
# RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is 43 characters of the base64url alphabet.
S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # used with fullmatch ("$" lets a final newline by)
# RFC 6749 §3.3: a scope token is NQCHAR (printable ASCII but space, '"' and '\'): only such
# tokens are named back in an error_description, whose own alphabet (§4.1.2.1) is the same.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]{1,64}")
SINGLE = (
    "client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge",
    "code_challenge_method", "prompt", "max_age", "login_hint", "id_token_hint", "acr_values",
    "response_mode", "ui_locales", "request", "request_uri", "display", "claims",
)


class AuthorizeError(Exception):
    """``redirect_uri`` is None when the error must be shown as a page, not redirected."""

    def __init__(self, error: str, description: str, redirect_uri: str | None = None, state: str | None = None,
                 fragment: bool = False):
        super().__init__(description)
        self.error, self.description, self.redirect_uri, self.state = error, description, redirect_uri, state
        self.fragment = fragment  # in the redirect's fragment, not its query (_error_in_fragment)


def _error_in_fragment(params: dict) -> bool:
    """Where a client refused before its response type is accepted looks for the error: the
    fragment when it asked for it, or for a response type that defaults to it (any with
    ``token`` or ``id_token``: OAuth 2.0 Multiple Response Type Encoding Practices §2.1, §5;
    OIDC Core §3.2.2.6, §3.3.2.6); else the query, where this IdP's own answers go."""
    mode, response_type = _one(params, "response_mode"), _one(params, "response_type")
    if mode is not None:
        return mode == "fragment"
    return isinstance(response_type, str) and bool({"token", "id_token"} & set(response_type.split()))


@dataclass
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scope: list[str]
    code_challenge: str
    state: str | None = None
    nonce: str | None = None
    prompt: set[str] = field(default_factory=set)
    max_age: int | None = None
    login_hint: str | None = None
    id_token_hint: str | None = None
    acr_values: list[str] = field(default_factory=list)
    resource: list[str] = field(default_factory=list)
    # False when the request named no redirect_uri (RFC 6749 §3.1.2.3: the client's only
    # one); the token request then need not name it either (§4.1.3).
    redirect_uri_given: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prompt"] = sorted(self.prompt)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AuthorizationRequest":
        # Fields a later release added are left out (a rolling upgrade: see SignIn.from_dict).
        known = {k: v for k, v in d.items() if k in _REQUEST_FIELDS}
        return cls(**{**known, "prompt": set(d["prompt"])})


_REQUEST_FIELDS = frozenset(f.name for f in fields(AuthorizationRequest))


def validate(params, find_client, resources=(), understood=frozenset()) -> tuple[AuthorizationRequest, object]:
    """``params`` maps a name to the list of its values (werkzeug MultiDict.to_dict(flat=False));
    ``resources`` the configured resource servers (RFC 8707). A parameter sent without a
    value is treated as omitted (RFC 6749 §3.1)."""
    params = {name: kept for name, values in params.items() if (kept := [v for v in values if v != ""])}
    client = _check_client(params, find_client)
    redirect_uri, redirect_uri_given = _check_redirect_uri(params, client)
    state = _one(params, "state")
    if isinstance(state, str) and len(state) > MAX_PARAM:
        # §4.1.2.1 returns state "exactly as received": a redirect carrying 60 kB of it would
        # pass no proxy. Too long to give back, so the error is told here, not to the client.
        raise AuthorizeError("invalid_request", "'state' is too long", None, None)

    fragment = _error_in_fragment(params)

    def fail(error, description):
        raise AuthorizeError(error, description, redirect_uri, state if isinstance(state, str) else None, fragment)

    for name in SINGLE:
        if len(params.get(name, [])) > 1:
            fail("invalid_request", f"'{name}' must not be repeated")
    # OIDC Core §6.1, §6.2: whatever its length, a request object gets the answer that says
    # it is not supported.
    if _one(params, "request") is not None:
        fail("request_not_supported", "request objects are not supported")
    if _one(params, "request_uri") is not None:
        fail("request_uri_not_supported", "request_uri is not supported")
    for name, values in params.items():
        if name != "resource" and any(len(v) > MAX_PARAM for v in values):
            fail("invalid_request", f"'{name}' is too long" if name in SINGLE else "a parameter is too long")
    if _one(params, "response_type") is None:
        fail("invalid_request", "response_type is required")
    if _one(params, "response_type") != "code":
        fail("unsupported_response_type", "only response_type=code is supported")
    if not client.check_response_type("code"):
        fail("unauthorized_client", "the client may not use the authorization code flow")
    if _one(params, "response_mode") not in (None, "query"):
        fail("invalid_request", "only response_mode=query is supported")

    requested = (_one(params, "scope") or "").split()
    if not requested:
        fail("invalid_scope", "scope is required")
    # OIDC Core §3.1.2.1: scope values not understood SHOULD be ignored (an SDK's own, another
    # provider's). One this IdP understands (``understood``: its own and its resources') that
    # the client may not have is refused, as node-oidc-provider does.
    scope = [s for s in requested if s in client.scopes or s in understood]
    if not scope:
        fail("invalid_scope", "none of the requested scopes is known here")
    refused = [s for s in scope if s not in client.scopes]
    if refused:
        named = " ".join(refused[:5]) if all(SCOPE_TOKEN.fullmatch(s) for s in refused[:5]) else ""
        fail("invalid_scope", "scope not allowed for this client" + (f": {named}" if named else ""))
    if "openid" in scope and not redirect_uri_given:
        fail("invalid_request", "redirect_uri is required (OpenID Connect Core 3.1.2.1)")

    challenge, method = _one(params, "code_challenge"), _one(params, "code_challenge_method")
    if challenge is None:
        fail("invalid_request", "code_challenge is required (PKCE, RFC 7636)")
    if method != "S256":
        fail("invalid_request", "code_challenge_method must be S256")
    if not S256_CHALLENGE.fullmatch(challenge):
        fail("invalid_request", "code_challenge is not a valid S256 challenge")

    prompt = set((_one(params, "prompt") or "").split())
    if not prompt <= PROMPTS:
        fail("invalid_request", "unsupported prompt value")
    if "none" in prompt and len(prompt) > 1:
        fail("invalid_request", "prompt=none cannot be combined with other values")
    if "select_account" in prompt:
        prompt = (prompt - {"select_account"}) | {"login"}

    max_age = _one(params, "max_age")
    if max_age is not None:
        if not (max_age.isascii() and max_age.isdigit()) or len(max_age) > 10:
            fail("invalid_request", "max_age must be a non-negative integer")
        max_age = int(max_age)

    resource = list(dict.fromkeys(params.get("resource", [])))  # a repeat names one target (RFC 8707 §2)
    if len(resource) > resource_indicators.MAX_RESOURCES:
        fail("invalid_request", f"at most {resource_indicators.MAX_RESOURCES} resource values")
    for r in resource:
        if not resource_indicators.well_formed(r):
            fail("invalid_target", "resource must be an absolute URI without fragment (RFC 8707)")
        if r not in resources:
            fail("invalid_target", "unknown resource")

    req = AuthorizationRequest(
        client_id=client.client_id, redirect_uri=redirect_uri, scope=scope, code_challenge=challenge,
        state=state, nonce=_one(params, "nonce"), prompt=prompt, max_age=max_age,
        login_hint=_hint(_one(params, "login_hint")), id_token_hint=_one(params, "id_token_hint"),
        acr_values=(_one(params, "acr_values") or "").split()[:MAX_ACR_VALUES], resource=list(resource),
        redirect_uri_given=redirect_uri_given,
    )
    return req, client


# A sign-in keeps its request in the store for LOGIN_TTL, for any anonymous browser: the
# advisory parameters keep no more than they can mean. login_hint prefills the email field
# (an address has at most 254 characters, RFC 5321 §4.5.3.1); a longer one is dropped, as
# an unusable hint is. acr_values are voluntary (OIDC Core §3.1.2.1): the first ten count.
MAX_LOGIN_HINT, MAX_ACR_VALUES = 320, 10


def _hint(value: str | None) -> str | None:
    return value if value is not None and len(value) <= MAX_LOGIN_HINT else None


def _one(params, name):
    values = params.get(name)
    return values[0] if values else None


def _check_client(params, find_client):
    values = params.get("client_id", [])
    if len(values) != 1 or not values[0] or len(values[0]) > 100:
        raise AuthorizeError("invalid_request", "missing or invalid client_id")
    client = find_client(values[0])
    if client is None:
        raise AuthorizeError("invalid_client", "unknown client")
    return client


def _check_redirect_uri(params, client) -> tuple[str, bool]:
    """(the redirect URI, whether the request named it)."""
    values = params.get("redirect_uri", [])
    if not values:
        default = client.get_default_redirect_uri()
        if default is None:
            raise AuthorizeError("invalid_request", "redirect_uri is required")
        return default, False
    if len(values) > 1 or len(values[0]) > MAX_PARAM or not client.check_redirect_uri(values[0]):
        raise AuthorizeError("invalid_request", "redirect_uri is not registered for this client")
    return values[0], True
