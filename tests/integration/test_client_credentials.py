"""Client credentials grant (RFC 6749 §4.4)."""

import pytest
from sqlalchemy import func, select

from idp.extensions import db
from idp.models import Grant
from tests.conftest import register_client
from tests.integration.token_helpers import active, auth_of, backend, count_io, error_of, introspect


def _cc(http, client, auth="basic", **data):
    data = {"grant_type": "client_credentials", **data}
    if auth == "basic":
        return http.post("/token", data=data, auth=auth_of(client))
    return http.post("/token", data={**data, "client_id": client.client_id, "client_secret": client.secret})


SCOPES = [
    ("none requested: every registered non-OIDC scope", None, (200, "api:read api:write")),
    ("one", "api:read", (200, "api:read")),
    ("both", "api:write api:read", (200, "api:write api:read")),
    ("unregistered", "api:admin", (400, "invalid_scope")),
    ("partly unregistered", "api:read api:admin", (400, "invalid_scope")),
    ("OIDC scope (no user)", "openid", (400, "invalid_scope")),
]


@pytest.mark.parametrize("case,scope,expected", SCOPES, ids=[c for c, _, _ in SCOPES])
def test_scope_is_limited_to_the_registration(client, api, case, scope, expected):
    resp = _cc(client, api, **({"scope": scope} if scope else {}))
    if expected[0] != 200:
        assert error_of(resp) == expected
        return
    body = resp.get_json()
    assert (resp.status_code, body["scope"]) == expected
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert "refresh_token" not in body and "id_token" not in body
    assert resp.headers["Cache-Control"] == "no-store"


def test_registered_oidc_scopes_are_not_given_by_default(client):
    mixed = backend("backend-mixed", scopes=["openid", "api:read"])
    assert _cc(client, mixed).get_json()["scope"] == "api:read"
    only_oidc = backend("backend-oidc", scopes=["openid", "email"])
    assert error_of(_cc(client, only_oidc)) == (400, "invalid_scope")


def test_a_query_on_the_token_endpoint_is_not_read(client, api):
    """RFC 6749 §3.2: the parameters are the body's. A scope in the URL is not taken."""
    resp = client.post("/token?scope=api:write", data={"grant_type": "client_credentials", "scope": "api:read"},
                       auth=auth_of(api))
    assert resp.get_json()["scope"] == "api:read"
    resp = client.post("/token?grant_type=client_credentials", auth=auth_of(api))
    assert error_of(resp) == (400, "invalid_request")  # no grant_type in the body


def test_client_secret_post(client):
    poster = backend("backend-post", token_endpoint_auth_method="client_secret_post")
    assert _cc(client, poster, auth="post").status_code == 200
    assert error_of(_cc(client, poster))[1] == "invalid_client"  # only its registered method


def test_token_is_introspectable_and_has_no_user(client, api):
    token = _cc(client, api, scope="api:read").get_json()["access_token"]
    resp = introspect(client, api, token)
    assert active(resp)
    body = resp.get_json()
    assert body["client_id"] == "backend-api" and body["scope"] == "api:read" and body["aud"] == "backend-api"
    assert "sub" not in body and "auth_time" not in body


REFUSED = [
    ("grant type not registered", lambda: register_client("rp-web"), (400, "unauthorized_client")),
    ("public client", lambda: register_client("rp-pub", token_endpoint_auth_method="none",
                                              grant_types=["client_credentials"]), (401, "invalid_client")),
]


@pytest.mark.parametrize("case,make,expected", REFUSED, ids=[c for c, _, _ in REFUSED])
def test_refused_clients(client, app, case, make, expected):
    c = make()
    if c.token_endpoint_auth_method == "none":
        resp = client.post("/token", data={"grant_type": "client_credentials", "client_id": c.client_id})
    else:
        resp = _cc(client, c)
    assert error_of(resp) == expected


def test_wrong_secret(client, api):
    resp = client.post("/token", data={"grant_type": "client_credentials"}, auth=("backend-api", "wrong"))
    assert error_of(resp) == (401, "invalid_client")
    assert resp.headers["WWW-Authenticate"].startswith("Basic")


def test_hot_path_writes_nothing_to_the_database_and_one_key_to_the_store(client, app, api):
    _cc(client, api)  # warm up: connections, key ring
    with count_io(app) as seen:
        resp = _cc(client, api, scope="api:read")
    assert resp.status_code == 200
    assert [s for s in seen["sql"] if s in ("INSERT", "UPDATE", "DELETE")] == []
    # The client: with a shared store, this process's copy, checked by the token's own write
    # (one round trip in all); else one SELECT. Either way one write, which also puts the
    # token in its client's minute family (so removing the client can delete it).
    shared = app.extensions["idp.store"].shared
    assert seen["sql"] == ([] if shared else ["SELECT"])
    calls = seen["store"]  # the embedded store's put_indexed calls its own put, sadd and get
    assert calls == ["put_indexed"] if shared else calls[0] == "put_indexed" and "delete" not in calls
    assert db.session.scalar(select(func.count()).select_from(Grant)) == 0


# A process's copy of the registration never outlives a change to it (idp.oauth.clients).
def _change(client_id, **fields):
    from idp.models import Client

    row = db.session.execute(select(Client).filter_by(client_id=client_id)).scalar_one()
    for name, value in fields.items():
        setattr(row, name, value)
    db.session.commit()


def test_rotated_secret_takes_effect_at_once(client, api):
    from idp.crypto.secrets import keyed_hash

    assert _cc(client, api).status_code == 200  # this process now holds a copy
    _change(api.client_id, secret_hash=keyed_hash("rotated-secret"))
    assert error_of(_cc(client, api)) == (401, "invalid_client")
    resp = client.post("/token", data={"grant_type": "client_credentials"}, auth=(api.client_id, "rotated-secret"))
    assert resp.status_code == 200


def test_withdrawn_grant_type_and_scope_take_effect_at_once(client, api):
    assert _cc(client, api, scope="api:write").status_code == 200
    _change(api.client_id, scopes=["api:read"])
    assert error_of(_cc(client, api, scope="api:write")) == (400, "invalid_scope")
    _change(api.client_id, grant_types=["authorization_code"])
    assert error_of(_cc(client, api)) == (400, "unauthorized_client")


def test_deleted_client_is_refused_at_once(client, api):
    from idp.models import Client

    assert _cc(client, api).status_code == 200
    db.session.delete(db.session.execute(select(Client).filter_by(client_id=api.client_id)).scalar_one())
    db.session.commit()
    assert error_of(_cc(client, api)) == (401, "invalid_client")


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)  # the embedded store is one process: no copies
def test_stale_copy_is_caught_by_the_token_write(client, app, api):
    """A change whose cache drop this process has not seen yet: the registration in the shared
    cache differs from the copy, so the token written on the copy's strength is deleted and the
    request judged again from the shared cache."""
    from idp.oauth import clients
    from idp.extensions import store

    assert _cc(client, api).status_code == 200 and store().shared
    key = clients.cache_key(api.client_id)
    current = store().get(key)
    store().put(key, {**current, "scopes": ["api:read"]}, 60)  # as another process re-cached it
    with count_io(app) as seen:
        resp = _cc(client, api)
    assert resp.status_code == 200 and resp.get_json()["scope"] == "api:read"
    assert seen["store"][:2] == ["put_indexed", "delete"]


def test_removing_the_client_deletes_its_client_credentials_tokens(app, client, api):
    """`idp clients remove` promises to revoke every token the client holds: the access
    tokens it got by client credentials (no token family in the database) included."""
    from idp.cli import cli
    from idp.oauth import tokens

    issued = [_cc(client, api).get_json()["access_token"] for _ in range(3)]
    mark = tokens.credentials_mark(api)
    resource_server = backend("rs")
    assert all(active(introspect(client, resource_server, t)) for t in issued)
    result = app.test_cli_runner().invoke(cli, ["clients", "remove", api.client_id, "--yes"])
    assert result.exit_code == 0, result.output
    assert "3 client-credentials token(s) deleted" in result.output
    assert not any(active(introspect(client, resource_server, t)) for t in issued)
    assert tokens.revoke_client_credentials(api.id, mark) == 0  # nothing left
    again = backend(api.client_id)  # registered anew under the same id: starts clean
    assert _cc(client, again).status_code == 200


def test_replacing_a_leaked_secret_revokes_the_tokens_got_with_it(app, client, api):
    """`idp clients rotate-secret` is for a leaked secret: whoever has it may have got
    client-credentials tokens with it, and those go; the new secret's tokens are not held back
    by their revocation (they form families of their own)."""
    import re
    from types import SimpleNamespace

    from idp.cli import cli

    leaked = [_cc(client, api).get_json()["access_token"] for _ in range(2)]
    resource_server = backend("rs")
    assert all(active(introspect(client, resource_server, t)) for t in leaked)
    result = app.test_cli_runner().invoke(cli, ["clients", "rotate-secret", api.client_id])
    assert result.exit_code == 0, result.output
    assert "2 client-credentials token(s) got with the old secret deleted" in result.output
    assert not any(active(introspect(client, resource_server, t)) for t in leaked)
    assert error_of(_cc(client, api)) == (401, "invalid_client")  # the old secret
    renewed = SimpleNamespace(client_id=api.client_id, secret=re.search(r"client_secret for \S+: (\S+)",
                                                                        result.output).group(1))
    fresh = _cc(client, renewed)
    assert fresh.status_code == 200, fresh.get_json()
    assert active(introspect(client, resource_server, fresh.get_json()["access_token"]))
