"""Token endpoint, authorization_code grant: RFC 6749 §4.1.3/§5.2, RFC 7636 §4.6, RFC 7523."""

import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
from freezegun import freeze_time
from joserfc import jwt
from joserfc.jwk import ECKey

from idp.extensions import db
from idp.models import Grant, SecurityEvent
from idp.ops import metrics
from tests.conftest import ISSUER, Flow, register_client


def _error(resp):
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.is_json
    return resp.status_code, resp.get_json()["error"]


BAD_REDEMPTIONS = [
    ("missing code", {"code": None}, (400, "invalid_request")),
    ("unknown code", {"code": "nope"}, (400, "invalid_grant")),
    ("oversized code", {"code": "c" * 5000}, (400, "invalid_grant")),
    ("wrong verifier", {"code_verifier": "x" * 50}, (400, "invalid_grant")),
    ("missing verifier", {"code_verifier": None}, (400, "invalid_request")),
    ("short verifier", {"code_verifier": "abc"}, (400, "invalid_request")),
    # RFC 7636 §4.1: the whole value; a regex's "$" would let a final newline through.
    ("verifier with a final newline", {"code_verifier": "PKCE"}, (400, "invalid_request")),
    ("verifier of 128 and a newline", {"code_verifier": "a" * 128 + "\n"}, (400, "invalid_request")),
    ("other redirect_uri", {"redirect_uri": "https://rp.example.com/other"}, (400, "invalid_grant")),
    ("missing redirect_uri", {"redirect_uri": None}, (400, "invalid_grant")),
    ("unknown grant type", {"grant_type": "password"}, (400, "unsupported_grant_type")),
]


@pytest.mark.parametrize("case,override,expected", BAD_REDEMPTIONS, ids=[c for c, _, _ in BAD_REDEMPTIONS])
def test_bad_redemptions(flow, case, override, expected):
    override = dict(override)
    if override.get("code_verifier") == "PKCE":
        override["code_verifier"] = flow.verifier + "\n"
    code = override.pop("code", flow.login_code())
    assert _error(flow.redeem(code, **override)) == expected


def test_code_is_single_use_and_replay_revokes_tokens(flow):
    code = flow.login_code()
    first = flow.redeem(code)
    assert first.status_code == 200
    token = first.get_json()["access_token"]
    assert flow.client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert _error(flow.redeem(code)) == (400, "invalid_grant")
    assert flow.client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code == 401


ORDERS = "https://orders.example.com"
FAILED_REDEMPTIONS = [
    ("wrong verifier", {"code_verifier": "x" * 50}, "invalid_grant"),
    ("other redirect_uri", {"redirect_uri": "https://rp.example.com/other"}, "invalid_grant"),
    # RFC 8707 §2.2: naming a resource the authorization did not is the client's mistake to correct
    ("a resource the code was not for", {"resource": ORDERS}, "invalid_target"),
    ("an unknown resource", {"resource": "https://elsewhere.example.com"}, "invalid_target"),
]


@pytest.mark.parametrize("case,override,error", FAILED_REDEMPTIONS, ids=[c for c, _, _ in FAILED_REDEMPTIONS])
def test_a_failed_redemption_leaves_the_code_to_its_client(flow, app, case, override, error):
    """Whoever saw a code (a log, a Referer) but lacks the verifier cannot destroy it, and a
    client's corrected retry is no replay: no revocation, no security event on the seller."""
    app.config["RESOURCES"] = {ORDERS: {"scopes": ["email"]}}
    code = flow.login_code()
    assert _error(flow.redeem(code, **override)) == (400, error)
    assert flow.redeem(code).status_code == 200
    assert db.session.scalars(db.select(SecurityEvent.kind)).all() == []


@pytest.mark.parametrize("change", [{"redirect_uris": ["https://rp.example.com/other"]}, {"scopes": ["openid"]}],
                         ids=["its redirect URI dropped", "a scope of the code withdrawn"])
def test_a_code_issued_before_the_client_registration_changed_gets_nothing(flow, change):
    code = flow.login_code()
    for name, value in change.items():
        setattr(flow.rp, name, value)
    db.session.commit()
    assert _error(flow.redeem(code, redirect_uri="https://rp.example.com/cb")) == (400, "invalid_grant")


def test_another_client_cannot_destroy_a_code(flow, client):
    other = register_client("rp-other", redirect_uris=flow.rp.redirect_uris)
    code = flow.login_code()
    assert _error(client.post("/token", auth=("rp-other", other.secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": flow.rp.redirect_uris[0],
        "code_verifier": flow.verifier})) == (400, "invalid_grant")
    assert flow.redeem(code).status_code == 200


def test_a_replayed_code_is_a_security_event_on_the_account(flow, seller):
    before = metrics.CODE_REUSE._value.get()
    code = flow.login_code()
    assert flow.redeem(code).status_code == 200
    assert _error(flow.redeem(code)) == (400, "invalid_grant")
    events = db.session.execute(db.select(SecurityEvent)).scalars().all()
    assert [(e.kind, e.account_id) for e in events] == [("code_reuse", seller.id)]
    assert db.session.get(Grant, events[0].detail["grant_id"]).revoked_reason == "code_reuse"
    assert metrics.CODE_REUSE._value.get() == before + 1


def test_a_replay_by_another_client_revokes_nothing(flow, client, native_rp):
    """Any public client_id "authenticates": whoever saw a spent code must not be able to revoke
    what it produced (nor fill the seller's security events)."""
    spent = flow.login_code()
    assert flow.redeem(spent).status_code == 200
    resp = client.post("/token", data={"grant_type": "authorization_code", "code": spent,
                                       "client_id": native_rp.client_id, "redirect_uri": native_rp.redirect_uris[0],
                                       "code_verifier": "x" * 43})
    assert _error(resp) == (400, "invalid_grant")
    assert db.session.execute(db.select(SecurityEvent)).scalars().all() == []
    assert db.session.execute(db.select(Grant).where(Grant.revoked_at.is_not(None))).scalars().all() == []
    assert _error(flow.redeem(spent)) == (400, "invalid_grant")  # its own client's replay still revokes
    assert db.session.execute(db.select(Grant.revoked_reason)).scalars().all() == ["code_reuse"]


@pytest.mark.parametrize("how", ["past its exp", "its key reclaimed"])
def test_a_code_that_expired_unused_is_no_replay(flow, how):
    """§4.1.2 revokes what a code issued when it is used twice. A code never used that expired
    is only invalid_grant: a slow client's late redemption revokes nothing and raises no alarm
    for the seller. "Its key reclaimed": the store's own TTL (Redis's clock, which freezegun
    does not move), while the code's family is still remembered."""
    from idp.crypto.secrets import keyed_hash
    from idp.extensions import store

    before = metrics.CODE_REUSE._value.get()
    with freeze_time() as clock:
        code = flow.login_code()
        if how == "past its exp":
            clock.tick(61)
        else:
            store().delete(f"code:{keyed_hash(code)}")
        assert _error(flow.redeem(code)) == (400, "invalid_grant")
    assert db.session.execute(db.select(SecurityEvent)).scalars().all() == []
    assert db.session.execute(db.select(Grant)).scalars().all() == []
    assert metrics.CODE_REUSE._value.get() == before


def test_a_used_code_presented_after_it_expired_still_revokes(flow, seller):
    with freeze_time() as clock:
        code = flow.login_code()
        assert flow.redeem(code).status_code == 200
        clock.tick(300)
        assert _error(flow.redeem(code)) == (400, "invalid_grant")
    assert db.session.execute(db.select(Grant.revoked_reason)).scalars().all() == ["code_reuse"]
    events = db.session.execute(db.select(SecurityEvent)).scalars().all()
    assert [(e.kind, e.account_id) for e in events] == [("code_reuse", seller.id)]


def test_the_spent_code_marker_stays_a_grant_id_for_older_processes(flow):
    """During a rolling upgrade an older process reads code-grant: as the family's id."""
    from idp.crypto.secrets import keyed_hash
    from idp.extensions import store

    code = flow.login_code()
    assert isinstance(store().get(f"code-grant:{keyed_hash(code)}"), str)


def test_a_redemption_reads_client_and_code_in_one_round_trip(flow, app):
    """The client's registration (when the store caches it) and the code's four keys: one
    MGET before the code is taken (idp.store.prefetch), then the take and the token's write."""
    from tests.integration.token_helpers import count_io

    flow.redeem(flow.login_code())  # the registration cached
    code = flow.login_code()
    with count_io(app) as seen:
        resp = flow.redeem(code)
    assert resp.status_code == 200, resp.get_json()
    # The take (consume_leaving) is not spied on; the embedded store's put_checked is its put and get.
    assert seen["store"][:2] == ["get_many", "put_checked"] and "get_many" not in seen["store"][1:]
    assert seen["store"][2:] == ([] if app.extensions["idp.store"].shared else ["put", "get"])
    if app.extensions["idp.store"].shared:  # PostgreSQL: one statement on the driver (idp.oauth.code_redemption)
        assert seen["sql"] == []
    else:  # the embedded store caches no clients: the database is asked for the registration
        assert seen["sql"] == ["SELECT", "SELECT", "INSERT", "INSERT"]


def test_client_id_must_name_the_authenticated_client(flow, client):
    """RFC 7521 §4.2; with Basic, a second client_id naming another client is no credential."""
    register_client("rp-other", redirect_uris=flow.rp.redirect_uris)
    code = flow.login_code()
    resp = flow.redeem(code, client_id="rp-other")
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_client"
    in_query = flow.client.post("/token?client_id=rp-other", auth=(flow.rp.client_id, flow.rp.secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": flow.rp.redirect_uris[0],
        "code_verifier": flow.verifier})
    assert in_query.status_code == 200  # a query is no parameter of /token (RFC 6749 §3.2)
    assert flow.redeem(flow.login_code(), client_id=flow.rp.client_id).status_code == 200  # naming itself is fine


@pytest.mark.parametrize("fails", ["store", "database", "the take's answer"])
def test_a_redemption_cut_short_by_an_outage_leaves_the_code_to_the_clients_retry(flow, app, monkeypatch, fails):
    """The answer to an outage is a 503 with Retry-After: the retry must not read as a replay
    (the sign-in revoked, a code_reuse security event on the seller's account)."""
    import redis.exceptions
    from sqlalchemy.exc import OperationalError

    from idp.extensions import store
    from idp.oauth import tokens

    code = flow.login_code()
    s, broken = store(), []

    def outage(*args, **kwargs):
        broken.append(1)
        if fails == "store":
            raise redis.exceptions.ConnectionError("Redis went away")
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    taking = type(s).consume_leaving

    def answer_lost(*args, **kwargs):  # the take ran on the server, its answer never came back
        taking(*args, **kwargs)
        broken.append(1)
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    with monkeypatch.context() as patched:
        if fails == "the take's answer":
            patched.setattr(type(s), "consume_leaving", answer_lost)
        elif fails == "store":
            patched.setattr(type(s), "put_checked", outage)  # the access token's write
        else:
            patched.setattr(tokens, "sign_id_token", outage)  # anything between take and commit
        resp = flow.redeem(code)
    assert broken and resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    retry = flow.redeem(code)
    assert retry.status_code == 200, retry.get_json()
    assert db.session.scalars(db.select(SecurityEvent.kind)).all() == []
    again = flow.redeem(code)  # and then it is used, as ever
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"


def test_a_commit_whose_answer_was_lost_then_a_retry_is_invalid_grant_not_a_500(flow, monkeypatch):
    """The outage hid a commit that went through: the code given back comes round again,
    and its family's id is taken. Refused as a used code, not a 500."""
    import psycopg
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    from idp.oauth import code_redemption

    code = flow.login_code()
    with monkeypatch.context() as patched:
        if code_redemption.available():  # PostgreSQL: the family is written by one autocommitted statement
            redeem = code_redemption.redeem

            def redeemed_but_answer_lost(*args, **kwargs):
                redeem(*args, **kwargs)
                raise psycopg.OperationalError("server closed the connection unexpectedly")

            patched.setattr(code_redemption, "redeem", redeemed_but_answer_lost)
        else:
            commit = Session.commit

            def committed_but_answer_lost(session):
                commit(session)
                raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

            patched.setattr(Session, "commit", committed_but_answer_lost)
        assert flow.redeem(code).status_code == 503
    retry = flow.redeem(code)
    assert retry.status_code == 400 and retry.get_json()["error"] == "invalid_grant"
    assert db.session.scalars(db.select(SecurityEvent.kind)).all() == []


def test_a_replay_during_a_database_outage_still_kills_the_access_tokens(flow, monkeypatch):
    """Each half of a revocation is done even when the other fails: the database is out of
    reach (a 503), and the family's access tokens go all the same."""
    from sqlalchemy.exc import OperationalError

    code = flow.login_code()
    first = flow.redeem(code).get_json()

    def outage(*args, **kwargs):
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    with monkeypatch.context() as patched:
        patched.setattr(db.session, "commit", outage)
        assert flow.redeem(code).status_code == 503
    userinfo = flow.client.get("/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"})
    assert userinfo.status_code == 401


def test_concurrent_redemptions_at_most_one_wins(flow, app):
    """One redemption takes the code; the others are replays (RFC 6749 §4.1.2), which revoke
    what the code issued: when the winner sees that while it issues, it answers invalid_grant
    like the rest rather than hand out tokens that are dead (idp.oauth.tokens.issue)."""
    code = flow.login_code()
    results, barrier = [], threading.Barrier(6)

    def redeem():
        c = app.test_client()
        barrier.wait()
        with app.app_context():
            results.append(c.post("/token", auth=(flow.rp.client_id, flow.rp.secret), data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": flow.rp.redirect_uris[0],
                "code_verifier": flow.verifier}).status_code)

    threads = [threading.Thread(target=redeem) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) in ([200] + [400] * 5, [400] * 6)


def test_code_expires_after_60_seconds(flow):
    with freeze_time() as clock:
        code = flow.login_code()
        clock.tick(61)
        assert _error(flow.redeem(code)) == (400, "invalid_grant")


def test_code_is_bound_to_the_client(flow, client):
    other = register_client("rp-other", redirect_uris=flow.rp.redirect_uris)
    code = flow.login_code()
    resp = client.post("/token", auth=("rp-other", other.secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": flow.rp.redirect_uris[0],
        "code_verifier": flow.verifier})
    assert _error(resp) == (400, "invalid_grant")


def test_code_has_at_least_128_bits(flow):
    code = flow.login_code()
    assert len(code) >= 22  # base64url: 6 bits a character; we issue 256 bits (43 characters)


BAD_CLIENT_AUTH = [
    ("wrong secret (basic)", {"auth": ("rp-web", "wrong")}, 401),
    ("unknown client (basic)", {"auth": ("nobody", "x")}, 401),
    ("no authentication", {"auth": None}, 401),
]


@pytest.mark.parametrize("case,kw,status", BAD_CLIENT_AUTH, ids=[c for c, _, _ in BAD_CLIENT_AUTH])
def test_client_authentication_failures(flow, case, kw, status):
    code = flow.login_code()
    resp = flow.client.post("/token", auth=kw["auth"], data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": flow.rp.redirect_uris[0],
        "code_verifier": flow.verifier})
    assert _error(resp) == (status, "invalid_client")
    # RFC 7617 §2: a Basic challenge has a realm; the same one as /introspect and /revoke
    tried = ', error="invalid_client"' if kw["auth"] else ""  # RFC 6750 §3.1's rule, for Basic too
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="idp"' + tried
    assert "methods" not in resp.get_json()["error_description"]


def test_client_secret_post(client, seller):
    rp = register_client("rp-post", token_endpoint_auth_method="client_secret_post")
    f = Flow(client, rp)
    resp = f.redeem(f.login_code(), client_id="rp-post", client_secret=rp.secret)
    assert resp.status_code == 200
    code = f.login_code()
    bad = f.redeem(code, client_id="rp-post", client_secret="bad")
    # RFC 6749 §5.2: invalid_client, 401 with a challenge (no Authorization header was tried:
    # the challenge carries no error, as RFC 6750 §3.1 has it for a request without one)
    assert _error(bad) == (401, "invalid_client") and bad.headers["WWW-Authenticate"] == 'Basic realm="idp"'
    assert f.redeem(code, client_id="rp-post", client_secret=rp.secret).status_code == 200  # the code was left


def test_public_native_client_with_pkce(client, native_rp, seller):
    f = Flow(client, native_rp)
    code = f.login_code(redirect_uri="http://127.0.0.1:40123/cb")
    resp = f.redeem(code, redirect_uri="http://127.0.0.1:40123/cb")
    assert resp.status_code == 200 and resp.get_json()["id_token"]


def test_public_client_cannot_skip_verifier(client, native_rp, seller):
    f = Flow(client, native_rp)
    code = f.login_code(redirect_uri="http://127.0.0.1:40123/cb")
    assert _error(f.redeem(code, redirect_uri="http://127.0.0.1:40123/cb", code_verifier=None))[1] in (
        "invalid_request", "invalid_grant")


def _assertion(key, client_id, aud, jti=None, exp_in=60):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + exp_in,
              "jti": jti or str(uuid.uuid4())}
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


@pytest.fixture
def jwt_rp(app):
    key = ECKey.generate_key("P-256", auto_kid=True)
    rp = register_client("rp-jwt", token_endpoint_auth_method="private_key_jwt",
                         jwks={"keys": [key.as_dict(private=False)]})
    rp.key = key
    return rp


def test_private_key_jwt(client, seller, jwt_rp):
    f = Flow(client, jwt_rp)
    assertion = _assertion(jwt_rp.key, "rp-jwt", ISSUER + "/token")
    extra = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
             "client_assertion": assertion}
    assert f.redeem(f.login_code(), **extra).status_code == 200
    # the same assertion (same jti) is refused the second time
    assert _error(f.redeem(f.login_code(), **extra))[1] == "invalid_client"


def test_private_key_jwt_assertion_living_over_an_hour_is_refused(client, seller, jwt_rp):
    """Its jti would have to be kept that long to stop a replay (RFC 7523 §3): refused."""
    f = Flow(client, jwt_rp)
    extra = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
             "client_assertion": _assertion(jwt_rp.key, "rp-jwt", ISSUER + "/token", exp_in=2 * 3600)}
    resp = f.redeem(f.login_code(), **extra)
    assert _error(resp)[1] == "invalid_client" and "more than an hour" in resp.get_json()["error_description"]


def test_private_key_jwt_jti_is_remembered_until_the_assertion_expires(client, seller, jwt_rp):
    f = Flow(client, jwt_rp)
    extra = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
             "client_assertion": _assertion(jwt_rp.key, "rp-jwt", ISSUER + "/token", exp_in=3000)}
    with freeze_time(datetime.now(timezone.utc)) as clock:
        assert f.redeem(f.login_code(), **extra).status_code == 200
        clock.tick(2990)  # 10 s before exp: replaying the same assertion still fails
        assert _error(f.redeem(f.login_code(), **extra))[1] == "invalid_client"


@pytest.mark.parametrize("case", ["wrong audience", "expired", "other key"])
def test_private_key_jwt_rejections(client, seller, jwt_rp, case):
    f = Flow(client, jwt_rp)
    key, aud, exp_in = jwt_rp.key, ISSUER + "/token", 60
    if case == "wrong audience":
        aud = "https://other.example/token"
    elif case == "expired":
        exp_in = -300
    else:
        key = ECKey.generate_key("P-256", auto_kid=True)
    extra = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
             "client_assertion": _assertion(key, "rp-jwt", aud, exp_in=exp_in)}
    resp = f.redeem(f.login_code(), **extra)
    assert _error(resp)[1] == "invalid_client"
    # what the developer of the client needs to know once the signature was good; before,
    # what an unknown client is told (nobody learns which client ids authenticate with keys)
    said = {"wrong audience": "aud", "expired": "expired", "other key": "client authentication failed"}[case]
    assert said in resp.get_json()["error_description"]
    assertion = _assertion(key, "rp-jwt", ISSUER + "/introspect" if case != "wrong audience" else aud,
                           exp_in=exp_in)
    at_introspection = client.post("/introspect", data={
        "token": "x", "client_assertion_type": extra["client_assertion_type"], "client_assertion": assertion})
    assert said in at_introspection.get_json()["error_description"]


JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _b64json(obj) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("crit", [[1], [None], [{"a": 1}], [["x"]]])
@pytest.mark.parametrize("path,extra", [("/token", {"grant_type": "client_credentials"}),
                                        ("/introspect", {"token": "x"}), ("/revoke", {"token": "x"})])
def test_an_unsigned_assertion_with_a_strange_crit_is_invalid_client_not_a_500(client, jwt_rp, crit, path, extra):
    """joserfc judges "crit" before the signature and fails on a non-string with TypeError:
    anyone who knows a private_key_jwt client's id could have made us answer 500."""
    assertion = f"{_b64json({'alg': 'ES256', 'crit': crit})}.{_b64json({'iss': 'rp-jwt', 'sub': 'rp-jwt'})}.AAAA"
    resp = client.post(path, data={"client_assertion_type": JWT_BEARER, "client_assertion": assertion, **extra})
    assert _error(resp) == (401, "invalid_client")


def test_a_resource_servers_assertion_for_issuer_and_token_endpoint_works_at_introspection(client, jwt_rp):
    """openid-client sends aud [issuer, token endpoint] to every endpoint it authenticates at."""
    assertion = _assertion(jwt_rp.key, "rp-jwt", [ISSUER, ISSUER + "/token"])
    resp = client.post("/introspect", data={"token": "x", "client_assertion_type": JWT_BEARER,
                                            "client_assertion": assertion})
    assert resp.status_code == 200 and resp.get_json() == {"active": False}


def test_an_unverified_assertion_tells_nothing_about_the_client(client, jwt_rp, rp):
    """Signed by a key not registered: a key-based client, a secret-based one and an unknown
    id get the same words, so none of them can be told apart from outside."""
    stranger = ECKey.generate_key("P-256", auto_kid=True)
    said = set()
    for client_id in ("rp-jwt", rp.client_id, "nobody-here"):
        resp = client.post("/token", data={"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
                                           "client_assertion": _assertion(stranger, client_id, ISSUER + "/token")})
        assert _error(resp) == (401, "invalid_client")
        said.add(resp.get_json().get("error_description"))
    assert said == {"client authentication failed"}


@pytest.mark.parametrize("aud,accepted", [
    (ISSUER, True), (ISSUER + "/token", True), ([ISSUER, ISSUER + "/token"], True),  # openid-client's
    (ISSUER + "/introspect", True),  # another endpoint of ours: still this server
    (["https://evil.example/token", ISSUER + "/token"], False),  # an audience injection's shape
    ("https://evil.example/token", False),
])
def test_an_assertion_is_for_this_server_alone(client, seller, jwt_rp, aud, accepted):
    f = Flow(client, jwt_rp)
    assertion = _assertion(jwt_rp.key, "rp-jwt", aud)
    resp = f.redeem(f.login_code(), client_assertion_type=JWT_BEARER, client_assertion=assertion)
    assert resp.status_code == (200 if accepted else 401), resp.get_json()


def test_token_endpoint_rejects_get(client):
    resp = client.get("/token")
    assert resp.status_code == 405 and resp.is_json


def test_garbage_form_never_500(client, rp):
    for body in ("grant_type=authorization_code&code=%ff%fe", "\x00\x01", "a=" + "b" * 60000):
        resp = client.post("/token", data=body, content_type="application/x-www-form-urlencoded",
                           auth=("rp-web", rp.secret))
        assert resp.status_code < 500 and resp.is_json


def test_oversized_body_is_rejected(client, rp):
    resp = client.post("/token", data="a=" + "b" * 200000, content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 413 and resp.is_json


def _end_session(seller, how):
    from datetime import datetime, timezone

    from idp.extensions import db
    from idp.logout.everywhere import sign_out_everywhere
    from idp.models import Account, BrowserSession

    if how == "suspended":
        db.session.get(Account, seller.id).status = "suspended"
    elif how == "session ended":
        for row in db.session.execute(db.select(BrowserSession).filter_by(account_id=seller.id)).scalars():
            row.ended_at = datetime.now(timezone.utc)
    else:
        sign_out_everywhere(db.session.get(Account, seller.id))
    db.session.commit()


@pytest.mark.parametrize("how", ["suspended", "session ended", "signed out everywhere"])
def test_code_is_refused_once_its_session_or_account_is_gone(flow, seller, how):
    """Between the code and its redemption: no tokens for an account or session that ended."""
    code = flow.login_code()
    _end_session(seller, how)
    resp = flow.redeem(code)
    assert _error(resp) == (400, "invalid_grant")
    assert "session has ended" in resp.get_json()["error_description"]
    assert db.session.scalars(db.select(Grant)).all() == []
    # The code is left to its client (on PostgreSQL, given back after the statement refused):
    # trying again is told the same, not taken for a replay that alarms the seller.
    again = flow.redeem(code)
    assert "session has ended" in again.get_json()["error_description"]
    assert "code_reuse" not in db.session.scalars(db.select(SecurityEvent.kind)).all()


def test_code_of_a_live_session_still_redeems(flow, seller):
    from idp.extensions import db
    from idp.models import Account

    code = flow.login_code()
    other = Flow(flow.client.application.test_client(), flow.rp)
    other.login_code()  # a second sign-in of the same seller elsewhere leaves the first live
    db.session.expire_all()
    assert db.session.get(Account, seller.id).status == "active"
    assert flow.redeem(code).status_code == 200


JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_private_key_jwt_reuse_of_a_rotated_refresh_token_revokes_the_family(client, seller, jwt_rp):
    """On PostgreSQL a refused one-statement rotation is judged again, authenticating the
    client a second time: the request's own assertion must not count as a replay there."""
    def assertion():
        return {"client_assertion_type": JWT_BEARER, "client_assertion": _assertion(jwt_rp.key, "rp-jwt",
                                                                                     ISSUER + "/token")}

    f = Flow(client, jwt_rp)
    first = f.redeem(f.login_code(scope="openid offline_access"), **assertion()).get_json()

    def refresh(rt):
        return client.post("/token", data={"grant_type": "refresh_token", "refresh_token": rt, **assertion()})

    second = refresh(first["refresh_token"])
    assert second.status_code == 200
    reused = refresh(first["refresh_token"])
    assert _error(reused) == (400, "invalid_grant")
    assert _error(refresh(second.get_json()["refresh_token"])) == (400, "invalid_grant")  # the family is revoked


def test_private_key_jwt_client_credentials_errors_keep_their_code(client, jwt_rp):
    from idp.extensions import db

    jwt_rp.grant_types = [*jwt_rp.grant_types, "client_credentials"]
    db.session.commit()
    for _ in range(2):  # the second request is the one judged from this process's copy first
        resp = client.post("/token", data={"grant_type": "client_credentials", "scope": "openid", "client_assertion_type":
                                           JWT_BEARER, "client_assertion": _assertion(jwt_rp.key, "rp-jwt",
                                                                                      ISSUER + "/token")})
        assert _error(resp) == (400, "invalid_scope")


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_private_key_jwt_accepts_every_alg_discovery_advertises(client, seller, alg):
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, auto_kid=True)
    rp = register_client("rp-rsa", token_endpoint_auth_method="private_key_jwt",
                         jwks={"keys": [key.as_dict(private=False)]})
    now = int(time.time())
    assertion = jwt.encode({"alg": alg, "kid": key.kid}, {"iss": "rp-rsa", "sub": "rp-rsa", "aud": ISSUER + "/token",
                                                           "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())},
                           key, algorithms=[alg])
    f = Flow(client, rp)
    resp = f.redeem(f.login_code(), client_assertion_type=JWT_BEARER, client_assertion=assertion)
    assert resp.status_code == 200, resp.get_json()


def test_a_registered_jwks_that_cannot_be_imported_fails_the_client_not_the_server(client, seller, jwt_rp):
    from idp.extensions import db

    jwt_rp.jwks = {"keys": [{"kty": "EC", "x": "AAAA", "y": "AAAA"}]}  # no crv: registered before the check
    db.session.commit()
    f = Flow(client, jwt_rp)
    resp = f.redeem(f.login_code(), client_assertion_type=JWT_BEARER,
                    client_assertion=_assertion(jwt_rp.key, "rp-jwt", ISSUER + "/token"))
    assert _error(resp)[1] == "invalid_client"


# -- one client authentication method per request (RFC 6749 §2.3, §5.2) ------------------------

def _cc(client, auth=None, **data):
    return client.post("/token", auth=auth, data={"grant_type": "client_credentials", **data})


def test_two_authentication_methods_in_one_request_are_invalid_request(client, jwt_rp):
    """authlib takes the first method that succeeds: a good Basic header beside a wrong secret,
    or beside another client's assertion, was a token for the Basic client."""
    svc = register_client("svc", grant_types=["client_credentials"], scopes=["api:read"])
    post = register_client("svc-post", grant_types=["client_credentials"], scopes=["api:read"],
                           token_endpoint_auth_method="client_secret_post")
    assertion = _assertion(jwt_rp.key, "rp-jwt", ISSUER + "/token")
    for auth, data in (
            (("svc", svc.secret), {"client_id": "svc", "client_secret": "wrong"}),
            (("svc", svc.secret), {"client_assertion_type": JWT_BEARER, "client_assertion": assertion}),
            (("svc", "wrong"), {"client_id": "svc-post", "client_secret": post.secret}),
            (None, {"client_id": "svc-post", "client_secret": post.secret, "client_assertion_type": JWT_BEARER,
                    "client_assertion": assertion})):
        resp = _cc(client, auth, **data)
        assert _error(resp) == (400, "invalid_request") and "more than one" in resp.get_json()["error_description"]
    # The assertion was not spent by those requests: alone, it authenticates its client.
    alone = _assertion(jwt_rp.key, "rp-jwt", ISSUER + "/introspect")
    resp = client.post("/introspect", data={"token": "x", "client_assertion_type": JWT_BEARER,
                                            "client_assertion": alone})
    assert resp.status_code == 200


def test_a_failed_basic_header_is_not_passed_over_for_a_public_client_id(client, native_rp, seller):
    """RFC 6749 §5.2: a client that tried the Authorization header and failed gets 401; the
    request did not go on as the public client its client_id named."""
    resp = client.post("/token", auth=("rp-native", "wrong"), data={
        "grant_type": "refresh_token", "client_id": "rp-native", "refresh_token": "x"})
    assert _error(resp) == (401, "invalid_client")
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="idp", error="invalid_client"'


def test_the_credentials_sent_choose_the_method(client, jwt_rp):
    """A private_key_jwt client's assertion beside nothing else authenticates; the same client
    presenting a secret in Basic is refused (not its registered method)."""
    resp = client.post("/introspect", auth=("rp-jwt", "anything"), data={"token": "x"})
    assert _error(resp) == (401, "invalid_client")


def test_an_assertion_exp_of_hundreds_of_digits_is_refused_not_a_500(client, jwt_rp):
    now = int(time.time())
    claims = {"iss": "rp-jwt", "sub": "rp-jwt", "aud": ISSUER + "/introspect", "iat": now,
              "exp": 10 ** 400, "jti": str(uuid.uuid4())}
    assertion = jwt.encode({"alg": "ES256", "kid": jwt_rp.key.kid}, claims, jwt_rp.key)
    resp = client.post("/introspect", data={"token": "x", "client_assertion_type": JWT_BEARER,
                                            "client_assertion": assertion})
    assert _error(resp) == (401, "invalid_client") and "more than an hour" in resp.get_json()["error_description"]


def test_a_registration_whose_jwks_is_not_a_key_set_fails_the_client_not_the_server(client, app):
    """Written around the CLI's checks (a list where a JWK Set belongs)."""
    from idp.extensions import db
    from idp.models import Client

    rp = register_client("rp-badjwks", token_endpoint_auth_method="private_key_jwt", jwks={"keys": []})
    db.session.execute(db.update(Client).where(Client.client_id == rp.client_id).values(jwks=[1]))
    db.session.commit()
    key = ECKey.generate_key("P-256", auto_kid=True)
    assertion = _assertion(key, "rp-badjwks", ISSUER + "/introspect")
    resp = client.post("/introspect", data={"token": "x", "client_assertion_type": JWT_BEARER,
                                            "client_assertion": assertion})
    assert _error(resp) == (401, "invalid_client")
