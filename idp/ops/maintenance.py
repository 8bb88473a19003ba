"""Maintenance the server does itself: back-channel logout retries, pruning, key rotation.

Three jobs keep a running IdP tidy:

- ``logout-retry``, every LOGOUT_RETRY_INTERVAL seconds: delete the access tokens of the
  families a revocation could not reach in the store (idp.oauth.tokens.sweep_pending), and
  deliver again the back-channel logout tokens whose delivery failed
  (idp.logout.backchannel.retry_pending);
- ``prune``, every PRUNE_INTERVAL seconds: delete the token families and browser sessions
  that ended more than PRUNE_GRACE_DAYS ago, and security events older than
  EVENT_RETENTION_DAYS if set (idp.oauth.prune);
- ``keys``, every KEY_CHECK_INTERVAL seconds: rotate each signing key KEY_ROTATION_DAYS after
  it was made (0: never; the new key is published KEY_PUBLISH_AHEAD before it signs, as
  `idp keys rotate` does), and drop retired keys no live token can need (idp.crypto.keys).

Keycloak runs such jobs inside its server (cluster-aware scheduled tasks); Ory Hydra ships
them for cron (``hydra janitor``). Both work here: ``idp maintenance run`` runs them now, for
cron, and with MAINTENANCE on (the default) every server process (each worker of ``idp
serve``, and ``make run``) runs a ``Scheduler`` thread. A job's time is cut into slots of its
interval, and a process runs the job only after claiming the current slot in the shared store
(``add``: SET NX with a TTL, atomic), so however many processes run, each slot runs once, in
whichever process asked first. And a run holds the job's lease (``job:<name>:running``,
RUN_LEASE seconds, renewed while the run lasts): a run that outlasts its interval (a
logout-retry run may take most of an hour) is not joined by the next slot's in another
process, which leaves that slot to it. A process that dies in the middle of a job loses that
slot, and its lease lapses within RUN_LEASE: the next run is one interval later. The jobs are
safe to overlap anyway (a pending logout delivery is claimed with ``consume``; a prune
deletes what nothing can use; a key rotation is judged again under the key directory's
lock): the lease saves the work, threads and connections of runs side by side. Every run is counted in
``idp_maintenance_runs_total{job,outcome}``.

Each process asks every TICK seconds (with some jitter, so that workers started together do
not ask in step), the first time as soon as it starts. The thread runs outside any request,
so it does not take the worker's turn (idp.ops.turns): Python in a job only shares the GIL.
Failures are logged with the job's name and the exception's type, never its text (a database
error can quote the statement's parameters).
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

log = logging.getLogger("idp.maintenance")

TICK = 30.0  # seconds between two looks at the jobs' slots
RUN_LEASE = 60  # seconds a running job's lease lives unless renewed (every RUN_LEASE / 3 s)


@dataclass(frozen=True)
class Job:
    name: str
    interval_key: str  # the config key of its interval, in seconds
    run: Callable[[dict], str]  # in an app context, given the config; a one-line summary


def _logout_retry(config: dict) -> str:
    from ..logout import backchannel
    from ..oauth import tokens

    # First, and whatever the retries do after: revocations whose store half failed (a Redis
    # outage at a logout) still have live access tokens; a retry run may take long.
    try:
        swept = tokens.sweep_pending()
    except Exception as exc:  # noqa: BLE001  (the retries below still run; the job reports the failure)
        log.error("maintenance job logout-retry: the sweep failed: %s", type(exc).__name__)
        swept, failure = 0, exc
    else:
        failure = None
    report = backchannel.retry_pending()
    if failure is not None:
        raise failure
    summary = (f"{len(report.delivered)} delivered, {len(report.failed)} failed, "
               f"{len(report.pending)} still in flight")
    return summary + (f"; the access tokens of {swept} revoked family(ies) swept" if swept else "")


def _prune(config: dict) -> str:
    from ..oauth import prune

    now, keep = datetime.now(timezone.utc), config["EVENT_RETENTION_DAYS"]
    counts = prune.prune_ended(now - timedelta(days=config["PRUNE_GRACE_DAYS"]))
    counts["security_events"] = prune.prune_old_events(now - timedelta(days=keep)) if keep else 0
    return ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in counts.items())


def _keys(config: dict) -> str:
    from ..crypto.keys import max_token_lifetime
    from ..extensions import keyring
    from ..login import session as browser_session

    ring, days = keyring(), config["KEY_ROTATION_DAYS"]
    made = ring.rotate_aged(days * 24 * 3600) if days else []
    pruned = ring.prune(max_token_lifetime(config), live_since=browser_session.oldest_live_start)
    return f"{len(made)} keys rotated, {len(pruned)} retired keys pruned"


JOBS = (Job("logout-retry", "LOGOUT_RETRY_INTERVAL", _logout_retry), Job("prune", "PRUNE_INTERVAL", _prune),
        Job("keys", "KEY_CHECK_INTERVAL", _keys))


def by_name(name: str) -> Job:
    return next(job for job in JOBS if job.name == name)


def slot_key(job: Job, interval: int, now: float) -> str:
    """The store key that whoever runs ``job`` in the slot holding ``now`` claims. Pure."""
    return f"job:{job.name}:{interval}:{int(now // interval)}"


def run(app, job: Job) -> str | None:
    """Run ``job`` now in an app context: its summary, or None if it failed (logged, and
    counted in idp_maintenance_runs_total{job,outcome})."""
    from ..extensions import db
    from . import metrics

    with app.app_context():
        try:
            summary = job.run(app.config)
        except Exception as exc:  # a job must never take the scheduler (or a worker) down
            with suppress(Exception):  # the database may be the reason it failed
                db.session.rollback()
            from ..crypto.keys import KeysUnreadable

            # The exception's type, never its text (a database error's names values), but for
            # the key ring's refusal, whose text is ours and names the records to repair.
            log.error("maintenance job %s failed: %s", job.name,
                      f"{type(exc).__name__}: {exc}" if isinstance(exc, KeysUnreadable) else type(exc).__name__)
            metrics.maintenance_run(job.name, ok=False)
            return None
        finally:
            with suppress(Exception):
                db.session.remove()
    log.info("maintenance job %s: %s", job.name, summary)
    metrics.maintenance_run(job.name, ok=True)
    return summary


def tick(app, jobs=JOBS, now: float | None = None) -> dict[str, str | None]:
    """Run every job whose current slot this process claims: {name: summary, or None if it failed}."""
    from ..extensions import store
    from . import metrics

    started = time.time()
    now = started if now is None else now
    ran = {}
    for job in jobs:
        interval = int(app.config[job.interval_key])
        # The slot of this moment, not of the tick's start: after a long job (a logout-retry
        # run may take most of an hour) the start's slot is over, its claim expired with it,
        # and claiming it again would run that slot a second time beside the current one's.
        at = now + (time.time() - started)
        try:
            with app.app_context():
                # Kept two intervals: the key names its slot, and a process whose clock is
                # behind (or stepped back) must still find the claim once the slot is over here.
                claimed = store().add(slot_key(job, interval, at), {"pid": os.getpid()}, 2 * interval)
        except Exception as exc:  # the store is unreachable: /readyz says so; try at the next tick
            log.error("maintenance job %s: cannot claim its slot: %s", job.name, type(exc).__name__)
            # Counted as a failure (README: alert on any): a job that cannot claim does not run.
            metrics.maintenance_run(job.name, ok=False)
            continue
        if claimed:
            try:
                leased = _leased(app, job)
            except Exception as exc:  # noqa: BLE001  (the store went away since the claim)
                log.error("maintenance job %s: cannot take its lease: %s", job.name, type(exc).__name__)
                metrics.maintenance_run(job.name, ok=False)
                continue
            if leased is None:
                log.info("maintenance job %s: still running in another process, which keeps this slot", job.name)
                continue
            with leased:
                ran[job.name] = run(app, job)
    return ran


class _Lease:
    """The lease of a job's run, taken; renewed by a thread of its own until the run ends,
    then let go (if still this run's: one that lapsed meanwhile may be another's now)."""

    def __init__(self, app, key: str, mine: dict):
        self.app, self.key, self.mine = app, key, mine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"idp-maintenance-{key}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        from ..extensions import store

        self._stop.set()
        self._thread.join()
        with suppress(Exception), self.app.app_context():
            if store().get(self.key) == self.mine:
                store().delete(self.key)

    def _renew(self) -> None:
        from ..extensions import store

        while not self._stop.wait(RUN_LEASE / 3):
            try:
                with self.app.app_context():
                    store().swap(self.key, self.mine, RUN_LEASE)
            except Exception as exc:  # noqa: BLE001  (the store in an outage: the lease may lapse)
                log.warning("maintenance lease %s not renewed: %s", self.key, type(exc).__name__)


def _leased(app, job: Job) -> _Lease | None:
    """The job's lease for a run now, or None while a run of it goes on elsewhere."""
    from ..extensions import store

    key, mine = f"job:{job.name}:running", {"pid": os.getpid(), "run": secrets.token_hex(8)}
    with app.app_context():
        return _Lease(app, key, mine) if store().add(key, mine, RUN_LEASE) else None


class Scheduler:
    """A daemon thread that calls ``tick(app)`` at start, then every ``every`` seconds (± 20%)."""

    def __init__(self, app, every: float = TICK, jobs=JOBS):
        self.app, self.every, self.jobs = app, every, jobs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="idp-maintenance", daemon=True)

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                tick(self.app, self.jobs)
            except Exception as exc:  # tick contains each job; this is the last guard of the thread
                log.error("maintenance tick failed: %s", type(exc).__name__)
            if self._stop.wait(self.every * random.uniform(0.8, 1.2)):
                return


_started: dict[int, Scheduler] = {}  # by process id: a forked child starts its own


def start(app) -> Scheduler | None:
    """Start this process's scheduler, once, if MAINTENANCE is on (for the servers only)."""
    if not app.config["MAINTENANCE"]:
        return None
    pid = os.getpid()
    if pid not in _started:
        _started[pid] = Scheduler(app).start()
    return _started[pid]
