"""The WSGI application, for `idp serve` (granian) or any WSGI server: ``idp.wsgi:app``.

Under another server with several worker processes, set PROMETHEUS_MULTIPROC_DIR to an
empty directory of this server's own before it starts (what `idp serve` does, idp.ops.
prepare_multiprocess): without it each scrape of /metrics reaches one worker and shows
that worker's counts alone.

Each request runs in its worker's turn (idp.ops.turns), so a worker may have several
threads without their Python contending: the others only run while one waits on a
password hash or a relying party. Each worker also runs the maintenance jobs' scheduler
(idp.ops.maintenance), which makes sure that only one process runs each job at a time.
"""

from . import create_server_app
from .oauth.requests import MAX_BODY
from .ops import turns

_app = create_server_app()
# Bodies are read before the turn, up to the largest any endpoint takes (idp.ops.turns).
app = turns.middleware(_app, body_limit=max(MAX_BODY, _app.config["MAX_CONTENT_LENGTH"] or 0))
