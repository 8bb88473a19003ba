"""Bad input at /token, /introspect and /revoke: the RFC's JSON error, never a 500.

RFC 6749 §3.1-3.2 and §5.2 (repeated parameters, malformed requests), RFC 7662 §2.3,
RFC 7009 §2.2.1.
"""

import base64

import pytest
from werkzeug.datastructures import MultiDict

from tests.integration.token_helpers import active, auth_of, backend, error_of, login

BASIC_RP = ("rp-web", "s3cret-rp-web")


def _form(data):
    return MultiDict(data) if isinstance(data, list) else data


def _basic(raw: bytes):
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _token_cases(issued):
    rt, at = issued["refresh_token"], issued["access_token"]
    r = {"grant_type": "refresh_token"}
    return [
        ("missing grant_type", {"refresh_token": rt}, None, (400, "invalid_request")),
        ("empty grant_type", {"grant_type": "", "refresh_token": rt}, None, (400, "invalid_request")),
        ("unknown grant_type", {"grant_type": "password"}, None, (400, "unsupported_grant_type")),
        ("repeated grant_type", [("grant_type", "refresh_token"), ("grant_type", "refresh_token"),
                                 ("refresh_token", rt)], None, (400, "invalid_request")),
        ("repeated refresh_token", [("grant_type", "refresh_token"), ("refresh_token", rt), ("refresh_token", rt)],
         None, (400, "invalid_request")),
        ("repeated scope", [("grant_type", "refresh_token"), ("refresh_token", rt), ("scope", "openid"),
                            ("scope", "email")], None, (400, "invalid_request")),
        ("repeated client_id", [("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", "rp-web"),
                                ("client_id", "rp-web")], None, (400, "invalid_request")),
        ("missing refresh_token", r, None, (400, "invalid_request")),
        ("garbage refresh_token", {**r, "refresh_token": "\u00e9\u0000<>"}, None, (400, "invalid_grant")),
        ("oversized refresh_token", {**r, "refresh_token": "a" * 20000}, None, (400, "invalid_grant")),
        ("access token as refresh_token", {**r, "refresh_token": at}, None, (400, "invalid_grant")),
        ("ID token as refresh_token", {**r, "refresh_token": issued["id_token"]}, None, (400, "invalid_grant")),
        ("oversized scope", {**r, "refresh_token": rt, "scope": "s" * 5000}, None, (400, "invalid_request")),
        ("non-ASCII scope", {**r, "refresh_token": rt, "scope": "openid \u00e9"}, None, (400, "invalid_scope")),
        ("malformed resource", {**r, "refresh_token": rt, "resource": "::"}, None, (400, "invalid_target")),
        ("too many resources", [*r.items(), ("refresh_token", rt), *[("resource", f"https://r{i}.example")
                                                                     for i in range(11)]], None,
         (400, "invalid_request")),
        ("non-UTF-8 Basic", {**r, "refresh_token": rt}, _basic(b"\xff\xfe:\xfd"), (401, "invalid_client")),
        ("NUL in client_id", {**r, "refresh_token": rt}, _basic(b"rp-web\x00:s3cret-rp-web"), (401, "invalid_client")),
        ("Basic without colon", {**r, "refresh_token": rt}, _basic(b"rp-web"), (401, "invalid_client")),
        ("Basic not base64", {**r, "refresh_token": rt}, {"Authorization": "Basic !!!"}, (401, "invalid_client")),
        ("bearer instead of client auth", {**r, "refresh_token": rt}, {"Authorization": f"Bearer {at}"},
         (401, "invalid_client")),
        ("garbage client_assertion", {**r, "refresh_token": rt, "client_assertion": "a.b.c",
                                      "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
         {}, (401, "invalid_client")),
    ]


CASE_IDS = [c[0] for c in _token_cases({"refresh_token": "", "access_token": "", "id_token": ""})]


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_token_endpoint(client, flow, index):
    issued = login(flow)
    case, data, headers, expected = _token_cases(issued)[index]
    kwargs = {"headers": headers} if headers is not None else {"auth": BASIC_RP}
    resp = client.post("/token", data=_form(data), **kwargs)
    status, error = error_of(resp)
    # RFC 6749 §5.2: invalid_client is a 401 whenever the client tried the Authorization header
    # (400 would do otherwise); every case here expects exactly what the endpoint answers.
    assert (status, error) == expected, case
    # nothing above counted as reuse: the refresh token still works
    ok = client.post("/token", data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]},
                     auth=BASIC_RP)
    assert ok.status_code == 200, (case, ok.get_json())


def test_json_body_is_not_a_form(client, rp):
    resp = client.post("/token", json={"grant_type": "client_credentials"}, auth=BASIC_RP)
    assert error_of(resp) == (400, "invalid_request")


@pytest.mark.parametrize("endpoint", ["/introspect", "/revoke"])
def test_endpoint_bad_parameters(client, app, flow, endpoint):
    api = backend()
    issued = login(flow)
    at = issued["access_token"]
    cases = [
        ("missing token", {}, (400, "invalid_request")),
        ("empty token", {"token": ""}, (400, "invalid_request")),
        ("repeated token", [("token", at), ("token", at)], (400, "invalid_request")),
        ("repeated hint", [("token", at), ("token_type_hint", "access_token"), ("token_type_hint", "x")],
         (400, "invalid_request")),
        ("oversized hint", {"token": at, "token_type_hint": "h" * 5000}, (400, "invalid_request")),
    ]
    for case, data, expected in cases:
        assert error_of(client.post(endpoint, data=_form(data), auth=auth_of(api))) == expected, case
    resp = client.post(endpoint, json={"token": at}, auth=auth_of(api))
    assert error_of(resp) == (400, "invalid_request")
    # the token survived every bad request
    assert active(client.post("/introspect", data={"token": at}, auth=auth_of(api)))


@pytest.mark.parametrize("endpoint", ["/introspect", "/revoke"])
def test_endpoint_garbage_tokens(client, app, endpoint):
    api = backend()
    for token in ("\u00e9\u0000", "a" * 60000, "....", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "%ff%fe"):
        resp = client.post(endpoint, data={"token": token}, auth=auth_of(api))
        assert resp.status_code == 200 and resp.is_json, token[:20]
        if endpoint == "/introspect":
            assert resp.get_json() == {"active": False}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# JSON nested past Python's recursion limit: json.loads raises RecursionError, not ValueError.
NESTED_JWT = _b64(b"[" * 5000) + ".e30.c2ln"
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_a_deeply_nested_jwt_is_just_an_unknown_token(client):
    api = backend()
    assert error_of(client.post("/introspect", data={"token": NESTED_JWT})) == (401, "invalid_client")
    assert client.post("/introspect", data={"token": NESTED_JWT}, auth=auth_of(api)).get_json() == {"active": False}
    assert client.post("/revoke", data={"token": NESTED_JWT}, auth=auth_of(api)).status_code == 200
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {NESTED_JWT}"}).status_code == 401


@pytest.mark.parametrize("assertion", [
    _b64(b'{"alg":"ES256"}') + "." + _b64(b"[" * 2500) + ".c2ln",  # nested claims
    _b64(b"[" * 2500) + "." + _b64(b"{}") + ".c2ln",  # nested header
], ids=["claims", "header"])
@pytest.mark.parametrize("path,extra", [("/token", {"grant_type": "client_credentials"}),
                                        ("/introspect", {"token": "x"}), ("/revoke", {"token": "x"})])
def test_a_deeply_nested_client_assertion_is_invalid_client(client, path, extra, assertion):
    resp = client.post(path, data={"client_assertion_type": ASSERTION, "client_assertion": assertion, **extra})
    status, error = error_of(resp)
    assert error == "invalid_client" and status in (400, 401)  # 401 is a MUST only for the header (§5.2)


@pytest.mark.parametrize("path", ["/logout", "/authorize"])
def test_a_deeply_nested_id_token_hint_is_no_500(flow, path):
    params = flow.authorize_params() if path == "/authorize" else {}
    resp = flow.client.get(path, query_string={**params, "id_token_hint": NESTED_JWT})
    assert resp.status_code in (200, 302, 400), resp.status_code
    assert "Traceback" not in resp.get_data(as_text=True)
