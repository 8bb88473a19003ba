"""The IdP driven over HTTP by a real OAuth client library, as a relying party drives it.

authlib's requests client (OAuth2Session) does discovery, builds the authorization
request with PKCE S256 (RFC 7636) and a nonce, redeems the code with the verifier and
refreshes; the ID token is checked against the JWKS with joserfc and authlib's OIDC
claim rules (OIDC Core §3.1.3.7). The user's browser is played by requests
(tests/e2e/useragent.py). Also: the native-app flow of clients/mobile with its loopback
listener (RFC 8252), and the seller API's token introspection (RFC 7662).
"""

from __future__ import annotations

import base64
import json
import re

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

from clients.mobile.app import NativeApp

from .useragent import UserAgent, query

pytestmark = pytest.mark.e2e

SCOPE = "openid email profile offline_access"
ALG_CLIENTS = {"ES256": ("e2e-rp", "/callback"), "RS256": ("e2e-rp-rs256", "/callback-rs256")}


@pytest.fixture(scope="module")
def metadata(idp_server) -> dict:
    resp = requests.get(idp_server.issuer + "/.well-known/openid-configuration", timeout=10)
    resp.raise_for_status()
    return resp.json()


class Login:
    """One run of the code flow by e2e-rp (or its RS256 twin) with authlib."""

    def __init__(self, stack, metadata, alg="ES256", ua: UserAgent | None = None, client=None, scope=SCOPE):
        self.stack, self.metadata, self.alg = stack, metadata, alg
        self.client_id, path = ALG_CLIENTS[alg]
        redirect_uri = f"http://127.0.0.1:{stack.ports['e2e_rp']}{path}"
        if client:  # another registration: (client_id, redirect_uri)
            self.client_id, redirect_uri = client
        self.ua = ua or UserAgent()
        self.client = OAuth2Session(
            self.client_id, stack.secrets[self.client_id], scope=scope, code_challenge_method="S256",
            redirect_uri=redirect_uri,
            token_endpoint_auth_method="client_secret_basic", default_timeout=10)
        verifier, self.nonce = generate_token(48), generate_token(20)
        url, state = self.client.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, nonce=self.nonce)
        self.authorization_url = url
        self.response = query(self.ua.authorize(url))  # the redirect to the RP, not followed
        assert self.response.get("state") == state, self.response
        assert self.response.get("iss") == stack.issuer  # RFC 9207
        self.token = dict(self.client.fetch_token(metadata["token_endpoint"], code=self.response["code"],
                                                  code_verifier=verifier))
        self.header, self.claims = verify_id_token(metadata, self.token, self.client_id, self.nonce)


def jwks(metadata) -> dict:
    resp = requests.get(metadata["jwks_uri"], timeout=10)
    resp.raise_for_status()
    return resp.json()


def verify_id_token(metadata, token: dict, client_id: str, nonce: str | None) -> tuple[dict, dict]:
    key_set = jwks(metadata)
    segment = token["id_token"].split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert header.get("kid") in {k["kid"] for k in key_set["keys"]}, "the ID token's kid is not in the JWKS"
    decoded = jwt.decode(token["id_token"], KeySet.import_key_set(key_set),
                         algorithms=metadata["id_token_signing_alg_values_supported"])
    claims = CodeIDToken(decoded.claims, decoded.header,
                         {"iss": {"essential": True, "value": metadata["issuer"]},
                          "aud": {"essential": True, "value": client_id}},
                         {"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]})
    claims.validate(leeway=5)  # signature done; now iss, aud, exp, iat, nonce, azp, at_hash
    assert "at_hash" in claims, "an ID token issued with an access token should carry at_hash"
    return decoded.header, dict(claims)


def test_discovery_describes_the_code_flow_with_s256(idp_server, metadata):
    assert metadata["issuer"] == idp_server.issuer
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                 "introspection_endpoint", "end_session_endpoint"):
        assert metadata[name].startswith(idp_server.issuer + "/"), name
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["response_types_supported"] == ["code"]
    assert all("kid" in k and "d" not in k for k in jwks(metadata)["keys"])


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_code_flow_pkce_nonce_userinfo_and_refresh(idp_server, metadata, alg):
    login = Login(idp_server, metadata, alg)
    params = query(login.authorization_url)
    assert params["code_challenge_method"] == "S256" and params["nonce"] == login.nonce
    assert login.header["alg"] == alg
    assert login.claims["nonce"] == login.nonce and login.claims["email"] == "demo.seller@example.com"
    assert {"sub", "auth_time", "sid"} <= login.claims.keys()

    info = login.client.get(metadata["userinfo_endpoint"], timeout=10)
    assert info.status_code == 200, info.text
    assert info.json()["sub"] == login.claims["sub"] and info.json()["email"] == login.claims["email"]

    old = login.token
    new = dict(login.client.refresh_token(metadata["token_endpoint"], refresh_token=old["refresh_token"]))
    assert new["access_token"] != old["access_token"]
    assert new.get("refresh_token") not in (None, old["refresh_token"]), "refresh tokens are rotated"
    if "id_token" in new:  # OIDC Core §12.2: same subject, and auth_time of the original authentication
        refreshed = verify_id_token(metadata, new, login.client_id, None)[1]
        assert (refreshed["sub"], refreshed["auth_time"]) == (login.claims["sub"], login.claims["auth_time"])
    again = login.client.get(metadata["userinfo_endpoint"], timeout=10)
    assert again.status_code == 200 and again.json()["sub"] == login.claims["sub"]


def test_a_replayed_refresh_token_revokes_the_family(idp_server, metadata):
    """RFC 9700 §4.14.2: the old refresh token, used after rotation, kills every token of the grant."""
    login = Login(idp_server, metadata)
    first = login.token["refresh_token"]
    second = dict(login.client.refresh_token(metadata["token_endpoint"], refresh_token=first))

    def redeem(refresh_token):
        return requests.post(metadata["token_endpoint"], timeout=10, auth=(login.client_id,
                             idp_server.secrets[login.client_id]),
                             data={"grant_type": "refresh_token", "refresh_token": refresh_token})

    replay = redeem(first)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert redeem(second["refresh_token"]).json().get("error") == "invalid_grant"
    userinfo = requests.get(metadata["userinfo_endpoint"], timeout=10,
                            headers={"Authorization": f"Bearer {second['access_token']}"})
    assert userinfo.status_code == 401


def test_single_sign_on_across_clients(idp_server, metadata):
    ua = UserAgent()
    first = Login(idp_server, metadata, "ES256", ua)
    assert ua.pages == ["password"]
    second = Login(idp_server, metadata, "RS256", ua)
    assert ua.pages == ["password"], "the second client must not ask for the password again"
    assert second.claims["sub"] == first.claims["sub"]
    assert second.claims["sid"] == first.claims["sid"]
    assert second.claims["auth_time"] == first.claims["auth_time"]


def test_a_third_party_client_asks_for_consent_once(idp_server, metadata):
    integrator = ("integrator-acme", idp_server.rp_url("integrator") + "/callback")
    ua = UserAgent()
    first = Login(idp_server, metadata, ua=ua, client=integrator, scope="openid email")
    assert ua.pages == ["password", "consent"]
    assert first.claims["aud"] == "integrator-acme" and "refresh_token" not in first.token
    Login(idp_server, metadata, ua=ua, client=integrator, scope="openid email")
    assert ua.pages == ["password", "consent"], "consent given once covers the same scopes"


def test_native_app_signs_in_through_a_loopback_redirect(idp_server):
    ua, opened = UserAgent(), []

    def open_system_browser(url):
        opened.append(url)
        callback = ua.authorize(url)
        delivered = ua.http.get(callback, timeout=10)  # the browser lands on the app's listener
        assert delivered.status_code == 200

    app = NativeApp(idp_server.issuer)
    claims = app.sign_in(open_system_browser, timeout=30)
    params = query(opened[0])
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/callback", params["redirect_uri"])
    assert params["client_id"] == "seller-mobile" and params["code_challenge_method"] == "S256"
    assert claims["email"] == "demo.seller@example.com" and claims["aud"] == "seller-mobile"
    assert app.userinfo()["sub"] == claims["sub"]

    old = dict(app.tokens)
    app.refresh()
    assert app.tokens["refresh_token"] != old["refresh_token"]
    assert app.userinfo()["sub"] == claims["sub"]


def test_seller_api_checks_each_token_by_introspection(relying_parties, metadata):
    api = relying_parties.rp_url("api") + "/api/orders"

    def call(token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(api, headers=headers, timeout=10)

    machine = OAuth2Session("backend-api", relying_parties.secrets["backend-api"], scope="api:read", default_timeout=10)
    m2m = machine.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    ok = call(m2m["access_token"])
    assert ok.status_code == 200, ok.text
    assert ok.json()["client_id"] == "backend-api"

    # A token of a client the API does not serve is not for it, whatever its scope (RFC 9700 §2.3).
    foreign = call(Login(relying_parties, metadata).token["access_token"])
    assert foreign.status_code == 401 and 'error="invalid_token"' in foreign.headers["WWW-Authenticate"]
    # The dashboard's, without api:read: for the API, but not enough.
    dashboard = ("seller-dashboard", relying_parties.rp_url("dashboard") + "/callback")
    forbidden = call(Login(relying_parties, metadata, client=dashboard, scope="openid email").token["access_token"])
    assert forbidden.status_code == 403
    assert 'error="insufficient_scope"' in forbidden.headers["WWW-Authenticate"]

    assert call().headers["WWW-Authenticate"] == 'Bearer realm="seller-api"'
    bogus = call("not-a-token-" + generate_token(20))
    assert bogus.status_code == 401 and 'error="invalid_token"' in bogus.headers["WWW-Authenticate"]

    revoked = requests.post(metadata["revocation_endpoint"], timeout=10,
                            auth=("backend-api", relying_parties.secrets["backend-api"]),
                            data={"token": m2m["access_token"], "token_type_hint": "access_token"})
    assert revoked.status_code == 200
    assert call(m2m["access_token"]).status_code == 401


def test_dashboard_refuses_what_is_not_a_logout_token(relying_parties, metadata):
    """Back-Channel Logout §2.6: an ID token (typ JWT, with a nonce) must not end a session."""
    endpoint = relying_parties.rp_url("dashboard") + "/backchannel-logout"
    id_token = Login(relying_parties, metadata).token["id_token"]
    for token in (id_token, "not.a.jwt", ""):
        resp = requests.post(endpoint, data={"logout_token": token}, timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", token
