"""Running one thing in several threads at once, for the tests of races."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable


def race(fn: Callable[[], object], n: int) -> list:
    """Run ``fn()`` in ``n`` threads released together by a barrier; their results in order
    of submission (an exception in a thread is raised here)."""
    barrier = threading.Barrier(n, timeout=30)

    def go():
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(n) as pool:
        return [f.result(timeout=60) for f in [pool.submit(go) for _ in range(n)]]
