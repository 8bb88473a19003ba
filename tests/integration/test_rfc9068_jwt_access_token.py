"""JWT access tokens (RFC 9068) and resource indicators (RFC 8707)."""

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.oauth import id_token
from tests.conftest import ISSUER, Flow, register_client
from tests.integration.token_helpers import (API, ORDERS, active, auth_of, error_of, introspect, login,
                                             refresh, revoke)

CLAIMS = {"iss", "exp", "aud", "sub", "client_id", "iat", "jti", "scope", "auth_time", "acr", "amr"}


@pytest.fixture
def resources(app):
    app.config["RESOURCES"] = {API: {"access_token_format": "jwt", "scopes": ["api:read"]},
                               ORDERS: {"access_token_format": "opaque"}}


def _rp(client_id="rp-res", **fields):
    return register_client(client_id, scopes=["openid", "email", "profile", "offline_access", "api:read"], **fields)


def _verify(http, token):
    """Verify as a resource server would: the published JWKS and the typ header (§4)."""
    keys = KeySet.import_key_set(http.get("/jwks").get_json())
    decoded = jwt.decode(token, keys, algorithms=["ES256", "RS256"])
    assert decoded.header["typ"] == "at+jwt" and decoded.header["kid"]
    return dict(decoded.claims)


def _is_jwt(token):
    return token.count(".") == 2


def test_client_registered_for_jwt_access_tokens(client, api, seller):
    rp = _rp(access_token_format="jwt")
    body = login(Flow(client, rp))
    claims = _verify(client, body["access_token"])
    assert set(claims) == CLAIMS
    assert claims["iss"] == ISSUER and claims["aud"] == "rp-res" and claims["client_id"] == "rp-res"
    assert claims["sub"] == seller.sub and claims["scope"] == "openid email" and claims["exp"] - claims["iat"] == 600
    assert claims["amr"] == ["pwd"] and claims["acr"]
    id_claims = _verify_id(client, body["id_token"])
    assert id_claims["at_hash"] == id_token.half_hash(body["access_token"], "ES256")
    userinfo = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert userinfo.status_code == 200 and userinfo.get_json()["sub"] == seller.sub
    resp = introspect(client, api, body["access_token"])
    assert active(resp) and resp.get_json()["sub"] == seller.sub
    assert revoke(client, rp, body["access_token"]).status_code == 200
    assert not active(introspect(client, api, body["access_token"]))


def _verify_id(http, token):
    keys = KeySet.import_key_set(http.get("/jwks").get_json())
    return dict(jwt.decode(token, keys, algorithms=["ES256", "RS256"]).claims)


def test_family_revocation_reaches_jwt_access_tokens(client, api, seller):
    rp = _rp(access_token_format="jwt")
    body = login(Flow(client, rp))
    assert revoke(client, rp, body["refresh_token"]).status_code == 200
    assert not active(introspect(client, api, body["access_token"]))


def test_tampered_jwt_is_inactive(client, api, seller):
    rp = _rp(access_token_format="jwt")
    header, payload, sig = login(Flow(client, rp))["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert not active(introspect(client, api, f"{header}.{forged}.{sig}"))


def test_no_signature_is_checked_before_the_introspecting_caller_authenticates(client, api, seller, monkeypatch):
    """An unauthenticated caller gets 401 without costing us a signature check (RFC 7662 §2.1:
    authenticate first); the same token from the resource server is verified and active."""
    from idp.oauth import jwt_access_token

    token = login(Flow(client, _rp(access_token_format="jwt")))["access_token"]
    ring, verified = jwt_access_token.keyring, []

    class Spy:
        def verify(self, *args, **kwargs):
            verified.append(1)
            return ring().verify(*args, **kwargs)

    monkeypatch.setattr(jwt_access_token, "keyring", Spy)
    resp = client.post("/introspect", data={"token": token}, auth=(api.client_id, "wrong"))
    assert resp.status_code == 401 and verified == []
    assert active(introspect(client, api, token)) and verified == [1]


def test_resource_configured_for_jwt_with_down_scoping(client, api, resources, seller):
    body = login(Flow(client, _rp()), scope="openid api:read", resource=API)
    assert body["scope"] == "api:read" and "id_token" in body  # the ID token still follows openid
    claims = _verify(client, body["access_token"])
    assert claims["aud"] == API and claims["scope"] == "api:read"
    assert active(introspect(client, api, body["access_token"]))


def test_resource_configured_opaque(client, api, resources, seller):
    body = login(Flow(client, _rp()), resource=ORDERS)
    assert not _is_jwt(body["access_token"]) and body["scope"] == "openid email"
    resp = introspect(client, api, body["access_token"])
    assert active(resp) and resp.get_json()["aud"] == ORDERS


@pytest.mark.parametrize("resource,scope", [(API, "openid email api:read"), (ORDERS, "openid email")],
                         ids=["jwt", "opaque, openid in its scope"])
def test_a_token_for_another_resource_server_is_refused_at_userinfo(client, resources, seller, resource, scope):
    """RFC 8707 / RFC 9068 §4: the token is the resource server's; at UserInfo it would let that
    server (or whoever took the token from it) read the seller's claims."""
    rp = _rp()
    body = login(Flow(client, rp), scope=scope, resource=resource)
    resp = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    # The same client's token for itself (no resource) is UserInfo's.
    own = login(Flow(client, rp), scope="openid email")
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {own['access_token']}"}).status_code == 200


AT_TOKEN_ENDPOINT = [
    ("subset of the authorized", [API, ORDERS], ORDERS, (200, ORDERS)),
    ("every authorized, none named", [API, ORDERS], None, (200, [API, ORDERS])),
    ("not authorized", [API], ORDERS, (400, "invalid_target")),
    ("nothing authorized", None, API, (400, "invalid_target")),
    ("malformed", [API], "not a uri", (400, "invalid_target")),
    ("with a fragment", [API], API + "#x", (400, "invalid_target")),
]


@pytest.mark.parametrize("case,authorized,requested,expected", AT_TOKEN_ENDPOINT, ids=[c[0] for c in AT_TOKEN_ENDPOINT])
def test_resource_at_code_redemption(client, api, resources, seller, case, authorized, requested, expected):
    f = Flow(client, _rp())
    code = f.login_code(scope="openid email", resource=authorized)
    resp = f.redeem(code, **({"resource": requested} if requested else {}))
    if expected[0] != 200:
        assert error_of(resp) == expected
        return
    at = resp.get_json()["access_token"]
    assert introspect(client, api, at).get_json()["aud"] == expected[1]


@pytest.mark.parametrize("copies", [2, 400])
def test_a_resource_named_again_at_authorize_is_one_audience(client, api, resources, seller, copies):
    """RFC 8707 §2: a value names a target service; naming it again adds nothing. Kept
    repeated, 400 copies made a JWT access token over the length the IdP itself accepts."""
    f = Flow(client, _rp())
    code = f.login_code(scope="openid api:read", resource=[API] * copies)
    at = f.redeem(code).get_json()["access_token"]
    info = introspect(client, api, at).get_json()
    assert info["active"] is True and info["aud"] == API


def test_authorize_names_at_most_ten_resources(client, resources, seller):
    f = Flow(client, _rp())
    resp = f.authorize(resource=[f"https://r{i}.example.com" for i in range(11)])
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert query["error"] == ["invalid_request"] and "resource" in query["error_description"][0]


REFRESH = [
    ("narrowed to one", ORDERS, (200, ORDERS)),
    ("all of the grant", None, (200, [API, ORDERS])),
    ("outside the grant", "https://other.example.com", (400, "invalid_target")),
]


@pytest.mark.parametrize("case,requested,expected", REFRESH, ids=[c[0] for c in REFRESH])
def test_resource_at_refresh_must_be_within_the_grant(client, api, resources, seller, case, requested, expected):
    rp = _rp()
    body = login(Flow(client, rp), resource=[API, ORDERS])
    resp = refresh(client, rp, body["refresh_token"], **({"resource": requested} if requested else {}))
    if expected[0] != 200:
        assert error_of(resp) == expected
        return
    assert introspect(client, api, resp.get_json()["access_token"]).get_json()["aud"] == expected[1]


CHANGED = [
    ("the resource removed", {ORDERS: {"access_token_format": "opaque"}}, "invalid_target"),
    ("none of its scopes left", {API: {"access_token_format": "jwt", "scopes": ["other"]}}, "invalid_scope"),
]


@pytest.mark.parametrize("case,changed,error", CHANGED, ids=[c[0] for c in CHANGED])
def test_a_refresh_refused_after_a_resource_change_spends_nothing(app, client, api, resources, seller, case,
                                                                  changed, error):
    """RESOURCES changed since the family was issued: the refresh is refused, and the token is
    not spent (on PostgreSQL the rotation commits in one statement before these checks), so
    the next try is no reuse and the family stays."""
    rp = _rp()
    body = login(Flow(client, rp), scope="openid api:read offline_access", resource=API)
    saved = app.config["RESOURCES"]
    app.config["RESOURCES"] = changed
    assert error_of(refresh(client, rp, body["refresh_token"])) == (400, error)
    app.config["RESOURCES"] = saved
    assert refresh(client, rp, body["refresh_token"]).status_code == 200
    assert active(introspect(client, api, body["access_token"]))


def test_client_credentials_for_a_jwt_resource(client, api, resources):
    resp = client.post("/token", data={"grant_type": "client_credentials", "resource": API}, auth=auth_of(api))
    body = resp.get_json()
    assert resp.status_code == 200 and body["scope"] == "api:read"  # api:write is not the resource's
    claims = _verify(client, body["access_token"])
    assert claims["sub"] == claims["client_id"] == "backend-api" and claims["aud"] == API
    assert "auth_time" not in claims
    assert active(introspect(client, api, body["access_token"]))
    assert revoke(client, api, body["access_token"]).status_code == 200
    assert not active(introspect(client, api, body["access_token"]))


def test_client_credentials_unknown_resource(client, api, resources):
    resp = client.post("/token", data={"grant_type": "client_credentials", "resource": "https://nope.example"},
                       auth=auth_of(api))
    assert error_of(resp) == (400, "invalid_target")


def test_code_whose_scope_the_resource_does_not_understand_is_invalid_scope(client, api, resources, seller):
    """RFC 8707 §2.2 down-scoping leaves nothing for the access token: a 400, never a 500."""
    f = Flow(client, _rp())
    code = f.login_code(scope="openid email", resource=API)  # API understands only api:read
    assert error_of(f.redeem(code)) == (400, "invalid_scope")
