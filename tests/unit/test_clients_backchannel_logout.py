"""The demo relying parties' back-channel logout endpoint (clients/backchannel.py) across a key
rotation: Back-Channel Logout 1.0 §2.6 (validated as an ID token is, the kid from the JWKS)
and §2.8 (a 4xx is the RP's refusal, which the IdP does not retry; a 5xx it retries)."""

import time

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import ECKey

from clients.backchannel import EVENT, REFETCH_EVERY, LogoutTokenVerifier, TryAgainLater, install
from clients.common import LocalSessions

ISSUER, CLIENT = "https://id.example.com", "seller-dashboard"


class IdP:
    """The IdP's JWKS as the RP sees it: a cached copy, fetched again when forced."""

    def __init__(self):
        self.published = [ECKey.generate_key("P-256", parameters={"kid": "k1"})]
        self.cached = None

    def rotate_in(self, kid: str) -> ECKey:
        key = ECKey.generate_key("P-256", parameters={"kid": kid})
        self.published.append(key)
        return key

    def fetch(self, force: bool = False) -> dict:
        if self.cached is None or force:
            self.cached = {"keys": [k.as_dict(private=False) for k in self.published]}
        return self.cached


def logout_token(key: ECKey, jti: str, now: float) -> str:
    claims = {"iss": ISSUER, "aud": CLIENT, "iat": int(now), "exp": int(now) + 120, "jti": jti, "sid": "s1",
              "events": {EVENT: {}}}
    return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "logout+jwt"}, claims, key)


def test_a_token_of_a_key_rotated_in_meanwhile_is_put_off_then_accepted():
    idp, now = IdP(), 1_000_000.0
    verifier = LogoutTokenVerifier(idp.fetch, ISSUER, CLIENT)
    assert verifier.verify(logout_token(idp.published[0], "j1", now), now=now)["sid"] == "s1"
    second = idp.rotate_in("k2")
    assert verifier.verify(logout_token(second, "j2", now), now=now)["sid"] == "s1"  # one refetch
    third = idp.rotate_in("k3")  # `idp keys rotate --now` again, within REFETCH_EVERY
    with pytest.raises(TryAgainLater):
        verifier.verify(logout_token(third, "j3", now + 1), now=now + 1)
    later = now + REFETCH_EVERY + 1
    assert verifier.verify(logout_token(third, "j3", later), now=later)["sid"] == "s1"


def test_the_endpoint_answers_a_put_off_token_with_503_and_a_forged_one_with_400():
    idp, app, sessions = IdP(), Flask(__name__), LocalSessions()
    install(app, idp.fetch, ISSUER, CLIENT, sessions)
    http, now = app.test_client(), time.time()
    idp.fetch()  # the copy the RP holds from its start
    local = sessions.create({"claims": {"sid": "s1", "sub": "u"}})
    assert http.post("/backchannel-logout", data={"logout_token": logout_token(idp.rotate_in("k2"), "j1", now)}
                     ).status_code == 200  # the one refetch
    assert sessions.get(local) is None
    put_off = http.post("/backchannel-logout", data={"logout_token": logout_token(idp.rotate_in("k3"), "j2", now)})
    assert put_off.status_code == 503 and put_off.headers["Retry-After"] == str(REFETCH_EVERY)
    assert put_off.get_json()["error"] == "temporarily_unavailable"
    stranger = ECKey.generate_key("P-256", parameters={"kid": "k1"})  # a known kid, someone else's key
    forged = http.post("/backchannel-logout", data={"logout_token": logout_token(stranger, "j3", now)})
    assert forged.status_code == 400 and forged.get_json()["error"] == "invalid_request"


def test_a_jwks_out_of_reach_puts_the_token_off_with_503():
    """The IdP's JWKS could not be fetched (its host briefly down): a 503 the IdP retries, not
    a 500 from the framework, and no local session ended on a token nobody verified."""
    import requests

    app, sessions = Flask(__name__), LocalSessions()

    def unreachable(force=False):
        raise requests.ConnectionError("connection refused")

    install(app, unreachable, ISSUER, CLIENT, sessions)
    local = sessions.create({"claims": {"sid": "s1", "sub": "u"}})
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    resp = app.test_client().post("/backchannel-logout", data={"logout_token": logout_token(key, "j1", time.time())})
    assert resp.status_code == 503 and resp.headers["Retry-After"] == str(REFETCH_EVERY)
    assert sessions.get(local) is not None
