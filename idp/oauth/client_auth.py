"""Client authentication at /token, /introspect and /revoke (RFC 6749 §2.3, RFC 7523).

authlib runs the methods (client_secret_basic, client_secret_post, none, and
private_key_jwt below); this module says which endpoint accepts which, and defines the
401 invalid_client that idp.oauth.server.Server.authenticate_client answers every failure
with, at /token, /introspect and /revoke (RFC 7662 §2.1, RFC 7009 §2.1 defer to RFC 6749
§5.2: 401, with a WWW-Authenticate challenge for the scheme tried).
"""

import time

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..context import current_app, g
from ..extensions import store

ALL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


# The algorithms a client assertion may be signed with, as discovery advertises them: joserfc
# left to itself accepts only its "recommended" ones (no PS256).
ASSERTION_ALGS = ["ES256", "RS256", "PS256"]

# The longest a client assertion may still be valid when presented: its jti is remembered
# until its exp, so this bounds what the store keeps per assertion.
MAX_ASSERTION_LIFETIME = 3600
# What an assertion refused before its signature verified is told: what an unknown client is.
UNVERIFIED = "client authentication failed"


class PrivateKeyJWT(JWTBearerClientAssertion):
    """private_key_jwt (RFC 7523 §2.2, OIDC Core §9); assertion ids are single-use.

    RFC 7523 §3 (7): the server may keep the jti of each assertion "until it expires" to
    refuse a replay. So a jti is remembered until the assertion's own exp (plus the leeway
    exp is judged with), not for a fixed time: an assertion that outlived its remembered jti
    could be replayed. An assertion whose exp is more than MAX_ASSERTION_LIFETIME away is
    refused outright (SMART Backend Services, a profile of the same RFC, allows five minutes)."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def get_audiences(self):
        """RFC 7523 §3 (3): this server, named by its issuer or one of the endpoints a client
        authenticates at. OIDC Core §9 has the token endpoint's URL, and common clients send
        it, or [issuer, token endpoint], to every endpoint (openid-client): each is accepted
        anywhere; the jti is single-use across all of them."""
        issuer = current_app.config["ISSUER"]
        return [issuer, issuer + "/token", issuer + "/introspect", issuer + "/revoke"]

    def validate_jti(self, claims, jti):
        # exp is essential and checked (not past, with the leeway) before this is called.
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise AssertionRefused(description="The client assertion has no numeric exp.")
        now = time.time()
        # Compared before any arithmetic: an int exp of hundreds of digits overflows a float.
        if exp > now + MAX_ASSERTION_LIFETIME:
            raise AssertionRefused(description="The client assertion expires more than an hour from now.")
        remaining = int(exp - now)
        key = f"jti:{claims['sub']}:{str(jti)[:200]}"
        # A request may authenticate its client twice: the grants judge a request again
        # from the shared registration when this process's copy refused it (idp.oauth.clients).
        # The assertion this request already spent is its own, not a replay; without this,
        # the second pass answered invalid_client and a reused refresh token went unpunished.
        spent = g.setdefault("client_assertions", set())
        if key in spent:
            return True
        if not store().add(key, 1, max(remaining, 0) + self.leeway + 1):
            return False
        spent.add(key)
        return True

    def verify_claims(self, claims):
        # Past the signature check: what is wrong with the claims (aud, exp, a reused jti) is
        # the client developer's to know, and tells nothing to anyone else.
        aud = claims.get("aud")
        if isinstance(aud, list) and any(value not in self.get_audiences() for value in aud):
            # joserfc takes a list if any member is ours. One naming another server too is
            # what an audience injection looks like (a client tricked into addressing an
            # assertion for our endpoint to an attacker's server, which replays it here).
            raise AssertionRefused(description="The client assertion's aud names another audience than this server.")
        try:
            super().verify_claims(claims)
        except AssertionRefused:
            raise
        except InvalidClientError as exc:
            raise AssertionRefused(description=exc.description) from exc

    def process_assertion_claims(self, assertion, resolve_key):
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGS)
        except (JoseError, TypeError, KeyError, AttributeError, ValueError, RecursionError) as exc:
            # Before (or at) the signature check: the words of an unknown client whatever
            # failed, so nobody learns which client ids exist, which authenticate with keys,
            # or which kids they registered. joserfc raises more than JoseError on a header it
            # judges before the signature (a "crit" of numbers: TypeError).
            raise AssertionRefused(description=UNVERIFIED) from exc
        self.verify_claims(token.claims)
        return token.claims

    def resolve_client_public_key(self, client):
        try:
            return KeySet.import_key_set(client.jwks or {"keys": []})
        except (TypeError, ValueError, KeyError, JoseError) as exc:
            # A registration written around idp.cli.client_rules (a list, not a JWK Set):
            # the client cannot authenticate; the server goes on.
            raise AssertionRefused(description=UNVERIFIED) from exc


class AssertionRefused(InvalidClientError):
    """A client assertion (private_key_jwt) refused, with what a developer can act on."""


def mechanisms(request) -> list[str]:
    """The client authentication methods a request's credentials use (RFC 6749 §2.3: the
    client "MUST NOT use more than one"): a Basic Authorization header, a client_secret in
    the body, a client assertion. A client_id alone (a public client) is none of them."""
    used = []
    scheme = request.headers.get("Authorization", "").split(None, 1)
    if scheme and scheme[0].lower() == "basic":
        used.append("client_secret_basic")
    if request.form.get("client_secret"):
        used.append("client_secret_post")
    if request.form.get("client_assertion") or request.form.get("client_assertion_type"):
        used.append("private_key_jwt")
    return used


def claimed_client_id(request) -> str | None:
    """The client_id a request names, unauthenticated (its Basic header's, else its body's):
    only to fetch the registration ahead (idp.store.prefetch); authentication comes after."""
    try:
        client_id, _ = extract_basic_authorization(request.headers)
    except (UnicodeDecodeError, ValueError):  # malformed: client authentication will refuse it
        client_id = None
    return client_id or request.form.get("client_id")


class ClientAuthFailed(InvalidClientError):
    """invalid_client with 401; the challenge carries the error only when Basic was tried."""

    status_code = 401

    def __init__(self, basic_tried: bool, description: str = "client authentication failed"):
        super().__init__(description=description, status_code=401)
        self.basic_tried = basic_tried

    def get_headers(self):
        headers = [h for h in super().get_headers() if h[0] != "WWW-Authenticate"]
        challenge = 'Basic realm="idp"'
        if self.basic_tried:
            challenge += ', error="invalid_client"'
        headers.append(("WWW-Authenticate", challenge))
        return headers

