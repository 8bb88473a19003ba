"""Production operation: health probes (health.py), Prometheus metrics (metrics.py) and the
turns a worker's request threads take at Python (turns.py, wrapped around the app in idp.wsgi).

``init_app(app)`` mounts /healthz, /readyz and /metrics and times every request.

Several worker processes (granian) each count for themselves; prometheus-client's
multiprocess mode makes /metrics add them up. It is chosen when prometheus-client is
first imported, from ``PROMETHEUS_MULTIPROC_DIR``, so the server sets it up before it
builds the app: ``prepare_multiprocess()`` first, ``cleanup_multiprocess()`` when it exits.
This module imports no prometheus-client at import time for that reason.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def init_app(app) -> None:
    from ..extensions import csrf
    from . import health, metrics

    for bp in (health.bp, metrics.bp):
        csrf.exempt(bp)
        app.register_blueprint(bp)
    metrics.instrument(app)


def prepare_multiprocess() -> str:
    """Point prometheus-client at a fresh, empty directory shared by the workers.

    Call in the server's parent process before the app (and so prometheus-client) is
    imported: a counter made before this would count for its own process only.
    Returns the directory; remove it when the server exits (``cleanup_multiprocess``).
    """
    if "idp.ops.metrics" in sys.modules:
        raise RuntimeError("prepare_multiprocess() must run before create_app() imports idp.ops.metrics")
    path = tempfile.mkdtemp(prefix="idp-metrics-")
    os.environ[MULTIPROC_ENV] = path
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported by someone else already: choose the value class again
        values.ValueClass = values.get_value_class()
    return path


def cleanup_multiprocess() -> None:
    """When the server exits: remove the directory made by ``prepare_multiprocess``."""
    path = os.environ.get(MULTIPROC_ENV, "")
    if os.path.basename(path).startswith("idp-metrics-"):
        shutil.rmtree(path, ignore_errors=True)
