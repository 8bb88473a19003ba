"""clients.common.LocalSessions: the demo RPs' server-side sessions and what they do when one ends."""

import threading

from clients.common import LocalSessions


def _ending(sessions_ended: list, fail_first=False):
    done, seen = threading.Event(), []

    def on_end(data):
        seen.append(data["claims"]["sid"])
        if fail_first and len(seen) == 1:
            raise ConnectionError("the IdP is out of reach")
        if len(seen) == sessions_ended:
            done.set()

    return on_end, seen, done


def test_every_session_a_back_channel_logout_ends_is_handed_on_even_if_one_fails():
    on_end, seen, done = _ending(2, fail_first=True)
    sessions = LocalSessions(on_end=on_end)
    for sid in ("a", "b"):
        sessions.create({"claims": {"sub": "u", "sid": sid}})
    assert sessions.end(sub="u") == 2
    assert done.wait(5) and sorted(seen) == ["a", "b"]


def test_an_expired_or_deleted_session_is_handed_on_once():
    on_end, seen, done = _ending(2)
    sessions = LocalSessions(ttl=-1, on_end=on_end)  # born expired
    expired = sessions.create({"claims": {"sub": "u", "sid": "x"}})
    assert sessions.get(expired) is None and sessions.get(expired) is None
    kept = LocalSessions(on_end=on_end)
    local = kept.create({"claims": {"sub": "u", "sid": "y"}})
    kept.delete(local)
    kept.delete(local)
    assert done.wait(5) and sorted(seen) == ["x", "y"]


def test_an_expired_session_never_read_again_is_handed_on_at_the_next_sign_in():
    """A seller who closed the tab never reads their session again: its refresh token must
    still be revoked (on_end) once its time is up, not kept until the process ends."""
    from freezegun import freeze_time

    on_end, seen, done = _ending(1)
    with freeze_time() as clock:
        sessions = LocalSessions(ttl=60, on_end=on_end)
        sessions.create({"claims": {"sub": "u", "sid": "old"}})
        clock.tick(61)
        sessions.create({"claims": {"sub": "v", "sid": "new"}})  # somebody else signs in
    assert done.wait(5) and seen == ["old"]
