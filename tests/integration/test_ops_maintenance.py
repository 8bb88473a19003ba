"""The maintenance jobs the server runs itself (idp.ops.maintenance): one run per slot
across processes, failures contained, and the real jobs doing their work."""

import logging
import socket
import threading
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from idp import create_app
from idp.cli import cli
from idp.extensions import db
from idp.logout import backchannel
from idp.models import BrowserSession, Grant
from idp.oauth import tokens
from idp.ops import maintenance
from tests.conftest import Flow, register_client
from tests.integration.token_helpers import login

T0 = datetime(2026, 11, 27, 12, 0, 10, tzinfo=timezone.utc)


class Counting:
    """A job that counts its runs (per name) and may fail with a message it must not log."""

    def __init__(self, name, fail=False):
        self.runs = 0
        self.job = maintenance.Job(name, "LOGOUT_RETRY_INTERVAL", self._run)
        self.fail = fail

    def _run(self, config):
        self.runs += 1
        if self.fail:
            raise RuntimeError("a message quoting secret-parameter-value")
        return f"run {self.runs}"


def other_process(app):
    """A second app on the same database and store, as another worker process has: on Redis
    its own connections; the embedded store is one process's memory, so there it is the
    same app (a second look by the same process)."""
    if app.config["REDIS_URL"].startswith("memory:"):
        return app
    keep = ("ISSUER", "KEYS_DIR", "TESTING", "DATABASE_URL", "REDIS_URL", "STORE_NAMESPACE")
    return create_app({k: app.config[k] for k in keep})


def test_a_job_after_a_long_one_claims_the_slot_of_its_own_moment(app):
    """A long logout-retry run must not make the next job claim the slot the tick started in:
    that slot's claim (by another process) has expired with it, and the job would run twice."""
    every = app.config["LOGOUT_RETRY_INTERVAL"]
    with freeze_time(T0) as clock:
        slow = maintenance.Job("slow", "LOGOUT_RETRY_INTERVAL", lambda config: clock.tick(every + 5) and "done")
        job = Counting("count")
        assert maintenance.tick(app, [job.job]) == {"count": "run 1"}  # another process ran this slot's
        ran = maintenance.tick(other_process(app), [slow, job.job])  # started in that slot, ends in the next
        assert ran == {"slow": "done", "count": "run 2"}  # the next slot's run, not a second of the first
        assert maintenance.tick(app, [job.job]) == {}  # and that one runs once
    assert job.runs == 2


def test_each_slot_of_a_job_runs_once_however_many_processes_ask(app):
    job, other = Counting("count"), other_process(app)
    every = app.config["LOGOUT_RETRY_INTERVAL"]
    start = T0.timestamp()
    ran = [maintenance.tick(a, [job.job], now=start) for a in (app, other, app)]
    assert job.runs == 1 and sorted(map(len, ran)) == [0, 0, 1]
    assert maintenance.tick(other, [job.job], now=start + every - 11) == {}  # same slot, later
    assert maintenance.tick(other, [job.job], now=start + every) == {"count": "run 2"}  # the next slot
    assert maintenance.tick(app, [job.job], now=start + every + 1) == {}
    assert job.runs == 2


def test_a_run_that_outlasts_its_interval_is_not_joined_by_the_next_slots(app):
    """A logout-retry run may take most of an hour, its interval is five minutes: the next slot,
    claimed by another process, is left to the run still going, not run beside it."""
    other, every, start = other_process(app), app.config["LOGOUT_RETRY_INTERVAL"], T0.timestamp()
    entered, release, runs = threading.Event(), threading.Event(), []

    def long_run(config):
        runs.append(1)
        entered.set()
        assert release.wait(10)
        return "done"

    job = maintenance.Job("long", "LOGOUT_RETRY_INTERVAL", long_run)
    first = threading.Thread(target=maintenance.tick, args=(app, [job]), kwargs={"now": start})
    first.start()
    try:
        assert entered.wait(10)
        assert maintenance.tick(other, [job], now=start + every) == {}  # the next slot: still running
    finally:
        release.set()
        first.join(10)
    assert maintenance.tick(other, [job], now=start + 2 * every) == {"long": "done"}  # its lease let go
    assert len(runs) == 2


@pytest.mark.parametrize("app", ["sqlite"], indirect=True)  # the embedded store's TTLs follow freezegun
def test_the_lease_of_a_process_that_died_in_a_run_lapses(app):
    from idp.extensions import store

    job, every = Counting("count"), app.config["LOGOUT_RETRY_INTERVAL"]
    with freeze_time(T0) as clock:
        store().add("job:count:running", {"pid": 1, "run": "a process gone"}, maintenance.RUN_LEASE)
        assert maintenance.tick(app, [job.job]) == {}
        clock.tick(max(every, maintenance.RUN_LEASE + 1))
        assert maintenance.tick(app, [job.job]) == {"count": "run 1"}


def test_a_process_whose_clock_is_behind_does_not_run_a_slot_again(app):
    """Clocks of two hosts differ by seconds: the slow one still sees the last slot while the
    claim made early in it here has lived a whole interval."""
    job, other = Counting("count"), other_process(app)
    every = app.config["LOGOUT_RETRY_INTERVAL"]
    with freeze_time(T0) as clock:  # 10 s into a slot
        assert maintenance.tick(app, [job.job]) == {"count": "run 1"}
        clock.tick(every + 5)  # here: 15 s into the next slot
        assert maintenance.tick(other, [job.job], now=T0.timestamp() + every - 20) == {}  # 20 s behind: the last one
    assert job.runs == 1


def test_a_failing_job_is_logged_without_its_text_and_the_next_job_runs(app, caplog):
    bad, good = Counting("bad", fail=True), Counting("good")
    with caplog.at_level(logging.INFO, "idp.maintenance"):
        ran = maintenance.tick(app, [bad.job, good.job], now=T0.timestamp())
    assert ran == {"bad": None, "good": "run 1"}
    assert "maintenance job bad failed: RuntimeError" in caplog.text
    assert "secret-parameter-value" not in caplog.text
    assert "maintenance job good: run 1" in caplog.text
    assert maintenance.tick(app, [bad.job], now=T0.timestamp()) == {}  # its slot is spent: no retry storm


def test_the_keys_job_refused_beside_a_damaged_record_names_it(app, caplog, tmp_path):
    """The one failure whose text is logged: ours, naming the record the operator must repair
    or move away (the job fails at each run until then)."""
    from idp.crypto.keys import KeyRing

    keys_dir = tmp_path / "keys"
    ring = app.extensions["idp.keyring"] = KeyRing(str(keys_dir), app.config["KEY_PUBLISH_AHEAD"],
                                                   app.config["SECRET_KEY"])
    ring.ensure()
    (keys_dir / "inventory.json").write_text('{"not": "a key"}')
    assert maintenance.run(app, maintenance.by_name("keys")) is not None  # nothing to write: nothing refused
    app.config["KEY_ROTATION_DAYS"] = 1
    with freeze_time(datetime.now(timezone.utc) + timedelta(days=2)), caplog.at_level(logging.INFO, "idp.maintenance"):
        assert maintenance.run(app, maintenance.by_name("keys")) is None  # a rotation is due
    assert "maintenance job keys failed: KeysUnreadable:" in caplog.text and "inventory.json" in caplog.text


def test_an_unreachable_store_skips_the_tick(caplog, keys_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = create_app({"KEYS_DIR": keys_dir, "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3",
                       "REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    job = Counting("count")
    from idp.ops import metrics

    failed = metrics.MAINTENANCE_RUNS.labels("other", "failed")  # "count" is no job of ours: "other"
    before = failed._value.get()
    with caplog.at_level(logging.ERROR, "idp.maintenance"):
        assert maintenance.tick(down, [job.job], now=T0.timestamp()) == {}
    assert job.runs == 0 and "maintenance job count: cannot claim its slot: ConnectionError" in caplog.text
    assert failed._value.get() == before + 1  # the failures README says to alert on


def test_the_scheduler_thread_looks_at_start_and_stops_when_told(app):
    ran = threading.Event()
    job = maintenance.Job("signal", "LOGOUT_RETRY_INTERVAL", lambda config: ran.set() or "signalled")
    scheduler = maintenance.Scheduler(app, every=3600, jobs=[job]).start()
    try:
        assert ran.wait(10)  # the first look is at start, not after a tick
    finally:
        scheduler.stop(timeout=10)
    assert not scheduler._thread.is_alive()


def test_only_serving_processes_start_one_scheduler_each(app):
    app.config["MAINTENANCE"] = False
    assert maintenance.start(app) is None
    app.config["MAINTENANCE"] = True
    app.config["LOGOUT_RETRY_INTERVAL"] = app.config["PRUNE_INTERVAL"] = 10**6  # its first look only
    first = maintenance.start(app)
    try:
        assert first is not None and maintenance.start(app) is first
    finally:
        first.stop(timeout=30)
        maintenance._started.clear()


def test_the_prune_job_deletes_ended_families_and_sessions_after_the_grace(app, flow):
    ended = tokens.find_access_token(login(flow)["access_token"])["grant_id"]
    ended_session = db.session.scalar(select(BrowserSession.id_hash))
    assert db.session.get(Grant, ended) is not None
    grace = timedelta(days=app.config["PRUNE_GRACE_DAYS"])
    later = datetime.now(timezone.utc) + timedelta(seconds=app.config["REFRESH_TOKEN_ABSOLUTE_TTL"]) + grace
    with freeze_time(later + timedelta(minutes=1)):
        live = tokens.find_access_token(login(flow)["access_token"])["grant_id"]
        ran = maintenance.tick(app, [maintenance.by_name("prune")])
        assert ran["prune"] == ("1 families, 1 refresh tokens, 0 orphaned refresh tokens, 1 browser sessions, 0 security events")
        db.session.expire_all()
        assert db.session.get(Grant, ended) is None and db.session.get(BrowserSession, ended_session) is None
        assert db.session.get(Grant, live) is not None
        assert db.session.scalar(select(BrowserSession.id_hash)) is not None  # today's session stays


def test_a_signed_out_session_goes_after_the_grace_not_before(app, flow):
    login(flow)
    row = db.session.scalar(select(BrowserSession))
    row.ended_at = datetime.now(timezone.utc)
    db.session.commit()
    grace = timedelta(days=app.config["PRUNE_GRACE_DAYS"])
    with freeze_time(row.ended_at + grace - timedelta(minutes=1)):
        assert maintenance.run(app, maintenance.by_name("prune")).endswith("0 browser sessions, 0 security events")
    with freeze_time(row.ended_at + grace + timedelta(minutes=1)):
        assert maintenance.run(app, maintenance.by_name("prune")).endswith("1 browser sessions, 0 security events")


def test_the_logout_retry_job_delivers_what_failed(app, client, seller, receiver, monkeypatch):
    monkeypatch.setattr(backchannel, "BACKOFF", 0.0)
    monkeypatch.setattr(backchannel, "RETRY_WAIT", 0)  # the next run may take it at once
    app.config["BACKCHANNEL_ATTEMPTS"] = 1
    receiver.status = 500
    rp = register_client("rp-bc", backchannel_logout_uri=receiver.url)
    flow = Flow(client, rp)
    body = flow.redeem(flow.login_code()).get_json()
    client.get("/logout", query_string={"id_token_hint": body["id_token"],
                                        "post_logout_redirect_uri": "https://rp.example.com/bye"})
    assert len(receiver.received) == 1 and len(backchannel.pending_ids()) == 1
    receiver.status = 200
    retry, now = maintenance.by_name("logout-retry"), T0.timestamp()
    assert maintenance.tick(app, [retry], now=now) == {"logout-retry": "1 delivered, 0 failed, 0 still in flight"}
    assert len(receiver.received) == 2
    every = app.config["LOGOUT_RETRY_INTERVAL"]
    assert maintenance.tick(app, [retry], now=now + every) == {"logout-retry": "0 delivered, 0 failed, 0 still in flight"}
    assert len(receiver.received) == 2


def test_cron_runs_the_jobs_with_the_cli(app):
    result = app.test_cli_runner().invoke(cli, ["maintenance", "run"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "logout-retry: 0 delivered, 0 failed, 0 still in flight"
    assert lines[1] == "prune: 0 families, 0 refresh tokens, 0 orphaned refresh tokens, 0 browser sessions, 0 security events"
    assert lines[2].startswith("keys: 0 keys rotated, ")
    result = app.test_cli_runner().invoke(cli, ["maintenance", "run", "prune"])
    assert result.exit_code == 0 and result.output.startswith("prune: ")


def test_the_keys_job_rotates_old_keys_and_drops_retired_ones(app, tmp_path):
    from idp.crypto.keys import KeyRing, max_token_lifetime

    ring = app.extensions["idp.keyring"] = KeyRing(str(tmp_path / "keys"), app.config["KEY_PUBLISH_AHEAD"],
                                                   app.config["SECRET_KEY"])
    ring.ensure()
    keys = maintenance.by_name("keys")
    assert maintenance.run(app, keys) == "0 keys rotated, 0 retired keys pruned"
    first = ring.active("ES256").kid
    age = timedelta(days=app.config["KEY_ROTATION_DAYS"])
    with freeze_time(datetime.now(timezone.utc) + age) as clock:
        app.config["KEY_ROTATION_DAYS"] = 0  # rotation switched off: nothing happens
        assert maintenance.run(app, keys) == "0 keys rotated, 0 retired keys pruned"
        app.config["KEY_ROTATION_DAYS"] = age.days
        assert maintenance.run(app, keys) == "2 keys rotated, 0 retired keys pruned"
        clock.tick(app.config["KEY_PUBLISH_AHEAD"] + 1)
        assert ring.active("ES256").kid != first
        clock.tick(max_token_lifetime(app.config) - 10)  # a hint signed by it may still come back
        assert maintenance.run(app, keys) == "0 keys rotated, 0 retired keys pruned"
        clock.tick(10)
        assert maintenance.run(app, keys) == "0 keys rotated, 2 retired keys pruned"
        assert first not in {k["kid"] for k in ring.jwks()["keys"]}


def test_the_scheduler_thread_survives_a_tick_that_raises(app, monkeypatch, caplog):
    looked = threading.Event()
    calls = []

    def broken_tick(app, jobs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("secret-parameter-value")
        looked.set()

    monkeypatch.setattr(maintenance, "tick", broken_tick)
    with caplog.at_level(logging.ERROR, "idp.maintenance"):
        scheduler = maintenance.Scheduler(app, every=0.001, jobs=[]).start()
        try:
            assert looked.wait(10)  # the loop went on after the first tick raised
        finally:
            scheduler.stop(timeout=10)
    assert "maintenance tick failed: RuntimeError" in caplog.text and "secret-parameter-value" not in caplog.text


def test_security_events_are_kept_for_good_unless_a_retention_is_set(app, seller):
    from idp.models import SecurityEvent

    old = datetime.now(timezone.utc) - timedelta(days=400)
    db.session.add_all([SecurityEvent(account_id=seller.id, kind="refresh_token_reuse", created_at=old),
                        SecurityEvent(account_id=seller.id, kind="sign_out_everywhere")])
    db.session.commit()
    prune = maintenance.by_name("prune")
    assert maintenance.run(app, prune).endswith(", 0 security events")  # EVENT_RETENTION_DAYS = 0
    app.config["EVENT_RETENTION_DAYS"] = 365
    assert maintenance.run(app, prune).endswith(", 1 security events")
    assert [e.kind for e in db.session.scalars(select(SecurityEvent))] == ["sign_out_everywhere"]


def test_runs_are_counted_by_job_and_outcome_for_alerting(app):
    from prometheus_client import REGISTRY

    from idp.ops import metrics

    assert metrics.MAINTENANCE_JOBS == tuple(job.name for job in maintenance.JOBS)

    def count(job, outcome):
        return REGISTRY.get_sample_value("idp_maintenance_runs_total", {"job": job, "outcome": outcome})

    before = count("prune", "ok"), count("other", "failed")
    maintenance.run(app, maintenance.by_name("prune"))
    maintenance.run(app, Counting("bad", fail=True).job)
    assert (count("prune", "ok"), count("other", "failed")) == (before[0] + 1, (before[1] or 0) + 1)
