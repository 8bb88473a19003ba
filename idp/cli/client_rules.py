"""What a client registration may say: the rules behind `idp clients add` and `clients load`.

Pure: no Flask, no database. ``build(**options)`` turns command options (or one
``[[clients]]`` table of config/clients.toml) into a checked ``ClientSpec``, or raises
``InvalidClient`` with a one-line reason.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
ID_TOKEN_ALGS = ("ES256", "RS256")
ACCESS_TOKEN_FORMATS = ("opaque", "jwt")
DEFAULT_SCOPES = ("openid", "email", "profile")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")  # urlsplit drops the brackets of [::1]

CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,99}")
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 §3.3


class InvalidClient(ValueError):
    """The registration breaks a rule; the message says which."""


@dataclass
class ClientSpec:
    client_id: str
    name: str
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code"])
    scopes: list[str] = field(default_factory=lambda: list(DEFAULT_SCOPES))
    auth_method: str = "client_secret_basic"
    application_type: str = "web"
    first_party: bool = False
    jwks: dict | None = None
    backchannel_logout_uri: str | None = None
    id_token_alg: str | None = None
    access_token_format: str = "opaque"

    @property
    def uses_secret(self) -> bool:
        return self.auth_method in SECRET_METHODS


def build(client_id: str, *, name=None, redirect_uris=(), post_logout_redirect_uris=(), grant_types=(),
          scopes=(), auth_method=None, public=False, native=False, first_party=False, jwks=None,
          backchannel_logout_uri=None, id_token_alg=None, access_token_format=None) -> ClientSpec:
    for flag, value in (("public", public), ("native", native), ("first_party", first_party)):
        if not isinstance(value, bool):
            raise InvalidClient(f"{flag} must be true or false, not {value!r}")
    for field_name, value in (("name", name), ("auth_method", auth_method), ("id_token_alg", id_token_alg),
                              ("access_token_format", access_token_format),
                              ("backchannel_logout_uri", backchannel_logout_uri)):
        if value is not None and not isinstance(value, str):
            raise InvalidClient(f"{field_name} must be a string")
    lists = (("redirect_uris", redirect_uris), ("post_logout_redirect_uris", post_logout_redirect_uris),
             ("grant_types", grant_types), ("scopes", scopes))
    for field_name, values in lists:
        if isinstance(values, str) or not all(isinstance(v, str) for v in values):
            raise InvalidClient(f"{field_name} must be a list of strings")
    if public and auth_method not in (None, "none"):
        raise InvalidClient(f"--public means auth method 'none', not {auth_method!r}")
    if not CLIENT_ID.fullmatch(client_id or ""):
        raise InvalidClient("a client id is 1-100 letters, digits, '.', '_', '~' or '-'")
    spec = ClientSpec(
        client_id=client_id,
        name=(name or "").strip() or client_id,
        redirect_uris=_unique(redirect_uris),
        post_logout_redirect_uris=_unique(post_logout_redirect_uris),
        grant_types=_unique(grant_types) or ["authorization_code"],
        auth_method="none" if public else (auth_method or "client_secret_basic"),
        application_type="native" if native else "web",
        first_party=bool(first_party),
        jwks=jwks,
        backchannel_logout_uri=backchannel_logout_uri or None,
        id_token_alg=id_token_alg or None,
        access_token_format=access_token_format or "opaque",
    )
    spec.scopes = _unique(scopes) or (list(DEFAULT_SCOPES) if "authorization_code" in spec.grant_types else [])
    check(spec)
    return spec


# The longest each text may be: its column's (idp.models.client); longer would reach the
# database as an error that names the database, not the input.
MAX_NAME, MAX_URI = 200, 500


def invisible(text: str) -> bool:
    """Whether ``text`` holds a control, format or direction character (NUL, a zero-width
    space, a right-to-left override) or a lone surrogate: shown to a seller or an operator it
    would read as other text, and PostgreSQL text cannot hold NUL at all."""
    return any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in text)


def check(spec: ClientSpec) -> None:
    if len(spec.name) > MAX_NAME:
        raise InvalidClient(f"the name is longer than {MAX_NAME} characters")
    if invisible(spec.name):  # shown to sellers on the consent page, to the operator by `clients list`
        raise InvalidClient("the name holds a control, format or direction character")
    if spec.backchannel_logout_uri and len(spec.backchannel_logout_uri) > MAX_URI:
        raise InvalidClient(f"the back-channel logout URI is longer than {MAX_URI} characters")
    _one_of("auth method", spec.auth_method, AUTH_METHODS)
    _one_of("ID token alg", spec.id_token_alg, (None, *ID_TOKEN_ALGS))
    _one_of("access token format", spec.access_token_format, ACCESS_TOKEN_FORMATS)
    for grant in spec.grant_types:
        _one_of("grant type", grant, GRANT_TYPES)
    public, native = spec.auth_method == "none", spec.application_type == "native"

    if public and "client_credentials" in spec.grant_types:
        raise InvalidClient("a public client cannot use client_credentials: it has no credentials (RFC 6749 §4.4)")
    if native and spec.uses_secret:
        raise InvalidClient("a native app cannot keep a client secret (RFC 8252 §8.5): register it with --public")
    if spec.auth_method == "private_key_jwt":
        if not (isinstance(spec.jwks, dict) and isinstance(spec.jwks.get("keys"), list) and spec.jwks["keys"]):
            raise InvalidClient("private_key_jwt needs --jwks-file with a JWK Set ({\"keys\": [...]})")
        if any(_is_private_jwk(k) for k in spec.jwks["keys"]):
            raise InvalidClient("the JWKS file holds private key material: give the public keys only")
        try:
            key_set = KeySet.import_key_set(spec.jwks)  # as client authentication will read it
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidClient(f"the JWKS file is not a usable JWK Set ({type(exc).__name__})") from None
        _check_assertion_keys(spec.jwks["keys"], key_set)
    elif spec.jwks is not None:
        raise InvalidClient("--jwks-file is only used with --auth-method private_key_jwt")

    if "refresh_token" in spec.grant_types and "authorization_code" not in spec.grant_types:
        raise InvalidClient("refresh_token needs authorization_code (client_credentials issues no refresh tokens)")
    if "authorization_code" in spec.grant_types and not spec.redirect_uris:
        raise InvalidClient("authorization_code needs at least one --redirect-uri")
    if "authorization_code" not in spec.grant_types and (spec.redirect_uris or spec.post_logout_redirect_uris):
        raise InvalidClient("redirect URIs are only used with the authorization_code grant")
    if not spec.scopes:
        raise InvalidClient("give at least one --scope")
    for scope in spec.scopes:
        if not SCOPE_TOKEN.fullmatch(scope):
            raise InvalidClient(f"scope {scope!r} is not a valid scope token (RFC 6749 §3.3)")
    if "offline_access" in spec.scopes and "refresh_token" not in spec.grant_types:
        raise InvalidClient("scope offline_access needs the refresh_token grant")

    for uri in spec.redirect_uris:
        check_redirect_uri(uri, native, "redirect URI")
    for uri in spec.post_logout_redirect_uris:
        # /logout sends the browser on to http(s) only (idp.logout.rp_initiated): a native
        # app's private-use scheme would be accepted here and then never used, the app left
        # without its state.
        if native and "." in urlsplit(uri).scheme:
            raise InvalidClient(f"post-logout redirect URI {uri!r}: private-use schemes are not supported "
                                "after a logout (use https, or http on a loopback host)")
        check_redirect_uri(uri, False, "post-logout redirect URI")
    if spec.backchannel_logout_uri:
        check_redirect_uri(spec.backchannel_logout_uri, False, "back-channel logout URI")


def check_redirect_uri(uri: str, native: bool, what: str = "redirect URI") -> None:
    """Absolute, no fragment (RFC 6749 §3.1.2); https, or http on a loopback host; and for
    native apps also a private-use scheme in reverse-domain form (RFC 8252 §7.1)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (a malformed port raises)
    except ValueError:
        raise InvalidClient(f"{what} {uri!r} is not a valid URI") from None
    if len(uri) > MAX_URI:
        raise InvalidClient(f"{what} is longer than {MAX_URI} characters")
    if any(c.isspace() or ord(c) < 0x20 for c in uri):
        raise InvalidClient(f"{what} {uri!r} contains whitespace or control characters")
    if not uri.isascii():
        # RFC 3986 §2: a URI is ASCII (an IRI is percent-encoded into one first); the request's
        # redirect_uri is compared with it as a string, byte for byte.
        raise InvalidClient(f"{what} {uri!r} is not ASCII: percent-encode it (RFC 3986 §2.1)")
    if "*" in (parts.hostname or ""):
        # Matched exactly (RFC 9700 §2.1, §4.1.3): a wildcard would only ever match itself,
        # and the operator meant something this IdP never does.
        raise InvalidClient(f"{what} {uri!r}: wildcards are not supported; register each URI as it is used")
    if not parts.scheme:
        raise InvalidClient(f"{what} {uri!r} must be absolute (scheme and host)")
    if "#" in uri:
        raise InvalidClient(f"{what} {uri!r} must not contain a fragment (RFC 6749 §3.1.2)")
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise InvalidClient(f"{what} {uri!r} must be absolute (scheme and host)")
        if parts.username is not None:
            raise InvalidClient(f"{what} {uri!r} must not contain user information")
        if scheme == "https" or parts.hostname in LOOPBACK_HOSTS:
            return
        raise InvalidClient(f"{what} {uri!r} must use https (plain http only on 127.0.0.1, [::1] or localhost)")
    if native and "." in scheme:
        return
    if native:
        hint = " or a private-use scheme such as com.example.app:/callback (RFC 8252 §7.1)"
    else:
        hint = " (private-use schemes are for --native apps)" if "." in scheme else ""
    raise InvalidClient(f"{what} {uri!r} must use https, http on a loopback host{hint}")


# The keys client assertions may be signed with (idp.oauth.client_auth.ASSERTION_ALGS): RSA
# of at least 2048 bits (NIST SP 800-131A; RFC 7518 §3.3 requires it of RS256) or EC P-256.
MIN_RSA_BITS = 2048


def _check_assertion_keys(jwks: list, key_set) -> None:
    """Every key one an assertion can be verified with, and worth trusting: a weak one (RSA-512
    can be factored) would let anyone sign as the client; one that can never verify (another
    curve, an encryption key, an alg we do not take) is a registration that cannot work."""
    from ..oauth.client_auth import ASSERTION_ALGS

    if len(key_set.keys) != len(jwks):  # joserfc skips a kty it does not know
        raise InvalidClient("the JWKS file holds a key of a type client assertions cannot use")
    kids = [k.get("kid") for k in jwks if k.get("kid") is not None]
    if len(kids) != len(set(kids)):
        raise InvalidClient("the JWKS file names a kid twice: an assertion's kid must pick one key")
    for jwk, key in zip(jwks, key_set.keys):
        name = f"key {jwk.get('kid')!r}" if jwk.get("kid") is not None else "a key"
        if jwk.get("use", "sig") != "sig" or ("key_ops" in jwk and "verify" not in (jwk.get("key_ops") or [])):
            raise InvalidClient(f"{name} of the JWKS file is not for signatures (use/key_ops)")
        if jwk.get("kty") == "RSA":
            if key.raw_value.key_size < MIN_RSA_BITS:
                raise InvalidClient(f"{name} of the JWKS file is RSA of {key.raw_value.key_size} bits: at least "
                                    f"{MIN_RSA_BITS} are needed")
            fits = {"RS256", "PS256"} & set(ASSERTION_ALGS)
        elif jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            fits = {"ES256"} & set(ASSERTION_ALGS)
        else:
            raise InvalidClient(f"{name} of the JWKS file is {jwk.get('kty')} {jwk.get('crv') or ''}".rstrip()
                                + ": client assertions are verified with RSA or EC P-256 keys only")
        if "alg" in jwk and jwk["alg"] not in fits:
            raise InvalidClient(f"{name} of the JWKS file says alg {jwk['alg']!r}, which it cannot verify here "
                                f"(expected one of {', '.join(sorted(fits))})")


def _is_private_jwk(jwk) -> bool:
    return isinstance(jwk, dict) and bool({"d", "p", "q", "k"} & jwk.keys())


def _one_of(what: str, value, allowed) -> None:
    if value not in allowed:
        shown = ", ".join(a for a in allowed if a)
        raise InvalidClient(f"{what} {value!r} is not supported (expected {shown})")


def _unique(values) -> list[str]:
    if isinstance(values, str):
        values = [values]
    return list(dict.fromkeys(v.strip() for v in values or () if v and v.strip()))
