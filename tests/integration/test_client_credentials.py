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
    # (one round trip in all); else one SELECT. Either way one write, of the token alone: it
    # joins no index (its client's minute family is judged by its revocation mark).
    shared = app.extensions["idp.store"].shared
    assert seen["sql"] == ([] if shared else ["SELECT"])
    calls = seen["store"]  # the embedded store's put_checked calls its own put and get
    assert calls == ["put_checked"] if shared else calls[0] == "put_checked" and "delete" not in calls
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
    assert seen["store"][:2] == ["put_checked", "delete"]


def test_removing_the_client_deletes_its_client_credentials_tokens(app, client, api):
    """`idp clients remove` promises to revoke every token the client holds: the access
    tokens it got by client credentials (no token family in the database) included."""
    from idp.cli import cli
    from idp.oauth import tokens

    issued = [_cc(client, api).get_json()["access_token"] for _ in range(3)]
    resource_server = backend("rs")
    assert all(active(introspect(client, resource_server, t)) for t in issued)
    result = app.test_cli_runner().invoke(cli, ["clients", "remove", api.client_id, "--yes"])
    assert result.exit_code == 0, result.output
    assert "and its client-credentials tokens" in result.output
    assert not any(active(introspect(client, resource_server, t)) for t in issued)
    assert all(tokens.find_access_token(t) is None for t in issued)  # at every reader, not only introspection
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
    assert "client-credentials tokens got with the old secret revoked" in result.output
    assert not any(active(introspect(client, resource_server, t)) for t in leaked)
    assert error_of(_cc(client, api)) == (401, "invalid_client")  # the old secret
    renewed = SimpleNamespace(client_id=api.client_id, secret=re.search(r"client_secret for \S+: (\S+)",
                                                                        result.output).group(1))
    fresh = _cc(client, renewed)
    assert fresh.status_code == 200, fresh.get_json()
    assert active(introspect(client, resource_server, fresh.get_json()["access_token"]))


def test_a_revoked_client_credentials_token_is_judged_by_its_family_mark(client, app, api):
    """No index lists a client's client-credentials tokens: revoking them marks their minute
    families, and a token whose record is still in the store is inactive from then on."""
    from idp.extensions import store
    from idp.oauth import tokens

    got = _cc(client, api).get_json()["access_token"]
    resource_server = backend("rs")
    assert active(introspect(client, resource_server, got))
    tokens.revoke_client_credentials(api.id, tokens.credentials_mark(api), "client_removed")
    assert store().get(tokens.AT_PREFIX + tokens.access_token_key(got)) is not None  # the record stays...
    with count_io(app) as seen:
        resp = introspect(client, resource_server, got)
    assert not active(resp) and resp.get_json() == {"active": False}  # ...and is judged inactive
    assert seen["store"] == ["get_many"]  # the mark, named by the token's end, came with the record


def test_a_jwt_client_credentials_token_is_judged_by_its_family_mark_too(client, app):
    """A JWT's jti names its record, not its family: the mark is read from what the record
    names, one more round trip."""
    from idp.oauth import tokens

    api = backend("jwt-api", access_token_format="jwt")
    got = _cc(client, api).get_json()["access_token"]
    assert got.count(".") == 2
    resource_server = backend("rs")
    assert active(introspect(client, resource_server, got))
    tokens.revoke_client_credentials(api.id, tokens.credentials_mark(api), "client_removed")
    assert introspect(client, resource_server, got).get_json() == {"active": False}


def test_the_end_of_a_client_credentials_token_is_only_a_hint(client, app, api):
    """The tag at the end of an opaque client-credentials token only says which mark to fetch
    with the record: another end is another token (no record), and a reader that did not
    fetch the mark with the record reads it then."""
    from idp.extensions import store
    from idp.oauth import tokens

    got = _cc(client, api).get_json()["access_token"]
    head, tag = got.rsplit(".", 1)
    assert len(tag) == tokens.TAG_LENGTH and tokens.family_mark_key_in(got) == tokens.family_mark_key(tag)
    other = head + "." + ("0" * tokens.TAG_LENGTH)
    resource_server = backend("rs")
    assert introspect(client, resource_server, other).get_json() == {"active": False}
    assert tokens.family_mark_key_in(head) is None and tokens.family_mark_key_in("a.b.c") is None
    tokens.revoke_client_credentials(api.id, tokens.credentials_mark(api), "client_removed")
    with app.test_request_context():
        from idp.store import prefetch
        prefetch.prefetch([tokens.AT_PREFIX + tokens.access_token_key(got)])  # as if the hint were missed
        assert tokens.find_access_token(got) is None
    assert store().get(tokens.AT_PREFIX + tokens.access_token_key(got)) is not None


def test_a_client_credentials_token_of_another_secret_is_not_revoked(client, app, api):
    """The mark names the credentials: revoking what an old secret got leaves the rest live."""
    from idp.oauth import tokens

    got = _cc(client, api).get_json()["access_token"]
    tokens.revoke_client_credentials(api.id, "another-secret", "secret_rotated")
    assert active(introspect(client, backend("rs"), got))


def test_revocation_also_reaches_what_an_earlier_release_issued(client, app, api):
    """An earlier release put each client-credentials token in a family per minute (named
    with the credentials, and before that without) and its index: those, live for up to
    ACCESS_TOKEN_TTL after an upgrade, are deleted as before, and judged revoked when read."""
    import time

    from idp.extensions import store
    from idp.oauth import tokens

    now = int(time.time())
    mark = tokens.credentials_mark(api)
    families = [f"cc:{api.id}:{mark}:{now // 60}", f"cc:{api.id}:{now // 60 - 5}"]
    for family in families:
        record = {"client_id": api.client_id, "scope": "api:read", "iat": now, "exp": now + 600,
                  "grant_id": family, "token_type": "Bearer", "aud": [api.client_id]}
        store().put_indexed(tokens.AT_PREFIX + "indexed-" + family, record, 600, "grant-ats:" + family,
                            "grant-revoked:" + family)
        store().put(tokens.AT_PREFIX + tokens.access_token_key("unindexed-" + family), record, 600)
    tokens.revoke_client_credentials(api.id, mark, "client_removed")
    assert store().get_many([tokens.AT_PREFIX + "indexed-" + f for f in families]) == [None, None]
    with app.test_request_context():
        assert [tokens.find_access_token("unindexed-" + f) for f in families] == [None, None]
    assert all(store().get("grant-revoked:" + f) == "client_removed" for f in families)  # its writers see it


def test_a_revoked_client_credentials_token_stays_revoked_until_it_expires(client, app, api):
    """The family's mark outlives every token of the family, whatever ACCESS_TOKEN_TTL the
    token was issued under or the revoking process has (here 3600 s, then 600 s)."""
    from freezegun import freeze_time

    from idp.extensions import store
    from idp.oauth import tokens

    resource_server = backend("rs")
    with freeze_time() as clock:
        app.config["ACCESS_TOKEN_TTL"] = 3600
        got = _cc(client, api).get_json()["access_token"]
        clock.tick(59)
        app.config["ACCESS_TOKEN_TTL"] = 600
        tokens.revoke_client_credentials(api.id, tokens.credentials_mark(api), "client_removed")
        exp = store().get(tokens.AT_PREFIX + tokens.access_token_key(got))["exp"]
        assert store().ttl_of(tokens.family_mark_key_in(got)) > exp - clock.time_to_freeze.timestamp()
        for step in (0, 61, 800, 2600):
            clock.tick(step)
            assert introspect(client, resource_server, got).get_json() == {"active": False}, step
