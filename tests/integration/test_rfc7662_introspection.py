"""Token introspection (RFC 7662)."""

import base64
import time
import uuid

import pytest
from freezegun import freeze_time
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import select

from idp.extensions import db
from idp.models import Grant
from idp.oauth import tokens
from tests.conftest import ISSUER, Flow, register_client
from tests.integration.token_helpers import (active, auth_of, backend, count_io, error_of, introspect, login, refresh,
                                             revoke)


def test_active_access_token(client, api, issued, seller):
    resp = introspect(client, api, issued["access_token"])
    assert active(resp)
    body = resp.get_json()
    assert set(body) == {"active", "iss", "sub", "client_id", "scope", "exp", "iat", "aud", "token_type", "acr",
                         "amr", "auth_time"}
    assert body["iss"] == ISSUER and body["sub"] == seller.sub and body["client_id"] == "rp-web"
    assert body["scope"] == "openid email" and body["token_type"] == "Bearer" and body["aud"] == "rp-web"
    assert body["exp"] - body["iat"] == 600 and body["amr"] == ["pwd"]
    assert abs(body["auth_time"] - time.time()) < 60


def test_refresh_token_only_for_its_own_client(client, api, flow, issued, seller):
    own = introspect(client, flow.rp, issued["refresh_token"])
    assert active(own)
    body = own.get_json()
    assert body["token_type"] == "refresh_token" and body["client_id"] == "rp-web" and body["sub"] == seller.sub
    assert body["exp"] > time.time() + 13 * 86400
    assert not active(introspect(client, api, issued["refresh_token"]))


HINTS = [("access_token", "access_token"), ("access_token", "refresh_token"), ("access_token", "something_else"),
         ("refresh_token", "refresh_token"), ("refresh_token", "access_token"), ("refresh_token", None)]


@pytest.mark.parametrize("kind,hint", HINTS, ids=[f"{k}-hint-{h}" for k, h in HINTS])
def test_hint_is_only_a_hint(client, flow, issued, kind, hint):
    extra = {"token_type_hint": hint} if hint else {}
    resp = introspect(client, flow.rp, issued[kind], **extra)
    assert active(resp)
    assert resp.get_json()["token_type"] == ("Bearer" if kind == "access_token" else "refresh_token")


def _other_key_jwt(_issued):
    key = ECKey.generate_key("P-256", auto_kid=True)
    return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"},
                      {"iss": ISSUER, "jti": str(uuid.uuid4()), "exp": int(time.time()) + 60}, key)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


# A JWT claiming a jti that is valid JSON but no UTF-8 (a lone surrogate): its record is
# fetched ahead, before the caller authenticates, and Redis cannot be sent such a key.
SURROGATE_JTI = _b64('{"alg":"ES256","typ":"at+jwt"}') + "." + _b64('{"jti":"\\ud800"}') + ".c2ln"


INACTIVE = [
    ("a jti no store key can hold", lambda i: SURROGATE_JTI),
    ("unknown", lambda i: "x" * 43),
    ("garbage", lambda i: "\u00e9\u0000!@#"),
    ("oversized", lambda i: "a" * 20000),
    ("jwt-looking garbage", lambda i: "a.b.c"),
    ("JWT signed by another key", _other_key_jwt),
    ("an ID token", lambda i: i["id_token"]),
    ("code-looking", lambda i: i["access_token"][:-1]),
]


@pytest.mark.parametrize("case,make", INACTIVE, ids=[c for c, _ in INACTIVE])
def test_not_tokens_are_inactive(client, api, issued, case, make):
    assert not active(introspect(client, api, make(issued)))


def test_expired_access_token(client, api, flow):
    with freeze_time() as clock:
        at = login(flow)["access_token"]
        clock.tick(601)
        assert not active(introspect(client, api, at))


def test_revoked_tokens(client, api, flow, issued):
    assert revoke(client, flow.rp, issued["access_token"]).status_code == 200
    assert not active(introspect(client, api, issued["access_token"]))
    assert active(introspect(client, flow.rp, issued["refresh_token"]))


def test_family_revoked(client, api, flow, issued):
    tokens.revoke_grant(db.session.scalars(select(Grant.id)).one(), "admin")
    assert not active(introspect(client, api, issued["access_token"]))
    assert not active(introspect(client, flow.rp, issued["refresh_token"]))


def test_rotated_refresh_token(client, flow, issued):
    successor = refresh(client, flow.rp, issued["refresh_token"]).get_json()["refresh_token"]
    assert not active(introspect(client, flow.rp, issued["refresh_token"]))
    assert active(introspect(client, flow.rp, successor))


def _basic(value: bytes):
    return {"Authorization": "Basic " + base64.b64encode(value).decode()}


UNAUTHENTICATED = [
    ("no credentials", {}, {}, False),
    ("wrong secret", {}, _basic(b"backend-api:nope"), True),
    ("unknown client", {}, _basic(b"nobody:nope"), True),
    ("non-UTF-8 Basic", {}, _basic(b"\xff\xfe:\xff"), True),
    ("Basic without a colon", {}, _basic(b"backend-api"), True),
    ("public client by client_id", {"client_id": "rp-native"}, {}, False),
    ("secret in the body of a basic client", {"client_id": "backend-api", "client_secret": "s3cret-backend-api"},
     {}, False),
]


@pytest.mark.parametrize("case,data,headers,basic", UNAUTHENTICATED, ids=[c for c, _, _, _ in UNAUTHENTICATED])
def test_caller_must_authenticate(client, api, native_rp, issued, case, data, headers, basic):
    resp = client.post("/introspect", data={"token": issued["access_token"], **data}, headers=headers)
    assert error_of(resp) == (401, "invalid_client")
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Basic") and ("error=" in challenge) == basic


def test_a_caller_without_credentials_is_refused_whatever_the_token_claims(client):
    assert error_of(client.post("/introspect", data={"token": SURROGATE_JTI})) == (401, "invalid_client")


def test_client_secret_post_and_private_key_jwt_callers(client, issued):
    poster = backend("rs-post", token_endpoint_auth_method="client_secret_post")
    resp = client.post("/introspect", data={"token": issued["access_token"], "client_id": "rs-post",
                                            "client_secret": poster.secret})
    assert active(resp)
    key = ECKey.generate_key("P-256", auto_kid=True)
    register_client("rs-jwt", token_endpoint_auth_method="private_key_jwt", jwks={"keys": [key.as_dict()]},
                    redirect_uris=[])
    now = int(time.time())
    assertion = jwt.encode({"alg": "ES256", "kid": key.kid}, {
        "iss": "rs-jwt", "sub": "rs-jwt", "aud": ISSUER + "/introspect", "iat": now, "exp": now + 60,
        "jti": str(uuid.uuid4())}, key)
    resp = client.post("/introspect", data={
        "token": issued["access_token"], "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    assert active(resp)


def test_opaque_access_token_costs_one_store_round_trip(client, app, api, issued):
    introspect(client, api, issued["access_token"])  # warm up
    with count_io(app) as seen:
        resp = introspect(client, api, issued["access_token"])
    assert active(resp)
    # One MGET for the token and, with a shared store, the caller's cached registration;
    # the embedded store caches no clients, so there the database is asked for it.
    assert seen["store"] == ["get_many"]
    assert seen["sql"] == ([] if app.extensions["idp.store"].shared else ["SELECT"])


def test_nothing_is_cached_in_the_process(client, app, api, flow, issued):
    assert active(introspect(client, api, issued["access_token"]))
    revoke(client, flow.rp, issued["access_token"])
    assert not active(introspect(client, api, issued["access_token"]))


def test_get_is_not_allowed(client, api):
    resp = client.get("/introspect", query_string={"token": "x"}, auth=auth_of(api))
    assert resp.status_code == 405 and resp.is_json


@pytest.mark.parametrize("fmt", ["opaque", "jwt"])
def test_a_token_for_a_resource_that_names_its_introspectors_is_active_to_them_alone(app, client, seller, fmt):
    """RFC 7662 §4: a token usable only at certain resource servers is judged for the one
    asking. The orders API introspects its tokens; another backend, or a resource server of
    another resource, learns nothing of them; the token's own client still may."""
    orders, other = backend("orders-api"), backend("some-other-backend")
    app.config["RESOURCES"] = {"https://orders.example.com": {"access_token_format": fmt,
                                                              "introspectors": ["orders-api"]},
                               "https://open.example.com": {}}
    rp = register_client("rp-res", scopes=["openid", "email", "offline_access"])
    for_orders = login(Flow(client, rp), resource="https://orders.example.com")["access_token"]
    assert active(introspect(client, orders, for_orders))
    assert not active(introspect(client, other, for_orders))
    assert active(introspect(client, rp, for_orders))
    # a resource that names none, and a token for the client itself: any resource server, as before
    for_open = login(Flow(client, rp), resource="https://open.example.com")["access_token"]
    plain = login(Flow(client, rp))["access_token"]
    assert active(introspect(client, other, for_open)) and active(introspect(client, other, plain))
