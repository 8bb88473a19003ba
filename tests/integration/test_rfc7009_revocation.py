"""Token revocation (RFC 7009)."""

import pytest
from sqlalchemy import select

from idp.extensions import db
from idp.models import Grant
from tests.conftest import Flow, register_client
from tests.integration.token_helpers import active, error_of, introspect, refresh, revoke


HINTS = [None, "access_token", "refresh_token", "unknown_hint"]


@pytest.mark.parametrize("hint", HINTS, ids=[str(h) for h in HINTS])
def test_revoking_an_access_token_deletes_only_it(client, api, flow, issued, hint):
    resp = revoke(client, flow.rp, issued["access_token"], **({"token_type_hint": hint} if hint else {}))
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    assert not active(introspect(client, api, issued["access_token"]))
    assert refresh(client, flow.rp, issued["refresh_token"]).status_code == 200


@pytest.mark.parametrize("hint", HINTS, ids=[str(h) for h in HINTS])
def test_revoking_a_refresh_token_revokes_its_family(client, api, flow, issued, hint):
    later = refresh(client, flow.rp, issued["refresh_token"]).get_json()
    resp = revoke(client, flow.rp, later["refresh_token"], **({"token_type_hint": hint} if hint else {}))
    assert resp.status_code == 200
    for at in (issued["access_token"], later["access_token"]):
        assert not active(introspect(client, api, at))
    assert error_of(refresh(client, flow.rp, later["refresh_token"])) == (400, "invalid_grant")
    db.session.expire_all()
    assert db.session.scalars(select(Grant.revoked_reason)).one() == "revoked_by_client"


def test_revoking_a_rotated_refresh_token_still_ends_the_family(client, flow, issued):
    later = refresh(client, flow.rp, issued["refresh_token"]).get_json()
    assert revoke(client, flow.rp, issued["refresh_token"]).status_code == 200
    assert error_of(refresh(client, flow.rp, later["refresh_token"])) == (400, "invalid_grant")


NOTHING = [("unknown", lambda i: "x" * 43), ("garbage", lambda i: "\u00e9\u0000"), ("oversized", lambda i: "a" * 9000),
           ("an ID token", lambda i: i["id_token"])]


@pytest.mark.parametrize("case,make", NOTHING, ids=[c for c, _ in NOTHING])
def test_unknown_tokens_get_200(client, flow, issued, case, make):
    resp = revoke(client, flow.rp, make(issued))
    assert resp.status_code == 200
    assert active(introspect(client, flow.rp, issued["refresh_token"]))


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_another_clients_token_is_left_alone(client, api, flow, issued, kind):
    other = register_client("rp-other")
    assert revoke(client, other, issued[kind]).status_code == 200
    assert revoke(client, api, issued[kind]).status_code == 200
    assert active(introspect(client, flow.rp, issued[kind]))


def test_public_client_revokes_its_own_tokens_with_client_id(client, api, native_rp, seller):
    f = Flow(client, native_rp)
    body = f.redeem(f.login_code(redirect_uri="http://127.0.0.1:5555/cb"),
                    redirect_uri="http://127.0.0.1:5555/cb").get_json()
    assert revoke(client, native_rp, body["refresh_token"]).status_code == 200
    assert not active(introspect(client, api, body["access_token"]))
    assert error_of(refresh(client, native_rp, body["refresh_token"])) == (400, "invalid_grant")


def test_public_client_cannot_revoke_anothers_token(client, native_rp, flow, issued):
    assert revoke(client, native_rp, issued["refresh_token"]).status_code == 200
    assert active(introspect(client, flow.rp, issued["refresh_token"]))


def test_confidential_client_cannot_skip_authentication(client, flow, issued):
    resp = client.post("/revoke", data={"token": issued["refresh_token"], "client_id": "rp-web"})
    assert error_of(resp) == (401, "invalid_client")
    resp = client.post("/revoke", data={"token": issued["refresh_token"]}, auth=("rp-web", "wrong"))
    assert error_of(resp) == (401, "invalid_client") and "error=" in resp.headers["WWW-Authenticate"]
    assert active(introspect(client, flow.rp, issued["refresh_token"]))


def test_a_revoked_familys_access_tokens_are_ended_by_its_mark(app, client, api, flow, issued):
    """No index lists a family's access tokens: revoking the family writes its mark, which
    ends every one of them at once, at introspection and at userinfo, their records left to
    expire; the mark outlives the longest an access token can live."""
    from idp.extensions import store
    from idp.oauth import tokens

    later = refresh(flow.client, flow.rp, issued["refresh_token"]).get_json()
    both = [issued["access_token"], later["access_token"]]
    assert all(active(introspect(client, api, t)) for t in both)
    assert revoke(client, flow.rp, later["refresh_token"]).status_code == 200
    assert not any(active(introspect(client, api, t)) for t in both)
    for t in both:
        resp = client.get("/userinfo", headers={"Authorization": "Bearer " + t})
        assert resp.status_code == 401 and "invalid_token" in resp.headers["WWW-Authenticate"]
        assert store().get(tokens.AT_PREFIX + tokens.access_token_key(t)) is not None
    assert store().ttl_of(tokens.family_mark_key_in(issued["access_token"])) >= tokens.MARK_MIN_TTL - 5


def test_revocation_sweeps_what_an_earlier_release_indexed(app, client, api, flow, issued):
    """The two releases before kept a family's access tokens (untagged, 43 characters) in an
    index (grant-ats:), and before that in a plain set (grant-at:): revoking the family
    deletes them, for their processes, which read no mark, during an upgrade; this release
    refuses them by the mark of the family their record names."""
    import time

    from idp.extensions import store
    from idp.oauth import tokens

    grant_id = tokens.find_access_token(issued["access_token"])["grant_id"]
    now = int(time.time())
    record = {"client_id": flow.rp.client_id, "scope": "openid", "iat": now, "exp": now + 600, "grant_id": grant_id,
              "token_type": "Bearer", "aud": [flow.rp.client_id]}
    earlier = {"indexed": "a" * 43, "in a set": "b" * 43, "in neither": "c" * 43}
    keys = {name: tokens.AT_PREFIX + tokens.access_token_key(token) for name, token in earlier.items()}
    store().put_indexed(keys["indexed"], record, 600, f"grant-ats:{grant_id}", "unrelated")
    store().put(keys["in a set"], record, 600)
    store().sadd(f"grant-at:{grant_id}", keys["in a set"], 600)
    store().put(keys["in neither"], record, 600)
    assert all(active(introspect(client, api, token)) for token in earlier.values())
    assert revoke(client, flow.rp, issued["refresh_token"]).status_code == 200
    assert store().get_many([keys["indexed"], keys["in a set"]]) == [None, None]  # swept
    assert store().get(keys["in neither"]) is not None  # not swept: refused by the mark
    assert not any(active(introspect(client, api, token)) for token in earlier.values())
    assert not active(introspect(client, api, issued["access_token"]))


def test_a_familys_mark_outlives_the_longest_access_token_the_settings_allow(app):
    """Outside production ACCESS_TOKEN_TTL may exceed both the family's life and a day."""
    from idp.extensions import store
    from idp.oauth import tokens

    app.config.update(ACCESS_TOKEN_TTL=40 * 86400, REFRESH_TOKEN_ABSOLUTE_TTL=86400)
    tokens.kill_access_tokens("g-long", "admin")
    assert store().ttl_of(tokens.family_mark_key(tokens.family_tag("g-long"))) > 40 * 86400


def test_a_revoked_familys_jwt_access_tokens_are_ended_by_its_mark(client, api, seller):
    """A JWT names its record, not its family's mark: the mark of the family its record names."""
    rp = register_client("rp-jwt", access_token_format="jwt")
    jwt_flow = Flow(client, rp)
    got = jwt_flow.redeem(jwt_flow.code_from(jwt_flow.sign_in(jwt_flow.authorize()))).get_json()
    assert got["access_token"].count(".") == 2 and active(introspect(client, api, got["access_token"]))
    assert revoke(client, rp, got["refresh_token"]).status_code == 200
    assert not active(introspect(client, api, got["access_token"]))
    resp = client.get("/userinfo", headers={"Authorization": "Bearer " + got["access_token"]})
    assert resp.status_code == 401


