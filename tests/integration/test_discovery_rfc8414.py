"""Provider metadata (OpenID Connect Discovery 1.0, RFC 8414) and the JWKS (RFC 7517) over HTTP."""

import pytest

import idp
from idp.crypto.keys import PRIVATE_MEMBERS

ISSUER = "https://id.example.test"
WELL_KNOWN = "/.well-known/openid-configuration"


def make_app(tmp_path, **overrides):
    return idp.create_app({
        "DATABASE_URL": f"sqlite:///{tmp_path}/idp.sqlite3",
        "KEYS_DIR": str(tmp_path / "keys"),
        "REDIS_URL": "memory://",
        "ISSUER": ISSUER,
        "TESTING": True,
        **overrides,
    })


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def keyring(app):
    return app.extensions["idp.keyring"]


def urls(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if isinstance(v, str) and v.startswith(("http:", "https:"))}


@pytest.mark.parametrize("host", ["id.example.test", "evil.example", "127.0.0.1:5000"])
def test_every_url_is_built_from_the_issuer_not_the_host_header(client, host):
    doc = client.get(WELL_KNOWN, headers={"Host": host}).get_json()
    assert doc["issuer"] == ISSUER
    endpoints = {k: v for k, v in urls(doc).items() if k != "issuer"}
    assert len(endpoints) == 7
    assert all(url.startswith(ISSUER + "/") for url in endpoints.values()), endpoints
    assert doc["jwks_uri"] == f"{ISSUER}/jwks"
    assert doc["end_session_endpoint"] == f"{ISSUER}/logout"
    assert "registration_endpoint" not in doc


def test_metadata_says_what_the_server_enforces(client):
    doc = client.get(WELL_KNOWN).get_json()
    assert doc["response_types_supported"] == ["code"]
    assert doc["response_modes_supported"] == ["query"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
    assert doc["request_parameter_supported"] is False
    assert doc["claims_parameter_supported"] is False
    assert doc["backchannel_logout_supported"] is True
    assert doc["frontchannel_logout_supported"] is False
    assert "none" not in doc["introspection_endpoint_auth_methods_supported"]
    # RFC 8414 §2: with private_key_jwt among an endpoint's methods, its signing algs MUST be listed
    for endpoint in ("token", "introspection", "revocation"):
        assert "private_key_jwt" in doc[f"{endpoint}_endpoint_auth_methods_supported"]
        assert doc[f"{endpoint}_endpoint_auth_signing_alg_values_supported"] == ["ES256", "RS256", "PS256"]
    assert doc["acr_values_supported"] == ["urn:idp:acr:pwd"]
    assert "openid" in doc["scopes_supported"]


def test_rfc8414_well_known_serves_the_same_document(client):
    assert client.get("/.well-known/oauth-authorization-server").data == client.get(WELL_KNOWN).data


def test_extra_scopes_and_acr_values_come_from_config(tmp_path):
    app = make_app(tmp_path, EXTRA_SCOPES=["orders"], ACR_VALUES=["urn:idp:acr:pwd"])
    doc = app.test_client().get(WELL_KNOWN).get_json()
    assert doc["scopes_supported"] == ["openid", "email", "profile", "offline_access", "orders"]
    assert doc["acr_values_supported"] == ["urn:idp:acr:pwd"]  # never [] (config refuses it): tokens carry one


def test_resource_servers_scopes_are_listed_as_supported(tmp_path):
    """An authorization request may name them (RFC 8707's resources): scopes_supported says so."""
    app = make_app(tmp_path, EXTRA_SCOPES=["orders"], RESOURCES={
        "https://api.example.com": {"scopes": ["orders:read", "api:write"]},
        "https://ledger.example.com": {"scopes": ["orders", "ledger:read"]}})
    doc = app.test_client().get(WELL_KNOWN).get_json()
    assert doc["scopes_supported"] == ["openid", "email", "profile", "offline_access", "orders",
                                       "api:write", "ledger:read", "orders:read"]


def test_acr_values_no_sign_in_gives_are_refused(tmp_path):
    """Discovery §3: acr_values_supported are the values this OP supports. A relying party
    reading urn:idp:acr:mfa there would ask for an assurance no ID token of ours carries."""
    from idp.config import ConfigError

    with pytest.raises(ConfigError, match="ACR_VALUES may name only acr values this release issues"):
        make_app(tmp_path, ACR_VALUES=["urn:idp:acr:pwd", "urn:idp:acr:mfa"])


@pytest.mark.parametrize("path, max_age", [(WELL_KNOWN, 3600), ("/jwks", 300)])
def test_cacheable_json_with_etag_and_304(client, path, max_age):
    first = client.get(path)
    assert first.status_code == 200
    assert first.mimetype == "application/json"
    assert first.headers["Cache-Control"] == f"public, max-age={max_age}"
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert client.get(path).headers["ETag"] == etag  # stable body, stable tag

    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    assert "Content-Length" not in again.headers  # RFC 9110 §8.6: it would describe a body not sent
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


def test_jwks_publishes_active_and_next_keys_without_private_members(client, keyring):
    before = client.get("/jwks")
    nxt = keyring.rotate("ES256")["kid"]
    after = client.get("/jwks", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200  # rotation changed the body, so the old tag no longer matches
    keys = after.get_json()["keys"]
    kids = {k["kid"] for k in keys}
    assert {keyring.active("ES256").kid, keyring.active("RS256").kid, nxt} == kids
    for jwk in keys:
        assert not PRIVATE_MEMBERS & set(jwk)
        assert jwk["use"] == "sig"


def test_jwks_verifies_a_signed_token(client, keyring):
    from joserfc import jwt
    from joserfc.jwk import KeySet

    token = keyring.sign({"iss": ISSUER, "sub": "u1"}, "ES256")
    jwks = KeySet.import_key_set(client.get("/jwks").get_json())
    assert jwt.decode(token, jwks, algorithms=["ES256"]).claims["sub"] == "u1"


def test_head_and_other_methods(client):
    head = client.head(WELL_KNOWN)
    assert head.status_code == 200 and head.data == b""
    assert int(head.headers["Content-Length"]) == len(client.get(WELL_KNOWN).data)
    post = client.post("/jwks")
    assert post.status_code == 405 and post.is_json and post.headers["Allow"] == "GET, HEAD"


def test_documents_are_timed_in_the_request_metric(client):
    client.get("/jwks")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'idp_http_request_duration_seconds_count{endpoint="discovery.jwks",method="GET",status="2xx"}' in text


def test_jwks_follows_a_rotation(app, client, keyring):
    before = client.get("/jwks")
    new = keyring.rotate("ES256")
    from datetime import datetime, timedelta, timezone

    from freezegun import freeze_time

    # the key ring re-reads its directory at most once a second
    with freeze_time(datetime.now(timezone.utc) + timedelta(seconds=2)):
        after = client.get("/jwks")
    assert new["kid"] in {k["kid"] for k in after.get_json()["keys"]}
    assert after.headers["ETag"] != before.headers["ETag"]
