"""OpenID Connect Back-Channel Logout 1.0: logout tokens and their delivery.

A logout token (§2.4) is a JWT signed like the client's ID tokens, typed ``logout+jwt``
(§2.4, RFC 8417 style explicit typing), with iss, aud, iat, exp, jti, sub, sid and the
back-channel logout event, and never a nonce (§2.4: "A nonce Claim MUST NOT be present").
It is POSTed as ``logout_token=...`` (application/x-www-form-urlencoded, §2.5) to the
``backchannel_logout_uri`` registered on the client, and to nothing else: only that URI,
only http(s), redirects not followed, no proxy or .netrc credentials from the environment.

Delivery never holds the user for long: all relying parties are contacted at once by a
small thread pool and the caller waits at most BACKCHANNEL_TIMEOUT seconds in total. Each
delivery makes up to BACKCHANNEL_ATTEMPTS tries, each done within BACKCHANNEL_TIMEOUT (the
connection to every address of the host, TLS, the request, the status line and headers of
the answer; the DNS lookup aside; the answer's body is never read,
§2.8: the status says it all) and a short doubling backoff, and keeps going in the background
if the caller stopped waiting. A relying party that answers a byte at a time, or with an
endless body, holds a delivery thread no longer than that: bounded deliveries keep the pool,
a worker's exit (which finishes them) and the leases below honest.
Every delivery is a row of ``backchannel_delivery`` (idp.models.delivery) before it starts,
leased for as long as its process can take to settle it: in the database, so neither a
Redis restart nor a worker killed half-way (SIGKILL, out of memory, a shutdown's kill
timeout) can drop it and leave a relying party holding a session the IdP ended. Its row goes
once it is delivered or refused; a delivery that still fails (network error or 5xx; a 4xx is
the RP refusing the token, §2.8, and like a 3xx is not retried) leaves a row for a retry
instead, taken no sooner than RETRY_WAIT later (doubled after each further failure), and one
whose process died is one once its lease is over. ``retry_pending()``
(the server's ``logout-retry``
job, or `idp logout retry`, every few minutes) leases the rows atomically (one UPDATE ...
RETURNING: of two concurrent runs, each row goes to one, for LEASE seconds) and delivers a
freshly signed token (the original one expires after two minutes); a row is deleted only once
its delivery is settled (delivered, refused, or failed again and recorded anew), so a run that
dies half-way (a worker killed, a deploy) leaves its rows to the next run after the lease, at
the price of a relying party perhaps told twice. After MAX_TRIES deliveries, or PENDING_TTL
after the first, it gives up. Failures are logged with the client id and the reason, never
with the token.
"""

from __future__ import annotations

import http.client
import logging
import math
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from urllib.parse import quote, urlencode, urlsplit

import certifi
from flask import current_app

from sqlalchemy import delete, insert, or_, select, update

from ..extensions import db, keyring, store
from ..models import BackchannelDelivery, Client
from ..ops import turns

log = logging.getLogger("idp.logout")

EVENT = "http://schemas.openid.net/event/backchannel-logout"
TOKEN_TTL = 120  # seconds a logout token is valid
BACKOFF = 0.2  # seconds before the second try, doubled for each further one
MAX_WORKERS = 4
PENDING_TTL = 24 * 3600  # how long after the first delivery retry_pending() still tries
MAX_TRIES = 8  # deliveries (each of BACKCHANNEL_ATTEMPTS tries) before giving up
# A delivery that failed waits this long before a retry run takes it again, doubled after
# each further failure: 5 min, 10, 20 ... 320, so the 8 deliveries span about 10.5 hours and a
# relying party down for a deploy or a maintenance window is still told once it is back.
RETRY_WAIT = 300
LEASE = 3600  # seconds a retry run holds the rows it took; it takes no more than it can deliver meanwhile
HOUR = 3600
_PENDING = BackchannelDelivery.__table__


def logout_token_claims(*, issuer: str, client_id: str, sub: str, sid: str | None, now: int, jti: str) -> dict:
    """The claims of a logout token (§2.4). Pure."""
    claims = {"iss": issuer, "aud": client_id, "iat": now, "exp": now + TOKEN_TTL, "jti": jti, "sub": sub,
              "events": {EVENT: {}}}
    if sid:
        claims["sid"] = sid
    return claims


def contactable(uri: str | None) -> bool:
    """Only absolute http(s) URIs without a fragment (§2.2) are ever called."""
    if not isinstance(uri, str):
        return False
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.fragment


@dataclass(frozen=True)
class Target:
    """One logout token to deliver: a client, the account's sub and the session's sid."""

    client_id: str
    sub: str
    sid: str | None
    tries: int = 0  # earlier deliveries that failed (retry_pending)
    first_at: int = 0
    row_id: str | None = None  # the backchannel_delivery row it was leased from (retry_pending)


def targets(sessions) -> list[Target]:
    """Targets for ``sessions``: (sub, sid, client_ids) triples; clients without a URI are skipped."""
    sessions = list(sessions)
    wanted = {c for _, _, clients in sessions for c in clients or []}
    if not wanted:
        return []
    rows = db.session.execute(db.select(Client).where(Client.client_id.in_(wanted))).scalars()
    reachable = {c.client_id for c in rows if contactable(c.backchannel_logout_uri)}
    now = int(time.time())
    return [Target(c, sub, sid, first_at=now) for sub, sid, clients in sessions for c in clients or []
            if c in reachable]


@dataclass
class Report:
    delivered: list[str]
    failed: list[str]  # gave up or recorded for retry
    pending: list[str]  # still being tried in the background when the caller stopped waiting


def notify(targets_: list[Target], max_wait: float | None = None) -> Report:
    """Sign and deliver logout tokens to every target concurrently; wait at most ``max_wait``
    seconds (default BACKCHANNEL_TIMEOUT), after which deliveries go on in the background.

    Never raises: what cannot be delivered is logged and recorded for retry_pending()."""
    report = Report([], [], [])
    if not targets_:
        return report
    cfg = current_app.config
    # Both checked when the configuration is read (idp.config): a number in (0, 60], a whole one in [1, 10].
    timeout, attempts = float(cfg["BACKCHANNEL_TIMEOUT"]), cfg["BACKCHANNEL_ATTEMPTS"]
    jobs = []
    for target in targets_:
        try:
            client = db.session.execute(db.select(Client).filter_by(client_id=target.client_id)).scalar_one_or_none()
            if client is None or not contactable(client.backchannel_logout_uri):
                _settle(db.engine, target)  # nobody to tell any more
                continue
            jobs.append((target, client.backchannel_logout_uri, _signer(client, target)))
        except Exception as exc:  # noqa: BLE001  (a logout must finish even if one client cannot be signed for)
            log.error("back-channel logout to client=%s not sent: %s", target.client_id, type(exc).__name__)
            _retry_later(db.engine, target)
            report.failed.append(target.client_id)
    # These lookups began a transaction (every caller has committed its own): ended with the
    # rows written ahead, before waiting on relying parties, or its pooled connection would sit
    # "idle in transaction" for up to BACKCHANNEL_TIMEOUT, one for each logout in flight.
    jobs = _write_ahead(jobs)
    if not jobs:
        return report
    engine = db.engine
    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(jobs)), thread_name_prefix="bcl")
    futures = {pool.submit(_deliver_or_record, engine, target, uri, token, timeout, attempts): target
               for target, uri, token in jobs}
    with turns.waiting():  # up to BACKCHANNEL_TIMEOUT on relying parties: the worker serves others meanwhile
        done, not_done = wait(futures, timeout=timeout if max_wait is None else max_wait)
    pool.shutdown(wait=False)  # stragglers finish (and record themselves) in the background
    for future in done:
        (report.delivered if future.result() else report.failed).append(futures[future].client_id)
    report.pending.extend(futures[f].client_id for f in not_done)
    return report


def _leased(targets_: list[Target]) -> tuple[list[Target], list[dict]]:
    """Each target without a row (a retry's has its lease) with the row it gets: leased for
    as long as this process can take to settle them all. A worker killed before they settle
    (SIGKILL, out of memory, a shutdown's kill timeout) leaves them to retry_pending() once
    the lease is over, rather than to nobody. The row goes when its delivery settles
    (``_settle``), a failed one leaving a new row with one more try."""
    now = int(time.time())
    lease = now + math.ceil(_delivery_time() * math.ceil(len(targets_) / MAX_WORKERS)) + 1
    rows, out = [], []
    for target in targets_:
        if target.row_id is None:
            target = replace(target, first_at=target.first_at or now, row_id=secrets.token_urlsafe(12))
            row = {**asdict(target), "id": target.row_id, "recorded_at": now, "leased_until": lease}
            del row["row_id"]
            rows.append(row)
        out.append(target)
    return out, rows


def written_ahead(targets_: list[Target]) -> list[Target]:
    """The deliveries a logout is about to make, their rows added to the caller's transaction:
    committed with the session's end, or not at all. A failure or a killed worker between
    that commit and notify() would otherwise leave a relying party untold for good, since a
    second logout finds the session ended already. Pass the result to notify()."""
    out, rows = _leased(targets_)
    if rows:
        db.session.execute(insert(_PENDING), rows)
    return out


def _write_ahead(jobs: list) -> list:
    """Rows for the deliveries about to start that have none (notify's callers other than a
    logout), and commit."""
    try:
        targets_ = written_ahead([target for target, _, _ in jobs])
        db.session.commit()
    except Exception as exc:  # noqa: BLE001  (the database in an outage: deliver anyway, unrecorded)
        db.session.rollback()
        log.error("back-channel logout deliveries not written ahead: %s", type(exc).__name__)
        return jobs
    return [(target, uri, token) for target, (_, uri, token) in zip(targets_, jobs)]


def _signer(client: Client, target: Target) -> Callable[[], str]:
    """A logout token for ``target``, signed when called. Signed at each try, not when the
    logout starts: a retry run sends hundreds one after another, a few threads at a time,
    behind relying parties that time out, and a token signed up front could expire
    (TOKEN_TTL) before its turn; the relying party would refuse it, for good (a 4xx).
    Everything it needs is read here, in the app context: the pool thread has none."""
    cfg = current_app.config
    ring, issuer, client_id = keyring(), cfg["ISSUER"], client.client_id  # plain values: the commit expires rows
    alg = client.id_token_signed_response_alg or cfg["ID_TOKEN_ALG"]
    ring.active(alg)  # no key to sign with: refused now, recorded for retry by the caller

    def sign() -> str:
        claims = logout_token_claims(issuer=issuer, client_id=client_id, sub=target.sub, sid=target.sid,
                                     now=int(time.time()), jti=secrets.token_urlsafe(16))
        return ring.sign(claims, alg, typ="logout+jwt")

    return sign


def _deliver_or_record(engine, target: Target, uri: str, sign: Callable[[], str], timeout: float,
                       attempts: int) -> bool:
    """Runs in a pool thread: no app context, only the database engine it was given."""
    try:
        outcome = deliver(target.client_id, uri, sign, timeout=timeout, attempts=attempts)
        if outcome == "retry":
            _retry_later(engine, target)
        else:
            _settle(engine, target)
        return outcome == "ok"
    except Exception as exc:  # noqa: BLE001  (a thread must never die with an unlogged error)
        log.error("back-channel logout to client=%s crashed: %s", target.client_id, type(exc).__name__)
        return False


# Answers that say "not now" rather than "no" (RFC 9110 §15.5.9, RFC 8470 §5.2, RFC 6585
# §4): a rate limiter or a proxy in front of the relying party. Tried again at the next
# retry run (RETRY_WAIT on), not at once: the tries of one delivery come within a second.
NOT_NOW = (408, 425, 429)


def deliver(client_id: str, uri: str, sign: Callable[[], str], *, timeout: float, attempts: int) -> str:
    """POST a logout token, one ``sign()`` makes for each try, up to ``attempts`` times: "ok"
    (2xx), "rejected" (any other answer below 500 but NOT_NOW: trying again would get the
    same) or "retry" (5xx or no answer every time, or a NOT_NOW answer)."""
    for attempt in range(1, attempts + 1):
        body = urlencode({"logout_token": sign()}).encode()
        try:
            status = post_once(uri, body, timeout)
            if 200 <= status < 300:
                return "ok"
            reason = f"HTTP {status}"
            if status in NOT_NOW:
                log.warning("back-channel logout to client=%s put off: %s; kept for retry", client_id, reason)
                return "retry"
            if status < 500:  # 4xx: the RP refused the token (§2.8); 3xx: not followed
                log.warning("back-channel logout to client=%s refused: %s", client_id, reason)
                return "rejected"
        except (OSError, http.client.HTTPException, ValueError) as exc:  # ValueError: a port out of range
            reason = type(exc).__name__
        log.warning("back-channel logout to client=%s failed (try %d/%d): %s", client_id, attempt, attempts, reason)
        if attempt < attempts:
            time.sleep(BACKOFF * 2 ** (attempt - 1))
    return "retry"


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())  # the CA bundle requests uses elsewhere


def post_once(uri: str, body: bytes, timeout: float) -> int:
    """POST ``body`` (form-encoded) to ``uri`` and return the answer's status, all within
    ``timeout`` seconds (the name's DNS lookup aside), its body unread.

    requests (and urllib3 under it) bound each socket operation, not the exchange: a relying
    party sending its headers a byte at a time held a delivery for as long as it liked, and
    one answering with an endless body grew the process by gigabytes, since requests reads
    the body whole. So this is http.client, which reads only as far as the headers, on a
    socket connected here address by address within what is left of the timeout, with a
    timer that shuts it at the deadline (the TLS handshake, the request, the answer). No
    proxy or .netrc settings from the environment, no credentials, no redirects followed."""
    parts = urlsplit(uri)
    https = parts.scheme == "https"
    host, port = parts.hostname, parts.port or (443 if https else 80)
    # The URI as registered may hold characters a request line cannot: percent-encode them
    # (keeping what is encoded already), as requests did.
    target = quote(parts.path or "/", safe=_PATH_SAFE) + (f"?{quote(parts.query, safe=_QUERY_SAFE)}" if parts.query
                                                          else "")
    deadline = time.monotonic() + timeout
    sock = _connect(host, port, deadline)
    cutter = watchdog = None
    cut = threading.Event()
    try:
        # The timer shuts the connection through a duplicate of the socket: wrapping it in
        # TLS detaches the original (the handshake runs on a new socket object), and
        # shutdown(2) acts on the connection whichever descriptor names it.
        cutter = sock.dup()
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (cutter, cut))
        watchdog.daemon = True
        watchdog.start()
        if https:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout)
            conn.sock = _tls().wrap_socket(sock, server_hostname=host)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            conn.sock = sock
        try:
            conn.request("POST", target, body=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded", "Cache-Control": "no-store"})
            status = conn.getresponse().status
        finally:
            conn.close()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if cutter is not None:
            cutter.close()
        sock.close()
    if cut.is_set():  # http.client takes the end of the stream for the end of the headers
        raise TimeoutError("no whole answer within the timeout")
    return status


_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    """A TCP connection to the first address of ``host`` that answers, each try given what is
    left until ``deadline`` (socket.create_connection gives every address the whole timeout)."""
    error: OSError = TimeoutError("no address of the host answered within the timeout")
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(remaining)
            sock.connect(address)
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


def _cut(sock: socket.socket, cut: threading.Event) -> None:
    cut.set()
    try:
        sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once
    except OSError:
        pass


def _abandoned(target: Target, now: int) -> bool:
    """Whether to give up on a delivery (and say so): it failed MAX_TRIES times, or for PENDING_TTL."""
    if target.tries >= MAX_TRIES or now - (target.first_at or now) >= PENDING_TTL:
        log.error("back-channel logout to client=%s abandoned after %d deliveries", target.client_id, target.tries)
        return True
    return False


def _retry_later(engine, target: Target) -> None:
    """A failed delivery: its new row (one more try), then the row it was leased from goes:
    after the new one (a crash in between tells twice, not never), and not at all if the new
    one could not be written (the lease runs out, and retry_pending() takes it again)."""
    if _record(engine, target):
        _settle(engine, target)


def _record(engine, target: Target) -> bool:
    """Keep a failed delivery for retry_pending(), unless it has failed too often or too long.
    False if it should have been kept and could not be (the database failed)."""
    now = int(time.time())
    target = replace(target, tries=target.tries + 1, first_at=target.first_at or now)
    if _abandoned(target, now):
        return True
    # Not leased, but not to be taken before its wait is over (_claim reads both alike).
    row = {**asdict(target), "id": secrets.token_urlsafe(12), "recorded_at": now,
           "leased_until": now + RETRY_WAIT * 2 ** (target.tries - 1)}
    del row["row_id"]
    try:
        with engine.begin() as conn:
            conn.execute(insert(_PENDING).values(row))
        return True
    except Exception as exc:  # noqa: BLE001  (the database in an outage: say so, never crash the thread)
        log.error("back-channel logout to client=%s failed and could not be kept for retry: %s",
                  target.client_id, type(exc).__name__)
        return False


def pending_ids() -> list[str]:
    """Ids of the deliveries waiting for retry, oldest failure first."""
    with db.engine.connect() as conn:
        return list(conn.execute(select(_PENDING.c.id).order_by(_PENDING.c.recorded_at, _PENDING.c.id)).scalars())


def _settle(engine, target: Target) -> None:
    """Delete the row a delivery was leased from, now that it is settled."""
    if target.row_id is None:
        return
    try:
        with engine.begin() as conn:
            conn.execute(delete(_PENDING).where(_PENDING.c.id == target.row_id))
    except Exception as exc:  # noqa: BLE001  (the database in an outage: the next run after the lease tells again)
        log.error("back-channel logout to client=%s settled but its row not deleted: %s", target.client_id,
                  type(exc).__name__)


def _delivery_time() -> float:
    """The longest one delivery can take: every try timing out, and the backoffs between."""
    cfg = current_app.config
    attempts = cfg["BACKCHANNEL_ATTEMPTS"]  # a whole number from 1 to 10 (idp.config)
    return attempts * float(cfg["BACKCHANNEL_TIMEOUT"]) + BACKOFF * 2 ** attempts


def per_run() -> int:
    """How many deliveries one run takes: as many as MAX_WORKERS threads surely settle within
    the lease (1,888 with the default settings), so no row is leased again while its delivery
    is still running; the rest wait for the next run."""
    return MAX_WORKERS * max(1, int(LEASE // _delivery_time()) - 1)


def _claim() -> list[Target]:
    """Lease the oldest waiting deliveries not leased by a live run, at most per_run(),
    atomically (with those an earlier release kept in the store); drop (and log) those given
    up on."""
    now = int(time.time())
    columns = [_PENDING.c[f] for f in ("client_id", "sub", "sid", "tries", "first_at")]
    free = or_(_PENDING.c.leased_until.is_(None), _PENDING.c.leased_until <= now)
    oldest = select(_PENDING.c.id).where(free).order_by(_PENDING.c.recorded_at, _PENDING.c.id).limit(per_run())
    with db.engine.begin() as conn:
        rows = conn.execute(
            update(_PENDING).where(_PENDING.c.id.in_(oldest.scalar_subquery()), free)
            .values(leased_until=now + LEASE).returning(_PENDING.c.id, *columns)).all()
    claimed = [Target(**{k: v for k, v in row._mapping.items() if k != "id"}, row_id=row.id) for row in rows]
    try:
        claimed += _claim_from_store()
    except Exception as exc:  # noqa: BLE001  (the rows above are claimed: they must still be delivered)
        log.warning("back-channel logout records of an earlier release not read: %s", type(exc).__name__)
    kept = []
    for target in claimed:
        if _abandoned(target, now):
            _settle(db.engine, target)
        else:
            kept.append(target)
    return kept


def _claim_from_store() -> list[Target]:
    """Deliveries an earlier release kept in the store (``bcl:<id>``, indexed by hour in
    ``bcl-pending:<hour>``), claimed once with ``consume``, so none is lost at the upgrade."""
    s, hour = store(), int(time.time()) // HOUR
    ids = [i for h in range(hour - PENDING_TTL // HOUR - 1, hour + 1) for i in s.smembers(f"bcl-pending:{h}")]
    return [Target(**record) for record in (s.consume(f"bcl:{i}") for i in ids) if record]


def retry_pending() -> Report:
    """Deliver every recorded failed logout token again (needs an app context). Records whose
    client is gone or has no URI any more are dropped; a delivery that fails again is
    recorded again with one more try counted."""
    claimed = _claim()
    batches = 1 + len(claimed) // MAX_WORKERS
    return notify(claimed, max_wait=_delivery_time() * batches)  # a batch job can wait
