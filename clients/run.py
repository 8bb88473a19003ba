"""``python -m clients.run``: every demo relying party in one process, each on its own port.

Each RP listens where its registration says (the origin of its redirect URI in
IDP_CLIENTS_FILE, default config/clients.toml); the backend API on BACKEND_API_URL
(default http://127.0.0.1:5006). The IdP is IDP_ISSUER (default http://127.0.0.1:5000).
An RP whose registration is missing from the file is skipped. 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from urllib.parse import urlsplit

from werkzeug.serving import make_server

from .backend_api.app import create_app as backend_api
from .common import clients_file, issuer, load_registrations
from .dashboard.app import create_app as dashboard
from .portal.app import REGIONS, create_app as portal

log = logging.getLogger("clients.run")


def build(regs: dict, idp_issuer: str, api_url: str) -> list[tuple[str, int, object]]:
    """(name, port, WSGI app) for every RP that has a registration."""
    apps = []
    if "seller-dashboard" in regs:
        reg = regs["seller-dashboard"]
        apps.append(("dashboard", reg.port, dashboard(reg, idp_issuer, api_url)))
    for region, client_id in REGIONS.items():
        if client_id in regs:
            apps.append((f"portal-{region}", regs[client_id].port, portal(regs[client_id], idp_issuer)))
    if "integrator-acme" in regs:  # a third party: same code, the IdP asks for consent
        apps.append(("integrator-acme", regs["integrator-acme"].port, portal(regs["integrator-acme"], idp_issuer)))
    if "backend-api" in regs:
        apps.append(("backend-api", urlsplit(api_url).port or 80, backend_api(regs["backend-api"], idp_issuer)))
    return apps


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # werkzeug's request log line carries the whole URL: at /callback, the authorization code
    # and state. A relying party's log is no place for them.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    idp_issuer = issuer()
    api_url = os.environ.get("BACKEND_API_URL", "http://127.0.0.1:5006").rstrip("/")
    apps = build(load_registrations(), idp_issuer, api_url)
    servers = [make_server("127.0.0.1", port, app, threaded=True) for _, port, app in apps]
    for (name, port, _), server in zip(apps, servers):
        threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
        log.info("%-16s http://127.0.0.1:%d/", name, port)
    log.info("relying parties of %s from %s are up; Ctrl-C stops them", idp_issuer, clients_file())

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    for server in servers:
        server.shutdown()


if __name__ == "__main__":
    main()
