"""ID token contents (OIDC Core §2, §3.1.3.6) and userinfo (§5.3)."""

import time

import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from idp.oauth.id_token import half_hash
from tests.conftest import ISSUER, Flow, register_client


def _verify(client, token):
    keys = KeySet.import_key_set(client.get("/jwks").get_json())
    header = jws.extract_compact(token.encode()).headers()
    obj = jws.deserialize_compact(token, keys, algorithms=[header["alg"]])
    import json

    return header, json.loads(obj.payload)


def test_id_token_claims(flow, seller):
    """RS256 for a client that registered no algorithm (OIDC Core §3.1.3.7 step 7: the
    default; OIDC Registration §2)."""
    tokens = flow.redeem(flow.login_code(nonce="n-123")).get_json()
    header, claims = _verify(flow.client, tokens["id_token"])
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["iss"] == ISSUER and claims["aud"] == "rp-web" and claims["azp"] == "rp-web"
    assert claims["sub"] == seller.sub and claims["sub"] != seller.email
    assert claims["nonce"] == "n-123"
    assert claims["amr"] == ["pwd"] and claims["acr"]
    assert abs(claims["auth_time"] - time.time()) < 30 and claims["exp"] > claims["iat"]
    assert claims["sid"]
    assert claims["at_hash"] == half_hash(tokens["access_token"], "RS256")
    assert claims["email"] == "seller@example.com" and claims["email_verified"] is True


def test_no_email_without_scope(flow):
    tokens = flow.redeem(flow.login_code(scope="openid")).get_json()
    _, claims = _verify(flow.client, tokens["id_token"])
    assert "email" not in claims and "email_verified" not in claims


def test_rs256_per_client(client, seller):
    rp = register_client("rp-rsa", id_token_signed_response_alg="RS256")
    f = Flow(client, rp)
    header, _ = _verify(client, f.redeem(f.login_code()).get_json()["id_token"])
    assert header["alg"] == "RS256"


def test_no_id_token_without_openid(flow):
    tokens = flow.redeem(flow.login_code(scope="email")).get_json()
    assert "id_token" not in tokens and tokens["access_token"]


def test_sid_matches_across_clients_in_one_session(client, seller, rp):
    other = register_client("rp-two", redirect_uris=["https://two.example.com/cb"])
    a, b = Flow(client, rp), Flow(client, other)
    _, ca = _verify(client, a.redeem(a.login_code()).get_json()["id_token"])
    _, cb = _verify(client, b.redeem(b.login_code()).get_json()["id_token"])
    assert ca["sid"] == cb["sid"] and ca["auth_time"] == cb["auth_time"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_userinfo(flow, seller, method):
    token = flow.redeem(flow.login_code(scope="openid email profile")).get_json()["access_token"]
    resp = flow.client.open("/userinfo", method=method, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    assert resp.get_json() == {"sub": seller.sub, "email": "seller@example.com", "email_verified": True,
                               "name": "Sam Seller"}


# RFC 6750 §3.1: no credentials at all -> a bare challenge; a bad token -> invalid_token.
BAD_BEARERS = [
    ("none", {}, None),
    ("basic scheme", {"Authorization": "Basic Zm9vOmJhcg=="}, None),
    ("empty", {"Authorization": "Bearer "}, None),
    ("garbage", {"Authorization": "Bearer not-a-token"}, "invalid_token"),
    ("oversized", {"Authorization": "Bearer " + "a" * 4000}, "invalid_token"),
]


@pytest.mark.parametrize("case,headers,error", BAD_BEARERS, ids=[c for c, _, _ in BAD_BEARERS])
def test_userinfo_rejects_bad_tokens(client, case, headers, error):
    resp = client.get("/userinfo", headers=headers)
    assert resp.status_code == 401
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) == (error == "invalid_token")
    assert resp.get_json().get("error") == error  # no credentials: no error code in the body either


def test_userinfo_takes_the_token_from_a_form_body_but_only_once(flow, seller):
    """RFC 6750 §2.2 (the body of a form-encoded POST); §2: never two ways in one request."""
    token = flow.redeem(flow.login_code()).get_json()["access_token"]
    resp = flow.client.post("/userinfo", data={"access_token": token})
    assert resp.status_code == 200 and resp.get_json()["sub"] == seller.sub
    both = flow.client.post("/userinfo", data={"access_token": token}, headers={"Authorization": f"Bearer {token}"})
    assert both.status_code == 400 and both.get_json()["error"] == "invalid_request"
    twice = flow.client.post("/userinfo", data={"access_token": [token, token]})
    assert twice.status_code == 400
    assert flow.client.post("/userinfo", data={"access_token": "nope"}).status_code == 401
    as_json = flow.client.post("/userinfo", json={"access_token": token})  # not a form body
    assert as_json.status_code == 401


def test_userinfo_token_in_query_is_not_accepted(flow):
    token = flow.redeem(flow.login_code()).get_json()["access_token"]
    resp = flow.client.get("/userinfo", query_string={"access_token": token})
    # RFC 6750 §3.1: an unsupported way to send the token is invalid_request; the client is told why
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    assert "never in the query" in resp.get_json()["error_description"]
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="userinfo", error="invalid_request"'
    # beside a token in the header too: one place only (§2)
    both = flow.client.get("/userinfo", query_string={"access_token": token},
                           headers={"Authorization": "Bearer " + token})
    assert both.status_code == 400


def test_userinfo_expired_token(flow, app):
    from freezegun import freeze_time

    with freeze_time() as clock:
        token = flow.redeem(flow.login_code()).get_json()["access_token"]
        clock.tick(app.config["ACCESS_TOKEN_TTL"] + 1)
        resp = flow.client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
