"""The back-channel logout endpoint of a web RP (OpenID Connect Back-Channel Logout 1.0).

The IdP POSTs ``logout_token`` (a JWT) to our backchannel_logout_uri when a session ends
there. It arrives without the browser's cookies, so it can only be trusted after the
checks of §2.6, in their order (LogoutTokenVerifier); then every local session of that IdP
session ends (§2.7). Each web RP here installs it (``install``): signed out at one, a
seller is signed out at all of them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import requests
from flask import jsonify, request

from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

log = logging.getLogger(__name__)
EVENT = "http://schemas.openid.net/event/backchannel-logout"
ALGS = ["ES256", "RS256"]  # what the IdP's discovery document says it signs with
MAX_AGE = 300  # a logout token older than this (by iat) is refused, seconds
LEEWAY = 60
REFETCH_EVERY = 10  # an unknown kid refetches the IdP's JWKS at most this often, seconds


class LogoutTokenError(ValueError):
    """The token is not a valid logout token for us; the message says why."""


class TryAgainLater(LogoutTokenError):
    """Signed with a key we do not know, while a refetch of the JWKS is not allowed yet, or the
    JWKS out of reach: the token may be good (a key rotated in at once), so it is not refused
    for good. The IdP retries a 5xx (§2.8), and gives up on a 4xx."""


class LogoutTokenVerifier:
    def __init__(self, fetch_jwks: Callable[..., dict], issuer: str, client_id: str, alg: str | None = None):
        """``fetch_jwks(force=False)`` returns the IdP's JWKS (force: refetch, after a rotation).
        ``alg``: the one this client registered for ID tokens, which logout tokens are signed
        with too (Back-Channel Logout 1.0 §2.6: validated as an ID token is)."""
        self.fetch_jwks, self.issuer, self.client_id = fetch_jwks, issuer, client_id
        self.algs = [alg] if alg else ALGS
        self._seen: dict[str, float] = {}  # jti -> when it can be forgotten
        self._lock = threading.Lock()
        self._refetched = float("-inf")

    def verify(self, token: str | None, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        if not token or len(token) > 8192:
            raise LogoutTokenError("logout_token is missing")
        decoded = self._decode(token, now)
        header, claims = decoded.header, decoded.claims
        # §2.4: explicitly typed, so an ID token can never pass for a logout token.
        if header.get("typ") != "logout+jwt":
            raise LogoutTokenError("typ is not logout+jwt")
        try:
            jwt.JWTClaimsRegistry(
                now=int(now), leeway=LEEWAY,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                iat={"essential": True}, exp={"essential": True}, jti={"essential": True},  # §2.4: exp REQUIRED
            ).validate(claims)
        except JoseError as exc:
            raise LogoutTokenError(f"claims: {exc}") from None
        if not isinstance(claims["iat"], (int, float)) or claims["iat"] < now - MAX_AGE:
            raise LogoutTokenError("iat is too old")
        if "sub" not in claims and "sid" not in claims:
            raise LogoutTokenError("neither sub nor sid")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(EVENT), dict):
            raise LogoutTokenError("events does not hold the back-channel logout event")
        if "nonce" in claims:  # §2.4: prohibited, so that an ID token cannot be replayed here
            raise LogoutTokenError("a logout token must not contain nonce")
        self._once(str(claims["jti"]), now)
        return claims

    def _decode(self, token: str, now: float):
        try:
            try:
                return jwt.decode(token, KeySet.import_key_set(self.fetch_jwks()), algorithms=self.algs)
            except InvalidKeyIdError:  # signed with a key published after our last fetch?
                # Anyone can post here without credentials: unknown kids must not turn every
                # request into a fetch from the IdP.
                with self._lock:
                    if now - self._refetched < REFETCH_EVERY:
                        raise TryAgainLater("signed with a key not known yet; try again later") from None
                    self._refetched = now
                return jwt.decode(token, KeySet.import_key_set(self.fetch_jwks(force=True)), algorithms=self.algs)
        except TryAgainLater:
            raise
        except requests.RequestException as exc:  # the IdP's JWKS out of reach: not the token's fault
            raise TryAgainLater(f"the JWKS could not be fetched ({type(exc).__name__})") from None
        except (JoseError, ValueError) as exc:
            raise LogoutTokenError(f"signature: {exc.__class__.__name__}") from None

    def _once(self, jti: str, now: float) -> None:
        """§2.6 step 8 (optional): refuse a jti we have already acted on."""
        with self._lock:
            self._seen = {k: t for k, t in self._seen.items() if t > now}
            if jti in self._seen:
                raise LogoutTokenError("jti already used")
            self._seen[jti] = now + MAX_AGE + LEEWAY


def install(app, fetch_jwks: Callable[..., dict], issuer: str, client_id: str, sessions,
            alg: str | None = None) -> None:
    """``POST /backchannel-logout`` on ``app``: ends the local sessions (``sessions``, a
    common.LocalSessions) of the IdP session a valid logout token names. ``alg``: the
    client's registered ID token alg, if any."""
    verifier = LogoutTokenVerifier(fetch_jwks, issuer, client_id, alg)

    @app.post("/backchannel-logout")
    def backchannel_logout():
        try:
            claims = verifier.verify(request.form.get("logout_token"))
        except TryAgainLater as exc:
            log.warning("put off a logout token: %s", exc)
            resp = jsonify(error="temporarily_unavailable", error_description=str(exc))
            resp.status_code, resp.headers["Retry-After"] = 503, str(REFETCH_EVERY)
            return resp
        except LogoutTokenError as exc:
            log.warning("refused a logout token: %s", exc)
            resp = jsonify(error="invalid_request", error_description=str(exc))
            resp.status_code = 400
            return resp
        ended = sessions.end(sid=claims.get("sid"), sub=claims.get("sub"))
        log.info("back-channel logout sid=%s: %d local session(s) ended", claims.get("sid"), ended)
        return "", 200  # Back-Channel Logout §2.8; new_flask_app adds Cache-Control: no-store
