"""OpenID Connect Back-Channel Logout 1.0, delivered to a real relying-party endpoint."""

import logging
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.extensions import db, keyring, store
from idp.logout import backchannel
from idp.logout.everywhere import sign_out_everywhere
from idp.models import BrowserSession, Grant
from tests.concurrency import race
from tests.conftest import PASSWORD, Flow, register_client
from tests.integration.token_helpers import error_of, refresh
from tests.integration.logout_helpers import LogoutReceiver

EVENT = "http://schemas.openid.net/event/backchannel-logout"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    """No waits between tries nor before a retry run takes a failed delivery: the tests call
    retry_pending() at once. test_failed_deliveries_wait_longer_after_each_failure keeps them."""
    monkeypatch.setattr(backchannel, "BACKOFF", 0.0)
    monkeypatch.setattr(backchannel, "RETRY_WAIT", 0)


def rp_with(uri, client_id="rp-bc", **fields):
    return register_client(client_id, backchannel_logout_uri=uri, **fields)


def signed_in_flow(client, rp):
    flow = Flow(client, rp)
    body = flow.redeem(flow.login_code()).get_json()
    return flow, body


def log_out(flow, body):
    return flow.client.get("/logout", query_string={
        "id_token_hint": body["id_token"], "post_logout_redirect_uri": "https://rp.example.com/bye"})


def verify_with_jwks(token):
    """As the RP does it: against the IdP's published JWKS (Back-Channel Logout §2.6)."""
    decoded = jwt.decode(token, KeySet.import_key_set(keyring().jwks()), algorithms=["ES256", "RS256"])
    return decoded.header, dict(decoded.claims)


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/logout"


def test_rp_receives_a_valid_logout_token(client, seller, receiver):
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    id_claims = keyring().verify(body["id_token"])
    resp = log_out(flow, body)
    assert resp.status_code == 303 and resp.headers["Location"] == "https://rp.example.com/bye"

    assert len(receiver.received) == 1
    sent = receiver.received[0]
    assert sent["method"] == "POST" and sent["path"] == "/backchannel-logout"
    assert sent["content_type"] == "application/x-www-form-urlencoded"
    header, claims = verify_with_jwks(receiver.tokens[0])
    assert header["typ"] == "logout+jwt" and header["alg"] == "RS256" and header["kid"]
    assert claims["iss"] == id_claims["iss"] and claims["aud"] == "rp-bc"
    assert claims["sub"] == id_claims["sub"] and claims["sid"] == id_claims["sid"]
    assert claims["events"] == {EVENT: {}}
    assert "nonce" not in claims
    assert claims["exp"] - claims["iat"] == 120 and abs(claims["iat"] - time.time()) < 30
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16


def test_token_is_signed_with_the_clients_id_token_alg(app, client, seller, receiver):
    assert app.config["ID_TOKEN_ALG"] != "ES256"  # else this would not tell the client's alg from the default
    flow, body = signed_in_flow(client, rp_with(receiver.url, id_token_signed_response_alg="ES256"))
    log_out(flow, body)
    header, _ = verify_with_jwks(receiver.tokens[0])
    assert header["alg"] == "ES256"


def _lapse(sid, **changes):
    db.session.execute(db.update(BrowserSession).where(BrowserSession.sid == sid).values(**changes))
    db.session.commit()


@pytest.mark.parametrize("lapse", ["idle", "expired"])
def test_a_logout_naming_a_lapsed_session_ends_it_as_a_logout_does(app, client, seller, receiver, lapse):
    """A session that idled out or passed its lifetime gives no single sign-on, but nobody had
    ended it: a logout with a hint naming it used to say "signed out" and leave its families
    live (refreshing, with ID tokens under its sid) and its relying parties untold."""
    app.config["SESSION_IDLE_TTL"] = 1800
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    sid = keyring().verify(body["id_token"])["sid"]
    long_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    _lapse(sid, **({"last_seen_at": long_ago} if lapse == "idle" else {"expires_at": long_ago}))

    resp = log_out(flow, body)
    assert resp.status_code == 303 and resp.headers["Location"] == "https://rp.example.com/bye"
    db.session.expire_all()
    assert db.session.scalars(db.select(BrowserSession.ended_at).filter_by(sid=sid)).one() is not None
    assert None not in db.session.scalars(db.select(Grant.revoked_at).filter_by(account_id=seller.id)).all()
    assert [verify_with_jwks(t)[1]["sid"] for t in receiver.tokens] == [sid]
    assert error_of(refresh(flow.client, flow.rp, body["refresh_token"])) == (400, "invalid_grant")


def test_a_hint_never_ends_a_live_session_from_a_browser_without_it(app, client, seller, receiver):
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    sid = keyring().verify(body["id_token"])["sid"]
    elsewhere = app.test_client()  # no cookie: the hint's holder, not the seller's browser
    elsewhere.get("/logout", query_string={"id_token_hint": body["id_token"]})
    db.session.expire_all()
    assert db.session.scalars(db.select(BrowserSession.ended_at).filter_by(sid=sid)).one() is None
    assert receiver.received == []


def test_every_client_of_the_session_is_told_each_with_its_own_aud(app, client, seller, receiver):
    first = rp_with(receiver.url, "rp-one")
    second = rp_with(receiver.url.replace("/backchannel-logout", "/other"), "rp-two")
    silent = register_client("rp-silent")  # no backchannel_logout_uri: nothing is sent
    flow, body = signed_in_flow(client, first)
    for rp in (second, silent):
        Flow(client, rp).login_code()  # single sign-on adds the client to the session
    log_out(flow, body)
    auds = sorted(verify_with_jwks(t)[1]["aud"] for t in receiver.tokens)
    assert auds == ["rp-one", "rp-two"]
    assert len({verify_with_jwks(t)[1]["jti"] for t in receiver.tokens}) == 2


def test_retries_are_bounded_and_the_failure_is_kept_for_later(app, client, seller, receiver):
    app.config["BACKCHANNEL_ATTEMPTS"] = 3
    receiver.status = 500
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    assert log_out(flow, body).status_code == 303
    assert len(receiver.received) == 3
    assert len(backchannel.pending_ids()) == 1
    # Each try carries a token signed for it: one signed when the logout began could expire
    # behind a queue of relying parties that time out, and then be refused for good.
    assert len({verify_with_jwks(t)[1]["jti"] for t in receiver.tokens}) == 3

    receiver.status = 200
    report = backchannel.retry_pending()
    assert report.delivered == ["rp-bc"]
    assert len(receiver.received) == 4
    first, last = (verify_with_jwks(t)[1] for t in (receiver.tokens[0], receiver.tokens[-1]))
    assert last["jti"] != first["jti"] and last["sid"] == first["sid"]  # a fresh token, same session
    assert backchannel.retry_pending().delivered == []  # claimed once
    assert len(receiver.received) == 4


def test_a_failure_that_cannot_be_kept_for_retry_keeps_the_delivery_it_was_leased_from(
        app, client, seller, receiver, monkeypatch, caplog):
    """The retry's row cannot be written (the database failed over meanwhile): the row the
    delivery was leased from must stay, for retry_pending() once its lease is over. It was
    deleted all the same, and the relying party never told."""
    import sqlalchemy.exc

    app.config["BACKCHANNEL_ATTEMPTS"] = 1
    receiver.status = 503
    real_insert, inserts = backchannel.insert, []

    def second_insert_fails(table):
        inserts.append(table)  # the first: the delivery's row, with the session's end
        if len(inserts) == 2:  # the second: its retry's, after the failed delivery
            raise sqlalchemy.exc.OperationalError("INSERT", {}, ConnectionError("server closed the connection"))
        return real_insert(table)

    monkeypatch.setattr(backchannel, "insert", second_insert_fails)
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    with caplog.at_level(logging.ERROR, logger="idp.logout"):
        assert log_out(flow, body).status_code == 303
    assert len(inserts) == 2 and "could not be kept for retry" in caplog.text
    assert len(backchannel.pending_ids()) == 1  # the leased row, taken again once its lease is over


def test_a_refusal_is_not_retried(app, client, seller, receiver):
    app.config["BACKCHANNEL_ATTEMPTS"] = 3
    receiver.status = 400
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    log_out(flow, body)
    assert len(receiver.received) == 1
    assert backchannel.pending_ids() == []


@pytest.mark.parametrize("status", [408, 425, 429])
def test_a_not_now_answer_is_kept_for_the_next_retry_run(app, client, seller, receiver, status):
    """A rate limiter or proxy in front of the relying party (429, 408, 425) refused nothing:
    the logout waits for the next retry run, without hammering it at once."""
    app.config["BACKCHANNEL_ATTEMPTS"] = 3
    receiver.status = status
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    log_out(flow, body)
    assert len(receiver.received) == 1
    assert len(backchannel.pending_ids()) == 1
    receiver.status = 200
    assert backchannel.retry_pending().delivered == ["rp-bc"]


def test_unreachable_rp_does_not_fail_the_logout(app, client, seller, caplog):
    app.config["BACKCHANNEL_ATTEMPTS"] = 2
    flow, body = signed_in_flow(client, rp_with(closed_port_url()))
    with caplog.at_level(logging.WARNING, logger="idp.logout"):
        resp = log_out(flow, body)
    assert resp.status_code == 303 and flow.client.get_cookie("idp_session") is None
    assert len(backchannel.pending_ids()) == 1
    assert "rp-bc" in caplog.text and "ConnectionRefusedError" in caplog.text
    assert "eyJ" not in caplog.text  # never the token


class RawRP:
    """A relying party's endpoint speaking raw HTTP: after the request it sends ``head``, then
    ``drip`` every ``every`` seconds until the IdP hangs up (what requests never did while
    each read still got a byte within its timeout)."""

    def __init__(self, head: bytes, drip: bytes, every: float):
        self.head, self.drip, self.every, self.hung_up = head, drip, every, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/bc"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(self.head)
                while not self.hung_up.wait(self.every):
                    conn.sendall(self.drip)
            except OSError:
                self.hung_up.set()

    def close(self):
        self.hung_up.set()
        self.listener.close()


def _deliver_in_thread(url):
    outcome = []
    t = threading.Thread(target=lambda: outcome.append(
        backchannel.deliver("rp-slow", url, lambda: "t", timeout=0.5, attempts=1)), daemon=True)
    t.start()
    t.join(30)  # a bound on the test, not a measurement: unbounded, the delivery never returned
    return outcome


def test_an_rp_answering_a_byte_at_a_time_gets_the_timeout_not_a_thread_for_ever():
    rp = RawRP(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", every=0.05)
    try:
        assert _deliver_in_thread(rp.url) == ["retry"]
    finally:
        rp.close()


def _self_signed(tmp_path):
    """A certificate for 127.0.0.1 and a client context that trusts it (the CA bundle's stand-in)."""
    import datetime
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return server, ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))


def test_an_rp_answering_a_byte_at_a_time_over_tls_gets_the_timeout(tmp_path, monkeypatch):
    """After the handshake the connection is a new socket object (wrapping detaches the one
    connected): the deadline must reach it too."""
    server_tls, client_tls = _self_signed(tmp_path)
    monkeypatch.setattr(backchannel, "_tls", lambda: client_tls)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        raw, _ = listener.accept()
        with server_tls.wrap_socket(raw, server_side=True) as conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not stop.wait(0.05):
                    conn.sendall(b"a")
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        assert _deliver_in_thread(f"https://127.0.0.1:{listener.getsockname()[1]}/bc") == ["retry"]
    finally:
        stop.set()
        listener.close()


def test_an_endless_answer_body_is_never_read():
    """§2.8: the status says it all. requests read the body whole: gigabytes, for ever."""
    rp = RawRP(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"10000\r\n" + b"x" * 65536 + b"\r\n",
               every=0.001)
    try:
        assert _deliver_in_thread(rp.url) == ["ok"]
        assert rp.hung_up.wait(30), "the IdP kept the connection open"
    finally:
        rp.close()


def test_deliveries_reach_an_ipv6_literal_on_its_default_port_and_a_path_that_is_not_ascii(monkeypatch):
    """http.client takes the last ':' of a bare IPv6 host for a port separator; and a request
    line must be ASCII: both were deliverable with requests and must stay so."""
    import http.server

    paths = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            paths.append(self.path)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    class V6Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6

    server = V6Server(("::1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    real = socket.getaddrinfo
    # "http://[::1]/bc" names port 80: send it to the test server's port instead, and check
    # the address asked for is the whole IPv6 literal on port 80.
    asked = []
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda host, p, *a, **k: asked.append((host, p)) or real(host, port, *a, **k))
    try:
        assert backchannel.deliver("rp", "http://[::1]/bc", lambda: "t", timeout=2, attempts=1) == "ok"
        assert backchannel.deliver("rp", "http://[::1]/d\u00e9connexion?x=\u00e9", lambda: "t", timeout=2,
                                   attempts=1) == "ok"
    finally:
        server.shutdown()
        server.server_close()
    assert asked == [("::1", 80), ("::1", 80)]
    assert paths == ["/bc", "/d%C3%A9connexion?x=%C3%A9"]


def test_a_hanging_rp_does_not_hold_the_user(app, client, seller, receiver):
    app.config.update(BACKCHANNEL_TIMEOUT=0.3, BACKCHANNEL_ATTEMPTS=1)
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    receiver.release.clear()  # the RP holds every delivery for 10 s
    resp = log_out(flow, body)
    # The seller's answer came while the RP still held the delivery: bounded by
    # BACKCHANNEL_TIMEOUT, not by the RP (waited out, the RP would have recorded it).
    still_held = receiver.received == []
    receiver.release.set()
    assert resp.status_code == 303 and still_held
    assert receiver.delivered.wait(10) and len(receiver.received) == 1  # it was sent, and held


def test_no_database_transaction_is_held_while_relying_parties_answer(app, client, seller, receiver, monkeypatch):
    """The logout waits up to BACKCHANNEL_TIMEOUT on relying parties: meanwhile its pooled
    database connection must not sit idle in a transaction (held from the pool, and on
    PostgreSQL holding back vacuum). Observed at the wait itself, in the request's context."""
    seen, real_wait = [], backchannel.wait

    def watching_wait(*args, **kwargs):
        seen.append(db.session().in_transaction())
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(backchannel, "wait", watching_wait)
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    assert log_out(flow, body).status_code == 303
    assert len(receiver.received) == 1 and seen == [False]


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/",
                                 "/relative", "http:///nohost", "https://rp.example.com/cb#frag"])
def test_only_http_uris_are_contacted(client, seller, uri):
    flow, body = signed_in_flow(client, rp_with(uri))
    assert log_out(flow, body).status_code == 303
    assert backchannel.pending_ids() == []


def test_redirects_are_not_followed(app, client, seller, receiver):
    """A relying party that answers with a redirect (to a host the IdP should never be made
    to post to): the delivery ends there, the redirect is not followed (§2.5)."""
    with LogoutReceiver() as target:
        receiver.status, receiver.location = 307, target.url  # 307: a follower would post again
        flow, body = signed_in_flow(client, rp_with(receiver.url))
        log_out(flow, body)
        assert len(receiver.received) == 1 and target.received == []
    assert backchannel.pending_ids() == []


def test_sign_out_everywhere_notifies_each_session(app, seller, receiver):
    rp = rp_with(receiver.url)
    sids = set()
    for _ in range(2):
        _, body = signed_in_flow(app.test_client(), rp)
        sids.add(keyring().verify(body["id_token"])["sid"])
    summary = sign_out_everywhere(seller, actor="operator")
    assert summary["backchannel_delivered"] == 2
    assert {verify_with_jwks(t)[1]["sid"] for t in receiver.tokens} == sids


def test_a_pending_delivery_survives_a_redis_flush(app, client, seller, receiver):
    """Kept in the database: losing the store must not leave the RP with a session we ended."""
    app.config["BACKCHANNEL_ATTEMPTS"] = 1
    receiver.status = 503
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    log_out(flow, body)
    assert len(backchannel.pending_ids()) == 1
    store().clear()
    receiver.status = 200
    assert backchannel.retry_pending().delivered == ["rp-bc"]
    assert verify_with_jwks(receiver.tokens[-1])[1]["sid"] == verify_with_jwks(receiver.tokens[0])[1]["sid"]
    assert backchannel.pending_ids() == []


def test_pending_deliveries_are_abandoned_a_day_after_the_first(app, client, seller, receiver, caplog):
    app.config["BACKCHANNEL_ATTEMPTS"] = 1
    receiver.status = 503
    with freeze_time(datetime.now(timezone.utc)) as clock:  # not before the session's signing keys
        flow, body = signed_in_flow(client, rp_with(receiver.url))
        log_out(flow, body)
        clock.tick(backchannel.PENDING_TTL - 60)
        assert backchannel.retry_pending().failed == ["rp-bc"]  # still within the day: tried, kept
        assert len(backchannel.pending_ids()) == 1
        clock.tick(120)
        receiver.status = 200
        with caplog.at_level(logging.ERROR, logger="idp.logout"):
            report = backchannel.retry_pending()
    assert report.delivered == report.failed == [] and len(receiver.received) == 2
    assert backchannel.pending_ids() == []
    assert "client=rp-bc abandoned after 2 deliveries" in caplog.text


def test_failed_deliveries_wait_longer_after_each_failure(app, client, seller, receiver, monkeypatch):
    """A relying party down for longer than a few retry runs (a deploy) is still told: the
    retries are spaced out, 5 min after the first failure, 10 after the second, and so on.
    (The failure is recorded by a delivery thread, which freezegun leaves on the real clock:
    the wait is read from the row, and its end brought forward to now.)"""
    monkeypatch.setattr(backchannel, "RETRY_WAIT", 300)
    app.config["BACKCHANNEL_ATTEMPTS"] = 1
    receiver.status = 503
    log_out(*signed_in_flow(client, rp_with(receiver.url)))
    waits = []
    for _ in range(backchannel.MAX_TRIES - 1):
        row = db.session.execute(db.select(backchannel._PENDING)).one()
        waits.append(row.leased_until - row.recorded_at)
        assert backchannel.retry_pending().failed == []  # not before its wait is over
        db.session.execute(db.update(backchannel._PENDING).values(leased_until=int(time.time()) - 1))
        db.session.commit()
        assert backchannel.retry_pending().failed == ["rp-bc"]
    assert waits == [300, 600, 1200, 2400, 4800, 9600, 19200]
    assert len(receiver.received) == backchannel.MAX_TRIES and backchannel.pending_ids() == []  # given up


def test_two_concurrent_retries_claim_each_delivery_once(app, client, seller):
    app.config["BACKCHANNEL_ATTEMPTS"] = 1
    rp = rp_with(closed_port_url())
    for _ in range(3):
        log_out(*signed_in_flow(app.test_client(), rp))
    assert len(backchannel.pending_ids()) == 3

    def claim():
        with app.app_context():
            return backchannel._claim()

    assert sum(map(len, race(claim, 2))) == 3
    assert len(backchannel.pending_ids()) == 3 and backchannel._claim() == []  # leased until settled


def test_a_run_takes_no_more_deliveries_than_it_can_settle_within_its_lease(app, client, seller, monkeypatch):
    """Else a row could be leased again while its first delivery still runs: told twice."""
    app.config["BACKCHANNEL_ATTEMPTS"] = 1
    rp = rp_with(closed_port_url())
    for _ in range(backchannel.MAX_WORKERS + 1):
        log_out(*signed_in_flow(app.test_client(), rp))
    monkeypatch.setattr(backchannel, "LEASE", 1)  # shorter than one delivery can take
    assert backchannel.per_run() == backchannel.MAX_WORKERS
    with freeze_time(datetime.now(timezone.utc)):  # the second run comes within the first one's lease
        assert len(backchannel._claim()) == backchannel.MAX_WORKERS
        assert len(backchannel._claim()) == 1  # the oldest went first; this one waited


def test_a_retry_run_that_dies_leaves_its_deliveries_to_the_next_one(app, client, seller, receiver):
    """A row is deleted once its delivery is settled, not when a run takes it: a worker killed
    half-way (a deploy) must not lose a relying party's logout."""
    app.config["BACKCHANNEL_ATTEMPTS"] = 1
    receiver.status = 503
    with freeze_time(datetime.now(timezone.utc)) as clock:  # not before the session's signing keys
        log_out(*signed_in_flow(client, rp_with(receiver.url)))
        assert len(backchannel.pending_ids()) == 1
        receiver.status = 200
        # The failure was recorded by the delivery thread, which freezegun leaves on the real
        # clock (a second or so ahead of this frozen one): move past it.
        clock.tick(5)
        assert len(backchannel._claim()) == 1  # a run takes the row, and its process dies
        assert backchannel.retry_pending().delivered == []  # leased: nobody else takes it meanwhile
        clock.tick(backchannel.LEASE + 1)
        assert backchannel.retry_pending().delivered == ["rp-bc"]
    assert len(receiver.received) == 2  # the failed delivery at logout, then the retry
    assert backchannel.pending_ids() == []


def test_a_delivery_whose_worker_died_before_it_settled_is_retried_after_its_lease(
        app, client, seller, receiver, monkeypatch):
    """Every delivery is written ahead, leased for as long as it can take: a worker killed
    before it settles (SIGKILL, out of memory, a shutdown's kill timeout) leaves it to the next
    retry run once the lease is over. Not before: meanwhile the delivery may still be running."""
    deliver = backchannel._deliver_or_record
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    with freeze_time(datetime.now(timezone.utc)) as clock:
        monkeypatch.setattr(backchannel, "_deliver_or_record", lambda *args: False)  # dies before sending
        assert log_out(flow, body).status_code == 303
        assert receiver.received == [] and len(backchannel.pending_ids()) == 1
        monkeypatch.setattr(backchannel, "_deliver_or_record", deliver)
        assert backchannel.retry_pending().delivered == []  # leased to the dead worker
        clock.tick(backchannel._delivery_time() + 2)
        assert backchannel.retry_pending().delivered == ["rp-bc"]
    assert len(receiver.tokens) == 1 and backchannel.pending_ids() == []
    assert verify_with_jwks(receiver.tokens[0])[1]["sid"] == keyring().verify(body["id_token"])["sid"]


@pytest.mark.parametrize("ending", ["logout", "everywhere"])
def test_a_worker_dying_right_after_the_session_ended_leaves_its_deliveries(app, client, seller, receiver,
                                                                             monkeypatch, ending):
    """The deliveries' rows are committed with the session's end: a failure or a killed worker
    before notify() starts leaves them to the retry run. A second logout could not tell the
    relying party: it finds the session ended already."""
    flow, body = signed_in_flow(client, rp_with(receiver.url))

    def dies(targets_, max_wait=None):
        raise RuntimeError("the worker is killed here")

    with freeze_time(datetime.now(timezone.utc)) as clock:
        with monkeypatch.context() as patched:
            patched.setattr(backchannel, "notify", dies)
            if ending == "logout":
                assert log_out(flow, body).status_code == 500
            else:
                with pytest.raises(RuntimeError):
                    sign_out_everywhere(seller)
        assert receiver.received == [] and len(backchannel.pending_ids()) == 1
        clock.tick(backchannel._delivery_time() + 2)
        assert backchannel.retry_pending().delivered == ["rp-bc"]
    assert verify_with_jwks(receiver.tokens[0])[1]["sid"] == keyring().verify(body["id_token"])["sid"]


def test_a_settled_delivery_leaves_no_row(app, client, seller, receiver):
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    assert log_out(flow, body).status_code == 303
    assert len(receiver.tokens) == 1 and backchannel.pending_ids() == []


def test_deliveries_an_earlier_release_kept_in_the_store_are_retried_once(app, client, seller, receiver):
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    sid = keyring().verify(body["id_token"])["sid"]
    sub = keyring().verify(body["id_token"])["sub"]
    now = int(time.time())
    store().put("bcl:old1", {"client_id": "rp-bc", "sub": sub, "sid": sid, "tries": 1, "first_at": now}, 3600)
    store().sadd(f"bcl-pending:{now // 3600}", "old1", 7200)
    assert backchannel.retry_pending().delivered == ["rp-bc"]
    assert verify_with_jwks(receiver.tokens[0])[1]["sid"] == sid
    assert backchannel.retry_pending().delivered == []


def _two_rps(receiver):
    return (rp_with(receiver.url, "rp-a"), rp_with(receiver.url.replace("/backchannel-logout", "/b"), "rp-b"))


def _refresh(client, rp, refresh_token):
    return client.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                       auth=(rp.client_id, rp.secret))


def test_signing_in_again_keeps_the_session_its_relying_parties_know(app, client, seller, receiver):
    """prompt=login (or max_age) proves who the seller is again: the session keeps its sid
    and its clients, so a later logout still reaches every relying party of it."""
    a, b = _two_rps(receiver)
    flow_a, flow_b = Flow(client, a), Flow(client, b)
    tokens_a = flow_a.redeem(flow_a.login_code()).get_json()
    tokens_b = flow_b.redeem(flow_b.login_code(prompt="login")).get_json()
    sid = keyring().verify(tokens_a["id_token"])["sid"]
    assert keyring().verify(tokens_b["id_token"])["sid"] == sid
    log_out(flow_b, tokens_b)
    assert sorted(verify_with_jwks(t)[1]["aud"] for t in receiver.tokens) == ["rp-a", "rp-b"]
    assert {verify_with_jwks(t)[1]["sid"] for t in receiver.tokens} == {sid}
    assert error_of(_refresh(client, a, tokens_a["refresh_token"]))[1] == "invalid_grant"


def test_another_seller_signing_in_ends_the_first_ones_session_as_a_logout(app, client, seller, receiver):
    from idp.login.password import hash_password
    from idp.models import Account

    other = Account(email="other@example.com", email_verified=True, password_hash=hash_password(PASSWORD))
    db.session.add(other)
    db.session.commit()
    a, b = _two_rps(receiver)
    flow_a, flow_b = Flow(client, a), Flow(client, b)
    tokens_a = flow_a.redeem(flow_a.login_code()).get_json()
    first_sid = keyring().verify(tokens_a["id_token"])["sid"]
    resp = flow_b.sign_in(flow_b.authorize(prompt="login"), email="other@example.com")
    assert "code=" in resp.headers["Location"]
    assert [verify_with_jwks(t)[1]["sid"] for t in receiver.tokens] == [first_sid]  # rp-a told
    assert error_of(_refresh(client, a, tokens_a["refresh_token"]))[1] == "invalid_grant"


def test_an_unreachable_store_does_not_lose_the_deliveries_in_the_database(app, client, seller, receiver):
    """retry_pending claims the database rows, then reads an earlier release's records from
    the store: a Redis outage there must not drop the rows already claimed."""
    from idp import create_app
    from tests.servers import free_port

    app.config["BACKCHANNEL_ATTEMPTS"] = 1
    receiver.status = 503
    flow, body = signed_in_flow(client, rp_with(receiver.url))
    log_out(flow, body)
    assert len(backchannel.pending_ids()) == 1
    receiver.status = 200
    keep = ("ISSUER", "KEYS_DIR", "DATABASE_URL", "STORE_NAMESPACE", "TESTING", "BACKCHANNEL_ATTEMPTS")
    down = create_app({**{k: app.config[k] for k in keep if k in app.config},
                       "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    with down.app_context():
        report = backchannel.retry_pending()
        db.engine.dispose()
    assert report.delivered == ["rp-bc"]


def test_sign_out_everywhere_still_tells_the_relying_parties_when_the_store_fails(app, seller, receiver,
                                                                                   monkeypatch):
    """Sessions and families end in one transaction; the store's half (the access tokens)
    failing half-way must not lose the back-channel logout: a rerun would find nothing to end."""
    import redis.exceptions

    from idp.models import Grant
    from idp.oauth import tokens

    flow, body = signed_in_flow(app.test_client(), rp_with(receiver.url))

    def store_down(*args):
        raise redis.exceptions.ConnectionError("Connection refused")

    monkeypatch.setattr(tokens, "kill_access_tokens", store_down)
    summary = sign_out_everywhere(db.session.get(type(seller), seller.id), actor="operator")
    assert summary["sessions"] == 1 and summary["grants"] == 1 and summary["access_tokens_left_to_expire"]
    assert len(receiver.received) == 1
    assert db.session.execute(db.select(Grant.revoked_at)).scalar_one() is not None
